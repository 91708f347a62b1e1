//! Connectivity as a table, JSON, CSV, Graphviz DOT or Mermaid.

use bulkhead_engine::Connection;
use std::collections::BTreeSet;
use std::fmt::Write as _;

fn scope(c: &Connection) -> &'static str {
    if c.ports_all_pairs == c.ports {
        "all"
    } else {
        "some"
    }
}

/// One connection as `map -o json` writes it (fields in alphabetical order, as they always
/// were); the grouped fields only `--by workload|namespace`.
#[derive(serde::Serialize)]
struct JsonRow<'a> {
    from: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pairs_allowed: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pairs_total: Option<usize>,
    ports: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ports_all_pairs: Option<String>,
    protocol: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'static str>,
    to: &'a str,
}

/// `{"connections": [...]}`, pretty-printed, with a final newline. Serialised straight from
/// the connections (a `serde_json::Value` of 100k rows first cost L's map 0.4 s and 200 MB).
pub fn json(connections: &[Connection], grouped: bool) -> String {
    #[derive(serde::Serialize)]
    struct Document<'a> {
        connections: Vec<JsonRow<'a>>,
    }
    let document = Document {
        connections: connections
            .iter()
            .map(|c| JsonRow {
                from: &c.from,
                pairs_allowed: grouped.then_some(c.pairs_allowed),
                pairs_total: grouped.then_some(c.pairs_total),
                ports: c.ports.to_string(),
                ports_all_pairs: grouped.then(|| c.ports_all_pairs.to_string()),
                protocol: c.protocol.to_string(),
                scope: grouped.then(|| scope(c)),
                to: &c.to,
            })
            .collect(),
    };
    let mut out = serde_json::to_string_pretty(&document).unwrap_or_default();
    out.push('\n');
    out
}

pub fn table(connections: &[Connection], grouped: bool) -> String {
    let mut rows: Vec<[String; 5]> = vec![[
        "FROM".into(),
        "TO".into(),
        "PROTOCOL".into(),
        "PORTS".into(),
        if grouped {
            "PAIRS".into()
        } else {
            String::new()
        },
    ]];
    for c in connections {
        let pairs = if grouped {
            if scope(c) == "all" {
                format!("all {}/{}", c.pairs_allowed, c.pairs_total)
            } else {
                format!(
                    "some {}/{} (all pairs: {})",
                    c.pairs_allowed, c.pairs_total, c.ports_all_pairs
                )
            }
        } else {
            String::new()
        };
        rows.push([
            c.from.clone(),
            c.to.clone(),
            c.protocol.to_string(),
            c.ports.to_string(),
            pairs,
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    if connections.is_empty() {
        out.push_str("(no allowed connections)\n");
    }
    out
}

pub fn csv(connections: &[Connection]) -> String {
    let mut out =
        String::from("from,to,protocol,ports,ports_all_pairs,pairs_allowed,pairs_total\n");
    for c in connections {
        let _ = writeln!(
            out,
            "{},{},{},\"{}\",\"{}\",{},{}",
            c.from, c.to, c.protocol, c.ports, c.ports_all_pairs, c.pairs_allowed, c.pairs_total
        );
    }
    out
}

/// One edge per (from, to) with the protocols and ports as its label.
fn edges(connections: &[Connection]) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    for c in connections {
        let label = format!("{}:{}", c.protocol, c.ports);
        match out.last_mut() {
            Some((f, t, l)) if *f == c.from && *t == c.to => {
                l.push(' ');
                l.push_str(&label);
            }
            _ => out.push((c.from.clone(), c.to.clone(), label)),
        }
    }
    out
}

pub fn dot(connections: &[Connection]) -> String {
    let mut out = String::from("digraph bulkhead {\n  rankdir=LR;\n  node [shape=box];\n");
    let nodes: BTreeSet<&str> = connections
        .iter()
        .flat_map(|c| [c.from.as_str(), c.to.as_str()])
        .collect();
    for n in nodes {
        let _ = writeln!(out, "  \"{n}\";");
    }
    for (from, to, label) in edges(connections) {
        let _ = writeln!(out, "  \"{from}\" -> \"{to}\" [label=\"{label}\"];");
    }
    out.push_str("}\n");
    out
}

pub fn mermaid(connections: &[Connection]) -> String {
    let nodes: BTreeSet<&str> = connections
        .iter()
        .flat_map(|c| [c.from.as_str(), c.to.as_str()])
        .collect();
    let ids: std::collections::BTreeMap<&str, String> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, format!("n{i}")))
        .collect();
    let mut out = String::from("flowchart LR\n");
    for (n, id) in &ids {
        let _ = writeln!(out, "  {id}[\"{n}\"]");
    }
    for (from, to, label) in edges(connections) {
        let _ = writeln!(
            out,
            "  {} -->|\"{label}\"| {}",
            ids[from.as_str()],
            ids[to.as_str()]
        );
    }
    out
}
