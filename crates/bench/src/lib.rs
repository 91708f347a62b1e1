//! A deterministic synthetic cluster generator: namespaces of deployments whose replicas share
//! labels, the default-deny + DNS + tier-to-tier pattern of our users' playbook, named ports,
//! ipBlock egress allowlists and a monitoring namespace. Same seed, same bytes.

pub mod index_events;
pub mod kube_events;
pub mod whole;
use std::fmt::Write as _;

/// SplitMix64: tiny, fast, and good enough to vary a synthetic cluster.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// The sizes of issue 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    pub name: &'static str,
    pub namespaces: usize,
    pub deployments_per_namespace: usize,
    pub replicas: usize,
    pub policies_per_namespace: usize,
}

pub const SIZES: [Size; 6] = [
    Size {
        name: "S",
        namespaces: 5,
        deployments_per_namespace: 4,
        replicas: 5,
        policies_per_namespace: 6,
    },
    Size {
        name: "M",
        namespaces: 50,
        deployments_per_namespace: 5,
        replicas: 4,
        policies_per_namespace: 10,
    },
    Size {
        name: "L",
        namespaces: 200,
        deployments_per_namespace: 10,
        replicas: 5,
        policies_per_namespace: 10,
    },
    Size {
        name: "XL",
        namespaces: 5000,
        deployments_per_namespace: 4,
        replicas: 5,
        policies_per_namespace: 2,
    },
    // The scale Antrea's controller reports (100k pods, 75k NetworkPolicies): one policy per
    // workload plus each namespace's default-deny and DNS allow.
    Size {
        name: "Antrea",
        namespaces: 12_500,
        deployments_per_namespace: 4,
        replicas: 2,
        policies_per_namespace: 6,
    },
    // 100 MB of NetworkPolicies and nothing else: the Antrea size's policies in four times
    // its namespaces (300,000 policies), no pods. What `check` of a big policy repository is.
    Size {
        name: "Policies",
        namespaces: 50_000,
        deployments_per_namespace: 4,
        replicas: 0,
        policies_per_namespace: 6,
    },
];

/// A memory figure of this process from /proc (`VmRSS:` now, `VmHWM:` peak), in MiB.
pub fn memory_mib(field: &str) -> f64 {
    process_memory_mib("self", field)
}

/// The same for process `pid` (`"self"`: this one).
pub fn process_memory_mib(pid: &str, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

pub fn size(name: &str) -> Option<Size> {
    SIZES
        .iter()
        .copied()
        .find(|s| s.name.eq_ignore_ascii_case(name))
}

/// A container port: name, number, protocol.
type PortDef = (&'static str, u16, &'static str);

const ROLES: [(&str, &[PortDef]); 5] = [
    ("web", &[("http", 8080, "TCP")]),
    ("api", &[("http", 8080, "TCP"), ("grpc", 9090, "TCP")]),
    ("db", &[("pg", 5432, "TCP")]),
    ("cache", &[("redis", 6379, "TCP")]),
    ("worker", &[("metrics", 9100, "TCP")]),
];

/// The generated manifests, one text per file, in the layout both Bulkhead and
/// network-config-analyzer read: a NamespaceList, a PodList and the policies.
#[derive(Debug, Default)]
pub struct Generated {
    pub namespaces: String,
    pub pods: String,
    pub policies: String,
    pub pod_count: usize,
    pub policy_count: usize,
}

/// How pod addresses are handed out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// As a real cluster assigns them: each node owns /24 blocks of 10.0.0.0/8 in random
    /// order, so the addresses a policy's peers hold are scattered, not one range.
    pub scattered_ips: bool,
}

impl Generated {
    /// Writes the three files flat into `dir`: namespaces.yaml, pods.yaml, policies.yaml.
    pub fn write_to(&self, dir: &std::path::Path) -> std::io::Result<()> {
        std::fs::write(dir.join("namespaces.yaml"), &self.namespaces)?;
        std::fs::write(dir.join("pods.yaml"), &self.pods)?;
        std::fs::write(dir.join("policies.yaml"), &self.policies)
    }
}

enum PodIps {
    /// 10.0.0.1, 10.0.0.2, ... whatever the node.
    Sequential(u32),
    /// Per node: its /24 blocks (a random permutation) and how many addresses it used.
    Scattered {
        blocks: Vec<u32>,
        used: Vec<u32>,
        nodes: usize,
    },
}

impl PodIps {
    fn new(options: Options, nodes: usize, rng: &mut Rng) -> Self {
        if !options.scattered_ips {
            return PodIps::Sequential(0);
        }
        // Two blocks per node (a node rarely fills one), drawn from the 65,536 of 10/8.
        let mut blocks: Vec<u32> = (0..65_536).collect();
        for i in (1..blocks.len()).rev() {
            blocks.swap(i, rng.below(i + 1));
        }
        blocks.truncate(2 * nodes);
        PodIps::Scattered {
            blocks,
            used: vec![0; nodes],
            nodes,
        }
    }

    fn next(&mut self, node: usize) -> String {
        match self {
            PodIps::Sequential(n) => {
                *n += 1;
                let n = *n;
                format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
            }
            PodIps::Scattered {
                blocks,
                used,
                nodes,
            } => {
                let k = node % *nodes;
                let u = used[k];
                used[k] += 1;
                let block = blocks[k + *nodes * usize::from(u >= 254)];
                format!("10.{}.{}.{}", block >> 8, block & 255, 1 + u % 254)
            }
        }
    }
}

fn namespace_doc(out: &mut String, name: &str, extra: &str) {
    let _ = writeln!(
        out,
        "- apiVersion: v1\n  kind: Namespace\n  metadata:\n    name: {name}\n    labels: {{kubernetes.io/metadata.name: {name}{extra}}}"
    );
}

#[expect(clippy::too_many_arguments, reason = "a pod is all of these")]
fn pod_doc(
    out: &mut String,
    ns: &str,
    name: &str,
    labels: &str,
    ip: &str,
    node: usize,
    ports: &[(&str, u16, &str)],
    owner: Option<(&str, &str)>,
) {
    let _ = write!(
        out,
        "- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: {name}\n    namespace: {ns}\n    labels: {{{labels}}}\n"
    );
    if let Some((rs, _)) = owner {
        let _ = write!(
            out,
            "    ownerReferences:\n    - {{apiVersion: apps/v1, kind: ReplicaSet, name: {rs}, uid: {rs}-uid, controller: true}}\n"
        );
    }
    let _ = write!(
        out,
        "  spec:\n    nodeName: node-{node}\n    containers:\n    - name: main\n      image: registry.example/app:1\n"
    );
    if !ports.is_empty() {
        let _ = writeln!(out, "      ports:");
        for (n, p, proto) in ports {
            let _ = writeln!(
                out,
                "      - {{name: {n}, containerPort: {p}, protocol: {proto}}}"
            );
        }
    }
    let _ = writeln!(
        out,
        "  status:\n    phase: Running\n    podIP: {ip}\n    podIPs: [{{ip: {ip}}}]"
    );
}

/// Generates a cluster of the given size from a seed.
pub fn generate(size: Size, seed: u64) -> Generated {
    generate_with(size, seed, Options::default())
}

pub fn generate_with(size: Size, seed: u64, options: Options) -> Generated {
    let mut rng = Rng::new(seed);
    let mut g = Generated::default();
    let mut ns_out = String::from("apiVersion: v1\nkind: NamespaceList\nitems:\n");
    let mut pod_out = String::from("apiVersion: v1\nkind: PodList\nitems:\n");
    let mut pol_out = String::new();
    let nodes = (size.namespaces * size.deployments_per_namespace * size.replicas / 50).max(2);
    // The sequential plan draws nothing from `rng`, so the default clusters stay as they were.
    let mut ips = if options.scattered_ips {
        let mut own = Rng::new(seed ^ 0x5ca7_7e2e);
        PodIps::new(options, nodes, &mut own)
    } else {
        PodIps::Sequential(0)
    };
    // Infrastructure namespaces.
    namespace_doc(&mut ns_out, "kube-system", "");
    namespace_doc(&mut ns_out, "ingress-nginx", "");
    namespace_doc(&mut ns_out, "monitoring", ", purpose: monitoring");
    for i in 0..2 {
        pod_doc(
            &mut pod_out,
            "kube-system",
            &format!("coredns-{i}"),
            "k8s-app: kube-dns",
            &ips.next(i),
            i,
            &[("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")],
            None,
        );
    }
    pod_doc(
        &mut pod_out,
        "ingress-nginx",
        "controller-0",
        "app.kubernetes.io/name: ingress-nginx",
        &ips.next(0),
        0,
        &[("http", 80, "TCP")],
        None,
    );
    pod_doc(
        &mut pod_out,
        "monitoring",
        "prometheus-0",
        "app: prometheus",
        &ips.next(1),
        1,
        &[("web", 9090, "TCP")],
        None,
    );
    g.pod_count += 4;
    for n in 0..size.namespaces {
        let ns = format!("team-{n:04}");
        let team = format!("t{}", n % 7);
        namespace_doc(&mut ns_out, &ns, &format!(", team: {team}"));
        let mut roles = Vec::new();
        for d in 0..size.deployments_per_namespace {
            let (role, ports) = ROLES[(d + rng.below(2)) % ROLES.len()];
            let app = format!("{role}-{d}");
            let hash = format!("{:08x}", rng.next_u64() & 0xffff_ffff);
            let rs = format!("{app}-{hash}");
            roles.push((role, app.clone()));
            for r in 0..size.replicas {
                let labels = format!("app: {app}, tier: {role}, pod-template-hash: '{hash}'");
                let node = rng.below(nodes);
                pod_doc(
                    &mut pod_out,
                    &ns,
                    &format!("{rs}-{r}"),
                    &labels,
                    &ips.next(node),
                    node,
                    ports,
                    Some((&rs, &app)),
                );
                g.pod_count += 1;
            }
        }
        // Policies, in the order a careful team writes them, up to the per-namespace budget.
        let mut candidates: Vec<String> = Vec::new();
        candidates.push(format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: default-deny, namespace: {ns}}}\nspec:\n  podSelector: {{}}\n  policyTypes: [Ingress, Egress]\n"
        ));
        candidates.push(format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: allow-dns, namespace: {ns}}}\nspec:\n  podSelector: {{}}\n  policyTypes: [Egress]\n  egress:\n  - to:\n    - namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: kube-system}}}}\n      podSelector: {{matchLabels: {{k8s-app: kube-dns}}}}\n    ports: [{{protocol: UDP, port: 53}}, {{protocol: TCP, port: 53}}]\n"
        ));
        for (role, app) in &roles {
            let (ingress_from, ports, egress) = match *role {
                "web" => (
                    "    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}\n".to_string(),
                    "[{port: http}]",
                    "  - to:\n    - podSelector: {matchLabels: {tier: api}}\n    ports: [{port: http}]\n".to_string(),
                ),
                "api" => (
                    "    - podSelector: {matchLabels: {tier: web}}\n".to_string(),
                    "[{port: 8080}, {port: 9090}]",
                    "  - to:\n    - podSelector: {matchLabels: {tier: db}}\n    - podSelector: {matchLabels: {tier: cache}}\n    ports: [{port: 5432}, {port: 6379}]\n  - to:\n    - ipBlock: {cidr: 203.0.113.0/24, except: [203.0.113.128/25]}\n    ports: [{port: 443}]\n".to_string(),
                ),
                "db" => ("    - podSelector: {matchLabels: {tier: api}}\n".to_string(), "[{port: pg}]", String::new()),
                "cache" => (
                    "    - podSelector: {matchLabels: {tier: api}}\n    - podSelector: {matchLabels: {tier: worker}}\n".to_string(),
                    "[{port: 6379}]",
                    String::new(),
                ),
                _ => (
                    "    - namespaceSelector: {matchLabels: {purpose: monitoring}}\n".to_string(),
                    "[{port: 9100, endPort: 9110}]",
                    "  - to:\n    - podSelector: {matchLabels: {tier: cache}}\n    ports: [{port: 6379}]\n".to_string(),
                ),
            };
            let types = if egress.is_empty() {
                "[Ingress]"
            } else {
                "[Ingress, Egress]"
            };
            let mut doc = format!(
                "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {app}, namespace: {ns}}}\nspec:\n  podSelector: {{matchLabels: {{app: {app}}}}}\n  policyTypes: {types}\n  ingress:\n  - from:\n{ingress_from}    ports: {ports}\n"
            );
            if !egress.is_empty() {
                doc.push_str("  egress:\n");
                doc.push_str(&egress);
            }
            candidates.push(doc);
        }
        candidates.push(format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: allow-monitoring, namespace: {ns}}}\nspec:\n  podSelector: {{}}\n  policyTypes: [Ingress]\n  ingress:\n  - from:\n    - namespaceSelector: {{matchLabels: {{purpose: monitoring}}}}\n      podSelector: {{matchLabels: {{app: prometheus}}}}\n    ports: [{{port: metrics}}, {{port: 9090}}]\n"
        ));
        candidates.push(format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: web-from-same-namespace, namespace: {ns}}}\nspec:\n  podSelector: {{matchLabels: {{tier: web}}}}\n  policyTypes: [Ingress]\n  ingress:\n  - from:\n    - podSelector: {{}}\n    ports: [{{protocol: TCP, port: 8080}}, {{protocol: UDP, port: 8125}}]\n"
        ));
        candidates.push(format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: same-team, namespace: {ns}}}\nspec:\n  podSelector: {{matchExpressions: [{{key: tier, operator: In, values: [api, worker]}}]}}\n  policyTypes: [Ingress]\n  ingress:\n  - from:\n    - namespaceSelector: {{matchLabels: {{team: {team}}}}}\n      podSelector: {{matchExpressions: [{{key: tier, operator: NotIn, values: [db]}}]}}\n    ports: [{{port: 8080}}]\n"
        ));
        for doc in candidates.into_iter().take(size.policies_per_namespace) {
            pol_out.push_str("---\n");
            pol_out.push_str(&doc);
            g.policy_count += 1;
        }
    }
    g.namespaces = ns_out;
    g.pods = pod_out;
    g.policies = pol_out;
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_sized() {
        let a = generate(SIZES[0], 7);
        let b = generate(SIZES[0], 7);
        assert_eq!(a.pods, b.pods);
        assert_eq!(a.policies, b.policies);
        assert_eq!(a.pod_count, 4 + 5 * 4 * 5);
        assert_eq!(a.policy_count, 5 * 6);
    }

    #[test]
    fn generated_manifests_load_without_diagnostics() {
        let g = generate(SIZES[0], 1);
        let inputs = [
            bulkhead_k8s::Input::new("namespaces.yaml", g.namespaces),
            bulkhead_k8s::Input::new("pods.yaml", g.pods),
            bulkhead_k8s::Input::new("policies.yaml", g.policies),
        ];
        let snapshot = bulkhead_k8s::load(&inputs, &bulkhead_k8s::LoadOptions::default());
        let problems: Vec<_> = snapshot
            .diagnostics
            .iter()
            .filter(|d| d.severity != bulkhead_model::Severity::Info)
            .collect();
        assert!(problems.is_empty(), "{problems:#?}");
        assert_eq!(snapshot.cluster.pods.len(), g.pod_count);
        assert_eq!(snapshot.cluster.policies.len(), g.policy_count);
        assert!(
            snapshot
                .cluster
                .pods
                .iter()
                .any(|p| p.workload.kind == "deployment")
        );
    }
}
