//! What a new user meets in the first hour: every input gets a clear answer. Each test is the
//! smallest case of one report in the "First hour" issue and failed before its fix.

mod support;

use assert_cmd::Command;
use std::path::{Path, PathBuf};
use std::time::Instant;
use support::{Run, bin, output, run};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/first-hour")
        .join(name)
}

/// Runs bulkhead with its address space limited to 200 MB (RLIMIT_AS), as the issue asks:
/// an input that explodes in memory must end with an error, not an abort.
fn run_limited(args: &[&str], stdin: Option<&Path>) -> Run {
    let mut script = String::from("ulimit -v 200000 && exec \"$0\"");
    for i in 1..=args.len() {
        script.push_str(&format!(" \"${i}\""));
    }
    if let Some(path) = stdin {
        script.push_str(&format!(" < '{}'", path.display()));
    }
    let mut c = Command::new("sh");
    c.arg("-c").arg(script).arg(bin()).args(args);
    let started = Instant::now();
    let r = output(c);
    println!("{args:?}: exit {} after {:.2?}", r.code, started.elapsed());
    r
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn alias_bombs_end_with_a_located_error_under_200_mb() {
    for name in [
        "alias-bomb-bare.yaml",
        "alias-bomb-configmap.yaml",
        "alias-bomb-mapping.yaml",
    ] {
        let file = fixture(name);
        let r = run_limited(&["check", path(&file)], None);
        assert_eq!(r.code, 1, "{name}: {}{}", r.stdout, r.stderr);
        assert!(
            r.stdout.contains("excessive aliasing") && r.stdout.contains(&format!("{name}:")),
            "{name}: {}",
            r.stdout
        );
    }
}

#[test]
fn deep_nesting_is_a_located_error() {
    let file = fixture("deep-nesting.yaml");
    let r = run_limited(&["check", path(&file)], None);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("deep-nesting.yaml:"), "{}", r.stdout);
}

#[test]
fn a_fifo_and_dev_zero_end_with_an_error_under_200_mb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("manifests.yaml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let r = run_limited(&["check", path(&fifo)], None);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("FIFO"), "{}", r.stderr);

    let r = run_limited(&["check", "/dev/zero"], None);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("/dev/zero") && r.stderr.contains("character device"));

    let r = run_limited(&["check", "-"], Some(Path::new("/dev/zero")));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("NUL byte"), "{}", r.stderr);
}

#[test]
fn a_fifo_and_symlink_loops_inside_a_directory_are_named_and_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(fixture("np.yaml"), dir.path().join("np.yaml")).expect("copy");
    std::process::Command::new("mkfifo")
        .arg(dir.path().join("pipe.yaml"))
        .status()
        .expect("mkfifo runs");
    std::os::unix::fs::symlink(".", dir.path().join("loop-a")).expect("symlink");
    std::os::unix::fs::symlink(".", dir.path().join("loop-b")).expect("symlink");
    let r = run(&["check", path(dir.path()), "-o", "json"]);
    let json: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    let skipped: Vec<String> = json["diagnostics"]
        .as_array()
        .expect("array")
        .iter()
        .filter(|d| d["code"] == "BH014")
        .map(|d| d["file"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        skipped.iter().any(|f| f.ends_with("pipe.yaml")),
        "{skipped:?}"
    );
    assert!(skipped.iter().any(|f| f.ends_with("loop-a")), "{skipped:?}");
    assert!(skipped.iter().any(|f| f.ends_with("loop-b")), "{skipped:?}");
    // The manifest itself is read once, not once per link.
    let duplicates = json["diagnostics"]
        .as_array()
        .expect("array")
        .iter()
        .filter(|d| d["code"] == "BH010")
        .count();
    assert_eq!(duplicates, 0, "{}", r.stdout);
}

#[test]
fn a_missing_path_is_exit_2_for_every_command() {
    let missing = "/nonexistent/bulkhead";
    for args in [
        vec!["check", missing],
        vec!["map", missing],
        vec!["coverage", missing],
        vec!["compile", missing, "--node", "n1"],
        vec![
            "explain", missing, "--from", "a/b", "--to", "c/d", "--port", "80",
        ],
        vec!["diff", "--base", missing, "--head", missing],
    ] {
        let r = run(&args);
        assert_eq!(r.code, 2, "{args:?}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains("cannot read"), "{args:?}: {}", r.stderr);
        assert!(
            r.stdout.is_empty(),
            "{args:?} printed a result: {}",
            r.stdout
        );
    }
    let np = fixture("np.yaml");
    let r = run(&["diff", "--base", missing, "--head", path(&np)]);
    assert_eq!(r.code, 2, "{}", r.stdout);
}

#[test]
fn a_kind_typo_is_an_error_with_a_suggestion() {
    let r = run(&["check", path(&fixture("kind-typo.yaml")), "-o", "json"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let json: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    let d = json["diagnostics"]
        .as_array()
        .expect("array")
        .iter()
        .find(|d| d["code"] == "BH018")
        .expect("BH018")
        .clone();
    assert_eq!(d["severity"], "error");
    assert_eq!(d["line"], 2);
    assert!(
        d["help"]
            .as_str()
            .unwrap_or_default()
            .contains("NetworkPolicy")
    );
}

#[test]
fn other_projects_network_policies_are_warnings_not_info() {
    let r = run(&["check", path(&fixture("cilium.yaml")), "-o", "json"]);
    let json: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    let d = json["diagnostics"]
        .as_array()
        .expect("array")
        .iter()
        .find(|d| d["code"] == "BH011")
        .expect("BH011")
        .clone();
    assert_eq!(d["severity"], "warning", "{d}");
    assert!(
        d["message"]
            .as_str()
            .unwrap_or_default()
            .contains("does not evaluate")
    );
}

#[test]
fn a_kustomize_directory_is_not_read_as_objects() {
    let r = run(&["check", path(&fixture("kustomize")), "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let json: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    let diagnostics = json["diagnostics"].as_array().expect("array");
    let k: Vec<_> = diagnostics
        .iter()
        .filter(|d| d["code"] == "BH016")
        .collect();
    assert_eq!(k.len(), 1, "{diagnostics:#?}");
    assert!(
        k[0]["help"]
            .as_str()
            .unwrap_or_default()
            .contains("kustomize build")
    );
    // The patch is not read as a (broken) NetworkPolicy.
    assert!(
        !diagnostics.iter().any(|d| d["file"]
            .as_str()
            .unwrap_or_default()
            .ends_with("patch.yaml")),
        "{diagnostics:#?}"
    );
}

#[test]
fn empty_input_says_there_is_nothing_to_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.yaml");
    std::fs::write(&empty, "# only a comment\n").expect("write");
    let r = run(&["check", path(&empty)]);
    assert!(
        r.stdout.contains("BH017") && r.stdout.contains("no Kubernetes object"),
        "{}",
        r.stdout
    );
    let mut c = support::bulkhead();
    c.args(["check", "-"]).write_stdin("");
    let r = output(c);
    assert!(r.stdout.contains("BH017"), "{}", r.stdout);
    let r = run(&["map", path(dir.path())]);
    assert!(r.stderr.contains("no Kubernetes object"), "{}", r.stderr);
}

#[test]
fn compile_names_an_unknown_node_instead_of_printing_nothing() {
    let live = fixture("live-pods.yaml");
    let r = run(&["compile", path(&live), "--node", "node-9"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stderr.contains("node-9") && r.stderr.contains("node-1"),
        "{}",
        r.stderr
    );
    let git = fixture("np.yaml");
    let r = run(&["compile", path(&git), "--node", "node-1"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(r.stderr.contains("spec.nodeName"), "{}", r.stderr);
    let r = run(&["compile", path(&live), "--node", "node-1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("table inet bulkhead"), "{}", r.stdout);
}

#[test]
fn a_bare_pod_from_git_is_an_endpoint() {
    let app = fixture("bare-pods.yaml");
    let r = run(&[
        "explain",
        path(&app),
        "--from",
        "development/network-test-frontend",
        "--to",
        "development/database",
        "--port",
        "5432",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(": DENY"), "{}", r.stdout);
    let r = run(&["map", path(&app), "-o", "json"]);
    let json: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert!(
        json["connections"]
            .as_array()
            .expect("array")
            .iter()
            .any(|c| c["from"] == "development/network-test-frontend"),
        "{}",
        r.stdout
    );
    let r = run(&["check", path(&app)]);
    assert!(!r.stdout.contains("selects no pod"), "{}", r.stdout);
    assert!(!r.stdout.contains("matches no pod"), "{}", r.stdout);
}

#[test]
fn map_from_lists_the_external_ranges_egress_allows() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/security-tier");
    let r = run(&["map", path(&dir), "--from", "prod/api-0", "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let json: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    let external: Vec<&serde_json::Value> = json["connections"]
        .as_array()
        .expect("array")
        .iter()
        .filter(|c| c["to"].as_str().unwrap_or_default().starts_with("ip:"))
        .collect();
    // The security tier denies the metadata service; the namespace policy allows the rest.
    assert!(
        external
            .iter()
            .any(|c| c["to"] == "ip:0.0.0.0/0 except 169.254.169.254/32"
                && c["protocol"] == "TCP"
                && c["ports"] == "all"),
        "{external:#?}"
    );
    assert!(
        !external.iter().any(|c| c["to"]
            .as_str()
            .unwrap_or_default()
            .starts_with("ip:169.254.169.254")),
        "{external:#?}"
    );
    // And explain agrees on a member of each region.
    for (to, verdict) in [("8.8.8.8", "ALLOW"), ("169.254.169.254", "DENY")] {
        let r = run(&[
            "explain",
            path(&dir),
            "--from",
            "prod/api-0",
            "--to",
            to,
            "--port",
            "443",
        ]);
        assert!(
            r.stdout.contains(&format!(": {verdict}")),
            "{to}: {}",
            r.stdout
        );
    }
}

#[test]
fn an_ignore_path_matches_however_the_path_is_typed() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("legacy")).expect("mkdir");
    std::fs::copy(
        fixture("lint-finding.yaml"),
        dir.path().join("legacy/lint-finding.yaml"),
    )
    .expect("copy");
    let findings = |cwd: &Path, args: &[&str]| -> usize {
        let mut c = support::bulkhead();
        c.current_dir(cwd).args(["check", "-o", "json"]).args(args);
        let r = output(c);
        let json: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
        json["diagnostics"]
            .as_array()
            .expect("array")
            .iter()
            .filter(|d| d["code"].as_str().unwrap_or_default().starts_with("BH1"))
            .count()
    };
    // Without the configuration the fixture has findings.
    assert!(findings(dir.path(), &["legacy"]) > 0);
    std::fs::write(
        dir.path().join("bulkhead.toml"),
        "[[ignore]]\npath = \"./legacy\"\n",
    )
    .expect("write");
    let absolute = dir.path().join("legacy");
    for spelling in [
        "legacy",
        "./legacy/",
        "legacy/../legacy/lint-finding.yaml",
        path(&absolute),
    ] {
        assert_eq!(findings(dir.path(), &[spelling]), 0, "{spelling}");
    }
    // From another directory, with --config: the path is relative to the configuration file.
    let config = dir.path().join("bulkhead.toml");
    let parent = dir.path().parent().expect("parent");
    let name = dir
        .path()
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    assert_eq!(
        findings(
            parent,
            &[&format!("{name}/legacy"), "--config", path(&config)]
        ),
        0
    );
    // Whole components only.
    std::fs::write(
        dir.path().join("bulkhead.toml"),
        "[[ignore]]\npath = \"leg\"\n",
    )
    .expect("write");
    assert!(findings(dir.path(), &["legacy"]) > 0);
}

#[test]
fn every_type_error_of_an_object_is_reported_at_once() {
    let r = run(&["check", path(&fixture("type-errors.yaml")), "-o", "json"]);
    assert_eq!(r.code, 1);
    let json: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    let lines = |code: &str| -> Vec<u64> {
        json["diagnostics"]
            .as_array()
            .expect("array")
            .iter()
            .filter(|d| d["code"] == code)
            .map(|d| d["line"].as_u64().unwrap_or_default())
            .collect()
    };
    assert_eq!(lines("BH007"), vec![6, 11, 13, 15, 17], "{}", r.stdout);
    assert_eq!(lines("BH008"), vec![16, 18], "{}", r.stdout);
}

#[test]
fn an_error_on_a_20_kb_line_prints_a_short_snippet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("minified.json");
    let text = format!(
        r#"{{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {{"name": "x", "namespace": "s", "annotations": {{"a": "{}"}}}}, "spec": {{"podSelector": {{}}, "policyTypes": ["Ingres"]}}}}"#,
        "x".repeat(20_000)
    );
    std::fs::write(&file, text).expect("write");
    let r = run(&["check", path(&file)]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("\"Ingres\""), "{}", r.stdout);
    let longest = r
        .stdout
        .lines()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0);
    assert!(longest < 200, "a line of {longest} characters");
}

#[test]
fn coverage_counts_replicas_and_does_not_call_empty_or_open_namespaces_protected() {
    let file = fixture("coverage.yaml");
    let r = run(&["coverage", path(&file), "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let json: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    let ns = |name: &str| -> serde_json::Value {
        json["namespaces"]
            .as_array()
            .expect("array")
            .iter()
            .find(|n| n["namespace"] == name)
            .expect("namespace")
            .clone()
    };
    assert_eq!(
        ns("shop")["pods"],
        3,
        "a Deployment of 3 replicas is 3 pods"
    );
    assert_eq!(
        ns("shop")["default_deny_ingress"],
        false,
        "deny-cross-namespace allows everything inside the namespace"
    );
    assert_eq!(json["pods"], 3);
    let r = run(&["coverage", path(&file)]);
    let empty = r
        .stdout
        .lines()
        .find(|l| l.starts_with("empty "))
        .expect("row")
        .to_string();
    assert!(!empty.contains("100%"), "{empty}");
    assert!(empty.contains('-'), "{empty}");
}

#[test]
fn statefulset_replicas_from_git_answer_to_their_pod_names() {
    let demo = fixture("three-tier.yaml");
    let r = run(&[
        "explain",
        path(&demo),
        "--from",
        "development/deployment/backend",
        "--to",
        "development/database-0",
        "--port",
        "5432",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .starts_with("development/backend -> development/database-0 TCP/5432: ALLOW"),
        "{}",
        r.stdout
    );
    // A replica the StatefulSet does not have (1 replica by default) is not invented.
    let r = run(&[
        "explain",
        path(&demo),
        "--from",
        "development/deployment/backend",
        "--to",
        "development/database-1",
        "--port",
        "5432",
    ]);
    assert_eq!(r.code, 2, "{}", r.stdout);
}

#[test]
fn short_references_use_the_namespace_flag_and_ports_may_be_named() {
    let demo = fixture("three-tier.yaml");
    let full = run(&[
        "explain",
        path(&demo),
        "--from",
        "development/deployment/frontend",
        "--to",
        "development/deployment/backend",
        "--port",
        "8080",
        "-o",
        "json",
    ]);
    assert_eq!(full.code, 0, "{}", full.stderr);
    for (from, to, port) in [
        ("frontend", "backend", "8080"),
        ("deploy/frontend", "deployment/backend", "http"),
    ] {
        let short = run(&[
            "explain",
            path(&demo),
            "-n",
            "development",
            "--from",
            from,
            "--to",
            to,
            "--port",
            port,
            "-o",
            "json",
        ]);
        assert_eq!(short.code, 0, "{from} {to} {port}: {}", short.stderr);
        assert_eq!(short.stdout, full.stdout, "{from} {to} {port}");
    }
    let r = run(&[
        "explain",
        path(&demo),
        "-n",
        "development",
        "--from",
        "frontend",
        "--to",
        "backend",
        "--port",
        "grpc",
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("http (TCP/8080)"), "{}", r.stderr);
    let r = run(&[
        "map",
        path(&demo),
        "-n",
        "development",
        "--from",
        "frontend",
        "--port",
        "http",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("development/backend"), "{}", r.stdout);
}

/// Subcommands of `bulkhead` (and of `bulkhead agent`), read from `--help` itself so a new
/// command cannot be forgotten.
fn subcommands(prefix: &[&str]) -> Vec<String> {
    let mut args: Vec<&str> = prefix.to_vec();
    args.push("--help");
    let r = run(&args);
    let mut names = Vec::new();
    let mut in_commands = false;
    for line in r.stdout.lines() {
        if line.starts_with("Commands:") {
            in_commands = true;
            continue;
        }
        if in_commands {
            if !line.starts_with("  ") {
                break;
            }
            // Subcommand rows are indented by two spaces; wrapped help text by more.
            if line.starts_with("   ") {
                continue;
            }
            if let Some(name) = line.split_whitespace().next()
                && name != "help"
            {
                names.push(name.to_string());
            }
        }
    }
    names
}

#[test]
fn every_subcommand_help_has_an_examples_section() {
    let top = subcommands(&[]);
    assert!(top.len() >= 15, "{top:?}");
    let mut checked = 0;
    let mut walk: Vec<Vec<String>> = top.iter().map(|c| vec![c.clone()]).collect();
    while let Some(path) = walk.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let mut help = args.clone();
        help.push("--help");
        let r = run(&help);
        assert_eq!(r.code, 0, "{path:?}: {}", r.stderr);
        assert!(
            r.stdout.contains("\nExamples:\n"),
            "{path:?} --help has no Examples section"
        );
        checked += 1;
        for sub in subcommands(&args) {
            let mut deeper = path.clone();
            deeper.push(sub);
            walk.push(deeper);
        }
    }
    println!("{checked} subcommands have examples");
    assert!(
        checked >= top.len() + 4,
        "agent's subcommands were walked too"
    );
}

#[test]
fn completion_for_bash_loads_in_bash() {
    let r = run(&["completion", "bash"]);
    assert_eq!(r.code, 0);
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("bulkhead.bash");
    std::fs::write(&script, &r.stdout).expect("write");
    let loaded = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source '{}' && complete -p bulkhead",
            script.display()
        ))
        .output()
        .expect("bash runs");
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert!(String::from_utf8_lossy(&loaded.stdout).contains("bulkhead"));
}

#[test]
fn the_man_page_and_version_come_from_the_same_definitions() {
    let r = run(&["man"]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.starts_with(".ie") || r.stdout.contains(".TH bulkhead"),
        "{}",
        &r.stdout[..200.min(r.stdout.len())]
    );
    assert!(r.stdout.contains("explain"));
    let dir = tempfile::tempdir().expect("tempdir");
    let r = run(&["man", "--dir", path(dir.path())]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(dir.path().join("bulkhead-explain.1").exists());
    let r = run(&["--version"]);
    assert!(r.stdout.starts_with("bulkhead 0."), "{}", r.stdout);
    assert!(r.stdout.contains("commit"), "{}", r.stdout);
}

#[test]
fn junit_fails_only_on_errors_unless_warnings_are_denied() {
    // A clean-but-for-warnings input: a NetworkPolicy whose selector matches no pod.
    let file = fixture("lint-finding.yaml");
    let r = run(&["check", path(&file), "-o", "junit"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let doc = roxmltree::Document::parse(&r.stdout).expect("JUnit XML");
    let failures = doc
        .descendants()
        .filter(|n| n.has_tag_name("failure"))
        .count();
    let cases = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .count();
    assert_eq!(failures, 0, "{}", r.stdout);
    assert!(cases > 0);
    let r = run(&["check", path(&file), "-o", "junit", "--deny", "warnings"]);
    assert_eq!(r.code, 1);
    let doc = roxmltree::Document::parse(&r.stdout).expect("JUnit XML");
    assert!(doc.descendants().any(|n| n.has_tag_name("failure")));
}

#[test]
fn test_json_says_what_was_expected_and_what_happened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expect = dir.path().join("expect.yaml");
    std::fs::write(
        &expect,
        "expectations:\n- {from: development/deployment/frontend, to: development/database-0, port: 5432, expect: allow}\n",
    )
    .expect("write");
    let r = run(&[
        "test",
        path(&fixture("three-tier.yaml")),
        "--expect",
        path(&expect),
        "-o",
        "json",
    ]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let json: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    let row = &json["results"][0];
    assert_eq!(row["from"], "development/deployment/frontend");
    assert_eq!(row["to"], "development/database-0");
    assert_eq!(row["port"], 5432);
    assert_eq!(row["protocol"], "TCP");
    assert_eq!(row["expected"], "allow");
    assert_eq!(row["actual"], "deny");
    assert_eq!(row["passed"], false);
}
