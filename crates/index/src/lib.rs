//! The live index: what a node agent knows about the cluster, as objects keyed by stable keys
//! (`kind`, namespace, name), changed by [`Event`]s: apply one object, delete one, or resync the
//! whole set. A synchronous state machine with no I/O and no async (like linkerd2's
//! policy-controller index): sources (a directory, the Kubernetes API) turn what they see into
//! events, and the agent asks the index what changed for its node as a typed
//! [`bulkhead_nft::delta::Transaction`].
//!
//! Objects are the lowered model ([`bulkhead_model`]): every source lowers through the same
//! loader (`bulkhead_k8s::load`), so validation is the same for every consumer.
//!
//! Pods that come, go or change elsewhere in the cluster (not on this node) are the events a
//! large cluster sees most: for them the node's ruleset is updated in place ([`in_place`]),
//! from the rules that hold the changed addresses, without compiling the cluster again. A
//! Kubernetes NetworkPolicy whose peers are selectors is compiled on a small cluster of this
//! node's pods and the pods its peers can select. Every other change (a namespace, a pod of
//! this node, an ipBlock or another policy API) compiles the node from the whole index; in
//! every case only the *difference* is sent to the kernel.

mod in_place;

use bulkhead_engine::{Engine, EngineOptions};
use bulkhead_model::{Cluster, Namespace, NetworkSet, Node, Pod, Policy, ServiceAccount, Tier};
use bulkhead_nft::delta::Transaction;
use bulkhead_nft::{CompileOptions, Ruleset};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

/// The kinds the index holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    Namespace,
    Pod,
    Node,
    ServiceAccount,
    /// Any policy API; the policy's own kind is part of its name in the key.
    Policy,
    NetworkSet,
    Tier,
}

/// A stable identity: the same object keeps its key across every change.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: ObjectKind,
    pub namespace: Option<String>,
    /// For policies `Kind/name` (a NetworkPolicy and a Calico NetworkPolicy may share a name).
    pub name: String,
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{:?} {ns}/{}", self.kind, self.name),
            None => write!(f, "{:?} {}", self.kind, self.name),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Namespace(Namespace),
    Pod(Pod),
    Node(Node),
    ServiceAccount(ServiceAccount),
    Policy(Policy),
    NetworkSet(NetworkSet),
    Tier(Tier),
}

impl Object {
    pub fn key(&self) -> ObjectKey {
        let (kind, namespace, name) = match self {
            Object::Namespace(n) => (ObjectKind::Namespace, None, n.name.clone()),
            Object::Pod(p) => (ObjectKind::Pod, Some(p.namespace.clone()), p.name.clone()),
            Object::Node(n) => (ObjectKind::Node, None, n.name.clone()),
            Object::ServiceAccount(s) => (
                ObjectKind::ServiceAccount,
                Some(s.namespace.clone()),
                s.name.clone(),
            ),
            Object::Policy(p) => (
                ObjectKind::Policy,
                p.namespace.clone(),
                format!(
                    "{}{}/{}",
                    p.kind.as_str(),
                    if p.staged.is_some() { "(staged)" } else { "" },
                    p.name
                ),
            ),
            Object::NetworkSet(s) => (ObjectKind::NetworkSet, s.namespace.clone(), s.name.clone()),
            Object::Tier(t) => (ObjectKind::Tier, None, t.name.clone()),
        };
        ObjectKey {
            kind,
            namespace,
            name,
        }
    }
}

/// Every object of a loaded cluster. Namespaces only referenced (not defined) are left out:
/// the index adds them again from what refers to them, as the loader does.
pub fn objects_of(cluster: &Cluster) -> Vec<Object> {
    into_objects(cluster.clone())
}

/// [`objects_of`], taking the cluster: the objects move, nothing is copied.
pub fn into_objects(cluster: Cluster) -> Vec<Object> {
    let mut out = Vec::with_capacity(
        cluster.namespaces.len()
            + cluster.pods.len()
            + cluster.nodes.len()
            + cluster.service_accounts.len()
            + cluster.policies.len()
            + cluster.network_sets.len()
            + cluster.tiers.len(),
    );
    out.extend(
        cluster
            .namespaces
            .into_iter()
            .filter(|n| n.defined)
            .map(Object::Namespace),
    );
    out.extend(cluster.pods.into_iter().map(Object::Pod));
    out.extend(cluster.nodes.into_iter().map(Object::Node));
    out.extend(
        cluster
            .service_accounts
            .into_iter()
            .map(Object::ServiceAccount),
    );
    out.extend(cluster.policies.into_iter().map(Object::Policy));
    out.extend(cluster.network_sets.into_iter().map(Object::NetworkSet));
    out.extend(cluster.tiers.into_iter().map(Object::Tier));
    out
}

/// What changed since the last commit: each key with the object it had before (`None`: it
/// is new). Boxed: after the first list every object is new, and an inline `None` would
/// still take an object's size (at 100k pods, 40 MiB during the first compile).
pub type Changes = BTreeMap<ObjectKey, Option<Box<Object>>>;

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Added or changed (boxed: a policy is large, a delete is a key).
    Apply(Box<Object>),
    Delete(ObjectKey),
    /// Everything the source has now: objects it no longer has are deleted.
    Resync(Vec<Object>),
}

/// The objects, by key, and a revision bumped by every change.
#[derive(Debug, Default)]
pub struct Index {
    /// Boxed: an applied event's object and a change's "before" move in and out without a
    /// copy, and the map's nodes hold pointers, not objects of the largest kind's size.
    objects: BTreeMap<ObjectKey, Box<Object>>,
    /// Bumped by every event that changed something.
    revision: u64,
    /// Objects changed since [`Index::take_changes`], each with what it was before the first
    /// of those changes (`None`: it did not exist).
    changed: Changes,
    /// How many endpoints (pods that are endpoints, not on the host network; nodes) hold each
    /// address: an address held twice is decided by the engine's tie rule, which only a full
    /// compile applies.
    owners: HashMap<IpAddr, u32>,
    /// How many pods each namespace has (a namespace with pods but no Namespace object still
    /// exists for selectors, with only its name label).
    pod_namespaces: BTreeMap<String, usize>,
}

/// The addresses an object holds as a known endpoint.
fn endpoint_addresses(object: &Object) -> &[IpAddr] {
    match object {
        Object::Pod(p) if p.is_endpoint() && !p.host_network => &p.ips,
        Object::Node(n) => &n.ips,
        _ => &[],
    }
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The object under `key`.
    pub fn get(&self, key: &ObjectKey) -> Option<&Object> {
        self.objects.get(key).map(|o| &**o)
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Applies one event; returns how many objects it changed.
    pub fn handle(&mut self, event: Event) -> usize {
        let changed = match event {
            Event::Apply(object) => usize::from(self.put(object.key(), Some(object))),
            Event::Delete(key) => usize::from(self.put(key, None)),
            Event::Resync(objects) => {
                let mut fresh: BTreeMap<ObjectKey, Object> =
                    objects.into_iter().map(|o| (o.key(), o)).collect();
                let gone: Vec<ObjectKey> = self
                    .objects
                    .keys()
                    .filter(|k| !fresh.contains_key(*k))
                    .cloned()
                    .collect();
                let mut changed = 0;
                for key in gone {
                    changed += usize::from(self.put(key, None));
                }
                while let Some((key, object)) = fresh.pop_first() {
                    changed += usize::from(self.put(key, Some(Box::new(object))));
                }
                changed
            }
        };
        if changed > 0 {
            self.revision += 1;
        }
        changed
    }

    /// Puts `object` under `key` (`None` deletes); returns whether anything changed.
    fn put(&mut self, key: ObjectKey, object: Option<Box<Object>>) -> bool {
        if self.objects.get(&key) == object.as_ref() {
            return false;
        }
        if let Some(o) = &object {
            for ip in endpoint_addresses(o) {
                *self.owners.entry(*ip).or_default() += 1;
            }
            if let Object::Pod(p) = &**o {
                *self.pod_namespaces.entry(p.namespace.clone()).or_default() += 1;
            }
        }
        let before = match object {
            Some(o) => self.objects.insert(key.clone(), o),
            None => self.objects.remove(&key),
        };
        if let Some(b) = &before {
            for ip in endpoint_addresses(b) {
                if let Some(n) = self.owners.get_mut(ip) {
                    *n -= 1;
                    if *n == 0 {
                        self.owners.remove(ip);
                    }
                }
            }
            if let Object::Pod(p) = &**b
                && let Some(n) = self.pod_namespaces.get_mut(&p.namespace)
            {
                *n -= 1;
                if *n == 0 {
                    self.pod_namespaces.remove(&p.namespace);
                }
            }
        }
        self.changed.entry(key).or_insert(before);
        true
    }

    /// The objects changed since [`Index::clear_changes`], each with what it was before.
    pub fn changes(&self) -> &Changes {
        &self.changed
    }

    /// Called once the kernel has every change so far (a commit that fails keeps them, so
    /// the next one still sees them).
    pub fn clear_changes(&mut self) {
        self.changed.clear();
    }

    /// Every namespace name: those with a Namespace object and those that only have pods.
    pub fn namespace_names(&self) -> impl Iterator<Item = &str> + '_ {
        let defined = self
            .objects_of_kind(ObjectKind::Namespace, None)
            .filter_map(|o| match o {
                Object::Namespace(n) => Some(n.name.as_str()),
                _ => None,
            });
        let mut names: Vec<&str> = defined
            .chain(self.pod_namespaces.keys().map(String::as_str))
            .collect();
        names.sort_unstable();
        names.dedup();
        names.into_iter()
    }

    /// How many known endpoints hold `ip`.
    pub fn owners(&self, ip: IpAddr) -> u32 {
        self.owners.get(&ip).copied().unwrap_or(0)
    }

    /// Every key the index holds, in key order.
    pub fn keys(&self) -> impl Iterator<Item = &ObjectKey> + '_ {
        self.objects.keys()
    }

    /// The objects of one kind (in one namespace, when given), in key order.
    pub fn objects_of_kind(
        &self,
        kind: ObjectKind,
        namespace: Option<&str>,
    ) -> impl Iterator<Item = &Object> + '_ {
        let start = ObjectKey {
            kind,
            namespace: namespace.map(str::to_string),
            name: String::new(),
        };
        let namespace = namespace.map(str::to_string);
        self.objects
            .range(start..)
            .take_while(move |(k, _)| {
                k.kind == kind && (namespace.is_none() || k.namespace == namespace)
            })
            .map(|(_, o)| &**o)
    }

    /// The events that turn this index into one holding exactly `objects`: applies for the
    /// new and changed, deletes for the gone (what a source sends after a re-read).
    pub fn events_towards(&self, objects: impl IntoIterator<Item = Object>) -> Vec<Event> {
        if self.objects.is_empty() {
            // Everything is new (a cold start): applied in order, a later object under the
            // same key wins, as below. No map of all of them beside the objects themselves.
            return objects
                .into_iter()
                .map(|o| Event::Apply(Box::new(o)))
                .collect();
        }
        let fresh: BTreeMap<ObjectKey, Object> =
            objects.into_iter().map(|o| (o.key(), o)).collect();
        let mut events: Vec<Event> = self
            .objects
            .keys()
            .filter(|k| !fresh.contains_key(*k))
            .cloned()
            .map(Event::Delete)
            .collect();
        for (key, object) in fresh {
            if self.get(&key) != Some(&object) {
                events.push(Event::Apply(Box::new(object)));
            }
        }
        events
    }

    /// Runs `f` on the cluster the index holds, in the engine's deterministic order, without
    /// copying it: the objects move into a [`Cluster`] for the call and back after it (at
    /// 100k pods a copy was the largest part of the agent's peak memory, and slower than the
    /// move). The index is whole again when this returns, even if `f` panics.
    pub fn with_cluster<R>(&mut self, f: impl FnOnce(&Cluster) -> R) -> R {
        let lent = Lent::new(self);
        f(&lent.cluster)
    }

    /// A copy of the cluster the index holds, in the engine's deterministic order (see
    /// [`Index::with_cluster`], which does not copy).
    pub fn cluster(&self) -> Cluster {
        let mut cluster = Cluster::default();
        for object in self.objects.values() {
            match &**object {
                Object::Namespace(n) => cluster.namespaces.push(n.clone()),
                Object::Pod(p) => cluster.pods.push(p.clone()),
                Object::Node(n) => cluster.nodes.push(n.clone()),
                Object::ServiceAccount(s) => cluster.service_accounts.push(s.clone()),
                Object::Policy(p) => cluster.policies.push(p.clone()),
                Object::NetworkSet(s) => cluster.network_sets.push(s.clone()),
                Object::Tier(t) => cluster.tiers.push(t.clone()),
            }
        }
        cluster.finish();
        cluster
    }
}

/// The index's objects lent out as a cluster; dropping it puts them back.
struct Lent<'a> {
    index: &'a mut Index,
    cluster: Cluster,
    /// The namespaces that are objects of the index (`finish` adds those only referenced).
    namespaces: HashSet<String>,
}

impl<'a> Lent<'a> {
    fn new(index: &'a mut Index) -> Self {
        let objects = std::mem::take(&mut index.objects);
        // Reserved exactly: grown by doubling, the pods' vector alone would pass through
        // twice its size at 100k pods.
        let count = |kind| objects.keys().filter(|k| k.kind == kind).count();
        let mut cluster = Cluster {
            namespaces: Vec::with_capacity(count(ObjectKind::Namespace)),
            pods: Vec::with_capacity(count(ObjectKind::Pod)),
            nodes: Vec::with_capacity(count(ObjectKind::Node)),
            service_accounts: Vec::with_capacity(count(ObjectKind::ServiceAccount)),
            policies: Vec::with_capacity(count(ObjectKind::Policy)),
            network_sets: Vec::with_capacity(count(ObjectKind::NetworkSet)),
            tiers: Vec::with_capacity(count(ObjectKind::Tier)),
            ..Cluster::default()
        };
        for (_, object) in objects {
            match *object {
                Object::Namespace(n) => cluster.namespaces.push(n),
                Object::Pod(p) => cluster.pods.push(p),
                Object::Node(n) => cluster.nodes.push(n),
                Object::ServiceAccount(s) => cluster.service_accounts.push(s),
                Object::Policy(p) => cluster.policies.push(p),
                Object::NetworkSet(s) => cluster.network_sets.push(s),
                Object::Tier(t) => cluster.tiers.push(t),
            }
        }
        let namespaces = cluster.namespaces.iter().map(|n| n.name.clone()).collect();
        cluster.finish();
        Self {
            index,
            cluster,
            namespaces,
        }
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        let cluster = std::mem::take(&mut self.cluster);
        let namespaces = std::mem::take(&mut self.namespaces);
        // `finish` added the namespaces that are only referenced; they were never objects.
        let objects = cluster
            .namespaces
            .into_iter()
            .filter(|n| namespaces.contains(&n.name))
            .map(Object::Namespace)
            .chain(cluster.pods.into_iter().map(Object::Pod))
            .chain(cluster.nodes.into_iter().map(Object::Node))
            .chain(
                cluster
                    .service_accounts
                    .into_iter()
                    .map(Object::ServiceAccount),
            )
            .chain(cluster.policies.into_iter().map(Object::Policy))
            .chain(cluster.network_sets.into_iter().map(Object::NetworkSet))
            .chain(cluster.tiers.into_iter().map(Object::Tier));
        self.index.objects = objects.map(|o| (o.key(), Box::new(o))).collect();
    }
}

/// One node's view: the ruleset it last committed, and the transaction to the next.
#[derive(Debug, Default)]
pub struct NodeView {
    committed: Option<Ruleset>,
    /// The last full compile, the base of updates in place; `None` until one is committed.
    last: Option<in_place::LastCompile>,
    /// The last full compile, until the kernel has its ruleset.
    pending: Option<in_place::LastCompile>,
}

/// What [`NodeView::next`] asks the dataplane to do.
#[derive(Debug)]
pub enum Commit {
    /// Nothing changed for this node.
    Nothing,
    /// Only these objects changed.
    Delta(Transaction),
    /// Replace the whole table (first commit, or a change of the enforcement maps).
    Full,
}

impl NodeView {
    /// The ruleset `cluster` compiles to on this node, and how to get the kernel there from
    /// the last committed one. Call [`NodeView::committed`] once the kernel has it.
    pub fn next(
        &mut self,
        cluster: &Cluster,
        options: &CompileOptions,
        enforcement: bulkhead_nft::Enforcement,
    ) -> (Ruleset, Commit, bulkhead_nft::compile::CompileReport) {
        let engine_options = EngineOptions::for_cluster(cluster);
        let engine = Engine::new(cluster, engine_options);
        let (mut ruleset, report) = bulkhead_nft::compile(&engine, options);
        ruleset.enforcement = enforcement;
        self.pending = Some(in_place::LastCompile::new(
            cluster,
            options,
            engine_options,
            report.clone(),
        ));
        let commit = self.commit_to(&ruleset);
        if matches!(commit, Commit::Nothing) {
            // The kernel holds this ruleset already; what this compile knew is the base now.
            self.last = self.pending.take();
        }
        (ruleset, commit, report)
    }

    /// The ruleset after `changes` (from [`Index::changes`]) when they can be made without
    /// compiling the node from the whole index: every change is a pod of another node (only
    /// set elements change), or every change is a Kubernetes NetworkPolicy whose peers are
    /// pod and namespace selectors (this node's pods are compiled again on a small cluster).
    /// `None`: compile with [`NodeView::next`]. `options` without interfaces (a full compile
    /// finds those).
    pub fn next_in_place(
        &mut self,
        index: &Index,
        changes: &Changes,
        options: &CompileOptions,
        enforcement: bulkhead_nft::Enforcement,
    ) -> Option<(Ruleset, Commit, bulkhead_nft::compile::CompileReport)> {
        let committed = self.committed.as_ref()?;
        let last = self.last.as_ref()?;
        // `options.interfaces` are found by a full compile (routes of this node's pods);
        // everything else must be what the last one had.
        if committed.enforcement != enforcement
            || options.node != last.options.node
            || options.audit_namespaces != last.options.audit_namespaces
            || options.pod_interface_prefixes != last.options.pod_interface_prefixes
            || options.pod_cidrs != last.options.pod_cidrs
        {
            return None;
        }
        if let Some(ruleset) = in_place::update(committed, last, index, changes) {
            let commit = self.commit_to(&ruleset);
            // The same pods as the last full compile, by construction.
            let report = bulkhead_nft::compile::CompileReport {
                pods: last.report.pods,
                pods_without_interface: last.report.pods_without_interface.clone(),
                ..Default::default()
            };
            self.pending = None;
            return Some((ruleset, commit, report));
        }
        let (ruleset, compiled) = in_place::update_policies(committed, last, index, changes)?;
        let commit = self.commit_to(&ruleset);
        let report = compiled.report.clone();
        if matches!(commit, Commit::Nothing) {
            self.last = Some(compiled);
            self.pending = None;
        } else {
            self.pending = Some(compiled);
        }
        Some((ruleset, commit, report))
    }

    /// How to get the kernel from the committed ruleset to `ruleset`.
    fn commit_to(&self, ruleset: &Ruleset) -> Commit {
        match &self.committed {
            None => Commit::Full,
            Some(last) => match Transaction::between(last, ruleset) {
                None => Commit::Full,
                Some(t) if t.is_empty() => Commit::Nothing,
                Some(t) => Commit::Delta(t),
            },
        }
    }

    /// Records that the kernel now holds `ruleset` (the last one [`NodeView::next`] or
    /// [`NodeView::next_in_place`] gave).
    pub fn committed(&mut self, ruleset: Ruleset) {
        self.committed = Some(ruleset);
        if let Some(last) = self.pending.take() {
            self.last = Some(last);
        }
    }

    /// Forgets what the kernel holds (the next commit is a full replace).
    pub fn forget(&mut self) {
        self.committed = None;
        self.last = None;
        self.pending = None;
    }

    pub fn last(&self) -> Option<&Ruleset> {
        self.committed.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Cluster {
        bulkhead_k8s::load(
            &[bulkhead_k8s::Input::new("t.yaml", text)],
            &bulkhead_k8s::LoadOptions::default(),
        )
        .cluster
    }

    const BASE: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x, labels: {app: a}}\nspec: {nodeName: n1, containers: [{name: c, image: i}]}\nstatus: {podIP: 10.0.0.1}\n";

    #[test]
    fn events_applied_one_by_one_give_the_loaded_cluster() {
        let before = load(BASE);
        let after_text = format!(
            "{BASE}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: b, namespace: x, labels: {{app: b}}}}\nspec: {{nodeName: n1, containers: [{{name: c, image: i}}]}}\nstatus: {{podIP: 10.0.0.2}}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: deny, namespace: x}}\nspec: {{podSelector: {{}}}}\n"
        );
        let after = load(&after_text);
        let mut index = Index::new();
        assert_eq!(index.handle(Event::Resync(objects_of(&before))), 2);
        assert_eq!(index.cluster(), before);
        let events = index.events_towards(objects_of(&after));
        assert_eq!(events.len(), 2, "one pod and one policy: {events:?}");
        for e in events {
            assert_eq!(index.handle(e), 1);
        }
        assert_eq!(index.cluster(), after);
        let revision = index.revision();
        // Applying what is already there changes nothing.
        assert_eq!(index.handle(Event::Resync(objects_of(&after))), 0);
        assert_eq!(index.revision(), revision);
        // And back: the new pod and policy are deleted.
        let events = index.events_towards(objects_of(&before));
        assert!(events.iter().all(|e| matches!(e, Event::Delete(_))));
        for e in events {
            index.handle(e);
        }
        assert_eq!(index.cluster(), before);
    }

    #[test]
    fn a_lent_cluster_is_the_copy_and_comes_back_whole() {
        // A pod in a namespace that is no object, beside one that is: the lent cluster has
        // both namespaces (as a loaded one does), the index keeps only its own objects.
        let text = format!(
            "{BASE}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: b, namespace: y}}\nspec: {{nodeName: n1, containers: [{{name: c, image: i}}]}}\nstatus: {{podIP: 10.0.0.2}}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: deny, namespace: x}}\nspec: {{podSelector: {{}}}}\n"
        );
        let loaded = load(&text);
        let mut index = Index::new();
        index.handle(Event::Resync(objects_of(&loaded)));
        let keys: Vec<ObjectKey> = index.keys().cloned().collect();
        let copy = index.cluster();
        assert_eq!(copy, loaded);
        let lent = index.with_cluster(|cluster| cluster.clone());
        assert_eq!(lent, copy);
        assert!(lent.namespace("y").is_some_and(|n| !n.defined));
        assert_eq!(index.keys().cloned().collect::<Vec<_>>(), keys);
        assert_eq!(index.cluster(), copy);
        // A panic while lent still gives the objects back.
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            index.with_cluster(|_| panic!("inside"))
        }));
        assert!(caught.is_err());
        assert_eq!(index.cluster(), copy);
    }

    #[test]
    fn a_node_view_sends_a_delta_after_the_first_full_commit() {
        let mut index = Index::new();
        index.handle(Event::Resync(objects_of(&load(BASE))));
        let options = CompileOptions {
            node: "n1".into(),
            interfaces: BTreeMap::from([("x/a".to_string(), "veth-a".to_string())]),
            ..CompileOptions::default()
        };
        let mut view = NodeView::default();
        let (ruleset, commit, _) = view.next(&index.cluster(), &options, Default::default());
        assert!(matches!(commit, Commit::Full));
        view.committed(ruleset);
        let (_, commit, _) = view.next(&index.cluster(), &options, Default::default());
        assert!(matches!(commit, Commit::Nothing));
        let deny = load(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: x}\nspec: {podSelector: {}}\n",
        );
        for p in deny.policies {
            index.handle(Event::Apply(Box::new(Object::Policy(p))));
        }
        let (_, commit, _) = view.next(&index.cluster(), &options, Default::default());
        let Commit::Delta(t) = commit else {
            panic!("a policy added after the first commit is a delta");
        };
        assert!(t.chains_removed.is_empty() && !t.is_empty());
    }
}
