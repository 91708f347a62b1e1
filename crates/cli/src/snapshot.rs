//! Loading input for a command and building the engine the flags ask for.

use crate::cli::{InputArgs, SemanticsArgs, SemanticsChoice};
use bulkhead_engine::{Engine, EngineOptions, Semantics};
use bulkhead_k8s::{LoadOptions, Snapshot};

/// Loads and also returns the inputs, for findings that need their source lines.
pub fn load_with_inputs(input: &InputArgs) -> (Snapshot, Vec<bulkhead_k8s::Input>) {
    let (inputs, mut io_diagnostics) = bulkhead_k8s::read_paths(&input.paths);
    let mut snapshot = bulkhead_k8s::load(
        &inputs,
        &LoadOptions {
            default_namespace: input.namespace.clone(),
        },
    );
    io_diagnostics.append(&mut snapshot.diagnostics);
    snapshot.diagnostics = io_diagnostics;
    (snapshot, inputs)
}

/// Fills in the source line of diagnostics located by file and line (lint findings point at
/// objects; the renderer shows the line with a caret).
pub fn fill_source_lines(
    diagnostics: &mut [bulkhead_model::Diagnostic],
    inputs: &[bulkhead_k8s::Input],
) {
    for d in diagnostics {
        if d.source_line.is_some() {
            continue;
        }
        if let Some(location) = &d.location
            && let Some(input) = inputs.iter().find(|i| i.name == location.file)
            && let Some(line) = input.line(location.line)
        {
            d.length = line
                .trim_end()
                .len()
                .saturating_sub(location.column.saturating_sub(1))
                .max(1);
            d.source_line = Some(line.to_string());
        }
    }
}

pub fn load(input: &InputArgs) -> Snapshot {
    let (inputs, mut io_diagnostics) = bulkhead_k8s::read_paths(&input.paths);
    let mut snapshot = bulkhead_k8s::load(
        &inputs,
        &LoadOptions {
            default_namespace: input.namespace.clone(),
        },
    );
    io_diagnostics.append(&mut snapshot.diagnostics);
    snapshot.diagnostics = io_diagnostics;
    snapshot
}

pub fn engine_options(args: &SemanticsArgs, snapshot: &Snapshot) -> EngineOptions {
    let detected = Engine::auto_semantics(&snapshot.cluster);
    let semantics = match args.semantics {
        SemanticsChoice::Calico => Semantics::Calico,
        SemanticsChoice::Kubernetes => {
            if detected == Semantics::Calico {
                eprintln!(
                    "warning: --semantics kubernetes ignores the Calico policies, tiers and network sets in the input"
                );
            }
            Semantics::Kubernetes
        }
        SemanticsChoice::Auto => detected,
    };
    EngineOptions {
        semantics,
        self_traffic_allowed: !args.no_self_traffic,
    }
}

/// Tells the user on stderr that the verdicts rest on input with errors.
pub fn warn_about_errors(snapshot: &Snapshot) {
    let errors = snapshot.error_count();
    if errors > 0 {
        eprintln!(
            "warning: the input has {errors} error(s); objects with errors are left out of the verdicts (run `bulkhead check` for details)"
        );
    }
}
