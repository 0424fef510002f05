//! The local API through its real router on a real unix socket, against an
//! in-memory node.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use kubelet::api::ContainerRef;
use support::{get_json, request, running, write_log, MemoryNode, Server, WEB};

#[tokio::test]
async fn pods_and_errors_have_the_kubernetes_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let node = MemoryNode::new(&dir.path().join("manifests"));
    node.add_pod("default", "web-testnode", &["web"]);
    let server = Server::start(dir.path(), node);
    let mode = std::fs::metadata(&server.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the socket is root's only");

    let (status, body) = request(&server.socket, "GET", "/healthz", b"").await;
    assert_eq!((status, body.as_slice()), (200, b"ok".as_slice()));

    let (status, list) = get_json(&server.socket, "/pods").await;
    assert_eq!(status, 200);
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["items"][0]["metadata"]["name"], "web-testnode");
    assert_eq!(list["items"][0]["status"]["podIP"], "10.88.0.5");

    let (status, pod) = get_json(&server.socket, "/pods/default/web-testnode").await;
    assert_eq!((status, pod["kind"].as_str()), (200, Some("Pod")));

    let (status, error) = get_json(&server.socket, "/pods/default/nope").await;
    assert_eq!(status, 404);
    assert_eq!(
        error,
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": "pods \"nope\" not found",
            "reason": "NotFound", "code": 404})
    );
    let (status, error) = get_json(&server.socket, "/containerLogs/default/web-testnode/db").await;
    assert_eq!(
        (status, error["reason"].as_str()),
        (400, Some("BadRequest"))
    );

    let (status, events) = get_json(
        &server.socket,
        "/events?namespace=default&name=web-testnode",
    )
    .await;
    assert_eq!((status, events["kind"].as_str()), (200, Some("EventList")));
    assert_eq!(events["items"][0]["reason"], "Started");
}

#[tokio::test]
async fn logs_tail_timestamps_previous_and_follow() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let (current, previous, exit) = (
        logs.join("1.log"),
        logs.join("0.log"),
        logs.join("exit.json"),
    );
    write_log(&previous, &["before restart"]);
    write_log(&current, &["one", "two", "three"]);
    let node = MemoryNode::new(&dir.path().join("manifests"));
    node.add_pod("default", "web", &["web"]);
    node.set_container(
        "web",
        "web",
        ContainerRef {
            log_path: Some(current.clone()),
            previous_log_path: Some(previous),
            exit_file: Some(exit.clone()),
            ..running("c1")
        },
    );
    let server = Server::start(dir.path(), node.clone());
    let text = |body: Vec<u8>| String::from_utf8(body).unwrap();
    let base = "/containerLogs/default/web/web";

    let (status, body) = request(&server.socket, "GET", base, b"").await;
    assert_eq!((status, text(body)), (200, "one\ntwo\nthree\n".into()));
    let (_, body) = request(&server.socket, "GET", &format!("{base}?tailLines=2"), b"").await;
    assert_eq!(text(body), "two\nthree\n");
    let (_, body) = request(&server.socket, "GET", &format!("{base}?previous=true"), b"").await;
    assert_eq!(text(body), "before restart\n");
    let (_, body) = request(
        &server.socket,
        "GET",
        &format!("{base}?timestamps=true&tailLines=1"),
        b"",
    )
    .await;
    let body = text(body);
    let (stamp, line) = body.split_once(' ').unwrap();
    assert_eq!(line, "three\n");
    assert!(
        chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
        "{stamp}"
    );

    // Follow: lines written later arrive, and the exit record ends the stream.
    let socket = server.socket.clone();
    let follow = tokio::spawn(async move {
        request(
            &socket,
            "GET",
            &format!("{base}?follow=true&tailLines=1"),
            b"",
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !follow.is_finished(),
        "a followed log waits for the container"
    );
    write_log(&current, &["four"]);
    std::fs::write(&exit, "{}").unwrap();
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), follow)
        .await
        .expect("follow ends once the exit record exists")
        .unwrap();
    assert_eq!((status, text(body)), (200, "three\nfour\n".into()));

    node.set_container(
        "web",
        "web",
        ContainerRef {
            id: None,
            running: false,
            ..running("c1")
        },
    );
    let (status, error) = get_json(&server.socket, &format!("{base}?previous=1")).await;
    assert_eq!(status, 400);
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("previous terminated container"));
}

#[tokio::test]
async fn logs_limit_bytes_and_since() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("logs/0.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let old = "2020-01-01T00:00:00.000000000Z stdout F long ago\n";
    std::fs::write(&log, old).unwrap();
    write_log(&log, &["one", "two", "three"]);
    let node = MemoryNode::new(&dir.path().join("manifests"));
    node.add_pod("default", "web", &["web"]);
    node.set_container(
        "web",
        "web",
        ContainerRef {
            log_path: Some(log.clone()),
            ..running("c1")
        },
    );
    let server = Server::start(dir.path(), node);
    let base = "/containerLogs/default/web/web";
    let body = |query: &str| {
        let socket = server.socket.clone();
        let uri = format!("{base}?{query}");
        async move {
            let (status, body) = request(&socket, "GET", &uri, b"").await;
            (status, String::from_utf8(body).unwrap())
        }
    };
    assert_eq!(body("limitBytes=6").await, (200, "long a".into()));
    assert_eq!(
        body("limitBytes=6&tailLines=1").await,
        (200, "three\n".into())
    );
    assert_eq!(
        body("sinceSeconds=3600").await,
        (200, "one\ntwo\nthree\n".into())
    );
    assert_eq!(
        body("sinceTime=2019-12-31T23:59:59Z&limitBytes=13").await,
        (200, "long ago\none\n".into())
    );
    for bad in [
        "limitBytes=0",
        "sinceSeconds=-1",
        "sinceTime=yesterday",
        "sinceSeconds=1&sinceTime=2020-01-01T00:00:00Z",
    ] {
        assert_eq!(body(bad).await.0, 400, "{bad}");
    }
}

#[tokio::test]
async fn apply_writes_one_file_per_pod_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    let node = MemoryNode::new(&manifests);
    let server = Server::start(dir.path(), node.clone());
    let apply = |body: String| {
        let socket = server.socket.clone();
        async move { get_json_post(&socket, "/manifests?file=web.yaml", body.as_bytes()).await }
    };

    let (status, result) = apply(WEB.into()).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(
        result,
        serde_json::json!({"items": [{"namespace": "default", "name": "web-testnode", "action": "created"}]})
    );
    let file = manifests.join("default_web.yaml");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        WEB,
        "a one-pod file is kept as written"
    );
    let (_, result) = apply(WEB.into()).await;
    assert_eq!(result["items"][0]["action"], "unchanged");
    let (_, result) = apply(WEB.replace("busybox", "busybox:1")).await;
    assert_eq!(result["items"][0]["action"], "configured");
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains("busybox:1"));

    // Several pods: one file each; one bad document: nothing is written.
    let two = format!(
        "{}---\n{}",
        WEB.replace("name: web\n", "name: a\n"),
        WEB.replace("name: web\n", "name: b\n")
    );
    let bad = format!(
        "{two}---\n{}",
        WEB.replace(
            "image: busybox",
            "image: busybox\n    imagePulPolicy: Never"
        )
    );
    let (status, error) = apply(bad).await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["reason"], "Invalid");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("web.yaml")
            && message.contains("document 3")
            && message.contains("imagePulPolicy"),
        "{message}"
    );
    assert!(!manifests.join("default_a.yaml").exists(), "all or nothing");
    let (status, result) = apply(two).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["items"][1]["name"], "b-testnode");
    let b = std::fs::read_to_string(manifests.join("default_b.yaml")).unwrap();
    assert!(b.contains("name: b") && !b.contains("name: a"), "{b}");
    let leftovers: Vec<_> = std::fs::read_dir(&manifests)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "no staging files left: {leftovers:?}");

    // A pod a hand-written file defines with another pod: 409 naming the file.
    let shared = manifests.join("both.yaml");
    let both = format!(
        "{}---\n{}",
        WEB.replace("name: web\n", "name: c\n"),
        WEB.replace("name: web\n", "name: d\n")
    );
    std::fs::write(&shared, &both).unwrap();
    let (status, error) = apply(WEB.replace("name: web\n", "name: c\n")).await;
    assert_eq!(status, 409, "{error}");
    assert!(error["message"].as_str().unwrap().contains("both.yaml"));
    assert_eq!(std::fs::read_to_string(&shared).unwrap(), both);
}

#[tokio::test]
async fn delete_removes_the_pods_own_file() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let node = MemoryNode::new(&manifests);
    let server = Server::start(dir.path(), node.clone());
    let web = manifests.join("default_web.yaml");
    let other = manifests.join("default_other.yaml");
    std::fs::write(&web, WEB).unwrap();
    std::fs::write(&other, WEB.replace("name: web\n", "name: other\n")).unwrap();
    node.add_pod("default", "web-testnode", &["web"]);

    let (status, error) = request(&server.socket, "DELETE", "/pods/default/gone", b"").await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&error));
    let (status, body) = request(&server.socket, "DELETE", "/pods/default/web-testnode", b"").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let pod: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(pod["metadata"]["name"], "web-testnode");
    assert!(!web.exists(), "the pod's manifest is gone");
    assert!(other.exists(), "other manifests stay");
}

async fn get_json_post(
    socket: &std::path::Path,
    uri: &str,
    body: &[u8],
) -> (u16, serde_json::Value) {
    let (status, body) = request(socket, "POST", uri, body).await;
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// Send a WebSocket upgrade request; the status and the chosen subprotocol.
async fn upgrade(socket: &std::path::Path, uri: &str, protocol: &str) -> (u16, String, Vec<u8>) {
    use http_body_util::{BodyExt, Empty};
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection.with_upgrades());
    let request = hyper::Request::get(uri)
        .header("host", "localhost")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-protocol", protocol)
        .body(Empty::<hyper::body::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let chosen = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = if status == 101 {
        Vec::new()
    } else {
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    };
    (status, chosen, body)
}

#[tokio::test]
async fn exec_and_port_forward_upgrade_to_the_stream_protocols() {
    let dir = tempfile::tempdir().unwrap();
    let node = MemoryNode::new(&dir.path().join("manifests"));
    node.add_pod("default", "web", &["web"]);
    node.set_container("web", "web", running("c1"));
    let server = Server::start(dir.path(), node);
    let (status, protocol, _) = upgrade(
        &server.socket,
        "/exec/default/web/web?command=hostname&stdout=1",
        "v5.channel.k8s.io",
    )
    .await;
    assert_eq!((status, protocol.as_str()), (101, "v5.channel.k8s.io"));
    let (status, _, body) = upgrade(
        &server.socket,
        "/exec/default/nope/web?command=hostname&stdout=1",
        "v5.channel.k8s.io",
    )
    .await;
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, error["reason"].as_str()), (404, Some("NotFound")));
    let (status, _, body) = upgrade(
        &server.socket,
        "/portForward/default/web?port=x",
        "v4.channel.k8s.io",
    )
    .await;
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, error["reason"].as_str()),
        (400, Some("BadRequest"))
    );
}
