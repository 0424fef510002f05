//! Everything that can go wrong while creating, joining, reading or removing a cgroup.

use std::io;
use std::path::PathBuf;

/// An error from the [`cgroup`](super) module. Each message names the path, file or value
/// involved, so it can be shown to a user as is.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A file describing the host's cgroups (mount table, `/proc/self/cgroup`) could not be read.
    #[error("cannot read {path}")]
    ReadHostFile {
        /// The file that could not be read.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },

    /// The mount table lists no cgroup filesystem at or under the cgroup root.
    #[error("no cgroup filesystem is mounted at or under {root}")]
    NoCgroupMounts {
        /// The cgroup root that was searched (normally `/sys/fs/cgroup`).
        root: PathBuf,
    },

    /// `/proc/self/cgroup` has no line for a hierarchy, so a relative path cannot be resolved.
    #[error("{path} has no entry for the cgroup hierarchy {hierarchy:?}")]
    OwnCgroupUnknown {
        /// The file that was searched.
        path: PathBuf,
        /// The hierarchy's controllers (`""` for the cgroup v2 hierarchy).
        hierarchy: String,
    },

    /// The container id cannot be used as a cgroup directory name.
    #[error(
        "container id {id:?} cannot name a cgroup: it must be one path component, not '.' or '..'"
    )]
    InvalidId {
        /// The rejected id.
        id: String,
    },

    /// The `cgroupsPath` cleans to nothing (e.g. `"."`, `".."`, `"/"`): no cgroup of its own.
    #[error("cgroupsPath {path:?} does not name a cgroup below the hierarchy root or the caller's cgroup")]
    InvalidPath {
        /// The rejected path.
        path: PathBuf,
    },

    /// A `linux.resources` value is outside the range the kernel (or runc) accepts.
    #[error("invalid linux.resources.{field} {value}: {reason}")]
    InvalidValue {
        /// The OCI field, e.g. `memory.limit`.
        field: &'static str,
        /// The rejected value.
        value: String,
        /// What would be accepted.
        reason: &'static str,
    },

    /// `memory.swap` (memory+swap) was set without a memory limit to add swap to.
    #[error("invalid linux.resources.memory: swap {swap} needs a memory limit (memory.limit is unset or -1)")]
    SwapWithoutLimit {
        /// The requested memory+swap limit.
        swap: i64,
    },

    /// `memory.swap` is memory+swap, so it cannot be below `memory.limit`.
    #[error("invalid linux.resources.memory: swap (memory+swap) {swap} is below the memory limit {limit}")]
    SwapBelowLimit {
        /// The requested memory+swap limit.
        swap: i64,
        /// The requested memory limit.
        limit: i64,
    },

    /// A swap limit was requested but the kernel has no swap accounting (the swap limit file is
    /// missing, e.g. booted without `swapaccount=1`).
    #[error("cannot limit swap to {swap}: {file} does not exist (swap accounting is disabled in the kernel)")]
    SwapUnsupported {
        /// The missing file.
        file: PathBuf,
        /// The requested memory+swap limit.
        swap: i64,
    },

    /// A resource was requested for a controller this host does not offer.
    #[error(
        "linux.resources asks for the {controller} controller, which is not available under {root}"
    )]
    ControllerUnavailable {
        /// The controller, e.g. `pids`.
        controller: String,
        /// Where it was looked for.
        root: PathBuf,
    },

    /// A cgroup v2 controller could not be enabled for the children of a cgroup.
    #[error("cannot enable the {controller} controller in {file}{hint}")]
    EnableController {
        /// The controller.
        controller: String,
        /// The `cgroup.subtree_control` file written.
        file: PathBuf,
        /// Extra advice for well-known causes (empty otherwise).
        hint: &'static str,
        /// Why.
        source: io::Error,
    },

    /// A `linux.resources` field this host cannot honour (controller not mounted, interface
    /// file missing, setting meaningless for the cgroup version).
    #[error("linux.resources.{field}: {reason}")]
    Unsupported {
        /// The OCI field, e.g. `network.classID`.
        field: &'static str,
        /// Why, and what the host lacks.
        reason: String,
    },

    /// `linux.intelRdt` was set: this runtime does not manage resctrl.
    #[error("linux.intelRdt: not supported on this host (peapod-runtime does not manage the resctrl filesystem)")]
    IntelRdtUnsupported,

    /// A device rule cannot be compiled into the cgroup v2 device filter.
    #[error("linux.resources.devices: {0}")]
    DeviceFilter(#[from] super::device_filter::FilterError),

    /// The kernel refused the device filter program.
    #[error(
        "cannot load the cgroup v2 device filter (BPF_PROG_LOAD): {source}; verifier log: {log}"
    )]
    DeviceFilterLoad {
        /// The verifier's log (may be empty).
        log: String,
        /// Why.
        source: io::Error,
    },

    /// The device filter could not be attached to (or detached from) a cgroup.
    #[error("cannot attach the device filter to (or detach it from) the cgroup {dir}")]
    DeviceFilterAttach {
        /// The cgroup v2 directory.
        dir: PathBuf,
        /// Why.
        source: io::Error,
    },

    /// A cgroup directory could not be created.
    #[error("cannot create cgroup directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },

    /// A cgroup interface file could not be read.
    #[error("cannot read {file}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: io::Error,
    },

    /// A cgroup interface file could not be written directly.
    #[error("cannot write {value:?} to {file}")]
    Write {
        /// The file.
        file: PathBuf,
        /// The value written.
        value: String,
        /// Why.
        source: io::Error,
    },

    /// A cgroup interface file could not be written through `cgroups-rs`.
    #[error("cannot write {value:?} to {file}")]
    Apply {
        /// The file.
        file: PathBuf,
        /// The value written.
        value: String,
        /// Why (its source is the underlying I/O error).
        source: cgroups_rs::fs::error::Error,
    },

    /// The kernel kept a different value than the one written (it clamps some values).
    #[error("{file} holds {applied} after writing {requested}: the kernel clamped the value")]
    ValueClamped {
        /// The file.
        file: PathBuf,
        /// The value written.
        requested: String,
        /// The value read back.
        applied: String,
    },

    /// A v1 cpuset could not be initialised because no ancestor has CPUs or memory nodes.
    #[error("cannot initialise {file}: no ancestor cpuset has a non-empty value")]
    CpusetInit {
        /// The empty file.
        file: PathBuf,
    },

    /// A process could not be moved into the cgroup.
    #[error("cannot move process {pid} into {file}")]
    AddProcess {
        /// The process.
        pid: i32,
        /// The `cgroup.procs` file written.
        file: PathBuf,
        /// Why.
        source: io::Error,
    },

    /// A new process could not join the cgroup itself (it reports through a channel that
    /// carries only the message, hence the cause in it).
    #[error("cannot join the cgroup through {file}: {source}")]
    JoinSelf {
        /// The `tasks` or `cgroup.procs` file written.
        file: PathBuf,
        /// Why.
        source: io::Error,
    },

    /// The v2 cgroup directory could not be opened for `CLONE_INTO_CGROUP`.
    #[error("cannot open cgroup directory {path}")]
    OpenDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },

    /// A cgroup directory could not be removed (after retrying while processes exit).
    #[error("cannot remove cgroup directory {path}")]
    Remove {
        /// The directory.
        path: PathBuf,
        /// Why (`EBUSY`: processes are still inside).
        source: io::Error,
    },
}

impl CgroupError {
    /// Whether this is a cgroup that could not be removed because processes are still in it
    /// (`EBUSY`), which goes away once they have exited.
    pub fn is_busy(&self) -> bool {
        matches!(self, CgroupError::Remove { source, .. } if source.raw_os_error() == Some(libc::EBUSY))
    }
}
