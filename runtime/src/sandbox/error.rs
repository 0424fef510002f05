//! Everything that can go wrong while creating, loading or removing a pod sandbox.

use std::io;
use std::path::PathBuf;

use crate::cgroup::CgroupError;

/// An error from the [`sandbox`](super) module. Each message names the sandbox, file, field
/// or path involved, so it can be shown to a user as is.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A field of a [`SandboxConfig`](super::SandboxConfig) or
    /// [`ContainerConfig`](super::ContainerConfig) cannot be used.
    #[error("{field} {value:?}: expected {expected}")]
    InvalidConfig {
        /// The field, e.g. `hostname` or `container.working_dir`.
        field: &'static str,
        /// The rejected value.
        value: String,
        /// What was expected instead.
        expected: &'static str,
    },

    /// A sandbox of that name already has a directory in the state dir.
    #[error("sandbox {name} already exists ({path})")]
    Exists {
        /// The sandbox name.
        name: String,
        /// Its state directory.
        path: PathBuf,
    },

    /// No sandbox of that name has a record in the state dir.
    #[error("sandbox {name} does not exist (no {path})")]
    NotFound {
        /// The sandbox name.
        name: String,
        /// The record that is missing.
        path: PathBuf,
    },

    /// The sandbox cannot be removed while processes run in its pod cgroup.
    #[error("sandbox {name} still has processes in its cgroup (pids {pids:?}): delete its containers first")]
    Busy {
        /// The sandbox name.
        name: String,
        /// Some of the processes found.
        pids: Vec<i32>,
    },

    /// A file operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done: `create`, `write`, `read`, `remove`, ...
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },

    /// A namespace could not be created, pinned or unpinned.
    #[error("{op} {path}: {errno}")]
    Namespace {
        /// The system call and what it was for, e.g. `bind-mount the net namespace on`.
        op: &'static str,
        /// The pin file or directory involved.
        path: PathBuf,
        /// What the OS said.
        errno: nix::errno::Errno,
    },

    /// The pod cgroup, or its QoS parent, could not be created or removed.
    #[error("cgroup {path}")]
    Cgroup {
        /// The cgroup's path below each hierarchy's root, e.g. `/kubepods/burstable/pod<uid>`.
        path: PathBuf,
        /// The cgroup module's error, naming the directory or file (boxed: it is large, and
        /// every other variant would pay for its size).
        source: Box<CgroupError>,
    },

    /// A sandbox record does not parse (damaged, or written by another version).
    #[error("{path}: corrupt sandbox record")]
    Corrupt {
        /// The record file.
        path: PathBuf,
        /// The parser's complaint.
        source: serde_json::Error,
    },

    /// The pod shares a PID namespace whose holder is no longer running, so no container
    /// can join it: the sandbox must be made again.
    #[error("sandbox {name}: the init holding the pod's shared PID namespace is gone")]
    PidNamespaceGone {
        /// The sandbox name.
        name: String,
    },

    /// The container's OCI config could not be assembled.
    #[error("container {container}: building the OCI config")]
    Spec {
        /// The container name.
        container: String,
        /// The complaint of the OCI types' parser.
        source: serde_json::Error,
    },
}

/// Wrap an I/O error with what was done to which path.
pub(crate) fn io(
    op: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(io::Error) -> SandboxError {
    let path = path.to_path_buf();
    move |source| SandboxError::Io { op, path, source }
}
