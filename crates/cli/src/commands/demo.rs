//! `bulkhead demo`: the whole workflow on a bundled three-tier example, embedded in the binary.

use crate::cli::{DemoArgs, MapBy, MapFormat};
use crate::render::{diagnostics, explain};
use anyhow::Context as _;
use bulkhead_engine::{Engine, EngineOptions, Flow};
use bulkhead_k8s::{Input, LoadOptions};
use bulkhead_model::Protocol;
use std::process::ExitCode;

const EXAMPLE: &str = include_str!("../../../../examples/three-tier/three-tier.yaml");
const EXAMPLE_NAME: &str = "three-tier.yaml";

pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    if let Some(dir) = &args.write_to {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(EXAMPLE_NAME);
        std::fs::write(&path, EXAMPLE).with_context(|| format!("writing {}", path.display()))?;
        super::print(&format!("wrote {}\n", path.display()))?;
        return Ok(ExitCode::SUCCESS);
    }
    let snapshot = bulkhead_k8s::load(
        &[Input::new(EXAMPLE_NAME, EXAMPLE)],
        &LoadOptions::default(),
    );
    let engine = Engine::new(
        &snapshot.cluster,
        EngineOptions::for_cluster(&snapshot.cluster),
    );
    let mut out = String::new();
    out.push_str(
        "Bulkhead demo: a three-tier app in namespace `development`, rolled out the playbook way\n",
    );
    out.push_str(
        "(default-deny-all, DNS egress, frontend -> backend :8080, backend -> database :5432,\n",
    );
    out.push_str("api-client egress to 0.0.0.0/0 except the metadata service on :443).\n");
    out.push_str("Write the manifests out with `bulkhead demo --write-to DIR` to try the other commands.\n\n");

    out.push_str("== 1. bulkhead check: validation and lint ==\n");
    let mut found = snapshot.diagnostics.clone();
    let inputs = [Input::new(EXAMPLE_NAME, EXAMPLE)];
    let mut findings =
        bulkhead_analysis::lint(&snapshot.cluster, &bulkhead_analysis::Config::default());
    crate::snapshot::fill_source_lines(&mut findings, &inputs);
    found.extend(findings);
    out.push_str(&diagnostics::human(&found));

    out.push_str("\n== 2. bulkhead map --by workload: who can talk to whom ==\n");
    out.push_str(&super::map::render(
        &engine,
        MapBy::Workload,
        MapFormat::Table,
    ));

    let flows = [
        (
            "an allowed flow",
            "development/deployment/frontend",
            "development/deployment/backend",
            Protocol::Tcp,
            8080,
        ),
        (
            "a denied flow: frontend may not skip a tier",
            "development/deployment/frontend",
            "development/statefulset/database",
            Protocol::Tcp,
            5432,
        ),
        (
            "DNS: the playbook's selector matches no namespace",
            "development/deployment/frontend",
            "kube-system/deployment/coredns",
            Protocol::Udp,
            53,
        ),
        (
            "the metadata service stays out of reach",
            "development/deployment/api-client",
            "169.254.169.254",
            Protocol::Tcp,
            443,
        ),
    ];
    for (n, (title, from, to, protocol, port)) in flows.iter().enumerate() {
        let from = engine.resolve(from)?;
        let to = engine.resolve(to)?;
        let flow = Flow {
            src: from.endpoint,
            dst: to.endpoint,
            protocol: *protocol,
            port: Some(*port),
            icmp: None,
        };
        let verdict = engine.evaluate(&flow);
        out.push_str(&format!("\n== {}. bulkhead explain: {title} ==\n", n + 3));
        out.push_str(&explain::human(&explain::Explained {
            from: &from,
            to: &to,
            flow: &flow,
            verdict: &verdict,
        }));
    }

    let unmatched = engine.unmatched_namespace_selectors();
    if !unmatched.is_empty() {
        out.push_str("\n== Why DNS is denied ==\n");
        for u in &unmatched {
            out.push_str(&format!(
                "NetworkPolicy {} {}: namespaceSelector {} matches no namespace.\n",
                u.policy, u.rule, u.selector
            ));
        }
        out.push_str(
            "Real clusters label namespaces with kubernetes.io/metadata.name, not name. Fix: select\n\
             kube-system with `kubernetes.io/metadata.name: kube-system`, or label the namespace.\n",
        );
    }
    super::print(&out)?;
    Ok(ExitCode::SUCCESS)
}
