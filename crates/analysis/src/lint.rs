//! The lint runner: rule metadata, configuration, suppression, and the context rules share.

use bulkhead_engine::{Engine, EngineOptions};
use bulkhead_model::{Cluster, Diagnostic, Severity, SourceLocation};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// What `bulkhead rules` prints and where the docs come from: one per rule, in its own file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleInfo {
    /// Permanent code (`BH101`); never reused.
    pub code: &'static str,
    /// The mistake, in kebab case (`missing-dns-egress`).
    pub name: &'static str,
    pub severity: Severity,
    pub summary: &'static str,
    /// Markdown with the sections What it flags / Why it matters / Example / Fix.
    pub doc: &'static str,
}

/// `bulkhead.toml`: which rules run, at which severity, with which thresholds, where.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub rules: RulesConfig,
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Findings in files under these paths are dropped (optionally only some codes).
    #[serde(default)]
    pub ignore: Vec<PathIgnore>,
    /// Where relative paths are anchored: `ignore` paths at the configuration file's
    /// directory, file names of diagnostics at the working directory. Set by the caller (this
    /// crate does no I/O); without them paths are compared as written, after normalising.
    #[serde(skip)]
    pub anchors: PathAnchors,
    /// The engine the rules judge with (`--semantics`); by default the one enforcement uses.
    #[serde(skip)]
    pub engine: Option<EngineOptions>,
}

/// The directories relative paths are resolved against (see [`Config::anchors`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PathAnchors {
    pub config_dir: Option<std::path::PathBuf>,
    pub working_dir: Option<std::path::PathBuf>,
}

impl PathAnchors {
    /// Whether `file` (as diagnostics name it) lies under the ignore path `prefix`, however
    /// either is spelled: `legacy/`, `./legacy`, `/repo/legacy` and `sub/../legacy` all mean
    /// the same directory. Whole components only: `legacy` does not cover `legacy2/`.
    pub fn covers(&self, prefix: &str, file: &str) -> bool {
        let prefix = normalise(self.config_dir.as_deref(), prefix);
        let file = normalise(self.working_dir.as_deref(), file);
        file.starts_with(prefix)
    }
}

/// Lexical normalisation: anchors a relative path, drops `.`, folds `..` (no file system).
pub fn normalise(anchor: Option<&std::path::Path>, path: &str) -> std::path::PathBuf {
    use std::path::Component;
    let path = std::path::Path::new(path);
    let joined = match anchor {
        Some(a) if path.is_relative() => a.join(path),
        _ => path.to_path_buf(),
    };
    let mut out = std::path::PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Codes or names of rules not to run.
    #[serde(default)]
    pub disable: Vec<String>,
    /// Code or name -> `error`, `warning` or `info`.
    #[serde(default)]
    pub severity: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    #[serde(default = "default_per_namespace")]
    pub policies_per_namespace: usize,
    #[serde(default = "default_global")]
    pub global_policies: usize,
    /// The rule/policy-effect analysis recompiles the cluster once per rule; above this many
    /// rules it is skipped (and says so).
    #[serde(default = "default_effect_limit")]
    pub effect_analysis_max_rules: usize,
}

fn default_per_namespace() -> usize {
    10
}
fn default_global() -> usize {
    20
}
fn default_effect_limit() -> usize {
    400
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            policies_per_namespace: default_per_namespace(),
            global_policies: default_global(),
            effect_analysis_max_rules: default_effect_limit(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PathIgnore {
    /// A path prefix, as the files are named in diagnostics.
    pub path: String,
    /// Codes to drop there; all when empty.
    #[serde(default)]
    pub codes: Vec<String>,
}

/// Everything a rule looks at.
#[derive(Debug)]
pub struct LintContext<'c> {
    pub cluster: &'c Cluster,
    pub engine: Engine<'c>,
    pub config: &'c Config,
    /// Namespace -> its pods that are endpoints (running, not host network), by index: rules
    /// that ask "does a pod in these namespaces match" look at those pods, not at all of them.
    endpoints_by_namespace: HashMap<&'c str, Vec<usize>, FastHash>,
    /// Namespace -> all its pods, by index.
    pods_by_namespace: HashMap<&'c str, Vec<usize>, FastHash>,
    /// `(namespace, name)` of the Calico namespaced NetworkPolicies that no Kubernetes
    /// NetworkPolicy shares: the engine prints both kinds as `NetworkPolicy`. Built on first
    /// use, as only rules with a finding to name ask.
    calico_only_names: std::sync::OnceLock<HashSet<(Option<&'c str>, &'c str), FastHash>>,
}

impl<'c> LintContext<'c> {
    pub fn new(cluster: &'c Cluster, config: &'c Config) -> Self {
        Self {
            cluster,
            engine: Engine::new(
                cluster,
                config
                    .engine
                    .unwrap_or_else(|| EngineOptions::for_cluster(cluster)),
            ),
            config,
            pods_by_namespace: {
                let mut by: HashMap<&str, Vec<usize>, FastHash> = HashMap::default();
                for (i, p) in cluster.pods.iter().enumerate() {
                    by.entry(p.namespace.as_str()).or_default().push(i);
                }
                by
            },
            endpoints_by_namespace: {
                let mut by: HashMap<&str, Vec<usize>, FastHash> = HashMap::default();
                for (i, p) in cluster.pods.iter().enumerate() {
                    if p.is_endpoint() && !p.host_network {
                        by.entry(p.namespace.as_str()).or_default().push(i);
                    }
                }
                by
            },
            calico_only_names: std::sync::OnceLock::new(),
        }
    }

    /// The resource an engine explanation names (`kind` as the engine prints it), in the form
    /// every finding and the `bulkhead.io/ignore` suppressions use: `CalicoNetworkPolicy ns/name`
    /// for a Calico namespaced policy.
    pub fn engine_resource(&self, kind: &str, namespace: Option<&str>, name: &str) -> String {
        let calico = kind == "NetworkPolicy"
            && self
                .calico_only_names
                .get_or_init(|| {
                    let names = |kind: bulkhead_model::PolicyKind| {
                        self.cluster
                            .policies
                            .iter()
                            .filter(move |p| p.kind == kind)
                            .map(|p| (p.namespace.as_deref(), p.name.as_str()))
                    };
                    let kubernetes: HashSet<_, FastHash> =
                        names(bulkhead_model::PolicyKind::NetworkPolicy).collect();
                    names(bulkhead_model::PolicyKind::CalicoNetworkPolicy)
                        .filter(|n| !kubernetes.contains(n))
                        .collect()
                })
                .contains(&(namespace, name));
        resource(
            if calico { "CalicoNetworkPolicy" } else { kind },
            namespace,
            name,
        )
    }

    /// Every pod of these namespaces, in the cluster's order.
    pub fn pods_in(&self, namespaces: &[&str]) -> impl Iterator<Item = &'c bulkhead_model::Pod> {
        let mut indices: Vec<usize> = namespaces
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter_map(|ns| self.pods_by_namespace.get(*ns))
            .flatten()
            .copied()
            .collect();
        indices.sort_unstable();
        let cluster = self.cluster;
        indices.into_iter().map(move |i| &cluster.pods[i])
    }

    /// The endpoint pods (running, not host network) of `namespace`.
    pub fn endpoints_in(&self, namespace: &str) -> impl Iterator<Item = &'c bulkhead_model::Pod> {
        let cluster = self.cluster;
        self.endpoints_by_namespace
            .get(namespace)
            .into_iter()
            .flatten()
            .map(move |&i| &cluster.pods[i])
    }

    /// A finding of `rule` about `resource`, located at `source`.
    pub fn finding(
        &self,
        rule: &RuleInfo,
        resource: Option<String>,
        source: Option<&SourceLocation>,
        message: String,
        help: &str,
    ) -> Diagnostic {
        let mut d = Diagnostic::new(rule.code, rule.name, rule.severity, message).with_help(help);
        d.resource = resource;
        d.location = source.cloned();
        d
    }

    /// Whether the snapshot holds pods at all (a policies-only repository has none, and then
    /// "selects nothing" says nothing).
    pub fn has_pods(&self) -> bool {
        self.cluster.pods.iter().any(|p| p.is_endpoint())
    }

    pub fn namespace_has_pods(&self, namespace: &str) -> bool {
        self.endpoints_by_namespace
            .get(namespace)
            .is_some_and(|pods| !pods.is_empty())
    }
}

/// The hasher of the context's maps, asked once per policy by rules that walk 300,000 of
/// them; foldhash is seeded per process, so colliding names cannot be prepared ahead.
type FastHash = foldhash::fast::RandomState;

/// One rule: its metadata and its check.
pub struct Rule {
    pub info: RuleInfo,
    pub check: fn(&LintContext<'_>) -> Vec<Diagnostic>,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.info.code)
    }
}

fn matches_rule(key: &str, info: &RuleInfo) -> bool {
    key.eq_ignore_ascii_case(info.code) || key == info.name
}

/// Runs every enabled rule, applies severities, suppressions (annotation `bulkhead.io/ignore`
/// on the resource) and path ignores. Findings are sorted like all diagnostics.
pub fn lint(cluster: &Cluster, config: &Config) -> Vec<Diagnostic> {
    use rayon::prelude::*;
    let context = LintContext::new(cluster, config);
    // The rules are independent readers of one context: they run side by side, and their
    // findings are taken in the rules' order (then sorted), so the output never depends on it.
    let enabled: Vec<_> = crate::rules::ALL
        .iter()
        .filter(|rule| {
            !config
                .rules
                .disable
                .iter()
                .any(|k| matches_rule(k, &rule.info))
        })
        .collect();
    let findings: Vec<Vec<Diagnostic>> = enabled
        .par_iter()
        .map(|rule| (rule.check)(&context))
        .collect();
    let mut out = Vec::new();
    for (rule, found) in enabled.into_iter().zip(findings) {
        let severity = config
            .rules
            .severity
            .iter()
            .find(|(k, _)| matches_rule(k, &rule.info))
            .and_then(|(_, v)| match v.as_str() {
                "error" => Some(Severity::Error),
                "warning" => Some(Severity::Warning),
                "info" => Some(Severity::Info),
                _ => None,
            });
        for mut d in found {
            if let Some(s) = severity {
                d.severity = s;
            }
            let suppressed = d
                .resource
                .as_ref()
                .and_then(|r| cluster.suppressions.get(r))
                .is_some_and(|codes| {
                    codes
                        .iter()
                        .any(|c| c.eq_ignore_ascii_case("all") || matches_rule(c, &rule.info))
                });
            let ignored_path = d.location.as_ref().is_some_and(|l| {
                config.ignore.iter().any(|i| {
                    config.anchors.covers(&i.path, &l.file)
                        && (i.codes.is_empty()
                            || i.codes.iter().any(|c| matches_rule(c, &rule.info)))
                })
            });
            if !suppressed && !ignored_path {
                out.push(d);
            }
        }
    }
    out.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    out
}

/// `Kind ns/name` (or `Kind name`), the resource naming shared with the loader.
/// One rule of an ordered policy (Calico, ANP, BANP, CNP), with what findings name it by.
#[derive(Debug)]
pub struct PolicyRuleRef<'c> {
    pub policy: &'c bulkhead_model::Policy,
    pub direction: bulkhead_model::Direction,
    pub index: usize,
    pub rule: &'c bulkhead_model::PolicyRule,
}

impl PolicyRuleRef<'_> {
    /// `CalicoNetworkPolicy shop/web`, as [`resource`] writes it. Formatted for a finding
    /// only: a rule walk over 300,000 policies that finds nothing formats nothing.
    pub fn resource(&self) -> String {
        resource(
            self.policy.kind.as_str(),
            self.policy.namespace.as_deref(),
            &self.policy.name,
        )
    }

    /// Where a finding about the rule points: the rule, else its policy.
    pub fn source(&self) -> Option<&SourceLocation> {
        self.rule.location.as_ref().or(self.policy.source.as_ref())
    }
}

/// Every rule of every policy of every API (staged ones included), ingress before egress, in
/// policy order.
pub fn policy_rules(cluster: &Cluster) -> impl Iterator<Item = PolicyRuleRef<'_>> {
    rules_of(&cluster.policies)
}

/// How many policies a rule that walks all of them takes per parallel part: about four parts
/// per thread (uneven parts still keep every core busy), none under 256 policies.
pub fn policy_part_len(cluster: &Cluster) -> usize {
    (cluster.policies.len() / (4 * rayon::current_num_threads())).max(256)
}

/// [`policy_rules`] of some of the policies: a rule that walks 300,000 policies walks them a
/// part at a time ([`policy_part_len`]), in parallel.
pub fn rules_of(policies: &[bulkhead_model::Policy]) -> impl Iterator<Item = PolicyRuleRef<'_>> {
    use bulkhead_model::Direction;
    policies.iter().flat_map(|policy| {
        [Direction::Ingress, Direction::Egress]
            .into_iter()
            .flat_map(move |direction| {
                policy
                    .rules(direction)
                    .iter()
                    .enumerate()
                    .map(move |(index, rule)| PolicyRuleRef {
                        policy,
                        direction,
                        index,
                        rule,
                    })
            })
    })
}

pub fn resource(kind: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}
