//! End-to-end tests of the `bulkhead` binary: exit codes, locations in diagnostics, and the
//! JSON contract of design.md §4.

mod support;

use serde_json::Value;
use std::path::PathBuf;
use support::{bulkhead, output, run};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn check_json(path: &str) -> (i32, Vec<Value>) {
    let r = run(&["check", path, "-o", "json"]);
    let json: Value = serde_json::from_str(&r.stdout).expect("check -o json prints JSON");
    let diagnostics = json["diagnostics"]
        .as_array()
        .expect("diagnostics array")
        .clone();
    (r.code, diagnostics)
}

fn errors(diagnostics: &[Value]) -> Vec<&Value> {
    diagnostics
        .iter()
        .filter(|d| d["severity"] == "error")
        .collect()
}

/// The location of the single error, as `code@line:column`.
fn single_error(name: &str) -> String {
    let path = fixture(name);
    let (code, diagnostics) = check_json(path.to_str().expect("utf-8 path"));
    assert_eq!(code, 1, "{name}: {diagnostics:#?}");
    let errors = errors(&diagnostics);
    assert_eq!(errors.len(), 1, "{name}: {errors:#?}");
    let e = errors[0];
    assert!(e["file"].as_str().is_some_and(|f| f.ends_with(name)));
    format!(
        "{}@{}:{}",
        e["code"].as_str().unwrap_or(""),
        e["line"],
        e["column"]
    )
}

#[test]
fn malformed_yaml_is_reported_at_its_position() {
    assert_eq!(single_error("malformed.yaml"), "BH002@8:3");
}

#[test]
fn wrong_field_type_points_at_the_value() {
    assert_eq!(single_error("wrong-type.yaml"), "BH007@10:13");
}

#[test]
fn invalid_cidr_points_at_the_cidr() {
    assert_eq!(single_error("invalid-cidr.yaml"), "BH025@12:15");
}

#[test]
fn end_port_below_port_points_at_end_port() {
    assert_eq!(single_error("endport.yaml"), "BH023@12:16");
}

#[test]
fn unknown_field_gets_a_did_you_mean_hint() {
    let path = fixture("typo.yaml");
    let (code, diagnostics) = check_json(path.to_str().expect("utf-8"));
    assert_eq!(code, 1);
    let e = errors(&diagnostics)[0];
    assert_eq!(e["code"], "BH008");
    assert_eq!(
        (e["line"].as_u64(), e["column"].as_u64()),
        (Some(7), Some(3))
    );
    assert!(
        e["help"]
            .as_str()
            .is_some_and(|h| h.contains("podSelector")),
        "{e}"
    );
}

#[test]
fn yaml11_octal_port_is_a_warning_with_the_value_kubectl_sees() {
    let path = fixture("yaml11.yaml");
    let (code, diagnostics) = check_json(path.to_str().expect("utf-8"));
    assert_eq!(
        code, 0,
        "a warning alone does not fail check: {diagnostics:#?}"
    );
    assert!(
        diagnostics
            .iter()
            .any(|d| d["code"] == "BH004" && d["line"] == 10)
    );
    let strict = run(&["check", path.to_str().expect("utf-8"), "--deny", "warnings"]);
    assert_eq!(strict.code, 1);
}

#[test]
fn a_directory_mixing_good_and_bad_files_reports_every_problem() {
    let path = fixture("mixed");
    let (code, diagnostics) = check_json(path.to_str().expect("utf-8"));
    assert_eq!(code, 1);
    let mut found: Vec<String> = errors(&diagnostics)
        .iter()
        .map(|e| format!("{}@{}", e["code"].as_str().unwrap_or(""), e["line"]))
        .collect();
    found.sort();
    assert_eq!(found, vec!["BH020@25", "BH026@14"]);
}

#[test]
fn human_output_shows_the_line_and_a_caret() {
    let path = fixture("endport.yaml");
    let r = run(&["check", path.to_str().expect("utf-8")]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("error[BH023/invalid-end-port]"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("endport.yaml:12:16"), "{}", r.stdout);
    assert!(
        r.stdout.contains("12 |       endPort: 8000"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("   |                ^^^^"),
        "{}",
        r.stdout
    );
}

#[test]
fn valid_input_exits_zero() {
    let path = fixture("deployments");
    let r = run(&["check", path.to_str().expect("utf-8")]);
    assert_eq!(r.code, 0, "{}", r.stdout);
}

#[test]
fn unreadable_path_is_an_error_not_a_panic() {
    // README: exit 2 for usage and I/O errors, whatever the command.
    let r = run(&["check", "/nonexistent/bulkhead/input"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stderr.contains("cannot read /nonexistent/bulkhead/input"),
        "{}",
        r.stderr
    );
}

#[test]
fn explain_json_follows_the_contract() {
    let path = fixture("kubectl-list.yaml");
    let r = run(&[
        "explain",
        path.to_str().expect("utf-8"),
        "--from",
        "shop/deployment/web",
        "--to",
        "shop/db-0",
        "--port",
        "5432",
        "-o",
        "json",
    ]);
    assert_eq!(r.code, 0);
    let v: Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(v["verdict"], "allow");
    assert_eq!(v["from"], "shop/web-6d4cf56db6-x7k2p");
    assert_eq!(v["to"], "shop/db-0");
    assert_eq!(v["protocol"], "TCP");
    assert_eq!(v["port"], 5432);
    assert_eq!(v["egress"]["verdict"], "allow");
    assert_eq!(v["egress"]["reason"], "not isolated");
    assert_eq!(v["egress"]["decided_by"], Value::Array(vec![]));
    let rule = &v["ingress"]["decided_by"][0];
    assert_eq!(rule["kind"], "NetworkPolicy");
    assert_eq!(rule["namespace"], "shop");
    assert_eq!(rule["name"], "db-from-web");
    assert_eq!(rule["tier"], "default");
    assert_eq!(rule["rule"], "ingress[0]");
    assert_eq!(rule["action"], "Allow");
    assert_eq!(v["ingress"]["reason"], "allowed by rule");
}

#[test]
fn explain_accepts_every_reference_form() {
    let path = fixture("kubectl-list.yaml");
    let p = path.to_str().expect("utf-8");
    let verdict = |from: &str, to: &str, port: &str| -> String {
        let r = run(&[
            "explain", p, "--from", from, "--to", to, "--port", port, "-o", "json",
        ]);
        assert_eq!(r.code, 0, "{from} -> {to}: {}", r.stdout);
        let v: Value = serde_json::from_str(&r.stdout).expect("json");
        v["verdict"].as_str().unwrap_or("").to_string()
    };
    assert_eq!(
        verdict("shop/web-6d4cf56db6-x7k2p", "shop/db-0", "5432"),
        "allow"
    );
    assert_eq!(
        verdict("shop/deployment/web", "shop/statefulset/db", "5432"),
        "allow"
    );
    assert_eq!(verdict("ip:10.244.0.12", "10.244.0.13", "5432"), "allow");
    assert_eq!(verdict("ip:203.0.113.9", "shop/db-0", "5432"), "deny");
    assert_eq!(verdict("shop/db-0", "ip:203.0.113.9", "443"), "allow");
    assert_eq!(
        verdict("shop/web-6d4cf56db6-x7k2p", "shop/db-0", "5433"),
        "deny"
    );
}

#[test]
fn an_unknown_reference_lists_close_matches_and_exits_2() {
    let path = fixture("kubectl-list.yaml");
    let output = bulkhead()
        .args([
            "explain",
            path.to_str().expect("utf-8"),
            "--from",
            "shop/db-1",
            "--to",
            "shop/db-0",
            "--port",
            "1",
        ])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("did you mean") && stderr.contains("shop/db-0"),
        "{stderr}"
    );
}

#[test]
fn map_by_workload_on_deployments_gives_workload_rows() {
    let path = fixture("deployments");
    let r = run(&[
        "map",
        path.to_str().expect("utf-8"),
        "--by",
        "workload",
        "-o",
        "json",
    ]);
    assert_eq!(r.code, 0);
    let v: Value = serde_json::from_str(&r.stdout).expect("json");
    let rows: Vec<String> = v["connections"]
        .as_array()
        .expect("connections")
        .iter()
        .map(|c| {
            format!(
                "{} -> {} {} {}",
                c["from"].as_str().unwrap_or(""),
                c["to"].as_str().unwrap_or(""),
                c["protocol"].as_str().unwrap_or(""),
                c["ports"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec!["shop/deployment/web -> shop/deployment/api TCP 9090"]
    );
}

#[test]
fn map_formats_render() {
    let path = fixture("kubectl-list.yaml");
    let p = path.to_str().expect("utf-8");
    let json = run(&["map", p, "-o", "json"]);
    let v: Value = serde_json::from_str(&json.stdout).expect("json");
    assert!(v["connections"].as_array().is_some_and(|c| {
        c.iter().any(|c| {
            c["from"] == "shop/web-6d4cf56db6-x7k2p"
                && c["to"] == "shop/db-0"
                && c["ports"] == "5432"
        })
    }));
    assert!(
        run(&["map", p, "-o", "dot"])
            .stdout
            .starts_with("digraph bulkhead {")
    );
    assert!(
        run(&["map", p, "-o", "mermaid"])
            .stdout
            .starts_with("flowchart LR")
    );
    assert!(
        run(&["map", p, "-o", "csv"])
            .stdout
            .starts_with("from,to,protocol,ports")
    );
    assert!(
        run(&["map", p, "--by", "namespace"])
            .stdout
            .contains("shop")
    );
}

#[test]
fn stdin_is_read_with_a_dash() {
    let text = std::fs::read_to_string(fixture("endport.yaml")).expect("fixture");
    let output = bulkhead()
        .args(["check", "-"])
        .write_stdin(text)
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains("<stdin>:12:16"));
}

#[test]
fn demo_runs_and_shows_the_dns_mistake() {
    let r = run(&["demo"]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout
            .contains("development/frontend -> development/backend TCP/8080: ALLOW"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("development/frontend -> development/database TCP/5432: DENY")
    );
    assert!(
        r.stdout
            .contains("namespaceSelector name=kube-system matches no namespace")
    );
}

fn explain_json(dir: &str, from: &str, to: &str, port: &str) -> Value {
    let r = run(&[
        "explain", dir, "--from", from, "--to", to, "--port", port, "-o", "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    serde_json::from_str(&r.stdout).expect("json")
}

#[test]
fn security_tier_example_denies_the_metadata_service_and_says_where() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/security-tier");
    let dir = dir.to_str().expect("utf-8");
    let v = explain_json(dir, "prod/api-0", "169.254.169.254", "80");
    assert_eq!(v["verdict"], "deny");
    let d = &v["egress"]["decided_by"][0];
    assert_eq!(
        (
            d["tier"].as_str(),
            d["name"].as_str(),
            d["rule"].as_str(),
            d["action"].as_str()
        ),
        (
            Some("security"),
            Some("deny-cloud-metadata"),
            Some("egress[0]"),
            Some("Deny")
        )
    );
    assert_eq!(v["egress"]["reason_code"], "CAL_DENY");
    let v = explain_json(dir, "prod/api-0", "93.184.216.34", "443");
    assert_eq!(v["verdict"], "allow");
    let path = v["egress"]["decided_by"].as_array().expect("path");
    assert_eq!(path[0]["action"], "Pass");
    assert_eq!(path[1]["name"], "api-egress-anywhere");
    assert_eq!(path[1]["tier"], "default");
    assert!(
        v.get("staged").is_none(),
        "no staged policies, no staged object"
    );
}

#[test]
fn staged_policies_never_change_the_enforced_verdict_but_are_reported() {
    let dir = fixture("staged");
    let v = explain_json(
        dir.to_str().expect("utf-8"),
        "prod/api-0",
        "prod/web-0",
        "8080",
    );
    assert_eq!(v["verdict"], "allow");
    assert_eq!(v["staged"]["verdict"], "deny");
    let d = &v["staged"]["ingress"]["decided_by"][0];
    assert_eq!(
        (d["name"].as_str(), d["rule"].as_str(), d["action"].as_str()),
        (Some("lockdown-web"), Some("ingress[0]"), Some("Deny"))
    );
}

#[test]
fn auto_semantics_switches_to_calico_when_calico_objects_exist() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/security-tier");
    let output = bulkhead()
        .args([
            "explain",
            dir.to_str().expect("utf-8"),
            "--from",
            "prod/api-0",
            "--to",
            "169.254.169.254",
            "--port",
            "80",
            "-o",
            "json",
            "--semantics",
            "kubernetes",
        ])
        .output()
        .expect("runs");
    let v: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(
        v["verdict"], "allow",
        "kubernetes semantics ignore Calico policies"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("ignores the Calico policies"));
}

#[test]
fn map_filters_answer_who_can_reach_x_and_what_x_can_reach() {
    let path = fixture("deployments");
    let p = path.to_str().expect("utf-8");
    let rows = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["map", p, "-o", "json"];
        all.extend_from_slice(args);
        let r = run(&all);
        assert_eq!(r.code, 0, "{}", r.stdout);
        let v: Value = serde_json::from_str(&r.stdout).expect("json");
        v["connections"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|c| {
                format!(
                    "{}>{} {}/{}",
                    c["from"].as_str().unwrap_or(""),
                    c["to"].as_str().unwrap_or(""),
                    c["protocol"].as_str().unwrap_or(""),
                    c["ports"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    assert_eq!(
        rows(&["--by", "workload", "--to", "shop/deployment/api"]),
        vec!["shop/deployment/web>shop/deployment/api TCP/9090"]
    );
    assert_eq!(
        rows(&["--by", "workload", "--from", "shop/deployment/api"]),
        Vec::<String>::new()
    );
    assert_eq!(
        rows(&[
            "--by",
            "workload",
            "--to",
            "shop/deployment/api",
            "--port",
            "80"
        ]),
        Vec::<String>::new()
    );
    assert_eq!(
        rows(&[
            "--by",
            "workload",
            "--to",
            "shop/deployment/api",
            "--protocol",
            "UDP"
        ]),
        Vec::<String>::new()
    );
    assert_eq!(
        rows(&["--by", "namespace", "--from", "shop"]),
        vec!["shop>shop TCP/9090"]
    );
    let unknown = run(&["map", p, "--to", "shop/deployment/apii"]);
    assert_eq!(unknown.code, 2);
}

/// `bulkhead compile` prints the same bytes for the same input (snapshot:
/// tests/fixtures/compile/node-1.nft; regenerate with BULKHEAD_BLESS=1 after reviewing the diff).
#[test]
fn compile_output_is_deterministic_and_matches_its_snapshot() {
    let dir = fixture("compile");
    let p = dir.to_str().expect("utf-8");
    let mut args = vec!["compile", p, "--node", "node-1"];
    let interfaces = [
        "x/a=veth-xa",
        "x/c=veth-xc",
        "y/a=veth-ya",
        "y/c=veth-yc",
        "z/a=veth-za",
        "z/c=veth-zc",
    ];
    for i in &interfaces {
        args.extend(["--interface", i]);
    }
    let first = run(&args);
    assert_eq!(first.code, 0);
    assert_eq!(run(&args).stdout, first.stdout, "two runs, same bytes");
    let snapshot = dir.join("node-1.nft");
    if std::env::var_os("BULKHEAD_BLESS").is_some() {
        std::fs::write(&snapshot, &first.stdout).expect("write snapshot");
    }
    let expected = std::fs::read_to_string(&snapshot).expect("snapshot");
    assert_eq!(
        first.stdout, expected,
        "compile output changed; review and re-bless"
    );
    for needle in [
        "ct state vmap { established : accept, related : accept, invalid : drop }",
        // Chains are named by their pod (FNV-1a of `ns/name`), not by build order.
        "\"veth-xa\" : jump eg_becfc1197f2d8bfb",
        // A tier chain is named by its pod and its tier (`default`), not by position.
        "goto in_becfc1197f2d8bfb_t8620c5fe comment \"AdminNetworkPolicy block-z ingress[1]\"",
        "ip daddr . meta l4proto . th dport @",
        "169.254.169.253",
    ] {
        assert!(first.stdout.contains(needle), "missing {needle:?}");
    }
}

fn ci() -> String {
    fixture("ci").to_string_lossy().into_owned()
}

#[test]
fn sarif_output_validates_against_the_sarif_2_1_0_schema() {
    let schema_path = std::env::var_os("BULKHEAD_SARIF_SCHEMA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/sarif-schema/sarif-2.1.0-rtm.5.json")
        });
    let Ok(schema_text) = std::fs::read_to_string(&schema_path) else {
        // scripts/test.sh downloads the schema (npm package @microsoft/sarif-matcher-utils) and
        // sets BULKHEAD_REQUIRE_SARIF_SCHEMA, so CI never skips this.
        assert!(
            std::env::var_os("BULKHEAD_REQUIRE_SARIF_SCHEMA").is_none(),
            "SARIF schema missing at {}",
            schema_path.display()
        );
        eprintln!(
            "SKIPPED: no SARIF schema at {} (scripts/test.sh fetches it)",
            schema_path.display()
        );
        return;
    };
    // rtm.5 carries a malformed `run.language` pattern (a stray `]`) that strict meta-schema
    // validation rejects; OASIS errata 01 corrected it to this form. We never emit `language`.
    let schema_text = schema_text.replace(
        r"^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$",
        r"^[a-zA-Z]{2}(-[a-zA-Z]{2})?$",
    );
    let schema: Value = serde_json::from_str(&schema_text).expect("schema JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    // Run from the directory's parent, as CI runs `check manifests/ -o sarif` from the
    // repository root: every URI is relative to %SRCROOT%, the working directory.
    for dir in [PathBuf::from(ci()), fixture("mixed")] {
        let parent = dir.parent().expect("parent").to_path_buf();
        let name = dir
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let mut command = bulkhead();
        command
            .current_dir(&parent)
            .args(["check", &name, "-o", "sarif"]);
        let r = output(command);
        let sarif: Value = serde_json::from_str(&r.stdout).expect("sarif JSON");
        for result in sarif["runs"][0]["results"].as_array().expect("results") {
            let location = &result["locations"][0]["physicalLocation"]["artifactLocation"];
            let uri = location["uri"].as_str().expect("uri");
            assert!(uri.starts_with(&format!("{name}/")) || uri == name, "{uri}");
            assert_eq!(location["uriBaseId"], "%SRCROOT%");
        }
        let root = sarif["runs"][0]["originalUriBaseIds"]["%SRCROOT%"]["uri"]
            .as_str()
            .expect("base");
        assert!(
            root.starts_with("file:///") && root.ends_with('/'),
            "{root}"
        );
        // Every rule carries help a reviewer can read in the code-scanning UI.
        for rule in sarif["runs"][0]["tool"]["driver"]["rules"]
            .as_array()
            .expect("rules")
        {
            assert!(
                rule["help"]["text"].as_str().is_some_and(|t| t.len() > 40),
                "{rule}"
            );
        }
        let errors: Vec<String> = validator
            .iter_errors(&sarif)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
        assert!(
            sarif["runs"][0]["results"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        );
    }
}

#[test]
fn junit_and_github_outputs_are_well_formed() {
    let r = run(&["check", &ci(), "-o", "junit"]);
    let doc = roxmltree::Document::parse(&r.stdout).expect("JUnit XML parses");
    assert_eq!(doc.root_element().tag_name().name(), "testsuites");
    assert!(
        doc.descendants().any(|n| n.has_tag_name("failure")),
        "findings are failures"
    );
    let gh = run(&["check", &ci(), "-o", "github"]);
    assert!(
        gh.stdout.lines().all(|l| l.starts_with("::error ")
            || l.starts_with("::warning ")
            || l.starts_with("::notice ")),
        "{}",
        gh.stdout
    );
    assert!(
        gh.stdout.contains("title=BH101 missing-dns-egress"),
        "{}",
        gh.stdout
    );
    let t = run(&[
        "test",
        &ci(),
        "--expect",
        &format!("{}-expect.yaml", ci()),
        "-o",
        "junit",
    ]);
    let doc = roxmltree::Document::parse(&t.stdout).expect("JUnit XML parses");
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .count(),
        3
    );
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("failure"))
            .count(),
        1
    );
}

#[test]
fn lint_findings_come_with_the_yaml_line_and_exit_1() {
    let r = run(&["check", &ci()]);
    assert_eq!(r.code, 1, "BH101 is an error: {}", r.stdout);
    assert!(
        r.stdout.contains("error[BH101/missing-dns-egress]"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("policies.yaml:1:1"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("= help: allow egress to namespaceSelector"),
        "{}",
        r.stdout
    );
    let config = std::env::temp_dir().join(format!("bulkhead-config-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        "[rules]\ndisable = [\"BH101\"]\nseverity = { BH105 = \"error\" }\n",
    )
    .expect("config");
    let r = run(&[
        "check",
        &ci(),
        "--config",
        config.to_str().expect("utf-8"),
        "-o",
        "json",
    ]);
    let v: Value = serde_json::from_str(&r.stdout).expect("json");
    let codes: Vec<&str> = v["diagnostics"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|d| d["code"].as_str())
        .collect();
    assert!(!codes.contains(&"BH101"), "{codes:?}");
    let _ = std::fs::remove_file(config);
    assert_eq!(run(&["check", &ci(), "--no-lint"]).code, 0);
}

#[test]
fn rules_are_listed_and_documented() {
    let list = run(&["rules"]);
    for code in ["BH101", "BH104", "BH107", "BH113"] {
        assert!(list.stdout.contains(code), "{}", list.stdout);
    }
    let doc = run(&["rule", "missing-dns-egress"]);
    assert_eq!(doc.code, 0);
    for section in [
        "## What it flags",
        "## Why it matters",
        "## Example",
        "## Fix",
    ] {
        assert!(doc.stdout.contains(section), "{}", doc.stdout);
    }
    assert_eq!(run(&["rule", "BH999"]).code, 2);
    let json: Value = serde_json::from_str(&run(&["rules", "-o", "json"]).stdout).expect("json");
    let rules = json.as_array().expect("array");
    assert_eq!(
        rules.len(),
        list.stdout.lines().filter(|l| l.starts_with("BH1")).count()
    );
    assert!(
        rules
            .iter()
            .all(|r| r["doc"].as_str().is_some_and(|d| d.contains("## Fix")))
    );
    let codes: Value = serde_json::from_str(&run(&["codes", "-o", "json"]).stdout).expect("json");
    assert!(
        codes
            .as_array()
            .expect("array")
            .iter()
            .any(|c| c["code"] == "BH010" && c["severity"] == "error")
    );
}

#[test]
fn test_command_reports_each_expectation_and_fails_on_a_wrong_one() {
    let r = run(&["test", &ci(), "--expect", &format!("{}-expect.yaml", ci())]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("PASS  web reaches the api"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("FAIL  wrong on purpose"), "{}", r.stdout);
    assert!(
        r.stdout.contains("NP_DENY_ISOLATED"),
        "the failure is explained: {}",
        r.stdout
    );
    assert!(r.stdout.contains("2 passed, 1 failed"), "{}", r.stdout);
}

#[test]
fn coverage_reports_per_namespace_and_as_prometheus_text() {
    let r = run(&["coverage", &ci(), "-o", "json"]);
    let v: Value = serde_json::from_str(&r.stdout).expect("json");
    let shop = v["namespaces"]
        .as_array()
        .expect("list")
        .iter()
        .find(|n| n["namespace"] == "shop")
        .expect("shop")
        .clone();
    assert_eq!(shop["default_deny_ingress"], true);
    assert_eq!(shop["isolated_ingress"], 3);
    assert_eq!(shop["policies"], 3);
    let p = run(&["coverage", &ci(), "-o", "prometheus"]);
    assert!(
        p.stdout.contains(
            "bulkhead_namespace_default_deny{namespace=\"shop\",direction=\"ingress\"} 1"
        ),
        "{}",
        p.stdout
    );
    assert!(p.stdout.contains("# TYPE bulkhead_namespace_pods gauge"));
}

#[test]
fn scaffold_writes_policies_that_really_allow_dns() {
    let s = run(&["scaffold", "shop"]);
    assert_eq!(s.code, 0);
    let dir = std::env::temp_dir().join(format!("bulkhead-scaffold-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("scaffold.yaml"), &s.stdout).expect("write");
    std::fs::copy(fixture("ci/base.yaml"), dir.join("base.yaml")).expect("copy");
    let d = dir.to_str().expect("utf-8");
    let check = run(&["check", d, "-o", "json"]);
    let v: Value = serde_json::from_str(&check.stdout).expect("json");
    assert!(
        v["diagnostics"]
            .as_array()
            .expect("list")
            .iter()
            .all(|d| d["code"] != "BH101" && d["severity"] != "error"),
        "{v:#}"
    );
    let dns = run(&[
        "explain",
        d,
        "--from",
        "shop/web-0",
        "--to",
        "kube-system/coredns-0",
        "--port",
        "53",
        "--protocol",
        "UDP",
        "-o",
        "json",
    ]);
    let v: Value = serde_json::from_str(&dns.stdout).expect("json");
    assert_eq!(v["verdict"], "allow");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn diff_between_two_git_revisions_reports_exactly_the_changed_workload_pairs() {
    let repo = std::env::temp_dir().join(format!("bulkhead-diff-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&repo);
    std::fs::create_dir_all(&repo).expect("dir");
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q"]);
    git(&["config", "user.email", "ci@example.invalid"]);
    git(&["config", "user.name", "CI"]);
    std::fs::copy(fixture("ci/base.yaml"), repo.join("base.yaml")).expect("copy");
    std::fs::copy(fixture("ci/policies.yaml"), repo.join("policies.yaml")).expect("copy");
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "base"]);
    // The change: web's egress moves from the api to the database, and the database now
    // admits web; so web -> api is removed and web -> db is added.
    let mut changed = std::fs::read_to_string(repo.join("policies.yaml"))
        .expect("read")
        .replace(
            "  - to: [{podSelector: {matchLabels: {app: api}}}]\n    ports: [{port: 8080}]",
            "  - to: [{podSelector: {matchLabels: {app: db}}}]\n    ports: [{port: 5432}]",
        );
    changed.push_str(concat!(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n",
        "metadata: {name: db-from-web, namespace: shop}\n",
        "spec:\n  podSelector: {matchLabels: {app: db}}\n  ingress:\n",
        "  - from: [{podSelector: {matchLabels: {app: web}}}]\n    ports: [{port: pg}]\n",
    ));
    std::fs::write(repo.join("policies.yaml"), changed).expect("write");
    git(&["commit", "-q", "-am", "head"]);
    let r = repo.to_str().expect("utf-8");
    let out = run(&["diff", "--git", "HEAD~1..HEAD", r, "-o", "json"]);
    let v: Value = serde_json::from_str(&out.stdout).expect("json");
    let pairs = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .expect("list")
            .iter()
            .map(|c| {
                format!(
                    "{} -> {} {}/{}",
                    c["from"].as_str().unwrap_or(""),
                    c["to"].as_str().unwrap_or(""),
                    c["protocol"].as_str().unwrap_or(""),
                    c["ports"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    assert_eq!(
        pairs("removed"),
        vec!["shop/pod/web-0 -> shop/pod/api-0 TCP/8080"]
    );
    assert_eq!(
        pairs("added"),
        vec!["shop/pod/web-0 -> shop/pod/db-0 TCP/5432"]
    );
    let md = run(&["diff", "--git", "HEAD~1..HEAD", r]);
    assert!(
        md.stdout.contains("**Removed access** (1)"),
        "{}",
        md.stdout
    );
    assert!(
        md.stdout
            .contains("NetworkPolicy shop/api-from-web ingress[0]"),
        "responsible policies are named: {}",
        md.stdout
    );
    assert_eq!(
        run(&["diff", "--git", "HEAD~1..HEAD", r, "--fail-on-new-access"]).code,
        1,
        "web -> db is new access"
    );
    assert_eq!(
        run(&["diff", "--git", "HEAD~1..HEAD", r]).code,
        0,
        "without the flag a diff is a report"
    );
    assert_eq!(
        run(&["diff", "--git", "HEAD~1..HEAD~1", r, "--fail-on-new-access"]).code,
        0,
        "no change, no new access"
    );
    let _ = std::fs::remove_dir_all(&repo);
}

/// A policy defined in two files of one side: `diff` says which definition counts, so a
/// difference it causes does not look like unexplained drift.
#[test]
fn diff_names_objects_defined_twice_on_a_side() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (base, head) = (dir.path().join("base"), dir.path().join("head"));
    let policy = |port: u16| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: web, namespace: shop}}\nspec:\n  podSelector: {{}}\n  ingress: [{{ports: [{{port: {port}}}]}}]\n"
        )
    };
    std::fs::create_dir_all(&base).expect("mkdir");
    std::fs::create_dir_all(&head).expect("mkdir");
    std::fs::write(base.join("a.yaml"), policy(80)).expect("write");
    std::fs::write(head.join("a.yaml"), policy(80)).expect("write");
    std::fs::write(head.join("b.yaml"), policy(443)).expect("write");
    let out = run(&[
        "diff",
        "--base",
        base.to_str().expect("utf-8"),
        "--head",
        head.to_str().expect("utf-8"),
        "--fail-on-drift",
    ]);
    // The head's first definition (a.yaml) counts, as the loader's rule says: no drift.
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("warning: the head snapshot: ")
            && out.stderr.contains("b.yaml:")
            && out.stderr.contains("is also defined at")
            && out.stderr.contains("[BH010]"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("the base snapshot: "),
        "{}",
        out.stderr
    );
}

#[test]
fn map_html_is_one_self_contained_page_with_every_endpoint() {
    let r = run(&["map", &ci(), "--by", "workload", "-o", "html"]);
    assert_eq!(r.code, 0);
    let page = &r.stdout;
    assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"));
    assert!(
        !page.contains("http://") || page.matches("http://").count() == 1,
        "only the SVG namespace, no external resources"
    );
    assert!(!page.contains("<script src"), "no external scripts");
    let json: Value =
        serde_json::from_str(&run(&["map", &ci(), "--by", "workload", "-o", "json"]).stdout)
            .expect("json");
    let mut pairs: Vec<(String, String)> = json["connections"]
        .as_array()
        .expect("list")
        .iter()
        .map(|c| {
            (
                c["from"].as_str().unwrap_or("").to_string(),
                c["to"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    pairs.dedup();
    assert_eq!(
        page.matches("<td class=\"allow\"").count(),
        pairs.len(),
        "one green cell per allowed pair"
    );
    // The database is reached by nobody but is still drawn: a compartment is visible too.
    assert!(
        page.contains("data-name=\"shop/pod/db-0\""),
        "every endpoint is a node"
    );
}

#[test]
fn audit_replays_recorded_flows_and_names_what_would_be_denied() {
    let flows = fixture("ci-flows.jsonl");
    let flows = flows.to_str().expect("utf-8");
    let r = run(&["audit", &ci(), "--flows", flows, "-o", "json"]);
    assert_eq!(r.code, 0, "a report, not a failure, without --fail-on-deny");
    let v: Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(v["flows"], 4);
    assert_eq!(v["allowed"], 1, "web -> api on 8080 is allowed");
    let denied: Vec<String> = v["would_deny"]
        .as_array()
        .expect("list")
        .iter()
        .map(|d| {
            format!(
                "{} -> {} {}/{} x{}",
                d["from"].as_str().unwrap_or(""),
                d["to"].as_str().unwrap_or(""),
                d["protocol"].as_str().unwrap_or(""),
                d["port"],
                d["seen"]
            )
        })
        .collect();
    assert_eq!(
        denied,
        vec!["shop/pod/web-0 -> shop/pod/db-0 TCP/5432 x4"],
        "grouped per flow, packets counted"
    );
    // A pod name the snapshot does not have is unresolved: not evaluated, never "allowed",
    // and not guessed from an address that belongs to another pod now.
    assert_eq!(v["unresolved_records"], 1, "{v}");
    assert!(
        v["unresolved"][0]["reason"]
            .as_str()
            .is_some_and(|u| u.contains("shop/api-7")),
        "{v}"
    );
    assert_eq!(v["bad_lines"], 1);
    assert!(
        r.stderr.contains("ci-flows.jsonl:6: not a flow record"),
        "{}",
        r.stderr
    );
    assert_eq!(
        run(&["audit", &ci(), "--flows", flows, "--fail-on-deny"]).code,
        1
    );
    let human = run(&["audit", &ci(), "--flows", flows]);
    assert!(
        human
            .stdout
            .contains("WOULD DENY  shop/pod/web-0 -> shop/pod/db-0 TCP/5432"),
        "{}",
        human.stdout
    );
    assert!(
        human
            .stdout
            .contains("ingress: NetworkPolicy shop/default-deny"),
        "{}",
        human.stdout
    );
}

#[test]
fn generate_proposes_least_privilege_that_allows_exactly_the_observed_flows() {
    let dir = std::env::temp_dir().join(format!("bulkhead-generate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::copy(fixture("ci/base.yaml"), dir.join("base.yaml")).expect("copy");
    let flows = fixture("ci-flows.jsonl");
    let (d, f) = (dir.to_str().expect("utf-8"), flows.to_str().expect("utf-8"));
    let generated = run(&["generate", d, "--flows", f]);
    assert_eq!(generated.code, 0, "{}", generated.stderr);
    assert!(
        generated
            .stderr
            .contains("5 policies from 4 flow record(s)"),
        "{}",
        generated.stderr
    );
    assert!(
        generated
            .stdout
            .contains("#   0 observed flow(s) denied by the snapshot's policies plus these"),
        "the built-in verification is printed with the output"
    );
    std::fs::write(dir.join("generated.yaml"), &generated.stdout).expect("write");
    // The proposal is valid and lint-clean (it brings its namespace default deny and DNS), and
    // lets every observed flow through (the record naming a pod the snapshot lacks stays
    // unresolved, never guessed)...
    let (code, diagnostics) = check_json(d);
    assert_eq!(code, 0, "{diagnostics:#?}");
    let codes: Vec<&str> = diagnostics
        .iter()
        .filter_map(|x| x["code"].as_str())
        .filter(|c| c.starts_with("BH1"))
        .collect();
    assert!(codes.is_empty(), "lint-clean: {codes:?}");
    let audit = run(&[
        "audit",
        d,
        "--flows",
        f,
        "-o",
        "json",
        "--fail-on-deny",
        "--allow-unresolved",
    ]);
    let report: Value = serde_json::from_str(&audit.stdout).expect("json");
    assert_eq!(
        (
            audit.code,
            &report["allowed"],
            &report["unresolved_records"]
        ),
        (0, &Value::from(3), &Value::from(1)),
        "{report}"
    );
    // ...and nothing that was not observed.
    for (from, to, port) in [
        ("shop/api-0", "shop/db-0", "5432"),
        ("shop/db-0", "shop/web-0", "8080"),
        ("shop/web-0", "shop/db-0", "5433"),
    ] {
        let explain = run(&[
            "explain",
            d,
            "--from",
            from,
            "--to",
            to,
            "--port",
            port,
            "--fail-on-deny",
        ]);
        assert_eq!(
            explain.code, 1,
            "{from} -> {to}:{port} was never observed: {}",
            explain.stdout
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `agent status` reads what the running agent wrote in its state directory (no root needed
/// to read a copy): every part the rollout needs, for people and as JSON; no status is exit 2.
#[test]
fn agent_status_shows_modes_audits_break_glass_and_denials() {
    let dir = std::env::temp_dir().join(format!("bulkhead-status-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let state = dir.to_str().expect("utf-8");
    let missing = run(&["agent", "status", "--state-dir", state]);
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(
        missing.stderr.contains("no agent status in"),
        "{}",
        missing.stderr
    );
    let written = serde_json::json!({
        "node": "node-1",
        "written_at": 1.0,
        "pid": 999_999_999u64,
        "source": "kubernetes",
        "last_applied_revision": 42,
        "node_mode": "enforce",
        "break_glass": {"node": false, "cluster": "namespace(s) billing (audit mode) (ConfigMap bulkhead-system/break-glass: drill)"},
        "namespaces": {
            "billing": {"mode": "audit", "reason": "cluster break-glass", "denied_connections": 0},
            "shop": {"mode": "rolled-back", "reason": "12 connection(s) the previous revision allowed were denied within 4 s of revision 41", "denied_connections": 15},
            "web": {"mode": "enforce", "denied_connections": 3}
        },
        "audited_policies": ["NetworkPolicy shop/db-ingress"],
        "rollback": {"threshold": 10, "window_seconds": 60.0}
    });
    std::fs::write(dir.join("status.json"), written.to_string()).expect("write");
    let text = run(&["agent", "status", "--state-dir", state]);
    assert_eq!(text.code, 0, "{text:?}");
    for expected in [
        "node node-1: enforce (kubernetes), revision 42",
        "(not running)",
        "break-glass: node off, cluster namespace(s) billing",
        "automated rollback: 10 newly denied connection(s) within 60 s",
        "NetworkPolicy shop/db-ingress",
        "rolled-back",
        "12 connection(s) the previous revision allowed",
    ] {
        assert!(
            text.stdout.contains(expected),
            "{expected:?} in\n{}",
            text.stdout
        );
    }
    let shop = text
        .stdout
        .lines()
        .find(|l| l.starts_with("shop "))
        .expect("a line for shop");
    assert!(shop.contains(" 15 "), "{shop}");
    let json = run(&["agent", "status", "-o", "json", "--state-dir", state]);
    assert_eq!(json.code, 0);
    let value: Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(value["namespaces"]["shop"]["mode"], "rolled-back");
    assert_eq!(value["agent_running"], false);
    assert_eq!(value["last_applied_revision"], 42);
    let _ = std::fs::remove_dir_all(&dir);
}
