//! Conformance: every scenario under `tests/conformance/` (imported from semantics.md's scenario
//! file by `tools/import_scenarios.py`) is loaded through the real loader and every probe is
//! decided by the engine, once per semantics. Each scenario and each validation case is a named
//! test (`cargo test -p bulkhead-engine --test conformance -- --list`).

use bulkhead_engine::{Engine, EngineOptions, Flow, Semantics};
use bulkhead_k8s::{Input, LoadOptions, load};
use bulkhead_model::{Protocol, Severity};
use libtest_mimic::{Arguments, Failed, Trial};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
struct Expectations {
    id: String,
    mode: String,
    cluster: String,
    expectations: Vec<Expectation>,
}

#[derive(Debug, Deserialize)]
struct Expectation {
    from: String,
    to: String,
    protocol: String,
    port: Option<u16>,
    icmp: Option<Icmp>,
    expect: String,
}

#[derive(Debug, Deserialize)]
struct Icmp {
    #[serde(rename = "type")]
    icmp_type: u8,
    code: Option<u8>,
}

#[derive(Debug, Deserialize)]
struct Cases {
    id: String,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    file: String,
    description: String,
    expect_valid: bool,
    /// The semantics.md rule the case is about (`K8S-VAL-4`), named in failures.
    #[serde(default)]
    rule: String,
}

/// `diagnostics.yaml` beside `cases.yaml`: file -> the error it must produce.
#[derive(Clone, Debug, serde::Deserialize)]
struct ExpectedDiagnostic {
    code: String,
    /// `line:column`.
    at: String,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance")
}

fn read(path: &Path) -> Input {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Input::new(path.display().to_string(), text)
}

fn yaml<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let input = read(path);
    let docs = bulkhead_k8s::yaml_tree::parse_documents(&input.text);
    let root = docs
        .into_iter()
        .next()
        .and_then(|d| d.ok())
        .and_then(|d| d.root)
        .unwrap_or_else(|| panic!("{} has no document", path.display()));
    serde_json::from_value(root.to_json()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn run_flow_scenario(dir: &Path, semantics: Semantics) -> Result<(), Failed> {
    let spec: Expectations = yaml(&dir.join("expect.yaml"));
    let cluster_file = if spec.cluster == "inline" {
        dir.join("cluster.yaml")
    } else {
        root()
            .join("clusters")
            .join(format!("{}.yaml", spec.cluster))
    };
    let snapshot = load(
        &[read(&cluster_file), read(&dir.join("policies.yaml"))],
        &LoadOptions::default(),
    );
    let errors: Vec<String> = snapshot
        .diagnostics
        .iter()
        .filter(|d| d.severity != Severity::Info)
        .map(|d| format!("{:?} {} {}", d.location, d.code, d.message))
        .collect();
    if !errors.is_empty() {
        return Err(format!("{}: unexpected diagnostics: {errors:#?}", spec.id).into());
    }
    let engine = Engine::new(
        &snapshot.cluster,
        EngineOptions {
            semantics,
            ..EngineOptions::default()
        },
    );
    let compiled = engine.compile();
    let mut failures = Vec::new();
    for e in &spec.expectations {
        let src = engine.resolve(&e.from).map_err(|err| err.to_string())?;
        let dst = engine.resolve(&e.to).map_err(|err| err.to_string())?;
        let protocol: Protocol = e
            .protocol
            .parse()
            .map_err(|err: bulkhead_model::ports::UnknownProtocol| err.to_string())?;
        let flow = Flow {
            src: src.endpoint,
            dst: dst.endpoint,
            protocol,
            port: e.port,
            icmp: e.icmp.as_ref().map(|i| (i.icmp_type, i.code)),
        };
        let verdict = engine.evaluate(&flow);
        // The answer without its explanation is the same answer, per direction and in all.
        let quiet = (
            engine.allows(&flow),
            engine.allows_direction(&flow, bulkhead_model::Direction::Egress),
            engine.allows_direction(&flow, bulkhead_model::Direction::Ingress),
        );
        let explained = (
            verdict.allowed,
            verdict.egress.allowed,
            verdict.ingress.allowed,
        );
        if quiet != explained {
            failures.push(format!(
                "{} -> {} {}/{:?}: allows/allows_direction say {quiet:?}, evaluate says {explained:?}",
                e.from, e.to, e.protocol, e.port
            ));
        }
        let got = if verdict.allowed { "allow" } else { "deny" };
        if got != e.expect {
            failures.push(format!(
                "{} -> {} {}/{:?}: expected {}, got {got} (egress {:?}, ingress {:?})",
                e.from,
                e.to,
                e.protocol,
                e.port,
                e.expect,
                verdict.egress.reason,
                verdict.ingress.reason
            ));
        }
        // The whole-cluster path must agree with the per-flow path on every pod pair probe.
        if let (bulkhead_engine::Endpoint::Pod(s), bulkhead_engine::Endpoint::Pod(d), Some(port)) =
            (src.endpoint, dst.endpoint, e.port)
            && Protocol::L4.contains(&protocol)
        {
            let by_map = engine.allowed_ports(s, d, protocol).contains(port);
            let by_identity = compiled.ports(s, d, protocol).contains(port);
            if by_map != verdict.allowed || by_identity != verdict.allowed {
                failures.push(format!(
                    "{} -> {} {}/{port}: connectivity says {by_map}, compiled says {by_identity}, evaluate says {}",
                    e.from, e.to, e.protocol, verdict.allowed
                ));
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n").into())
    }
}

fn run_validation_case(
    dir: &Path,
    case: &Case,
    expected: Option<&ExpectedDiagnostic>,
) -> Result<(), Failed> {
    let snapshot = load(&[read(&dir.join(&case.file))], &LoadOptions::default());
    let errors: Vec<(String, String)> = snapshot
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| {
            let at = d
                .location
                .as_ref()
                .map(|l| format!("{}:{}", l.line, l.column))
                .unwrap_or_default();
            (
                format!("{} at {at}: {}", d.code, d.message),
                format!("{} {at}", d.code),
            )
        })
        .collect();
    let what = format!("{} ({})", case.description, case.rule);
    if case.expect_valid {
        return if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("{what}: expected valid, got {errors:?}").into())
        };
    }
    // Not "some error": the code and the place the case is about.
    let Some(expected) = expected else {
        return Err(format!(
            "{what}: no entry for {} in diagnostics.yaml (the code and line:column it must report)",
            case.file
        )
        .into());
    };
    let want = format!("{} {}", expected.code, expected.at);
    if errors.iter().any(|(_, key)| *key == want) {
        Ok(())
    } else {
        Err(format!("{what}: expected {want}, got {errors:#?}").into())
    }
}

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    let mut topics: Vec<PathBuf> = std::fs::read_dir(root())
        .expect("tests/conformance exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !p.ends_with("clusters"))
        .collect();
    topics.sort();
    for topic in topics {
        let topic_name = topic
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let mut scenarios: Vec<PathBuf> = std::fs::read_dir(&topic)
            .expect("topic dir")
            .flatten()
            .map(|e| e.path())
            .collect();
        scenarios.sort();
        for dir in scenarios {
            let id = dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            if dir.join("cases.yaml").exists() {
                let cases: Cases = yaml(&dir.join("cases.yaml"));
                assert_eq!(cases.id, id);
                let expected: std::collections::BTreeMap<String, ExpectedDiagnostic> =
                    if dir.join("diagnostics.yaml").exists() {
                        yaml(&dir.join("diagnostics.yaml"))
                    } else {
                        Default::default()
                    };
                for case in cases.cases {
                    let dir = dir.clone();
                    let name = format!(
                        "{topic_name}::{id}::{}",
                        case.file.trim_end_matches(".yaml")
                    );
                    let expected = expected.get(&case.file).cloned();
                    trials.push(Trial::test(name, move || {
                        run_validation_case(&dir, &case, expected.as_ref())
                    }));
                }
                continue;
            }
            let spec: Expectations = yaml(&dir.join("expect.yaml"));
            let mut modes = vec![Semantics::Calico];
            if spec.mode == "kubernetes" {
                // semantics.md §4: every Kubernetes scenario must give the same verdicts in calico mode.
                modes.insert(0, Semantics::Kubernetes);
            }
            for semantics in modes {
                let dir = dir.clone();
                let mode = match semantics {
                    Semantics::Kubernetes => "kubernetes",
                    Semantics::Calico => "calico",
                };
                trials.push(Trial::test(
                    format!("{topic_name}::{id}::{mode}"),
                    move || run_flow_scenario(&dir, semantics),
                ));
            }
        }
    }
    libtest_mimic::run(&args, trials).exit();
}
