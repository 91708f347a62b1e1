//! From manifest text to a [`Snapshot`]: documents, `List`s, kinds, duplicates, and the lowering
//! of each kind into the model. A bad document never hides the others.

use crate::codes::{self, Code};
use crate::document::{FieldPath, ObjectContext, at_span};
use crate::input::Input;
use crate::network_policy;
use crate::typed;
use crate::workload::{LivePod, Owner, WorkloadIndex};
use crate::yaml_tree::{self, Node, Span, SurpriseKind, Value};
use crate::{calico, cluster_network_policy};
use bulkhead_model::cluster::METADATA_NAME_LABEL;
use bulkhead_model::policy::{NetworkSet, Tier};
use bulkhead_model::{
    Cluster, Diagnostic, Labels, Namespace, Node as ClusterNode, Pod as ClusterPod, Policy,
    ServiceAccount, SourceLocation, WorkloadRef,
};
use k8s_openapi::api::{
    apps::v1 as apps, batch::v1 as batch, core::v1 as core, networking::v1 as networking,
};
use rayon::prelude::*;
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

/// About as many policies as `inputs` can hold, if not a few more: the kind of every policy
/// API (NetworkPolicy, Calico's NetworkPolicy, GlobalNetworkPolicy and StagedNetworkPolicy,
/// AdminNetworkPolicy, BaselineAdminNetworkPolicy, ClusterNetworkPolicy) contains
/// `NetworkPolicy`, and a comment or a name may too. A vectorised search in parts of 4 MiB, in
/// parallel: one core searches 100 MB in about 25 ms, which is spent before any parsing.
fn policy_count_bound(inputs: &[Input]) -> usize {
    const NEEDLE: &[u8] = b"NetworkPolicy";
    const PART: usize = 4 << 20;
    let finder = memchr::memmem::Finder::new(NEEDLE);
    inputs
        .par_iter()
        .flat_map(|input| {
            let text = input.text.as_bytes();
            (0..text.len().div_ceil(PART))
                .into_par_iter()
                .map(move |part| (text, part * PART))
        })
        .map(|(text, from)| {
            // Occurrences that start in this part; the search runs on into the next part by
            // less than a needle, so none is counted twice or missed.
            let to = (from + PART + NEEDLE.len() - 1).min(text.len());
            finder.find_iter(&text[from..to]).count()
        })
        .sum()
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
    let mut merger = Merger::default();
    // Room for every policy before the first is merged: growing a vector of 300,000 policies
    // by doubling copied and faulted in more than it kept, and its last copy held both
    // (BENCHMARKS.md, seventeenth session). A capacity only, so a wrong guess costs nothing
    // but address space.
    let _ = merger
        .snapshot
        .cluster
        .policies
        .try_reserve(policy_count_bound(inputs));
    for input in inputs {
        let reader = ObjectReader { input, options };
        yaml_tree::for_each_document(
            &input.text,
            |document| reader.read_document(document),
            |outcome| merger.merge(input, outcome),
        );
    }
    let Merger {
        mut snapshot,
        workloads,
        seen,
        ..
    } = merger;
    // The first definitions are freed beside the cluster's sorts: one string per object.
    rayon::join(
        move || drop(seen),
        || {
            workloads.into_pods(&mut snapshot.cluster);
            snapshot.cluster.finish();
        },
    );
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

/// What one document adds, worked out on its own: documents (and the items of a long list)
/// are read in parallel, each into its own outcome, and [`Merger`] adds the outcomes in input
/// order. Only what depends on the objects before (duplicates) is left to the merge.
#[derive(Default)]
struct DocumentOutcome {
    /// Kinds of the objects read (a list and its items), for the per-kind counts.
    kinds: Vec<String>,
    /// Problems of the document itself (syntax, duplicate keys, YAML 1.1 surprises); in any
    /// order, as every diagnostic is sorted by place, code and message at the end.
    diagnostics: Vec<Diagnostic>,
    objects: Vec<ObjectOutcome>,
}

/// One object read on its own: its problems, its identity and what it adds to the cluster.
#[derive(Default)]
struct ObjectOutcome {
    diagnostics: Vec<Diagnostic>,
    identity: Option<Identity>,
    contribution: Contribution,
}

/// What decides whether an object is a duplicate, and what its definition records.
struct Identity {
    /// `group\0kind\0namespace\0name`.
    key: Box<str>,
    /// `kind ns/name`, as findings name it.
    resource: String,
    /// The object's own span: where a first definition is said to be.
    object: Span,
    /// `metadata.name`'s span: where a later definition is reported.
    name: Span,
    /// `bulkhead.io/ignore` codes; recorded for duplicates too (the last definition's win).
    suppression: Option<Vec<String>>,
    /// `ns/kind/name` when the object (or its template) is marked a crown jewel.
    crown_jewel: Option<String>,
}

/// What an object adds to the cluster; dropped when an earlier definition of it wins.
#[derive(Default)]
enum Contribution {
    #[default]
    Nothing,
    Namespace(Namespace),
    Node(ClusterNode),
    ServiceAccount(ServiceAccount),
    Policy(Box<Policy>),
    Tier(Tier),
    NetworkSet(NetworkSet),
    LivePod(Box<LivePod>),
    Template(Box<ClusterPod>),
    Owner(Box<Owner>),
}

/// The state that spans documents: the snapshot built so far, first definitions and
/// workloads. Kept apart from [`ObjectReader`] so that reading stays parallel.
#[derive(Default)]
struct Merger {
    snapshot: Snapshot,
    /// `group\0kind\0namespace\0name` -> where it was first defined. One string per object
    /// and the file by number: at 100k pods four strings and a file name each were 18 MB.
    /// foldhash, not SipHash: hashing 400k names was a twentieth of the load; its
    /// `RandomState` is seeded per process, so colliding names cannot be prepared ahead.
    seen: HashMap<Box<str>, FirstDefinition, foldhash::fast::RandomState>,
    /// The files of [`FirstDefinition::file`], in the order they were loaded.
    files: Vec<std::sync::Arc<str>>,
    workloads: WorkloadIndex,
}

/// Where an object was first defined; `file` indexes [`Merger::files`].
struct FirstDefinition {
    file: usize,
    line: usize,
    column: usize,
}

impl Merger {
    fn merge(&mut self, input: &Input, outcome: DocumentOutcome) {
        let DocumentOutcome {
            kinds,
            diagnostics,
            objects,
        } = outcome;
        for kind in kinds {
            *self.snapshot.object_counts.entry(kind).or_default() += 1;
        }
        self.snapshot.diagnostics.extend(diagnostics);
        for object in objects {
            self.add(input, object);
        }
    }

    fn add(&mut self, input: &Input, object: ObjectOutcome) {
        let ObjectOutcome {
            diagnostics,
            identity,
            contribution,
        } = object;
        // Diagnostics are sorted by place, code and message at the end: their order here is free.
        self.snapshot.diagnostics.extend(diagnostics);
        let Some(identity) = identity else {
            return;
        };
        let cluster = &mut self.snapshot.cluster;
        if let Some(codes) = identity.suppression.clone() {
            cluster
                .suppressions
                .insert(identity.resource.clone(), codes);
        }
        if let Some(jewel) = identity.crown_jewel.clone() {
            cluster.crown_jewels.insert(jewel);
        }
        if self.is_duplicate(input, identity) {
            return;
        }
        let cluster = &mut self.snapshot.cluster;
        match contribution {
            Contribution::Nothing => {}
            Contribution::Namespace(ns) => cluster.namespaces.push(ns),
            Contribution::Node(node) => cluster.nodes.push(node),
            Contribution::ServiceAccount(sa) => cluster.service_accounts.push(sa),
            Contribution::Policy(policy) => cluster.policies.push(*policy),
            Contribution::Tier(tier) => cluster.tiers.push(tier),
            Contribution::NetworkSet(set) => cluster.network_sets.push(set),
            Contribution::LivePod(pod) => self.workloads.add_live_pod(*pod),
            Contribution::Template(pod) => self.workloads.add_template(*pod),
            Contribution::Owner(owner) => self.workloads.add_owner(*owner),
        }
    }

    /// Records the first definition of an object; for a later one, reports it and returns true.
    fn is_duplicate(&mut self, input: &Input, identity: Identity) -> bool {
        // One hash per object: the merge is the loader's serial part.
        let first = match self.seen.entry(identity.key) {
            std::collections::hash_map::Entry::Vacant(vacant) => {
                if self.files.last().map(|f| &**f) != Some(input.name.as_str()) {
                    self.files.push(input.shared_name());
                }
                vacant.insert(FirstDefinition {
                    file: self.files.len() - 1,
                    line: identity.object.line,
                    column: identity.object.column,
                });
                return false;
            }
            std::collections::hash_map::Entry::Occupied(occupied) => occupied.into_mut(),
        };
        let first = SourceLocation {
            file: self.files[first.file].clone(),
            line: first.line,
            column: first.column,
        };
        let resource = &identity.resource;
        // In one file a second definition is a mistake. Across files it is how alternatives
        // are often published (recipe A, recipe B); kubectl apply would apply both in turn.
        let (code, message) = if *first.file == *input.name {
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
        self.snapshot.diagnostics.push(at_span(
            input,
            code,
            identity.name,
            message,
            Some(identity.resource),
        ));
        true
    }
}

/// Reads the objects of one input into outcomes; shared by the threads that read its
/// documents, so it holds nothing that changes.
struct ObjectReader<'a> {
    input: &'a Input,
    options: &'a LoadOptions,
}

impl ObjectReader<'_> {
    fn read_document(
        &self,
        document: Result<yaml_tree::Document, yaml_tree::SyntaxError>,
    ) -> DocumentOutcome {
        let input = self.input;
        let mut outcome = DocumentOutcome::default();
        let document = match document {
            Ok(d) => d,
            Err(e) => {
                outcome.diagnostics.push(at_span(
                    input,
                    codes::YAML_SYNTAX,
                    e.span,
                    format!("invalid YAML: {}", e.message),
                    None,
                ));
                return outcome;
            }
        };
        for (key, span) in &document.duplicate_keys {
            outcome.diagnostics.push(at_span(
                input,
                codes::DUPLICATE_KEY,
                *span,
                format!(
                    "key {key:?} appears twice in the same mapping; kubectl rejects the document"
                ),
                None,
            ));
        }
        let Some(root) = &document.root else {
            return outcome;
        };
        let mut read = Read::default();
        self.read_object(root, &mut read);
        outcome.kinds = read.kinds;
        outcome.objects = read.objects;
        // Line ranges only when there is a surprise to place: finding an object's last line
        // walks its whole tree.
        let lines: Vec<(usize, usize)> = if document.surprises.is_empty() {
            Vec::new()
        } else {
            read.analysed
                .iter()
                .map(|node| (node.span.line, last_line(node)))
                .collect()
        };
        for surprise in &document.surprises {
            if !lines
                .iter()
                .any(|(a, b)| (*a..=*b).contains(&surprise.span.line))
            {
                continue;
            }
            outcome
                .diagnostics
                .push(surprise_diagnostic(input, surprise));
        }
        outcome
    }

    /// Reads one object (or a list of them) into `read`, with the line range of each object
    /// analysed, so YAML 1.1 warnings are only given where Bulkhead reads the values.
    fn read_object<'n>(&self, node: &'n Node, read: &mut Read<'n>) {
        let ctx = ObjectContext {
            input: self.input,
            node,
            resource: None,
        };
        let Value::Mapping(_) = &node.value else {
            read.alone(ctx.diagnostic_at(
                codes::NOT_AN_OBJECT,
                node.span,
                "a Kubernetes manifest must be a mapping with apiVersion and kind",
            ));
            return;
        };
        let api_version = node.get("apiVersion").and_then(Node::as_str);
        let kind = node.get("kind").and_then(Node::as_str);
        let (Some(api_version), Some(kind)) = (api_version, kind) else {
            let missing = if api_version.is_none() {
                "apiVersion"
            } else {
                "kind"
            };
            read.alone(ctx.diagnostic_at(
                codes::NOT_AN_OBJECT,
                node.span,
                format!("object has no {missing} (or it is not a string)"),
            ));
            return;
        };
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let is_list = kind == "List" || (kind.ends_with("List") && node.get("items").is_some());
        read.kinds.push(kind.to_string());
        if is_list {
            self.read_list(node, read);
            return;
        }
        let mut object = ObjectOutcome::default();
        if self.read_single(node, &ctx, api_version, kind, group, &mut object) {
            read.analysed.push(node);
        }
        self.apply_mode(node, &mut object);
        read.objects.push(object);
    }

    /// Reads one object (not a list) into `object`; false when its content was not analysed.
    fn read_single(
        &self,
        node: &Node,
        ctx: &ObjectContext<'_>,
        api_version: &str,
        kind: &str,
        group: &str,
        object: &mut ObjectOutcome,
    ) -> bool {
        let bytes = byte_extent(node);
        if bytes > MAX_OBJECT_BYTES {
            object.diagnostics.push(ctx.diagnostic_at(
                codes::INPUT_LIMIT,
                node.span,
                format!(
                    "this {kind} is {:.1} MiB; the API server accepts at most 3 MiB per object, so it is not read",
                    bytes as f64 / (1024.0 * 1024.0)
                ),
            ));
            return false;
        }
        if let Some(kind_family) = tiered_kind(group, kind) {
            return self.read_tiered(node, api_version, kind, group, kind_family, object);
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
            object
                .diagnostics
                .push(skipped(ctx, api_version, kind, group));
            return false;
        };
        if api_version != expected {
            object.diagnostics.push(ctx.diagnostic(
                codes::UNSUPPORTED_API_VERSION,
                &FieldPath::root().key("apiVersion"),
                false,
                format!("{kind} is served as {expected}, not {api_version}; the API server rejects this object"),
            ).with_help(format!("change apiVersion to {expected}")));
            return false;
        }
        let cluster_scoped = matches!(kind, "Namespace" | "Node");
        let Some((ctx, namespace, name)) = self.identify(node, group, kind, cluster_scoped, object)
        else {
            return false;
        };
        object.contribution = lower(&ctx, kind, &namespace, &name, &mut object.diagnostics);
        true
    }

    /// `bulkhead.io/mode: audit` on a policy of any API: the policy the object lowered to is
    /// audited (not enforced; the kernel logs what it would decide). `enforce`, or no
    /// annotation, enforces; any other value is an error, as a typo must not silently enforce
    /// (or audit) a policy.
    fn apply_mode(&self, node: &Node, object: &mut ObjectOutcome) {
        let Some(value) = node
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(MODE_ANNOTATION))
        else {
            return;
        };
        let ctx = ObjectContext {
            input: self.input,
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
                object.diagnostics.push(
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
        if !audit {
            return;
        }
        let policy = match &mut object.contribution {
            Contribution::Policy(policy) => Some(policy),
            _ => None,
        };
        let pointless = match &policy {
            None => Some(format!(
                "{MODE_ANNOTATION} only applies to policies; this object is not one"
            )),
            Some(p) if p.staged.is_some() => Some(format!(
                "a staged policy is never enforced; {MODE_ANNOTATION} changes nothing"
            )),
            Some(_) => None,
        };
        if let Some(message) = pointless {
            let warning = Code {
                severity: bulkhead_model::Severity::Warning,
                ..codes::INVALID_MODE
            };
            object
                .diagnostics
                .push(ctx.diagnostic(warning, &path, false, message));
            return;
        }
        if let Some(policy) = policy {
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
        object.diagnostics.push(d);
    }

    /// The items of a list, read in parallel (a `kubectl get -o yaml` list may hold 100k).
    fn read_list<'n>(&self, node: &'n Node, read: &mut Read<'n>) {
        match node.get("items").map(|i| &i.value) {
            Some(Value::Sequence(items)) => {
                let parts: Vec<Read> = items
                    .par_iter()
                    .map(|item| {
                        let mut part = Read::default();
                        self.read_object(item, &mut part);
                        part
                    })
                    .collect();
                for part in parts {
                    read.append(part);
                }
            }
            Some(Value::Null) | None => {}
            Some(_) => {
                let ctx = ObjectContext {
                    input: self.input,
                    node,
                    resource: None,
                };
                read.alone(ctx.diagnostic(
                    codes::WRONG_TYPE,
                    &FieldPath::root().key("items"),
                    false,
                    "items must be a list of objects",
                ));
            }
        }
    }

    /// Identity of an object: checks name and resolves the namespace. Returns the context with
    /// its resource name, the namespace (empty for cluster-scoped) and the name; whether an
    /// earlier definition wins is decided by the merge.
    fn identify<'i>(
        &self,
        node: &'i Node,
        group: &str,
        kind: &str,
        cluster_scoped: bool,
        object: &mut ObjectOutcome,
    ) -> Option<(ObjectContext<'i>, String, String)>
    where
        Self: 'i,
    {
        let input: &'i Input = self.input;
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
            object.diagnostics.push(ctx.diagnostic(
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
        object.identity = Some(Identity {
            key: [group, kind, &namespace, &name].join("\0").into_boxed_str(),
            resource: resource.clone(),
            object: node.span,
            name: node.span_at(
                &[
                    yaml_tree::Segment::Key("metadata".into()),
                    yaml_tree::Segment::Key("name".into()),
                ],
                false,
            ),
            suppression: suppression(node),
            crown_jewel: crown_jewel(node, kind, &namespace, &name),
        });
        let ctx = ObjectContext {
            input,
            node,
            resource: Some(resource),
        };
        Some((ctx, namespace, name))
    }

    fn read_tiered(
        &self,
        node: &Node,
        api_version: &str,
        kind: &str,
        group: &str,
        family: TieredFamily,
        object: &mut ObjectOutcome,
    ) -> bool {
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
                input: self.input,
                node,
                resource: None,
            };
            object.diagnostics.push(ctx.diagnostic(
                codes::UNSUPPORTED_API_VERSION,
                &FieldPath::root().key("apiVersion"),
                false,
                format!("{api_version} {kind} is not a version Bulkhead reads"),
            ));
            return false;
        }
        let cluster_scoped = !matches!(
            kind,
            "NetworkPolicy"
                | "StagedNetworkPolicy"
                | "StagedKubernetesNetworkPolicy"
                | "NetworkSet"
        );
        let Some((ctx, namespace, name)) = self.identify(node, group, kind, cluster_scoped, object)
        else {
            return false;
        };
        let ns = (!cluster_scoped).then_some(namespace.as_str());
        let diagnostics = &mut object.diagnostics;
        object.contribution = match (family, kind) {
            (TieredFamily::Calico, "Tier") => {
                typed::deserialize::<calico::TierWire>(&ctx, diagnostics)
                    .and_then(|wire| calico::lower_tier(&ctx, &wire, &name, diagnostics))
                    .map_or(Contribution::Nothing, Contribution::Tier)
            }
            (TieredFamily::Calico, "NetworkSet" | "GlobalNetworkSet") => {
                typed::deserialize::<calico::NetworkSetWire>(&ctx, diagnostics)
                    .and_then(|wire| calico::lower_network_set(&ctx, &wire, ns, &name, diagnostics))
                    .map_or(Contribution::Nothing, Contribution::NetworkSet)
            }
            (TieredFamily::Calico, "StagedKubernetesNetworkPolicy") => {
                typed::deserialize_via_json::<calico::StagedKubernetesWire>(&ctx, diagnostics)
                    .and_then(|wire| {
                        let action =
                            match wire.spec.as_ref().and_then(|s| s.staged_action.as_deref()) {
                                Some("Delete") => bulkhead_model::StagedAction::Delete,
                                _ => bulkhead_model::StagedAction::Set,
                            };
                        let policy = networking::NetworkPolicy {
                            metadata: wire.metadata.clone(),
                            spec: wire.spec.as_ref().map(|s| s.spec.clone()),
                        };
                        network_policy::lower(&ctx, &policy, &namespace, &name, diagnostics)
                            .map(|lowered| Policy::from_network_policy(lowered, Some(action)))
                    })
                    .map_or(Contribution::Nothing, |p| Contribution::Policy(Box::new(p)))
            }
            (TieredFamily::Calico, _) => {
                typed::deserialize::<calico::PolicyWire>(&ctx, diagnostics)
                    .and_then(|wire| {
                        calico::lower_policy(&ctx, &wire, kind, ns, &name, diagnostics)
                    })
                    .map_or(Contribution::Nothing, |p| Contribution::Policy(Box::new(p)))
            }
            (TieredFamily::Admin | TieredFamily::Cluster, _) => typed::deserialize::<
                cluster_network_policy::ClusterPolicyWire,
            >(&ctx, diagnostics)
            .and_then(|wire| cluster_network_policy::lower(&ctx, &wire, kind, &name, diagnostics))
            .map_or(Contribution::Nothing, |p| Contribution::Policy(Box::new(p))),
        };
        true
    }
}

/// The outcomes of the objects of one node (a document's root, a list's items), in order.
#[derive(Default)]
struct Read<'n> {
    kinds: Vec<String>,
    objects: Vec<ObjectOutcome>,
    /// The objects whose content was analysed.
    analysed: Vec<&'n Node>,
}

impl<'n> Read<'n> {
    /// A problem that belongs to no identified object.
    fn alone(&mut self, diagnostic: Diagnostic) {
        self.objects.push(ObjectOutcome {
            diagnostics: vec![diagnostic],
            ..ObjectOutcome::default()
        });
    }

    fn append(&mut self, other: Read<'n>) {
        self.kinds.extend(other.kinds);
        self.objects.extend(other.objects);
        self.analysed.extend(other.analysed);
    }
}

fn surprise_diagnostic(input: &Input, surprise: &yaml_tree::Yaml11Surprise) -> Diagnostic {
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
    at_span(input, code, surprise.span, message, None).with_help(help)
}

/// A kind Bulkhead does not read: said, with a "did you mean" for a misspelt known kind.
fn skipped(ctx: &ObjectContext<'_>, api_version: &str, kind: &str, group: &str) -> Diagnostic {
    if let Some(known) = crate::kinds::close_known_kind(group, kind) {
        return ctx
            .diagnostic(
                codes::UNKNOWN_KIND,
                &FieldPath::root().key("kind"),
                false,
                format!("{api_version} has no kind {kind:?}; the API server rejects this object"),
            )
            .with_help(format!("did you mean {known:?}?"));
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
    ctx.diagnostic_at(code, ctx.node.span, message)
}

/// Deserialises and lowers an object of a Kubernetes kind into what it adds to the cluster.
fn lower(
    ctx: &ObjectContext<'_>,
    kind: &str,
    namespace: &str,
    name: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Contribution {
    let template = |workload_kind: &str,
                    template: Option<(&core::PodTemplateSpec, Option<i32>)>| {
        template.map_or(Contribution::Nothing, |(t, replicas)| {
            Contribution::Template(Box::new(crate::workload::template_pod(
                ctx,
                namespace,
                WorkloadRef {
                    kind: workload_kind.to_string(),
                    name: name.to_string(),
                },
                t,
                crate::workload::replicas(replicas),
            )))
        })
    };
    match kind {
        "Namespace" => typed::deserialize::<core::Namespace>(ctx, diagnostics).map_or(
            Contribution::Nothing,
            |ns| {
                let mut labels: Labels = crate::labels_of(ns.metadata.labels.as_ref());
                labels
                    .entry(METADATA_NAME_LABEL.to_string())
                    .or_insert_with(|| name.to_string());
                Contribution::Namespace(Namespace {
                    name: name.to_string(),
                    labels,
                    defined: true,
                    source: Some(ctx.location(ctx.node.span)),
                })
            },
        ),
        "Node" => typed::deserialize::<core::Node>(ctx, diagnostics).map_or(
            Contribution::Nothing,
            |node| {
                let ips = node
                    .status
                    .iter()
                    .flat_map(|s| s.addresses.iter().flatten())
                    .filter_map(|a| a.address.parse().ok())
                    .collect();
                Contribution::Node(ClusterNode {
                    name: name.to_string(),
                    labels: crate::labels_of(node.metadata.labels.as_ref()),
                    ips,
                })
            },
        ),
        "ServiceAccount" => typed::deserialize::<core::ServiceAccount>(ctx, diagnostics).map_or(
            Contribution::Nothing,
            |sa| {
                Contribution::ServiceAccount(ServiceAccount {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    labels: crate::labels_of(sa.metadata.labels.as_ref()),
                })
            },
        ),
        "Service" => {
            // Checked for structure only: the engine judges flows after service DNAT.
            let _ = typed::deserialize::<core::Service>(ctx, diagnostics);
            Contribution::Nothing
        }
        "Pod" => {
            typed::deserialize::<core::Pod>(ctx, diagnostics).map_or(Contribution::Nothing, |pod| {
                Contribution::LivePod(Box::new(crate::workload::live_pod(
                    ctx, namespace, name, &pod,
                )))
            })
        }
        "Deployment" => typed::deserialize::<apps::Deployment>(ctx, diagnostics)
            .map_or(Contribution::Nothing, |d| {
                template("deployment", Some((&d.spec.template, d.spec.replicas)))
            }),
        "StatefulSet" => typed::deserialize::<apps::StatefulSet>(ctx, diagnostics)
            .map_or(Contribution::Nothing, |s| {
                template("statefulset", Some((&s.spec.template, s.spec.replicas)))
            }),
        // One pod per node; without the nodes, one stands for them.
        "DaemonSet" => typed::deserialize::<apps::DaemonSet>(ctx, diagnostics)
            .map_or(Contribution::Nothing, |d| {
                template("daemonset", Some((&d.spec.template, None)))
            }),
        "ReplicaSet" => typed::deserialize::<apps::ReplicaSet>(ctx, diagnostics).map_or(
            Contribution::Nothing,
            |rs| {
                Contribution::Owner(Box::new(crate::workload::replica_set(
                    ctx, namespace, name, &rs,
                )))
            },
        ),
        "Job" => typed::deserialize::<batch::Job>(ctx, diagnostics)
            .map_or(Contribution::Nothing, |job| {
                Contribution::Owner(Box::new(crate::workload::job(ctx, namespace, name, &job)))
            }),
        "CronJob" => typed::deserialize::<batch::CronJob>(ctx, diagnostics).map_or(
            Contribution::Nothing,
            |c| {
                template(
                    "cronjob",
                    c.spec
                        .job_template
                        .spec
                        .as_ref()
                        .map(|j| (&j.template, j.parallelism)),
                )
            },
        ),
        "NetworkPolicy" => {
            let Some(policy) = typed::deserialize::<networking::NetworkPolicy>(ctx, diagnostics)
            else {
                return Contribution::Nothing;
            };
            if !crate::names::is_dns1123_label(namespace) {
                diagnostics.push(ctx.diagnostic(
                    codes::INVALID_NAME,
                    &FieldPath::root().key("metadata").key("namespace"),
                    false,
                    format!("namespace {namespace:?} is not a valid DNS-1123 label"),
                ));
                return Contribution::Nothing;
            }
            network_policy::lower(ctx, &policy, namespace, name, diagnostics).map_or(
                Contribution::Nothing,
                |lowered| {
                    Contribution::Policy(Box::new(Policy::from_network_policy(lowered, None)))
                },
            )
        }
        _ => Contribution::Nothing,
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
            file: first.shared_name(),
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

/// On the object, or on a workload's pod template (`spec.template`, a CronJob's job template):
/// the `ns/kind/name` a crown jewel is known by.
fn crown_jewel(node: &Node, kind: &str, namespace: &str, name: &str) -> Option<String> {
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
    (marked(node.get("metadata")) || marked(template.and_then(|t| t.get("metadata"))))
        .then(|| format!("{namespace}/{}/{name}", kind.to_ascii_lowercase()))
}

/// The codes of `bulkhead.io/ignore`, if the object has it.
fn suppression(node: &Node) -> Option<Vec<String>> {
    let codes = node
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(IGNORE_ANNOTATION))
        .and_then(Node::as_str)?;
    Some(
        codes
            .split([',', ' '])
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_count_bound_counts_each_mention_once_across_part_boundaries() {
        const PART: usize = 4 << 20;
        let needle = "NetworkPolicy";
        let mut text = vec![b'.'; 2 * PART + 100];
        // Before a boundary, straddling one, ending on one, starting on one, at the very end.
        let at = [
            100,
            PART - 5,
            2 * PART - needle.len(),
            2 * PART,
            text.len() - needle.len(),
        ];
        for &i in &at {
            text[i..i + needle.len()].copy_from_slice(needle.as_bytes());
        }
        let text = String::from_utf8(text).expect("ASCII");
        let inputs = [
            Input::new("a.yaml", text),
            Input::new("b.yaml", "kind: NetworkPolicy\n"),
        ];
        assert_eq!(policy_count_bound(&inputs), at.len() + 1);
    }
}
