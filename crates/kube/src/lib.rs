//! Bulkhead's edge to the Kubernetes API: the only crate that holds the kube client and tokio
//! for it. The core stays synchronous: this crate turns API objects into what the core already
//! reads, so each object keeps one lowering path.
//!
//! * [`read_cluster`]: the kinds Bulkhead reads, listed in pages (`limit`/`continue`), as
//!   loader [`Input`]s named after the object (`live:NetworkPolicy/shop/web`), so every
//!   command's diagnostics are those of files.
//! * [`KubernetesSource`] (module [`watch`]): the agent's source, watchers that feed the live
//!   index.

pub mod kinds;
pub mod watch;

pub use kinds::{LiveKind, WANTED};
pub use watch::{BREAK_GLASS, KubernetesSource};

use bulkhead_k8s::Input;
use kube::api::{Api, DynamicObject, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::ApiResource;
use std::path::PathBuf;

/// Which cluster to talk to: the usual kubeconfig lookup (`$KUBECONFIG`, `~/.kube/config`,
/// then the in-cluster service account) unless a file or a context is named.
#[derive(Clone, Debug, Default)]
pub struct Target {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("no cluster to talk to: {0}")]
    NoConfig(String),
    #[error("cannot reach the Kubernetes API at {server}: {message}")]
    Unreachable { server: String, message: String },
    #[error("the Kubernetes API at {server} refused to list {what}: {message}")]
    Api {
        server: String,
        what: String,
        message: String,
    },
    #[error("cannot start the client runtime: {0}")]
    Runtime(String),
}

/// A client for `target`, and the server's address for messages.
pub async fn connect(target: &Target) -> Result<(kube::Client, String), Error> {
    let options = KubeConfigOptions {
        context: target.context.clone(),
        ..Default::default()
    };
    let config = match &target.kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(|e| Error::Kubeconfig {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| Error::Kubeconfig {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?
        }
        None if target.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| Error::NoConfig(e.to_string()))?,
        None => kube::Config::infer()
            .await
            .map_err(|e| Error::NoConfig(e.to_string()))?,
    };
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).map_err(|e| Error::Unreachable {
        server: server.clone(),
        message: e.to_string(),
    })?;
    Ok((client, server))
}

/// What [`read_cluster`] brought back.
#[derive(Debug, Default)]
pub struct LiveRead {
    /// One input per object, in kind order, then namespace/name.
    pub inputs: Vec<Input>,
    /// The server's address.
    pub server: String,
    /// Kinds the cluster does not serve (`AdminNetworkPolicy (policy.networking.k8s.io)`).
    pub absent: Vec<String>,
}

/// How far a read has come, for a progress line.
#[derive(Clone, Debug)]
pub struct Progress<'a> {
    pub kind: &'a str,
    pub listed: usize,
    pub total: usize,
}

/// Page size of a list: what `kubectl` uses.
pub const PAGE: u32 = 500;

/// Reads every kind Bulkhead knows from the cluster (synchronous: runs its own runtime).
pub fn read_cluster(
    target: &Target,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<LiveRead, Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(e.to_string()))?;
    runtime.block_on(read_cluster_async(target, progress))
}

async fn read_cluster_async(
    target: &Target,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<LiveRead, Error> {
    let (client, server) = connect(target).await?;
    let (kinds, absent) = kinds::discover(&client, &server, &WANTED).await?;
    let mut read = LiveRead {
        server: server.clone(),
        absent,
        ..Default::default()
    };
    for kind in &kinds {
        list_kind(&client, &server, kind, &mut read.inputs, progress).await?;
    }
    Ok(read)
}

async fn list_kind(
    client: &kube::Client,
    server: &str,
    kind: &LiveKind,
    inputs: &mut Vec<Input>,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<(), Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind.resource);
    let mut params = ListParams::default().limit(PAGE);
    let mut listed = 0;
    loop {
        let page = api
            .list(&params)
            .await
            .map_err(|e| list_error(server, kind, e))?;
        let remaining = page.metadata.remaining_item_count.unwrap_or(0).max(0) as usize;
        for object in page.items {
            inputs.push(object_input(&kind.resource, object));
            listed += 1;
        }
        progress(Progress {
            kind: &kind.resource.kind,
            listed,
            total: listed + remaining,
        });
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

fn list_error(server: &str, kind: &LiveKind, error: kube::Error) -> Error {
    let what = format!("{} ({})", kind.resource.plural, kind.resource.api_version);
    match error {
        kube::Error::Api(status) => Error::Api {
            server: server.to_string(),
            what,
            message: format!("{} ({})", status.message, status.code),
        },
        other => Error::Unreachable {
            server: server.to_string(),
            message: other.to_string(),
        },
    }
}

/// The input name of an object read from the API: it names the object, as a file path names a
/// file (`live:Pod/shop/web-1`, `live:GlobalNetworkPolicy/deny-all`).
pub fn input_name(kind: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("live:{kind}/{ns}/{name}"),
        None => format!("live:{kind}/{name}"),
    }
}

/// One object as the loader reads it: the API sends list items without kind and apiVersion,
/// so they are put back; `managedFields` are bookkeeping of the server and dropped.
pub fn object_input(resource: &ApiResource, mut object: DynamicObject) -> Input {
    object.types = Some(kube::api::TypeMeta {
        api_version: resource.api_version.clone(),
        kind: resource.kind.clone(),
    });
    object.metadata.managed_fields = None;
    let name = input_name(
        &resource.kind,
        object.metadata.namespace.as_deref(),
        object.metadata.name.as_deref().unwrap_or(""),
    );
    // Pretty-printed: a diagnostic's line then points at one field of the object.
    let text = serde_json::to_string_pretty(&object).unwrap_or_default();
    Input::new(name, text)
}
