//! The security review as Markdown and as a self-contained HTML page. Both come from one
//! list of blocks, so they say the same; every evidence link points at a section id.

use crate::render::map_html::escape;
use bulkhead_analysis::report::{Report, section};
use std::fmt::Write as _;

/// A piece of the document, rendered by both formats.
enum Block {
    Heading(&'static str, String),
    Paragraph(String),
    Table(Vec<String>, Vec<Vec<Cell>>),
}

enum Cell {
    Text(String),
    /// Text with links to section ids.
    Links(String, Vec<&'static str>),
}

fn blocks(r: &Report, title: &str) -> Vec<Block> {
    let mut out = vec![Block::Paragraph(format!(
        "Bulkhead security review of `{title}`: coverage, policy sprawl, blast radius within {} hop(s), DNS and metadata-service findings, and the controls they evidence.",
        r.blast_radius.hops
    ))];
    out.push(Block::Heading(section::COMPLIANCE, "Compliance".into()));
    out.push(Block::Table(
        ["framework", "control", "status", "why", "evidence"]
            .map(String::from)
            .to_vec(),
        r.compliance
            .iter()
            .map(|c| {
                vec![
                    Cell::Text(c.framework.to_string()),
                    Cell::Text(format!("{} {}", c.id, c.title)),
                    Cell::Text(c.status.as_str().to_string()),
                    Cell::Text(c.why.clone()),
                    Cell::Links(String::new(), c.evidence.clone()),
                ]
            })
            .collect(),
    ));
    let c = &r.coverage;
    out.push(Block::Heading(section::COVERAGE, "Coverage".into()));
    let with_pods = c.namespaces.iter().filter(|n| n.pods > 0).count();
    let both = c
        .namespaces
        .iter()
        .filter(|n| n.pods > 0 && n.default_deny_ingress && n.default_deny_egress)
        .count();
    out.push(Block::Paragraph(format!(
        "{both} of {with_pods} namespace(s) with pods deny ingress and egress by default (target: all); {} of {} pod(s) isolated for ingress, {} for egress.",
        c.isolated_ingress, c.pods, c.isolated_egress
    )));
    out.push(Block::Table(
        [
            "namespace",
            "pods",
            "default deny in/out",
            "policies",
            "exposed to outside",
        ]
        .map(String::from)
        .to_vec(),
        c.namespaces
            .iter()
            .map(|n| {
                vec![
                    Cell::Text(n.namespace.clone()),
                    Cell::Text(n.pods.to_string()),
                    Cell::Text(format!(
                        "{}/{}",
                        yes(n.default_deny_ingress),
                        yes(n.default_deny_egress)
                    )),
                    Cell::Text(n.policies.to_string()),
                    Cell::Text(n.ingress_exposed_workloads.join(", ")),
                ]
            })
            .collect(),
    ));
    out.push(Block::Heading(section::SPRAWL, "Policy sprawl".into()));
    out.push(Block::Paragraph(if r.sprawl.is_empty() {
        format!(
            "No namespace has {} or more policies; {} cluster-wide policies (limit {}).",
            r.policies_per_namespace_limit, r.global_policies, r.global_policies_limit
        )
    } else {
        let names: Vec<String> = r
            .sprawl
            .iter()
            .map(|s| format!("{} ({})", s.namespace, s.policies))
            .collect();
        format!(
            "At or over {} policies: {}; {} cluster-wide policies (limit {}).",
            r.policies_per_namespace_limit,
            names.join(", "),
            r.global_policies,
            r.global_policies_limit
        )
    }));
    let b = &r.blast_radius;
    out.push(Block::Heading(section::BLAST_RADIUS, "Blast radius".into()));
    out.push(Block::Paragraph(format!(
        "Score {:.2} (0 fully segmented, 1 flat): the mean share of the other {} pod(s) a compromised pod reaches within {} hop(s). Worst workloads first.",
        b.score,
        b.pods.saturating_sub(1),
        b.hops
    )));
    let mut worst: Vec<_> = b.workloads.iter().collect();
    worst.sort_by(|x, y| {
        let reach = |w: &bulkhead_analysis::blast_radius::WorkloadRadius| {
            w.reach.last().map_or(0, |r| r.pods)
        };
        reach(y)
            .cmp(&reach(x))
            .then_with(|| x.workload.cmp(&y.workload))
    });
    out.push(Block::Table(
        [
            "workload",
            "pods in 1 hop",
            "pods within all hops",
            "namespaces",
            "worst path",
        ]
        .map(String::from)
        .to_vec(),
        worst
            .iter()
            .take(20)
            .map(|w| {
                let first = w.reach.first();
                let last = w.reach.last();
                let path = w
                    .paths
                    .first()
                    .map(|p| {
                        let hops: Vec<String> = p.hops.iter().map(ToString::to_string).collect();
                        format!("to {}: {}", p.target, hops.join("; "))
                    })
                    .unwrap_or_default();
                vec![
                    Cell::Text(w.workload.clone()),
                    Cell::Text(first.map_or(0, |r| r.pods).to_string()),
                    Cell::Text(last.map_or(0, |r| r.pods).to_string()),
                    Cell::Text(last.map_or(0, |r| r.namespaces).to_string()),
                    Cell::Text(path),
                ]
            })
            .collect(),
    ));
    out.push(Block::Heading(
        section::FINDINGS,
        "DNS and metadata-service findings".into(),
    ));
    if r.findings.is_empty() {
        out.push(Block::Paragraph(
            "Every egress-isolated pod resolves names, and no pod reaches the cloud metadata service."
                .into(),
        ));
    } else {
        out.push(Block::Table(
            ["code", "finding", "where"].map(String::from).to_vec(),
            r.findings
                .iter()
                .map(|f| {
                    vec![
                        Cell::Text(f.code.clone()),
                        Cell::Text(f.message.clone()),
                        Cell::Text(f.location.clone().unwrap_or_default()),
                    ]
                })
                .collect(),
        ));
    }
    out
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

pub fn markdown(r: &Report, title: &str) -> String {
    let mut out = String::from("# Bulkhead security review\n\n");
    for block in blocks(r, title) {
        match block {
            Block::Heading(id, text) => {
                let _ = writeln!(out, "## {text} <a id=\"{id}\"></a>\n");
            }
            Block::Paragraph(text) => {
                let _ = writeln!(out, "{text}\n");
            }
            Block::Table(head, rows) => {
                let _ = writeln!(out, "| {} |", head.join(" | "));
                let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
                for row in rows {
                    let cells: Vec<String> = row
                        .iter()
                        .map(|c| match c {
                            Cell::Text(t) => t.replace('|', "\\|"),
                            Cell::Links(t, ids) => {
                                let links: Vec<String> =
                                    ids.iter().map(|id| format!("[{id}](#{id})")).collect();
                                format!("{t}{}", links.join(", "))
                            }
                        })
                        .collect();
                    let _ = writeln!(out, "| {} |", cells.join(" | "));
                }
                out.push('\n');
            }
        }
    }
    out
}

pub fn html(r: &Report, title: &str) -> String {
    let mut body = String::new();
    for block in blocks(r, title) {
        match block {
            Block::Heading(id, text) => {
                let _ = writeln!(body, "<h2 id=\"{id}\">{}</h2>", escape(&text));
            }
            Block::Paragraph(text) => {
                let _ = writeln!(body, "<p>{}</p>", escape(&text).replace('`', ""));
            }
            Block::Table(head, rows) => {
                body.push_str("<table>\n<tr>");
                for h in head {
                    let _ = write!(body, "<th>{}</th>", escape(&h));
                }
                body.push_str("</tr>\n");
                for row in rows {
                    body.push_str("<tr>");
                    for c in row {
                        match c {
                            Cell::Text(t) => {
                                let class = match t.as_str() {
                                    "pass" => " class=\"pass\"",
                                    "fail" => " class=\"fail\"",
                                    "not evaluated" => " class=\"na\"",
                                    _ => "",
                                };
                                let _ = write!(body, "<td{class}>{}</td>", escape(&t));
                            }
                            Cell::Links(t, ids) => {
                                let links: Vec<String> = ids
                                    .iter()
                                    .map(|id| format!("<a href=\"#{id}\">{id}</a>"))
                                    .collect();
                                let _ = write!(body, "<td>{}{}</td>", escape(&t), links.join(", "));
                            }
                        }
                    }
                    body.push_str("</tr>\n");
                }
                body.push_str("</table>\n");
            }
        }
    }
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Bulkhead security review</title>\n<style>\nbody {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 80em; }}\ntable {{ border-collapse: collapse; margin: 1em 0; }}\nth, td {{ border: 1px solid #bbb; padding: .3em .6em; text-align: left; vertical-align: top; }}\n.pass {{ color: #1a6b1a; font-weight: bold; }}\n.fail {{ color: #a11; font-weight: bold; }}\n.na {{ color: #666; }}\n</style>\n</head>\n<body>\n<h1>Bulkhead security review</h1>\n{body}</body>\n</html>\n"
    )
}
