//! The agent's Kubernetes source: one kube-runtime watcher per kind the agent reads, on a
//! runtime thread of its own, feeding the synchronous agent through the [`Source`] seam.
//!
//! Every watcher event is lowered at once by the one loader (`bulkhead_k8s::load`) into index
//! objects: no copy of the API objects is kept, only the index keys each one lowered to.
//! Windows are never opened:
//! * until every kind has been listed once, [`Source::resync`] waits (the kernel keeps the
//!   table it has);
//! * a relist (after `410 Gone`, or a reconnect) is buffered from `Init` to `InitDone` and then
//!   handed over as one difference, so no object is missing in between;
//! * while the API cannot be reached, nothing changes: the last good ruleset stays, and
//!   [`Source::health`] says so.

use crate::kinds::{LiveKind, WANTED, discover};
use crate::{Target, connect, object_input};
use bulkhead_agent::source::{ClusterBreakGlass, Delivery, Source, SourceHealth};
use bulkhead_index::{Event, Index, Object, ObjectKey, into_objects};
use bulkhead_k8s::LoadOptions;
use bulkhead_model::Severity;
use futures::StreamExt as _;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::runtime::{WatchStreamExt as _, watcher};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What the runtime thread tells the source.
#[derive(Debug)]
enum Message {
    Discovered {
        resources: Vec<ApiResource>,
        absent: Vec<String>,
    },
    Watch {
        kind: usize,
        /// Boxed: an object is large, the other messages are small.
        event: Box<watcher::Event<DynamicObject>>,
        at: Instant,
        /// Held until the agent has handled the event: see [`IN_FLIGHT`].
        _permit: OwnedSemaphorePermit,
    },
    /// An event of the break-glass ConfigMap's watch.
    BreakGlass {
        event: Box<watcher::Event<DynamicObject>>,
        at: Instant,
    },
    Failed {
        message: String,
        /// The API could not be reached (a refused or broken connection), as opposed to an
        /// answer it gave (410 Gone before a relist, a 403).
        unreachable: bool,
    },
}

/// How many watch events may wait for the agent at once. Listing is faster than lowering,
/// and without a bound a first list of 100k pods waited whole in the channel, as API objects
/// (hundreds of MiB at XL); about two pages keep the lister ahead without piling up.
const IN_FLIGHT: usize = 1024;

/// The ConfigMap every agent watches for the cluster-wide break-glass: while it exists, the
/// cluster (or the namespaces its `namespaces` key names) is open. Namespace and name.
pub const BREAK_GLASS: (&str, &str) = ("bulkhead-system", "break-glass");

/// An API object's identity: kind (position in the discovered list), namespace, name.
type ApiId = (usize, Option<String>, String);

/// An API object lowered by the loader: its index objects, or what is wrong with it.
type Lowered = Result<Vec<Object>, String>;

/// Watches the cluster for the agent.
#[derive(Debug)]
pub struct KubernetesSource {
    receiver: Receiver<Message>,
    options: LoadOptions,
    resources: Vec<ApiResource>,
    /// Kinds whose first list has completed.
    synced: Vec<bool>,
    /// Relists under way, per kind: the objects between `Init` and `InitDone`, lowered as
    /// they arrive (the API objects themselves are not kept: at 100k pods they are hundreds
    /// of MiB), handed over at `InitDone`.
    relisting: HashMap<usize, Vec<(ApiId, Lowered)>>,
    /// Kinds whose first list has started.
    started: HashSet<usize>,
    /// The break-glass ConfigMap: `None` until its first list, then whether it exists (and
    /// what it says).
    glass: Option<Option<ClusterBreakGlass>>,
    /// The break-glass ConfigMap as its current (re)list finds it.
    glass_listing: Option<ClusterBreakGlass>,
    /// The break-glass changed since the last delivery.
    glass_changed: bool,
    /// The index keys each API object lowered to (its last good version).
    lowered: HashMap<ApiId, Vec<ObjectKey>>,
    /// Events not yet handed over.
    pending: Vec<Event>,
    rejected: Vec<String>,
    seen: Option<Instant>,
    health: SourceHealth,
    /// Dropping it stops the runtime thread.
    _stop: tokio::sync::oneshot::Sender<()>,
    /// Rollbacks to post as Kubernetes Events.
    announce: tokio::sync::mpsc::UnboundedSender<Announcement>,
}

/// A rollback of this node, for a Kubernetes Event in the namespace it concerns.
#[derive(Debug)]
struct Announcement {
    node: String,
    namespace: String,
    message: String,
}

/// Posts each announcement as a core/v1 Event (reason `BulkheadRollback`, type Warning, on the
/// Namespace), connecting at the first one. A failure is said in the log, which has the
/// rollback anyway; it never stops the agent.
async fn post_events(
    target: Target,
    mut announcements: tokio::sync::mpsc::UnboundedReceiver<Announcement>,
) {
    use k8s_openapi::api::core::v1::{Event as ApiEvent, EventSource, ObjectReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    let mut client = None;
    while let Some(a) = announcements.recv().await {
        if client.is_none() {
            match connect(&target).await {
                Ok((c, _)) => client = Some(c),
                Err(e) => {
                    eprintln!(
                        "warning: the rollback of namespace {} is not posted as a Kubernetes Event: {e}",
                        a.namespace
                    );
                    continue;
                }
            }
        }
        let Some(c) = &client else { continue };
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let event = ApiEvent {
            metadata: ObjectMeta {
                generate_name: Some("bulkhead-rollback-".into()),
                namespace: Some(a.namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Namespace".into()),
                name: Some(a.namespace.clone()),
                ..ObjectReference::default()
            },
            reason: Some("BulkheadRollback".into()),
            message: Some(a.message),
            type_: Some("Warning".into()),
            source: Some(EventSource {
                component: Some("bulkhead-agent".into()),
                host: Some(a.node.clone()),
            }),
            reporting_component: Some("bulkhead.io/agent".into()),
            reporting_instance: Some(a.node),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..ApiEvent::default()
        };
        let api: Api<ApiEvent> = Api::namespaced(c.clone(), &a.namespace);
        if let Err(e) = api.create(&kube::api::PostParams::default(), &event).await {
            eprintln!(
                "warning: the rollback of namespace {} is not posted as a Kubernetes Event: {e}",
                a.namespace
            );
        }
    }
}

impl KubernetesSource {
    /// Connects in the background: discovery, then a watcher per kind. Errors (no cluster, the
    /// API down) are retried with backoff and reported through [`Source::health`].
    pub fn start(target: Target, options: LoadOptions) -> Self {
        let (sender, receiver) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (announce, announcements) = tokio::sync::mpsc::unbounded_channel();
        let events_target = target.clone();
        std::thread::Builder::new()
            .name("kube-watch".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = sender.send(Message::Failed {
                            unreachable: true,
                            message: format!("cannot start the watch runtime: {e}"),
                        });
                        return;
                    }
                };
                runtime.block_on(async move {
                    tokio::spawn(post_events(events_target, announcements));
                    tokio::select! {
                        _ = stopped => {}
                        _ = watch_all(target, sender) => {}
                    }
                });
            })
            .expect("spawning the watch thread");
        Self {
            receiver,
            options,
            resources: Vec::new(),
            synced: Vec::new(),
            relisting: HashMap::new(),
            started: HashSet::new(),
            glass: None,
            glass_listing: None,
            glass_changed: false,
            lowered: HashMap::new(),
            pending: Vec::new(),
            rejected: Vec::new(),
            seen: None,
            health: SourceHealth::default(),
            _stop: stop,
            announce,
        }
    }

    /// Waits up to `timeout` for the first full list of every kind (what [`Source::resync`]
    /// waits for without a bound); `false` when it has not arrived.
    pub fn wait_synced(&mut self, index: &Index, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.all_synced() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.drain(index, left.min(Duration::from_millis(100)));
        }
        true
    }

    /// Every kind listed once, and the break-glass ConfigMap: an agent that starts during an
    /// emergency must not enforce before it knows.
    fn all_synced(&self) -> bool {
        !self.resources.is_empty() && self.synced.iter().all(|s| *s) && self.glass.is_some()
    }

    fn set_glass(&mut self, now: Option<ClusterBreakGlass>) {
        if self.glass.as_ref() != Some(&now) {
            self.glass = Some(now);
            self.glass_changed = true;
        }
    }

    /// Handles one message; `index` filters applies that change nothing.
    fn handle(&mut self, message: Message, index: &Index) {
        match message {
            Message::Discovered { resources, absent } => {
                if !absent.is_empty() {
                    // Said once: a cluster without Calico lacks all of Calico's kinds.
                    eprintln!(
                        "info: the cluster does not serve {}; skipped",
                        absent.join(", ")
                    );
                }
                self.synced = vec![false; resources.len()];
                self.resources = resources;
            }
            Message::BreakGlass { event, at } => {
                self.health.connected = true;
                self.health.down_since = None;
                match *event {
                    watcher::Event::Init => self.glass_listing = None,
                    watcher::Event::InitApply(object) => {
                        if let Some(g) = break_glass_of(&object) {
                            self.glass_listing = Some(g);
                        }
                    }
                    watcher::Event::InitDone => {
                        let listed = self.glass_listing.take();
                        self.set_glass(listed);
                    }
                    watcher::Event::Apply(object) => {
                        if let Some(g) = break_glass_of(&object) {
                            self.set_glass(Some(g));
                        }
                    }
                    watcher::Event::Delete(object) => {
                        if break_glass_of(&object).is_some() {
                            self.set_glass(None);
                        }
                    }
                }
                if self.glass_changed {
                    self.seen.get_or_insert(at);
                }
            }
            Message::Failed {
                message,
                unreachable,
            } => {
                self.health.failures += 1;
                if unreachable {
                    self.health.connected = false;
                    if self.health.down_since.is_none() {
                        self.health.down_since = Some(Instant::now());
                    }
                }
                self.health.last_error = Some(message);
            }
            Message::Watch {
                kind, event, at, ..
            } => {
                self.health.connected = true;
                self.health.down_since = None;
                self.seen.get_or_insert(at);
                match *event {
                    // The first list of a kind goes straight to the pending events: nothing
                    // of it can be missing yet, and `resync` hands nothing over before every
                    // kind is listed (buffered as well, 100k pods were held twice).
                    watcher::Event::Init => {
                        // A list started before (and perhaps broken off) is a relist: what
                        // it no longer has must go.
                        if !self.started.insert(kind) {
                            self.relisting.insert(kind, Vec::new());
                        }
                    }
                    watcher::Event::InitApply(object) => {
                        if let Some(buffer) = self.relisting.get_mut(&kind) {
                            if let Some(resource) = self.resources.get(kind) {
                                let id = api_id(kind, &object);
                                buffer.push((id, lower(resource, object, &self.options)));
                            }
                        } else {
                            self.apply(kind, object, index);
                        }
                    }
                    watcher::Event::InitDone => {
                        if let Some(objects) = self.relisting.remove(&kind) {
                            self.relisted(kind, objects, index);
                        }
                        if let Some(s) = self.synced.get_mut(kind) {
                            *s = true;
                        }
                        self.health.relists += 1;
                    }
                    watcher::Event::Apply(object) => self.apply(kind, object, index),
                    watcher::Event::Delete(object) => {
                        let id = api_id(kind, &object);
                        for key in self.lowered.remove(&id).unwrap_or_default() {
                            self.pending.push(Event::Delete(key));
                        }
                    }
                }
            }
        }
    }

    /// A complete list of `kind`: objects it no longer has are deleted, the rest applied.
    fn relisted(&mut self, kind: usize, objects: Vec<(ApiId, Lowered)>, index: &Index) {
        let listed: HashSet<ApiId> = objects.iter().map(|(id, _)| id.clone()).collect();
        let gone: Vec<ApiId> = self
            .lowered
            .keys()
            .filter(|id| id.0 == kind && !listed.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            for key in self.lowered.remove(&id).unwrap_or_default() {
                self.pending.push(Event::Delete(key));
            }
        }
        for (id, lowered) in objects {
            self.apply_lowered(id, lowered, index);
        }
    }

    fn apply(&mut self, kind: usize, object: DynamicObject, index: &Index) {
        let id = api_id(kind, &object);
        let Some(resource) = self.resources.get(kind) else {
            return;
        };
        let lowered = lower(resource, object, &self.options);
        self.apply_lowered(id, lowered, index);
    }

    fn apply_lowered(&mut self, id: ApiId, lowered: Lowered, index: &Index) {
        let objects = match lowered {
            Ok(objects) => objects,
            Err(problem) => {
                // Keeps its last good version, loudly (as a file that does not load).
                self.rejected.push(problem);
                return;
            }
        };
        let keys: Vec<ObjectKey> = objects.iter().map(Object::key).collect();
        for old in self.lowered.get(&id).into_iter().flatten() {
            if !keys.contains(old) {
                self.pending.push(Event::Delete(old.clone()));
            }
        }
        for object in objects {
            if index.get(&object.key()) != Some(&object) {
                self.pending.push(Event::Apply(Box::new(object)));
            }
        }
        self.lowered.insert(id, keys);
    }

    fn deliver(&mut self) -> Delivery {
        self.glass_changed = false;
        Delivery {
            events: std::mem::take(&mut self.pending),
            rejected: std::mem::take(&mut self.rejected),
            seen: self.seen.take(),
        }
    }

    /// Handles what arrives within `timeout`, then everything already queued.
    fn drain(&mut self, index: &Index, timeout: Duration) -> bool {
        match self.receiver.recv_timeout(timeout) {
            Ok(message) => self.handle(message, index),
            Err(RecvTimeoutError::Timeout) => return false,
            Err(RecvTimeoutError::Disconnected) => {
                self.health.connected = false;
                return false;
            }
        }
        loop {
            match self.receiver.try_recv() {
                Ok(message) => self.handle(message, index),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return true,
            }
        }
    }
}

impl Source for KubernetesSource {
    fn describe(&self) -> String {
        "kubernetes".to_string()
    }

    fn announce_rollback(&self, node: &str, decision: &bulkhead_agent::rollback::Decision) {
        let _ = self.announce.send(Announcement {
            node: node.to_string(),
            namespace: decision.namespace.clone(),
            message: format!(
                "node {node} moved namespace {} to audit: {decision}. `bulkhead agent clear-rollback` on the node, or a new policy revision, enforces it again.",
                decision.namespace
            ),
        });
    }

    /// Waits for the first full list of every kind (saying every 10 s what it waits for),
    /// then hands over everything, deleting what the index has and the API does not.
    fn resync(&mut self, index: &Index) -> Delivery {
        let mut said = Instant::now();
        while !self.all_synced() {
            self.drain(index, Duration::from_millis(200));
            if said.elapsed() >= Duration::from_secs(10) {
                said = Instant::now();
                let (namespace, name) = BREAK_GLASS;
                eprintln!(
                    "waiting for the first full list from the Kubernetes API: {} of {} kind(s) listed, the break-glass ConfigMap {namespace}/{name} {}{}",
                    self.synced.iter().filter(|s| **s).count(),
                    self.synced.len(),
                    if self.glass.is_some() {
                        "listed"
                    } else {
                        "not yet (the agent's Role must allow reading it)"
                    },
                    self.health
                        .last_error
                        .as_deref()
                        .map(|e| format!(" (last error: {e})"))
                        .unwrap_or_default()
                );
            }
        }
        let known: HashSet<&ObjectKey> = self.lowered.values().flatten().collect();
        let stale: Vec<Event> = index
            .keys()
            .filter(|key| !known.contains(key))
            .cloned()
            .map(Event::Delete)
            .collect();
        let mut delivery = self.deliver();
        delivery.events.splice(0..0, stale);
        delivery
    }

    fn changes(&mut self, index: &Index, timeout: Duration) -> Option<Delivery> {
        self.drain(index, timeout);
        // A relist still under way is handed over whole, at its InitDone.
        if self.pending.is_empty() && self.rejected.is_empty() && !self.glass_changed {
            return None;
        }
        Some(self.deliver())
    }

    fn is_watching(&self) -> bool {
        true
    }

    fn health(&self) -> SourceHealth {
        self.health.clone()
    }

    fn cluster_break_glass(&self) -> Option<ClusterBreakGlass> {
        self.glass.clone().flatten()
    }
}

/// The break-glass an object of the break-glass watch says, if it is the break-glass
/// ConfigMap (a server that ignores the field selector sends the namespace's others too).
fn break_glass_of(object: &DynamicObject) -> Option<ClusterBreakGlass> {
    let (namespace, name) = BREAK_GLASS;
    if object.metadata.name.as_deref() != Some(name)
        || object.metadata.namespace.as_deref() != Some(namespace)
    {
        return None;
    }
    let data: std::collections::BTreeMap<String, String> = object
        .data
        .get("data")
        .and_then(|d| serde_json::from_value(d.clone()).ok())
        .unwrap_or_default();
    Some(ClusterBreakGlass::from_data(
        &format!("ConfigMap {namespace}/{name}"),
        &data,
    ))
}

fn api_id(kind: usize, object: &DynamicObject) -> ApiId {
    (
        kind,
        object.metadata.namespace.clone(),
        object.metadata.name.clone().unwrap_or_default(),
    )
}

/// One API object through the one loader: its index objects, or what is wrong with it.
fn lower(resource: &ApiResource, object: DynamicObject, options: &LoadOptions) -> Lowered {
    let input = object_input(resource, object);
    let snapshot = bulkhead_k8s::load(std::slice::from_ref(&input), options);
    if let Some(error) = snapshot
        .diagnostics
        .iter()
        .find(|d| d.severity == Severity::Error)
    {
        return Err(format!(
            "{}: {} (kept at its last good version)",
            input.name, error.message
        ));
    }
    Ok(into_objects(snapshot.cluster))
}

/// Discovery (retried until it succeeds), then a watcher per kind the agent reads; both wait
/// as [`Retry`] says between attempts.
async fn watch_all(target: Target, sender: Sender<Message>) {
    let mut retry = Retry::default();
    let (client, kinds) = loop {
        let attempt = async {
            let (client, server) = connect(&target).await?;
            let agent_kinds: Vec<_> = WANTED.iter().copied().filter(|w| w.agent).collect();
            let (kinds, absent) = discover(&client, &server, &agent_kinds).await?;
            Ok::<_, crate::Error>((client, kinds, absent))
        };
        match attempt.await {
            Ok((client, kinds, absent)) => {
                let resources = kinds.iter().map(|k| k.resource.clone()).collect();
                if sender
                    .send(Message::Discovered { resources, absent })
                    .is_err()
                {
                    return;
                }
                break (client, kinds);
            }
            Err(e) => {
                if sender
                    .send(Message::Failed {
                        message: e.to_string(),
                        unreachable: true,
                    })
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(retry.next().unwrap_or(Retry::MAX)).await;
            }
        }
    };
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = Vec::new();
    for (position, kind) in kinds.into_iter().enumerate() {
        tasks.push(tokio::spawn(watch_kind(
            client.clone(),
            position,
            kind,
            sender.clone(),
            in_flight.clone(),
        )));
    }
    tasks.push(tokio::spawn(watch_break_glass(
        client.clone(),
        sender.clone(),
    )));
    for task in tasks {
        let _ = task.await;
    }
}

async fn watch_kind(
    client: kube::Client,
    position: usize,
    kind: LiveKind,
    sender: Sender<Message>,
    in_flight: Arc<Semaphore>,
) {
    let api: Api<DynamicObject> = Api::all_with(client, &kind.resource);
    let config = watcher::Config::default().page_size(crate::PAGE);
    let mut stream = watcher::watcher(api, config)
        .backoff(Retry::default())
        .boxed();
    while let Some(item) = stream.next().await {
        let message = match item {
            Ok(event) => {
                let at = Instant::now();
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    return;
                };
                Message::Watch {
                    kind: position,
                    event: Box::new(event),
                    at,
                    _permit: permit,
                }
            }
            Err(e) => watch_failed(&e, &kind.resource.plural),
        };
        if sender.send(message).is_err() {
            return;
        }
    }
}

/// Watches the break-glass ConfigMap (only that name, in its namespace).
async fn watch_break_glass(client: kube::Client, sender: Sender<Message>) {
    let (namespace, name) = BREAK_GLASS;
    let resource = ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk("", "v1", "ConfigMap"));
    let api: Api<DynamicObject> = Api::namespaced_with(client, namespace, &resource);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher::watcher(api, config)
        .backoff(Retry::default())
        .boxed();
    while let Some(item) = stream.next().await {
        let message = match item {
            Ok(event) => Message::BreakGlass {
                event: Box::new(event),
                at: Instant::now(),
            },
            Err(e) => watch_failed(&e, &format!("the break-glass ConfigMap {namespace}/{name}")),
        };
        if sender.send(message).is_err() {
            return;
        }
    }
}

/// A watcher's error as the source reports it: `what` was being watched; an answer the API
/// gave (410 Gone before a relist, a 403) is not "unreachable".
fn watch_failed(e: &watcher::Error, what: &str) -> Message {
    Message::Failed {
        unreachable: !matches!(
            e,
            watcher::Error::WatchError(_)
                | watcher::Error::InitialListFailed(kube::Error::Api(_))
                | watcher::Error::WatchStartFailed(kube::Error::Api(_))
        ),
        message: format!("watching {what}: {e}"),
    }
}

/// How long a watcher waits before retrying: from 200 ms, doubling, at most 3 s, so an API
/// server that comes back is followed within seconds (kube-runtime's default waits up to 30 s).
#[derive(Debug)]
struct Retry {
    next: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self { next: Retry::FIRST }
    }
}

impl Retry {
    const FIRST: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(3);
}

impl Iterator for Retry {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(now)
    }
}

impl kube::runtime::utils::Backoff for Retry {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}
