#!/usr/bin/env bash
# Dataplane benchmark (issue 6): connection setup between two pods with no Bulkhead table and
# with the ruleset of a 10,000-policy cluster, the time to apply that ruleset, and the agent's
# peak memory. Needs root; everything it creates is removed on exit. Prints figures only.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p bulkhead-cli -p bulkhead-bench
bin=target/release
work="$(mktemp -d)"
cleanup() {
  kill "${server:-0}" 2>/dev/null || true
  ip netns del bhbench-client 2>/dev/null || true
  ip netns del bhbench-server 2>/dev/null || true
  nft delete table inet bulkhead 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
[ -n "${HOLD:-}" ] && trap - EXIT
[ "${DEBUG:-}" = 1 ] && set -x
echo 1 > /proc/sys/net/ipv4/ip_forward
for pod in client server; do
  ip netns add "bhbench-$pod"
  ip link add "bhb-$pod" type veth peer name eth0 netns "bhbench-$pod"
done
ip -n bhbench-client addr add 10.250.0.1/32 dev eth0
ip -n bhbench-server addr add 10.250.0.2/32 dev eth0
for pod in client server; do
  ip -n "bhbench-$pod" link set lo up
  ip -n "bhbench-$pod" link set eth0 up
  ip link set "bhb-$pod" up
  ip -n "bhbench-$pod" route add 169.254.1.1 dev eth0
  ip -n "bhbench-$pod" route add default via 169.254.1.1 dev eth0
  echo 1 > /proc/sys/net/ipv4/conf/bhb-$pod/proxy_arp
done
# Three runs of 5,000 connects: without room for ports in TIME_WAIT the last run measures
# the search for a free local port, not the rules.
ip netns exec bhbench-client sysctl -q -w net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1
ip route add 10.250.0.1/32 dev bhb-client
ip route add 10.250.0.2/32 dev bhb-server
# A minimal accept-and-close server: only connection setup is measured.
ip netns exec bhbench-server python3 -c '
import socket
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", 8080)); l.listen(1024)
while True:
    c, _ = l.accept(); c.close()
' &
server=$!
sleep 0.3
# Resolve neighbours before timing anything.
ip netns exec bhbench-client ping -c 2 -W 2 10.250.0.2 > /dev/null

echo "== connect latency, no Bulkhead table"
ip netns exec bhbench-client $bin/bulkhead-netprobe connect-bench 10.250.0.2 8080 5000

# The XL cluster's 10,000 policies (pod addresses scattered as a real cluster assigns them:
# per-node /24 blocks in random order), plus the two bench pods on this node: the server is
# ingress-isolated and allows the client, and every namespace's pods (100,000) are a peer.
$bin/bulkhead-bench generate --size XL --scattered-ips --out "$work/m" > /dev/null
mkdir -p "$work/empty"
cat > "$work/empty/bench.yaml" <<'YAML'
apiVersion: v1
kind: Namespace
metadata: {name: bench}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: bench, labels: {app: client}}
spec: {nodeName: bench-node, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.250.0.1, podIPs: [{ip: 10.250.0.1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: bench, labels: {app: server}}
spec: {nodeName: bench-node, containers: [{name: c, image: i, ports: [{name: http, containerPort: 8080}]}]}
status: {phase: Running, podIP: 10.250.0.2, podIPs: [{ip: 10.250.0.2}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server, namespace: bench}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{namespaceSelector: {}}]
    ports: [{port: http}]
  egress:
  - to: [{namespaceSelector: {matchLabels: {team: t3}}}, {ipBlock: {cidr: 203.0.113.0/24}}]
YAML
cp "$work/empty/bench.yaml" "$work/m/bench.yaml"
# The same two pods and policy with nothing else in the cluster: the baseline the XL
# cluster's overhead is measured against.
$bin/bulkhead compile "$work/empty" --node bench-node > "$work/empty.nft"
nft -f "$work/empty.nft"
echo "== connect latency, the two bench pods alone enforced (empty cluster)"
ip netns exec bhbench-client $bin/bulkhead-netprobe connect-bench 10.250.0.2 8080 5000
$bin/bulkhead compile "$work/m" --node bench-node > "$work/rules.nft"
echo "== ruleset: $(grep -c '' "$work/rules.nft") lines, $(wc -c < "$work/rules.nft") bytes"
start=$(date +%s.%N)
nft -f "$work/rules.nft"
end=$(date +%s.%N)
echo "== full apply (nft -f, one transaction): $(echo "$end - $start" | bc) s"
echo "== connect latency, 10,000-policy cluster enforced"
ip netns exec bhbench-client $bin/bulkhead-netprobe connect-bench 10.250.0.2 8080 5000
# Per-policy audit (bulkhead.io/mode: audit): the audited policy's pods evaluate a would-be
# program after the enforced one; other pods do not.
audited() { # name, pod selector label, ingress rule
  cat > "$work/m/audit.yaml" <<YAML
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: $1
  namespace: bench
  annotations: {bulkhead.io/mode: audit}
spec:
  podSelector: {matchLabels: {app: $2}}
  policyTypes: [Ingress]
  ingress: [$3]
YAML
  $bin/bulkhead compile "$work/m" --node bench-node > "$work/audit.nft"
  nft -f "$work/audit.nft"
}
audited other-pods other "{from: [{podSelector: {matchLabels: {app: client}}}]}"
echo "== connect latency, 10,000-policy cluster, an audited policy on other pods"
ip netns exec bhbench-client $bin/bulkhead-netprobe connect-bench 10.250.0.2 8080 5000
audited server-same server "{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: 8080}]}"
echo "== connect latency, 10,000-policy cluster, an audited policy on the server that allows the same (evaluated, nothing logged)"
ip netns exec bhbench-client $bin/bulkhead-netprobe connect-bench 10.250.0.2 8080 5000
audited server-deny server "{from: [{podSelector: {matchLabels: {app: nobody}}}]}"
echo "== connect latency, 10,000-policy cluster, an audited policy on the server that would deny every connect (WOULD-DENY, 20 logs/s)"
ip netns exec bhbench-client $bin/bulkhead-netprobe connect-bench 10.250.0.2 8080 5000
rm "$work/m/audit.yaml"
nft -f "$work/rules.nft"
echo "== agent --once on the same manifests (load, compile, apply)"
/usr/bin/time -f "   wall %e s, peak RSS %M KiB" $bin/bulkhead agent --once --node bench-node --manifests "$work/m" 2>&1 | tail -2
