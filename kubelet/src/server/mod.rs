//! The kubelet API on port 10250 over TLS, as the API server and kubectl reach it:
//! health, pods, container logs, exec, attach and port-forward (the routes shared with the
//! local API, [`crate::api::server::node_routes`]), `/stats/summary` and `/metrics`,
//! behind authentication and authorisation as upstream's kubelet does them.
//!
//! - [`tls`]: the serving certificate (given, or self-signed in `<root>/pki`) and client
//!   certificates verified against the client CA.
//! - [`authn`]: who asks (certificate, bearer token via TokenReview, anonymous).
//! - [`authz`]: may they (SubjectAccessReview on `nodes/<subresource>`).
//! - [`review`]: the [`Reviewer`] seam to the API server's reviews, with an in-memory one.
//! - [`stats`] ([`usage`], [`summary`]): `/stats/summary`; [`metrics`]: Prometheus text.
//! - [`cache`]: review answers kept briefly.
//!
//! Local-only routes (apply, delete, events) are not served here: what the node runs is
//! decided by the API server.

pub mod authn;
pub mod authz;
pub mod cache;
pub mod metrics;
pub mod review;
pub mod stats;
pub mod summary;
pub mod tls;
pub mod usage;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use chrono::Utc;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::api::Node;
pub use authz::Mode;
pub use review::{KubeReviewer, MemoryReviewer, Reviewer, User};

/// How long a client may take over the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often cpu is sampled in the background, so every scrape has a rate.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// The kubelet API's settings, from flags or a KubeletConfiguration (same names upstream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `--address` (`address`): where to listen [0.0.0.0].
    pub address: IpAddr,
    /// `--port` (`port`): 10250; 0 disables the server.
    pub port: u16,
    /// `--tls-cert-file` (`tlsCertFile`); None: self-signed in `cert_dir`.
    pub tls_cert_file: Option<PathBuf>,
    /// `--tls-private-key-file` (`tlsPrivateKeyFile`).
    pub tls_private_key_file: Option<PathBuf>,
    /// Where the self-signed certificate is kept (`<--root>/pki`).
    pub cert_dir: PathBuf,
    /// `--client-ca-file` (`authentication.x509.clientCAFile`).
    pub client_ca_file: Option<PathBuf>,
    /// `--anonymous-auth` (`authentication.anonymous.enabled`); off here by default.
    pub anonymous_auth: bool,
    /// `--authentication-token-webhook` (`authentication.webhook.enabled`).
    pub token_webhook: bool,
    /// `--authorization-mode` (`authorization.mode`).
    pub authorization_mode: Mode,
    /// The node's name (authorisation's `nodes/<name>`, the certificate's name).
    pub node_name: String,
    /// The node's addresses (the self-signed certificate's IP SANs).
    pub node_ips: Vec<IpAddr>,
    /// The kubelet's root (the node filesystem of `/stats/summary`).
    pub root_dir: PathBuf,
    /// The image store (the image filesystem of `/stats/summary`).
    pub image_dir: PathBuf,
}

impl Settings {
    /// Upstream's defaults for the node `node_name` with its data under `root_dir`:
    /// 0.0.0.0:10250, self-signed, webhook authentication and authorisation when there
    /// is an API server (`has_client`), AlwaysAllow otherwise.
    pub fn new(node_name: &str, root_dir: &std::path::Path, has_client: bool) -> Settings {
        Settings {
            address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 10250,
            tls_cert_file: None,
            tls_private_key_file: None,
            cert_dir: root_dir.join("pki"),
            client_ca_file: None,
            anonymous_auth: false,
            token_webhook: has_client,
            authorization_mode: if has_client {
                Mode::Webhook
            } else {
                Mode::AlwaysAllow
            },
            node_name: node_name.into(),
            node_ips: Vec::new(),
            root_dir: root_dir.to_path_buf(),
            image_dir: root_dir.to_path_buf(),
        }
    }

    /// Whether the server runs: a port, and someone to serve (an API server to review
    /// tokens and access, or a client CA to verify certificates against).
    pub fn enabled(&self, has_client: bool) -> bool {
        self.port != 0 && (has_client || self.client_ca_file.is_some())
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The TLS setup failed.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The address could not be bound.
    #[error("listening on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The settings contradict each other.
    #[error("{0}")]
    Settings(String),
}

/// The running server.
pub struct Running {
    /// Where it listens (the bound port when `port` was 0).
    pub address: SocketAddr,
    /// The accept loop; aborting it stops the server.
    pub task: JoinHandle<()>,
    /// The background cpu sampler.
    pub sampler: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
        self.sampler.abort();
    }
}

/// Everything a request is checked and served with.
struct Server {
    node: Arc<dyn Node>,
    authn: authn::Authenticator,
    authz: authz::Authorizer,
    stats: stats::Stats,
    requests: metrics::Requests,
}

/// Start the kubelet API: bind `address:port` (port 0: any free port, for tests), set up
/// TLS and serve `node`; `reviewer` (the API server's reviews) is needed for token
/// authentication and webhook authorisation.
pub async fn start(
    settings: Settings,
    node: Arc<dyn Node>,
    reviewer: Option<Arc<dyn Reviewer>>,
) -> Result<Running, ServerError> {
    if reviewer.is_none() && settings.authorization_mode == Mode::Webhook {
        return Err(ServerError::Settings(
            "--authorization-mode=Webhook needs an API server (--kubeconfig)".into(),
        ));
    }
    let serving = tls::Serving {
        files: settings
            .tls_cert_file
            .clone()
            .zip(settings.tls_private_key_file.clone()),
        cert_dir: settings.cert_dir.clone(),
        names: vec![settings.node_name.clone(), "localhost".into()],
        ips: settings
            .node_ips
            .iter()
            .copied()
            .chain([IpAddr::V4(Ipv4Addr::LOCALHOST)])
            .collect(),
    };
    if settings.tls_cert_file.is_some() != settings.tls_private_key_file.is_some() {
        return Err(ServerError::Settings(
            "--tls-cert-file and --tls-private-key-file go together".into(),
        ));
    }
    let config = tls::server_config(&serving, settings.client_ca_file.as_deref())?;
    let address = SocketAddr::new(settings.address, settings.port);
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| ServerError::Bind { address, source })?;
    let address = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { address, source })?;
    let token_reviewer = reviewer.clone().filter(|_| settings.token_webhook);
    let server = Arc::new(Server {
        node,
        authn: authn::Authenticator::new(token_reviewer, settings.anonymous_auth),
        authz: authz::Authorizer::new(settings.authorization_mode, &settings.node_name, reviewer),
        stats: stats::Stats::new(
            stats::Host::detect(&settings.root_dir, &settings.image_dir),
            &settings.node_name,
            Utc::now(),
        ),
        requests: metrics::Requests::default(),
    });
    let sampler = tokio::spawn(sample(server.clone()));
    let task = tokio::spawn(serve(listener, TlsAcceptor::from(config), app(server)));
    tracing::info!(%address, "kubelet API listening");
    Ok(Running {
        address,
        task,
        sampler,
    })
}

/// Read the stats now and then, so rates are ready for the first scrape.
async fn sample(server: Arc<Server>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tick.tick().await;
        let server = server.clone();
        let _ = tokio::task::spawn_blocking(move || {
            server.stats.summary(&server.node.pod_cgroups(), Utc::now())
        })
        .await;
    }
}

/// The routes, behind authentication and authorisation.
fn app(server: Arc<Server>) -> Router {
    let own = Router::new()
        .route("/stats/summary", get(stats_summary))
        .route("/metrics", get(kubelet_metrics))
        .route("/metrics/resource", get(resource_metrics))
        .with_state(server.clone());
    crate::api::server::node_routes()
        .with_state(server.node.clone())
        .merge(own)
        .layer(axum::middleware::from_fn_with_state(server, guard))
}

/// Authenticate and authorise a request, then serve it; count it either way.
async fn guard(State(server): State<Arc<Server>>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    server.requests.record(&method, &path);
    let cert = request
        .extensions()
        .get::<authn::ClientCert>()
        .and_then(|c| c.0.clone());
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let user = match server
        .authn
        .authenticate(cert.as_ref(), authorization)
        .await
    {
        Ok(user) => user,
        Err(e) => {
            if let authn::AuthnError::Review(review) = &e {
                tracing::warn!("authenticating a request for {path}: {review}");
            }
            return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
        }
    };
    match server.authz.authorize(&user, &method, &path).await {
        Ok(()) => next.run(request).await,
        Err(e @ authz::AuthzError::Forbidden { .. }) => {
            (StatusCode::FORBIDDEN, e.to_string()).into_response()
        }
        Err(e) => {
            tracing::warn!("{e}");
            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
    }
}

async fn stats_summary(State(server): State<Arc<Server>>) -> Response {
    match tokio::task::spawn_blocking(move || {
        server.stats.summary(&server.node.pod_cgroups(), Utc::now())
    })
    .await
    {
        Ok(summary) => Json(summary).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading stats: {e}"),
        )
            .into_response(),
    }
}

async fn kubelet_metrics(State(server): State<Arc<Server>>) -> Response {
    let text = tokio::task::spawn_blocking(move || {
        let running = server.node.pod_cgroups().len();
        metrics::kubelet_metrics(
            &server.node.node_name(),
            &server.node.pods(),
            running,
            &server.requests,
            std::path::Path::new("/proc/self"),
        )
    })
    .await;
    text_response(text)
}

async fn resource_metrics(State(server): State<Arc<Server>>) -> Response {
    let text = tokio::task::spawn_blocking(move || {
        let now = Utc::now();
        let summary = server.stats.summary(&server.node.pod_cgroups(), now);
        metrics::resource_metrics(&summary, now)
    })
    .await;
    text_response(text)
}

fn text_response(text: Result<String, tokio::task::JoinError>) -> Response {
    match text {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading metrics: {e}"),
        )
            .into_response(),
    }
}

/// Accept TLS connections on `listener` and serve `app` on each (HTTP/1.1 with upgrades,
/// for exec, attach and port-forward), each request knowing its connection's verified
/// client certificate.
pub async fn serve(listener: TcpListener, acceptor: TlsAcceptor, app: Router) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!("kubelet API accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "kubelet API TLS handshake: {e}");
                    return;
                }
                Err(_) => return,
            };
            let cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(tls::certificate_user);
            let app = app.layer(Extension(authn::ClientCert(cert)));
            let service = hyper_util::service::TowerToHyperService::new(app);
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades();
            if let Err(e) = connection.await {
                tracing::debug!(%peer, "kubelet API connection: {e}");
            }
        });
    }
}
