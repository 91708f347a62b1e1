//! `bulkhead blast-radius`: lateral movement from each workload.

use crate::cli::{BlastRadiusArgs, BlastRadiusFormat};
use crate::references;
use crate::snapshot;
use anyhow::{Context as _, bail};
use bulkhead_analysis::blast_radius::{self, BlastRadius, Options};
use bulkhead_engine::Engine;
use bulkhead_model::{LabelSelector, Operator, Requirement};
use std::fmt::Write as _;
use std::process::ExitCode;

pub fn run(args: &BlastRadiusArgs) -> anyhow::Result<ExitCode> {
    let snapshot = snapshot::load(&args.input)?;
    snapshot::warn_about_errors(&snapshot);
    let engine = Engine::new(
        &snapshot.cluster,
        snapshot::engine_options(&args.semantics, &snapshot),
    );
    let only = match &args.from {
        Some(r) => {
            let pods = engine
                .pods_for(&references::selection(
                    &engine,
                    r,
                    args.input.namespace.as_deref(),
                ))
                .context("--from")?;
            Some(
                pods.into_iter()
                    .map(|i| blast_radius::workload_key(&engine, i))
                    .collect(),
            )
        }
        None => None,
    };
    let target = args.target.as_deref().map(parse_selector).transpose()?;
    let report = blast_radius::blast_radius(
        &engine,
        &Options {
            hops: usize::from(args.hops),
            detail: only.is_some(),
            only,
            target,
        },
    );
    match args.output {
        BlastRadiusFormat::Json => {
            super::print(&format!("{:#}\n", serde_json::to_value(&report)?))?
        }
        BlastRadiusFormat::Text => super::print(&text(&report))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `app=db`, `tier=data,env=prod`, `app` (the label exists): kubectl's equality form.
pub fn parse_selector(text: &str) -> anyhow::Result<LabelSelector> {
    let mut requirements = Vec::new();
    for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let requirement = match term.split_once('=') {
            Some((k, v)) => Requirement {
                key: k.trim_end_matches('=').trim().to_string(),
                operator: Operator::In([v.trim_start_matches('=').trim().to_string()].into()),
            },
            None => Requirement {
                key: term.to_string(),
                operator: Operator::Exists,
            },
        };
        if requirement.key.is_empty() {
            bail!("--target {text:?}: expected KEY=VALUE[,KEY=VALUE] or KEY");
        }
        requirements.push(requirement);
    }
    if requirements.is_empty() {
        bail!("--target {text:?}: expected KEY=VALUE[,KEY=VALUE] or KEY");
    }
    Ok(LabelSelector::from_requirements(requirements))
}

fn percent(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

pub fn text(report: &BlastRadius) -> String {
    let k = report.hops;
    let mut out = format!(
        "{:<44} {:>12} {:>14} {:>10} {:>10}\n",
        "WORKLOAD",
        "PODS 1 HOP",
        format!("PODS {k} HOPS"),
        "WORKLOADS",
        "NAMESPACES"
    );
    for w in &report.workloads {
        let (Some(first), Some(last)) = (w.reach.first(), w.reach.last()) else {
            continue;
        };
        let _ = writeln!(
            out,
            "{:<44} {:>12} {:>14} {:>10} {:>10}",
            w.workload,
            format!("{} ({})", first.pods, percent(first.pods_share)),
            format!("{} ({})", last.pods, percent(last.pods_share)),
            last.workloads,
            last.namespaces
        );
    }
    let mut paths = String::new();
    for w in &report.workloads {
        for p in &w.paths {
            let _ = writeln!(
                paths,
                "{} -> {} in {} hop(s):",
                w.workload,
                p.target,
                p.hops.len()
            );
            for h in &p.hops {
                let _ = writeln!(paths, "  {h}");
                for r in &h.rules {
                    let _ = writeln!(paths, "      {r}");
                }
            }
        }
    }
    if !paths.is_empty() {
        out.push('\n');
        out.push_str(&paths);
    }
    let _ = writeln!(
        out,
        "\nscore {:.2} over {} workload(s), {} pod(s), {k} hop(s): 0 is fully segmented, 1 is flat",
        report.score,
        report.workloads.len(),
        report.pods
    );
    out
}
