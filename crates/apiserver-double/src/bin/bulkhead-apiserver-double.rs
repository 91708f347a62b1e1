//! Serves a directory of manifests as a loopback Kubernetes API server (a test double: see the
//! library). Prints the kubeconfig path once listening, then serves until killed.
//!
//! Example:
//!   bulkhead-apiserver-double --manifests examples/shop --kubeconfig /tmp/kubeconfig

use bulkhead_apiserver_double::{ApiServer, ResourceType};
use clap::Parser;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "A loopback Kubernetes API server serving manifests (test double)"
)]
struct Args {
    /// Manifests to serve (files or directories, as `bulkhead check` reads them).
    #[arg(long, value_name = "PATH")]
    manifests: Vec<PathBuf>,
    /// Where to write a kubeconfig that points at the server.
    #[arg(long, value_name = "FILE")]
    kubeconfig: PathBuf,
    /// Loopback address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Serve Calico's kinds as crd.projectcalico.org/v1 CRDs instead of projectcalico.org/v3.
    #[arg(long)]
    calico_crds: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let kinds = if args.calico_crds {
        ResourceType::bulkhead_kinds_with_calico_crds()
    } else {
        ResourceType::bulkhead_kinds()
    };
    let server = ApiServer::start_on(kinds, args.listen)?;
    let (served, skipped) = server.apply_manifests(&args.manifests)?;
    if !skipped.is_empty() {
        eprintln!("not served, skipped: {}", skipped.join(", "));
    }
    std::fs::write(&args.kubeconfig, server.kubeconfig())?;
    eprintln!(
        "serving {served} object(s) on {}; kubeconfig: {}",
        server.url(),
        args.kubeconfig.display()
    );
    loop {
        std::thread::park();
    }
}
