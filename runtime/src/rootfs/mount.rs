//! Performing one `spec.mounts` entry inside the rootfs, the way runc's `mountToRootfs` does.
//!
//! A mount point is resolved (and created if missing) inside the rootfs, checked, and the
//! mount made on `/proc/self/fd/<n>` of that handle so no path is looked up twice. After the
//! mount the point is re-opened to reach the new mount for propagation changes and remounts.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::sys::statfs::{fstatfs, statfs, PROC_SUPER_MAGIC};
use oci_spec::runtime::Mount as SpecMount;

use super::options::{self, MountOptions, RecursiveAttr};
use super::resolve::{clean, has_nul, Root};
use super::{cgroupfs, HostPaths, RootfsError};

/// What every mount entry of one container shares.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The process has its own cgroup namespace.
    pub cgroup_ns: bool,
    /// The spec asks for a network namespace (new or joined): sysfs can be mounted fresh.
    pub new_netns: bool,
    /// Host locations.
    pub host: HostPaths<'a>,
}

/// A mount entry with its options parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Where, inside the container.
    pub destination: PathBuf,
    /// The source: a host path for binds, a name otherwise.
    pub source: String,
    /// The filesystem type (`"bind"` for binds).
    pub fstype: String,
    /// Parsed options.
    pub options: MountOptions,
}

impl Entry {
    /// Parses a spec entry. A `bind`/`rbind` option makes it a bind whatever its type (runc),
    /// and so does the type `bind` (crun, youki).
    pub fn from_spec(m: &SpecMount) -> Self {
        let mut options = options::parse(m.options().as_deref().unwrap_or_default());
        let mut fstype = m.typ().clone().unwrap_or_default();
        if fstype == "bind" || options.is_bind() {
            options.flags.insert(MsFlags::MS_BIND);
            fstype = "bind".into();
        }
        let source = m
            .source()
            .as_ref()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| fstype.clone());
        Self {
            destination: m.destination().clone(),
            source,
            fstype,
            options,
        }
    }

    /// Whether this is a bind mount.
    pub fn is_bind(&self) -> bool {
        self.options.is_bind()
    }

    /// The rbind of the host's `/sys` used in place of a fresh sysfs: same flags, and read-only
    /// (nosuid, nodev, noexec) recursively, so sysfs submounts like `/sys/kernel/security` do
    /// not stay writable.
    fn sys_rbind(&self, sys: &Path) -> Self {
        let mut options = self.options.clone();
        options.flags |= MsFlags::MS_BIND | MsFlags::MS_REC;
        let mut attrs = options.recursive.unwrap_or_default();
        for (flag, bit) in [
            (MsFlags::MS_RDONLY, options::attr::RDONLY),
            (MsFlags::MS_NOSUID, options::attr::NOSUID),
            (MsFlags::MS_NODEV, options::attr::NODEV),
            (MsFlags::MS_NOEXEC, options::attr::NOEXEC),
        ] {
            if options.flags.contains(flag) {
                attrs.set |= bit;
            }
        }
        options.recursive = (attrs != RecursiveAttr::default()).then_some(attrs);
        options.data.clear();
        Self {
            destination: self.destination.clone(),
            source: sys.to_string_lossy().into_owned(),
            fstype: "bind".into(),
            options,
        }
    }
}

/// A mount point, open inside the rootfs.
#[derive(Debug)]
pub struct Target {
    /// `O_PATH` handle.
    pub fd: OwnedFd,
    /// Where it really is, as a container path (symlinks resolved).
    pub path: PathBuf,
    /// It existed before (rather than being created for this mount).
    pub existed: bool,
}

/// Before the mounts: `/` gets `propagation` (default rslave) so nothing leaks to the host, the
/// mount holding the rootfs becomes private (slave if `propagation` is a slave mode) because
/// pivot_root(2) refuses a shared parent, and the rootfs is bind-mounted onto itself.
pub fn prepare_root(rootfs: &Path, propagation: Option<MsFlags>) -> Result<(), RootfsError> {
    let flags = propagation.unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    set_propagation(Path::new("/"), flags)?;
    let parent_flags = if flags.contains(MsFlags::MS_SLAVE) {
        MsFlags::MS_SLAVE
    } else {
        MsFlags::MS_PRIVATE
    };
    // EINVAL: not a mount point; walk up until one is.
    let mut path = rootfs;
    loop {
        match sys_mount(None, path, None, parent_flags, "", path) {
            Ok(()) => break,
            Err(RootfsError::Mount {
                errno: Errno::EINVAL,
                ..
            }) if path.parent().is_some() => path = path.parent().unwrap_or(Path::new("/")),
            Err(err) => return Err(err),
        }
    }
    bind_root(rootfs)
}

/// Bind-mounts the rootfs onto itself so it is a mount point of its own.
pub fn bind_root(rootfs: &Path) -> Result<(), RootfsError> {
    let source = rootfs.to_string_lossy();
    let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
    sys_mount(Some(&source), rootfs, Some("bind"), flags, "", rootfs)
}

/// Changes the propagation of the mount at `path` (an existing mount point).
pub fn set_propagation(path: &Path, flags: MsFlags) -> Result<(), RootfsError> {
    sys_mount(None, path, None, flags, "", path)
}

/// Performs one `spec.mounts` entry inside the rootfs.
pub fn mount_entry(root: &Root, m: &SpecMount, context: &Context) -> Result<(), RootfsError> {
    let entry = Entry::from_spec(m);
    if has_nul(&entry.destination) || entry.source.contains('\0') {
        return Err(RootfsError::syscall(
            "mount",
            &entry.destination,
            Errno::EINVAL,
        ));
    }
    tracing::debug!(destination = %entry.destination.display(), fstype = %entry.fstype, "mount");
    if entry.is_bind() {
        return bind(root, &entry);
    }
    match entry.fstype.as_str() {
        "cgroup" | "cgroup2" => cgroupfs::mount(root, &entry, context),
        "sysfs" if !context.new_netns => bind(root, &entry.sys_rbind(context.host.sys)),
        "proc" | "sysfs" => pseudo(root, &entry, context),
        _ => filesystem(root, &entry),
    }
}

/// proc and sysfs: mounted only on a plain directory, never through a symlink in last place.
fn pseudo(root: &Root, entry: &Entry, context: &Context) -> Result<(), RootfsError> {
    let destination = clean(&entry.destination);
    match root.open_in(&destination, OFlag::O_NOFOLLOW) {
        Ok(fd) => {
            let st = fstat(fd.as_fd())
                .map_err(|e| RootfsError::syscall("fstat", root.host_path(&destination), e))?;
            if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
                return Err(RootfsError::NotDirectory {
                    fstype: entry.fstype.clone(),
                    destination,
                });
            }
        }
        Err(Errno::ENOENT) => {}
        Err(errno) => {
            return Err(RootfsError::syscall(
                "openat2",
                root.host_path(&destination),
                errno,
            ))
        }
    }
    let target = open_target(root, &entry.destination, true)?;
    check_proc(&target.path, entry.fstype == "proc", false)?;
    let options = &entry.options;
    // sysfs is made read-only per mount later (see `remount_readonly_if_requested`): a
    // read-only superblock would be read-only for every container of the pod.
    let flags = match entry.fstype.as_str() {
        "sysfs" => options.flags - MsFlags::MS_RDONLY,
        _ => options.flags,
    };
    let mounted = mount_propagate(
        root,
        target,
        &entry.source,
        Some(&entry.fstype),
        flags,
        &options.data,
        &options.propagation,
    );
    match mounted {
        // A user namespace that does not own the network namespace may not mount sysfs.
        Err(RootfsError::Mount {
            errno: Errno::EPERM,
            ..
        }) if entry.fstype == "sysfs" => bind(root, &entry.sys_rbind(context.host.sys)),
        other => other.map(drop),
    }
}

/// Any filesystem that is not a bind, proc or sysfs: tmpfs, devpts, mqueue, cgroup, ...
pub fn filesystem(root: &Root, entry: &Entry) -> Result<(), RootfsError> {
    let target = open_target(root, &entry.destination, true)?;
    check_proc(&target.path, false, false)?;
    let mut data = entry.options.data.clone();
    let mut flags = entry.options.flags;
    if entry.fstype == "tmpfs" && target.existed {
        // Keep the mode of the directory being covered unless the options say otherwise.
        let st = fstat(target.fd.as_fd())
            .map_err(|e| RootfsError::syscall("fstat", root.host_path(&target.path), e))?;
        let mode = format!("mode={:04o}", st.st_mode & 0o7777);
        data = if data.is_empty() {
            mode
        } else {
            format!("{mode},{data}")
        };
    }
    if entry.fstype == "tmpfs" || target.path == Path::new("/dev") {
        // Still to be filled (devices, files); finalize makes it read-only if asked.
        flags.remove(MsFlags::MS_RDONLY);
    }
    let propagation = &entry.options.propagation;
    mount_propagate(
        root,
        target,
        &entry.source,
        Some(&entry.fstype),
        flags,
        &data,
        propagation,
    )
    .map(drop)
}

/// A bind mount: the source must exist; the mount point is a directory or an empty file like
/// the source; the flags are applied by a remount, keeping flags the kernel locked on the
/// source.
pub fn bind(root: &Root, entry: &Entry) -> Result<(), RootfsError> {
    let source = Path::new(&entry.source);
    let st = nix::sys::stat::stat(source)
        .map_err(|errno| RootfsError::syscall("stat", source, errno))?;
    let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
    let target = open_target(root, &entry.destination, is_dir)?;
    let procfs_source = target.path == Path::new("/proc")
        && statfs(source)
            .map_err(|errno| RootfsError::syscall("statfs", source, errno))?
            .filesystem_type()
            == PROC_SUPER_MAGIC;
    check_proc(&target.path, false, procfs_source)?;
    let options = &entry.options;
    let flags = MsFlags::MS_BIND | (options.flags & MsFlags::MS_REC);
    let mounted = mount_propagate(
        root,
        target,
        &entry.source,
        None,
        flags,
        "",
        &options.propagation,
    )?;
    if options.needs_bind_remount() {
        remount_bind(root, entry, &mounted)?;
    }
    if let Some(attrs) = options.recursive {
        set_recursive_attr(&mounted.fd, attrs).map_err(|errno| RootfsError::Syscall {
            syscall: "mount_setattr",
            path: mounted.path.clone(),
            errno,
        })?;
    }
    Ok(())
}

/// runc's bind remount: first exactly the requested flags (`mount --bind -o ...`); if the
/// kernel refuses because the source has locked flags (a mount inherited into a user
/// namespace), again with those flags kept, unless the request explicitly clears one of them.
fn remount_bind(root: &Root, entry: &Entry, target: &Target) -> Result<(), RootfsError> {
    let options = &entry.options;
    let flags = (options.flags - MsFlags::MS_REC) | MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    let on = root.fd_path(&target.fd);
    let errno = match sys_mount(None, &on, None, flags, "", &target.path) {
        Ok(()) => return Ok(()),
        Err(RootfsError::Mount { errno, .. }) => errno,
        Err(other) => return Err(other),
    };
    let st = fstatfs(target.fd.as_fd())
        .map_err(|e| RootfsError::syscall("fstatfs", root.host_path(&target.path), e))?;
    let current = options::flags_from_statfs(st.flags().bits());
    let relocked = options::relock(options, current).map_err(|flags| RootfsError::LockedFlags {
        destination: target.path.clone(),
        flags,
        errno,
    })?;
    let flags = (relocked - MsFlags::MS_REC) | MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    sys_mount(None, &on, None, flags, "", &target.path)
}

/// Opens the mount point for `destination`, creating a directory (or, if `dir` is false, an
/// empty file) when it is missing, and refuses the rootfs itself.
fn open_target(root: &Root, destination: &Path, dir: bool) -> Result<Target, RootfsError> {
    let destination = clean(destination);
    let (fd, existed) = match root.open_in(&destination, OFlag::empty()) {
        Ok(fd) => (fd, true),
        Err(Errno::ENOENT) if dir => (root.mkdir_all(&destination, dir_mode())?, false),
        Err(Errno::ENOENT) => (root.create_file(&destination, file_mode())?, false),
        Err(errno) => {
            return Err(RootfsError::syscall(
                "openat2",
                root.host_path(&destination),
                errno,
            ))
        }
    };
    let path = root.container_path(&fd)?;
    if path == Path::new("/") {
        return Err(RootfsError::OverRoot { destination });
    }
    Ok(Target { fd, path, existed })
}

/// Mounts on `target`, re-opens it to reach the new mount, and applies `propagation` there.
fn mount_propagate(
    root: &Root,
    target: Target,
    source: &str,
    fstype: Option<&str>,
    flags: MsFlags,
    data: &str,
    propagation: &[MsFlags],
) -> Result<Target, RootfsError> {
    let on = root.fd_path(&target.fd);
    sys_mount(Some(source), &on, fstype, flags, data, &target.path)?;
    let fd = root
        .open_in(&target.path, OFlag::empty())
        .map_err(|errno| RootfsError::syscall("openat2", root.host_path(&target.path), errno))?;
    let mounted = Target {
        fd,
        path: target.path,
        existed: true,
    };
    let on = root.fd_path(&mounted.fd);
    for &change in propagation {
        sys_mount(None, &on, None, change, "", &mounted.path)?;
    }
    Ok(mounted)
}

/// Paths under `/proc` that may be mount destinations: files lxcfs and similar emulate.
const PROC_ALLOWED: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/sys/kernel/ns_last_pid",
    "/proc/sys/crypto/fips_enabled",
];

/// runc's `checkProcMount`: on `/proc` itself only a fresh procfs (`fresh_proc`) or a bind of
/// a procfs (`procfs_source`); inside `/proc` only [`PROC_ALLOWED`].
pub fn check_proc(
    destination: &Path,
    fresh_proc: bool,
    procfs_source: bool,
) -> Result<(), RootfsError> {
    let Ok(rest) = destination.strip_prefix("/proc") else {
        return Ok(());
    };
    let reason = if rest.as_os_str().is_empty() {
        if fresh_proc || procfs_source {
            return Ok(());
        }
        "a non-procfs mount on"
    } else {
        if PROC_ALLOWED.iter().any(|p| Path::new(p) == destination) {
            return Ok(());
        }
        "inside"
    };
    Err(RootfsError::ProcMount {
        destination: destination.to_path_buf(),
        reason,
    })
}

/// mount(2), with an error naming the container `destination` (the `target` may be a
/// `/proc/self/fd` path).
pub fn sys_mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: &str,
    destination: &Path,
) -> Result<(), RootfsError> {
    let data_arg = (!data.is_empty()).then_some(data);
    nix::mount::mount(source, target, fstype, flags, data_arg).map_err(|errno| RootfsError::Mount {
        src: source.unwrap_or_default().to_string(),
        destination: destination.to_path_buf(),
        fstype: fstype.unwrap_or_default().to_string(),
        flags,
        data: data.to_string(),
        errno,
    })
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Applies `attrs` to the mount at `fd` and every mount below it (mount_setattr(2), Linux 5.12).
pub fn set_recursive_attr(fd: &OwnedFd, attrs: RecursiveAttr) -> Result<(), Errno> {
    let attr = MountAttr {
        attr_set: attrs.set,
        attr_clr: attrs.clear,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = libc::AT_EMPTY_PATH | libc::AT_RECURSIVE;
    // SAFETY: the path is a valid NUL-terminated empty string, `attr` is a live, correctly laid
    // out `struct mount_attr` whose size is passed along, and the fd is owned and open.
    let res = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(res).map(drop)
}

fn dir_mode() -> Mode {
    Mode::from_bits_truncate(0o755)
}

fn file_mode() -> Mode {
    Mode::from_bits_truncate(0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::rootfs::testbed::spec_mount;

    #[test]
    fn bind_option_or_type_makes_a_bind() {
        let entry = Entry::from_spec(&spec_mount("/data", "none", "/srv", &["rbind", "ro"]));
        assert!(entry.is_bind());
        assert_eq!(entry.fstype, "bind");
        let entry = Entry::from_spec(&spec_mount("/data", "bind", "/srv", &["ro"]));
        assert!(entry.is_bind());
        assert!(entry
            .options
            .flags
            .contains(MsFlags::MS_BIND | MsFlags::MS_RDONLY));
        let entry = Entry::from_spec(&spec_mount("/tmp", "tmpfs", "", &["size=1m"]));
        assert!(!entry.is_bind());
        assert_eq!(entry.source, "tmpfs");
        assert_eq!(entry.options.data, "size=1m");
    }

    #[test]
    fn sysfs_becomes_a_recursive_read_only_rbind() {
        let entry = Entry::from_spec(&spec_mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ));
        let rbind = entry.sys_rbind(Path::new("/host/sys"));
        assert_eq!(rbind.source, "/host/sys");
        assert!(rbind.is_bind());
        assert!(rbind
            .options
            .flags
            .contains(MsFlags::MS_REC | MsFlags::MS_RDONLY));
        let attrs = rbind.options.recursive.unwrap();
        use options::attr::*;
        assert_eq!(attrs.set, RDONLY | NOSUID | NODEV | NOEXEC);
        assert!(rbind.options.needs_bind_remount());
    }

    #[test]
    fn proc_destinations() {
        let check = |d: &str, fresh, procfs| check_proc(Path::new(d), fresh, procfs).is_ok();
        assert!(check("/proc", true, false));
        assert!(check("/proc", false, true));
        assert!(!check("/proc", false, false));
        assert!(check("/proc/meminfo", false, false));
        assert!(!check("/proc/sys", false, false));
        assert!(!check("/proc/self/fd", true, false));
        assert!(check("/process", false, false));
        assert!(check("/dev", false, false));
    }
}
