//! The API pod source and the status manager against a small in-process stub of the API
//! server (list + watch lines with resourceVersion, `410 Gone`, the status subresource,
//! `Status` error bodies), with a recording fake in place of the pod manager.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::core::v1::{Event, Pod};
use kubelet::cluster::pod_status::StatusManager;
use kubelet::cluster::pods::{ApiPods, Local, PodRunner, Source, Tracked};
use serde_json::{json, Value};
use tokio::sync::watch;

/// What the stub was asked, and what it answers next.
#[derive(Default)]
struct Stub {
    /// Answers to list requests, in turn (the last one repeats).
    lists: Mutex<VecDeque<Value>>,
    /// Answers to watch requests (newline-separated events; None: hold the stream open).
    watches: Mutex<VecDeque<Option<String>>>,
    /// Every request: method, path and query, content type, body.
    requests: Mutex<Vec<(String, String, String, Value)>>,
    /// Whether the Node exists (for the mirror pods' owner).
    node: bool,
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

async fn answer(
    State(stub): State<Arc<Stub>>,
    Query(query): Query<Vec<(String, String)>>,
    request: Request,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let query_text: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    stub.requests.lock().unwrap().push((
        method.to_string(),
        format!("{path}?{}", query_text.join("&")),
        content_type,
        body.clone(),
    ));
    let json_response = |code: StatusCode, value: Value| {
        (
            code,
            [("content-type", "application/json")],
            value.to_string(),
        )
            .into_response()
    };
    let is_watch = query.iter().any(|(k, v)| k == "watch" && v == "true");
    match (method, path.as_str()) {
        (Method::GET, "/api/v1/pods") if is_watch => {
            let next = stub.watches.lock().unwrap().pop_front().flatten();
            match next {
                Some(lines) => (StatusCode::OK, lines).into_response(),
                None => Response::new(Body::from_stream(futures::stream::pending::<
                    Result<Vec<u8>, std::io::Error>,
                >())),
            }
        }
        (Method::GET, "/api/v1/pods") => {
            let mut lists = stub.lists.lock().unwrap();
            let list = if lists.len() > 1 {
                lists.pop_front()
            } else {
                lists.front().cloned()
            };
            json_response(StatusCode::OK, list.unwrap_or(Value::Null))
        }
        (Method::GET, "/api/v1/nodes/node-a") if stub.node => json_response(
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "Node",
                   "metadata": {"name": "node-a", "uid": "node-uid"}}),
        ),
        (Method::GET, _) => json_response(
            StatusCode::NOT_FOUND,
            status_body(404, "NotFound", "not found"),
        ),
        (Method::PATCH, "/api/v1/namespaces/default/pods/gone/status") => json_response(
            StatusCode::NOT_FOUND,
            status_body(404, "NotFound", "pods \"gone\" not found"),
        ),
        (Method::PATCH, _) | (Method::POST, _) => {
            let mut pod = body.clone();
            pod["metadata"]["name"] = json!(path.rsplit('/').nth(1).unwrap_or_default());
            json_response(StatusCode::OK, pod)
        }
        (Method::DELETE, _) => json_response(
            StatusCode::OK,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        ),
        _ => json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            status_body(405, "MethodNotAllowed", "no"),
        ),
    }
}

/// The stub on a free loopback port, and a client for it.
async fn serve(stub: Arc<Stub>) -> kube::Client {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(answer).with_state(stub);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

fn pod(name: &str, uid: &str, version: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": uid,
                     "resourceVersion": version, "labels": {"app": name}},
        "spec": {"nodeName": "node-a",
                 "containers": [{"name": "app", "image": "busybox",
                                 "resources": {"requests": {"cpu": "100m"}}}]},
        "status": {"phase": "Pending"}
    })
}

fn list(version: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "PodList",
           "metadata": {"resourceVersion": version}, "items": items})
}

fn lines(events: &[(&str, Value)]) -> Option<String> {
    Some(
        events
            .iter()
            .map(|(kind, object)| format!("{}\n", json!({"type": kind, "object": object})))
            .collect(),
    )
}

/// The pod manager's part, recorded.
struct FakeRunner {
    actions: Mutex<Vec<String>>,
    local: Mutex<Vec<Pod>>,
    terminated: Mutex<Vec<Pod>>,
    revision: watch::Sender<u64>,
}

impl FakeRunner {
    fn new() -> Arc<FakeRunner> {
        Arc::new(FakeRunner {
            actions: Mutex::new(Vec::new()),
            local: Mutex::new(Vec::new()),
            terminated: Mutex::new(Vec::new()),
            revision: watch::Sender::new(0),
        })
    }

    fn record(&self, action: String) {
        self.actions.lock().unwrap().push(action);
    }

    fn actions(&self) -> Vec<String> {
        self.actions.lock().unwrap().clone()
    }
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

impl PodRunner for FakeRunner {
    fn run(&self, pod: Pod) {
        self.record(format!("run {}", name(&pod)));
    }
    fn replace(&self, pod: Pod) {
        self.record(format!("replace {}", name(&pod)));
    }
    fn refresh(&self, pod: Pod) {
        self.record(format!("refresh {}", name(&pod)));
    }
    fn stop(&self, key: &str, grace: Option<i64>) {
        self.record(format!("stop {key} {grace:?}"));
    }
    fn synced(&self) {
        self.record("synced".into());
    }
    fn all_synced(&self) -> bool {
        true
    }
    fn pods(&self) -> Vec<Pod> {
        self.local.lock().unwrap().clone()
    }
    fn take_terminated(&self) -> Vec<Pod> {
        std::mem::take(&mut *self.terminated.lock().unwrap())
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }
    fn event(&self, event: &Event) {
        self.record(format!(
            "event {}",
            event.reason.clone().unwrap_or_default()
        ));
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn watch_events_and_a_relist_after_410_become_manager_actions_without_restarts() {
    let mut mirror = pod("etcd-node-a", "m1", "9");
    mirror["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "h1"});
    let mut deleting = pod("web", "u1", "11");
    deleting["metadata"]["deletionTimestamp"] = json!("2026-11-22T10:00:00Z");
    deleting["metadata"]["deletionGracePeriodSeconds"] = json!(5);
    let mut big = pod("big", "u9", "8");
    big["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("3");
    let stub = Arc::new(Stub::default());
    stub.lists.lock().unwrap().extend([
        list("10", vec![pod("web", "u1", "10"), mirror, big]),
        list("20", vec![pod("other", "u2", "12")]),
    ]);
    stub.watches.lock().unwrap().extend([
        lines(&[("MODIFIED", deleting), ("ADDED", pod("other", "u2", "12"))]),
        lines(&[(
            "ERROR",
            status_body(410, "Expired", "too old resource version: 12 (15)"),
        )]),
        None,
    ]);
    let client = serve(stub.clone()).await;
    let runner = FakeRunner::new();
    let pods = Arc::new(ApiPods::default());
    let allocatable = [("cpu", "2"), ("memory", "2Gi"), ("pods", "110")]
        .into_iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity(v.into()),
            )
        })
        .collect();
    let source = Source::new(runner.clone(), pods.clone(), "node-a", allocatable);
    let task = tokio::spawn(source.run(client));
    eventually("the relist", || {
        stub.lists.lock().unwrap().len() == 1 && pods.view().mirrors.is_empty()
    })
    .await;
    eventually("the relist's removals", || runner.actions().len() >= 6).await;
    task.abort();
    assert_eq!(
        runner.actions(),
        [
            "run web",
            "event OutOfcpu",
            "synced",
            "stop default/web Some(5)",
            "run other",
            "stop default/web Some(5)",
        ],
        "the relist must not restart `other`, and must stop what it no longer shows"
    );
    // The rejected pod was never run; its rejection was the status to report until the
    // relist showed it gone.
    let view = pods.view();
    assert_eq!(view.pods.keys().collect::<Vec<_>>(), ["default/other"]);
    let requests = stub.requests.lock().unwrap().clone();
    let watches: Vec<&String> = requests
        .iter()
        .map(|(_, path, _, _)| path)
        .filter(|p| p.contains("watch=true"))
        .collect();
    assert!(watches[0].contains("resourceVersion=10"), "{watches:?}");
    assert!(watches[1].contains("resourceVersion=12"), "{watches:?}");
    assert!(
        requests
            .iter()
            .all(|(_, path, _, _)| path.contains("fieldSelector=spec.nodeName=node-a")),
        "{requests:?}"
    );
}

fn local_pod(value: Value) -> Pod {
    serde_json::from_value(value).unwrap()
}

#[tokio::test]
async fn statuses_are_patched_once_with_the_uid_and_deleted_pods_are_finished() {
    let stub = Arc::new(Stub {
        node: true,
        ..Stub::default()
    });
    let client = serve(stub.clone()).await;
    let runner = FakeRunner::new();
    let pods = Arc::new(ApiPods::default());
    let web: Pod = local_pod(pod("web", "u1", "10"));
    let gone: Pod = local_pod(pod("gone", "u3", "10"));
    let mut static_pod = local_pod(pod("etcd-node-a", "h1", "1"));
    static_pod.metadata.annotations = Some(
        [
            ("kubernetes.io/config.source", "file"),
            ("kubernetes.io/config.hash", "h1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    );
    pods.update(|view| {
        view.synced = true;
        for p in [&web, &gone] {
            view.pods.insert(
                format!("default/{}", name(p)),
                Tracked {
                    pod: p.clone(),
                    local: Local::Running,
                },
            );
        }
    });
    let mut running = web.clone();
    running.status.as_mut().unwrap().phase = Some("Running".into());
    let mut gone_running = gone.clone();
    gone_running.status.as_mut().unwrap().phase = Some("Running".into());
    *runner.local.lock().unwrap() = vec![running.clone(), gone_running, static_pod];
    let mut manager = StatusManager::new(client, runner.clone(), pods.clone(), "node-a");
    manager.sync().await;
    manager.sync().await;
    let requests = stub.requests.lock().unwrap().clone();
    let writes: Vec<&(String, String, String, Value)> =
        requests.iter().filter(|r| r.0 != "GET").collect();
    assert_eq!(
        writes.len(),
        3,
        "one mirror create, two patches, once: {writes:?}"
    );
    let create = writes
        .iter()
        .find(|r| r.0 == "POST")
        .expect("the mirror pod");
    assert_eq!(create.1, "/api/v1/namespaces/default/pods?");
    assert_eq!(
        create.3["metadata"]["annotations"]["kubernetes.io/config.mirror"],
        "h1"
    );
    assert_eq!(
        create.3["metadata"]["ownerReferences"][0]["uid"],
        "node-uid"
    );
    let patch = writes
        .iter()
        .find(|r| {
            r.1.starts_with("/api/v1/namespaces/default/pods/web/status")
        })
        .expect("the status patch");
    assert_eq!(patch.0, "PATCH");
    assert_eq!(patch.2, "application/strategic-merge-patch+json");
    assert_eq!(patch.3["metadata"]["uid"], "u1");
    assert_eq!(patch.3["status"]["phase"], "Running");

    // The API deletes `web`; the node stops it; its final status goes, then the object.
    let mut deleting = web.clone();
    deleting.metadata.deletion_timestamp =
        Some(serde_json::from_value(json!("2026-11-22T10:00:00Z")).unwrap());
    pods.update(|view| {
        view.pods.get_mut("default/web").unwrap().pod = deleting;
    });
    runner.local.lock().unwrap().retain(|p| name(p) != "web");
    let mut last = running;
    last.status.as_mut().unwrap().phase = Some("Succeeded".into());
    runner.terminated.lock().unwrap().push(last);
    stub.requests.lock().unwrap().clear();
    manager.sync().await;
    manager.sync().await;
    let requests = stub.requests.lock().unwrap().clone();
    let writes: Vec<(String, String, String, Value)> =
        requests.into_iter().filter(|r| r.0 != "GET").collect();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert_eq!(writes[0].0, "PATCH");
    assert_eq!(writes[0].3["status"]["phase"], "Succeeded");
    assert_eq!(writes[1].0, "DELETE");
    assert_eq!(writes[1].1, "/api/v1/namespaces/default/pods/web?");
    assert_eq!(writes[1].3["gracePeriodSeconds"], 0);
    assert_eq!(writes[1].3["preconditions"]["uid"], "u1");
}
