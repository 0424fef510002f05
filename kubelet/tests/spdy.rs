//! Exec, attach and port-forward over SPDY/3.1 end to end, as root: a busybox pod in a
//! real sandbox behind the kubelet's real router (`kubelet::api::router`), driven by a
//! small SPDY client written for the tests on the kubelet's own frame codec, as kubectl
//! (with `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`) and the API server's stream tunnel
//! speak it, and by the real `kubectl` through the fake API server's proxy (SPDY, its
//! WebSocket port-forward tunnel unwrapped into SPDY, and WebSockets passed through).
//!
//! Needs root, busybox-static, and the binaries built (`cargo build --workspace --bins`).

mod support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use kubelet::api::{ContainerRef, Node, NodeError, RuntimeRef};
use kubelet::stream::client::{self, ExecIo, Target};
use kubelet::stream::spdy::frame::{Frame, FLAG_FIN};
use kubelet::stream::spdy::headers::{Compressor, Decompressor};
use kubelet::stream::status::{outcome, Outcome};
use kubelet::stream::ExecRequest;
use peapod_tests::cli::runtime_path;
use peapod_tests::pod::{TestPod, NAMESPACE};
use runtime::sandbox::Qos;
use support::served::Served;
use support::web::{run_web, PORT};
use tokio::io::{AsyncReadExt, AsyncWriteExt, WriteHalf};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// What kubectl offers for exec and attach over SPDY.
const REMOTE_COMMAND: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// The node as the router sees it: one pod, its containers, their logs.
struct PodNode {
    pod: String,
    runtime: RuntimeRef,
    netns: PathBuf,
    containers: Vec<(String, ContainerRef)>,
}

impl Node for PodNode {
    fn node_name(&self) -> String {
        "spdy-node".into()
    }
    fn pods(&self) -> Vec<Pod> {
        Vec::new()
    }
    fn events(&self, _: &str, _: &str) -> Vec<Event> {
        Vec::new()
    }
    fn container(&self, _: &str, pod: &str, container: &str) -> Result<ContainerRef, NodeError> {
        if pod != self.pod {
            return Err(NodeError::PodNotFound { name: pod.into() });
        }
        self.containers
            .iter()
            .find(|(name, _)| name == container)
            .map(|(_, found)| found.clone())
            .ok_or_else(|| NodeError::ContainerNotFound {
                pod: pod.into(),
                container: container.into(),
            })
    }
    fn runtime(&self) -> RuntimeRef {
        self.runtime.clone()
    }
    fn netns(&self, _: &str, pod: &str) -> Result<PathBuf, NodeError> {
        if pod != self.pod {
            return Err(NodeError::PodNotFound { name: pod.into() });
        }
        Ok(self.netns.clone())
    }
    fn manifests_dir(&self) -> PathBuf {
        PathBuf::from("/nonexistent")
    }
    fn manifest_file(&self, _: &str, _: &str) -> Option<PathBuf> {
        None
    }
}

/// The kubelet's router for a pod, on a unix socket in a temp dir.
type Server = Served;

impl Served {
    /// Serve `pod`; `logs` gives containers a CRI log and an exit file.
    fn start(pod: &TestPod, logs: &[(&str, PathBuf, PathBuf)]) -> Served {
        Served::serve("pp-spdy-api-", pod_router(pod, logs))
    }
}

/// The kubelet's router for `pod`; `logs` gives containers a CRI log and an exit file.
fn pod_router(pod: &TestPod, logs: &[(&str, PathBuf, PathBuf)]) -> axum::Router {
    let containers = pod
        .containers()
        .iter()
        .map(|c| {
            let log = logs.iter().find(|(name, ..)| *name == c.name);
            let found = ContainerRef {
                id: Some(c.id.clone()),
                running: true,
                log_path: log.map(|(_, log, _)| log.clone()),
                previous_log_path: None,
                exit_file: log.map(|(.., exit)| exit.clone()),
            };
            (c.name.clone(), found)
        })
        .collect();
    let node = Arc::new(PodNode {
        pod: pod.name().to_owned(),
        runtime: RuntimeRef {
            binary: runtime_path().to_path_buf(),
            root: pod.runtime_root().to_path_buf(),
        },
        netns: pod.sandbox.pins().net.clone(),
        containers,
    });
    kubelet::api::router(node)
}

/// A SPDY/3.1 client: opens streams, sends data, and collects what comes back.
struct SpdyClient {
    write: WriteHalf<UnixStream>,
    compressor: Compressor,
    frames: mpsc::UnboundedReceiver<Frame>,
    next_id: u32,
    /// Data received per stream, and whether its FIN came.
    received: HashMap<u32, (Vec<u8>, bool)>,
    replied: HashSet<u32>,
    goaway: bool,
}

/// Upgrade `POST path` to SPDY offering `protocols`: the client and the chosen protocol,
/// or the refusal's status line and body.
async fn connect(
    socket: &Path,
    path: &str,
    protocols: &[&str],
) -> Result<(SpdyClient, String), String> {
    let mut stream = UnixStream::connect(socket).await.expect("connecting");
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
    );
    for protocol in protocols {
        request.push_str(&format!("X-Stream-Protocol-Version: {protocol}\r\n"));
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request written");
    // Byte by byte, so no frame is read as part of the response head.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = stream.read_u8().await.expect("a response head");
        head.push(byte);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    if !head.starts_with("HTTP/1.1 101") {
        let mut body = vec![0; 4096];
        let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut body))
            .await
            .map_or(0, |r| r.unwrap_or(0));
        return Err(format!("{head}{}", String::from_utf8_lossy(&body[..n])));
    }
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            })
            .map(|(_, v)| v.trim().to_owned())
    };
    assert_eq!(header("upgrade").as_deref(), Some("SPDY/3.1"), "{head}");
    let protocol = header("x-stream-protocol-version").expect("a chosen protocol");
    let (mut read, write) = tokio::io::split(stream);
    let (tx, frames) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut decompressor = Decompressor::default();
        while let Ok(Some(frame)) = Frame::read(&mut read, &mut decompressor).await {
            if tx.send(frame).is_err() {
                return;
            }
        }
    });
    let client = SpdyClient {
        write,
        compressor: Compressor::new().expect("a compressor"),
        frames,
        next_id: 1,
        received: HashMap::new(),
        replied: HashSet::new(),
        goaway: false,
    };
    Ok((client, protocol))
}

impl SpdyClient {
    async fn send(&mut self, frame: Frame) {
        let bytes = frame.encode(&mut self.compressor).expect("encoding");
        self.write.write_all(&bytes).await.expect("writing a frame");
    }

    /// Open a stream with `headers`; its id.
    async fn open(&mut self, headers: &[(&str, &str)]) -> u32 {
        let stream = self.next_id;
        self.next_id += 2;
        let headers = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        self.send(Frame::SynStream {
            stream,
            associated: 0,
            priority: 0,
            flags: 0,
            headers,
        })
        .await;
        stream
    }

    async fn write(&mut self, stream: u32, data: &[u8], fin: bool) {
        let flags = if fin { FLAG_FIN } else { 0 };
        self.send(Frame::Data {
            stream,
            flags,
            data: data.to_vec(),
        })
        .await;
    }

    /// Take in one frame; false when the connection has ended.
    async fn pump(&mut self) -> bool {
        let Some(frame) = self.frames.recv().await else {
            return false;
        };
        match frame {
            Frame::Data {
                stream,
                flags,
                data,
            } => {
                let entry = self.received.entry(stream).or_default();
                entry.0.extend(data);
                entry.1 |= flags & FLAG_FIN != 0;
            }
            Frame::SynReply { stream, .. } => {
                self.replied.insert(stream);
            }
            Frame::RstStream { stream, .. } => {
                self.received.entry(stream).or_default().1 = true;
            }
            Frame::GoAway { .. } => self.goaway = true,
            _ => {}
        }
        true
    }

    /// Everything stream `id` carried, once its FIN came (or the connection ended).
    async fn until_fin(&mut self, id: u32) -> String {
        while !self.received.get(&id).is_some_and(|(_, fin)| *fin) {
            if !self.pump().await {
                break;
            }
        }
        self.text(id)
    }

    /// What stream `id` carried so far.
    fn text(&self, id: u32) -> String {
        self.received
            .get(&id)
            .map(|(data, _)| String::from_utf8_lossy(data).into_owned())
            .unwrap_or_default()
    }

    /// Read until the connection ends.
    async fn drain(&mut self) {
        while self.pump().await {}
    }
}

/// The query of an exec of `command`.
fn exec_path(pod: &TestPod, container: &str, command: &[&str], stdin: bool, tty: bool) -> String {
    let request = ExecRequest {
        command: command.iter().map(|s| s.to_string()).collect(),
        stdin,
        stdout: true,
        stderr: !tty,
        tty,
    };
    format!(
        "/exec/{NAMESPACE}/{}/{container}?{}",
        pod.name(),
        request.to_query()
    )
}

/// What an exec over SPDY produced.
#[derive(Debug)]
struct Ran {
    protocol: String,
    stdout: String,
    stderr: String,
    error: String,
}

/// Exec over SPDY speaking `protocols`; `stdin` is sent (then FIN) after the streams.
async fn spdy_exec(socket: &Path, path: &str, protocols: &[&str], stdin: Option<&str>) -> Ran {
    let (mut client, protocol) = connect(socket, path, protocols).await.expect("upgraded");
    let error = client.open(&[("streamType", "error")]).await;
    let input = match stdin {
        Some(_) => Some(client.open(&[("streamType", "stdin")]).await),
        None => None,
    };
    let stdout = client.open(&[("streamType", "stdout")]).await;
    let stderr = client.open(&[("streamType", "stderr")]).await;
    if let (Some(id), Some(text)) = (input, stdin) {
        client.write(id, text.as_bytes(), true).await;
    }
    let error_text = client.until_fin(error).await;
    let ran = Ran {
        protocol,
        stdout: client.until_fin(stdout).await,
        stderr: client.until_fin(stderr).await,
        error: error_text,
    };
    client.drain().await;
    assert!(client.goaway, "the session ends with GOAWAY: {ran:?}");
    for id in [Some(error), input, Some(stdout), Some(stderr)]
        .into_iter()
        .flatten()
    {
        assert!(
            client.replied.contains(&id),
            "stream {id} was accepted: {ran:?}"
        );
    }
    ran
}

fn status_of(error: &str) -> Outcome {
    let status = serde_json::from_str(error).unwrap_or_else(|e| panic!("{e}: {error:?}"));
    outcome(&status)
}

#[test]
fn exec_over_spdy_streams_output_and_reports_exit_codes_per_protocol() {
    let mut pod = TestPod::new("pp-spdy", Qos::BestEffort);
    pod.run("web", "exec sleep 1000");
    let server = Server::start(&pod, &[]);
    let socket = server.socket();

    let path = exec_path(
        &pod,
        "web",
        &["sh", "-c", "echo out; echo err >&2; exit 3"],
        false,
        false,
    );
    let ran = server.block_on(spdy_exec(&socket, &path, REMOTE_COMMAND, None));
    assert_eq!(ran.protocol, "v4.channel.k8s.io");
    assert_eq!(
        (ran.stdout.as_str(), ran.stderr.as_str()),
        ("out\n", "err\n"),
        "{ran:?}"
    );
    assert_eq!(status_of(&ran.error), Outcome::Exited(3), "{ran:?}");

    let path = exec_path(&pod, "web", &["hostname"], false, false);
    let ran = server.block_on(spdy_exec(&socket, &path, REMOTE_COMMAND, None));
    assert_eq!(ran.stdout.trim(), pod.name(), "{ran:?}");
    assert_eq!(status_of(&ran.error), Outcome::Exited(0), "{ran:?}");

    // v2 and v3 report only failures, as text.
    let v2 = &["v2.channel.k8s.io"];
    let path = exec_path(&pod, "web", &["true"], false, false);
    let ran = server.block_on(spdy_exec(&socket, &path, v2, None));
    assert_eq!(
        (ran.protocol.as_str(), ran.error.as_str()),
        ("v2.channel.k8s.io", "")
    );
    let path = exec_path(&pod, "web", &["sh", "-c", "exit 4"], false, false);
    let ran = server.block_on(spdy_exec(&socket, &path, v2, None));
    assert!(ran.error.contains("exit code 4"), "{ran:?}");

    // A command that cannot start is a Failure with the runtime's reason.
    let path = exec_path(&pod, "web", &["/no/such/binary"], false, false);
    let ran = server.block_on(spdy_exec(&socket, &path, REMOTE_COMMAND, None));
    assert!(
        matches!(status_of(&ran.error), Outcome::Failed(_)),
        "{ran:?}"
    );

    // Output past the initial 64 KiB window flows to a client that sends no
    // WINDOW_UPDATE (as Kubernetes' own SPDY library does).
    let path = exec_path(
        &pod,
        "web",
        &["sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x"],
        false,
        false,
    );
    let ran = server.block_on(spdy_exec(&socket, &path, REMOTE_COMMAND, None));
    assert_eq!(ran.stdout.len(), 300_000, "{}", ran.error);

    // Only SPDY/3.1 protocols we speak are accepted.
    let refused = server.block_on(connect(&socket, &path, &["v5.channel.k8s.io"]));
    let refusal = refused.err().expect("v5 is WebSocket-only");
    assert!(refusal.starts_with("HTTP/1.1 403"), "{refusal}");
    assert!(
        refusal
            .to_ascii_lowercase()
            .contains("x-accepted-stream-protocol-versions: v4.channel.k8s.io"),
        "{refusal}"
    );

    // The same route still speaks WebSocket.
    let target = Target {
        namespace: NAMESPACE.into(),
        pod: pod.name().into(),
        container: "web".into(),
    };
    let request = ExecRequest {
        command: vec!["sh".into(), "-c".into(), "echo ws; exit 5".into()],
        stdin: false,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let io = ExecIo {
        stdin: None::<tokio::io::Empty>,
        stdout: &mut stdout,
        stderr: &mut stderr,
        resize: None,
    };
    let code = server.block_on(client::exec(&socket, &target, &request, io));
    assert_eq!(code.map_err(|e| e.to_string()), Ok(5));
    assert_eq!(stdout, b"ws\n");
    let path = exec_path(&pod, "web", &["true"], false, false);
    let (last, close) = server.block_on(websocket_ending(&socket, &path));
    assert_eq!(last.first(), Some(&3), "the Status on the error channel");
    assert_eq!(
        close,
        Some(1000),
        "kubectl takes any other close as an error"
    );
}

/// The last binary message of a WebSocket exec and its close code.
async fn websocket_ending(socket: &Path, path: &str) -> (Vec<u8>, Option<u16>) {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let stream = UnixStream::connect(socket).await.expect("connecting");
    let mut request = format!("ws://localhost{path}")
        .into_client_request()
        .expect("a request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io".parse().expect("a header"),
    );
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("upgraded");
    let mut last = Vec::new();
    while let Some(Ok(message)) = ws.next().await {
        match message {
            Message::Binary(data) => last = data.to_vec(),
            Message::Close(frame) => return (last, frame.map(|f| u16::from(f.code))),
            _ => {}
        }
    }
    (last, None)
}

#[test]
fn exec_over_spdy_passes_stdin_and_follows_terminal_resizes() {
    let mut pod = TestPod::new("pp-spdy", Qos::BestEffort);
    pod.run("web", "exec sleep 1000");
    let server = Server::start(&pod, &[]);
    let socket = server.socket();

    let path = exec_path(&pod, "web", &["cat"], true, false);
    let ran = server.block_on(spdy_exec(
        &socket,
        &path,
        REMOTE_COMMAND,
        Some("hello\nworld\n"),
    ));
    assert_eq!(ran.stdout, "hello\nworld\n", "{ran:?}");
    assert_eq!(status_of(&ran.error), Outcome::Exited(0), "{ran:?}");

    // A terminal: stdin, stdout and resize streams, no stderr.
    let path = exec_path(&pod, "web", &["sh"], true, true);
    let (stdout, error) = server.block_on(async {
        let (mut client, _) = connect(&socket, &path, REMOTE_COMMAND)
            .await
            .expect("upgraded");
        let error = client.open(&[("streamType", "error")]).await;
        let stdin = client.open(&[("streamType", "stdin")]).await;
        let stdout = client.open(&[("streamType", "stdout")]).await;
        let resize = client.open(&[("streamType", "resize")]).await;
        // Two sizes in one frame and a third split across two, as a stream may carry them.
        client
            .write(
                resize,
                br#"{"Width":80,"Height":24}{"Width":100,"Height":30}{"Width":1"#,
                false,
            )
            .await;
        client.write(resize, br#"23,"Height":45}"#, false).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        client.write(stdin, b"stty size; exit 7\n", false).await;
        let error = client.until_fin(error).await;
        (client.until_fin(stdout).await, error)
    });
    assert!(stdout.contains("45 123"), "{stdout:?}");
    assert_eq!(status_of(&error), Outcome::Exited(7), "{stdout:?}");
}

#[test]
fn port_forward_over_spdy_serves_many_requests_and_reports_a_closed_port() {
    let mut pod = TestPod::new("pp-spdy", Qos::BestEffort);
    run_web(&mut pod);
    let server = Server::start(&pod, &[]);
    let socket = server.socket();
    let path = format!("/portForward/{NAMESPACE}/{}", pod.name());

    let (answers, errors, closed) = server.block_on(async {
        let (mut client, protocol) = connect(&socket, &path, &["portforward.k8s.io"])
            .await
            .expect("upgraded");
        assert_eq!(protocol, "portforward.k8s.io");
        let port = PORT.to_string();
        let mut requests = Vec::new();
        for id in ["0", "1"] {
            let headers = |kind| {
                [
                    ("streamType", kind),
                    ("port", port.as_str()),
                    ("requestID", id),
                ]
            };
            let error = client.open(&headers("error")).await;
            // kubectl only reads the error stream.
            client.write(error, b"", true).await;
            let data = client.open(&headers("data")).await;
            requests.push((error, data));
        }
        // Both connections are open at once; each gets its own answer.
        for (_, data) in &requests {
            client.write(*data, b"GET / HTTP/1.0\r\n\r\n", true).await;
        }
        let mut answers = Vec::new();
        let mut errors = Vec::new();
        for (error, data) in &requests {
            answers.push(client.until_fin(*data).await);
            errors.push(client.until_fin(*error).await);
        }
        // Nothing listens on 8081 in the pod (the host's 8081 is not looked at).
        let closed_port = (PORT + 1).to_string();
        let headers = |kind| {
            [
                ("streamType", kind),
                ("port", closed_port.as_str()),
                ("requestID", "2"),
            ]
        };
        let error = client.open(&headers("error")).await;
        client.open(&headers("data")).await;
        let closed = client.until_fin(error).await;
        (answers, errors, closed)
    });
    for answer in &answers {
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with("hello from web\n"), "{answer}");
    }
    assert_eq!(errors, ["", ""]);
    assert!(
        closed.contains("127.0.0.1:8081") && closed.contains("refused"),
        "{closed}"
    );

    // The same route still forwards over a WebSocket.
    let pod_name = pod.name().to_owned();
    let answer = server.block_on(async move {
        let (mut ours, theirs) = tokio::io::duplex(64 * 1024);
        let forward = tokio::spawn(async move {
            client::forward(&socket, NAMESPACE, &pod_name, PORT, theirs).await
        });
        ours.write_all(b"GET / HTTP/1.0\r\n\r\n")
            .await
            .expect("request written");
        let mut answer = Vec::new();
        let _ = ours.read_to_end(&mut answer).await;
        forward.await.expect("the forward task").expect("forwarded");
        String::from_utf8_lossy(&answer).into_owned()
    });
    assert!(answer.ends_with("hello from web\n"), "{answer}");
}

/// The number in the last complete `tick N` line of a CRI log.
fn last_tick(log: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .filter_map(|l| {
            l.split_once(" stdout F tick ")
                .map(|(_, n)| n.trim().parse().ok())
        })
        .flatten()
        .last()
}

#[test]
fn attach_over_spdy_streams_new_output_apart_and_refuses_stdin() {
    let mut pod = TestPod::new("pp-spdy", Qos::BestEffort);
    let logs = tempfile::Builder::new()
        .prefix("pp-spdy-logs-")
        .tempdir()
        .expect("a log dir");
    let log = logs.path().join("0.log");
    let exit = logs.path().join("exit.json");
    pod.start(
        "talker",
        "i=0; while true; do i=$((i+1)); echo tick $i; echo tock $i >&2; sleep 0.1; done",
        log.clone(),
    );
    let server = Server::start(&pod, &[("talker", log.clone(), exit.clone())]);
    let socket = server.socket();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while last_tick(&log).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the container logs ticks"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = last_tick(&log).expect("a tick");

    let path = format!(
        "/attach/{NAMESPACE}/{}/talker?stdout=1&stderr=1",
        pod.name()
    );
    let (stdout, stderr, error) = server.block_on(async {
        let (mut client, _) = connect(&socket, &path, REMOTE_COMMAND)
            .await
            .expect("upgraded");
        let error = client.open(&[("streamType", "error")]).await;
        let stdout = client.open(&[("streamType", "stdout")]).await;
        let stderr = client.open(&[("streamType", "stderr")]).await;
        while client.text(stdout).lines().count() < 3 || client.text(stderr).is_empty() {
            assert!(client.pump().await, "the session lasts");
        }
        // The container's end (its exit record) ends the attach.
        std::fs::write(&exit, "{}").expect("the exit record");
        let error = client.until_fin(error).await;
        (
            client.until_fin(stdout).await,
            client.until_fin(stderr).await,
            error,
        )
    });
    let first: u32 = stdout
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("tick "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("tick lines: {stdout:?}"));
    assert!(
        first > before,
        "only new output: first {first}, logged before {before}"
    );
    assert!(stdout.lines().all(|l| l.starts_with("tick ")), "{stdout:?}");
    assert!(
        stderr.lines().all(|l| l.starts_with("tock ")) && !stderr.is_empty(),
        "{stderr:?}"
    );
    assert_eq!(status_of(&error), Outcome::Exited(0));

    // No stdin pipe to attach to: refused before the upgrade, saying why.
    let path = format!("/attach/{NAMESPACE}/{}/talker?stdin=1&stdout=1", pod.name());
    let refusal = server
        .block_on(connect(&socket, &path, REMOTE_COMMAND))
        .err()
        .expect("stdin is refused");
    assert!(refusal.starts_with("HTTP/1.1 400"), "{refusal}");
    assert!(refusal.contains("without a stdin pipe"), "{refusal}");
}

/// The kubelet's router over TLS on loopback, as the API server's proxy reaches kubelets.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, address)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, address);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Serve `router` over TLS (a serving certificate from `pki`) on a free loopback port.
fn serve_tls(served: &Served, pki: &peapod_tests::pki::Pki, router: axum::Router) -> u16 {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let serving = pki.server_cert(&["127.0.0.1"]).expect("a serving cert");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(serving.cert_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(serving.key_der.clone())),
        )
        .expect("a TLS config");
    let tcp = served
        .runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a loopback port");
    let port = tcp.local_addr().expect("its address").port();
    let listener = TlsListener {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    };
    served
        .runtime
        .spawn(async move { axum::serve(listener, router).await });
    port
}

/// A kubectl run against `server`, with `env` set; its exit code, stdout and stderr.
fn kubectl(
    server: &peapod_tests::apiserver::ApiServer,
    env: &[(&str, &str)],
    stdin: &str,
    args: &[&str],
) -> (Option<i32>, String, String) {
    let mut command = server.kubectl_command(args);
    command
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("kubectl runs");
    let mut input = child.stdin.take().expect("kubectl's stdin");
    std::io::Write::write_all(&mut input, stdin.as_bytes()).expect("kubectl's input");
    drop(input);
    let output = child.wait_with_output().expect("kubectl's output");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Run a kubectl that does not end by itself (attach, port-forward) until `until` says
/// what it printed so far is enough (or 20 s passed), then stop it; its stdout and stderr.
fn kubectl_until(
    server: &peapod_tests::apiserver::ApiServer,
    env: &[(&str, &str)],
    args: &[&str],
    until: impl Fn(&str, &str) -> bool,
) -> (String, String) {
    use std::io::Read;
    let mut child = server
        .kubectl_command(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    let collect = |mut from: Box<dyn Read + Send>| {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = from.read(&mut buf) {
                into.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        seen
    };
    let out = collect(Box::new(child.stdout.take().expect("stdout")));
    let err = collect(Box::new(child.stderr.take().expect("stderr")));
    let text = |seen: &Arc<std::sync::Mutex<Vec<u8>>>| {
        String::from_utf8_lossy(&seen.lock().unwrap()).into_owned()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !until(&text(&out), &text(&err)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    // kubectl is ours (spawned above): stopped by its own handle.
    let _ = child.kill();
    let _ = child.wait();
    (text(&out), text(&err))
}

/// GET / through a port kubectl forwards; the answer.
fn fetch(port: u16) -> String {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the forwarded port");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
    tcp.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("a request");
    let mut answer = String::new();
    let _ = tcp.read_to_string(&mut answer);
    answer
}

#[test]
fn the_real_kubectl_execs_attaches_and_forwards_through_the_api_server() {
    let mut pod = TestPod::new("pp-spdy", Qos::BestEffort);
    run_web(&mut pod);
    let logs = tempfile::Builder::new()
        .prefix("pp-spdy-logs-")
        .tempdir()
        .expect("a log dir");
    let log = logs.path().join("0.log");
    pod.start(
        "talker",
        "i=0; while true; do i=$((i+1)); echo tick $i; echo tock $i >&2; sleep 0.2; done",
        log.clone(),
    );
    let talker = [("talker", log, logs.path().join("exit.json"))];
    let served = Server::start(&pod, &talker);
    let api = peapod_tests::apiserver::ApiServer::start();
    let port = serve_tls(&served, api.pki(), pod_router(&pod, &talker));
    api.create(&format!(
        r#"{{"apiVersion": "v1", "kind": "Node", "metadata": {{"name": "spdy-node"}},
            "status": {{"addresses": [{{"type": "InternalIP", "address": "127.0.0.1"}}],
                        "daemonEndpoints": {{"kubeletEndpoint": {{"Port": {port}}}}}}}}}"#
    ))
    .expect("the node");
    let name = pod.name().to_owned();
    api.create(&format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}", "namespace": "default"}},
            "spec": {{"nodeName": "spdy-node", "containers": [
                {{"name": "web", "image": "busybox"}}, {{"name": "talker", "image": "busybox"}}]}}}}"#
    ))
    .expect("the pod");
    api.set_status(
        &format!("/api/v1/namespaces/default/pods/{name}"),
        serde_json::json!({"phase": "Running"}),
    )
    .expect("running");

    let spdy_exec = [("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")];
    let exec = ["exec", name.as_str(), "-c", "web", "--"];
    let args = |command: &[&'static str]| [&exec[..], command].concat();
    let ran = kubectl(
        &api,
        &spdy_exec,
        "",
        &args(&["sh", "-c", "hostname; echo err >&2; exit 3"]),
    );
    assert_eq!(ran.0, Some(3), "{ran:?}");
    assert_eq!(ran.1.trim(), name, "{ran:?}");
    assert!(ran.2.contains("err"), "{ran:?}");
    let ran = kubectl(
        &api,
        &spdy_exec,
        "typed\n",
        &[
            &["exec", "-i", name.as_str(), "-c", "web", "--"][..],
            &["cat"],
        ]
        .concat(),
    );
    assert_eq!((ran.0, ran.1.as_str()), (Some(0), "typed\n"), "{ran:?}");
    // kubectl's default, WebSocket, passed through to the kubelet.
    let ran = kubectl(&api, &[], "", &args(&["sh", "-c", "echo ws; exit 4"]));
    assert_eq!((ran.0, ran.1.as_str()), (Some(4), "ws\n"), "{ran:?}");

    for env in [&spdy_exec[..], &[]] {
        let (out, err) =
            kubectl_until(&api, env, &["attach", &name, "-c", "talker"], |out, err| {
                out.contains("tick") && err.contains("tock")
            });
        assert!(
            out.lines().any(|l| l.starts_with("tick ")),
            "{out:?} {err:?}"
        );
        assert!(
            err.lines().any(|l| l.starts_with("tock ")),
            "{out:?} {err:?}"
        );
    }

    // Port-forward over SPDY, and kubectl's default WebSocket tunnel, which the API
    // server unwraps into SPDY towards the kubelet.
    let spdy_forward = [("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")];
    for env in [&spdy_forward[..], &[]] {
        let answers = std::sync::Mutex::new(Vec::new());
        kubectl_until(
            &api,
            env,
            &["port-forward", &format!("pod/{name}"), ":8080"],
            |out, _| {
                let Some(local) = out
                    .lines()
                    .find_map(|l| l.strip_prefix("Forwarding from 127.0.0.1:"))
                    .and_then(|l| l.split(' ').next())
                    .and_then(|p| p.parse::<u16>().ok())
                else {
                    return false;
                };
                let mut answers = answers.lock().unwrap();
                answers.push(fetch(local));
                answers.len() == 2
            },
        );
        let answers = answers.into_inner().unwrap();
        assert_eq!(answers.len(), 2, "{answers:?}");
        for answer in answers {
            assert!(answer.ends_with("hello from web\n"), "{answer:?}");
        }
    }
}
