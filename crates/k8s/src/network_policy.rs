//! `networking.k8s.io/v1` NetworkPolicy: API-server validation (semantics.md §1.11, K8S-VAL-*)
//! and lowering into the model with the API server's defaults (K8S-PT-2, K8S-PORT-1).

use crate::codes;
use crate::document::{FieldPath, ObjectContext};
use crate::names;
use bulkhead_model::ip_block::IpBlockError;
use bulkhead_model::{
    Diagnostic, IpBlock, LabelSelector, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicyRule, Operator, PolicyTypes, PortRange, PortSpec, Protocol, Requirement, ValueSet,
};
use ipnet::IpNet;
use k8s_openapi::api::networking::v1 as wire;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as WireSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Validates and lowers one policy. Returns `None` when the API server would reject it; every
/// reason is in `diagnostics`.
pub fn lower(
    ctx: &ObjectContext<'_>,
    policy: &wire::NetworkPolicy,
    namespace: &str,
    name: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<NetworkPolicy> {
    let mut v = Validator {
        ctx,
        diagnostics,
        errors: 0,
    };
    let spec_path = FieldPath::root().key("spec");
    let default_spec = wire::NetworkPolicySpec::default();
    let spec = policy.spec.as_ref().unwrap_or(&default_spec);

    if !names::is_dns1123_subdomain(name) {
        v.error(
            codes::INVALID_NAME,
            &FieldPath::root().key("metadata").key("name"),
            format!("metadata.name {name:?} must be a DNS-1123 subdomain (lower-case letters, digits, '-', '.')"),
        );
    }
    let pod_selector = match &spec.pod_selector {
        Some(s) => v.selector(s, &spec_path.key("podSelector")),
        None => Some(LabelSelector::everything()),
    };
    let policy_types = v.policy_types(spec, &spec_path);
    let ingress: Vec<Option<NetworkPolicyRule>> = spec
        .ingress
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| {
            let path = spec_path.key("ingress").index(i);
            v.rule(r.from.as_deref(), r.ports.as_deref(), &path, "from")
        })
        .collect();
    let egress: Vec<Option<NetworkPolicyRule>> = spec
        .egress
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| {
            let path = spec_path.key("egress").index(i);
            v.rule(r.to.as_deref(), r.ports.as_deref(), &path, "to")
        })
        .collect();
    if v.errors > 0 {
        return None;
    }
    Some(NetworkPolicy {
        namespace: namespace.to_string(),
        name: name.to_string(),
        pod_selector: pod_selector?,
        policy_types: policy_types?,
        ingress: ingress.into_iter().collect::<Option<Vec<_>>>()?,
        egress: egress.into_iter().collect::<Option<Vec<_>>>()?,
        source: Some(ctx.location(ctx.node.span)),
    })
}

/// Validates and lowers a `metav1.LabelSelector` (K8S-VAL-8); problems go to `diagnostics`.
pub fn lower_selector(
    ctx: &ObjectContext<'_>,
    selector: &WireSelector,
    path: &FieldPath,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<LabelSelector> {
    let mut v = Validator {
        ctx,
        diagnostics,
        errors: 0,
    };
    v.selector(selector, path)
}

struct Validator<'a, 'b> {
    ctx: &'a ObjectContext<'b>,
    diagnostics: &'a mut Vec<Diagnostic>,
    errors: usize,
}

impl Validator<'_, '_> {
    fn error(&mut self, code: codes::Code, path: &FieldPath, message: impl Into<String>) {
        self.errors += 1;
        self.diagnostics
            .push(self.ctx.diagnostic(code, path, false, message));
    }

    fn warn(&mut self, code: codes::Code, path: &FieldPath, message: impl Into<String>) {
        self.diagnostics
            .push(self.ctx.diagnostic(code, path, false, message));
    }

    /// K8S-PT-*: explicit types are authoritative; omitted types default to Ingress plus Egress
    /// when there is at least one egress rule.
    fn policy_types(
        &mut self,
        spec: &wire::NetworkPolicySpec,
        spec_path: &FieldPath,
    ) -> Option<PolicyTypes> {
        let path = spec_path.key("policyTypes");
        match spec.policy_types.as_deref() {
            Some(types) if !types.is_empty() => {
                let mut result = PolicyTypes {
                    ingress: false,
                    egress: false,
                    defaulted: false,
                };
                let mut ok = true;
                if types.len() > 2 {
                    self.error(
                        codes::INVALID_POLICY_TYPES,
                        &path,
                        format!(
                            "policyTypes may list at most 2 entries, found {}",
                            types.len()
                        ),
                    );
                    ok = false;
                }
                for (i, t) in types.iter().enumerate() {
                    match t.as_str() {
                        "Ingress" => result.ingress = true,
                        "Egress" => result.egress = true,
                        other => {
                            let hint = if other.eq_ignore_ascii_case("ingress")
                                || other.eq_ignore_ascii_case("egress")
                            {
                                " (values are case-sensitive: Ingress, Egress)"
                            } else {
                                ""
                            };
                            self.error(
                                codes::INVALID_POLICY_TYPES,
                                &path.index(i),
                                format!(
                                    "policyTypes[{i}] {other:?} is not Ingress or Egress{hint}"
                                ),
                            );
                            ok = false;
                        }
                    }
                }
                ok.then_some(result)
            }
            _ => Some(PolicyTypes {
                ingress: true,
                egress: spec.egress.as_ref().is_some_and(|e| !e.is_empty()),
                defaulted: true,
            }),
        }
    }

    fn rule(
        &mut self,
        peers: Option<&[wire::NetworkPolicyPeer]>,
        ports: Option<&[wire::NetworkPolicyPort]>,
        path: &FieldPath,
        peers_field: &'static str,
    ) -> Option<NetworkPolicyRule> {
        let lowered_peers: Option<Vec<Option<NetworkPolicyPeer>>> =
            peers.filter(|p| !p.is_empty()).map(|peers| {
                peers
                    .iter()
                    .enumerate()
                    .map(|(i, p)| self.peer(p, &path.key(peers_field).index(i)))
                    .collect()
            });
        let lowered_ports: Option<Vec<Option<NetworkPolicyPort>>> =
            ports.filter(|p| !p.is_empty()).map(|ports| {
                ports
                    .iter()
                    .enumerate()
                    .map(|(i, p)| self.port(p, &path.key("ports").index(i)))
                    .collect()
            });
        Some(NetworkPolicyRule {
            peers: match lowered_peers {
                Some(p) => Some(p.into_iter().collect::<Option<Vec<_>>>()?),
                None => None,
            },
            ports: match lowered_ports {
                Some(p) => Some(p.into_iter().collect::<Option<Vec<_>>>()?),
                None => None,
            },
            location: Some(self.ctx.location_of(path)),
        })
    }

    /// K8S-VAL-5/6/7.
    fn peer(
        &mut self,
        peer: &wire::NetworkPolicyPeer,
        path: &FieldPath,
    ) -> Option<NetworkPolicyPeer> {
        let has_selector = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
        match (&peer.ip_block, has_selector) {
            (None, false) => {
                self.error(
                    codes::INVALID_PEER,
                    path,
                    "must specify a peer: set podSelector, namespaceSelector or ipBlock",
                );
                None
            }
            (Some(_), true) => {
                self.error(
                    codes::INVALID_PEER,
                    path,
                    "ipBlock may not be combined with podSelector or namespaceSelector in one peer; use two list entries",
                );
                None
            }
            (Some(block), false) => self.ip_block(block, &path.key("ipBlock")),
            (None, true) => {
                let namespace_selector = match &peer.namespace_selector {
                    Some(s) => Some(self.selector(s, &path.key("namespaceSelector"))?),
                    None => None,
                };
                let pod_selector = match &peer.pod_selector {
                    Some(s) => Some(self.selector(s, &path.key("podSelector"))?),
                    None => None,
                };
                Some(NetworkPolicyPeer::Pods {
                    namespace_selector,
                    pod_selector,
                })
            }
        }
    }

    fn ip_block(&mut self, block: &wire::IPBlock, path: &FieldPath) -> Option<NetworkPolicyPeer> {
        let cidr = self.cidr(&block.cidr, &path.key("cidr"))?;
        let mut excepts = Vec::new();
        let mut ok = true;
        for (i, e) in block.except.iter().flatten().enumerate() {
            match self.cidr(e, &path.key("except").index(i)) {
                Some(net) => excepts.push((i, net)),
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        for (i, e) in &excepts {
            if let Err(IpBlockError::ExceptOutsideCidr { cidr, except }) =
                IpBlock::new(cidr, vec![*e])
            {
                self.error(
                    codes::EXCEPT_OUTSIDE_CIDR,
                    &path.key("except").index(*i),
                    format!("except {except} must be a strict subset of cidr {cidr}"),
                );
                ok = false;
            }
        }
        if !ok {
            return None;
        }
        IpBlock::new(cidr, excepts.into_iter().map(|(_, e)| e).collect())
            .ok()
            .map(NetworkPolicyPeer::IpBlock)
    }

    fn cidr(&mut self, text: &str, path: &FieldPath) -> Option<IpNet> {
        match text.parse::<IpNet>() {
            Ok(net) => {
                if net.trunc() != net {
                    self.warn(
                        codes::CIDR_HOST_BITS,
                        path,
                        format!("{text} has host bits set; it is read as {}", net.trunc()),
                    );
                }
                if let IpNet::V6(v6) = net
                    && v6.addr().to_ipv4_mapped().is_some()
                {
                    self.warn(
                        codes::CIDR_HOST_BITS,
                        path,
                        format!(
                            "{text} is an IPv4-mapped IPv6 CIDR; it never matches IPv4 traffic"
                        ),
                    );
                }

                Some(net)
            }
            Err(_) => {
                self.error(
                    codes::INVALID_CIDR,
                    path,
                    crate::names::invalid_cidr_message(text),
                );
                None
            }
        }
    }

    /// K8S-VAL-1..4.
    fn port(
        &mut self,
        port: &wire::NetworkPolicyPort,
        path: &FieldPath,
    ) -> Option<NetworkPolicyPort> {
        let protocol = match port.protocol.as_deref() {
            None | Some("TCP") => Some(Protocol::Tcp),
            Some("UDP") => Some(Protocol::Udp),
            Some("SCTP") => Some(Protocol::Sctp),
            Some(other) => {
                let hint = if ["tcp", "udp", "sctp"].contains(&other.to_ascii_lowercase().as_str())
                {
                    " (values are case-sensitive)"
                } else {
                    ""
                };
                self.error(
                    codes::INVALID_PROTOCOL,
                    &path.key("protocol"),
                    format!("protocol {other:?} is not supported: use TCP, UDP or SCTP{hint}"),
                );
                None
            }
        };
        let spec = match (&port.port, port.end_port) {
            (None, None) => Some(PortSpec::Any),
            (None, Some(_)) => {
                self.error(
                    codes::INVALID_END_PORT,
                    &path.key("endPort"),
                    "endPort may only be set together with a numeric port",
                );
                None
            }
            (Some(IntOrString::String(name)), end) => {
                let mut ok = true;
                if !names::is_valid_port_name(name) {
                    let hint = if name.parse::<u32>().is_ok() {
                        " (a quoted number is a port name; write the number without quotes)"
                    } else {
                        " (1-15 characters of a-z, 0-9 and '-', at least one letter, no '--')"
                    };
                    self.error(
                        codes::INVALID_PORT_NAME,
                        &path.key("port"),
                        format!("port {name:?} is not a valid port name{hint}"),
                    );
                    ok = false;
                }
                if end.is_some() {
                    self.error(
                        codes::INVALID_END_PORT,
                        &path.key("endPort"),
                        "endPort may not be used with a named port",
                    );
                    ok = false;
                }
                ok.then(|| PortSpec::Named(name.clone()))
            }
            (Some(IntOrString::Int(start)), end) => {
                let start_ok = (1..=65535).contains(start);
                if !start_ok {
                    self.error(
                        codes::INVALID_PORT,
                        &path.key("port"),
                        format!("port {start} must be between 1 and 65535"),
                    );
                }
                let end_value = end.unwrap_or(*start);
                let mut end_ok = true;
                if let Some(end) = end {
                    if !(1..=65535).contains(&end) {
                        self.error(
                            codes::INVALID_END_PORT,
                            &path.key("endPort"),
                            format!("endPort {end} must be between 1 and 65535"),
                        );
                        end_ok = false;
                    } else if end < *start {
                        self.error(
                            codes::INVALID_END_PORT,
                            &path.key("endPort"),
                            format!("endPort {end} must be greater than or equal to port {start}"),
                        );
                        end_ok = false;
                    }
                }
                match (
                    start_ok && end_ok,
                    u16::try_from(*start),
                    u16::try_from(end_value),
                ) {
                    (true, Ok(s), Ok(e)) => PortRange::new(s, e).map(PortSpec::Range),
                    _ => None,
                }
            }
        };
        Some(NetworkPolicyPort {
            protocol: protocol?,
            port: spec?,
        })
    }

    /// K8S-VAL-8.
    fn selector(&mut self, selector: &WireSelector, path: &FieldPath) -> Option<LabelSelector> {
        let before = self.errors;
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            // Built only for a finding: most selectors are valid, and this copies the key.
            let key_path = || path.key("matchLabels").key_of(key);
            if !names::is_qualified_name(key) {
                self.error(
                    codes::INVALID_LABEL_SELECTOR,
                    &key_path(),
                    format!("matchLabels key {key:?} is not a valid label key ([prefix/]name, name up to 63 characters of [A-Za-z0-9_.-])"),
                );
            }
            if !names::is_label_value(value) {
                self.error(
                    codes::INVALID_LABEL_SELECTOR,
                    &key_path(),
                    format!("matchLabels value {value:?} is not a valid label value (up to 63 characters of [A-Za-z0-9_.-], alphanumeric at both ends)"),
                );
            }
            requirements.push(Requirement {
                key: key.clone(),
                operator: Operator::In(ValueSet::from([value.clone()])),
            });
        }
        for (i, expr) in selector.match_expressions.iter().flatten().enumerate() {
            let expr_path = || path.key("matchExpressions").index(i);
            if !names::is_qualified_name(&expr.key) {
                self.error(
                    codes::INVALID_LABEL_SELECTOR,
                    &expr_path().key("key"),
                    format!("key {:?} is not a valid label key", expr.key),
                );
            }
            let values: ValueSet = expr.values.iter().flatten().cloned().collect();
            for (j, value) in expr.values.iter().flatten().enumerate() {
                if !names::is_label_value(value) {
                    self.error(
                        codes::INVALID_LABEL_SELECTOR,
                        &expr_path().key("values").index(j),
                        format!("{value:?} is not a valid label value"),
                    );
                }
            }
            let operator = match expr.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    self.error(
                        codes::INVALID_LABEL_SELECTOR,
                        &expr_path().key("values"),
                        format!("operator {} needs at least one value", expr.operator),
                    );
                    None
                }
                "In" => Some(Operator::In(values)),
                "NotIn" => Some(Operator::NotIn(values)),
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    self.error(
                        codes::INVALID_LABEL_SELECTOR,
                        &expr_path().key("values"),
                        format!("operator {} must not have values", expr.operator),
                    );
                    None
                }
                "Exists" => Some(Operator::Exists),
                "DoesNotExist" => Some(Operator::DoesNotExist),
                other => {
                    self.error(
                        codes::INVALID_LABEL_SELECTOR,
                        &expr_path().key("operator"),
                        format!("operator {other:?} is not one of In, NotIn, Exists, DoesNotExist (case-sensitive)"),
                    );
                    None
                }
            };
            if let Some(operator) = operator {
                requirements.push(Requirement {
                    key: expr.key.clone(),
                    operator,
                });
            }
        }
        (self.errors == before).then(|| LabelSelector::from_requirements(requirements))
    }
}
