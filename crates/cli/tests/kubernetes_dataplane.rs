//! The agent in Kubernetes mode with real packets: pods are network namespaces wired by the
//! real CNI plugins, the agent follows the loopback API server double (the real list/watch
//! protocol through kube-rs), and the kernel enforces. Privileged like the dataplane suite:
//! without root it says SKIPPED, and with BULKHEAD_REQUIRE_PRIVILEGED=1 (CI) it fails.

#[path = "dataplane/lab.rs"]
mod lab;

use bulkhead_apiserver_double::{ApiServer, ResourceType};
use lab::{Lab, NODE};
use serde_json::{Value, json};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{IpAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CLIENT: &str = "10.77.0.1";
const SERVER: &str = "10.77.0.2";

fn pod(name: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "x", "labels": {"app": name}},
        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    })
}

fn only_81() -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "only-81", "namespace": "x"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "server"}},
            "ingress": [{"ports": [{"port": 81}]}],
        },
    })
}

/// The agent process, killed when the test ends (also when it fails).
struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `GET path` on the agent's endpoints: (status code, body).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((code, body))
}

fn metric(port: u16, name: &str) -> Option<f64> {
    let (_, body) = http_get(port, "/metrics")?;
    body.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// The sum of a labelled family's series (0 while it has none).
fn metric_sum(port: u16, family: &str) -> f64 {
    let (_, body) = http_get(port, "/metrics").expect("/metrics answers");
    body.lines()
        .filter(|l| {
            l.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits (bounded) until `family` sums to `want`.
fn until_counted(port: u16, family: &str, want: f64, what: &str) {
    let started = Instant::now();
    while metric_sum(port, family) < want {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: {family} should reach {want}, is {}",
            metric_sum(port, family)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn reaches(lab: &Lab, port: u16, timeout_ms: u64) -> bool {
    let server: IpAddr = SERVER.parse().expect("ip");
    lab.probe("x/client", "tcp", server, port, timeout_ms)
        .expect("probe")
        .wait()
        .is_ok_and(|s| s.success())
}

/// Waits (bounded) until port `port` is reachable or not as `open` says; the time it took.
fn until(lab: &Lab, port: u16, open: bool, within: Duration, what: &str) -> Duration {
    let started = Instant::now();
    while started.elapsed() < within {
        if reaches(lab, port, 150) == open {
            let took = started.elapsed();
            println!(
                "{what}: port {port} {} after {:.0} ms",
                if open { "open" } else { "closed" },
                took.as_secs_f64() * 1e3
            );
            return took;
        }
    }
    panic!(
        "{what}: port {port} should be {} within {within:?}",
        if open { "open" } else { "closed" }
    );
}

/// Probes both ports for `span`: 81 must always connect and 80 never.
fn steady(lab: &Lab, span: Duration, what: &str) -> usize {
    let started = Instant::now();
    let mut rounds = 0;
    while started.elapsed() < span {
        assert!(
            reaches(lab, 81, 1000),
            "{what}: the allowed port 81 dropped"
        );
        assert!(
            !reaches(lab, 80, 150),
            "{what}: the denied port 80 connected"
        );
        rounds += 1;
    }
    println!("{what}: {rounds} probe rounds over {span:?}, 81 always open, 80 always closed");
    rounds
}

#[test]
fn the_agent_follows_the_kubernetes_api_with_real_packets() {
    if !lab::privileged_or_skip("agent --kubernetes") {
        return;
    }
    lab::sweep_leftovers();
    let mut lab = Lab::new("kube");
    lab.pod("x/client", CLIENT.parse().expect("ip"))
        .unwrap_or_else(|e| panic!("{e}"));
    lab.pod("x/server", SERVER.parse().expect("ip"))
        .unwrap_or_else(|e| panic!("{e}"));
    lab.serve("x/server", &[80, 81], &[])
        .unwrap_or_else(|e| panic!("{e}"));

    // The API knows the client and the policy, not yet the server pod.
    let mut api = ApiServer::start(ResourceType::bulkhead_kinds()).expect("API double");
    api.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}))
        .expect("applied");
    api.apply(pod("client", CLIENT)).expect("applied");
    api.apply(only_81()).expect("applied");
    let state = tempfile::tempdir().expect("tempdir");
    let kubeconfig = state.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).expect("written");
    let agent_state = state.path().join("state");
    let port = free_port();
    let mut child = Command::new(lab::bulkhead())
        .args(["agent", "--kubernetes", "--node", NODE, "--kubeconfig"])
        .arg(&kubeconfig)
        .arg("--state-dir")
        .arg(&agent_state)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--deny-log-stdout",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent starts");
    let stderr = child.stderr.take().expect("stderr");
    // Deny records on stdout, one JSON object per line, for the cluster's log collector.
    let stdout = child.stdout.take().expect("stdout");
    let (records, denied) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let record: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout is JSON lines: {e}: {line}"));
            let _ = records.send(record);
        }
    });
    let agent = AgentProcess(child);
    let (lines, log) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("agent: {line}");
            let _ = lines.send(line);
        }
    });
    let applied = Instant::now();
    loop {
        let line = log
            .recv_timeout(Duration::from_secs(60).saturating_sub(applied.elapsed()))
            .expect("the agent applied its first ruleset within 60 s");
        if line.contains("applied ruleset") {
            break;
        }
    }
    let ready = Instant::now();
    while http_get(port, "/readyz").map(|r| r.0) != Some(200) {
        assert!(
            ready.elapsed() < Duration::from_secs(10),
            "/readyz turned 200"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(http_get(port, "/healthz").map(|r| r.0), Some(200));

    // 1. A pod created through the API is enforced: port 80 closes, 81 stays open.
    assert!(
        reaches(&lab, 80, 1000),
        "the server's address is no pod yet"
    );
    let created = Instant::now();
    api.apply(pod("server", SERVER)).expect("applied");
    until(
        &lab,
        80,
        false,
        Duration::from_secs(10),
        "server pod created",
    );
    println!(
        "API event -> enforced: {:.0} ms",
        created.elapsed().as_secs_f64() * 1e3
    );
    assert!(reaches(&lab, 81, 1000));
    // The denied connections were logged on stdout in the format `bulkhead audit` reads.
    let record = loop {
        let record = denied
            .recv_timeout(Duration::from_secs(10))
            .expect("a deny record on stdout within 10 s");
        if record["dst_port"] == 80 {
            break record;
        }
    };
    assert_eq!(record["verdict"], "deny", "{record}");
    assert_eq!(record["dst"], "x/server", "{record}");
    // Selected by only-81 and matched by none of its rules: the tier's default decides.
    assert_eq!(record["rule"], "end of tier default", "{record}");

    // 1b. Denied connections are counted once each, however often their SYN is sent again:
    //     a connect that waits 2.5 s sends it twice (the retransmit after 1 s).
    let family = "bulkhead_denied_connections_total";
    std::thread::sleep(Duration::from_millis(300));
    let before = metric_sum(port, family);
    assert!(before >= 1.0, "the probes above were counted: {before}");
    assert!(!reaches(&lab, 80, 2500), "denied, with a retransmit");
    until_counted(port, family, before + 1.0, "one denied connection");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        metric_sum(port, family),
        before + 1.0,
        "its retransmit is the same connection"
    );
    assert!(!reaches(&lab, 80, 150));
    until_counted(port, family, before + 2.0, "a second connection");

    // 2. The policy deleted through the API re-opens the flow.
    assert!(
        api.delete(
            "networking.k8s.io/v1",
            "NetworkPolicy",
            Some("x"),
            "only-81"
        )
        .expect("deleted")
    );
    until(&lab, 80, true, Duration::from_secs(10), "policy deleted");
    api.apply(only_81()).expect("applied");
    until(
        &lab,
        80,
        false,
        Duration::from_secs(10),
        "policy created again",
    );

    // 2b. The cluster-wide break-glass ConfigMap, created through the API, opens the denied
    //     flow on this node; naming the namespace takes it out of enforcement (audit);
    //     deleting the ConfigMap closes the flow again.
    let (glass_namespace, glass_name) = bulkhead_kube::BREAK_GLASS;
    let glass = |data: Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": glass_name, "namespace": glass_namespace}, "data": data})
    };
    api.apply(glass(json!({"reason": "test: everything open"})))
        .expect("applied");
    until(
        &lab,
        80,
        true,
        Duration::from_secs(10),
        "cluster break-glass on",
    );
    assert_eq!(
        metric(port, "bulkhead_break_glass"),
        Some(1.0),
        "the metrics say break-glass is on"
    );
    api.delete("v1", "ConfigMap", Some(glass_namespace), glass_name)
        .expect("deleted");
    until(
        &lab,
        80,
        false,
        Duration::from_secs(10),
        "cluster break-glass off",
    );
    api.apply(glass(
        json!({"namespaces": "x", "reason": "test: one namespace"}),
    ))
    .expect("applied");
    until(
        &lab,
        80,
        true,
        Duration::from_secs(10),
        "namespace x opened",
    );
    api.apply(glass(json!({"namespaces": "elsewhere"})))
        .expect("applied");
    until(
        &lab,
        80,
        false,
        Duration::from_secs(10),
        "another namespace opened",
    );
    api.delete("v1", "ConfigMap", Some(glass_namespace), glass_name)
        .expect("deleted");
    steady(
        &lab,
        Duration::from_secs(1),
        "break-glass ConfigMap deleted",
    );

    // 3. The API server stopped for 30 s changes nothing in the kernel; the agent says so in
    //    its metrics, and catches up after (a change made meanwhile arrives).
    api.stop();
    api.delete(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        Some("x"),
        "only-81",
    )
    .expect("deleted while the server is down");
    steady(&lab, Duration::from_secs(30), "API server stopped");
    assert_eq!(
        metric(port, "bulkhead_agent_source_up"),
        Some(0.0),
        "the metrics say the source is down"
    );
    assert_eq!(http_get(port, "/readyz").map(|r| r.0), Some(200));
    api.restart().expect("restarts");
    until(&lab, 80, true, Duration::from_secs(30), "API server back");
    assert_eq!(metric(port, "bulkhead_agent_source_up"), Some(1.0));

    // 4. A 410 Gone makes the watchers relist; a probe loop across it sees no window.
    api.apply(only_81()).expect("applied");
    until(&lab, 80, false, Duration::from_secs(10), "policy back");
    let relists = metric(port, "bulkhead_agent_source_relists_total").expect("relists metric");
    api.apply(pod("client", CLIENT))
        .expect("a no-op change after compaction");
    api.compact();
    api.drop_watches();
    let relisted = Instant::now();
    while metric(port, "bulkhead_agent_source_relists_total").unwrap_or(0.0) <= relists {
        assert!(
            relisted.elapsed() < Duration::from_secs(30),
            "the watchers relisted after 410"
        );
        assert!(
            reaches(&lab, 81, 1000),
            "410 relist: the allowed port 81 dropped"
        );
        assert!(
            !reaches(&lab, 80, 150),
            "410 relist: the denied port 80 connected"
        );
    }
    steady(&lab, Duration::from_secs(2), "after the 410 relist");
    drop(agent);
}
