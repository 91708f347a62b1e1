//! `bulkhead map`: who can talk to whom.

use crate::cli::{MapArgs, MapBy, MapFormat};
use crate::render::map;
use crate::snapshot;
use anyhow::Context as _;
use bulkhead_engine::{Aggregation, ConnectivityOptions, Engine};
use bulkhead_model::Protocol;
use std::process::ExitCode;

pub fn run(args: &MapArgs) -> anyhow::Result<ExitCode> {
    let snapshot = snapshot::load(&args.input)?;
    snapshot::warn_about_errors(&snapshot);
    let engine = Engine::new(
        &snapshot.cluster,
        snapshot::engine_options(&args.semantics, &snapshot),
    );
    let filter = Filter {
        from: args
            .from
            .as_deref()
            .map(|r| engine.pods_for(r))
            .transpose()
            .context("--from")?,
        to: args
            .to
            .as_deref()
            .map(|r| engine.pods_for(r))
            .transpose()
            .context("--to")?,
        protocol: args
            .protocol
            .as_deref()
            .map(str::parse::<Protocol>)
            .transpose()
            .context("--protocol")?,
        port: args.port,
    };
    let title: Vec<String> = args
        .input
        .paths
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    super::print(&render_filtered(
        &engine,
        args.by,
        args.output,
        filter,
        &title.join(" "),
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// The row filters of `map` (`--from`, `--to`, `--protocol`, `--port`).
#[derive(Debug, Default)]
pub struct Filter {
    pub from: Option<Vec<usize>>,
    pub to: Option<Vec<usize>>,
    pub protocol: Option<Protocol>,
    pub port: Option<u16>,
}

pub fn render(engine: &Engine<'_>, by: MapBy, format: MapFormat) -> String {
    render_filtered(engine, by, format, Filter::default(), "demo")
}

pub fn render_filtered(
    engine: &Engine<'_>,
    by: MapBy,
    format: MapFormat,
    filter: Filter,
    title: &str,
) -> String {
    let aggregation = match by {
        MapBy::Pod => Aggregation::Pod,
        MapBy::Workload => Aggregation::Workload,
        MapBy::Namespace => Aggregation::Namespace,
    };
    // Every endpoint the map is about, also those nothing reaches (for the page).
    let cluster = engine.cluster();
    let endpoints: Vec<String> = engine
        .pod_endpoints()
        .into_iter()
        .filter(|i| {
            let chosen = |set: &Option<Vec<usize>>| set.as_ref().is_some_and(|s| s.contains(i));
            (filter.from.is_none() && filter.to.is_none())
                || chosen(&filter.from)
                || chosen(&filter.to)
        })
        .map(|i| {
            let p = &cluster.pods[i];
            match aggregation {
                Aggregation::Pod => p.key(),
                Aggregation::Workload => format!("{}/{}", p.namespace, p.workload),
                Aggregation::Namespace => p.namespace.clone(),
            }
        })
        .collect();
    let options = ConnectivityOptions {
        aggregation,
        from: filter.from,
        to: filter.to,
        protocol: filter.protocol,
        port: filter.port,
    };
    let mut connections = engine.connectivity(&options);
    // "What can X reach?" includes the outside: the external address ranges X's egress
    // allows (explain to 8.8.8.8 says ALLOW, so the map must say so too).
    if options.from.is_some() && options.to.is_none() {
        connections.extend(engine.external_connectivity(&options));
    }
    let grouped = aggregation != Aggregation::Pod;
    match format {
        MapFormat::Table => map::table(&connections, grouped),
        MapFormat::Json => format!("{:#}\n", map::json(&connections, grouped)),
        MapFormat::Csv => map::csv(&connections),
        MapFormat::Dot => map::dot(&connections),
        MapFormat::Mermaid => map::mermaid(&connections),
        MapFormat::Html => crate::render::map_html::page(title, &endpoints, &connections),
    }
}
