//! Terminals: the container's pty, handed to the caller over `--console-socket` as runc
//! does (the master fd in an SCM_RIGHTS message), or proxied by a foreground `run`/`exec`.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::termios;

/// Why a terminal could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TerminalError {
    /// Connecting to `--console-socket` failed.
    #[error("console socket {path}: {source}")]
    Connect {
        /// The socket path.
        path: std::path::PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A pty or socket call failed.
    #[error("terminal: {op}: {errno}")]
    Sys {
        /// The operation.
        op: &'static str,
        /// What the OS said.
        errno: nix::errno::Errno,
    },
    /// The peer sent no fd.
    #[error("terminal: no file descriptor received on the console socket")]
    NoFd,
}

fn sys(op: &'static str) -> impl Fn(nix::errno::Errno) -> TerminalError {
    move |errno| TerminalError::Sys { op, errno }
}

/// Connect to the caller's console socket (before the child leaves the host's mounts).
pub fn connect(path: &Path) -> Result<OwnedFd, TerminalError> {
    let stream = UnixStream::connect(path).map_err(|source| TerminalError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(stream.into())
}

/// Send `fd` over a unix socket with `name` as the message body (runc sends the pty path).
pub fn send_fd(socket: BorrowedFd, name: &str, fd: BorrowedFd) -> Result<(), TerminalError> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(socket.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(sys("sendmsg"))?;
    Ok(())
}

/// Receive one fd sent by [`send_fd`].
pub fn recv_fd(socket: BorrowedFd) -> Result<OwnedFd, TerminalError> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(sys("recvmsg"))?;
    for cmsg in msg.cmsgs().map_err(sys("recvmsg"))? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just installed this fd in our table for us alone.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(TerminalError::NoFd)
}

/// A new pty inside the container (its devpts must be mounted at /dev/pts).
pub struct Pty {
    /// The master side, for the caller.
    pub master: OwnedFd,
    /// The slave side, the process's stdio.
    pub slave: OwnedFd,
    /// The slave's path, e.g. /dev/pts/0.
    pub path: String,
}

/// Open a pty through the container's /dev/ptmx.
pub fn open_pty(size: Option<(u16, u16)>) -> Result<Pty, TerminalError> {
    use nix::fcntl::OFlag;
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(sys("open /dev/ptmx"))?;
    grantpt(&master).map_err(sys("grantpt"))?;
    unlockpt(&master).map_err(sys("unlockpt"))?;
    let path = ptsname_r(&master).map_err(sys("ptsname"))?;
    let slave = nix::fcntl::open(
        path.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(sys("open pty slave"))?;
    // SAFETY: posix_openpt returned an owned, open fd; into_raw_fd hands it over to us.
    let master = unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(master)) };
    if let Some((rows, cols)) = size {
        set_size(master.as_fd(), rows, cols)?;
    }
    Ok(Pty {
        master,
        slave,
        path,
    })
}

/// Make `slave` the controlling terminal and the stdio of this process (which must
/// already lead its own session).
pub fn become_stdio(slave: &OwnedFd) -> Result<(), TerminalError> {
    // SAFETY: TIOCSCTTY takes an int argument; the fd is a valid open tty.
    let rc = unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) };
    if rc < 0 {
        return Err(TerminalError::Sys {
            op: "TIOCSCTTY",
            errno: nix::errno::Errno::last(),
        });
    }
    for target in 0..3 {
        // SAFETY: dup2 onto the standard fds of this process, which we own.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(TerminalError::Sys {
                op: "dup2",
                errno: nix::errno::Errno::last(),
            });
        }
    }
    Ok(())
}

/// Set a tty's window size.
pub fn set_size(fd: BorrowedFd, rows: u16, cols: u16) -> Result<(), TerminalError> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct we own.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(TerminalError::Sys {
            op: "TIOCSWINSZ",
            errno: nix::errno::Errno::last(),
        });
    }
    Ok(())
}

/// The window size of a tty, if it is one.
pub fn size_of(fd: BorrowedFd) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize struct we own.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (rc == 0).then_some((ws.ws_row, ws.ws_col))
}

/// Puts the caller's terminal in raw mode while a foreground container owns it, and
/// restores it on drop.
pub struct RawMode {
    saved: Option<termios::Termios>,
}

impl RawMode {
    /// Switch stdin to raw mode if it is a terminal.
    pub fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok();
        if let Some(saved) = &saved {
            let mut raw = saved.clone();
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &raw);
        }
        RawMode { saved }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), termios::SetArg::TCSANOW, saved);
        }
    }
}

/// Copy the caller's stdin to the pty master and the master to stdout, on two threads
/// that end with the master (the output side returns when the container closes the pty).
pub fn proxy(master: OwnedFd) -> std::thread::JoinHandle<()> {
    let input = master.try_clone().ok();
    if let Some(input) = input {
        std::thread::spawn(move || {
            let mut to = std::fs::File::from(input);
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to);
        });
    }
    std::thread::spawn(move || {
        let mut from = std::fs::File::from(master);
        let _ = std::io::copy(&mut from, &mut std::io::stdout().lock());
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fds_cross_a_socketpair() {
        let (a, b) = UnixStream::pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        send_fd(a.as_fd(), "/dev/pts/7", file.as_fd()).unwrap();
        let got = recv_fd(b.as_fd()).unwrap();
        assert!(got.as_raw_fd() >= 0 && got.as_raw_fd() != file.as_raw_fd());
    }
}
