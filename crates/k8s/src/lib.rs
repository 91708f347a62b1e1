//! Kubernetes wire formats for Bulkhead: reading manifests (files, directories, stdin,
//! multi-document YAML, `List`s) with source spans, validating them as strictly as the API
//! server, and lowering them into [`bulkhead_model`].
//!
//! Start at [`load`]. Broken input is normal here: loading always returns a [`Snapshot`] with
//! whatever was valid plus a diagnostic for every problem; it never fails and never panics.

pub mod calico;
pub mod cluster_network_policy;
pub mod codes;
pub mod document;
pub mod input;
mod json_tree;
pub mod kinds;
pub mod load;
pub mod names;
pub mod network_policy;
mod node_de;
mod pipeline;
pub mod typed;
pub mod workload;
mod yaml_events;
pub mod yaml_tree;

pub use input::{Input, read_paths};
pub use load::{LoadOptions, Snapshot, load};

/// An object's `metadata.labels` as the model keeps them (a sorted vector map).
pub(crate) fn labels_of(
    labels: Option<&std::collections::BTreeMap<String, String>>,
) -> bulkhead_model::Labels {
    labels
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}
