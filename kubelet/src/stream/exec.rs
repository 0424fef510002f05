//! Exec's server side, whatever the transport: runs a command in a container through
//! the runtime CLI (`<runtime> --root <root> exec ...`) and pipes it to a [`Client`]
//! (channels a transport fills and drains), ending with the v1 `Status` to report.
//! [`super::websocket`] and [`super::spdy::remote_command`] carry it.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use super::channel::{Size, STDERR, STDOUT};
use super::pty::Master;
use super::{status, ExecRequest};
use crate::api::RuntimeRef;

/// How long the command's output may still flow after it exited (a background child can
/// hold the pipes open for ever).
const DRAIN: Duration = Duration::from_secs(5);

/// How often held-back stderr checks whether the command has started.
const START_CHECK: Duration = Duration::from_millis(100);

/// How long killing waits for the runtime to name the command's pid.
const PID_WAIT: Duration = Duration::from_secs(2);

/// Output chunks the readers may queue ahead of the client.
pub(crate) const QUEUE: usize = 32;

/// Why an exec did not get to run its command.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A local step failed (scratch dir, console socket, spawning the runtime).
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The OS error.
        source: io::Error,
    },
    /// The runtime did not start the command; its own words (no such container, no
    /// such executable, ...).
    #[error("{0}")]
    NotStarted(String),
}

fn io_err(op: impl Into<String>) -> impl FnOnce(io::Error) -> ExecError {
    let op = op.into();
    move |source| ExecError::Io { op, source }
}

/// What an exec's (or attach's) client sends, whatever carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Bytes for the command's standard input.
    Stdin(Vec<u8>),
    /// The client closed its standard input.
    StdinClosed,
    /// The client's terminal has a new size.
    Resize(Size),
}

/// One chunk of output: its channel ([`STDOUT`], [`STDERR`]) and bytes.
pub type Chunk = (u8, Vec<u8>);

/// One exec's client, as a transport hands it over: its input, and where the output
/// goes by channel ([`STDOUT`], [`STDERR`]). The input channel closing, or the output
/// channel refusing a chunk, means the client went away.
pub struct Client {
    /// The client's input.
    pub input: mpsc::Receiver<Input>,
    /// The command's output, by channel.
    pub output: mpsc::Sender<Chunk>,
}

impl Client {
    /// A client and the transport's ends of it: where to put input, and where the
    /// output comes out.
    pub fn channels() -> (Client, mpsc::Sender<Input>, mpsc::Receiver<Chunk>) {
        let (input_tx, input) = mpsc::channel(QUEUE);
        let (output, output_rx) = mpsc::channel(QUEUE);
        (Client { input, output }, input_tx, output_rx)
    }
}

/// Run `request.command` in container `container_id` for `client`: stdin and resizes
/// in, stdout/stderr out. Returns the `Status` to report (the exit code, or why the
/// command did not run); None if the client went away (the command is killed then).
pub async fn run(
    runtime: &RuntimeRef,
    container_id: &str,
    request: &ExecRequest,
    client: Client,
) -> Option<Status> {
    match Session::start(runtime, container_id, request).await {
        Ok(session) => session.run(client, request).await,
        Err(e) => Some(status::internal(&e.to_string())),
    }
}

/// A private directory for one exec's pid file and console socket, removed on drop
/// (exec probes and hooks use it too).
pub(crate) struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    pub(crate) fn new() -> Result<Scratch, ExecError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "peapod-exec-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(io_err(format!("creating {}", dir.display())))?;
        Ok(Scratch { dir })
    }

    pub(crate) fn pid_file(&self) -> PathBuf {
        self.dir.join("pid")
    }

    fn console(&self) -> PathBuf {
        self.dir.join("console.sock")
    }

    /// The command's host pid, once the runtime has started it.
    pub(crate) fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running `runtime exec` and the plumbing around it.
struct Session {
    child: Child,
    scratch: Scratch,
    /// What the client types, to the stdin writer; dropping it is stdin's EOF.
    input: Option<mpsc::UnboundedSender<Vec<u8>>>,
    /// The command's output, by channel, from the reader tasks.
    output: mpsc::Receiver<Chunk>,
    pty: Option<Arc<Master>>,
}

impl Session {
    async fn start(
        runtime: &RuntimeRef,
        container_id: &str,
        request: &ExecRequest,
    ) -> Result<Session, ExecError> {
        let scratch = Scratch::new()?;
        let mut command = Command::new(&runtime.binary);
        command
            .arg("--root")
            .arg(&runtime.root)
            .arg("exec")
            .arg("--pid-file")
            .arg(scratch.pid_file());
        let console = if request.tty {
            let path = scratch.console();
            let listener =
                UnixListener::bind(&path).map_err(io_err(format!("binding {}", path.display())))?;
            command.arg("--tty").arg("--console-socket").arg(&path);
            Some(listener)
        } else {
            None
        };
        command.arg(container_id).arg("--").args(&request.command);
        let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
        command
            .stdin(piped(request.stdin && !request.tty))
            .stdout(piped(!request.tty))
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(io_err(format!("running {}", runtime.binary.display())))?;

        let (tx, output) = mpsc::channel(QUEUE);
        if let Some(stderr) = child.stderr.take() {
            pump(stderr, STDERR, tx.clone());
        }
        let mut session = Session {
            child,
            scratch,
            input: None,
            output,
            pty: None,
        };
        match console {
            None => {
                if let Some(stdout) = session.child.stdout.take() {
                    pump(stdout, STDOUT, tx);
                }
                if let Some(stdin) = session.child.stdin.take() {
                    session.input = Some(write_pipe(stdin));
                }
            }
            Some(listener) => {
                let master = match session.receive_pty(listener).await {
                    Ok(master) => Arc::new(master),
                    Err(e) => {
                        drop(tx);
                        return Err(session.not_started(Some(e)).await);
                    }
                };
                pump_pty(master.clone(), tx);
                if request.stdin {
                    session.input = Some(write_pty(master.clone()));
                }
                session.pty = Some(master);
            }
        }
        Ok(session)
    }

    /// The pty master the runtime sends over the console socket (or why it did not).
    async fn receive_pty(&mut self, listener: UnixListener) -> Result<Master, String> {
        let stream = tokio::select! {
            accepted = listener.accept() => accepted.map_err(|e| format!("console socket: {e}"))?.0,
            _ = self.child.wait() => return Err(String::new()),
        };
        let stream = stream
            .into_std()
            .and_then(|s| s.set_nonblocking(false).map(|()| s))
            .map_err(|e| format!("console socket: {e}"))?;
        let fd = tokio::task::spawn_blocking(move || runtime::terminal::recv_fd(stream.as_fd()))
            .await
            .map_err(|e| format!("receiving the pty: {e}"))?
            .map_err(|e| format!("receiving the pty: {e}"))?;
        Master::new(fd).map_err(|e| format!("pty master: {e}"))
    }

    /// The runtime's reason for not starting the command: what it printed, once it has
    /// exited, else `fallback`.
    async fn not_started(mut self, fallback: Option<String>) -> ExecError {
        self.kill().await;
        let mut text = Vec::new();
        while let Some((channel, data)) = self.output.recv().await {
            if channel == STDERR {
                text.extend_from_slice(&data);
            }
        }
        let text = String::from_utf8_lossy(&text).trim().to_owned();
        match fallback {
            Some(reason) if text.is_empty() && !reason.is_empty() => ExecError::NotStarted(reason),
            _ if text.is_empty() => {
                ExecError::NotStarted("the runtime exited without starting the command".into())
            }
            _ => ExecError::NotStarted(text),
        }
    }

    /// Stream until the command ends and its output is drained; None if the client went
    /// away (the command is killed then).
    async fn run(mut self, mut client: Client, request: &ExecRequest) -> Option<Status> {
        let mut held = HeldStderr::default();
        let mut exited: Option<ExitStatus> = None;
        let mut outputs_open = true;
        // Armed once the command exits.
        let drain = tokio::time::sleep(Duration::from_secs(365 * 24 * 3600));
        tokio::pin!(drain);
        let mut check = tokio::time::interval(START_CHECK);
        while exited.is_none() || outputs_open {
            // What to send the client after this step, if anything.
            let outgoing = tokio::select! {
                input = client.input.recv(), if exited.is_none() => match input {
                    Some(input) => {
                        self.input(input);
                        None
                    }
                    None => {
                        self.kill().await;
                        return None;
                    }
                },
                chunk = self.output.recv(), if outputs_open => match chunk {
                    Some((STDERR, data)) => held.add(&data, &self.scratch).map(|data| (STDERR, data)),
                    Some(chunk) => Some(chunk),
                    None => {
                        outputs_open = false;
                        None
                    }
                },
                status = self.child.wait(), if exited.is_none() => {
                    exited = Some(status.unwrap_or_else(|_| ExitStatus::from_raw(255 << 8)));
                    drain.as_mut().reset(tokio::time::Instant::now() + DRAIN);
                    // The stdin writer is done for: the command is gone.
                    self.input = None;
                    None
                }
                _ = check.tick(), if held.waiting() => held.add(&[], &self.scratch).map(|data| (STDERR, data)),
                _ = &mut drain, if exited.is_some() => break,
            };
            let Some((channel, data)) = outgoing else {
                continue;
            };
            let wanted =
                (channel == STDOUT && request.stdout) || (channel == STDERR && request.stderr);
            if wanted && client.output.send((channel, data)).await.is_err() {
                self.kill().await;
                return None;
            }
        }
        let code = exited.map(exit_code).unwrap_or(255);
        if self.scratch.pid().is_none() {
            let text = String::from_utf8_lossy(&held.bytes).trim().to_owned();
            let reason = if text.is_empty() {
                format!("the runtime exited with code {code} without starting the command")
            } else {
                text
            };
            return Some(status::internal(&reason));
        }
        if !held.bytes.is_empty() && request.stderr {
            let _ = client.output.send((STDERR, held.bytes)).await;
        }
        Some(if code == 0 {
            status::success()
        } else {
            status::exit_code(&request.command, code)
        })
    }

    /// One input from the client: stdin, its end, or a resize.
    fn input(&mut self, input: Input) {
        match input {
            Input::Stdin(data) => {
                if let Some(to) = &self.input {
                    if to.send(data).is_err() {
                        self.input = None;
                    }
                }
            }
            // A resize the terminal refuses is the client's problem; the exec goes on.
            Input::Resize(size) => {
                if let Some(pty) = &self.pty {
                    let _ = pty.resize(size);
                }
            }
            Input::StdinClosed => self.input = None,
        }
    }

    /// Kill the command and the runtime waiting for it.
    async fn kill(&mut self) {
        kill(&mut self.child, &self.scratch).await;
    }
}

/// Kill a `runtime exec`'s command (by the pid the runtime wrote into `scratch`) and the
/// runtime waiting for it (exec probes and hooks kill at their timeout this way too).
pub(crate) async fn kill(child: &mut Child, scratch: &Scratch) {
    // The command may already run while the runtime has yet to write its pid (its
    // output can even have reached the client); killing only the runtime then would
    // leave the command behind, so wait a moment for the pid.
    let deadline = tokio::time::Instant::now() + PID_WAIT;
    while matches!(child.try_wait(), Ok(None)) {
        if let Some(pid) = scratch.pid() {
            // The runtime has not reaped it yet (it is still running), so the pid
            // is still the command's.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(START_CHECK / 5).await;
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// Stderr held back until the command has started: until then it is the runtime's, and
/// becomes the Failure's message if the command never starts.
#[derive(Default)]
struct HeldStderr {
    bytes: Vec<u8>,
    started: bool,
}

impl HeldStderr {
    /// Take a chunk; returns what may go to the client now.
    fn add(&mut self, data: &[u8], scratch: &Scratch) -> Option<Vec<u8>> {
        if !self.started {
            self.bytes.extend_from_slice(data);
            self.started = scratch.pid().is_some();
            if !self.started {
                return None;
            }
            return Some(std::mem::take(&mut self.bytes)).filter(|b| !b.is_empty());
        }
        Some(data.to_vec())
    }

    /// Whether something is held that a started command would release.
    fn waiting(&self) -> bool {
        !self.started && !self.bytes.is_empty()
    }
}

/// The shell-style exit code of the runtime, which is the command's once it started.
fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Copy a pipe's chunks into the output queue until it ends.
fn pump<R>(mut from: R, channel: u8, to: mpsc::Sender<Chunk>)
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut buf = vec![0; 32 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf).await {
            if to.send((channel, buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
    });
}

/// Copy the terminal's output into the queue as stdout until every slave is closed.
fn pump_pty(master: Arc<Master>, to: mpsc::Sender<Chunk>) {
    tokio::spawn(async move {
        let mut buf = vec![0; 32 * 1024];
        while let Ok(n @ 1..) = master.read(&mut buf).await {
            if to.send((STDOUT, buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
    });
}

/// A task writing the client's input to the command's stdin pipe; closing the sender
/// closes the pipe. Its own task, so a command not reading cannot stall the output.
fn write_pipe(mut stdin: ChildStdin) -> mpsc::UnboundedSender<Vec<u8>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(data) = rx.recv().await {
            if stdin.write_all(&data).await.is_err() {
                return;
            }
        }
        // Dropping stdin here is the command's end of input.
    });
    tx
}

/// Like [`write_pipe`] for a terminal: its end types the EOF character.
fn write_pty(master: Arc<Master>) -> mpsc::UnboundedSender<Vec<u8>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(data) = rx.recv().await {
            if master.write_all(&data).await.is_err() {
                return;
            }
        }
        let _ = master.send_eof().await;
    });
    tx
}
