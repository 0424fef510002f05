//! Network namespaces: opening one by path and getting a netlink socket that lives inside it.
//!
//! `setns(2)` changes the namespace of the calling OS *thread* only. Rather
//! than moving the plugin's own thread (which a runtime could later reuse for
//! unrelated work), [`route_socket_in`] spawns a short-lived thread, enters the
//! namespace there, opens an `AF_NETLINK` socket and hands its descriptor back.
//! A socket stays bound to the namespace it was created in after the thread
//! leaves, so every later netlink request on it acts inside the namespace,
//! from whichever thread (or async task) sends it.

use nix::sched::{setns, CloneFlags};
use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Errors from opening or entering a network namespace.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The namespace path does not exist (for DEL this means "already gone").
    #[error("network namespace {0} does not exist")]
    NotFound(PathBuf),
    /// The namespace file could not be opened.
    #[error("failed to open network namespace {path}: {source}")]
    Open {
        /// The namespace path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// `setns` or the socket call inside the namespace failed.
    #[error("failed to open a netlink socket in {path}: {source}")]
    Socket {
        /// The namespace path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// An open handle on a network namespace (keeps it alive while held).
#[derive(Debug)]
pub struct NetNs {
    path: PathBuf,
    file: File,
}

impl NetNs {
    /// Opens the namespace at `path` (e.g. `/run/netns/x` or `/proc/<pid>/ns/net`).
    pub fn open(path: &Path) -> Result<NetNs, Error> {
        let file = File::open(path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => Error::NotFound(path.to_path_buf()),
            _ => Error::Open {
                path: path.to_path_buf(),
                source,
            },
        })?;
        Ok(NetNs {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The path the namespace was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The namespace file, e.g. for `IFLA_NET_NS_FD` when moving a link into it.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// A blocking `NETLINK_ROUTE` socket created inside this namespace (see the module doc).
    pub fn route_socket(&self) -> Result<OwnedFd, Error> {
        let file = self.file.try_clone().map_err(|source| Error::Open {
            path: self.path.clone(),
            source,
        })?;
        let socket = std::thread::scope(|s| {
            s.spawn(move || -> io::Result<OwnedFd> {
                // This thread exists only to be moved; it ends right after.
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                // SAFETY: socket(2) has no memory-safety preconditions; the result is checked.
                let fd = unsafe {
                    libc::socket(
                        libc::AF_NETLINK,
                        libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                        libc::NETLINK_ROUTE,
                    )
                };
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
                Ok(unsafe { OwnedFd::from_raw_fd(fd) })
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("netns thread panicked")))
        });
        socket.map_err(|source| Error::Socket {
            path: self.path.clone(),
            source,
        })
    }
}
