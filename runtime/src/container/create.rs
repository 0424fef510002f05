//! `create`: set the container up and leave its init blocked before the user program.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::sys::socket::{
    bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxNamespaceType;

use super::{check_id, process_start_time, write_pid_file, Container, ContainerError, Store};
use crate::bundle::Bundle;
use crate::cgroup::Cgroup;
use crate::namespace::Namespaces;
use crate::process::channel::{channel, ChildReport};
use crate::process::init::{container_init, InitConfig};
use crate::process::{clone_after_joining, clone_into, Forked};

/// The inputs of `create`.
pub struct CreateOptions<'a> {
    /// The new container's id.
    pub id: &'a str,
    /// The bundle directory.
    pub bundle: &'a Path,
    /// Where to write the init's host PID.
    pub pid_file: Option<&'a Path>,
    /// A connected console socket (for `process.terminal`).
    pub console: Option<OwnedFd>,
    /// MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// Extra fds passed to the program after stdio.
    pub preserve_fds: i32,
    /// Give the container a session keyring of its own (runc's default).
    pub new_keyring: bool,
}

/// A created container.
#[derive(Debug)]
pub struct Created {
    /// The init's host PID (a child of the caller).
    pub pid: Pid,
    /// The stored record.
    pub container: Container,
}

/// Create a container from a bundle. Nothing is left behind when it fails.
pub fn create(store: &Store, opts: CreateOptions) -> Result<Created, ContainerError> {
    check_id(opts.id).map_err(ContainerError::InvalidId)?;
    let bundle = Bundle::load(opts.bundle)?;
    store.reserve(opts.id)?;
    let mut undo = Undo {
        store,
        id: opts.id,
        cgroup: None,
        pid: None,
        hook_failed: false,
        armed: true,
    };
    let created = build(store, &bundle, opts, &mut undo)?;
    undo.armed = false;
    Ok(created)
}

/// Reverts a failed create: kills the init, and destroys what `delete` would (every
/// process left in the cgroup, the cgroup, mounts made on the host, the record). When a
/// prestart, createRuntime or createContainer hook failed, the lifecycle goes on to
/// the poststop hooks, as the runtime-spec's lifecycle (steps 3 to 5, then 12 and 13)
/// says.
struct Undo<'a> {
    store: &'a Store,
    id: &'a str,
    cgroup: Option<Cgroup>,
    pid: Option<Pid>,
    hook_failed: bool,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pid) = self.pid {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
        let cleaned = match self.store.load(self.id) {
            Ok(record) => super::delete::destroy(self.store, &record, self.hook_failed),
            // Failed before the record was written: only the cgroup may exist.
            Err(_) => {
                let removed = self.cgroup.as_ref().map_or(Ok(()), |c| c.remove());
                let _ = self.store.remove(self.id);
                removed.map_err(ContainerError::from)
            }
        };
        if let Err(e) = cleaned {
            tracing::warn!("cleaning up after a failed create: {e}");
        }
    }
}

fn build(
    store: &Store,
    bundle: &Bundle,
    opts: CreateOptions,
    undo: &mut Undo,
) -> Result<Created, ContainerError> {
    let spec = &bundle.spec;
    match spec.process() {
        Some(process) => crate::bundle::check_console(process, opts.console.is_some())
            .map_err(ContainerError::State)?,
        None if opts.console.is_some() => {
            return Err(ContainerError::State(
                "--console-socket given but config.json has no process".into(),
            ))
        }
        None => {}
    }
    let hooks = spec.hooks().clone().unwrap_or_default();
    crate::hooks::validate(&hooks)?;
    let linux = spec.linux().clone().unwrap_or_default();
    let namespaces = Namespaces::from_spec(linux.namespaces().as_deref().unwrap_or_default())?;
    crate::idmap::check(&linux, &namespaces)?;
    crate::process::sysctl::check(&linux, &namespaces).map_err(ContainerError::State)?;
    crate::process::personality::value(&linux).map_err(ContainerError::State)?;
    crate::cgroup::check_intel_rdt(&linux)?;
    let seccomp = crate::seccomp::compile_for(linux.seccomp().as_ref(), opts.id)?;
    let start = start_listener(&store.start_socket(opts.id))?;
    tracing::debug!(id = opts.id, "bundle loaded");
    let resources = crate::cgroup::with_device_nodes(
        linux.resources().as_ref(),
        linux.devices().as_deref().unwrap_or_default(),
    );
    let cgroup = Cgroup::create(linux.cgroups_path().as_deref(), opts.id, Some(&resources))?;
    tracing::debug!(id = opts.id, "cgroup created");
    undo.cgroup = Some(cgroup.clone());
    let mut container = Container {
        id: opts.id.to_string(),
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        pid: None,
        pid_start: None,
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        annotations: spec.annotations().clone().unwrap_or_default(),
        cgroup: Some(cgroup.clone()),
        spec: spec.clone(),
    };
    store.save(&container)?;

    let (parent, child) = channel()?;
    let runtime_ns = runtime_namespace(&namespaces, &hooks)?;
    namespaces.enter_for_children(&time_offsets(&linux))?;
    // The init joins its cgroup itself (see `cgroup::Entry`): it is there before it does
    // anything else, and no cgroup-wide lock is taken. An init cloned from inside joined
    // namespaces may not see the host's cgroup tree: the runtime moves that one.
    let before = namespaces.before_clone();
    let mut entry = Some(cgroup.entry()?).filter(|_| before.is_empty());
    let (forked, placed) = match &entry {
        Some(entry) => clone_into(namespaces.clone_flags(), entry.clone_target())?,
        None => (
            clone_after_joining(&before, namespaces.clone_flags())?,
            false,
        ),
    };
    let pid = match forked {
        Forked::Child => {
            drop(parent);
            if let Some(entry) = entry.as_mut().filter(|_| placed) {
                entry.placed_by_clone();
            }
            container_init(
                InitConfig {
                    container: &container,
                    spec,
                    rootfs: &bundle.rootfs,
                    namespaces: &namespaces,
                    no_pivot: opts.no_pivot,
                    console: opts.console,
                    start,
                    preserve_fds: opts.preserve_fds,
                    new_keyring: opts.new_keyring,
                    seccomp: seccomp.as_ref(),
                    cgroup: entry.as_ref(),
                },
                child,
            )
        }
        Forked::Parent(pid) => pid,
    };
    drop(child);
    drop(start);
    undo.pid = Some(pid);
    if let Some(saved) = runtime_ns {
        saved.restore()?;
    }
    tracing::debug!(id = opts.id, pid = pid.as_raw(), "cloned the init");
    if entry.is_none() {
        cgroup.add_process(pid.as_raw())?;
    }
    if namespaces.creates(LinuxNamespaceType::User) {
        crate::idmap::write(pid.as_raw(), &linux)?;
    }
    parent.go(pid.as_raw())?;
    container.pid = Some(pid.as_raw());
    loop {
        match parent.report()? {
            ChildReport::Ready => break,
            ChildReport::RunHooks => {
                if let Err(e) = run_creation_hooks(&container) {
                    undo.hook_failed = true;
                    return Err(e);
                }
                parent.go(pid.as_raw())?;
            }
            ChildReport::Failed(message) => return Err(ContainerError::Setup(message)),
            ChildReport::HookFailed(message) => {
                undo.hook_failed = true;
                return Err(ContainerError::Setup(message));
            }
            ChildReport::Closed => {
                return Err(ContainerError::Setup(
                    "container init exited during setup".into(),
                ))
            }
        }
    }
    tracing::debug!(id = opts.id, "init ready");
    container.pid_start = process_start_time(pid.as_raw());
    store.save(&container)?;
    if let Some(path) = opts.pid_file {
        write_pid_file(path, pid.as_raw())?;
    }
    Ok(Created { pid, container })
}

/// `linux.timeOffsets` as (clock, seconds, nanoseconds).
fn time_offsets(linux: &oci_spec::runtime::Linux) -> Vec<(String, i64, u32)> {
    linux
        .time_offsets()
        .iter()
        .flatten()
        .map(|(clock, o)| {
            (
                clock.clone(),
                o.secs().unwrap_or(0),
                o.nanosecs().unwrap_or(0),
            )
        })
        .collect()
}

/// prestart (deprecated, still honoured) and createRuntime, in the runtime's
/// namespaces, once the container's namespaces and mounts exist (runtime-spec ≥ 1.0.2
/// moved prestart from `start` to here, where runc runs it).
///
/// The status they read is `created`: the runtime environment exists (the state
/// definition's "after step 2"), the program has not run. runc says `creating` here;
/// crun and runtime-tools say `created`.
fn run_creation_hooks(container: &Container) -> Result<(), ContainerError> {
    let hooks = container.spec.hooks().clone().unwrap_or_default();
    let state = container.state_json(super::Status::Created);
    #[allow(deprecated)]
    if let Some(list) = hooks.prestart() {
        crate::hooks::run("prestart", list, &state)?;
    }
    if let Some(list) = hooks.create_runtime() {
        crate::hooks::run("createRuntime", list, &state)?;
    }
    Ok(())
}

/// Save the runtime's namespaces for children when `enter_for_children` is about to
/// change them and the runtime itself will run hooks afterwards.
fn runtime_namespace(
    namespaces: &Namespaces,
    hooks: &oci_spec::runtime::Hooks,
) -> Result<Option<crate::hooks::RuntimeNamespace>, ContainerError> {
    #[allow(deprecated)]
    let runtime_hooks = [
        hooks.prestart(),
        hooks.create_runtime(),
        hooks.poststart(),
        hooks.poststop(),
    ]
    .iter()
    .any(|l| l.as_ref().is_some_and(|l| !l.is_empty()));
    let pid =
        namespaces.has(LinuxNamespaceType::Pid) && !namespaces.creates(LinuxNamespaceType::Pid);
    let time = namespaces.has(LinuxNamespaceType::Time);
    if !runtime_hooks || !(pid || time) {
        return Ok(None);
    }
    Ok(Some(crate::hooks::RuntimeNamespace::save(pid, time)?))
}

/// The socket the init waits on: bound through the state directory's relative name so
/// long state roots do not hit the 108-byte limit of socket paths.
fn start_listener(path: &Path) -> Result<OwnedFd, ContainerError> {
    let err = |op: &str| ContainerError::io(format!("{op} {}", path.display()));
    let sock = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| err("socket")(e.into()))?;
    with_short_path(path, |short| {
        let addr = UnixAddr::new(short)?;
        bind(sock.as_raw_fd(), &addr)
    })
    .map_err(|e| err("bind")(e.into()))?;
    listen(&sock, Backlog::new(1).expect("valid backlog")).map_err(|e| err("listen")(e.into()))?;
    Ok(sock)
}

/// Run `f` with a path to `path` short enough for a socket address.
pub(super) fn with_short_path<T>(
    path: &Path,
    f: impl FnOnce(&Path) -> nix::Result<T>,
) -> nix::Result<T> {
    if path.as_os_str().len() < 100 {
        return f(path);
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let dirfd = nix::fcntl::open(
        dir,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let name = path.file_name().unwrap_or_default();
    let short = Path::new("/proc/self/fd")
        .join(dirfd.as_raw_fd().to_string())
        .join(name);
    f(&short)
}
