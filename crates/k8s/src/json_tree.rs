//! JSON input (`kubectl get -o json`, CI tools writing JSON) read with jiter into the same span
//! tree YAML gives, with the same spans granit gives the same text: JSON is YAML, and was read
//! as YAML, at a tenth of a JSON parser's pace.
//!
//! Only text that jiter accepts as one JSON value takes this path; anything else (several
//! documents, comments, YAML flow style) is left to the YAML parser, which reads it as before.

use crate::yaml_tree::{
    Document, Entry, GROUP_BYTES, Node, Span, SyntaxError, Value, resolve_number,
};
use compact_str::CompactString;
use jiter::{Jiter, Peek};
use rayon::prelude::*;
use std::ops::Range;

/// Hands the documents of `text` to `read` and the results to `merge`, as
/// [`crate::yaml_tree::for_each_document`] does: a list's skeleton and then each of its items,
/// each item parsed and read on one worker, a group at a time. False, with nothing handed
/// over, when `text` is not one JSON value.
pub fn for_each_document<R: Send>(
    text: &str,
    read: &(impl Fn(Result<Document, SyntaxError>) -> R + Sync),
    merge: &mut (impl FnMut(R) + Send),
) -> bool {
    let first = text.bytes().find(|b| !b.is_ascii_whitespace());
    if !matches!(first, Some(b'{' | b'[')) {
        return false;
    }
    // One pass over the whole text checks it is one JSON value and builds all of it but the
    // items of a top-level `items` array, which are only delimited: they are built in parallel.
    let mut builder = Builder::new(text, 0..text.len(), (0, 1, 0));
    let Some((mut skeleton, items)) = builder.skeleton() else {
        return false;
    };
    let Some(items) = items else {
        merge(read(Ok(skeleton)));
        return true;
    };
    let starts = item_starts(text, &items);
    let is_list = skeleton.root.as_ref().is_some_and(|root| {
        root.get("kind")
            .and_then(Node::as_str)
            .is_some_and(|k| k == "List" || k.ends_with("List"))
    });
    if !is_list {
        // Not a list: its items are part of the object, as YAML would read it.
        let documents: Option<Vec<Document>> = items
            .par_iter()
            .zip(starts)
            .map(|(range, at)| Builder::new(text, range.clone(), at).whole().ok())
            .collect();
        let Some(documents) = documents else {
            return false;
        };
        let mut nodes = Vec::with_capacity(documents.len());
        for document in documents {
            skeleton.duplicate_keys.extend(document.duplicate_keys);
            nodes.extend(document.root);
        }
        fill_items(&mut skeleton, nodes);
        merge(read(Ok(skeleton)));
        return true;
    }
    merge(read(Ok(skeleton)));
    let items: Vec<ItemAt> = items.into_iter().zip(starts).collect();
    let mut rest = items.as_slice();
    let groups = std::iter::from_fn(|| {
        let base = rest.first()?.0.start;
        let take = rest
            .iter()
            .take_while(|(r, _)| r.start - base < GROUP_BYTES)
            .count()
            .max(1);
        let (group, next) = rest.split_at(take);
        rest = next;
        Some(group)
    });
    let read_group = |group: &[ItemAt]| {
        Some(
            group
                .par_iter()
                .map(|(range, at)| read(Builder::new(text, range.clone(), *at).whole()))
                .collect(),
        )
    };
    let read = crate::pipeline::read_and_merge(Vec::new(), groups, read_group, merge);
    debug_assert!(read.is_ok(), "a group of items always reads");
    true
}

/// An item's bytes and where it starts (byte, line, column).
type ItemAt = (Range<usize>, (usize, usize, usize));

/// The position (byte, line, column) where each item starts: the text between consecutive
/// starts is counted in parallel, then added up in order.
fn item_starts(text: &str, items: &[Range<usize>]) -> Vec<(usize, usize, usize)> {
    let bytes = text.as_bytes();
    // Per gap before item i: its newlines, and its characters after the last one (or all).
    let gaps: Vec<(usize, usize)> = (0..items.len())
        .into_par_iter()
        .map(|i| {
            let from = if i == 0 { 0 } else { items[i - 1].start };
            let gap = &bytes[from..items[i].start];
            match memchr::memrchr(b'\n', gap) {
                Some(last) => (bytecount_newlines(gap), chars(&gap[last + 1..])),
                None => (0, chars(gap)),
            }
        })
        .collect();
    let (mut line, mut column) = (1, 0);
    items
        .iter()
        .zip(gaps)
        .map(|(range, (newlines, tail))| {
            if newlines > 0 {
                line += newlines;
                column = tail;
            } else {
                column += tail;
            }
            (range.start, line, column)
        })
        .collect()
}

fn bytecount_newlines(bytes: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', bytes).count()
}

/// Puts `nodes` in as the items of the skeleton's `items`.
fn fill_items(skeleton: &mut Document, nodes: Vec<Node>) {
    if let Some(Node {
        value: Value::Mapping(entries),
        ..
    }) = skeleton.root.as_mut()
        && let Some(entry) = entries.iter_mut().find(|e| e.key == "items")
    {
        entry.value.value = Value::Sequence(nodes);
    }
}

/// A position in the text: byte offset, 1-based line, 0-based column in characters.
struct Cursor {
    at: (usize, usize, usize),
}

impl Cursor {
    /// Moves to byte `to` (never back: nodes come in text order).
    fn advance(&mut self, text: &str, to: usize) {
        let (from, mut line, mut column) = self.at;
        let to = to.max(from).min(text.len());
        let between = &text.as_bytes()[from..to];
        // The skeleton's cursor crosses all of a list's items at once (100 MB of one-line
        // `kubectl get -o json` output): a byte-at-a-time search back was a tenth of a second.
        match memchr::memrchr(b'\n', between) {
            Some(last) => {
                line += bytecount_newlines(between);
                column = chars(&between[last + 1..]);
            }
            None => column += chars(between),
        }
        self.at = (to, line, column);
    }
}

/// Builds the tree of one JSON value: the whole text, or one item of a list.
struct Builder<'t> {
    text: &'t str,
    jiter: Jiter<'t>,
    /// Where the value's text starts in `text`: jiter counts from there.
    base: usize,
    cursor: Cursor,
    duplicate_keys: Vec<(String, Span)>,
}

impl<'t> Builder<'t> {
    /// A builder of the value at `range`, whose first byte is at line and column `at`.
    fn new(text: &'t str, range: Range<usize>, at: (usize, usize, usize)) -> Self {
        Self {
            text,
            jiter: Jiter::new(&text.as_bytes()[range.clone()]),
            base: range.start,
            cursor: Cursor { at },
            duplicate_keys: Vec::new(),
        }
    }

    fn index(&self) -> usize {
        self.base + self.jiter.current_index()
    }

    /// The value as one document.
    fn whole(mut self) -> Result<Document, SyntaxError> {
        let root = self.jiter.peek().ok().and_then(|peek| self.value(peek));
        match root {
            Some(root) => Ok(self.document(root)),
            None => Err(self.unreadable()),
        }
    }

    /// The whole value, checked to its end, but for a top-level `items` array whose items
    /// are only delimited (their nodes are left out). `None` when the text is not one JSON
    /// value.
    fn skeleton(&mut self) -> Option<(Document, Option<Vec<Range<usize>>>)> {
        let peek = self.jiter.peek().ok()?;
        let (root, items) = if peek == Peek::Object {
            self.object(true)?
        } else {
            (self.value(peek)?, None)
        };
        self.jiter.finish().ok()?;
        Some((self.document(root), items))
    }

    /// Checked as JSON beforehand, so not expected; said rather than hidden.
    fn unreadable(&mut self) -> SyntaxError {
        let at = self.index();
        SyntaxError {
            span: self.span_at(at, at),
            message: "JSON could not be read after it was checked".to_string(),
        }
    }

    /// The object at the parser's position. With `delimit_items`, an `items` array's items
    /// are only delimited (returned as ranges) and the array is left empty.
    fn object(&mut self, delimit_items: bool) -> Option<(Node, Option<Vec<Range<usize>>>)> {
        let start = self.index();
        let span = self.span_at(start, start + 1);
        let mut entries: Vec<Entry> = Vec::new();
        let mut items = None;
        let mut key = self.next_key(true)?;
        while let Some((key_text, key_span)) = key {
            let peek = self.jiter.peek().ok()?;
            let value =
                if delimit_items && items.is_none() && key_text == "items" && peek == Peek::Array {
                    let at = self.index();
                    let span = self.span_at(at, at + 1);
                    let mut ranges = Vec::new();
                    let mut next = self.jiter.known_array().ok()?;
                    while let Some(peek) = next {
                        let start = self.index();
                        self.jiter.known_skip(peek).ok()?;
                        ranges.push(start..self.index());
                        next = self.jiter.array_step().ok()?;
                    }
                    items = Some(ranges);
                    Node {
                        value: Value::Sequence(Vec::new()),
                        span,
                    }
                } else {
                    self.value(peek)?
                };
            if entries.iter().any(|e| e.key == key_text) {
                self.duplicate_keys.push((key_text.to_string(), key_span));
            }
            entries.push(Entry {
                key: key_text,
                key_span,
                value,
            });
            key = self.next_key(false)?;
        }
        let node = Node {
            value: Value::Mapping(entries),
            span,
        };
        Some((node, items))
    }

    fn document(&mut self, root: Node) -> Document {
        Document {
            root: Some(root),
            surprises: Vec::new(),
            duplicate_keys: std::mem::take(&mut self.duplicate_keys),
        }
    }

    /// The value at the parser's position, whose first byte is `peek`.
    fn value(&mut self, peek: Peek) -> Option<Node> {
        let start = self.index();
        let value = match peek {
            Peek::Null => {
                self.jiter.known_null().ok()?;
                Value::Null
            }
            Peek::True | Peek::False => Value::Bool(self.jiter.known_bool(peek).ok()?),
            Peek::String => Value::String(self.jiter.known_str().ok()?.into()),
            Peek::Array => {
                let span = self.span_at(start, start + 1);
                let mut items = Vec::new();
                let mut next = self.jiter.known_array().ok()?;
                while let Some(peek) = next {
                    items.push(self.value(peek)?);
                    next = self.jiter.array_step().ok()?;
                }
                return Some(Node {
                    value: Value::Sequence(items),
                    span,
                });
            }
            Peek::Object => return self.object(false).map(|(node, _)| node),
            _ if peek.is_num() => {
                let raw = self.jiter.known_number_bytes(peek).ok()?;
                let number = std::str::from_utf8(raw).ok()?;
                // As granit's plain scalar: an integer beyond i64 stays text.
                resolve_number(number).unwrap_or_else(|| Value::String(number.into()))
            }
            _ => return None,
        };
        let end = self.index();
        Some(Node {
            value,
            span: self.span_at(start, end),
        })
    }

    /// The object's first (`first`) or next key, with its span (quotes included); `None`
    /// inside when the object ends. jiter hands the bytes between the quotes; their escapes,
    /// if any, are undone by serde_json.
    fn next_key(&mut self, first: bool) -> Option<Option<(CompactString, Span)>> {
        let base = self.text.as_ptr() as usize;
        let raw = if first {
            self.jiter.next_object_bytes().ok()?
        } else {
            self.jiter.next_key_bytes().ok()?
        };
        let Some(raw) = raw else {
            return Some(None);
        };
        let start = (raw.as_ptr() as usize)
            .saturating_sub(base)
            .saturating_sub(1);
        let end = start + raw.len() + 2;
        let escaped = raw.contains(&b'\\');
        let quoted = self.text.get(start..end)?;
        let key = if escaped {
            serde_json::from_str::<String>(quoted)
                .unwrap_or_default()
                .into()
        } else {
            quoted[1..quoted.len() - 1].into()
        };
        Some(Some((key, self.span_at(start, end))))
    }

    /// The span of bytes `start..end` of `text`; `start` never goes back (text order).
    fn span_at(&mut self, start: usize, end: usize) -> Span {
        self.cursor.advance(self.text, start);
        let (start, line, column) = self.cursor.at;
        Span {
            line,
            column: column + 1,
            start,
            end: end.clamp(start, self.text.len()),
        }
    }
}

/// Characters in UTF-8 bytes: the bytes that do not continue a character.
fn chars(bytes: &[u8]) -> usize {
    if bytes.is_ascii() {
        return bytes.len();
    }
    bytes.iter().filter(|b| (**b & 0xC0) != 0x80).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml_tree::parse_documents;

    /// What the JSON path hands over, put back together: a list's items into its skeleton.
    fn through_json(text: &str) -> Option<Document> {
        let mut handed = Vec::new();
        if !for_each_document(text, &|d| d, &mut |d| handed.push(d)) {
            return None;
        }
        let mut docs: Vec<Document> = handed.into_iter().map(|d| d.expect("JSON")).collect();
        // A list comes as its skeleton, then its items.
        let mut whole = docs.remove(0);
        let mut items: Vec<Node> = Vec::new();
        for item in docs {
            whole.duplicate_keys.extend(item.duplicate_keys);
            items.extend(item.root);
        }
        if let Some(Node {
            value: Value::Mapping(entries),
            ..
        }) = whole.root.as_mut()
            && let Some(entry) = entries.iter_mut().find(|e| e.key == "items")
            && let Value::Sequence(slot) = &mut entry.value.value
            && slot.is_empty()
        {
            *slot = items;
        }
        whole.duplicate_keys.sort_by_key(|(_, span)| span.start);
        Some(whole)
    }

    fn through_yaml(text: &str) -> Document {
        let mut docs = parse_documents(text);
        assert_eq!(docs.len(), 1);
        docs.remove(0).expect("YAML reads JSON")
    }

    #[test]
    fn json_gives_the_tree_and_spans_the_yaml_parser_gives() {
        let pods: Vec<String> = (0..3)
            .map(|i| {
                format!(
                    r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "p{i}", "labels": {{"app": "wéb", "tier": "a\"b\\c\u00e9"}}}},
  "spec": {{"containers": [{{"name": "c", "ports": [{{"containerPort": 80, "protocol": "TCP"}}]}}]}},
  "status": {{"podIP": "10.0.0.{i}", "ratio": -2.5e3, "big": 123456789012345678901, "ok": true, "none": null, "empty": [], "e": {{}}}}}}"#
                )
            })
            .collect();
        let list = format!(
            "{{\n  \"apiVersion\": \"v1\",\n  \"items\": [\n{}\n  ],\n  \"kind\": \"List\",\n  \"metadata\": {{\"resourceVersion\": \"\"}}\n}}\n",
            pods.join(",\n")
        );
        let cases = [
            list.clone(),
            list.replace('\n', ""),
            pods[0].clone(),
            r#"{"kind": "Pod", "kind": "Pod", "a": {"x": 1, "x": 2}}"#.to_string(),
            r#"{"kind": "PodList", "items": [{"a": 1, "a": 2}], "b": 0}"#.to_string(),
            // Not a list: its items stay in the object.
            "{\"kind\": \"Thing\",\n \"items\": [{\"a\": 1}, {\"b\": [2, {\"c\": 1, \"c\": 2}]}]}"
                .to_string(),
            "[1, 2, {\"k\": \"v\"}]".to_string(),
        ];
        for text in cases {
            let json = through_json(&text).expect("read as JSON");
            let mut yaml = through_yaml(&text);
            yaml.duplicate_keys.sort_by_key(|(_, span)| span.start);
            assert_eq!(json, yaml, "{text}");
        }
    }

    #[test]
    fn what_is_not_one_json_value_is_left_to_the_yaml_parser() {
        for text in [
            "{a: 1}\n",
            "{\"a\": 1}\n{\"b\": 2}\n",
            "{\"a\": 1,}",
            "apiVersion: v1\n",
            "[1, 2",
        ] {
            assert!(through_json(text).is_none(), "{text}");
        }
    }
}
