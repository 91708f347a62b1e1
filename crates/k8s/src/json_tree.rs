//! JSON input (`kubectl get -o json`, CI tools writing JSON) read with jiter into the same span
//! tree YAML gives, with the same spans granit gives the same text: JSON is YAML, and was read
//! as YAML, at a tenth of a JSON parser's pace.
//!
//! Only text that jiter accepts as one JSON value takes this path; anything else (several
//! documents, comments, YAML flow style) is left to the YAML parser, which reads it as before.

use crate::yaml_tree::{
    Document, Entry, GROUP_BYTES, Node, Span, SyntaxError, Value, resolve_number,
};
use jiter::{Jiter, Peek};
use rayon::prelude::*;

/// Hands the documents of `text` to `read` and the results to `merge`, as
/// [`crate::yaml_tree::for_each_document`] does: a list's skeleton and then each of its items,
/// read in parallel a group at a time. False, with nothing handed over, when `text` is not one
/// JSON value.
pub fn for_each_document<R: Send>(
    text: &str,
    read: &(impl Fn(Result<Document, SyntaxError>) -> R + Sync),
    merge: &mut impl FnMut(R),
) -> bool {
    let first = text.bytes().find(|b| !b.is_ascii_whitespace());
    if !matches!(first, Some(b'{' | b'[')) {
        return false;
    }
    let Some(shape) = Shape::of(text) else {
        return false;
    };
    let mut builder = Builder::new(text);
    let handed = if shape.is_list {
        builder.stream_list(read, merge)
    } else {
        builder.whole(read, merge)
    };
    if handed.is_none() {
        // Checked as JSON beforehand, so this is not expected; said rather than hidden.
        let span = builder.span_at(builder.jiter.current_index(), builder.jiter.current_index());
        merge(read(Err(SyntaxError {
            span,
            message: "JSON could not be read after it was checked".to_string(),
        })));
    }
    true
}

/// What a first pass (no tree) learns: whether `text` is one JSON value, and whether it is a
/// list whose items can be handed over one by one (`kubectl` writes `kind` after `items`).
struct Shape {
    is_list: bool,
}

impl Shape {
    fn of(text: &str) -> Option<Self> {
        let mut jiter = Jiter::new(text.as_bytes());
        let mut kind = None;
        let mut items_is_array = false;
        if jiter.peek().ok()? == Peek::Object {
            let mut key = jiter.next_object_bytes().ok()?.map(<[u8]>::to_vec);
            while let Some(k) = key {
                let peek = jiter.peek().ok()?;
                match k.as_slice() {
                    b"kind" if peek == Peek::String => {
                        kind = Some(jiter.known_str().ok()?.to_string());
                    }
                    b"items" => {
                        items_is_array = peek == Peek::Array;
                        jiter.known_skip(peek).ok()?;
                    }
                    _ => jiter.known_skip(peek).ok()?,
                }
                key = jiter.next_key_bytes().ok()?.map(<[u8]>::to_vec);
            }
        } else {
            jiter.next_skip().ok()?;
        }
        jiter.finish().ok()?;
        let list_kind = kind.is_some_and(|k| k == "List" || k.ends_with("List"));
        Some(Self {
            is_list: list_kind && items_is_array,
        })
    }
}

struct Builder<'t> {
    text: &'t str,
    jiter: Jiter<'t>,
    /// Where spans were last computed: byte offset, 1-based line, 0-based column in chars.
    /// Nodes come in text order, so lines and columns are counted once over the whole text.
    at: (usize, usize, usize),
    duplicate_keys: Vec<(String, Span)>,
}

impl<'t> Builder<'t> {
    fn new(text: &'t str) -> Self {
        Self {
            text,
            jiter: Jiter::new(text.as_bytes()),
            at: (0, 1, 0),
            duplicate_keys: Vec::new(),
        }
    }

    /// The whole text as one document.
    fn whole<R>(
        &mut self,
        read: &impl Fn(Result<Document, SyntaxError>) -> R,
        merge: &mut impl FnMut(R),
    ) -> Option<()> {
        let peek = self.jiter.peek().ok()?;
        let root = self.value(peek)?;
        merge(read(Ok(self.document(root))));
        Some(())
    }

    /// A list: each item a document of its own, read in parallel a group at a time, then the
    /// list without its items.
    fn stream_list<R: Send>(
        &mut self,
        read: &(impl Fn(Result<Document, SyntaxError>) -> R + Sync),
        merge: &mut impl FnMut(R),
    ) -> Option<()> {
        let start = self.jiter.current_index();
        let root_span = self.span_at(start, start + 1);
        let mut entries: Vec<Entry> = Vec::new();
        let mut key = self.next_key(true)?;
        while let Some((key_text, key_span)) = key {
            let peek = self.jiter.peek().ok()?;
            let value = if key_text == "items" && peek == Peek::Array {
                let at = self.jiter.current_index();
                let span = self.span_at(at, at + 1);
                self.stream_items(read, merge)?;
                Node {
                    value: Value::Sequence(Vec::new()),
                    span,
                }
            } else {
                self.value(peek)?
            };
            if entries.iter().any(|e| e.key == key_text) {
                self.duplicate_keys.push((key_text.clone(), key_span));
            }
            entries.push(Entry {
                key: key_text,
                key_span,
                value,
            });
            key = self.next_key(false)?;
        }
        let root = Node {
            value: Value::Mapping(entries),
            span: root_span,
        };
        merge(read(Ok(self.document(root))));
        Some(())
    }

    fn stream_items<R: Send>(
        &mut self,
        read: &(impl Fn(Result<Document, SyntaxError>) -> R + Sync),
        merge: &mut impl FnMut(R),
    ) -> Option<()> {
        let hand_over = |group: Vec<Document>, merge: &mut dyn FnMut(R)| {
            let outcomes: Vec<R> = group.into_par_iter().map(|d| read(Ok(d))).collect();
            outcomes.into_iter().for_each(merge);
        };
        let mut group = Vec::new();
        let mut group_start = self.jiter.current_index();
        let mut next = self.jiter.known_array().ok()?;
        while let Some(peek) = next {
            let item = self.value(peek)?;
            group.push(self.document(item));
            if self.jiter.current_index() - group_start >= GROUP_BYTES {
                hand_over(std::mem::take(&mut group), merge);
                group_start = self.jiter.current_index();
            }
            next = self.jiter.array_step().ok()?;
        }
        hand_over(group, merge);
        Some(())
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
        let start = self.jiter.current_index();
        let value = match peek {
            Peek::Null => {
                self.jiter.known_null().ok()?;
                Value::Null
            }
            Peek::True | Peek::False => Value::Bool(self.jiter.known_bool(peek).ok()?),
            Peek::String => Value::String(self.jiter.known_str().ok()?.to_string()),
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
            Peek::Object => {
                let span = self.span_at(start, start + 1);
                let mut entries: Vec<Entry> = Vec::new();
                let mut key = self.next_key(true)?;
                while let Some((key_text, key_span)) = key {
                    let peek = self.jiter.peek().ok()?;
                    let value = self.value(peek)?;
                    if entries.iter().any(|e| e.key == key_text) {
                        self.duplicate_keys.push((key_text.clone(), key_span));
                    }
                    entries.push(Entry {
                        key: key_text,
                        key_span,
                        value,
                    });
                    key = self.next_key(false)?;
                }
                return Some(Node {
                    value: Value::Mapping(entries),
                    span,
                });
            }
            _ if peek.is_num() => {
                let raw = self.jiter.known_number_bytes(peek).ok()?;
                let number = std::str::from_utf8(raw).ok()?;
                // As granit's plain scalar: an integer beyond i64 stays text.
                resolve_number(number).unwrap_or_else(|| Value::String(number.to_string()))
            }
            _ => return None,
        };
        let end = self.jiter.current_index();
        Some(Node {
            value,
            span: self.span_at(start, end),
        })
    }

    /// The object's first (`first`) or next key, with its span (quotes included); `None`
    /// inside when the object ends. jiter hands the bytes between the quotes; their escapes,
    /// if any, are undone by serde_json.
    fn next_key(&mut self, first: bool) -> Option<Option<(String, Span)>> {
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
            serde_json::from_str::<String>(quoted).unwrap_or_default()
        } else {
            quoted[1..quoted.len() - 1].to_string()
        };
        Some(Some((key, self.span_at(start, end))))
    }

    /// The span of bytes `start..end`; `start` never goes back (text order).
    fn span_at(&mut self, start: usize, end: usize) -> Span {
        let (from, mut line, mut column) = self.at;
        let start = start.max(from).min(self.text.len());
        let between = &self.text.as_bytes()[from..start];
        match between.iter().rposition(|b| *b == b'\n') {
            Some(last) => {
                line += between.iter().filter(|b| **b == b'\n').count();
                column = chars(&between[last + 1..]);
            }
            None => column += chars(between),
        }
        self.at = (start, line, column);
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
        let mut whole = docs.pop().expect("a document");
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
