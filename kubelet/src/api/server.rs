//! The HTTP server on the kubelet's unix socket: the routes and how it listens.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Path as Params, Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tokio::net::UnixListener;

use super::status::ApiError;
use super::{logs, manifests, pods, Node};
use crate::stream;

/// What every handler gets: the node it serves.
pub type Shared = Arc<dyn Node>;

/// Listen on the unix socket at `path`: a stale socket file is removed, the
/// parent directory created, and the socket made 0600 (root only: it runs
/// commands in containers).
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    let context = |what: &str, e: io::Error| {
        io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| context("creating the directory of", e))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(context("removing the stale socket", e)),
    }
    let listener = UnixListener::bind(path).map_err(|e| context("binding", e))?;
    // The socket is briefly reachable with the umask's mode between bind and
    // chmod; its directory (/run/peapod, root's) is what keeps others out then.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| context("setting the mode of", e))?;
    Ok(listener)
}

/// Serve the local API on `listener` until the task is dropped or the listener fails.
pub async fn serve(listener: UnixListener, node: Arc<dyn Node>) {
    // axum::serve only returns on a listener error it cannot recover from,
    // and it retries accept errors itself.
    let _ = axum::serve(listener, router(node)).await;
}

/// Every route of the local API: the node routes and the local-only ones (apply, delete,
/// events).
pub fn router(node: Arc<dyn Node>) -> Router {
    node_routes()
        .route(
            "/pods/{namespace}/{name}",
            get(pods::get).delete(manifests::delete),
        )
        .route("/events", get(pods::events))
        .route("/manifests", axum::routing::post(manifests::apply))
        .with_state(node)
}

/// The routes the kubelet API on :10250 shares with the local API: health, pods, logs and
/// the streaming ones. Nothing here changes what the node runs.
pub fn node_routes() -> Router<Shared> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(pods::list))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(logs::container_logs),
        )
        .route("/exec/{namespace}/{pod}/{container}", get(exec).post(exec))
        .route(
            "/attach/{namespace}/{pod}/{container}",
            get(attach).post(attach),
        )
        .route(
            "/portForward/{namespace}/{pod}",
            get(port_forward).post(port_forward),
        )
}

/// `GET|POST /exec/{ns}/{pod}/{container}?command=..&command=..&stdin=1&stdout=1&stderr=1&tty=1`,
/// over WebSocket or SPDY/3.1.
async fn exec(
    State(node): State<Shared>,
    Params((namespace, pod, container)): Params<(String, String, String)>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    upgrade: stream::Upgrade,
) -> Result<Response, ApiError> {
    let request = stream::ExecRequest::from_query(query.as_deref().unwrap_or_default())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let found = node.container(&namespace, &pod, &container)?;
    let id = match (found.id, found.running) {
        (Some(id), true) => id,
        _ => {
            return Err(ApiError::bad_request(format!(
                "container {container} is not running in pod {pod}"
            )))
        }
    };
    Ok(upgrade.exec(node.runtime(), id, request))
}

/// `GET|POST /attach/{ns}/{pod}/{container}?stdout=1&stderr=1`: the container's new
/// output, over WebSocket or SPDY/3.1. peapod's containers have no stdin pipe, so
/// `stdin=1` is refused.
async fn attach(
    State(node): State<Shared>,
    Params((namespace, pod, container)): Params<(String, String, String)>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    upgrade: stream::Upgrade,
) -> Result<Response, ApiError> {
    let request = stream::StreamFlags::from_query(query.as_deref().unwrap_or_default())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if request.stdin {
        return Err(ApiError::bad_request(format!(
            "cannot attach to the stdin of container {container} in pod {pod}: peapod runs \
             containers without a stdin pipe (attach streams their output only; drop -i/--stdin)"
        )));
    }
    let found = node.container(&namespace, &pod, &container)?;
    let (Some(log_path), true) = (found.log_path, found.running) else {
        return Err(ApiError::bad_request(format!(
            "container {container} is not running in pod {pod}"
        )));
    };
    let target = stream::attach::AttachTarget {
        log_path,
        exit_file: found.exit_file,
    };
    Ok(upgrade.attach(target, request))
}

/// `GET|POST /portForward/{ns}/{pod}[?port=N]`: one connection to port N over a
/// WebSocket, or, over SPDY/3.1, any number of connections naming their ports.
async fn port_forward(
    State(node): State<Shared>,
    Params((namespace, pod)): Params<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    upgrade: stream::Upgrade,
) -> Result<Response, ApiError> {
    let port = match query.iter().find(|(k, _)| k == "port") {
        Some((_, port)) => Some(
            port.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| ApiError::bad_request(format!("invalid port {port:?}")))?,
        ),
        None => None,
    };
    let netns = node.netns(&namespace, &pod)?;
    upgrade
        .port_forward(netns, port)
        .map_err(ApiError::bad_request)
}

/// A query flag as the kubelet reads it: `1` and `true` (any case) are set.
pub(super) fn truthy(value: &str) -> bool {
    value == "1" || value.eq_ignore_ascii_case("true")
}
