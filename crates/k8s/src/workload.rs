//! Pods and the workloads that own them (design.md §3): live pods map to their controlling
//! workload (a ReplicaSet to its Deployment), and workload templates become IP-less pods named
//! after the workload, unless live pods of that workload are already in the snapshot.

use crate::document::ObjectContext;
use bulkhead_model::cluster::ContainerPort;
use bulkhead_model::{Cluster, Pod, PodOrigin, Protocol, WorkloadRef};
use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, core::v1 as core};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use std::collections::{HashMap, HashSet};

/// The controlling owner of a live pod, as far as resolving its workload needs.
#[derive(Debug)]
struct Controller {
    kind: String,
    name: String,
}

#[derive(Debug, Default)]
pub struct WorkloadIndex {
    /// Live pods, their workload still the pod itself until [`WorkloadIndex::into_pods`]
    /// resolves it (a ReplicaSet may come after its pods). They become the cluster's pods
    /// without a copy: at 100k pods a second vector of them was a fifth of the load's peak.
    live: Vec<Pod>,
    /// The controller of live pod `i` (by position in `live`), for the pods that have one:
    /// its kind and name are all the resolution reads.
    controllers: Vec<(usize, Controller)>,
    templates: Vec<Pod>,
    /// (namespace, ReplicaSet or Job name) -> its controlling workload.
    owners: HashMap<(String, String), WorkloadRef>,
}

/// A live pod as read from its object, before its workload is resolved.
#[derive(Debug)]
pub struct LivePod {
    pod: Pod,
    controller: Option<Controller>,
}

/// A ReplicaSet or a Job: it names the workload of the pods it owns, and its template stands
/// for them when they are not in the snapshot.
#[derive(Debug)]
pub struct Owner {
    key: (String, String),
    workload: WorkloadRef,
    template: Option<Pod>,
}

/// Reads a live pod. Pure, so pods are read in parallel; [`WorkloadIndex::add_live_pod`] keeps it.
pub fn live_pod(ctx: &ObjectContext<'_>, namespace: &str, name: &str, pod: &core::Pod) -> LivePod {
    let empty_spec = core::PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty_spec);
    let status = pod.status.as_ref();
    let mut ips: Vec<std::net::IpAddr> = status
        .and_then(|s| s.pod_ips.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    if ips.is_empty() {
        ips.extend(
            status
                .and_then(|s| s.pod_ip.as_deref())
                .and_then(|ip| ip.parse::<std::net::IpAddr>().ok()),
        );
    }
    let controller = controller_of(&pod.metadata.owner_references).map(|owner| Controller {
        kind: owner.kind.clone(),
        name: owner.name.clone(),
    });
    LivePod {
        pod: Pod {
            namespace: namespace.to_string(),
            name: name.to_string(),
            labels: crate::labels_of(pod.metadata.labels.as_ref()),
            ips,
            node: spec.node_name.clone(),
            host_network: spec.host_network.unwrap_or(false),
            service_account: service_account(spec),
            ports: container_ports(spec),
            phase: status.and_then(|s| s.phase.clone()),
            origin: PodOrigin::Live,
            workload: WorkloadRef {
                kind: "pod".into(),
                name: name.to_string(),
            },
            source: Some(ctx.location(ctx.node.span)),
            replicas: 1,
        },
        controller,
    }
}

/// Reads a ReplicaSet: the workload it belongs to (its Deployment, or itself) and its template.
pub fn replica_set(
    ctx: &ObjectContext<'_>,
    namespace: &str,
    name: &str,
    rs: &apps::ReplicaSet,
) -> Owner {
    let template = rs.spec.template.as_ref().map(|t| (t, rs.spec.replicas));
    owner(
        ctx,
        namespace,
        name,
        &rs.metadata.owner_references,
        ("Deployment", "replicaset"),
        template,
    )
}

/// Reads a Job: the workload it belongs to (its CronJob, or itself) and its template.
pub fn job(ctx: &ObjectContext<'_>, namespace: &str, name: &str, job: &batch::Job) -> Owner {
    let template = job.spec.as_ref().map(|s| (&s.template, s.parallelism));
    owner(
        ctx,
        namespace,
        name,
        &job.metadata.owner_references,
        ("CronJob", "job"),
        template,
    )
}

/// An owner of pods: its controlling `kinds.0` when it has one, else itself as `kinds.1`.
fn owner(
    ctx: &ObjectContext<'_>,
    namespace: &str,
    name: &str,
    owners: &Option<Vec<OwnerReference>>,
    kinds: (&str, &str),
    template: Option<(&core::PodTemplateSpec, Option<i32>)>,
) -> Owner {
    let workload = match controller_of(owners) {
        Some(o) if o.kind == kinds.0 => WorkloadRef {
            kind: kinds.0.to_ascii_lowercase(),
            name: o.name.clone(),
        },
        _ => WorkloadRef {
            kind: kinds.1.to_string(),
            name: name.to_string(),
        },
    };
    let template = template
        .map(|(t, count)| template_pod(ctx, namespace, workload.clone(), t, replicas(count)));
    Owner {
        key: (namespace.to_string(), name.to_string()),
        workload,
        template,
    }
}

/// The pod a workload's template stands for, named after the workload.
pub fn template_pod(
    ctx: &ObjectContext<'_>,
    namespace: &str,
    workload: WorkloadRef,
    template: &core::PodTemplateSpec,
    replicas: usize,
) -> Pod {
    let empty_spec = core::PodSpec::default();
    let spec = template.spec.as_ref().unwrap_or(&empty_spec);
    Pod {
        namespace: namespace.to_string(),
        name: workload.name.clone(),
        labels: crate::labels_of(template.metadata.as_ref().and_then(|m| m.labels.as_ref())),
        ips: Vec::new(),
        node: spec.node_name.clone(),
        host_network: spec.host_network.unwrap_or(false),
        service_account: service_account(spec),
        ports: container_ports(spec),
        phase: None,
        origin: PodOrigin::Template,
        workload,
        source: Some(ctx.location(ctx.node.span)),
        replicas,
    }
}

impl WorkloadIndex {
    pub fn add_live_pod(&mut self, live: LivePod) {
        if let Some(controller) = live.controller {
            self.controllers.push((self.live.len(), controller));
        }
        self.live.push(live.pod);
    }

    pub fn add_owner(&mut self, owner: Owner) {
        self.owners.insert(owner.key, owner.workload);
        self.templates.extend(owner.template);
    }

    pub fn add_template(&mut self, pod: Pod) {
        self.templates.push(pod);
    }

    /// Resolves live pods' workloads and adds template pods for workloads without live pods.
    pub fn into_pods(mut self, cluster: &mut Cluster) {
        let mut live = std::mem::take(&mut self.live);
        for (i, owner) in std::mem::take(&mut self.controllers) {
            live[i].workload = self.owner_workload(&live[i], &owner);
        }
        let first_live = cluster.pods.len();
        if cluster.pods.is_empty() {
            cluster.pods = live;
        } else {
            cluster.pods.append(&mut live);
        }
        if self.templates.is_empty() {
            return;
        }
        let with_live_pods: HashSet<(&str, &WorkloadRef)> = cluster.pods[first_live..]
            .iter()
            .map(|p| (p.namespace.as_str(), &p.workload))
            .collect();
        // A template pod is named after its workload; a pod of the same name (live, or an
        // earlier template) wins.
        let mut names_taken: HashSet<(&str, &str)> = cluster
            .pods
            .iter()
            .map(|p| (p.namespace.as_str(), p.name.as_str()))
            .collect();
        let mut seen_templates = HashSet::new();
        let wanted: Vec<bool> = self
            .templates
            .iter()
            .map(|t| {
                let key = (t.namespace.as_str(), &t.workload);
                !with_live_pods.contains(&key)
                    && seen_templates.insert(key)
                    && names_taken.insert((t.namespace.as_str(), t.name.as_str()))
            })
            .collect();
        drop((with_live_pods, names_taken, seen_templates));
        cluster.pods.extend(
            self.templates
                .into_iter()
                .zip(wanted)
                .filter_map(|(t, wanted)| wanted.then_some(t)),
        );
    }

    fn owner_workload(&self, pod: &Pod, owner: &Controller) -> WorkloadRef {
        if let Some(known) = self
            .owners
            .get(&(pod.namespace.clone(), owner.name.clone()))
        {
            return known.clone();
        }
        match owner.kind.as_str() {
            // pod-template-hash convention: ReplicaSet `web-5d8f7c` of Deployment `web`.
            "ReplicaSet" => match pod.labels.get("pod-template-hash") {
                Some(hash) if owner.name.ends_with(&format!("-{hash}")) => WorkloadRef {
                    kind: "deployment".into(),
                    name: owner.name[..owner.name.len() - hash.len() - 1].to_string(),
                },
                _ => WorkloadRef {
                    kind: "replicaset".into(),
                    name: owner.name.clone(),
                },
            },
            kind => WorkloadRef {
                kind: kind.to_ascii_lowercase(),
                name: owner.name.clone(),
            },
        }
    }
}

/// `spec.replicas` (or a Job's parallelism); the API server defaults an absent one to 1.
pub fn replicas(count: Option<i32>) -> usize {
    count.map_or(1, |n| usize::try_from(n).unwrap_or(0))
}

fn controller_of(owners: &Option<Vec<OwnerReference>>) -> Option<&OwnerReference> {
    owners.iter().flatten().find(|o| o.controller == Some(true))
}

fn service_account(spec: &core::PodSpec) -> String {
    #[allow(
        deprecated,
        reason = "serviceAccount is the deprecated alias still found in manifests"
    )]
    let legacy = spec.service_account.clone();
    spec.service_account_name
        .clone()
        .or(legacy)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_string())
}

/// Ports of regular and init containers (restartable init containers are sidecars that serve).
fn container_ports(spec: &core::PodSpec) -> Vec<ContainerPort> {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let protocol = match p.protocol.as_deref() {
                None | Some("TCP") => Protocol::Tcp,
                Some("UDP") => Protocol::Udp,
                Some("SCTP") => Protocol::Sctp,
                Some(_) => return None,
            };
            Some(ContainerPort {
                name: p.name.clone(),
                port: u16::try_from(p.container_port).ok()?,
                protocol,
            })
        })
        .collect()
}
