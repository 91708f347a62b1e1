//! Endpoint references as users write them (design.md §3): `NS/POD`, `NS/KIND/NAME`,
//! `node:NAME`, `ip:ADDR` or a bare address.

use crate::endpoint::Endpoint;
use crate::evaluate::Engine;
use crate::verdict::Note;
use bulkhead_model::edit_distance::edit_distance;
use std::net::IpAddr;

/// A resolved reference and what the user should know about how it was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub endpoint: Endpoint,
    /// How the endpoint is named in output (`x/a`, `node:node-1`, `ip:8.8.8.8`).
    pub display: String,
    pub notes: Vec<Note>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("{reference:?} matches nothing in the snapshot{}", suggestions_text(.suggestions))]
    NotFound {
        reference: String,
        suggestions: Vec<String>,
    },
    #[error("{reference:?} is not a policy endpoint: {why}")]
    NotAnEndpoint { reference: String, why: String },
    #[error("{reference:?} is not a reference: use NS/POD, NS/KIND/NAME, node:NAME or ip:ADDRESS")]
    Malformed { reference: String },
}

fn suggestions_text(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", suggestions.join(", "))
    }
}

impl Engine<'_> {
    pub fn resolve(&self, reference: &str) -> Result<Resolved, ReferenceError> {
        let cluster = self.cluster();
        if let Some(name) = reference.strip_prefix("node:") {
            return match cluster.nodes.iter().position(|n| n.name == name) {
                Some(i) => Ok(Resolved {
                    endpoint: Endpoint::Node(i),
                    display: reference.to_string(),
                    notes: Vec::new(),
                }),
                None => Err(ReferenceError::NotFound {
                    reference: reference.to_string(),
                    suggestions: close_matches(name, cluster.nodes.iter().map(|n| n.name.clone()))
                        .into_iter()
                        .map(|n| format!("node:{n}"))
                        .collect(),
                }),
            };
        }
        let ip_text = reference.strip_prefix("ip:").unwrap_or(reference);
        if let Ok(ip) = ip_text.parse::<IpAddr>() {
            let endpoint = self.endpoint_for_ip(ip);
            let mut notes = Vec::new();
            let display = match endpoint {
                Endpoint::Pod(i) => {
                    notes.push(Note {
                        code: "IP_IS_POD",
                        message: format!("{ip} is the IP of pod {}", cluster.pods[i].key()),
                    });
                    cluster.pods[i].key()
                }
                Endpoint::Node(i) => {
                    notes.push(Note {
                        code: "IP_IS_NODE",
                        message: format!("{ip} is an address of node {}", cluster.nodes[i].name),
                    });
                    format!("node:{}", cluster.nodes[i].name)
                }
                Endpoint::External(_) => format!("ip:{ip}"),
            };
            return Ok(Resolved {
                endpoint,
                display,
                notes,
            });
        }
        let parts: Vec<&str> = reference.split('/').collect();
        let mut notes = Vec::new();
        let candidates: Vec<usize> = match parts.as_slice() {
            [ns, name] if !ns.is_empty() && !name.is_empty() => {
                let exact: Vec<usize> = cluster
                    .pods
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.namespace == *ns && p.name == *name)
                    .map(|(i, _)| i)
                    .collect();
                if exact.is_empty() {
                    let replica = self.statefulset_replica(ns, name);
                    if let Some(i) = replica {
                        notes.push(Note {
                            code: "STATEFULSET_REPLICA",
                            message: format!(
                                "{reference} is a replica of statefulset {ns}/{}, read from its pod template (every replica has its labels)",
                                cluster.pods[i].workload.name
                            ),
                        });
                    }
                    replica.into_iter().collect()
                } else {
                    exact
                }
            }
            [ns, kind, name] if !ns.is_empty() && !kind.is_empty() && !name.is_empty() => {
                let kind = kind.to_ascii_lowercase();
                cluster
                    .pods
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| {
                        p.namespace == *ns && p.workload.kind == kind && p.workload.name == *name
                    })
                    .map(|(i, _)| i)
                    .collect()
            }
            _ => {
                return Err(ReferenceError::Malformed {
                    reference: reference.to_string(),
                });
            }
        };
        let Some(&first) = candidates
            .iter()
            .find(|&&i| cluster.pods[i].is_endpoint())
            .or(candidates.first())
        else {
            let all = cluster
                .pods
                .iter()
                .flat_map(|p| [p.key(), p.workload_key()]);
            return Err(ReferenceError::NotFound {
                reference: reference.to_string(),
                suggestions: close_matches(reference, all),
            });
        };
        let pod = &cluster.pods[first];
        if candidates.len() > 1 {
            notes.push(Note {
                code: "WORKLOAD_POD",
                message: format!(
                    "{reference} has {} pods; the verdict is for {}",
                    candidates.len(),
                    pod.key()
                ),
            });
        }
        if pod.host_network {
            let node = pod
                .node
                .as_deref()
                .and_then(|n| cluster.nodes.iter().position(|x| x.name == n));
            notes.push(Note {
                code: "HOSTNETWORK_UNDEFINED",
                message: format!(
                    "{} uses the host network: NetworkPolicy treats it as its node {} (K8S-HOST-3; upstream leaves this undefined)",
                    pod.key(),
                    pod.node.as_deref().unwrap_or("<unknown>")
                ),
            });
            let endpoint = match (node, pod.ips.first()) {
                (Some(n), _) => Endpoint::Node(n),
                (None, Some(ip)) => Endpoint::External(*ip),
                (None, None) => {
                    return Err(ReferenceError::NotAnEndpoint {
                        reference: reference.to_string(),
                        why: "a hostNetwork pod whose node is not in the snapshot".into(),
                    });
                }
            };
            return Ok(Resolved {
                endpoint,
                display: pod.key(),
                notes,
            });
        }
        if !pod.is_endpoint() {
            return Err(ReferenceError::NotAnEndpoint {
                reference: reference.to_string(),
                why: "the pod has finished (phase Succeeded/Failed)".into(),
            });
        }
        // A StatefulSet replica keeps the name the user gave (`shop/db-0`).
        let display = if notes.iter().any(|n| n.code == "STATEFULSET_REPLICA") {
            reference.to_string()
        } else {
            pod.key()
        };
        Ok(Resolved {
            endpoint: Endpoint::Pod(first),
            display,
            notes,
        })
    }
}

impl Engine<'_> {
    /// `db-2` in a snapshot from Git: replica 2 of the StatefulSet `db` (its pods are named
    /// NAME-ORDINAL), when the template stands for at least 3 replicas and no live pod has the
    /// name. Returns the template pod.
    fn statefulset_replica(&self, namespace: &str, name: &str) -> Option<usize> {
        let (base, ordinal) = name.rsplit_once('-')?;
        let ordinal: usize = ordinal.parse().ok()?;
        self.cluster().pods.iter().enumerate().find_map(|(i, p)| {
            (p.namespace == namespace
                && p.origin == bulkhead_model::PodOrigin::Template
                && p.workload.kind == "statefulset"
                && p.workload.name == base
                && ordinal < p.replicas)
                .then_some(i)
        })
    }

    /// The pod endpoints a reference names, for whole-cluster queries: `NS` (a namespace),
    /// `NS/POD`, or `NS/KIND/NAME` (every pod of the workload).
    pub fn pods_for(&self, reference: &str) -> Result<Vec<usize>, ReferenceError> {
        let cluster = self.cluster();
        let endpoints = self.pod_endpoints();
        let parts: Vec<&str> = reference.split('/').collect();
        let found: Vec<usize> = match parts.as_slice() {
            [ns] if !ns.is_empty() => endpoints
                .into_iter()
                .filter(|&i| cluster.pods[i].namespace == *ns)
                .collect(),
            [ns, name] => {
                let exact: Vec<usize> = endpoints
                    .into_iter()
                    .filter(|&i| cluster.pods[i].namespace == *ns && cluster.pods[i].name == *name)
                    .collect();
                if exact.is_empty() {
                    self.statefulset_replica(ns, name).into_iter().collect()
                } else {
                    exact
                }
            }
            [ns, kind, name] => {
                let kind = kind.to_ascii_lowercase();
                endpoints
                    .into_iter()
                    .filter(|&i| {
                        let p = &cluster.pods[i];
                        p.namespace == *ns && p.workload.kind == kind && p.workload.name == *name
                    })
                    .collect()
            }
            _ => {
                return Err(ReferenceError::Malformed {
                    reference: reference.to_string(),
                });
            }
        };
        if found.is_empty() {
            let all = cluster
                .pods
                .iter()
                .flat_map(|p| [p.namespace.clone(), p.key(), p.workload_key()]);
            return Err(ReferenceError::NotFound {
                reference: reference.to_string(),
                suggestions: close_matches(reference, all),
            });
        }
        Ok(found)
    }
}

fn close_matches(wanted: &str, candidates: impl Iterator<Item = String>) -> Vec<String> {
    let mut scored: Vec<(usize, String)> = candidates
        .map(|c| (edit_distance(wanted, &c), c))
        .filter(|(d, c)| *d <= 3.max(c.len() / 3))
        .collect();
    scored.sort();
    scored.dedup();
    scored.into_iter().take(3).map(|(_, c)| c).collect()
}
