//! The answer to "is this flow allowed, and why?".

use bulkhead_engine::{DirectionVerdict, Flow, Resolved, RuleRef, Verdict};
use serde_json::json;
use std::fmt::Write as _;

pub struct Explained<'a> {
    pub from: &'a Resolved,
    pub to: &'a Resolved,
    pub flow: &'a Flow,
    pub verdict: &'a Verdict,
}

fn word(allowed: bool) -> &'static str {
    if allowed { "allow" } else { "deny" }
}

fn rule_json(r: &RuleRef) -> serde_json::Value {
    json!({
        "kind": r.kind,
        "namespace": r.namespace,
        "name": r.name,
        "tier": r.tier,
        "rule": r.rule,
        "action": r.action,
        "detail": r.detail,
        "source": r.source.as_ref().map(ToString::to_string),
    })
}

fn direction_json(d: &DirectionVerdict, endpoint: &Resolved) -> serde_json::Value {
    json!({
        "verdict": word(d.allowed),
        "endpoint": endpoint.display,
        "decided_by": d.decided_by.iter().map(rule_json).collect::<Vec<_>>(),
        "reason": d.reason.describe(),
        "reason_code": d.reason.code(),
    })
}

fn verdict_json(v: &Verdict, from: &Resolved, to: &Resolved) -> serde_json::Value {
    json!({
        "verdict": word(v.allowed),
        "egress": direction_json(&v.egress, from),
        "ingress": direction_json(&v.ingress, to),
    })
}

pub fn json(e: &Explained<'_>) -> serde_json::Value {
    let notes: Vec<_> = e
        .from
        .notes
        .iter()
        .chain(&e.to.notes)
        .chain(&e.verdict.notes)
        .map(|n| json!({"code": n.code, "message": n.message}))
        .collect();
    let mut out = json!({
        "verdict": word(e.verdict.allowed),
        "from": e.from.display,
        "to": e.to.display,
        "protocol": e.flow.protocol.to_string(),
        "port": e.flow.port,
        "icmp": e.flow.icmp.map(|(t, c)| json!({"type": t, "code": c})),
        "egress": direction_json(&e.verdict.egress, e.from),
        "ingress": direction_json(&e.verdict.ingress, e.to),
        "notes": notes,
    });
    if let Some(staged) = &e.verdict.staged {
        // What the verdict would be if the staged policies were enforced (CAL-STG-1).
        out["staged"] = verdict_json(staged, e.from, e.to);
    }
    out
}

fn halves(out: &mut String, verdict: &Verdict, from: &Resolved, to: &Resolved) {
    for (d, endpoint) in [(&verdict.egress, from), (&verdict.ingress, to)] {
        let _ = writeln!(
            out,
            "  {:<7} ({}): {:<5} {} [{}]",
            d.direction.as_str(),
            endpoint.display,
            word(d.allowed).to_uppercase(),
            d.reason.describe(),
            d.reason.code()
        );
        for (i, r) in d.decided_by.iter().enumerate() {
            let name = match &r.namespace {
                Some(ns) => format!("{ns}/{}", r.name),
                None => r.name.clone(),
            };
            let rule = r
                .rule
                .as_deref()
                .map(|x| format!(" rule {x}"))
                .unwrap_or_default();
            let at = r
                .source
                .as_ref()
                .map(|s| format!("  ({s})"))
                .unwrap_or_default();
            // Pass hands the flow to the next tier: that is a path; other entries are a set.
            let after_pass = i > 0 && d.decided_by[i - 1].action == "Pass";
            let arrow = if after_pass { "->" } else { "  " };
            let _ = writeln!(
                out,
                "    {arrow} tier {}: {} {name}{rule} {}: {}{at}",
                r.tier, r.kind, r.action, r.detail
            );
        }
    }
}

pub fn human(e: &Explained<'_>) -> String {
    let mut out = String::new();
    let target = match e.flow.port {
        Some(p) => format!("{}/{p}", e.flow.protocol),
        None => e.flow.protocol.to_string(),
    };
    let _ = writeln!(
        out,
        "{} -> {} {target}: {}",
        e.from.display,
        e.to.display,
        word(e.verdict.allowed).to_uppercase()
    );
    halves(&mut out, e.verdict, e.from, e.to);
    if let Some(staged) = &e.verdict.staged {
        let _ = writeln!(
            out,
            "  if the staged and audited policies were enforced: {}",
            word(staged.allowed).to_uppercase()
        );
        halves(&mut out, staged, e.from, e.to);
    }
    for n in e
        .from
        .notes
        .iter()
        .chain(&e.to.notes)
        .chain(&e.verdict.notes)
    {
        let _ = writeln!(out, "  note [{}]: {}", n.code, n.message);
    }
    out
}
