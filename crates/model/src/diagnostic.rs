//! A problem found in the user's input: one type for every producer (loader, validator, lint)
//! and every renderer (human, JSON, SARIF, JUnit).

use crate::source::SourceLocation;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Permanent code, e.g. `BH003`.
    pub code: &'static str,
    /// A name that says the mistake, e.g. `unknown-field`.
    pub name: &'static str,
    pub severity: Severity,
    pub message: String,
    pub location: Option<SourceLocation>,
    /// Width of the offending text on its line, for the caret underline (at least 1).
    pub length: usize,
    /// The source line the location points into, so renderers need not reopen files (stdin).
    pub source_line: Option<String>,
    /// The resource, as `kind ns/name` or `kind name`.
    pub resource: Option<String>,
    /// How to fix it, when we know.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(
        code: &'static str,
        name: &'static str,
        severity: Severity,
        message: impl Into<String>,
    ) -> Self {
        Self {
            code,
            name,
            severity,
            message: message.into(),
            location: None,
            length: 1,
            source_line: None,
            resource: None,
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Sort key: file, line, column, then code, so output is stable.
    pub fn sort_key(&self) -> (Option<&SourceLocation>, &'static str, &str) {
        (self.location.as_ref(), self.code, &self.message)
    }
}
