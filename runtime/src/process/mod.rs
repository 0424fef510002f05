//! Spawning container processes: one `clone` with every new namespace, a typed channel
//! to the child, and the child-side setup in [`init`].
//!
//! peapod never re-executes itself: the child is a copy of the runtime made by a raw
//! `clone` (fork semantics, namespace flags added), which is why `create` and `run`
//! cost one process creation instead of runc's several.

pub mod channel;
pub mod init;
pub mod limits;
pub mod personality;
pub mod pidfd;
pub mod sysctl;
pub mod user;

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
