//! The container's root filesystem: mounts, devices, pivot_root, masked and read-only paths.
//!
//! Runs inside the container's init, already in its own mount namespace, in three steps that
//! mirror runc's `prepareRootfs` / `finalizeRootfs`:
//!
//! 1. [`attach`], still seeing the host: propagation and the rootfs bind, opened as a [`Handle`]
//!    (in a new user namespace, before the init becomes its root); then [`prepare`]: every
//!    `spec.mounts` entry, `/dev` (device nodes, symlinks, ptmx) and the working directory.
//! 2. [`pivot`]: pivot_root(2) into the rootfs (or `MS_MOVE` + chroot(2)).
//! 3. [`finalize`], inside: read-only remounts, `readonlyPaths`, `maskedPaths`, read-only `/`,
//!    the final `rootfsPropagation`.
//!
//! Layout: [`options`] parses mount options (pure); `resolve` keeps every path inside the
//! rootfs (openat2 `RESOLVE_IN_ROOT`); `mount` performs one mount entry, `cgroupfs` the
//! `cgroup` entry, `device` the `/dev` contents; `jail` and `masking` are steps 2 and 3.

mod cgroupfs;
mod device;
mod jail;
mod masking;
mod mount;
pub mod mountinfo;
pub mod options;
mod resolve;
#[cfg(test)]
mod testbed;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// Where the host's procfs is mounted while [`prepare`] runs.
const HOST_PROC: &str = "/proc";
/// Where the host's sysfs is mounted while [`prepare`] runs.
const HOST_SYS: &str = "/sys";

/// Host locations read during setup, handed down so that no submodule hard-codes them.
#[derive(Debug, Clone, Copy)]
struct HostPaths<'a> {
    /// The procfs mount (`/proc`): `self/mountinfo`, `self/cgroup`, `self/fd`, `kcore`.
    proc: &'a Path,
    /// The sysfs mount (`/sys`), bind-mounted when the container keeps the host network.
    sys: &'a Path,
}

impl HostPaths<'static> {
    fn system() -> Self {
        Self {
            proc: Path::new(HOST_PROC),
            sys: Path::new(HOST_SYS),
        }
    }
}

/// Why setting up the root filesystem failed.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// mount(2) failed for a mount entry (or one of the mounts it implies).
    #[error("mount {src:?} on {destination} (type {fstype:?}, flags {flags:?}, data {data:?}): mount: {errno}")]
    Mount {
        /// The mount source (a host path for binds, a name like `tmpfs` otherwise).
        src: String,
        /// The destination, as a container path.
        destination: PathBuf,
        /// The filesystem type (empty for binds, remounts and propagation changes).
        fstype: String,
        /// The flags passed.
        flags: MsFlags,
        /// The data passed.
        data: String,
        /// What the kernel said.
        errno: Errno,
    },
    /// Another system call on a path failed.
    #[error("{syscall} {path}: {errno}")]
    Syscall {
        /// The failing call, e.g. `mknodat`.
        syscall: &'static str,
        /// The path it was about (a host path before the pivot, a container path after).
        path: PathBuf,
        /// What the kernel said.
        errno: Errno,
    },
    /// Reading a kernel file (mountinfo, cgroup membership) failed.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The rootfs path cannot be used.
    #[error("rootfs {path}: {reason}")]
    Rootfs {
        /// The rootfs path as given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A path resolved to somewhere outside the rootfs.
    #[error("{resolved} is outside the rootfs")]
    Escape {
        /// Where it resolved to.
        resolved: PathBuf,
    },
    /// A mount destination is the rootfs itself.
    #[error("mount destination {destination} is the top of the rootfs")]
    OverRoot {
        /// The destination.
        destination: PathBuf,
    },
    /// A directory or file cannot be created because a symlink in its place points nowhere.
    #[error("cannot create {path}: it is a dangling symlink")]
    DanglingSymlink {
        /// The host path of the link.
        path: PathBuf,
    },
    /// `proc` and `sysfs` must be mounted on a plain directory (not a symlink or file).
    #[error("{fstype} must be mounted on a plain directory, and {destination} is not one")]
    NotDirectory {
        /// `proc` or `sysfs`.
        fstype: String,
        /// The destination.
        destination: PathBuf,
    },
    /// Nothing may be mounted over or inside `/proc` but procfs and a few lxcfs-style files.
    #[error("{destination} cannot be mounted: it is {reason} /proc")]
    ProcMount {
        /// The (resolved) destination.
        destination: PathBuf,
        /// `"inside"`, or `"a non-procfs mount on"`.
        reason: &'static str,
    },
    /// A bind mount asked to clear (or change) flags the kernel locks on its source.
    #[error("bind mount on {destination}: cannot change locked flags {flags:?}: mount: {errno}")]
    LockedFlags {
        /// The destination.
        destination: PathBuf,
        /// The locked flags the request conflicts with.
        flags: MsFlags,
        /// The error of the first remount attempt.
        errno: Errno,
    },
    /// A `linux.devices` entry cannot be created.
    #[error("device {path}: {reason}")]
    Device {
        /// The device path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The `cgroup` mount cannot be set up from the host's cgroup layout.
    #[error("cgroup mount on {destination}: {reason}")]
    Cgroup {
        /// The destination.
        destination: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// `linux.rootfsPropagation` is not a propagation mode.
    #[error("unsupported rootfsPropagation {0:?}")]
    Propagation(String),
}

impl RootfsError {
    fn syscall(syscall: &'static str, path: impl Into<PathBuf>, errno: Errno) -> Self {
        Self::Syscall {
            syscall,
            path: path.into(),
            errno,
        }
    }
}

/// The rootfs bound onto itself, open: every later step reaches it through this handle, not
/// through its host path, because the path may cross directories the container's user cannot
/// enter once it is root of a new user namespace.
#[derive(Debug)]
pub struct Handle {
    /// The top of the rootfs bind, with its canonical host path (for messages and for telling
    /// host mounts from the rootfs's).
    root: resolve::Root,
}

/// First step, still seeing the host: make the mount tree private/slave
/// (`linux.rootfsPropagation`, default rslave as runc), bind-mount the rootfs onto itself (rec)
/// and open the bind.
///
/// - `spec`: the container's config; `root.path` is not read (see `rootfs`).
/// - `rootfs`: host path of the root filesystem (relative paths are relative to the current
///   directory; symlinks in it are resolved once, here).
///
/// With a new user namespace the init calls this before it becomes root of that namespace: it
/// still has the host uid 0 then, so a rootfs below directories only the host's root may
/// enter is reached once, here, and never again by path.
pub fn attach(spec: &Spec, rootfs: &Path) -> Result<Handle, RootfsError> {
    let rootfs = canonical_rootfs(rootfs)?;
    let propagation = root_propagation(spec)?;
    if has_namespace(spec, LinuxNamespaceType::Mount) {
        mount::prepare_root(&rootfs, propagation)?;
    } else {
        // Without a mount namespace (runc allows it) the mounts land in the host's: leave
        // the host's propagation alone. `release_host_mounts` undoes them on delete.
        mount::bind_root(&rootfs)?;
    }
    // Opened only now so that lookups land in the fresh bind of the rootfs, not under it.
    let root = resolve::Root::open(&rootfs, HostPaths::system().proc)?;
    Ok(Handle { root })
}

/// Second step, before pivot: perform every `spec.mounts` entry in order inside the rootfs,
/// set up `/dev` (default devices `null zero full random urandom tty` plus `linux.devices`, by
/// mknod or — where mknod is not permitted, e.g. in a user namespace — by bind-mounting the
/// host node; the `fd stdin stdout stderr core` symlinks and `ptmx -> pts/ptmx`) unless `/dev`
/// is itself a bind mount, and create `process.cwd` if missing.
///
/// - `rootfs`: what [`attach`] returned. Bind sources that are relative are taken relative to
///   the current directory, so callers should make them absolute.
/// - `cgroup_ns`: whether the process is in its own cgroup namespace; then `cgroup` mounts are
///   fresh cgroup filesystems rather than binds of the container's own host cgroup directories.
///
/// Whether `sysfs` is mounted fresh or `/sys` is rbind-mounted depends on whether
/// `linux.namespaces` has a network namespace.
pub fn prepare(spec: &Spec, rootfs: &Handle, cgroup_ns: bool) -> Result<(), RootfsError> {
    let host = HostPaths::system();
    let root = &rootfs.root;
    searchable(root)?;
    let context = mount::Context {
        cgroup_ns,
        new_netns: has_namespace(spec, LinuxNamespaceType::Network),
        host,
    };
    for entry in spec.mounts().iter().flatten() {
        mount::mount_entry(root, entry, &context)?;
    }
    if needs_dev_setup(spec) {
        let devices = device::devices_for(spec)?;
        let kcore = host.proc.join("kcore").exists();
        device::populate_dev(root, &devices, kcore)?;
    }
    if let Some(process) = spec.process() {
        root.mkdir_all(
            process.cwd(),
            nix::sys::stat::Mode::from_bits_truncate(0o755),
        )?;
    }
    Ok(())
}

/// Third step: pivot_root(2) into the rootfs the runc way: `pivot_root(".", ".")`, make the old
/// root rslave so nothing propagates to the host, then `umount2(".", MNT_DETACH)` it. With
/// `no_pivot`, move the rootfs mount onto `/` (`MS_MOVE`) and chroot(2) instead, after
/// detaching the host's procfs/sysfs mounts (runc's defence against re-mounting them from a
/// chroot).
///
/// Must follow [`prepare`]; the working directory ends up at the new `/`.
pub fn pivot(rootfs: &Handle, no_pivot: bool) -> Result<(), RootfsError> {
    let root = &rootfs.root;
    if no_pivot {
        jail::move_root(root.fd(), root.path(), HostPaths::system().proc)
    } else {
        jail::pivot_root(root.fd(), root.path())
    }
}

/// Enter a rootfs prepared in the host's mount namespace: a plain chroot, since
/// pivot_root would move the host's own root.
pub fn chroot(rootfs: &Path) -> Result<(), RootfsError> {
    let rootfs = canonical_rootfs(rootfs)?;
    jail::chroot_into(&rootfs)
}

/// Unmount everything at or below `rootfs` in our mount namespace, deepest first: the
/// mounts a container without a mount namespace left on the host.
pub fn release_host_mounts(rootfs: &Path) -> Result<(), RootfsError> {
    let path = HostPaths::system().proc.join("self/mountinfo");
    let text =
        std::fs::read_to_string(&path).map_err(|source| RootfsError::Read { path, source })?;
    let mut points: Vec<PathBuf> = mountinfo::parse(&text)
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(rootfs))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    for point in points {
        match nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
            Err(errno) => return Err(RootfsError::syscall("umount2", &point, errno)),
        }
    }
    Ok(())
}

/// After pivot: remount read-only the tmpfs and `/dev` mounts that asked for `ro` (they were
/// mounted writable so `/dev` could be populated), make `/` read-only if `root.readonly`, make
/// each `linux.readonlyPaths` entry read-only (bind onto itself, remount `ro` keeping the
/// nosuid/nodev/noexec it has, as runc), mask each `linux.maskedPaths` entry (`/dev/null` over
/// files, a read-only tmpfs over directories; missing paths are skipped), point fds 0–2 that are
/// the host's `/dev/null` at the container's, and apply `linux.rootfsPropagation` to `/` if set,
/// as runc's `finalizeRootfs` does. (The umask is the process's business: `process::init`.)
///
/// Call after [`pivot`] and after anything that must write to `/proc/sys` (sysctls), which
/// becomes read-only here.
pub fn finalize(spec: &Spec) -> Result<(), RootfsError> {
    let propagation = root_propagation(spec)?;
    for entry in spec.mounts().iter().flatten() {
        masking::remount_readonly_if_requested(entry)?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        masking::readonly_root()?;
    }
    let linux = spec.linux().as_ref();
    for path in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        masking::readonly_path(Path::new(path))?;
    }
    let masked = linux.and_then(|l| l.masked_paths().as_ref());
    masking::mask_paths(masked.map(Vec::as_slice).unwrap_or_default())?;
    if needs_dev_setup(spec) {
        masking::reopen_dev_null()?;
    }
    if let Some(flags) = propagation {
        mount::set_propagation(Path::new("/"), flags)?;
    }
    Ok(())
}

/// The rootfs must be searchable with the init's credentials. In a user namespace whose
/// maps leave the directory's owner out, only its mode counts: say so instead of failing on
/// the first lookup inside.
fn searchable(root: &resolve::Root) -> Result<(), RootfsError> {
    let flags = nix::fcntl::AtFlags::AT_EMPTY_PATH | nix::fcntl::AtFlags::AT_EACCESS;
    match nix::unistd::faccessat(root.fd(), "", nix::unistd::AccessFlags::X_OK, flags) {
        Err(Errno::EACCES) => Err(RootfsError::Rootfs {
            path: root.path().to_path_buf(),
            reason: "the container's user cannot enter it (in a user namespace, a rootfs whose \
                     owner is not mapped must be searchable by others, e.g. mode 0755)"
                .into(),
        }),
        // Anything else (an old kernel without faccessat2) is left to the lookups.
        _ => Ok(()),
    }
}

fn canonical_rootfs(rootfs: &Path) -> Result<PathBuf, RootfsError> {
    let canonical = rootfs.canonicalize().map_err(|e| RootfsError::Rootfs {
        path: rootfs.to_path_buf(),
        reason: e.to_string(),
    })?;
    if canonical == Path::new("/") {
        return Err(RootfsError::Rootfs {
            path: rootfs.to_path_buf(),
            reason: "the rootfs cannot be the host's /".into(),
        });
    }
    Ok(canonical)
}

/// `linux.rootfsPropagation` as mount flags, if set.
fn root_propagation(spec: &Spec) -> Result<Option<MsFlags>, RootfsError> {
    let value = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .filter(|v| !v.is_empty());
    value
        .map(|v| options::propagation(v).ok_or_else(|| RootfsError::Propagation(v.into())))
        .transpose()
}

fn has_namespace(spec: &Spec, kind: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|namespaces| namespaces.iter().any(|ns| ns.typ() == kind))
}

/// runc leaves `/dev` alone when the spec bind-mounts something over it.
fn needs_dev_setup(spec: &Spec) -> bool {
    !spec.mounts().iter().flatten().any(|m| {
        resolve::clean(m.destination()) == Path::new("/dev") && mount::Entry::from_spec(m).is_bind()
    })
}
