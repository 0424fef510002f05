//! `pause` and `resume`: freeze a container's processes in their cgroup, and thaw them.

use super::{Container, ContainerError, Status, Store};
use crate::cgroup::Cgroup;

/// Freeze every process of a created or running container; returns once they have all
/// stopped. `state` and `list` then show it `paused`.
pub fn pause(store: &Store, id: &str) -> Result<(), ContainerError> {
    let container = store.load(id)?;
    let status = container.status(store);
    if !status.can_pause() {
        return Err(ContainerError::State(format!(
            "cannot pause container {id}: it is {}, not running",
            status.as_str()
        )));
    }
    cgroup(&container)?.freeze()?;
    tracing::debug!(id, "paused");
    Ok(())
}

/// Thaw a paused container's processes.
pub fn resume(store: &Store, id: &str) -> Result<(), ContainerError> {
    let container = store.load(id)?;
    let status = container.status(store);
    if status != Status::Paused {
        return Err(ContainerError::State(format!(
            "cannot resume container {id}: it is {}, not paused",
            status.as_str()
        )));
    }
    cgroup(&container)?.thaw()?;
    tracing::debug!(id, "resumed");
    Ok(())
}

/// After a SIGKILL, thaw a paused container: on cgroup v1 a frozen process does not die
/// until it is thawed (runc does the same).
pub(super) fn thaw_after_kill(container: &Container, status: Status) -> Result<(), ContainerError> {
    if status != Status::Paused {
        return Ok(());
    }
    if let Some(cgroup) = &container.cgroup {
        cgroup.thaw()?;
    }
    Ok(())
}

fn cgroup(container: &Container) -> Result<&Cgroup, ContainerError> {
    container.cgroup.as_ref().ok_or_else(|| {
        ContainerError::State(format!(
            "container {} has no cgroup to freeze",
            container.id
        ))
    })
}
