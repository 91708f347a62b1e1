//! granit-parser against saphyr-parser and yaml-rust2 (BENCHMARKS.md, "Fourteenth session"),
//! and libyaml-safer in `speed` (a safe port of libyaml; "Sixteenth session").
//!
//! `speed FILE [--rounds N] [--only NAME]`: events per second of each parser on the same text
//! (one parser alone with `--only`, e.g. under callgrind). granit is timed as Bulkhead runs it,
//! without comment events ("granit -comments"), and with its defaults.
//! `events TEXT`: both parsers' events of TEXT side by side, with their spans.
//! `diff CORPUS.json [YAML...]`: where granit and saphyr-parser disagree, on the corpus that
//! `corpus.py` writes and on YAML files (cut at `---` lines, as Bulkhead reads them): which
//! inputs one accepts and the other rejects, and, for the inputs a hybrid would give to
//! saphyr-parser (ASCII without control characters, anchors or tags), whether the node events
//! and their spans agree.
use clap::{Parser as Cli, Subcommand};
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Cli)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Events per second of each parser on FILE
    Speed {
        file: String,
        /// Rounds of all parsers
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Only this parser (as the output names it, e.g. `saphyr-parser`)
        #[arg(long)]
        only: Option<String>,
    },
    /// Both parsers' events of TEXT side by side, with their spans
    Events { text: String },
    /// Events and spans of granit and saphyr-parser compared (-v prints each difference)
    Diff {
        corpus: String,
        yaml: Vec<String>,
        #[arg(short, long)]
        verbose: bool,
    },
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    match Args::parse().command {
        Command::Speed { file, rounds, only } => {
            speed(&std::fs::read_to_string(file)?, rounds, only.as_deref())
        }
        Command::Events { text } => {
            let (g, s) = (granit(&text), saphyr(&text));
            let g = g.unwrap_or_else(|e| vec![(format!("error: {e}"), 0, 0, 0, 0)]);
            let s = s.unwrap_or_else(|e| vec![(format!("error: {e}"), 0, 0, 0, 0)]);
            for i in 0..g.len().max(s.len()) {
                let show = |e: Option<&Event>| {
                    e.map_or(String::new(), |(n, l, c, a, b)| {
                        format!("{n} {l}:{c} {a}..{b}")
                    })
                };
                println!("{:60} | {}", show(g.get(i)), show(s.get(i)));
            }
        }
        Command::Diff {
            corpus,
            yaml,
            verbose,
        } => {
            let mut inputs: Vec<(String, String)> =
                serde_json::from_str::<Vec<String>>(&std::fs::read_to_string(&corpus)?)?
                    .into_iter()
                    .enumerate()
                    .map(|(i, text)| (format!("{corpus}#{i}"), text))
                    .collect();
            for path in yaml {
                inputs.extend(documents(&path, &std::fs::read_to_string(&path)?));
            }
            diff(&inputs, verbose);
        }
    }
    Ok(())
}

fn speed(text: &str, rounds: usize, only: Option<&str>) {
    let mb = text.len() as f64 / 1e6;
    let rate = |name: &str, count: &dyn Fn() -> usize| {
        let t = Instant::now();
        let events = count();
        let s = t.elapsed().as_secs_f64();
        println!("{name:14} {s:.2} s  {:5.1} MB/s  {events} events", mb / s);
    };
    let rate = |name: &str, count: &dyn Fn() -> usize| {
        if only.is_none_or(|only| only == name) {
            rate(name, count)
        }
    };
    for _ in 0..rounds {
        rate("granit-parser", &|| {
            granit_parser::Parser::new_from_str(text).count()
        });
        rate("granit -comments", &|| {
            let mut options = granit_parser::Options::default();
            options.set_emit_comments(false);
            granit_parser::Parser::new_from_str_with_options(text, options).count()
        });
        rate("saphyr-parser", &|| {
            saphyr_parser::Parser::new_from_str(text).count()
        });
        rate("libyaml-safer", &|| {
            let mut input = text.as_bytes();
            let mut parser = libyaml_safer::Parser::new();
            parser.set_input_string(&mut input);
            let mut events = 0;
            while let Ok(event) = parser.parse() {
                events += 1;
                if matches!(event.data, libyaml_safer::EventData::StreamEnd) {
                    break;
                }
            }
            events
        });
        rate("yaml-rust2", &|| {
            struct Count(usize);
            impl yaml_rust2::parser::EventReceiver for Count {
                fn on_event(&mut self, _: yaml_rust2::Event) {
                    self.0 += 1;
                }
            }
            let mut count = Count(0);
            let loaded = yaml_rust2::parser::Parser::new_from_str(text).load(&mut count, true);
            loaded.map_or(0, |()| count.0)
        });
    }
}

/// The documents of a file, cut before each `---` line.
fn documents(path: &str, text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.split_inclusive('\n') {
        if line.starts_with("---") && !current.trim().is_empty() {
            out.push((
                format!("{path}@{}", out.len()),
                std::mem::take(&mut current),
            ));
        }
        current.push_str(line);
    }
    out.push((format!("{path}@{}", out.len()), current));
    out
}

/// An event as both parsers can name it, with its span: line, column, start and end byte.
type Event = (String, usize, usize, usize, usize);

fn scalar(text: &str, style: impl std::fmt::Debug, anchor: usize, tagged: bool) -> String {
    let style = format!("{style:?}");
    // An empty plain scalar: granit writes it `~`, saphyr-parser as nothing; both mean null.
    let text = if style == "Plain" && text == "~" {
        ""
    } else {
        text
    };
    format!("scalar {text:?} {style} &{anchor} tagged={tagged}")
}

fn granit(text: &str) -> Result<Vec<Event>, String> {
    use granit_parser::Event as E;
    let mut out = Vec::new();
    for event in granit_parser::Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| e.info())?;
        let name = match event {
            E::Scalar(t, style, anchor, tag) => scalar(&t, style, anchor, tag.is_some()),
            E::SequenceStart(_, anchor, tag) => format!("seq &{anchor} tagged={}", tag.is_some()),
            E::MappingStart(_, anchor, tag) => format!("map &{anchor} tagged={}", tag.is_some()),
            E::Alias(id) => format!("alias {id}"),
            E::SequenceEnd => "seq end".into(),
            E::MappingEnd => "map end".into(),
            E::DocumentStart(..) => "document".into(),
            E::DocumentEnd => "document end".into(),
            _ => continue,
        };
        let bytes = |m: granit_parser::Marker| m.byte_offset().unwrap_or(usize::MAX);
        out.push((
            name,
            span.start.line(),
            span.start.col(),
            bytes(span.start),
            bytes(span.end),
        ));
    }
    Ok(out)
}

/// saphyr-parser's events; its indexes count characters, which are bytes in ASCII text.
fn saphyr(text: &str) -> Result<Vec<Event>, String> {
    use saphyr_parser::Event as E;
    let mut out = Vec::new();
    for event in saphyr_parser::Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| e.info().to_string())?;
        let name = match event {
            E::Scalar(t, style, anchor, tag) => scalar(&t, style, anchor, tag.is_some()),
            E::SequenceStart(anchor, tag) => format!("seq &{anchor} tagged={}", tag.is_some()),
            E::MappingStart(anchor, tag) => format!("map &{anchor} tagged={}", tag.is_some()),
            E::Alias(id) => format!("alias {id}"),
            E::SequenceEnd => "seq end".into(),
            E::MappingEnd => "map end".into(),
            E::DocumentStart(..) => "document".into(),
            E::DocumentEnd => "document end".into(),
            E::StreamStart | E::StreamEnd | E::Nothing => continue,
        };
        out.push((
            name,
            span.start.line(),
            span.start.col(),
            span.start.index(),
            span.end.index(),
        ));
    }
    Ok(out)
}

/// What a hybrid would give saphyr-parser: ASCII without control characters (but tab, LF and
/// CR), anchors (`&`) or tags (`!`).
fn routed(text: &str) -> bool {
    text.bytes().all(|b| {
        (b.is_ascii_graphic() || matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            && b != b'&'
            && b != b'!'
    })
}

/// Events that become nodes of Bulkhead's tree, whose spans place diagnostics.
fn is_node(event: &Event) -> bool {
    ["scalar", "seq &", "map &", "alias"]
        .iter()
        .any(|p| event.0.starts_with(p))
}

fn diff(inputs: &[(String, String)], verbose: bool) {
    let (mut same, mut only_granit, mut only_saphyr, mut both_reject) = (0, 0, 0, 0);
    let (mut events_differ, mut routed_count, mut routed_same, mut spans_differ) = (0, 0, 0, 0);
    for (name, text) in inputs {
        let (g, s) = (granit(text), saphyr(text));
        match (&g, &s) {
            (Ok(g), Ok(s)) => {
                let events_agree = g.iter().map(|e| &e.0).eq(s.iter().map(|e| &e.0));
                if !events_agree {
                    events_differ += 1;
                    if verbose {
                        println!("events differ: {name} {text:?}");
                    }
                } else {
                    same += 1;
                }
                if routed(text) {
                    routed_count += 1;
                    let nodes_agree = g.iter().zip(s).all(|(a, b)| !is_node(a) || a == b);
                    if events_agree && nodes_agree {
                        routed_same += 1;
                    } else if events_agree {
                        spans_differ += 1;
                        if verbose {
                            let (a, b) = g
                                .iter()
                                .zip(s)
                                .find(|(a, b)| is_node(a) && a != b)
                                .expect("a differing node");
                            println!(
                                "spans differ: {name} {text:?}\n  granit {a:?}\n  saphyr {b:?}"
                            );
                        }
                    }
                }
            }
            (Ok(_), Err(e)) => {
                only_granit += 1;
                if verbose {
                    println!("only granit accepts: {name} {text:?} (saphyr: {e})");
                }
            }
            (Err(e), Ok(_)) => {
                only_saphyr += 1;
                if verbose {
                    println!("only saphyr accepts: {name} {text:?} (granit: {e})");
                }
            }
            (Err(_), Err(_)) => both_reject += 1,
        }
    }
    println!(
        "{} inputs: both accept with the same events {same}, with other events {events_differ}; \
         only granit accepts {only_granit}; only saphyr-parser accepts {only_saphyr}; both reject {both_reject}",
        inputs.len()
    );
    println!(
        "accepted by both and routed to saphyr-parser by a hybrid: {routed_count}; same events and node spans {routed_same}; same events, other node spans {spans_differ}"
    );
}
