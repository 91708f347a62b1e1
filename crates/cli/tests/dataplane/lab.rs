//! A throwaway lab of pods: one network namespace per pod, wired by the real CNI plugins of
//! Debian's containernetworking-plugins (`ptp` + `host-local`) exactly as a container runtime
//! calls them, with echo servers inside. Everything created is removed on drop, even when a
//! test fails; leftovers of an earlier crashed run are swept at start.

#![allow(dead_code, reason = "each privileged test uses a part of the lab")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const PREFIX: &str = "bhtest-";
pub const CNI_PATH: &str = "/usr/lib/cni";
pub const NODE: &str = "test-node";

pub fn netprobe() -> &'static str {
    env!("CARGO_BIN_EXE_bulkhead-netprobe")
}

pub fn bulkhead() -> &'static str {
    env!("CARGO_BIN_EXE_bulkhead")
}

/// Root and the tools are required; in CI (BULKHEAD_REQUIRE_PRIVILEGED=1) their absence is a
/// failure, elsewhere the suite says loudly that it did not run.
pub fn privileged_or_skip(test: &str) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let tools = ["nft", "ip", "conntrack"].iter().all(|t| {
        Command::new("which")
            .arg(t)
            .output()
            .is_ok_and(|o| o.status.success())
    }) && Path::new(CNI_PATH).join("ptp").exists()
        && Path::new(CNI_PATH).join("host-local").exists();
    if root && tools {
        return true;
    }
    let why = format!(
        "{test}: needs root, nft, ip, conntrack and {CNI_PATH}/ptp (root: {root}, tools: {tools})"
    );
    assert!(
        std::env::var_os("BULKHEAD_REQUIRE_PRIVILEGED").is_none(),
        "{why}"
    );
    eprintln!("SKIPPED {why}");
    false
}

fn run(cmd: &mut Command) -> std::io::Result<std::process::Output> {
    cmd.stdin(Stdio::null()).output()
}

fn sh(args: &[&str]) -> bool {
    run(Command::new(args[0]).args(&args[1..])).is_ok_and(|o| o.status.success())
}

/// Removes namespaces and CNI state of earlier runs that died before cleaning up.
pub fn sweep_leftovers() {
    if let Ok(o) = run(Command::new("ip").args(["netns", "list"])) {
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if name.starts_with(PREFIX) {
                sh(&["ip", "netns", "del", name]);
            }
        }
    }
    if let Ok(o) = run(Command::new("ip").args(["-o", "link", "show", "type", "bridge"])) {
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            if let Some(name) = line
                .split(':')
                .nth(1)
                .map(str::trim)
                .filter(|n| n.starts_with("bhbr"))
            {
                sh(&["ip", "link", "del", name]);
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(PREFIX) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

#[derive(Debug)]
pub struct Pod {
    pub netns: String,
    pub ip: IpAddr,
    pub host_interface: String,
}

/// Which CNI plugin wires the pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wiring {
    /// `ptp`: one routed veth per pod (the host interface tells pods apart).
    PointToPoint,
    /// `bridge` with br_netfilter: every pod behind one bridge (the agent dispatches by address).
    Bridge,
}

#[derive(Debug)]
pub struct Lab {
    pub id: String,
    pub pods: BTreeMap<String, Pod>,
    /// Hosts outside the cluster (`ip:X`, other nodes): a namespace each, holding that address,
    /// reached through the node by a /32 route (so every packet to or from them crosses the
    /// node's forward hook like real off-node traffic, and none leaves the machine).
    pub externals: BTreeMap<String, Pod>,
    servers: Vec<Child>,
    state: PathBuf,
    serial: usize,
    wiring: Wiring,
}

impl Lab {
    pub fn new(tag: &str) -> Self {
        let id = format!("{PREFIX}{tag}-{}", std::process::id());
        let state = std::env::temp_dir().join(&id);
        let _ = std::fs::create_dir_all(&state);
        // Forwarding between pod veths is what the node does; nothing else changes on the host.
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1");
        Self {
            id,
            pods: BTreeMap::new(),
            externals: BTreeMap::new(),
            servers: Vec::new(),
            state,
            serial: 0,
            wiring: Wiring::PointToPoint,
        }
    }

    pub fn bridged(tag: &str) -> Self {
        // Bridged IPv4 traffic must meet the inet forward hook.
        let _ = std::fs::write("/proc/sys/net/bridge/bridge-nf-call-iptables", "1");
        let mut lab = Self::new(tag);
        lab.wiring = Wiring::Bridge;
        lab
    }

    fn bridge_name(&self) -> String {
        format!("bhbr{}", std::process::id() % 100_000)
    }

    fn plugin(&self) -> &'static str {
        match self.wiring {
            Wiring::PointToPoint => "ptp",
            Wiring::Bridge => "bridge",
        }
    }

    fn cni_config(&self) -> String {
        let ipam = serde_json::json!({
            "type": "host-local",
            "ranges": [[{"subnet": "10.0.0.0/8", "gateway": "10.255.255.254"}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": self.state.join("ipam").to_string_lossy(),
        });
        match self.wiring {
            Wiring::PointToPoint => serde_json::json!({
                "cniVersion": "1.0.0", "name": "bulkhead-lab", "type": "ptp", "ipMasq": false, "ipam": ipam,
            }),
            Wiring::Bridge => serde_json::json!({
                "cniVersion": "1.0.0", "name": "bulkhead-lab-bridge", "type": "bridge",
                "bridge": self.bridge_name(), "isGateway": true, "ipMasq": false, "ipam": ipam,
            }),
        }
        .to_string()
    }

    fn cni(
        &self,
        command: &str,
        netns: &str,
        ip: Option<IpAddr>,
    ) -> std::io::Result<std::process::Output> {
        let mut child = Command::new(Path::new(CNI_PATH).join(self.plugin()))
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", netns)
            .env("CNI_NETNS", format!("/var/run/netns/{netns}"))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", CNI_PATH)
            .env(
                "CNI_ARGS",
                ip.map(|ip| format!("IgnoreUnknown=1;IP={ip}"))
                    .unwrap_or_default(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(self.cni_config().as_bytes())?;
        }
        child.wait_with_output()
    }

    /// Creates a pod `key` (`ns/name`) with address `ip`.
    pub fn pod(&mut self, key: &str, ip: IpAddr) -> Result<&Pod, String> {
        self.serial += 1;
        let netns = format!("{}-{}", self.id, self.serial);
        if !sh(&["ip", "netns", "add", &netns]) {
            return Err(format!("ip netns add {netns} failed"));
        }
        sh(&[
            "ip", "netns", "exec", &netns, "ip", "link", "set", "lo", "up",
        ]);
        let out = self
            .cni("ADD", &netns, Some(ip))
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            let _ = sh(&["ip", "netns", "del", &netns]);
            return Err(format!(
                "CNI ADD for {key} ({ip}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let result: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        let host_interface = result["interfaces"]
            .as_array()
            // The host side of the pod's veth (ptp), or the bridge the pod hangs on (bridge).
            .and_then(|list| {
                let bridge = self.bridge_name();
                list.iter().find(|i| match self.wiring {
                    Wiring::PointToPoint => i.get("sandbox").is_none(),
                    Wiring::Bridge => i["name"].as_str() == Some(bridge.as_str()),
                })
            })
            .and_then(|i| i["name"].as_str())
            .ok_or("CNI result has no host interface")?
            .to_string();
        self.pods.insert(
            key.to_string(),
            Pod {
                netns,
                ip,
                host_interface,
            },
        );
        self.pods.get(key).ok_or_else(|| "inserted".to_string())
    }

    fn netns(&self, key: &str) -> Option<&str> {
        self.pods
            .get(key)
            .or_else(|| self.externals.get(key))
            .map(|p| p.netns.as_str())
    }

    /// Creates an external host `key` with address `ip`: its own namespace, a veth to the
    /// node, a /32 route to it on the node, and a default route back through the node.
    /// Returns `Ok(false)`, changing nothing, when the address lies on one of the machine's
    /// own networks: a /32 route would take it away from the real host for the test's time.
    pub fn external(&mut self, key: &str, ip: std::net::Ipv4Addr) -> Result<bool, String> {
        let routes =
            run(Command::new("ip").args(["-o", "route", "show", "match", &ip.to_string()]))
                .map_err(|e| e.to_string())?;
        if String::from_utf8_lossy(&routes.stdout)
            .lines()
            .any(|l| !l.starts_with("default"))
        {
            return Ok(false);
        }
        self.serial += 1;
        let netns = format!("{}-{}", self.id, self.serial);
        let link = format!("bhx{}x{}", std::process::id() % 100_000, self.serial);
        let node_side = "10.255.255.253";
        let ip = ip.to_string();
        let (host_32, node_32) = (format!("{ip}/32"), format!("{node_side}/32"));
        let steps: Vec<Vec<&str>> = vec![
            vec!["ip", "netns", "add", &netns],
            vec![
                "ip", "link", "add", &link, "type", "veth", "peer", "name", "eth0", "netns", &netns,
            ],
            vec!["ip", "addr", "add", &node_32, "dev", &link],
            vec!["ip", "link", "set", &link, "up"],
            vec!["ip", "route", "add", &host_32, "dev", &link],
            vec![
                "ip", "netns", "exec", &netns, "ip", "link", "set", "lo", "up",
            ],
            vec![
                "ip", "netns", "exec", &netns, "ip", "addr", "add", &host_32, "dev", "eth0",
            ],
            vec![
                "ip", "netns", "exec", &netns, "ip", "link", "set", "eth0", "up",
            ],
            vec![
                "ip", "netns", "exec", &netns, "ip", "route", "add", &node_32, "dev", "eth0",
            ],
            vec![
                "ip", "netns", "exec", &netns, "ip", "route", "add", "default", "via", node_side,
                "dev", "eth0",
            ],
        ];
        // Recorded before wiring, so a half-made host is removed too.
        self.externals.insert(
            key.to_string(),
            Pod {
                netns: netns.clone(),
                ip: ip.parse().map_err(|e| format!("{e}"))?,
                host_interface: link.clone(),
            },
        );
        for step in &steps {
            if !sh(step) {
                return Err(format!("{}: failed", step.join(" ")));
            }
        }
        Ok(true)
    }

    /// Starts echo servers in a pod and waits until they listen.
    pub fn serve(&mut self, key: &str, tcp: &[u16], udp: &[u16]) -> Result<(), String> {
        let netns = self.netns(key).ok_or("no such pod")?.to_string();
        let join = |p: &[u16]| {
            p.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &netns,
                netprobe(),
                "serve",
                "--tcp",
                &join(tcp),
                "--udp",
                &join(udp),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        self.servers.push(child);
        if line.trim() == "ready" {
            Ok(())
        } else {
            Err(format!("server in {key} did not start: {line:?}"))
        }
    }

    /// Starts a probe from pod `from` (returns the child; exit 0 = connected).
    pub fn probe(
        &self,
        from: &str,
        protocol: &str,
        to: IpAddr,
        port: u16,
        timeout_ms: u64,
    ) -> std::io::Result<Child> {
        let netns = self.netns(from).expect("a lab pod or external host");
        Command::new("ip")
            .args([
                "netns",
                "exec",
                netns,
                netprobe(),
                "probe",
                protocol,
                &to.to_string(),
                &port.to_string(),
                &timeout_ms.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    }

    pub fn exec(&self, from: &str, args: &[&str]) -> std::io::Result<Child> {
        let netns = self.netns(from).expect("a lab pod or external host");
        Command::new("ip")
            .args(["netns", "exec", netns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        for pod in self.pods.values() {
            let _ = self.cni("DEL", &pod.netns, None);
            sh(&["ip", "netns", "del", &pod.netns]);
        }
        // Deleting the namespace deletes the veth pair, its address and the route with it.
        for host in self.externals.values() {
            sh(&["ip", "netns", "del", &host.netns]);
            sh(&["ip", "link", "del", &host.host_interface]);
        }
        if self.wiring == Wiring::Bridge {
            sh(&["ip", "link", "del", &self.bridge_name()]);
        }
        let _ = std::fs::remove_dir_all(&self.state);
        // The lab's ruleset goes with it.
        sh(&[
            "sh",
            "-c",
            "nft -t list tables | grep -q 'inet bulkhead' && nft delete table inet bulkhead || true",
        ]);
    }
}
