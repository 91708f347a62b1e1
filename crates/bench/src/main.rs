//! `bulkhead-bench`: generate synthetic clusters, and measure load, compile, map and explain.
//!
//! Benchmarks, not tests: this program prints figures; nothing asserts on time.

use anyhow::{Context as _, bail};
use bulkhead_bench::{Size, generate, size};
use bulkhead_engine::{Aggregation, ConnectivityOptions, Endpoint, Engine, EngineOptions, Flow};
use bulkhead_k8s::{Input, LoadOptions};
use bulkhead_model::Protocol;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    name = "bulkhead-bench",
    about = "Synthetic clusters and Bulkhead's benchmark program"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a synthetic cluster (namespaces.yaml, pods.yaml, policies/policies.yaml) to DIR.
    Generate {
        /// S (100 pods), M (1k pods, 500 policies), L (10k/2k), XL (100k/10k, 5k namespaces) or
        /// Antrea (100k pods, 75k policies: one per workload plus namespace defaults) or Policies
        /// (300k policies, 100 MB, no pods).
        #[arg(long)]
        size: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
        /// Pod addresses as a real cluster assigns them (per-node /24 blocks in random order).
        #[arg(long)]
        scattered_ips: bool,
    },
    /// The live agent on a generated cluster: for each round a new pod manifest is renamed
    /// into the watched directory, and the time from the rename to the committed dataplane
    /// change is measured (inotify, load, index, compile, delta). The kernel is a recording
    /// fake unless --kernel: then run it inside a network namespace of its own
    /// (`ip netns add bench && ip netns exec bench bulkhead-bench live --kernel ...`).
    Live {
        #[arg(long, default_value = "L")]
        size: String,
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        scattered_ips: bool,
        /// Apply through `nft` (needs root; use a network namespace).
        #[arg(long)]
        kernel: bool,
        /// The new pods run on node-1, not on the measured node-0: their manifests change
        /// node-0's sets only, which is made in place.
        #[arg(long)]
        other_node: bool,
    },
    /// Write a synthetic flow log (Bulkhead JSON lines, about 200 bytes a record) between the
    /// pods of a generated cluster: `--records` lines over `--distinct` 5-tuples.
    /// The live index fed events directly (no files): pods of another node added, relabelled
    /// and removed, a policy of the node edited, 1,000 pod events per second; each timed from
    /// the event to the committed change. With --kernel, nft in the current network namespace
    /// (`ip netns add bench && ip netns exec bench bulkhead-bench index --kernel ...`).
    Index {
        #[arg(long, default_value = "XL")]
        size: String,
        #[arg(long, default_value_t = 100)]
        rounds: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        scattered_ips: bool,
        #[arg(long)]
        kernel: bool,
    },
    /// The real `bulkhead agent --kubernetes` fed by the loopback API server double over the
    /// real list/watch protocol: cold start, then pods of another node added, relabelled and
    /// deleted through the API, each timed to the agent's commit; the agent's peak RSS.
    /// Needs root in a network namespace of its own
    /// (`ip netns add bench && ip netns exec bench ip link set lo up &&
    /// ip netns exec bench bulkhead-bench kube ...`).
    Kube {
        #[arg(long, default_value = "XL")]
        size: String,
        #[arg(long, default_value_t = 300)]
        rounds: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        scattered_ips: bool,
        /// The `bulkhead` binary; by default the one next to this program.
        #[arg(long)]
        bulkhead: Option<PathBuf>,
    },
    Flows {
        #[arg(long)]
        size: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 10_000_000)]
        records: u64,
        #[arg(long, default_value_t = 10_000)]
        distinct: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Whole processes as a user runs them, per size: `bulkhead check --no-lint` on the
    /// cluster as YAML and as JSON (loading, MB/s), `check`, and `map` (by pod up to L, by
    /// workload above), each the median of --runs, with wall time and peak RSS.
    Whole {
        /// Comma-separated sizes: S, M, L, XL, Antrea, Policies (100 MB of NetworkPolicies, no
        /// pods).
        #[arg(long, default_value = "S,M,L")]
        sizes: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The `bulkhead` binary; by default the one next to this program.
        #[arg(long)]
        bulkhead: Option<PathBuf>,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// network-config-analyzer's `nca` (bench/peers/run.sh installs it), timed on the same
        /// clusters for the side-by-side ratio.
        #[arg(long)]
        nca: Option<PathBuf>,
    },
    /// Measure every stage on the given sizes and print one block of figures per size.
    Run {
        /// Comma-separated sizes.
        #[arg(long, default_value = "S,M,L")]
        sizes: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Random single-flow explain queries per size.
        #[arg(long, default_value_t = 10_000)]
        queries: usize,
        /// Level of the full map: pod for S-L; XL is measured at workload level.
        #[arg(long)]
        map_by: Option<String>,
    },
}

/// The allocator the `bulkhead` binary uses, so inner-loop figures match whole processes.
#[global_allocator]
static ALLOCATOR: bulkhead_allocator::MiMalloc = bulkhead_allocator::MiMalloc;

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Whole {
            sizes,
            seed,
            bulkhead,
            runs,
            nca,
        } => {
            let sizes = sizes
                .split(',')
                .map(|n| {
                    size(n.trim()).with_context(|| {
                        format!("unknown size {n}: use S, M, L, XL, Antrea or Policies")
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let binary = bulkhead.unwrap_or_else(bulkhead_bench::whole::default_binary);
            bulkhead_bench::whole::run(&sizes, seed, &binary, runs, nca.as_deref())?;
        }
        Command::Kube {
            size: name,
            rounds,
            seed,
            scattered_ips,
            bulkhead,
        } => {
            let s = size(&name).with_context(|| format!("unknown size {name}"))?;
            let binary = bulkhead.unwrap_or_else(bulkhead_bench::whole::default_binary);
            bulkhead_bench::kube_events::run(s, rounds, seed, scattered_ips, &binary)?;
        }
        Command::Index {
            size: name,
            rounds,
            seed,
            scattered_ips,
            kernel,
        } => {
            let s = size(&name).with_context(|| format!("unknown size {name}"))?;
            let g =
                bulkhead_bench::generate_with(s, seed, bulkhead_bench::Options { scattered_ips });
            let generated = bulkhead_bench::memory_mib("VmRSS:");
            let started = Instant::now();
            let snapshot = bulkhead_k8s::load(
                &[
                    Input::new("namespaces.yaml", g.namespaces),
                    Input::new("pods.yaml", g.pods),
                    Input::new("policies.yaml", g.policies),
                ],
                &LoadOptions::default(),
            );
            println!(
                "size {}{}: manifests loaded in {:.1} s (the loader's speed is the Speed issue's); resident {generated:.0} MiB with the generated text, peak {:.0} MiB after loading",
                s.name,
                if scattered_ips { ", scattered IPs" } else { "" },
                started.elapsed().as_secs_f64(),
                peak_rss_mib()
            );
            if kernel {
                bulkhead_bench::index_events::run(
                    snapshot.cluster,
                    rounds,
                    bulkhead_nft::NftCli::default(),
                    "real nft",
                )?;
            } else {
                bulkhead_bench::index_events::run(
                    snapshot.cluster,
                    rounds,
                    bulkhead_nft::FakeBackend::default(),
                    "recording fake kernel",
                )?;
            }
            println!("peak RSS {:.0} MiB", peak_rss_mib());
        }
        Command::Live {
            size: name,
            rounds,
            seed,
            scattered_ips,
            kernel,
            other_node,
        } => {
            let s = size(&name).with_context(|| {
                format!("unknown size {name}: use S, M, L, XL, Antrea or Policies")
            })?;
            live(s, rounds, seed, scattered_ips, kernel, other_node)?;
        }
        Command::Generate {
            size: name,
            seed,
            out,
            scattered_ips,
        } => {
            let s = size(&name).with_context(|| {
                format!("unknown size {name}: use S, M, L, XL, Antrea or Policies")
            })?;
            let g =
                bulkhead_bench::generate_with(s, seed, bulkhead_bench::Options { scattered_ips });
            std::fs::create_dir_all(out.join("policies"))?;
            std::fs::write(out.join("namespaces.yaml"), &g.namespaces)?;
            std::fs::write(out.join("pods.yaml"), &g.pods)?;
            std::fs::write(out.join("policies/policies.yaml"), &g.policies)?;
            println!(
                "{}: {} pods, {} policies written to {}",
                s.name,
                g.pod_count,
                g.policy_count,
                out.display()
            );
        }
        Command::Flows {
            size: name,
            seed,
            records,
            distinct,
            out,
        } => {
            let s = size(&name).with_context(|| format!("unknown size {name}"))?;
            let g = generate(s, seed);
            let ips: Vec<&str> = g
                .pods
                .lines()
                .filter_map(|l| l.trim().strip_prefix("podIP: "))
                .collect();
            let ports = [53u16, 80, 443, 5432, 6379, 8080, 9090];
            let mut rng = bulkhead_bench::Rng::new(seed ^ 0xF1);
            let tuples: Vec<(usize, usize, u16)> = (0..distinct.max(1))
                .map(|_| {
                    (
                        rng.below(ips.len()),
                        rng.below(ips.len()),
                        ports[rng.below(ports.len())],
                    )
                })
                .collect();
            let file = std::fs::File::create(&out)?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            for n in 0..records {
                let (a, b, port) = tuples[rng.below(tuples.len())];
                use std::io::Write as _;
                writeln!(
                    w,
                    r#"{{"time": {}, "src_ip": "{}", "src_port": {}, "dst_ip": "{}", "dst_port": {port}, "protocol": "TCP", "verdict": "allow", "packets": 1, "bytes": 60}}"#,
                    1_700_000_000 + n / 1000,
                    ips[a],
                    32768 + rng.below(28000),
                    ips[b],
                )?;
            }
            println!(
                "{records} records over {} 5-tuples of {} pods written to {}",
                tuples.len(),
                ips.len(),
                out.display()
            );
        }
        Command::Run {
            sizes,
            seed,
            queries,
            map_by,
        } => {
            for name in sizes.split(',') {
                let s = size(name.trim()).with_context(|| format!("unknown size {name}"))?;
                run(s, seed, queries, map_by.as_deref())?;
            }
        }
    }
    Ok(())
}

fn peak_rss_mib() -> f64 {
    bulkhead_bench::memory_mib("VmHWM:")
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn run(s: Size, seed: u64, queries: usize, map_by: Option<&str>) -> anyhow::Result<()> {
    let g = generate(s, seed);
    let bytes = g.namespaces.len() + g.pods.len() + g.policies.len();
    let inputs = [
        Input::new("namespaces.yaml", g.namespaces),
        Input::new("pods.yaml", g.pods),
        Input::new("policies.yaml", g.policies),
    ];
    let t = Instant::now();
    let snapshot = bulkhead_k8s::load(&inputs, &LoadOptions::default());
    let load = t.elapsed();
    if snapshot.error_count() > 0 {
        bail!("generated input has {} errors", snapshot.error_count());
    }
    let t = Instant::now();
    let engine = Engine::new(
        &snapshot.cluster,
        EngineOptions::for_cluster(&snapshot.cluster),
    );
    let compiled = engine.compile();
    let compile = t.elapsed();
    let aggregation = match map_by.unwrap_or(if s.name == "XL" { "workload" } else { "pod" }) {
        "workload" => Aggregation::Workload,
        "namespace" => Aggregation::Namespace,
        _ => Aggregation::Pod,
    };
    let t = Instant::now();
    let rows = engine.connectivity_from(
        &compiled,
        &ConnectivityOptions {
            aggregation,
            ..ConnectivityOptions::default()
        },
    );
    let map = t.elapsed();
    let pairs = compiled.allowed_pod_pairs();
    // Single-flow explain latency on random pod pairs and ports.
    let pods = engine.pod_endpoints();
    let mut rng = bulkhead_bench::Rng::new(seed ^ 0xE5);
    let ports = [53u16, 80, 443, 5432, 6379, 8080, 9090, 9100];
    let mut latencies = Vec::with_capacity(queries);
    let mut allowed = 0usize;
    for _ in 0..queries {
        let flow = Flow {
            src: Endpoint::Pod(pods[rng.below(pods.len())]),
            dst: Endpoint::Pod(pods[rng.below(pods.len())]),
            protocol: Protocol::Tcp,
            port: Some(ports[rng.below(ports.len())]),
            icmp: None,
        };
        let t = Instant::now();
        let v = engine.evaluate(&flow);
        latencies.push(t.elapsed());
        allowed += usize::from(v.allowed);
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or_default()
    };
    println!("== size {} (seed {seed}) ==", s.name);
    println!(
        "pods {}, policies {}, identities {}, YAML {:.1} MB",
        snapshot.cluster.pods.len(),
        snapshot.cluster.policies.len(),
        compiled.identities.len(),
        bytes as f64 / 1e6
    );
    println!(
        "load            {}  ({:.1} MB/s)",
        secs(load),
        bytes as f64 / 1e6 / load.as_secs_f64()
    );
    println!(
        "compile         {}  (engine indexes + identity-pair verdicts)",
        secs(compile)
    );
    println!(
        "map ({:?})     {}  ({} rows; {} allowed pod pairs)",
        aggregation,
        secs(map),
        rows.len(),
        pairs
    );
    println!("compile + map   {}", secs(compile + map));
    println!(
        "explain         p50 {:.1} us, p99 {:.1} us over {queries} queries ({allowed} allowed)",
        pct(0.5).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6
    );
    // Blast radius of every workload, 3 hops (its own compile included, as the command runs it).
    if s.name != "XL" {
        let t = Instant::now();
        let radius = bulkhead_analysis::blast_radius::blast_radius(
            &engine,
            &bulkhead_analysis::blast_radius::Options {
                hops: 3,
                only: None,
                target: None,
                detail: false,
            },
        );
        println!(
            "blast radius    {}  (K=3, {} workloads, score {:.2})",
            secs(t.elapsed()),
            radius.workloads.len(),
            radius.score
        );
    }
    println!("peak RSS        {:.0} MiB", peak_rss_mib());
    Ok(())
}

/// `live`: rename a pod manifest into the agent's directory, time it until committed.
fn live(
    s: Size,
    rounds: usize,
    seed: u64,
    scattered_ips: bool,
    kernel: bool,
    other_node: bool,
) -> anyhow::Result<()> {
    use bulkhead_agent::{Agent, AgentConfig};
    use bulkhead_nft::{Backend, FakeBackend, Mode, NftCli};
    let g = bulkhead_bench::generate_with(s, seed, bulkhead_bench::Options { scattered_ips });
    let dir = std::env::temp_dir().join(format!("bulkhead-bench-live-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    g.write_to(&dir)?;
    // The node with pod node-0; every one of its pods on an interface named after it.
    let snapshot = bulkhead_k8s::load(
        &[Input::new("pods.yaml", g.pods.clone())],
        &LoadOptions::default(),
    );
    let node = "node-0".to_string();
    let mut interfaces: std::collections::BTreeMap<String, String> = snapshot
        .cluster
        .pods
        .iter()
        .filter(|p| p.node.as_deref() == Some(node.as_str()))
        .enumerate()
        .map(|(i, p)| (p.key(), format!("bh{i}")))
        .collect();
    for r in 0..rounds {
        interfaces.insert(format!("team-0000/live-{r}"), format!("bhlive{r}"));
    }
    let local = interfaces.len();
    let config = AgentConfig {
        node: node.clone(),
        manifests: dir.clone(),
        interfaces,
        default_namespace: "default".into(),
        tighten: false,
        mode: Mode::Enforce,
        audit_namespaces: Default::default(),
        log_denies: false,
        state_dir: dir.join(".state"),
        metrics_file: None,
        pod_interface_prefixes: vec!["bh".into()],
        pod_cidrs: Vec::new(),
    };
    let pod_node = if other_node { "node-1" } else { "node-0" };
    fn run<B: Backend>(
        mut agent: Agent<B>,
        dir: &std::path::Path,
        rounds: usize,
        scattered: u32,
        pod_node: &str,
    ) -> anyhow::Result<(Duration, Vec<Duration>, Vec<usize>)> {
        let started = Instant::now();
        agent
            .reconcile()
            .map_err(|e| anyhow::anyhow!("start-up: {e}"))?;
        let first = started.elapsed();
        let mut times = Vec::new();
        let mut sizes = Vec::new();
        for r in 0..rounds {
            let pod = format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: live-{r}, namespace: team-0000, labels: {{app: web-0, tier: web}}}}\nspec: {{nodeName: {pod_node}, containers: [{{name: c, image: i, ports: [{{name: http, containerPort: 8080}}]}}]}}\nstatus: {{phase: Running, podIP: 10.255.{}.{}}}\n",
                (r as u32 + scattered) / 250,
                1 + (r as u32 + scattered) % 250
            );
            let tmp = dir.join(format!(".live-{r}.tmp"));
            std::fs::write(&tmp, pod)?;
            let t = Instant::now();
            std::fs::rename(&tmp, dir.join(format!("live-{r}.yaml")))?;
            let done = loop {
                if let Some(done) = agent.step(Duration::from_secs(30)) {
                    break done.map_err(|e| anyhow::anyhow!("round {r}: {e}"))?;
                }
                if t.elapsed() > Duration::from_secs(60) {
                    anyhow::bail!("round {r}: the rename was not seen within 60 s");
                }
            };
            times.push(t.elapsed());
            sizes.push(done.delta_objects.unwrap_or(0));
        }
        Ok((first, times, sizes))
    }
    let (first, mut times, sizes) = if kernel {
        run(
            Agent::new(config, NftCli::default()),
            &dir,
            rounds,
            0,
            pod_node,
        )?
    } else {
        run(
            Agent::new(config, FakeBackend::default()),
            &dir,
            rounds,
            0,
            pod_node,
        )?
    };
    let _ = std::fs::remove_dir_all(&dir);
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "== live agent, size {} ({} pods, {} policies{}; node-0: {local} local pods; new pods on {pod_node}), {} ==",
        s.name,
        g.pod_count,
        g.policy_count,
        if scattered_ips { ", scattered IPs" } else { "" },
        if kernel {
            "real nft"
        } else {
            "recording fake kernel"
        }
    );
    println!(
        "start-up (load, index, compile, full table): {:.0} ms",
        ms(first)
    );
    if !times.is_empty() {
        println!(
            "pod manifest renamed in -> committed, {} rounds: p50 {:.0} ms, max {:.0} ms; objects per delta: {:?}",
            times.len(),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1]),
            sizes
        );
    }
    Ok(())
}
