//! `delete`: remove a stopped container (or, with force, any container) and its cgroup.

use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::process::pidfd;

use super::{process_start_time, Container, ContainerError, Status, Store, StoreError};

/// Delete a container. A running one needs `force`, which kills everything in it
/// first; a created one is killed as runc does. With `force`, an unknown id (or a
/// record left by a crashed create) is not an error.
pub fn delete(store: &Store, id: &str, force: bool) -> Result<(), ContainerError> {
    let container = match store.load(id) {
        Ok(c) => c,
        Err(StoreError::NotFound(_)) | Err(StoreError::Corrupt { .. }) if force => {
            store.remove(id)?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let status = container.status(store);
    if !status.can_delete() && !force {
        return Err(ContainerError::State(format!(
            "cannot delete container {id} that is not stopped: {}",
            status.as_str()
        )));
    }
    if status != Status::Stopped {
        if let (Some(pid), Some(start)) = (container.pid, container.pid_start) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            super::pause::thaw_after_kill(&container, status)?;
            wait_gone(pid, start);
        }
    }
    tracing::debug!(id, "deleting");
    // Processes outside a pid namespace survive their init: with force, end them too.
    destroy_with(store, &container, force)?;
    run_poststop(&container);
    Ok(())
}

/// Undo what `create` made for a container whose init is gone: end every process
/// left in its cgroup, remove the cgroup, the mounts it made on the host and its
/// record; then, when `poststop`, run the poststop hooks. The lifecycle's steps 12
/// and 13, for a failed create or a failed startContainer hook.
pub(super) fn destroy(
    store: &Store,
    container: &Container,
    poststop: bool,
) -> Result<(), ContainerError> {
    // A cgroup the container joined holds others' processes: leave them be.
    let own_cgroup = container
        .cgroup
        .as_ref()
        .is_some_and(|c| c.placements().iter().all(|p| !p.created.is_empty()));
    destroy_with(store, container, own_cgroup)?;
    if poststop {
        run_poststop(container);
    }
    Ok(())
}

fn destroy_with(store: &Store, container: &Container, kill: bool) -> Result<(), ContainerError> {
    if let Some(cgroup) = &container.cgroup {
        if kill {
            for pid in cgroup.pids().unwrap_or_default() {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        cgroup.remove()?;
    }
    if container.shares_host_mounts() {
        if let Err(e) = crate::rootfs::release_host_mounts(&container.rootfs) {
            tracing::warn!(
                "container {}: unmounting its mounts from the host: {e}",
                container.id
            );
        }
    }
    store.remove(&container.id)?;
    Ok(())
}

/// The poststop hooks: every one runs, a failure is a warning (runtime-spec step 13).
fn run_poststop(container: &Container) {
    if let Some(list) = container
        .spec
        .hooks()
        .as_ref()
        .and_then(|h| h.poststop().as_ref())
    {
        crate::hooks::run_warn("poststop", list, &container.state_json(Status::Stopped));
    }
}

/// Wait (at most 10 s) until a killed process has exited. A pidfd becomes readable when
/// the process exits, child of ours or not; the start time check guards against the PID
/// having been reused before the pidfd was opened.
fn wait_gone(pid: i32, start: u64) {
    let Ok(fd) = pidfd::open(pid) else {
        return;
    };
    if process_start_time(pid) == Some(start) {
        pidfd::exits_within(&fd, Duration::from_secs(10));
    }
}
