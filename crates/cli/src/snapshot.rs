//! Loading input for a command and building the engine the flags ask for.

use crate::cli::{InputArgs, SemanticsArgs, SemanticsChoice};
use bulkhead_engine::{Engine, EngineOptions, Semantics};
use bulkhead_k8s::{LoadOptions, Snapshot};
use std::io::IsTerminal as _;

/// Reads the paths; a path that cannot be read (missing, a FIFO, a device, not text) is an
/// input error (exit 2), never an empty result. Skipped entries stay diagnostics (warnings).
pub fn read(
    paths: &[std::path::PathBuf],
) -> anyhow::Result<(Vec<bulkhead_k8s::Input>, Vec<bulkhead_model::Diagnostic>)> {
    let (inputs, diagnostics) = bulkhead_k8s::read_paths(paths);
    let unreadable: Vec<&str> = diagnostics
        .iter()
        .filter(|d| d.code == bulkhead_k8s::codes::IO_ERROR.code)
        .map(|d| d.message.as_str())
        .collect();
    if !unreadable.is_empty() {
        anyhow::bail!("{}", unreadable.join("\nerror: "));
    }
    Ok((inputs, diagnostics))
}

/// The inputs of a command: the live cluster (when asked for) and then the paths.
pub fn read_input(
    input: &InputArgs,
) -> anyhow::Result<(Vec<bulkhead_k8s::Input>, Vec<bulkhead_model::Diagnostic>)> {
    let mut inputs = if input.cluster.is_live() {
        read_live(&input.cluster)?
    } else {
        Vec::new()
    };
    let (mut files, diagnostics) = if input.paths.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        read(&input.paths)?
    };
    inputs.append(&mut files);
    Ok((inputs, diagnostics))
}

/// The cluster's objects through the Kubernetes API, one input per object. Lists are paged;
/// a large cluster gets a progress line (on a terminal) and one line when done.
pub fn read_live(cluster: &crate::cli::ClusterArgs) -> anyhow::Result<Vec<bulkhead_k8s::Input>> {
    let target = bulkhead_kube::Target {
        kubeconfig: cluster.kubeconfig.clone(),
        context: cluster.context.clone(),
    };
    let started = std::time::Instant::now();
    let interactive = std::io::stderr().is_terminal();
    let mut shown = false;
    let mut progress = |p: bulkhead_kube::Progress<'_>| {
        if interactive && p.total > LARGE_LIST {
            shown = true;
            eprint!("\rlisting {}: {} of {}\x1b[K", p.kind, p.listed, p.total);
        }
    };
    let read = bulkhead_kube::read_cluster(&target, &mut progress)?;
    if shown {
        eprint!("\r\x1b[K");
    }
    if read.inputs.len() > LARGE_LIST {
        eprintln!(
            "read {} object(s) from {} in {:.1} s",
            read.inputs.len(),
            read.server,
            started.elapsed().as_secs_f64()
        );
    }
    if !read.absent.is_empty() {
        eprintln!(
            "info: the cluster does not serve {}; skipped",
            read.absent.join(", ")
        );
    }
    Ok(read.inputs)
}

/// More objects than this in one kind (or in all) is a large cluster: progress is shown.
const LARGE_LIST: usize = 2_000;

/// Loads and also returns the inputs, for findings that need their source lines.
pub fn load_with_inputs(input: &InputArgs) -> anyhow::Result<(Snapshot, Vec<bulkhead_k8s::Input>)> {
    let started = std::time::Instant::now();
    let (inputs, mut io_diagnostics) = read_input(input)?;
    let bytes: usize = inputs.iter().map(|i| i.text.len()).sum();
    let interactive = std::io::stderr().is_terminal();
    if interactive && bytes > PROGRESS_BYTES {
        eprintln!(
            "loading {} file(s), {:.1} MB...",
            inputs.len(),
            bytes as f64 / 1e6
        );
    }
    let mut snapshot = bulkhead_k8s::load(
        &inputs,
        &LoadOptions {
            default_namespace: input.namespace().to_string(),
        },
    );
    if interactive && bytes > PROGRESS_BYTES {
        let objects: usize = snapshot.object_counts.values().sum();
        eprintln!(
            "loaded {objects} object(s) in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    io_diagnostics.append(&mut snapshot.diagnostics);
    snapshot.diagnostics = io_diagnostics;
    Ok((snapshot, inputs))
}

/// Above this much input, an interactive user is told what is being loaded (it takes seconds).
const PROGRESS_BYTES: usize = 5_000_000;

/// Fills in the source line of diagnostics located by file and line (lint findings point at
/// objects; the renderer shows the line with a caret).
pub fn fill_source_lines(
    diagnostics: &mut [bulkhead_model::Diagnostic],
    inputs: &[bulkhead_k8s::Input],
) {
    let mut by_name: std::collections::HashMap<&str, &bulkhead_k8s::Input> =
        std::collections::HashMap::new();
    for input in inputs {
        // The first input of a name, as before.
        by_name.entry(input.name.as_str()).or_insert(input);
    }
    for d in diagnostics {
        if d.source_line.is_some() {
            continue;
        }
        if let Some(location) = &d.location
            && let Some(input) = by_name.get(&*location.file)
            && let Some(line) = input.line(location.line)
            && line.len() <= bulkhead_k8s::document::MAX_SOURCE_LINE
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

/// Loads for a command that computes verdicts: problems with the input as a whole (nothing
/// to read, a Kustomize directory, skipped entries) are said on stderr, since the command's
/// output would otherwise just be empty.
pub fn load(input: &InputArgs) -> anyhow::Result<Snapshot> {
    let snapshot = load_with_inputs(input)?.0;
    warn_about_input(&snapshot);
    Ok(snapshot)
}

/// The input-level warnings (`BH014` skipped entry, `BH016` Kustomize source, `BH017` empty).
pub fn warn_about_input(snapshot: &Snapshot) {
    use bulkhead_k8s::codes;
    for d in &snapshot.diagnostics {
        if [
            codes::SKIPPED_ENTRY.code,
            codes::KUSTOMIZE_SOURCE.code,
            codes::EMPTY_INPUT.code,
        ]
        .contains(&d.code)
        {
            eprintln!("warning: {}", d.message);
            if let Some(help) = &d.help {
                eprintln!("  help: {help}");
            }
        }
    }
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
