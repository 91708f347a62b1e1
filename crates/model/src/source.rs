//! Where a piece of input came from, so every verdict and diagnostic can point back at YAML.

use std::fmt;

/// A position in a user's file: 1-based line and column, as editors and `rustc` print them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceLocation {
    /// Path as the user gave it, or `<stdin>`. Shared: every rule of every policy records
    /// where it is, and a copy of the path each was 100 MB at 300,000 policies.
    pub file: std::sync::Arc<str>,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}
