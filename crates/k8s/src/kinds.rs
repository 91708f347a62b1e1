//! The kinds each API group serves, to tell a typo (`NetworkPolicyy`) from a kind Bulkhead does
//! not read, and the network-policy kinds of other projects, which must not pass as harmless.

use bulkhead_model::edit_distance::edit_distance;

/// Kinds served by the API groups users write by hand (built-in groups, and the policy groups
/// of Calico, Cilium, Antrea and network-policy-api). The key is the group (`""` for `v1`).
const KNOWN: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "Binding",
            "ComponentStatus",
            "ConfigMap",
            "Endpoints",
            "Event",
            "LimitRange",
            "List",
            "Namespace",
            "Node",
            "PersistentVolume",
            "PersistentVolumeClaim",
            "Pod",
            "PodTemplate",
            "ReplicationController",
            "ResourceQuota",
            "Secret",
            "Service",
            "ServiceAccount",
        ],
    ),
    (
        "apps",
        &[
            "ControllerRevision",
            "DaemonSet",
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
        ],
    ),
    ("batch", &["CronJob", "Job"]),
    (
        "networking.k8s.io",
        &[
            "IPAddress",
            "Ingress",
            "IngressClass",
            "NetworkPolicy",
            "ServiceCIDR",
        ],
    ),
    (
        "policy.networking.k8s.io",
        &[
            "AdminNetworkPolicy",
            "BaselineAdminNetworkPolicy",
            "ClusterNetworkPolicy",
        ],
    ),
    ("projectcalico.org", CALICO),
    ("crd.projectcalico.org", CALICO),
    (
        "cilium.io",
        &[
            "CiliumCIDRGroup",
            "CiliumClusterwideNetworkPolicy",
            "CiliumEndpoint",
            "CiliumIdentity",
            "CiliumNetworkPolicy",
            "CiliumNode",
        ],
    ),
    ("crd.antrea.io", ANTREA),
    ("policy", &["PodDisruptionBudget"]),
    (
        "rbac.authorization.k8s.io",
        &["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"],
    ),
    ("autoscaling", &["HorizontalPodAutoscaler"]),
];

/// Antrea's kinds are all policy.
const ANTREA: &[&str] = &[
    "ClusterGroup",
    "ClusterNetworkPolicy",
    "Group",
    "NetworkPolicy",
    "Tier",
];

const CALICO: &[&str] = &[
    "BGPConfiguration",
    "BGPFilter",
    "BGPPeer",
    "FelixConfiguration",
    "GlobalNetworkPolicy",
    "GlobalNetworkSet",
    "HostEndpoint",
    "IPPool",
    "IPReservation",
    "KubeControllersConfiguration",
    "NetworkPolicy",
    "NetworkSet",
    "Profile",
    "StagedGlobalNetworkPolicy",
    "StagedKubernetesNetworkPolicy",
    "StagedNetworkPolicy",
    "Tier",
];

/// Kinds that carry network policy in groups whose other kinds do not (Calico's BGP and IP
/// pools, Cilium's endpoints and nodes are configuration, not policy).
const POLICY_KINDS: &[(&str, &[&str])] = &[
    ("projectcalico.org", &["HostEndpoint", "Profile"]),
    ("crd.projectcalico.org", &["HostEndpoint", "Profile"]),
    (
        "cilium.io",
        &[
            "CiliumCIDRGroup",
            "CiliumClusterwideNetworkPolicy",
            "CiliumNetworkPolicy",
        ],
    ),
    ("crd.antrea.io", ANTREA),
    ("policy.networking.k8s.io", &[]),
];

/// A known kind of `group` that `kind` is probably a typo of (edit distance at most 2, or the
/// same letters in another case), when `kind` itself is not a kind of that group.
pub fn close_known_kind(group: &str, kind: &str) -> Option<&'static str> {
    let (_, kinds) = KNOWN.iter().find(|(g, _)| *g == group)?;
    if kinds.contains(&kind) {
        return None;
    }
    kinds
        .iter()
        .map(|k| {
            (
                edit_distance(&k.to_ascii_lowercase(), &kind.to_ascii_lowercase()),
                *k,
            )
        })
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

/// Whether `kind` of `group` is network policy of another project (Cilium, Antrea) or a
/// Calico / network-policy-api kind Bulkhead does not model.
pub fn is_unmodelled_policy(group: &str, kind: &str) -> bool {
    POLICY_KINDS
        .iter()
        .any(|(g, kinds)| *g == group && (kinds.is_empty() || kinds.contains(&kind)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_are_told_from_real_kinds() {
        assert_eq!(
            close_known_kind("networking.k8s.io", "NetworkPolicyy"),
            Some("NetworkPolicy")
        );
        assert_eq!(
            close_known_kind("networking.k8s.io", "networkpolicy"),
            Some("NetworkPolicy")
        );
        assert_eq!(close_known_kind("", "ConfigMapp"), Some("ConfigMap"));
        assert_eq!(close_known_kind("networking.k8s.io", "Ingress"), None);
        assert_eq!(close_known_kind("example.com", "NetworkPolicyy"), None);
        assert_eq!(close_known_kind("", "Gateway"), None);
    }

    #[test]
    fn other_projects_policies_are_policy() {
        assert!(is_unmodelled_policy("cilium.io", "CiliumNetworkPolicy"));
        assert!(!is_unmodelled_policy("cilium.io", "CiliumNode"));
        assert!(is_unmodelled_policy("projectcalico.org", "HostEndpoint"));
        assert!(!is_unmodelled_policy("projectcalico.org", "IPPool"));
        assert!(!is_unmodelled_policy("", "ConfigMap"));
    }
}
