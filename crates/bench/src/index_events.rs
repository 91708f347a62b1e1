//! `bulkhead-bench index`: events fed straight to the live index (no files, no loader), each
//! timed from the event to the change committed to the kernel (a recording fake, or nft):
//! pods of another node added, relabelled and removed; a policy of this node edited; and a
//! stream of 1,000 pod events per second. Prints figures; asserts nothing on time.

use bulkhead_index::{Commit, Event, Index, NodeView, Object, objects_of};
use bulkhead_model::{Cluster, Pod};
use bulkhead_nft::{Backend, CompileOptions, Enforcement};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

/// How one commit went.
struct Committed {
    in_place: bool,
    objects: usize,
}

struct Node<B: Backend> {
    index: Index,
    view: NodeView,
    options: CompileOptions,
    backend: B,
}

impl<B: Backend> Node<B> {
    /// What the agent does with a delivery: in place when it can, else a compile of the node.
    fn commit(&mut self) -> anyhow::Result<Committed> {
        let static_options = CompileOptions {
            interfaces: BTreeMap::new(),
            ..self.options.clone()
        };
        let enforcement = Enforcement::default();
        let (ruleset, commit, in_place) = match self.view.next_in_place(
            &self.index,
            self.index.changes(),
            &static_options,
            enforcement,
        ) {
            Some((ruleset, commit, _)) => (ruleset, commit, true),
            None => {
                let (ruleset, commit, _) =
                    self.view
                        .next(&self.index.cluster(), &self.options, enforcement);
                (ruleset, commit, false)
            }
        };
        let objects = match &commit {
            Commit::Nothing => 0,
            Commit::Delta(t) => {
                // As the agent does: elements alone over netlink, anything else as one batch.
                match t.elements_only() {
                    Some(changes) => self
                        .backend
                        .write_elements(changes)
                        .map_err(|e| anyhow::anyhow!("set elements: {e}"))?,
                    None => {
                        let last = self.view.last().expect("a delta follows a commit");
                        self.backend
                            .apply(&t.render(last, &ruleset, &Default::default()))
                            .map_err(|e| anyhow::anyhow!("delta: {e}"))?
                    }
                }
                t.size()
            }
            Commit::Full => {
                self.backend
                    .apply(&bulkhead_nft::render::render(&ruleset))
                    .map_err(|e| anyhow::anyhow!("full table: {e}"))?;
                ruleset.sets.len() + ruleset.chains.len()
            }
        };
        self.view.committed(ruleset);
        self.index.clear_changes();
        Ok(Committed { in_place, objects })
    }

    fn timed(&mut self, events: Vec<Event>) -> anyhow::Result<(Duration, Committed)> {
        let t = Instant::now();
        for e in events {
            self.index.handle(e);
        }
        let done = self.commit()?;
        Ok((t.elapsed(), done))
    }
}

/// A pod of `node-1` (not the measured node) in `namespace`. Every namespace's DNS egress
/// rule holds the `kube-dns` pods of `kube-system`: such a pod changes a set in each.
fn other_pod(namespace: &str, name: String, tier: &str, ip: IpAddr) -> Pod {
    let labels = if namespace == "kube-system" {
        format!("{{k8s-app: kube-dns, tier: {tier}}}")
    } else {
        format!("{{app: bench, tier: {tier}}}")
    };
    let text = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}, labels: {labels}}}\nspec: {{nodeName: node-1, containers: [{{name: c, image: i, ports: [{{name: http, containerPort: 8080}}]}}]}}\nstatus: {{phase: Running, podIP: {ip}}}\n"
    );
    let snapshot = bulkhead_k8s::load(
        &[bulkhead_k8s::Input::new("event.yaml", text)],
        &bulkhead_k8s::LoadOptions::default(),
    );
    snapshot
        .cluster
        .pods
        .into_iter()
        .next()
        .expect("the event's pod loads")
}

/// 100.64.0.0/10 (shared address space): never one of the generated pods' addresses.
fn fresh_ip(n: usize) -> IpAddr {
    let n = u32::try_from(n % (1 << 22)).unwrap_or(0);
    IpAddr::V4(Ipv4Addr::from((100 << 24) | (64 << 16) | n))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn summary(name: &str, mut times: Vec<Duration>, in_place: usize, objects: &[usize]) {
    times.sort();
    println!(
        "{name:<34} n={:<5} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  in place {in_place}/{}  objects per commit {}..{}",
        times.len(),
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(times.last().copied().unwrap_or_default()),
        times.len(),
        objects.iter().min().copied().unwrap_or(0),
        objects.iter().max().copied().unwrap_or(0),
    );
}

/// Runs every scenario on `cluster` for `node-0`; `kernel` names the backend in the output.
pub fn run<B: Backend>(
    cluster: Cluster,
    rounds: usize,
    backend: B,
    kernel: &str,
) -> anyhow::Result<()> {
    let node_name = "node-0";
    let interfaces: BTreeMap<String, String> = cluster
        .pods
        .iter()
        .filter(|p| p.node.as_deref() == Some(node_name))
        .enumerate()
        .map(|(i, p)| (p.key(), format!("bh{i}")))
        .collect();
    let local_namespaces: Vec<String> = {
        let mut v: Vec<String> = cluster
            .pods
            .iter()
            .filter(|p| p.node.as_deref() == Some(node_name))
            .map(|p| p.namespace.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    anyhow::ensure!(!local_namespaces.is_empty(), "node-0 has no pods");
    println!(
        "== live index, {} pods, {} policies; node-0: {} local pods in {} namespaces; {kernel} ==",
        cluster.pods.len(),
        cluster.policies.len(),
        interfaces.len(),
        local_namespaces.len()
    );
    let mut node = Node {
        index: Index::new(),
        view: NodeView::default(),
        options: CompileOptions {
            node: node_name.into(),
            interfaces,
            pod_interface_prefixes: vec!["bh".into()],
            ..CompileOptions::default()
        },
        backend,
    };
    let objects = objects_of(&cluster);
    drop(cluster);
    let t = Instant::now();
    node.index.handle(Event::Resync(objects));
    let indexed = t.elapsed();
    let (first, done) = node.timed(Vec::new())?;
    println!(
        "objects indexed in {:.0} ms; full table compiled and committed in {:.0} ms ({} sets and chains); resident now {:.0} MiB",
        ms(indexed),
        ms(first),
        done.objects,
        crate::memory_mib("VmRSS:")
    );
    let mut next_ip = 0;
    let mut pod_times = [Vec::new(), Vec::new(), Vec::new()];
    let mut pod_in_place = [0, 0, 0];
    let mut pod_objects = [Vec::new(), Vec::new(), Vec::new()];
    for r in 0..rounds {
        // Every other round a DNS pod, which the DNS rule of every local namespace holds.
        let namespace = if r % 2 == 0 {
            "kube-system"
        } else {
            &local_namespaces[r % local_namespaces.len()]
        };
        next_ip += 1;
        let ip = fresh_ip(next_ip);
        let name = format!("bench-{r}");
        let added = other_pod(namespace, name.clone(), "api", ip);
        let relabelled = other_pod(namespace, name, "db", ip);
        let key = Object::Pod(added.clone()).key();
        let steps = [
            Event::Apply(Box::new(Object::Pod(added))),
            Event::Apply(Box::new(Object::Pod(relabelled))),
            Event::Delete(key),
        ];
        for (k, event) in steps.into_iter().enumerate() {
            let (took, done) = node.timed(vec![event])?;
            pod_times[k].push(took);
            pod_in_place[k] += usize::from(done.in_place);
            pod_objects[k].push(done.objects);
        }
    }
    for (k, name) in [
        "pod added on another node",
        "pod relabelled on another node",
        "pod removed on another node",
    ]
    .into_iter()
    .enumerate()
    {
        summary(
            name,
            std::mem::take(&mut pod_times[k]),
            pod_in_place[k],
            &pod_objects[k],
        );
    }
    // A policy of this node edited: the allow-dns policy of a local namespace gains a port,
    // then loses it again.
    let mut policy_times = Vec::new();
    let mut policy_objects = Vec::new();
    let mut policy_in_place = 0;
    let policy_rounds = rounds.clamp(1, 10);
    for r in 0..policy_rounds {
        let namespace = &local_namespaces[r % local_namespaces.len()];
        let extra = if r % 2 == 0 {
            ", {protocol: TCP, port: 5353}"
        } else {
            ""
        };
        let text = format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: allow-dns, namespace: {namespace}}}\nspec:\n  podSelector: {{}}\n  policyTypes: [Egress]\n  egress:\n  - to:\n    - namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: kube-system}}}}\n      podSelector: {{matchLabels: {{k8s-app: kube-dns}}}}\n    ports: [{{protocol: UDP, port: 53}}, {{protocol: TCP, port: 53}}{extra}]\n"
        );
        let snapshot = bulkhead_k8s::load(
            &[bulkhead_k8s::Input::new("policy.yaml", text)],
            &bulkhead_k8s::LoadOptions::default(),
        );
        let events = snapshot
            .cluster
            .policies
            .into_iter()
            .map(|p| Event::Apply(Box::new(Object::Policy(p))))
            .collect();
        let (took, done) = node.timed(events)?;
        policy_times.push(took);
        policy_objects.push(done.objects);
        policy_in_place += usize::from(done.in_place);
    }
    summary(
        "policy of this node edited",
        policy_times,
        policy_in_place,
        &policy_objects,
    );
    // 1,000 pod events per second for two seconds: pods of other nodes arrive and leave;
    // each commit takes what arrived since the last one; latency from an event's arrival.
    let rate = 1000;
    let total = 2 * rate;
    let mut latencies = Vec::with_capacity(total);
    let mut in_place = 0;
    let mut commits = 0;
    let mut stream_objects = Vec::new();
    let mut live: Vec<bulkhead_index::ObjectKey> = Vec::new();
    let start = Instant::now();
    let mut sent = 0;
    while sent < total {
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as usize + 1).min(total);
        if due <= sent {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let mut arrivals = Vec::new();
        for i in sent..due {
            let arrived = start + Duration::from_secs_f64(i as f64 / rate as f64);
            // Every third event removes the oldest pod still there.
            let event = if i % 3 == 2 && !live.is_empty() {
                Event::Delete(live.remove(0))
            } else {
                let namespace = if i % 2 == 0 {
                    "kube-system"
                } else {
                    &local_namespaces[i % local_namespaces.len()]
                };
                next_ip += 1;
                let tier = ["api", "web", "db", "cache"][i % 4];
                let pod = other_pod(namespace, format!("stream-{i}"), tier, fresh_ip(next_ip));
                live.push(Object::Pod(pod.clone()).key());
                Event::Apply(Box::new(Object::Pod(pod)))
            };
            node.index.handle(event);
            arrivals.push(arrived);
        }
        sent = due;
        let done = node.commit()?;
        commits += 1;
        in_place += usize::from(done.in_place);
        stream_objects.push(done.objects);
        let now = Instant::now();
        latencies.extend(
            arrivals
                .into_iter()
                .map(|a| now.saturating_duration_since(a)),
        );
    }
    let elapsed = start.elapsed();
    summary(
        &format!("{rate} pod events/s ({commits} commits)"),
        latencies,
        in_place,
        &stream_objects,
    );
    println!(
        "stream: {total} events in {:.2} s; commits made in place {in_place}/{commits}",
        elapsed.as_secs_f64()
    );
    Ok(())
}
