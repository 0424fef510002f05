//! `start`: release a created container's init into the user program.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};

use super::create::with_short_path;
use super::{ContainerError, Status, Store};

/// Start a created container: connect to the socket its init waits on and wait for
/// the init to confirm it is about to `execve`.
pub fn start(store: &Store, id: &str) -> Result<(), ContainerError> {
    let container = store.load(id)?;
    let status = container.status(store);
    if !status.can_start() {
        return Err(ContainerError::State(match status {
            Status::Stopped => "cannot start a container that has stopped".to_string(),
            Status::Running => "cannot start an already running container".to_string(),
            other => format!("cannot start a container in the {} state", other.as_str()),
        }));
    }
    let path = store.start_socket(id);
    let sock: OwnedFd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| ContainerError::io("start: socket")(e.into()))?;
    with_short_path(&path, |short| {
        let addr = UnixAddr::new(short)?;
        connect(std::os::fd::AsRawFd::as_raw_fd(&sock), &addr)
    })
    .map_err(|e| ContainerError::io(format!("start: connect {}", path.display()))(e.into()))?;
    let mut stream = UnixStream::from(sock);
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).map_err(ContainerError::io(
        "start: waiting for the container's init",
    ))?;
    // The socket file marks the created status: gone means started.
    let _ = std::fs::remove_file(&path);
    tracing::debug!(id, "init released");
    match reply.as_slice() {
        b"0" => {}
        [] => {
            return Err(ContainerError::State(
                "container init exited before it could be started".into(),
            ))
        }
        message => {
            return Err(ContainerError::Setup(
                String::from_utf8_lossy(message).into_owned(),
            ))
        }
    }
    if let Some(list) = container
        .spec
        .hooks()
        .as_ref()
        .and_then(|h| h.poststart().clone())
    {
        crate::hooks::run_warn("poststart", &list, &container.state_json(Status::Running));
    }
    Ok(())
}
