//! `bulkhead compile` and `bulkhead agent`: the dataplane commands.

use crate::cli::{AgentAction, AgentArgs, CompileArgs, FlowsOutput, Switch};
use crate::snapshot;
use anyhow::{Context as _, bail};
use bulkhead_agent::{Agent, AgentConfig};
use bulkhead_engine::Engine;
use bulkhead_nft::{CompileOptions, Enforcement, Mode, NftCli};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

fn interfaces(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((pod, iface)) if pod.contains('/') && !iface.is_empty() => {
                Ok((pod.to_string(), iface.to_string()))
            }
            _ => bail!("--interface {p:?}: expected NS/POD=IFACE"),
        })
        .collect()
}

pub fn compile(args: &CompileArgs) -> anyhow::Result<ExitCode> {
    let snapshot = snapshot::load(&args.input)?;
    snapshot::warn_about_errors(&snapshot);
    check_node(&snapshot.cluster, &args.node)?;
    let engine = Engine::new(
        &snapshot.cluster,
        snapshot::engine_options(&args.semantics, &snapshot),
    );
    let map = bulkhead_agent::interfaces::for_node(
        &snapshot.cluster,
        &args.node,
        &interfaces(&args.interfaces)?,
    );
    let (mut ruleset, report) = bulkhead_nft::compile(
        &engine,
        &CompileOptions {
            node: args.node.clone(),
            interfaces: map,
            audit_namespaces: args.audit_namespaces.iter().cloned().collect(),
            pod_interface_prefixes: args.pod_interface_prefixes.clone(),
            pod_cidrs: args.pod_cidrs.clone(),
        },
    );
    ruleset.enforcement = Enforcement {
        mode: if args.audit {
            Mode::Audit
        } else {
            Mode::Enforce
        },
        log_denies: !args.no_deny_log,
        break_glass: false,
    };
    for pod in &report.pods_without_interface {
        eprintln!(
            "warning: no host interface known for {pod}; it is not enforced (use --interface {pod}=IFACE)"
        );
    }
    super::print(&bulkhead_nft::render::render(&ruleset))?;
    Ok(ExitCode::SUCCESS)
}

/// A ruleset for a node the input does not know is empty; say why instead of printing it.
fn check_node(cluster: &bulkhead_model::Cluster, node: &str) -> anyhow::Result<()> {
    let mut known: Vec<&str> = cluster
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .chain(cluster.pods.iter().filter_map(|p| p.node.as_deref()))
        .collect();
    known.sort_unstable();
    known.dedup();
    if known.is_empty() {
        bail!(
            "no pod in the input is placed on a node (no spec.nodeName) and no Node object is given, so node {node:?} has nothing to enforce; compile needs the live pods: kubectl get ns,nodes,pods,networkpolicies -A -o yaml | bulkhead compile - --node {node}"
        );
    }
    if !known.contains(&node) {
        bail!(
            "node {node:?} is not in the input; nodes known from Node objects and spec.nodeName: {}",
            known.join(", ")
        );
    }
    let local = cluster
        .pods
        .iter()
        .filter(|p| p.node.as_deref() == Some(node) && p.is_endpoint() && !p.host_network)
        .count();
    let with_ip = cluster
        .pods
        .iter()
        .filter(|p| {
            p.node.as_deref() == Some(node)
                && p.is_endpoint()
                && !p.host_network
                && !p.ips.is_empty()
        })
        .count();
    if with_ip == 0 {
        eprintln!(
            "warning: node {node:?} runs {local} pod(s) in the input and none has an IP (status.podIPs), so the ruleset enforces nothing yet"
        );
    }
    Ok(())
}

/// An agent that only touches the table as a whole (uninstall, break-glass).
fn table_agent(state_dir: &std::path::Path) -> Agent<NftCli> {
    Agent::new(
        AgentConfig {
            node: String::new(),
            manifests: Default::default(),
            interfaces: BTreeMap::new(),
            default_namespace: String::new(),
            tighten: false,
            mode: Mode::Enforce,
            audit_namespaces: Default::default(),
            log_denies: false,
            state_dir: state_dir.to_path_buf(),
            metrics_file: None,
            pod_interface_prefixes: Vec::new(),
            pod_cidrs: Vec::new(),
        },
        NftCli::default(),
    )
}

pub fn run(args: &AgentArgs) -> anyhow::Result<ExitCode> {
    let config = |args: &AgentArgs| -> anyhow::Result<AgentConfig> {
        Ok(AgentConfig {
            node: args.node.clone().context("--node is required")?,
            manifests: match (&args.manifests, args.kubernetes) {
                (Some(dir), _) => dir.clone(),
                (None, true) => std::path::PathBuf::new(),
                (None, false) => bail!("--manifests DIR or --kubernetes is required"),
            },
            interfaces: interfaces(&args.interfaces)?,
            default_namespace: args.namespace.clone(),
            tighten: !args.no_tighten,
            mode: if args.audit {
                Mode::Audit
            } else {
                Mode::Enforce
            },
            audit_namespaces: args.audit_namespaces.iter().cloned().collect(),
            log_denies: !args.no_deny_log,
            state_dir: args.state_dir.clone(),
            metrics_file: args.metrics_file.clone(),
            pod_interface_prefixes: args.pod_interface_prefixes.clone(),
            pod_cidrs: args.pod_cidrs.clone(),
        })
    };
    match &args.action {
        Some(AgentAction::Uninstall) => {
            let removed = table_agent(&args.state_dir).uninstall()?;
            eprintln!(
                "{}",
                if removed {
                    "removed table inet bulkhead"
                } else {
                    "no Bulkhead table on this node"
                }
            );
            return Ok(ExitCode::SUCCESS);
        }
        Some(AgentAction::BreakGlass { state, state_dir }) => {
            let on = *state == Switch::On;
            let flipped = table_agent(state_dir).set_break_glass(on)?;
            eprintln!(
                "{}{}",
                if on {
                    "break-glass ON: every connection is accepted, no policy is enforced"
                } else {
                    "break-glass off: policies are enforced"
                },
                if flipped {
                    ""
                } else {
                    " (no Bulkhead table yet; the agent applies this when it starts)"
                }
            );
            return Ok(ExitCode::SUCCESS);
        }
        Some(AgentAction::Flows {
            output,
            count,
            duration,
        }) => return flows(*output, *count, *duration, &args.state_dir),
        Some(AgentAction::Status { output, state_dir }) => {
            return status(*output, state_dir);
        }
        Some(AgentAction::ClearRollback { state_dir }) => {
            let marker = state_dir.join("rollback-cleared");
            std::fs::write(&marker, b"")
                .with_context(|| format!("cannot leave {}", marker.display()))?;
            eprintln!(
                "rollback cleared: a running agent enforces its rolled-back namespaces again within a second"
            );
            return Ok(ExitCode::SUCCESS);
        }
        Some(AgentAction::Metrics { output }) => {
            let mut agent = table_agent(&args.state_dir);
            match output {
                Some(path) => agent.write_metrics(path)?,
                None => super::print(&agent.metrics()?)?,
            }
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
    }
    // A daemon's peak memory meets its memory limit; freed memory goes back to the kernel
    // sooner, at some system time on a cold start (see bulkhead-allocator).
    bulkhead_allocator::tune();
    if args.audit {
        eprintln!(
            "audit mode: denied connections are let through and logged as would-deny (not enforced)"
        );
    }
    let config = config(args)?;
    // Root trusts nothing others can write, and one agent owns the node's table.
    for (dir, what) in [
        (
            (!args.kubernetes).then_some(config.manifests.as_path()),
            "manifest directory",
        ),
        (Some(config.state_dir.as_path()), "state directory"),
        (
            config
                .metrics_file
                .as_deref()
                .and_then(std::path::Path::parent),
            "metrics directory",
        ),
    ] {
        if let Some(dir) = dir {
            bulkhead_agent::files::refuse_writable_by_others(dir, what)
                .map_err(anyhow::Error::msg)?;
        }
    }
    let _lock = bulkhead_agent::files::lock(&config.state_dir).map_err(anyhow::Error::msg)?;
    let load_options = bulkhead_k8s::LoadOptions {
        default_namespace: config.default_namespace.clone(),
    };
    let state_dir = config.state_dir.clone();
    let mut agent = if args.kubernetes {
        let target = bulkhead_kube::Target {
            kubeconfig: args.kubeconfig.clone(),
            context: args.context.clone(),
        };
        eprintln!("following the Kubernetes API for node {}", config.node);
        let source = bulkhead_kube::KubernetesSource::start(target, load_options);
        Agent::with_source(config, NftCli::default(), Box::new(source))
    } else {
        Agent::new(config, NftCli::default())
    };
    let published = bulkhead_agent::status::Published::default();
    agent.publish_to(published.clone());
    let listen = args.listen.or_else(|| {
        args.kubernetes
            .then(|| DEFAULT_LISTEN.parse().expect("valid address"))
    });
    if let Some(address) = listen {
        super::agent_http::serve(address, published.clone())?;
    }
    if args.kubernetes {
        super::agent_http::log_source_health(published.clone(), "the Kubernetes API");
    }
    if args.deny_log_stdout {
        deny_records_to_stdout(&state_dir)?;
    }
    if let Some(threshold) = args.rollback_after {
        anyhow::ensure!(
            !args.no_deny_log,
            "--rollback-after counts denied connections from the deny records: it cannot work with --no-deny-log"
        );
        anyhow::ensure!(
            args.rollback_window > 0.0 && args.rollback_window.is_finite(),
            "--rollback-window must be a positive number of seconds"
        );
        anyhow::ensure!(threshold > 0, "--rollback-after must be at least 1");
        agent.enable_rollback(bulkhead_agent::rollback::RollbackPolicy {
            threshold,
            window: Duration::from_secs_f64(args.rollback_window),
        });
        eprintln!(
            "automated rollback on: a namespace with {threshold} connection(s) a policy change newly denies within {} s goes to audit on this node",
            args.rollback_window
        );
    }
    if !args.no_deny_log && !args.once {
        // The loop takes them every turn (at most 250 ms apart); beyond this many in one
        // turn a flood is still counted, only not judged by the rollback. A bounded channel
        // allocates its slots up front: 100,000 were 20 MiB of the agent's memory.
        let (send, inbox) = std::sync::mpsc::sync_channel(4096);
        agent.receive_denied(inbox);
        count_denied_connections(&state_dir, agent.denied_connections(), send);
    }
    let report = |r: Result<bulkhead_agent::Reconciled, bulkhead_agent::AgentError>| match r {
        Ok(done) => {
            for problem in &done.rejected {
                eprintln!("ERROR: {problem}");
            }
            for pod in &done.pods_without_interface {
                eprintln!("warning: no host interface known for {pod}; it is not enforced");
            }
            if done.applied {
                eprintln!(
                    "applied ruleset for {} pod(s) in {:.1} ms ({})",
                    done.pods,
                    done.took.as_secs_f64() * 1e3,
                    match done.delta_objects {
                        Some(n) => format!("delta of {n} object(s)"),
                        None => "full table".to_string(),
                    },
                );
            }
            // Tightening follows commits in a turn of its own (see `Agent::run`).
            if done.connections_cut > 0 {
                eprintln!(
                    "cutting {} connection(s) no longer allowed",
                    done.connections_cut
                );
            }
        }
        Err(e) => eprintln!("ERROR: {e}"),
    };
    if args.once {
        let done = agent.reconcile()?;
        agent.write_status();
        report(Ok(done));
        return Ok(ExitCode::SUCCESS);
    }
    agent.run(Duration::from_millis(args.poll_ms), report, || true);
    Ok(ExitCode::SUCCESS)
}

/// Where `agent --kubernetes` serves /healthz, /readyz and /metrics unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9750";

/// Prints every deny record to stdout as a JSON line, from a thread of its own.
fn deny_records_to_stdout(state_dir: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut log = bulkhead_agent::flowlog::DenyLog::open(Some(state_dir))
        .context("opening the NFLOG deny group for --deny-log-stdout (needs root)")?;
    std::thread::spawn(move || {
        while let Ok(batch) = log.next_batch() {
            let mut out = std::io::stdout().lock();
            for record in batch {
                let line = flow_record(&record, &record.protocol().to_string());
                if writeln!(out, "{line}").is_err() {
                    return;
                }
            }
            let _ = out.flush();
        }
    });
    Ok(())
}

/// Counts denied connections from the deny count group, from a thread of its own. Without it
/// (no NFLOG here) the agent still enforces, and says once that it does not count.
fn count_denied_connections(
    state_dir: &std::path::Path,
    counts: bulkhead_agent::connections::ConnectionCounts,
    loop_inbox: std::sync::mpsc::SyncSender<bulkhead_agent::flowlog::DenyRecord>,
) {
    let group = bulkhead_nft::ruleset::DENY_COUNT_GROUP;
    let mut log = match bulkhead_agent::flowlog::DenyLog::open_group(Some(state_dir), group) {
        Ok(log) => log,
        Err(e) => {
            eprintln!(
                "warning: denied connections are not counted (NFLOG group {group}: {e}); bulkhead_denied_connections_total stays 0"
            );
            return;
        }
    };
    let mut counter = bulkhead_agent::connections::ConnectionCounter::new(counts);
    std::thread::spawn(move || {
        while let Ok(batch) = log.next_batch() {
            let now = std::time::Instant::now();
            for record in batch {
                // New connections go on to the loop (rollback, `agent status`); when it
                // lags, they are only counted here.
                if counter.observe(&record, now) {
                    let _ = loop_inbox.try_send(record);
                }
            }
        }
    });
}

/// `agent status`: the running agent's status file, for people or as JSON.
fn status(output: FlowsOutput, state_dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let Some(status) =
        bulkhead_agent::node_status::NodeStatus::read(state_dir).map_err(anyhow::Error::msg)?
    else {
        eprintln!(
            "error: no agent status in {} (no agent has run with this --state-dir)",
            state_dir.display()
        );
        return Ok(ExitCode::from(2));
    };
    let age = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() - status.written_at)
        .unwrap_or_default();
    let running = std::path::Path::new(&format!("/proc/{}", status.pid)).exists();
    if output == FlowsOutput::Json {
        let mut value = serde_json::to_value(&status)?;
        value["age_seconds"] = serde_json::json!((age * 10.0).round() / 10.0);
        value["agent_running"] = serde_json::json!(running);
        super::print(&format!("{}\n", serde_json::to_string_pretty(&value)?))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "node {}: {} ({}), revision {}, written {:.0} s ago by pid {}{}",
        status.node,
        status.node_mode,
        status.source,
        status.last_applied_revision,
        age,
        status.pid,
        if running { "" } else { " (not running)" }
    );
    let _ = writeln!(
        out,
        "break-glass: node {}, cluster {}",
        if status.break_glass.node { "ON" } else { "off" },
        status.break_glass.cluster.as_deref().unwrap_or("off")
    );
    let _ = writeln!(
        out,
        "automated rollback: {}",
        match &status.rollback {
            Some(r) => format!(
                "{} newly denied connection(s) within {} s",
                r.threshold, r.window_seconds
            ),
            None => "off".to_string(),
        }
    );
    if status.audited_policies.is_empty() {
        let _ = writeln!(out, "audited policies: none");
    } else {
        let _ = writeln!(out, "audited policies ({}):", status.audited_policies.len());
        for p in &status.audited_policies {
            let _ = writeln!(out, "  {p}");
        }
    }
    if status.namespaces.is_empty() {
        let _ = writeln!(
            out,
            "namespaces: every namespace {}d, no denied connection yet",
            status.node_mode
        );
    } else {
        let _ = writeln!(
            out,
            "{:<30} {:<12} {:>8}  WHY",
            "NAMESPACE", "MODE", "DENIED"
        );
        for (name, ns) in &status.namespaces {
            let _ = writeln!(
                out,
                "{:<30} {:<12} {:>8}  {}",
                name,
                ns.mode,
                ns.denied_connections,
                ns.reason.as_deref().unwrap_or("")
            );
        }
        let _ = writeln!(
            out,
            "(namespaces not listed: {}, no denied connection)",
            status.node_mode
        );
    }
    super::print(&out)?;
    Ok(ExitCode::SUCCESS)
}

fn flows(
    output: FlowsOutput,
    count: Option<usize>,
    duration: Option<f64>,
    state_dir: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    use bulkhead_agent::flowlog::{DenyLog, DenyRecord};
    let mut log =
        DenyLog::open(Some(state_dir)).context("opening the NFLOG deny group (needs root)")?;
    eprintln!(
        "listening for deny records on NFLOG group {}",
        bulkhead_nft::ruleset::DENY_LOG_GROUP
    );
    let (send, receive) = std::sync::mpsc::channel::<DenyRecord>();
    // The socket blocks; a reader thread lets the main thread honour --duration.
    std::thread::spawn(move || {
        while let Ok(batch) = log.next_batch() {
            for record in batch {
                if send.send(record).is_err() {
                    return;
                }
            }
        }
    });
    let deadline = duration.map(|s| std::time::Instant::now() + Duration::from_secs_f64(s));
    let mut printed = 0;
    while count.is_none_or(|c| printed < c) {
        let record = match deadline {
            Some(d) => {
                match receive.recv_timeout(d.saturating_duration_since(std::time::Instant::now())) {
                    Ok(r) => r,
                    Err(_) => break,
                }
            }
            None => match receive.recv() {
                Ok(r) => r,
                Err(_) => break,
            },
        };
        let protocol = record.protocol().to_string();
        let line = match output {
            FlowsOutput::Json => flow_record(&record, &protocol),
            FlowsOutput::Text => format!(
                "{:<10} {} -> {} {}{}  {} of {} by {}",
                record.verdict().to_ascii_uppercase(),
                record.src,
                record.dst,
                protocol,
                record.dport.map(|p| format!("/{p}")).unwrap_or_default(),
                record.direction,
                record.pod,
                record.rule
            ),
        };
        super::print(&format!("{line}\n"))?;
        printed += 1;
    }
    Ok(ExitCode::SUCCESS)
}

/// A deny record in the flow-log format `bulkhead audit` reads (design.md §6), plus the
/// direction. The deciding pod is the source of an egress deny, the destination of an ingress one.
fn flow_record(record: &bulkhead_agent::flowlog::DenyRecord, protocol: &str) -> String {
    let time = record
        .time
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    // `NetworkPolicy x/web ingress[0]` -> policy `NetworkPolicy x/web`, rule `ingress[0]`;
    // an end-of-tier or default deny has no policy.
    let (policy, rule) = match record.rule.rsplit_once(' ') {
        Some((policy, rule)) if rule.ends_with(']') => (Some(policy.to_string()), rule.to_string()),
        _ => (None, record.rule.clone()),
    };
    let egress = record.direction == "egress";
    let flow = bulkhead_analysis::flows::FlowRecord {
        time: Some(serde_json::json!((time * 1000.0).round() / 1000.0)),
        src_ip: Some(record.src),
        src_port: record.sport,
        dst_ip: Some(record.dst),
        dst_port: record.dport,
        protocol: protocol.to_string(),
        src: egress.then(|| record.pod.clone()),
        dst: (!egress).then(|| record.pod.clone()),
        verdict: Some(record.verdict().to_string()),
        policy,
        rule: Some(rule),
        packets: None,
        bytes: None,
        last_time: None,
        merged: 0,
    };
    let mut value = serde_json::to_value(&flow).unwrap_or_default();
    value["direction"] = serde_json::json!(record.direction);
    value.to_string()
}
