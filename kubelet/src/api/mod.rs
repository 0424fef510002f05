//! The kubelet's local API on a unix socket (`/run/peapod/kubelet.sock`), used by the
//! `peapod` CLI.
//!
//! - [`node`]: the seam to the pod manager ([`Node`]).

pub mod node;

pub use node::{ContainerRef, Node, NodeError, RuntimeRef};

// TEMPORARY (lead's scaffold until the api branch merges): healthz and /pods only.
use std::sync::Arc;

/// Listen on `path` (0600), replacing a stale socket.
pub fn bind(path: &std::path::Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serve the API.
pub async fn serve(listener: tokio::net::UnixListener, node: Arc<dyn Node>) {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/pods",
            get(move || {
                let node = node.clone();
                async move {
                    axum::Json(serde_json::json!({"kind":"PodList","apiVersion":"v1","items": node.pods()}))
                }
            }),
        );
    let _ = axum::serve(listener, app).await;
}
