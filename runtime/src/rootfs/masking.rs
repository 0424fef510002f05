//! The last rootfs step, inside the container: read-only remounts, read-only and masked paths.
//!
//! Everything here runs after the pivot, so paths are container paths resolved against the
//! container's own `/`.

use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::mount::MsFlags;
use nix::sys::stat::{fstat, stat, FileStat, Mode, SFlag};
use nix::sys::statfs::statfs;
use oci_spec::runtime::Mount as SpecMount;

use super::mount::{sys_mount, Entry};
use super::options::flags_from_statfs;
use super::resolve::clean;
use super::RootfsError;

/// The container's null device.
const DEV_NULL: &str = "/dev/null";

/// tmpfs mounts and `/dev` were mounted writable so they could be filled, and sysfs so its
/// superblock (one per network namespace, shared by a pod's containers) stays writable
/// for a privileged container; make those that asked for `ro` read-only now, per mount
/// (runc's `finalizeRootfs`).
pub fn remount_readonly_if_requested(m: &SpecMount) -> Result<(), RootfsError> {
    let entry = Entry::from_spec(m);
    let destination = clean(&entry.destination);
    let wanted = entry.options.flags.contains(MsFlags::MS_RDONLY);
    if wanted
        && (entry.fstype == "tmpfs" || entry.fstype == "sysfs" || destination == Path::new("/dev"))
    {
        remount_readonly(&destination, entry.options.flags)?;
    }
    Ok(())
}

/// `MS_REMOUNT | MS_BIND | MS_RDONLY` keeps the other flags and is allowed in a user
/// namespace; EBUSY (a file still open for writing) is retried a few times, as runc does.
fn remount_readonly(destination: &Path, flags: MsFlags) -> Result<(), RootfsError> {
    let flags =
        (flags - MsFlags::MS_REC) | MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
    let mut attempts = 0;
    loop {
        match sys_mount(None, destination, None, flags, "", destination) {
            Err(RootfsError::Mount {
                errno: Errno::EBUSY,
                ..
            }) if attempts < 4 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// `root.readonly`: remount `/` read-only, keeping its current flags if the plain remount is
/// refused (locked flags in a user namespace).
pub fn readonly_root() -> Result<(), RootfsError> {
    let root = Path::new("/");
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    if sys_mount(None, root, None, flags, "", root).is_ok() {
        return Ok(());
    }
    let current = statfs(root).map_err(|errno| RootfsError::syscall("statfs", root, errno))?;
    let current = flags_from_statfs(current.flags().bits());
    sys_mount(None, root, None, flags | current, "", root)
}

/// A `linux.readonlyPaths` entry: bind it onto itself (recursively) and remount read-only,
/// keeping the nosuid/nodev/noexec it already has (runc's `readonlyPath`). Missing paths are
/// skipped.
pub fn readonly_path(path: &Path) -> Result<(), RootfsError> {
    let source = path.to_string_lossy();
    let bind = MsFlags::MS_BIND | MsFlags::MS_REC;
    match sys_mount(Some(&source), path, None, bind, "", path) {
        Err(RootfsError::Mount {
            errno: Errno::ENOENT,
            ..
        }) => return Ok(()),
        other => other?,
    }
    let current = statfs(path).map_err(|errno| RootfsError::syscall("statfs", path, errno))?;
    let keep = flags_from_statfs(current.flags().bits())
        & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    let flags = keep | MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    sys_mount(Some(&source), path, None, flags, "", path)
}

/// `linux.maskedPaths`: `/dev/null` bound over files, an empty read-only tmpfs over
/// directories. Missing paths and repeats are skipped.
pub fn mask_paths<S: AsRef<str>>(paths: &[S]) -> Result<(), RootfsError> {
    if paths.is_empty() {
        return Ok(());
    }
    let null = Path::new(DEV_NULL);
    let st = stat(null).map_err(|errno| RootfsError::syscall("stat", null, errno))?;
    if !is_dev_null(&st) {
        return Err(not_null(null));
    }
    let mut seen = HashSet::new();
    for path in paths {
        let path = Path::new(path.as_ref());
        if !seen.insert(clean(path)) {
            continue;
        }
        let st = match stat(path) {
            Ok(st) => st,
            Err(Errno::ENOENT) => continue,
            Err(errno) => return Err(RootfsError::syscall("stat", path, errno)),
        };
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
            mask_dir(path)?;
        } else {
            sys_mount(Some(DEV_NULL), path, None, MsFlags::MS_BIND, "", path)?;
        }
    }
    Ok(())
}

/// runc's `maskDir`: the smallest tmpfs there is, read-only. Some kernels refuse
/// `nr_inodes=1`, hence the retry.
fn mask_dir(path: &Path) -> Result<(), RootfsError> {
    let flags = MsFlags::MS_RDONLY;
    let tiny = "nr_blocks=1,nr_inodes=1";
    sys_mount(Some("tmpfs"), path, Some("tmpfs"), flags, tiny, path).or_else(|_| {
        let tiny = "nr_blocks=1,nr_inodes=2";
        sys_mount(Some("tmpfs"), path, Some("tmpfs"), flags, tiny, path)
    })
}

/// Standard streams that are the host's `/dev/null` are pointed at the container's one
/// (runc's `reOpenDevNull`), so they do not pin a host mount.
pub fn reopen_dev_null() -> Result<(), RootfsError> {
    let null = Path::new(DEV_NULL);
    let file = open(null, OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|errno| RootfsError::syscall("open", null, errno))?;
    let st = fstat(file.as_fd()).map_err(|errno| RootfsError::syscall("fstat", null, errno))?;
    if !is_dev_null(&st) {
        return Err(not_null(null));
    }
    for fd in 0..3 {
        // SAFETY: only fstat is done through the borrow, which the kernel validates: a closed
        // descriptor just yields EBADF, handled below.
        let stream = unsafe { BorrowedFd::borrow_raw(fd) };
        let st = match fstat(stream) {
            Ok(st) => st,
            Err(Errno::EBADF) => continue,
            Err(errno) => return Err(RootfsError::syscall("fstat", format!("fd {fd}"), errno)),
        };
        if is_dev_null(&st) {
            // SAFETY: dup3 takes two plain descriptor numbers; `file` is open, and replacing
            // a standard stream number is the point.
            let res = unsafe { libc::dup3(file.as_raw_fd(), fd, 0) };
            Errno::result(res).map_err(|errno| RootfsError::syscall("dup3", null, errno))?;
        }
    }
    Ok(())
}

fn is_dev_null(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR
        && st.st_rdev == nix::sys::stat::makedev(1, 3)
}

fn not_null(path: &Path) -> RootfsError {
    RootfsError::Device {
        path: path.to_path_buf(),
        reason: "is not the null device (char 1:3)".into(),
    }
}
