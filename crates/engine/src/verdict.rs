//! Verdicts and their explanations: the engine never says allow or deny without saying why
//! (house rule 4). Reason codes follow semantics.md §4.1.

use bulkhead_model::{Direction, SourceLocation};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The source pod is the destination pod (K8S-ISO-8).
    SelfTraffic,
    /// Traffic between a pod and its own node (K8S-ISO-6).
    NodeLocal,
    /// No policy pipeline on this side: a node or an external address.
    NotApplicable,
    /// No NetworkPolicy selects the pod for this direction.
    NotIsolated,
    /// Isolated and at least one rule allows the flow.
    NpAllow,
    /// Isolated and no rule matched.
    NpDenyIsolated,
    /// Calico view of `NotIsolated`: no tier applies, the `kns.<ns>` profile allows.
    ProfileAllow,
    /// Calico view of `NpAllow` (a Kubernetes policy in tier `default`).
    CalicoAllow,
    /// Calico view of `NpDenyIsolated`: the end-of-tier deny of a tier that applies.
    TierEndDeny,
    /// A Calico rule with action Deny.
    CalicoDeny,
    AnpAllow,
    AnpDeny,
    BanpAllow,
    BanpDeny,
    /// Some layer applied but none decided: Kubernetes' final default.
    DefaultAllow,
}

impl Reason {
    /// The stable code printed in JSON and explanations.
    pub fn code(self) -> &'static str {
        match self {
            Reason::SelfTraffic => "SELF",
            Reason::NodeLocal => "NODE_LOCAL",
            Reason::NotApplicable => "NOT_APPLICABLE",
            Reason::NotIsolated => "NOT_ISOLATED",
            Reason::NpAllow => "NP_ALLOW",
            Reason::NpDenyIsolated => "NP_DENY_ISOLATED",
            Reason::ProfileAllow => "PROFILE_ALLOW",
            Reason::CalicoAllow => "CAL_ALLOW",
            Reason::TierEndDeny => "TIER_END_DENY",
            Reason::CalicoDeny => "CAL_DENY",
            Reason::AnpAllow => "ANP_ALLOW",
            Reason::AnpDeny => "ANP_DENY",
            Reason::BanpAllow => "BANP_ALLOW",
            Reason::BanpDeny => "BANP_DENY",
            Reason::DefaultAllow => "DEFAULT_ALLOW",
        }
    }

    /// The named default or decision, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::SelfTraffic => "traffic from a pod to itself is always allowed",
            Reason::NodeLocal => "traffic between a pod and its own node is always allowed",
            Reason::NotApplicable => "no policy applies to this side (not a pod)",
            Reason::NotIsolated => "not isolated",
            Reason::NpAllow => "allowed by rule",
            Reason::NpDenyIsolated => "isolated, no rule matched",
            Reason::ProfileAllow => "no tier decided; profile kns allows",
            Reason::CalicoAllow => "allowed by rule",
            Reason::TierEndDeny => {
                "end of tier: deny (a policy of the tier selects the pod, no rule matched)"
            }
            Reason::CalicoDeny => "denied by rule",
            Reason::AnpAllow => "allowed by admin policy rule",
            Reason::AnpDeny => "denied by admin policy rule",
            Reason::BanpAllow => "allowed by baseline policy rule",
            Reason::BanpDeny => "denied by baseline policy rule",
            Reason::DefaultAllow => "no layer decided: allow",
        }
    }
}

/// A policy rule (or, for an implicit deny, a policy) that took part in a decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleRef {
    pub kind: &'static str,
    pub namespace: Option<String>,
    pub name: String,
    pub tier: String,
    /// `ingress[0]`; `None` when the policy decided by isolating without a matching rule.
    pub rule: Option<String>,
    pub action: &'static str,
    /// What matched, in words: the peer and port entries.
    pub detail: String,
    pub source: Option<SourceLocation>,
}

/// A caveat attached to a verdict: the engine choices of semantics.md §5 that applied.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Note {
    /// `UNDEFINED_PROTOCOL`, `HOSTNETWORK_UNDEFINED`, `SELF`, `POD_IP_UNKNOWN`, ...
    pub code: &'static str,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectionVerdict {
    pub direction: Direction,
    pub allowed: bool,
    pub reason: Reason,
    pub decided_by: Vec<RuleRef>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub egress: DirectionVerdict,
    pub ingress: DirectionVerdict,
    pub notes: Vec<Note>,
    /// The verdict if the staged policies were enforced (CAL-STG-1); `None` without any.
    pub staged: Option<Box<Verdict>>,
}
