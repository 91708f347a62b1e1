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
    let protocol: Protocol = args.protocol.parse().context("--protocol")?;
    if protocol.has_ports() && args.port.is_none() {
        bail!("--port is required for {protocol}");
    }
    let namespace = args.input.namespace.as_deref();
    let from = engine
        .resolve(&references::endpoint(&engine, &args.from, namespace))
        .context("--from")?;
    let to = engine
        .resolve(&references::endpoint(&engine, &args.to, namespace))
        .context("--to")?;
    let destination: Vec<usize> = match to.endpoint {
        bulkhead_engine::Endpoint::Pod(i) => vec![i],
        _ => Vec::new(),
    };
    let port = match &args.port {
        Some(value) if protocol.has_ports() => {
            Some(references::port(&engine, value, &destination, protocol)?)
        }
        _ => None,
    };
    let flow = Flow {
        src: from.endpoint,
        dst: to.endpoint,
        protocol,
        port,
        icmp: args.icmp_type.map(|t| (t, args.icmp_code)),
    };
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
