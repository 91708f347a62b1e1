//! The cluster DNS server, as clusters label it: the `k8s-app: kube-dns` convention that
//! CoreDNS and kube-dns deployments share.

use bulkhead_engine::Engine;

/// The label key and value of the cluster DNS pods.
pub const LABEL: (&str, &str) = ("k8s-app", "kube-dns");

/// The pod endpoints that serve cluster DNS.
pub fn servers(engine: &Engine<'_>) -> Vec<usize> {
    let cluster = engine.cluster();
    engine
        .pod_endpoints()
        .into_iter()
        .filter(|&i| {
            cluster.pods[i]
                .labels
                .get(LABEL.0)
                .is_some_and(|v| v == LABEL.1)
        })
        .collect()
}
