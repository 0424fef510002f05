//! `exec`: run another process inside a container's namespaces and cgroup.

use std::os::fd::OwnedFd;
use std::path::Path;

use nix::unistd::Pid;
use oci_spec::runtime::Process;

use super::{write_pid_file, ContainerError, Store};
use crate::namespace::{self, Namespaces};
use crate::process::channel::{channel, ChildReport};
use crate::process::init::{exec_init, ExecConfig};
use crate::process::{clone_into, Forked};

/// The inputs of `exec`.
pub struct ExecOptions<'a> {
    /// The container.
    pub id: &'a str,
    /// The process to run (from `--process` or built from the CLI's arguments).
    pub process: Process,
    /// A connected console socket (for `process.terminal`).
    pub console: Option<OwnedFd>,
    /// Where to write the new process's host PID.
    pub pid_file: Option<&'a Path>,
    /// Extra fds passed to the program after stdio.
    pub preserve_fds: i32,
}

/// A process started in a container.
#[derive(Debug)]
pub struct Spawned {
    /// Its host PID (a child of the caller).
    pub pid: Pid,
}

/// Start a process in a created or running container; returns once it has exec'd.
pub fn exec(store: &Store, opts: ExecOptions) -> Result<Spawned, ContainerError> {
    let container = store.load(opts.id)?;
    let status = container.status(store);
    // A process joining a frozen cgroup would freeze before it could exec.
    let can_exec = status.can_kill() && status != super::Status::Paused;
    let Some(pid) = container.pid.filter(|_| can_exec) else {
        return Err(ContainerError::State(format!(
            "cannot exec in a {} container",
            status.as_str()
        )));
    };
    if let Err((field, expected)) = crate::bundle::check_process(&opts.process) {
        return Err(ContainerError::State(format!(
            "exec: {field}: expected {expected}"
        )));
    }
    crate::bundle::check_console(&opts.process, opts.console.is_some())
        .map_err(ContainerError::State)?;
    let seccomp = crate::seccomp::compile_for(
        container
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().as_ref()),
        opts.id,
    )?;
    let namespaces = Namespaces::joining(namespace::of_process(pid)?);
    let (parent, child) = channel()?;
    namespaces.enter_for_children(&[])?;
    // Like the init, the process joins the container's cgroup itself (see `cgroup::Entry`).
    let mut entry = container.cgroup.as_ref().map(|c| c.entry()).transpose()?;
    let target = entry.as_ref().and_then(|e| e.clone_target());
    let (forked, placed) = clone_into(nix::sched::CloneFlags::empty(), target)?;
    let child_pid = match forked {
        Forked::Child => {
            drop(parent);
            if let Some(entry) = entry.as_mut().filter(|_| placed) {
                entry.placed_by_clone();
            }
            exec_init(
                ExecConfig {
                    process: &opts.process,
                    namespaces: &namespaces,
                    chroot: container
                        .shares_host_mounts()
                        .then_some(container.rootfs.as_path()),
                    console: opts.console,
                    preserve_fds: opts.preserve_fds,
                    seccomp: seccomp.as_ref(),
                    cgroup: entry.as_ref(),
                },
                child,
            )
        }
        Forked::Parent(pid) => pid,
    };
    drop(child);
    let fail = |e: ContainerError| {
        let _ = nix::sys::signal::kill(child_pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(child_pid, None);
        e
    };
    parent.go(child_pid.as_raw()).map_err(|e| fail(e.into()))?;
    match parent.report().map_err(|e| fail(e.into()))? {
        ChildReport::Closed => {}
        ChildReport::Failed(message) | ChildReport::HookFailed(message) => {
            let _ = nix::sys::wait::waitpid(child_pid, None);
            return Err(ContainerError::Setup(message));
        }
        ChildReport::Ready | ChildReport::RunHooks => {
            return Err(fail(ContainerError::Setup(
                "exec: unexpected message from the child".into(),
            )))
        }
    }
    if let Some(path) = opts.pid_file {
        write_pid_file(path, child_pid.as_raw())?;
    }
    Ok(Spawned { pid: child_pid })
}
