//! Enforcement: from the engine's decision programs to one nftables table per node.
//!
//! * [`ruleset`]: a typed ruleset (sets, chains, rules) — what the kernel will hold.
//! * [`compile`]: builds it for the pods of one node from [`bulkhead_engine::Engine::program`].
//! * [`render`]: deterministic `nft -f` text, one atomic transaction that replaces the table.
//! * [`delta`]: the typed transaction between two rulesets of a node, and its `nft -f` batch.
//! * [`interpret`]: a reference interpreter of the ruleset, so tests check compiler == engine
//!   without root.
//! * [`backend`]: the one door to the kernel (real `nft`, or a fake that records).
//! * [`counters`]: the table's state read back (deny counters, audit, break-glass).

pub mod backend;
pub mod compile;
pub mod counters;
pub mod delta;
pub mod interpret;
pub mod netlink;
pub mod render;
pub mod ruleset;

pub use backend::{Backend, BackendError, FakeBackend, KernelMark, NftCli};
pub use compile::{CompileOptions, compile};
pub use ruleset::{Enforcement, Mode, Ruleset};
