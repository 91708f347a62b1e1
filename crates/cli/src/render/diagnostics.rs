//! Diagnostics for people (rustc-like, with the YAML line and a caret) and for machines (JSON).

use bulkhead_model::{Diagnostic, Severity};
use serde_json::json;
use std::fmt::Write as _;
use std::path::Path;

pub fn human(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        let _ = writeln!(out, "{}[{}/{}]: {}", d.severity, d.code, d.name, d.message);
        if let Some(location) = &d.location {
            let gutter = location.line.to_string().len();
            let pad = " ".repeat(gutter);
            let _ = writeln!(out, "{pad}--> {location}");
            if let Some(line) = &d.source_line {
                let (line, column, length) = window(line, location.column, d.length.max(1));
                let _ = writeln!(out, "{pad} |");
                let _ = writeln!(out, "{} | {}", location.line, line);
                let indent: String = line
                    .chars()
                    .take(column.saturating_sub(1))
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                let _ = writeln!(out, "{pad} | {indent}{}", "^".repeat(length));
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

/// Characters of a source line shown around the column; a minified 20 KB line is cut to this.
const SNIPPET_WIDTH: usize = 120;

/// The part of `line` worth showing for a finding at `column` (1-based, in characters): the
/// whole line when it is short, else a window around the column marked with `…` where cut.
/// Returns the text, the column and the caret length within it.
fn window(line: &str, column: usize, length: usize) -> (String, usize, usize) {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= SNIPPET_WIDTH {
        return (line.to_string(), column, length);
    }
    let at = column.saturating_sub(1).min(chars.len());
    let start = at.saturating_sub(SNIPPET_WIDTH / 3);
    let end = (start + SNIPPET_WIDTH).min(chars.len());
    let mut shown = String::new();
    if start > 0 {
        shown.push('…');
    }
    shown.extend(&chars[start..end]);
    if end < chars.len() {
        shown.push('…');
    }
    let column = at - start + 1 + usize::from(start > 0);
    let length = length.min(end.saturating_sub(at)).max(1);
    (shown, column, length)
}

pub fn json(diagnostics: &[Diagnostic]) -> serde_json::Value {
    json!({
        "diagnostics": diagnostics.iter().map(|d| json!({
            "code": d.code,
            "name": d.name,
            "severity": d.severity.as_str(),
            "message": d.message,
            "file": d.location.as_ref().map(|l| l.file.to_string()),
            "line": d.location.as_ref().map(|l| l.line),
            "column": d.location.as_ref().map(|l| l.column),
            "resource": d.resource,
            "help": d.help,
        })).collect::<Vec<_>>()
    })
}

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// SARIF 2.1.0: one run, every validation code and lint rule in the driver (with its full
/// documentation as help), one result per diagnostic. Files under `working_dir` are named
/// relative to it with the `%SRCROOT%` base, as code-scanning services expect; others by an
/// absolute `file://` URI.
pub fn sarif(diagnostics: &[Diagnostic], working_dir: Option<&Path>) -> serde_json::Value {
    let mut rules: Vec<serde_json::Value> = bulkhead_k8s::codes::ALL
        .iter()
        .map(|c| {
            let help = format!(
                "{}. Reported by Bulkhead's validation, which is as strict as the API server; `bulkhead codes` lists every code.",
                c.summary
            );
            json!({"id": c.code, "name": c.name, "shortDescription": {"text": c.summary},
                   "fullDescription": {"text": c.summary},
                   "help": {"text": help, "markdown": help},
                   "defaultConfiguration": {"level": sarif_level(c.severity)}})
        })
        .collect();
    rules.extend(bulkhead_analysis::rules::ALL.iter().map(|r| {
        let doc = crate::commands::rule_markdown(&r.info);
        json!({"id": r.info.code, "name": r.info.name, "shortDescription": {"text": r.info.summary},
               "fullDescription": {"text": r.info.summary},
               "help": {"text": doc, "markdown": doc},
               "defaultConfiguration": {"level": sarif_level(r.info.severity)}})
    }));
    let results: Vec<serde_json::Value> = diagnostics
        .iter()
        .map(|d| {
            let mut result = json!({
                "ruleId": d.code,
                "level": sarif_level(d.severity),
                "message": {"text": match &d.help { Some(h) => format!("{} (help: {h})", d.message), None => d.message.clone() }},
            });
            if let Some(l) = &d.location {
                result["locations"] = json!([{"physicalLocation": {
                    "artifactLocation": artifact_location(&l.file, working_dir),
                    "region": {"startLine": l.line, "startColumn": l.column},
                }}]);
            }
            result
        })
        .collect();
    let mut driver =
        json!({"name": "bulkhead", "version": env!("CARGO_PKG_VERSION"), "rules": rules});
    // Only a real address: the schema wants an absolute URI, and a placeholder would mislead.
    let repository = env!("CARGO_PKG_REPOSITORY");
    if repository.starts_with("https://") && !repository.contains(".invalid") {
        driver["informationUri"] = json!(repository);
    }
    let mut run = json!({"tool": {"driver": driver}, "results": results});
    if let Some(dir) = working_dir {
        run["originalUriBaseIds"] = json!({"%SRCROOT%": {"uri": format!("{}/", file_uri(dir))}});
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [run],
    })
}

/// A file of a diagnostic as SARIF names it: relative to the working directory when inside it.
fn artifact_location(file: &str, working_dir: Option<&Path>) -> serde_json::Value {
    let normal = bulkhead_analysis::lint::normalise(working_dir, file);
    if file.starts_with('<') {
        // `<stdin>`: no file to point at; a relative name keeps the result valid.
        return json!({"uri": encode_uri_path(file.trim_matches(['<', '>']))});
    }
    match working_dir.and_then(|dir| normal.strip_prefix(dir).ok()) {
        Some(relative) => {
            json!({"uri": encode_uri_path(&relative.to_string_lossy()), "uriBaseId": "%SRCROOT%"})
        }
        None if normal.is_absolute() => json!({"uri": file_uri(&normal)}),
        None => json!({"uri": encode_uri_path(&normal.to_string_lossy())}),
    }
}

fn file_uri(path: &Path) -> String {
    format!("file://{}", encode_uri_path(&path.to_string_lossy()))
}

/// Percent-encodes what may not stand in a URI path (RFC 3986), keeping `/`.
fn encode_uri_path(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// JUnit XML: one test case per diagnostic, or one passing case when the input is clean. A
/// case fails as `check` fails: for an error, and for a warning only with `--deny warnings`;
/// other findings pass with their text in the case's output.
pub fn junit(diagnostics: &[Diagnostic], warnings_fail: bool) -> anyhow::Result<String> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new("bulkhead");
    let mut suite = TestSuite::new("bulkhead check");
    for d in diagnostics {
        let place = d
            .location
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_else(|| "input".into());
        let fails =
            d.severity == Severity::Error || (warnings_fail && d.severity == Severity::Warning);
        let status = match fails {
            false => {
                let mut s = TestCaseStatus::success();
                s.set_type(d.severity.as_str());
                s
            }
            true => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(d.message.clone());
                s.set_type(d.severity.as_str());
                s.set_description(format!(
                    "{} {}: {}{}",
                    d.code,
                    d.name,
                    d.message,
                    d.help
                        .as_ref()
                        .map(|h| format!("\nhelp: {h}"))
                        .unwrap_or_default()
                ));
                s
            }
        };
        let mut case = TestCase::new(format!("{} {} at {place}", d.code, d.name), status);
        case.set_classname(d.resource.clone().unwrap_or_else(|| place.clone()));
        if !fails {
            case.set_system_out(format!("{} {}: {}", d.severity, d.code, d.message));
        }
        suite.add_test_case(case);
    }
    if diagnostics.is_empty() {
        suite.add_test_case(TestCase::new("no findings", TestCaseStatus::success()));
    }
    report.add_test_suite(suite);
    Ok(report.to_string()?)
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// GitHub Actions workflow commands, one annotation per diagnostic.
pub fn github(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        let level = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "notice",
        };
        let mut props = vec![format!(
            "title={}",
            escape_property(&format!("{} {}", d.code, d.name))
        )];
        if let Some(l) = &d.location {
            props.insert(
                0,
                format!(
                    "file={},line={},col={}",
                    escape_property(&l.file),
                    l.line,
                    l.column
                ),
            );
        }
        let message = match &d.help {
            Some(h) => format!("{} (help: {h})", d.message),
            None => d.message.clone(),
        };
        let _ = writeln!(
            out,
            "::{level} {}::{}",
            props.join(","),
            escape_data(&message)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::window;

    #[test]
    fn a_long_line_is_cut_around_the_column() {
        let line = format!("{}BAD{}", "a".repeat(10_000), "b".repeat(10_000));
        let (shown, column, length) = window(&line, 10_001, 20_000);
        assert!(shown.chars().count() <= 122, "{}", shown.len());
        assert!(shown.starts_with('…') && shown.ends_with('…'));
        let caret: String = shown.chars().skip(column - 1).take(3).collect();
        assert_eq!(caret, "BAD");
        assert!(length <= 120);
        let short = "spec: {}";
        assert_eq!(window(short, 7, 2), (short.to_string(), 7, 2));
    }
}
