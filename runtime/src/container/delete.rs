//! `delete`: remove a stopped container (or, with force, any container) and its cgroup.

use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::process::pidfd;

use super::{process_start_time, ContainerError, Status, Store, StoreError};

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
    if let Some(cgroup) = &container.cgroup {
        // Processes outside a pid namespace survive their init: end them too.
        if force {
            for pid in cgroup.pids().unwrap_or_default() {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        cgroup.remove()?;
    }
    if container.shares_host_mounts() {
        if let Err(e) = crate::rootfs::release_host_mounts(&container.rootfs) {
            tracing::warn!("container {id}: unmounting its mounts from the host: {e}");
        }
    }
    store.remove(id)?;
    if let Some(list) = container
        .spec
        .hooks()
        .as_ref()
        .and_then(|h| h.poststop().clone())
    {
        crate::hooks::run_warn("poststop", &list, &container.state_json(Status::Stopped));
    }
    Ok(())
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
