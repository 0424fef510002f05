//! The pod's shared PID namespace (`shareProcessNamespace`) and the tiny init that holds it.
//!
//! The other namespaces of a sandbox live as long as their bind mounts, but a PID namespace
//! whose first process has exited accepts no new processes. So a pod that shares one gets a
//! holder: a process forked as PID 1 of a new PID namespace that does nothing but reap the
//! orphans that namespace hands it (as every init must) until it is killed at tear-down.
//! Each container joins the namespace through `/proc/<holder pid>/ns/pid`.
//!
//! The holder lives in the cgroup `<pod cgroup>/pidns-init`, a leaf, so on cgroup v2 the pod
//! cgroup itself stays free of processes. Its pid and start time are in the sandbox record:
//! a restarted kubelet finds it again, and the start time tells it from a later process that
//! got the same pid. It is not the kubelet's child after such a restart, so it is forked into
//! a session of its own and holds none of the kubelet's files.

use std::fs;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};
use serde::{Deserialize, Serialize};

use crate::cgroup::Host;

use super::SandboxError;

/// The holder's cgroup, below the pod cgroup.
pub const HOLDER_CGROUP: &str = "pidns-init";

/// The init holding a pod's shared PID namespace, as recorded in the sandbox record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidHolder {
    /// Its pid in the node's PID namespace.
    pub pid: i32,
    /// Its start time in clock ticks after boot (`/proc/<pid>/stat` field 22).
    pub start_time: u64,
}

impl PidHolder {
    /// Fork the holder into a new PID namespace and move it into `<pod cgroup>/pidns-init`.
    pub fn start(host: &Host, pod_cgroup: &Path) -> Result<PidHolder, SandboxError> {
        let pid = fork_holder()?;
        let holder = match start_time(pid) {
            Some(start_time) => PidHolder {
                pid: pid.as_raw(),
                start_time,
            },
            None => {
                reap(pid);
                return Err(namespace_error("read the start time of", pid, Errno::ESRCH));
            }
        };
        let path = pod_cgroup.join(HOLDER_CGROUP);
        let placed = crate::cgroup::Cgroup::create_on(host, Some(&path), HOLDER_CGROUP, None)
            .and_then(|cgroup| cgroup.add_process(pid.as_raw()));
        if let Err(source) = placed {
            let _ = holder.stop();
            return Err(SandboxError::Cgroup {
                path,
                source: Box::new(source),
            });
        }
        Ok(holder)
    }

    /// Whether the holder still runs (the same process, not a later one with its pid).
    pub fn alive(&self) -> bool {
        start_time(Pid::from_raw(self.pid)) == Some(self.start_time)
    }

    /// The namespace file containers join.
    pub fn namespace_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/pid", self.pid))
    }

    /// Kill the holder (SIGKILL: as a namespace's init it ignores every other signal from
    /// outside) and reap it if it is this process's child. One already gone is fine. The
    /// kernel kills whatever else still runs in the namespace with it.
    pub fn stop(&self) -> Result<(), SandboxError> {
        if !self.alive() {
            return Ok(());
        }
        let pid = Pid::from_raw(self.pid);
        match kill(pid, Signal::SIGKILL) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(errno) => return Err(namespace_error("kill", pid, errno)),
        }
        reap(pid);
        Ok(())
    }
}

/// Reap `pid` if it is our child; after a kubelet restart it is not, and its new parent
/// reaps it.
fn reap(pid: Pid) {
    let _ = waitpid(pid, None);
}

fn namespace_error(op: &'static str, pid: Pid, errno: Errno) -> SandboxError {
    SandboxError::Namespace {
        op,
        path: PathBuf::from(format!("/proc/{pid}")),
        errno,
    }
}

/// `/proc/<pid>/stat` field 22, or None when there is no such process (or it is a zombie).
fn start_time(pid: Pid) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields after it are
    // counted from its closing parenthesis.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // `rest` starts at field 3 (state); the start time is field 22.
    fields.nth(18)?.parse().ok()
}

/// On a throwaway thread (so no other thread of the caller ever has its children land in the
/// new namespace): unshare the PID namespace for children, then fork the holder.
fn fork_holder() -> Result<Pid, SandboxError> {
    std::thread::Builder::new()
        .name("sandbox-pidns".into())
        .spawn(|| {
            unshare(CloneFlags::CLONE_NEWPID).map_err(|errno| {
                namespace_error("unshare the pid namespace for", Pid::this(), errno)
            })?;
            // SAFETY: the child runs only `holder_main`, which makes nothing but
            // async-signal-safe system calls (no allocation, no locks), as the child of a
            // multi-threaded process must.
            match unsafe { fork() } {
                Ok(ForkResult::Parent { child }) => Ok(child),
                Ok(ForkResult::Child) => holder_main(),
                Err(errno) => Err(namespace_error(
                    "fork the pid namespace holder from",
                    Pid::this(),
                    errno,
                )),
            }
        })
        .map_err(|source| SandboxError::Io {
            op: "spawn the pid namespace thread for",
            path: PathBuf::from("sandbox-pidns"),
            source,
        })?
        .join()
        .unwrap_or_else(|_| {
            Err(namespace_error(
                "pid namespace thread panicked",
                Pid::this(),
                Errno::UnknownErrno,
            ))
        })
}

/// The holder: PID 1 of the pod's PID namespace. Leaves the caller's session and working
/// directory, closes every inherited file, blocks all signals and then waits for SIGCHLD to reap whatever exited.
fn holder_main() -> ! {
    // SAFETY: plain system calls on values that live on this stack; each is async-signal-safe.
    unsafe {
        libc::setsid();
        // Hold no directory of the caller's busy.
        libc::chdir(c"/".as_ptr());
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
        libc::prctl(libc::PR_SET_NAME, c"pod-pidns-init".as_ptr());
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
        loop {
            while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
            // Blocked signals are queued, not discarded, so SIGCHLD wakes this up.
            libc::sigwaitinfo(&all, std::ptr::null_mut());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_time_is_read_past_a_command_name_with_spaces() {
        let me = start_time(Pid::this()).expect("this process has a start time");
        assert!(me > 0);
        assert_eq!(start_time(Pid::from_raw(i32::MAX)), None);
    }

    #[test]
    fn a_holder_that_is_gone_is_not_alive_and_stops_quietly() {
        let gone = PidHolder {
            pid: i32::MAX,
            start_time: 1,
        };
        assert!(!gone.alive());
        gone.stop().unwrap();
        assert_eq!(
            gone.namespace_path(),
            PathBuf::from(format!("/proc/{}/ns/pid", i32::MAX))
        );
    }
}
