//! `bulkhead map`: who can talk to whom.

use crate::cli::{MapArgs, MapBy, MapFormat};
use crate::render::map;
use crate::snapshot;
use bulkhead_engine::{Aggregation, ConnectivityOptions, Engine};
use std::process::ExitCode;

pub fn run(args: &MapArgs) -> anyhow::Result<ExitCode> {
    let snapshot = snapshot::load(&args.input);
    snapshot::warn_about_errors(&snapshot);
    let engine = Engine::new(
        &snapshot.cluster,
        snapshot::engine_options(&args.semantics, &snapshot),
    );
    super::print(&render(&engine, args.by, args.output))?;
    Ok(ExitCode::SUCCESS)
}

pub fn render(engine: &Engine<'_>, by: MapBy, format: MapFormat) -> String {
    let aggregation = match by {
        MapBy::Pod => Aggregation::Pod,
        MapBy::Workload => Aggregation::Workload,
        MapBy::Namespace => Aggregation::Namespace,
    };
    let connections = engine.connectivity(&ConnectivityOptions { aggregation });
    let grouped = aggregation != Aggregation::Pod;
    match format {
        MapFormat::Table => map::table(&connections, grouped),
        MapFormat::Json => format!("{:#}\n", map::json(&connections, grouped)),
        MapFormat::Csv => map::csv(&connections),
        MapFormat::Dot => map::dot(&connections),
        MapFormat::Mermaid => map::mermaid(&connections),
    }
}
