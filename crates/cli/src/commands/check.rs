//! `bulkhead check`: validation diagnostics.

use crate::cli::{CheckArgs, CheckFormat};
use crate::render::diagnostics;
use crate::snapshot;
use bulkhead_model::Severity;
use std::process::ExitCode;

pub fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let snapshot = snapshot::load(&args.input);
    let found = &snapshot.diagnostics;
    match args.output {
        CheckFormat::Human => super::print(&diagnostics::human(found))?,
        CheckFormat::Json => super::print(&format!("{:#}\n", diagnostics::json(found)))?,
    }
    let failing = |d: &&bulkhead_model::Diagnostic| {
        d.severity == Severity::Error || (args.deny.is_some() && d.severity == Severity::Warning)
    };
    Ok(if found.iter().any(|d| failing(&d)) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn list_codes() -> String {
    let mut out = String::new();
    for c in bulkhead_k8s::codes::ALL {
        out.push_str(&format!(
            "{}  {:<26} {:<8} {}\n",
            c.code, c.name, c.severity, c.summary
        ));
    }
    out
}
