//! The Bulkhead policy engine: "is this flow allowed, and which rule decided it?" and "who can
//! talk to whom?", exactly as semantics.md defines them.
//!
//! Start at [`Engine::evaluate`] (one flow, with its explanation) and [`Engine::connectivity`]
//! (every pod pair). Both are built on the same matching functions in [`matching`], so they
//! cannot disagree about what a rule matches. The engine never reads files or the clock.

pub mod compiled;
pub mod connectivity;
mod describe;
pub mod endpoint;
pub mod evaluate;
pub mod external_reach;
mod labelling;
pub mod matching;
mod pipeline;
pub mod program;
pub mod reference;
mod tiered_matching;
pub mod verdict;

pub use compiled::{CompiledConnectivity, Identity};
pub use connectivity::{Aggregation, Connection, ConnectivityOptions};
pub use endpoint::{Endpoint, Flow};
pub use evaluate::{AppliedPolicy, Engine, EngineOptions, Semantics, UnmatchedNamespaceSelector};
pub use external_reach::ExternalRegion;
pub use program::{DirectionProgram, PortMatch, ProgramRule, RuleKey, TierProgram};
pub use reference::{ReferenceError, Resolved};
pub use verdict::{DirectionVerdict, Note, Reason, RuleRef, Verdict};
