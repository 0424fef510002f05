//! The built `peapod` binary's pod verbs against the local API on a temp
//! socket, served from an in-memory node.

mod support;

use std::path::Path;

use support::{running, write_log, MemoryNode, Server, WEB};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn peapod(socket: &Path, args: &[&str]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_peapod"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("PEAPOD_SOCKET")
        .output()
        .await
        .expect("running peapod");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test]
async fn apply_get_delete_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    let node = MemoryNode::new(&manifests);
    let server = Server::start(dir.path(), node.clone());
    let file = dir.path().join("web.yaml");
    std::fs::write(&file, WEB).unwrap();

    let run = peapod(&server.socket, &["apply", "-f", file.to_str().unwrap()]).await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "pod/web-testnode created\n"),
        "{}",
        run.stderr
    );
    let written = manifests.join("default_web.yaml");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), WEB);
    let run = peapod(&server.socket, &["apply", "-f", file.to_str().unwrap()]).await;
    assert_eq!(run.stdout, "pod/web-testnode unchanged\n");

    // The folder source would now report the pod; the in-memory node plays it.
    node.add_pod("default", "web-testnode", &["web"]);
    let run = peapod(&server.socket, &["get", "pods"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], "NAME           READY   STATUS    RESTARTS   AGE");
    assert_eq!(
        lines[1],
        "web-testnode   0/1     Running   0          <unknown>"
    );
    let run = peapod(&server.socket, &["get", "pods", "-o", "name"]).await;
    assert_eq!(run.stdout, "pod/web-testnode\n");
    let run = peapod(
        &server.socket,
        &["get", "pod", "web-testnode", "-o", "json"],
    )
    .await;
    let pod: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(pod["kind"], "Pod");
    let run = peapod(&server.socket, &["describe", "pod", "web-testnode"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with("Name:         web-testnode\n"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("  Normal  Started"), "{}", run.stdout);

    let run = peapod(
        &server.socket,
        &["delete", "pod", "web-testnode", "--wait=false"],
    )
    .await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "pod \"web-testnode\" deleted\n"),
        "{}",
        run.stderr
    );
    assert!(!written.exists(), "delete removed the pod's manifest");

    // Waiting: the command returns once the pod is gone from the node.
    std::fs::write(&written, WEB).unwrap();
    let socket = server.socket.clone();
    let waiting =
        tokio::spawn(
            async move { peapod(&socket, &["delete", "-f", file.to_str().unwrap()]).await },
        );
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert!(
        !waiting.is_finished(),
        "delete waits while the pod is still there"
    );
    node.pods.lock().unwrap().clear();
    let run = waiting.await.unwrap();
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "pod \"web-testnode\" deleted\n"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn errors_read_like_kubectl() {
    let dir = tempfile::tempdir().unwrap();
    let node = MemoryNode::new(&dir.path().join("manifests"));
    let server = Server::start(dir.path(), node);
    let run = peapod(&server.socket, &["get", "pod", "x"]).await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        "Error from server (NotFound): pods \"x\" not found\n"
    );
    let run = peapod(&server.socket, &["logs", "x"]).await;
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (1, "Error from server (NotFound): pods \"x\" not found\n")
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        WEB.replace(
            "image: busybox",
            "image: busybox\n    imagePulPolicy: Never",
        ),
    )
    .unwrap();
    let run = peapod(&server.socket, &["apply", "-f", bad.to_str().unwrap()]).await;
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.starts_with("Error from server (Invalid): ")
            && run.stderr.contains("bad.yaml: document 1: ")
            && run.stderr.contains("imagePulPolicy"),
        "{}",
        run.stderr
    );

    let gone = dir.path().join("nobody.sock");
    let run = peapod(&gone, &["get", "pods"]).await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        format!(
            "peapod: cannot reach the kubelet at {}: No such file or directory (os error 2) (is peapod-kubelet running?)\n",
            gone.display()
        )
    );
}

#[tokio::test]
async fn logs_through_the_cli() {
    use kubelet::api::ContainerRef;

    let dir = tempfile::tempdir().unwrap();
    let node = MemoryNode::new(&dir.path().join("manifests"));
    node.add_pod("default", "two", &["web", "sidecar"]);
    let log = dir.path().join("logs/0.log");
    let exit = dir.path().join("logs/exit.json");
    write_log(&log, &["one", "two", "three"]);
    node.set_container(
        "two",
        "sidecar",
        ContainerRef {
            log_path: Some(log.clone()),
            exit_file: Some(exit.clone()),
            ..running("c1")
        },
    );
    let server = Server::start(dir.path(), node);

    let run = peapod(&server.socket, &["logs", "two"]).await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        "peapod: a container name must be specified for pod two, choose one of: [web sidecar]\n"
    );
    let run = peapod(
        &server.socket,
        &["logs", "two", "-c", "sidecar", "--tail", "2"],
    )
    .await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "two\nthree\n"),
        "{}",
        run.stderr
    );
    let run = peapod(&server.socket, &["logs", "pod/two", "-c", "sidecar", "-p"]).await;
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .starts_with("Error from server (BadRequest): previous terminated container"),
        "{}",
        run.stderr
    );

    let socket = server.socket.clone();
    let follow =
        tokio::spawn(async move { peapod(&socket, &["logs", "-f", "two", "-c", "sidecar"]).await });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    write_log(&log, &["four"]);
    std::fs::write(&exit, "{}").unwrap();
    let run = tokio::time::timeout(std::time::Duration::from_secs(10), follow)
        .await
        .expect("logs -f ends when the container has ended")
        .unwrap();
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "one\ntwo\nthree\nfour\n"),
        "{}",
        run.stderr
    );
}
