//! Finding each local pod's host-side interface: the route the host uses to reach the pod's
//! IP. Any CNI that routes a veth per pod (ptp, Calico, Cilium in routing mode, ...) installs
//! exactly that route. Bridged CNIs need `--interface POD=IFACE` overrides.

use bulkhead_model::Cluster;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::Command;

/// `ns/pod` -> host interface for every pod of `node`: `overrides` first, then the route to the
/// pod's first IP. hostNetwork pods are the node itself and have none.
pub fn for_node(
    cluster: &Cluster,
    node: &str,
    overrides: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut interfaces = overrides.clone();
    for pod in &cluster.pods {
        if pod.node.as_deref() == Some(node)
            && !pod.host_network
            && !interfaces.contains_key(&pod.key())
            && let Some(device) = pod.ips.first().and_then(|ip| route_device(*ip))
        {
            interfaces.insert(pod.key(), device);
        }
    }
    interfaces
}

/// The device of the route to `ip` (`ip -o route get IP` -> `... dev vethXYZ ...`).
pub fn route_device(ip: IpAddr) -> Option<String> {
    let output = Command::new("ip")
        .args(["-o", "route", "get", &ip.to_string()])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    parse_route_device(&String::from_utf8_lossy(&output.stdout))
}

pub fn parse_route_device(line: &str) -> Option<String> {
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == "dev" {
            return words.next().map(str::to_string);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_is_read_from_route_output() {
        assert_eq!(
            parse_route_device("10.0.1.1 dev veth1a2b3c src 10.255.255.254 uid 0 \\    cache"),
            Some("veth1a2b3c".into())
        );
        assert_eq!(parse_route_device("unreachable 10.9.9.9"), None);
    }
}
