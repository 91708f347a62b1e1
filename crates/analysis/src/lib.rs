//! Analyses for policy-as-code in CI, all decided with the engine (not by pattern matching on
//! YAML): lint rules (`rules/`, one file per rule, permanent codes), coverage, the connectivity
//! diff of two snapshots, expectation tests, and the scaffold of a namespace's standard policies.
//!
//! Invariant: pure; no files, no clock, no kernel. Callers load snapshots and render results.

pub mod blast_radius;
pub mod coverage;
pub mod default_deny;
pub mod diff;
pub mod dns;
pub mod expectations;
pub mod flows;
pub mod generate;
pub mod lint;
pub mod nearest;
pub mod report;
pub mod rules;
pub mod scaffold;
pub mod view;

pub use lint::{Config, LintContext, RuleInfo, lint};
