//! The API data a node reads and writes (configMaps and secrets watched per object,
//! TokenRequest, Events), against a small in-process stand-in for the API server that
//! answers as the real one does: lists with a resourceVersion, watches as JSON lines
//! from a version on, TokenRequest with `status.token` and `expirationTimestamp`, Events
//! created and merge-patched. Everything listens on loopback.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::Router;
use k8s_openapi::api::core::v1::{
    ConfigMapProjection, DownwardAPIProjection, DownwardAPIVolumeFile, Event, KeyToPath,
    ObjectFieldSelector, ObjectReference, Pod, PodSpec, ProjectedVolumeSource,
    ServiceAccountTokenProjection, Volume, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use kubelet::cluster::objects::{ApiObjects, Key};
use kubelet::pod::downward::{Allocatable, Context};
use kubelet::pod::volume::projection;
use kubelet::pod::volume::source::Kind;
use kubelet::pod::volume::ObjectSource;

/// One change in the stand-in's history: (resourceVersion, resource, namespace, type,
/// object).
type Change = (u64, String, String, String, Value);

#[derive(Default)]
struct Store {
    version: u64,
    /// (resource, namespace, name) → object.
    objects: BTreeMap<(String, String, String), Value>,
    history: Vec<Change>,
    /// Lists served, as `resource/namespace/fieldSelector`.
    lists: Vec<String>,
    token_requests: Vec<(String, Value)>,
    event_creates: usize,
    event_patches: usize,
}

/// The stand-in API server.
struct Stub {
    store: Mutex<Store>,
    changes: broadcast::Sender<Change>,
}

impl Stub {
    fn put(&self, resource: &str, namespace: &str, mut object: Value) {
        let mut store = self.store.lock().unwrap();
        store.version += 1;
        let version = store.version;
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        object["metadata"]["namespace"] = json!(namespace);
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let key = (resource.to_string(), namespace.to_string(), name);
        let kind = if store.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        store.objects.insert(key, object.clone());
        let change = (
            version,
            resource.to_string(),
            namespace.to_string(),
            kind.to_string(),
            object,
        );
        store.history.push(change.clone());
        let _ = self.changes.send(change);
    }

    fn lists_of(&self, needle: &str) -> usize {
        let store = self.store.lock().unwrap();
        store.lists.iter().filter(|l| l.contains(needle)).count()
    }

    fn events(&self) -> Vec<Value> {
        let store = self.store.lock().unwrap();
        store
            .objects
            .iter()
            .filter(|((r, _, _), _)| r == "events")
            .map(|(_, v)| v.clone())
            .collect()
    }
}

type Shared = Arc<Stub>;

async fn serve() -> (Shared, String) {
    let stub = Arc::new(Stub {
        store: Mutex::new(Store::default()),
        changes: broadcast::channel(64).0,
    });
    let app = Router::new()
        .route("/api/v1/namespaces/{ns}/{resource}", get(list_or_watch))
        .route("/api/v1/namespaces/{ns}/events", post(create_event))
        .route("/api/v1/namespaces/{ns}/events/{name}", patch(patch_event))
        .route(
            "/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token",
            post(token_request),
        )
        .with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (stub, url)
}

fn selected(query: &BTreeMap<String, String>, object: &Value) -> bool {
    match query
        .get("fieldSelector")
        .and_then(|f| f.strip_prefix("metadata.name="))
    {
        Some(name) => object["metadata"]["name"] == name,
        None => true,
    }
}

async fn list_or_watch(
    State(stub): State<Shared>,
    Path((ns, resource)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let mut store = stub.store.lock().unwrap();
    if query.get("watch").map(String::as_str) != Some("true") {
        let selector = query.get("fieldSelector").cloned().unwrap_or_default();
        store.lists.push(format!("{resource}/{ns}/{selector}"));
        let items: Vec<Value> = store
            .objects
            .iter()
            .filter(|((r, n, _), v)| *r == resource && *n == ns && selected(&query, v))
            .map(|(_, v)| v.clone())
            .collect();
        let body = json!({
            "kind": "List", "apiVersion": "v1",
            "metadata": {"resourceVersion": store.version.to_string()},
            "items": items,
        });
        return axum::Json(body).into_response();
    }
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let wanted = move |(version, r, n, _, object): &Change| {
        *version > from && *r == resource && *n == ns && selected(&query, object)
    };
    let line = |(_, _, _, kind, object): Change| {
        Ok::<_, std::convert::Infallible>(Bytes::from(format!(
            "{}\n",
            json!({"type": kind, "object": object})
        )))
    };
    let backlog: Vec<Change> = store
        .history
        .iter()
        .filter(|c| wanted(c))
        .cloned()
        .collect();
    let receiver = stub.changes.subscribe();
    drop(store);
    let later = futures::stream::unfold(receiver, move |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(change) => return Some((change, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    use futures::StreamExt;
    let wanted_later = wanted.clone();
    let stream = futures::stream::iter(backlog)
        .chain(later.filter(move |c| std::future::ready(wanted_later(c))))
        .map(line);
    Body::from_stream(stream).into_response()
}

async fn token_request(
    State(stub): State<Shared>,
    Path((ns, sa)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap();
    let seconds = request["spec"]["expirationSeconds"]
        .as_i64()
        .unwrap_or(3600);
    let mut store = stub.store.lock().unwrap();
    store
        .token_requests
        .push((format!("{ns}/{sa}"), request.clone()));
    let token = format!("token-{}", store.token_requests.len());
    let expires = chrono::Utc::now() + chrono::Duration::seconds(seconds);
    let answer = json!({
        "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": sa, "namespace": ns},
        "spec": request["spec"],
        "status": {"token": token, "expirationTimestamp": expires.format("%Y-%m-%dT%H:%M:%SZ").to_string()},
    });
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

async fn create_event(State(stub): State<Shared>, Path(ns): Path<String>, body: Bytes) -> Response {
    let event: Value = serde_json::from_slice(&body).unwrap();
    let name = event["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let exists = {
        let mut store = stub.store.lock().unwrap();
        store.event_creates += 1;
        store
            .objects
            .contains_key(&("events".into(), ns.clone(), name))
    };
    if exists {
        return (
            StatusCode::CONFLICT,
            axum::Json(status(409, "AlreadyExists")),
        )
            .into_response();
    }
    stub.put("events", &ns, event.clone());
    (StatusCode::CREATED, axum::Json(event)).into_response()
}

async fn patch_event(
    State(stub): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let changes: Value = serde_json::from_slice(&body).unwrap();
    let current = {
        let mut store = stub.store.lock().unwrap();
        store.event_patches += 1;
        store
            .objects
            .get(&("events".into(), ns.clone(), name))
            .cloned()
    };
    let Some(mut event) = current else {
        return (StatusCode::NOT_FOUND, axum::Json(status(404, "NotFound"))).into_response();
    };
    for (k, v) in changes.as_object().unwrap() {
        event[k] = v.clone();
    }
    stub.put("events", &ns, event.clone());
    axum::Json(event).into_response()
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": reason})
}

fn client(url: &str) -> kube::Client {
    let config = kube::Config::new(url.parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

fn config_map(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

/// Wait (up to 5 s) for `check`.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A pod as every pod in a real cluster has it: the API server's kube-api-access volume
/// (token, kube-root-ca.crt, namespace) and a configMap.
fn pod() -> Pod {
    let token = VolumeProjection {
        service_account_token: Some(ServiceAccountTokenProjection {
            audience: None,
            expiration_seconds: Some(3607),
            path: "token".into(),
            user: None,
        }),
        ..VolumeProjection::default()
    };
    let ca = VolumeProjection {
        config_map: Some(ConfigMapProjection {
            name: "kube-root-ca.crt".into(),
            items: Some(vec![KeyToPath {
                key: "ca.crt".into(),
                path: "ca.crt".into(),
                ..KeyToPath::default()
            }]),
            optional: None,
        }),
        ..VolumeProjection::default()
    };
    let namespace = VolumeProjection {
        downward_api: Some(DownwardAPIProjection {
            items: Some(vec![DownwardAPIVolumeFile {
                path: "namespace".into(),
                field_ref: Some(ObjectFieldSelector {
                    api_version: Some("v1".into()),
                    field_path: "metadata.namespace".into(),
                }),
                ..DownwardAPIVolumeFile::default()
            }]),
        }),
        ..VolumeProjection::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("prod".into()),
            uid: Some("uid-web".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            service_account_name: Some("robot".into()),
            volumes: Some(vec![Volume {
                name: "kube-api-access-x1".into(),
                projected: Some(ProjectedVolumeSource {
                    default_mode: Some(0o644),
                    sources: Some(vec![token, ca, namespace]),
                    ..ProjectedVolumeSource::default()
                }),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

fn files(objects: Arc<ApiObjects>, pod: &Pod) -> Result<BTreeMap<String, String>, String> {
    let volume = &pod.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0];
    let ctx = Context {
        pod,
        pod_ips: &[],
        host_ips: &[],
        node_name: "node-1",
        allocatable: Allocatable {
            cpu_millis: 2000,
            memory: 1 << 30,
            ephemeral_storage: 1 << 30,
        },
    };
    let payload = projection::payload(volume, &ctx, objects.as_ref())?;
    Ok(payload
        .into_iter()
        .map(|(k, f)| (k, String::from_utf8(f.data).unwrap()))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_maps_are_watched_per_object_and_changes_reported() {
    let (stub, url) = serve().await;
    stub.put(
        "configmaps",
        "prod",
        config_map("settings", json!({"mode": "blue"})),
    );
    let (objects, mut changed) = ApiObjects::new(client(&url));

    let source = objects.clone();
    let (first, again, missing) = tokio::task::spawn_blocking(move || {
        (
            source.config_map("prod", "settings"),
            source.config_map("prod", "settings"),
            source.config_map("prod", "nope"),
        )
    })
    .await
    .unwrap();
    let first = first.unwrap().expect("the configMap");
    assert_eq!(first.data.unwrap()["mode"], "blue");
    assert_eq!(
        again.unwrap().unwrap().metadata.resource_version,
        first.metadata.resource_version
    );
    assert_eq!(missing, Ok(None));
    assert_eq!(
        stub.lists_of("configmaps/prod/metadata.name=settings"),
        1,
        "one list, then the cache and the watch"
    );

    stub.put(
        "configmaps",
        "prod",
        config_map("settings", json!({"mode": "green"})),
    );
    let key = tokio::time::timeout(Duration::from_secs(5), changed.recv())
        .await
        .expect("a change in time")
        .expect("a change");
    assert_eq!(
        key,
        Key {
            kind: Kind::ConfigMap,
            namespace: "prod".into(),
            name: "settings".into()
        }
    );
    let source = objects.clone();
    let now = tokio::task::spawn_blocking(move || source.config_map("prod", "settings"))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(now.data.unwrap()["mode"], "green");

    // An object created after a pod looked for it counts as a change too.
    stub.put("configmaps", "prod", config_map("nope", json!({})));
    let key = tokio::time::timeout(Duration::from_secs(5), changed.recv())
        .await
        .expect("a change in time")
        .expect("a change");
    assert_eq!(key.name, "nope");

    // A watch no pod needs any more stays for its grace, so nothing goes yet.
    objects.drop_unused(&HashSet::new());
    assert_eq!(objects.watched().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_clusters_api_access_volume_is_projected_with_a_bound_token() {
    let (stub, url) = serve().await;
    stub.put(
        "configmaps",
        "prod",
        config_map(
            "kube-root-ca.crt",
            json!({"ca.crt": "-----BEGIN CERTIFICATE-----"}),
        ),
    );
    let (objects, _changed) = ApiObjects::new(client(&url));
    let source = objects.clone();
    let (first, second) =
        tokio::task::spawn_blocking(move || (files(source.clone(), &pod()), files(source, &pod())))
            .await
            .unwrap();
    let first = first.expect("the volume's files");
    assert_eq!(first["token"], "token-1");
    assert_eq!(first["ca.crt"], "-----BEGIN CERTIFICATE-----");
    assert_eq!(first["namespace"], "prod");
    assert_eq!(
        second.expect("the files again")["token"],
        "token-1",
        "the token is cached"
    );

    let requests = stub.store.lock().unwrap().token_requests.clone();
    assert_eq!(requests.len(), 1);
    let (account, request) = &requests[0];
    assert_eq!(account, "prod/robot");
    assert_eq!(request["spec"]["expirationSeconds"], 3607);
    assert_eq!(request["spec"]["boundObjectRef"]["kind"], "Pod");
    assert_eq!(request["spec"]["boundObjectRef"]["name"], "web");
    assert_eq!(request["spec"]["boundObjectRef"]["uid"], "uid-web");
    assert!(objects.tokens().due(chrono::Utc::now()).is_empty());
    assert_eq!(
        objects
            .tokens()
            .due(chrono::Utc::now() + chrono::Duration::seconds(2900)),
        HashSet::from(["uid-web".to_string()]),
        "due at 80 % of the lifetime"
    );
    objects.tokens().retain_pods(&HashSet::new());
    assert!(objects
        .tokens()
        .due(chrono::Utc::now() + chrono::Duration::days(2))
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_api_server_reads_fail_fast_with_the_cause() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (objects, _changed) = ApiObjects::new(client(&format!("http://127.0.0.1:{port}")));
    let started = std::time::Instant::now();
    let source = objects.clone();
    let (config_map, volume) = tokio::task::spawn_blocking(move || {
        (
            source.config_map("prod", "settings"),
            files(source.clone(), &pod()),
        )
    })
    .await
    .unwrap();
    let err = config_map.expect_err("no API server");
    assert!(err.starts_with("failed to sync configmap cache: "), "{err}");
    let err = volume.expect_err("no API server");
    assert!(err.contains("failed to fetch token: "), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
}

fn recorded(name: &str, reason: &str, message: &str) -> Event {
    Event {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("prod".into()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some("web".into()),
            namespace: Some("prod".into()),
            uid: Some("uid-web".into()),
            field_path: Some("spec.containers{web}".into()),
            ..ObjectReference::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some("Warning".into()),
        count: Some(1),
        ..Event::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_posted_and_repeats_counted() {
    let (stub, url) = serve().await;
    let (sender, receiver) = broadcast::channel(16);
    let poster = tokio::spawn(kubelet::cluster::events::post(
        client(&url),
        receiver,
        "node-1".into(),
    ));
    for i in 0..3 {
        sender
            .send(recorded(
                &format!("web.{i}"),
                "BackOff",
                "Back-off restarting",
            ))
            .unwrap();
    }
    sender
        .send(recorded("web.9", "Failed", "Error: ImagePullBackOff"))
        .unwrap();
    eventually("two events, one counted thrice", || {
        let events = stub.events();
        events.len() == 2 && events.iter().any(|e| e["count"] == 3)
    })
    .await;
    let events = stub.events();
    let backoff = events.iter().find(|e| e["reason"] == "BackOff").unwrap();
    assert_eq!(backoff["metadata"]["name"], "web.0");
    assert_eq!(backoff["source"]["component"], "kubelet");
    assert_eq!(backoff["source"]["host"], "node-1");
    assert_eq!(backoff["reportingInstance"], "node-1");
    assert_eq!(
        backoff["involvedObject"]["fieldPath"],
        "spec.containers{web}"
    );
    assert!(backoff["lastTimestamp"].is_string());
    let calls = {
        let store = stub.store.lock().unwrap();
        (store.event_creates, store.event_patches)
    };
    assert_eq!(calls, (2, 2), "two creates, two patches");
    drop(sender);
    tokio::time::timeout(Duration::from_secs(5), poster)
        .await
        .expect("the poster ends with its channel")
        .unwrap();
}
