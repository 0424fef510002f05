//! Exec and port-forward end to end, as root: a busybox container in a real sandbox, the
//! stream handlers behind a small axum router on a unix socket, driven by the client
//! functions (and the `peapod` binary) the CLI uses.
//!
//! Needs root, busybox-static, and the binaries built (`cargo build --workspace --bins`).
//! Each test has its own sandbox (state dir and cgroup root of its own), runtime root
//! and socket dir, all removed at the end even when the test fails.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kubelet::api::RuntimeRef;
use kubelet::stream::channel::Size;
use kubelet::stream::client::{self, ExecIo, Target};
use kubelet::stream::{ExecRequest, EXEC_PROTOCOLS, PORT_FORWARD_PROTOCOLS};
use peapod_tests::cli::{binary_path, runtime_path};
use peapod_tests::pod::{TestPod, NAMESPACE};
use runtime::sandbox::Qos;
use serde_json::json;
use support::served::Served;
use support::web::{run_web, PORT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// A pod in throwaway locations, with its own runtime root; taken down on drop.
#[track_caller]
fn new_pod() -> TestPod {
    TestPod::new("pp-stream", Qos::BestEffort)
}

/// The runtime as the stream handlers run it: on the pod's root.
fn runtime_ref(pod: &TestPod) -> RuntimeRef {
    RuntimeRef {
        binary: runtime_path().to_path_buf(),
        root: pod.runtime_root().to_path_buf(),
    }
}

/// What the test router knows of the pod.
#[derive(Clone)]
struct Node {
    pod: String,
    runtime: RuntimeRef,
    netns: PathBuf,
    containers: Vec<(String, String)>,
}

/// A minimal local API: the pod, exec and port-forward, on a unix socket in a temp dir.
type Server = Served;

impl Served {
    fn start(pod: &TestPod) -> Served {
        let mut containers: Vec<_> = pod
            .containers()
            .iter()
            .map(|c| (c.name.clone(), c.id.clone()))
            .collect();
        containers.sort();
        let node = Node {
            pod: pod.name().to_owned(),
            runtime: runtime_ref(pod),
            netns: pod.sandbox.pins().net.clone(),
            containers,
        };
        let app = Router::new()
            .route("/pods/{ns}/{name}", get(get_pod))
            .route("/exec/{ns}/{pod}/{container}", get(exec))
            .route("/portForward/{ns}/{pod}", get(port_forward))
            .with_state(node);
        Served::serve("pp-stream-api-", app)
    }

    /// A plain exec: no stdin, no terminal.
    fn exec(&self, target: &Target, command: &[&str]) -> Ran {
        run_exec(self, target, command, false, None, vec![])
    }
}

fn not_found(name: &str) -> Response {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": format!("pods \"{name}\" not found"), "reason": "NotFound", "code": 404});
    (StatusCode::NOT_FOUND, Json(status)).into_response()
}

async fn get_pod(
    State(node): State<Node>,
    UrlPath((_ns, name)): UrlPath<(String, String)>,
) -> Response {
    if name != node.pod {
        return not_found(&name);
    }
    let containers: Vec<_> = node
        .containers
        .iter()
        .map(|(name, _)| json!({"name": name}))
        .collect();
    Json(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"containers": containers}}))
    .into_response()
}

async fn exec(
    State(node): State<Node>,
    UrlPath((_ns, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    if pod != node.pod {
        return not_found(&pod);
    }
    let request = match ExecRequest::from_query(query.as_deref().unwrap_or_default()) {
        Ok(request) => request,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    // An unknown container name goes to the runtime as an id it does not know.
    let id = node
        .containers
        .iter()
        .find(|(name, _)| *name == container)
        .map(|(_, id)| id.clone())
        .unwrap_or(container);
    ws.protocols(EXEC_PROTOCOLS.iter().copied())
        .on_upgrade(move |socket| kubelet::stream::exec(socket, node.runtime, id, request))
}

async fn port_forward(
    State(node): State<Node>,
    UrlPath((_ns, pod)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    if pod != node.pod {
        return not_found(&pod);
    }
    let port = query
        .as_deref()
        .and_then(|q| q.strip_prefix("port="))
        .and_then(|p| p.parse().ok());
    let Some(port) = port else {
        return (StatusCode::BAD_REQUEST, "port=N expected").into_response();
    };
    ws.protocols(PORT_FORWARD_PROTOCOLS.iter().copied())
        .on_upgrade(move |socket| kubelet::stream::port_forward(socket, node.netns, port))
}

/// What a client-side exec produced.
#[derive(Debug)]
struct Ran {
    code: Result<i32, String>,
    stdout: String,
    stderr: String,
}

fn target(pod: &TestPod, container: &str) -> Target {
    Target {
        namespace: NAMESPACE.into(),
        pod: pod.name().into(),
        container: container.into(),
    }
}

/// Exec `command` (on a terminal with `tty`); `input`, when given, is typed after a
/// delay and then ends; `sizes` are queued for the resize channel.
fn run_exec(
    server: &Server,
    target: &Target,
    command: &[&str],
    tty: bool,
    input: Option<(&'static str, Duration)>,
    sizes: Vec<Size>,
) -> Ran {
    let request = ExecRequest {
        command: command.iter().map(|s| s.to_string()).collect(),
        stdin: input.is_some(),
        stdout: true,
        stderr: !tty,
        tty,
    };
    let resize = tty.then(|| {
        let (tx, rx) = mpsc::channel(8);
        for size in sizes {
            tx.try_send(size).expect("room for the sizes");
        }
        rx
    });
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let io = ExecIo {
        stdin: input.map(|(text, delay)| typed(server, text, delay)),
        stdout: &mut stdout,
        stderr: &mut stderr,
        resize,
    };
    let code = server
        .block_on(client::exec(&server.socket(), target, &request, io))
        .map_err(|e| e.to_string());
    Ran {
        code,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// An in-memory stdin: `text` is typed after `delay`, then the input ends.
fn typed(server: &Server, text: &'static str, delay: Duration) -> tokio::io::DuplexStream {
    let (ours, theirs) = tokio::io::duplex(1024);
    server.runtime.spawn(async move {
        let mut ours = ours;
        tokio::time::sleep(delay).await;
        let _ = ours.write_all(text.as_bytes()).await;
        // Dropping our end is the end of the input.
    });
    theirs
}

#[test]
fn exec_streams_output_and_reports_exit_codes() {
    let mut pod = new_pod();
    pod.run("web", "exec sleep 1000");
    let server = Server::start(&pod);
    let web = target(&pod, "web");

    let ran = server.exec(&web, &["hostname"]);
    assert_eq!(ran.code, Ok(0), "{ran:?}");
    assert_eq!(
        ran.stdout,
        format!("{}\n", pod.sandbox.hostname()),
        "{ran:?}"
    );

    let script = "echo out; echo err >&2; exit 3";
    let ran = server.exec(&web, &["sh", "-c", script]);
    assert_eq!(ran.code, Ok(3), "{ran:?}");
    assert_eq!(
        (ran.stdout.as_str(), ran.stderr.as_str()),
        ("out\n", "err\n")
    );

    let input = ("line one\nline two\n", Duration::ZERO);
    let ran = run_exec(&server, &web, &["cat"], false, Some(input), vec![]);
    assert_eq!(ran.code, Ok(0), "{ran:?}");
    assert_eq!(ran.stdout, "line one\nline two\n");

    let ran = server.exec(&web, &["no-such-command"]);
    let err = ran.code.expect_err("a missing executable is a failure");
    assert!(
        err.contains("error executing command in container"),
        "{err}"
    );
    assert!(err.contains("no-such-command"), "{err}");
    assert_eq!(
        ran.stderr, "",
        "the runtime's words go into the Status only"
    );

    let ghost = target(&pod, "ghost-container");
    let ran = server.exec(&ghost, &["true"]);
    let err = ran.code.expect_err("no such container");
    assert!(err.contains("ghost-container"), "{err}");

    let missing = Target {
        pod: "no-such-pod".into(),
        ..web.clone()
    };
    let ran = server.exec(&missing, &["true"]);
    assert_eq!(
        ran.code,
        Err("Error from server (NotFound): pods \"no-such-pod\" not found".into())
    );
}

#[test]
fn exec_on_a_terminal_follows_resizes_and_ends_input_with_eof() {
    let mut pod = new_pod();
    pod.run("web", "exec sleep 1000");
    let server = Server::start(&pod);
    let web = target(&pod, "web");

    let ran = run_exec(&server, &web, &["tty"], true, None, vec![]);
    assert_eq!(ran.code, Ok(0), "{ran:?}");
    assert!(ran.stdout.starts_with("/dev/pts/"), "{ran:?}");

    // The size goes first; the shell reads its line after it.
    let size = Size {
        width: 123,
        height: 45,
    };
    let input = ("stty size; exit 7\n", Duration::from_millis(500));
    let ran = run_exec(&server, &web, &["sh"], true, Some(input), vec![size]);
    assert_eq!(ran.code, Ok(7), "{ran:?}");
    assert!(ran.stdout.contains("45 123"), "{ran:?}");

    // The input's end is the terminal's EOF character: cat ends.
    let input = ("typed\n", Duration::from_millis(200));
    let ran = run_exec(&server, &web, &["cat"], true, Some(input), vec![]);
    assert_eq!(ran.code, Ok(0), "{ran:?}");
    assert!(ran.stdout.contains("typed"), "{ran:?}");
}

/// Exchange one HTTP/1.0 request through a forward built on an in-memory connection.
fn forward_get(server: &Server, pod: &TestPod, port: u16) -> (Result<(), String>, String) {
    let socket = server.socket();
    let pod = pod.name().to_owned();
    server.block_on(async move {
        let (mut ours, theirs) = tokio::io::duplex(64 * 1024);
        let forward =
            tokio::spawn(
                async move { client::forward(&socket, NAMESPACE, &pod, port, theirs).await },
            );
        ours.write_all(b"GET / HTTP/1.0\r\n\r\n")
            .await
            .expect("request written");
        let mut answer = Vec::new();
        let _ = ours.read_to_end(&mut answer).await;
        let result = forward
            .await
            .expect("the forward task")
            .map_err(|e| e.to_string());
        (result, String::from_utf8_lossy(&answer).into_owned())
    })
}

#[test]
fn port_forward_reaches_a_port_inside_the_pod_and_reports_a_closed_one() {
    let mut pod = new_pod();
    run_web(&mut pod);
    let server = Server::start(&pod);

    let (result, answer) = forward_get(&server, &pod, PORT);
    assert_eq!(result, Ok(()), "{answer}");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("hello from web\n"), "{answer}");

    // Nothing listens on 8081 in the pod (the host's 8081 is not looked at).
    let (result, answer) = forward_get(&server, &pod, PORT + 1);
    let err = result.expect_err("a closed port is an error");
    assert!(err.contains("127.0.0.1:8081"), "{err}");
    assert!(err.contains("refused"), "{err}");
    assert_eq!(answer, "");
}

fn peapod() -> PathBuf {
    binary_path("PEAPOD", "peapod", "`cargo build -p peapod-kubelet --bins`")
}

/// A `peapod` process we started, killed by its PID on drop.
struct Forwarder(Child);

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_peapod_cli_execs_and_forwards_as_kubectl_does() {
    let mut pod = new_pod();
    run_web(&mut pod);
    pod.run("sidecar", "exec sleep 1000");
    let server = Server::start(&pod);
    let socket = server.socket();
    let cli = |args: &[&str]| {
        Command::new(peapod())
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running peapod")
    };

    // No -c: the first container, with kubectl's note.
    let out = cli(&[
        "exec",
        "-n",
        NAMESPACE,
        pod.name(),
        "--",
        "sh",
        "-c",
        "hostname; exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}\n", pod.sandbox.hostname())
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Defaulted container \"sidecar\" out of: sidecar, web\n"
    );

    let out = cli(&["exec", "-n", NAMESPACE, "no-such-pod", "--", "true"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error from server (NotFound): pods \"no-such-pod\" not found\n"
    );

    let child = Command::new(peapod())
        .arg("--socket")
        .arg(&socket)
        .args([
            "port-forward",
            "-n",
            NAMESPACE,
            &format!("pod/{}", pod.name()),
        ])
        .arg(format!(":{PORT}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting peapod port-forward");
    let mut forwarder = Forwarder(child);
    let mut lines = BufReader::new(forwarder.0.stdout.take().expect("its stdout")).lines();
    let first = lines.next().expect("a first line").expect("readable");
    let local: u16 = first
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|rest| rest.strip_suffix(&format!(" -> {PORT}")))
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    let mut connection = std::net::TcpStream::connect(("127.0.0.1", local)).expect("connecting");
    connection
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("a read timeout");
    connection
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .expect("request sent");
    let mut answer = String::new();
    connection.read_to_string(&mut answer).expect("the answer");
    assert!(answer.ends_with("hello from web\n"), "{answer}");
    let second = lines.next().expect("a second line").expect("readable");
    assert_eq!(second, format!("Handling connection for {local}"));
}

/// Host pids whose command line is exactly `argv`.
fn processes_running(argv: &[&str]) -> Vec<i32> {
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .expect("reading /proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted))
        .collect()
}

#[test]
fn exec_kills_the_command_when_the_client_goes_away() {
    let mut pod = new_pod();
    pod.run("web", "exec sleep 1000");
    let server = Server::start(&pod);
    // A duration no other test uses, to find the command among the host's processes.
    let seconds = (3000 + std::process::id() % 1000).to_string();
    let argv = ["sleep", seconds.as_str()];
    let script = format!("echo started; exec sleep {seconds}");
    let (socket, web) = (server.socket(), target(&pod, "web"));
    let request = ExecRequest {
        command: vec!["sh".into(), "-c".into(), script],
        stdout: true,
        ..ExecRequest::default()
    };
    server.block_on(async move {
        let (stdout, mut ours) = tokio::io::duplex(1024);
        let exec = tokio::spawn(async move {
            let io = ExecIo::<tokio::io::Empty, _, _> {
                stdin: None,
                stdout,
                stderr: tokio::io::sink(),
                resize: None,
            };
            client::exec(&socket, &web, &request, io).await
        });
        let mut started = [0; 8];
        ours.read_exact(&mut started)
            .await
            .expect("the command's first line");
        assert_eq!(&started, b"started\n");
        exec.abort();
    });
    assert!(
        peapod_tests::host::wait_until(Duration::from_secs(10), || processes_running(&argv)
            .is_empty()),
        "{argv:?} still runs after the client went away: {:?}",
        processes_running(&argv)
    );
}

/// Reads the terminal `master` until its output so far contains `needle`; panics with
/// what arrived if it does not within 20 s.
#[track_caller]
fn read_until(master: &mut std::fs::File, seen: &mut String, needle: &str) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        let ready = matches!(poll(&mut fds, timeout), Ok(n) if n > 0);
        assert!(
            ready && !left.is_zero(),
            "no {needle:?} on the terminal; got {seen:?}"
        );
        let mut buf = [0u8; 4096];
        match master.read(&mut buf) {
            Ok(n @ 1..) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            other => panic!("reading the terminal: {other:?}; got {seen:?}"),
        }
    }
}

#[test]
fn peapod_exec_on_a_terminal_goes_raw_follows_its_size_and_restores_it() {
    use nix::sys::termios::{tcgetattr, LocalFlags};
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;

    let mut pod = new_pod();
    pod.run("web", "exec sleep 1000");
    let server = Server::start(&pod);
    let size = |rows, cols| nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size(30, 100)), None).expect("a pty");
    let slave: OwnedFd = pty.slave;
    let stdio = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("a slave fd"));
    let mut command = Command::new(peapod());
    command
        .arg("--socket")
        .arg(server.socket())
        .args([
            "exec",
            "-it",
            "-n",
            NAMESPACE,
            pod.name(),
            "-c",
            "web",
            "--",
            "sh",
        ])
        .stdin(stdio(&slave))
        .stdout(stdio(&slave))
        .stderr(stdio(&slave));
    // SAFETY: only async-signal-safe calls (setsid, ioctl) between fork and exec; they
    // make the pty peapod's controlling terminal, so resizing it sends peapod SIGWINCH.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut peapod = Forwarder(command.spawn().expect("starting peapod exec -it"));
    let mut master = std::fs::File::from(pty.master);
    let mut seen = String::new();

    read_until(&mut master, &mut seen, "/ # ");
    let local = tcgetattr(&slave).expect("the terminal's modes").local_flags;
    assert!(
        !local.intersects(LocalFlags::ICANON | LocalFlags::ECHO),
        "peapod's terminal is raw while the command runs: {local:?}"
    );
    master.write_all(b"stty size\n").expect("typing");
    read_until(&mut master, &mut seen, "30 100");

    // SAFETY: TIOCSWINSZ reads a winsize struct we own.
    let resized = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size(50, 160)) };
    assert_eq!(resized, 0, "resizing the terminal");
    std::thread::sleep(Duration::from_millis(500));
    master.write_all(b"stty size; exit 5\n").expect("typing");
    read_until(&mut master, &mut seen, "50 160");

    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = peapod.0.try_wait().expect("waiting for peapod") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "peapod did not exit; saw {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(5), "{seen:?}");
    let local = tcgetattr(&slave).expect("the terminal's modes").local_flags;
    assert!(
        local.contains(LocalFlags::ICANON | LocalFlags::ECHO),
        "peapod restored the terminal: {local:?}"
    );
}
