//! The one socketpair between the runtime and a process it spawns: typed, message-framed
//! (SOCK_SEQPACKET), each end only able to say what its side may say; and the reply a
//! created container's init gives `start` on its start socket ([`StartReply`]).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use serde::{Deserialize, Serialize};

/// What the runtime tells the child.
#[derive(Debug, Serialize, Deserialize)]
enum ToChild {
    /// Carry on: the cgroup and id mappings are in place, or the runtime's hooks ran.
    /// Carries the child's host PID, which it cannot see from inside a pid namespace.
    Go(i32),
}

/// What the child tells the runtime.
#[derive(Debug, Serialize, Deserialize)]
enum ToParent {
    /// Set up and waiting for `start`.
    Ready,
    /// Mounts are done: run the prestart and createRuntime hooks, then say go.
    RunHooks,
    /// Setup failed; the message says where.
    Failed(String),
    /// A createContainer hook failed: the runtime also runs the poststop hooks.
    HookFailed(String),
}

/// Why the channel failed.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The socket call failed.
    #[error("sync socket: {0}")]
    Io(#[from] std::io::Error),
    /// The other side sent something that is not a message.
    #[error("sync socket: unexpected message: {0}")]
    Protocol(String),
}

fn pair() -> Result<(OwnedFd, OwnedFd), ChannelError> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    Ok((a, b))
}

fn send<T: Serialize>(fd: &OwnedFd, msg: &T) -> Result<(), ChannelError> {
    let bytes = serde_json::to_vec(msg).map_err(|e| ChannelError::Protocol(e.to_string()))?;
    nix::unistd::write(fd, &bytes).map_err(std::io::Error::from)?;
    Ok(())
}

/// Read one message; `None` when the other side closed its end.
fn recv<T: for<'de> Deserialize<'de>>(fd: &OwnedFd) -> Result<Option<T>, ChannelError> {
    let mut buf = vec![0u8; 64 * 1024];
    let n = loop {
        match nix::unistd::read(fd.as_fd(), &mut buf) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other.map_err(std::io::Error::from)?,
        }
    };
    if n == 0 {
        return Ok(None);
    }
    serde_json::from_slice(&buf[..n])
        .map(Some)
        .map_err(|e| ChannelError::Protocol(e.to_string()))
}

/// Create the channel; call before cloning, then keep one end on each side.
pub fn channel() -> Result<(ParentEnd, ChildEnd), ChannelError> {
    let (a, b) = pair()?;
    Ok((ParentEnd(a), ChildEnd(b)))
}

/// The runtime's end.
#[derive(Debug)]
pub struct ParentEnd(OwnedFd);

/// How the child's setup ended, as seen from the runtime.
#[derive(Debug)]
pub enum ChildReport {
    /// Waiting for `start`.
    Ready,
    /// Asks the runtime to run its creation hooks.
    RunHooks,
    /// The child ran `execve` (its end closed without a message) or died.
    Closed,
    /// Setup failed with this message.
    Failed(String),
    /// A hook failed with this message.
    HookFailed(String),
}

impl ParentEnd {
    /// Let the child proceed; `pid` is its host PID.
    pub fn go(&self, pid: i32) -> Result<(), ChannelError> {
        send(&self.0, &ToChild::Go(pid))
    }

    /// Wait for the child's verdict.
    pub fn report(&self) -> Result<ChildReport, ChannelError> {
        Ok(match recv(&self.0)? {
            None => ChildReport::Closed,
            Some(ToParent::Ready) => ChildReport::Ready,
            Some(ToParent::RunHooks) => ChildReport::RunHooks,
            Some(ToParent::Failed(m)) => ChildReport::Failed(m),
            Some(ToParent::HookFailed(m)) => ChildReport::HookFailed(m),
        })
    }
}

/// The child's end.
#[derive(Debug)]
pub struct ChildEnd(OwnedFd);

impl ChildEnd {
    /// Block until the runtime says go; returns our host PID.
    pub fn wait_go(&self) -> Result<i32, ChannelError> {
        match recv(&self.0)? {
            Some(ToChild::Go(pid)) => Ok(pid),
            None => Err(ChannelError::Protocol("runtime went away".into())),
        }
    }

    /// Tell the runtime setup is done.
    pub fn ready(&self) -> Result<(), ChannelError> {
        send(&self.0, &ToParent::Ready)
    }

    /// Ask the runtime to run its creation hooks (it answers go).
    pub fn run_hooks(&self) -> Result<(), ChannelError> {
        send(&self.0, &ToParent::RunHooks)
    }

    /// Tell the runtime setup failed.
    pub fn failed(&self, message: &str) {
        // Best effort: the child exits right after, and the parent sees EOF if this fails.
        let _ = send(&self.0, &ToParent::Failed(message.to_string()));
    }

    /// Tell the runtime a hook failed.
    pub fn hook_failed(&self, message: &str) {
        // Best effort, as in `failed`.
        let _ = send(&self.0, &ToParent::HookFailed(message.to_string()));
    }

    /// The raw fd, so the child can keep it out of the fds it closes.
    pub fn raw(&self) -> i32 {
        self.0.as_raw_fd()
    }
}

/// What a created container's init tells `start` over the start socket. The init
/// confirms before its `execve` and keeps the connection open (close-on-exec) through
/// it, so `start` reads to end of file and knows the program runs: only then may the
/// poststart hooks run. A tag byte leads each message.
#[derive(Debug, PartialEq, Eq)]
pub enum StartReply {
    /// The init confirmed and then its connection closed: `execve` happened.
    Started,
    /// A startContainer hook failed: the container is to be destroyed.
    HookFailed(String),
    /// Something else failed before `execve` (or `execve` itself, after confirming).
    Failed(String),
    /// The init went away without a word.
    Gone,
}

impl StartReply {
    const STARTED: u8 = b'0';
    const HOOK_FAILED: u8 = b'H';
    const FAILED: u8 = b'E';

    /// The bytes the init writes for this reply; [`StartReply::Gone`] writes none.
    pub fn encode(&self) -> Vec<u8> {
        let (tag, message) = match self {
            StartReply::Started => (Self::STARTED, ""),
            StartReply::HookFailed(m) => (Self::HOOK_FAILED, m.as_str()),
            StartReply::Failed(m) => (Self::FAILED, m.as_str()),
            StartReply::Gone => return Vec::new(),
        };
        let mut bytes = vec![tag];
        bytes.extend_from_slice(message.as_bytes());
        bytes
    }

    /// Read what `start` received up to end of file; an `execve` failure after the
    /// confirmation follows it.
    pub fn decode(bytes: &[u8]) -> StartReply {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match bytes {
            [] => StartReply::Gone,
            [Self::STARTED] => StartReply::Started,
            [Self::STARTED, rest @ ..] => Self::decode(rest),
            [Self::HOOK_FAILED, rest @ ..] => StartReply::HookFailed(text(rest)),
            [Self::FAILED, rest @ ..] => StartReply::Failed(text(rest)),
            other => StartReply::Failed(text(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_and_eof_means_closed() {
        let (parent, child) = channel().unwrap();
        parent.go(42).unwrap();
        assert_eq!(child.wait_go().unwrap(), 42);
        child.ready().unwrap();
        assert!(matches!(parent.report().unwrap(), ChildReport::Ready));
        child.failed("mount /proc: EPERM");
        match parent.report().unwrap() {
            ChildReport::Failed(m) => assert_eq!(m, "mount /proc: EPERM"),
            other => panic!("{other:?}"),
        }
        child.hook_failed("createContainer hook #0 /x: exit status 1");
        assert!(matches!(parent.report().unwrap(), ChildReport::HookFailed(m) if m.contains("#0")));
        drop(child);
        assert!(matches!(parent.report().unwrap(), ChildReport::Closed));
    }

    #[test]
    fn start_replies_round_trip() {
        for reply in [
            StartReply::Started,
            StartReply::HookFailed("startContainer hook #0 /bin/false: exit status 1".into()),
            StartReply::Failed("seccomp: EINVAL".into()),
            StartReply::Gone,
        ] {
            assert_eq!(StartReply::decode(&reply.encode()), reply);
        }
        // Confirmed, then execve failed.
        let mut bytes = StartReply::Started.encode();
        bytes.extend(StartReply::Failed("exec \"nope\": ENOENT".into()).encode());
        assert_eq!(
            StartReply::decode(&bytes),
            StartReply::Failed("exec \"nope\": ENOENT".into())
        );
    }
}
