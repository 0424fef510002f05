//! Finding the runtime binary under test and running its runc-compatible CLI.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::host::require_root;

/// How long one runtime invocation may take before the test gives up on it.
///
/// Generous, because a loaded 2-core CI machine runs two tests at once; a
/// runtime that hangs must still fail the test rather than block the run.
const INVOCATION_TIMEOUT: Duration = Duration::from_secs(60);

/// The runtime binary under test.
///
/// `PEAPOD_RUNTIME` if set (e.g. `/usr/sbin/runc` to check the tests
/// themselves), else `peapod-runtime` in the cargo profile directory the test
/// executable was built into.
pub fn runtime_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        binary_path(
            "PEAPOD_RUNTIME",
            "peapod-runtime",
            "`cargo build -p peapod-runtime`, or point PEAPOD_RUNTIME at a runtime such as /usr/sbin/runc",
        )
    })
}

/// A binary under test: `$env` if set, else `name` in the cargo profile
/// directory the test executable was built into (`target/<profile>/deps/<test>`
/// → `target/<profile>/<name>`). Panics, saying how to build it, if it is missing.
pub fn binary_path(env: &str, name: &str, build: &str) -> PathBuf {
    let path = match std::env::var_os(env) {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()
            .expect("the test executable's path")
            .parent()
            .and_then(Path::parent)
            .expect("the test executable lives in target/<profile>/deps")
            .join(name),
    };
    assert!(
        path.is_file(),
        "{name} binary {} not found: build it first ({build}) or set {env}",
        path.display()
    );
    path
}

/// `(major, minor)` when the runtime under test is runc (`runc --version`),
/// for the few places where a test knows and documents that runc falls
/// short of what peapod must do; `None` for any other runtime.
pub fn runc_version() -> Option<(u32, u32)> {
    static VERSION: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    *VERSION.get_or_init(|| {
        let output = Command::new(runtime_path())
            .arg("--version")
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&output.stdout);
        let version = text.lines().next()?.strip_prefix("runc version ")?;
        let mut parts = version.split(|c: char| !c.is_ascii_digit());
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    })
}

/// What one runtime invocation did.
#[derive(Debug, Clone)]
pub struct Output {
    /// The exit code; `128 + N` when the runtime was killed by signal N, as a
    /// shell reports it.
    pub code: i32,
    /// Everything written to standard output, lossily decoded.
    pub stdout: String,
    /// Everything written to standard error, lossily decoded.
    pub stderr: String,
}

impl Output {
    /// Whether the invocation exited with code 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Panics, showing the whole output, unless the invocation succeeded.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(self.success(), "runtime invocation failed: {self}");
        self
    }

    /// Panics, showing the whole output, unless the invocation failed.
    #[track_caller]
    pub fn failed(self) -> Self {
        assert!(
            !self.success(),
            "runtime invocation should have failed: {self}"
        );
        self
    }

    /// Standard output parsed as JSON; panics with the output if it is not.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }

    /// Standard output parsed as JSON, if it is JSON.
    pub fn json_opt(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.stdout).ok()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs the runtime with `args` in a scratch working directory.
pub fn run<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let scratch = tempfile::tempdir().expect("a scratch directory");
    run_in(scratch.path(), args)
}

/// Runs the runtime with `args` in the working directory `dir`.
///
/// Standard output and error go to files rather than pipes: with `create`,
/// `run --detach` and `exec --detach` the container inherits them and may
/// keep them open long after the runtime exits, so waiting for a pipe's end
/// would hang. Standard input is `/dev/null`.
pub fn run_in<I, S>(dir: &Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    require_root();
    let mut command = Command::new(runtime_path());
    command.args(args).current_dir(dir);
    run_captured(command, INVOCATION_TIMEOUT)
}

/// Runs `command` to its end with standard input `/dev/null` and standard
/// output and error captured in files (see [`run_in`] for why files), killing
/// it and panicking after `timeout`.
pub fn run_captured(mut command: Command, timeout: Duration) -> Output {
    let capture = tempfile::tempdir().expect("a capture directory");
    let stdout_path = capture.path().join("stdout");
    let stderr_path = capture.path().join("stderr");
    command.stdin(Stdio::null());
    command.stdout(fs::File::create(&stdout_path).expect("a stdout capture file"));
    command.stderr(fs::File::create(&stderr_path).expect("a stderr capture file"));
    let described = format!("{command:?}");
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {described}: {e}"));

    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            break status;
        }
        if Instant::now() > deadline {
            // Best effort: the panic below is what matters.
            let _ = child.kill();
            let _ = child.wait();
            panic!("{described} did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(5));
    };
    let code = status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .expect("an exit code or a signal");
    let read =
        |path: &Path| String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned();
    Output {
        code,
        stdout: read(&stdout_path),
        stderr: read(&stderr_path),
    }
}
