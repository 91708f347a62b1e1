//! Whether a namespace is default-deny in a direction, decided with the engine rather than by
//! looking for `podSelector: {}`: a new pod in the namespace, with no labels and no address yet,
//! must be neither reachable from nor able to reach an outside address on a port nobody uses,
//! nor another new pod of the same namespace (a policy that allows all traffic inside the
//! namespace, such as `deny-cross-namespace`, isolates the namespace but denies nothing by
//! default within it). That counts every way to write a default deny: a NetworkPolicy selecting all pods, a Calico
//! (Global)NetworkPolicy or tier end, a BaselineAdminNetworkPolicy, and it does not count an
//! "isolating" policy that allows everything anyway.

use bulkhead_engine::{Endpoint, Engine, Flow};
use bulkhead_model::{
    Cluster, Direction, Labels, Namespace, Pod, PodOrigin, Policy, Protocol, Subject, WorkloadRef,
};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// An address no real peer has (TEST-NET-1) and a port no real service uses.
const OUTSIDE: [u8; 4] = [192, 0, 2, 123];
const UNUSED_PORT: u16 = 65_123;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefaultDeny {
    pub ingress: bool,
    pub egress: bool,
}

/// Every namespace of the snapshot, with its default-deny state.
pub fn namespaces(engine: &Engine<'_>) -> BTreeMap<String, DefaultDeny> {
    namespaces_where(engine, |_| true)
}

/// The namespaces `wanted` picks, with their default-deny state. Only their probes are
/// built, and of the namespaced policies only theirs are kept: a namespaced policy selects
/// pods of its own namespace alone, and every probed flow runs between a namespace's probes
/// and an outside address, so another namespace's policy or labels cannot change a probe's
/// verdict.
/// (A policy repository of 50,000 namespaces and four pods asks about a handful.)
pub fn namespaces_where(
    engine: &Engine<'_>,
    wanted: impl Fn(&Namespace) -> bool,
) -> BTreeMap<String, DefaultDeny> {
    let cluster = engine.cluster();
    let probed: std::collections::HashSet<&str> = cluster
        .namespaces
        .iter()
        .filter(|ns| wanted(ns))
        .map(|ns| ns.name.as_str())
        .collect();
    // The policies and namespaces as they are, and two probe pods per namespace instead of
    // the real pods (whose labels would only get in the way of "a new pod"): the new pod at
    // even indices and a second new pod, its neighbour, after it.
    let probes: Vec<Pod> = cluster
        .namespaces
        .iter()
        .filter(|ns| probed.contains(ns.name.as_str()))
        .flat_map(|ns| {
            let mut neighbour = new_pod(&ns.name);
            neighbour.name = format!("{NEW_POD_NAME}-neighbour");
            neighbour.workload.name.clone_from(&neighbour.name);
            [new_pod(&ns.name), neighbour]
        })
        .collect();
    // Every field spelled out: a new kind of policy input must be thought about here.
    // Only the probed namespaces: no probed flow leaves one, so no selector is ever asked
    // about another namespace's labels.
    let probe_cluster = Cluster {
        namespaces: cluster
            .namespaces
            .iter()
            .filter(|ns| probed.contains(ns.name.as_str()))
            .cloned()
            .collect(),
        pods: probes,
        nodes: cluster.nodes.clone(),
        service_accounts: cluster.service_accounts.clone(),
        tiers: cluster.tiers.clone(),
        policies: cluster
            .policies
            .iter()
            .filter(|p| {
                p.namespace.as_deref().is_none_or(|ns| probed.contains(ns))
                    && may_select_a_new_pod(p)
            })
            .cloned()
            .collect(),
        network_sets: cluster.network_sets.clone(),
        suppressions: Default::default(),
        crown_jewels: Default::default(),
    };
    let probe_engine = Engine::new(&probe_cluster, engine.options());
    probe_cluster
        .pods
        .iter()
        .enumerate()
        .step_by(2)
        .map(|(i, p)| {
            let alone = pod(&probe_engine, i);
            let (new, neighbour) = (Endpoint::Pod(i), Endpoint::Pod(i + 1));
            let state = DefaultDeny {
                ingress: alone.ingress
                    && !probe_engine.allows_direction(&flow(neighbour, new), Direction::Ingress),
                egress: alone.egress
                    && !probe_engine.allows_direction(&flow(new, neighbour), Direction::Egress),
            };
            (p.namespace.clone(), state)
        })
        .collect()
}

/// False for a Kubernetes NetworkPolicy whose `podSelector` needs a label: it never applies
/// to a probe pod (no labels), so it cannot change a probe's verdict, and leaving it out of the
/// probe engine spares copying and indexing most policies of a large repository (one per
/// workload). Every other kind is kept: their subjects see more than the pod's own labels.
fn may_select_a_new_pod(policy: &Policy) -> bool {
    match &policy.subject {
        Subject::PodsInNamespace(selector) => selector.matches(&Labels::default()),
        _ => true,
    }
}

/// A TCP flow on a port no real service uses: whatever reaches it is reached by default.
fn flow(src: Endpoint, dst: Endpoint) -> Flow {
    Flow {
        src,
        dst,
        protocol: Protocol::Tcp,
        port: Some(UNUSED_PORT),
        icmp: None,
    }
}

/// The pod a namespace will get tomorrow: no labels, no address, the default service account.
/// Policies that select it (a namespace default-deny) protect pods that do not exist yet.
pub fn new_pod(namespace: &str) -> Pod {
    Pod {
        namespace: namespace.to_string(),
        name: NEW_POD_NAME.to_string(),
        labels: Default::default(),
        ips: Vec::new(),
        node: None,
        host_network: false,
        service_account: "default".to_string(),
        ports: Vec::new(),
        phase: None,
        origin: PodOrigin::Template,
        workload: WorkloadRef {
            kind: "pod".to_string(),
            name: NEW_POD_NAME.to_string(),
        },
        source: None,
        replicas: 1,
    }
}

/// The name of [`new_pod`]; no real pod is expected to carry it.
pub const NEW_POD_NAME: &str = "bulkhead-new-pod";

/// Whether pod `i` is default-denied in each direction in effect: an outside address on an
/// unused port can neither reach it nor be reached by it. (Being selected by a policy is not
/// enough: a policy may allow everything, and an ANP or a Pass tier isolates nothing.)
pub fn pod(engine: &Engine<'_>, i: usize) -> DefaultDeny {
    let outside = Endpoint::External(IpAddr::from(OUTSIDE));
    DefaultDeny {
        ingress: !engine.allows_direction(&flow(outside, Endpoint::Pod(i)), Direction::Ingress),
        egress: !engine.allows_direction(&flow(Endpoint::Pod(i), outside), Direction::Egress),
    }
}
