//! The fake API server against its real clients: the installed `kubectl` and kube-rs
//! (as the kubelet uses it), and its proxy against a tiny TLS kubelet stand-in. No root
//! needed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt, TryStreamExt};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenReview};
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{
    DeleteParams, Patch, PatchParams, PostParams, Preconditions, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Config};
use peapod_tests::apiserver::reviews::Rule;
use peapod_tests::apiserver::ApiServer;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(20);

fn node_yaml(name: &str, kubelet_port: u16) -> String {
    format!(
        r#"apiVersion: v1
kind: Node
metadata:
  name: {name}
  labels: {{kubernetes.io/hostname: {name}, node-role.kubernetes.io/worker: ""}}
status:
  addresses: [{{type: InternalIP, address: 127.0.0.1}}, {{type: Hostname, address: {name}}}]
  daemonEndpoints: {{kubeletEndpoint: {{Port: {kubelet_port}}}}}
  conditions: [{{type: Ready, status: "True", reason: KubeletReady, message: ready}}]
  nodeInfo: {{kubeletVersion: v1.32.0-peapod, osImage: Debian, kernelVersion: "6.1", containerRuntimeVersion: "peapod://0.1.0", architecture: amd64, operatingSystem: linux, bootID: b, machineID: m, systemUUID: s, kubeProxyVersion: ""}}
"#
    )
}

fn pod_yaml(name: &str, node: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: web}}
spec:
  nodeName: "{node}"
  containers:
  - name: main
    image: busybox:1.36
    command: [sleep, "3600"]
"#
    )
}

fn stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "kubectl failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn client(server: &ApiServer) -> Client {
    server.add_token("kube-rs-token", "kube-rs", &["system:masters"]);
    let kubeconfig = Kubeconfig::read_from(server.kubeconfig("kube-rs-token")).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    Client::try_from(config).expect("kube client")
}

fn running_status() -> serde_json::Value {
    json!({"phase": "Running", "podIP": "10.88.0.7", "podIPs": [{"ip": "10.88.0.7"}],
           "hostIP": "127.0.0.1",
           "conditions": [{"type": "Ready", "status": "True"}],
           "containerStatuses": [{"name": "main", "ready": true, "restartCount": 0,
               "image": "busybox:1.36", "imageID": "", "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]})
}

#[test]
fn kubectl_gets_creates_and_deletes_pods_gracefully() {
    let server = ApiServer::start();
    server
        .create(&node_yaml("node-a", 10250))
        .expect("seed node");
    let nodes = stdout(&server.kubectl(&["get", "nodes"]));
    assert!(nodes.contains("NAME") && nodes.contains("ROLES"), "{nodes}");
    assert!(
        nodes.contains("node-a") && nodes.contains("Ready") && nodes.contains("worker"),
        "{nodes}"
    );
    let wide = stdout(&server.kubectl(&["get", "nodes", "-o", "wide"]));
    assert!(
        wide.contains("INTERNAL-IP")
            && wide.contains("127.0.0.1")
            && wide.contains("peapod://0.1.0"),
        "{wide}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = dir.path().join("pod.yaml");
    std::fs::write(&manifest, pod_yaml("web", "node-a")).expect("write manifest");
    let manifest = manifest.to_str().expect("utf-8 path");
    let created = stdout(&server.kubectl(&["create", "-f", manifest, "--validate=false"]));
    assert!(created.contains("pod/web created"), "{created}");
    let again = server.kubectl(&["create", "-f", manifest, "--validate=false"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("AlreadyExists"),
        "{again:?}"
    );

    let pending = stdout(&server.kubectl(&["get", "pods"]));
    assert!(
        pending.contains("web") && pending.contains("Pending") && pending.contains("0/1"),
        "{pending}"
    );
    server
        .set_status("/api/v1/namespaces/default/pods/web", running_status())
        .expect("status");
    let wide = stdout(&server.kubectl(&["get", "pods", "-o", "wide"]));
    assert!(
        wide.contains("IP") && wide.contains("NODE") && wide.contains("NOMINATED NODE"),
        "{wide}"
    );
    assert!(
        wide.contains("1/1")
            && wide.contains("Running")
            && wide.contains("10.88.0.7")
            && wide.contains("node-a"),
        "{wide}"
    );
    let yaml = stdout(&server.kubectl(&["get", "pod", "web", "-o", "yaml"]));
    assert!(
        yaml.contains("uid:")
            && yaml.contains("resourceVersion:")
            && yaml.contains("kube-api-access-"),
        "{yaml}"
    );
    let applied = stdout(&server.kubectl(&["apply", "-f", manifest, "--validate=false"]));
    assert!(applied.contains("pod/web"), "{applied}");

    // kubectl delete waits for the object to vanish: the "kubelet" ends it with grace 0.
    let deleting = server
        .kubectl_command(&["delete", "pod", "web", "--timeout=30s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl delete");
    let path = "/api/v1/namespaces/default/pods/web";
    let terminating = server
        .wait_for(path, WAIT, |p| {
            p.is_some_and(|p| p["metadata"]["deletionTimestamp"].is_string())
        })
        .expect("graceful deletion marks the pod");
    assert_eq!(terminating["metadata"]["deletionGracePeriodSeconds"], 30);
    let listed = stdout(&server.kubectl(&["get", "pods"]));
    assert!(listed.contains("Terminating"), "{listed}");
    let uid = terminating["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string();

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let pods: Api<Pod> = Api::namespaced(client(&server).await, "default");
        let wrong = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some("not-the-uid".into()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match pods.delete("web", &wrong).await {
            Err(kube::Error::Api(status)) => assert_eq!(status.code, 409, "{status:?}"),
            other => panic!("a wrong uid precondition must conflict: {other:?}"),
        }
        let right = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        pods.delete("web", &right).await.expect("final delete");
    });
    let output = deleting.wait_with_output().expect("kubectl delete output");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("pod \"web\" deleted"),
        "{output:?}"
    );
    assert!(server.pod("default", "web").is_none());
    let gone = server.kubectl(&["get", "pod", "web"]);
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("NotFound"),
        "{gone:?}"
    );
}

type Names = futures::stream::BoxStream<'static, Result<String, watcher::Error>>;

async fn next_name(seen: &mut Names) -> String {
    tokio::time::timeout(WAIT, seen.next())
        .await
        .expect("watch event in time")
        .expect("stream open")
        .expect("no error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_watcher_survives_restart_and_expired_versions() {
    let mut server = ApiServer::start();
    let pods: Api<Pod> = Api::namespaced(client(&server).await, "default");
    let config = watcher::Config::default().fields("spec.nodeName=node-w");
    let mut seen = watcher(pods.clone(), config)
        .default_backoff()
        .applied_objects()
        .map_ok(|p| p.metadata.name.unwrap_or_default())
        .boxed();
    server
        .create(&pod_yaml("other", "node-x"))
        .expect("pod elsewhere");
    server.create(&pod_yaml("a", "node-w")).expect("pod a");
    assert_eq!(next_name(&mut seen).await, "a");

    server.restart();
    server.create(&pod_yaml("b", "node-w")).expect("pod b");
    let mut names = Vec::new();
    while !names.contains(&"b".to_string()) {
        names.push(next_name(&mut seen).await);
    }

    // The log no longer reaches the watcher's version: it gets 410 and relists.
    server.compact();
    server.restart();
    server.create(&pod_yaml("c", "node-w")).expect("pod c");
    names.clear();
    while !names.contains(&"c".to_string()) {
        names.push(next_name(&mut seen).await);
    }
    assert!(!names.contains(&"other".to_string()), "{names:?}");

    // A watch from a compacted version gets an ERROR event with a 410 Status.
    let old = WatchParams::default();
    let mut stream = pods.watch(&old, "1").await.expect("watch").boxed();
    match tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("event")
    {
        Some(Ok(WatchEvent::Error(status))) => assert_eq!(status.code, 410),
        other => panic!("expected 410: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_puts_conflict_and_status_patches_merge_by_key() {
    let server = ApiServer::start();
    server.create(&pod_yaml("web", "node-a")).expect("pod");
    let pods: Api<Pod> = Api::namespaced(client(&server).await, "default");
    let first = pods.get("web").await.expect("get");
    let mut changed = first.clone();
    changed
        .metadata
        .labels
        .get_or_insert_default()
        .insert("v".into(), "2".into());
    let updated = pods
        .replace("web", &PostParams::default(), &changed)
        .await
        .expect("replace");
    assert_ne!(
        updated.metadata.resource_version,
        first.metadata.resource_version
    );
    match pods.replace("web", &PostParams::default(), &first).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"))
        }
        other => panic!("a stale PUT must conflict: {other:?}"),
    }

    // The main resource ignores status; the status subresource merges conditions by type.
    let ignored = json!({"status": {"phase": "Running"}});
    let pod = pods
        .patch("web", &PatchParams::default(), &Patch::Merge(&ignored))
        .await
        .expect("patch");
    assert_eq!(pod.status.and_then(|s| s.phase).as_deref(), Some("Pending"));
    let status = |ready: &str| {
        json!({"status": {"conditions": [
        {"type": "Ready", "status": ready}, {"type": "Initialized", "status": "True"}]}})
    };
    pods.patch_status(
        "web",
        &PatchParams::default(),
        &Patch::Strategic(status("False")),
    )
    .await
    .expect("status patch");
    let ready = json!({"status": {"$setElementOrder/conditions": [{"type": "Ready"}, {"type": "Initialized"}],
                                  "conditions": [{"type": "Ready", "status": "True"}]}});
    let pod = pods
        .patch_status("web", &PatchParams::default(), &Patch::Strategic(ready))
        .await
        .expect("strategic status patch");
    let conditions = pod.status.and_then(|s| s.conditions).expect("conditions");
    assert_eq!(conditions.len(), 2);
    assert_eq!(
        (conditions[0].type_.as_str(), conditions[0].status.as_str()),
        ("Ready", "True")
    );
    assert_eq!(
        pod.spec.and_then(|s| s.node_name).as_deref(),
        Some("node-a")
    );

    // Server-side apply creates a lease that does not exist yet.
    let leases: Api<Lease> = Api::namespaced(pods.clone().into_client(), "kube-node-lease");
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                       "metadata": {"name": "node-a"}, "spec": {"holderIdentity": "node-a", "leaseDurationSeconds": 40}});
    leases
        .patch(
            "node-a",
            &PatchParams::apply("peapod").force(),
            &Patch::Apply(&lease),
        )
        .await
        .expect("apply lease");
    assert_eq!(
        server.lease("node-a").expect("lease")["spec"]["holderIdentity"],
        "node-a"
    );
    // Deleting it answers a Success Status, as the real registry does for leases.
    let answer = leases
        .delete("node-a", &DeleteParams::default())
        .await
        .expect("delete lease");
    assert!(answer.is_right(), "{answer:?}");
    assert!(server.lease("node-a").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_send_deleted_when_an_object_leaves_the_set_and_bookmarks() {
    let server = ApiServer::start();
    server.create(&pod_yaml("web", "node-a")).expect("pod");
    let pods: Api<Pod> = Api::namespaced(client(&server).await, "default");
    let list = pods.list(&Default::default()).await.expect("list");
    let rv = list.metadata.resource_version.expect("list rv");
    let params = WatchParams::default()
        .labels("app=web")
        .disable_bookmarks()
        .timeout(30);
    let mut events = pods.watch(&params, &rv).await.expect("watch").boxed();
    let relabel = json!({"metadata": {"labels": {"app": "api"}}});
    pods.patch("web", &PatchParams::default(), &Patch::Merge(&relabel))
        .await
        .expect("relabel");
    match tokio::time::timeout(WAIT, events.next())
        .await
        .expect("event")
    {
        Some(Ok(WatchEvent::Deleted(pod))) => assert_eq!(pod.metadata.name.as_deref(), Some("web")),
        other => panic!("expected DELETED: {other:?}"),
    }

    // Watches that allow bookmarks get them while nothing happens.
    let quiet = WatchParams::default().timeout(30);
    let now = server.resource_version().to_string();
    let mut events = pods.watch(&quiet, &now).await.expect("watch").boxed();
    match tokio::time::timeout(WAIT, events.next())
        .await
        .expect("bookmark in time")
    {
        Some(Ok(WatchEvent::Bookmark(mark))) => {
            assert_eq!(mark.metadata.resource_version, now)
        }
        other => panic!("expected a BOOKMARK: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_request_review_and_access_review() {
    let server = ApiServer::start();
    server.create(&pod_yaml("web", "node-a")).expect("pod");
    let client = client(&server).await;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let request: TokenRequest = serde_json::from_value(json!({"spec": {"audiences": ["api"],
        "expirationSeconds": 3600,
        "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web"}}}))
    .expect("token request");
    let answer = accounts
        .create_token_request("default", &PostParams::default(), &request)
        .await
        .expect("token");
    let status = answer.status.expect("token status");
    let token = status.token.clone().unwrap_or_default();
    assert_eq!(token.split('.').count(), 3);
    let short: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 60}}))
            .expect("short");
    assert!(accounts
        .create_token_request("default", &PostParams::default(), &short)
        .await
        .is_err());

    let reviews: Api<TokenReview> = Api::all(client.clone());
    let review = |token: &str| -> TokenReview {
        serde_json::from_value(json!({"spec": {"token": token}})).expect("review")
    };
    let known = reviews
        .create(&PostParams::default(), &review(&token))
        .await
        .expect("review");
    let user = known.status.expect("review status");
    assert_eq!(user.authenticated, Some(true));
    assert_eq!(
        user.user.and_then(|u| u.username).as_deref(),
        Some("system:serviceaccount:default:default")
    );
    let unknown = reviews
        .create(&PostParams::default(), &review("nope"))
        .await
        .expect("review");
    assert_eq!(unknown.status.and_then(|s| s.authenticated), Some(false));

    server.add_token("t-alice", "alice", &["dev"]);
    server.allow(Rule {
        user: "alice".into(),
        verb: Some("get".into()),
        resource: Some("nodes".into()),
        subresource: Some("log".into()),
    });
    server.deny("mallory");
    let sars: Api<SubjectAccessReview> = Api::all(client);
    let sar = |user: &str, groups: &[&str], verb: &str, sub: &str| -> SubjectAccessReview {
        serde_json::from_value(json!({"spec": {"user": user, "groups": groups,
            "resourceAttributes": {"verb": verb, "resource": "nodes", "subresource": sub, "name": "node-a"}}}))
        .expect("sar")
    };
    let allowed = |review: SubjectAccessReview| review.status.map(|s| s.allowed);
    let cases = [
        (sar("alice", &["dev"], "get", "log"), true),
        (sar("alice", &["dev"], "create", "proxy"), false),
        (sar("admin", &["system:masters"], "create", "proxy"), true),
        (
            sar("kube-apiserver-kubelet-client", &[], "get", "proxy"),
            true,
        ),
        (sar("mallory", &["system:masters"], "get", "log"), false),
    ];
    for (review, expected) in cases {
        let answer = sars
            .create(&PostParams::default(), &review)
            .await
            .expect("sar");
        assert_eq!(allowed(answer), Some(expected), "{review:?}");
    }
}

/// Request heads a kubelet stand-in received.
type Heads = Arc<std::sync::Mutex<Vec<String>>>;

/// A kubelet stand-in: TLS requiring a client certificate from the fake's CA; answers an
/// upgrade marked `X-Test-Echo` with 101 and then echoes, a SPDY port-forward with 101
/// (then echoing), other upgrades with 400 (no streams here), anything else
/// with 200 and the request line. Records every head.
async fn echo_kubelet(server: &ApiServer) -> (u16, Heads, tokio::task::JoinHandle<()>) {
    let heads = Heads::default();
    let recorded = heads.clone();
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let pki = server.pki();
    let serving = pki.server_cert(&["127.0.0.1"]).expect("serving cert");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(pki.ca_der().to_vec()))
        .expect("ca root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("client verifier");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(serving.cert_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(serving.key_der.clone())),
        )
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if tls.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let line = head.lines().next().unwrap_or("").to_string();
                let lower = head.to_ascii_lowercase();
                recorded.lock().unwrap().push(head.clone());
                if lower.contains("upgrade: spdy/3.1") && line.contains("/portForward/") {
                    let answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: SPDY/3.1\r\nConnection: Upgrade\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n";
                    if tls.write_all(answer.as_bytes()).await.is_ok() {
                        let (mut r, mut w) = tokio::io::split(tls);
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    }
                } else if lower.contains("upgrade:") && !lower.contains("x-test-echo: 1") {
                    let no =
                        "HTTP/1.1 400 Bad Request\r\nContent-Length: 15\r\n\r\nno streams here";
                    let _ = tls.write_all(no.as_bytes()).await;
                    let _ = tls.shutdown().await;
                } else if lower.contains("upgrade: websocket") {
                    let answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n";
                    if tls.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                    let (mut r, mut w) = tokio::io::split(tls);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                } else {
                    let answer = format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{line}", line.len());
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    (port, heads, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_streams_are_proxied_to_the_kubelet_with_upgrades() {
    let server = ApiServer::start();
    let (port, heads, kubelet) = echo_kubelet(&server).await;
    server.create(&node_yaml("node-p", port)).expect("node");
    server.create(&pod_yaml("web", "node-p")).expect("pod");

    // Logs: a plain request, its parameters passed on.
    let url = format!(
        "{}/api/v1/namespaces/default/pods/web/log?tailLines=5&follow=false",
        server.url()
    );
    let body = tokio::task::spawn_blocking(move || {
        let mut tcp =
            TcpStream::connect(url.trim_start_matches("http://").split('/').next().unwrap())
                .expect("connect");
        let path = url.splitn(4, '/').nth(3).unwrap().to_string();
        write!(
            tcp,
            "GET /{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).expect("read");
        answer
    })
    .await
    .expect("log request");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains("GET /containerLogs/default/web/main?follow=false&tailLines=5"),
        "{body}"
    );

    // The real kubectl's logs go the same way.
    let logs = tokio::task::block_in_place(|| server.kubectl(&["logs", "web", "--tail=3"]));
    let logs = stdout(&logs);
    assert!(
        logs.contains("GET /containerLogs/default/web/main?tailLines=3"),
        "{logs}"
    );

    // Exec: the WebSocket upgrade is relayed and the bytes spliced both ways.
    let address = format!("127.0.0.1:{}", server.port());
    let echoed = tokio::task::spawn_blocking(move || {
        let mut tcp = TcpStream::connect(address).expect("connect");
        tcp.set_read_timeout(Some(WAIT)).ok();
        write!(tcp, "GET /api/v1/namespaces/default/pods/web/exec?command=hostname&stdout=true HTTP/1.1\r\n\
            Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\nX-Test-Echo: 1\r\n\r\n").expect("send");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tcp.read_exact(&mut byte).expect("head");
            head.push(byte[0]);
        }
        tcp.write_all(b"ping through the proxy").expect("write");
        let mut back = [0u8; 22];
        tcp.read_exact(&mut back).expect("echo");
        (String::from_utf8_lossy(&head).to_string(), String::from_utf8_lossy(&back).to_string())
    })
    .await
    .expect("exec request");
    assert!(echoed.0.starts_with("HTTP/1.1 101"), "{}", echoed.0);
    assert!(
        echoed
            .0
            .to_ascii_lowercase()
            .contains("sec-websocket-protocol: v5.channel.k8s.io"),
        "{}",
        echoed.0
    );
    assert_eq!(echoed.1, "ping through the proxy");

    // The real kubectl's exec and port-forward reach the kubelet as they left kubectl.
    heads.lock().unwrap().clear();
    server
        .set_status("/api/v1/namespaces/default/pods/web", running_status())
        .expect("running");
    let exec = tokio::task::block_in_place(|| server.kubectl(&["exec", "web", "--", "hostname"]));
    assert!(
        String::from_utf8_lossy(&exec.stderr).contains("no streams here"),
        "{exec:?}"
    );
    let seen = heads.lock().unwrap().clone();
    let websocket = seen
        .iter()
        .find(|h| h.starts_with("GET /exec/default/web/main?command=hostname"));
    let websocket = websocket
        .expect("kubectl's WebSocket exec reached the kubelet")
        .to_ascii_lowercase();
    assert!(
        websocket.contains("upgrade: websocket")
            && websocket.contains("sec-websocket-protocol: v5.channel.k8s.io"),
        "{websocket}"
    );
    assert!(!websocket.contains("authorization"), "{websocket}");
    let spdy = seen
        .iter()
        .find(|h| h.starts_with("POST /exec/default/web/main?command=hostname"));
    let spdy = spdy
        .expect("kubectl's SPDY fallback reached the kubelet")
        .to_ascii_lowercase();
    assert!(
        spdy.contains("upgrade: spdy/3.1")
            && spdy.contains("x-stream-protocol-version: v4.channel.k8s.io"),
        "{spdy}"
    );

    // Port-forward: kubectl's WebSocket tunnel becomes SPDY towards the kubelet.
    heads.lock().unwrap().clear();
    let mut forward = server
        .kubectl_command(&["port-forward", "pod/web", ":8080"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl port-forward");
    let mut out = forward.stdout.take().expect("stdout");
    let banner = tokio::task::block_in_place(|| {
        let mut text = Vec::new();
        let mut byte = [0u8; 1];
        while !String::from_utf8_lossy(&text).contains('\n')
            && out.read(&mut byte).unwrap_or(0) == 1
        {
            text.push(byte[0]);
        }
        String::from_utf8_lossy(&text).to_string()
    });
    let _ = forward.kill();
    let _ = forward.wait();
    assert!(banner.starts_with("Forwarding from 127.0.0.1:"), "{banner}");
    let seen = heads.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let tunnel = seen[0].to_ascii_lowercase();
    assert!(
        seen[0].starts_with("POST /portForward/default/web"),
        "{tunnel}"
    );
    assert!(
        tunnel.contains("upgrade: spdy/3.1")
            && tunnel.contains("x-stream-protocol-version: portforward.k8s.io"),
        "{tunnel}"
    );

    // The tunnel's bytes: WebSocket binary messages in, the kubelet's bytes back as messages.
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
    let url = format!(
        "ws://127.0.0.1:{}/api/v1/namespaces/default/pods/web/portforward",
        server.port()
    );
    let mut request = url.into_client_request().expect("ws request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "SPDY/3.1+portforward.k8s.io".parse().unwrap(),
    );
    let (mut socket, answer) = tokio_tungstenite::connect_async(request)
        .await
        .expect("tunnel");
    assert_eq!(
        answer.headers()["sec-websocket-protocol"],
        "SPDY/3.1+portforward.k8s.io"
    );
    socket
        .send(Message::Binary("spdy frames".into()))
        .await
        .expect("send");
    match tokio::time::timeout(WAIT, socket.next())
        .await
        .expect("echo in time")
    {
        Some(Ok(Message::Binary(bytes))) => assert_eq!(&bytes[..], b"spdy frames"),
        other => panic!("expected the bytes back: {other:?}"),
    }
    kubelet.abort();
}
