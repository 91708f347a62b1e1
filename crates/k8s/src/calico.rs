//! Calico `projectcalico.org/v3`: wire types, validation (semantics.md §2.11, CAL-VAL-*) and
//! lowering of NetworkPolicy, GlobalNetworkPolicy, their staged forms, NetworkSet,
//! GlobalNetworkSet and Tier into the tiered model.

use crate::codes;
use crate::document::{FieldPath, ObjectContext};
use crate::names;
use bulkhead_model::{
    Action, CalicoPort, CalicoRule, CalicoSelector, Diagnostic, EntityRule, IcmpMatch, NetworkSet,
    Policy, PolicyKind, PolicyRule, PolicyTypes, PortRange, Protocol, ServiceAccountMatch,
    StagedAction, Subject, Tier, TierDefault,
};
use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyWire {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<PolicySpecWire>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpecWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<RuleWire>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<RuleWire>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub do_not_track: Option<bool>,
    #[serde(default, rename = "preDNAT", skip_serializing_if = "Option::is_none")]
    pub pre_dnat: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_on_forward: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance_hints: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_action: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_protocol: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpWire>,
    #[serde(default, rename = "notICMP", skip_serializing_if = "Option::is_none")]
    pub not_icmp: Option<IcmpWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<EntityWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<EntityWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct IcmpWire {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nets: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_nets: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<IntOrString>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_ports: Option<Vec<IntOrString>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<ServiceAccountsWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ServiceAccountsWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

/// StagedKubernetesNetworkPolicy: a Kubernetes NetworkPolicy spec plus `stagedAction`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StagedKubernetesWire {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<StagedKubernetesSpecWire>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StagedKubernetesSpecWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_action: Option<String>,
    #[serde(flatten)]
    pub spec: k8s_openapi::api::networking::v1::NetworkPolicySpec,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TierWire {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<TierSpecWire>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TierSpecWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSetWire {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<NetworkSetSpecWire>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct NetworkSetSpecWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nets: Option<Vec<String>>,
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

    /// Parses a selector; an error points at the column inside the YAML string when the
    /// string is written on one line.
    fn selector(
        &mut self,
        text: &str,
        path: &FieldPath,
        allow_global: bool,
    ) -> Option<CalicoSelector> {
        match CalicoSelector::parse(text) {
            Ok(s) => {
                if s.mentions_global() && !(allow_global && s == CalicoSelector::Global) {
                    self.error(
                        codes::INVALID_CALICO_SELECTOR,
                        path,
                        format!(
                            "global() is only allowed alone, as a rule namespaceSelector: {text:?}"
                        ),
                    );
                    return None;
                }
                Some(s)
            }
            Err(e) => {
                let mut d = self.ctx.diagnostic(
                    codes::INVALID_CALICO_SELECTOR,
                    path,
                    false,
                    format!("invalid selector {text:?}: {}", e.message),
                );
                // Point inside the string: the value starts at the span, plus a quote if any.
                if let (Some(location), Some(line)) = (d.location.as_mut(), d.source_line.as_ref())
                {
                    let start = location.column.saturating_sub(1);
                    let quoted = line[start.min(line.len())..].starts_with(['\'', '"']);
                    let inside = line
                        .get(start + usize::from(quoted)..)
                        .is_some_and(|rest| rest.starts_with(text));
                    if inside {
                        location.column +=
                            usize::from(quoted) + text[..e.offset.min(text.len())].chars().count();
                        d.length = 1;
                    }
                }
                self.errors += 1;
                self.diagnostics.push(d);
                None
            }
        }
    }

    fn cidr(&mut self, text: &str, path: &FieldPath) -> Option<IpNet> {
        match text.parse::<IpNet>() {
            Ok(n) => Some(n.trunc()),
            // Calico also accepts a bare address as a /32 or /128.
            Err(_) => match text.parse::<std::net::IpAddr>() {
                Ok(ip) => Some(IpNet::from(ip)),
                Err(_) => {
                    self.error(
                        codes::INVALID_CIDR,
                        path,
                        crate::names::invalid_cidr_message(text),
                    );
                    None
                }
            },
        }
    }
}

fn parse_protocol(value: &IntOrString) -> Option<Protocol> {
    match value {
        IntOrString::Int(n) => u8::try_from(*n)
            .ok()
            .filter(|n| *n >= 1)
            .map(|n| Protocol::Number(n).canonical()),
        IntOrString::String(s) => match s.as_str() {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "ICMP" => Some(Protocol::Icmp),
            "ICMPv6" => Some(Protocol::Icmpv6),
            "SCTP" => Some(Protocol::Sctp),
            "UDPLite" => Some(Protocol::Number(136)),
            other => other
                .parse::<u8>()
                .ok()
                .filter(|n| *n >= 1)
                .map(|n| Protocol::Number(n).canonical()),
        },
    }
}

fn parse_types(
    v: &mut Validator<'_, '_>,
    types: Option<&[String]>,
    has_ingress: bool,
    has_egress: bool,
    path: &FieldPath,
) -> Option<PolicyTypes> {
    match types {
        Some(types) if !types.is_empty() => {
            let mut t = PolicyTypes {
                ingress: false,
                egress: false,
                defaulted: false,
            };
            let mut ok = true;
            for (i, value) in types.iter().enumerate() {
                let seen = match value.as_str() {
                    "Ingress" => std::mem::replace(&mut t.ingress, true),
                    "Egress" => std::mem::replace(&mut t.egress, true),
                    other => {
                        v.error(
                            codes::INVALID_POLICY_TYPES,
                            &path.index(i),
                            format!("types[{i}] {other:?} is not Ingress or Egress"),
                        );
                        ok = false;
                        continue;
                    }
                };
                if seen {
                    v.error(
                        codes::INVALID_POLICY_TYPES,
                        &path.index(i),
                        format!("types lists {value} twice (CAL-TYPES-2)"),
                    );
                    ok = false;
                }
            }
            ok.then_some(t)
        }
        // CAL-TYPES-1: differs from Kubernetes; egress-only rules do not isolate ingress.
        _ => Some(PolicyTypes {
            ingress: has_ingress || !has_egress,
            egress: has_egress,
            defaulted: true,
        }),
    }
}

/// Lowers a Calico NetworkPolicy / GlobalNetworkPolicy (or a staged one).
pub fn lower_policy(
    ctx: &ObjectContext<'_>,
    wire: &PolicyWire,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Policy> {
    let mut v = Validator {
        ctx,
        diagnostics,
        errors: 0,
    };
    let spec_path = FieldPath::root().key("spec");
    let spec = wire.spec.clone().unwrap_or_default();
    let global = kind.contains("Global");
    if name.len() > 253 || !names::is_dns1123_subdomain(name) {
        v.error(
            codes::INVALID_NAME,
            &FieldPath::root().key("metadata").key("name"),
            format!("metadata.name {name:?} must be a DNS-1123 subdomain"),
        );
    }
    let staged = match spec.staged_action.as_deref() {
        _ if !kind.starts_with("Staged") => None,
        None | Some("Set") => Some(StagedAction::Set),
        Some("Delete") => Some(StagedAction::Delete),
        Some("Learn" | "Ignore") => Some(StagedAction::Set),
        Some(other) => {
            v.error(
                codes::INVALID_CALICO_RULE,
                &spec_path.key("stagedAction"),
                format!("stagedAction {other:?} is not Set or Delete"),
            );
            None
        }
    };
    let selector = v.selector(
        spec.selector.as_deref().unwrap_or(""),
        &spec_path.key("selector"),
        false,
    );
    let namespace_selector = match &spec.namespace_selector {
        Some(s) if global => v
            .selector(s, &spec_path.key("namespaceSelector"), false)
            .map(Some),
        Some(_) => {
            v.error(
                codes::INVALID_CALICO_RULE,
                &spec_path.key("namespaceSelector"),
                "namespaceSelector is only valid in a GlobalNetworkPolicy",
            );
            None
        }
        None => Some(None),
    };
    let service_account_selector = match &spec.service_account_selector {
        Some(s) => v
            .selector(s, &spec_path.key("serviceAccountSelector"), false)
            .map(Some),
        None => Some(None),
    };
    let ingress_rules = spec.ingress.clone().unwrap_or_default();
    let egress_rules = spec.egress.clone().unwrap_or_default();
    let types = parse_types(
        &mut v,
        spec.types.as_deref(),
        !ingress_rules.is_empty(),
        !egress_rules.is_empty(),
        &spec_path.key("types"),
    );
    // CAL-HEP-1.
    let pre_dnat = spec.pre_dnat.unwrap_or(false);
    let do_not_track = spec.do_not_track.unwrap_or(false);
    if pre_dnat && do_not_track {
        v.error(
            codes::INVALID_CALICO_RULE,
            &spec_path.key("preDNAT"),
            "preDNAT and doNotTrack cannot both be set",
        );
    }
    if (pre_dnat || do_not_track) && !spec.apply_on_forward.unwrap_or(false) {
        v.error(
            codes::INVALID_CALICO_RULE,
            &spec_path.key(if pre_dnat { "preDNAT" } else { "doNotTrack" }),
            "preDNAT and doNotTrack require applyOnForward: true",
        );
    }
    if pre_dnat && (!egress_rules.is_empty() || types.is_some_and(|t| t.egress && !t.defaulted)) {
        v.error(
            codes::INVALID_CALICO_RULE,
            &spec_path.key("preDNAT"),
            "a preDNAT policy may not have egress rules or the Egress type",
        );
    }
    if (pre_dnat || do_not_track || spec.apply_on_forward.unwrap_or(false)) && !global {
        v.error(
            codes::INVALID_CALICO_RULE,
            &spec_path,
            "preDNAT, doNotTrack and applyOnForward are only valid in a GlobalNetworkPolicy",
        );
    }
    let ingress: Vec<Option<PolicyRule>> = ingress_rules
        .iter()
        .enumerate()
        .map(|(i, r)| lower_rule(&mut v, r, &spec_path.key("ingress").index(i), true))
        .collect();
    let egress: Vec<Option<PolicyRule>> = egress_rules
        .iter()
        .enumerate()
        .map(|(i, r)| lower_rule(&mut v, r, &spec_path.key("egress").index(i), false))
        .collect();
    if staged == Some(StagedAction::Delete)
        && (!ingress_rules.is_empty() || !egress_rules.is_empty() || spec.selector.is_some())
    {
        v.error(codes::INVALID_CALICO_RULE, &spec_path, "a staged policy with stagedAction Delete must have an otherwise empty spec (CAL-VAL-12)");
    }
    if v.errors > 0 {
        return None;
    }
    let policy_kind = if global {
        PolicyKind::GlobalNetworkPolicy
    } else {
        PolicyKind::CalicoNetworkPolicy
    };
    Some(Policy {
        kind: policy_kind,
        namespace: if global {
            None
        } else {
            namespace.map(str::to_string)
        },
        name: name.to_string(),
        tier: spec
            .tier
            .clone()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| Tier::DEFAULT.to_string()),
        order: spec.order,
        staged,
        subject: Subject::Calico {
            selector: selector?,
            namespace_selector: namespace_selector?,
            service_account_selector: service_account_selector?,
        },
        types: types?,
        ingress: ingress.into_iter().collect::<Option<Vec<_>>>()?,
        egress: egress.into_iter().collect::<Option<Vec<_>>>()?,
        host_endpoints_only: pre_dnat || do_not_track,
        source: Some(ctx.location(ctx.node.span)),
    })
}

fn lower_rule(
    v: &mut Validator<'_, '_>,
    rule: &RuleWire,
    path: &FieldPath,
    ingress: bool,
) -> Option<PolicyRule> {
    let before = v.errors;
    let action = match rule.action.as_deref() {
        Some("Allow") => Some(Action::Allow),
        Some("Deny") => Some(Action::Deny),
        Some("Pass") => Some(Action::Pass),
        Some("Log") => Some(Action::Log),
        other => {
            v.error(
                codes::INVALID_CALICO_RULE,
                &path.key("action"),
                format!(
                    "action {:?} is not one of Allow, Deny, Log, Pass",
                    other.unwrap_or("")
                ),
            );
            None
        }
    };
    let protocol = rule.protocol.as_ref().and_then(|p| {
        let parsed = parse_protocol(p);
        if parsed.is_none() {
            v.error(
                codes::INVALID_PROTOCOL,
                &path.key("protocol"),
                format!("protocol {p:?} is not TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or 1-255"),
            );
        }
        parsed
    });
    let not_protocol = rule.not_protocol.as_ref().and_then(|p| {
        let parsed = parse_protocol(p);
        if parsed.is_none() {
            v.error(
                codes::INVALID_PROTOCOL,
                &path.key("notProtocol"),
                format!("notProtocol {p:?} is not a protocol"),
            );
        }
        parsed
    });
    let ip_version = match rule.ip_version {
        None => None,
        Some(4) => Some(4u8),
        Some(6) => Some(6u8),
        Some(other) => {
            v.error(
                codes::INVALID_CALICO_RULE,
                &path.key("ipVersion"),
                format!("ipVersion {other} is not 4 or 6"),
            );
            None
        }
    };
    let is_icmp = matches!(protocol, Some(Protocol::Icmp | Protocol::Icmpv6));
    let icmp_match = |field: &'static str,
                      wire: Option<&IcmpWire>,
                      v: &mut Validator<'_, '_>|
     -> Option<IcmpMatch> {
        let wire = wire?;
        if !is_icmp {
            v.error(
                codes::INVALID_CALICO_RULE,
                &path.key(field),
                format!("{field} needs protocol ICMP or ICMPv6 (CAL-VAL-4)"),
            );
            return None;
        }
        let Some(t) = wire.icmp_type else {
            v.error(
                codes::INVALID_CALICO_RULE,
                &path.key(field),
                format!("{field}.code needs {field}.type"),
            );
            return None;
        };
        if !(0..=254).contains(&t) || wire.code.is_some_and(|c| !(0..=255).contains(&c)) {
            v.error(
                codes::INVALID_CALICO_RULE,
                &path.key(field),
                "ICMP type must be 0-254 and code 0-255",
            );
            return None;
        }
        Some(IcmpMatch {
            icmp_type: u8::try_from(t).ok()?,
            code: wire.code.and_then(|c| u8::try_from(c).ok()),
        })
    };
    let icmp = icmp_match("icmp", rule.icmp.as_ref(), v);
    let not_icmp = icmp_match("notICMP", rule.not_icmp.as_ref(), v);
    if protocol == Some(Protocol::Icmp) && ip_version == Some(6)
        || protocol == Some(Protocol::Icmpv6) && ip_version == Some(4)
    {
        v.error(
            codes::INVALID_CALICO_RULE,
            &path.key("ipVersion"),
            "ICMP needs ipVersion 4 and ICMPv6 ipVersion 6",
        );
    }
    let source = lower_entity(
        v,
        rule.source.as_ref(),
        &path.key("source"),
        protocol,
        ip_version,
        "source",
        ingress,
    );
    let destination = lower_entity(
        v,
        rule.destination.as_ref(),
        &path.key("destination"),
        protocol,
        ip_version,
        "destination",
        ingress,
    );
    if let (Some(s), Some(d)) = (&source, &destination) {
        let family = |nets: &[IpNet]| nets.iter().map(|n| n.addr().is_ipv4()).collect::<Vec<_>>();
        let all: Vec<bool> = [&s.nets, &s.not_nets, &d.nets, &d.not_nets]
            .iter()
            .flat_map(|n| family(n))
            .collect();
        if all.iter().any(|x| *x) && all.iter().any(|x| !*x) {
            v.error(
                codes::INVALID_CALICO_RULE,
                path,
                "a rule cannot mix IPv4 and IPv6 CIDRs (CAL-VAL-5)",
            );
        }
        if let Some(version) = ip_version
            && all
                .iter()
                .any(|is_v4| (*is_v4 && version == 6) || (!*is_v4 && version == 4))
        {
            v.error(
                codes::INVALID_CALICO_RULE,
                &path.key("ipVersion"),
                "ipVersion does not match the rule's CIDRs",
            );
        }
    }
    if rule.http.is_some() {
        v.warn(
            codes::UNSUPPORTED_FIELD,
            &path.key("http"),
            "HTTP match criteria are L7; Bulkhead judges the rule on its L3/L4 criteria only",
        );
    }
    if v.errors > before {
        return None;
    }
    Some(PolicyRule {
        name: None,
        action: action?,
        matcher: bulkhead_model::RuleMatcher::Calico(Box::new(CalicoRule {
            protocol,
            not_protocol,
            ip_version,
            icmp,
            not_icmp,
            source: source?,
            destination: destination?,
            has_http_match: rule.http.is_some(),
        })),
        location: Some(v.ctx.location_of(path)),
    })
}

fn lower_entity(
    v: &mut Validator<'_, '_>,
    entity: Option<&EntityWire>,
    path: &FieldPath,
    protocol: Option<Protocol>,
    _ip_version: Option<u8>,
    side: &str,
    _ingress: bool,
) -> Option<EntityRule> {
    let Some(e) = entity else {
        return Some(EntityRule::default());
    };
    let before = v.errors;
    let nets: Vec<IpNet> = e
        .nets
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, n)| v.cidr(n, &path.key("nets").index(i)))
        .collect();
    let not_nets: Vec<IpNet> = e
        .not_nets
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, n)| v.cidr(n, &path.key("notNets").index(i)))
        .collect();
    for (i, n) in not_nets.iter().enumerate() {
        if n.prefix_len() == 0 {
            v.error(codes::INVALID_CALICO_RULE, &path.key("notNets").index(i), format!("{n} in notNets matches every address, so the rule could never match (CAL-VAL-5)"));
        }
    }
    let selector = e
        .selector
        .as_ref()
        .and_then(|s| v.selector(s, &path.key("selector"), false));
    let not_selector = e
        .not_selector
        .as_ref()
        .and_then(|s| v.selector(s, &path.key("notSelector"), false));
    let namespace_selector = e
        .namespace_selector
        .as_ref()
        .and_then(|s| v.selector(s, &path.key("namespaceSelector"), true));
    let has_ports = e.ports.as_ref().is_some_and(|p| !p.is_empty())
        || e.not_ports.as_ref().is_some_and(|p| !p.is_empty());
    let port_list = |field: &'static str,
                     list: Option<&Vec<IntOrString>>,
                     v: &mut Validator<'_, '_>|
     -> Vec<CalicoPort> {
        let mut out = Vec::new();
        for (i, p) in list.into_iter().flatten().enumerate() {
            let p_path = path.key(field).index(i);
            match parse_port(p) {
                Ok(port) => {
                    if matches!(port, CalicoPort::Range(_))
                        && !protocol.is_some_and(Protocol::has_ports)
                    {
                        v.error(codes::INVALID_PORT, &p_path, format!("numeric port {p:?} needs the rule's protocol to be TCP, UDP or SCTP (CAL-VAL-2)"));
                    }
                    out.push(port);
                }
                Err(message) => v.error(codes::INVALID_PORT, &p_path, message),
            }
        }
        out
    };
    let ports = port_list("ports", e.ports.as_ref(), v);
    let not_ports = port_list("notPorts", e.not_ports.as_ref(), v);
    if has_ports && protocol.is_some_and(|p| !p.has_ports()) {
        v.error(
            codes::INVALID_PORT,
            &path.key("ports"),
            format!(
                "protocol {} has no ports, so ports are not allowed (CAL-VAL-2)",
                protocol.map(|p| p.to_string()).unwrap_or_default()
            ),
        );
    }
    let service_accounts = e.service_accounts.as_ref().map(|sa| ServiceAccountMatch {
        names: sa.names.clone().unwrap_or_default(),
        selector: sa
            .selector
            .as_ref()
            .and_then(|s| v.selector(s, &path.key("serviceAccounts").key("selector"), false)),
    });
    if e.services.is_some() {
        v.warn(
            codes::UNSUPPORTED_FIELD,
            &path.key("services"),
            format!("{side}.services needs Service endpoints, which Bulkhead does not model yet; this rule is taken never to match"),
        );
    }
    if v.errors > before {
        return None;
    }
    Some(EntityRule {
        nets,
        not_nets,
        selector,
        not_selector,
        namespace_selector,
        ports,
        not_ports,
        service_accounts,
        services: e.services.is_some(),
    })
}

fn parse_port(p: &IntOrString) -> Result<CalicoPort, String> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n)
            .map(|n| CalicoPort::Range(PortRange::single(n)))
            .map_err(|_| format!("port {n} must be between 0 and 65535")),
        IntOrString::String(s) => {
            if let Some((lo, hi)) = s.split_once(':') {
                let (Ok(lo), Ok(hi)) = (lo.trim().parse::<u16>(), hi.trim().parse::<u16>()) else {
                    return Err(format!(
                        "port range {s:?} must be \"min:max\" with numbers 0-65535"
                    ));
                };
                return PortRange::new(lo, hi)
                    .map(CalicoPort::Range)
                    .ok_or_else(|| format!("port range {s:?} has min > max"));
            }
            if let Ok(n) = s.parse::<u16>() {
                return Ok(CalicoPort::Range(PortRange::single(n)));
            }
            let valid = !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            if valid {
                Ok(CalicoPort::Named(s.clone()))
            } else {
                Err(format!(
                    "{s:?} is not a port, a \"min:max\" range or a port name"
                ))
            }
        }
    }
}

pub fn lower_tier(
    ctx: &ObjectContext<'_>,
    wire: &TierWire,
    name: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Tier> {
    let mut v = Validator {
        ctx,
        diagnostics,
        errors: 0,
    };
    let spec = wire.spec.clone().unwrap_or_default();
    let spec_path = FieldPath::root().key("spec");
    let default_action = match spec.default_action.as_deref() {
        None | Some("Deny") => TierDefault::Deny,
        Some("Pass") => TierDefault::Pass,
        Some(other) => {
            v.error(
                codes::INVALID_CALICO_RULE,
                &spec_path.key("defaultAction"),
                format!("defaultAction {other:?} must be Deny or Pass"),
            );
            TierDefault::Deny
        }
    };
    for built_in in Tier::built_in() {
        if built_in.name == name
            && (spec.order != built_in.order || default_action != built_in.default_action)
        {
            v.error(
                codes::INVALID_CALICO_RULE,
                &spec_path,
                format!("tier {name} is built in with order {} and defaultAction {:?}; they cannot be changed", built_in.order.unwrap_or_default(), built_in.default_action),
            );
        }
    }
    (v.errors == 0).then(|| Tier {
        name: name.to_string(),
        order: spec.order,
        default_action,
        source: Some(ctx.location(ctx.node.span)),
    })
}

pub fn lower_network_set(
    ctx: &ObjectContext<'_>,
    wire: &NetworkSetWire,
    namespace: Option<&str>,
    name: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<NetworkSet> {
    let mut v = Validator {
        ctx,
        diagnostics,
        errors: 0,
    };
    let path = FieldPath::root().key("spec").key("nets");
    let nets: Vec<IpNet> = wire
        .spec
        .iter()
        .flat_map(|s| s.nets.iter().flatten())
        .enumerate()
        .filter_map(|(i, n)| v.cidr(n, &path.index(i)))
        .collect();
    (v.errors == 0).then(|| NetworkSet {
        namespace: namespace.map(str::to_string),
        name: name.to_string(),
        labels: crate::labels_of(wire.metadata.labels.as_ref()),
        nets,
    })
}
