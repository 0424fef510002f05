//! The shim: one small supervisor process per container, like containerd-shim or conmon.
//!
//! The kubelet must be able to restart without losing a container's output or its exit
//! code. So it does not become the container's parent; it [`spawn`]s `peapod-shim`, which
//! detaches (new session, double fork, stdin `/dev/null`, its own output to a shim log),
//! creates and starts the container through [`crate::container`] — the container's init
//! is the shim's child and its stdout and stderr are pipes (or a pty) the shim reads —,
//! writes that output to a CRI log ([`crate::logs`]), reaps the init and leaves an
//! [`ExitRecord`] behind, then exits. The shim outlives its starter; the caller reads
//! the record with [`exit_status`] and removes the container when it is done with it.
//!
//! Why a separate binary rather than a fork of the caller: the kubelet is multi-threaded
//! (tokio), and creating a container (`clone`) needs a single-threaded process; it also
//! keeps the runc-compatible `peapod-runtime` CLI free of non-runc commands, and shows
//! each supervisor as `peapod-shim` in `ps`.
//!
//! The shim rotates the log itself as it writes (as conmon does), so no log manager has
//! to copy, truncate or signal anyone. A caller following a log ([`crate::logs::read`])
//! can stop once the exit record exists: the shim writes it after the last log line. If
//! the shim itself is killed, there is no record: the container's end is then unknown.
//!
//! - [`supervisor`]: the shim process itself.
//! - [`exit`]: the exit record and the OOM check.

pub mod exit;
pub mod supervisor;

pub use exit::{exit_status, ExitRecord, Reason};

use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde::{Deserialize, Serialize};

use crate::logs::LogOptions;

/// The fd on which the shim reports that the container started (or why it did not).
pub const REPORT_FD: i32 = 3;

/// How long [`spawn`] waits for the shim to report.
const REPORT_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything a shim needs to run one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimConfig {
    /// The `peapod-shim` executable.
    pub binary: PathBuf,
    /// The container id.
    pub id: String,
    /// The runtime's state root (as `peapod-runtime --root`).
    pub root: PathBuf,
    /// The OCI bundle.
    pub bundle: PathBuf,
    /// The CRI log, e.g. `/var/log/pods/<ns>_<pod>_<uid>/<container>/<restart>.log`.
    pub log_path: PathBuf,
    /// Where the [`ExitRecord`] is written when the container ends.
    pub exit_file: PathBuf,
    /// The shim's own diagnostics (its stdout and stderr).
    pub shim_log: PathBuf,
    /// How the CRI log rotates.
    pub log: LogOptions,
}

impl ShimConfig {
    /// The command line the shim is started with (its binary parses it back).
    pub fn args(&self) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        let mut flag = |name: &str, value: std::ffi::OsString| {
            args.push(format!("--{name}").into());
            args.push(value);
        };
        flag("id", self.id.clone().into());
        flag("root", self.root.clone().into());
        flag("bundle", self.bundle.clone().into());
        flag("log-path", self.log_path.clone().into());
        flag("exit-file", self.exit_file.clone().into());
        flag("shim-log", self.shim_log.clone().into());
        flag("log-max-size", self.log.max_size.to_string().into());
        flag("log-max-files", self.log.max_files.to_string().into());
        args
    }
}

/// Where `peapod-shim` is installed: beside the running executable (the binaries are
/// installed together), else the first one on `PATH`.
pub fn installed_binary() -> Option<PathBuf> {
    installed("peapod-shim")
}

/// Where peapod's executable `name` is installed: beside the running executable, else
/// the first one on `PATH`.
pub fn installed(name: &str) -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(name)));
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name));
    beside.into_iter().chain(on_path).find(|p| p.is_file())
}

/// A container its shim has started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    /// The container init's host PID.
    pub pid: i32,
    /// The shim's PID: it exits once the exit record is written.
    pub shim_pid: i32,
}

/// What the shim writes on [`REPORT_FD`]: one JSON line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Report {
    /// The container runs.
    Started {
        /// The init's host PID.
        pid: i32,
        /// The shim's PID.
        shim_pid: i32,
    },
    /// Creating or starting failed; the container was removed again.
    Failed {
        /// What failed.
        error: String,
    },
}

/// Why a shim could not start a container.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// The shim binary could not be run.
    #[error("running the shim {}: {source}", binary.display())]
    Exec {
        /// The binary.
        binary: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A pipe or file the shim needs could not be made.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The shim reported that creating or starting the container failed.
    #[error("container {id}: {error}")]
    Container {
        /// The container id.
        id: String,
        /// The shim's message.
        error: String,
    },
    /// The shim ended or went silent without saying whether the container started.
    #[error("the shim for container {id} {what}; see {}", log.display())]
    NoReport {
        /// The container id.
        id: String,
        /// What happened instead of a report.
        what: String,
        /// The shim's log.
        log: PathBuf,
    },
}

/// Start a shim for a container and wait until it says the container runs. The shim is
/// not the caller's child once this returns: it keeps running if the caller exits.
pub fn spawn(config: &ShimConfig) -> Result<Started, ShimError> {
    let io = |op: &str| {
        let op = op.to_string();
        move |source| ShimError::Io { op, source }
    };
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| io("creating the report pipe")(e.into()))?;
    if let Some(dir) = config.shim_log.parent() {
        std::fs::create_dir_all(dir).map_err(io(&format!("creating {}", dir.display())))?;
    }
    let shim_log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&config.shim_log)
        .map_err(io(&format!("opening {}", config.shim_log.display())))?;
    let mut command = Command::new(&config.binary);
    command
        .args(config.args())
        .stdin(Stdio::null())
        .stdout(
            shim_log
                .try_clone()
                .map_err(io("duplicating the shim log"))?,
        )
        .stderr(shim_log);
    let fd = write.as_raw_fd();
    // SAFETY: between fork and exec the hook only calls dup2 and fcntl, which are
    // async-signal-safe, on fds this process owns.
    unsafe {
        command.pre_exec(move || {
            if fd == REPORT_FD {
                // dup2 onto itself keeps close-on-exec: clear it instead.
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, REPORT_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut first = command.spawn().map_err(|source| ShimError::Exec {
        binary: config.binary.clone(),
        source,
    })?;
    drop(write);
    // The first process exits as soon as it has forked the detached shim.
    let _ = first.wait();
    read_report(config, read)
}

fn read_report(config: &ShimConfig, read: OwnedFd) -> Result<Started, ShimError> {
    let no_report = |what: &str| ShimError::NoReport {
        id: config.id.clone(),
        what: what.to_string(),
        log: config.shim_log.clone(),
    };
    let mut fds = [PollFd::new(read.as_fd(), PollFlags::POLLIN)];
    let timeout =
        PollTimeout::try_from(REPORT_TIMEOUT.as_millis() as i32).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, timeout) {
        Ok(0) => return Err(no_report("did not report within 60 s")),
        Ok(_) => {}
        Err(e) => return Err(no_report(&format!("could not be waited for: {e}"))),
    }
    let mut line = String::new();
    BufReader::new(std::fs::File::from(read))
        .read_line(&mut line)
        .map_err(|e| no_report(&format!("sent an unreadable report: {e}")))?;
    if line.is_empty() {
        return Err(no_report("exited without reporting"));
    }
    match serde_json::from_str(&line) {
        Ok(Report::Started { pid, shim_pid }) => Ok(Started { pid, shim_pid }),
        Ok(Report::Failed { error }) => Err(ShimError::Container {
            id: config.id.clone(),
            error,
        }),
        Err(e) => Err(no_report(&format!(
            "sent a report that is not JSON ({e}): {line:?}"
        ))),
    }
}
