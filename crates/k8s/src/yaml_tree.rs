//! A YAML document as a tree with a source span on every node and key, built from the events of
//! `granit-parser` (the parser inside serde-saphyr).
//!
//! Why our own tree: typed deserialisers drop positions and unknown keys, but every diagnostic
//! must point at a line and column, and unknown keys must be found (kubectl rejects them). Plain
//! scalars are resolved the way kubectl reads them (YAML 1.1, go-yaml v2: `on` is `true`, `0755`
//! is 493); every place where YAML 1.2 would read the text differently is recorded as a
//! [`Yaml11Surprise`] so the user learns about it.

use crate::yaml_events::{self, NodeEvent, RawSpan, Stop};
use compact_str::{CompactString, ToCompactString};
use rayon::prelude::*;
use std::collections::HashMap;

/// 1-based line and column plus byte offsets into the file's text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub line: usize,
    pub column: usize,
    pub start: usize,
    pub end: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Inline up to 24 bytes: most keys and values of a manifest are short names, and a heap
    /// allocation each was a third of building a tree.
    String(CompactString),
    Sequence(Vec<Node>),
    Mapping(Vec<Entry>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: CompactString,
    pub key_span: Span,
    pub value: Node,
}

/// A plain scalar that YAML 1.1 (kubectl) and YAML 1.2 read differently.
#[derive(Clone, Debug, PartialEq)]
pub struct Yaml11Surprise {
    pub span: Span,
    pub text: String,
    pub kind: SurpriseKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SurpriseKind {
    /// `yes`, `no`, `on`, `off`, `y`, `n`: booleans for kubectl, strings in YAML 1.2.
    Boolean,
    /// `0755`: octal for kubectl (493), decimal 755 in YAML 1.2.
    Octal,
}

/// A syntax problem, with the position the parser gave.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntaxError {
    pub span: Span,
    pub message: String,
}

/// One parsed document: its root (absent for an empty document) and the YAML 1.1 surprises in it.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub root: Option<Node>,
    pub surprises: Vec<Yaml11Surprise>,
    pub duplicate_keys: Vec<(String, Span)>,
}

/// Parses every document in `text`. A document with a syntax error yields `Err` and does not
/// stop the documents after it: the text is cut at `---` lines first, which YAML forbids inside
/// any node, so each piece parses on its own.
pub fn parse_documents(text: &str) -> Vec<Result<Document, SyntaxError>> {
    let pieces = pieces(text);
    let parsed: Vec<Result<Vec<Document>, SyntaxError>> = pieces
        .par_iter()
        .map(|piece| parse_piece(text, piece))
        .collect();
    let mut out = Vec::new();
    for result in parsed {
        match result {
            Ok(docs) => out.extend(docs.into_iter().map(Ok)),
            Err(e) => out.push(Err(e)),
        }
    }
    out
}

/// [`parse_documents`] a group at a time, each document handed to `read` as soon as it is
/// parsed (on the thread that parsed it) and the results to `merge` in input order: documents
/// are parsed and read in parallel in groups of about [`GROUP_BYTES`] of text, so the trees
/// held at once are those of one group, not of the whole input (300,000 NetworkPolicies in one
/// file are 100 MB of text and several GB of trees). A long `kubectl get -o yaml` list is
/// handed over in parts of its items.
pub fn for_each_document<R: Send>(
    text: &str,
    read: impl Fn(Result<Document, SyntaxError>) -> R + Sync,
    mut merge: impl FnMut(R) + Send,
) {
    if crate::json_tree::for_each_document(text, &read, &mut merge) {
        return;
    }
    let pieces = pieces(text);
    let mut rest = pieces.as_slice();
    while let Some(piece) = rest.first() {
        let chunk = &text[piece.start..piece.end];
        if chunk.len() > GROUP_BYTES
            && stream_list(chunk, piece.first_line - 1, piece.start, &read, &mut merge)
        {
            rest = &rest[1..];
            continue;
        }
        // The documents up to the next one that may be a long list, in groups.
        let run = 1 + rest[1..]
            .iter()
            .take_while(|p| p.end - p.start <= GROUP_BYTES)
            .count();
        let (run, next) = rest.split_at(run);
        rest = next;
        let read_group = |group: &[Piece]| {
            Some(
                group
                    .par_iter()
                    .flat_map_iter(|piece| match parse_piece(text, piece) {
                        Ok(docs) => docs.into_iter().map(|d| read(Ok(d))).collect(),
                        Err(e) => vec![read(Err(e))],
                    })
                    .collect(),
            )
        };
        let read = crate::pipeline::read_and_merge(Vec::new(), groups(run), read_group, &mut merge);
        debug_assert!(read.is_ok(), "a group of documents always reads");
    }
}

/// `pieces` in groups of about [`GROUP_BYTES`] of text (a longer piece is a group alone).
fn groups(mut rest: &[Piece]) -> impl Iterator<Item = &[Piece]> {
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let take = rest
            .iter()
            .take_while(|p| {
                bytes += p.end - p.start;
                bytes <= GROUP_BYTES
            })
            .count()
            .max(1);
        let (group, next) = rest.split_at(take);
        rest = next;
        Some(group)
    })
}

/// One piece of `text`: a long list with its items in parallel, anything else as a whole.
fn parse_piece(text: &str, piece: &Piece) -> Result<Vec<Document>, SyntaxError> {
    let chunk = &text[piece.start..piece.end];
    parse_list_in_parallel(chunk, piece.first_line - 1, piece.start)
        .unwrap_or_else(|| parse_one(chunk, piece.first_line - 1, piece.start))
}

/// The documents of `text` cut at `---` lines, without the empty and comment-only ones.
fn pieces(text: &str) -> Vec<Piece> {
    split_documents(text)
        .into_par_iter()
        .filter(|p| {
            let chunk = &text[p.start..p.end];
            !(chunk.trim().is_empty() || is_only_comments(chunk))
        })
        .collect()
}

/// The text parsed at once by [`for_each_document`].
pub(crate) const GROUP_BYTES: usize = 4 << 20;

/// `kubectl get -o yaml` prints one document with thousands of `items:` at column 0. Each item
/// (`- ` at column 0 up to the next) is valid YAML on its own, so the items are parsed in
/// parallel and put back into the skeleton of the document, parsed with the items blanked out
/// (same length, so every line and byte offset stays true). Any surprise (anchors, a syntax
/// error, another shape) returns `None` and the caller parses the document as a whole.
fn parse_list_in_parallel(
    chunk: &str,
    line_offset: usize,
    byte_offset: usize,
) -> Option<Result<Vec<Document>, SyntaxError>> {
    let layout = ListLayout::find(chunk)?;
    let (nodes, surprises, duplicate_keys) =
        layout.parse_items(chunk, 0..layout.starts.len(), line_offset, byte_offset)?;
    let mut doc = layout.skeleton(chunk, line_offset, byte_offset)?;
    layout.fill(&mut doc, nodes)?;
    doc.surprises.extend(surprises);
    doc.duplicate_keys.extend(duplicate_keys);
    Some(Ok(vec![doc]))
}

/// Where the column-0 items of a `kubectl get -o yaml` list are in its text.
struct ListLayout {
    /// Byte offset just after the `items:` line.
    first: usize,
    /// Byte offset and line number (in the chunk) of each item's `- ` line.
    starts: Vec<(usize, usize)>,
    /// Byte offset where the items end.
    end: usize,
}

type ParsedItems = (Vec<Node>, Vec<Yaml11Surprise>, Vec<(String, Span)>);

impl ListLayout {
    /// `None` for a document too small to be worth it, with anchors and aliases, or of
    /// another shape.
    fn find(chunk: &str) -> Option<Self> {
        const MIN_ITEMS_BYTES: usize = 256 * 1024;
        if chunk.len() < MIN_ITEMS_BYTES || chunk.contains('&') && chunk.contains('*') {
            return None;
        }
        // Find the `items:` line at column 0 and the column-0 `- ` lines that follow it.
        let mut offset = 0;
        let mut items_start = None;
        let mut starts: Vec<(usize, usize)> = Vec::new();
        let mut end = chunk.len();
        for (line_no, line) in chunk.split_inclusive('\n').enumerate() {
            let content = line.trim_end_matches(['\n', '\r']);
            if items_start.is_none() {
                if content == "items:" {
                    items_start = Some(offset + line.len());
                }
            } else if content.starts_with("- ") || content == "-" {
                starts.push((offset, line_no));
            } else if !content.is_empty() && !content.starts_with(' ') && !content.starts_with('#')
            {
                end = offset;
                break;
            }
            offset += line.len();
        }
        let first = items_start?;
        if starts.len() < 2 || starts[0].0 != first {
            return None;
        }
        Some(Self { first, starts, end })
    }

    /// The items `range`, each parsed on its own (in parallel), as nodes with the surprises
    /// and duplicate keys found in them; `None` if any does not parse as exactly one item.
    fn parse_items(
        &self,
        chunk: &str,
        range: std::ops::Range<usize>,
        line_offset: usize,
        byte_offset: usize,
    ) -> Option<ParsedItems> {
        let documents = self.parse_each_item(chunk, range, line_offset, byte_offset)?;
        let mut nodes = Vec::with_capacity(documents.len());
        let mut surprises = Vec::new();
        let mut duplicate_keys = Vec::new();
        for document in documents {
            nodes.extend(document.root);
            surprises.extend(document.surprises);
            duplicate_keys.extend(document.duplicate_keys);
        }
        Some((nodes, surprises, duplicate_keys))
    }

    /// The document without its items; its `items` is null until [`ListLayout::fill`]. The
    /// items' text is left out of the parse (at 100k pods it is 50 MB) and the spans after it
    /// are moved to where they are in the whole text.
    fn skeleton(&self, chunk: &str, line_offset: usize, byte_offset: usize) -> Option<Document> {
        let items = &chunk[self.first..self.end];
        let skipped_lines = items.bytes().filter(|b| *b == b'\n').count();
        let mut skeleton = String::with_capacity(self.first + chunk.len() - self.end);
        skeleton.push_str(&chunk[..self.first]);
        skeleton.push_str(&chunk[self.end..]);
        let mut docs = match parse_one(&skeleton, line_offset, byte_offset) {
            Ok(d) if d.len() == 1 => d,
            _ => return None,
        };
        let mut doc = docs.pop()?;
        let after = byte_offset + self.first;
        let shift = |span: &mut Span| {
            if span.start >= after {
                span.line += skipped_lines;
                span.start += items.len();
                span.end += items.len();
            }
        };
        if let Some(root) = doc.root.as_mut() {
            root.for_each_span(&mut |span| shift(span));
        }
        doc.surprises.iter_mut().for_each(|s| shift(&mut s.span));
        doc.duplicate_keys
            .iter_mut()
            .for_each(|(_, span)| shift(span));
        let Some(Node {
            value: Value::Mapping(entries),
            ..
        }) = doc.root.as_ref()
        else {
            return None;
        };
        let entry = entries.iter().find(|e| e.key == "items")?;
        (entry.value.value == Value::Null).then_some(doc)
    }

    /// Puts `nodes` in as the skeleton's items, spanned from the first of them (or where the
    /// skeleton's null was).
    fn fill(&self, doc: &mut Document, nodes: Vec<Node>) -> Option<()> {
        let Some(Node {
            value: Value::Mapping(entries),
            ..
        }) = doc.root.as_mut()
        else {
            return None;
        };
        let entry = entries.iter_mut().find(|e| e.key == "items")?;
        let span = nodes.first().map_or(entry.value.span, |n| n.span);
        entry.value = Node {
            value: Value::Sequence(nodes),
            span,
        };
        Some(())
    }

    /// The items `range`, each parsed on its own (in parallel) into a document whose root is
    /// the item; `None` if any does not parse as exactly one item.
    fn parse_each_item(
        &self,
        chunk: &str,
        range: std::ops::Range<usize>,
        line_offset: usize,
        byte_offset: usize,
    ) -> Option<Vec<Document>> {
        let items: Vec<Option<Document>> = self.starts[range.clone()]
            .par_iter()
            .enumerate()
            .map(|(k, &(start, line))| {
                let stop = self
                    .starts
                    .get(range.start + k + 1)
                    .map_or(self.end, |s| s.0);
                let mut docs =
                    parse_one(&chunk[start..stop], line_offset + line, byte_offset + start).ok()?;
                if docs.len() != 1 {
                    return None;
                }
                let mut doc = docs.pop()?;
                match doc.root.take() {
                    Some(Node {
                        value: Value::Sequence(mut seq),
                        ..
                    }) if seq.len() == 1 => doc.root = seq.pop(),
                    _ => return None,
                }
                Some(doc)
            })
            .collect();
        items.into_iter().collect()
    }
}

/// Hands a long list over in parts of about [`GROUP_BYTES`] of items: first the list's
/// skeleton (no items), then each item as a document of its own, parsed and read on the same
/// thread, so each tree is dropped where it was built. Returns false (nothing handed over) when
/// the list cannot be read this way; an item that does not parse after parts were handed over
/// ends the list with the document's syntax error.
fn stream_list<R: Send>(
    chunk: &str,
    line_offset: usize,
    byte_offset: usize,
    read: &(impl Fn(Result<Document, SyntaxError>) -> R + Sync),
    merge: &mut (impl FnMut(R) + Send),
) -> bool {
    let Some(layout) = ListLayout::find(chunk) else {
        return false;
    };
    let Some(mut skeleton) = layout.skeleton(chunk, line_offset, byte_offset) else {
        return false;
    };
    let mut groups = Vec::new();
    let mut from = 0;
    while from < layout.starts.len() {
        let base = layout.starts[from].0;
        let mut to = from + 1;
        while to < layout.starts.len() && layout.starts[to].0 - base < GROUP_BYTES {
            to += 1;
        }
        groups.push(from..to);
        from = to;
    }
    let read_group = |range: std::ops::Range<usize>| {
        let items = layout.parse_each_item(chunk, range, line_offset, byte_offset)?;
        Some(items.into_par_iter().map(|item| read(Ok(item))).collect())
    };
    let mut groups = groups.into_iter();
    let first = groups.next().and_then(&read_group);
    let Some(first) = first else {
        return false;
    };
    if layout.fill(&mut skeleton, Vec::new()).is_none() {
        return false;
    }
    merge(read(Ok(skeleton)));
    if crate::pipeline::read_and_merge(first, groups, read_group, merge).is_err() {
        // The whole document's parse names the error where a reader expects it.
        if let Err(e) = parse_one(chunk, line_offset, byte_offset) {
            merge(read(Err(e)));
        }
    }
    true
}

fn is_only_comments(chunk: &str) -> bool {
    chunk.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..." || t.starts_with("--- #")
    })
}

struct Piece {
    start: usize,
    end: usize,
    first_line: usize,
}

/// `text` cut before each `---` line (a document marker) that does not open the text. Only
/// lines that start with `---` are looked at, and lines are counted between them: a line by
/// line walk of 100 MB was a quarter of a second before any parallel work could start.
fn split_documents(text: &str) -> Vec<Piece> {
    let is_marker = |line_start: usize| {
        let rest = &text[line_start..];
        let content = rest[..rest.find('\n').unwrap_or(rest.len())].trim_end_matches('\r');
        content == "---" || content.starts_with("--- ") || content.starts_with("---\t")
    };
    let mut cuts = vec![0];
    cuts.extend(
        memchr::memmem::find_iter(text.as_bytes(), b"\n---")
            .map(|i| i + 1)
            .filter(|&line_start| is_marker(line_start)),
    );
    cuts.push(text.len());
    // The lines before each piece, counted in parallel and added up in order: counted on one
    // thread, 100 MB of text kept the other core waiting before any document was parsed.
    let newlines: Vec<usize> = cuts
        .par_windows(2)
        .map(|w| memchr::memchr_iter(b'\n', &text.as_bytes()[w[0]..w[1]]).count())
        .collect();
    let mut first_line = 1;
    cuts.windows(2)
        .zip(newlines)
        .map(|(w, lines)| {
            let piece = Piece {
                start: w[0],
                end: w[1],
                first_line,
            };
            first_line += lines;
            piece
        })
        .collect()
}

struct Builder<'a> {
    line_offset: usize,
    byte_offset: usize,
    chunk: &'a str,
    /// Anchored nodes with their size in nodes, so an alias is priced before it is copied.
    anchors: HashMap<usize, (Node, usize)>,
    surprises: Vec<Yaml11Surprise>,
    duplicate_keys: Vec<(String, Span)>,
    /// Nodes of the current document, and how many of them came from expanding aliases
    /// (go-yaml's decodeCount and aliasCount).
    decoded: usize,
    from_aliases: usize,
}

/// Nesting deeper than any Kubernetes object needs; deeper input is refused before it can
/// exhaust the stack of the recursive walks that follow parsing.
pub const MAX_DEPTH: usize = 256;

/// go-yaml v3's guard against "billion laughs" (kubectl's parser): alias expansion may make up
/// 99% of a document's nodes up to 400,000 nodes, falling linearly to 10% at 4,000,000.
fn excessive_aliasing(decoded: usize, from_aliases: usize) -> bool {
    const LOW: usize = 400_000;
    const HIGH: usize = 4_000_000;
    let allowed = if decoded <= LOW {
        0.99
    } else if decoded >= HIGH {
        0.10
    } else {
        0.99 - 0.89 * ((decoded - LOW) as f64 / (HIGH - LOW) as f64)
    };
    from_aliases > 100 && decoded > 1000 && from_aliases as f64 / decoded as f64 > allowed
}

/// Number of nodes in a tree (iterative: the tree may be deep).
fn node_count(node: &Node) -> usize {
    let mut count = 0;
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        count += 1;
        match &n.value {
            Value::Sequence(items) => stack.extend(items.iter()),
            Value::Mapping(entries) => stack.extend(entries.iter().map(|e| &e.value)),
            _ => {}
        }
    }
    count
}

enum Frame {
    Sequence(Vec<Node>, Span, usize),
    Mapping(Vec<Entry>, Option<(CompactString, Span)>, Span, usize),
}

/// The documents of `chunk`, read from saphyr-parser's events where it may read them (see
/// `yaml_events`) and from granit-parser's otherwise or when saphyr-parser's reading stops.
fn parse_one(
    chunk: &str,
    line_offset: usize,
    byte_offset: usize,
) -> Result<Vec<Document>, SyntaxError> {
    parse_one_with(chunk, line_offset, byte_offset, Reader::Either)
}

/// Which parser's events `parse_one_with` builds from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reader {
    /// saphyr-parser where it may read, granit-parser for the rest (what users get).
    Either,
    /// granit-parser alone: the reading the other is held to in tests.
    GranitOnly,
}

/// `text` read as [`parse_documents`] reads each piece, once as users get it (saphyr-parser
/// where it may read) and once by granit-parser alone: the two must be equal, tree, spans and
/// error (the `yaml_readers` fuzz target and this module's tests hold them so).
#[doc(hidden)]
pub fn both_readings(text: &str) -> [Result<Vec<Document>, SyntaxError>; 2] {
    [Reader::Either, Reader::GranitOnly].map(|reader| parse_one_with(text, 0, 0, reader))
}

fn parse_one_with(
    chunk: &str,
    line_offset: usize,
    byte_offset: usize,
    reader: Reader,
) -> Result<Vec<Document>, SyntaxError> {
    if reader == Reader::Either && yaml_events::saphyr_may_read(chunk) {
        // Otherwise unsure, or an error the builder found: granit's reading decides and words it.
        if let Ok(documents) = build(chunk, line_offset, byte_offset, yaml_events::saphyr(chunk)) {
            return Ok(documents);
        }
    }
    match build(chunk, line_offset, byte_offset, yaml_events::granit(chunk)) {
        Ok(documents) => Ok(documents),
        Err(Some(e)) => Err(e),
        // granit's events never stop unsure; were they to, the document is still refused.
        Err(None) => Err(SyntaxError {
            span: Span {
                line: line_offset + 1,
                column: 1,
                start: byte_offset,
                end: byte_offset,
            },
            message: "the YAML parser stopped without saying why".into(),
        }),
    }
}

/// The documents built from `events`; `Err(None)` when the reader was unsure.
fn build<'a>(
    chunk: &'a str,
    line_offset: usize,
    byte_offset: usize,
    events: impl Iterator<Item = yaml_events::Item<'a>>,
) -> Result<Vec<Document>, Option<SyntaxError>> {
    let mut builder = Builder {
        line_offset,
        byte_offset,
        chunk,
        anchors: HashMap::new(),
        surprises: Vec::new(),
        duplicate_keys: Vec::new(),
        decoded: 0,
        from_aliases: 0,
    };
    let mut documents = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    for event in events {
        let (event, span) = event.map_err(|stop| match stop {
            Stop::Syntax { at, message } => Some(SyntaxError {
                span: builder.span_of(at),
                message,
            }),
            Stop::Unsure => None,
        })?;
        let sp = builder.span_of(span);
        let completed: Option<(Node, usize)> = match event {
            NodeEvent::Other => None,
            NodeEvent::DocumentStart => {
                root = None;
                builder.decoded = 0;
                builder.from_aliases = 0;
                None
            }
            NodeEvent::DocumentEnd => {
                documents.push(Document {
                    root: root.take(),
                    surprises: std::mem::take(&mut builder.surprises),
                    duplicate_keys: std::mem::take(&mut builder.duplicate_keys),
                });
                None
            }
            NodeEvent::Alias(id) => match builder.anchors.get(&id) {
                Some((node, size)) => {
                    builder.decoded += size;
                    builder.from_aliases += size;
                    if excessive_aliasing(builder.decoded, builder.from_aliases) {
                        return Err(Some(SyntaxError {
                            span: sp,
                            message: format!(
                                "document contains excessive aliasing: expanding the aliases would make {} nodes, {} of them copies (kubectl's parser refuses this \"billion laughs\" shape too)",
                                builder.decoded, builder.from_aliases
                            ),
                        }));
                    }
                    Some((node.clone(), 0))
                }
                None => {
                    return Err(Some(SyntaxError {
                        span: sp,
                        message: "alias refers to an unknown anchor".into(),
                    }));
                }
            },
            NodeEvent::UnresolvedAlias(name) => {
                return Err(Some(SyntaxError {
                    span: sp,
                    message: format!("alias *{name} has no anchor before it"),
                }));
            }
            NodeEvent::Scalar {
                text,
                plain,
                anchor,
                tagged,
            } => {
                builder.decoded += 1;
                let value = builder.resolve_scalar(text, plain, tagged, sp);
                Some((Node { value, span: sp }, anchor))
            }
            NodeEvent::SequenceStart { .. } | NodeEvent::MappingStart { .. }
                if stack.len() >= MAX_DEPTH =>
            {
                return Err(Some(SyntaxError {
                    span: sp,
                    message: format!(
                        "nesting is deeper than {MAX_DEPTH} levels; no Kubernetes object is this deep"
                    ),
                }));
            }
            NodeEvent::SequenceStart { anchor } => {
                builder.decoded += 1;
                stack.push(Frame::Sequence(Vec::new(), sp, anchor));
                None
            }
            NodeEvent::MappingStart { anchor } => {
                builder.decoded += 1;
                stack.push(Frame::Mapping(Vec::new(), None, sp, anchor));
                None
            }
            NodeEvent::SequenceEnd => match stack.pop() {
                Some(Frame::Sequence(items, start, anchor)) => Some((
                    Node {
                        value: Value::Sequence(items),
                        span: start,
                    },
                    anchor,
                )),
                _ => None,
            },
            NodeEvent::MappingEnd => match stack.pop() {
                Some(Frame::Mapping(entries, _, start, anchor)) => Some((
                    Node {
                        value: Value::Mapping(entries),
                        span: start,
                    },
                    anchor,
                )),
                _ => None,
            },
        };
        if let Some((node, anchor)) = completed {
            if anchor != 0 {
                let size = node_count(&node);
                builder.anchors.insert(anchor, (node.clone(), size));
            }
            builder.attach(&mut stack, &mut root, node);
        }
    }
    Ok(documents)
}

impl Builder<'_> {
    fn span_of(&self, at: RawSpan) -> Span {
        let start = at.start.unwrap_or(0).min(self.chunk.len());
        let end = at.end.unwrap_or(start).clamp(start, self.chunk.len());
        Span {
            line: at.line + self.line_offset,
            column: at.col + 1,
            start: start + self.byte_offset,
            end: end + self.byte_offset,
        }
    }

    fn attach(&mut self, stack: &mut [Frame], root: &mut Option<Node>, node: Node) {
        match stack.last_mut() {
            None => *root = Some(node),
            Some(Frame::Sequence(items, ..)) => items.push(node),
            Some(Frame::Mapping(entries, pending_key, ..)) => match pending_key.take() {
                None => {
                    let key = match node.value {
                        Value::String(s) => s,
                        Value::Bool(b) => b.to_compact_string(),
                        Value::Int(i) => i.to_compact_string(),
                        // Display, not compact_str's ryu: a float key reads as std prints it.
                        Value::Float(f) => compact_str::format_compact!("{f}"),
                        Value::Null => "null".into(),
                        Value::Sequence(_) | Value::Mapping(_) => "<complex key>".into(),
                    };
                    *pending_key = Some((key, node.span));
                }
                Some((key, key_span)) => {
                    if entries.iter().any(|e| e.key == key) {
                        self.duplicate_keys.push((key.to_string(), key_span));
                    }
                    entries.push(Entry {
                        key,
                        key_span,
                        value: node,
                    });
                }
            },
        }
    }

    /// Resolves a scalar as go-yaml v2 (kubectl) does; quoted and tagged scalars stay strings.
    fn resolve_scalar(
        &mut self,
        text: std::borrow::Cow<'_, str>,
        plain: bool,
        tagged: bool,
        span: Span,
    ) -> Value {
        if !plain || tagged {
            return Value::String(CompactString::from(text));
        }
        // Most plain scalars are names and labels: only text that starts like a number, a
        // null, a boolean or a special float can be anything but a string.
        let may_resolve = text.as_bytes().first().is_none_or(|b| {
            b.is_ascii_digit()
                || matches!(
                    b,
                    b'-' | b'+'
                        | b'.'
                        | b'~'
                        | b'n'
                        | b'N'
                        | b't'
                        | b'T'
                        | b'f'
                        | b'F'
                        | b'y'
                        | b'Y'
                        | b'o'
                        | b'O'
                )
        });
        if !may_resolve {
            return Value::String(CompactString::from(text));
        }
        let value = self.resolve_plain(&text, span);
        value.unwrap_or_else(|| Value::String(CompactString::from(text)))
    }

    /// A plain scalar as go-yaml v2 reads it, or `None` for a string.
    fn resolve_plain(&mut self, text: &str, span: Span) -> Option<Value> {
        match text {
            "" | "~" | "null" | "Null" | "NULL" => return Some(Value::Null),
            "true" | "True" | "TRUE" => return Some(Value::Bool(true)),
            "false" | "False" | "FALSE" => return Some(Value::Bool(false)),
            // go-yaml v2 (kubectl) also reads the single letters y/Y/n/N as booleans, but PyYAML,
            // YAML 1.2 and most generators write namespaces such as `y` unquoted and mean the
            // string; Bulkhead keeps the string and warns that kubectl disagrees.
            "y" | "Y" | "n" | "N" => {
                self.surprise(span, text, SurpriseKind::Boolean);
                return None;
            }
            "yes" | "Yes" | "YES" | "on" | "On" | "ON" => {
                self.surprise(span, text, SurpriseKind::Boolean);
                return Some(Value::Bool(true));
            }
            "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
                self.surprise(span, text, SurpriseKind::Boolean);
                return Some(Value::Bool(false));
            }
            ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
                return Some(Value::Float(f64::INFINITY));
            }
            "-.inf" | "-.Inf" | "-.INF" => return Some(Value::Float(f64::NEG_INFINITY)),
            ".nan" | ".NaN" | ".NAN" => return Some(Value::Float(f64::NAN)),
            _ => {}
        }
        // An integer (decimal, `0x`, `0b`, octal, with `_`) or a float has no other bytes than
        // these: `team-0001`, `networking.k8s.io/v1` or a CIDR stop at their first letter or
        // `/` instead of being searched for underscores, dots and exponents.
        let may_be_number = text
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || matches!(b, b'x' | b'_' | b'+' | b'-' | b'.'));
        if !may_be_number {
            return None;
        }
        if let Some(i) = self.resolve_int(text, span) {
            return Some(Value::Int(i));
        }
        if is_float(text)
            && let Ok(f) = without_underscores(text).parse::<f64>()
        {
            return Some(Value::Float(f));
        }
        None
    }

    fn resolve_int(&mut self, text: &str, span: Span) -> Option<i64> {
        let (negative, digits) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let digits = without_underscores(digits);
        if digits.is_empty() {
            return None;
        }
        let magnitude = if let Some(hex) = digits.strip_prefix("0x") {
            i64::from_str_radix(hex, 16).ok()?
        } else if let Some(bin) = digits.strip_prefix("0b") {
            i64::from_str_radix(bin, 2).ok()?
        } else if digits.len() > 1 && digits.starts_with('0') {
            let value = i64::from_str_radix(&digits[1..], 8).ok()?;
            self.surprise(span, text, SurpriseKind::Octal);
            value
        } else if digits.bytes().all(|b| b.is_ascii_digit()) {
            digits.parse::<i64>().ok()?
        } else {
            return None;
        };
        Some(if negative { -magnitude } else { magnitude })
    }

    fn surprise(&mut self, span: Span, text: &str, kind: SurpriseKind) {
        self.surprises.push(Yaml11Surprise {
            span,
            text: text.to_string(),
            kind,
        });
    }
}

/// A JSON number read as granit's plain scalar of the same text is: an integer that fits in
/// i64, else a float, else (an integer beyond i64) `None`, text. JSON has no underscores,
/// leading zeros or hex, so no YAML 1.1 surprise.
pub(crate) fn resolve_number(text: &str) -> Option<Value> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        let magnitude = digits.parse::<i64>().ok()?;
        return Some(Value::Int(if negative { -magnitude } else { magnitude }));
    }
    if is_float(text) {
        return text.parse::<f64>().ok().map(Value::Float);
    }
    None
}

/// go-yaml v2 allows `_` between digits; most numbers have none, and are not copied.
fn without_underscores(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('_') {
        std::borrow::Cow::Owned(text.replace('_', ""))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

fn is_float(text: &str) -> bool {
    let t = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let mut parts = mantissa.splitn(2, '.');
    let int_part = parts.next().unwrap_or("");
    let frac_part = parts.next();
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || b == b'_');
    let mantissa_ok = match frac_part {
        Some(frac) => digits(int_part) && digits(frac) && !(int_part.is_empty() && frac.is_empty()),
        None => !int_part.is_empty() && digits(int_part),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
    });
    mantissa_ok && exponent_ok && (frac_part.is_some() || exponent.is_some())
}

/// One step of a path into a document: a mapping key or a sequence index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Key(std::borrow::Cow<'static, str>),
    Index(usize),
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Mapping(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The span of the node at `path`, or of its deepest existing ancestor. With `want_key`, a
    /// path ending in a mapping key points at the key rather than its value.
    pub fn span_at(&self, path: &[Segment], want_key: bool) -> Span {
        let mut node = self;
        for (i, segment) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            match (segment, &node.value) {
                (Segment::Key(k), Value::Mapping(entries)) => {
                    match entries.iter().find(|e| e.key == k) {
                        Some(e) if last && want_key => return e.key_span,
                        Some(e) => node = &e.value,
                        None => return node.span,
                    }
                }
                (Segment::Index(idx), Value::Sequence(items)) => match items.get(*idx) {
                    Some(item) => node = item,
                    None => return node.span,
                },
                _ => return node.span,
            }
        }
        node.span
    }

    /// Calls `f` on the span of this node and of every key and node below it.
    pub fn for_each_span(&mut self, f: &mut impl FnMut(&mut Span)) {
        f(&mut self.span);
        match &mut self.value {
            Value::Sequence(items) => items.iter_mut().for_each(|n| n.for_each_span(f)),
            Value::Mapping(entries) => entries.iter_mut().for_each(|e| {
                f(&mut e.key_span);
                e.value.for_each_span(f);
            }),
            _ => {}
        }
    }

    /// Converts to JSON for the typed deserialisers (k8s-openapi expects the JSON data model).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::String(s) => serde_json::Value::String(s.to_string()),
            Value::Sequence(items) => {
                serde_json::Value::Array(items.iter().map(Node::to_json).collect())
            }
            Value::Mapping(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.to_string(), e.value.to_json()))
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both readings of `text` as `parse_one_with` gives them, or `None` when they agree.
    /// Compared as Debug text: `.nan` is not equal to itself.
    fn readings_differ(text: &str) -> Option<(String, String)> {
        let [either, granit] = both_readings(text).map(|reading| format!("{reading:?}"));
        (either != granit).then_some((either, granit))
    }

    fn assert_readings_agree(inputs: impl IntoIterator<Item = (String, String)>) {
        let mut checked = 0;
        let mut differ = Vec::new();
        for (name, text) in inputs {
            checked += 1;
            if let Some((either, granit)) = readings_differ(&text) {
                // Where the readings part, with some context before it.
                let at = either
                    .char_indices()
                    .zip(granit.chars())
                    .find(|((_, a), b)| a != b)
                    .map_or(either.len().min(granit.len()), |((i, _), _)| i);
                let from = either.floor_char_boundary(at.saturating_sub(80));
                let shown = |reading: &str| {
                    reading
                        .get(from..)
                        .unwrap_or("")
                        .chars()
                        .take(160)
                        .collect::<String>()
                };
                differ.push(format!(
                    "{name} {:?}\n  with saphyr: ...{}\n  granit only: ...{}",
                    text.chars().take(200).collect::<String>(),
                    shown(&either),
                    shown(&granit)
                ));
            }
        }
        assert!(checked > 0, "no inputs");
        assert!(
            differ.is_empty(),
            "{} of {checked} inputs read differently:\n{}",
            differ.len(),
            differ.join("\n")
        );
    }

    /// The edge cases the parsers' authors wrote down (tests/yaml-corpus): every one reads
    /// the same, tree for tree and span for span, error for error, whichever parser read it.
    /// Each is also read with a line break after it: most are written without one, and only
    /// text that ends with one goes to saphyr-parser.
    #[test]
    fn saphyr_reads_the_parser_test_suites_exactly_as_granit() {
        let corpus: Vec<String> = serde_json::from_str(include_str!(
            "../../../tests/yaml-corpus/parser-test-suites.json"
        ))
        .expect("corpus is a JSON list of strings");
        let inputs: Vec<(String, String)> = corpus
            .into_iter()
            .enumerate()
            .flat_map(|(i, text)| {
                let ended = format!("{text}\n");
                [(format!("#{i}"), text), (format!("#{i} + LF"), ended)]
            })
            .collect();
        let routed = inputs
            .iter()
            .filter(|(_, t)| yaml_events::saphyr_may_read(t))
            .count();
        assert!(
            routed > 2000,
            "most of the corpus is routed to saphyr: {routed}"
        );
        assert_readings_agree(inputs);
    }

    /// YAML limits an implicit key to 1024 characters; saphyr-parser does not check it in
    /// flow collections, so keys about that long are left to granit.
    #[test]
    fn keys_about_1024_characters_read_as_granit_reads_them() {
        let mut inputs = Vec::new();
        for length in [1000, 1020, 1023, 1024, 1025, 1100] {
            let key = "k".repeat(length);
            let items = vec!["a"; length / 3].join(", ");
            for text in [
                format!("{key}: v\n"),
                format!("{{{key}: v}}\n"),
                format!("[{key}: v]\n"),
                format!("{{\"{key}\": v}}\n"),
                format!("{{[{items}]: v}}\n"),
                format!("[{items}]: v\n"),
                format!("x: {{a: {key}}}\n"),
            ] {
                inputs.push((format!("length {length}"), text));
            }
        }
        assert_readings_agree(inputs);
    }

    /// A small deterministic generator of manifest-like YAML: block and flow collections,
    /// plain, quoted and block scalars, implicit nulls, comments, blank lines, trailing blanks
    /// and CRLF, in the places a hand-edited manifest has them.
    struct ManifestGen(u64);

    impl ManifestGen {
        fn next(&mut self) -> u64 {
            // xorshift64*: enough spread for choosing among a handful of shapes.
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn pick<'a>(&mut self, choices: &[&'a str]) -> &'a str {
            choices[(self.next() % choices.len() as u64) as usize]
        }

        fn chance(&mut self, in_ten: u64) -> bool {
            self.next() % 10 < in_ten
        }

        fn scalar(&mut self) -> String {
            let plain = self.pick(&[
                "web",
                "app.kubernetes.io/name",
                "10.0.0.0/8",
                "8080",
                "0755",
                "yes",
                "off",
                "~",
                "null",
                "true",
                "1.5",
                "-3",
                "0x1F",
                "a b c",
                "TCP",
                "k8s-app",
                "x#y",
                "a:b",
                ".inf",
                "1e3",
                "+12",
                "y",
                "",
            ]);
            match self.next() % 6 {
                0 => format!("'{}'", plain.replace('\'', "''")),
                1 => format!("\"{}\"", plain),
                2 => self
                    .pick(&[
                        "'it''s'",
                        "\"a\\\"b\"",
                        "\"tab\\tnew\\n\"",
                        "\"#\"",
                        "'#x'",
                        "\"\"",
                        "''",
                    ])
                    .to_string(),
                _ => plain.to_string(),
            }
        }

        fn flow(&mut self, depth: usize) -> String {
            let pad = self.pick(&["", " ", "  "]);
            let items: Vec<String> = (0..self.next() % 3)
                .map(|_| {
                    if depth < 2 && self.chance(3) {
                        self.flow(depth + 1)
                    } else {
                        let s = self.scalar();
                        if s.is_empty() { "x".into() } else { s }
                    }
                })
                .collect();
            // Separators, some across lines with a comment, and now and then a trailing comma.
            let separator = self.pick(&[", ", ", ", ",", ",\n  ", " # c\n  , ", ",  # c\n   "]);
            let trailing = self.pick(&["", "", ",", ", "]);
            let trailing = if items.is_empty() { "" } else { trailing };
            if self.chance(5) {
                let entries: Vec<String> = items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| format!("k{i}: {v}"))
                    .collect();
                format!("{{{pad}{}{trailing}{pad}}}", entries.join(separator))
            } else {
                format!("[{pad}{}{trailing}{pad}]", items.join(separator))
            }
        }

        fn comment(&mut self) -> &'static str {
            self.pick(&["", "", "", " # note", "  #x", " # \"quoted\" 'too'"])
        }

        fn eol(&mut self) -> &'static str {
            self.pick(&["\n", "\n", "\n", " \n", "\r\n"])
        }

        /// A block mapping at `indent`, `depth` levels down.
        fn mapping(&mut self, out: &mut String, indent: usize, depth: usize) {
            for i in 0..1 + self.next() % 4 {
                if self.chance(1) {
                    out.push_str(self.pick(&["\n", "# comment\n", "  # indented comment\n"]));
                }
                let key = if self.chance(1) {
                    format!("\"key {i}\"")
                } else {
                    format!("key{i}")
                };
                out.push_str(&" ".repeat(indent));
                out.push_str(&key);
                out.push(':');
                self.value(out, indent, depth);
            }
        }

        /// What follows `key:` or `- `.
        fn value(&mut self, out: &mut String, indent: usize, depth: usize) {
            let choice = if depth > 3 {
                self.next() % 3
            } else {
                self.next() % 8
            };
            match choice {
                0 => {
                    let s = self.scalar();
                    let comment = self.comment();
                    let eol = self.eol();
                    out.push_str(&format!(" {s}{comment}{eol}"));
                }
                1 => {
                    let f = self.flow(0);
                    let comment = self.comment();
                    out.push_str(&format!(" {f}{comment}\n"));
                }
                2 => {
                    // An implicit null, maybe with a comment after it.
                    let comment = self.comment();
                    let eol = self.eol();
                    out.push_str(&format!("{comment}{eol}"));
                }
                3 | 4 => {
                    let comment = self.comment();
                    out.push_str(&format!("{comment}\n"));
                    self.mapping(out, indent + 2, depth + 1);
                }
                5 => {
                    let comment = self.comment();
                    out.push_str(&format!("{comment}\n"));
                    let dash_indent = if self.chance(5) { indent } else { indent + 2 };
                    for _ in 0..1 + self.next() % 3 {
                        out.push_str(&" ".repeat(dash_indent));
                        out.push('-');
                        if self.chance(6) {
                            out.push(' ');
                            let mut item = String::new();
                            self.mapping(&mut item, dash_indent + 2, depth + 1);
                            // The first key goes on the dash's line.
                            out.push_str(item.trim_start_matches(' '));
                        } else {
                            self.value(out, dash_indent, depth + 1);
                        }
                    }
                }
                6 => {
                    // A scalar over several lines: plain, or quoted with folded and escaped
                    // line breaks.
                    let more = " ".repeat(indent + 2);
                    let text = match self.next() % 3 {
                        0 => format!("first part\n{more}second part\n\n{more}third"),
                        1 => format!("\"first\n{more}second \\\n{more}  third\\t\""),
                        _ => format!("'first\n\n{more}it''s second'"),
                    };
                    let comment = self.comment();
                    out.push_str(&format!(" {text}{comment}\n"));
                }
                _ => {
                    let header = self.pick(&["|", ">", "|-", ">+", "|2"]);
                    out.push_str(&format!(" {header}\n"));
                    for line in 0..1 + self.next() % 3 {
                        out.push_str(&" ".repeat(indent + 2));
                        out.push_str(&format!("line {line} # not a comment\n"));
                    }
                }
            }
        }
    }

    /// Thousands of generated manifests, each also with a byte removed, an indicator put in
    /// and a line doubled (mostly invalid): the readings agree on every tree, span and error.
    #[test]
    fn saphyr_reads_generated_manifests_exactly_as_granit() {
        // A longer run: BULKHEAD_YAML_CASES=200000 BULKHEAD_YAML_SEED=7 cargo test ...
        let env = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let cases = env("BULKHEAD_YAML_CASES", 3000);
        let mut generator = ManifestGen(0x9E37_79B9_7F4A_7C15 ^ env("BULKHEAD_YAML_SEED", 0));
        let mut inputs = Vec::new();
        let mut read_by_saphyr = 0;
        for case in 0..cases {
            let mut text = String::new();
            if generator.chance(2) {
                text.push_str("---\n");
            }
            generator.mapping(&mut text, 0, 0);
            if build(&text, 0, 0, yaml_events::saphyr(&text)).is_ok() {
                read_by_saphyr += 1;
            }
            // Three mutants: a byte removed, an indicator or blank put in, a line doubled.
            let at = (generator.next() as usize) % text.len();
            let mut removed = text.clone();
            removed.remove(at);
            inputs.push((format!("case {case} without byte {at}"), removed));
            let at = (generator.next() as usize) % text.len();
            let put = generator.pick(&[
                ":", "-", "#", " ", "\n", "'", "\"", "[", "]", "{", "}", ",", "?", "|", ">", "*",
                "&", "!", "%", "@", "`", "\\", "...", "---", "\r",
            ]);
            let mut inserted = text.clone();
            inserted.insert_str(at, put);
            inputs.push((format!("case {case} with {put:?} at {at}"), inserted));
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            let doubled = (generator.next() as usize) % lines.len();
            let mut with_line_twice = lines.clone();
            with_line_twice.insert(doubled, lines[doubled]);
            inputs.push((
                format!("case {case} with line {doubled} twice"),
                with_line_twice.concat(),
            ));
            inputs.push((format!("case {case}"), text));
        }
        // The generator leans on rare shapes (quoted scalars over lines), which are left to
        // granit; what matters is that both readers are exercised.
        assert!(
            read_by_saphyr * 10 > cases * 3,
            "saphyr-parser read only {read_by_saphyr} of {cases} generated manifests"
        );
        assert_readings_agree(inputs);
    }

    /// Every document of the real-world manifests, cut as the loader cuts them.
    #[test]
    fn saphyr_reads_real_world_documents_exactly_as_granit() {
        // Read as the loader reads a directory (`*.yaml`, `*.yml`, `*.json`, recursively).
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/real-world");
        let (files, problems) = crate::input::read_paths(&[root]);
        assert!(
            problems.is_empty(),
            "real-world corpus unreadable: {problems:?}"
        );
        assert!(
            files.len() > 200,
            "real-world corpus found: {}",
            files.len()
        );
        let mut documents = Vec::new();
        for file in files {
            let text = &file.text;
            for piece in pieces(text) {
                documents.push((
                    format!("{}@{}", file.name, piece.first_line),
                    text[piece.start..piece.end].to_string(),
                ));
            }
        }
        // The fast reader is the one real manifests get.
        let read_by_saphyr = documents
            .iter()
            .filter(|(_, t)| {
                yaml_events::saphyr_may_read(t) && build(t, 0, 0, yaml_events::saphyr(t)).is_ok()
            })
            .count();
        assert!(
            read_by_saphyr * 10 > documents.len() * 8,
            "saphyr-parser read {read_by_saphyr} of {} real-world documents",
            documents.len()
        );
        assert_readings_agree(documents);
    }

    /// The walk [`split_documents`] replaced: every line, in order.
    fn split_line_by_line(text: &str) -> Vec<(usize, usize, usize)> {
        let mut pieces = Vec::new();
        let (mut start, mut first_line, mut offset) = (0, 1, 0);
        for (i, line) in text.split_inclusive('\n').enumerate() {
            let content = line.trim_end_matches(['\n', '\r']);
            let is_marker =
                content == "---" || content.starts_with("--- ") || content.starts_with("---\t");
            if is_marker && offset > start {
                pieces.push((start, offset, first_line));
                start = offset;
                first_line = i + 1;
            }
            offset += line.len();
        }
        pieces.push((start, text.len(), first_line));
        pieces
    }

    #[test]
    fn documents_are_cut_at_the_marker_lines_a_line_by_line_walk_finds() {
        let texts = [
            "",
            "---",
            "---\n",
            "a: 1\n",
            "---\na: 1\n---\nb: 2\n",
            "a: 1\n---\n---\nb: 2",
            "a: 1\r\n---\r\nb: 2\r\n--- # c\r\n",
            "a: '---'\nb: |\n  ---\n---\tx\n----\n---x\n--- \n",
            "x\n\n\n---\n\n---",
            "---\r\r\na\n---\n",
            "é: ü\n---\nñ: 1\n\n---",
        ];
        for text in texts {
            let fast: Vec<(usize, usize, usize)> = split_documents(text)
                .iter()
                .map(|p| (p.start, p.end, p.first_line))
                .collect();
            assert_eq!(fast, split_line_by_line(text), "{text:?}");
        }
        let mut long = String::new();
        for i in 0..2000 {
            long.push_str(&format!("---\nkind: K\nmetadata: {{name: n{i}}}\n"));
            if i % 7 == 0 {
                long.push_str("# ---\n\n");
            }
        }
        let fast: Vec<(usize, usize, usize)> = split_documents(&long)
            .iter()
            .map(|p| (p.start, p.end, p.first_line))
            .collect();
        assert_eq!(fast.len(), 2000);
        assert_eq!(fast, split_line_by_line(&long));
    }

    #[test]
    fn a_list_longer_than_a_group_is_handed_over_as_its_skeleton_then_each_item() {
        let mut text = String::from("apiVersion: v1\nkind: List\nitems:\n");
        let items = 2 * GROUP_BYTES / 60 + 10;
        for i in 0..items {
            text.push_str(&format!(
                "- apiVersion: v1\n  kind: ConfigMap\n  metadata: {{name: c{i:08}}}\n"
            ));
        }
        text.push_str("metadata:\n  resourceVersion: \"7\"\n");
        let mut handed = Vec::new();
        for_each_document(
            &text,
            |d| d.expect("parses").root.expect("a root"),
            |root| handed.push(root),
        );
        assert_eq!(handed.len(), 1 + items);
        let skeleton = &handed[0];
        assert_eq!(skeleton.get("kind").and_then(Node::as_str), Some("List"));
        assert_eq!(
            skeleton.get("items").map(|i| &i.value),
            Some(&Value::Sequence(Vec::new()))
        );
        // What follows the items keeps its place in the whole text.
        let version = skeleton.span_at(
            &[
                Segment::Key("metadata".into()),
                Segment::Key("resourceVersion".into()),
            ],
            false,
        );
        assert_eq!(version.line, 4 + items * 3 + 1);
        assert_eq!(&text[version.start..version.end], "\"7\"");
        for (i, item) in handed[1..].iter().enumerate() {
            // Each item keeps its own line in the whole text, and comes in order.
            assert_eq!(item.span.line, 4 + i * 3);
            let name = item.span_at(
                &[Segment::Key("metadata".into()), Segment::Key("name".into())],
                false,
            );
            assert_eq!(&text[name.start..name.end], format!("c{i:08}"));
        }
    }

    fn one(text: &str) -> Document {
        let mut docs = parse_documents(text);
        assert_eq!(docs.len(), 1, "{docs:?}");
        docs.remove(0).expect("parses")
    }

    #[test]
    fn spans_are_one_based_and_survive_document_splitting() {
        let docs = parse_documents("a: 1\n---\nkind: Pod\nspec:\n  port: 80\n");
        assert_eq!(docs.len(), 2);
        let root = docs[1]
            .as_ref()
            .expect("second parses")
            .root
            .clone()
            .expect("root");
        let span = root.span_at(
            &[Segment::Key("spec".into()), Segment::Key("port".into())],
            false,
        );
        assert_eq!((span.line, span.column), (5, 9));
        let key = root.span_at(&[Segment::Key("spec".into())], true);
        assert_eq!((key.line, key.column), (4, 1));
    }

    #[test]
    fn a_broken_document_does_not_hide_the_next_one() {
        let docs = parse_documents("a: [1, 2\n---\nb: 2\n");
        assert_eq!(docs.len(), 2);
        let err = docs[0].as_ref().expect_err("first is broken");
        assert!(err.span.line >= 1);
        assert!(docs[1].is_ok());
    }

    #[test]
    fn scalars_resolve_like_kubectl_and_surprises_are_recorded() {
        let doc = one("a: on\nb: '80'\nc: 0755\nd: 0x50\ne: 1.5\nf: ~\ng: hello\nh: 12\ni: y\n");
        let json = doc.root.expect("root").to_json();
        assert_eq!(
            json,
            serde_json::json!({"a": true, "b": "80", "c": 493, "d": 80, "e": 1.5, "f": null,
                               "g": "hello", "h": 12, "i": "y"})
        );
        let kinds: Vec<_> = doc
            .surprises
            .iter()
            .map(|s| (s.text.as_str(), s.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("on", SurpriseKind::Boolean),
                ("0755", SurpriseKind::Octal),
                ("y", SurpriseKind::Boolean)
            ]
        );
    }

    #[test]
    fn numbers_in_every_spelling_resolve_and_look_alikes_stay_text() {
        let cases = [
            ("1_000", serde_json::json!(1000)),
            ("0b101", serde_json::json!(5)),
            ("-0x1F", serde_json::json!(-31)),
            ("0xface", serde_json::json!(64206)),
            ("+12", serde_json::json!(12)),
            ("-0", serde_json::json!(0)),
            ("+.5", serde_json::json!(0.5)),
            ("1e3", serde_json::json!(1000.0)),
            ("1E-3", serde_json::json!(0.001)),
            ("6.5e+2", serde_json::json!(650.0)),
            ("1_0.5", serde_json::json!(10.5)),
            ("-.inf", serde_json::json!(null)), // JSON has no infinity: to_json writes null
            ("0o17", serde_json::json!("0o17")),
            ("1.2.3", serde_json::json!("1.2.3")),
            ("12:30", serde_json::json!("12:30")),
            ("10.0.0.0/8", serde_json::json!("10.0.0.0/8")),
            ("face", serde_json::json!("face")),
            ("1e", serde_json::json!("1e")),
            ("+", serde_json::json!("+")),
            ("team-0001", serde_json::json!("team-0001")),
            ("1.5Gi", serde_json::json!("1.5Gi")),
        ];
        for (text, want) in cases {
            let doc = one(&format!("v: {text}\n"));
            let got = doc.root.expect("root").to_json();
            assert_eq!(got, serde_json::json!({ "v": want }), "{text}");
        }
    }

    #[test]
    fn a_large_list_parses_the_same_in_parallel() {
        let mut text = String::from("apiVersion: v1\nitems:\n");
        for i in 0..4000 {
            text.push_str(&format!("- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: p{i}\n    labels: {{app: on}}\n"));
        }
        text.push_str("kind: List\nmetadata:\n  resourceVersion: \"\"\n");
        assert!(text.len() > 256 * 1024);
        let fast = parse_list_in_parallel(&text, 0, 0)
            .expect("takes the parallel path")
            .expect("parses");
        let slow = parse_one(&text, 0, 0).expect("parses");
        assert_eq!(fast, slow);
    }

    #[test]
    fn anchors_and_duplicate_keys() {
        let doc = one("a: &x {k: v}\nb: *x\nb: 2\n");
        let json = doc.root.expect("root").to_json();
        assert_eq!(json["a"], serde_json::json!({"k": "v"}));
        assert_eq!(doc.duplicate_keys.len(), 1);
    }
}
