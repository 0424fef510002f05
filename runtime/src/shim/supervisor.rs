//! The shim process: detach, run the container, copy its output to the CRI log, reap
//! it and write its exit record.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use super::exit::{oom_killed, ExitRecord};
use super::{Report, ShimConfig};
use crate::container::{self, Container, CreateOptions, Store};
use crate::logs::{line::timestamp, LogWriter, Stream};

/// How long output is still read after the init exited, for processes that outlived it
/// (no PID namespace) and hold its pipes: the record must not wait on them forever.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// A started container the shim supervises.
struct Running {
    pid: Pid,
    container: Container,
    started_at: String,
    /// stdout and stderr pipes, or the pty master as stdout.
    outputs: Vec<(Stream, OwnedFd)>,
    sigchld: SignalFd,
    log: LogWriter,
}

/// Run the shim: returns only in the detached process, with its exit code; the processes
/// that detached it exit on the way. `report` is the starter's end of [`super::spawn`].
pub fn run(config: &ShimConfig, report: OwnedFd) -> i32 {
    let mut report = std::fs::File::from(report);
    let running = detach().and_then(|()| launch(config));
    let message = match &running {
        Ok(r) => Report::Started {
            pid: r.pid.as_raw(),
            shim_pid: std::process::id() as i32,
        },
        Err(error) => Report::Failed {
            error: error.clone(),
        },
    };
    if let Ok(mut line) = serde_json::to_vec(&message) {
        line.push(b'\n');
        // The starter may be gone; the container runs on regardless.
        let _ = report.write_all(&line);
    }
    drop(report);
    match running {
        Ok(running) => supervise(config, running),
        Err(error) => {
            eprintln!("peapod-shim: container {}: {error}", config.id);
            1
        }
    }
}

/// Leave the starter's process group and session, and stop being its child: fork, new
/// session, fork again (so the shim can never regain a controlling terminal).
fn detach() -> Result<(), String> {
    for step in 0..2 {
        // SAFETY: the shim is single-threaded until it has detached; the parent side
        // only calls _exit.
        match unsafe { nix::unistd::fork() } {
            Ok(ForkResult::Parent { .. }) => crate::process::child_exit(0),
            Ok(ForkResult::Child) => {}
            Err(e) => return Err(format!("shim: detaching (fork): {e}")),
        }
        if step == 0 {
            nix::unistd::setsid().map_err(|e| format!("shim: detaching (setsid): {e}"))?;
        }
    }
    // Orphans of the container (without a PID namespace) are reparented to the shim and
    // reaped by it rather than by the host's init.
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    Ok(())
}

/// Create and start the container with its output on pipes (or a pty) the shim holds.
/// A container that fails to start is removed again.
fn launch(config: &ShimConfig) -> Result<Running, String> {
    let log = LogWriter::open(&config.log_path, config.log).map_err(|e| e.to_string())?;
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    // Blocked before the init exists, so its exit is queued on the signalfd, not lost.
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
        .map_err(|e| format!("shim: blocking SIGCHLD: {e}"))?;
    let sigchld = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| format!("shim: signalfd: {e}"))?;
    let store = Store::open(&config.root).map_err(|e| e.to_string())?;
    let bundle = crate::bundle::Bundle::load(&config.bundle).map_err(|e| e.to_string())?;
    let terminal = bundle
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let options = |console| CreateOptions {
        id: &config.id,
        bundle: &config.bundle,
        pid_file: None,
        console,
        no_pivot: false,
        preserve_fds: 0,
        new_keyring: true,
    };
    let (created, outputs) = if terminal {
        let (ours, theirs) = UnixStream::pair().map_err(|e| format!("shim: socketpair: {e}"))?;
        let created = container::create(&store, options(Some(theirs.into())))
            .map_err(|e| format!("create: {e}"))?;
        let master = crate::terminal::recv_fd(ours.as_fd());
        let master = match master {
            Ok(master) => master,
            Err(e) => {
                let _ = container::delete(&store, &config.id, true);
                return Err(format!("receiving the container's pty: {e}"));
            }
        };
        (created, vec![(Stream::Stdout, master)])
    } else {
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let created = with_stdio(out_w.as_fd(), err_w.as_fd(), || {
            container::create(&store, options(None))
        })?
        .map_err(|e| format!("create: {e}"))?;
        // Only the container holds the write ends now: its exit closes them.
        drop((out_w, err_w));
        (
            created,
            vec![(Stream::Stdout, out_r), (Stream::Stderr, err_r)],
        )
    };
    if let Err(e) = container::start(&store, &config.id) {
        let _ = container::delete(&store, &config.id, true);
        let _ = waitpid(created.pid, None);
        return Err(format!("start: {e}"));
    }
    Ok(Running {
        pid: created.pid,
        container: created.container,
        started_at: timestamp(chrono::Utc::now()),
        outputs,
        sigchld,
        log,
    })
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("shim: pipe: {e}"))
}

/// Run `f` with fds 1 and 2 pointing at `out` and `err` — `create` clones the init,
/// which inherits them as its stdout and stderr — then put the shim's own back.
fn with_stdio<T>(out: BorrowedFd, err: BorrowedFd, f: impl FnOnce() -> T) -> Result<T, String> {
    let dup = |fd: i32| {
        // SAFETY: F_DUPFD_CLOEXEC makes a new fd; no memory is touched.
        let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        (new >= 0)
            .then_some(new)
            .ok_or_else(|| format!("shim: saving fd {fd}: {}", Errno::last()))
    };
    let (saved_out, saved_err) = (dup(1)?, dup(2)?);
    // SAFETY: dup2 replaces fds 1 and 2 with valid fds; every Rust handle on them
    // (std's stdout/stderr) writes through the fd number and stays valid.
    unsafe {
        libc::dup2(out.as_raw_fd(), 1);
        libc::dup2(err.as_raw_fd(), 2);
    }
    let result = f();
    // SAFETY: as above; the saved copies are closed once restored.
    unsafe {
        libc::dup2(saved_out, 1);
        libc::dup2(saved_err, 2);
        libc::close(saved_out);
        libc::close(saved_err);
    }
    Ok(result)
}

/// Copy output to the log until the init has exited and its output is drained, then
/// write the exit record.
fn supervise(config: &ShimConfig, mut running: Running) -> i32 {
    let mut status = None;
    let mut deadline = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if status.is_none() {
            status = reap(running.pid);
        }
        if status.is_some() {
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + DRAIN_AFTER_EXIT);
            if running.outputs.is_empty() || Instant::now() >= deadline {
                break;
            }
        }
        let timeout = match status {
            Some(_) => PollTimeout::from(100u8),
            None => PollTimeout::NONE,
        };
        let mut fds: Vec<PollFd> = running
            .outputs
            .iter()
            .map(|(_, fd)| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
            .collect();
        fds.push(PollFd::new(running.sigchld.as_fd(), PollFlags::POLLIN));
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                eprintln!("peapod-shim: poll: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        while let Ok(Some(_)) = running.sigchld.read_signal() {}
        let mut closed = Vec::new();
        for (i, (stream, fd)) in running.outputs.iter().enumerate() {
            if !ready[i] {
                continue;
            }
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) | Err(Errno::EIO) => closed.push(i),
                Ok(n) => {
                    if let Err(e) = running.log.write(*stream, &buf[..n]) {
                        eprintln!("peapod-shim: {e}");
                    }
                }
                Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
                Err(e) => {
                    eprintln!("peapod-shim: reading the container's {stream:?}: {e}");
                    closed.push(i);
                }
            }
        }
        for i in closed.into_iter().rev() {
            let (stream, _) = running.outputs.remove(i);
            if let Err(e) = running.log.end(stream) {
                eprintln!("peapod-shim: {e}");
            }
        }
    }
    finish(config, running, status)
}

/// Reap every exited child (the shim is a subreaper); the init's status, once it ended.
fn reap(init: Pid) -> Option<WaitStatus> {
    let mut found = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return found,
            Ok(s) if s.pid() == Some(init) => {
                if matches!(s, WaitStatus::Exited(..) | WaitStatus::Signaled(..)) {
                    found = Some(s);
                }
            }
            Ok(_) => {}
            Err(Errno::EINTR) => {}
            // No children left: the init is gone without a status we saw.
            Err(_) => return found.or(Some(WaitStatus::Exited(init, 255))),
        }
    }
}

fn finish(config: &ShimConfig, running: Running, status: Option<WaitStatus>) -> i32 {
    let finished_at = timestamp(chrono::Utc::now());
    drop(running.log);
    let (exit_code, signal) = match status {
        Some(WaitStatus::Signaled(_, sig, _)) => (128 + sig as i32, Some(sig as i32)),
        Some(WaitStatus::Exited(_, code)) => (code, None),
        _ => (255, None),
    };
    let oom = running.container.cgroup.as_ref().is_some_and(oom_killed);
    let record = ExitRecord {
        exit_code,
        signal,
        started_at: running.started_at,
        finished_at,
        reason: ExitRecord::reason_for(exit_code, oom),
    };
    match record.save(&config.exit_file) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!(
                "peapod-shim: writing the exit record {}: {e}",
                config.exit_file.display()
            );
            1
        }
    }
}
