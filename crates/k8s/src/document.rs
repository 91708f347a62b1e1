//! One object inside one file: turns paths into spans and builds diagnostics that point at the
//! user's YAML. Every module that reports problems goes through [`ObjectContext`].

use crate::codes::Code;
use crate::input::Input;
use crate::yaml_tree::{Node, Segment, Span};
use bulkhead_model::{Diagnostic, SourceLocation};

/// A path inside an object, e.g. `spec.ingress[0].ports[1].endPort`: its last segment and a
/// shared link to the path it extends. Validation builds one per rule, peer, port and selector
/// of every object and almost never reports one, so a step further is one small allocation:
/// copying the segments of the parent into each step (a `SmallVec`) was 2.6% of loading
/// 300,000 NetworkPolicies. The segments are listed only for a diagnostic.
#[derive(Clone, Default)]
pub struct FieldPath(Option<std::sync::Arc<Step>>);

struct Step {
    parent: FieldPath,
    segment: Segment,
    len: usize,
}

impl FieldPath {
    pub fn root() -> Self {
        Self::default()
    }

    /// The path of `segments`, in order from the object's root.
    pub fn from_segments(segments: impl IntoIterator<Item = Segment>) -> Self {
        segments
            .into_iter()
            .fold(Self::root(), |path, segment| path.then(segment))
    }

    /// The path one field further. Field names are mostly literals, which are not copied.
    pub fn key(&self, key: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.then(Segment::Key(key.into()))
    }

    /// [`FieldPath::key`] for a key that is not a literal (a label's key, a user's field).
    pub fn key_of(&self, key: &str) -> Self {
        self.then(Segment::Key(std::borrow::Cow::Owned(key.to_string())))
    }

    pub fn index(&self, index: usize) -> Self {
        self.then(Segment::Index(index))
    }

    fn then(&self, segment: Segment) -> Self {
        Self(Some(std::sync::Arc::new(Step {
            parent: self.clone(),
            segment,
            len: self.len() + 1,
        })))
    }

    /// How many segments the path has.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |step| step.len)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The segments from the object's root.
    pub fn segments(&self) -> Vec<&Segment> {
        let mut out = Vec::with_capacity(self.len());
        let mut at = self;
        while let Some(step) = &at.0 {
            out.push(&step.segment);
            at = &step.parent;
        }
        out.reverse();
        out
    }

    /// The segments, owned (for [`Node::span_at`] and JSON edits).
    pub fn to_segments(&self) -> Vec<Segment> {
        self.segments().into_iter().cloned().collect()
    }

    /// The first segment (the top-level field), if any.
    pub fn first(&self) -> Option<&Segment> {
        self.segments().first().copied()
    }

    /// The last segment, if any.
    pub fn last(&self) -> Option<&Segment> {
        self.0.as_ref().map(|step| &step.segment)
    }

    /// Whether `self` is `prefix` followed by one more segment.
    pub fn is_child_of(&self, prefix: &FieldPath) -> bool {
        self.0.as_ref().is_some_and(|step| step.parent == *prefix)
    }
}

impl PartialEq for FieldPath {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                std::sync::Arc::ptr_eq(a, b)
                    || (a.len == b.len && a.segment == b.segment && a.parent == b.parent)
            }
            _ => false,
        }
    }
}

impl Eq for FieldPath {}

impl std::fmt::Debug for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.segments()).finish()
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, s) in self.segments().into_iter().enumerate() {
            match s {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct ObjectContext<'a> {
    pub input: &'a Input,
    /// The object's own node (a document root, or an item of a `List`).
    pub node: &'a Node,
    /// `kind ns/name` once known.
    pub resource: Option<String>,
}

impl<'a> ObjectContext<'a> {
    pub fn location(&self, span: Span) -> SourceLocation {
        SourceLocation {
            file: self.input.shared_name(),
            line: span.line,
            column: span.column,
        }
    }

    /// Where the value at `path` is written.
    pub fn location_of(&self, path: &FieldPath) -> SourceLocation {
        self.location(self.node.span_at(&path.to_segments(), false))
    }

    /// A diagnostic at a span of this file.
    pub fn diagnostic_at(&self, code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        at_span(self.input, code, span, message, self.resource.clone())
    }

    /// A diagnostic at the value (or, with `at_key`, the key) of `path` inside this object.
    pub fn diagnostic(
        &self,
        code: Code,
        path: &FieldPath,
        at_key: bool,
        message: impl Into<String>,
    ) -> Diagnostic {
        let span = self.node.span_at(&path.to_segments(), at_key);
        self.diagnostic_at(code, span, message)
    }
}

/// A longer line (one-line JSON, a minified file) is not copied into each of its diagnostics:
/// the location alone says where. 15,000 findings on one 5 MB line copied 75 GB.
pub const MAX_SOURCE_LINE: usize = 4096;

/// Builds a diagnostic pointing at `span` in `input`, with the source line for the caret.
pub fn at_span(
    input: &Input,
    code: Code,
    span: Span,
    message: impl Into<String>,
    resource: Option<String>,
) -> Diagnostic {
    let mut d = Diagnostic::new(code.code, code.name, code.severity, message);
    d.location = Some(SourceLocation {
        file: input.shared_name(),
        line: span.line.max(1),
        column: span.column.max(1),
    });
    if let Some(line) = input.line(span.line).filter(|l| l.len() <= MAX_SOURCE_LINE) {
        let rest = line
            .chars()
            .count()
            .saturating_sub(span.column.saturating_sub(1));
        let width = if span.end > span.start {
            input
                .text
                .get(span.start..span.end)
                .map(|t| t.lines().next().unwrap_or("").chars().count())
                .unwrap_or(1)
        } else {
            token_width(line, span.column)
        };
        d.length = width.clamp(1, rest.max(1));
        d.source_line = Some(line.to_string());
    }
    d.resource = resource;
    d
}

/// Width of the token starting at a 1-based column: up to the next `:`, `,`, `}`, `]` or space.
fn token_width(line: &str, column: usize) -> usize {
    line.chars()
        .skip(column.saturating_sub(1))
        .take_while(|c| !matches!(c, ':' | ',' | '}' | ']' | ' ' | '#'))
        .count()
        .max(1)
}
