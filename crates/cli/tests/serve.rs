//! `bulkhead serve`: its safety rules over plain HTTP, and the page in a real browser (Debian's
//! chromium driven through chromium-driver with WebDriver). Screenshots land in
//! `target/screenshots/` for CI to keep.
//!
//! With BULKHEAD_REQUIRE_CHROMIUM=1 (the test command sets it) a missing browser or driver
//! fails the browser tests instead of skipping them.

mod support;

use fantoccini::{Client, ClientBuilder, Locator};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Starts `bulkhead serve` on a free loopback port and returns it with its address.
fn serve(binary: &Path, paths: &[&Path]) -> (Killed, String) {
    let mut child = Command::new(binary)
        .arg("serve")
        .args(paths)
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start bulkhead serve");
    let stdout = child.stdout.take().expect("stdout");
    let guard = Killed(child);
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .expect("the first line of serve");
    // Keep draining, so a later line never meets a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    // "serving N pods and M policies on http://127.0.0.1:PORT/ (Ctrl-C to stop)"
    let address = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    (guard, address)
}

/// One raw HTTP/1.1 request; returns the status code and the body.
fn request(address: &str, method: &str, path: &str, host: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn demo() -> PathBuf {
    repo().join("examples/three-tier")
}

#[test]
fn a_foreign_host_header_is_refused() {
    let (_server, address) = serve(&support::bin(), &[&demo()]);
    let (ok, _) = request(&address, "GET", "/api/check", &address, "");
    assert_eq!(ok, 200, "the server's own address is served");
    for host in ["evil.example", "evil.example:80", "127.0.0.2:1", ""] {
        let (status, body) = request(&address, "GET", "/api/check", host, "");
        assert_eq!(status, 403, "Host {host:?} must be refused: {body}");
        assert!(body.contains("DNS-rebinding"), "{body}");
    }
}

#[test]
fn no_method_but_get_and_the_what_if_post_is_accepted() {
    let (_server, address) = serve(&support::bin(), &[&demo()]);
    for (method, path) in [
        ("POST", "/api/check"),
        ("PUT", "/api/what-if"),
        ("DELETE", "/api/map"),
        ("PATCH", "/"),
        ("POST", "/"),
        ("POST", "/api/explain"),
    ] {
        let (status, _) = request(&address, method, path, &address, "");
        assert_eq!(status, 405, "{method} {path} must be refused");
    }
    let (status, body) = request(&address, "POST", "/api/what-if", &address, "");
    assert_eq!(status, 200, "the one POST: {body}");
    let big = "#".repeat((1 << 20) + 1);
    let (status, _) = request(&address, "POST", "/api/what-if", &address, &big);
    assert_eq!(status, 413, "a what-if over 1 MiB is refused");
}

#[test]
fn the_api_answers_with_the_commands_json() {
    let (_server, address) = serve(&support::bin(), &[&demo()]);
    let demo = demo();
    let cli = |args: &[&str]| -> serde_json::Value {
        let out = Command::new(support::bin())
            .args(args)
            .current_dir(repo())
            .output()
            .expect("run bulkhead");
        serde_json::from_slice(&out.stdout).expect("JSON from the CLI")
    };
    let api = |path: &str| -> serde_json::Value {
        let (status, body) = request(&address, "GET", path, &address, "");
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).expect("JSON from the API")
    };
    let demo_path = demo.to_string_lossy().to_string();
    assert_eq!(
        api("/api/map?by=pod&from=development/frontend"),
        cli(&[
            "map",
            &demo_path,
            "--by",
            "pod",
            "--from",
            "development/frontend",
            "-o",
            "json"
        ])
    );
    assert_eq!(
        api("/api/explain?from=development/frontend&to=development/backend&port=8080&protocol=TCP"),
        cli(&[
            "explain",
            &demo_path,
            "--from",
            "development/frontend",
            "--to",
            "development/backend",
            "--port",
            "8080",
            "-o",
            "json"
        ])
    );
    assert_eq!(api("/api/check"), cli(&["check", &demo_path, "-o", "json"]));
    let (status, body) = request(
        &address,
        "GET",
        "/api/explain?from=nope&to=x&port=1",
        &address,
        "",
    );
    assert_eq!(status, 400, "an unknown endpoint is a clear error: {body}");
    assert!(body.contains("nope"), "{body}");
}

/// chromedriver on a free port, or `None` (skip) when the machine has no browser and the
/// test command did not ask for one.
fn chromedriver() -> Option<(Killed, u16)> {
    let required = std::env::var_os("BULKHEAD_REQUIRE_CHROMIUM").is_some();
    let found = ["/usr/bin/chromedriver", "/usr/bin/chromium"]
        .iter()
        .all(|p| Path::new(p).exists());
    if !found {
        assert!(
            !required,
            "chromium and chromium-driver are required (apt-get install chromium chromium-driver)"
        );
        eprintln!("skipped: no chromium/chromedriver on this machine");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let guard = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((guard, port))
}

async fn browser(port: u16) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session")
}

async fn screenshot(client: &Client, name: &str) {
    let dir = repo().join("target/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let png = client.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
}

async fn css(client: &Client, selector: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(selector))
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"))
}

async fn click(client: &Client, selector: &str) {
    css(client, selector)
        .await
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {selector}: {e}"));
}

async fn text_of(client: &Client, selector: &str) -> String {
    css(client, selector).await.text().await.expect("text")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn the_demo_in_a_real_browser() {
    let Some((_driver, port)) = chromedriver() else {
        return;
    };
    let (_server, address) = serve(&support::bin(), &[&demo()]);
    runtime().block_on(async {
        let client = browser(port).await;
        client
            .goto(&format!("http://{address}/"))
            .await
            .expect("open the page");
        css(&client, "body[data-ready]").await;
        let first_view = text_of(&client, "#graph-summary").await;
        assert!(first_view.starts_with("namespaces:"), "{first_view}");
        screenshot(&client, "serve-1-namespaces").await;

        // Drill into a namespace: its workloads.
        click(&client, "g.node[data-id='development']").await;
        css(&client, "body[data-level='workloads:development']").await;
        css(&client, "g.node[data-id='development/deployment/frontend']").await;
        screenshot(&client, "serve-2-development").await;

        // Click an edge: the explanation, as `explain` prints it.
        click(
            &client,
            "button[data-edge='development/deployment/frontend->development/deployment/backend']",
        )
        .await;
        css(&client, "#explain[data-done]").await;
        let explained = text_of(&client, "#explain").await;
        assert!(
            explained.contains("development/frontend -> development/backend TCP/8080: ALLOW"),
            "{explained}"
        );
        assert!(
            explained.contains("NetworkPolicy development/backend-from-frontend rule ingress[0]"),
            "{explained}"
        );
        assert!(explained.contains("three-tier.yaml:201:5"), "{explained}");
        screenshot(&client, "serve-3-explain").await;

        // What if allow-dns selected kube-system by the label it really has?
        click(&client, "nav button[data-tab='whatif']").await;
        click(
            &client,
            "button[data-edit='NetworkPolicy development/allow-dns']",
        )
        .await;
        let yaml = client
            .execute(
                "return document.querySelector('#whatif-yaml').value",
                vec![],
            )
            .await
            .expect("read the editor");
        let yaml = yaml.as_str().unwrap_or_default();
        assert!(yaml.contains("matchLabels: {name: kube-system}"), "{yaml}");
        let fixed = yaml.replace(
            "matchLabels: {name: kube-system}",
            "matchLabels: {kubernetes.io/metadata.name: kube-system}",
        );
        client
            .execute(
                "document.querySelector('#whatif-yaml').value = arguments[0]",
                vec![serde_json::Value::String(fixed)],
            )
            .await
            .expect("edit");
        click(&client, "#whatif-run").await;
        css(&client, "#whatif-result[data-done]").await;
        let added = text_of(&client, "#whatif-added").await;
        assert!(
            added.contains(
                "development/deployment/frontend → kube-system/deployment/coredns UDP/53"
            ),
            "DNS pairs added: {added}"
        );
        screenshot(&client, "serve-4-what-if-dns").await;

        // What if backend-from-frontend were deleted?
        let before = client
            .execute(
                "return document.querySelector('#whatif-result').dataset.done",
                vec![],
            )
            .await
            .expect("stamp");
        client
            .execute("document.querySelector('#whatif-yaml').value = ''", vec![])
            .await
            .expect("clear");
        click(
            &client,
            "input[data-delete='NetworkPolicy development/backend-from-frontend']",
        )
        .await;
        click(&client, "#whatif-run").await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = client
                .execute(
                    "return document.querySelector('#whatif-result').dataset.done",
                    vec![],
                )
                .await
                .expect("stamp");
            if now != before {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the second what-if never answered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let removed = text_of(&client, "#whatif-removed").await;
        assert!(
            removed.contains(
                "development/deployment/frontend → development/deployment/backend TCP/8080"
            ),
            "frontend -> backend removed: {removed}"
        );
        screenshot(&client, "serve-5-what-if-delete").await;
        client.close().await.ok();
    });
}

/// The release binary when the test command built it (figures of a debug build say little).
fn fastest_binary() -> PathBuf {
    let release = repo().join("target/release/bulkhead");
    if release.exists() {
        release
    } else {
        eprintln!("note: target/release/bulkhead is missing; timing the debug build");
        support::bin()
    }
}

#[test]
fn the_l_cluster_opens_with_a_readable_first_view() {
    let Some((_driver, port)) = chromedriver() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let generated = bulkhead_bench::generate(bulkhead_bench::size("L").expect("size"), 1);
    generated.write_to(dir.path()).expect("write the cluster");
    let started = Instant::now();
    let (_server, address) = serve(&fastest_binary(), &[dir.path()]);
    let serving = started.elapsed();
    runtime().block_on(async {
        let client = browser(port).await;
        client
            .goto(&format!("http://{address}/"))
            .await
            .expect("open the page");
        css(&client, "body[data-ready]").await;
        let ready_ms = client
            .execute("return Number(document.body.dataset.ready)", vec![])
            .await
            .expect("ready");
        let nodes = client
            .execute("return Number(document.body.dataset.nodes)", vec![])
            .await
            .expect("nodes");
        let nodes = nodes.as_u64().unwrap_or(u64::MAX);
        // Drill-down and explain, timed in the page.
        let drill_ms = client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 const t = performance.now();
                 const first = document.querySelector('g.node[data-kind=namespace]');
                 const want = 'workloads:' + first.dataset.id;
                 first.dispatchEvent(new MouseEvent('click', {bubbles: true}));
                 const poll = () => document.body.dataset.level === want
                     ? done(performance.now() - t) : setTimeout(poll, 5);
                 poll();",
                vec![],
            )
            .await
            .expect("drill down");
        let explain_ms = client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 const t = performance.now();
                 const b = document.querySelector('#edges button');
                 const pre = document.querySelector('#explain');
                 delete pre.dataset.done;
                 b.click();
                 const poll = () => pre.dataset.done ? done(performance.now() - t) : setTimeout(poll, 5);
                 poll();",
                vec![],
            )
            .await
            .expect("explain");
        println!(
            "serve L ({} pods, {} policies): server up after {:.2} s; first graph ready {} ms after navigation start, {nodes} nodes; drill-down {:.0} ms; edge explained {:.0} ms",
            generated.pod_count,
            generated.policy_count,
            serving.as_secs_f64(),
            ready_ms,
            drill_ms.as_f64().unwrap_or_default(),
            explain_ms.as_f64().unwrap_or_default(),
        );
        screenshot(&client, "serve-L-first-view").await;
        assert!(nodes <= 250, "the first view of L shows {nodes} nodes");
        assert!(nodes > 0, "the first view of L is empty");
        client.close().await.ok();
    });
}

#[test]
fn a_static_page_of_a_large_cluster_is_grouped_and_says_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let generated = bulkhead_bench::generate(bulkhead_bench::size("M").expect("size"), 1);
    generated.write_to(dir.path()).expect("write the cluster");
    let out = Command::new(support::bin())
        .args(["map", "-o", "html"])
        .arg(dir.path())
        .output()
        .expect("map -o html");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // M: 1,004 pods in 251 workloads, too many for either level on one page.
    assert!(
        stderr.contains(&format!(
            "{} pods are too many to draw one by one; the page shows namespaces",
            generated.pod_count
        )),
        "{stderr}"
    );
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        !page.contains("/deployment/"),
        "no workload rows on the page"
    );
    assert!(page.contains("team-0001"), "namespace rows on the page");
    // Asked for explicitly, pods it is.
    let out = Command::new(support::bin())
        .args(["map", "-o", "html", "--by", "pod"])
        .arg(dir.path())
        .output()
        .expect("map -o html --by pod");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("too many"));
}

#[test]
fn the_page_follows_a_changed_file_without_a_reload() {
    let Some((_driver, port)) = chromedriver() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp");
    let file = dir.path().join("three-tier.yaml");
    let original = std::fs::read_to_string(demo().join("three-tier.yaml")).expect("demo");
    std::fs::write(&file, &original).expect("copy");
    let (_server, address) = serve(&support::bin(), &[dir.path()]);
    runtime().block_on(async {
        let client = browser(port).await;
        client
            .goto(&format!("http://{address}/"))
            .await
            .expect("open");
        css(&client, "body[data-ready]").await;
        click(&client, "g.node[data-id='development']").await;
        css(
            &client,
            "button[data-edge='development/deployment/frontend->development/deployment/backend']",
        )
        .await;
        // backend-from-frontend is deleted: the file is written whole, renamed into place.
        let changed: Vec<&str> = original
            .split("\n---\n")
            .filter(|doc| !doc.contains("name: backend-from-frontend"))
            .collect();
        let changed = changed.join("\n---\n");
        assert_ne!(changed, original);
        let tmp = dir.path().join(".three-tier.tmp");
        std::fs::write(&tmp, changed).expect("write");
        std::fs::rename(&tmp, &file).expect("rename");
        css(&client, "body[data-revision='1']").await;
        assert_eq!(
            client
                .execute("return document.body.dataset.level", vec![])
                .await
                .expect("level"),
            serde_json::json!("workloads:development"),
            "the page stays where it was"
        );
        let edges = text_of(&client, "#edges").await;
        assert!(
            !edges.contains("development/deployment/frontend → development/deployment/backend"),
            "the closed edge is gone: {edges}"
        );
        screenshot(&client, "serve-6-live").await;
        client.close().await.ok();
    });
}
