//! Diagnostics for people (rustc-like, with the YAML line and a caret) and for machines (JSON).

use bulkhead_model::{Diagnostic, Severity};
use serde_json::json;
use std::fmt::Write as _;

pub fn human(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        let _ = writeln!(out, "{}[{}/{}]: {}", d.severity, d.code, d.name, d.message);
        if let Some(location) = &d.location {
            let gutter = location.line.to_string().len();
            let pad = " ".repeat(gutter);
            let _ = writeln!(out, "{pad}--> {location}");
            if let Some(line) = &d.source_line {
                let _ = writeln!(out, "{pad} |");
                let _ = writeln!(out, "{} | {}", location.line, line);
                let indent: String = line
                    .chars()
                    .take(location.column.saturating_sub(1))
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                let _ = writeln!(out, "{pad} | {indent}{}", "^".repeat(d.length.max(1)));
            }
            if let Some(resource) = &d.resource {
                let _ = writeln!(out, "{pad} = in {resource}");
            }
            if let Some(help) = &d.help {
                let _ = writeln!(out, "{pad} = help: {help}");
            }
        } else if let Some(help) = &d.help {
            let _ = writeln!(out, "  = help: {help}");
        }
        out.push('\n');
    }
    let count = |s| diagnostics.iter().filter(|d| d.severity == s).count();
    let _ = writeln!(
        out,
        "{} error(s), {} warning(s), {} note(s)",
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info)
    );
    out
}

pub fn json(diagnostics: &[Diagnostic]) -> serde_json::Value {
    json!({
        "diagnostics": diagnostics.iter().map(|d| json!({
            "code": d.code,
            "name": d.name,
            "severity": d.severity.as_str(),
            "message": d.message,
            "file": d.location.as_ref().map(|l| l.file.clone()),
            "line": d.location.as_ref().map(|l| l.line),
            "column": d.location.as_ref().map(|l| l.column),
            "resource": d.resource,
            "help": d.help,
        })).collect::<Vec<_>>()
    })
}
