//! A loopback Kubernetes API server for tests: **a test double only**, nothing in the product
//! depends on it. No real API server can run on the machines Bulkhead is tested on, so the
//! Kubernetes source, `--kubeconfig` in the CLI and the agent's watch are driven against this
//! one, and CI checks that it speaks the protocol by driving it with the real `kubectl`.
//!
//! What it speaks, for the kinds in [`ResourceType::bulkhead_kinds`]:
//! * discovery: `/version`, `/api`, `/apis`, `/api/v1`, `/apis/{group}/{version}` (the legacy
//!   documents; clients that ask for aggregated discovery fall back to them);
//! * list with `limit`/`continue`, items without `kind`/`apiVersion` (as the API server sends
//!   them) and the list's `metadata.resourceVersion`; a `continue` token older than the last
//!   compaction is answered `410 Gone`, as the real server does;
//! * get of one object;
//! * watch (`?watch=true`) as a chunked stream of JSON events, from a `resourceVersion` (or
//!   with synthetic `ADDED` events for everything when none is given), `BOOKMARK` events when
//!   asked for (`allowWatchBookmarks`), an `ERROR` event with code 410 for a version older than
//!   the last compaction, and `timeoutSeconds`;
//! * on demand: compaction ([`ApiServer::compact`]), dropped watch connections
//!   ([`ApiServer::drop_watches`]), and the whole server stopped and restarted on the same
//!   port ([`ApiServer::stop`], [`ApiServer::restart`]).
//!
//! Objects are changed through the Rust handle ([`ApiServer::apply`], [`ApiServer::delete`]);
//! the binary (`bulkhead-apiserver-double`) serves a directory of manifests.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// One resource the server serves: `pods` in `v1`, `networkpolicies` in
/// `networking.k8s.io/v1`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceType {
    /// `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
}

impl ResourceType {
    const fn new(
        group: &'static str,
        version: &'static str,
        plural: &'static str,
        kind: &'static str,
        namespaced: bool,
    ) -> Self {
        Self {
            group,
            version,
            plural,
            kind,
            namespaced,
        }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kinds Bulkhead reads, with Calico's served as `projectcalico.org/v3` (the Calico API
    /// server's group).
    pub fn bulkhead_kinds() -> Vec<ResourceType> {
        let mut kinds = Self::common_kinds();
        kinds.extend(Self::calico_kinds("projectcalico.org", "v3"));
        kinds
    }

    /// The same, with Calico's kinds only as `crd.projectcalico.org/v1` CRDs (a cluster
    /// without the Calico API server).
    pub fn bulkhead_kinds_with_calico_crds() -> Vec<ResourceType> {
        let mut kinds = Self::common_kinds();
        kinds.extend(Self::calico_kinds("crd.projectcalico.org", "v1"));
        kinds
    }

    /// The kinds every cluster has, without any policy API beyond NetworkPolicy.
    pub fn common_kinds() -> Vec<ResourceType> {
        vec![
            Self::new("", "v1", "namespaces", "Namespace", false),
            Self::new("", "v1", "nodes", "Node", false),
            Self::new("", "v1", "pods", "Pod", true),
            Self::new("", "v1", "serviceaccounts", "ServiceAccount", true),
            Self::new("", "v1", "services", "Service", true),
            // The agent watches one: the cluster-wide break-glass.
            Self::new("", "v1", "configmaps", "ConfigMap", true),
            Self::new("apps", "v1", "deployments", "Deployment", true),
            Self::new("apps", "v1", "replicasets", "ReplicaSet", true),
            Self::new("apps", "v1", "statefulsets", "StatefulSet", true),
            Self::new("apps", "v1", "daemonsets", "DaemonSet", true),
            Self::new("batch", "v1", "jobs", "Job", true),
            Self::new("batch", "v1", "cronjobs", "CronJob", true),
            Self::new(
                "networking.k8s.io",
                "v1",
                "networkpolicies",
                "NetworkPolicy",
                true,
            ),
            Self::new(
                "policy.networking.k8s.io",
                "v1alpha1",
                "adminnetworkpolicies",
                "AdminNetworkPolicy",
                false,
            ),
            Self::new(
                "policy.networking.k8s.io",
                "v1alpha1",
                "baselineadminnetworkpolicies",
                "BaselineAdminNetworkPolicy",
                false,
            ),
            Self::new(
                "policy.networking.k8s.io",
                "v1alpha2",
                "clusternetworkpolicies",
                "ClusterNetworkPolicy",
                false,
            ),
        ]
    }

    pub fn calico_kinds(group: &'static str, version: &'static str) -> Vec<ResourceType> {
        vec![
            Self::new(group, version, "tiers", "Tier", false),
            Self::new(group, version, "networkpolicies", "NetworkPolicy", true),
            Self::new(
                group,
                version,
                "globalnetworkpolicies",
                "GlobalNetworkPolicy",
                false,
            ),
            Self::new(
                group,
                version,
                "stagednetworkpolicies",
                "StagedNetworkPolicy",
                true,
            ),
            Self::new(
                group,
                version,
                "stagedglobalnetworkpolicies",
                "StagedGlobalNetworkPolicy",
                false,
            ),
            Self::new(
                group,
                version,
                "stagedkubernetesnetworkpolicies",
                "StagedKubernetesNetworkPolicy",
                true,
            ),
            Self::new(group, version, "networksets", "NetworkSet", true),
            Self::new(
                group,
                version,
                "globalnetworksets",
                "GlobalNetworkSet",
                false,
            ),
            Self::new(group, version, "hostendpoints", "HostEndpoint", false),
        ]
    }
}

/// What changed, as a watch sends it.
#[derive(Clone, Debug)]
struct Change {
    resource_version: u64,
    resource: usize,
    namespace: Option<String>,
    kind: &'static str,
    object: Value,
}

#[derive(Debug)]
struct Store {
    resources: Vec<ResourceType>,
    /// Per resource: (namespace or "", name) -> the object as stored (with kind/apiVersion).
    objects: Vec<BTreeMap<(String, String), Value>>,
    resource_version: u64,
    /// Changes after `compacted`, oldest first.
    history: Vec<Change>,
    /// Versions at or below this one are gone (410).
    compacted: u64,
    next_uid: u64,
    bookmark_interval: Duration,
}

#[derive(Debug)]
struct Shared {
    store: Mutex<Store>,
    changes: broadcast::Sender<Change>,
    /// Bumped to end every open watch (a dropped connection, or a server stop).
    hangup: watch::Sender<u64>,
    /// False while the server is stopped: a watch that starts then ends at once, so the
    /// graceful shutdown never waits for it.
    running: watch::Sender<bool>,
    requests: Mutex<Vec<String>>,
    /// Events created through the API (`POST .../namespaces/{ns}/events`), as stored.
    events: Mutex<Vec<Value>>,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running server on 127.0.0.1, with its own runtime.
#[derive(Debug)]
pub struct ApiServer {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Runtime,
    address: SocketAddr,
    serving: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
}

impl ApiServer {
    /// Serves `resources` on a free loopback port.
    pub fn start(resources: Vec<ResourceType>) -> anyhow::Result<Self> {
        Self::start_on(resources, "127.0.0.1:0".parse()?)
    }

    /// Serves on `address` (must be loopback: the double never listens elsewhere).
    pub fn start_on(resources: Vec<ResourceType>, address: SocketAddr) -> anyhow::Result<Self> {
        anyhow::ensure!(
            address.ip().is_loopback(),
            "the API server double listens on loopback only, not {address}"
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let objects = resources.iter().map(|_| BTreeMap::new()).collect();
        let (changes, _) = broadcast::channel(1 << 16);
        let (hangup, _) = watch::channel(0);
        let (running, _) = watch::channel(true);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store {
                resources,
                objects,
                resource_version: 1,
                history: Vec::new(),
                compacted: 0,
                next_uid: 1,
                bookmark_interval: Duration::from_secs(1),
            }),
            changes,
            hangup,
            running,
            requests: Mutex::new(Vec::new()),
            events: Mutex::new(Vec::new()),
        });
        let mut server = Self {
            shared,
            runtime,
            address,
            serving: None,
        };
        server.listen()?;
        Ok(server)
    }

    fn listen(&mut self) -> anyhow::Result<()> {
        let listener = self
            .runtime
            .block_on(tokio::net::TcpListener::bind(self.address))?;
        self.address = listener.local_addr()?;
        let app = router(self.shared.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = self.runtime.spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        self.serving = Some((stop, task));
        Ok(())
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A kubeconfig for this server (plain HTTP on loopback, context `double`).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster:\n    server: {}\n\
             contexts:\n- name: double\n  context:\n    cluster: double\n    user: tester\n\
             current-context: double\nusers:\n- name: tester\n  user:\n    token: test-token\n",
            self.url()
        )
    }

    /// How often watches that asked for bookmarks get one.
    pub fn set_bookmark_interval(&self, every: Duration) {
        self.shared.store().bookmark_interval = every;
    }

    /// Creates or replaces the object (kind and apiVersion pick the resource). Returns its new
    /// resourceVersion.
    pub fn apply(&self, object: Value) -> anyhow::Result<u64> {
        let mut store = self.shared.store();
        let resource = store.resource_of(&object)?;
        let (namespace, name) = identity(&store.resources[resource], &object)?;
        store.resource_version += 1;
        let version = store.resource_version;
        let key = (namespace.clone().unwrap_or_default(), name);
        let existing_uid = store.objects[resource]
            .get(&key)
            .and_then(|o| o.pointer("/metadata/uid").cloned());
        let created = existing_uid.is_none();
        let uid = match existing_uid {
            Some(uid) => uid,
            None => {
                store.next_uid += 1;
                json!(format!("00000000-0000-4000-8000-{:012x}", store.next_uid))
            }
        };
        let mut object = object;
        let metadata = object
            .as_object_mut()
            .and_then(|o| o.get_mut("metadata"))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| anyhow::anyhow!("the object has no metadata"))?;
        if let Some(ns) = &namespace {
            metadata.insert("namespace".into(), json!(ns));
        }
        metadata.insert("resourceVersion".into(), json!(version.to_string()));
        metadata.insert("uid".into(), uid);
        metadata
            .entry("creationTimestamp")
            .or_insert(json!("2026-11-30T00:00:00Z"));
        store.objects[resource].insert(key, object.clone());
        let kind = if created { "ADDED" } else { "MODIFIED" };
        store.record(&self.shared, resource, namespace, kind, object);
        Ok(version)
    }

    /// Deletes the object; `false` when there was none.
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> anyhow::Result<bool> {
        let mut store = self.shared.store();
        let resource = store.resource_of(&json!({"apiVersion": api_version, "kind": kind}))?;
        let key = (namespace.unwrap_or_default().to_string(), name.to_string());
        let Some(mut object) = store.objects[resource].remove(&key) else {
            return Ok(false);
        };
        store.resource_version += 1;
        let version = store.resource_version;
        if let Some(m) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert("resourceVersion".into(), json!(version.to_string()));
        }
        store.record(
            &self.shared,
            resource,
            namespace.map(str::to_string),
            "DELETED",
            object,
        );
        Ok(true)
    }

    /// Serves the objects of manifest files or directories (`kind: List` items too), as
    /// `kubectl apply` would create them. Returns how many objects were stored and the kinds
    /// skipped because the server does not serve them (`v1 Secret`).
    pub fn apply_manifests(
        &self,
        paths: &[std::path::PathBuf],
    ) -> anyhow::Result<(usize, Vec<String>)> {
        let (inputs, problems) = bulkhead_k8s::read_paths(paths);
        if let Some(p) = problems.first() {
            anyhow::bail!("{}", p.message);
        }
        let (mut stored, mut skipped) = (0, Vec::new());
        for input in &inputs {
            for document in bulkhead_k8s::yaml_tree::parse_documents(&input.text) {
                let document = document.map_err(|e| {
                    anyhow::anyhow!("{}:{}: {}", input.name, e.span.line, e.message)
                })?;
                let Some(root) = document.root else { continue };
                let value = root.to_json();
                // `List`, and typed lists (`PodList`) as `kubectl get -o yaml` writes them.
                let objects = match value.get("kind").and_then(Value::as_str) {
                    Some(kind) if kind.ends_with("List") && value.get("items").is_some() => value
                        .get("items")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    _ => vec![value],
                };
                for object in objects {
                    if self.shared.store().resource_of(&object).is_err() {
                        let kind = format!(
                            "{} {}",
                            object
                                .get("apiVersion")
                                .and_then(Value::as_str)
                                .unwrap_or("?"),
                            object.get("kind").and_then(Value::as_str).unwrap_or("?")
                        );
                        if !skipped.contains(&kind) {
                            skipped.push(kind);
                        }
                        continue;
                    }
                    self.apply(object)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", input.name))?;
                    stored += 1;
                }
            }
        }
        Ok((stored, skipped))
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().resource_version
    }

    /// Forgets the history: every version up to now expires, so a watch or a `continue` from
    /// one of them is answered 410 Gone (what etcd compaction does).
    pub fn compact(&self) {
        let mut store = self.shared.store();
        store.compacted = store.resource_version;
        store.history.clear();
    }

    /// Ends every open watch stream (the connection drops; clients re-watch).
    pub fn drop_watches(&self) {
        self.shared.hangup.send_modify(|g| *g += 1);
    }

    /// Stops listening and drops every connection; the objects are kept.
    pub fn stop(&mut self) {
        self.shared.running.send_replace(false);
        self.drop_watches();
        if let Some((stop, task)) = self.serving.take() {
            let _ = stop.send(());
            // Bounded: a connection that never ends must not hang a test.
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(5), task).await });
        }
    }

    /// Listens again on the same port after [`ApiServer::stop`].
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.serving.is_none() {
            self.shared.running.send_replace(true);
            self.listen()?;
        }
        Ok(())
    }

    /// The request lines served so far (`GET /api/v1/pods?limit=500`), for tests that check
    /// what a client asked for.
    /// The core/v1 Events clients created, in order, as the server stored them.
    pub fn events(&self) -> Vec<Value> {
        self.shared
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn requests(&self) -> Vec<String> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many objects it holds.
    pub fn len(&self) -> usize {
        self.shared.store().objects.iter().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn identity(resource: &ResourceType, object: &Value) -> anyhow::Result<(Option<String>, String)> {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow::anyhow!("the object has no metadata.name"))?
        .to_string();
    let namespace = if resource.namespaced {
        Some(
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_string(),
        )
    } else {
        None
    };
    Ok((namespace, name))
}

impl Store {
    fn resource_of(&self, object: &Value) -> anyhow::Result<usize> {
        let api_version = object.get("apiVersion").and_then(Value::as_str);
        let kind = object.get("kind").and_then(Value::as_str);
        self.resources
            .iter()
            .position(|r| Some(r.api_version().as_str()) == api_version && Some(r.kind) == kind)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the server does not serve {} {}",
                    api_version.unwrap_or("?"),
                    kind.unwrap_or("?")
                )
            })
    }

    fn record(
        &mut self,
        shared: &Shared,
        resource: usize,
        namespace: Option<String>,
        kind: &'static str,
        object: Value,
    ) {
        let change = Change {
            resource_version: self.resource_version,
            resource,
            namespace,
            kind,
            object,
        };
        self.history.push(change.clone());
        // Sent under the store's lock: a watch subscribes under it too, so it sees every
        // change exactly once (from the history or from the channel).
        let _ = shared.changes.send(change);
    }

    fn list(
        &self,
        resource: usize,
        namespace: Option<&str>,
        limit: Option<usize>,
        after: Option<&(String, String)>,
    ) -> (Vec<Value>, Option<(String, String)>, usize) {
        let objects = &self.objects[resource];
        let mut selected = objects
            .iter()
            .filter(|((ns, _), _)| namespace.is_none_or(|want| ns == want))
            .filter(|(key, _)| after.is_none_or(|a| *key > a));
        let mut items = Vec::new();
        let mut last = None;
        for (key, object) in selected.by_ref() {
            if limit.is_some_and(|l| items.len() >= l) {
                let remaining = 1 + selected.count();
                return (items, last, remaining);
            }
            let mut item = object.clone();
            if let Some(map) = item.as_object_mut() {
                // The API server sends list items without kind and apiVersion.
                map.remove("kind");
                map.remove("apiVersion");
            }
            items.push(item);
            last = Some(key.clone());
        }
        (items, None, 0)
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/api", get(core_versions))
        .route("/apis", get(groups))
        .route("/api/{version}", get(core_resources))
        .route("/apis/{group}/{version}", get(group_resources))
        .route("/api/{version}/{plural}", get(core_collection))
        .route("/api/{version}/{plural}/{name}", get(core_item))
        .route(
            "/api/{version}/namespaces/{namespace}/{plural}",
            get(core_namespaced_collection).post(create_core_namespaced),
        )
        .route(
            "/api/{version}/namespaces/{namespace}/{plural}/{name}",
            get(core_namespaced_item),
        )
        .route("/apis/{group}/{version}/{plural}", get(group_collection))
        .route("/apis/{group}/{version}/{plural}/{name}", get(group_item))
        .route(
            "/apis/{group}/{version}/namespaces/{namespace}/{plural}",
            get(group_namespaced_collection),
        )
        .route(
            "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}",
            get(group_namespaced_item),
        )
        .fallback(not_found_route)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            remember_request,
        ))
        .with_state(shared)
}

async fn remember_request(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let line = format!("{} {}", request.method(), request.uri());
    shared
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(line);
    next.run(request).await
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

fn failure(code: StatusCode, reason: &str, message: &str) -> Response {
    json_response(code, &status(code.as_u16(), reason, message))
}

async fn not_found_route(uri: axum::http::Uri) -> Response {
    failure(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("the server could not find the requested resource ({uri})"),
    )
}

async fn version() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "major": "1",
            "minor": "37",
            "gitVersion": "v1.37.0-bulkhead-apiserver-double",
            "platform": "linux/amd64",
        }),
    )
}

async fn core_versions() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
        }),
    )
}

async fn groups(State(shared): State<Arc<Shared>>) -> Response {
    let store = shared.store();
    let mut by_group: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in store.resources.iter().filter(|r| !r.group.is_empty()) {
        let versions = by_group.entry(r.group).or_default();
        if !versions.contains(&r.version) {
            versions.push(r.version);
        }
    }
    let groups: Vec<Value> = by_group
        .iter()
        .map(|(group, versions)| {
            // The newest version first, as the API server orders them.
            let mut versions = versions.clone();
            versions.sort_by(|a, b| b.cmp(a));
            let entries: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
                .collect();
            json!({
                "name": group,
                "versions": entries,
                "preferredVersion": entries[0],
            })
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
    )
}

fn resource_list(shared: &Shared, group: &str, version: &str) -> Response {
    let store = shared.store();
    let resources: Vec<Value> = store
        .resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| {
            json!({
                "name": r.plural,
                "singularName": r.kind.to_lowercase(),
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "list", "watch"],
            })
        })
        .collect();
    if resources.is_empty() {
        return failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }),
    )
}

async fn core_resources(
    State(shared): State<Arc<Shared>>,
    Path(version): Path<String>,
) -> Response {
    resource_list(&shared, "", &version)
}

async fn group_resources(
    State(shared): State<Arc<Shared>>,
    Path((group, version)): Path<(String, String)>,
) -> Response {
    resource_list(&shared, &group, &version)
}

type Params = Query<HashMap<String, String>>;

async fn core_collection(
    State(shared): State<Arc<Shared>>,
    Path((version, plural)): Path<(String, String)>,
    Query(params): Params,
) -> Response {
    collection(shared, "", &version, None, &plural, params)
}

/// Create: only core/v1 Events (what the agent writes), named from `generateName` as the
/// API server does, with a uid and resource version; anything else is refused as the real
/// server refuses a verb it does not allow (405).
async fn create_core_namespaced(
    State(shared): State<Arc<Shared>>,
    Path((version, namespace, plural)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    if version != "v1" || plural != "events" {
        return failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!("the double creates only events, not {plural}"),
        );
    }
    let Ok(mut event) = serde_json::from_slice::<Value>(&body) else {
        return failure(StatusCode::BAD_REQUEST, "BadRequest", "not a JSON object");
    };
    if event["kind"] != "Event" || event["involvedObject"].is_null() {
        return failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "an Event needs kind: Event and involvedObject",
        );
    }
    let version_number = {
        let mut store = shared.store();
        store.resource_version += 1;
        store.resource_version
    };
    let mut events = shared.events.lock().unwrap_or_else(|e| e.into_inner());
    let name = match (
        event["metadata"]["name"].as_str(),
        event["metadata"]["generateName"].as_str(),
    ) {
        (Some(name), _) => name.to_string(),
        (None, Some(prefix)) => format!("{prefix}{:05x}", events.len() + 1),
        (None, None) => {
            return failure(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                "metadata.name or generateName is required",
            );
        }
    };
    event["metadata"]["name"] = json!(name);
    event["metadata"]["namespace"] = json!(namespace);
    event["metadata"]["uid"] = json!(format!("event-{version_number}"));
    event["metadata"]["resourceVersion"] = json!(version_number.to_string());
    events.push(event.clone());
    json_response(StatusCode::CREATED, &event)
}

async fn core_namespaced_collection(
    State(shared): State<Arc<Shared>>,
    Path((version, namespace, plural)): Path<(String, String, String)>,
    Query(params): Params,
) -> Response {
    collection(shared, "", &version, Some(namespace), &plural, params)
}

async fn group_collection(
    State(shared): State<Arc<Shared>>,
    Path((group, version, plural)): Path<(String, String, String)>,
    Query(params): Params,
) -> Response {
    collection(shared, &group, &version, None, &plural, params)
}

async fn group_namespaced_collection(
    State(shared): State<Arc<Shared>>,
    Path((group, version, namespace, plural)): Path<(String, String, String, String)>,
    Query(params): Params,
) -> Response {
    collection(shared, &group, &version, Some(namespace), &plural, params)
}

async fn core_item(
    State(shared): State<Arc<Shared>>,
    Path((version, plural, name)): Path<(String, String, String)>,
) -> Response {
    item(&shared, "", &version, None, &plural, &name)
}

async fn core_namespaced_item(
    State(shared): State<Arc<Shared>>,
    Path((version, namespace, plural, name)): Path<(String, String, String, String)>,
) -> Response {
    item(&shared, "", &version, Some(&namespace), &plural, &name)
}

async fn group_item(
    State(shared): State<Arc<Shared>>,
    Path((group, version, plural, name)): Path<(String, String, String, String)>,
) -> Response {
    item(&shared, &group, &version, None, &plural, &name)
}

async fn group_namespaced_item(
    State(shared): State<Arc<Shared>>,
    Path((group, version, namespace, plural, name)): Path<(String, String, String, String, String)>,
) -> Response {
    item(&shared, &group, &version, Some(&namespace), &plural, &name)
}

fn find_resource(store: &Store, group: &str, version: &str, plural: &str) -> Option<usize> {
    store
        .resources
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
}

fn item(
    shared: &Shared,
    group: &str,
    version: &str,
    namespace: Option<&str>,
    plural: &str,
    name: &str,
) -> Response {
    let store = shared.store();
    let Some(resource) = find_resource(&store, group, version, plural) else {
        return failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    let key = (namespace.unwrap_or_default().to_string(), name.to_string());
    match store.objects[resource].get(&key) {
        Some(object) => json_response(StatusCode::OK, object),
        None => failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("{plural} \"{name}\" not found"),
        ),
    }
}

fn collection(
    shared: Arc<Shared>,
    group: &str,
    version: &str,
    namespace: Option<String>,
    plural: &str,
    params: HashMap<String, String>,
) -> Response {
    let store = shared.store();
    let Some(resource) = find_resource(&store, group, version, plural) else {
        return failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    if !store.resources[resource].namespaced && namespace.is_some() {
        return failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    }
    let watching = params.get("watch").is_some_and(|w| w == "true" || w == "1");
    if watching {
        return start_watch(&shared, store, resource, namespace, &params);
    }
    let limit = params
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let after = match params.get("continue").filter(|c| !c.is_empty()) {
        None => None,
        Some(token) => match parse_continue(token) {
            Some((version, key)) if version > store.compacted => Some(key),
            Some(_) => {
                return failure(
                    StatusCode::GONE,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list \
                     result. You can start a new list without the continue parameter.",
                );
            }
            None => {
                return failure(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "continue key is not valid",
                );
            }
        },
    };
    let (items, last, remaining) =
        store.list(resource, namespace.as_deref(), limit, after.as_ref());
    let r = &store.resources[resource];
    let mut metadata = serde_json::Map::new();
    metadata.insert(
        "resourceVersion".into(),
        json!(store.resource_version.to_string()),
    );
    if let Some(last) = last {
        metadata.insert(
            "continue".into(),
            json!(continue_token(store.resource_version, &last)),
        );
        metadata.insert("remainingItemCount".into(), json!(remaining));
    }
    json_response(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", r.kind),
            "apiVersion": r.api_version(),
            "metadata": metadata,
            "items": items,
        }),
    )
}

/// `version/namespace/name`: opaque to clients, as the API server's tokens are.
fn continue_token(version: u64, key: &(String, String)) -> String {
    format!("{version}/{}/{}", key.0, key.1)
}

fn parse_continue(token: &str) -> Option<(u64, (String, String))> {
    let mut parts = token.splitn(3, '/');
    let version = parts.next()?.parse().ok()?;
    let namespace = parts.next()?.to_string();
    let name = parts.next()?.to_string();
    Some((version, (namespace, name)))
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn start_watch(
    shared: &Arc<Shared>,
    store: MutexGuard<'_, Store>,
    resource: usize,
    namespace: Option<String>,
    params: &HashMap<String, String>,
) -> Response {
    let from: Option<u64> = params
        .get("resourceVersion")
        .filter(|v| !v.is_empty())
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0);
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true" || b == "1");
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);
    let r = store.resources[resource].clone();
    // A change is the watch's when it is of its resource and, for a namespaced watch, of
    // its namespace.
    let in_scope = move |change_resource: usize, change_namespace: Option<&str>| {
        change_resource == resource
            && namespace
                .as_deref()
                .is_none_or(|ns| change_namespace == Some(ns))
    };
    // What the stream starts with: the changes after `from`, or everything as ADDED.
    let mut backlog = Vec::new();
    match from {
        Some(version) if version < store.compacted => {
            let gone = status(
                410,
                "Expired",
                &format!(
                    "too old resource version: {version} ({})",
                    store.compacted + 1
                ),
            );
            backlog.push(event_line("ERROR", &gone));
            let stream = futures::stream::iter(backlog.into_iter().map(Ok::<_, std::io::Error>));
            return (
                [(header::CONTENT_TYPE, "application/json")],
                Body::from_stream(stream),
            )
                .into_response();
        }
        Some(version) => {
            for change in store.history.iter().filter(|c| {
                c.resource_version > version && in_scope(c.resource, c.namespace.as_deref())
            }) {
                backlog.push(event_line(change.kind, &change.object));
            }
        }
        None => {
            for ((ns, _), object) in &store.objects[resource] {
                if in_scope(resource, (!ns.is_empty()).then_some(ns.as_str())) {
                    backlog.push(event_line("ADDED", object));
                }
            }
        }
    }
    let mut changes = shared.changes.subscribe();
    let mut hangup = shared.hangup.subscribe();
    let mut running = shared.running.subscribe();
    let bookmark_every = store.bookmark_interval;
    let mut last_version = store.resource_version;
    drop(store);
    let (lines, mut receiver) = tokio::sync::mpsc::channel::<Bytes>(1024);
    tokio::spawn(async move {
        for line in backlog {
            if lines.send(line).await.is_err() {
                return;
            }
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut ticker = tokio::time::interval(bookmark_every);
        ticker.tick().await;
        loop {
            let until_deadline = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = until_deadline => return,
                _ = hangup.changed() => return,
                _ = async { running.wait_for(|r| !*r).await.is_ok() } => return,
                _ = ticker.tick(), if bookmarks => {
                    let bookmark = json!({
                        "kind": r.kind,
                        "apiVersion": r.api_version(),
                        "metadata": {"resourceVersion": last_version.to_string()},
                    });
                    if lines.send(event_line("BOOKMARK", &bookmark)).await.is_err() {
                        return;
                    }
                }
                change = changes.recv() => match change {
                    Ok(change) => {
                        last_version = change.resource_version;
                        if in_scope(change.resource, change.namespace.as_deref()) && lines.send(event_line(change.kind, &change.object)).await.is_err() {
                            return;
                        }
                    }
                    // A watcher that fell this far behind is cut off, as the API server does.
                    Err(_) => return,
                },
            }
        }
    });
    let stream = futures::stream::poll_fn(move |cx| {
        receiver
            .poll_recv(cx)
            .map(|o| o.map(Ok::<_, std::io::Error>))
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}
