//! `map -o html`: one self-contained page (no network, no external scripts) that draws who can
//! talk to whom: a graph with the endpoints on a circle grouped by namespace, a reachability
//! matrix, and the list of connections, with a filter box. Deterministic for the same input.

use bulkhead_engine::Connection;
use std::collections::{BTreeMap, BTreeSet};
use std::f64::consts::PI;
use std::fmt::Write as _;

/// Above this many endpoints the matrix is left out (it would be unreadable).
const MATRIX_LIMIT: usize = 80;

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn namespace(endpoint: &str) -> &str {
    endpoint.split('/').next().unwrap_or(endpoint)
}

/// A stable colour per namespace.
fn colour(index: usize) -> String {
    let hue = (index * 137) % 360;
    format!("hsl({hue},55%,45%)")
}

/// The page. `endpoints` are every endpoint at the map's level (also those nothing reaches),
/// `connections` the allowed ones.
pub fn page(title: &str, endpoints: &[String], connections: &[Connection]) -> String {
    let mut nodes: BTreeSet<&str> = endpoints.iter().map(String::as_str).collect();
    for c in connections {
        nodes.insert(&c.from);
        nodes.insert(&c.to);
    }
    let nodes: Vec<&str> = nodes.into_iter().collect();
    let namespaces: BTreeMap<&str, usize> = nodes
        .iter()
        .map(|n| namespace(n))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n, i))
        .collect();
    let mut labels: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    for c in connections {
        labels
            .entry((c.from.as_str(), c.to.as_str()))
            .or_default()
            .push(format!("{} {}", c.protocol, c.ports));
    }

    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Bulkhead: {title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }}
h1 {{ font-size: 1.3em; }} h2 {{ font-size: 1.1em; margin-top: 2em; }}
.summary {{ color: #555; }}
#filter {{ font-size: 1em; padding: .3em; width: 24em; }}
svg {{ border: 1px solid #ddd; background: #fcfcfc; max-width: 100%; height: auto; }}
.edge {{ fill: none; stroke: #2a7; stroke-opacity: .55; stroke-width: 1.4; }}
.edge.self {{ stroke-dasharray: 3 2; }}
.edge:hover, .edge.hi {{ stroke: #d33; stroke-opacity: 1; stroke-width: 3; }}
.node circle {{ stroke: #fff; stroke-width: 1.5; }}
.node text {{ font-size: 11px; }}
.node.dim, .edge.dim {{ opacity: .12; }}
table {{ border-collapse: collapse; margin-top: .5em; }}
td, th {{ border: 1px solid #ddd; padding: 2px 6px; font-size: 12px; }}
.matrix td {{ text-align: center; min-width: 1.6em; }}
.matrix td.allow {{ background: #bfe8cf; }} .matrix td.deny {{ background: #f4f4f4; color: #bbb; }}
.matrix th.col {{ writing-mode: vertical-rl; transform: rotate(180deg); white-space: nowrap; }}
tr.hidden {{ display: none; }}
</style></head><body>
<h1>Who can talk to whom: {title}</h1>
<p class="summary">{n} endpoints in {ns} namespaces; {e} allowed (source, destination) pairs.
Green means at least one port is allowed; hover an edge or a cell for the ports. Click an
endpoint to show only its connections; click the background to reset.</p>
<p><input id="filter" placeholder="filter: namespace, name, port…" autofocus></p>
"#,
        title = escape(title),
        n = nodes.len(),
        ns = namespaces.len(),
        e = labels.len()
    );

    // The graph: endpoints on a circle, namespaces in arcs.
    // Room for the longest label outside the circle; ~14 px of arc per endpoint.
    let longest = nodes.iter().map(|n| n.chars().count()).max().unwrap_or(0) as f64;
    let margin = longest * 6.2 + 30.0;
    let radius = (14.0 * nodes.len() as f64 / (2.0 * PI)).max(160.0);
    let size = 2.0 * (radius + margin);
    let (cx, cy) = (size / 2.0, size / 2.0);
    let position: BTreeMap<&str, (f64, f64, f64)> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let angle = 2.0 * PI * i as f64 / nodes.len().max(1) as f64 - PI / 2.0;
            (
                *n,
                (cx + radius * angle.cos(), cy + radius * angle.sin(), angle),
            )
        })
        .collect();
    let _ = writeln!(
        out,
        r##"<svg id="graph" viewBox="0 0 {size:.0} {size:.0}" width="{size:.0}" height="{size:.0}" xmlns="http://www.w3.org/2000/svg">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#2a7"/></marker></defs>"##
    );
    for ((from, to), ports) in &labels {
        let (x1, y1, _) = position[from];
        let (x2, y2, a2) = position[to];
        let title = format!("{from} → {to}: {}", ports.join(", "));
        let data = format!("{from} {to} {}", ports.join(" "));
        if from == to {
            // Inside the circle, where no label is.
            let (lx, ly) = (x1 - 16.0 * a2.cos(), y1 - 16.0 * a2.sin());
            let _ = writeln!(
                out,
                r##"<circle class="edge self" cx="{lx:.1}" cy="{ly:.1}" r="12" fill="none" stroke="#2a7" data-from="{f}" data-to="{f}" data-text="{d}"><title>{t}</title></circle>"##,
                f = escape(from),
                d = escape(&data),
                t = escape(&title)
            );
            continue;
        }
        // Curve through a point pulled towards the centre; stop short of the target circle.
        let (qx, qy) = (
            cx + (x1 + x2 - 2.0 * cx) * 0.25,
            cy + (y1 + y2 - 2.0 * cy) * 0.25,
        );
        let (dx, dy) = (x2 - qx, y2 - qy);
        let len = (dx * dx + dy * dy).sqrt().max(1.0);
        let (ex, ey) = (x2 - dx / len * 7.0, y2 - dy / len * 7.0);
        let _ = writeln!(
            out,
            r##"<path class="edge" d="M{x1:.1},{y1:.1} Q{qx:.1},{qy:.1} {ex:.1},{ey:.1}" fill="none" stroke="#2a7" stroke-opacity="0.6" marker-end="url(#arrow)" data-from="{f}" data-to="{to_}" data-text="{d}"><title>{t}</title></path>"##,
            f = escape(from),
            to_ = escape(to),
            d = escape(&data),
            t = escape(&title)
        );
    }
    for n in &nodes {
        let (x, y, angle) = position[n];
        let (lx, ly) = (x + 10.0 * angle.cos(), y + 10.0 * angle.sin());
        let degrees = angle.to_degrees();
        let (rotate, anchor) = if angle.cos() >= 0.0 {
            (degrees, "start")
        } else {
            (degrees + 180.0, "end")
        };
        let _ = writeln!(
            out,
            r#"<g class="node" data-name="{name}"><circle cx="{x:.1}" cy="{y:.1}" r="6" fill="{fill}"><title>{name}</title></circle><text x="{lx:.1}" y="{ly:.1}" dy=".35em" font-size="11" font-family="sans-serif" text-anchor="{anchor}" transform="rotate({rotate:.1} {lx:.1} {ly:.1})">{name}</text></g>"#,
            name = escape(n),
            fill = colour(namespaces[namespace(n)])
        );
    }
    out.push_str("</svg>\n");

    if nodes.len() <= MATRIX_LIMIT && !nodes.is_empty() {
        out.push_str("<h2>Matrix (rows: source, columns: destination)</h2>\n<table class=\"matrix\"><tr><th></th>");
        for n in &nodes {
            let _ = write!(out, r#"<th class="col">{}</th>"#, escape(n));
        }
        out.push_str("</tr>\n");
        for from in &nodes {
            let _ = write!(out, r#"<tr><th>{}</th>"#, escape(from));
            for to in &nodes {
                match labels.get(&(*from, *to)) {
                    Some(ports) => {
                        let _ = write!(
                            out,
                            r#"<td class="allow" title="{} → {}: {}">✓</td>"#,
                            escape(from),
                            escape(to),
                            escape(&ports.join(", "))
                        );
                    }
                    None => out.push_str(r#"<td class="deny">·</td>"#),
                }
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
    } else if nodes.len() > MATRIX_LIMIT {
        let _ = writeln!(
            out,
            "<p class=\"summary\">The matrix is left out above {MATRIX_LIMIT} endpoints; use <code>--by namespace</code> or <code>--from</code>/<code>--to</code>.</p>"
        );
    }

    out.push_str("<h2>Allowed connections</h2>\n<table id=\"list\"><tr><th>from</th><th>to</th><th>protocol</th><th>ports</th><th>pairs</th></tr>\n");
    for c in connections {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}/{}</td></tr>",
            escape(&c.from),
            escape(&c.to),
            c.protocol,
            escape(&c.ports.to_string()),
            c.pairs_allowed,
            c.pairs_total
        );
    }
    out.push_str("</table>\n");
    out.push_str(SCRIPT);
    out.push_str("</body></html>\n");
    out
}

/// Filtering and click-to-focus; plain DOM, no libraries.
const SCRIPT: &str = r#"<script>
(function () {
  const edges = Array.from(document.querySelectorAll('.edge'));
  const nodes = Array.from(document.querySelectorAll('.node'));
  const rows = Array.from(document.querySelectorAll('#list tr')).slice(1);
  function show(test, nodeTest) {
    edges.forEach(e => e.classList.toggle('dim', !test(e)));
    nodes.forEach(n => n.classList.toggle('dim', !nodeTest(n)));
  }
  document.getElementById('filter').addEventListener('input', ev => {
    const q = ev.target.value.trim().toLowerCase();
    if (!q) { show(() => true, () => true); rows.forEach(r => r.classList.remove('hidden')); return; }
    show(e => e.dataset.text.toLowerCase().includes(q), n => n.dataset.name.toLowerCase().includes(q));
    rows.forEach(r => r.classList.toggle('hidden', !r.textContent.toLowerCase().includes(q)));
  });
  nodes.forEach(n => n.addEventListener('click', ev => {
    ev.stopPropagation();
    const name = n.dataset.name;
    const linked = new Set([name]);
    edges.forEach(e => { if (e.dataset.from === name || e.dataset.to === name) { linked.add(e.dataset.from); linked.add(e.dataset.to); } });
    show(e => e.dataset.from === name || e.dataset.to === name, m => linked.has(m.dataset.name));
  }));
  document.getElementById('graph').addEventListener('click', () => show(() => true, () => true));
})();
</script>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_attributes() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
