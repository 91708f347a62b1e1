//! `bulkhead report`: the security review document.

use crate::cli::{ReportArgs, ReportFormat};
use crate::render::report;
use crate::snapshot;
use bulkhead_analysis::report::ReportOptions;
use bulkhead_engine::Engine;
use std::process::ExitCode;

pub fn run(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let snapshot = snapshot::load(&args.input)?;
    snapshot::warn_about_errors(&snapshot);
    let engine = Engine::new(
        &snapshot.cluster,
        snapshot::engine_options(&args.semantics, &snapshot),
    );
    let cde = args
        .cde
        .as_deref()
        .map(super::blast_radius::parse_selector)
        .transpose()?;
    let r = bulkhead_analysis::report::report(
        &engine,
        &ReportOptions {
            hops: usize::from(args.hops),
            cde,
        },
    );
    let title = args.input.title();
    match args.output {
        ReportFormat::Markdown => super::print(&report::markdown(&r, &title))?,
        ReportFormat::Html => super::print(&report::html(&r, &title))?,
        ReportFormat::Json => super::print(&format!("{:#}\n", serde_json::to_value(&r)?))?,
    }
    Ok(ExitCode::SUCCESS)
}
