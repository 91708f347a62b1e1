//! Every flag, defined once with its help text.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Bulkhead: zero-trust network segmentation for Kubernetes.
///
/// Point it at the YAML in your Git repository, or at `kubectl get ns,pods,networkpolicies -A
/// -o yaml`, and learn exactly who can reach whom, and why, the way the cluster enforces it.
#[derive(Debug, Parser)]
#[command(
    name = "bulkhead",
    version = VERSION,
    propagate_version = true,
    max_term_width = 100,
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The version with the commit it was built from (`0.1.0 (3f2a9c1)`), from build.rs.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("BULKHEAD_COMMIT"),
    ")"
);

const EXAMPLES: &str = "\
Examples:
  bulkhead demo                                        the whole workflow on a bundled example
  bulkhead check manifests/                            validate and lint (CI: -o sarif|junit|github)
  bulkhead explain manifests/ --from shop/deployment/web --to shop/db-0 --port 5432
  bulkhead map manifests/ --by workload                who can talk to whom (-o html for a page)
  bulkhead diff --git origin/main..HEAD manifests/     what a change opens and closes
  bulkhead scaffold shop                               default-deny + DNS for a new namespace
  sudo bulkhead agent --node node-1 --manifests manifests/ --audit    enforce (here: preview)
  bulkhead map --live --by workload                    the cluster of your kubeconfig context
  bulkhead diff --base live --head manifests/ --fail-on-drift         what the cluster has that Git lacks

Exit codes: 0 ok, 1 findings (errors, failed expectations, denied with --fail-on-deny),
2 usage or input error.";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate manifests as strictly as the API server (exit 1 on errors).
    ///
    /// Reports YAML syntax errors, wrong field types, unknown fields (kubectl's strict field
    /// validation), invalid selectors, CIDRs and ports, duplicate objects, and YAML 1.1
    /// surprises such as `on` or `0755`, each with file:line:column.
    #[command(after_help = CHECK_EXAMPLES)]
    Check(CheckArgs),
    /// Say whether one connection is allowed, and which policy and rule decided it.
    ///
    /// Endpoints: NS/POD, NS/KIND/NAME (e.g. shop/deployment/web), node:NAME, ip:ADDRESS or a
    /// bare address. The verdict is the egress decision at the source AND the ingress decision at
    /// the destination; both halves are explained.
    #[command(after_help = EXPLAIN_EXAMPLES)]
    Explain(ExplainArgs),
    /// Show who can talk to whom: every allowed (source, destination, protocol, ports).
    #[command(after_help = MAP_EXAMPLES)]
    Map(MapArgs),
    /// Run the whole workflow on a bundled three-tier example.
    #[command(after_help = DEMO_EXAMPLES)]
    Demo(DemoArgs),
    /// List every diagnostic code `check` can report, with its name and default severity.
    #[command(after_help = "Examples:\n  bulkhead codes\n  bulkhead codes -o json")]
    Codes {
        #[arg(short = 'o', long, value_enum, default_value_t = ListOutput::Table)]
        output: ListOutput,
    },
    /// List the lint rules (`-o json` includes each rule's documentation).
    #[command(after_help = "Examples:\n  bulkhead rules\n  bulkhead rules -o json")]
    Rules {
        #[arg(short = 'o', long, value_enum, default_value_t = ListOutput::Table)]
        output: ListOutput,
    },
    /// Print the documentation of one lint rule (by code or name).
    #[command(after_help = "Examples:\n  bulkhead rule BH101\n  bulkhead rule missing-dns-egress")]
    Rule {
        /// `BH101` or `missing-dns-egress`.
        code: String,
    },
    /// Check expected allow/deny flows (a YAML file with `expectations:`); exit 1 on a failure.
    #[command(after_help = TEST_EXAMPLES)]
    Test(TestArgs),
    /// Show the connectivity a change adds and removes, at workload level.
    #[command(after_help = DIFF_EXAMPLES)]
    Diff(DiffArgs),
    /// Replay recorded flows against the policies: which flows that really happened would they
    /// deny, and by which rule (preview before enforcing). Flows are JSON lines as written by
    /// `bulkhead agent flows -o json`: {src_ip, dst_ip, protocol, dst_port?, src?, dst?, ...}.
    #[command(after_help = AUDIT_EXAMPLES)]
    Audit(AuditArgs),
    /// Propose least-privilege NetworkPolicies from observed flows (the flow log of `audit`):
    /// per workload, ingress from exactly the sources seen and egress to exactly the
    /// destinations seen, on the ports seen. The manifests map addresses to workloads.
    #[command(after_help = GENERATE_EXAMPLES)]
    Generate(GenerateArgs),
    /// Per namespace: default-deny, isolated pods, policies, workloads exposed to outside.
    #[command(after_help = COVERAGE_EXAMPLES)]
    Coverage(CoverageArgs),
    /// Print the standard default-deny + DNS policies for a namespace, ready to commit.
    #[command(after_help = SCAFFOLD_EXAMPLES)]
    Scaffold(ScaffoldArgs),
    /// Print the nftables ruleset the agent would apply on one node (deterministic text).
    #[command(after_help = COMPILE_EXAMPLES)]
    Compile(CompileArgs),
    /// Run the node agent: enforce the manifests' policies on this node's pods with nftables.
    ///
    /// Reads the manifests, finds each local pod's host interface by the route to its IP (any
    /// CNI that routes a veth per pod; use --interface for others), applies the ruleset as one
    /// transaction, then reconciles within a second of every change to the directory. Invalid
    /// input keeps the last good ruleset. Stopping the agent leaves the rules in force;
    /// `bulkhead agent uninstall` removes them.
    #[command(after_help = AGENT_EXAMPLES)]
    Agent(AgentArgs),
    /// What a compromised pod of each workload reaches, directly and within K hops, and the
    /// shortest paths to crown jewels, the cloud metadata service and the internet.
    ///
    /// A hop is any allowed connection (any port the policies allow). Targets are pods marked
    /// with the annotation `bulkhead.io/crown-jewel: "true"` (on the pod, the workload or its
    /// pod template) and those `--target` selects. The score is the mean over workloads of
    /// the share of the other pods reachable within the hops: 0 fully segmented, 1 flat.
    #[command(after_help = BLAST_RADIUS_EXAMPLES)]
    BlastRadius(BlastRadiusArgs),
    /// One document for a security review or an auditor: coverage, policy sprawl, blast
    /// radius with the worst paths, DNS and metadata-service findings, and a compliance table
    /// (PCI-DSS v4.0 1.2-1.4, CIS Kubernetes Benchmark 5.3.2, NSA/CISA Kubernetes Hardening),
    /// each row with pass / fail / not evaluated, why, and links to its evidence.
    #[command(after_help = REPORT_EXAMPLES)]
    Report(ReportArgs),
    /// A web view of the manifests on this machine: drill-down graph, matrix, explain on
    /// click, what-if of a policy change, findings, and a JSON API.
    ///
    /// Binds 127.0.0.1 unless --listen says otherwise and refuses requests whose Host header
    /// is not the listen address (DNS rebinding). Nothing it serves changes files or state:
    /// a what-if is computed on a copy. The API: GET /api/map?by=&from=&to=, GET
    /// /api/explain?from=&to=&port=&protocol=, GET /api/check (the JSON of `map -o json`,
    /// `explain -o json` and `check -o json`), GET /api/graph, /api/matrix, /api/policies,
    /// and POST /api/what-if (YAML, at most 1 MiB). See docs/guide.md.
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(ServeArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = COMPLETION_EXAMPLES)]
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into a directory.
    #[command(after_help = MAN_EXAMPLES)]
    Man {
        /// Write bulkhead.1 and bulkhead-COMMAND.1 pages into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

const COMPLETION_EXAMPLES: &str = "\
Examples:
  source <(bulkhead completion bash)
  bulkhead completion zsh > ~/.zfunc/_bulkhead
  bulkhead completion fish > ~/.config/fish/completions/bulkhead.fish";

const MAN_EXAMPLES: &str = "\
Examples:
  bulkhead man | man -l -
  bulkhead man --dir /usr/local/share/man/man1";

#[derive(Clone, Debug, Args)]
pub struct InputArgs {
    /// Files or directories (recursive *.yaml, *.yml, *.json); `-` reads stdin. With
    /// --live/--kubeconfig/--context they are read on top of the cluster's objects.
    #[arg(required_unless_present_any = ["live", "kubeconfig", "context"], value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Namespace for namespaced objects without metadata.namespace, as `kubectl apply -n`,
    /// and for short references (`--from web -n shop` is shop/web) [default: default].
    #[arg(short = 'n', long = "namespace", value_name = "NS")]
    pub namespace: Option<String>,
}

/// Reading a live cluster through the Kubernetes API (the kinds `check` reads from files).
#[derive(Clone, Debug, Default, Args)]
pub struct ClusterArgs {
    /// Read the cluster of the current kubeconfig context ($KUBECONFIG, ~/.kube/config, or
    /// the in-cluster service account), as kubectl does.
    #[arg(long)]
    pub live: bool,
    /// Read the cluster of this kubeconfig file (implies --live).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Use this kubeconfig context (implies --live).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

impl ClusterArgs {
    pub fn is_live(&self) -> bool {
        self.live || self.kubeconfig.is_some() || self.context.is_some()
    }
}

impl InputArgs {
    /// The namespace of objects without one (`default` unless `-n` says otherwise).
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }

    /// The paths as the user gave them, for the title of a page or a report.
    pub fn title(&self) -> String {
        let mut paths: Vec<String> = self.paths.iter().map(|p| p.display().to_string()).collect();
        if self.cluster.is_live() {
            paths.insert(0, "live cluster".to_string());
        }
        paths.join(" ")
    }
}

#[derive(Clone, Debug, Args)]
pub struct SemanticsArgs {
    /// Enforcement model: kubernetes (ANP -> NetworkPolicy -> BANP), calico (tiers), or auto
    /// (calico when a Calico resource is present).
    #[arg(long, value_enum, default_value_t = SemanticsChoice::Auto)]
    pub semantics: SemanticsChoice,
    /// Judge a pod reaching itself like any other flow instead of always allowing it.
    #[arg(long)]
    pub no_self_traffic: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SemanticsChoice {
    Auto,
    Kubernetes,
    Calico,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub semantics: SemanticsArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = CheckFormat::Human)]
    pub output: CheckFormat,
    /// Also exit 1 when there are warnings.
    #[arg(long, value_name = "warnings", value_parser = ["warnings"])]
    pub deny: Option<String>,
    /// Lint configuration (rules to disable, severities, thresholds, path ignores); default:
    /// ./bulkhead.toml when it exists.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Validate only; do not run the lint rules.
    #[arg(long)]
    pub no_lint: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    /// For people (the default); `human` and `table` are accepted too.
    #[value(name = "text", aliases = ["human", "table"])]
    Human,
    Json,
    /// SARIF 2.1.0, for code-scanning dashboards.
    Sarif,
    /// JUnit XML, for CI test reports.
    Junit,
    /// GitHub Actions workflow annotations.
    Github,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub semantics: SemanticsArgs,
    /// Source endpoint (NS/POD, NS/KIND/NAME, node:NAME, ip:ADDRESS).
    #[arg(long, value_name = "REF")]
    pub from: String,
    /// Destination endpoint.
    #[arg(long, value_name = "REF")]
    pub to: String,
    /// Destination port, a number or a port name the destination pod declares (after service
    /// DNAT: the pod's port). Required for TCP, UDP, SCTP.
    #[arg(long, value_name = "PORT")]
    pub port: Option<String>,
    /// Protocol: TCP, UDP, SCTP, ICMP, ICMPv6 or an IP protocol number.
    #[arg(long, default_value = "TCP")]
    pub protocol: String,
    /// ICMP type (ICMP flows only).
    #[arg(long, value_name = "T")]
    pub icmp_type: Option<u8>,
    /// ICMP code (ICMP flows only).
    #[arg(long, value_name = "C")]
    pub icmp_code: Option<u8>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = ExplainFormat::Human)]
    pub output: ExplainFormat,
    /// Exit 1 when the flow is denied (for scripts).
    #[arg(long)]
    pub fail_on_deny: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExplainFormat {
    /// For people (the default); `human` and `table` are accepted too.
    #[value(name = "text", aliases = ["human", "table"])]
    Human,
    Json,
}

#[derive(Debug, Args)]
pub struct MapArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub semantics: SemanticsArgs,
    /// Level of the rows: pods, workloads (Deployment, StatefulSet, ...) or namespaces.
    /// Grouped rows stay exact: `scope` says whether every member pair has the ports.
    /// [default: pod; for `-o html` above 250 pods, workload (or namespace above 250
    /// workloads), so the page stays readable]
    #[arg(long, value_enum)]
    pub by: Option<MapBy>,
    /// Only connections from these pods: NS, NS/POD or NS/KIND/NAME ("what can X reach?").
    /// Rows to external address ranges (`ip:CIDR except ...`) are added: what X's egress
    /// allows outside the cluster.
    #[arg(long, value_name = "REF")]
    pub from: Option<String>,
    /// Only connections to these pods: NS, NS/POD or NS/KIND/NAME ("who can reach X?").
    #[arg(long, value_name = "REF")]
    pub to: Option<String>,
    /// Only this destination port (rows are narrowed to it): a number, or a port name the
    /// destination pods declare.
    #[arg(long, value_name = "PORT")]
    pub port: Option<String>,
    /// Only this protocol: TCP, UDP or SCTP.
    #[arg(long)]
    pub protocol: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = MapFormat::Table)]
    pub output: MapFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MapBy {
    Pod,
    Workload,
    Namespace,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MapFormat {
    /// For people (the default); `human` and `table` are accepted too.
    #[value(name = "text", aliases = ["human", "table"])]
    Table,
    Json,
    Csv,
    Dot,
    Mermaid,
    /// A self-contained web page (graph, matrix, list, filter) to open in a browser.
    Html,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Write the bundled example manifests to this directory instead of running the demo.
    #[arg(long, value_name = "DIR")]
    pub write_to: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompileArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub semantics: SemanticsArgs,
    /// The node whose pods the ruleset protects.
    #[arg(long)]
    pub node: String,
    /// Host interface of a pod, as NS/POD=IFACE (repeatable); without one, the route to the
    /// pod's IP is used.
    #[arg(long = "interface", value_name = "NS/POD=IFACE")]
    pub interfaces: Vec<String>,
    /// The ruleset `agent --audit` applies (denies logged and let through).
    #[arg(long)]
    pub audit: bool,
    /// The ruleset `agent --audit-namespace NS` applies.
    #[arg(long = "audit-namespace", value_name = "NS")]
    pub audit_namespaces: Vec<String>,
    /// The ruleset `agent --pod-interface-prefix PREFIX` applies (fail closed).
    #[arg(long = "pod-interface-prefix", value_name = "PREFIX")]
    pub pod_interface_prefixes: Vec<String>,
    /// The ruleset `agent --pod-cidr CIDR` applies (fail closed by address).
    #[arg(long = "pod-cidr", value_name = "CIDR")]
    pub pod_cidrs: Vec<ipnet::IpNet>,
    /// The ruleset `agent --no-deny-log` applies (no NFLOG records for denies).
    #[arg(long)]
    pub no_deny_log: bool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub action: Option<AgentAction>,
    /// The node this agent runs on (pods with spec.nodeName equal to it are enforced). In a
    /// DaemonSet, NODE_NAME comes from the downward API (fieldRef spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    pub node: Option<String>,
    /// Directory of manifests (as `check` reads them), watched for changes.
    #[arg(long, value_name = "DIR", conflicts_with = "kubernetes")]
    pub manifests: Option<std::path::PathBuf>,
    /// Follow the Kubernetes API (watches of pods, namespaces, policies, ...): in-cluster
    /// configuration in a pod, else the usual kubeconfig lookup.
    #[arg(long)]
    pub kubernetes: bool,
    /// With --kubernetes: this kubeconfig file instead of the usual lookup.
    #[arg(long, value_name = "FILE", requires = "kubernetes")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// With --kubernetes: this kubeconfig context.
    #[arg(long, value_name = "NAME", requires = "kubernetes")]
    pub context: Option<String>,
    /// Also print each deny record to stdout as a JSON line (the format `bulkhead audit`
    /// reads), for the cluster's log collector. The agent then owns the NFLOG group:
    /// `agent flows` cannot read it at the same time.
    #[arg(long)]
    pub deny_log_stdout: bool,
    /// Serve /healthz, /readyz and /metrics on this address (default with --kubernetes:
    /// 127.0.0.1:9750; loopback unless you say otherwise).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Apply once and exit.
    #[arg(long)]
    pub once: bool,
    /// Host interface of a pod, as NS/POD=IFACE (repeatable).
    #[arg(long = "interface", value_name = "NS/POD=IFACE")]
    pub interfaces: Vec<String>,
    /// Namespace for objects without one.
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    pub namespace: String,
    /// How often to look for changes, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub poll_ms: u64,
    /// Keep connections a new ruleset no longer allows (default: cut them via conntrack).
    #[arg(long)]
    pub no_tighten: bool,
    /// Audit mode: connections the policies deny are let through and logged as "would deny"
    /// (NFLOG group 7, read by `bulkhead agent flows`), to preview policies on real traffic.
    #[arg(long)]
    pub audit: bool,
    /// Audit only this namespace (repeatable): its pods' denies are logged as would-deny and
    /// let through while every other namespace is enforced. Roll out one namespace at a time.
    #[arg(long = "audit-namespace", value_name = "NS")]
    pub audit_namespaces: Vec<String>,
    /// Do not send NFLOG records for denied connections (counters still count them).
    #[arg(long)]
    pub no_deny_log: bool,
    /// Where state that outlives the agent is kept (the break-glass marker).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: std::path::PathBuf,
    /// Keep Prometheus metrics (deny counters per pod and rule, audit, break-glass) in this
    /// file, refreshed every 5 s, for node_exporter's textfile collector.
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<std::path::PathBuf>,
    /// Host interfaces whose name starts with PREFIX are pods' (repeatable; `cali`, `veth`,
    /// `lxc`, as your CNI names them). A pod interface with no rules yet passes nothing until
    /// its rules are in place (fail closed), and its drops are counted.
    #[arg(long = "pod-interface-prefix", value_name = "PREFIX")]
    pub pod_interface_prefixes: Vec<String>,
    /// This node's pod CIDR (`kubectl get node NODE -o jsonpath='{.spec.podCIDRs}'`;
    /// repeatable, one per family). A packet from an address in it, or forwarded to one, that
    /// belongs to no pod with rules here yet is dropped and counted (fail closed for pods
    /// behind a bridge, where the interface cannot tell a new pod from the others).
    #[arg(long = "pod-cidr", value_name = "CIDR")]
    pub pod_cidrs: Vec<ipnet::IpNet>,
    /// Automated rollback (off by default): when, after a policy change, this many
    /// connections that the previous revision allowed are denied in one namespace within
    /// --rollback-window, this node moves that namespace to audit (logged, metric
    /// bulkhead_agent_rolled_back, a Kubernetes Event with --kubernetes) until
    /// `agent clear-rollback` or the next policy change. Connections that were denied before
    /// the change never count, so a flood of them cannot force a namespace open.
    #[arg(long, value_name = "CONNECTIONS")]
    pub rollback_after: Option<u64>,
    /// The window after a policy change that --rollback-after counts in, in seconds.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 60.0,
        requires = "rollback_after"
    )]
    pub rollback_window: f64,
}

pub const DEFAULT_STATE_DIR: &str = "/run/bulkhead";

#[derive(Debug, Subcommand)]
pub enum AgentAction {
    /// Remove Bulkhead's nftables table from this node.
    #[command(after_help = "Examples:\n  sudo bulkhead agent uninstall")]
    Uninstall,
    /// Fail open now, or end it: `on` accepts every packet before any policy runs (one element
    /// flip, in force within milliseconds, kept by a running or restarted agent); `off` restores
    /// enforcement.
    #[command(
        after_help = "Examples:\n  sudo bulkhead agent break-glass on\n  sudo bulkhead agent break-glass off"
    )]
    BreakGlass {
        #[arg(value_enum)]
        state: Switch,
        #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: std::path::PathBuf,
    },
    /// Print Prometheus metrics of this node's table: denied packets and bytes per pod and
    /// rule (the kernel's counters), audit mode, break-glass.
    #[command(
        after_help = "Examples:\n  sudo bulkhead agent metrics\n  sudo bulkhead agent metrics --output /var/lib/node_exporter/bulkhead.prom"
    )]
    Metrics {
        /// Write to this file (atomically) instead of standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<std::path::PathBuf>,
    },
    /// Print the flow log of denied connections on this node (and, in audit mode, those that
    /// would be denied), one line per record, with the pod, direction and deciding rule.
    /// Records are rate-limited per rule (20/s) by the ruleset.
    #[command(
        after_help = "Examples:\n  sudo bulkhead agent flows\n  sudo bulkhead agent flows -o json --duration 60 > flows.jsonl"
    )]
    Flows {
        #[arg(short = 'o', long, value_enum, default_value_t = FlowsOutput::Text)]
        output: FlowsOutput,
        /// Exit after this many records.
        #[arg(long)]
        count: Option<usize>,
        /// Exit after this many seconds.
        #[arg(long, value_name = "SECONDS")]
        duration: Option<f64>,
    },
    /// What the agent on this node is doing: the mode of each namespace (enforce, audit,
    /// rolled back, and why), audited policies, break-glass (node and cluster), the last
    /// applied revision, denied connections per namespace. Read from the running agent's
    /// state directory; exit 2 when no agent has written one.
    #[command(
        after_help = "Examples:\n  sudo bulkhead agent status\n  sudo bulkhead agent status -o json | jq .namespaces"
    )]
    Status {
        #[arg(short = 'o', long, value_enum, default_value_t = FlowsOutput::Text)]
        output: FlowsOutput,
        #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: std::path::PathBuf,
    },
    /// Enforce the namespaces an automated rollback moved to audit again (the running agent
    /// applies it within a second; a new policy revision does the same).
    #[command(after_help = "Examples:\n  sudo bulkhead agent clear-rollback")]
    ClearRollback {
        #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
        state_dir: std::path::PathBuf,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FlowsOutput {
    /// For people (the default); `human` and `table` are accepted too.
    #[value(aliases = ["human", "table"])]
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub semantics: SemanticsArgs,
    /// YAML with a top-level `expectations:` list of {name?, from, to, port?, protocol?
    /// (default TCP), expect: allow|deny}; endpoints in every reference form of `explain`.
    #[arg(long, value_name = "FILE")]
    pub expect: std::path::PathBuf,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = TestFormat::Human)]
    pub output: TestFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TestFormat {
    /// For people (the default); `human` and `table` are accepted too.
    #[value(name = "text", aliases = ["human", "table"])]
    Human,
    Json,
    Junit,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The snapshot before the change (files or directories), or `live`: the cluster of
    /// the kubeconfig (see --kubeconfig; `./live` is a directory named live).
    #[arg(long, num_args = 1.., value_name = "PATH", required_unless_present = "git")]
    pub base: Vec<std::path::PathBuf>,
    /// The snapshot after the change, or `live`.
    #[arg(long, num_args = 1.., value_name = "PATH", required_unless_present = "git")]
    pub head: Vec<std::path::PathBuf>,
    /// The kubeconfig file `live` reads (default: the usual lookup, as kubectl).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context `live` reads.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Exit 1 when the two sides hold different policies (drift between the cluster and Git).
    #[arg(long)]
    pub fail_on_drift: bool,
    /// Compare two git revisions of a directory instead: `--git REV1..REV2 DIR`.
    #[arg(long, num_args = 2, value_names = ["REV1..REV2", "DIR"], conflicts_with_all = ["base", "head"])]
    pub git: Vec<String>,
    /// Namespace for objects without one.
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    pub namespace: String,
    #[command(flatten)]
    pub semantics: SemanticsArgs,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = DiffFormat::Markdown)]
    pub output: DiffFormat,
    /// Exit 1 when the change adds access.
    #[arg(long)]
    pub fail_on_new_access: bool,
    /// Hops of lateral movement for the blast-radius change.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub hops: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    /// Markdown for a pull-request comment, which reads as plain text too (`-o text`).
    #[value(alias = "text")]
    Markdown,
    Json,
}

#[derive(Debug, Args)]
pub struct CoverageArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub semantics: SemanticsArgs,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = CoverageFormat::Table)]
    pub output: CoverageFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CoverageFormat {
    /// For people (the default); `human` and `table` are accepted too.
    #[value(name = "text", aliases = ["human", "table"])]
    Table,
    Json,
    /// Prometheus text exposition (for node_exporter's textfile collector).
    Prometheus,
}

#[derive(Debug, Args)]
pub struct ScaffoldArgs {
    /// The namespace to protect.
    pub namespace: String,
    /// Where the cluster DNS pods (k8s-app=kube-dns) run.
    #[arg(long, default_value = "kube-system")]
    pub dns_namespace: String,
}

/// Output of the listing commands (`codes`, `rules`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ListOutput {
    /// For people (the default); `human` and `table` are accepted too.
    #[value(name = "text", aliases = ["human", "table"])]
    Table,
    /// An array of {code, name, severity, summary} (rules add `doc`, Markdown).
    Json,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub semantics: SemanticsArgs,
    /// The flow log: JSON lines, Bulkhead's ({src_ip, dst_ip, protocol, dst_port?, ...}, as
    /// `agent flows -o json` writes them) or Cilium Hubble's (`hubble observe -o json`); `-`
    /// reads stdin.
    #[arg(long, value_name = "FILE")]
    pub flows: std::path::PathBuf,
    /// The flow log's format; `auto` sniffs it (JSON lines: Bulkhead's, Hubble's or Calico's,
    /// recognised per line; otherwise CSV with a header). Gzip is recognised either way.
    #[arg(long, value_enum, default_value_t = FlowFormat::Auto)]
    pub format: FlowFormat,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = AuditFormat::Human)]
    pub output: AuditFormat,
    /// Exit 1 when a recorded flow would be denied, or when records name pods the snapshot
    /// does not have (unless --allow-unresolved): an unresolved flow is not an allowed one.
    #[arg(long)]
    pub fail_on_deny: bool,
    /// With --fail-on-deny: unresolved records alone do not fail the run.
    #[arg(long)]
    pub allow_unresolved: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuditFormat {
    /// Markdown for a pull request.
    Markdown,
    /// For people (the default); `human` and `table` are accepted too.
    #[value(name = "text", aliases = ["human", "table"])]
    Human,
    Json,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub semantics: SemanticsArgs,
    /// The observed flows: JSON lines, Bulkhead's or Cilium Hubble's (`hubble observe -o
    /// json`); `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    pub flows: std::path::PathBuf,
    /// The flow log's format; `auto` sniffs it (JSON lines: Bulkhead's, Hubble's or Calico's,
    /// recognised per line; otherwise CSV with a header). Gzip is recognised either way.
    #[arg(long, value_enum, default_value_t = FlowFormat::Auto)]
    pub format: FlowFormat,
    /// Widen addresses outside the cluster to this IPv4 prefix length (`24`: one rule per
    /// /24 instead of per address).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u8).range(0..=32))]
    pub cidr_prefix: u8,
    /// The policies to write: Kubernetes NetworkPolicy, or Calico v3 NetworkPolicy.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = GenerateFormat::Kubernetes)]
    pub output: GenerateFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GenerateFormat {
    /// `networking.k8s.io/v1` NetworkPolicy YAML (`text` is accepted too).
    #[value(alias = "text", alias = "yaml")]
    Kubernetes,
    /// `projectcalico.org/v3` NetworkPolicy YAML.
    Calico,
}

const CHECK_EXAMPLES: &str = "\
Examples:
  bulkhead check manifests/                      validate and lint; exit 1 on errors
  bulkhead check manifests/ --deny warnings      fail on warnings too
  bulkhead check manifests/ -o sarif > bulkhead.sarif     for code scanning
  bulkhead check manifests/ -o junit             a CI test report (only errors fail)
  kubectl get ns,pods,networkpolicies -A -o yaml | bulkhead check -
  kustomize build overlays/prod | bulkhead check -
  bulkhead check --live                          the cluster of the current kubeconfig context
  bulkhead check --context prod new-policy.yaml  the prod cluster with a new policy on top";

const EXPLAIN_EXAMPLES: &str = "\
Examples:
  bulkhead explain manifests/ --from shop/deployment/web --to shop/db-0 --port 5432
  bulkhead explain manifests/ -n shop --from web --to db-0 --port postgres
  bulkhead explain manifests/ --from shop/web-0 --to 169.254.169.254 --port 80
  bulkhead explain manifests/ --from shop/web-0 --to node:node-1 --protocol ICMP
  bulkhead explain manifests/ --from a/x --to b/y --port 80 -o json --fail-on-deny";

const MAP_EXAMPLES: &str = "\
Examples:
  bulkhead map manifests/                         every allowed pod pair and its ports
  bulkhead map manifests/ --by workload           grouped, exact (`scope` all|some)
  bulkhead map manifests/ --from shop --by workload       what namespace shop can reach
  bulkhead map manifests/ -n shop --from web      what web can reach, outside addresses too
  bulkhead map manifests/ --to shop/statefulset/db --port 5432    who reaches the database
  bulkhead map manifests/ -o html > map.html      a page with graph, matrix and filter
  bulkhead map --kubeconfig ~/.kube/prod --by workload    a live cluster, read through its API";

const DEMO_EXAMPLES: &str = "\
Examples:
  bulkhead demo                         the whole workflow on a bundled three-tier example
  bulkhead demo --write-to /tmp/demo    write the example's manifests to try commands on";

const TEST_EXAMPLES: &str = "\
Examples:
  bulkhead test manifests/ --expect expect.yaml
  bulkhead test manifests/ --expect expect.yaml -o junit > report.xml
expect.yaml:
  expectations:
  - {name: web reaches the api, from: shop/deployment/web, to: shop/api-0, port: 8080, expect: allow}
  - {from: shop/web-0, to: ip:169.254.169.254, port: 80, expect: deny}";

const DIFF_EXAMPLES: &str = "\
Examples:
  bulkhead diff --git origin/main..HEAD manifests/ --fail-on-new-access
  bulkhead diff --base old/ --head new/ -o json
  bulkhead diff --base live --head manifests/ --fail-on-drift    drift: the cluster against Git
  bulkhead diff --base manifests/ --head live --context prod     what applying Git would change";

const AUDIT_EXAMPLES: &str = "\
Examples:
  bulkhead audit manifests/ --flows flows.jsonl --fail-on-deny
  sudo bulkhead agent flows -o json | bulkhead audit manifests/ --flows -
  hubble observe -o json | bulkhead audit manifests/ --flows -";

const GENERATE_EXAMPLES: &str = "\
Examples:
  bulkhead generate manifests/ --flows flows.jsonl > proposed.yaml
  hubble observe -o json | bulkhead generate manifests/ --flows - > proposed.yaml";

const COVERAGE_EXAMPLES: &str = "\
Examples:
  bulkhead coverage manifests/
  bulkhead coverage manifests/ -o json
  bulkhead coverage manifests/ -o prometheus > /var/lib/node_exporter/bulkhead.prom";

const SCAFFOLD_EXAMPLES: &str = "\
Examples:
  bulkhead scaffold shop > shop/00-default-deny.yaml
  bulkhead scaffold shop --dns-namespace dns-system";

const COMPILE_EXAMPLES: &str = "\
Examples:
  kubectl get ns,nodes,pods,networkpolicies -A -o yaml | bulkhead compile - --node node-1
  bulkhead compile live.yaml --node node-1 --interface shop/web-0=cali1234";

const AGENT_EXAMPLES: &str = "\
Examples:
  sudo bulkhead agent --node node-1 --manifests manifests/ --audit    preview: log, do not drop
  sudo bulkhead agent --node node-1 --manifests manifests/            enforce
  bulkhead agent --kubernetes                 in a DaemonSet: NODE_NAME from the downward API
  sudo bulkhead agent --node n1 --kubernetes --kubeconfig k.yaml --listen 127.0.0.1:9750
  sudo bulkhead agent flows                  the live flow log of denied connections
  sudo bulkhead agent break-glass on         fail open now; `off` to end it
  sudo bulkhead agent uninstall              remove Bulkhead's table";

const SERVE_EXAMPLES: &str = "\
Examples:
  bulkhead serve manifests/                         http://127.0.0.1:8080
  bulkhead serve manifests/ --listen 127.0.0.1:0    any free port (printed on start)
  curl -s 'http://127.0.0.1:8080/api/explain?from=shop/web&to=shop/db&port=5432'";

#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub semantics: SemanticsArgs,
    /// Address and port to listen on. Anything but a loopback address exposes your policies
    /// to the network: do that only behind authentication.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    pub listen: std::net::SocketAddr,
    /// Configuration for the findings panel (bulkhead.toml in the working directory when present).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

const BLAST_RADIUS_EXAMPLES: &str = "\
Examples:
  bulkhead blast-radius manifests/                              every workload, 3 hops
  bulkhead blast-radius manifests/ --from shop/deployment/web --target app=db
  bulkhead blast-radius manifests/ --hops 1 -o json             direct reach only, for machines";

#[derive(Debug, Args)]
pub struct BlastRadiusArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub semantics: SemanticsArgs,
    /// Only this workload (or the workloads of a namespace): NS, NS/POD or NS/KIND/NAME.
    #[arg(long, value_name = "REF")]
    pub from: Option<String>,
    /// Hops of lateral movement to follow.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub hops: u16,
    /// Also target the pods this label selector matches (`app=db`, `tier=data,env=prod`).
    #[arg(long, value_name = "SELECTOR")]
    pub target: Option<String>,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = BlastRadiusFormat::Text)]
    pub output: BlastRadiusFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BlastRadiusFormat {
    /// For people (the default); `human` and `table` are accepted too.
    #[value(aliases = ["human", "table"])]
    Text,
    Json,
}

const REPORT_EXAMPLES: &str = "\
Examples:
  bulkhead report manifests/ > review.md
  bulkhead report manifests/ --cde app=payments -o html > review.html
  bulkhead report manifests/ -o json";

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub semantics: SemanticsArgs,
    /// The cardholder data environment's pods (`app=payments`), for PCI-DSS 1.3; without it
    /// that row is "not evaluated".
    #[arg(long, value_name = "SELECTOR")]
    pub cde: Option<String>,
    /// Hops of lateral movement for the blast radius.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub hops: u16,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = ReportFormat::Markdown)]
    pub output: ReportFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// Markdown, which reads as plain text too (`-o text`).
    #[value(alias = "text")]
    Markdown,
    /// A self-contained page.
    Html,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FlowFormat {
    Auto,
    /// JSON lines: Bulkhead (`agent flows -o json`), Cilium Hubble, Calico Enterprise and
    /// Calico Open Source (Goldmane/Whisker), recognised line by line.
    Json,
    /// CSV with a header naming the columns (src_ip, dst_ip, dst_port, protocol, ...).
    Csv,
}
