//! The labels each policy language sees: Kubernetes selectors see an object's own labels;
//! Calico selectors also see `projectcalico.org/*` labels (CAL-SEL-4, CAL-SEL-7).

use bulkhead_model::{Cluster, Labels, Pod};
use std::collections::HashMap;

#[derive(Debug)]
pub(crate) struct Labelling {
    /// Per pod index: own labels plus Calico's namespace, orchestrator and service-account labels.
    pub calico_pod: Vec<Labels>,
    /// Per namespace: its labels plus `projectcalico.org/name`.
    pub calico_namespace: HashMap<String, Labels>,
    /// Per network set index: its labels plus `projectcalico.org/namespace` for namespaced sets.
    pub network_set: Vec<Labels>,
    /// Per pod index: its namespace's position in `Cluster::namespaces` (looked up once, not
    /// by name for every peer a rule is matched against).
    pod_namespace: Vec<Option<usize>>,
    /// Per pod index: the labels of its service account (Calico's view).
    pod_service_account: Vec<Labels>,
}

impl Labelling {
    pub fn new(cluster: &Cluster) -> Self {
        let calico_pod = cluster.pods.iter().map(calico_pod_labels).collect();
        let calico_namespace = cluster
            .namespaces
            .iter()
            .map(|ns| {
                let mut l = ns.labels.clone();
                l.insert("projectcalico.org/name".into(), ns.name.clone());
                (ns.name.clone(), l)
            })
            .collect();
        // Per (namespace, service account): its labels plus `projectcalico.org/name`.
        let mut service_account: HashMap<(String, String), Labels> = cluster
            .service_accounts
            .iter()
            .map(|sa| {
                let mut l = sa.labels.clone();
                l.insert("projectcalico.org/name".into(), sa.name.clone());
                ((sa.namespace.clone(), sa.name.clone()), l)
            })
            .collect();
        for pod in &cluster.pods {
            service_account
                .entry((pod.namespace.clone(), pod.service_account.clone()))
                .or_insert_with(|| {
                    Labels::from([(
                        "projectcalico.org/name".to_string(),
                        pod.service_account.clone(),
                    )])
                });
        }
        let network_set = cluster
            .network_sets
            .iter()
            .map(|set| {
                let mut l = set.labels.clone();
                if let Some(ns) = &set.namespace {
                    l.insert("projectcalico.org/namespace".into(), ns.clone());
                }
                l
            })
            .collect();
        let pod_namespace = cluster
            .pods
            .iter()
            .map(|p| {
                cluster
                    .namespaces
                    .binary_search_by(|n| n.name.as_str().cmp(&p.namespace))
                    .ok()
                    .or_else(|| {
                        cluster
                            .namespaces
                            .iter()
                            .position(|n| n.name == p.namespace)
                    })
            })
            .collect();
        let pod_service_account = cluster
            .pods
            .iter()
            .map(|p| {
                service_account
                    .get(&(p.namespace.clone(), p.service_account.clone()))
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        Self {
            calico_pod,
            calico_namespace,
            network_set,
            pod_namespace,
            pod_service_account,
        }
    }

    /// The labels of pod `pod`'s namespace (Kubernetes' view), if the namespace is known.
    pub fn pod_namespace_labels<'c>(&self, cluster: &'c Cluster, pod: usize) -> Option<&'c Labels> {
        self.pod_namespace
            .get(pod)
            .copied()
            .flatten()
            .map(|i| &cluster.namespaces[i].labels)
    }

    /// The labels of pod `pod`'s service account (Calico's view).
    pub fn pod_service_account_labels(&self, pod: usize) -> Option<&Labels> {
        self.pod_service_account.get(pod)
    }

    pub fn namespace(&self, name: &str) -> Option<&Labels> {
        self.calico_namespace.get(name)
    }
}

fn calico_pod_labels(pod: &Pod) -> Labels {
    let mut l = pod.labels.clone();
    l.insert("projectcalico.org/namespace".into(), pod.namespace.clone());
    l.insert("projectcalico.org/orchestrator".into(), "k8s".into());
    if pod.service_account.len() < 63 {
        l.insert(
            "projectcalico.org/serviceaccount".into(),
            pod.service_account.clone(),
        );
    }
    l
}
