//! Dialing from inside a pod's network namespace: one long-lived thread per namespace
//! makes the sockets, tokio connects them.
//!
//! `setns` changes only the calling thread, and entering a namespace on a tokio worker
//! would move every task on that thread into the pod. So a dedicated std thread enters
//! the namespace once and answers socket requests for as long as a [`Dialer`] for that
//! namespace lives. A socket keeps the namespace it was created in, so only `socket(2)`
//! happens on that thread: the connect runs on tokio, with its timeout, and a slow peer
//! never holds up another dial into the same pod. No thread is spawned per connection,
//! which matters with many pods probing every second.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::time::Duration;

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;

/// A request to the namespace's thread: make a TCP socket of this family.
struct Request {
    family: AddressFamily,
    reply: oneshot::Sender<io::Result<OwnedFd>>,
}

/// The handle shared by every [`Dialer`] of one namespace; the thread ends when the
/// last one drops (its channel closes).
struct Inner {
    netns: PathBuf,
    requests: Mutex<mpsc::Sender<Request>>,
}

/// A namespace as pinned now: its pin's path and the namespace's identity (device and
/// inode), so a pod recreated at the same path never gets the old namespace's thread.
type Key = (PathBuf, u64, u64);

/// Live dialers by namespace, so probes and port-forwards into one pod share a thread.
static DIALERS: Mutex<Option<HashMap<Key, Weak<Inner>>>> = Mutex::new(None);

/// Connects TCP sockets from inside one network namespace (the pinned netns of a pod).
/// Cheap to clone; the namespace's thread lives as long as any clone.
#[derive(Clone)]
pub struct Dialer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("netns", &self.inner.netns)
            .finish()
    }
}

impl Dialer {
    /// The dialer for the network namespace pinned at `netns`: the live one if there is
    /// one, else a new thread that enters it (an error if the namespace cannot be
    /// opened or entered).
    pub async fn for_netns(netns: &Path) -> io::Result<Dialer> {
        let pinned = std::fs::metadata(netns).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("network namespace {}: {e}", netns.display()),
            )
        })?;
        let key = (netns.to_path_buf(), pinned.dev(), pinned.ino());
        if let Some(inner) = live(&key) {
            return Ok(Dialer { inner });
        }
        let (entered_tx, entered) = oneshot::channel();
        let (requests, incoming) = mpsc::channel::<Request>();
        let path = netns.to_path_buf();
        std::thread::Builder::new()
            .name("peapod-netns".into())
            .spawn(move || serve(&path, entered_tx, incoming))?;
        entered
            .await
            .map_err(|_| io::Error::other("the namespace thread ended without an answer"))?
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("entering network namespace {}: {e}", netns.display()),
                )
            })?;
        let inner = Arc::new(Inner {
            netns: netns.to_path_buf(),
            requests: Mutex::new(requests),
        });
        // Two callers may race to make the first dialer; both threads work, the later
        // one is the one the map keeps.
        let mut dialers = DIALERS.lock().unwrap_or_else(|e| e.into_inner());
        let map = dialers.get_or_insert_with(HashMap::new);
        map.retain(|_, weak| weak.strong_count() > 0);
        map.insert(key, Arc::downgrade(&inner));
        Ok(Dialer { inner })
    }

    /// The namespace this dialer connects from.
    pub fn netns(&self) -> &Path {
        &self.inner.netns
    }

    /// Connect to `address` from inside the namespace, giving up after `timeout`.
    pub async fn connect(&self, address: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        let family = match address {
            SocketAddr::V4(_) => AddressFamily::Inet,
            SocketAddr::V6(_) => AddressFamily::Inet6,
        };
        let (reply, answer) = oneshot::channel();
        self.inner
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(Request { family, reply })
            .map_err(|_| io::Error::other("the namespace thread is gone"))?;
        let fd = answer
            .await
            .map_err(|_| io::Error::other("the namespace thread ended without an answer"))??;
        let socket = TcpSocket::from_std_stream(StdTcpStream::from(fd));
        match tokio::time::timeout(timeout, socket.connect(address)).await {
            Ok(connected) => connected,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connecting to {address}: timed out after {timeout:?}"),
            )),
        }
    }
}

/// The live dialer of a namespace, if any.
fn live(key: &Key) -> Option<Arc<Inner>> {
    let dialers = DIALERS.lock().unwrap_or_else(|e| e.into_inner());
    dialers.as_ref()?.get(key)?.upgrade()
}

/// The namespace thread: enter `netns`, say so, then make sockets until every sender
/// is gone.
fn serve(
    netns: &Path,
    entered: oneshot::Sender<io::Result<()>>,
    requests: mpsc::Receiver<Request>,
) {
    let joined = std::fs::File::open(netns).and_then(|file| {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
    });
    let ok = joined.is_ok();
    if entered.send(joined).is_err() || !ok {
        return;
    }
    for request in requests {
        let made = socket(
            request.family,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(io::Error::from);
        // The asker may have given up; its socket just closes.
        let _ = request.reply.send(made);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_namespace_is_an_error_naming_it() {
        let err = Dialer::for_netns(Path::new("/nonexistent/netns"))
            .await
            .expect_err("no such namespace");
        assert!(err.to_string().contains("/nonexistent/netns"), "{err}");
    }
}
