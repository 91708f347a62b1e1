//! The endpoints of a cluster snapshot: namespaces, pods, nodes, service accounts (semantics.md §0.3).

use crate::labels::Labels;
use crate::ports::Protocol;
use crate::source::SourceLocation;
use rayon::prelude::*;
use std::fmt;
use std::net::IpAddr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    /// Includes `kubernetes.io/metadata.name`, which the API server always sets.
    pub labels: Labels,
    /// False when the namespace was only referenced, not defined in the input.
    pub defined: bool,
    /// Where the Namespace object is written, when it is.
    pub source: Option<SourceLocation>,
}

/// How a pod entered the snapshot, which decides whether it is a policy endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodOrigin {
    /// A `Pod` object. `Succeeded`/`Failed` pods are not endpoints; one without an IP (a bare
    /// Pod from Git, a `Pending` pod) is an endpoint whose address is unknown (§0.3).
    Live,
    /// The pod template of a workload (Deployment, ...): an endpoint whose IP is not known yet.
    Template,
}

/// The controlling workload of a pod: `deployment/web`, or the pod itself when it has none.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadRef {
    /// Lower-case kind as used in references: `deployment`, `statefulset`, `pod`, ...
    pub kind: String,
    pub name: String,
}

impl fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    /// At most one address per family, primary first (`status.podIPs`).
    pub ips: Vec<IpAddr>,
    pub node: Option<String>,
    pub host_network: bool,
    pub service_account: String,
    pub ports: Vec<ContainerPort>,
    pub phase: Option<String>,
    pub origin: PodOrigin,
    pub workload: WorkloadRef,
    pub source: Option<SourceLocation>,
    /// How many pods this endpoint stands for: 1 for a live pod, `spec.replicas` of a
    /// workload template (its replicas cannot be told apart before they have addresses).
    pub replicas: usize,
}

impl Pod {
    /// `namespace/name`, the reference form used on the command line and in output.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// `namespace/kind/name` of its workload (`shop/deployment/web`), the reference form of
    /// workload-level rows and findings.
    pub fn workload_key(&self) -> String {
        format!("{}/{}", self.namespace, self.workload)
    }

    /// Whether the pod takes part in policy as a workload endpoint (§0.3, K8S-PEER-4).
    pub fn is_endpoint(&self) -> bool {
        match self.origin {
            PodOrigin::Template => true,
            PodOrigin::Live => !matches!(self.phase.as_deref(), Some("Succeeded" | "Failed")),
        }
    }

    /// The IP used for a flow of the given family, if the pod has one.
    pub fn ip_for_family(&self, want_v4: bool) -> Option<IpAddr> {
        self.ips.iter().copied().find(|ip| ip.is_ipv4() == want_v4)
    }

    /// Resolves a named port on this pod for the given protocol (K8S-PORT-5).
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name) && p.protocol == protocol)
            .map(|p| p.port)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub labels: Labels,
    pub ips: Vec<IpAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccount {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
}

/// Everything the engine needs to decide flows, in a deterministic order (sorted by key).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cluster {
    pub namespaces: Vec<Namespace>,
    pub pods: Vec<Pod>,
    pub nodes: Vec<Node>,
    pub service_accounts: Vec<ServiceAccount>,
    /// Tier objects of the input; the built-in tiers are added by the engine.
    pub tiers: Vec<crate::policy::Tier>,
    /// Every policy of every API, lowered into the one IR ([`crate::policy`]); staged ones
    /// (Calico's Staged* kinds) carry [`crate::policy::Policy::staged`] and never change the
    /// enforced verdict.
    pub policies: Vec<crate::policy::Policy>,
    pub network_sets: Vec<crate::policy::NetworkSet>,
    /// Lint codes suppressed per resource (`NetworkPolicy x/web` -> [`BH101`]), from the
    /// `bulkhead.io/ignore` annotation.
    pub suppressions: std::collections::BTreeMap<String, Vec<String>>,
    /// Workloads and pods marked `bulkhead.io/crown-jewel`, as `ns/kind/name` with the kind in
    /// lower case (`shop/statefulset/db`, `shop/pod/vault-0`): blast-radius targets.
    pub crown_jewels: std::collections::BTreeSet<String>,
}

impl Cluster {
    /// Whether pod `pod` is a crown jewel: it, or the workload that owns it, is marked.
    pub fn is_crown_jewel(&self, pod: &Pod) -> bool {
        self.crown_jewels
            .contains(&format!("{}/pod/{}", pod.namespace, pod.name))
            || self.crown_jewels.contains(&pod.workload_key())
    }
}

impl Cluster {
    /// Binary search: [`Cluster::finish`] sorts namespaces by name. A cluster assembled by hand
    /// without `finish` still works, through the linear fallback.
    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        match self
            .namespaces
            .binary_search_by(|n| n.name.as_str().cmp(name))
        {
            Ok(i) => Some(&self.namespaces[i]),
            Err(_) => self.namespaces.iter().find(|n| n.name == name),
        }
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Adds namespaces that objects refer to but the input does not define, with the label the
    /// API server would give them, then sorts everything so output is deterministic.
    pub fn finish(&mut self) {
        // Looked up in a set of the defined ones: the vector is unsorted while it grows, and
        // a search of it per referenced namespace was quadratic. Borrowed, not copied: at 100k
        // pods the copies were most of this function.
        let defined: std::collections::HashSet<&str> =
            self.namespaces.iter().map(|n| n.name.as_str()).collect();
        let mut missing: Vec<&str> = self
            .pods
            .iter()
            .map(|p| p.namespace.as_str())
            .chain(self.service_accounts.iter().map(|s| s.namespace.as_str()))
            .chain(self.policies.iter().filter_map(|p| p.namespace.as_deref()))
            .filter(|name| !defined.contains(name))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        let missing: Vec<String> = missing.into_iter().map(str::to_string).collect();
        drop(defined);
        for name in missing {
            self.namespaces.push(Namespace {
                labels: Labels::from_iter([(METADATA_NAME_LABEL.to_string(), name.clone())]),
                name,
                defined: false,
                source: None,
            });
        }
        // The sorts in parallel: at 300,000 policies or 100,000 pods they were a fifth of a
        // second of one core after a load that kept both busy.
        self.namespaces.par_sort_by(|a, b| a.name.cmp(&b.name));
        self.pods
            .par_sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        self.service_accounts
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        // A policy is hundreds of bytes and a comparison sort moves what it compares: the keys
        // are sorted instead, and the policies are put in that order by swaps, in place.
        let mut keys: Vec<_> = self
            .policies
            .iter()
            .enumerate()
            .map(|(index, p)| (p.kind, p.namespace.as_deref(), p.name.as_str(), index))
            .collect();
        // `kubectl get -A` lists them sorted already.
        if !keys.is_sorted() {
            keys.par_sort_unstable();
        }
        let order: Vec<usize> = keys.into_iter().map(|(.., index)| index).collect();
        permute(&mut self.policies, order);
        self.tiers.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

/// Puts `items` in `order` (`order[i]` is the index of the item that belongs at `i`, each
/// index once) by following its cycles with swaps: no second vector of items.
fn permute<T>(items: &mut [T], mut order: Vec<usize>) {
    for start in 0..items.len() {
        let mut at = start;
        loop {
            let from = order[at];
            order[at] = at;
            if from == start || from == at {
                break;
            }
            items.swap(at, from);
            at = from;
        }
    }
}

/// The immutable namespace label every Kubernetes >= 1.21 namespace carries.
pub const METADATA_NAME_LABEL: &str = "kubernetes.io/metadata.name";

#[cfg(test)]
mod tests {
    use super::permute;

    #[test]
    fn permute_puts_each_item_where_the_order_says() {
        // Orders with fixed points, one long cycle, several cycles and a reversal.
        let orders: Vec<Vec<usize>> = vec![
            vec![],
            vec![0],
            vec![1, 0],
            vec![0, 1, 2, 3],
            vec![1, 2, 3, 4, 0],
            vec![2, 0, 1, 4, 3, 5],
            (0..100).rev().collect(),
            (0..97).map(|i| (i * 13) % 97).collect(),
        ];
        for order in orders {
            let items: Vec<String> = (0..order.len()).map(|i| format!("item{i}")).collect();
            let expected: Vec<String> = order.iter().map(|&i| items[i].clone()).collect();
            let mut permuted = items.clone();
            permute(&mut permuted, order.clone());
            assert_eq!(permuted, expected, "{order:?}");
        }
    }
}
