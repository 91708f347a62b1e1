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
//! - the text is ASCII without control characters other than tab, LF and CR (its positions
//!   count characters, which are then bytes; it accepts some control characters and byte order
//!   marks granit rightly rejects);
//! - no tag, anchor or alias (it accepts aliases across documents, granit does not; the
//!   Builder's alias pricing stays on one path);
//! - no syntax error (granit rejects more, and says why in its own words).
//!
//! Where the two parsers place a span differently, the saphyr reading is moved to granit's
//! convention (see [`saphyr`]). `yaml_tree`'s tests hold the two readings equal, tree for tree
//! and span for span, on the parsers' own test suites and on every real-world document.

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

/// Whether saphyr-parser may be asked for `text` at all: ASCII, no control characters but tab,
/// LF and CR.
pub(crate) fn saphyr_may_read(text: &str) -> bool {
    text.bytes()
        .all(|b| (b' '..=b'~').contains(&b) || matches!(b, b'\t' | b'\n' | b'\r'))
}

/// granit-parser's events.
pub(crate) fn granit(text: &str) -> impl Iterator<Item = Item<'_>> {
    use granit_parser::Event as E;
    granit_parser::Parser::new_from_str(text).map(|event| {
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
/// - an empty plain scalar (an implicit null) is empty where saphyr-parser starts it; where
///   saphyr-parser starts it on a later line than the event before it ended (an empty
///   document after `---`, a `? key` at the end), granit places it at that end instead, and
///   the reading is left to granit;
/// - a quoted scalar ends after its closing quote (saphyr-parser runs on over blanks and a
///   comment that follow);
/// - a flow collection starts as its first character alone (saphyr-parser runs on over blanks
///   and comments after it); block collections start empty in both.
pub(crate) fn saphyr(text: &str) -> impl Iterator<Item = Item<'_>> {
    use saphyr_parser::{Event as E, ScalarStyle as S};
    let bytes = text.as_bytes();
    let mut previous_end_line = 1;
    saphyr_parser::Parser::new_from_str(text).map(move |event| {
        let (event, span) = event.map_err(|_| Stop::Unsure)?;
        let (start, mut end) = (span.start.index(), span.end.index());
        let (line, col) = (span.start.line(), span.start.col());
        let after_line = std::mem::replace(&mut previous_end_line, span.end.line());
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
                    S::Plain if text.is_empty() && line != after_line => {
                        return Err(Stop::Unsure);
                    }
                    S::Plain if text.is_empty() => end = start,
                    S::SingleQuoted | S::DoubleQuoted => {
                        end = closing_quote(bytes, start).ok_or(Stop::Unsure)? + 1;
                    }
                    _ => {}
                }
                NodeEvent::Scalar {
                    plain: style == S::Plain,
                    text,
                    anchor: 0,
                    tagged: false,
                }
            }
            E::SequenceStart(..) | E::MappingStart(..) => {
                if end > start {
                    end = start + 1;
                }
                if matches!(event, E::SequenceStart(..)) {
                    NodeEvent::SequenceStart { anchor: 0 }
                } else {
                    NodeEvent::MappingStart { anchor: 0 }
                }
            }
            E::DocumentStart(_) => NodeEvent::DocumentStart,
            E::DocumentEnd => NodeEvent::DocumentEnd,
            E::SequenceEnd => NodeEvent::SequenceEnd,
            E::MappingEnd => NodeEvent::MappingEnd,
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
    })
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
