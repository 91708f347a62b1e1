//! `policy.networking.k8s.io`: AdminNetworkPolicy and BaselineAdminNetworkPolicy (v1alpha1) and
//! ClusterNetworkPolicy (v1alpha2), validated against their CRD schemas (ANP-VAL-*) and
//! normalised into one tiered model (semantics.md §3.8: ANP = Admin tier, BANP = Baseline).

use crate::codes;
use crate::document::{FieldPath, ObjectContext};
use crate::network_policy;
use bulkhead_model::{
    Action, ClusterPeer, ClusterPort, ClusterRule, Diagnostic, LabelSelector, Policy, PolicyKind,
    PolicyRule, PolicyTypes, PortRange, Protocol, RuleMatcher, Subject, Tier,
};
use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as WireSelector, ObjectMeta};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPolicyWire {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<SpecWire>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<SubjectWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<RuleWire>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<RuleWire>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct SubjectWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<WireSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<PodsWire>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodsWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<WireSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<WireSelector>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<PeerWire>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<PeerWire>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PortWire>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Vec<ProtocolWire>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<WireSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<PodsWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<WireSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_names: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_number: Option<PortNumberWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub named_port: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range: Option<PortRangeWire>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct PortNumberWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct PortRangeWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<ProtocolPortsWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<ProtocolPortsWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sctp: Option<ProtocolPortsWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_named_port: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolPortsWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<DestinationPortWire>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct DestinationPortWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<RangeWire>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct RangeWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<i64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Admin,
    Baseline,
    Cluster,
}

struct Validator<'a, 'b> {
    ctx: &'a ObjectContext<'b>,
    diagnostics: &'a mut Vec<Diagnostic>,
    errors: usize,
    flavor: Flavor,
}

impl Validator<'_, '_> {
    fn error(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.errors += 1;
        self.diagnostics.push(self.ctx.diagnostic(
            codes::INVALID_CLUSTER_POLICY,
            path,
            false,
            message,
        ));
    }

    fn selector(&mut self, s: &WireSelector, path: &FieldPath) -> Option<LabelSelector> {
        let before = self.diagnostics.len();
        let lowered = network_policy::lower_selector(self.ctx, s, path, self.diagnostics);
        self.errors += self.diagnostics.len() - before;
        lowered
    }

    fn pods(
        &mut self,
        pods: &PodsWire,
        path: &FieldPath,
    ) -> Option<(LabelSelector, LabelSelector)> {
        let (Some(ns), Some(pod)) = (&pods.namespace_selector, &pods.pod_selector) else {
            self.error(
                path,
                "pods needs both namespaceSelector and podSelector (either may be {})",
            );
            return None;
        };
        Some((
            self.selector(ns, &path.key("namespaceSelector"))?,
            self.selector(pod, &path.key("podSelector"))?,
        ))
    }

    fn protocol(&mut self, p: Option<&str>, path: &FieldPath) -> Option<Protocol> {
        match p {
            None | Some("TCP") => Some(Protocol::Tcp),
            Some("UDP") => Some(Protocol::Udp),
            Some("SCTP") => Some(Protocol::Sctp),
            Some(other) => {
                self.error(path, format!("protocol {other:?} is not TCP, UDP or SCTP"));
                None
            }
        }
    }

    fn port_number(&mut self, n: Option<i64>, path: &FieldPath) -> Option<u16> {
        match n {
            Some(n) if (1..=65535).contains(&n) => u16::try_from(n).ok(),
            Some(n) => {
                self.error(path, format!("port {n} must be between 1 and 65535"));
                None
            }
            None => {
                self.error(path, "a port number is required");
                None
            }
        }
    }
}

/// Lowers an AdminNetworkPolicy, BaselineAdminNetworkPolicy or ClusterNetworkPolicy.
pub fn lower(
    ctx: &ObjectContext<'_>,
    wire: &ClusterPolicyWire,
    kind: &str,
    name: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Policy> {
    let flavor = match kind {
        "AdminNetworkPolicy" => Flavor::Admin,
        "BaselineAdminNetworkPolicy" => Flavor::Baseline,
        _ => Flavor::Cluster,
    };
    let mut v = Validator {
        ctx,
        diagnostics,
        errors: 0,
        flavor,
    };
    let spec_path = FieldPath::root().key("spec");
    let spec = wire.spec.clone().unwrap_or_default();
    // Tier and priority.
    let (tier, order) = match flavor {
        Flavor::Admin => (
            Tier::KUBE_ADMIN,
            v.priority(spec.priority, &spec_path, true),
        ),
        Flavor::Baseline => {
            if name != "default" {
                v.error(&FieldPath::root().key("metadata").key("name"), format!("a BaselineAdminNetworkPolicy must be named \"default\", not {name:?} (ANP-VAL-9)"));
            }
            if spec.priority.is_some() {
                v.error(
                    &spec_path.key("priority"),
                    "a BaselineAdminNetworkPolicy has no priority",
                );
            }
            (Tier::KUBE_BASELINE, Some(1000.0))
        }
        Flavor::Cluster => {
            let tier = match spec.tier.as_deref() {
                Some("Admin") => Tier::KUBE_ADMIN,
                Some("Baseline") => Tier::KUBE_BASELINE,
                other => {
                    v.error(
                        &spec_path.key("tier"),
                        format!("tier {:?} must be Admin or Baseline", other.unwrap_or("")),
                    );
                    Tier::KUBE_ADMIN
                }
            };
            (tier, v.priority(spec.priority, &spec_path, true))
        }
    };
    if flavor != Flavor::Cluster && spec.tier.is_some() {
        v.error(
            &spec_path.key("tier"),
            "tier is a ClusterNetworkPolicy (v1alpha2) field",
        );
    }
    let subject = match &spec.subject {
        None => {
            v.error(&spec_path.key("subject"), "subject is required");
            None
        }
        Some(s) => match (&s.namespaces, &s.pods) {
            (Some(ns), None) => v
                .selector(ns, &spec_path.key("subject").key("namespaces"))
                .map(Subject::Namespaces),
            (None, Some(pods)) => v.pods(pods, &spec_path.key("subject").key("pods")).map(
                |(namespace_selector, pod_selector)| Subject::Pods {
                    namespace_selector,
                    pod_selector,
                },
            ),
            _ => {
                v.error(
                    &spec_path.key("subject"),
                    "subject must set exactly one of namespaces and pods (ANP-VAL-2)",
                );
                None
            }
        },
    };
    let limit = if flavor == Flavor::Cluster { 25 } else { 100 };
    let lower_rules = |v: &mut Validator<'_, '_>,
                       rules: Option<&Vec<RuleWire>>,
                       field: &'static str,
                       ingress: bool|
     -> Option<Vec<PolicyRule>> {
        let rules = rules.map(Vec::as_slice).unwrap_or_default();
        if rules.len() > limit {
            v.error(
                &spec_path.key(field),
                format!("at most {limit} {field} rules are allowed"),
            );
        }
        rules
            .iter()
            .enumerate()
            .map(|(i, r)| v.rule(r, &spec_path.key(field).index(i), ingress))
            .collect()
    };
    let ingress = lower_rules(&mut v, spec.ingress.as_ref(), "ingress", true);
    let egress = lower_rules(&mut v, spec.egress.as_ref(), "egress", false);
    if v.errors > 0 {
        return None;
    }
    let ingress = ingress?;
    let egress = egress?;
    Some(Policy {
        kind: match flavor {
            Flavor::Admin => PolicyKind::AdminNetworkPolicy,
            Flavor::Baseline => PolicyKind::BaselineAdminNetworkPolicy,
            Flavor::Cluster => PolicyKind::ClusterNetworkPolicy,
        },
        namespace: None,
        name: name.to_string(),
        tier: tier.to_string(),
        order,
        staged: None,
        subject: subject?,
        // ANP-EVAL-1: no implicit isolation. A direction without rules has no effect.
        types: PolicyTypes {
            ingress: !ingress.is_empty(),
            egress: !egress.is_empty(),
            defaulted: false,
        },
        ingress,
        egress,
        host_endpoints_only: false,
        source: Some(ctx.location(ctx.node.span)),
    })
}

impl Validator<'_, '_> {
    fn priority(&mut self, p: Option<i64>, spec_path: &FieldPath, required: bool) -> Option<f64> {
        match p {
            Some(p) if (0..=1000).contains(&p) => Some(p as f64),
            Some(p) => {
                self.error(
                    &spec_path.key("priority"),
                    format!("priority {p} must be between 0 and 1000 (ANP-VAL-1)"),
                );
                None
            }
            None if required => {
                self.error(&spec_path.key("priority"), "priority is required");
                None
            }
            None => None,
        }
    }

    fn rule(&mut self, rule: &RuleWire, path: &FieldPath, ingress: bool) -> Option<PolicyRule> {
        let before = self.errors;
        if rule.name.as_ref().is_some_and(|n| n.len() > 100) {
            self.error(&path.key("name"), "rule names are at most 100 characters");
        }
        let action = match (self.flavor, rule.action.as_deref()) {
            (Flavor::Cluster, Some("Accept"))
            | (Flavor::Admin | Flavor::Baseline, Some("Allow")) => Some(Action::Allow),
            (_, Some("Deny")) => Some(Action::Deny),
            (Flavor::Admin | Flavor::Cluster, Some("Pass")) => Some(Action::Pass),
            (flavor, other) => {
                let allowed = match flavor {
                    Flavor::Admin => "Allow, Deny, Pass",
                    Flavor::Baseline => "Allow, Deny",
                    Flavor::Cluster => "Accept, Deny, Pass",
                };
                self.error(
                    &path.key("action"),
                    format!("action {:?} must be one of {allowed}", other.unwrap_or("")),
                );
                None
            }
        };
        let (peers_field, peers) = if ingress {
            ("from", rule.from.as_ref())
        } else {
            ("to", rule.to.as_ref())
        };
        let other_field = if ingress { "to" } else { "from" };
        let wrong_side = if ingress {
            rule.to.is_some()
        } else {
            rule.from.is_some()
        };
        if wrong_side {
            self.error(
                &path.key(other_field),
                format!(
                    "{} rules use {peers_field}, not {other_field}",
                    if ingress { "ingress" } else { "egress" }
                ),
            );
        }
        let peer_list = peers.map(Vec::as_slice).unwrap_or_default();
        if peer_list.is_empty() {
            self.error(
                &path.key(peers_field),
                format!("{peers_field} needs 1 to 100 peers (ANP-VAL-4)"),
            );
        }
        let mut lowered_peers = Vec::new();
        for (i, peer) in peer_list.iter().enumerate() {
            if let Some(p) = self.peer(peer, &path.key(peers_field).index(i), ingress) {
                lowered_peers.push(p);
            }
        }
        let ports = match self.flavor {
            Flavor::Cluster => {
                if rule.ports.is_some() {
                    self.error(
                        &path.key("ports"),
                        "ClusterNetworkPolicy uses protocols, not ports",
                    );
                }
                rule.protocols
                    .as_ref()
                    .map(|list| self.protocols(list, &path.key("protocols")))
            }
            _ => {
                if rule.protocols.is_some() {
                    self.error(
                        &path.key("protocols"),
                        "protocols is a ClusterNetworkPolicy (v1alpha2) field; v1alpha1 uses ports",
                    );
                }
                rule.ports
                    .as_ref()
                    .map(|list| self.ports(list, &path.key("ports")))
            }
        };
        let uses_named = ports
            .as_ref()
            .is_some_and(|p| p.iter().any(|x| matches!(x, ClusterPort::Named(_))));
        if !ingress
            && uses_named
            && lowered_peers.iter().any(|p| {
                matches!(
                    p,
                    ClusterPeer::Networks(_) | ClusterPeer::Nodes(_) | ClusterPeer::DomainNames(_)
                )
            })
        {
            self.error(
                &path.key("ports"),
                "a named port cannot be used with networks, nodes or domainNames peers (ANP-VAL-7)",
            );
        }
        if self.errors > before {
            return None;
        }
        Some(PolicyRule {
            name: rule.name.clone(),
            action: action?,
            matcher: RuleMatcher::Cluster(ClusterRule {
                peers: lowered_peers,
                ports,
            }),
            location: Some(self.ctx.location_of(path)),
        })
    }

    fn peer(&mut self, peer: &PeerWire, path: &FieldPath, ingress: bool) -> Option<ClusterPeer> {
        let set = [
            peer.namespaces.is_some(),
            peer.pods.is_some(),
            peer.nodes.is_some(),
            peer.networks.is_some(),
            peer.domain_names.is_some(),
        ];
        if set.iter().filter(|x| **x).count() != 1 {
            self.error(path, "a peer must set exactly one of namespaces, pods, nodes, networks, domainNames (ANP-VAL-4)");
            return None;
        }
        if ingress
            && (peer.nodes.is_some() || peer.networks.is_some() || peer.domain_names.is_some())
        {
            self.error(path, "ingress peers may only be namespaces or pods");
            return None;
        }
        if let Some(ns) = &peer.namespaces {
            return self
                .selector(ns, &path.key("namespaces"))
                .map(ClusterPeer::Namespaces);
        }
        if let Some(pods) = &peer.pods {
            return self
                .pods(pods, &path.key("pods"))
                .map(|(namespace_selector, pod_selector)| ClusterPeer::Pods {
                    namespace_selector,
                    pod_selector,
                });
        }
        if let Some(nodes) = &peer.nodes {
            return self
                .selector(nodes, &path.key("nodes"))
                .map(ClusterPeer::Nodes);
        }
        if let Some(networks) = &peer.networks {
            if networks.is_empty() || networks.len() > 25 {
                self.error(
                    &path.key("networks"),
                    "networks needs 1 to 25 CIDRs (ANP-VAL-6)",
                );
                return None;
            }
            let mut nets = Vec::new();
            for (i, n) in networks.iter().enumerate() {
                match n.parse::<IpNet>() {
                    Ok(net) if n.len() <= 43 => nets.push(net.trunc()),
                    _ => self.error(
                        &path.key("networks").index(i),
                        crate::names::invalid_cidr_message(n),
                    ),
                }
            }
            return (nets.len() == networks.len()).then_some(ClusterPeer::Networks(nets));
        }
        let names = peer.domain_names.clone().unwrap_or_default();
        if names.is_empty() || names.len() > 25 {
            self.error(&path.key("domainNames"), "domainNames needs 1 to 25 names");
            return None;
        }
        self.diagnostics.push(self.ctx.diagnostic(
            codes::UNSUPPORTED_FIELD,
            &path.key("domainNames"),
            false,
            "domainNames need DNS answers, which a static analysis does not have: this peer never matches (ANP-PEER-4)",
        ));
        Some(ClusterPeer::DomainNames(names))
    }

    fn ports(&mut self, list: &[PortWire], path: &FieldPath) -> Vec<ClusterPort> {
        if list.is_empty() || list.len() > 100 {
            self.error(
                path,
                "ports, when present, needs 1 to 100 entries (ANP-VAL-5)",
            );
        }
        let mut out = Vec::new();
        for (i, p) in list.iter().enumerate() {
            let p_path = path.index(i);
            let count = [
                p.port_number.is_some(),
                p.named_port.is_some(),
                p.port_range.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            if count != 1 {
                self.error(
                    &p_path,
                    "a port must set exactly one of portNumber, namedPort, portRange",
                );
                continue;
            }
            if let Some(n) = &p.port_number {
                if let (Some(protocol), Some(port)) = (
                    self.protocol(
                        n.protocol.as_deref(),
                        &p_path.key("portNumber").key("protocol"),
                    ),
                    self.port_number(n.port, &p_path.key("portNumber").key("port")),
                ) {
                    out.push(ClusterPort::Range {
                        protocol,
                        range: PortRange::single(port),
                    });
                }
            } else if let Some(r) = &p.port_range {
                let protocol = self.protocol(
                    r.protocol.as_deref(),
                    &p_path.key("portRange").key("protocol"),
                );
                let start = self.port_number(r.start, &p_path.key("portRange").key("start"));
                let end = self.port_number(r.end, &p_path.key("portRange").key("end"));
                if let (Some(protocol), Some(start), Some(end)) = (protocol, start, end) {
                    match PortRange::new(start, end) {
                        Some(range) => out.push(ClusterPort::Range { protocol, range }),
                        None => self.error(
                            &p_path.key("portRange"),
                            format!("portRange start {start} is above end {end}"),
                        ),
                    }
                }
            } else if let Some(name) = &p.named_port {
                out.push(ClusterPort::Named(name.clone()));
            }
        }
        out
    }

    fn protocols(&mut self, list: &[ProtocolWire], path: &FieldPath) -> Vec<ClusterPort> {
        if list.is_empty() || list.len() > 25 {
            self.error(path, "protocols, when present, needs 1 to 25 entries");
        }
        let mut out = Vec::new();
        for (i, p) in list.iter().enumerate() {
            let p_path = path.index(i);
            let entries = [
                (Protocol::Tcp, "tcp", &p.tcp),
                (Protocol::Udp, "udp", &p.udp),
                (Protocol::Sctp, "sctp", &p.sctp),
            ];
            let count = entries.iter().filter(|(_, _, e)| e.is_some()).count()
                + usize::from(p.destination_named_port.is_some());
            if count != 1 {
                self.error(&p_path, "a protocols entry must set exactly one of tcp, udp, sctp, destinationNamedPort");
                continue;
            }
            if let Some(name) = &p.destination_named_port {
                out.push(ClusterPort::Named(name.clone()));
                continue;
            }
            for (protocol, field, entry) in entries {
                let Some(entry) = entry else { continue };
                let e_path = p_path.key(field);
                match &entry.destination_port {
                    None => {
                        // The CRD rejects `tcp: {}`; the API overview says it means every port.
                        self.diagnostics.push(self.ctx.diagnostic(
                            codes::UNSUPPORTED_FIELD,
                            &e_path,
                            false,
                            format!("{field}: {{}} without destinationPort is read as every {protocol} port; the CRD schema rejects it, write range {{start: 1, end: 65535}}"),
                        ));
                        out.push(ClusterPort::AllOf(protocol));
                    }
                    Some(dp) => match (dp.number, &dp.range) {
                        (Some(n), None) => {
                            if let Some(port) = self
                                .port_number(Some(n), &e_path.key("destinationPort").key("number"))
                            {
                                out.push(ClusterPort::Range {
                                    protocol,
                                    range: PortRange::single(port),
                                });
                            }
                        }
                        (None, Some(r)) => {
                            let r_path = e_path.key("destinationPort").key("range");
                            let start = self.port_number(r.start, &r_path.key("start"));
                            let end = self.port_number(r.end, &r_path.key("end"));
                            if let (Some(start), Some(end)) = (start, end) {
                                if start >= end {
                                    self.error(
                                        &r_path,
                                        format!("range start {start} must be below end {end}"),
                                    );
                                } else if let Some(range) = PortRange::new(start, end) {
                                    out.push(ClusterPort::Range { protocol, range });
                                }
                            }
                        }
                        _ => self.error(
                            &e_path.key("destinationPort"),
                            "destinationPort must set exactly one of number and range",
                        ),
                    },
                }
            }
        }
        out
    }
}
