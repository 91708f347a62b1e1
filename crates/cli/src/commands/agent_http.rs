//! The running agent's HTTP endpoints (axum, at the edge): `/healthz` (the loop is turning),
//! `/readyz` (the first full sync is in the kernel), `/metrics` (Prometheus text, rendered by
//! the loop on request). And the log lines of a source going down and coming back.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use bulkhead_agent::status::Published;
use std::net::SocketAddr;
use std::time::Duration;

/// A loop that has not turned for this long is not alive (the longest commit at XL is
/// seconds; a start-up waiting for the first list has not turned yet and counts as alive).
const STUCK: Duration = Duration::from_secs(60);

/// Starts serving on `address` from a thread of its own; fails at once if the address cannot
/// be bound (a second agent on the node, a wrong address).
pub fn serve(address: SocketAddr, published: Published) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(address)
        .map_err(|e| anyhow::anyhow!("--listen {address}: {e}"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    eprintln!("serving /healthz, /readyz and /metrics on http://{bound}");
    std::thread::Builder::new()
        .name("agent-http".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("ERROR: the HTTP endpoints cannot start: {e}");
                    return;
                }
            };
            runtime.block_on(async move {
                let app = Router::new()
                    .route("/healthz", get(healthz))
                    .route("/readyz", get(readyz))
                    .route("/metrics", get(metrics))
                    .with_state(published);
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => {
                        if let Err(e) = axum::serve(listener, app).await {
                            eprintln!("ERROR: the HTTP endpoints stopped: {e}");
                        }
                    }
                    Err(e) => eprintln!("ERROR: the HTTP endpoints cannot start: {e}"),
                }
            });
        })?;
    Ok(())
}

async fn healthz(State(published): State<Published>) -> impl IntoResponse {
    let turned = published.status().last_turn;
    match turned {
        Some(at) if at.elapsed() > STUCK => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the agent's loop has not turned for {} s\n",
                at.elapsed().as_secs()
            ),
        ),
        _ => (StatusCode::OK, "ok\n".to_string()),
    }
}

async fn readyz(State(published): State<Published>) -> impl IntoResponse {
    let status = published.status();
    if status.ready {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the first full sync is not in the kernel yet\n".to_string(),
        )
    }
}

async fn metrics(State(published): State<Published>) -> impl IntoResponse {
    let text = tokio::task::spawn_blocking(move || published.metrics(Duration::from_secs(2)))
        .await
        .ok()
        .flatten();
    match text {
        Some(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no metrics yet: the agent has not started its loop\n",
        )
            .into_response(),
    }
}

/// Logs when `what` (the source) goes down and comes back: while it is down the kernel keeps
/// the last good ruleset.
pub fn log_source_health(published: Published, what: &'static str) {
    std::thread::spawn(move || {
        let mut was_up: Option<bool> = None;
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let (up, error, ever) = {
                let s = published.status();
                (
                    s.source.connected,
                    s.source.last_error.clone(),
                    s.source.relists > 0 || s.source.failures > 0,
                )
            };
            if !ever {
                continue;
            }
            match (was_up, up) {
                (Some(true) | None, false) => eprintln!(
                    "ERROR: {what} cannot be reached ({}); keeping the last good ruleset in force",
                    error.as_deref().unwrap_or("no detail")
                ),
                (Some(false), true) => eprintln!("{what} is reachable again; following it"),
                _ => {}
            }
            was_up = Some(up);
        }
    });
}
