//! BH112 policy-types-omitted-with-egress.
//!
//! ## What it flags
//! A NetworkPolicy without `policyTypes` that has egress rules. The mistake cannot be written
//! in the other APIs: Calico defaults `types` to Egress alone for a policy with only egress
//! rules (CAL-TYPES-1), and AdminNetworkPolicy, BaselineAdminNetworkPolicy and
//! ClusterNetworkPolicy have no such field (a direction applies exactly when rules for it are
//! written).
//!
//! ## Why it matters
//! The API server then defaults `policyTypes` to `[Ingress, Egress]`: the selected pods also
//! become isolated for ingress, with no ingress rule, so all their inbound traffic stops. Few
//! authors of an egress policy expect that.
//!
//! ## Example
//! `spec: {podSelector: {matchLabels: {app: api}}, egress: [...]}`
//!
//! ## Fix
//! Write `policyTypes: [Egress]` (or both, with the ingress rules you mean).

use crate::lint::{LintContext, RuleInfo, resource};
use bulkhead_model::{Diagnostic, Severity};

pub const RULE: RuleInfo = RuleInfo {
    code: "BH112",
    name: "policy-types-omitted-with-egress",
    severity: Severity::Warning,
    summary: "policyTypes omitted while egress rules exist: ingress is isolated too",
    doc: include_str!("policy_types_omitted_with_egress.rs"),
};

pub fn check(ctx: &LintContext<'_>) -> Vec<Diagnostic> {
    // Only the Kubernetes API defaults policyTypes from the rules; Calico's `types` default is
    // documented and the policy.networking.k8s.io kinds have none (see the doc above).
    ctx.cluster
        .policies
        .iter()
        .filter(|p| p.is_kubernetes() && p.types.defaulted && p.types.egress)
        .map(|p| {
            let res = resource("NetworkPolicy", p.namespace.as_deref(), &p.name);
            ctx.finding(&RULE, Some(res.clone()), p.source.as_ref(), format!("{res} has egress rules but no policyTypes: the API server defaults it to [Ingress, Egress], so ingress to the selected pods is denied too"), "state policyTypes: [Egress] (or both, with ingress rules)")
        })
        .collect()
}
