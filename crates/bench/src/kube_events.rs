//! The agent in Kubernetes mode, fed by the loopback API server double: a generated cluster
//! is served over the real list/watch protocol, the real `bulkhead agent --kubernetes`
//! process follows it and applies with the real nft, and each pod event made through the API
//! is timed until the agent reports the commit. Prints start-up time, event -> committed
//! percentiles and the agent's peak RSS. Needs root in a network namespace of its own (the
//! agent replaces that namespace's table; the API server listens on its loopback).

use bulkhead_apiserver_double::{ApiServer, ResourceType};
use serde_json::json;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The agent's resident memory from /proc: (`VmRSS`, `VmHWM`) in MiB.
fn memory_of(pid: u32) -> (f64, f64) {
    let pid = pid.to_string();
    (
        crate::process_memory_mib(&pid, "VmRSS:"),
        crate::process_memory_mib(&pid, "VmHWM:"),
    )
}

/// A DNS server pod on node-1: every namespace's allow-dns policy has it as a peer, so its
/// add, relabel and delete change node-0's sets.
fn pod(r: usize, app: &str) -> serde_json::Value {
    let ip = format!("10.254.{}.{}", r / 250, 1 + r % 250);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": format!("dns-{r}"), "namespace": "kube-system",
                     "labels": {"k8s-app": app}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "i",
                 "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    })
}

pub fn run(
    size: crate::Size,
    rounds: usize,
    seed: u64,
    scattered_ips: bool,
    bulkhead: &Path,
) -> anyhow::Result<()> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    anyhow::ensure!(
        root,
        "needs root, in a network namespace of its own: ip netns add bench && ip netns exec bench ip link set lo up && ip netns exec bench bulkhead-bench kube ..."
    );
    let g = crate::generate_with(size, seed, crate::Options { scattered_ips });
    let dir = tempfile_dir()?;
    g.write_to(&dir)?;
    let started = Instant::now();
    let api = ApiServer::start(ResourceType::bulkhead_kinds())?;
    let (stored, _) = api.apply_manifests(std::slice::from_ref(&dir))?;
    let served = started.elapsed();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig())?;
    // node-0's pods on interfaces named after them, as a CNI would have them (they need not
    // exist: the rules are what is measured).
    let local: Vec<String> = bulkhead_k8s::load(
        &[bulkhead_k8s::Input::new("pods.yaml", g.pods.clone())],
        &bulkhead_k8s::LoadOptions::default(),
    )
    .cluster
    .pods
    .iter()
    .filter(|p| p.node.as_deref() == Some("node-0"))
    .enumerate()
    .map(|(i, p)| format!("--interface={}=bh{i}", p.key()))
    .collect();
    let state = dir.join("state");
    let mut agent = Command::new(bulkhead)
        .args(["agent", "--kubernetes", "--node", "node-0", "--kubeconfig"])
        .arg(&kubeconfig)
        .arg("--state-dir")
        .arg(&state)
        .args(["--listen", "127.0.0.1:0", "--pod-interface-prefix", "bh"])
        .args(&local)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = agent.id();
    let stderr = agent.stderr.take().expect("piped");
    let (lines, log) = mpsc::channel::<(Instant, String)>();
    let metrics_port = std::sync::Arc::new(std::sync::Mutex::new(None::<u16>));
    let port_seen = metrics_port.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(port) = line
                .strip_prefix("serving /healthz, /readyz and /metrics on http://127.0.0.1:")
                .and_then(|p| p.parse().ok())
                && let Ok(mut seen) = port_seen.lock()
            {
                *seen = Some(port);
            }
            if std::env::var_os("BULKHEAD_BENCH_DEBUG").is_some() {
                eprintln!("[agent] {line}");
            }
            if !line.starts_with("warning: no host interface") {
                let _ = lines.send((Instant::now(), line));
            }
        }
    });
    let spawned = Instant::now();
    let next_commit = |what: &str, within: Duration| -> anyhow::Result<Instant> {
        loop {
            let (at, line) = log
                .recv_timeout(within)
                .map_err(|_| anyhow::anyhow!("{what}: no commit within {within:?}"))?;
            if line.contains("applied ruleset") {
                return Ok(at);
            }
            eprintln!("agent: {line}");
        }
    };
    let first = next_commit("start-up", Duration::from_secs(600))?;
    let start_up = first.duration_since(spawned);
    let (_, after_start) = memory_of(pid);
    let mut times = Vec::with_capacity(rounds);
    for r in 0..rounds {
        // Added, relabelled out of the DNS peers and back, deleted: each changes node-0's sets.
        let t = Instant::now();
        match r % 4 {
            0 | 2 => api.apply(pod(r / 4, "kube-dns"))?,
            1 => api.apply(pod(r / 4, "not-dns"))?,
            _ => u64::from(api.delete(
                "v1",
                "Pod",
                Some("kube-system"),
                &format!("dns-{}", r / 4),
            )?),
        };
        let done = next_commit(&format!("round {r}"), Duration::from_secs(60))?;
        times.push(done.duration_since(t));
    }
    let (rss, peak) = memory_of(pid);
    let counters = metrics_port
        .lock()
        .ok()
        .and_then(|p| *p)
        .and_then(scrape)
        .unwrap_or_default();
    let _ = agent.kill();
    let _ = agent.wait();
    let _ = std::fs::remove_dir_all(&dir);
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let pct = |p: f64| ms(times[((times.len() as f64 * p) as usize).min(times.len() - 1)]);
    println!(
        "== agent --kubernetes fed by the loopback API server, size {} ({} pods, {} policies{}; node-0: {} local pods; {stored} objects served in {:.1} s), real nft ==",
        size.name,
        g.pod_count,
        g.policy_count,
        if scattered_ips { ", scattered IPs" } else { "" },
        local.len(),
        served.as_secs_f64()
    );
    println!(
        "cold start (list every kind, lower, index, compile, full table): {:.1} s; peak RSS then {after_start:.0} MiB",
        start_up.as_secs_f64()
    );
    if !times.is_empty() {
        println!(
            "API event (pod of another node added, relabelled, deleted) -> committed, {} events: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            times.len(),
            pct(0.5),
            pct(0.99),
            ms(times[times.len() - 1])
        );
    }
    println!(
        "commits: {} in place (set elements over netlink), {} deltas, {} full tables",
        counters.0, counters.1, counters.2
    );
    println!("agent peak RSS through the events: {peak:.0} MiB (now {rss:.0} MiB; target 300 MiB)");
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("bulkhead-bench-kube-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The agent's commit counters from its /metrics: (in place, deltas, full tables).
fn scrape(port: u16) -> Option<(u64, u64, u64)> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let value = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    Some((
        value("bulkhead_agent_in_place_updates_total"),
        value("bulkhead_agent_deltas_total"),
        value("bulkhead_agent_full_replaces_total"),
    ))
}
