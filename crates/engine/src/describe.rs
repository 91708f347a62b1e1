//! Rules in words, for explanations: what a rule's peers and ports are.

use bulkhead_model::{CalicoRule, Direction, EntityRule, Policy, RuleMatcher};

fn list<T: ToString>(items: &[T], separator: &str) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(separator)
}

pub(crate) fn rule(policy: &Policy, direction: Direction, index: usize) -> String {
    let field = if direction == Direction::Ingress {
        "from"
    } else {
        "to"
    };
    match &policy.rules(direction)[index].matcher {
        RuleMatcher::Kubernetes(rule) => {
            let peers = match &rule.peers {
                None => format!("any {field}"),
                Some(peers) => format!("{field} [{}]", list(peers, "; ")),
            };
            let ports = match &rule.ports {
                None => "any port".to_string(),
                Some(ports) => format!("ports [{}]", list(ports, ", ")),
            };
            format!("{peers}, {ports}")
        }
        RuleMatcher::Cluster(r) => {
            let ports = match &r.ports {
                None => "any port".to_string(),
                Some(ports) => format!("ports [{}]", list(ports, ", ")),
            };
            format!("{field} [{}], {ports}", list(&r.peers, "; "))
        }
        RuleMatcher::Calico(r) => calico(r),
    }
}

fn calico(r: &CalicoRule) -> String {
    let mut parts = Vec::new();
    if let Some(p) = r.protocol {
        parts.push(format!("protocol {p}"));
    }
    if let Some(p) = r.not_protocol {
        parts.push(format!("notProtocol {p}"));
    }
    if let Some(v) = r.ip_version {
        parts.push(format!("ipVersion {v}"));
    }
    if let Some(i) = r.icmp {
        parts.push(format!(
            "icmp type {}{}",
            i.icmp_type,
            i.code.map(|c| format!(" code {c}")).unwrap_or_default()
        ));
    }
    for (name, e) in [("source", &r.source), ("destination", &r.destination)] {
        let text = entity(e);
        if !text.is_empty() {
            parts.push(format!("{name} {{{text}}}"));
        }
    }
    if parts.is_empty() {
        "matches everything".into()
    } else {
        parts.join(", ")
    }
}

fn entity(e: &EntityRule) -> String {
    let mut parts = Vec::new();
    let nets = |n: &[ipnet::IpNet]| {
        n.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    if !e.nets.is_empty() {
        parts.push(format!("nets {}", nets(&e.nets)));
    }
    if !e.not_nets.is_empty() {
        parts.push(format!("notNets {}", nets(&e.not_nets)));
    }
    if let Some(s) = &e.selector {
        parts.push(format!("selector {s}"));
    }
    if let Some(s) = &e.not_selector {
        parts.push(format!("notSelector {s}"));
    }
    if let Some(s) = &e.namespace_selector {
        parts.push(format!("namespaceSelector {s}"));
    }
    if let Some(sa) = &e.service_accounts {
        parts.push(format!("serviceAccounts {}", sa.names.join(",")));
    }
    if !e.ports.is_empty() {
        parts.push(format!(
            "ports {}",
            e.ports
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    if !e.not_ports.is_empty() {
        parts.push(format!(
            "notPorts {}",
            e.not_ports
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    parts.join(", ")
}
