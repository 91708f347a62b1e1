//! The node events of one YAML text, from one of two parsers: saphyr-parser where it is known to
//! give exactly granit-parser's events and spans, granit-parser for everything else.
//!
//! Why two: granit-parser is the strict one (it rejects what the YAML spec rejects, and its
//! messages and positions are what users see), but its events are about 71% of a YAML load's
//! instructions and saphyr-parser reads the same text at about 1.4 times its pace
//! (BENCHMARKS.md, fourteenth and fifteenth sessions). saphyr-parser is therefore only asked
//! for text where it has been measured to agree, and its reading is thrown away, never
//! reported, at the first thing outside that:
//!
//! - the text is printable ASCII and line breaks, ends with one and has no `%` directive (its
//!   positions count characters, which are then bytes; it accepts control characters, byte
//!   order marks, tabs, a CR alone and `%YAML 2.0` where granit rightly rejects them; see
//!   [`saphyr_may_read`]);
//! - no tag, anchor or alias (it accepts aliases across documents, granit does not; the
//!   Builder's alias pricing stays on one path);
//! - none of the shapes where it accepts what YAML forbids: a quoted scalar over several lines
//!   (it does not check their indentation), a plain scalar that starts with an indicator
//!   (`[>]`), a block scalar in a flow collection, a flow key not on one line with its `:`
//!   (`{k\n: v}`) or longer than 1024 characters; any scalar or collection of a flow
//!   collection that ends its line or comes near that length counts;
//! - no syntax error (granit rejects more, and says why in its own words).
//!
//! Each of those rules was found by a differential (the tests below `yaml_tree` and the
//! `yaml_readers` fuzz target) and is cheap to keep: a document that meets one is read by
//! granit, as before. Where the two parsers place a span differently, the saphyr reading is
//! moved to granit's convention (see [`saphyr`]). `yaml_tree`'s tests hold the two readings
//! equal, tree for tree and span for span, on the parsers' own test suites, on every
//! real-world document and on generated manifests and their mutants.

use granit_parser::ScalarStyle;
use std::borrow::Cow;

/// What the tree builder needs of an event.
#[derive(Debug)]
pub(crate) enum NodeEvent<'a> {
    DocumentStart,
    DocumentEnd,
    Alias(usize),
    UnresolvedAlias(String),
    Scalar {
        text: Cow<'a, str>,
        plain: bool,
        anchor: usize,
        tagged: bool,
    },
    SequenceStart {
        anchor: usize,
    },
    MappingStart {
        anchor: usize,
    },
    SequenceEnd,
    MappingEnd,
    /// Stream start and end, and anything a parser adds that carries no node.
    Other,
}

/// A position as the parsers give it: 1-based line, 0-based column, byte offsets into the text.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawSpan {
    pub line: usize,
    pub col: usize,
    pub start: Option<usize>,
    pub end: Option<usize>,
}

/// Why a reading stopped.
#[derive(Debug)]
pub(crate) enum Stop {
    /// granit-parser's syntax error, to be reported.
    Syntax { at: RawSpan, message: String },
    /// saphyr-parser met something outside what it is trusted with: read again with granit.
    Unsure,
}

pub(crate) type Item<'a> = Result<(NodeEvent<'a>, RawSpan), Stop>;

/// Whether saphyr-parser may be asked for `text` at all: printable ASCII and line breaks (LF,
/// CRLF), ending with a line break, without directives. Not tabs: saphyr-parser accepts them
/// where YAML and granit refuse them (`\t:\t:`); nor a CR alone, which it takes for a line
/// break; nor a last line without its line break, where it keeps one line break too many at
/// the end of a block scalar (`a: |\n x\n\n ` is `"x\n\n"` to it, `"x\n"` to YAML and
/// granit); nor `%YAML 2.0`, which granit refuses.
pub(crate) fn saphyr_may_read(text: &str) -> bool {
    let bytes = text.as_bytes();
    let allowed = |b: u8| (b' '..=b'~').contains(&b) || b == b'\n' || b == b'\r';
    // In blocks without an early exit, which the compiler turns into vector code: this runs
    // over every byte of the input before it is parsed.
    (bytes.is_empty() || bytes.ends_with(b"\n"))
        && bytes
            .chunks(64)
            .all(|chunk| chunk.iter().fold(true, |ok, &b| ok & allowed(b)))
        && memchr::memchr_iter(b'\r', bytes).all(|i| bytes.get(i + 1) == Some(&b'\n'))
        && !bytes.starts_with(b"%")
        && memchr::memmem::find(bytes, b"\n%").is_none()
}

/// granit-parser's events. Comments are neither kept nor emitted: nothing reads them, and
/// capturing them was a tenth of granit's instructions (BENCHMARKS.md, seventeenth session).
/// They are still scanned, so what is valid YAML does not change.
pub(crate) fn granit(text: &str) -> impl Iterator<Item = Item<'_>> {
    use granit_parser::Event as E;
    let mut options = granit_parser::Options::default();
    options.set_emit_comments(false);
    granit_parser::Parser::new_from_str_with_options(text, options).map(|event| {
        let (event, span) = event.map_err(|e| {
            let m = e.marker();
            Stop::Syntax {
                at: RawSpan {
                    line: m.line(),
                    col: m.col(),
                    start: m.byte_offset(),
                    end: m.byte_offset(),
                },
                message: e.info(),
            }
        })?;
        let event = match event {
            E::DocumentStart(..) => NodeEvent::DocumentStart,
            E::DocumentEnd => NodeEvent::DocumentEnd,
            E::Alias(id) => NodeEvent::Alias(id),
            E::UnresolvedAlias(name) => NodeEvent::UnresolvedAlias(name.to_string()),
            E::Scalar(text, style, anchor, tag) => NodeEvent::Scalar {
                text,
                plain: style == ScalarStyle::Plain,
                anchor,
                tagged: tag.is_some(),
            },
            E::SequenceStart(_, anchor, _) => NodeEvent::SequenceStart { anchor },
            E::MappingStart(_, anchor, _) => NodeEvent::MappingStart { anchor },
            E::SequenceEnd => NodeEvent::SequenceEnd,
            E::MappingEnd => NodeEvent::MappingEnd,
            #[allow(
                unreachable_patterns,
                reason = "granit may grow presentation-only events"
            )]
            _ => NodeEvent::Other,
        };
        let span = RawSpan {
            line: span.start.line(),
            col: span.start.col(),
            start: span.start.byte_offset(),
            end: span.end.byte_offset(),
        };
        Ok((event, span))
    })
}

/// saphyr-parser's events, for text [`saphyr_may_read`], with spans moved to granit's
/// conventions where they differ:
///
/// - an empty plain scalar (an implicit null) is empty. Both parsers place it at the indicator
///   that follows it (`:` of `key:`, `}` of `{key}`, `,` or `]`) when that is on the line of
///   what came before; anywhere else (an empty document after `---`, a `? key` at the end of
///   the text, a null before a comment) they may not agree, and the reading is left to granit;
/// - a quoted scalar ends after its closing quote (saphyr-parser runs on over blanks and a
///   comment that follow);
/// - a flow collection starts as its first character alone (saphyr-parser runs on over blanks
///   and comments after it); block collections start empty in both.
pub(crate) fn saphyr(text: &str) -> impl Iterator<Item = Item<'_>> {
    let mut reading = SaphyrReading {
        bytes: text.as_bytes(),
        previous_end_line: 1,
        open_is_flow: Vec::new(),
        open_flows: 0,
    };
    saphyr_parser::Parser::new_from_str(text).map(move |event| {
        let (event, span) = event.map_err(|_| Stop::Unsure)?;
        reading.event(event, span)
    })
}

/// What [`saphyr`] keeps between events.
struct SaphyrReading<'a> {
    bytes: &'a [u8],
    /// The line where the previous event's span ended.
    previous_end_line: usize,
    /// Whether each open collection is a flow one (and where it starts), and how many of
    /// them are.
    open_is_flow: Vec<(bool, usize)>,
    open_flows: usize,
}

impl<'a> SaphyrReading<'a> {
    fn event(&mut self, event: saphyr_parser::Event<'a>, span: saphyr_parser::Span) -> Item<'a> {
        use saphyr_parser::{Event as E, ScalarStyle as S};
        let bytes = self.bytes;
        let (start, mut end) = (span.start.index(), span.end.index());
        let (line, col) = (span.start.line(), span.start.col());
        let after_line = std::mem::replace(&mut self.previous_end_line, span.end.line());
        let in_flow = self.open_flows > 0;
        let event = match event {
            E::Scalar(_, _, anchor, tag) if anchor != 0 || tag.is_some() => {
                return Err(Stop::Unsure);
            }
            E::SequenceStart(anchor, tag) | E::MappingStart(anchor, tag)
                if anchor != 0 || tag.is_some() =>
            {
                return Err(Stop::Unsure);
            }
            E::Alias(_) => return Err(Stop::Unsure),
            E::Scalar(text, style, ..) => {
                match style {
                    // Where the two agree: at the indicator that ends the node, on the line
                    // of what came before it (`key:`, `{key}`, `[a, ]`).
                    S::Plain
                        if text.is_empty()
                            && (line != after_line
                                || !matches!(
                                    bytes.get(start),
                                    Some(b':' | b',' | b'}' | b']')
                                )) =>
                    {
                        return Err(Stop::Unsure);
                    }
                    S::Plain if text.is_empty() => end = start,
                    // A plain scalar may not start with an indicator (YAML 1.2,
                    // ns-plain-first); saphyr-parser reads `[>]` and `{a: 1, |}` anyway.
                    S::Plain if text.as_bytes().first().is_some_and(is_indicator) => {
                        return Err(Stop::Unsure);
                    }
                    // A block scalar inside a flow collection is invalid YAML that
                    // saphyr-parser accepts.
                    S::Literal | S::Folded if in_flow => return Err(Stop::Unsure),
                    S::SingleQuoted | S::DoubleQuoted => {
                        end = closing_quote(bytes, start).ok_or(Stop::Unsure)? + 1;
                        // saphyr-parser does not check the indentation of a quoted scalar's
                        // further lines.
                        if bytes[start..end].contains(&b'\n') {
                            return Err(Stop::Unsure);
                        }
                    }
                    _ => {}
                }
                // A key in a flow collection must be on one line with its `:` and at most
                // 1024 characters long; saphyr-parser accepts `{k\n: v}` and longer keys. Any
                // scalar of a flow collection over lines, followed by the end of its line, or
                // near that length, is left to granit.
                if in_flow
                    && !text.is_empty()
                    && (bytes[start..end].contains(&b'\n')
                        || line_ends_at(bytes, end)
                        || end - start >= LONG_KEY)
                {
                    return Err(Stop::Unsure);
                }
                NodeEvent::Scalar {
                    plain: style == S::Plain,
                    text,
                    anchor: 0,
                    tagged: false,
                }
            }
            E::SequenceStart(..) | E::MappingStart(..) => {
                // Block collections start empty; a flow one spans its bracket and more.
                let flow = end > start;
                if flow {
                    end = start + 1;
                }
                self.open_is_flow.push((flow, start));
                self.open_flows += usize::from(flow);
                if matches!(event, E::SequenceStart(..)) {
                    NodeEvent::SequenceStart { anchor: 0 }
                } else {
                    NodeEvent::MappingStart { anchor: 0 }
                }
            }
            E::DocumentStart(_) => NodeEvent::DocumentStart,
            E::DocumentEnd => NodeEvent::DocumentEnd,
            E::SequenceEnd | E::MappingEnd => {
                let (flow, opened) = self.open_is_flow.pop().unwrap_or((false, start));
                self.open_flows -= usize::from(flow);
                // A flow collection as a key, like a scalar above: `{[a]\n: b}`.
                if flow
                    && self.open_flows > 0
                    && (line_ends_at(bytes, start + 1) || start - opened >= LONG_KEY)
                {
                    return Err(Stop::Unsure);
                }
                if matches!(event, E::SequenceEnd) {
                    NodeEvent::SequenceEnd
                } else {
                    NodeEvent::MappingEnd
                }
            }
            E::StreamStart | E::StreamEnd | E::Nothing => NodeEvent::Other,
        };
        Ok((
            event,
            RawSpan {
                line,
                col,
                start: Some(start),
                end: Some(end),
            },
        ))
    }
}

/// Bytes from which a node in a flow collection might be a key too long for YAML (1024
/// characters): granit refuses such a key, saphyr-parser does not.
const LONG_KEY: usize = 1000;

/// YAML's indicator characters that no plain scalar may start with (`-`, `?` and `:` may,
/// before a non-blank).
fn is_indicator(b: &u8) -> bool {
    matches!(
        b,
        b',' | b'['
            | b']'
            | b'{'
            | b'}'
            | b'#'
            | b'&'
            | b'*'
            | b'!'
            | b'|'
            | b'>'
            | b'\''
            | b'"'
            | b'%'
            | b'@'
            | b'`'
    )
}

/// Whether only blanks and perhaps a comment follow `at` on its line.
fn line_ends_at(bytes: &[u8], at: usize) -> bool {
    let rest = bytes.get(at..).unwrap_or_default();
    match rest.iter().find(|&&b| b != b' ') {
        None => true,
        Some(b) => matches!(b, b'\n' | b'\r' | b'#'),
    }
}

/// The closing quote of the quoted scalar opening at `open` (which saphyr-parser has accepted,
/// so it is closed): `''` is an escaped quote in single quotes, `\` escapes in double quotes.
fn closing_quote(bytes: &[u8], open: usize) -> Option<usize> {
    let quote = *bytes.get(open)?;
    let mut i = open + 1;
    while let Some(&b) = bytes.get(i) {
        match (quote, b) {
            (b'"', b'\\') => i += 2,
            (b'"', b'"') => return Some(i),
            (b'\'', b'\'') if bytes.get(i + 1) == Some(&b'\'') => i += 2,
            (b'\'', b'\'') => return Some(i),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saphyr_parser_is_asked_only_for_printable_ascii_ending_with_a_line_break() {
        let long_ok = "key: value\n".repeat(100);
        for text in ["", "a: 1\n", "a: 1\r\nb: 2\r\n", long_ok.as_str()] {
            assert!(saphyr_may_read(text), "{text:?}");
        }
        let long_tab = format!("{long_ok}a:\tb\n");
        for text in [
            "a: 1",
            "a: 1\rb: 2\n",
            "a:\t1\n",
            "a: \u{1}\n",
            "a: \u{7f}\n",
            "a: caf\u{e9}\n",
            "\u{feff}a: 1\n",
            "%YAML 2.0\n---\na: 1\n",
            "a: 1\n%YAML 1.2\n",
            long_tab.as_str(),
        ] {
            assert!(!saphyr_may_read(text), "{text:?}");
        }
    }
}
