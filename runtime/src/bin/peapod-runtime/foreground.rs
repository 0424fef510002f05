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

/// A terminal the CLI owns on behalf of a foreground process: the pty master arrives
/// over a socketpair standing in for `--console-socket`.
pub struct Console {
    ours: UnixStream,
}

/// A pty being proxied to our stdio.
pub struct Attached {
    master: OwnedFd,
    _raw: terminal::RawMode,
    output: std::thread::JoinHandle<()>,
}

impl Console {
    /// The console fd to hand to `create`/`exec`: the caller's `--console-socket`, our
    /// own socketpair when a terminal is wanted without one, or none.
    pub fn for_process(
        socket: Option<&std::path::Path>,
        terminal: bool,
    ) -> anyhow::Result<(Option<OwnedFd>, Option<Console>)> {
        match (socket, terminal) {
            (Some(path), _) => Ok((Some(terminal::connect(path)?), None)),
            (None, true) => {
                let (ours, theirs) = UnixStream::pair()?;
                Ok((Some(theirs.into()), Some(Console { ours })))
            }
            (None, false) => Ok((None, None)),
        }
    }

    /// Receive the pty master, size it like our terminal, and start proxying.
    pub fn attach(self) -> anyhow::Result<Attached> {
        let master = terminal::recv_fd(self.ours.as_fd())?;
        if let Some((rows, cols)) = terminal::size_of(std::io::stdin().as_fd()) {
            let _ = terminal::set_size(master.as_fd(), rows, cols);
        }
        let raw = terminal::RawMode::enter();
        let output = terminal::proxy(master.try_clone()?);
        Ok(Attached {
            master,
            _raw: raw,
            output,
        })
    }
}

/// Forward signals to `pid` until it exits, then drain its terminal; returns its
/// shell-style exit code.
pub fn supervise(pid: Pid, tty: Option<Attached>) -> i32 {
    let code = wait_forwarding(pid, tty.as_ref().map(|t| &t.master));
    if let Some(tty) = tty {
        drop(tty.master);
        let _ = tty.output.join();
    }
    code
}

fn wait_forwarding(pid: Pid, tty: Option<&OwnedFd>) -> i32 {
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
