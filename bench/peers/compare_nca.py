#!/usr/bin/env python3
"""Bulkhead side by side with network-config-analyzer (np-guard's Python analyzer).

usage: compare_nca.py BULKHEAD_BIN BULKHEAD_BENCH_BIN NCA_BIN [SIZES]   (default sizes: S,M)

For each size: generates the synthetic cluster (namespaces.yaml, pods.yaml, policies/), asks
`bulkhead map --by pod -o json` and `nca --connectivity ... --output_format txt_no_fw_rules
--output_endpoints deployments` for the allowed connections, and compares the allowed pairs of
workloads (the pods' controlling ReplicaSet, or the pod itself). nca's pod-level output keeps
only two representative pods per ReplicaSet, so the workload level is where both tools report
every pair; Bulkhead's pod pairs (a pod to itself excluded) are folded to their workloads.
Prints both CPU times and their ratio.
Exit 0 only when every size reports identical pairs.
"""
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

import yaml


def timed(cmd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if r.returncode not in (0, 1):
        sys.exit(f"{cmd[0]} failed ({r.returncode}): {r.stderr[-2000:]}")
    return r.stdout, wall, cpu


def owners(pods_file):
    """ns/pod -> the workload name nca prints: `ns/<ReplicaSet>[ReplicaSet]` or `ns/<pod>[Pod]`."""
    out = {}
    for pod in yaml.safe_load(open(pods_file))["items"]:
        md = pod["metadata"]
        ns, name = md.get("namespace", "default"), md["name"]
        refs = [r for r in md.get("ownerReferences") or [] if r.get("controller")]
        out[f"{ns}/{name}"] = f"{ns}/{refs[0]['name']}[{refs[0]['kind']}]" if refs else f"{ns}/{name}[Pod]"
    return out


ALL = ((1, 65535),)


def ranges(text):
    """`80,443,9100-9110` or `all` -> merged tuple of (lo, hi); 0-65535 counts as all."""
    if text in ("all", None):
        return ALL
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.append((max(int(lo), 1), int(hi or lo)))
    out.sort()
    merged = []
    for lo, hi in out:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return tuple(merged)


def bulkhead_pairs(text, owner):
    """(source workload, destination workload, protocol) -> ports, from Bulkhead's pod-level map
    (a pod to itself excluded; pods of one workload are alike, so their rows agree)."""
    pairs = {}
    for c in json.loads(text)["connections"]:
        if c["from"] != c["to"]:
            pairs[(owner[c["from"]], owner[c["to"]], c["protocol"])] = ranges(c["ports"])
    return pairs


CONN = re.compile(r"\{protocols:([A-Za-z, ]+?)(?:,dst_ports:([0-9,\-]+))?\}")


def nca_pairs(text):
    pairs = {}
    for line in text.splitlines():
        if " => " not in line or " : " not in line:
            continue
        left, rest = line.split(" => ", 1)
        right, conns = rest.split(" : ", 1)
        left, right = left.strip(), right.strip()
        # Workload endpoints are `ns/name[Kind]`; nca also prints IP ranges, which are not pods.
        if not left.endswith("]") or not right.endswith("]"):
            continue
        conns = conns.strip()
        if conns == "All connections":
            for protocol in ("TCP", "UDP", "SCTP"):
                pairs[(left, right, protocol)] = ALL
            continue
        for protocols, ports in CONN.findall(conns):
            for protocol in (p.strip() for p in protocols.split(",")):
                if protocol in ("TCP", "UDP", "SCTP"):
                    pairs[(left, right, protocol)] = ranges(ports or None)
    return pairs


def main():
    bulkhead, bench, nca = sys.argv[1:4]
    sizes = (sys.argv[4] if len(sys.argv) > 4 else "S,M").split(",")
    ok = True
    for size in sizes:
        with tempfile.TemporaryDirectory() as d:
            subprocess.run([bench, "generate", "--size", size, "--out", d], check=True, capture_output=True)
            out_b, wall_b, cpu_b = timed([bulkhead, "map", d, "--by", "pod", "-o", "json", "--semantics", "kubernetes"])
            out_n, wall_n, cpu_n = timed([nca, "--connectivity", os.path.join(d, "policies"),
                                          "-p", os.path.join(d, "pods.yaml"), "-n", os.path.join(d, "namespaces.yaml"),
                                          "--output_format", "txt_no_fw_rules", "--output_endpoints", "deployments"])
            b, n = bulkhead_pairs(out_b, owners(os.path.join(d, "pods.yaml"))), nca_pairs(out_n)
            pairs_b = {(f, t) for f, t, _ in b}
            pairs_n = {(f, t) for f, t, _ in n}
            same_pairs = pairs_b == pairs_n
            same_ports = b == n
            ok &= same_pairs and same_ports
            print(f"== {size}: allowed workload pairs: bulkhead {len(pairs_b)}, network-config-analyzer "
                  f"{len(pairs_n)}: {'identical' if same_pairs else 'DIFFERENT'}; "
                  f"protocols and ports of every pair: {'identical' if same_ports else 'DIFFERENT'}")
            for label, diff in (("only bulkhead", sorted(pairs_b - pairs_n)), ("only nca", sorted(pairs_n - pairs_b))):
                if diff:
                    print(f"   {label}: {len(diff)}, e.g. {diff[:5]}")
            port_diffs = sorted(k for k in set(b) | set(n) if b.get(k) != n.get(k))
            for k in port_diffs[:5]:
                print(f"   ports differ for {k}: bulkhead {b.get(k)}, nca {n.get(k)}")
            print(f"   bulkhead: {wall_b:.3f} s wall, {cpu_b:.3f} s CPU (load + map + JSON)")
            print(f"   network-config-analyzer: {wall_n:.3f} s wall, {cpu_n:.3f} s CPU")
            print(f"   CPU ratio: {cpu_n / max(cpu_b, 1e-9):.0f}x")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
