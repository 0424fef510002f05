//! Node registration, status reports and the Lease through kube-rs against a STUB of
//! the API server: an in-process axum handler that keeps Nodes and Leases in memory,
//! records every request and answers as the real API does on the paths the node uses
//! (Status bodies; 409 AlreadyExists and Conflict, 404 NotFound, 503 while "down").
//! It is deliberately small: the full fake API server and the real kubectl are the
//! end-to-end tests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use kubelet::cluster::lease::{self, LeaseSettings};
use kubelet::cluster::registration::{self, NodeProbe, NodeSettings, Observation};
use kubelet::node::capacity::EvictionThresholds;
use kubelet::node::config::{parse_labels, parse_taints, NodeConfig};
use kubelet::node::host::{FsStats, HostFacts};

const NODES: &str = "/api/v1/nodes";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";

/// One request the stub saw.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    content_type: String,
}

/// The stub's objects, by name, and what it saw.
#[derive(Default)]
struct Objects {
    nodes: BTreeMap<String, Value>,
    leases: BTreeMap<String, Value>,
    seen: Vec<Seen>,
    /// Answer 503 to everything (the API server is away).
    down: bool,
    version: u64,
}

type Shared = Arc<Mutex<Objects>>;

/// The stub API server on a loopback port.
struct Stub {
    objects: Shared,
    address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Stub {
    async fn start() -> Stub {
        let objects: Shared = Arc::default();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(objects.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Stub {
            objects,
            address,
            task,
        }
    }

    fn client(&self) -> kube::Client {
        let url = format!("http://{}", self.address).parse().unwrap();
        kube::Client::try_from(kube::Config::new(url)).unwrap()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Objects) -> T) -> T {
        f(&mut self.objects.lock().unwrap())
    }

    fn node(&self, name: &str) -> Option<Value> {
        self.with(|o| o.nodes.get(name).cloned())
    }

    fn lease(&self, name: &str) -> Option<Value> {
        self.with(|o| o.leases.get(name).cloned())
    }

    fn count(&self, method: &Method, path: &str) -> usize {
        self.with(|o| {
            o.seen
                .iter()
                .filter(|s| s.method == method && s.path == path)
                .count()
        })
    }

    /// Wait (at most 10 s) until `check` holds.
    async fn until(&self, what: &str, check: impl Fn(&Stub) -> bool) {
        for _ in 0..200 {
            if check(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let seen = self.with(|o| format!("{:#?}", o.seen));
        panic!("timed out waiting for {what}; requests:\n{seen}");
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Status body as the API server sends with an error.
fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()
    });
    (code, axum::Json(body)).into_response()
}

async fn handle(
    State(objects): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut objects = objects.lock().unwrap();
    let path = uri.path().to_string();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    objects.seen.push(Seen {
        method: method.clone(),
        path: path.clone(),
        content_type,
    });
    if objects.down {
        return status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the stub is down".into(),
        );
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let objects = &mut *objects;
    let (kind, store, rest) = if let Some(rest) = path.strip_prefix(NODES) {
        ("nodes", &mut objects.nodes, rest)
    } else if let Some(rest) = path.strip_prefix(LEASES) {
        ("leases", &mut objects.leases, rest)
    } else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no route {path}"),
        );
    };
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    objects.version += 1;
    let version = objects.version;
    let not_found = |name: &str| {
        status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{kind} \"{name}\" not found"),
        )
    };
    match (&method, segments.as_slice()) {
        (&Method::POST, []) => {
            let name = body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if store.contains_key(&name) {
                return status(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    format!("{kind} \"{name}\" already exists"),
                );
            }
            let mut object = body;
            object["metadata"]["uid"] = json!(format!("uid-{version}"));
            object["metadata"]["resourceVersion"] = json!(version.to_string());
            object["metadata"]["creationTimestamp"] = json!("2026-01-02T00:00:00Z");
            store.insert(name, object.clone());
            (StatusCode::CREATED, axum::Json(object)).into_response()
        }
        (&Method::GET, [name]) => match store.get(*name) {
            Some(object) => axum::Json(object.clone()).into_response(),
            None => not_found(name),
        },
        (&Method::PUT, [name]) => {
            let Some(current) = store.get(*name) else {
                return not_found(name);
            };
            if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                return status(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {kind} \"{name}\": the object has \
                         been modified; please apply your changes to the latest version and \
                         try again"
                    ),
                );
            }
            let mut object = body;
            object["metadata"]["resourceVersion"] = json!(version.to_string());
            store.insert(name.to_string(), object.clone());
            axum::Json(object).into_response()
        }
        (&Method::PATCH, [name, rest @ ..]) => {
            let Some(object) = store.get_mut(*name) else {
                return not_found(name);
            };
            if rest == ["status"] {
                strategic_status(object, &body["status"]);
            } else {
                merge(object, &body);
            }
            object["metadata"]["resourceVersion"] = json!(version.to_string());
            axum::Json(object.clone()).into_response()
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} {path}"),
        ),
    }
}

/// A JSON merge patch (RFC 7386).
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    for (key, value) in fields {
        if value.is_null() {
            target.as_object_mut().unwrap().remove(key);
        } else {
            merge(&mut target[key], value);
        }
    }
}

/// The strategic merge of a Node status patch, as far as the node's patches need it:
/// conditions merged by type, addresses replaced under `$patch: replace`, maps merged.
fn strategic_status(node: &mut Value, patch: &Value) {
    for (key, value) in patch.as_object().into_iter().flatten() {
        let target = &mut node["status"][key];
        match (key.as_str(), value) {
            ("conditions", Value::Array(items)) => {
                let list = target.as_array().cloned().unwrap_or_default();
                let mut list = list;
                for item in items {
                    match list.iter_mut().find(|c| c["type"] == item["type"]) {
                        Some(slot) => merge(slot, item),
                        None => list.push(item.clone()),
                    }
                }
                *target = Value::Array(list);
            }
            ("addresses", Value::Array(items)) => {
                let kept: Vec<Value> = items
                    .iter()
                    .filter(|a| a.get("$patch").is_none())
                    .cloned()
                    .collect();
                *target = Value::Array(kept);
            }
            _ => merge(target, value),
        }
    }
}

/// A host that does not change, with the given hostname.
struct FixedHost(String);

impl NodeProbe for FixedHost {
    fn observe(&self) -> anyhow::Result<Observation> {
        let fs = FsStats {
            capacity_bytes: 100 << 30,
            available_bytes: 60 << 30,
            inodes: 1000,
            inodes_free: 900,
        };
        Ok(Observation {
            host: HostFacts {
                hostname: self.0.clone(),
                cpus: 2,
                memory_bytes: 4 << 30,
                memory_available_bytes: 3 << 30,
                nodefs: fs,
                imagefs: fs,
                kernel_version: "6.1.0".into(),
                os_image: "Debian GNU/Linux 12 (bookworm)".into(),
                ..HostFacts::default()
            },
            pids: None,
            node_ips: vec!["127.0.0.1".parse().unwrap()],
            not_ready: Vec::new(),
        })
    }
}

/// Start registration and the lease for node `name` with fast timings.
fn start(stub: &Stub, name: &str) {
    let mut node = NodeConfig::new(name, Vec::new());
    node.labels = parse_labels("node.kubernetes.io/instance-type=small,team=web").unwrap();
    node.taints = parse_taints("dedicated=gpu:NoSchedule").unwrap();
    node.port = 10350;
    let settings = NodeSettings {
        node,
        register: true,
        update_frequency: Duration::from_millis(100),
        report_frequency: Duration::from_millis(600),
        thresholds: EvictionThresholds::default(),
    };
    let uid = registration::spawn(stub.client(), settings, Arc::new(FixedHost(name.into())));
    let lease = LeaseSettings {
        node_name: name.to_string(),
        duration_seconds: 1,
    };
    tokio::spawn(lease::keep(stub.client(), lease, uid));
}

fn owner_uid(lease: &Value) -> Value {
    lease["metadata"]["ownerReferences"][0]["uid"].clone()
}

#[tokio::test]
async fn a_new_node_registers_reports_and_renews_its_lease() {
    let stub = Stub::start().await;
    start(&stub, "node-a");
    stub.until("the node and its owned lease", |s| {
        let (Some(node), Some(lease)) = (s.node("node-a"), s.lease("node-a")) else {
            return false;
        };
        owner_uid(&lease) == node["metadata"]["uid"]
    })
    .await;
    let node = stub.node("node-a").unwrap();
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], "node-a");
    assert_eq!(labels["node.kubernetes.io/instance-type"], "small");
    assert_eq!(labels["team"], "web");
    assert_eq!(node["spec"]["taints"][0]["key"], "dedicated");
    let status = &node["status"];
    assert_eq!(status["capacity"]["cpu"], "2");
    assert_eq!(status["capacity"]["pods"], "110");
    assert_eq!(status["allocatable"]["memory"], "3996Mi");
    assert_eq!(status["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10350);
    assert_eq!(
        status["addresses"][0],
        json!({"type": "InternalIP", "address": "127.0.0.1"})
    );
    assert!(status["nodeInfo"]["containerRuntimeVersion"]
        .as_str()
        .unwrap()
        .starts_with("peapod://"));
    let ready = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "True");

    // The lease is renewed by updates carrying the version last seen.
    let first = stub.lease("node-a").unwrap()["spec"]["renewTime"].clone();
    stub.until("a renewal", |s| {
        s.lease("node-a").unwrap()["spec"]["renewTime"] != first
    })
    .await;
    assert!(stub.count(&Method::PUT, &format!("{LEASES}/node-a")) >= 1);
    let lease = stub.lease("node-a").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "node-a");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 1);

    // An unchanged status is reported every report period, not every 100 ms tick.
    let status_path = format!("{NODES}/node-a/status");
    let before = stub.count(&Method::PATCH, &status_path);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let reports = stub.count(&Method::PATCH, &status_path) - before;
    assert!((1..=4).contains(&reports), "{reports} reports in 1.3 s");
    let types: Vec<String> = stub.with(|o| {
        o.seen
            .iter()
            .filter(|s| s.path == status_path)
            .map(|s| s.content_type.clone())
            .collect()
    });
    assert!(types
        .iter()
        .all(|t| t == "application/strategic-merge-patch+json"));
}

#[tokio::test]
async fn a_node_registered_before_is_reconciled_not_replaced() {
    let stub = Stub::start().await;
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/node/fixtures/existing-node.json");
    let existing: Value = serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    stub.with(|o| o.nodes.insert("node-a".into(), existing));
    start(&stub, "node-a");
    stub.until("a status report", |s| {
        s.count(&Method::PATCH, &format!("{NODES}/node-a/status")) > 0
    })
    .await;
    assert_eq!(
        stub.count(&Method::POST, NODES),
        1,
        "one create, answered 409"
    );
    let node = stub.node("node-a").unwrap();
    let labels = &node["metadata"]["labels"];
    assert_eq!(
        labels["kubernetes.io/hostname"], "node-a",
        "default label fixed"
    );
    assert_eq!(labels["node.kubernetes.io/instance-type"], "small");
    assert_eq!(
        labels["node-role.kubernetes.io/worker"], "",
        "admin's label kept"
    );
    assert!(
        labels.get("team").is_none(),
        "operator labels are set at creation only"
    );
    assert_eq!(
        node["spec"]["taints"],
        json!([{ "key": "maintenance", "value": "planned", "effect": "NoSchedule" }]),
        "taints are the cluster's once registered"
    );
    assert_eq!(
        node["metadata"]["uid"],
        "5f0c8a52-6a3e-4c1d-9b7e-2d4f6a8b0c1e"
    );
    let conditions = node["status"]["conditions"].as_array().unwrap();
    let find = |t: &str| conditions.iter().find(|c| c["type"] == t).unwrap().clone();
    let ready = find("Ready");
    assert_eq!(ready["lastTransitionTime"], "2026-01-01T08:00:10Z", "kept");
    assert_ne!(ready["lastHeartbeatTime"], "2026-01-02T09:15:00Z", "fresh");
    assert_eq!(find("NetworkUnavailable")["reason"], "FlannelIsUp");
    assert_eq!(node["status"]["capacity"]["example.com/gpu"], "2");
    assert_eq!(node["status"]["capacity"]["cpu"], "2");
    assert_eq!(
        node["status"]["addresses"],
        json!([
            { "type": "InternalIP", "address": "127.0.0.1" },
            { "type": "Hostname", "address": "node-a" }
        ])
    );
}

#[tokio::test]
async fn outages_deletions_and_conflicts_are_recovered_from() {
    let stub = Stub::start().await;
    start(&stub, "node-b");
    stub.until("the owned lease", |s| {
        s.lease("node-b").is_some_and(|l| !owner_uid(&l).is_null())
    })
    .await;

    // The API server goes away and comes back: reports resume.
    stub.with(|o| o.down = true);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let status_path = format!("{NODES}/node-b/status");
    let during = stub.count(&Method::PATCH, &status_path);
    stub.with(|o| o.down = false);
    stub.until("a report after the outage", |s| {
        s.count(&Method::PATCH, &status_path) > during
    })
    .await;

    // An admin deletes the Node: it is registered again, and the lease follows its uid.
    let old_uid = stub.node("node-b").unwrap()["metadata"]["uid"].clone();
    stub.with(|o| o.nodes.remove("node-b"));
    stub.until("the node registered again, owning the lease", |s| {
        let Some(node) = s.node("node-b") else {
            return false;
        };
        node["metadata"]["uid"] != old_uid
            && s.lease("node-b")
                .is_some_and(|l| owner_uid(&l) == node["metadata"]["uid"])
    })
    .await;

    // Another writer moves the lease: the 409 makes the kubelet read it and renew again.
    stub.with(|o| {
        let lease = o.leases.get_mut("node-b").unwrap();
        lease["metadata"]["resourceVersion"] = json!("999999");
        lease["spec"]["holderIdentity"] = json!("intruder");
    });
    stub.until("the lease held again", |s| {
        s.lease("node-b").unwrap()["spec"]["holderIdentity"] == "node-b"
    })
    .await;

    // The lease is deleted: it is created again.
    let posts = stub.count(&Method::POST, LEASES);
    stub.with(|o| o.leases.remove("node-b"));
    stub.until("the lease created again", |s| {
        s.lease("node-b").is_some() && s.count(&Method::POST, LEASES) > posts
    })
    .await;
}

/// `peapod-kubelet` with `args`, expected to stop on a bad setting before it starts
/// anything: (exit code, stderr). Its paths are under `dir` and it is killed after 10 s
/// (failing the test) should it start after all.
fn kubelet_refusing(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    use std::io::Read as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_peapod-kubelet"))
        .args(["--runtime", "/bin/true", "--shim", "/bin/true"])
        .arg("--socket")
        .arg(dir.join("kubelet.sock"))
        .arg("--manifests")
        .arg(dir.join("manifests"))
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--runtime-root")
        .arg(dir.join("run"))
        .arg("--sandbox-dir")
        .arg(dir.join("sandboxes"))
        .arg("--cni-cache-dir")
        .arg(dir.join("cni"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    for _ in 0..100 {
        status = child.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("peapod-kubelet {args:?} started instead of refusing its settings");
    }
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.and_then(|s| s.code()), stderr)
}

#[test]
fn the_config_file_is_checked_and_the_command_line_wins() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kubelet.yaml");
    let header = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";
    std::fs::write(&file, format!("{header}maxPods: many\n")).unwrap();
    let path = file.to_str().unwrap();
    let (code, stderr) = kubelet_refusing(dir.path(), &["--config", path]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!("{path}: field maxPods")),
        "{stderr}"
    );

    // The file's valid maxPods loses to the command line's invalid one, which is what
    // stops the kubelet; the field peapod lacks is warned about.
    std::fs::write(
        &file,
        format!("{header}maxPods: 5\ncgroupDriver: systemd\n"),
    )
    .unwrap();
    let (code, stderr) = kubelet_refusing(dir.path(), &["--config", path, "--max-pods", "0"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("--max-pods 0: must be at least 1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("cgroupDriver: peapod has no such setting"),
        "{stderr}"
    );
}
