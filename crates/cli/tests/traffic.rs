//! `bulkhead audit` resolves flow records exactly (issue "Traffic you can trust").

mod support;

use serde_json::Value;
use support::{bulkhead, crate_path, output};

fn path(p: &str) -> String {
    crate_path(p)
}

/// Exit code and standard output.
fn run(args: &[&str]) -> (i32, String) {
    let r = support::run(args);
    (r.code, r.stdout)
}

#[test]
fn the_demo_records_resolve_by_name_and_the_metadata_flow_is_denied() {
    let demo = path("../../examples/three-tier");
    let flows = path("tests/traffic/demo-flows.jsonl");
    let (code, out) = run(&["audit", &demo, "--flows", &flows, "-o", "json"]);
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["unresolved_records"], 0, "{v}");
    assert_eq!(v["allowed"], 1, "frontend -> backend on 8080: {v}");
    let metadata = v["would_deny"]
        .as_array()
        .expect("denied")
        .iter()
        .find(|d| d["to"] == "169.254.169.254")
        .expect("the metadata flow is denied")
        .clone();
    assert_eq!(metadata["from"], "development/deployment/api-client");
    assert!(
        metadata["denied_by"][0]
            .as_str()
            .is_some_and(|r| r.starts_with("egress: NetworkPolicy development/")),
        "{metadata}"
    );
    let (code, _) = run(&["audit", &demo, "--flows", &flows, "--fail-on-deny"]);
    assert_eq!(code, 1);
}

#[test]
fn live_pod_names_find_their_templates_and_unknown_names_stay_unresolved() {
    let demo = path("../../examples/three-tier");
    let dir = tempfile::tempdir().expect("tempdir");
    let flows = dir.path().join("flows.jsonl");
    std::fs::write(
        &flows,
        concat!(
            // A Deployment's live pod name, a StatefulSet ordinal, Calico's aggregated name.
            r#"{"src_ip": "10.1.0.1", "dst_ip": "10.1.0.2", "dst_port": 8080, "protocol": "TCP", "src": "development/frontend-5d8f7c9b4-x7k2p", "dst": "development/backend-6b9f8d7c5-abcde"}"#,
            "\n",
            r#"{"src_ip": "10.1.0.2", "dst_ip": "10.1.0.3", "dst_port": 5432, "protocol": "TCP", "src": "development/backend-6b9f8d7c5-*", "dst": "development/database-0"}"#,
            "\n",
            r#"{"src_ip": "10.1.0.9", "dst_ip": "10.1.0.3", "dst_port": 5432, "protocol": "TCP", "src": "development/cache-0"}"#,
            "\n",
        ),
    )
    .expect("write");
    let flows = flows.to_string_lossy().into_owned();
    let (_, out) = run(&["audit", &demo, "--flows", &flows, "-o", "json"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["allowed"], 2, "{v}");
    assert_eq!(v["unresolved_records"], 1, "{v}");
    assert!(
        v["unresolved"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("development/cache-0"))
    );
    // Unresolved records fail --fail-on-deny unless they are allowed explicitly.
    assert_eq!(
        run(&["audit", &demo, "--flows", &flows, "--fail-on-deny"]).0,
        1
    );
    assert_eq!(
        run(&[
            "audit",
            &demo,
            "--flows",
            &flows,
            "--fail-on-deny",
            "--allow-unresolved"
        ])
        .0,
        0
    );
    let (_, md) = run(&["audit", &demo, "--flows", &flows, "-o", "markdown"]);
    assert!(
        md.contains("**Unresolved**") && md.contains("development/cache-0"),
        "{md}"
    );
}

/// Pod addresses and declared ports of a generated cluster, read back from its pods.yaml.
fn pods_of(pods_yaml: &str) -> Vec<(String, Vec<u16>)> {
    let mut out = Vec::new();
    let mut ports = Vec::new();
    for line in pods_yaml.lines() {
        let line = line.trim();
        if let Some(p) = line
            .split("containerPort: ")
            .nth(1)
            .and_then(|rest| rest.split([',', '}']).next())
            .and_then(|p| p.trim().parse().ok())
        {
            ports.push(p);
        }
        if let Some(ip) = line.strip_prefix("podIP: ") {
            out.push((ip.trim().to_string(), std::mem::take(&mut ports)));
        }
    }
    out
}

#[test]
fn generate_round_trips_on_generated_clusters() {
    for seed in 1..=3u64 {
        let g = bulkhead_bench::generate(bulkhead_bench::size("S").expect("size S"), seed);
        let dir = tempfile::tempdir().expect("tempdir");
        // The workloads without their policies: generate writes the policies.
        std::fs::write(dir.path().join("namespaces.yaml"), &g.namespaces).expect("write");
        std::fs::write(dir.path().join("pods.yaml"), &g.pods).expect("write");
        let pods = pods_of(&g.pods);
        assert!(pods.len() > 50, "seed {seed}: {} pods", pods.len());
        let dns: Vec<&(String, Vec<u16>)> = pods.iter().filter(|(_, p)| p.contains(&53)).collect();
        assert!(!dns.is_empty(), "the generated cluster runs DNS");
        // Observed traffic: some pods resolve names, some call others on a declared port,
        // some call outside.
        let mut rng = bulkhead_bench::Rng::new(seed);
        let mut flows = String::new();
        for k in 0..120 {
            let (src, _) = &pods[rng.below(pods.len())];
            let line = match k % 4 {
                0 => {
                    let (dst, _) = dns[rng.below(dns.len())];
                    format!(
                        r#"{{"src_ip": "{src}", "dst_ip": "{dst}", "dst_port": 53, "protocol": "UDP"}}"#
                    )
                }
                3 => format!(
                    r#"{{"src_ip": "{src}", "dst_ip": "203.0.113.{}", "dst_port": 443, "protocol": "TCP"}}"#,
                    rng.below(200) + 1
                ),
                _ => {
                    let (dst, ports) = &pods[rng.below(pods.len())];
                    if dst == src || ports.is_empty() {
                        continue;
                    }
                    let port = ports[rng.below(ports.len())];
                    let protocol = if port == 53 { "UDP" } else { "TCP" };
                    format!(
                        r#"{{"src_ip": "{src}", "dst_ip": "{dst}", "dst_port": {port}, "protocol": "{protocol}"}}"#
                    )
                }
            };
            flows.push_str(&line);
            flows.push('\n');
        }
        let flows_path = dir.path().join("flows.jsonl.log");
        std::fs::write(&flows_path, &flows).expect("write");
        let (d, f) = (
            dir.path().to_string_lossy().into_owned(),
            flows_path.to_string_lossy().into_owned(),
        );
        // Calico v3 output verifies as well (its own semantics judge it); one seed is enough
        // for the second format.
        if seed == 1 {
            let (code, calico) = run(&["generate", &d, "--flows", &f, "-o", "calico"]);
            assert_eq!(
                code,
                0,
                "seed {seed}: Calico verification failed:\n{}",
                calico.lines().take(8).collect::<Vec<_>>().join("\n")
            );
            assert!(calico.contains("apiVersion: projectcalico.org/v3"));
        }
        // The built-in verification passes (exit 0), and says so.
        let (code, proposal) = run(&["generate", &d, "--flows", &f]);
        assert_eq!(
            code,
            0,
            "seed {seed}: verification failed:\n{}",
            proposal.lines().take(8).collect::<Vec<_>>().join("\n")
        );
        for line in [
            "#   0 observed flow(s) denied",
            "#   0 connection(s) allowed beyond the observed flows and DNS",
            "#   0 pod(s) of a default-denied namespace without DNS",
            "#   bulkhead check on these policies: 0 error(s) or warning(s)",
        ] {
            assert!(proposal.contains(line), "seed {seed}: {line} missing");
        }
        // Independently: applied, the proposal denies no observed flow...
        std::fs::write(dir.path().join("generated.yaml"), &proposal).expect("write");
        let (code, audit) = run(&["audit", &d, "--flows", &f, "-o", "json", "--fail-on-deny"]);
        let report: Value = serde_json::from_str(&audit).expect("json");
        assert_eq!(code, 0, "seed {seed}: {report}");
        assert_eq!(report["denied_records"], 0);
        // ...and every pod of a default-denied namespace keeps DNS over UDP and TCP.
        let (dns_ip, _) = dns[0];
        let denied_namespaces: Vec<String> = proposal
            .split("---")
            .filter(|doc| doc.contains("name: default-deny-all"))
            .filter_map(|doc| {
                doc.lines()
                    .find_map(|l| l.trim().strip_prefix("namespace: "))
                    .map(|n| n.trim_matches('"').to_string())
            })
            .collect();
        assert!(
            !denied_namespaces.is_empty(),
            "seed {seed}: a default deny is written"
        );
        let checked = pods.iter().filter(|(ip, _)| ip != dns_ip).take(8);
        for (ip, _) in checked {
            for protocol in ["UDP", "TCP"] {
                let (code, out) = run(&[
                    "explain",
                    &d,
                    "--from",
                    ip,
                    "--to",
                    dns_ip,
                    "--port",
                    "53",
                    "--protocol",
                    protocol,
                    "--fail-on-deny",
                ]);
                assert_eq!(
                    code, 0,
                    "seed {seed}: {ip} loses DNS over {protocol}:\n{out}"
                );
            }
        }
    }
}

#[test]
fn the_dns_server_gets_no_policy_when_only_one_pod_was_seen_resolving() {
    let cluster = path("tests/traffic/dns-cluster");
    let flows = path("tests/traffic/dns-only-backend.jsonl");
    let r = support::run(&["generate", &cluster, "--flows", &flows]);
    assert_eq!(r.code, 0);
    let (proposal, stderr) = (&r.stdout, &r.stderr);
    assert!(
        !proposal.contains("namespace: \"kube-system\"\nspec"),
        "no policy for the DNS server's namespace:\n{proposal}"
    );
    assert!(
        stderr.contains("the cluster DNS server gets no policy"),
        "{stderr}"
    );
    // The namespace is default-denied, and every pod of it (not only backend) resolves names.
    assert!(proposal.contains("name: default-deny-all\n  namespace: \"shop\""));
    assert!(proposal.contains("name: allow-dns\n  namespace: \"shop\""));
    assert!(proposal.contains("# 1 record(s): shop/pod/web-0 -> shop/pod/backend-0 TCP/8080"));
    assert!(proposal.contains("cidr: 93.184.216.34/32"));
}

/// `audit -o json` of a flow log against the demo, and its stderr.
fn audit_json(flows: &str, extra: &[&str]) -> (Value, String) {
    let demo = path("../../examples/three-tier");
    let flows = path(&format!("tests/traffic/{flows}"));
    let mut command = bulkhead();
    command
        .args(["audit", &demo, "--flows", &flows, "-o", "json"])
        .args(extra);
    let r = output(command);
    (r.json(), r.stderr)
}

fn denied_to(v: &Value) -> Vec<String> {
    v["would_deny"]
        .as_array()
        .expect("denied")
        .iter()
        .map(|d| {
            format!(
                "{} -> {} {}",
                d["from"].as_str().unwrap_or(""),
                d["to"].as_str().unwrap_or(""),
                d["port"]
            )
        })
        .collect()
}

#[test]
fn each_importer_reads_its_format_and_reports_a_corrupted_line_by_number() {
    // Calico Enterprise (Elasticsearch JSON): aggregated names, an address where there is one.
    let (v, err) = audit_json("calico-enterprise.jsonl", &[]);
    assert!(
        err.contains("calico-enterprise.jsonl:4: not a flow record"),
        "{err}"
    );
    assert_eq!(v["allowed"], 1, "{v}");
    assert_eq!(
        denied_to(&v),
        vec!["development/deployment/api-client -> 169.254.169.254 80"]
    );
    assert_eq!(
        v["unresolved_records"], 1,
        "the `pub` aggregate has no address: {v}"
    );
    assert_eq!(v["would_deny"][0]["seen"], 3, "num_flows counts");

    // Calico Open Source (Goldmane / Whisker): names only.
    let (v, err) = audit_json("calico-goldmane.jsonl", &[]);
    assert!(
        err.contains("calico-goldmane.jsonl:3: not a flow record"),
        "{err}"
    );
    assert_eq!(v["allowed"], 1, "{v}");
    assert_eq!(
        denied_to(&v),
        vec!["development/deployment/backend -> development/statefulset/database 5433"]
    );

    // CSV with a header: columns by name; bad rows by line.
    let (v, err) = audit_json("flows.csv", &["--format", "csv"]);
    assert!(err.contains("flows.csv:4: not a flow record"), "{err}");
    assert!(err.contains("flows.csv:5: not a flow record"), "{err}");
    assert_eq!(
        (v["allowed"].as_u64(), v["denied_records"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    let (sniffed, _) = audit_json("flows.csv", &[]);
    assert_eq!(
        sniffed["would_deny"], v["would_deny"],
        "--format auto finds CSV"
    );

    // The agent's own records, WOULD-DENY included: what breaks if the audit is promoted.
    let (v, err) = audit_json("agent-would-deny.jsonl", &[]);
    assert!(
        err.contains("agent-would-deny.jsonl:3: not a flow record"),
        "{err}"
    );
    assert_eq!(
        denied_to(&v),
        vec!["development/deployment/api-client -> 169.254.169.254 80"]
    );

    // Gzip, recognised by its magic bytes.
    let (gz, _) = audit_json("demo-flows.jsonl.gz", &[]);
    let (plain, _) = audit_json("demo-flows.jsonl", &[]);
    assert_eq!(gz, plain);
}
