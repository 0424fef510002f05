//! What the local API tests share: an in-memory [`Node`] (the test double of the
//! seam the pod manager implements), a server on a socket in a temp dir, a
//! small HTTP client over that socket, and the manifests, containers and logs
//! the tests serve.
#![allow(dead_code)]

pub mod served;
pub mod web;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use k8s_openapi::api::core::v1::{Container, Event, ObjectReference, Pod, PodSpec, PodStatus};
use kubelet::api::{ContainerRef, Node, NodeError, RuntimeRef};
use runtime::logs::{LogOptions, LogWriter, Stream};

/// A manifest of pod `web` with one container `web`.
pub const WEB: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: web
    image: busybox
";

/// A node whose pods and containers the test sets by hand; its manifests are
/// files in a real folder, found as the pod manager finds them.
pub struct MemoryNode {
    pub manifests: PathBuf,
    pub pods: Mutex<Vec<Pod>>,
    pub containers: Mutex<BTreeMap<(String, String), ContainerRef>>,
}

pub const NODE: &str = "testnode";

impl MemoryNode {
    pub fn new(manifests: &Path) -> Arc<MemoryNode> {
        Arc::new(MemoryNode {
            manifests: manifests.to_path_buf(),
            pods: Mutex::new(Vec::new()),
            containers: Mutex::new(BTreeMap::new()),
        })
    }

    /// Add a running pod `name` with the given containers.
    pub fn add_pod(&self, namespace: &str, name: &str, containers: &[&str]) {
        self.pods
            .lock()
            .unwrap()
            .push(pod(namespace, name, containers));
    }

    pub fn set_container(&self, pod: &str, container: &str, found: ContainerRef) {
        self.containers
            .lock()
            .unwrap()
            .insert((pod.into(), container.into()), found);
    }
}

/// A running container `id`, with no logs.
pub fn running(id: &str) -> ContainerRef {
    ContainerRef {
        id: Some(id.into()),
        running: true,
        log_path: None,
        previous_log_path: None,
        exit_file: None,
    }
}

/// Writes `lines` to the CRI log at `path` as stdout lines.
pub fn write_log(path: &Path, lines: &[&str]) {
    let mut writer = LogWriter::open(path, LogOptions::default()).unwrap();
    for line in lines {
        writer
            .write(Stream::Stdout, format!("{line}\n").as_bytes())
            .unwrap();
    }
}

pub fn pod(namespace: &str, name: &str, containers: &[&str]) -> Pod {
    Pod {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(NODE.into()),
            containers: containers
                .iter()
                .map(|c| Container {
                    name: (*c).into(),
                    image: Some("busybox".into()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some("10.88.0.5".into()),
            ..Default::default()
        }),
    }
}

impl Node for MemoryNode {
    fn node_name(&self) -> String {
        NODE.into()
    }

    fn pods(&self) -> Vec<Pod> {
        self.pods.lock().unwrap().clone()
    }

    fn events(&self, namespace: &str, name: &str) -> Vec<Event> {
        vec![Event {
            involved_object: ObjectReference {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            reason: Some("Started".into()),
            message: Some(format!("Started pod {name}")),
            type_: Some("Normal".into()),
            ..Default::default()
        }]
    }

    fn container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<ContainerRef, NodeError> {
        if !self.pods().iter().any(|p| {
            p.metadata.namespace.as_deref() == Some(namespace)
                && p.metadata.name.as_deref() == Some(pod)
        }) {
            return Err(NodeError::PodNotFound { name: pod.into() });
        }
        self.containers
            .lock()
            .unwrap()
            .get(&(pod.to_owned(), container.to_owned()))
            .cloned()
            .ok_or_else(|| NodeError::ContainerNotFound {
                pod: pod.into(),
                container: container.into(),
            })
    }

    fn runtime(&self) -> RuntimeRef {
        RuntimeRef {
            binary: "/bin/false".into(),
            root: "/nonexistent".into(),
        }
    }

    fn netns(&self, _namespace: &str, pod: &str) -> Result<PathBuf, NodeError> {
        Err(NodeError::PodNotFound { name: pod.into() })
    }

    fn manifests_dir(&self) -> PathBuf {
        self.manifests.clone()
    }

    fn manifest_file(&self, namespace: &str, name: &str) -> Option<PathBuf> {
        kubelet::source::folder::defining_file(&self.manifests, NODE, namespace, name)
    }
}

/// A served API on a fresh socket in `dir`.
pub struct Server {
    pub socket: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub fn start(dir: &Path, node: Arc<MemoryNode>) -> Server {
        let socket = dir.join("run/kubelet.sock");
        let listener = kubelet::api::bind(&socket).expect("binding the test socket");
        let task = tokio::spawn(kubelet::api::serve(listener, node));
        Server { socket, task }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One HTTP exchange over the socket: status and whole body.
pub async fn request(socket: &Path, method: &str, uri: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect");
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let request = hyper::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "localhost")
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let response = sender.send_request(request).await.expect("request");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, body.to_vec())
}

pub async fn get_json(socket: &Path, uri: &str) -> (u16, serde_json::Value) {
    let (status, body) = request(socket, "GET", uri, b"").await;
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}
