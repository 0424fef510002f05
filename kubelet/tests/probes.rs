//! Probe and hook actions run for real, as root: servers in a network namespace of the
//! test's own (busybox httpd, `openssl s_server`, a small gRPC health server, a
//! listener nobody accepts on), and exec in a real busybox container, judged by `pod::handler::run`; then
//! `ContainerProbes` reporting from them.
//!
//! Needs root, busybox-static, openssl, and the binaries built (`cargo build
//! --workspace --bins`). Each test has its own namespace (and sandbox for exec); servers
//! are killed and namespaces deleted at the end, even when the test fails.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::HeaderMap;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kubelet::api::RuntimeRef;
use kubelet::netns::Dialer;
use kubelet::pod::handler::{run, Action, HttpGet, Outcome, Purpose, Scheme, Target};
use kubelet::pod::probe::{Change, ContainerProbes, Kind};
use peapod_tests::cli::runtime_path;
use peapod_tests::host::{host_command, Netns};
use peapod_tests::pod::TestPod;
use runtime::sandbox::Qos;
use tempfile::TempDir;
use tokio::sync::mpsc;

/// The pod IP the test namespaces carry (on their loopback; private to each).
const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const HTTP: u16 = 8080;
const HTTPS: u16 = 8443;
const SILENT: u16 = 9100;
const GRPC: u16 = 9090;
const GRPC_NONE: u16 = 9091;
const CLOSED: u16 = 8081;

const SECOND: Duration = Duration::from_secs(1);

/// A network namespace standing in for a pod's, with `POD_IP` on its loopback and
/// servers started in it; servers killed and the namespace deleted on drop.
struct PodNet {
    servers: Vec<Child>,
    dir: TempDir,
    // Dropped last: the servers must be gone before their namespace.
    netns: Netns,
}

impl PodNet {
    fn new() -> PodNet {
        let netns = Netns::new();
        host_command("ip", &["-n", netns.name(), "link", "set", "lo", "up"]);
        host_command(
            "ip",
            &[
                "-n",
                netns.name(),
                "addr",
                "add",
                &format!("{POD_IP}/32"),
                "dev",
                "lo",
            ],
        );
        let dir = tempfile::Builder::new()
            .prefix("pp-probes-")
            .tempdir()
            .expect("a temp dir");
        PodNet {
            servers: Vec::new(),
            dir,
            netns,
        }
    }

    /// Start `argv` inside the namespace, in the temp dir.
    fn spawn(&mut self, argv: &[&str]) {
        let child = Command::new("ip")
            .args(["netns", "exec", self.netns.name()])
            .args(argv)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {argv:?}: {e}"));
        self.servers.push(child);
    }

    fn target(&self) -> Target {
        Target::new(
            self.netns.path(),
            IpAddr::V4(POD_IP),
            "no-container".into(),
            RuntimeRef {
                binary: runtime_path().to_path_buf(),
                root: self.dir.path().join("no-root"),
            },
        )
    }

    /// Busybox httpd on `POD_IP:HTTP` only, serving `/`, `/sub/`, `/empty/` (no
    /// index: 404) and a CGI script that writes the request's environment to `env`.
    fn start_httpd(&mut self) {
        let www = self.dir.path().join("www");
        for dir in ["sub", "empty", "cgi-bin"] {
            std::fs::create_dir_all(www.join(dir)).expect("www dirs");
        }
        std::fs::write(www.join("index.html"), "root\n").expect("index");
        std::fs::write(www.join("sub/index.html"), "sub\n").expect("sub index");
        let script = www.join("cgi-bin/env");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nenv > {}\nprintf 'Content-Type: text/plain\\r\\n\\r\\nok\\n'\n",
                self.dir.path().join("env").display()
            ),
        )
        .expect("cgi script");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .expect("cgi mode");
        let listen = format!("{POD_IP}:{HTTP}");
        let home = www.display().to_string();
        self.spawn(&["busybox", "httpd", "-f", "-p", &listen, "-h", &home]);
    }

    /// `openssl s_server -www` with a fresh self-signed certificate on `HTTPS`.
    fn start_https(&mut self) {
        let (key, cert) = (
            self.dir.path().join("key.pem"),
            self.dir.path().join("cert.pem"),
        );
        host_command(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                "/CN=probe-test",
                "-days",
                "1",
                "-keyout",
                &key.display().to_string(),
                "-out",
                &cert.display().to_string(),
            ],
        );
        let port = HTTPS.to_string();
        self.spawn(&[
            "openssl",
            "s_server",
            "-quiet",
            "-www",
            "-accept",
            &port,
            "-cert",
            &cert.display().to_string(),
            "-key",
            &key.display().to_string(),
        ]);
    }

    /// Wait until `port` on the pod IP accepts connections.
    async fn wait_listening(&self, port: u16) {
        let target = self.target();
        let action = Action::TcpSocket { host: None, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while run(&action, &target, SECOND).await != Outcome::Success {
            assert!(Instant::now() < deadline, "nothing listens on port {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PodNet {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

fn get(scheme: Scheme, host: Option<&str>, port: u16, path: &str) -> Action {
    Action::HttpGet(HttpGet {
        purpose: Purpose::Probe,
        scheme,
        host: host.map(str::to_owned),
        port,
        path: path.into(),
        headers: vec![],
    })
}

fn failure(outcome: Outcome) -> String {
    match outcome {
        Outcome::Failure(message) => message,
        other => panic!("expected a Failure, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_get_judges_status_follows_redirects_and_sends_upstreams_headers() {
    let mut pod = PodNet::new();
    pod.start_httpd();
    pod.wait_listening(HTTP).await;
    let target = pod.target();
    let timeout = 2 * SECOND;

    assert_eq!(
        run(&get(Scheme::Http, None, HTTP, "/"), &target, timeout).await,
        Outcome::Success
    );
    assert_eq!(
        failure(run(&get(Scheme::Http, None, HTTP, "missing"), &target, timeout).await),
        "HTTP probe failed with statuscode: 404"
    );
    // /sub and /empty redirect to their slashed paths: followed, so the 404 behind
    // /empty/ fails the probe.
    assert_eq!(
        run(&get(Scheme::Http, None, HTTP, "/sub"), &target, timeout).await,
        Outcome::Success
    );
    assert_eq!(
        failure(run(&get(Scheme::Http, None, HTTP, "/empty"), &target, timeout).await),
        "HTTP probe failed with statuscode: 404"
    );
    // The server listens on the pod IP only: an explicit host is what gets dialed.
    let refused = failure(
        run(
            &get(Scheme::Http, Some("127.0.0.1"), HTTP, "/"),
            &target,
            timeout,
        )
        .await,
    );
    assert!(refused.contains("refused"), "{refused}");

    let with_header = Action::HttpGet(HttpGet {
        purpose: Purpose::Probe,
        scheme: Scheme::Http,
        host: None,
        port: HTTP,
        path: "/cgi-bin/env".into(),
        headers: vec![("X-Probe".into(), "yes".into())],
    });
    assert_eq!(run(&with_header, &target, timeout).await, Outcome::Success);
    let env = std::fs::read_to_string(pod.dir.path().join("env")).expect("the CGI ran");
    for line in ["HTTP_USER_AGENT=kube-probe/1.37", "HTTP_X_PROBE=yes"] {
        assert!(env.lines().any(|l| l == line), "{line} not in:\n{env}");
    }

    // A hook's GET passes with any answer; only not reaching the server fails it.
    let hook = |port| {
        let handler = LifecycleHandler {
            http_get: Some(HTTPGetAction {
                port: IntOrString::Int(i32::from(port)),
                path: Some("/missing".into()),
                ..HTTPGetAction::default()
            }),
            ..LifecycleHandler::default()
        };
        Action::from_lifecycle(&handler, &Container::default(), "lifecycle.preStop")
            .expect("a hook action")
    };
    assert_eq!(run(&hook(HTTP), &target, timeout).await, Outcome::Success);
    let refused = failure(run(&hook(CLOSED), &target, timeout).await);
    assert!(refused.contains("refused"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_dialer_thread_per_namespace_ending_with_its_last_handle() {
    let pod = PodNet::new();
    let path = pod.netns.path();
    // Accepts and hangs up at once (httpd's small backlog would drop a burst of dials).
    let listener = tokio::net::TcpListener::from_std(bind_in(&path, HTTP)).expect("a listener");
    tokio::spawn(async move { while listener.accept().await.is_ok() {} });
    let first = Dialer::for_netns(&path).await.expect("a dialer");
    let second = Dialer::for_netns(&path).await.expect("a dialer");
    let address = SocketAddr::from((POD_IP, HTTP));
    for dialer in [&first, &second].repeat(20) {
        dialer.connect(address, SECOND).await.expect("connected");
    }
    assert_eq!(threads_in(&path), 1, "one thread serves every dial");
    drop(first);
    assert_eq!(threads_in(&path), 1, "a handle is still alive");

    // A namespace pinned anew at the same path (a recreated pod) gets a thread of its
    // own, not the old namespace's.
    let name = pod.netns.name();
    host_command("ip", &["netns", "delete", name]);
    host_command("ip", &["netns", "add", name]);
    let renewed = Dialer::for_netns(&path).await.expect("a dialer");
    assert_eq!(threads_in(&path), 1, "a thread in the new namespace");
    let refused = renewed
        .connect(address, SECOND)
        .await
        .expect_err("nothing listens there");
    assert!(refused.to_string().contains("unreachable"), "{refused}");
    drop(renewed);
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(5);
    while threads_in(&path) != 0 {
        assert!(
            Instant::now() < deadline,
            "the namespace thread outlived its handles"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many of this process's threads are in the network namespace pinned at `netns`.
fn threads_in(netns: &Path) -> usize {
    let inode = std::fs::metadata(netns).expect("the netns pin").ino();
    let wanted = format!("net:[{inode}]");
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
        .filter_map(|task| std::fs::read_link(task.path().join("ns/net")).ok())
        .filter(|link| link.to_string_lossy() == wanted)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_get_accepts_a_self_signed_certificate() {
    let mut pod = PodNet::new();
    pod.start_https();
    pod.wait_listening(HTTPS).await;
    let target = pod.target();
    assert_eq!(
        run(&get(Scheme::Https, None, HTTPS, "/"), &target, 3 * SECOND).await,
        Outcome::Success
    );
    // Plain HTTP to the TLS port gets no HTTP answer.
    let Outcome::Failure(_) = run(&get(Scheme::Http, None, HTTPS, "/"), &target, 3 * SECOND).await
    else {
        panic!("plain HTTP to a TLS server passed");
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_socket_connects_inside_the_pod() {
    let mut pod = PodNet::new();
    pod.start_httpd();
    pod.wait_listening(HTTP).await;
    let target = pod.target();
    let tcp = |port| Action::TcpSocket { host: None, port };
    assert_eq!(run(&tcp(HTTP), &target, SECOND).await, Outcome::Success);
    let refused = failure(run(&tcp(CLOSED), &target, SECOND).await);
    assert!(refused.contains(&format!("{POD_IP}:{CLOSED}")), "{refused}");
    assert!(refused.contains("refused"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_fails_at_the_timeout() {
    let pod = PodNet::new();
    // Never accepted: the kernel completes the handshakes, nobody ever answers.
    let _silent = bind_in(&pod.netns.path(), SILENT);
    let target = pod.target();
    for action in [
        get(Scheme::Http, None, SILENT, "/"),
        Action::Grpc {
            port: SILENT,
            service: String::new(),
        },
    ] {
        let start = Instant::now();
        let message = failure(run(&action, &target, SECOND).await);
        let took = start.elapsed();
        assert!(message.contains("timed out"), "{action:?}: {message}");
        assert!(
            took >= SECOND && took < 3 * SECOND,
            "{action:?} took {took:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_checks_the_health_service() {
    let pod = PodNet::new();
    serve_grpc(bind_in(&pod.netns.path(), GRPC), true);
    serve_grpc(bind_in(&pod.netns.path(), GRPC_NONE), false);
    let target = pod.target();
    let grpc = |port, service: &str| Action::Grpc {
        port,
        service: service.into(),
    };

    assert_eq!(
        run(&grpc(GRPC, ""), &target, SECOND).await,
        Outcome::Success
    );
    assert_eq!(
        failure(run(&grpc(GRPC, "down"), &target, SECOND).await),
        "service unhealthy (responded with \"NOT_SERVING\")"
    );
    let message = failure(run(&grpc(GRPC_NONE, ""), &target, SECOND).await);
    assert!(
        message.contains("does not implement the gRPC health protocol"),
        "{message}"
    );
    let message = failure(run(&grpc(CLOSED, ""), &target, SECOND).await);
    assert!(message.contains("refused"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_in_the_container_and_is_killed_at_the_timeout() {
    let mut pod = TestPod::new("pp-probes", Qos::BestEffort);
    let id = pod.run("app", "sleep 1000");
    pod.wait_for("app", "true");
    let target = Target::new(
        pod.sandbox.pins().net.clone(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        id,
        RuntimeRef {
            binary: runtime_path().to_path_buf(),
            root: pod.runtime_root().to_path_buf(),
        },
    );
    let exec = |argv: &[&str]| Action::Exec {
        command: argv.iter().map(|a| a.to_string()).collect(),
    };
    assert_eq!(
        run(&exec(&["true"]), &target, 5 * SECOND).await,
        Outcome::Success
    );
    let output = failure(
        run(
            &exec(&["sh", "-c", "echo to-out; echo to-err >&2; exit 3"]),
            &target,
            5 * SECOND,
        )
        .await,
    );
    assert!(
        output.contains("to-out") && output.contains("to-err"),
        "{output:?}"
    );

    let start = Instant::now();
    let message = failure(run(&exec(&["sleep", "31"]), &target, SECOND).await);
    assert!(message.contains("timed out"), "{message}");
    assert!(start.elapsed() < 4 * SECOND, "took {:?}", start.elapsed());
    assert!(
        !processes()
            .iter()
            .any(|cmdline| cmdline == "sleep\x0031\x00"),
        "the timed-out command is still running"
    );

    let Outcome::Error(message) = run(&exec(&["/no/such/binary"]), &target, 5 * SECOND).await
    else {
        panic!("a command that cannot start is an error of the check");
    };
    assert!(!message.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_probes_report_from_real_handlers() {
    let mut pod = PodNet::new();
    pod.start_httpd();
    pod.wait_listening(HTTP).await;
    let container = Container {
        name: "web".into(),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: i32::from(HTTP),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::String("http".into()),
                path: Some("/".into()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(1),
            ..Probe::default()
        }),
        liveness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(i32::from(CLOSED)),
                host: None,
            }),
            period_seconds: Some(1),
            failure_threshold: Some(2),
            termination_grace_period_seconds: Some(4),
            ..Probe::default()
        }),
        ..Container::default()
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _probes = ContainerProbes::start(&container, pod.target(), tx);
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen
        .iter()
        .any(|(_, c)| matches!(c, Change::Restart { .. }))
    {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no restart verdict within 10 s: {seen:?}"))
            .expect("the probes report");
        assert_eq!(
            (event.container.as_str(), event.instance.as_str()),
            ("web", "no-container")
        );
        seen.push((event.kind, event.change));
    }
    assert_eq!(seen[0], (Kind::Startup, Change::Started), "{seen:?}");
    assert!(
        seen.contains(&(Kind::Readiness, Change::Ready(true))),
        "{seen:?}"
    );
    let unhealthy: Vec<_> = seen
        .iter()
        .filter(|(kind, change)| *kind == Kind::Liveness && matches!(change, Change::Unhealthy(_)))
        .collect();
    assert_eq!(unhealthy.len(), 2, "{seen:?}");
    let Some((_, Change::Restart { message, grace })) = seen.last() else {
        panic!("{seen:?}");
    };
    assert_eq!(
        message,
        "Container web failed liveness probe, will be restarted"
    );
    assert_eq!(*grace, Some(4));
}

/// Every process's command line, NUL-separated as in /proc.
fn processes() -> Vec<String> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .collect()
}

/// A listener on `POD_IP:port` inside `netns`, bound from a thread that entered it.
fn bind_in(netns: &Path, port: u16) -> std::net::TcpListener {
    let netns: PathBuf = netns.to_owned();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&netns).expect("the netns");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let listener =
            std::net::TcpListener::bind(SocketAddr::from((POD_IP, port))).expect("binding");
        listener.set_nonblocking(true).expect("non-blocking");
        listener
    })
    .join()
    .expect("the binding thread")
}

type GrpcBody =
    StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// A gRPC health server over HTTP/2: service "" is SERVING, any other NOT_SERVING; or,
/// without `implements`, UNIMPLEMENTED for everything. Ends with the test's runtime.
fn serve_grpc(listener: std::net::TcpListener, implements: bool) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(move |request| health(request, implements));
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
}

async fn health(
    request: Request<Incoming>,
    implements: bool,
) -> Result<Response<GrpcBody>, Infallible> {
    let mut trailers = HeaderMap::new();
    let right_path = request.uri().path() == "/grpc.health.v1.Health/Check";
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut frames = Vec::new();
    if implements && right_path {
        // [0, len(4), 0x0a, n, service...]: a service is named when the message is longer.
        let status = if body.len() > 5 { 2 } else { 1 };
        frames.push(Ok(Frame::data(Bytes::from(vec![
            0, 0, 0, 0, 2, 0x08, status,
        ]))));
        trailers.insert("grpc-status", "0".parse().expect("a header value"));
        frames.push(Ok(Frame::trailers(trailers)));
        let response = Response::builder()
            .header("content-type", "application/grpc")
            .body(StreamBody::new(futures::stream::iter(frames)))
            .expect("a response");
        return Ok(response);
    }
    // Trailers-only: the status rides in the headers.
    let response = Response::builder()
        .header("content-type", "application/grpc")
        .header("grpc-status", "12")
        .header("grpc-message", "unknown service grpc.health.v1.Health")
        .body(StreamBody::new(futures::stream::iter(frames)))
        .expect("a response");
    Ok(response)
}

/// The probers' own CPU with 30 pods of three 1-second probes each (the bench's
/// load): a measurement, run by hand (`--ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn cpu_of_thirty_pods_with_three_probes_each() {
    let mut pods = Vec::new();
    for _ in 0..30 {
        let mut pod = PodNet::new();
        pod.start_httpd();
        pods.push(pod);
    }
    for pod in &pods {
        pod.wait_listening(HTTP).await;
    }
    let every_second = |probe: Probe| {
        Some(Probe {
            period_seconds: Some(1),
            ..probe
        })
    };
    let http = Probe {
        http_get: Some(HTTPGetAction {
            port: IntOrString::Int(i32::from(HTTP)),
            path: Some("/".into()),
            ..HTTPGetAction::default()
        }),
        ..Probe::default()
    };
    let tcp = Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(i32::from(HTTP)),
            host: None,
        }),
        ..Probe::default()
    };
    let web = Container {
        name: "web".into(),
        liveness_probe: every_second(http.clone()),
        readiness_probe: every_second(tcp.clone()),
        ..Container::default()
    };
    let side = Container {
        name: "side".into(),
        liveness_probe: every_second(http),
        ..Container::default()
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut running = Vec::new();
    for pod in &pods {
        running.push(ContainerProbes::start(&web, pod.target(), tx.clone()));
        running.push(ContainerProbes::start(&side, pod.target(), tx.clone()));
    }
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu = || {
        let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
            .expect("getrusage");
        let time = |t: nix::sys::time::TimeVal| {
            Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
        };
        time(usage.user_time()) + time(usage.system_time())
    };
    let (before, start) = (cpu(), Instant::now());
    tokio::time::sleep(Duration::from_secs(20)).await;
    let (used, wall) = (cpu() - before, start.elapsed());
    println!(
        "90 probes at 1 s: {used:?} CPU over {wall:?} = {:.2}% of one core",
        100.0 * used.as_secs_f64() / wall.as_secs_f64()
    );
}
