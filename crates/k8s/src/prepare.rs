//! The per-object work of loading that depends on nothing but the object: typed
//! deserialisation with its type errors and unknown fields. It runs for every object of an
//! input in parallel before the loader walks them in order (which it must: duplicates, the
//! first definition wins, workloads across objects); the loader then takes each object's
//! result instead of computing it, so both paths give the same diagnostics.

use crate::calico;
use crate::cluster_network_policy;
use crate::document::ObjectContext;
use crate::input::Input;
use crate::typed;
use crate::yaml_tree::{Node, Value};
use bulkhead_model::Diagnostic;
use k8s_openapi::api::{
    apps::v1 as apps, batch::v1 as batch, core::v1 as core, networking::v1 as networking,
};
use rayon::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::any::Any;
use std::collections::HashMap;

/// One object's typed value (when it deserialised) and the diagnostics that cost.
struct Typed<T> {
    value: Option<T>,
    diagnostics: Vec<Diagnostic>,
}

/// Prepared objects by the address of their node (stable while the documents live).
#[derive(Default)]
pub(crate) struct Prepared(HashMap<usize, Box<dyn Any + Send>>);

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Prepared({} objects)", self.0.len())
    }
}

fn key(node: &Node) -> usize {
    std::ptr::from_ref(node) as usize
}

impl Prepared {
    /// Deserialises every object under `roots` (the items of `List`s too) in parallel.
    pub(crate) fn objects<'a>(
        input: &Input,
        roots: impl Iterator<Item = &'a Node>,
        default_namespace: &str,
    ) -> Self {
        let mut nodes = Vec::new();
        for root in roots {
            collect(root, &mut nodes);
        }
        Self(
            nodes
                .par_iter()
                .filter_map(|node| {
                    prepare(input, node, default_namespace).map(|typed| (key(node), typed))
                })
                .collect(),
        )
    }

    /// The typed value of `ctx`'s object, taking the prepared one (with its diagnostics)
    /// when there is one of this type, deserialising now otherwise.
    pub(crate) fn take<T>(
        &mut self,
        ctx: &ObjectContext<'_>,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Option<T>
    where
        T: DeserializeOwned + Serialize + Send + 'static,
    {
        if let Some(prepared) = self.0.remove(&key(ctx.node))
            && let Ok(typed) = prepared.downcast::<Typed<T>>()
        {
            diagnostics.extend(typed.diagnostics);
            return typed.value;
        }
        typed::deserialize::<T>(ctx, diagnostics)
    }
}

/// Objects, with the items of `List`s in place of the list (as the loader walks them).
fn collect<'a>(node: &'a Node, out: &mut Vec<&'a Node>) {
    let kind = node.get("kind").and_then(Node::as_str);
    let items = node.get("items").map(|i| &i.value);
    if let (Some(kind), Some(Value::Sequence(items))) = (kind, items)
        && (kind == "List" || kind.ends_with("List"))
    {
        for item in items {
            collect(item, out);
        }
        return;
    }
    out.push(node);
}

fn run<T>(ctx: &ObjectContext<'_>) -> Box<dyn Any + Send>
where
    T: DeserializeOwned + Serialize + Send + 'static,
{
    let mut diagnostics = Vec::new();
    let value = typed::deserialize::<T>(ctx, &mut diagnostics);
    Box::new(Typed { value, diagnostics })
}

/// The typed value the loader will ask for, for the kinds it deserialises; `None` for the
/// rest (and for objects it will not read, which the loader reports itself).
fn prepare(input: &Input, node: &Node, default_namespace: &str) -> Option<Box<dyn Any + Send>> {
    let api_version = node.get("apiVersion").and_then(Node::as_str)?;
    let kind = node.get("kind").and_then(Node::as_str)?;
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    if crate::load::byte_extent(node) > crate::load::MAX_OBJECT_BYTES {
        return None;
    }
    let family = crate::load::tiered_kind(group, kind);
    let cluster_scoped = match family {
        Some(_) => !matches!(
            kind,
            "NetworkPolicy" | "StagedNetworkPolicy" | "StagedKubernetesNetworkPolicy" | "NetworkSet"
        ),
        None => matches!(kind, "Namespace" | "Node"),
    };
    let (_, _, resource) = crate::load::object_identity(
        node,
        group,
        kind,
        cluster_scoped,
        default_namespace,
    )?;
    let ctx = ObjectContext {
        input,
        node,
        resource: Some(resource),
    };
    use crate::load::TieredFamily;
    Some(match (family, kind) {
        (Some(TieredFamily::Calico), "Tier") => run::<calico::TierWire>(&ctx),
        (Some(TieredFamily::Calico), "NetworkSet" | "GlobalNetworkSet") => {
            run::<calico::NetworkSetWire>(&ctx)
        }
        (Some(TieredFamily::Calico), "StagedKubernetesNetworkPolicy") => {
            run::<calico::StagedKubernetesWire>(&ctx)
        }
        (Some(TieredFamily::Calico), _) => run::<calico::PolicyWire>(&ctx),
        (Some(TieredFamily::Admin | TieredFamily::Cluster), _) => {
            run::<cluster_network_policy::ClusterPolicyWire>(&ctx)
        }
        (None, "Namespace") => run::<core::Namespace>(&ctx),
        (None, "Node") => run::<core::Node>(&ctx),
        (None, "ServiceAccount") => run::<core::ServiceAccount>(&ctx),
        (None, "Service") => run::<core::Service>(&ctx),
        (None, "Pod") => run::<core::Pod>(&ctx),
        (None, "Deployment") => run::<apps::Deployment>(&ctx),
        (None, "StatefulSet") => run::<apps::StatefulSet>(&ctx),
        (None, "DaemonSet") => run::<apps::DaemonSet>(&ctx),
        (None, "ReplicaSet") => run::<apps::ReplicaSet>(&ctx),
        (None, "Job") => run::<batch::Job>(&ctx),
        (None, "CronJob") => run::<batch::CronJob>(&ctx),
        (None, "NetworkPolicy") => run::<networking::NetworkPolicy>(&ctx),
        _ => return None,
    })
}
