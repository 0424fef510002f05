//! The actions probes and lifecycle hooks run against a container (exec, httpGet,
//! tcpSocket, grpc, sleep) and the outcome of one run, as upstream's probers judge it.
//!
//! An [`Action`] is resolved from the pod spec once (named ports, defaults), so a bad
//! spec is reported when the container starts rather than on every run. [`run`] then
//! performs it against a [`Target`]: network actions connect from inside the pod's
//! network namespace (through [`crate::netns::Dialer`]), exec goes through the runtime
//! CLI as `kubectl exec` does.

mod grpc;
mod http;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ExecAction, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::api::RuntimeRef;
use crate::netns::Dialer;
use crate::stream::exec::{self as stream_exec, Scratch};

pub use http::{HttpGet, Purpose, Scheme};

/// How much of a command's output or a response body is kept, as upstream keeps 10 KiB.
const MAX_OUTPUT: usize = 10 * 1024;

/// How long a finished command's output may still be read (a background child can hold
/// the pipe open for ever).
const DRAIN: Duration = Duration::from_millis(200);

/// Why a probe or hook in the spec cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// The handler names no action, or more than one.
    #[error(
        "{what} must specify exactly one of exec, httpGet, tcpSocket, grpc, sleep (found {found})"
    )]
    Count {
        /// Which probe or hook (`livenessProbe`, `lifecycle.preStop`, ...).
        what: String,
        /// How many it names.
        found: usize,
    },
    /// A named port the container does not declare.
    #[error("{what}: couldn't find port {name:?} in the container's ports")]
    NoSuchPort {
        /// Which probe or hook.
        what: String,
        /// The port name.
        name: String,
    },
    /// A port number outside 1..=65535.
    #[error("{what}: invalid port number {port}")]
    BadPort {
        /// Which probe or hook.
        what: String,
        /// The number given.
        port: i64,
    },
    /// Any other field with a value that cannot be used.
    #[error("{what}: {message}")]
    Invalid {
        /// Which probe or hook.
        what: String,
        /// What is wrong.
        message: String,
    },
}

/// One thing to do against a container, resolved from a probe or a lifecycle handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run `command` in the container; exit 0 is success.
    Exec {
        /// The argv, not run through a shell.
        command: Vec<String>,
    },
    /// An HTTP(S) GET; 2xx and 3xx are success.
    HttpGet(HttpGet),
    /// Open a TCP connection; connecting is success.
    TcpSocket {
        /// The host to connect to; the pod IP when None.
        host: Option<String>,
        /// The resolved port.
        port: u16,
    },
    /// `grpc.health.v1.Health/Check` on the pod IP; SERVING is success.
    Grpc {
        /// The resolved port.
        port: u16,
        /// The service to ask about ("" for the server as a whole).
        service: String,
    },
    /// Wait (lifecycle hooks only).
    Sleep(Duration),
}

impl Action {
    /// The action of `probe`, a probe of `container` called `what` (`livenessProbe`...).
    pub fn from_probe(
        probe: &Probe,
        container: &Container,
        what: &str,
    ) -> Result<Action, ActionError> {
        let grpc = probe.grpc.as_ref().map(|grpc| {
            Ok(Action::Grpc {
                port: port_number(i64::from(grpc.port), what)?,
                service: grpc.service.clone().unwrap_or_default(),
            })
        });
        let shared = Shared {
            exec: probe.exec.as_ref(),
            http_get: probe.http_get.as_ref(),
            tcp_socket: probe.tcp_socket.as_ref(),
        };
        shared.resolve(grpc, container, what, Purpose::Probe)
    }

    /// The action of a lifecycle `handler` of `container` called `what`
    /// (`lifecycle.postStart`...). tcpSocket is accepted as upstream still accepts it.
    pub fn from_lifecycle(
        handler: &LifecycleHandler,
        container: &Container,
        what: &str,
    ) -> Result<Action, ActionError> {
        let sleep = handler.sleep.as_ref().map(|sleep| {
            let seconds = u64::try_from(sleep.seconds).map_err(|_| ActionError::Invalid {
                what: what.into(),
                message: format!("sleep.seconds must not be negative (got {})", sleep.seconds),
            })?;
            Ok(Action::Sleep(Duration::from_secs(seconds)))
        });
        let shared = Shared {
            exec: handler.exec.as_ref(),
            http_get: handler.http_get.as_ref(),
            tcp_socket: handler.tcp_socket.as_ref(),
        };
        shared.resolve(sleep, container, what, Purpose::Lifecycle)
    }
}

/// The handler fields probes and lifecycle hooks have in common.
struct Shared<'a> {
    exec: Option<&'a ExecAction>,
    http_get: Option<&'a HTTPGetAction>,
    tcp_socket: Option<&'a TCPSocketAction>,
}

impl Shared<'_> {
    /// The one action named among these fields and `own` (the kind's own field: grpc
    /// for probes, sleep for hooks, already resolved).
    fn resolve(
        self,
        own: Option<Result<Action, ActionError>>,
        container: &Container,
        what: &str,
        purpose: Purpose,
    ) -> Result<Action, ActionError> {
        let found = [
            self.exec.is_some(),
            self.http_get.is_some(),
            self.tcp_socket.is_some(),
            own.is_some(),
        ];
        one_of(what, &found)?;
        let ports = ports(container);
        if let Some(exec) = self.exec {
            return exec_action(exec, what);
        }
        if let Some(get) = self.http_get {
            return http_get(get, ports, what, purpose);
        }
        if let Some(tcp) = self.tcp_socket {
            return tcp_socket(tcp, ports, what);
        }
        own.unwrap_or_else(|| {
            Err(ActionError::Count {
                what: what.into(),
                found: 0,
            })
        })
    }
}

fn one_of(what: &str, found: &[bool]) -> Result<(), ActionError> {
    match found.iter().filter(|f| **f).count() {
        1 => Ok(()),
        found => Err(ActionError::Count {
            what: what.into(),
            found,
        }),
    }
}

fn ports(container: &Container) -> &[ContainerPort] {
    container.ports.as_deref().unwrap_or_default()
}

fn exec_action(exec: &ExecAction, what: &str) -> Result<Action, ActionError> {
    match exec.command.as_deref() {
        Some(command) if !command.is_empty() => Ok(Action::Exec {
            command: command.to_vec(),
        }),
        _ => Err(ActionError::Invalid {
            what: what.into(),
            message: "exec.command must not be empty".into(),
        }),
    }
}

fn http_get(
    get: &HTTPGetAction,
    ports: &[ContainerPort],
    what: &str,
    purpose: Purpose,
) -> Result<Action, ActionError> {
    let scheme = match get.scheme.as_deref() {
        None | Some("HTTP") => Scheme::Http,
        Some("HTTPS") => Scheme::Https,
        Some(other) => {
            return Err(ActionError::Invalid {
                what: what.into(),
                message: format!("httpGet.scheme must be HTTP or HTTPS (got {other:?})"),
            })
        }
    };
    Ok(Action::HttpGet(HttpGet {
        purpose,
        scheme,
        host: get.host.clone().filter(|h| !h.is_empty()),
        port: resolve_port(&get.port, ports, what)?,
        path: get.path.clone().unwrap_or_default(),
        headers: get
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
    }))
}

fn tcp_socket(
    tcp: &TCPSocketAction,
    ports: &[ContainerPort],
    what: &str,
) -> Result<Action, ActionError> {
    Ok(Action::TcpSocket {
        host: tcp.host.clone().filter(|h| !h.is_empty()),
        port: resolve_port(&tcp.port, ports, what)?,
    })
}

/// A port by number, or by the name of one of the container's ports.
fn resolve_port(
    port: &IntOrString,
    ports: &[ContainerPort],
    what: &str,
) -> Result<u16, ActionError> {
    match port {
        IntOrString::Int(number) => port_number(i64::from(*number), what),
        IntOrString::String(name) => {
            // A number written as a string is a number, as upstream reads it.
            if let Ok(number) = name.parse::<i64>() {
                return port_number(number, what);
            }
            let declared = ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .ok_or_else(|| ActionError::NoSuchPort {
                    what: what.into(),
                    name: name.clone(),
                })?;
            port_number(i64::from(declared.container_port), what)
        }
    }
}

fn port_number(port: i64, what: &str) -> Result<u16, ActionError> {
    u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| ActionError::BadPort {
            what: what.into(),
            port,
        })
}

/// What an action runs against: one container instance of a pod.
#[derive(Debug, Clone)]
pub struct Target {
    /// The pod's pinned network namespace.
    pub netns: PathBuf,
    /// The pod's IP: the default host of httpGet and tcpSocket, and grpc's host.
    pub pod_ip: IpAddr,
    /// The runtime's id of the container instance (exec runs in it).
    pub container_id: String,
    /// How to reach the runtime.
    pub runtime: RuntimeRef,
    /// The namespace's dialer once a network action made it, shared by the clones of
    /// this target so a pod's probes keep one namespace thread alive.
    dialer: Arc<tokio::sync::OnceCell<Dialer>>,
}

impl Target {
    /// A target in the pod whose netns is pinned at `netns`, with IP `pod_ip`.
    pub fn new(
        netns: PathBuf,
        pod_ip: IpAddr,
        container_id: String,
        runtime: RuntimeRef,
    ) -> Target {
        Target {
            netns,
            pod_ip,
            container_id,
            runtime,
            dialer: Arc::default(),
        }
    }

    /// Connect from inside the pod to `host` (the pod IP when None) on `port`.
    async fn connect(
        &self,
        host: Option<&str>,
        port: u16,
        timeout: Duration,
    ) -> Result<TcpStream, String> {
        let address = match host {
            None => SocketAddr::new(self.pod_ip, port),
            Some(host) => resolve(host, port).await?,
        };
        let dialer = self
            .dialer
            .get_or_try_init(|| Dialer::for_netns(&self.netns))
            .await
            .map_err(|e| e.to_string())?;
        dialer
            .connect(address, timeout)
            .await
            .map_err(|e| format!("dial tcp {address}: {e}"))
    }
}

/// `host` as an address: an IP as written, else a name looked up by the node's resolver.
async fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("lookup {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("lookup {host}: no addresses"))
}

/// How one run of an action went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The container passed.
    Success,
    /// The container failed the check; why (output, status code, dial error).
    Failure(String),
    /// The check itself could not be carried out (the runtime could not exec, ...);
    /// upstream does not count it against the container.
    Error(String),
}

/// Run `action` against `target`, giving up after `timeout` (a run that times out is a
/// Failure; a sleep is cut short at the timeout and still succeeds).
pub async fn run(action: &Action, target: &Target, timeout: Duration) -> Outcome {
    match action {
        Action::Exec { command } => exec(command, target, timeout).await,
        Action::Sleep(duration) => {
            tokio::time::sleep((*duration).min(timeout)).await;
            Outcome::Success
        }
        Action::TcpSocket { host, port } => {
            match target.connect(host.as_deref(), *port, timeout).await {
                Ok(_) => Outcome::Success,
                Err(e) => Outcome::Failure(e),
            }
        }
        Action::HttpGet(get) => within(timeout, http::get(get, target, timeout)).await,
        Action::Grpc { port, service } => {
            within(timeout, grpc::check(*port, service, target, timeout)).await
        }
    }
}

/// `run` bounded by `timeout`: dropping a network future closes its sockets.
async fn within(timeout: Duration, run: impl std::future::Future<Output = Outcome>) -> Outcome {
    tokio::time::timeout(timeout, run)
        .await
        .unwrap_or_else(|_| Outcome::Failure(format!("timed out after {timeout:?}")))
}

/// `<runtime> --root <root> exec --pid-file <scratch> <id> -- command...`, its stdout
/// and stderr interleaved in one pipe as upstream combines them; killed at `timeout`.
async fn exec(command: &[String], target: &Target, timeout: Duration) -> Outcome {
    let scratch = match Scratch::new() {
        Ok(scratch) => scratch,
        Err(e) => return Outcome::Error(e.to_string()),
    };
    let (reader, writer) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(pipe) => pipe,
        Err(e) => return Outcome::Error(format!("making the output pipe: {e}")),
    };
    let writer_too = match writer.try_clone() {
        Ok(fd) => fd,
        Err(e) => return Outcome::Error(format!("making the output pipe: {e}")),
    };
    let spawned = Command::new(&target.runtime.binary)
        .arg("--root")
        .arg(&target.runtime.root)
        .arg("exec")
        .arg("--pid-file")
        .arg(scratch.pid_file())
        .arg(&target.container_id)
        .arg("--")
        .args(command)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer_too))
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            return Outcome::Error(format!("running {}: {e}", target.runtime.binary.display()))
        }
    };
    // The child holds the write ends now; ours were moved into the Command and closed
    // with it, so the reader sees EOF once every writer in the container is gone.
    let mut output = match tokio::net::unix::pipe::Receiver::from_owned_fd(reader) {
        Ok(pipe) => Output::new(pipe),
        Err(e) => {
            stream_exec::kill(&mut child, &scratch).await;
            return Outcome::Error(format!("reading the output pipe: {e}"));
        }
    };
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            () = &mut deadline => {
                stream_exec::kill(&mut child, &scratch).await;
                return Outcome::Failure(format!("command {command:?} timed out"));
            }
            () = output.read_some() => {}
        }
    };
    let _ = tokio::time::timeout(DRAIN, output.read_to_end()).await;
    let text = output.text();
    match status {
        Ok(status) if status.success() => Outcome::Success,
        // The runtime exits non-zero before the command starts (no such container,
        // no such executable): that is the check failing to run, not the container.
        Ok(_) if scratch.pid().is_none() => Outcome::Error(if text.is_empty() {
            format!("the runtime could not run {command:?}")
        } else {
            text
        }),
        Ok(_) => Outcome::Failure(text),
        Err(e) => Outcome::Error(format!("waiting for the runtime: {e}")),
    }
}

/// A command's combined output, of which the first [`MAX_OUTPUT`] bytes are kept.
struct Output {
    pipe: tokio::net::unix::pipe::Receiver,
    kept: Vec<u8>,
    done: bool,
}

impl Output {
    fn new(pipe: tokio::net::unix::pipe::Receiver) -> Output {
        Output {
            pipe,
            kept: Vec::new(),
            done: false,
        }
    }

    /// Read one chunk; pends for ever once the pipe has ended (for `select!`).
    async fn read_some(&mut self) {
        if self.done {
            return std::future::pending().await;
        }
        let mut buf = [0; 4096];
        match self.pipe.read(&mut buf).await {
            Ok(n @ 1..) => {
                let room = MAX_OUTPUT.saturating_sub(self.kept.len());
                self.kept.extend_from_slice(&buf[..n.min(room)]);
            }
            _ => self.done = true,
        }
    }

    async fn read_to_end(&mut self) {
        while !self.done {
            self.read_some().await;
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.kept).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{GRPCAction, HTTPHeader, SleepAction};

    fn web() -> Container {
        Container {
            name: "web".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..ContainerPort::default()
            }]),
            ..Container::default()
        }
    }

    #[test]
    fn http_get_resolves_a_named_port_and_keeps_headers() {
        let probe = Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::String("http".into()),
                path: Some("/healthz".into()),
                scheme: Some("HTTPS".into()),
                http_headers: Some(vec![HTTPHeader {
                    name: "X-Probe".into(),
                    value: "yes".into(),
                }]),
                ..HTTPGetAction::default()
            }),
            ..Probe::default()
        };
        let action = Action::from_probe(&probe, &web(), "livenessProbe").expect("resolves");
        assert_eq!(
            action,
            Action::HttpGet(HttpGet {
                purpose: Purpose::Probe,
                scheme: Scheme::Https,
                host: None,
                port: 8080,
                path: "/healthz".into(),
                headers: vec![("X-Probe".into(), "yes".into())],
            })
        );
    }

    #[test]
    fn an_unknown_port_name_or_number_is_a_clear_error() {
        let probe = |port| Probe {
            tcp_socket: Some(TCPSocketAction { port, host: None }),
            ..Probe::default()
        };
        let err = Action::from_probe(
            &probe(IntOrString::String("metrics".into())),
            &web(),
            "readinessProbe",
        )
        .expect_err("no such port");
        assert_eq!(
            err.to_string(),
            "readinessProbe: couldn't find port \"metrics\" in the container's ports"
        );
        let err = Action::from_probe(&probe(IntOrString::Int(70000)), &web(), "readinessProbe")
            .expect_err("out of range");
        assert_eq!(err.to_string(), "readinessProbe: invalid port number 70000");
        let action = Action::from_probe(&probe(IntOrString::String("9090".into())), &web(), "x")
            .expect("a number in a string");
        assert_eq!(
            action,
            Action::TcpSocket {
                host: None,
                port: 9090
            }
        );
    }

    #[test]
    fn a_handler_must_name_exactly_one_action() {
        let none = LifecycleHandler::default();
        let err = Action::from_lifecycle(&none, &web(), "lifecycle.preStop").expect_err("empty");
        assert!(err.to_string().contains("found 0"), "{err}");
        let two = Probe {
            exec: Some(ExecAction {
                command: Some(vec!["true".into()]),
            }),
            grpc: Some(GRPCAction {
                port: 9000,
                ..GRPCAction::default()
            }),
            ..Probe::default()
        };
        let err = Action::from_probe(&two, &web(), "startupProbe").expect_err("two");
        assert!(err.to_string().contains("found 2"), "{err}");
    }

    #[test]
    fn lifecycle_handlers_sleep_and_exec() {
        let sleep = LifecycleHandler {
            sleep: Some(SleepAction { seconds: 5 }),
            ..LifecycleHandler::default()
        };
        assert_eq!(
            Action::from_lifecycle(&sleep, &web(), "lifecycle.preStop"),
            Ok(Action::Sleep(Duration::from_secs(5)))
        );
        let empty = LifecycleHandler {
            exec: Some(ExecAction { command: None }),
            ..LifecycleHandler::default()
        };
        let err = Action::from_lifecycle(&empty, &web(), "lifecycle.postStart").expect_err("empty");
        assert_eq!(
            err.to_string(),
            "lifecycle.postStart: exec.command must not be empty"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_is_cut_short_at_the_timeout() {
        let target = Target::new(
            "/nonexistent".into(),
            IpAddr::from([127, 0, 0, 1]),
            "id".into(),
            RuntimeRef {
                binary: "/nonexistent".into(),
                root: "/nonexistent".into(),
            },
        );
        let start = tokio::time::Instant::now();
        let outcome = run(
            &Action::Sleep(Duration::from_secs(30)),
            &target,
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(outcome, Outcome::Success);
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }
}
