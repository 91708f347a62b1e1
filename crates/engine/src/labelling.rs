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
    /// Per (namespace, service account): its labels plus `projectcalico.org/name`.
    pub service_account: HashMap<(String, String), Labels>,
    /// Per network set index: its labels plus `projectcalico.org/namespace` for namespaced sets.
    pub network_set: Vec<Labels>,
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
        Self {
            calico_pod,
            calico_namespace,
            service_account,
            network_set,
        }
    }

    pub fn namespace(&self, name: &str) -> Option<&Labels> {
        self.calico_namespace.get(name)
    }

    pub fn service_account_of(&self, pod: &Pod) -> Option<&Labels> {
        self.service_account
            .get(&(pod.namespace.clone(), pod.service_account.clone()))
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
