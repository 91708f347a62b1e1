//! The lint rules, one file each. `ALL` is the registry: `bulkhead rules` lists it and
//! `bulkhead rule CODE` prints a rule's doc comment.

mod broad_peer_in_narrow_policy;
mod ipblock_contains_pod_ips;
mod metadata_service_reachable;
mod missing_dns_egress;
mod named_port_undefined;
mod namespace_without_default_deny;
mod pod_not_isolated;
mod policy_selects_nothing;
mod policy_sprawl;
mod policy_types_omitted_with_egress;
mod rule_without_effect;
mod selector_matches_nothing;

use crate::lint::Rule;
use std::collections::BTreeMap;

pub static ALL: &[Rule] = &[
    Rule {
        info: missing_dns_egress::RULE,
        check: missing_dns_egress::check,
    },
    Rule {
        info: selector_matches_nothing::RULE,
        check: selector_matches_nothing::check,
    },
    Rule {
        info: policy_selects_nothing::RULE,
        check: policy_selects_nothing::check,
    },
    Rule {
        info: metadata_service_reachable::RULE,
        check: metadata_service_reachable::check,
    },
    Rule {
        info: namespace_without_default_deny::RULE,
        check: namespace_without_default_deny::check,
    },
    Rule {
        info: pod_not_isolated::RULE,
        check: pod_not_isolated::check,
    },
    Rule {
        info: rule_without_effect::RULE,
        check: rule_without_effect::check,
    },
    Rule {
        info: rule_without_effect::POLICY_RULE,
        check: rule_without_effect::check_policies,
    },
    Rule {
        info: broad_peer_in_narrow_policy::RULE,
        check: broad_peer_in_narrow_policy::check,
    },
    Rule {
        info: ipblock_contains_pod_ips::RULE,
        check: ipblock_contains_pod_ips::check,
    },
    Rule {
        info: named_port_undefined::RULE,
        check: named_port_undefined::check,
    },
    Rule {
        info: policy_types_omitted_with_egress::RULE,
        check: policy_types_omitted_with_egress::check,
    },
    Rule {
        info: policy_sprawl::RULE,
        check: policy_sprawl::check,
    },
];

pub(crate) fn list(groups: &BTreeMap<String, usize>) -> String {
    let names: Vec<String> = groups
        .iter()
        .take(5)
        .map(|(w, n)| {
            if *n > 1 {
                format!("{w} ({n} pods)")
            } else {
                w.clone()
            }
        })
        .collect();
    let more = groups.len().saturating_sub(5);
    if more > 0 {
        format!("{} and {more} more", names.join(", "))
    } else {
        names.join(", ")
    }
}
