//! The master side of an exec's pseudo-terminal, read and written from tokio.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::termios::{tcgetattr, SpecialCharacterIndices};
use tokio::io::unix::AsyncFd;

use super::channel::Size;

/// A pty master in non-blocking mode.
pub struct Master {
    fd: AsyncFd<OwnedFd>,
}

impl Master {
    /// Take over a master fd (as the runtime sent it over the console socket).
    pub fn new(fd: OwnedFd) -> io::Result<Master> {
        let flags = fcntl(&fd, FcntlArg::F_GETFL).map_err(io::Error::from)?;
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        fcntl(&fd, FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
        // SAFETY: an OwnedFd is a valid open fd that stays the same until the AsyncFd
        // owning it is dropped; nothing else can close it.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(Master { fd })
    }

    /// Read the terminal's output; 0 once every slave is closed (the kernel says EIO).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), buf).map_err(io::Error::from)) {
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Type `data` into the terminal.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(io::Error::from))
            {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Set the window size (the foreground process gets SIGWINCH).
    pub fn resize(&self, size: Size) -> io::Result<()> {
        runtime::terminal::set_size(self.fd.get_ref().as_fd(), size.height, size.width)
            .map_err(|e| io::Error::other(e.to_string()))
    }

    /// Type the terminal's end-of-file character, which a program reading a line
    /// at its start sees as the end of its input.
    pub async fn send_eof(&self) -> io::Result<()> {
        let eof = tcgetattr(self.fd.get_ref())
            .map(|t| t.control_chars[SpecialCharacterIndices::VEOF as usize])
            .unwrap_or(4);
        self.write_all(&[eof]).await
    }
}
