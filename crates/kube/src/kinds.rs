//! The kinds Bulkhead reads from a cluster, and discovery of which of them the cluster serves.

use crate::Error;
use kube::discovery::{ApiCapabilities, ApiResource, Discovery};

/// A kind Bulkhead reads: the groups that may serve it, in order of preference (Calico's kinds
/// are `projectcalico.org/v3` where the Calico API server runs, else only the
/// `crd.projectcalico.org/v1` CRDs exist), and whether the agent watches it.
#[derive(Clone, Copy, Debug)]
pub struct WantedKind {
    pub groups: &'static [&'static str],
    pub kind: &'static str,
    /// The agent enforces live pods only: workload templates and Services describe pods that
    /// have no address yet, so it does not watch them.
    pub agent: bool,
}

const CORE: &[&str] = &[""];
const APPS: &[&str] = &["apps"];
const BATCH: &[&str] = &["batch"];
const NETWORKING: &[&str] = &["networking.k8s.io"];
const POLICY_API: &[&str] = &["policy.networking.k8s.io"];
const CALICO: &[&str] = &["projectcalico.org", "crd.projectcalico.org"];

const fn wanted(groups: &'static [&'static str], kind: &'static str, agent: bool) -> WantedKind {
    WantedKind {
        groups,
        kind,
        agent,
    }
}

/// Namespaces first: the loader resolves namespace selectors against them.
pub const WANTED: [WantedKind; 24] = [
    wanted(CORE, "Namespace", true),
    wanted(CORE, "Node", true),
    wanted(CORE, "ServiceAccount", true),
    wanted(CORE, "Pod", true),
    wanted(CORE, "Service", false),
    wanted(APPS, "Deployment", false),
    wanted(APPS, "ReplicaSet", false),
    wanted(APPS, "StatefulSet", false),
    wanted(APPS, "DaemonSet", false),
    wanted(BATCH, "Job", false),
    wanted(BATCH, "CronJob", false),
    wanted(NETWORKING, "NetworkPolicy", true),
    wanted(POLICY_API, "AdminNetworkPolicy", true),
    wanted(POLICY_API, "BaselineAdminNetworkPolicy", true),
    wanted(POLICY_API, "ClusterNetworkPolicy", true),
    wanted(CALICO, "Tier", true),
    wanted(CALICO, "NetworkPolicy", true),
    wanted(CALICO, "GlobalNetworkPolicy", true),
    wanted(CALICO, "StagedNetworkPolicy", true),
    wanted(CALICO, "StagedGlobalNetworkPolicy", true),
    wanted(CALICO, "StagedKubernetesNetworkPolicy", true),
    wanted(CALICO, "NetworkSet", true),
    wanted(CALICO, "GlobalNetworkSet", true),
    wanted(CALICO, "HostEndpoint", false),
];

/// A kind the cluster serves, at the version that will be read.
#[derive(Clone, Debug)]
pub struct LiveKind {
    pub resource: ApiResource,
    pub capabilities: ApiCapabilities,
    pub wanted: WantedKind,
}

/// Which of `wanted` the cluster serves (the first group that has the kind, at its preferred
/// version or else the newest that has it), and the names of those it does not.
pub async fn discover(
    client: &kube::Client,
    server: &str,
    wanted: &[WantedKind],
) -> Result<(Vec<LiveKind>, Vec<String>), Error> {
    let mut groups: Vec<&str> = wanted
        .iter()
        .flat_map(|w| w.groups.iter().copied())
        .collect();
    groups.sort_unstable();
    groups.dedup();
    let discovery = Discovery::new(client.clone())
        .filter(&groups)
        .run()
        .await
        .map_err(|e| Error::Unreachable {
            server: server.to_string(),
            message: format!("discovery failed: {e}"),
        })?;
    let mut found = Vec::new();
    let mut absent = Vec::new();
    for want in wanted {
        let served = want.groups.iter().find_map(|group| {
            let group = discovery.get(group)?;
            let preferred = group.preferred_version_or_latest().to_string();
            std::iter::once(preferred.clone())
                .chain(
                    group
                        .versions()
                        .map(str::to_string)
                        .filter(|v| *v != preferred),
                )
                .find_map(|version| {
                    group
                        .versioned_resources(&version)
                        .into_iter()
                        .find(|(r, _)| r.kind == want.kind)
                })
        });
        match served {
            Some((resource, capabilities)) => found.push(LiveKind {
                resource,
                capabilities,
                wanted: *want,
            }),
            None => absent.push(format!("{} ({})", want.kind, want.groups.join(" or "))),
        }
    }
    Ok((found, absent))
}
