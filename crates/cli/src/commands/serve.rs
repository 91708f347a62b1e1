//! `bulkhead serve`: the web view. A thin async shell (axum on tokio) around the synchronous
//! engine and `bulkhead_analysis::view`; every answer is computed from one snapshot loaded at
//! start, and a what-if on a copy of it.

use crate::cli::{MapBy, MapFormat, ServeArgs};
use crate::commands::{explain, map};
use crate::render::diagnostics;
use crate::snapshot;
use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bulkhead_analysis::view::{self, Level};
use bulkhead_analysis::{Config, lint::resource};
use bulkhead_engine::{Aggregation, CompiledConnectivity, Engine, EngineOptions};
use bulkhead_k8s::{Input, Snapshot};
use serde::Deserialize;
use serde_json::{Value, json};
use std::process::ExitCode;
use std::sync::{Arc, OnceLock, RwLock};

/// The page: one self-contained file (no CDN, no build step).
const PAGE: &str = include_str!("../render/serve.html");

/// The largest what-if body accepted.
const WHAT_IF_LIMIT: usize = 1 << 20;

/// What one version of the input answers with: the snapshot, and the engine and identity map
/// that borrow it, kept together so that a change swaps all three.
struct Analyzed<'c> {
    engine: Engine<'c>,
    compiled: CompiledConnectivity,
}

self_cell::self_cell!(
    struct Loaded {
        owner: Snapshot,
        #[not_covariant]
        dependent: Analyzed,
    }
);

/// One version of the input.
struct Generation {
    loaded: Loaded,
    inputs: Vec<Input>,
    options: EngineOptions,
    /// `check -o json`, computed once (in the background: lint is the slowest part of
    /// loading a large cluster, and the graph does not wait for it).
    check: OnceLock<Value>,
    /// Bumped by every reload; the page follows it.
    revision: u64,
}

impl Generation {
    fn load(args: &ServeArgs, revision: u64) -> anyhow::Result<Generation> {
        let (snapshot, inputs) = snapshot::load_with_inputs(&args.input)?;
        snapshot::warn_about_errors(&snapshot);
        let options = snapshot::engine_options(&args.semantics, &snapshot);
        let loaded = Loaded::new(snapshot, |snapshot| {
            let engine = Engine::new(&snapshot.cluster, options);
            let compiled = engine.compile();
            Analyzed { engine, compiled }
        });
        Ok(Generation {
            loaded,
            inputs,
            options,
            check: OnceLock::new(),
            revision,
        })
    }

    fn snapshot(&self) -> &Snapshot {
        self.loaded.borrow_owner()
    }

    fn with<R>(&self, f: impl for<'c> FnOnce(&Engine<'c>, &CompiledConnectivity) -> R) -> R {
        self.loaded
            .with_dependent(|_, analyzed| f(&analyzed.engine, &analyzed.compiled))
    }
}

struct Served {
    current: RwLock<Arc<Generation>>,
    config: Config,
    namespace: Option<String>,
    title: String,
    /// Host header values requests may carry: the listen address as bound.
    hosts: Vec<String>,
}

impl Served {
    fn now(&self) -> Arc<Generation> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

type Shared = Arc<Served>;

pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = super::check::config(args.config.as_deref())?;
    let first = Generation::load(args, 0)?;
    config.engine = Some(first.options);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the server's runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let bound = listener.local_addr()?;
        let mut hosts = vec![bound.to_string()];
        if bound.ip().is_loopback() {
            hosts.push(format!("localhost:{}", bound.port()));
        }
        let (pods, policies) = (
            first.with(|engine, _| engine.pod_endpoints().len()),
            first.snapshot().cluster.policies.len(),
        );
        let served = Arc::new(Served {
            current: RwLock::new(Arc::new(first)),
            config,
            namespace: args.input.namespace.clone(),
            title: args.input.title(),
            hosts,
        });
        lint_in_background(&served);
        follow(served.clone(), args.clone());
        let app = router(served.clone());
        println!("serving {pods} pods and {policies} policies on http://{bound}/ (Ctrl-C to stop)");
        use std::io::Write as _;
        std::io::stdout().flush().ok();
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                tokio::signal::ctrl_c().await.ok();
            })
            .await
            .context("serving")?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn lint_in_background(served: &Shared) {
    let served = served.clone();
    std::thread::spawn(move || {
        let generation = served.now();
        generation
            .check
            .get_or_init(|| check_json(&generation, &served.config));
    });
}

/// Follows the input paths: a change reloads them and the page follows (the live view).
/// Stdin is read once.
fn follow(served: Shared, args: ServeArgs) {
    use notify::Watcher as _;
    let paths: Vec<std::path::PathBuf> = args
        .input
        .paths
        .iter()
        .filter(|p| p.as_os_str() != "-")
        .cloned()
        .collect();
    if paths.is_empty() {
        return;
    }
    std::thread::spawn(move || {
        let (tx, rx) = std::sync::mpsc::channel();
        let Ok(mut watcher) = notify::recommended_watcher(tx) else {
            eprintln!("note: cannot watch the input; the page shows it as loaded at start");
            return;
        };
        for path in &paths {
            if watcher
                .watch(path, notify::RecursiveMode::Recursive)
                .is_err()
            {
                eprintln!("note: cannot watch {}", path.display());
            }
        }
        let mut revision = 0;
        while let Ok(first) = rx.recv() {
            let mut relevant = is_complete_write(&first);
            // One save is several events: take them all before reloading.
            while let Ok(more) = rx.recv_timeout(std::time::Duration::from_millis(150)) {
                relevant |= is_complete_write(&more);
            }
            if !relevant {
                continue;
            }
            revision += 1;
            match Generation::load(&args, revision) {
                Ok(generation) => {
                    let (pods, policies) = (
                        generation.with(|engine, _| engine.pod_endpoints().len()),
                        generation.snapshot().cluster.policies.len(),
                    );
                    if let Ok(mut current) = served.current.write() {
                        *current = Arc::new(generation);
                    }
                    println!("reloaded: {pods} pods and {policies} policies (revision {revision})");
                    lint_in_background(&served);
                }
                Err(e) => eprintln!("reload failed, still showing the last version: {e:#}"),
            }
        }
        drop(watcher);
    });
}

/// A file closed after writing, renamed or removed: the input is complete again.
fn is_complete_write(event: &notify::Result<notify::Event>) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, ModifyKind};
    matches!(
        event.as_ref().map(|e| e.kind),
        Ok(EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(_))
            | EventKind::Remove(_))
    )
}

fn router(served: Shared) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/graph", get(graph))
        .route("/api/matrix", get(matrix))
        .route("/api/map", get(map_rows))
        .route("/api/explain", get(explain_flow))
        .route("/api/check", get(check))
        .route("/api/policies", get(policies))
        .route("/api/revision", get(revision))
        .route(
            "/api/what-if",
            post(what_if).layer(DefaultBodyLimit::max(WHAT_IF_LIMIT)),
        )
        .layer(middleware::from_fn_with_state(served.clone(), same_host))
        .with_state(served)
}

/// DNS-rebinding defence: a page on another origin that resolves its name to 127.0.0.1 sends
/// its own Host header, which is refused here.
async fn same_host(State(served): State<Shared>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !served.hosts.iter().any(|h| h == host) {
        return (
            StatusCode::FORBIDDEN,
            format!(
                "Host {host:?} is not this server's address ({}): refused as a DNS-rebinding defence\n",
                served.hosts.join(" or ")
            ),
        )
            .into_response();
    }
    next.run(request).await
}

fn bad_request(error: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        json_body(&json!({"error": error.to_string()})),
    )
        .into_response()
}

fn json_body(value: &Value) -> ([(header::HeaderName, &'static str); 1], String) {
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{value:#}\n"),
    )
}

async fn page(State(served): State<Shared>) -> Response {
    let title = html_escape(&served.title);
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        PAGE.replace("{{TITLE}}", &title),
    )
        .into_response()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[derive(Debug, Deserialize)]
struct GraphQuery {
    /// `namespaces` (default), `workloads` (with `id` = namespace), `pods` (with `id` =
    /// `ns/kind/name`).
    level: Option<String>,
    id: Option<String>,
}

async fn graph(State(served): State<Shared>, Query(q): Query<GraphQuery>) -> Response {
    let level = match (q.level.as_deref().unwrap_or("namespaces"), q.id) {
        ("namespaces", _) => Level::Namespaces,
        ("workloads", Some(namespace)) => Level::Workloads { namespace },
        ("pods", Some(workload)) => Level::Pods { workload },
        (other, _) => {
            return bad_request(format!(
                "level {other:?} needs to be namespaces, workloads&id=NS or pods&id=NS/KIND/NAME"
            ));
        }
    };
    let graph = served
        .now()
        .with(|engine, compiled| view::graph(engine, compiled, &level));
    json_body(&serde_json::to_value(graph).unwrap_or_default()).into_response()
}

#[derive(Debug, Deserialize)]
struct MatrixQuery {
    by: Option<String>,
}

async fn matrix(State(served): State<Shared>, Query(q): Query<MatrixQuery>) -> Response {
    let aggregation = match q.by.as_deref().unwrap_or("namespace") {
        "namespace" => Aggregation::Namespace,
        "workload" => Aggregation::Workload,
        other => return bad_request(format!("by={other:?}: namespace or workload")),
    };
    let matrix = served
        .now()
        .with(|engine, compiled| view::matrix(engine, compiled, aggregation));
    json_body(&serde_json::to_value(matrix).unwrap_or_default()).into_response()
}

#[derive(Debug, Deserialize)]
struct MapQuery {
    by: Option<String>,
    from: Option<String>,
    to: Option<String>,
    protocol: Option<String>,
    port: Option<String>,
}

/// `map -o json`, with the command's filters.
async fn map_rows(State(served): State<Shared>, Query(q): Query<MapQuery>) -> Response {
    let by = match q.by.as_deref().unwrap_or("pod") {
        "pod" => MapBy::Pod,
        "workload" => MapBy::Workload,
        "namespace" => MapBy::Namespace,
        other => return bad_request(format!("by={other:?}: pod, workload or namespace")),
    };
    let rendered = served.now().with(|engine, compiled| {
        let filter = map::filter(
            engine,
            &map::FilterArgs {
                from: q.from.as_deref(),
                to: q.to.as_deref(),
                protocol: q.protocol.as_deref(),
                port: q.port.as_deref(),
                namespace: served.namespace.as_deref(),
            },
        )?;
        anyhow::Ok(map::render_compiled(
            engine,
            compiled,
            by,
            MapFormat::Json,
            filter,
            &served.title,
        ))
    });
    match rendered {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(e) => bad_request(format!("{e:#}")),
    }
}

#[derive(Debug, Deserialize)]
struct ExplainQuery {
    from: String,
    to: String,
    port: Option<String>,
    protocol: Option<String>,
    /// `text`: the words `explain` prints; JSON otherwise.
    format: Option<String>,
}

/// `explain -o json` (or its text) for one flow.
async fn explain_flow(State(served): State<Shared>, Query(q): Query<ExplainQuery>) -> Response {
    let query = explain::Query {
        from: &q.from,
        to: &q.to,
        protocol: q.protocol.as_deref().unwrap_or("TCP"),
        port: q.port.as_deref(),
        icmp: None,
        namespace: served.namespace.as_deref(),
    };
    let generation = served.now();
    if q.format.as_deref() == Some("text") {
        return match generation.with(|engine, _| explain::text(engine, &query)) {
            Ok(text) => {
                ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
            }
            Err(e) => (StatusCode::BAD_REQUEST, format!("{e:#}\n")).into_response(),
        };
    }
    match generation.with(|engine, _| explain::json(engine, &query)) {
        Ok(value) => json_body(&value).into_response(),
        Err(e) => bad_request(format!("{e:#}")),
    }
}

fn check_json(generation: &Generation, config: &Config) -> Value {
    let mut config = config.clone();
    config.engine = Some(generation.options);
    let snapshot = generation.snapshot();
    let mut found = snapshot.diagnostics.clone();
    let mut findings = bulkhead_analysis::lint(&snapshot.cluster, &config);
    snapshot::fill_source_lines(&mut findings, &generation.inputs);
    found.extend(findings);
    found.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    diagnostics::json(&found)
}

/// `check -o json` (waits for the start-up lint when it is still running).
async fn check(State(served): State<Shared>) -> Response {
    let answer = tokio::task::spawn_blocking(move || {
        let generation = served.now();
        generation
            .check
            .get_or_init(|| check_json(&generation, &served.config))
            .clone()
    })
    .await;
    match answer {
        Ok(value) => json_body(&value).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The YAML document an object was written in: the lines between the `---` separators around
/// its first line.
fn document_at(text: &str, line: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let at = line.saturating_sub(1).min(lines.len());
    let is_separator = |l: &str| l.starts_with("---");
    let start = (0..at)
        .rev()
        .find(|&i| is_separator(lines[i]))
        .map_or(0, |i| i + 1);
    let end = (at..lines.len())
        .find(|&i| is_separator(lines[i]))
        .unwrap_or(lines.len());
    let mut out = lines[start..end].join("\n");
    out.push('\n');
    out
}

/// Every policy with where it is written and its YAML, for the what-if editor.
/// The input's revision: 0 as loaded at start, one more for every reload.
async fn revision(State(served): State<Shared>) -> Response {
    json_body(&json!({ "revision": served.now().revision })).into_response()
}

async fn policies(State(served): State<Shared>) -> Response {
    let generation = served.now();
    let rows: Vec<Value> = generation
        .snapshot()
        .cluster
        .policies
        .iter()
        .map(|p| {
            let yaml = p.source.as_ref().and_then(|s| {
                generation
                    .inputs
                    .iter()
                    .find(|i| *i.name == *s.file)
                    .map(|i| document_at(&i.text, s.line))
            });
            json!({
                "resource": resource(p.kind.as_str(), p.namespace.as_deref(), &p.name),
                "kind": p.kind.as_str(),
                "namespace": p.namespace,
                "name": p.name,
                "file": p.source.as_ref().map(|s| s.file.to_string()),
                "line": p.source.as_ref().map(|s| s.line),
                "yaml": yaml,
            })
        })
        .collect();
    json_body(&json!({ "policies": rows })).into_response()
}

#[derive(Debug, Deserialize)]
struct WhatIfBody {
    #[serde(default)]
    yaml: String,
    #[serde(default)]
    delete: Vec<String>,
}

/// A change tried on a copy: the body is YAML (objects added, or replacing the object of the
/// same kind, namespace and name), or JSON `{"yaml": "...", "delete": ["Kind ns/name"]}`.
async fn what_if(State(served): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let json_request = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let request = if json_request {
        match serde_json::from_slice::<WhatIfBody>(&body) {
            Ok(r) => r,
            Err(e) => return bad_request(format!("the JSON body is not {{yaml, delete}}: {e}")),
        }
    } else {
        match String::from_utf8(body.to_vec()) {
            Ok(yaml) => WhatIfBody {
                yaml,
                delete: Vec::new(),
            },
            Err(_) => return bad_request("the body is not UTF-8 text"),
        }
    };
    let served = served.clone();
    // The engine work is synchronous and may take a while on a large cluster.
    let answer = tokio::task::spawn_blocking(move || compute_what_if(&served, &request)).await;
    match answer {
        Ok(value) => json_body(&value).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn compute_what_if(served: &Served, request: &WhatIfBody) -> Value {
    let patch = if request.yaml.trim().is_empty() {
        None
    } else {
        let options = bulkhead_k8s::LoadOptions {
            default_namespace: served.namespace.clone().unwrap_or_else(|| "default".into()),
        };
        Some(bulkhead_k8s::load(
            &[Input::new("what-if.yaml", request.yaml.clone())],
            &options,
        ))
    };
    let errors: Vec<&bulkhead_model::Diagnostic> = patch
        .iter()
        .flat_map(|p| &p.diagnostics)
        .filter(|d| d.severity == bulkhead_model::Severity::Error)
        .collect();
    if !errors.is_empty() {
        return json!({
            "errors": diagnostics::json(&errors.into_iter().cloned().collect::<Vec<_>>())["diagnostics"],
            "added": [], "removed": [], "findings": [],
        });
    }
    let change = view::Change {
        patch: patch.as_ref().map(|p| &p.cluster),
        delete: &request.delete,
    };
    let generation = served.now();
    let head = view::apply(&generation.snapshot().cluster, &change);
    let result = generation
        .with(|engine, _| view::what_if(engine, &head, &served.config, generation.options));
    let rows = |changes: &[bulkhead_analysis::diff::Change]| -> Vec<Value> {
        changes
            .iter()
            .map(|c| json!({"from": c.from, "to": c.to, "protocol": c.protocol.to_string(), "ports": c.ports.to_string(), "policies": c.policies}))
            .collect()
    };
    json!({
        "errors": [],
        "added": rows(&result.diff.added),
        "removed": rows(&result.diff.removed),
        "findings": diagnostics::json(&result.findings)["diagnostics"],
    })
}
