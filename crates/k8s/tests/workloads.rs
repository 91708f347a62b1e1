//! Live pods and workload templates: a live pod belongs to its controlling workload even when
//! the ReplicaSet comes after it, and a template stands for its workload only while no live
//! pod of that workload, and no pod of the template's name, exists.

use bulkhead_k8s::input::Input;
use bulkhead_k8s::load::{LoadOptions, load};

const PODS_FIRST: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web-7d9f-abcde
  namespace: shop
  labels: {app: web, pod-template-hash: 7d9f}
  ownerReferences:
  - {apiVersion: apps/v1, kind: ReplicaSet, name: web-7d9f, uid: u1, controller: true}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata:
  name: job-run-xyz
  namespace: shop
  labels: {app: batch}
  ownerReferences:
  - {apiVersion: batch/v1, kind: Job, name: nightly-123, uid: u2, controller: true}
status: {podIP: 10.0.0.2}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: nightly-123
  namespace: shop
  ownerReferences:
  - {apiVersion: batch/v1, kind: CronJob, name: nightly, uid: u3, controller: true}
spec:
  template:
    metadata: {labels: {app: batch}}
    spec: {containers: [{name: c, image: i}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: i}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec: {containers: [{name: c, image: i}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api-db}}
  serviceName: api
  template:
    metadata: {labels: {app: api-db}}
    spec: {containers: [{name: c, image: i}]}
---
apiVersion: v1
kind: Pod
metadata: {name: cache, namespace: shop, labels: {app: cache}}
status: {podIP: 10.0.0.3}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: cache, namespace: shop}
spec:
  selector: {matchLabels: {app: cache-agent}}
  template:
    metadata: {labels: {app: cache-agent}}
    spec: {containers: [{name: c, image: i}]}
";

#[test]
fn live_pods_find_their_workloads_and_templates_stand_only_for_the_rest() {
    let snapshot = load(
        &[Input::new("cluster.yaml", PODS_FIRST)],
        &LoadOptions::default(),
    );
    assert_eq!(snapshot.error_count(), 0, "{:#?}", snapshot.diagnostics);
    // In the cluster's order (by namespace and name).
    let pods: Vec<(String, String, String)> = snapshot
        .cluster
        .pods
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.workload.to_string(),
                format!("{:?}", p.origin),
            )
        })
        .collect();
    assert_eq!(
        pods,
        [
            // Deployment web has a live pod: no template. Deployment api has none: its
            // template. StatefulSet api's template has the same name: the first one wins.
            // DaemonSet cache's template is named like the live pod cache: the live pod wins.
            ("api", "deployment/api", "Template"),
            ("cache", "pod/cache", "Live"),
            // The Job comes after its pod and names its CronJob.
            ("job-run-xyz", "cronjob/nightly", "Live"),
            // The ReplicaSet is not in the input: the pod-template-hash names the Deployment.
            ("web-7d9f-abcde", "deployment/web", "Live"),
        ]
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    );
}
