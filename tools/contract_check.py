#!/usr/bin/env python3
"""Drive the built binary through the CLI contract (design.md §3-4) on tests/conformance.

usage: tools/contract_check.py BULKHEAD_BIN CONFORMANCE_DIR

For every flow scenario: each expectation through `bulkhead explain -o json` (both semantics),
and every pod-to-pod expectation once more through `bulkhead map --by pod -o json`. For every
validation case: `bulkhead check -o json` must report an error exactly when the case is invalid.
Prints each disagreement and a summary line; exits 0 only when everything agrees.
"""
import json
import os
import subprocess
import sys

import yaml


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if r.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()[-300:]}")
    return json.loads(r.stdout)


def in_ports(text, port):
    if text == "all":
        return True
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if int(lo) <= port <= int(hi or lo):
            return True
    return False


def main():
    binary, root = sys.argv[1:3]
    agree = total = 0
    failures = []
    for topic in sorted(os.listdir(root)):
        if topic == "clusters":
            continue
        for sid in sorted(os.listdir(os.path.join(root, topic))):
            d = os.path.join(root, topic, sid)
            if os.path.exists(os.path.join(d, "cases.yaml")):
                for case in yaml.safe_load(open(os.path.join(d, "cases.yaml")))["cases"]:
                    total += 1
                    out = run([binary, "check", os.path.join(d, case["file"]), "-o", "json"])
                    has_error = any(x["severity"] == "error" for x in out["diagnostics"])
                    if has_error != (not case["expect_valid"]):
                        failures.append(f"{sid}: {case['description']}: expect_valid={case['expect_valid']}")
                    else:
                        agree += 1
                continue
            spec = yaml.safe_load(open(os.path.join(d, "expect.yaml")))
            cluster = (os.path.join(d, "cluster.yaml") if spec["cluster"] == "inline"
                       else os.path.join(root, "clusters", spec["cluster"] + ".yaml"))
            paths = [cluster, os.path.join(d, "policies.yaml")]
            modes = ["kubernetes", "calico"] if spec["mode"] == "kubernetes" else ["calico"]
            for mode in modes:
                conns = run([binary, "map", *paths, "--by", "pod", "-o", "json", "--semantics", mode])
                table = {}
                for c in conns["connections"]:
                    table.setdefault((c["from"], c["to"], c["protocol"]), []).append(c["ports"])
                for e in spec["expectations"]:
                    total += 1
                    cmd = [binary, "explain", *paths, "--from", e["from"], "--to", e["to"],
                           "--protocol", str(e["protocol"]), "-o", "json", "--semantics", mode]
                    if "port" in e:
                        cmd += ["--port", str(e["port"])]
                    if "icmp" in e:
                        cmd += ["--icmp-type", str(e["icmp"]["type"])]
                    answer = run(cmd)
                    got = answer["verdict"]
                    # hostNetwork pods are their nodes (K8S-HOST-3): they have no map row.
                    host_network = any(n["code"] == "HOSTNETWORK_UNDEFINED" for n in answer.get("notes", []))
                    ok = got == e["expect"]
                    pod_pair = all("/" in r and ":" not in r for r in (e["from"], e["to"]))
                    if ok and pod_pair and "port" in e and e["protocol"] in ("TCP", "UDP", "SCTP") \
                            and e["from"] != e["to"] and not host_network:
                        via_map = any(in_ports(p, e["port"]) for p in table.get((e["from"], e["to"], e["protocol"]), []))
                        ok = via_map == (got == "allow")
                    if ok:
                        agree += 1
                    else:
                        failures.append(f"{sid} [{mode}]: {e['from']} -> {e['to']} {e['protocol']}/{e.get('port', '')}"
                                        f" expect {e['expect']} got {got}")
    for f in failures:
        print(f)
    print(f"contract: {agree}/{total} agree")
    sys.exit(0 if agree == total and total > 0 else 1)


if __name__ == "__main__":
    main()
