//! The security review in one document: coverage, policy sprawl, blast radius, the DNS and
//! metadata-service findings, and a compliance table that maps them to the controls they
//! evidence (PCI-DSS v4.0 1.2-1.4, CIS Kubernetes Benchmark 5.3.2, NSA/CISA Kubernetes
//! Hardening). Every row names its evidence by the section it rests on, so a renderer can
//! link it.

use crate::blast_radius::{self, BlastRadius};
use crate::coverage::{self, Coverage};
use crate::lint::{Config, lint};
use bulkhead_engine::{Endpoint, Engine, Flow};
use bulkhead_model::{LabelSelector, Protocol};
use serde::Serialize;

/// The sections of a report; evidence links point at them.
pub mod section {
    pub const COVERAGE: &str = "coverage";
    pub const SPRAWL: &str = "sprawl";
    pub const BLAST_RADIUS: &str = "blast-radius";
    pub const FINDINGS: &str = "findings";
    pub const COMPLIANCE: &str = "compliance";
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    NotEvaluated,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::NotEvaluated => "not evaluated",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Control {
    /// `PCI-DSS v4.0 1.2`.
    pub framework: &'static str,
    pub id: &'static str,
    pub title: &'static str,
    pub status: Status,
    pub why: String,
    /// Section ids of this report that hold the evidence.
    pub evidence: Vec<&'static str>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sprawl {
    pub namespace: String,
    pub policies: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub code: String,
    pub severity: String,
    pub message: String,
    pub location: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub coverage: Coverage,
    /// Namespaces over the policy limit, and the cluster-wide policies against theirs.
    pub sprawl: Vec<Sprawl>,
    pub policies_per_namespace_limit: usize,
    pub global_policies: usize,
    pub global_policies_limit: usize,
    pub blast_radius: BlastRadius,
    /// DNS (BH101) and metadata-service (BH104) findings.
    pub findings: Vec<Finding>,
    pub compliance: Vec<Control>,
    /// The cardholder data environment, when given.
    pub cde: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ReportOptions {
    pub hops: usize,
    /// Pods of the cardholder data environment (`--cde app=payments`).
    pub cde: Option<LabelSelector>,
}

pub fn report(engine: &Engine<'_>, options: &ReportOptions) -> Report {
    let cluster = engine.cluster();
    let config = Config::default();
    let coverage = coverage::coverage(engine);
    let radius = blast_radius::blast_radius(
        engine,
        &blast_radius::Options {
            hops: options.hops,
            only: None,
            target: options.cde.clone(),
            detail: false,
        },
    );
    let limit = config.thresholds.policies_per_namespace;
    let global_limit = config.thresholds.global_policies;
    let sprawl: Vec<Sprawl> = coverage
        .namespaces
        .iter()
        .filter(|n| n.policies >= limit)
        .map(|n| Sprawl {
            namespace: n.namespace.clone(),
            policies: n.policies,
        })
        .collect();
    let global_policies = cluster
        .policies
        .iter()
        .filter(|p| p.namespace.is_none())
        .count();
    let findings: Vec<Finding> = lint(cluster, &config)
        .into_iter()
        .filter(|d| d.code == "BH101" || d.code == "BH104")
        .map(|d| Finding {
            code: d.code.to_string(),
            severity: d.severity.to_string(),
            message: d.message.clone(),
            location: d.location.as_ref().map(ToString::to_string),
        })
        .collect();
    let with_pods: Vec<&coverage::NamespaceCoverage> =
        coverage.namespaces.iter().filter(|n| n.pods > 0).collect();
    let open = |f: &dyn Fn(&coverage::NamespaceCoverage) -> bool| -> Vec<String> {
        with_pods
            .iter()
            .filter(|n| !f(n))
            .map(|n| n.namespace.clone())
            .collect()
    };
    let not_default_deny = open(&|n| n.default_deny_ingress && n.default_deny_egress);
    let not_ingress_deny = open(&|n| n.default_deny_ingress);
    let without_policies: Vec<String> = coverage
        .namespaces
        .iter()
        .filter(|n| n.policies == 0)
        .map(|n| n.namespace.clone())
        .collect();
    let metadata = findings.iter().filter(|f| f.code == "BH104").count();
    let exposed_unisolated: Vec<String> = coverage
        .namespaces
        .iter()
        .filter(|n| !n.ingress_exposed_workloads.is_empty() && n.isolated_ingress < n.pods)
        .map(|n| n.namespace.clone())
        .collect();
    let list = |names: &[String]| names.join(", ");
    let verdict = |fails: bool| if fails { Status::Fail } else { Status::Pass };
    let mut compliance = vec![
        Control {
            framework: "PCI-DSS v4.0",
            id: "1.2",
            title: "Network security controls are configured and maintained",
            status: verdict(!not_default_deny.is_empty()),
            why: if not_default_deny.is_empty() {
                "every namespace with pods denies ingress and egress by default".to_string()
            } else {
                format!("no default deny in both directions: {}", list(&not_default_deny))
            },
            evidence: vec![section::COVERAGE, section::SPRAWL],
        },
        cde_control(engine, options, &radius),
        Control {
            framework: "PCI-DSS v4.0",
            id: "1.4",
            title: "Network connections between trusted and untrusted networks are controlled",
            status: verdict(metadata > 0 || !exposed_unisolated.is_empty()),
            why: match (metadata, exposed_unisolated.is_empty()) {
                (0, true) => "no pod reaches the cloud metadata service, and every pod reachable from outside the cluster is selected by an ingress policy".to_string(),
                (0, false) => format!("pods reachable from outside the cluster without an ingress policy in: {}", list(&exposed_unisolated)),
                (n, _) => format!("{n} rule(s) let pods reach the cloud metadata service"),
            },
            evidence: vec![section::FINDINGS, section::COVERAGE],
        },
        Control {
            framework: "CIS Kubernetes Benchmark",
            id: "5.3.2",
            title: "Ensure that all Namespaces have NetworkPolicies defined",
            status: verdict(!without_policies.is_empty()),
            why: if without_policies.is_empty() {
                "every namespace has at least one policy".to_string()
            } else {
                format!("namespaces without a policy: {}", list(&without_policies))
            },
            evidence: vec![section::COVERAGE],
        },
        Control {
            framework: "NSA/CISA Kubernetes Hardening",
            id: "default-deny",
            title: "Use a default policy that denies all ingress and egress traffic",
            status: verdict(!not_default_deny.is_empty()),
            why: if not_default_deny.is_empty() {
                "every namespace with pods is default-deny in both directions".to_string()
            } else {
                format!("not default-deny: {}", list(&not_default_deny))
            },
            evidence: vec![section::COVERAGE],
        },
        Control {
            framework: "NSA/CISA Kubernetes Hardening",
            id: "namespace-isolation",
            title: "Isolate namespaces with network policies",
            status: verdict(!not_ingress_deny.is_empty()),
            why: if not_ingress_deny.is_empty() {
                "no namespace accepts traffic from other namespaces by default".to_string()
            } else {
                format!("accept traffic by default: {}", list(&not_ingress_deny))
            },
            evidence: vec![section::COVERAGE, section::BLAST_RADIUS],
        },
    ];
    compliance.sort_by_key(|c| (c.framework, c.id));
    Report {
        coverage,
        sprawl,
        policies_per_namespace_limit: limit,
        global_policies,
        global_policies_limit: global_limit,
        blast_radius: radius,
        findings,
        compliance,
        cde: options.cde.as_ref().map(ToString::to_string),
    }
}

/// PCI-DSS 1.3: access to and from the cardholder data environment is restricted. Evaluated
/// only with `--cde`: every CDE pod isolated in both directions and unreachable from outside
/// the cluster.
fn cde_control(engine: &Engine<'_>, options: &ReportOptions, radius: &BlastRadius) -> Control {
    let base = Control {
        framework: "PCI-DSS v4.0",
        id: "1.3",
        title: "Network access to and from the cardholder data environment is restricted",
        status: Status::NotEvaluated,
        why: "not evaluated: name the cardholder data environment with --cde SELECTOR".to_string(),
        evidence: vec![section::BLAST_RADIUS, section::COVERAGE],
    };
    let Some(cde) = &options.cde else {
        return base;
    };
    let cluster = engine.cluster();
    let pods: Vec<usize> = engine
        .pod_endpoints()
        .into_iter()
        .filter(|&i| cde.matches(&cluster.pods[i].labels))
        .collect();
    if pods.is_empty() {
        return Control {
            why: format!("not evaluated: --cde {cde} selects no pod"),
            ..base
        };
    }
    let mut open = Vec::new();
    for &i in &pods {
        let state = crate::default_deny::pod(engine, i);
        let outside = "203.0.113.1".parse().ok().map(Endpoint::External);
        let reachable_from_outside = outside.is_some_and(|o| {
            let pod = &cluster.pods[i];
            let ports: Vec<(Protocol, u16)> = if pod.ports.is_empty() {
                vec![(Protocol::Tcp, 443)]
            } else {
                pod.ports.iter().map(|p| (p.protocol, p.port)).collect()
            };
            ports.iter().any(|&(protocol, port)| {
                engine
                    .evaluate(&Flow {
                        src: o,
                        dst: Endpoint::Pod(i),
                        protocol,
                        port: Some(port),
                        icmp: None,
                    })
                    .allowed
            })
        });
        if !state.ingress || !state.egress || reachable_from_outside {
            open.push(cluster.pods[i].key());
        }
    }
    let reaching = radius
        .workloads
        .iter()
        .filter(|w| {
            w.paths.iter().any(|p| {
                p.hops.len() == 1 && pods.iter().any(|&i| cluster.pods[i].key() == p.target)
            })
        })
        .count();
    if open.is_empty() {
        Control {
            status: Status::Pass,
            why: format!(
                "{} CDE pod(s) are isolated in both directions and unreachable from outside the cluster; {reaching} workload(s) reach them directly through explicit rules",
                pods.len()
            ),
            ..base
        }
    } else {
        Control {
            status: Status::Fail,
            why: format!(
                "CDE pods not isolated in both directions or reachable from outside: {}",
                open.join(", ")
            ),
            ..base
        }
    }
}
