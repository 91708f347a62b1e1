//! From manifest text to a [`Snapshot`]: documents, `List`s, kinds, duplicates, and the lowering
//! of each kind into the model. A bad document never hides the others.

use crate::codes::{self, Code};
use crate::document::{FieldPath, ObjectContext, at_span};
use crate::input::Input;
use crate::network_policy;
use crate::typed;
use crate::workload::WorkloadIndex;
use crate::yaml_tree::{self, Node, SurpriseKind, Value};
use crate::{calico, cluster_network_policy};
use bulkhead_model::cluster::METADATA_NAME_LABEL;
use bulkhead_model::{
    Cluster, Diagnostic, Labels, Namespace, Node as ClusterNode, Policy, ServiceAccount,
    SourceLocation,
};
use k8s_openapi::api::{
    apps::v1 as apps, batch::v1 as batch, core::v1 as core, networking::v1 as networking,
};
use std::collections::HashMap;

#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Namespace for namespaced objects without `metadata.namespace` (`kubectl apply -n`).
    pub default_namespace: String,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            default_namespace: "default".to_string(),
        }
    }
}

/// The result of loading: the cluster model plus every problem found, sorted by location.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub cluster: Cluster,
    pub diagnostics: Vec<Diagnostic>,
    /// Number of objects read, per kind (including skipped kinds), for summaries.
    pub object_counts: std::collections::BTreeMap<String, usize>,
}

impl Snapshot {
    pub fn error_count(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == bulkhead_model::Severity::Error)
            .count()
    }
}

pub fn load(inputs: &[Input], options: &LoadOptions) -> Snapshot {
    let mut loader = Loader {
        options,
        snapshot: Snapshot::default(),
        seen: HashMap::new(),
        files: Vec::new(),
        workloads: WorkloadIndex::default(),
        list_part: 0,
    };
    for input in inputs {
        loader.load_input(input);
    }
    let Loader {
        mut snapshot,
        workloads,
        ..
    } = loader;
    workloads.into_pods(&mut snapshot.cluster);
    snapshot.cluster.finish();
    if snapshot.object_counts.is_empty()
        && !snapshot
            .diagnostics
            .iter()
            .any(|d| d.severity == bulkhead_model::Severity::Error)
    {
        snapshot.diagnostics.push(empty_input(inputs));
    }
    snapshot
        .diagnostics
        .sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    snapshot
}

struct Loader<'o> {
    options: &'o LoadOptions,
    snapshot: Snapshot,
    /// `group\0kind\0namespace\0name` -> where it was first defined. One string per object
    /// and the file by number: at 100k pods four strings and a file name each were 18 MB.
    seen: HashMap<Box<str>, FirstDefinition>,
    /// The files of [`FirstDefinition::file`], in the order they were loaded.
    files: Vec<String>,
    workloads: WorkloadIndex,
    /// The part of a long list the document being loaded is (`Document::list_part`): the
    /// list itself is counted once.
    list_part: usize,
}

/// Where an object was first defined; `file` indexes [`Loader::files`].
struct FirstDefinition {
    file: usize,
    line: usize,
    column: usize,
}

impl Loader<'_> {
    fn load_input(&mut self, input: &Input) {
        yaml_tree::for_each_document(&input.text, |document| self.load_document(input, document));
    }

    fn load_document(
        &mut self,
        input: &Input,
        document: Result<yaml_tree::Document, yaml_tree::SyntaxError>,
    ) {
        let document = match document {
            Ok(d) => d,
            Err(e) => {
                self.snapshot.diagnostics.push(at_span(
                    input,
                    codes::YAML_SYNTAX,
                    e.span,
                    format!("invalid YAML: {}", e.message),
                    None,
                ));
                return;
            }
        };
        for (key, span) in &document.duplicate_keys {
            self.snapshot.diagnostics.push(at_span(
                input,
                codes::DUPLICATE_KEY,
                *span,
                format!(
                    "key {key:?} appears twice in the same mapping; kubectl rejects the document"
                ),
                None,
            ));
        }
        let Some(root) = &document.root else { return };
        self.list_part = document.list_part;
        let analysed_lines = self.load_object(input, root);
        for surprise in &document.surprises {
            if !analysed_lines
                .iter()
                .any(|(a, b)| (*a..=*b).contains(&surprise.span.line))
            {
                continue;
            }
            let (code, message, help) = match surprise.kind {
                SurpriseKind::Boolean if surprise.text.len() == 1 => (
                    codes::YAML11_BOOLEAN,
                    format!(
                        "{} is a boolean for kubectl (go-yaml v2, YAML 1.1) but a string for YAML 1.2 tools; Bulkhead reads the string",
                        surprise.text
                    ),
                    format!(
                        "quote it (\"{}\") so every tool reads the same",
                        surprise.text
                    ),
                ),
                SurpriseKind::Boolean => (
                    codes::YAML11_BOOLEAN,
                    format!(
                        "{} is read as a boolean by kubectl (YAML 1.1), as a string by YAML 1.2 tools",
                        surprise.text
                    ),
                    format!("quote it (\"{}\") if you mean the string", surprise.text),
                ),
                SurpriseKind::Octal => (
                    codes::YAML11_OCTAL,
                    format!(
                        "{} is octal for kubectl (YAML 1.1), decimal for YAML 1.2 tools",
                        surprise.text
                    ),
                    format!(
                        "write it without the leading zero ({})",
                        surprise.text.trim_start_matches('0')
                    ),
                ),
            };
            self.snapshot
                .diagnostics
                .push(at_span(input, code, surprise.span, message, None).with_help(help));
        }
    }

    /// Loads one object (or a list of them); returns the line ranges of analysed objects, so
    /// YAML 1.1 warnings are only given where Bulkhead reads the values.
    fn load_object(&mut self, input: &Input, node: &Node) -> Vec<(usize, usize)> {
        let ctx = ObjectContext {
            input,
            node,
            resource: None,
        };
        let Value::Mapping(_) = &node.value else {
            self.push(ctx.diagnostic_at(
                codes::NOT_AN_OBJECT,
                node.span,
                "a Kubernetes manifest must be a mapping with apiVersion and kind",
            ));
            return Vec::new();
        };
        let api_version = node.get("apiVersion").and_then(Node::as_str);
        let kind = node.get("kind").and_then(Node::as_str);
        let (Some(api_version), Some(kind)) = (api_version, kind) else {
            let missing = if api_version.is_none() {
                "apiVersion"
            } else {
                "kind"
            };
            self.push(ctx.diagnostic_at(
                codes::NOT_AN_OBJECT,
                node.span,
                format!("object has no {missing} (or it is not a string)"),
            ));
            return Vec::new();
        };
        let group = api_version
            .rsplit_once('/')
            .map_or("", |(g, _)| g)
            .to_string();
        let is_list = kind == "List" || (kind.ends_with("List") && node.get("items").is_some());
        let continued = std::mem::take(&mut self.list_part) > 0;
        if !(continued && is_list) {
            *self
                .snapshot
                .object_counts
                .entry(kind.to_string())
                .or_default() += 1;
        }
        if is_list {
            return self.load_list(input, node);
        }
        let policies_before = self.snapshot.cluster.policies.len();
        let lines = self.load_single(input, node, &ctx, api_version, kind, &group);
        self.apply_mode(input, node, policies_before);
        lines
    }

    /// Loads one object (not a list).
    fn load_single(
        &mut self,
        input: &Input,
        node: &Node,
        ctx: &ObjectContext<'_>,
        api_version: &str,
        kind: &str,
        group: &str,
    ) -> Vec<(usize, usize)> {
        let group = group.to_string();
        let bytes = byte_extent(node);
        if bytes > MAX_OBJECT_BYTES {
            self.push(ctx.diagnostic_at(
                codes::INPUT_LIMIT,
                node.span,
                format!(
                    "this {kind} is {:.1} MiB; the API server accepts at most 3 MiB per object, so it is not read",
                    bytes as f64 / (1024.0 * 1024.0)
                ),
            ));
            return Vec::new();
        }
        if let Some(kind_family) = tiered_kind(&group, kind) {
            return self.load_tiered(input, node, api_version, kind, &group, kind_family);
        }
        let expected = match kind {
            "Namespace" | "Pod" | "Node" | "Service" | "ServiceAccount" => Some("v1"),
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => Some("apps/v1"),
            "Job" | "CronJob" => Some("batch/v1"),
            "NetworkPolicy" if group == "networking.k8s.io" || group == "extensions" => {
                Some("networking.k8s.io/v1")
            }
            _ => None,
        };
        let Some(expected) = expected else {
            self.skip(ctx, api_version, kind, &group);
            return Vec::new();
        };
        if api_version != expected {
            self.push(ctx.diagnostic(
                codes::UNSUPPORTED_API_VERSION,
                &FieldPath::root().key("apiVersion"),
                false,
                format!("{kind} is served as {expected}, not {api_version}; the API server rejects this object"),
            ).with_help(format!("change apiVersion to {expected}")));
            return Vec::new();
        }
        let cluster_scoped = matches!(kind, "Namespace" | "Node");
        let Some((ctx, namespace, name, duplicate)) =
            self.identify(input, node, &group, kind, cluster_scoped)
        else {
            return Vec::new();
        };
        if duplicate {
            self.check_only(|loader| loader.lower(&ctx, kind, &namespace, &name));
        } else {
            self.lower(&ctx, kind, &namespace, &name);
        }
        vec![(node.span.line, last_line(node))]
    }

    /// `bulkhead.io/mode: audit` on a policy of any API: the policies the object lowered to
    /// are audited (not enforced; the kernel logs what they would decide). `enforce`, or no
    /// annotation, enforces; any other value is an error, as a typo must not silently enforce
    /// (or audit) a policy.
    fn apply_mode(&mut self, input: &Input, node: &Node, policies_before: usize) {
        let Some(value) = node
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(MODE_ANNOTATION))
        else {
            return;
        };
        let ctx = ObjectContext {
            input,
            node,
            resource: None,
        };
        let path = FieldPath::root()
            .key("metadata")
            .key("annotations")
            .key(MODE_ANNOTATION);
        let audit = match value.as_str().map(str::trim) {
            Some("audit") => true,
            Some("enforce") => false,
            other => {
                let got = other.map_or_else(|| "not a string".to_string(), |v| format!("{v:?}"));
                self.push(
                    ctx.diagnostic(
                        codes::INVALID_MODE,
                        &path,
                        false,
                        format!("{MODE_ANNOTATION} is {got}; it must be \"audit\" or \"enforce\""),
                    )
                    .with_help("audit: not enforced, its would-be verdicts are logged; enforce (or no annotation): enforced"),
                );
                return;
            }
        };
        let policies = &mut self.snapshot.cluster.policies[policies_before..];
        if !audit {
            return;
        }
        let pointless = if policies.is_empty() {
            Some(format!(
                "{MODE_ANNOTATION} only applies to policies; this object is not one"
            ))
        } else if policies.iter().any(|p| p.staged.is_some()) {
            Some(format!(
                "a staged policy is never enforced; {MODE_ANNOTATION} changes nothing"
            ))
        } else {
            None
        };
        if let Some(message) = pointless {
            let warning = Code {
                severity: bulkhead_model::Severity::Warning,
                ..codes::INVALID_MODE
            };
            let d = ctx.diagnostic(warning, &path, false, message);
            self.push(d);
            return;
        }
        for policy in policies {
            policy.staged = Some(bulkhead_model::StagedAction::Audit);
        }
        // Said, so a review sees which policies are on trial (and stay out of `map`).
        let d = ctx.diagnostic(
            codes::AUDITED_POLICY,
            &path,
            false,
            "audited (bulkhead.io/mode: audit): not enforced; the agent logs what it would deny or allow, `explain` shows it",
        )
        .with_help("remove the annotation (or set it to enforce) to enforce the policy");
        self.push(d);
    }

    fn load_list(&mut self, input: &Input, node: &Node) -> Vec<(usize, usize)> {
        let mut lines = Vec::new();
        match node.get("items").map(|i| &i.value) {
            Some(Value::Sequence(items)) => {
                for item in items {
                    lines.extend(self.load_object(input, item));
                }
            }
            Some(Value::Null) | None => {}
            Some(_) => {
                let ctx = ObjectContext {
                    input,
                    node,
                    resource: None,
                };
                self.push(ctx.diagnostic(
                    codes::WRONG_TYPE,
                    &FieldPath::root().key("items"),
                    false,
                    "items must be a list of objects",
                ));
            }
        }
        lines
    }

    /// Identity of an object: checks name, resolves the namespace, reports duplicates. Returns
    /// the context with its resource name, the namespace (empty for cluster-scoped), the name
    /// and whether an earlier definition wins (the object is then checked but not kept).
    fn identify<'i>(
        &mut self,
        input: &'i Input,
        node: &'i Node,
        group: &str,
        kind: &str,
        cluster_scoped: bool,
    ) -> Option<(ObjectContext<'i>, String, String, bool)> {
        let ctx = ObjectContext {
            input,
            node,
            resource: None,
        };
        let Some(name) = node
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Node::as_str)
            .map(str::to_string)
        else {
            self.push(ctx.diagnostic(
                codes::MISSING_NAME,
                &FieldPath::root().key("metadata"),
                true,
                format!("{kind} has no metadata.name"),
            ));
            return None;
        };
        let namespace = if cluster_scoped {
            String::new()
        } else {
            node.get("metadata")
                .and_then(|m| m.get("namespace"))
                .and_then(Node::as_str)
                .filter(|n| !n.is_empty())
                .map_or_else(|| self.options.default_namespace.clone(), str::to_string)
        };
        // Calico's namespaced NetworkPolicy shares its kind with Kubernetes'; findings and the
        // `bulkhead.io/ignore` suppressions tell them apart.
        let shown = match (group, kind) {
            ("projectcalico.org" | "crd.projectcalico.org", "NetworkPolicy") => {
                "CalicoNetworkPolicy"
            }
            _ => kind,
        };
        let resource = if cluster_scoped {
            format!("{shown} {name}")
        } else {
            format!("{shown} {namespace}/{name}")
        };
        record_suppressions(&mut self.snapshot.cluster, node, &resource);
        record_crown_jewel(&mut self.snapshot.cluster, node, kind, &namespace, &name);
        let ctx = ObjectContext {
            input,
            node,
            resource: Some(resource.clone()),
        };
        let key = [group, kind, &namespace, &name].join("\0").into_boxed_str();
        let duplicate = self.is_duplicate(&ctx, key, &resource);
        Some((ctx, namespace, name, duplicate))
    }

    fn load_tiered(
        &mut self,
        input: &Input,
        node: &Node,
        api_version: &str,
        kind: &str,
        group: &str,
        family: TieredFamily,
    ) -> Vec<(usize, usize)> {
        let version = api_version.rsplit_once('/').map_or(api_version, |(_, v)| v);
        let supported = match family {
            TieredFamily::Calico => {
                version == "v3" || (group == "crd.projectcalico.org" && version == "v1")
            }
            TieredFamily::Admin => version == "v1alpha1",
            TieredFamily::Cluster => version == "v1alpha2" || version == "v1beta1",
        };
        if !supported {
            let ctx = ObjectContext {
                input,
                node,
                resource: None,
            };
            self.push(ctx.diagnostic(
                codes::UNSUPPORTED_API_VERSION,
                &FieldPath::root().key("apiVersion"),
                false,
                format!("{api_version} {kind} is not a version Bulkhead reads"),
            ));
            return Vec::new();
        }
        let cluster_scoped = !matches!(
            kind,
            "NetworkPolicy"
                | "StagedNetworkPolicy"
                | "StagedKubernetesNetworkPolicy"
                | "NetworkSet"
        );
        let Some((ctx, namespace, name, duplicate)) =
            self.identify(input, node, group, kind, cluster_scoped)
        else {
            return Vec::new();
        };
        let ns = (!cluster_scoped).then_some(namespace.as_str());
        let mut diagnostics = Vec::new();
        // A losing duplicate is lowered into a scratch cluster: its mistakes are still reported.
        let mut scratch = Cluster::default();
        let cluster = if duplicate {
            &mut scratch
        } else {
            &mut self.snapshot.cluster
        };
        match (family, kind) {
            (TieredFamily::Calico, "Tier") => {
                if let Some(wire) = typed::deserialize::<calico::TierWire>(&ctx, &mut diagnostics) {
                    cluster
                        .tiers
                        .extend(calico::lower_tier(&ctx, &wire, &name, &mut diagnostics));
                }
            }
            (TieredFamily::Calico, "NetworkSet" | "GlobalNetworkSet") => {
                if let Some(wire) =
                    typed::deserialize::<calico::NetworkSetWire>(&ctx, &mut diagnostics)
                {
                    cluster.network_sets.extend(calico::lower_network_set(
                        &ctx,
                        &wire,
                        ns,
                        &name,
                        &mut diagnostics,
                    ));
                }
            }
            (TieredFamily::Calico, "StagedKubernetesNetworkPolicy") => {
                if let Some(wire) =
                    typed::deserialize::<calico::StagedKubernetesWire>(&ctx, &mut diagnostics)
                {
                    let action = match wire.spec.as_ref().and_then(|s| s.staged_action.as_deref()) {
                        Some("Delete") => bulkhead_model::StagedAction::Delete,
                        _ => bulkhead_model::StagedAction::Set,
                    };
                    let policy = networking::NetworkPolicy {
                        metadata: wire.metadata.clone(),
                        spec: wire.spec.as_ref().map(|s| s.spec.clone()),
                    };
                    if let Some(lowered) =
                        network_policy::lower(&ctx, &policy, &namespace, &name, &mut diagnostics)
                    {
                        cluster
                            .policies
                            .push(Policy::from_network_policy(lowered, Some(action)));
                    }
                }
            }
            (TieredFamily::Calico, _) => {
                if let Some(wire) = typed::deserialize::<calico::PolicyWire>(&ctx, &mut diagnostics)
                {
                    cluster.policies.extend(calico::lower_policy(
                        &ctx,
                        &wire,
                        kind,
                        ns,
                        &name,
                        &mut diagnostics,
                    ));
                }
            }
            (TieredFamily::Admin | TieredFamily::Cluster, _) => {
                if let Some(wire) = typed::deserialize::<cluster_network_policy::ClusterPolicyWire>(
                    &ctx,
                    &mut diagnostics,
                ) {
                    cluster.policies.extend(cluster_network_policy::lower(
                        &ctx,
                        &wire,
                        kind,
                        &name,
                        &mut diagnostics,
                    ));
                }
            }
        }
        self.snapshot.diagnostics.extend(diagnostics);
        vec![(node.span.line, last_line(node))]
    }

    fn skip(&mut self, ctx: &ObjectContext<'_>, api_version: &str, kind: &str, group: &str) {
        if let Some(known) = crate::kinds::close_known_kind(group, kind) {
            self.push(
                ctx.diagnostic(
                    codes::UNKNOWN_KIND,
                    &FieldPath::root().key("kind"),
                    false,
                    format!(
                        "{api_version} has no kind {kind:?}; the API server rejects this object"
                    ),
                )
                .with_help(format!("did you mean {known:?}?")),
            );
            return;
        }
        let policy_like = crate::kinds::is_unmodelled_policy(group, kind);
        let (code, message) = if policy_like {
            (
                Code {
                    severity: bulkhead_model::Severity::Warning,
                    ..codes::SKIPPED_KIND
                },
                format!(
                    "{api_version} {kind} is network policy Bulkhead does not evaluate or enforce; every verdict ignores it"
                ),
            )
        } else {
            (
                codes::SKIPPED_KIND,
                format!("{api_version} {kind} skipped: it does not affect network policy"),
            )
        };
        self.push(ctx.diagnostic_at(code, ctx.node.span, message));
    }

    fn lower(&mut self, ctx: &ObjectContext<'_>, kind: &str, namespace: &str, name: &str) {
        let mut diagnostics = Vec::new();
        match kind {
            "Namespace" => {
                if let Some(ns) = typed::deserialize::<core::Namespace>(ctx, &mut diagnostics) {
                    let mut labels: Labels = crate::labels_of(ns.metadata.labels.as_ref());
                    labels
                        .entry(METADATA_NAME_LABEL.to_string())
                        .or_insert_with(|| name.to_string());
                    self.snapshot.cluster.namespaces.push(Namespace {
                        name: name.to_string(),
                        labels,
                        defined: true,
                        source: Some(ctx.location(ctx.node.span)),
                    });
                }
            }
            "Node" => {
                if let Some(node) = typed::deserialize::<core::Node>(ctx, &mut diagnostics) {
                    let ips = node
                        .status
                        .iter()
                        .flat_map(|s| s.addresses.iter().flatten())
                        .filter_map(|a| a.address.parse().ok())
                        .collect();
                    self.snapshot.cluster.nodes.push(ClusterNode {
                        name: name.to_string(),
                        labels: crate::labels_of(node.metadata.labels.as_ref()),
                        ips,
                    });
                }
            }
            "ServiceAccount" => {
                if let Some(sa) = typed::deserialize::<core::ServiceAccount>(ctx, &mut diagnostics)
                {
                    self.snapshot.cluster.service_accounts.push(ServiceAccount {
                        namespace: namespace.to_string(),
                        name: name.to_string(),
                        labels: crate::labels_of(sa.metadata.labels.as_ref()),
                    });
                }
            }
            "Service" => {
                // Checked for structure only: the engine judges flows after service DNAT.
                let _ = typed::deserialize::<core::Service>(ctx, &mut diagnostics);
            }
            "Pod" => {
                if let Some(pod) = typed::deserialize::<core::Pod>(ctx, &mut diagnostics) {
                    self.workloads.add_live_pod(ctx, namespace, name, &pod);
                }
            }
            "Deployment" => self.template::<apps::Deployment>(
                ctx,
                namespace,
                name,
                "deployment",
                &mut diagnostics,
                |d| Some((&d.spec.template, d.spec.replicas)),
            ),
            "StatefulSet" => self.template::<apps::StatefulSet>(
                ctx,
                namespace,
                name,
                "statefulset",
                &mut diagnostics,
                |d| Some((&d.spec.template, d.spec.replicas)),
            ),
            // One pod per node; without the nodes, one stands for them.
            "DaemonSet" => self.template::<apps::DaemonSet>(
                ctx,
                namespace,
                name,
                "daemonset",
                &mut diagnostics,
                |d| Some((&d.spec.template, None)),
            ),
            "ReplicaSet" => {
                if let Some(rs) = typed::deserialize::<apps::ReplicaSet>(ctx, &mut diagnostics) {
                    self.workloads.add_replica_set(ctx, namespace, name, &rs);
                }
            }
            "Job" => {
                if let Some(job) = typed::deserialize::<batch::Job>(ctx, &mut diagnostics) {
                    self.workloads.add_job(ctx, namespace, name, &job);
                }
            }
            "CronJob" => self.template::<batch::CronJob>(
                ctx,
                namespace,
                name,
                "cronjob",
                &mut diagnostics,
                |c| {
                    c.spec
                        .job_template
                        .spec
                        .as_ref()
                        .map(|j| (&j.template, j.parallelism))
                },
            ),
            "NetworkPolicy" => {
                if let Some(policy) =
                    typed::deserialize::<networking::NetworkPolicy>(ctx, &mut diagnostics)
                {
                    if !crate::names::is_dns1123_label(namespace) {
                        diagnostics.push(ctx.diagnostic(
                            codes::INVALID_NAME,
                            &FieldPath::root().key("metadata").key("namespace"),
                            false,
                            format!("namespace {namespace:?} is not a valid DNS-1123 label"),
                        ));
                    } else if let Some(lowered) =
                        network_policy::lower(ctx, &policy, namespace, name, &mut diagnostics)
                    {
                        self.snapshot
                            .cluster
                            .policies
                            .push(Policy::from_network_policy(lowered, None));
                    }
                }
            }
            _ => {}
        }
        self.snapshot.diagnostics.extend(diagnostics);
    }

    fn template<T>(
        &mut self,
        ctx: &ObjectContext<'_>,
        namespace: &str,
        name: &str,
        workload_kind: &str,
        diagnostics: &mut Vec<Diagnostic>,
        template: impl Fn(&T) -> Option<(&core::PodTemplateSpec, Option<i32>)>,
    ) where
        T: serde::de::DeserializeOwned + serde::Serialize,
    {
        if let Some(object) = typed::deserialize::<T>(ctx, diagnostics)
            && let Some((t, replicas)) = template(&object)
        {
            self.workloads.add_template(
                ctx,
                namespace,
                name,
                workload_kind,
                t,
                crate::workload::replicas(replicas),
            );
        }
    }

    fn push(&mut self, d: Diagnostic) {
        self.snapshot.diagnostics.push(d);
    }

    /// Records the first definition of `key`; for a later one, reports it and returns true.
    fn is_duplicate(&mut self, ctx: &ObjectContext<'_>, key: Box<str>, resource: &str) -> bool {
        let Some(first) = self.seen.get(&key) else {
            if self.files.last() != Some(&ctx.input.name) {
                self.files.push(ctx.input.name.clone());
            }
            let here = ctx.location(ctx.node.span);
            self.seen.insert(
                key,
                FirstDefinition {
                    file: self.files.len() - 1,
                    line: here.line,
                    column: here.column,
                },
            );
            return false;
        };
        let first = SourceLocation {
            file: self.files[first.file].clone(),
            line: first.line,
            column: first.column,
        };
        // In one file a second definition is a mistake. Across files it is how alternatives
        // are often published (recipe A, recipe B); kubectl apply would apply both in turn.
        let (code, message) = if first.file == ctx.input.name {
            (
                codes::DUPLICATE_OBJECT,
                format!(
                    "{resource} is defined twice in this file (first at {first}); this definition is checked but not used"
                ),
            )
        } else {
            (
                Code {
                    severity: bulkhead_model::Severity::Warning,
                    ..codes::DUPLICATE_OBJECT
                },
                format!(
                    "{resource} is also defined at {first}; Bulkhead uses that first definition (kubectl apply would apply both in turn, the later replacing the earlier)"
                ),
            )
        };
        let d = ctx.diagnostic(
            code,
            &FieldPath::root().key("metadata").key("name"),
            false,
            message,
        );
        self.push(d);
        true
    }

    /// Runs `lower` for its diagnostics only: whatever it adds to the cluster is dropped.
    fn check_only(&mut self, lower: impl FnOnce(&mut Self)) {
        let cluster = std::mem::take(&mut self.snapshot.cluster);
        let workloads = std::mem::take(&mut self.workloads);
        lower(self);
        self.snapshot.cluster = cluster;
        self.workloads = workloads;
    }
}

/// Nothing to analyse is worth saying: an empty file, comments only, an empty pipe or a
/// directory without manifests would otherwise pass as "0 errors".
fn empty_input(inputs: &[Input]) -> Diagnostic {
    let what = match inputs {
        [] => "no manifest file was found (directories are searched for *.yaml, *.yml and *.json)"
            .to_string(),
        [one] => format!("{} holds no Kubernetes object", one.name),
        many => format!("the {} files read hold no Kubernetes object", many.len()),
    };
    let mut d = Diagnostic::new(
        codes::EMPTY_INPUT.code,
        codes::EMPTY_INPUT.name,
        codes::EMPTY_INPUT.severity,
        format!("{what}; there is nothing to check"),
    )
    .with_help("pass the files or directories with your manifests, or `-` with `kubectl get ns,pods,networkpolicies -A -o yaml` piped in; `bulkhead demo --write-to DIR` writes an example");
    if let Some(first) = inputs.first() {
        d.location = Some(SourceLocation {
            file: first.name.clone(),
            line: 1,
            column: 1,
        });
    }
    d
}

/// The API server's limit on one request body, which bounds every object it stores.
pub const MAX_OBJECT_BYTES: usize = 3 * 1024 * 1024;

/// Bytes of text from a node's start to the end of its last descendant.
fn byte_extent(node: &Node) -> usize {
    let mut end = node.span.end;
    let mut last = node;
    loop {
        end = end.max(last.span.end);
        let next = match &last.value {
            Value::Sequence(items) => items.last(),
            Value::Mapping(entries) => entries.last().map(|e| &e.value),
            _ => None,
        };
        match next {
            Some(n) => last = n,
            None => break,
        }
    }
    end.saturating_sub(node.span.start)
}

fn last_line(node: &Node) -> usize {
    match &node.value {
        Value::Sequence(items) => items.iter().map(last_line).max().unwrap_or(node.span.line),
        Value::Mapping(entries) => entries
            .iter()
            .map(|e| last_line(&e.value).max(e.key_span.line))
            .max()
            .unwrap_or(node.span.line),
        _ => node.span.line,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TieredFamily {
    Calico,
    Admin,
    Cluster,
}

/// The policy kinds of Calico and network-policy-api that Bulkhead evaluates.
fn tiered_kind(group: &str, kind: &str) -> Option<TieredFamily> {
    match (group, kind) {
        (
            "projectcalico.org" | "crd.projectcalico.org",
            "NetworkPolicy"
            | "GlobalNetworkPolicy"
            | "StagedNetworkPolicy"
            | "StagedGlobalNetworkPolicy"
            | "StagedKubernetesNetworkPolicy"
            | "NetworkSet"
            | "GlobalNetworkSet"
            | "Tier",
        ) => Some(TieredFamily::Calico),
        ("policy.networking.k8s.io", "AdminNetworkPolicy" | "BaselineAdminNetworkPolicy") => {
            Some(TieredFamily::Admin)
        }
        ("policy.networking.k8s.io", "ClusterNetworkPolicy") => Some(TieredFamily::Cluster),
        _ => None,
    }
}

/// The annotation that suppresses lint findings on one resource: `bulkhead.io/ignore: "BH101,BH104"`
/// (or `all`).
pub const IGNORE_ANNOTATION: &str = "bulkhead.io/ignore";

/// The annotation that marks a workload or pod as a crown jewel for `blast-radius`.
pub const CROWN_JEWEL_ANNOTATION: &str = "bulkhead.io/crown-jewel";

/// Per-policy audit: `audit` or `enforce` (the default).
pub const MODE_ANNOTATION: &str = "bulkhead.io/mode";

/// On the object, or on a workload's pod template (`spec.template`, a CronJob's job template).
fn record_crown_jewel(
    cluster: &mut bulkhead_model::Cluster,
    node: &Node,
    kind: &str,
    namespace: &str,
    name: &str,
) {
    let marked = |meta: Option<&Node>| {
        meta.and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(CROWN_JEWEL_ANNOTATION))
            .is_some_and(|v| match &v.value {
                Value::Bool(b) => *b,
                Value::String(s) => !matches!(s.trim(), "" | "false" | "False" | "no"),
                _ => true,
            })
    };
    let spec = node.get("spec");
    let template = spec.and_then(|s| s.get("template")).or_else(|| {
        spec.and_then(|s| s.get("jobTemplate"))
            .and_then(|j| j.get("spec"))
            .and_then(|s| s.get("template"))
    });
    if marked(node.get("metadata")) || marked(template.and_then(|t| t.get("metadata"))) {
        cluster
            .crown_jewels
            .insert(format!("{namespace}/{}/{name}", kind.to_ascii_lowercase()));
    }
}

fn record_suppressions(cluster: &mut bulkhead_model::Cluster, node: &Node, resource: &str) {
    let codes = node
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(IGNORE_ANNOTATION))
        .and_then(Node::as_str);
    if let Some(codes) = codes {
        let list: Vec<String> = codes
            .split([',', ' '])
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect();
        cluster.suppressions.insert(resource.to_string(), list);
    }
}
