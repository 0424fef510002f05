//! A container: its stored record, its live status, and one file per lifecycle operation.

mod create;
mod delete;
mod events;
mod exec;
mod kill;
mod pause;
mod start;
mod store;
mod update;

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use create::{create, CreateOptions, Created};
pub use delete::delete;
pub use events::{events, parse_duration, stats, Event};
pub use exec::{exec, ExecOptions, Spawned};
pub use kill::{kill, parse_signal};
pub use pause::{pause, resume};
pub use start::start;
pub use store::{Store, StoreError, DEFAULT_ROOT};
pub use update::{parse_bytes, update, ResourceFlags};

use crate::cgroup::Cgroup;

/// Why a lifecycle operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The state store failed, or the id is unknown or taken.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bundle is unusable.
    #[error(transparent)]
    Bundle(#[from] crate::bundle::BundleError),
    /// Namespaces are misconfigured.
    #[error(transparent)]
    Namespace(#[from] crate::namespace::NamespaceError),
    /// User namespace id mappings are misconfigured or refused.
    #[error(transparent)]
    IdMap(#[from] crate::idmap::IdMapError),
    /// Cgroups could not be set up or removed.
    #[error(transparent)]
    Cgroup(#[from] crate::cgroup::CgroupError),
    /// The container could not be paused or resumed.
    #[error(transparent)]
    Freeze(#[from] crate::cgroup::FreezeError),
    /// The process could not be cloned.
    #[error(transparent)]
    Spawn(#[from] crate::process::SpawnError),
    /// The channel to the child failed.
    #[error(transparent)]
    Channel(#[from] crate::process::channel::ChannelError),
    /// The console socket failed.
    #[error(transparent)]
    Terminal(#[from] crate::terminal::TerminalError),
    /// A hook failed.
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    /// `linux.seccomp` cannot be compiled into a filter.
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    /// The child reported a setup failure.
    #[error("{0}")]
    Setup(String),
    /// The operation does not fit the container's status.
    #[error("{0}")]
    State(String),
    /// A request's value is invalid; the message names the flag or field.
    #[error("{0}")]
    Invalid(String),
    /// The request asks for something peapod-runtime does not do (on this host).
    #[error("{0}")]
    Unsupported(String),
    /// The container id is not acceptable.
    #[error("{0}")]
    InvalidId(String),
    /// A file or system call failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl ContainerError {
    fn io(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> ContainerError {
        let op = op.into();
        move |source| ContainerError::Io { op, source }
    }
}

/// Write a pid file as runc does: to a temp file beside it, then renamed into place.
pub fn write_pid_file(path: &std::path::Path, pid: i32) -> Result<(), ContainerError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("pid");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, pid.to_string())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(ContainerError::io(format!("pid file {}", path.display())))
}

/// The OCI version this runtime reports in state documents.
pub const OCI_VERSION: &str = "1.2.0";

/// The status of a container as the OCI runtime spec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `create` is still setting the container up.
    Creating,
    /// Set up; the init process waits for `start` before running the user program.
    Created,
    /// The user program has been started and its process is alive.
    Running,
    /// The container's processes are frozen (`pause`) until `resume`.
    Paused,
    /// The container's init process has exited.
    Stopped,
}

impl Status {
    /// Only a created container can be started.
    pub fn can_start(self) -> bool {
        self == Status::Created
    }

    /// A running container is only deleted with `--force`; created ones are killed as runc does.
    pub fn can_delete(self) -> bool {
        matches!(self, Status::Stopped | Status::Created | Status::Creating)
    }

    /// Signals go to created, running and paused containers (a paused one receives them
    /// when it is resumed, or at once for SIGKILL, which thaws it).
    pub fn can_kill(self) -> bool {
        matches!(self, Status::Created | Status::Running | Status::Paused)
    }

    /// Created and running containers can be paused, as runc allows.
    pub fn can_pause(self) -> bool {
        matches!(self, Status::Created | Status::Running)
    }

    /// The lowercase name used in state JSON and `list`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// What the runtime remembers of a container between CLI invocations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    /// The container id, unique under one state root.
    pub id: String,
    /// The bundle directory, absolute.
    pub bundle: PathBuf,
    /// The root filesystem, absolute.
    pub rootfs: PathBuf,
    /// Host PID of the container's init, once it exists.
    pub pid: Option<i32>,
    /// Start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat), so a
    /// recycled PID is never mistaken for the container.
    pub pid_start: Option<u64>,
    /// When `create` ran, RFC 3339.
    pub created: String,
    /// The annotations from config.json.
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// The container's cgroup, when one was made.
    pub cgroup: Option<Cgroup>,
    /// The config the container was created from: `exec` takes its defaults from it.
    pub spec: oci_spec::runtime::Spec,
}

impl Container {
    /// The live status, read from the process table: never stale, even when the init
    /// died on its own.
    pub fn status(&self, store: &Store) -> Status {
        let (Some(pid), Some(start)) = (self.pid, self.pid_start) else {
            return Status::Creating;
        };
        match process_start_time(pid) {
            Some(now) if now == start => {
                // runc reads the freezer too: a paused container is one whose cgroup is frozen.
                if self.cgroup.as_ref().is_some_and(|c| c.is_frozen()) {
                    Status::Paused
                } else if store.start_socket(&self.id).exists() {
                    Status::Created
                } else {
                    Status::Running
                }
            }
            _ => Status::Stopped,
        }
    }

    /// Whether the container lives in the host's mount namespace (no `mount` entry in
    /// `linux.namespaces`, which runc allows): its mounts were made on the host and its
    /// processes are confined by chroot only.
    pub fn shares_host_mounts(&self) -> bool {
        let namespaces = self
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone());
        !namespaces
            .iter()
            .flatten()
            .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Mount)
    }

    /// The OCI state document (`runtime state`).
    pub fn state_json(&self, status: Status) -> serde_json::Value {
        let mut state = serde_json::json!({
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "status": status.as_str(),
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "annotations": self.annotations,
        });
        if status != Status::Stopped {
            if let Some(pid) = self.pid {
                state["pid"] = pid.into();
            }
        } else {
            state["pid"] = 0.into();
        }
        state
    }
}

/// Start time of a live, non-zombie process, or None.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // `state` is field 3; starttime is field 22.
    fields.nth(18)?.parse().ok()
}

/// Container ids are path components and unix-socket names: keep them to a safe alphabet.
pub fn check_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid container id {id:?}: use letters, digits, '-', '_', '.', '+'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_guards() {
        assert!(Status::Created.can_start());
        assert!(!Status::Running.can_start());
        assert!(!Status::Running.can_delete());
        assert!(Status::Stopped.can_delete());
        assert!(!Status::Stopped.can_kill());
        assert!(Status::Paused.can_kill());
        assert!(!Status::Paused.can_pause());
        assert!(!Status::Paused.can_delete());
        assert!(!Status::Paused.can_start());
    }

    #[test]
    fn own_start_time_is_readable() {
        let me = std::process::id() as i32;
        assert!(process_start_time(me).is_some());
        assert!(process_start_time(i32::MAX).is_none());
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("abc-1_2.3").is_ok());
        assert!(check_id("../x").is_err());
        assert!(check_id("").is_err());
        assert!(check_id("a/b").is_err());
    }
}
