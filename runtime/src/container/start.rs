//! `start`: release a created container's init into the user program.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};

use super::create::with_short_path;
use super::{ContainerError, Status, Store};
use crate::process::channel::StartReply;

/// Start a created container: connect to the socket its init waits on and wait until
/// the init has run the startContainer hooks and executed the program; then run the
/// poststart hooks. A failed startContainer hook destroys the container (runtime-spec
/// lifecycle step 7: stop it, continue at step 12), poststop hooks included.
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
    if container.spec.process().is_none() {
        return Err(ContainerError::State(format!(
            "cannot start container {id}: config.json has no process (optional at create, \
             required to start)"
        )));
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
    // The init's end is close-on-exec: end of file comes with its execve (or its exit).
    stream.read_to_end(&mut reply).map_err(ContainerError::io(
        "start: waiting for the container's init",
    ))?;
    // The socket file marks the created status: gone means started.
    let _ = std::fs::remove_file(&path);
    tracing::debug!(id, "init released");
    match StartReply::decode(&reply) {
        StartReply::Started => {}
        StartReply::Gone => {
            return Err(ContainerError::State(
                "container init exited before it could be started".into(),
            ))
        }
        StartReply::Failed(message) => return Err(ContainerError::Setup(message)),
        StartReply::HookFailed(message) => {
            if let Err(e) = super::delete::delete(store, id, true) {
                tracing::warn!("container {id}: destroying it after a failed hook: {e}");
            }
            return Err(ContainerError::Setup(message));
        }
    }
    // Warnings only: runtime-spec 1.2 (the version this runtime reports) lets the
    // lifecycle go on; 1.3 made a failure stop the container.
    if let Some(list) = container
        .spec
        .hooks()
        .as_ref()
        .and_then(|h| h.poststart().as_ref())
    {
        crate::hooks::run_warn("poststart", list, &container.state_json(Status::Running));
    }
    Ok(())
}
