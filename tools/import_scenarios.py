#!/usr/bin/env python3
"""Import conformance scenarios into the project's own format (tests/conformance/).

usage: tools/import_scenarios.py SCENARIOS.yaml OUT_DIR [--topic PREFIX ...]

The scenario file (schema_version 1, see its header) holds facts about Kubernetes; this script
turns them into what Bulkhead reads in real life, so the conformance suite exercises the loader
too:
  OUT_DIR/clusters/NAME.yaml            Namespaces, Nodes, ServiceAccounts, Pods (with status IPs)
  OUT_DIR/<topic>/<id>/policies.yaml    the scenario's objects, as they would be applied
  OUT_DIR/<topic>/<id>/expect.yaml      cluster, mode, uncertain, and the probes as expectations
  OUT_DIR/<topic>/<id>/cluster.yaml     only for scenarios with an inline cluster
  OUT_DIR/<topic>/<id>/cases.yaml + NN-*.yaml   validation cases (object per file)
Re-running it overwrites those files; it never deletes others.
"""
import os
import re
import sys

import yaml


def cluster_objects(cluster):
    objs = []
    for ns in cluster.get("namespaces", []):
        objs.append({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": ns["name"], "labels": ns.get("labels") or {}}})
    for node in cluster.get("nodes", []):
        objs.append({"apiVersion": "v1", "kind": "Node",
                     "metadata": {"name": node["name"], "labels": node.get("labels") or {}},
                     "status": {"addresses": [{"type": "InternalIP", "address": ip}
                                              for ip in node.get("ips", [])]}})
    for sa in cluster.get("serviceAccounts", []) or []:
        objs.append({"apiVersion": "v1", "kind": "ServiceAccount",
                     "metadata": {"name": sa["name"], "namespace": sa["namespace"],
                                  "labels": sa.get("labels") or {}}})
    for pod in cluster.get("pods", []):
        ports = []
        for p in pod.get("ports", []) or []:
            entry = {"containerPort": p["port"], "protocol": p.get("protocol", "TCP")}
            if p.get("name"):
                entry["name"] = p["name"]
            ports.append(entry)
        container = {"name": "main", "image": "registry.example/app:1"}
        if ports:
            container["ports"] = ports
        spec = {"nodeName": pod.get("node"), "containers": [container],
                "serviceAccountName": pod.get("serviceAccount", "default")}
        if pod.get("hostNetwork"):
            spec["hostNetwork"] = True
        ips = pod.get("ips", [])
        status = {"phase": "Running"}
        if ips:
            status["podIP"] = ips[0]
            status["podIPs"] = [{"ip": ip} for ip in ips]
        objs.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": pod["name"], "namespace": pod["namespace"],
                                  "labels": pod.get("labels") or {}},
                     "spec": spec, "status": status})
    return objs


class QuotingDumper(yaml.SafeDumper):
    """Quotes strings that kubectl (go-yaml v2, YAML 1.1) would read as booleans, such as `y`."""


def _str(dumper, value):
    style = "'" if value in ("y", "Y", "n", "N") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


QuotingDumper.add_representer(str, _str)


def dump(path, docs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("# Imported by tools/import_scenarios.py; facts from semantics.md scenarios.\n")
        yaml.dump_all(docs, f, Dumper=QuotingDumper, sort_keys=False)


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:50]


def main():
    args = sys.argv[1:]
    topics = []
    while "--topic" in args:
        i = args.index("--topic")
        topics.append(args[i + 1])
        del args[i:i + 2]
    src, out = args
    data = yaml.safe_load(open(src))
    used_clusters = set()
    for sc in data["scenarios"]:
        topic = sc.get("topic", "")
        if topics and not any(topic.startswith(t) for t in topics):
            continue
        d = os.path.join(out, topic.replace("/", "-"), sc["id"])
        if sc.get("kind") == "validation":
            cases = []
            for n, case in enumerate(sc["cases"], 1):
                name = f"{n:02d}-{slug(case['description'])}.yaml"
                dump(os.path.join(d, name), [case["object"]])
                cases.append({"file": name, "description": case["description"],
                              "expect_valid": case["expect_valid"], "rule": case.get("rule"),
                              "uncertain": bool(case.get("uncertain", False))})
            dump(os.path.join(d, "cases.yaml"),
                 [{"id": sc["id"], "title": sc["title"], "cases": cases}])
            continue
        cluster = sc["cluster"]
        if isinstance(cluster, dict):
            dump(os.path.join(d, "cluster.yaml"), cluster_objects(cluster))
            cluster_ref = "inline"
        else:
            used_clusters.add(cluster)
            cluster_ref = cluster
        dump(os.path.join(d, "policies.yaml"), sc.get("objects", []))
        expectations = []
        for p in sc.get("probes", []):
            e = {"from": p["from"], "to": p["to"], "protocol": str(p.get("protocol", "TCP"))}
            if p.get("port") is not None:
                e["port"] = p["port"]
            if p.get("icmp"):
                e["icmp"] = p["icmp"]
            e["expect"] = p["expect"]
            if p.get("uncertain"):
                e["uncertain"] = True
            if p.get("why"):
                e["why"] = p["why"]
            expectations.append(e)
        dump(os.path.join(d, "expect.yaml"),
             [{"id": sc["id"], "title": sc["title"], "topic": topic, "mode": sc.get("mode", "kubernetes"),
               "cluster": cluster_ref, "uncertain": bool(sc.get("uncertain", False)),
               "expectations": expectations}])
    for name in sorted(used_clusters):
        dump(os.path.join(out, "clusters", f"{name}.yaml"), cluster_objects(data["clusters"][name]))


if __name__ == "__main__":
    main()
