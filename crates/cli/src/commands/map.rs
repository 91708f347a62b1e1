//! `bulkhead map`: who can talk to whom.

use crate::cli::{MapArgs, MapBy, MapFormat};
use crate::references;
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
    let filter = filter(
        &engine,
        &FilterArgs {
            from: args.from.as_deref(),
            to: args.to.as_deref(),
            protocol: args.protocol.as_deref(),
            port: args.port.as_deref(),
            namespace: args.input.namespace.as_deref(),
        },
    )?;
    let by = match args.by {
        Some(by) => by,
        None if args.output == MapFormat::Html => readable_level(&engine),
        None => MapBy::Pod,
    };
    let title = args.input.title();
    super::print(&render_filtered(&engine, by, args.output, filter, &title))?;
    super::keep_until_exit(engine);
    super::keep_until_exit(snapshot);
    Ok(ExitCode::SUCCESS)
}

/// The filters of `map` as the user writes them (short references, port names).
#[derive(Debug, Default)]
pub struct FilterArgs<'a> {
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub protocol: Option<&'a str>,
    pub port: Option<&'a str>,
    pub namespace: Option<&'a str>,
}

/// Resolves the filters, with the command's errors for what does not resolve.
pub fn filter(engine: &Engine<'_>, args: &FilterArgs<'_>) -> anyhow::Result<Filter> {
    let cluster = engine.cluster();
    let namespace = args.namespace;
    let select = |r: &str| engine.pods_for(&references::selection(engine, r, namespace));
    let from = args.from.map(select).transpose().context("--from")?;
    let to = args.to.map(select).transpose().context("--to")?;
    let protocol = args
        .protocol
        .map(str::parse::<Protocol>)
        .transpose()
        .context("--protocol")?;
    // A named port may mean a different number on each destination: the rows are narrowed
    // per destination to the number it declares under that name.
    let (port, port_name) = match args.port {
        Some(value)
            if value.parse::<u16>().is_err() && !value.chars().all(|c| c.is_ascii_digit()) =>
        {
            let destinations = to.clone().unwrap_or_else(|| engine.pod_endpoints());
            // Fails with the declared names when no destination has this one.
            let declared = destinations.iter().any(|&i| {
                cluster.pods[i].ports.iter().any(|p| {
                    p.name.as_deref() == Some(value) && protocol.is_none_or(|q| q == p.protocol)
                })
            });
            if !declared {
                references::port(
                    engine,
                    value,
                    &destinations,
                    protocol.unwrap_or(Protocol::Tcp),
                )?;
            }
            (None, Some(value.to_string()))
        }
        Some(value) => (
            Some(references::port(engine, value, &[], Protocol::Tcp)?),
            None,
        ),
        None => (None, None),
    };
    Ok(Filter {
        from,
        to,
        protocol,
        port,
        port_name,
    })
}

/// The row filters of `map` (`--from`, `--to`, `--protocol`, `--port`).
#[derive(Debug, Default)]
pub struct Filter {
    pub from: Option<Vec<usize>>,
    pub to: Option<Vec<usize>>,
    pub protocol: Option<Protocol>,
    pub port: Option<u16>,
    /// A port name: each row keeps the number its destination declares under it.
    pub port_name: Option<String>,
}

/// Keeps, in each row, only the number the destination's pods declare under `name` for the
/// row's protocol (a grouped row: any of its members' numbers).
fn narrow_to_named_port(
    engine: &Engine<'_>,
    aggregation: Aggregation,
    name: &str,
    connections: &mut Vec<bulkhead_engine::Connection>,
) {
    use bulkhead_model::{PortRange, PortSet};
    let cluster = engine.cluster();
    let mut declared: std::collections::BTreeMap<(String, Protocol), PortSet> = Default::default();
    for i in engine.pod_endpoints() {
        let p = &cluster.pods[i];
        let group = aggregation.group_of(p);
        for port in p.ports.iter().filter(|x| x.name.as_deref() == Some(name)) {
            let slot = declared.entry((group.clone(), port.protocol)).or_default();
            *slot = slot.union(&PortSet::from_ranges([PortRange::single(port.port)]));
        }
    }
    connections.retain_mut(|c| {
        let Some(numbers) = declared.get(&(c.to.clone(), c.protocol)) else {
            return false;
        };
        c.ports = c.ports.intersection(numbers);
        c.ports_all_pairs = c.ports_all_pairs.intersection(numbers);
        !c.ports.is_empty()
    });
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
    render_compiled(engine, &engine.compile(), by, format, filter, title)
}

/// [`render_filtered`] on an identity map computed before (the server keeps one).
pub fn render_compiled(
    engine: &Engine<'_>,
    compiled: &bulkhead_engine::CompiledConnectivity,
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
        .filter(|_| format == MapFormat::Html)
        .filter(|i| {
            let chosen = |set: &Option<Vec<usize>>| set.as_ref().is_some_and(|s| s.contains(i));
            (filter.from.is_none() && filter.to.is_none())
                || chosen(&filter.from)
                || chosen(&filter.to)
        })
        .map(|i| aggregation.group_of(&cluster.pods[i]))
        .collect();
    let options = ConnectivityOptions {
        aggregation,
        from: filter.from,
        to: filter.to,
        protocol: filter.protocol,
        port: filter.port,
    };
    let mut connections = engine.connectivity_from(compiled, &options);
    // "What can X reach?" includes the outside: the external address ranges X's egress
    // allows (explain to 8.8.8.8 says ALLOW, so the map must say so too).
    if options.from.is_some() && options.to.is_none() && filter.port_name.is_none() {
        connections.extend(engine.external_connectivity(&options));
    }
    if let Some(name) = &filter.port_name {
        narrow_to_named_port(engine, aggregation, name, &mut connections);
    }
    let grouped = aggregation != Aggregation::Pod;
    match format {
        MapFormat::Table => map::table(&connections, grouped),
        MapFormat::Json => map::json(&connections, grouped),
        MapFormat::Csv => map::csv(&connections),
        MapFormat::Dot => map::dot(&connections),
        MapFormat::Mermaid => map::mermaid(&connections),
        MapFormat::Html => crate::render::map_html::page(title, &endpoints, &connections),
    }
}

/// The most nodes a static page draws one by one before it groups them.
const HTML_NODES: usize = 250;

/// The finest level whose rows fit on a static page, said on stderr when it is not pods.
fn readable_level(engine: &Engine<'_>) -> MapBy {
    let cluster = engine.cluster();
    let endpoints = engine.pod_endpoints();
    let count = |a: Aggregation| {
        endpoints
            .iter()
            .map(|&i| a.group_of(&cluster.pods[i]))
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    let pods = endpoints.len();
    if pods <= HTML_NODES {
        return MapBy::Pod;
    }
    let workloads = count(Aggregation::Workload);
    let (by, level) = if workloads <= HTML_NODES {
        (MapBy::Workload, "workloads")
    } else {
        (MapBy::Namespace, "namespaces")
    };
    eprintln!(
        "note: {pods} pods are too many to draw one by one; the page shows {level} (--by pod forces pods; `bulkhead serve` drills down)"
    );
    by
}
