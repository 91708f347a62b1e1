//! `bulkhead compile` and `bulkhead agent`: the dataplane commands.

use crate::cli::{AgentAction, AgentArgs, CompileArgs};
use crate::snapshot;
use anyhow::{Context as _, bail};
use bulkhead_agent::{Agent, AgentConfig};
use bulkhead_engine::{Engine, EngineOptions};
use bulkhead_nft::{CompileOptions, NftCli};
use std::collections::BTreeMap;
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
    let snapshot = snapshot::load(&args.input);
    snapshot::warn_about_errors(&snapshot);
    let semantics = Engine::auto_semantics(&snapshot.cluster);
    let engine = Engine::new(
        &snapshot.cluster,
        EngineOptions {
            semantics,
            self_traffic_allowed: true,
        },
    );
    let mut map = interfaces(&args.interfaces)?;
    for pod in &snapshot.cluster.pods {
        if pod.node.as_deref() == Some(args.node.as_str())
            && !map.contains_key(&pod.key())
            && let Some(device) = pod
                .ips
                .first()
                .and_then(|ip| bulkhead_agent::interfaces::route_device(*ip))
        {
            map.insert(pod.key(), device);
        }
    }
    let (ruleset, report) = bulkhead_nft::compile(
        &engine,
        &CompileOptions {
            node: args.node.clone(),
            interfaces: map,
        },
    );
    for pod in &report.pods_without_interface {
        eprintln!(
            "warning: no host interface known for {pod}; it is not enforced (use --interface {pod}=IFACE)"
        );
    }
    super::print(&bulkhead_nft::render::render(&ruleset))?;
    Ok(ExitCode::SUCCESS)
}

pub fn run(args: &AgentArgs) -> anyhow::Result<ExitCode> {
    let config = |args: &AgentArgs| -> anyhow::Result<AgentConfig> {
        Ok(AgentConfig {
            node: args.node.clone().context("--node is required")?,
            manifests: args.manifests.clone().context("--manifests is required")?,
            interfaces: interfaces(&args.interfaces)?,
            default_namespace: args.namespace.clone(),
            tighten: !args.no_tighten,
        })
    };
    if let Some(AgentAction::Uninstall) = args.action {
        let mut agent = Agent::new(
            AgentConfig {
                node: String::new(),
                manifests: Default::default(),
                interfaces: BTreeMap::new(),
                default_namespace: String::new(),
                tighten: false,
            },
            NftCli::default(),
        );
        let removed = agent.uninstall()?;
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
    let mut agent = Agent::new(config(args)?, NftCli::default());
    let report = |r: Result<bulkhead_agent::Reconciled, bulkhead_agent::AgentError>| match r {
        Ok(done) => {
            for pod in &done.pods_without_interface {
                eprintln!("warning: no host interface known for {pod}; it is not enforced");
            }
            if done.applied {
                eprintln!(
                    "applied ruleset for {} pod(s) in {:.1} ms{}",
                    done.pods,
                    done.took.as_secs_f64() * 1e3,
                    if done.connections_cut > 0 {
                        format!(
                            "; cut {} connection(s) no longer allowed",
                            done.connections_cut
                        )
                    } else {
                        String::new()
                    }
                );
            }
        }
        Err(e) => eprintln!("ERROR: {e}"),
    };
    if args.once {
        let done = agent.reconcile()?;
        report(Ok(done));
        return Ok(ExitCode::SUCCESS);
    }
    agent.run(Duration::from_millis(args.poll_ms), report, || true);
    Ok(ExitCode::SUCCESS)
}
