//! The labels each policy language sees: Kubernetes selectors see an object's own labels;
//! Calico selectors also see `projectcalico.org/*` labels (CAL-SEL-4, CAL-SEL-7).

use bulkhead_model::{Cluster, Labels, Pod};
use std::collections::HashMap;
use std::sync::OnceLock;

#[derive(Debug)]
pub(crate) struct Labelling {
    /// Calico's view of every pod, built the first time a Calico selector asks for one: it
    /// copies every pod's labels, which a cluster of Kubernetes policies never reads (at 100k
    /// pods the copy was most of the engine's memory).
    calico_pods: OnceLock<CalicoPods>,
    /// Per namespace: its labels plus `projectcalico.org/name`.
    pub calico_namespace: HashMap<String, Labels>,
    /// Per network set index: its labels plus `projectcalico.org/namespace` for namespaced sets.
    pub network_set: Vec<Labels>,
    /// Per pod index: its namespace's position in `Cluster::namespaces` (looked up once, not
    /// by name for every peer a rule is matched against).
    pod_namespace: Vec<Option<usize>>,
}

#[derive(Debug)]
struct CalicoPods {
    /// Per pod index: own labels plus Calico's namespace, orchestrator and service-account labels.
    labels: Vec<Labels>,
    /// Per pod index: the labels of its service account.
    service_account: Vec<Labels>,
}

impl CalicoPods {
    fn new(cluster: &Cluster) -> Self {
        let labels = cluster.pods.iter().map(calico_pod_labels).collect();
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
                    Labels::from_iter([(
                        "projectcalico.org/name".to_string(),
                        pod.service_account.clone(),
                    )])
                });
        }
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
            labels,
            service_account: pod_service_account,
        }
    }
}

impl Labelling {
    pub fn new(cluster: &Cluster) -> Self {
        let calico_namespace = cluster
            .namespaces
            .iter()
            .map(|ns| {
                let mut l = ns.labels.clone();
                l.insert("projectcalico.org/name".into(), ns.name.clone());
                (ns.name.clone(), l)
            })
            .collect();
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
        Self {
            calico_pods: OnceLock::new(),
            calico_namespace,
            network_set,
            pod_namespace,
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

    /// Calico's view of pod `pod` (of `cluster`, the cluster this labelling was made for): its
    /// labels plus `projectcalico.org/namespace`, `orchestrator` and `serviceaccount`.
    pub fn calico_pod(&self, cluster: &Cluster, pod: usize) -> &Labels {
        &self.calico_pods(cluster).labels[pod]
    }

    /// The labels of pod `pod`'s service account (Calico's view).
    pub fn pod_service_account_labels(&self, cluster: &Cluster, pod: usize) -> Option<&Labels> {
        self.calico_pods(cluster).service_account.get(pod)
    }

    fn calico_pods(&self, cluster: &Cluster) -> &CalicoPods {
        self.calico_pods.get_or_init(|| CalicoPods::new(cluster))
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
