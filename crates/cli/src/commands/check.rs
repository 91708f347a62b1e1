//! `bulkhead check`: validation diagnostics and lint findings, in five formats.

use crate::cli::{CheckArgs, CheckFormat, ListOutput};
use crate::render::diagnostics;
use crate::snapshot;
use anyhow::Context as _;
use bulkhead_analysis::Config;
use bulkhead_model::Severity;
use std::process::ExitCode;

/// `bulkhead.toml` from `--config`, or the working directory when present.
pub fn config(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    let default = std::path::Path::new("bulkhead.toml");
    let path = match path {
        Some(p) => p,
        None if default.exists() => default,
        None => return Ok(Config::default()),
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut config: Config = toml::from_str(&text)
        .with_context(|| format!("{} is not a valid Bulkhead configuration", path.display()))?;
    // `[[ignore]] path` is relative to the configuration file, file names in findings to the
    // working directory: both are resolved so any spelling of a path matches.
    let working_dir = std::env::current_dir().ok();
    let config_dir = path.parent().map(|p| match &working_dir {
        Some(cwd) if p.is_relative() => cwd.join(p),
        _ => p.to_path_buf(),
    });
    config.anchors = bulkhead_analysis::lint::PathAnchors {
        config_dir,
        working_dir,
    };
    Ok(config)
}

pub fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let mut config = config(args.config.as_deref())?;
    let (mut snapshot, inputs) = snapshot::load_with_inputs(&args.input)?;
    config.engine = Some(snapshot::engine_options(&args.semantics, &snapshot));
    if !args.no_lint {
        let mut findings = bulkhead_analysis::lint(&snapshot.cluster, &config);
        snapshot::fill_source_lines(&mut findings, &inputs);
        snapshot.diagnostics.extend(findings);
        snapshot
            .diagnostics
            .sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    }
    let found = &snapshot.diagnostics;
    match args.output {
        CheckFormat::Human => super::print(&diagnostics::human(found))?,
        CheckFormat::Json => super::print(&format!("{:#}\n", diagnostics::json(found)))?,
        CheckFormat::Sarif => {
            let cwd = std::env::current_dir().ok();
            super::print(&format!(
                "{:#}\n",
                diagnostics::sarif(found, cwd.as_deref())
            ))?;
        }
        CheckFormat::Junit => super::print(&diagnostics::junit(found, args.deny.is_some())?)?,
        CheckFormat::Github => super::print(&diagnostics::github(found))?,
    }
    let failing = |d: &&bulkhead_model::Diagnostic| {
        d.severity == Severity::Error || (args.deny.is_some() && d.severity == Severity::Warning)
    };
    let code = if found.iter().any(|d| failing(&d)) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    };
    super::keep_until_exit((snapshot, inputs));
    Ok(code)
}

pub fn list_codes(output: ListOutput) -> String {
    if output == ListOutput::Json {
        let codes: Vec<serde_json::Value> = bulkhead_k8s::codes::ALL
            .iter()
            .map(|c| {
                serde_json::json!({
                    "code": c.code,
                    "name": c.name,
                    "severity": c.severity.to_string(),
                    "summary": c.summary,
                })
            })
            .collect();
        return format!("{:#}\n", serde_json::Value::from(codes));
    }
    let mut out = String::new();
    for c in bulkhead_k8s::codes::ALL {
        out.push_str(&format!(
            "{}  {:<26} {:<8} {}\n",
            c.code, c.name, c.severity, c.summary
        ));
    }
    out
}

pub fn list_rules(output: ListOutput) -> String {
    if output == ListOutput::Json {
        let rules: Vec<serde_json::Value> = bulkhead_analysis::rules::ALL
            .iter()
            .map(|r| {
                serde_json::json!({
                    "code": r.info.code,
                    "name": r.info.name,
                    "severity": r.info.severity.to_string(),
                    "summary": r.info.summary,
                    "doc": rule_doc(r.info.code),
                })
            })
            .collect();
        return format!("{:#}\n", serde_json::Value::from(rules));
    }
    let mut out = String::new();
    for r in bulkhead_analysis::rules::ALL {
        out.push_str(&format!(
            "{}  {:<34} {:<8} {}\n",
            r.info.code, r.info.name, r.info.severity, r.info.summary
        ));
    }
    out.push_str("\n`bulkhead rule CODE` prints a rule's documentation; `bulkhead codes` lists validation codes.\n");
    out
}

/// A rule's documentation: the `//!` comment of its file.
pub fn rule_doc(key: &str) -> Option<String> {
    let rule = bulkhead_analysis::rules::ALL
        .iter()
        .find(|r| r.info.code.eq_ignore_ascii_case(key) || r.info.name == key)?;
    Some(format!(
        "{} {} ({})\n\n{}\n",
        rule.info.code,
        rule.info.name,
        rule.info.severity,
        rule_markdown(&rule.info)
    ))
}

/// A rule's documentation (the `//!` lines of its file), as Markdown.
pub fn rule_markdown(info: &bulkhead_analysis::RuleInfo) -> String {
    let body: Vec<&str> = info
        .doc
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| {
            l.trim_start_matches("//!")
                .strip_prefix(' ')
                .unwrap_or(l.trim_start_matches("//!"))
        })
        .collect();
    body.join("\n")
}
