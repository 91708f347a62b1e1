//! `bulkhead explain`: one flow, its verdict and the rules behind it.

use crate::cli::{ExplainArgs, ExplainFormat};
use crate::references;
use crate::render::explain::{self, Explained};
use crate::snapshot;
use anyhow::{Context as _, bail};
use bulkhead_engine::{Engine, Flow};
use bulkhead_model::Protocol;
use std::process::ExitCode;

pub fn run(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let snapshot = snapshot::load(&args.input)?;
    snapshot::warn_about_errors(&snapshot);
    let engine = Engine::new(
        &snapshot.cluster,
        snapshot::engine_options(&args.semantics, &snapshot),
    );
    let query = Query {
        from: &args.from,
        to: &args.to,
        protocol: &args.protocol,
        port: args.port.as_deref(),
        icmp: args.icmp_type.map(|t| (t, args.icmp_code)),
        namespace: args.input.namespace.as_deref(),
    };
    let (from, to, flow) = resolve(&engine, &query)?;
    let verdict = engine.evaluate(&flow);
    let explained = Explained {
        from: &from,
        to: &to,
        flow: &flow,
        verdict: &verdict,
    };
    match args.output {
        ExplainFormat::Human => super::print(&explain::human(&explained))?,
        ExplainFormat::Json => super::print(&format!("{:#}\n", explain::json(&explained)))?,
    }
    Ok(if args.fail_on_deny && !verdict.allowed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// One `explain` question as the user writes it (short references, named ports).
#[derive(Debug)]
pub struct Query<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub protocol: &'a str,
    pub port: Option<&'a str>,
    pub icmp: Option<(u8, Option<u8>)>,
    pub namespace: Option<&'a str>,
}

/// The endpoints and the flow a query names, with the CLI's errors for what does not resolve.
pub fn resolve(
    engine: &Engine<'_>,
    query: &Query<'_>,
) -> anyhow::Result<(bulkhead_engine::Resolved, bulkhead_engine::Resolved, Flow)> {
    let protocol: Protocol = query.protocol.parse().context("--protocol")?;
    if protocol.has_ports() && query.port.is_none() {
        bail!("--port is required for {protocol}");
    }
    let from = engine
        .resolve(&references::endpoint(engine, query.from, query.namespace))
        .context("--from")?;
    let to = engine
        .resolve(&references::endpoint(engine, query.to, query.namespace))
        .context("--to")?;
    let destination: Vec<usize> = match to.endpoint {
        bulkhead_engine::Endpoint::Pod(i) => vec![i],
        _ => Vec::new(),
    };
    let port = match query.port {
        Some(value) if protocol.has_ports() => {
            Some(references::port(engine, value, &destination, protocol)?)
        }
        _ => None,
    };
    let flow = Flow {
        src: from.endpoint,
        dst: to.endpoint,
        protocol,
        port,
        icmp: query.icmp,
    };
    Ok((from, to, flow))
}

/// `explain -o json` for a query: the same document the command prints.
pub fn json(engine: &Engine<'_>, query: &Query<'_>) -> anyhow::Result<serde_json::Value> {
    let (from, to, flow) = resolve(engine, query)?;
    let verdict = engine.evaluate(&flow);
    Ok(explain::json(&Explained {
        from: &from,
        to: &to,
        flow: &flow,
        verdict: &verdict,
    }))
}

/// The words `explain` prints for a query.
pub fn text(engine: &Engine<'_>, query: &Query<'_>) -> anyhow::Result<String> {
    let (from, to, flow) = resolve(engine, query)?;
    let verdict = engine.evaluate(&flow);
    Ok(explain::human(&Explained {
        from: &from,
        to: &to,
        flow: &flow,
        verdict: &verdict,
    }))
}
