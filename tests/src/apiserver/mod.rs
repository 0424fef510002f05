//! [`ApiServer`]: a FAKE Kubernetes API server — a test double, not an API server — for
//! testing peapod-kubelet's cluster side with kube-rs and the real `kubectl`, since no
//! kube-apiserver can run in CI.
//!
//! It follows the real API's semantics where the kubelet and kubectl can tell: objects
//! get uid, creationTimestamp and a global resourceVersion; 404/409/410 come as `Status`
//! bodies; PUT with a stale resourceVersion is a 409 Conflict; `status` subresources
//! alone change `.status`; list + watch (replayed from a bounded event log, 410 Expired
//! before it, BOOKMARKs, selector-aware DELETED); merge, strategic-merge, JSON and apply
//! patches; graceful pod deletion with preconditions; discovery and server-side Tables for
//! `kubectl get`; TokenReview, SubjectAccessReview and TokenRequest from a test-set
//! [`Policy`](reviews::Policy); and the upgrade-aware proxy of pod logs, exec, attach and
//! port-forward to kubelets over TLS with the kubelet-client certificate of its [`Pki`].
//!
//! Where it is simpler than the real one: plain HTTP on loopback; its own clients are
//! authenticated by bearer token only, and only when asked
//! ([`require_auth`](ApiServer::require_auth)), never authorised (no Node authorizer,
//! no RBAC); JSON and YAML bodies only (415 for protobuf); no admission beyond pod defaults, the
//! ServiceAccount token volume and DefaultTolerationSeconds; server-side apply is a
//! strategic merge (no field managers); `limit`/`continue` are ignored (lists are
//! whole); no aggregated discovery and no OpenAPI (kubectl needs `--validate=false` to
//! create objects); no controllers but the namespace ones (`default` ServiceAccount,
//! `kube-root-ca.crt`).
//!
//! # Use
//! ```no_run
//! # use peapod_tests::apiserver::ApiServer;
//! let server = ApiServer::start();
//! server.add_token("node-token", "system:node:n1", &["system:nodes"]);
//! let kubeconfig = server.kubeconfig("node-token"); // for `peapod-kubelet --kubeconfig`
//! let out = server.kubectl(&["get", "pods", "-o", "wide"]); // the real kubectl, as an admin
//! # let _ = (kubeconfig, out);
//! ```
//! By hand: `kubectl --kubeconfig <server.kubeconfig(token)> get nodes`; creating objects
//! needs `--validate=false` (no OpenAPI).
//!
//! # Layout
//! - [`store`]: objects, resourceVersion, event log, registry semantics; [`admission`]:
//!   create-time defaults.
//! - [`watch`], [`selectors`], [`patch`]: watches, label/field selectors, patch formats.
//! - [`discovery`], [`table`]: what kubectl reads first, and `kubectl get` printing.
//! - [`reviews`]: tokens and authorisation; [`proxy`]: the kubelet proxy, with
//!   [`tunnel`] unwrapping kubectl's WebSocket port-forward tunnel into SPDY.
//! - [`server`]: paths and verbs; [`query`]: query strings; [`resources`]: the served types; [`status`]: errors.

pub mod admission;
pub mod discovery;
pub mod patch;
pub mod proxy;
pub mod query;
pub mod resources;
pub mod reviews;
pub mod selectors;
pub mod server;
pub mod status;
pub mod store;
pub mod table;
pub mod tunnel;
pub mod watch;

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;
use tokio::runtime::Runtime;

use crate::pki::Pki;
use reviews::{Policy, Rule};
use server::{RequestRecord, Shared};
use store::{DeleteOptions, Store, Target};

/// How long [`ApiServer::kubectl`] lets kubectl run.
pub const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);
/// How often watches that allow bookmarks get one (the real server: about a minute).
pub const BOOKMARK_EVERY: Duration = Duration::from_secs(1);

/// A running fake API server on `127.0.0.1:<port>`, with its own tokio runtime; stops
/// (every connection, watch and proxied stream) on drop.
pub struct ApiServer {
    shared: Arc<Shared>,
    pki: Pki,
    port: u16,
    runtime: Option<Runtime>,
    dir: TempDir,
    kubeconfigs: AtomicUsize,
}

impl ApiServer {
    /// Starts a fake API server on a free loopback port. Panics if it cannot (a test
    /// harness has nothing better to do).
    pub fn start() -> ApiServer {
        ApiServer::try_start().unwrap_or_else(|e| panic!("starting the fake API server: {e}"))
    }

    /// Starts a fake API server on a free loopback port.
    pub fn try_start() -> Result<ApiServer, String> {
        let pki = Pki::new()?;
        let dir = tempfile::Builder::new()
            .prefix("peapod-apiserver-")
            .tempdir()
            .map_err(|e| format!("creating the API server's temp dir: {e}"))?;
        let shared = Arc::new(Shared {
            store: Arc::new(Mutex::new(Store::new(pki.ca_pem()))),
            policy: Mutex::new(Policy::default()),
            kubelet: proxy::KubeletClient::new(pki.kubelet_client())?,
            bookmark_every: BOOKMARK_EVERY,
            requests: Mutex::new(Vec::new()),
            require_auth: AtomicBool::new(false),
        });
        let (runtime, port) = listen(&shared, 0)?;
        Ok(ApiServer {
            shared,
            pki,
            port,
            runtime: Some(runtime),
            dir,
            kubeconfigs: AtomicUsize::new(0),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on (the same across [`restart`](ApiServer::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA, and the kubelet-client certificate the proxy presents.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// Writes a kubeconfig for this server with bearer `token` (namespace `default`).
    pub fn kubeconfig(&self, token: &str) -> PathBuf {
        let n = self.kubeconfigs.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.path().join(format!("kubeconfig-{n}"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: user\n    namespace: default\n\
             current-context: fake\nusers:\n- name: user\n  user:\n    token: {token:?}\n",
            self.url()
        );
        if let Err(e) = fs::write(&path, text) {
            panic!("writing {}: {e}", path.display());
        }
        path
    }

    /// A `kubectl` command (`$KUBECTL`, else `kubectl` on PATH) with `args`, a
    /// kubeconfig for an admin token and a discovery cache of this server's own.
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        let admin = "peapod-test-admin-token";
        self.add_token(admin, "test-admin", &["system:masters"]);
        let mut command =
            Command::new(std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into()));
        command
            .arg("--kubeconfig")
            .arg(self.kubeconfig(admin))
            .arg("--cache-dir")
            .arg(self.dir.path().join("kube-cache"))
            .args(args)
            .stdin(Stdio::null());
        command
    }

    /// Runs `kubectl args...` against this server and waits for it (at most
    /// [`KUBECTL_TIMEOUT`]; it is killed after that).
    pub fn kubectl(&self, args: &[&str]) -> Output {
        let child = self
            .kubectl_command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running kubectl {args:?}: {e}"));
        wait_output(child, KUBECTL_TIMEOUT, args)
    }

    /// Stops listening and drops every connection (open watches and proxied streams
    /// too), then listens again on the same port with the same objects and
    /// resourceVersion counter: clients must reconnect and rewatch.
    pub fn restart(&mut self) {
        self.stop();
        self.resume();
    }

    /// Stops listening and drops every connection; the objects stay. Clients see
    /// connection refused until [`resume`](ApiServer::resume).
    pub fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Not waiting here keeps this usable from async tests; `resume` waits for the
            // old listener to be gone.
            runtime.shutdown_background();
        }
    }

    /// Listens again on the same port after [`stop`](ApiServer::stop) (no-op if running).
    pub fn resume(&mut self) {
        if self.runtime.is_some() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match listen(&self.shared, self.port) {
                Ok((runtime, _)) => {
                    self.runtime = Some(runtime);
                    return;
                }
                Err(e) if Instant::now() > deadline => {
                    panic!("listening again on port {}: {e}", self.port)
                }
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Every request received so far (method, path, query, user, content type).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Whether requests need a bearer token known from [`add_token`](ApiServer::add_token)
    /// or a TokenRequest (else 401 Unauthorized); off by default (any token is accepted).
    pub fn require_auth(&self, required: bool) {
        self.shared.require_auth.store(required, Ordering::Relaxed);
    }

    /// Forgets the event log: watches from any earlier resourceVersion get 410 Expired.
    pub fn compact(&self) {
        self.shared.store().compact();
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().resource_version()
    }

    /// Whether new pods get the ServiceAccount admission's `kube-api-access-*` volume
    /// (on by default, as in a real cluster).
    pub fn set_service_account_token_volume(&self, inject: bool) {
        self.shared.store().inject_service_account_token = inject;
    }

    /// `token` authenticates as `user` in `groups` (TokenReview).
    pub fn add_token(&self, token: &str, user: &str, groups: &[&str]) {
        self.shared.policy().add_token(token, user, groups);
    }

    /// Every SubjectAccessReview of `user` is denied.
    pub fn deny(&self, user: &str) {
        self.shared.policy().deny(user);
    }

    /// SubjectAccessReviews matching `rule` are allowed.
    pub fn allow(&self, rule: Rule) {
        self.shared.policy().allow(rule);
    }

    /// The object at an API path (`/api/v1/namespaces/default/pods/web`), or the items
    /// of a collection path as a JSON array.
    pub fn get(&self, path: &str) -> Option<Value> {
        let loc = server::locate(path)?;
        let store = self.shared.store();
        match loc.name {
            Some(name) => store
                .get(loc.resource, loc.namespace.as_deref(), &name)
                .ok(),
            None => {
                let all = selectors::Selector::default();
                let items = store.list(loc.resource, loc.namespace.as_deref(), &all, &all);
                Some(Value::Array(items))
            }
        }
    }

    /// The items of a collection path (empty if none or not a collection).
    pub fn list(&self, path: &str) -> Vec<Value> {
        match self.get(path) {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        }
    }

    /// Node `name`.
    pub fn node(&self, name: &str) -> Option<Value> {
        self.get(&format!("/api/v1/nodes/{name}"))
    }

    /// Pod `name` in `namespace`.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Value> {
        self.get(&format!("/api/v1/namespaces/{namespace}/pods/{name}"))
    }

    /// The node lease of `node` (`kube-node-lease/<node>`).
    pub fn lease(&self, node: &str) -> Option<Value> {
        self.get(&format!(
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}"
        ))
    }

    /// The core/v1 events in `namespace`.
    pub fn events(&self, namespace: &str) -> Vec<Value> {
        self.list(&format!("/api/v1/namespaces/{namespace}/events"))
    }

    /// Creates an object from YAML or JSON (its kind and apiVersion say where).
    pub fn create(&self, yaml_or_json: &str) -> Result<Value, String> {
        let object: Value = yaml_serde::from_str(yaml_or_json)
            .map_err(|e| format!("the object is not YAML or JSON: {e}"))?;
        let api_version = object["apiVersion"].as_str().unwrap_or("");
        let kind = object["kind"].as_str().unwrap_or("");
        let resource = resources::by_kind(api_version, kind)
            .ok_or_else(|| format!("the fake serves no {kind} in {api_version:?}"))?;
        let ns = object["metadata"]["namespace"].as_str().map(str::to_string);
        self.shared
            .store()
            .create(resource, ns.as_deref(), object)
            .map_err(|e| e.message)
    }

    /// Replaces the `.status` of the object at `path` (as its controller or kubelet would).
    pub fn set_status(&self, path: &str, status: Value) -> Result<Value, String> {
        let loc = server::locate(path).ok_or_else(|| format!("no resource at {path}"))?;
        let name = loc.name.ok_or_else(|| format!("{path} names no object"))?;
        let mut store = self.shared.store();
        let ns = loc.namespace.as_deref();
        let mut object = store.get(loc.resource, ns, &name).map_err(|e| e.message)?;
        object["status"] = status;
        store
            .update(loc.resource, ns, &name, object, Target::Status)
            .map_err(|e| e.message)
    }

    /// Deletes the object at `path` with `grace` seconds (None: its default).
    pub fn delete(&self, path: &str, grace: Option<i64>) -> Result<Value, String> {
        let loc = server::locate(path).ok_or_else(|| format!("no resource at {path}"))?;
        let name = loc.name.ok_or_else(|| format!("{path} names no object"))?;
        let options = DeleteOptions {
            grace,
            ..DeleteOptions::default()
        };
        self.shared
            .store()
            .delete(loc.resource, loc.namespace.as_deref(), &name, &options)
            .map_err(|e| e.message)
    }

    /// Polls the object at `path` until `ready` holds (returning it) or `timeout` passes.
    pub fn wait_for(
        &self,
        path: &str,
        timeout: Duration,
        ready: impl Fn(Option<&Value>) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let object = self.get(path);
            if ready(object.as_ref()) {
                return object;
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the object at `path` is gone; false on timeout.
    pub fn wait_gone(&self, path: &str, timeout: Duration) -> bool {
        self.wait_for(path, timeout, |o| o.is_none()).is_none() && self.get(path).is_none()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A runtime serving `shared` on `127.0.0.1:<port>` (0: any free port).
fn listen(shared: &Arc<Shared>, port: u16) -> Result<(Runtime, u16), String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    // std's bind sets SO_REUSEADDR: restarts listen on the same port while old
    // connections linger in TIME_WAIT. Binding here, outside any runtime, lets tests
    // start and restart the server from async code too.
    let listener =
        std::net::TcpListener::bind(address).map_err(|e| format!("listening on {address}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("making the listener non-blocking: {e}"))?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("the listening address: {e}"))?
        .port();
    // Built after binding: a runtime dropped on a failed bind would panic in async tests.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("fake-apiserver")
        .enable_all()
        .build()
        .map_err(|e| format!("building the API server runtime: {e}"))?;
    let app = server::router(shared.clone(), format!("127.0.0.1:{port}"));
    runtime.spawn(async move {
        // Serving ends only when the runtime shuts down (or the socket is unusable).
        if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
            let _ = axum::serve(listener, app).await;
        }
    });
    Ok((runtime, port))
}

/// Waits for `child`, killing it after `timeout`; its output is read as it comes so a
/// full pipe never stalls it.
fn wait_output(mut child: std::process::Child, timeout: Duration, args: &[&str]) -> Output {
    fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                // A read error ends the output early; what was read is kept.
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    }
    let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                match child.wait() {
                    Ok(status) => break status,
                    Err(e) => panic!("waiting for the killed kubectl {args:?}: {e}"),
                }
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for kubectl {args:?}: {e}"),
        }
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<ApiServer>();
    }
}
