//! Spawning container processes: one `clone` with every new namespace, a typed channel
//! to the child, and the child-side setup in [`init`].
//!
//! peapod never re-executes itself: the child is a copy of the runtime made by a raw
//! `clone` (fork semantics, namespace flags added), which is why `create` and `run`
//! cost one process creation instead of runc's several (two when namespaces must be joined
//! around a user namespace: see [`clone_after_joining`]).

pub mod channel;
pub mod init;
pub mod limits;
pub mod personality;
pub mod pidfd;
pub mod sysctl;
pub mod user;

use std::os::fd::{BorrowedFd, OwnedFd};

use nix::sched::CloneFlags;
use nix::unistd::Pid;

/// Why a process could not be spawned or finished.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// `clone` failed.
    #[error("clone with namespace flags {flags:?}: {errno}")]
    Clone {
        /// The flags passed.
        flags: CloneFlags,
        /// What the kernel said.
        errno: nix::errno::Errno,
    },
    /// The helper that joins namespaces for the child failed.
    #[error("joining the container's namespaces before the clone ({step}): {errno}")]
    Helper {
        /// What the helper was doing.
        step: String,
        /// What the kernel said.
        errno: nix::errno::Errno,
    },
}

/// Where `clone` left us.
pub enum Forked {
    /// In the parent, with the child's host PID.
    Parent(Pid),
    /// In the child.
    Child,
}

/// `fork`, but entering new namespaces on the way (`flags`).
///
/// Must only be called while the process has a single thread, like `fork`: the child
/// runs on a copy of the caller's memory and only async-signal-safe-in-spirit work
/// follows (our own setup code, then `execve`).
pub fn clone(flags: CloneFlags) -> Result<Forked, SpawnError> {
    // SAFETY: a raw clone without CLONE_VM and with a null stack behaves like fork: the
    // child gets a copy-on-write copy of our address space and continues from here.
    // The caller is single-threaded, so no lock is held by a thread that won't exist.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags.bits() | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match rc {
        -1 => Err(SpawnError::Clone {
            flags,
            errno: nix::errno::Errno::last(),
        }),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as i32))),
    }
}

/// [`clone`], but born in the cgroup v2 directory `cgroup` (`clone3` with
/// `CLONE_INTO_CGROUP`), which spares the cgroup-wide lock a later move would take (see
/// `cgroup::Entry`). Returns whether the child was placed that way: when `clone3` fails (a
/// kernel before 5.7, a seccomp filter, a cgroup that refuses the child) it falls back to
/// [`clone`], and the child must join by itself; the fallback also reports the real error of
/// a clone that cannot work at all.
pub fn clone_into(
    flags: CloneFlags,
    cgroup: Option<BorrowedFd<'_>>,
) -> Result<(Forked, bool), SpawnError> {
    use std::os::fd::AsRawFd;
    let Some(cgroup) = cgroup else {
        return Ok((clone(flags)?, false));
    };
    // The kernel's `struct clone_args` up to the `cgroup` field (CLONE_ARGS_SIZE_VER2).
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let args = CloneArgs {
        flags: flags.bits() as u64 | CLONE_INTO_CGROUP,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cgroup.as_raw_fd() as u64,
    };
    // SAFETY: `args` is a valid clone_args of the size passed. Without CLONE_VM and with no
    // stack this is fork: the child gets a copy-on-write copy of our address space and
    // continues from here; the caller is single-threaded (see `clone`).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match rc {
        -1 => Ok((clone(flags)?, false)),
        0 => Ok((Forked::Child, true)),
        pid => Ok((Forked::Parent(Pid::from_raw(pid as i32)), true)),
    }
}

/// [`clone`], but from inside the namespaces `joins` (type flag and open namespace file,
/// in joining order): a short-lived helper joins them and clones the child as the caller's
/// own child (`CLONE_PARENT`). The new namespaces in `flags` then belong to a joined user
/// namespace, and namespaces joined before a new user namespace is created are entered with
/// the host's privileges, as runc's intermediate process does. The caller cannot join them
/// itself: joining a user namespace would cost it its host privileges for good.
///
/// Same single-thread rule as [`clone`].
pub fn clone_after_joining(
    joins: &[(CloneFlags, BorrowedFd)],
    flags: CloneFlags,
) -> Result<Forked, SpawnError> {
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|errno| SpawnError::Helper {
            step: "pipe".into(),
            errno,
        })?;
    let helper = match clone(CloneFlags::empty())? {
        Forked::Child => {
            drop(read);
            // The helper reports (step, value): -1 and the child's pid, the index of the
            // namespace it could not join and the errno, or `joins.len()` and clone's errno.
            let joined = joins
                .iter()
                .enumerate()
                .find_map(|(i, (kind, fd))| nix::sched::setns(fd, *kind).err().map(|e| (i, e)));
            let report = match joined {
                Some((i, errno)) => [i as i32, errno as i32],
                None => match clone(flags | CloneFlags::CLONE_PARENT) {
                    Ok(Forked::Child) => {
                        drop(write);
                        return Ok(Forked::Child);
                    }
                    Ok(Forked::Parent(pid)) => [-1, pid.as_raw()],
                    Err(SpawnError::Clone { errno, .. }) => [joins.len() as i32, errno as i32],
                    Err(_) => [joins.len() as i32, 0],
                },
            };
            let bytes: Vec<u8> = report.iter().flat_map(|v| v.to_ne_bytes()).collect();
            let code = i32::from(nix::unistd::write(&write, &bytes).is_err());
            child_exit(code)
        }
        Forked::Parent(helper) => helper,
    };
    drop(write);
    let mut bytes = [0u8; 8];
    let got = read_full(&read, &mut bytes);
    let _ = wait_exit_code(helper);
    if !got {
        return Err(SpawnError::Helper {
            step: "report".into(),
            errno: nix::errno::Errno::EPIPE,
        });
    }
    let step = i32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let value = i32::from_ne_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let errno = nix::errno::Errno::from_raw(value);
    match usize::try_from(step).ok().map(|i| joins.get(i)) {
        None => Ok(Forked::Parent(Pid::from_raw(value))),
        Some(Some((kind, _))) => Err(SpawnError::Helper {
            step: format!("setns {kind:?}"),
            errno,
        }),
        Some(None) => Err(SpawnError::Clone { flags, errno }),
    }
}

/// Fill `buf` from `fd`; false on EOF or error before it is full.
fn read_full(fd: &OwnedFd, buf: &mut [u8]) -> bool {
    let mut done = 0;
    while done < buf.len() {
        match nix::unistd::read(fd, &mut buf[done..]) {
            Ok(0) => return false,
            Ok(n) => done += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
    true
}

/// Exit the child without running the parent's atexit handlers or destructors.
pub fn child_exit(code: i32) -> ! {
    // SAFETY: _exit is always safe; it ends the process immediately.
    unsafe { libc::_exit(code) }
}

/// Wait for a child and turn its end into a shell-style exit code (128+signal when
/// killed), as runc's foreground `run` and `exec` report it.
pub fn wait_exit_code(pid: Pid) -> i32 {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}
