//! `bulkhead explain`: one flow, its verdict and the rules behind it.

use crate::cli::{ExplainArgs, ExplainFormat};
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
    if args.port == Some(0) {
        bail!("--port must be between 1 and 65535");
    }
    let from = engine.resolve(&args.from).context("--from")?;
    let to = engine.resolve(&args.to).context("--to")?;
    let flow = Flow {
        src: from.endpoint,
        dst: to.endpoint,
        protocol,
        port: if protocol.has_ports() {
            args.port
        } else {
            None
        },
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
