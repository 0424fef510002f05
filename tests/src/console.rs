//! The `--console-socket` protocol from the caller's side: listen on a unix
//! socket, receive the pty master the runtime sends over `SCM_RIGHTS`, and
//! talk to the container's terminal through it.

use std::fs::File;
use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
use tempfile::TempDir;

/// How long to wait for the runtime to hand over the pty, or for output.
pub const CONSOLE_TIMEOUT: Duration = Duration::from_secs(20);

/// A listening console socket in a temp dir of its own.
pub struct ConsoleSocket {
    dir: TempDir,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Binds `<tmp>/console.sock`.
    #[track_caller]
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pp-console-")
            .tempdir()
            .expect("a console socket directory");
        let listener =
            UnixListener::bind(dir.path().join("console.sock")).expect("bind console socket");
        ConsoleSocket { dir, listener }
    }

    /// The socket's path, for `--console-socket`.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("console.sock")
    }

    /// Accepts the runtime's connection and receives the pty master;
    /// panics if none arrives within [`CONSOLE_TIMEOUT`].
    #[track_caller]
    pub fn receive_pty(&self) -> Pty {
        assert!(
            wait_readable(self.listener.as_fd(), CONSOLE_TIMEOUT),
            "the runtime did not connect to {}",
            self.path().display()
        );
        let (stream, _) = self.listener.accept().expect("accept console connection");
        assert!(
            wait_readable(stream.as_fd(), CONSOLE_TIMEOUT),
            "the runtime connected but sent nothing"
        );
        let mut name = [0u8; 256];
        let mut iov = [IoSliceMut::new(&mut name)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let message = recvmsg::<UnixAddr>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .expect("recvmsg on the console socket");
        let fd = message
            .cmsgs()
            .expect("control messages")
            .find_map(|cmsg| match cmsg {
                ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                _ => None,
            })
            .expect("the console socket message carries no file descriptor");
        // SAFETY: SCM_RIGHTS just installed `fd` in this process; nothing
        // else owns it, so the OwnedFd becomes its only owner.
        let master = unsafe { OwnedFd::from_raw_fd(fd) };
        Pty {
            master: File::from(master),
            seen: String::new(),
        }
    }
}

impl Default for ConsoleSocket {
    fn default() -> Self {
        Self::new()
    }
}

/// The master side of a container's terminal.
pub struct Pty {
    master: File,
    seen: String,
}

impl Pty {
    /// Writes `line` and a newline, as if typed.
    #[track_caller]
    pub fn send_line(&mut self, line: &str) {
        self.master
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to the pty master");
    }

    /// Reads until the output so far contains `needle`, returning all of it;
    /// panics with what arrived if it does not within [`CONSOLE_TIMEOUT`].
    #[track_caller]
    pub fn read_until(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + CONSOLE_TIMEOUT;
        while !self.seen.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero() && wait_readable(self.master.as_fd(), left),
                "no {needle:?} on the terminal; got {:?}",
                self.seen
            );
            let mut buf = [0u8; 4096];
            match self.master.read(&mut buf) {
                Ok(0) => panic!("terminal closed before {needle:?}; got {:?}", self.seen),
                Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                // EIO: the slave side is closed, i.e. the container exited.
                Err(e) => panic!("reading the terminal: {e}; got {:?}", self.seen),
            }
        }
        self.seen.clone()
    }
}

/// Whether `fd` becomes readable within `timeout`.
fn wait_readable(fd: std::os::fd::BorrowedFd<'_>, timeout: Duration) -> bool {
    let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    matches!(poll(&mut fds, timeout), Ok(n) if n > 0)
}
