//! `delete`: remove a stopped container (or, with force, any container) and its cgroup.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

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
            wait_gone(pid, start);
        }
    }
    if let Some(cgroup) = &container.cgroup {
        // Processes outside a pid namespace survive their init: end them too.
        if force {
            for pid in cgroup.pids().unwrap_or_default() {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        cgroup.remove()?;
    }
    store.remove(id)?;
    Ok(())
}

/// Wait (bounded) until a killed process is gone or a zombie.
fn wait_gone(pid: i32, start: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pause = Duration::from_micros(200);
    while process_start_time(pid) == Some(start) && Instant::now() < deadline {
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}
