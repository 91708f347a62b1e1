//! The privileged suite: real pods (network namespaces wired by the real CNI plugins), the real
//! agent, the real kernel. Every conformance probe the kernel can express is sent as a real
//! packet and the kernel's outcome must equal the engine's verdict.
//!
//! Runs as root (CI does); without root it prints SKIPPED, and with
//! BULKHEAD_REQUIRE_PRIVILEGED=1 (set by scripts/test.sh) it fails instead.

#[path = "dataplane/lab.rs"]
mod lab;

use bulkhead_engine::{Engine, EngineOptions, Flow};
use bulkhead_k8s::{Input, LoadOptions, load};
use bulkhead_model::Protocol;
use lab::{Lab, NODE};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The suite changes host state (one nft table, ip_forward): its tests run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn conformance_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance")
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Expectations {
    cluster: String,
    expectations: Vec<Probe>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct Probe {
    from: String,
    to: String,
    protocol: String,
    port: Option<u16>,
}

fn yaml<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).expect("readable");
    let docs = bulkhead_k8s::yaml_tree::parse_documents(&text);
    let root = docs
        .into_iter()
        .next()
        .and_then(Result::ok)
        .and_then(|d| d.root)
        .expect("a document");
    serde_json::from_value(root.to_json()).expect("shape")
}

/// The cluster manifests with every pod on the lab's single node: pod-to-pod verdicts never
/// depend on the node, and all lab namespaces live on this host.
fn on_one_node(cluster_yaml: &str) -> String {
    cluster_yaml
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("nodeName:") {
                format!("{}nodeName: {NODE}", &l[..l.len() - l.trim_start().len()])
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn write_manifests(dir: &Path, cluster: &str, policies: &str) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(dir.join("cluster.yaml"), cluster).expect("write");
    std::fs::write(dir.join("policies.yaml"), policies).expect("write");
}

fn agent_once(dir: &Path) -> Result<(), String> {
    let out = Command::new(lab::bulkhead())
        .args(["agent", "--once", "--node", NODE, "--manifests"])
        .arg(dir)
        .output()
        .map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() && !stderr.contains("no host interface") {
        Ok(())
    } else {
        Err(format!("agent --once: {stderr}"))
    }
}

fn wait(mut child: Child) -> bool {
    child.wait().is_ok_and(|s| s.success())
}

/// The pods of a conformance cluster (on this node) as network namespaces, each serving the
/// ports the scenarios probe, and the external addresses and other nodes they name as hosts
/// of their own. Returns the lab and the cluster's manifest text.
fn cluster_lab(
    root: &Path,
    cluster_name: &str,
    scenarios: &[(PathBuf, Expectations)],
) -> (Lab, String) {
    let cluster_text = on_one_node(
        &std::fs::read_to_string(root.join("clusters").join(format!("{cluster_name}.yaml")))
            .expect("cluster"),
    );
    let snapshot = load(
        &[Input::new("cluster.yaml", cluster_text.clone())],
        &LoadOptions::default(),
    );
    let mut lab = Lab::new(&cluster_name[..cluster_name.len().min(6)]);
    let mut ports: BTreeMap<String, (BTreeSet<u16>, BTreeSet<u16>)> = BTreeMap::new();
    for (_, spec) in scenarios {
        for p in &spec.expectations {
            let entry = ports.entry(p.to.clone()).or_default();
            match (p.protocol.as_str(), p.port) {
                ("TCP", Some(port)) => {
                    entry.0.insert(port);
                }
                ("UDP", Some(port)) => {
                    entry.1.insert(port);
                }
                _ => {}
            }
        }
    }
    for pod in snapshot
        .cluster
        .pods
        .iter()
        .filter(|p| !p.host_network && !p.ips.is_empty())
    {
        lab.pod(&pod.key(), pod.ips[0])
            .unwrap_or_else(|e| panic!("{e}"));
        let (tcp, udp) = ports.get(&pod.key()).cloned().unwrap_or_default();
        let tcp: Vec<u16> = tcp.into_iter().collect();
        let udp: Vec<u16> = udp.into_iter().collect();
        lab.serve(&pod.key(), &tcp, &udp)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // External addresses and other nodes the probes name become hosts of their own behind
    // the node (IPv4; the pods' own node is the host itself and stays out).
    let cluster_engine = Engine::new(&snapshot.cluster, EngineOptions::default());
    let referenced: BTreeSet<&str> = scenarios
        .iter()
        .flat_map(|(_, spec)| &spec.expectations)
        .flat_map(|p| [p.from.as_str(), p.to.as_str()])
        .collect();
    // hostNetwork pods are named like pods and are their node: they stay out.
    let explicit =
        |r: &str| r.starts_with("ip:") || r.starts_with("node:") || r.parse::<IpAddr>().is_ok();
    for reference in referenced.into_iter().filter(|r| explicit(r)) {
        let address = match cluster_engine.resolve(reference).map(|r| r.endpoint) {
            Ok(bulkhead_engine::Endpoint::External(ip)) => Some(ip),
            Ok(bulkhead_engine::Endpoint::Node(i)) if snapshot.cluster.nodes[i].name != NODE => {
                snapshot.cluster.nodes[i].ips.first().copied()
            }
            _ => None,
        };
        if let Some(IpAddr::V4(ip)) = address
            && lab
                .external(reference, ip)
                .unwrap_or_else(|e| panic!("{e}"))
        {
            let (tcp, udp) = ports.get(reference).cloned().unwrap_or_default();
            let tcp: Vec<u16> = tcp.into_iter().collect();
            let udp: Vec<u16> = udp.into_iter().collect();
            lab.serve(reference, &tcp, &udp)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    (lab, cluster_text)
}

#[test]
fn real_packets_agree_with_the_engine_on_every_scenario() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !lab::privileged_or_skip("dataplane conformance") {
        return;
    }
    lab::sweep_leftovers();
    let root = conformance_root();
    // Scenarios per cluster, and the ports each cluster's pods must serve.
    let mut by_cluster: BTreeMap<String, Vec<(PathBuf, Expectations)>> = BTreeMap::new();
    for topic in std::fs::read_dir(&root).expect("conformance").flatten() {
        let name = topic.file_name().to_string_lossy().to_string();
        if name == "clusters" || name.ends_with("-validation") {
            continue;
        }
        for scenario in std::fs::read_dir(topic.path()).expect("topic").flatten() {
            let spec: Expectations = yaml(&scenario.path().join("expect.yaml"));
            // Every flow scenario: Kubernetes NetworkPolicy, AdminNetworkPolicy/ClusterNetworkPolicy
            // and Calico tiers all go through the same compiler.
            if spec.cluster != "inline" {
                by_cluster
                    .entry(spec.cluster.clone())
                    .or_default()
                    .push((scenario.path(), spec));
            }
        }
    }
    let has_ping = Command::new("which")
        .arg("ping")
        .output()
        .is_ok_and(|o| o.status.success());
    let (mut total, mut agree) = (0usize, 0usize);
    let mut skipped: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for (cluster_name, mut scenarios) in by_cluster {
        scenarios.sort_by(|a, b| a.0.cmp(&b.0));
        let (lab, cluster_text) = cluster_lab(&root, &cluster_name, &scenarios);
        for (dir, spec) in &scenarios {
            let manifests = std::env::temp_dir().join(format!("{}-manifests", lab.id));
            let policies = std::fs::read_to_string(dir.join("policies.yaml")).expect("policies");
            write_manifests(&manifests, &cluster_text, &policies);
            if let Err(e) = agent_once(&manifests) {
                failures.push(format!("{}: {e}", dir.display()));
                continue;
            }
            let snapshot = load(
                &[
                    Input::new("cluster.yaml", cluster_text.clone()),
                    Input::new("policies.yaml", policies),
                ],
                &LoadOptions::default(),
            );
            // The agent picks its semantics itself (auto); the engine follows the same rule.
            let engine = Engine::new(
                &snapshot.cluster,
                EngineOptions::for_cluster(&snapshot.cluster),
            );
            let mut running = Vec::new();
            for p in &spec.expectations {
                let known = |r: &str| lab.pods.contains_key(r) || lab.externals.contains_key(r);
                let reason = match () {
                    _ if !known(&p.from) || !known(&p.to) => Some(
                        "the pods' own node, a hostNetwork pod, an IPv6 address or one on the machine's own network (not emulated)",
                    ),
                    _ if !lab.pods.contains_key(&p.from) && !lab.pods.contains_key(&p.to) => {
                        Some("no pod on either side")
                    }
                    _ if p.protocol == "SCTP" => Some("SCTP: this kernel has no SCTP support"),
                    _ if p.protocol == "ICMP" && !has_ping => Some("ICMP: no ping on this machine"),
                    _ if p.from == p.to => Some("a pod to itself never leaves its namespace"),
                    _ => None,
                };
                if let Some(reason) = reason {
                    *skipped.entry(reason).or_default() += 1;
                    continue;
                }
                let (src, dst) = (
                    engine.resolve(&p.from).expect("pod"),
                    engine.resolve(&p.to).expect("pod"),
                );
                let protocol: Protocol = p.protocol.parse().expect("protocol");
                let icmp = (protocol == Protocol::Icmp).then_some((8u8, Some(0u8)));
                let expected = engine
                    .evaluate(&Flow {
                        src: src.endpoint,
                        dst: dst.endpoint,
                        protocol,
                        port: p.port,
                        icmp,
                    })
                    .allowed;
                let to_ip: IpAddr = lab
                    .pods
                    .get(&p.to)
                    .or_else(|| lab.externals.get(&p.to))
                    .expect("known")
                    .ip;
                let child = if protocol == Protocol::Icmp {
                    lab.exec(&p.from, &["ping", "-c", "1", "-W", "1", &to_ip.to_string()])
                } else {
                    lab.probe(
                        &p.from,
                        &p.protocol.to_lowercase(),
                        to_ip,
                        p.port.unwrap_or(0),
                        400,
                    )
                };
                running.push((p.clone(), expected, child.expect("spawn probe")));
            }
            for (p, expected, child) in running {
                total += 1;
                let got = wait(child);
                if got == expected {
                    agree += 1;
                } else {
                    failures.push(format!(
                        "{}: {} -> {} {}/{:?}: engine {}, kernel {}",
                        dir.display(),
                        p.from,
                        p.to,
                        p.protocol,
                        p.port,
                        expected,
                        got
                    ));
                }
            }
        }
        drop(lab);
    }
    let skipped_text: Vec<String> = skipped
        .iter()
        .map(|(why, n)| format!("{n} skipped: {why}"))
        .collect();
    println!("dataplane conformance: {total} probes, {agree} agree");
    eprintln!(
        "dataplane conformance: {total} probes, {agree} agree ({})",
        skipped_text.join("; ")
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(
        total > 100 && total == agree,
        "{total} probes, {agree} agree"
    );
}

/// A flow record's source address, destination address and port.
type FlowKey = (String, String, Option<u64>);

/// `policies` with the `k`-th document annotated `bulkhead.io/mode: audit`; `None` past the
/// last document.
fn with_document_audited(policies: &str, k: usize) -> Option<String> {
    let mut documents: Vec<String> = policies
        .split("\n---\n")
        .map(str::to_string)
        .filter(|d| d.contains("kind:"))
        .collect();
    let document = documents.get_mut(k)?;
    let mut lines: Vec<String> = document.lines().map(str::to_string).collect();
    let at = lines.iter().position(|l| l.starts_with("metadata:"))?;
    if lines[at].contains('{') {
        lines[at] = lines[at].replacen('{', "{annotations: {bulkhead.io/mode: audit}, ", 1);
    } else {
        let indent = lines
            .get(at + 1)
            .map_or(2, |l| l.len() - l.trim_start().len());
        lines.insert(
            at + 1,
            format!(
                "{}annotations: {{bulkhead.io/mode: audit}}",
                " ".repeat(indent)
            ),
        );
    }
    *document = lines.join("\n");
    Some(documents.join("\n---\n") + "\n")
}

/// Per-policy audit with real packets on three scenarios (Kubernetes NetworkPolicy,
/// AdminNetworkPolicy over NetworkPolicy, Calico tiers), each of their policies audited in
/// turn: the kernel's verdicts are the engine's with the audited policy not enforced, and each
/// probe's would-deny and would-allow records are the halves where the engine's "what if"
/// verdict differs.
#[test]
fn audited_policies_agree_with_the_engine_with_real_packets() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !lab::privileged_or_skip("per-policy audit conformance") {
        return;
    }
    lab::sweep_leftovers();
    let root = conformance_root();
    let (mut flows, records) = flow_records();
    let (mut probes, mut audited, mut would_records) = (0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    for scenario in [
        "k8s-isolation-and-policyTypes/np-iso-02",
        "anp-layering-with-networkpolicy-and-banp/anp-allow-01",
        "calico-tiers/cal-tier-01",
    ] {
        let dir = root.join(scenario);
        let spec: Expectations = yaml(&dir.join("expect.yaml"));
        let scenarios = vec![(dir.clone(), spec.clone())];
        let (lab, cluster_text) = cluster_lab(&root, &spec.cluster, &scenarios);
        let policies = std::fs::read_to_string(dir.join("policies.yaml")).expect("policies");
        let mut k = 0;
        while let Some(variant) = with_document_audited(&policies, k) {
            k += 1;
            let snapshot = load(
                &[
                    Input::new("cluster.yaml", cluster_text.clone()),
                    Input::new("policies.yaml", variant.clone()),
                ],
                &LoadOptions::default(),
            );
            assert_eq!(
                snapshot.error_count(),
                0,
                "{scenario} #{k}: {:#?}\n{variant}",
                snapshot.diagnostics
            );
            if !snapshot
                .cluster
                .policies
                .iter()
                .any(|p| p.staged == Some(bulkhead_model::StagedAction::Audit))
            {
                continue; // not a policy (a tier, a network set)
            }
            audited += 1;
            let manifests = std::env::temp_dir().join(format!("{}-manifests", lab.id));
            write_manifests(&manifests, &cluster_text, &variant);
            if let Err(e) = agent_once(&manifests) {
                failures.push(format!("{scenario} #{k}: {e}"));
                continue;
            }
            while records.try_recv().is_ok() {}
            let engine = Engine::new(
                &snapshot.cluster,
                EngineOptions::for_cluster(&snapshot.cluster),
            );
            let address = |r: &str| {
                lab.pods
                    .get(r)
                    .or_else(|| lab.externals.get(r))
                    .map(|p| p.ip)
            };
            let mut running = Vec::new();
            for p in &spec.expectations {
                let (Some(from_ip), Some(to_ip)) = (address(&p.from), address(&p.to)) else {
                    continue;
                };
                if p.from == p.to || !matches!(p.protocol.as_str(), "TCP" | "UDP") {
                    continue;
                }
                let (src, dst) = (
                    engine.resolve(&p.from).expect("endpoint").endpoint,
                    engine.resolve(&p.to).expect("endpoint").endpoint,
                );
                let protocol: Protocol = p.protocol.parse().expect("protocol");
                let verdict = engine.evaluate(&Flow {
                    src,
                    dst,
                    protocol,
                    port: p.port,
                    icmp: None,
                });
                let staged = verdict.staged.as_deref().unwrap_or(&verdict);
                // The records the kernel writes: per half it reaches, where the would-be
                // verdict differs (the ingress half only after an allowing egress half; an
                // external address has no half on this node).
                let mut expected = BTreeSet::new();
                for (half, enforced, would, here) in [
                    (
                        "egress",
                        &verdict.egress,
                        &staged.egress,
                        lab.pods.contains_key(&p.from),
                    ),
                    (
                        "ingress",
                        &verdict.ingress,
                        &staged.ingress,
                        lab.pods.contains_key(&p.to)
                            && (verdict.egress.allowed || !lab.pods.contains_key(&p.from)),
                    ),
                ] {
                    if here && enforced.allowed != would.allowed {
                        expected.insert((
                            half.to_string(),
                            if would.allowed {
                                "would-allow"
                            } else {
                                "would-deny"
                            }
                            .to_string(),
                        ));
                    }
                }
                let child = lab
                    .probe(
                        &p.from,
                        &p.protocol.to_lowercase(),
                        to_ip,
                        p.port.unwrap_or(0),
                        400,
                    )
                    .expect("probe");
                running.push((p.clone(), from_ip, to_ip, verdict.allowed, expected, child));
            }
            let mut outcomes = Vec::new();
            for (p, from_ip, to_ip, allowed, expected, child) in running {
                probes += 1;
                let got = wait(child);
                if got != allowed {
                    failures.push(format!(
                        "{scenario} #{k}: {} -> {} {}/{:?}: engine {allowed}, kernel {got}",
                        p.from, p.to, p.protocol, p.port
                    ));
                }
                outcomes.push((p, from_ip, to_ip, expected));
            }
            // Every record of this variant's probes, by flow. The kernel hands NFLOG records
            // over in batches, at the latest after its 1 s flush timeout.
            let mut seen: BTreeMap<FlowKey, BTreeSet<(String, String)>> = BTreeMap::new();
            let deadline = Instant::now() + Duration::from_millis(2500);
            while let Ok(r) =
                records.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                let verdict = r["verdict"].as_str().unwrap_or_default().to_string();
                if verdict.starts_with("would-") {
                    seen.entry((
                        r["src_ip"].as_str().unwrap_or_default().to_string(),
                        r["dst_ip"].as_str().unwrap_or_default().to_string(),
                        r["dst_port"].as_u64(),
                    ))
                    .or_default()
                    .insert((
                        r["direction"].as_str().unwrap_or_default().to_string(),
                        verdict,
                    ));
                }
            }
            for (p, from_ip, to_ip, expected) in outcomes {
                let got = seen
                    .remove(&(
                        from_ip.to_string(),
                        to_ip.to_string(),
                        p.port.map(u64::from),
                    ))
                    .unwrap_or_default();
                would_records += got.len();
                if got != expected {
                    failures.push(format!(
                        "{scenario} #{k}: {} -> {} {}/{:?}: engine's would-be records {expected:?}, kernel's {got:?}",
                        p.from, p.to, p.protocol, p.port
                    ));
                }
            }
        }
        drop(lab);
    }
    flows.kill();
    println!(
        "per-policy audit: {audited} policies audited in turn, {probes} probes, {would_records} would-be records"
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(audited >= 5, "{audited} policies audited");
    assert!(would_records > 0, "no would-be record at all");
}

const TWO_PODS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: client, namespace: x, labels: {app: client}}\nspec: {nodeName: test-node, containers: [{name: c, image: i}]}\nstatus: {phase: Running, podIP: 10.77.0.1, podIPs: [{ip: 10.77.0.1}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: server, namespace: x, labels: {app: server}}\nspec: {nodeName: test-node, containers: [{name: c, image: i}]}\nstatus: {phase: Running, podIP: 10.77.0.2, podIPs: [{ip: 10.77.0.2}]}\n";
const ONLY_81: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: only-81, namespace: x}\nspec:\n  podSelector: {matchLabels: {app: server}}\n  ingress:\n  - ports: [{port: 81}]\n";
const ONLY_80: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: only-81, namespace: x}\nspec:\n  podSelector: {matchLabels: {app: server}}\n  ingress:\n  - ports: [{port: 80}]\n";

fn two_pod_lab(tag: &str) -> Lab {
    let mut lab = Lab::new(tag);
    lab.pod("x/client", "10.77.0.1".parse().expect("ip"))
        .unwrap_or_else(|e| panic!("{e}"));
    lab.pod("x/server", "10.77.0.2".parse().expect("ip"))
        .unwrap_or_else(|e| panic!("{e}"));
    lab.serve("x/server", &[80, 81], &[])
        .unwrap_or_else(|e| panic!("{e}"));
    lab
}

/// A running agent, killed when the test ends (also when it fails).
struct AgentProcess(Child);

impl AgentProcess {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts the long-running agent and waits for its first apply.
/// Two pods (x/client, x/server serving 80 and 81) and an agent enforcing `policies` on them.
fn two_pods_under_agent(tag: &str, policies: &str, extra: &[&str]) -> (Lab, PathBuf, AgentProcess) {
    lab::sweep_leftovers();
    let lab = two_pod_lab(tag);
    let dir = std::env::temp_dir().join(format!("{}-manifests", lab.id));
    write_manifests(&dir, TWO_PODS, policies);
    let agent = start_agent_with(&dir, extra);
    (lab, dir, agent)
}

fn start_agent(dir: &Path) -> AgentProcess {
    start_agent_with(dir, &[])
}

/// The agent on `dir` with more flags, once it has applied its first ruleset.
fn start_agent_with(dir: &Path, extra: &[&str]) -> AgentProcess {
    start_agent_logged(dir, extra).0
}

/// [`start_agent_with`], and the agent's log lines after its first apply, as they come.
fn start_agent_logged(
    dir: &Path,
    extra: &[&str],
) -> (AgentProcess, std::sync::Arc<Mutex<Vec<String>>>) {
    let mut child = Command::new(lab::bulkhead())
        .args(["agent", "--node", NODE, "--poll-ms", "100"])
        .args(extra)
        .arg("--manifests")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut reader = BufReader::new(stderr);
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
        if line.contains("applied ruleset") {
            break;
        }
        line.clear();
    }
    assert!(
        line.contains("applied ruleset"),
        "agent did not apply: {line}"
    );
    // Keep draining stderr so the agent never blocks on a full pipe.
    let log = std::sync::Arc::new(Mutex::new(Vec::new()));
    let lines = log.clone();
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
    (AgentProcess(child), log)
}

#[test]
fn killing_and_restarting_the_agent_never_opens_a_window() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !lab::privileged_or_skip("agent restart") {
        return;
    }
    let (lab, dir, mut agent) = two_pods_under_agent("restart", ONLY_81, &[]);
    let server: IpAddr = "10.77.0.2".parse().expect("ip");
    assert!(
        wait(
            lab.probe("x/client", "tcp", server, 81, 1000)
                .expect("probe")
        ),
        "the allowed port works"
    );
    let deadline = Instant::now() + Duration::from_millis(3000);
    let mut attempts = 0;
    let mut leaked = 0;
    let mut restarted = None;
    while Instant::now() < deadline {
        if attempts == 5 {
            // Kill -9 mid-run: no handler runs, the table must stay in force.
            agent.kill();
            restarted = Some(start_agent(&dir));
        }
        if wait(
            lab.probe("x/client", "tcp", server, 80, 150)
                .expect("probe"),
        ) {
            leaked += 1;
        }
        attempts += 1;
    }
    let mut agent = restarted.expect("restarted during the loop");
    assert!(
        wait(
            lab.probe("x/client", "tcp", server, 81, 1000)
                .expect("probe")
        ),
        "the allowed port still works after the restart"
    );
    agent.kill();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(attempts > 10, "{attempts} probe attempts");
    assert_eq!(
        leaked, 0,
        "a denied flow got through in {leaked} of {attempts} attempts"
    );
}

#[test]
fn tightening_a_policy_cuts_existing_connections() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !lab::privileged_or_skip("policy tightening") {
        return;
    }
    let (lab, dir, mut agent) = two_pods_under_agent("tighten", ONLY_80, &[]);
    let mut hold = lab
        .exec("x/client", &[lab::netprobe(), "hold", "10.77.0.2", "80"])
        .expect("hold");
    let mut lines = BufReader::new(hold.stdout.take().expect("stdout")).lines();
    assert_eq!(
        lines.next().and_then(Result::ok).as_deref(),
        Some("up"),
        "the long-lived connection is established"
    );
    let changed = Instant::now();
    std::fs::write(dir.join("policies.yaml"), ONLY_81).expect("tighten");
    let down = lines.next().and_then(Result::ok);
    let took = changed.elapsed();
    let _ = hold.kill();
    let _ = hold.wait();
    agent.kill();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        down.as_deref(),
        Some("down"),
        "the connection no longer allowed was cut"
    );
    assert!(took < Duration::from_secs(5), "cut after {took:?}");
}

const NO_INGRESS: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: only-81, namespace: x}\nspec:\n  podSelector: {matchLabels: {app: server}}\n  policyTypes: [Ingress]\n";

/// Cutting a thousand connections runs beside the loop: a change written while they are cut
/// is applied as quickly as any other, and every cut is counted.
#[test]
fn tightening_a_thousand_connections_leaves_the_loop_applying_changes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !lab::privileged_or_skip("tightening 1,000 connections") {
        return;
    }
    let (lab, dir, mut agent, metrics) = two_pods_under_agent_with_metrics("cut1000", ONLY_80);
    let server: IpAddr = "10.77.0.2".parse().expect("ip");
    let mut hold = lab
        .exec(
            "x/client",
            &[lab::netprobe(), "hold-many", "10.77.0.2", "80", "1000"],
        )
        .expect("hold-many");
    let mut lines = BufReader::new(hold.stdout.take().expect("stdout")).lines();
    let up = lines.next().and_then(Result::ok);
    assert_eq!(
        up.as_deref(),
        Some("up 1000"),
        "1,000 connections established"
    );
    let allowed_81 = || {
        wait(
            lab.probe("x/client", "tcp", server, 81, 300)
                .expect("probe"),
        )
    };
    let until = |want: bool, within: Duration| {
        let start = Instant::now();
        while start.elapsed() < within {
            if allowed_81() == want {
                return Some(start.elapsed());
            }
        }
        None
    };

    // Change 1 denies port 80: the thousand connections are to be cut.
    let tightened = Instant::now();
    std::fs::write(dir.join("policies.yaml"), ONLY_81).expect("tighten");
    let (down_tx, down_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let line = lines.next().and_then(Result::ok);
        let _ = down_tx.send((line, tightened.elapsed()));
    });
    let first = until(true, Duration::from_secs(5));
    // Change 2, written at once: denies port 81 too.
    let second_written = Instant::now();
    std::fs::write(dir.join("policies.yaml"), NO_INGRESS).expect("second change");
    let second = until(false, Duration::from_secs(5)).map(|_| second_written.elapsed());
    let down = down_rx.recv_timeout(Duration::from_secs(30)).ok();
    let counted = wait_for_counter(
        &metrics.path,
        "bulkhead_agent_tightened_connections_total",
        1000,
        Duration::from_secs(8),
    );
    let _ = hold.kill();
    let _ = hold.wait();
    agent.kill();
    let _ = std::fs::remove_dir_all(&dir);
    println!("change 1 (cuts 1,000 connections) seen applied after {first:?}");
    println!("change 2 applied {second:?} after it was written");
    println!("all 1,000 connections down: {down:?}; counted: {counted:?}");
    assert!(first.is_some(), "the tightening change was applied");
    assert!(second.is_some(), "the change written meanwhile was applied");
    let (line, _) = down.expect("the connections went down within 30 s");
    assert_eq!(line.as_deref(), Some("down"), "every connection was cut");
    assert!(counted.is_some(), "the cuts were counted in the metrics");
}

#[test]
fn pods_behind_a_bridge_are_enforced_by_address() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !lab::privileged_or_skip("bridge + br_netfilter") {
        return;
    }
    lab::sweep_leftovers();
    let mut lab = Lab::bridged("bridge");
    lab.pod("x/client", "10.77.0.1".parse().expect("ip"))
        .unwrap_or_else(|e| panic!("{e}"));
    lab.pod("x/server", "10.77.0.2".parse().expect("ip"))
        .unwrap_or_else(|e| panic!("{e}"));
    lab.serve("x/server", &[80, 81], &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = std::env::temp_dir().join(format!("{}-manifests", lab.id));
    write_manifests(&dir, TWO_PODS, ONLY_81);
    let server: IpAddr = "10.77.0.2".parse().expect("ip");
    assert!(
        wait(
            lab.probe("x/client", "tcp", server, 80, 1000)
                .expect("probe")
        ),
        "before enforcement the bridge carries traffic"
    );
    agent_once(&dir).unwrap_or_else(|e| panic!("{e}"));
    let rules = Command::new("nft")
        .args(["list", "map", "inet", "bulkhead", "ingress_address4"])
        .output()
        .expect("nft");
    assert!(
        String::from_utf8_lossy(&rules.stdout).contains("10.77.0.2"),
        "dispatched by address behind the bridge"
    );
    assert!(
        wait(
            lab.probe("x/client", "tcp", server, 81, 1000)
                .expect("probe")
        ),
        "allowed port"
    );
    assert!(
        !wait(
            lab.probe("x/client", "tcp", server, 80, 400)
                .expect("probe")
        ),
        "denied port"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn metrics() -> String {
    let out = Command::new(lab::bulkhead())
        .args(["agent", "metrics"])
        .output()
        .expect("bulkhead runs");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn bulkhead_ok(args: &[&str]) -> String {
    let out = Command::new(lab::bulkhead())
        .args(args)
        .output()
        .expect("bulkhead runs");
    assert!(
        out.status.success(),
        "bulkhead {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Audit mode lets would-be denies through and logs them, enforcement then drops and logs them,
/// and break-glass opens everything at once (kept across a reconcile) until it is turned off.
#[test]
fn audit_mode_flow_logs_and_break_glass_with_real_packets() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !lab::privileged_or_skip("audit, flow logs and break-glass") {
        return;
    }
    lab::sweep_leftovers();
    let lab = two_pod_lab("audit");
    let dir = std::env::temp_dir().join(format!("{}-manifests", lab.id));
    let state = std::env::temp_dir().join(format!("{}-state", lab.id));
    let _ = std::fs::remove_dir_all(&state);
    write_manifests(&dir, TWO_PODS, ONLY_81);
    let (manifests, state_dir) = (
        dir.to_str().expect("utf-8").to_string(),
        state.to_str().expect("utf-8").to_string(),
    );
    let once = |extra: &[&str]| {
        let mut args = vec![
            "agent",
            "--once",
            "--node",
            NODE,
            "--manifests",
            &manifests,
            "--state-dir",
            &state_dir,
        ];
        args.extend(extra);
        bulkhead_ok(&args);
    };
    let server: IpAddr = "10.77.0.2".parse().expect("ip");
    let connects = |port| {
        wait(
            lab.probe("x/client", "tcp", server, port, 600)
                .expect("probe"),
        )
    };

    // The flow log reader, bound before any packet is sent.
    let (mut flows, records) = flow_records();
    let next_record_for_port_80 = |verdict: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Ok(r) = records.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            if r["dst_port"] == 80 && r["verdict"] == verdict {
                return Some(r);
            }
        }
        None
    };

    once(&["--audit"]);
    assert!(
        connects(80),
        "audit mode lets the would-be denied flow through"
    );
    let audit = next_record_for_port_80("would-deny").expect("a would-deny record");
    assert_eq!(audit["dst"], "x/server", "the deciding pod: {audit}");
    assert_eq!(audit["direction"], "ingress");
    assert_eq!(audit["rule"], "end of tier default");
    assert_eq!(audit["src_ip"], "10.77.0.1");
    assert_eq!(audit["dst_ip"], "10.77.0.2");
    assert_eq!(audit["protocol"], "TCP");
    // The recorded flow log is what `bulkhead audit` reads: replayed against the manifests, it
    // names the flow the policies would deny.
    let log = dir.with_extension("flows.jsonl");
    std::fs::write(&log, format!("{audit}\n")).expect("write flow log");
    let replay = Command::new(lab::bulkhead())
        .args(["audit", &manifests, "--flows"])
        .arg(&log)
        .args(["-o", "json", "--fail-on-deny"])
        .output()
        .expect("audit runs");
    let _ = std::fs::remove_file(&log);
    let report: serde_json::Value = serde_json::from_slice(&replay.stdout).expect("audit json");
    assert_eq!(replay.status.code(), Some(1), "{report}");
    assert_eq!(report["would_deny"][0]["from"], "x/pod/client", "{report}");
    assert_eq!(report["would_deny"][0]["to"], "x/pod/server", "{report}");
    assert_eq!(report["would_deny"][0]["port"], 80, "{report}");

    once(&[]);
    assert!(!connects(80), "enforcing drops it");
    assert!(connects(81), "the allowed port works");
    let deny = next_record_for_port_80("deny").expect("a deny record");
    assert_eq!(deny["dst"], "x/server");
    let exposition = metrics();
    let denied = exposition
        .lines()
        .find(|l| {
            l.starts_with("bulkhead_denied_packets_total{direction=\"ingress\",namespace=\"x\",pod=\"server\",rule=\"end of tier default\",audit=\"false\"}")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(
        denied.is_some_and(|n| n > 0),
        "the kernel counted the denies: {exposition}"
    );
    assert!(exposition.contains("bulkhead_audit_mode 0"), "{exposition}");

    // One namespace under audit while the rest is enforced.
    once(&["--audit-namespace", "x"]);
    assert!(connects(80), "the namespace under audit lets it through");
    let audited = next_record_for_port_80("would-deny").expect("a would-deny record");
    assert_eq!(audited["dst"], "x/server");
    assert!(
        metrics().contains("rule=\"end of tier default\",audit=\"true\"}"),
        "{}",
        metrics()
    );

    bulkhead_ok(&["agent", "break-glass", "on", "--state-dir", &state_dir]);
    assert!(connects(80), "break-glass opens everything");
    once(&[]);
    assert!(connects(80), "a reconcile keeps break-glass on");
    assert!(metrics().contains("bulkhead_break_glass 1"));
    bulkhead_ok(&["agent", "break-glass", "off", "--state-dir", &state_dir]);
    assert!(!connects(80), "enforcement is back");
    assert!(connects(81));

    flows.kill();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&state);
}

const ONLY_81_AUDITED: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: only-81\n  namespace: x\n  annotations: {bulkhead.io/mode: audit}\nspec:\n  podSelector: {matchLabels: {app: server}}\n  ingress:\n  - ports: [{port: 81}]\n";
const ALLOW_80_AUDITED: &str = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: allow-80\n  namespace: x\n  annotations: {bulkhead.io/mode: audit}\nspec:\n  podSelector: {matchLabels: {app: server}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: client}}}]\n    ports: [{port: 80}]\n";

/// Per-policy audit with real packets: an audited policy that would deny a probe lets it
/// through and the flow log names it as WOULD-DENY; promoting it (the annotation removed)
/// denies the probe; an audited policy that would open a denied port leaves it denied and
/// logs WOULD-ALLOW with its rule.
#[test]
fn an_audited_policy_logs_what_it_would_deny_and_enforces_once_promoted() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !lab::privileged_or_skip("per-policy audit") {
        return;
    }
    let (mut flows, records) = flow_records();
    let (lab, dir, mut agent) = two_pods_under_agent("polaudit", ONLY_81_AUDITED, &[]);
    let server: IpAddr = "10.77.0.2".parse().expect("ip");
    let connects = |port| {
        wait(
            lab.probe("x/client", "tcp", server, port, 600)
                .expect("probe"),
        )
    };
    let next_record_within = |port: u16, verdict: &str, within: Duration| {
        let deadline = Instant::now() + within;
        while let Ok(r) = records.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            if r["dst_port"] == port && r["verdict"] == verdict {
                return Some(r);
            }
        }
        None
    };
    let next_record = |port, verdict| next_record_within(port, verdict, Duration::from_secs(5));

    assert!(connects(80), "the audited policy is not enforced");
    let would = next_record(80, "would-deny").expect("a would-deny record");
    assert_eq!(would["dst"], "x/server", "{would}");
    assert_eq!(would["direction"], "ingress", "{would}");
    assert_eq!(
        would["rule"], "end of tier default (NetworkPolicy x/only-81)",
        "the audited policy that would deny: {would}"
    );
    assert!(connects(81), "what it allows passes");

    // Promote: the same policy without the annotation.
    let promoted = Instant::now();
    std::fs::write(dir.join("policies.yaml"), ONLY_81).expect("promote");
    let deadline = Instant::now() + Duration::from_secs(5);
    while connects(80) {
        assert!(
            Instant::now() < deadline,
            "promoted policy not enforced within 5 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("promote -> probe denied: {:?}", promoted.elapsed());
    assert!(connects(81), "the promoted policy still allows 81");
    next_record(80, "deny").expect("the promoted policy's deny record");

    // An audited policy that would open port 80 to the client: still denied, WOULD-ALLOW.
    std::fs::write(
        dir.join("policies.yaml"),
        format!("{ONLY_81}{ALLOW_80_AUDITED}"),
    )
    .expect("audit an allow");
    let deadline = Instant::now() + Duration::from_secs(5);
    let opened = loop {
        assert!(!connects(80), "an audited allow opens nothing");
        // Probes sent before the agent applied the change log only their deny.
        if let Some(r) = next_record_within(80, "would-allow", Duration::from_millis(500)) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "no would-allow record within 5 s"
        );
    };
    assert_eq!(opened["policy"], "NetworkPolicy x/allow-80", "{opened}");
    assert_eq!(opened["rule"], "ingress[0]", "{opened}");

    agent.kill();
    flows.kill();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Automated rollback with real packets: a bad policy denies the server's client on port 80,
/// a bounded probe loop (10 s) drives newly denied connections over the threshold, the
/// namespace goes to audit and the probes pass again; the metric, the log and `agent status`
/// say why. The same flood of connections that were never allowed (port 82) does not.
#[test]
fn a_policy_that_denies_a_services_clients_is_rolled_back_and_a_flood_of_old_denies_is_not() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !lab::privileged_or_skip("automated rollback") {
        return;
    }
    lab::sweep_leftovers();
    let lab = two_pod_lab("rollback");
    let dir = std::env::temp_dir().join(format!("{}-manifests", lab.id));
    let state = std::env::temp_dir().join(format!("{}-state", lab.id));
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state).expect("state dir");
    write_manifests(&dir, TWO_PODS, ONLY_80);
    let state_dir = state.to_str().expect("utf-8").to_string();
    let metrics_file = state.join("metrics.prom");
    let (mut agent, log) = start_agent_logged(
        &dir,
        &[
            "--rollback-after",
            "5",
            "--rollback-window",
            "30",
            "--state-dir",
            &state_dir,
            "--metrics-file",
            metrics_file.to_str().expect("utf-8"),
        ],
    );
    let server: IpAddr = "10.77.0.2".parse().expect("ip");
    let connects = |port| {
        wait(
            lab.probe("x/client", "tcp", server, port, 400)
                .expect("probe"),
        )
    };
    let status = || {
        let out = Command::new(lab::bulkhead())
            .args(["agent", "status", "-o", "json", "--state-dir", &state_dir])
            .output()
            .expect("status runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("status json")
    };
    assert!(connects(80), "the client reaches the service");
    assert!(!connects(82), "82 was never allowed");

    // A flood of connections the policies denied before and after a change (port 82) does
    // not roll anything back: a change that keeps port 80 open starts the window.
    std::fs::write(
        dir.join("policies.yaml"),
        ONLY_80.replace("- ports: [{port: 80}]", "- ports: [{port: 80}, {port: 79}]"),
    )
    .expect("harmless change");
    std::thread::sleep(Duration::from_millis(500));
    let flood_until = Instant::now() + Duration::from_secs(4);
    let mut flood = 0;
    while Instant::now() < flood_until {
        assert!(!connects(82));
        flood += 1;
    }
    assert!(
        connects(80),
        "after {flood} denied connections that were never allowed, 80 is still enforced as before"
    );
    std::thread::sleep(Duration::from_secs(1));
    let before = status();
    assert_ne!(before["namespaces"]["x"]["mode"], "rolled-back", "{before}");
    assert!(
        before["namespaces"]["x"]["denied_connections"]
            .as_u64()
            .unwrap_or(0)
            >= 5,
        "the flood was counted: {before}"
    );

    // The bad change: only 81 now, so the service's clients on 80 are denied.
    let changed = Instant::now();
    std::fs::write(dir.join("policies.yaml"), ONLY_81).expect("bad change");
    std::thread::sleep(Duration::from_millis(500));
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut denied, mut back) = (0, None);
    while Instant::now() < deadline {
        if connects(80) {
            if denied > 0 {
                back = Some(changed.elapsed());
                break;
            }
        } else {
            denied += 1;
        }
    }
    let back =
        back.unwrap_or_else(|| panic!("not rolled back within 10 s ({denied} probes denied)"));
    println!("rollback: {denied} probes denied, the namespace in audit {back:?} after the change");
    assert!(
        denied >= 5,
        "rolled back after {denied} denied probes, threshold 5"
    );
    assert!(connects(80), "the probes pass again");
    std::thread::sleep(Duration::from_millis(300));
    let after = status();
    assert_eq!(after["namespaces"]["x"]["mode"], "rolled-back", "{after}");
    let reason = after["namespaces"]["x"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("the previous revision allowed"), "{reason}");
    let said = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        said.iter()
            .any(|l| l.starts_with("ROLLBACK: namespace x goes to audit")
                && l.contains("connection(s) the previous revision allowed")),
        "{said:#?}"
    );
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut exposition = String::new();
    while Instant::now() < deadline {
        exposition = std::fs::read_to_string(&metrics_file).unwrap_or_default();
        if exposition.contains("bulkhead_agent_rolled_back{namespace=\"x\"} 1") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        exposition.contains("bulkhead_agent_rolled_back{namespace=\"x\"} 1")
            && exposition.contains("bulkhead_agent_rollbacks_total 1"),
        "{exposition}"
    );

    // An operator clears it: enforced again.
    bulkhead_ok(&["agent", "clear-rollback", "--state-dir", &state_dir]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while connects(80) {
        assert!(
            Instant::now() < deadline,
            "not enforced again after clear-rollback"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    agent.kill();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&state);
}

/// A pod reaching its own node (kubelet, node-local services) never crosses the forward hook;
/// it meets the egress stage on the input hook, with the engine's rule for it (K8S-ISO-6):
/// the NetworkPolicy layer lets a pod reach its own node, explicit denies (here an
/// AdminNetworkPolicy) still hold. The node address is the host side of the pods' veths (the
/// ptp gateway), which exists only while the test's pods do.
#[test]
fn a_pods_traffic_to_its_own_node_follows_the_engine() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !lab::privileged_or_skip("pod to own node") {
        return;
    }
    lab::sweep_leftovers();
    let lab = two_pod_lab("tonode");
    let gateway: IpAddr = "10.255.255.254".parse().expect("ip");
    let ports = [9101u16, 9102, 9103];
    // Listening sockets on the node side; the kernel completes handshakes without accept().
    let listeners: Vec<std::net::TcpListener> = ports
        .iter()
        .map(|&port| std::net::TcpListener::bind((gateway, port)).expect("bind on the gateway"))
        .collect();
    let node = format!(
        "---\napiVersion: v1\nkind: Node\nmetadata: {{name: {NODE}}}\nstatus: {{addresses: [{{type: InternalIP, address: {gateway}}}]}}\n"
    );
    let policies = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: client-out, namespace: x}\nspec:\n  podSelector: {matchLabels: {app: client}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{ipBlock: {cidr: 10.255.255.254/32}}]\n    ports: [{port: 9101}]\n---\napiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: no-node-9102}\nspec:\n  priority: 10\n  subject: {namespaces: {}}\n  egress:\n  - name: deny-node-9102\n    action: Deny\n    to: [{networks: [10.255.255.254/32]}]\n    ports: [{portNumber: {protocol: TCP, port: 9102}}]\n";
    let dir = std::env::temp_dir().join(format!("{}-manifests", lab.id));
    let cluster = format!("{TWO_PODS}{node}");
    write_manifests(&dir, &cluster, policies);
    let connects =
        |from: &str, port| wait(lab.probe(from, "tcp", gateway, port, 600).expect("probe"));
    assert!(
        connects("x/client", 9102),
        "before enforcement the node port is open"
    );
    let result = agent_once(&dir);
    let snapshot = load(
        &[
            Input::new("cluster.yaml", cluster.clone()),
            Input::new("policies.yaml", policies),
        ],
        &LoadOptions::default(),
    );
    let engine = Engine::new(
        &snapshot.cluster,
        EngineOptions::for_cluster(&snapshot.cluster),
    );
    let mut verdicts = Vec::new();
    for from in ["x/client", "x/server"] {
        for port in ports {
            let src = engine.resolve(from).expect("pod").endpoint;
            let dst = engine
                .resolve(&format!("node:{NODE}"))
                .expect("node")
                .endpoint;
            let expected = engine
                .evaluate(&Flow {
                    src,
                    dst,
                    protocol: Protocol::Tcp,
                    port: Some(port),
                    icmp: None,
                })
                .allowed;
            verdicts.push((from, port, expected, connects(from, port)));
        }
    }
    drop(listeners);
    let _ = std::fs::remove_dir_all(&dir);
    result.unwrap_or_else(|e| panic!("{e}"));
    let expected: Vec<(&str, u16, bool)> = vec![
        ("x/client", 9101, true),
        ("x/client", 9102, false),
        ("x/client", 9103, true),
        ("x/server", 9101, true),
        ("x/server", 9102, false),
        ("x/server", 9103, true),
    ];
    assert_eq!(
        verdicts.iter().map(|v| (v.0, v.1, v.2)).collect::<Vec<_>>(),
        expected,
        "the engine: NetworkPolicy isolation lets a pod reach its own node, the ANP denies 9102"
    );
    for (from, port, engine_says, kernel) in verdicts {
        assert_eq!(kernel, engine_says, "{from} -> own node :{port}");
    }
}

/// The late pod's manifest (x/late, 10.77.0.3) renamed into the agent's directory beside
/// the two pods: whether it reaches `server`:80 within 10 s.
fn late_pod_talks_once_its_manifest_arrives(lab: &Lab, dir: &Path, server: IpAddr) -> bool {
    let with_late = format!(
        "{TWO_PODS}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: late, namespace: x, labels: {{app: late}}}}\nspec: {{nodeName: {NODE}, containers: [{{name: c, image: i}}]}}\nstatus: {{phase: Running, podIP: 10.77.0.3, podIPs: [{{ip: 10.77.0.3}}]}}\n"
    );
    let tmp = dir.join(".cluster.tmp");
    std::fs::write(&tmp, with_late).expect("write");
    std::fs::rename(&tmp, dir.join("cluster.yaml")).expect("rename");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut through = false;
    while Instant::now() < deadline && !through {
        through = wait(lab.probe("x/late", "tcp", server, 80, 300).expect("probe"));
    }
    through
}

#[test]
fn a_pod_interface_that_appears_before_its_rules_sends_nothing_through() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !lab::privileged_or_skip("fail closed for new pods") {
        return;
    }
    lab::sweep_leftovers();
    let mut lab = two_pod_lab("failclosed");
    // A pod the CNI wired before its manifest reached the agent.
    let late = lab
        .pod("x/late", "10.77.0.3".parse().expect("ip"))
        .unwrap_or_else(|e| panic!("{e}"))
        .host_interface
        .clone();
    let dir = std::env::temp_dir().join(format!("{}-manifests", lab.id));
    write_manifests(&dir, TWO_PODS, "");
    // The prefix is the late pod's own interface name, so no other interface on this host is
    // touched (a CNI's prefix, `veth` or `cali`, would cover every pod).
    let mut agent = start_agent_with(&dir, &["--pod-interface-prefix", &late]);
    let server: IpAddr = "10.77.0.2".parse().expect("ip");
    assert!(
        wait(
            lab.probe("x/client", "tcp", server, 80, 1000)
                .expect("probe")
        ),
        "a pod with rules (none isolate it) still talks"
    );
    let mut leaked = 0;
    for _ in 0..5 {
        if wait(lab.probe("x/late", "tcp", server, 80, 300).expect("probe")) {
            leaked += 1;
        }
    }
    assert_eq!(
        leaked, 0,
        "the pod without rules got through {leaked} of 5 times"
    );
    let counted = metrics();
    assert!(
        counted.lines().any(
            |l| l.starts_with("bulkhead_unknown_interface_dropped_packets_total ")
                && !l.ends_with(" 0")
        ),
        "the drops are counted: {counted}"
    );
    // Its manifest arrives (renamed into place): its rules are in, it talks.
    let through = late_pod_talks_once_its_manifest_arrives(&lab, &dir, server);
    agent.kill();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(through, "once its rules are in place, the late pod talks");
}

/// The same behind a bridge, where the interface is every pod's: the node's pod CIDR tells a
/// pod address without rules from the pods the agent knows.
#[test]
fn a_pod_behind_a_bridge_that_appears_before_its_rules_sends_nothing_through() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !lab::privileged_or_skip("fail closed behind a bridge") {
        return;
    }
    lab::sweep_leftovers();
    let mut lab = Lab::bridged("bridgelate");
    for (key, ip) in [
        ("x/client", "10.77.0.1"),
        ("x/server", "10.77.0.2"),
        ("x/late", "10.77.0.3"),
    ] {
        lab.pod(key, ip.parse().expect("ip"))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    lab.serve("x/server", &[80], &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = std::env::temp_dir().join(format!("{}-manifests", lab.id));
    write_manifests(&dir, TWO_PODS, "");
    let mut agent = start_agent_with(&dir, &["--pod-cidr", "10.77.0.0/24"]);
    let server: IpAddr = "10.77.0.2".parse().expect("ip");
    let known_talks = wait(
        lab.probe("x/client", "tcp", server, 80, 1000)
            .expect("probe"),
    );
    let leaked = (0..5)
        .filter(|_| wait(lab.probe("x/late", "tcp", server, 80, 300).expect("probe")))
        .count();
    let counted = metrics();
    let through = late_pod_talks_once_its_manifest_arrives(&lab, &dir, server);
    agent.kill();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        known_talks,
        "a pod with rules (none isolate it) still talks"
    );
    assert_eq!(
        leaked, 0,
        "the pod without rules got through {leaked} of 5 times"
    );
    assert!(
        counted.lines().any(
            |l| l.starts_with("bulkhead_unknown_interface_dropped_packets_total ")
                && !l.ends_with(" 0")
        ),
        "the drops are counted: {counted}"
    );
    assert!(through, "once its rules are in place, the late pod talks");
}

/// `bulkhead agent flows -o json`, bound before the caller sends packets: its records as
/// JSON values (the process ends with the returned guard).
fn flow_records() -> (AgentProcess, std::sync::mpsc::Receiver<serde_json::Value>) {
    let mut reader = Command::new(lab::bulkhead())
        .args(["agent", "flows", "-o", "json", "--duration", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flows starts");
    let mut stderr = BufReader::new(reader.stderr.take().expect("stderr"));
    let mut line = String::new();
    let _ = stderr.read_line(&mut line);
    assert!(line.contains("listening"), "flows: {line}");
    let stdout = reader.stdout.take().expect("stdout");
    let (send, records) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = send.send(v);
            }
        }
    });
    (AgentProcess(reader), records)
}

/// Names nft would choke on if they reached it as text (253 bytes; 60 two-byte letters, 120
/// bytes) are enforced like any other, and metrics and flow logs name them in full.
#[test]
fn pods_with_long_and_non_ascii_names_are_enforced_and_named() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !lab::privileged_or_skip("long and non-ASCII names") {
        return;
    }
    lab::sweep_leftovers();
    let long = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    assert_eq!(long.len(), 253);
    let letters = "ж".repeat(60);
    let mut lab = Lab::new("names");
    lab.pod("x/client", "10.77.0.1".parse().expect("ip"))
        .unwrap_or_else(|e| panic!("{e}"));
    let servers = [
        (long.as_str(), "10.77.0.2"),
        (letters.as_str(), "10.77.0.3"),
    ];
    for (name, ip) in servers {
        let key = format!("x/{name}");
        lab.pod(&key, ip.parse().expect("ip"))
            .unwrap_or_else(|e| panic!("{e}"));
        lab.serve(&key, &[80, 81], &[])
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut cluster = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: client, namespace: x, labels: {app: client}}\nspec: {nodeName: test-node, containers: [{name: c, image: i}]}\nstatus: {phase: Running, podIP: 10.77.0.1, podIPs: [{ip: 10.77.0.1}]}\n",
    );
    for (name, ip) in servers {
        cluster.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: x, labels: {{app: server}}}}\nspec: {{nodeName: {NODE}, containers: [{{name: c, image: i}}]}}\nstatus: {{phase: Running, podIP: {ip}, podIPs: [{{ip: {ip}}}]}}\n"
        ));
    }
    let dir = std::env::temp_dir().join(format!("{}-manifests", lab.id));
    write_manifests(&dir, &cluster, ONLY_81);
    let (_flows, records) = flow_records();
    let mut agent = start_agent(&dir);
    let mut results = Vec::new();
    for (name, ip) in servers {
        let ip: IpAddr = ip.parse().expect("ip");
        let denied = !wait(lab.probe("x/client", "tcp", ip, 80, 400).expect("probe"));
        let allowed = wait(lab.probe("x/client", "tcp", ip, 81, 1000).expect("probe"));
        results.push((name, denied, allowed));
    }
    let mut logged = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while logged.len() < 2 {
        let Ok(r) = records.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            break;
        };
        if r["verdict"] == "deny" && r["dst_port"] == 80 {
            logged.insert(r["dst"].as_str().unwrap_or_default().to_string());
        }
    }
    let exposition = metrics();
    agent.kill();
    let _ = std::fs::remove_dir_all(&dir);
    for (name, denied, allowed) in results {
        assert!(denied, "port 80 of {name} is denied");
        assert!(allowed, "port 81 of {name} is allowed");
        assert!(
            logged.contains(&format!("x/{name}")),
            "a deny record names x/{name}: {logged:?}"
        );
        let counted = exposition
            .lines()
            .filter(|l| l.starts_with("bulkhead_denied_packets_total{"))
            .filter(|l| l.contains(&format!("pod=\"{name}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>();
        assert!(
            counted > 0,
            "metrics count the denies of {name}: {exposition}"
        );
    }
}

#[test]
fn a_connection_opened_during_break_glass_is_cut_when_it_ends() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !lab::privileged_or_skip("break-glass off cuts") {
        return;
    }
    lab::sweep_leftovers();
    let lab = two_pod_lab("glassoff");
    let dir = std::env::temp_dir().join(format!("{}-manifests", lab.id));
    let state = std::env::temp_dir().join(format!("{}-state", lab.id));
    write_manifests(&dir, TWO_PODS, ONLY_81);
    let state_arg = state.to_string_lossy().to_string();
    let mut agent = start_agent_with(&dir, &["--state-dir", &state_arg]);
    bulkhead_ok(&["agent", "break-glass", "on", "--state-dir", &state_arg]);
    // Port 80 is denied by the policy; break-glass lets a connection open anyway.
    let mut hold = lab
        .exec("x/client", &[lab::netprobe(), "hold", "10.77.0.2", "80"])
        .expect("hold");
    let mut lines = BufReader::new(hold.stdout.take().expect("stdout")).lines();
    assert_eq!(
        lines.next().and_then(Result::ok).as_deref(),
        Some("up"),
        "break-glass lets the denied connection open"
    );
    let ended = Instant::now();
    bulkhead_ok(&["agent", "break-glass", "off", "--state-dir", &state_arg]);
    let down = lines.next().and_then(Result::ok);
    let took = ended.elapsed();
    let _ = hold.kill();
    let _ = hold.wait();
    agent.kill();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&state);
    assert_eq!(down.as_deref(), Some("down"), "cut when break-glass ended");
    println!("break-glass off -> connection cut in {took:?}");
    assert!(took < Duration::from_secs(5), "cut after {took:?}");
}

/// The agent's metrics file in a directory of the test's own (mode 0755: the agent refuses
/// directories others can write, like /tmp), removed when the test ends.
struct MetricsFile {
    dir: PathBuf,
    path: PathBuf,
}

impl Drop for MetricsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl MetricsFile {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("bh-{tag}-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("metrics dir");
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        MetricsFile {
            path: dir.join("bulkhead.prom"),
            dir,
        }
    }
}

/// [`two_pods_under_agent`] with the agent writing `--metrics-file`.
fn two_pods_under_agent_with_metrics(
    tag: &str,
    policies: &str,
) -> (Lab, PathBuf, AgentProcess, MetricsFile) {
    let metrics = MetricsFile::new(tag);
    let flag = metrics.path.to_string_lossy().into_owned();
    let (lab, manifests, agent) = two_pods_under_agent(tag, policies, &["--metrics-file", &flag]);
    (lab, manifests, agent, metrics)
}

/// The value of a counter in the agent's metrics file once it reaches `at_least` (bounded).
fn wait_for_counter(metrics: &Path, name: &str, at_least: u64, within: Duration) -> Option<u64> {
    let start = Instant::now();
    while start.elapsed() < within {
        let value = std::fs::read_to_string(metrics).ok().and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|rest| rest.trim().parse::<u64>().ok())
            })
        });
        if value.is_some_and(|v| v >= at_least) {
            return value;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The repairs counter in the agent's metrics file, once it reaches `count` (bounded wait).
fn wait_for_repairs(metrics: &Path, count: u64) -> Option<Duration> {
    let start = Instant::now();
    let line = format!("bulkhead_agent_repairs_total {count}");
    while start.elapsed() < Duration::from_secs(5) {
        if std::fs::read_to_string(metrics).is_ok_and(|t| t.lines().any(|l| l == line)) {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// The client of [`TWO_PODS`] as a pod of another node, labelled `app`: its traffic reaches
/// this node (the lab forwards it through the host) and only the server's rules judge it.
fn two_pods_client_elsewhere(app: &str) -> String {
    TWO_PODS
        .replacen(
            "labels: {app: client}",
            &format!("labels: {{app: {app}}}"),
            1,
        )
        .replacen(
            &format!("spec: {{nodeName: {NODE}"),
            "spec: {nodeName: another-node",
            1,
        )
}

const FROM_CLIENTS: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: from-clients, namespace: x}\nspec:\n  podSelector: {matchLabels: {app: server}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: client}}}]\n";

#[test]
fn a_pod_of_another_node_relabelled_is_followed_in_place_with_real_packets() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !lab::privileged_or_skip("in-place updates") {
        return;
    }
    lab::sweep_leftovers();
    let lab = two_pod_lab("inplace");
    let dir = std::env::temp_dir().join(format!("{}-manifests", lab.id));
    write_manifests(&dir, &two_pods_client_elsewhere("client"), FROM_CLIENTS);
    let metrics = MetricsFile::new("inplace");
    let flag = metrics.path.to_string_lossy().into_owned();
    let agent = start_agent_with(&dir, &["--metrics-file", &flag]);
    let server: IpAddr = "10.77.0.2".parse().expect("ip");
    let reaches = || {
        wait(
            lab.probe("x/client", "tcp", server, 80, 100)
                .expect("probe"),
        )
    };
    assert!(
        reaches(),
        "a client elsewhere labelled app=client reaches the server"
    );
    let relabel = |app: &str| {
        let tmp = dir.join(".cluster.tmp");
        std::fs::write(&tmp, two_pods_client_elsewhere(app)).expect("write");
        std::fs::rename(&tmp, dir.join("cluster.yaml")).expect("rename");
    };
    for (round, (app, allowed)) in [("other", false), ("client", true), ("other", false)]
        .into_iter()
        .enumerate()
    {
        let started = Instant::now();
        relabel(app);
        let mut followed = None;
        while started.elapsed() < Duration::from_secs(5) {
            if reaches() == allowed {
                followed = Some(started.elapsed());
                break;
            }
        }
        let Some(took) = followed else {
            panic!(
                "round {round}: app={app} should {}reach the server, still not so after 5 s",
                if allowed { "" } else { "not " }
            );
        };
        println!(
            "client elsewhere relabelled to app={app}: packets follow {:.0} ms after the rename",
            took.as_secs_f64() * 1e3
        );
    }
    // The metrics file is written every 5 s: each relabelling was made in place, and the
    // table was replaced only at start-up.
    assert!(
        wait_for_counter(
            &metrics.path,
            "bulkhead_agent_in_place_updates_total",
            3,
            Duration::from_secs(12)
        )
        .is_some(),
        "three relabellings made in place:\n{}",
        std::fs::read_to_string(&metrics.path).unwrap_or_default()
    );
    assert_eq!(
        wait_for_counter(
            &metrics.path,
            "bulkhead_agent_full_replaces_total",
            1,
            Duration::from_secs(1)
        ),
        Some(1),
        "only the start-up replaced the table"
    );
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_table_deleted_or_changed_by_hand_is_restored() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !lab::privileged_or_skip("table repair") {
        return;
    }
    let (lab, dir, mut agent, metrics) = two_pods_under_agent_with_metrics("repair", ONLY_81);
    let server: IpAddr = "10.77.0.2".parse().expect("ip");
    let denied = |timeout_ms| {
        !wait(
            lab.probe("x/client", "tcp", server, 80, timeout_ms)
                .expect("probe"),
        )
    };
    assert!(denied(400), "denied before");
    let nft = |args: &[&str]| {
        assert!(
            Command::new("nft")
                .args(args)
                .status()
                .expect("nft")
                .success(),
            "nft {args:?}"
        );
    };

    // Deleted by hand.
    nft(&["delete", "table", "inet", "bulkhead"]);
    let restored = wait_for_repairs(&metrics.path, 1);
    let denied_after_delete = denied(400);

    // Changed by another process: a rule that lets everything through, inserted first in
    // the chain every forwarded packet meets.
    nft(&["insert", "rule", "inet", "bulkhead", "forward", "accept"]);
    let reverted = wait_for_repairs(&metrics.path, 2);
    let denied_after_change = denied(400);
    let allowed_still = wait(
        lab.probe("x/client", "tcp", server, 81, 1000)
            .expect("probe"),
    );
    agent.kill();
    let _ = std::fs::remove_dir_all(&dir);
    println!("table deleted by hand -> repair counted after {restored:?}");
    println!("rule inserted by hand -> repair counted after {reverted:?}");
    assert!(
        restored.is_some(),
        "the deleted table was restored and counted"
    );
    assert!(
        denied_after_delete,
        "the denied flow is denied again after the delete"
    );
    assert!(
        reverted.is_some(),
        "the changed table was restored and counted"
    );
    assert!(
        denied_after_change,
        "the denied flow is denied again after the change"
    );
    assert!(allowed_still, "the allowed flow still passes");
}

#[test]
fn a_manifest_written_in_two_halves_is_never_applied_half() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !lab::privileged_or_skip("half-written manifest") {
        return;
    }
    let (lab, dir, mut agent) = two_pods_under_agent("halves", ONLY_81, &[]);
    let server: IpAddr = "10.77.0.2".parse().expect("ip");
    // The first half is valid YAML on its own (a document boundary) and, applied alone,
    // would drop the policy and open port 80.
    let first = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: note, namespace: x}\ndata: {a: b}\n---\n";
    let mut file = std::fs::File::create(dir.join("policies.yaml")).expect("open");
    use std::io::Write as _;
    file.write_all(first.as_bytes()).expect("first half");
    file.flush().expect("flush");
    let pause = Instant::now() + Duration::from_millis(1500);
    let (mut probes, mut leaked, mut dropped) = (0, 0, 0);
    while Instant::now() < pause {
        probes += 1;
        if wait(
            lab.probe("x/client", "tcp", server, 80, 150)
                .expect("probe"),
        ) {
            leaked += 1;
        }
        if !wait(
            lab.probe("x/client", "tcp", server, 81, 500)
                .expect("probe"),
        ) {
            dropped += 1;
        }
    }
    file.write_all(ONLY_81.as_bytes()).expect("second half");
    drop(file);
    std::thread::sleep(Duration::from_millis(500));
    let denied_after = !wait(
        lab.probe("x/client", "tcp", server, 80, 300)
            .expect("probe"),
    );
    let allowed_after = wait(
        lab.probe("x/client", "tcp", server, 81, 1000)
            .expect("probe"),
    );
    agent.kill();
    let _ = std::fs::remove_dir_all(&dir);
    println!("half-written manifest: {probes} probe rounds over the pause");
    assert!(probes >= 3, "{probes} probe rounds");
    assert_eq!(
        leaked, 0,
        "a denied flow got through {leaked} of {probes} times"
    );
    assert_eq!(
        dropped, 0,
        "an allowed flow was dropped {dropped} of {probes} times"
    );
    assert!(
        denied_after && allowed_after,
        "the whole file is in force after"
    );
}

/// Denied packets towards `x/server`, summed over its rules, from `agent metrics`.
fn denied_packets_of_server() -> u64 {
    metrics()
        .lines()
        .filter(|l| {
            l.starts_with("bulkhead_denied_packets_total{")
                && l.contains("pod=\"server\"")
                && l.contains("direction=\"ingress\"")
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

#[test]
fn denied_packet_counters_never_go_back_across_policy_edits_under_a_flood() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !lab::privileged_or_skip("monotonic counters") {
        return;
    }
    let (lab, dir, mut agent) = two_pods_under_agent("counters", ONLY_81, &[]);
    let server: IpAddr = "10.77.0.2".parse().expect("ip");
    // The flood: denied connection attempts to port 80 all along.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        let netns = lab.pods["x/client"].netns.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = Command::new("ip")
                    .args(["netns", "exec", &netns, lab::netprobe(), "probe", "tcp"])
                    .args(["10.77.0.2", "80", "100"])
                    .output();
            }
        })
    };
    // Ten edits of the server's own policy: its ingress chain is rendered again each time.
    let edits = [
        ONLY_81.replace("[{port: 81}]", "[{port: 81}, {port: 82}]"),
        ONLY_81.to_string(),
    ];
    let mut seen = Vec::new();
    std::thread::sleep(Duration::from_millis(500));
    seen.push(denied_packets_of_server());
    for k in 0..10 {
        let tmp = dir.join(".policies.tmp");
        std::fs::write(&tmp, &edits[k % 2]).expect("write");
        std::fs::rename(&tmp, dir.join("policies.yaml")).expect("rename");
        std::thread::sleep(Duration::from_millis(400));
        seen.push(denied_packets_of_server());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = flood.join();
    let still_denied = !wait(
        lab.probe("x/client", "tcp", server, 80, 300)
            .expect("probe"),
    );
    agent.kill();
    let _ = std::fs::remove_dir_all(&dir);
    println!("denied packets of x/server after each of ten edits: {seen:?}");
    assert!(
        seen[seen.len() - 1] > seen[0],
        "the flood was counted: {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[1] >= w[0]),
        "a counter went back: {seen:?}"
    );
    assert!(still_denied);
}
