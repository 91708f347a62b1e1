//! Whole processes as a user runs them: the `bulkhead` binary on a generated cluster, timed
//! from spawn to exit with its peak resident memory (the kernel's own count, `wait4`). The
//! engine may map a cluster in milliseconds while the command takes much longer: the user
//! waits for the second number, so both are printed.

use crate::{Size, generate};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One run of one command: wall time, peak RSS and the exit code.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    pub wall: Duration,
    pub peak_rss_kib: u64,
    pub code: i32,
}

/// GNU time (Debian package `time`) reports the child's peak RSS as the kernel counted it.
const GNU_TIME: &str = "/usr/bin/time";

/// Runs `program args` with stdout discarded, under GNU time for its peak RSS.
pub fn measure(program: &Path, args: &[&str]) -> anyhow::Result<Measured> {
    anyhow::ensure!(
        Path::new(GNU_TIME).exists(),
        "{GNU_TIME} is missing: install the Debian package `time` (it reports the peak RSS)"
    );
    let report = std::env::temp_dir().join(format!("bulkhead-whole-time-{}", std::process::id()));
    let start = Instant::now();
    let status = Command::new(GNU_TIME)
        .args(["-f", "%M", "-o"])
        .arg(&report)
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let wall = start.elapsed();
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    let _ = std::fs::remove_file(&report);
    // GNU time writes "Command exited with non-zero status N" before the figure.
    let peak_rss_kib = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    Ok(Measured {
        wall,
        peak_rss_kib,
        code: status.code().unwrap_or(-1),
    })
}

/// The median of `runs` runs (by wall time); fails when the command fails (exit above 1:
/// `check` exits 1 for findings, which is a result, not a failure).
pub fn median(program: &Path, args: &[&str], runs: usize) -> anyhow::Result<Measured> {
    let mut all = Vec::new();
    for _ in 0..runs.max(1) {
        let m = measure(program, args)?;
        anyhow::ensure!(
            (0..=1).contains(&m.code),
            "{} {} exited with {}",
            program.display(),
            args.join(" "),
            m.code
        );
        all.push(m);
    }
    all.sort_by_key(|m| m.wall);
    Ok(all[all.len() / 2])
}

/// The generated cluster as YAML (the generator's files) and as JSON (the same objects, one
/// JSON document per file, as `kubectl get -o json` writes them), with their sizes in bytes.
#[derive(Debug)]
pub struct Written {
    pub yaml: PathBuf,
    pub json: PathBuf,
    pub yaml_bytes: u64,
    pub json_bytes: u64,
    pub pods: usize,
    pub policies: usize,
}

pub fn write(size: Size, seed: u64, root: &Path) -> anyhow::Result<Written> {
    let g = generate(size, seed);
    let yaml = root.join(format!("{}-yaml", size.name));
    let json = root.join(format!("{}-json", size.name));
    for dir in [&yaml, &json] {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join("policies"))?;
    }
    let files = [
        ("namespaces", &g.namespaces),
        ("pods", &g.pods),
        ("policies/policies", &g.policies),
    ];
    let (mut yaml_bytes, mut json_bytes) = (0, 0);
    for (name, text) in files {
        std::fs::write(yaml.join(format!("{name}.yaml")), text)?;
        yaml_bytes += text.len() as u64;
        let documents: Vec<serde_json::Value> = bulkhead_k8s::yaml_tree::parse_documents(text)
            .into_iter()
            .filter_map(|d| Some(d.ok()?.root?.to_json()))
            .collect();
        let value = match <[serde_json::Value; 1]>::try_from(documents) {
            Ok([one]) => one,
            Err(many) => serde_json::json!({"apiVersion": "v1", "kind": "List", "items": many}),
        };
        let text = serde_json::to_string(&value)?;
        json_bytes += text.len() as u64;
        std::fs::write(json.join(format!("{name}.json")), text)?;
    }
    Ok(Written {
        yaml,
        json,
        yaml_bytes,
        json_bytes,
        pods: g.pod_count,
        policies: g.policy_count,
    })
}

fn line(what: &str, m: Measured, extra: &str) {
    println!(
        "  {what:<44} {:>8.3} s {:>7} MiB{extra}",
        m.wall.as_secs_f64(),
        m.peak_rss_kib / 1024
    );
}

/// `bulkhead-bench whole`: per size, loading (YAML and JSON), `check` and `map`, each the
/// median of `runs` whole processes; with `nca`, network-config-analyzer on the same cluster.
pub fn run(
    sizes: &[Size],
    seed: u64,
    bulkhead: &Path,
    runs: usize,
    nca: Option<&Path>,
) -> anyhow::Result<()> {
    let root = std::env::temp_dir().join(format!("bulkhead-whole-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    println!(
        "whole processes: {} (median of {runs}; wall time, peak RSS)",
        bulkhead.display()
    );
    for &size in sizes {
        let w = write(size, seed, &root)?;
        let (yaml, json) = (w.yaml.to_string_lossy(), w.json.to_string_lossy());
        println!(
            "== {}: {} pods, {} policies; {:.1} MB YAML, {:.1} MB JSON ==",
            size.name,
            w.pods,
            w.policies,
            w.yaml_bytes as f64 / 1e6,
            w.json_bytes as f64 / 1e6
        );
        let rate = |bytes: u64, m: Measured| {
            format!(
                "  ({:.1} MB/s)",
                bytes as f64 / 1e6 / m.wall.as_secs_f64().max(1e-9)
            )
        };
        let m = median(bulkhead, &["check", &yaml, "--no-lint", "-o", "json"], runs)?;
        line("load YAML: check --no-lint", m, &rate(w.yaml_bytes, m));
        let m = median(bulkhead, &["check", &json, "--no-lint", "-o", "json"], runs)?;
        line("load JSON: check --no-lint", m, &rate(w.json_bytes, m));
        let m = median(bulkhead, &["check", &yaml, "-o", "json"], runs)?;
        line("check -o json", m, "");
        // Pod level up to L; above, the workload level (a pod matrix of 100k pods is not a
        // report anyone reads).
        let by = if w.pods <= 20_000 { "pod" } else { "workload" };
        let m = median(bulkhead, &["map", &yaml, "--by", by, "-o", "json"], runs)?;
        line(&format!("map --by {by} -o json"), m, "");
        // The peer takes minutes from a few thousand pods on (24 s at M): the ratio is made
        // where it still answers.
        if let Some(nca) = nca.filter(|_| w.pods <= 2_000) {
            let policies = w.yaml.join("policies").to_string_lossy().into_owned();
            let pods = w.yaml.join("pods.yaml").to_string_lossy().into_owned();
            let namespaces = w
                .yaml
                .join("namespaces.yaml")
                .to_string_lossy()
                .into_owned();
            // The same question as bench/peers/compare_nca.py asks it.
            let n = median(
                nca,
                &[
                    "--connectivity",
                    &policies,
                    "--ns_list",
                    &namespaces,
                    "--pod_list",
                    &pods,
                    "--output_format",
                    "txt_no_fw_rules",
                    "--output_endpoints",
                    "deployments",
                ],
                1,
            )?;
            line(
                "network-config-analyzer --connectivity",
                n,
                &format!(
                    "  (bulkhead map is {:.0}x faster)",
                    n.wall.as_secs_f64() / m.wall.as_secs_f64().max(1e-9)
                ),
            );
        }
        let _ = std::fs::remove_dir_all(&w.yaml);
        let _ = std::fs::remove_dir_all(&w.json);
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

/// The `bulkhead` binary next to this program (both are built into the same directory).
pub fn default_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("bulkhead")))
        .unwrap_or_else(|| PathBuf::from("bulkhead"))
}
