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
    let read_group = |group: &[ItemAt]| -> Vec<R> {
        group
            .par_iter()
            .map(|(range, at)| read(Builder::new(text, range.clone(), *at).whole()))
            .collect()
    };
    let Delimited {
        skeleton,
        read_ahead,
        groups,
        ahead,
    } = delimit_reading_ahead(text, &read_group);
    let Some((mut skeleton, has_items)) = skeleton else {
        return false;
    };
    if !has_items {
        merge(read(Ok(skeleton)));
        return true;
    }
    let is_list = skeleton.root.as_ref().is_some_and(|root| {
        root.get("kind")
            .and_then(Node::as_str)
            .is_some_and(|k| k == "List" || k.ends_with("List"))
    });
    if !is_list {
        // Not a list: its items are part of the object, as YAML would read it. The items read
        // ahead as documents are dropped.
        drop(read_ahead);
        if !put_items_back(text, &mut skeleton, &groups) {
            return false;
        }
        merge(read(Ok(skeleton)));
        return true;
    }
    merge(read(Ok(skeleton)));
    let merged = crate::pipeline::read_and_merge(
        read_ahead,
        &groups[ahead..],
        |g| Some(read_group(g)),
        merge,
    );
    debug_assert!(merged.is_ok(), "a group of items always reads");
    true
}

/// What [`delimit_reading_ahead`] gives: the skeleton (`None` when the text is not one JSON
/// value) and whether it has items, all the groups of items in order, and what was read of
/// the first `ahead` of them while the pass went on.
struct Delimited<R> {
    skeleton: Option<(Document, bool)>,
    read_ahead: Vec<R>,
    groups: Vec<Vec<ItemAt>>,
    ahead: usize,
}

/// One pass over the whole text checks it is one JSON value and builds all of it but the
/// items of a top-level `items` array, which are only delimited. That pass is one thread's
/// work (a tenth of a second per 30 MB), so it runs on a thread of its own and hands the items
/// over a group at a time, to be read with `read_group` while it goes on. Whether the text is
/// one JSON value, and a list, is known only at its end, so nothing read here is merged yet.
fn delimit_reading_ahead<R: Send>(
    text: &str,
    read_group: &(impl Fn(&[ItemAt]) -> Vec<R> + Sync),
) -> Delimited<R> {
    if text.len() <= GROUP_BYTES {
        // One group at most: nothing to read beside the pass, and no thread to start per file
        // of a directory of small ones.
        let mut groups = Vec::new();
        let mut starts = ItemStarts::default();
        let skeleton = delimit(text, &mut |group| groups.push(starts.place(text, group)));
        return Delimited {
            skeleton,
            read_ahead: Vec::new(),
            groups,
            ahead: 0,
        };
    }
    std::thread::scope(|scope| {
        let (groups_tx, groups_rx) = std::sync::mpsc::channel::<Vec<Range<usize>>>();
        let delimiter = scope.spawn(move || {
            // The reader may have stopped (a panic): the items are then not needed.
            delimit(text, &mut |group| drop(groups_tx.send(group)))
        });
        let mut starts = ItemStarts::default();
        let mut groups: Vec<Vec<ItemAt>> = Vec::new();
        let mut read_ahead: Vec<R> = Vec::new();
        // Read ahead while the pass goes on; what it hands over after it ends is read beside
        // the merge. `recv` ends when the pass does (its sender is dropped).
        while !delimiter.is_finished() {
            let Ok(group) = groups_rx.recv() else { break };
            let group = starts.place(text, group);
            read_ahead.extend(read_group(&group));
            groups.push(group);
        }
        let skeleton = delimiter
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let ahead = groups.len();
        groups.extend(groups_rx.into_iter().map(|group| starts.place(text, group)));
        Delimited {
            skeleton,
            read_ahead,
            groups,
            ahead,
        }
    })
}

/// Builds the items of `groups` as nodes and puts them back into `skeleton`, for an object
/// that is not a list; false if any of them does not build.
fn put_items_back(text: &str, skeleton: &mut Document, groups: &[Vec<ItemAt>]) -> bool {
    let documents: Option<Vec<Document>> = groups
        .par_iter()
        .flatten()
        .map(|(range, at)| Builder::new(text, range.clone(), *at).whole().ok())
        .collect();
    let Some(documents) = documents else {
        return false;
    };
    let mut nodes = Vec::with_capacity(documents.len());
    for document in documents {
        skeleton.duplicate_keys.extend(document.duplicate_keys);
        nodes.extend(document.root);
    }
    fill_items(skeleton, nodes);
    true
}

/// The pass over the whole `text` that checks it is one JSON value and builds all of it but a
/// top-level `items` array's items, which it hands to `group`, in order, a group of about
/// [`GROUP_BYTES`] at a time. See [`Builder::skeleton`].
fn delimit(text: &str, group: &mut dyn FnMut(Vec<Range<usize>>)) -> Option<(Document, bool)> {
    let mut batch: Vec<Range<usize>> = Vec::new();
    let mut builder = Builder::new(text, 0..text.len(), (0, 1, 0));
    let skeleton = builder.skeleton(&mut |item| {
        if batch
            .first()
            .is_some_and(|first| item.start - first.start >= GROUP_BYTES)
        {
            group(std::mem::take(&mut batch));
        }
        batch.push(item);
    });
    if !batch.is_empty() {
        group(batch);
    }
    skeleton
}

/// An item's bytes and where it starts (byte, line, column).
type ItemAt = (Range<usize>, (usize, usize, usize));

/// Places items, a group at a time in text order, at the byte, line and column where each
/// starts: the text between consecutive starts is counted in parallel, then added up in order.
#[derive(Default)]
struct ItemStarts {
    /// The last item's start (byte, line, column): the next gap is counted from there.
    last: Option<(usize, usize, usize)>,
}

impl ItemStarts {
    fn place(&mut self, text: &str, items: Vec<Range<usize>>) -> Vec<ItemAt> {
        let bytes = text.as_bytes();
        let (from, mut line, mut column) = self.last.unwrap_or((0, 1, 0));
        // Per gap before item i: its newlines, and its characters after the last one (or all).
        let gaps: Vec<(usize, usize)> = (0..items.len())
            .into_par_iter()
            .map(|i| {
                let from = if i == 0 { from } else { items[i - 1].start };
                let gap = &bytes[from..items[i].start];
                match memchr::memrchr(b'\n', gap) {
                    Some(last) => (bytecount_newlines(gap), chars(&gap[last + 1..])),
                    None => (0, chars(gap)),
                }
            })
            .collect();
        let placed: Vec<ItemAt> = items
            .into_iter()
            .zip(gaps)
            .map(|(range, (newlines, tail))| {
                if newlines > 0 {
                    line += newlines;
                    column = tail;
                } else {
                    column += tail;
                }
                let at = (range.start, line, column);
                (range, at)
            })
            .collect();
        if let Some((_, at)) = placed.last() {
            self.last = Some(*at);
        }
        placed
    }
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

/// Bytes up to which [`Cursor::advance`] looks at each byte itself.
const SHORT_STEP: usize = 64;

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
        // Most steps cross a key, a short scalar or some punctuation: one pass over those few
        // bytes costs less than setting up the vector searches (their set-up was a twentieth
        // of loading one-line JSON). The skeleton's cursor crosses all of a list's items at
        // once (100 MB of one-line `kubectl get -o json` output): there a byte-at-a-time search
        // back was a tenth of a second.
        let (newlines, last_newline) = if between.len() <= SHORT_STEP {
            between
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .fold((0, None), |(n, _), (i, _)| (n + 1, Some(i)))
        } else {
            (bytecount_newlines(between), memchr::memrchr(b'\n', between))
        };
        line += newlines;
        column = match last_newline {
            Some(last) => chars(&between[last + 1..]),
            None => column + chars(between),
        };
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
    /// are only delimited, handed to `item` in order (their nodes are left out). `None` when
    /// the text is not one JSON value; with it, whether there was such an array.
    fn skeleton(&mut self, item: &mut dyn FnMut(Range<usize>)) -> Option<(Document, bool)> {
        let peek = self.jiter.peek().ok()?;
        let (root, has_items) = if peek == Peek::Object {
            self.object(Some(item))?
        } else {
            (self.value(peek)?, false)
        };
        self.jiter.finish().ok()?;
        Some((self.document(root), has_items))
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
    /// are only delimited (handed over as ranges) and the array is left empty; with it,
    /// whether there was such an array.
    fn object(
        &mut self,
        mut delimit_items: Option<&mut dyn FnMut(Range<usize>)>,
    ) -> Option<(Node, bool)> {
        let start = self.index();
        let span = self.span_at(start, start + 1);
        let mut entries: Vec<Entry> = Vec::new();
        let mut has_items = false;
        let mut key = self.next_key(true)?;
        while let Some((key_text, key_span)) = key {
            let peek = self.jiter.peek().ok()?;
            let value = match delimit_items.as_mut() {
                Some(item) if !has_items && key_text == "items" && peek == Peek::Array => {
                    let at = self.index();
                    let span = self.span_at(at, at + 1);
                    let mut next = self.jiter.known_array().ok()?;
                    while let Some(peek) = next {
                        let start = self.index();
                        self.jiter.known_skip(peek).ok()?;
                        item(start..self.index());
                        next = self.jiter.array_step().ok()?;
                    }
                    has_items = true;
                    Node {
                        value: Value::Sequence(Vec::new()),
                        span,
                    }
                }
                _ => self.value(peek)?,
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
        Some((node, has_items))
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
            Peek::Object => return self.object(None).map(|(node, _)| node),
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

    #[test]
    fn the_cursor_agrees_with_counting_from_the_start_for_short_and_long_steps() {
        let mut text = String::new();
        let pieces = [
            "{\"a\": 1,",
            "\n",
            "  \"caf\u{e9}\": \"\u{1f600}\"",
            "\r\n",
            "x",
        ];
        let mut seed = 12345u64;
        for _ in 0..4000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            text.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
        }
        let boundaries: Vec<usize> = (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .collect();
        let mut cursor = Cursor { at: (0, 1, 0) };
        let mut i = 0;
        while i < boundaries.len() {
            let to = boundaries[i];
            cursor.advance(&text, to);
            let before = &text[..to];
            let line = 1 + before.matches('\n').count();
            let column = before.rsplit('\n').next().unwrap_or("").chars().count();
            assert_eq!(cursor.at, (to, line, column), "at byte {to}");
            // Steps of every length: short ones and some longer than SHORT_STEP.
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            i += 1 + (seed >> 33) as usize % (if seed.is_multiple_of(7) { 400 } else { 20 });
        }
    }

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

    /// `metadata.name` of a document's root, and the root's line and column.
    fn name_and_place(document: Result<Document, SyntaxError>) -> (String, usize, usize) {
        let root = document.expect("JSON").root.expect("a root");
        let name = root
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Node::as_str)
            .unwrap_or("-")
            .to_string();
        (name, root.span.line, root.span.column)
    }

    #[test]
    fn a_long_list_is_read_while_it_is_delimited_and_handed_over_in_order() {
        let count = 3 * GROUP_BYTES / 45;
        let items: Vec<String> = (0..count)
            .map(|i| format!(r#"{{"kind":"Pod","metadata":{{"name":"p{i}"}}}}"#))
            .collect();
        let list = format!(
            "{{\"apiVersion\":\"v1\",\"items\":[\n{}],\"kind\":\"List\"}}",
            items.join(",")
        );
        let mut handed = Vec::new();
        assert!(for_each_document(&list, &name_and_place, &mut |d| handed.push(d)));
        assert_eq!(handed.len(), count + 1, "the list, then each item");
        assert_eq!(handed[0].0, "-");
        let mut column = 1;
        for (i, (name, line, col)) in handed[1..].iter().enumerate() {
            assert_eq!(name, &format!("p{i}"));
            assert_eq!((*line, *col), (2, column), "item {i}");
            column += items[i].len() + 1;
        }

        // Not one JSON value after all: nothing is handed over, the YAML parser will say why.
        let broken = format!("{list} trailing");
        assert!(!for_each_document(&broken, &name_and_place, &mut |_| {
            panic!("nothing is handed over")
        }));

        // Not a list: one document, whose items stay in it.
        let thing = list.replace(r#""kind":"List""#, r#""kind":"Thing""#);
        let mut handed = Vec::new();
        assert!(for_each_document(&thing, &|d| d, &mut |d| handed.push(d)));
        assert_eq!(handed.len(), 1);
        let root = handed.remove(0).expect("JSON").root.expect("a root");
        let Some(Value::Sequence(nodes)) = root.get("items").map(|n| &n.value) else {
            panic!("items kept as a sequence");
        };
        assert_eq!(nodes.len(), count);
        assert_eq!((nodes[count - 1].span.line, nodes[0].span.column), (2, 1));
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
