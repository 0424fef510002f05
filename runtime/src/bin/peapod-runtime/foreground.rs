//! Foreground `run` and `exec`: the CLI stays the container process's parent, forwards
//! signals to it, proxies its terminal, and exits with its exit code.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use runtime::terminal;

/// Signals the CLI takes over while a foreground process runs.
fn forwarded() -> SigSet {
    let mut set = SigSet::empty();
    for sig in [
        Signal::SIGCHLD,
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGTERM,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGCONT,
    ] {
        set.add(sig);
    }
    set
}

/// Block the forwarded signals; call before spawning so none is lost. The container
/// process resets its mask before `execve`.
pub fn block_signals() {
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded()), None);
}

/// A terminal the CLI owns on behalf of a foreground process.
pub struct Console {
    ours: UnixStream,
    /// The end handed to the runtime as its console socket.
    pub theirs: Option<OwnedFd>,
}

impl Console {
    /// A socketpair standing in for `--console-socket`.
    pub fn new() -> anyhow::Result<Console> {
        let (ours, theirs) = UnixStream::pair()?;
        Ok(Console {
            ours,
            theirs: Some(theirs.into()),
        })
    }

    /// Receive the pty master, size it like our terminal, and start proxying.
    pub fn attach(
        self,
    ) -> anyhow::Result<(OwnedFd, terminal::RawMode, std::thread::JoinHandle<()>)> {
        let master = terminal::recv_fd(self.ours.as_fd())?;
        if let Some((rows, cols)) = terminal::size_of(std::io::stdin().as_fd()) {
            let _ = terminal::set_size(master.as_fd(), rows, cols);
        }
        let raw = terminal::RawMode::enter();
        let resize = master.try_clone()?;
        let output = terminal::proxy(master);
        Ok((resize, raw, output))
    }
}

/// Forward signals to `pid` until it exits; returns its shell-style exit code.
pub fn supervise(pid: Pid, tty: Option<&OwnedFd>) -> i32 {
    let set = forwarded();
    loop {
        // Reap first: SIGCHLD may have arrived before we started waiting.
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => {}
            Err(nix::errno::Errno::ECHILD) => return 255,
            Err(_) => {}
        }
        let Ok(sig) = set.wait() else { continue };
        match sig {
            Signal::SIGCHLD => {}
            Signal::SIGWINCH => {
                if let (Some(tty), Some((rows, cols))) =
                    (tty, terminal::size_of(std::io::stdin().as_fd()))
                {
                    let _ = terminal::set_size(tty.as_fd(), rows, cols);
                }
            }
            other => {
                let _ = nix::sys::signal::kill(pid, other);
            }
        }
    }
}
