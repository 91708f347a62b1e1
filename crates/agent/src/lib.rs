//! The node agent: reads the manifests, compiles the node's ruleset, applies it through the
//! kernel door, and reconciles whenever the manifests change.
//!
//! Invariants: the agent never flushes on start-up (an existing table stays in force until a
//! complete replacement is applied in one transaction); invalid input never replaces the last
//! good ruleset; stopping the agent leaves enforcement in place. Policy decisions come from
//! `bulkhead-engine`, rule text from `bulkhead-nft`; the agent only wires them together.

pub mod connections;
pub mod conntrack;
pub mod files;
pub mod flowlog;
pub mod interfaces;
pub mod metrics;
pub mod node_status;
pub mod reconcile;
pub mod rollback;
pub mod rules;
pub mod source;
pub mod status;

pub use reconcile::{Agent, AgentConfig, AgentError, Reconciled};
