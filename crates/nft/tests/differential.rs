//! Compiler == engine without root: the ruleset the compiler builds, run through the reference
//! interpreter, must give the engine's verdict for every pod pair and port sampled, on every
//! conformance scenario and on random clusters.

#[path = "../../engine/tests/support/random_cluster.rs"]
mod random_cluster;

use bulkhead_engine::{Endpoint, Engine, EngineOptions, Flow, Semantics};
use bulkhead_k8s::{Input, LoadOptions, load};
use bulkhead_model::{Cluster, Protocol};
use bulkhead_nft::interpret::Packet;
use bulkhead_nft::{CompileOptions, Ruleset, compile};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// One ruleset per node, each pod on a synthetic interface.
struct Dataplane {
    rulesets: BTreeMap<String, Ruleset>,
    interface: BTreeMap<usize, String>,
}

fn build(engine: &Engine<'_>, bridged: bool) -> Dataplane {
    build_auditing(engine, bridged, &BTreeSet::new())
}

fn build_auditing(engine: &Engine<'_>, bridged: bool, audit: &BTreeSet<String>) -> Dataplane {
    let cluster = engine.cluster();
    let mut interface = BTreeMap::new();
    let mut per_node: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (i, pod) in cluster.pods.iter().enumerate() {
        if let Some(node) = &pod.node {
            // A bridged CNI gives every pod the same host interface: the bridge.
            let name = if bridged {
                "br0".to_string()
            } else {
                format!("veth{i}")
            };
            interface.insert(i, name.clone());
            per_node
                .entry(node.clone())
                .or_default()
                .insert(pod.key(), name);
        }
    }
    let rulesets = per_node
        .into_iter()
        .map(|(node, interfaces)| {
            let (ruleset, _) = compile(
                engine,
                &CompileOptions {
                    node: node.clone(),
                    interfaces,
                    audit_namespaces: audit.clone(),
                    pod_interface_prefixes: Vec::new(),
                    pod_cidrs: Vec::new(),
                },
            );
            // Rendering must not fail on anything the compiler builds.
            assert!(bulkhead_nft::render::render(&ruleset).contains("chain forward"));
            (node, ruleset)
        })
        .collect();
    Dataplane {
        rulesets,
        interface,
    }
}

impl Dataplane {
    /// Egress on the source's node, then ingress on the destination's node.
    #[expect(clippy::too_many_arguments, reason = "a packet and where it travels")]
    fn allows(
        &self,
        cluster: &Cluster,
        src: Endpoint,
        dst: Endpoint,
        src_ip: IpAddr,
        dst_ip: IpAddr,
        protocol: Protocol,
        port: Option<u16>,
        icmp: Option<(u8, Option<u8>)>,
    ) -> bool {
        let side = |e: Endpoint| match e {
            Endpoint::Pod(i) => cluster.pods[i]
                .node
                .clone()
                .map(|n| (n, self.interface.get(&i).cloned())),
            _ => None,
        };
        let mut packet = Packet {
            iif: None,
            oif: None,
            src: src_ip,
            dst: dst_ip,
            protocol,
            dport: port,
            icmp,
            // Forwarded traffic: pods and external addresses are never the node's own.
            dst_local: false,
        };
        if let Some((node, iif)) = side(src) {
            packet.iif = iif;
            if !self.rulesets.get(&node).is_none_or(|r| r.allows(&packet)) {
                return false;
            }
        }
        if let Some((node, oif)) = side(dst) {
            packet.iif = None;
            packet.oif = oif;
            if !self.rulesets.get(&node).is_none_or(|r| r.allows(&packet)) {
                return false;
            }
        }
        true
    }
}

fn pod_ip(cluster: &Cluster, e: Endpoint) -> Option<IpAddr> {
    match e {
        Endpoint::Pod(i) => cluster.pods[i].ips.first().copied(),
        Endpoint::External(ip) => Some(ip),
        Endpoint::Node(_) => None,
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "a flow, its dataplane and its audit scope"
)]
fn compare(
    engine: &Engine<'_>,
    plane: &Dataplane,
    audit: &BTreeSet<String>,
    src: Endpoint,
    dst: Endpoint,
    protocol: Protocol,
    port: Option<u16>,
    icmp: Option<(u8, Option<u8>)>,
) -> Result<(), String> {
    let cluster = engine.cluster();
    let (Some(src_ip), Some(dst_ip)) = (pod_ip(cluster, src), pod_ip(cluster, dst)) else {
        return Ok(());
    };
    if src_ip.is_ipv4() != dst_ip.is_ipv4() {
        return Ok(());
    }
    let verdict = engine.evaluate(&Flow {
        src,
        dst,
        protocol,
        port,
        icmp,
    });
    // A pod in a namespace under audit has its denies logged and let through.
    let audited =
        |e: Endpoint| matches!(e, Endpoint::Pod(i) if audit.contains(&cluster.pods[i].namespace));
    let expected = if audit.is_empty() {
        verdict.allowed
    } else {
        (verdict.egress.allowed || audited(src)) && (verdict.ingress.allowed || audited(dst))
    };
    let got = plane.allows(cluster, src, dst, src_ip, dst_ip, protocol, port, icmp);
    if expected == got {
        Ok(())
    } else {
        Err(format!(
            "{src:?} ({src_ip}) -> {dst:?} ({dst_ip}) {protocol}/{port:?}: engine {expected}, nftables {got}"
        ))
    }
}

/// All pod pairs (pod endpoints with an IP, not hostNetwork, not to itself) over sample ports.
fn sweep(
    engine: &Engine<'_>,
    plane: &Dataplane,
    audit: &BTreeSet<String>,
    ports: &[u16],
    externals: &[IpAddr],
) -> Vec<String> {
    let cluster = engine.cluster();
    let pods: Vec<usize> = engine
        .pod_endpoints()
        .into_iter()
        .filter(|&i| !cluster.pods[i].ips.is_empty())
        .collect();
    let mut failures = Vec::new();
    let mut endpoints: Vec<Endpoint> = pods.iter().map(|&i| Endpoint::Pod(i)).collect();
    endpoints.extend(externals.iter().map(|ip| Endpoint::External(*ip)));
    for &s in &endpoints {
        for &d in &endpoints {
            if s == d || matches!((s, d), (Endpoint::External(_), Endpoint::External(_))) {
                continue;
            }
            for protocol in [Protocol::Tcp, Protocol::Udp] {
                for &port in ports {
                    failures.extend(
                        compare(engine, plane, audit, s, d, protocol, Some(port), None).err(),
                    );
                }
            }
            for icmp in [(8, Some(0)), (0, Some(0))] {
                failures.extend(
                    compare(engine, plane, audit, s, d, Protocol::Icmp, None, Some(icmp)).err(),
                );
            }
        }
    }
    failures
}

/// A conformance scenario's cluster and policies, loaded, and the semantics it is judged by.
fn load_scenario(root: &Path, dir: &Path) -> (bulkhead_k8s::load::Snapshot, Semantics) {
    let expect = std::fs::read_to_string(dir.join("expect.yaml")).expect("expect.yaml");
    let field = |name: &str| {
        expect
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} in {}", dir.display()))
            .trim()
            .to_string()
    };
    let (cluster_name, mode) = (field("cluster: "), field("mode: "));
    let cluster_file = if cluster_name == "inline" {
        dir.join("cluster.yaml")
    } else {
        root.join("clusters").join(format!("{cluster_name}.yaml"))
    };
    let read = |p: &Path| {
        Input::new(
            p.display().to_string(),
            std::fs::read_to_string(p).expect("readable"),
        )
    };
    let snapshot = load(
        &[read(&cluster_file), read(&dir.join("policies.yaml"))],
        &LoadOptions::default(),
    );
    let semantics = if mode == "calico" {
        Semantics::Calico
    } else {
        Semantics::Kubernetes
    };
    (snapshot, semantics)
}

fn conformance_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance");
    let mut dirs = Vec::new();
    for topic in std::fs::read_dir(&root).expect("conformance").flatten() {
        for scenario in std::fs::read_dir(topic.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if scenario.path().join("expect.yaml").exists() {
                dirs.push(scenario.path());
            }
        }
    }
    dirs.sort();
    dirs
}

#[test]
fn compiled_rulesets_agree_with_the_engine_on_every_conformance_scenario() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance");
    let mut failures = Vec::new();
    let mut scenarios = 0;
    for dir in conformance_dirs() {
        let (snapshot, semantics) = load_scenario(&root, &dir);
        let engine = Engine::new(
            &snapshot.cluster,
            EngineOptions {
                semantics,
                self_traffic_allowed: true,
            },
        );
        let plane = build(&engine, false);
        let externals: Vec<IpAddr> = ["203.0.113.7", "8.8.8.8", "169.254.169.254"]
            .iter()
            .map(|s| s.parse().expect("ip"))
            .collect();
        for f in sweep(
            &engine,
            &plane,
            &BTreeSet::new(),
            &[53, 80, 81, 443, 5432, 8080, 9090, 5353],
            &externals,
        ) {
            failures.push(format!("{}: {f}", dir.display()));
        }
        scenarios += 1;
    }
    assert!(scenarios > 80, "{scenarios} scenarios");
    assert!(
        failures.is_empty(),
        "{} disagreements, first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn compiled_rulesets_agree_with_the_engine_on_random_clusters(cluster in random_cluster::cluster_strategy(true, true), calico in proptest::bool::ANY, bridged in proptest::bool::ANY, audit_mask in 0usize..16) {
        let semantics = if calico { Semantics::Calico } else { Semantics::Kubernetes };
        let engine = Engine::new(&cluster, EngineOptions { semantics, self_traffic_allowed: true });
        // Some namespaces under audit (most cases: none or one): their denies become would-denies.
        let audit: BTreeSet<String> = random_cluster::NAMESPACES
            .iter()
            .enumerate()
            .filter(|(k, _)| audit_mask & (1 << k) != 0 && audit_mask < 8)
            .map(|(_, n)| n.to_string())
            .collect();
        let plane = build_auditing(&engine, bridged, &audit);
        let externals: Vec<IpAddr> = ["203.0.113.7", "203.0.113.200"].iter().map(|s| s.parse().expect("ip")).collect();
        let failures = sweep(&engine, &plane, &audit, &random_cluster::PORTS, &externals);
        prop_assert!(failures.is_empty(), "{:#?}", &failures[..failures.len().min(5)]);
    }
}

/// The two hops of a flow through the interpreter, each on its own (as the engine's halves):
/// per half, (enforced allowed, would-be allowed), the would-be verdict read from the
/// would-deny and would-allow logs of that hop.
fn hops_with_would(
    plane: &Dataplane,
    cluster: &Cluster,
    src: Endpoint,
    dst: Endpoint,
    packet: &Packet,
) -> [Option<(bool, bool, Vec<String>)>; 2] {
    let side = |e: Endpoint| match e {
        Endpoint::Pod(i) => cluster.pods[i]
            .node
            .clone()
            .map(|n| (n, plane.interface.get(&i).cloned())),
        _ => None,
    };
    let hop = |node: &str, iif: Option<String>, oif: Option<String>| {
        let ruleset = plane.rulesets.get(node)?;
        let mut p = packet.clone();
        p.iif = iif;
        p.oif = oif;
        let e = ruleset.evaluate(&p);
        let mut would = e.allowed;
        for record in &e.would {
            would = !record.deny;
        }
        Some((
            e.allowed,
            would,
            e.would.iter().map(|r| r.rule.clone()).collect(),
        ))
    };
    [
        side(src).and_then(|(n, iif)| hop(&n, iif, None)),
        side(dst).and_then(|(n, oif)| hop(&n, None, oif)),
    ]
}

/// Every conformance scenario with each of its policies audited in turn
/// (`bulkhead.io/mode: audit`): the enforced verdicts follow the other policies, and the
/// would-deny / would-allow logs of the interpreted ruleset give, per half, the engine's
/// "what if" verdict.
#[test]
fn audited_policies_log_the_engines_would_be_verdicts_on_every_conformance_scenario() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance");
    let mut failures = Vec::new();
    let (mut audits, mut would_logs) = (0, 0);
    for dir in conformance_dirs() {
        let (snapshot, semantics) = load_scenario(&root, &dir);
        for k in 0..snapshot.cluster.policies.len() {
            if snapshot.cluster.policies[k].staged.is_some() {
                continue;
            }
            let mut cluster = snapshot.cluster.clone();
            cluster.policies[k].staged = Some(bulkhead_model::StagedAction::Audit);
            let audited = format!(
                "{} {}",
                cluster.policies[k].kind.as_str(),
                cluster.policies[k].key()
            );
            let engine = Engine::new(
                &cluster,
                EngineOptions {
                    semantics,
                    self_traffic_allowed: true,
                },
            );
            let plane = build(&engine, false);
            audits += 1;
            let externals: Vec<IpAddr> = ["203.0.113.7", "169.254.169.254"]
                .iter()
                .map(|s| s.parse().expect("ip"))
                .collect();
            let pods: Vec<usize> = engine
                .pod_endpoints()
                .into_iter()
                .filter(|&i| !cluster.pods[i].ips.is_empty())
                .collect();
            let mut endpoints: Vec<Endpoint> = pods.iter().map(|&i| Endpoint::Pod(i)).collect();
            endpoints.extend(externals.iter().map(|ip| Endpoint::External(*ip)));
            for &src in &endpoints {
                for &dst in &endpoints {
                    if src == dst
                        || matches!((src, dst), (Endpoint::External(_), Endpoint::External(_)))
                    {
                        continue;
                    }
                    let (Some(src_ip), Some(dst_ip)) =
                        (pod_ip(&cluster, src), pod_ip(&cluster, dst))
                    else {
                        continue;
                    };
                    if src_ip.is_ipv4() != dst_ip.is_ipv4() {
                        continue;
                    }
                    for (protocol, port) in [
                        (Protocol::Tcp, 80),
                        (Protocol::Tcp, 443),
                        (Protocol::Tcp, 5432),
                        (Protocol::Udp, 53),
                        (Protocol::Tcp, 8080),
                    ] {
                        let flow = Flow {
                            src,
                            dst,
                            protocol,
                            port: Some(port),
                            icmp: None,
                        };
                        let verdict = engine.evaluate(&flow);
                        let staged = verdict.staged.as_deref().unwrap_or(&verdict);
                        let packet = Packet {
                            iif: None,
                            oif: None,
                            src: src_ip,
                            dst: dst_ip,
                            protocol,
                            dport: Some(port),
                            icmp: None,
                            dst_local: false,
                        };
                        let hops = hops_with_would(&plane, &cluster, src, dst, &packet);
                        let halves = [
                            (&verdict.egress, &staged.egress, "egress"),
                            (&verdict.ingress, &staged.ingress, "ingress"),
                        ];
                        for (hop, (enforced, would, half)) in hops.into_iter().zip(halves) {
                            // A half outside every node (an external address) is not
                            // evaluated by any ruleset.
                            let Some((got_enforced, got_would, logs)) = hop else {
                                continue;
                            };
                            would_logs += logs.len();
                            if (got_enforced, got_would) != (enforced.allowed, would.allowed) {
                                failures.push(format!(
                                    "{} with {audited} audited: {src:?} -> {dst:?} {protocol}/{port} {half}: engine (enforced {}, would {}), nftables (enforced {got_enforced}, would {got_would}; logs {logs:?})",
                                    dir.display(),
                                    enforced.allowed,
                                    would.allowed
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} disagreements, first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(audits > 100, "{audits} audited policies");
    assert!(would_logs > 1000, "only {would_logs} would-be logs");
}
