//! Jailing the process in the rootfs: pivot_root(2), or `MS_MOVE` plus chroot(2).

use std::os::fd::BorrowedFd;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::mount::{umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, chroot, fchdir};

use super::mount::sys_mount;
use super::{mountinfo, RootfsError};

/// runc's `pivotRoot`: `pivot_root(".", ".")` stacks the old root under the new one at the
/// same place, which is then made rslave (so the unmount cannot propagate to the host) and
/// lazily unmounted. No directory for the old root is needed in the image.
///
/// `new_root` is the open rootfs mount (`rootfs` its host path, for messages).
pub fn pivot_root(new_root: BorrowedFd, rootfs: &Path) -> Result<(), RootfsError> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_PATH | OFlag::O_CLOEXEC;
    let old_root = open("/", flags, Mode::empty())
        .map_err(|errno| RootfsError::syscall("open", "/", errno))?;
    fchdir(new_root).map_err(|errno| RootfsError::syscall("fchdir", rootfs, errno))?;
    nix::unistd::pivot_root(".", ".")
        .map_err(|errno| RootfsError::syscall("pivot_root", rootfs, errno))?;
    // The kernel leaves "." at the old root today; do not rely on it.
    fchdir(&old_root).map_err(|errno| RootfsError::syscall("fchdir", "old root", errno))?;
    let old = Path::new(".");
    sys_mount(
        None,
        old,
        None,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "",
        Path::new("old root"),
    )?;
    umount2(old, MntFlags::MNT_DETACH)
        .map_err(|errno| RootfsError::syscall("umount2", "old root", errno))?;
    chdir("/").map_err(|errno| RootfsError::syscall("chdir", "/", errno))
}

/// runc's `msMoveRoot`, for `--no-pivot`: first every full procfs and sysfs mount outside the
/// rootfs is detached (or covered with a tmpfs if that is refused), since from a chroot the
/// kernel would otherwise allow mounting those filesystems again; then the rootfs is moved
/// onto `/` and the process chroots into it.
///
/// `new_root` is the open rootfs mount; `rootfs` its host path, which tells the host's mounts
/// from the rootfs's.
pub fn move_root(new_root: BorrowedFd, rootfs: &Path, proc: &Path) -> Result<(), RootfsError> {
    let mountinfo_path = proc.join("self/mountinfo");
    let text = std::fs::read_to_string(&mountinfo_path).map_err(|source| RootfsError::Read {
        path: mountinfo_path,
        source,
    })?;
    let exposed = mountinfo::parse(&text).into_iter().filter(|m| {
        m.root == Path::new("/")
            && (m.fstype == "proc" || m.fstype == "sysfs")
            && !m.mount_point.starts_with(rootfs)
    });
    for m in exposed {
        let point = m.mount_point.as_path();
        let slave = MsFlags::MS_SLAVE | MsFlags::MS_REC;
        match sys_mount(None, point, None, slave, "", point) {
            Ok(()) => {}
            // A parent was already detached.
            Err(RootfsError::Mount {
                errno: Errno::ENOENT,
                ..
            }) => continue,
            Err(err) => return Err(err),
        }
        match umount2(point, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(Errno::EINVAL | Errno::EPERM) => sys_mount(
                Some("tmpfs"),
                point,
                Some("tmpfs"),
                MsFlags::empty(),
                "",
                point,
            )?,
            Err(errno) => return Err(RootfsError::syscall("umount2", point, errno)),
        }
    }
    fchdir(new_root).map_err(|errno| RootfsError::syscall("fchdir", rootfs, errno))?;
    // "." is the rootfs mount itself: its host path may not be reachable by now.
    sys_mount(
        Some("."),
        Path::new("/"),
        None,
        MsFlags::MS_MOVE,
        "",
        Path::new("/"),
    )?;
    chroot(".").map_err(|errno| RootfsError::syscall("chroot", rootfs, errno))?;
    chdir("/").map_err(|errno| RootfsError::syscall("chdir", "/", errno))
}
/// chroot(2) into `rootfs` without touching any mount: for containers that share the
/// host's mount namespace.
pub fn chroot_into(rootfs: &Path) -> Result<(), RootfsError> {
    chdir(rootfs).map_err(|errno| RootfsError::syscall("chdir", rootfs, errno))?;
    chroot(".").map_err(|errno| RootfsError::syscall("chroot", rootfs, errno))?;
    chdir("/").map_err(|errno| RootfsError::syscall("chdir", "/", errno))
}
