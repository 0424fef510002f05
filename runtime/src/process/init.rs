//! The child side: everything between `clone` and `execve`, for the container's init
//! (`create`) and for processes joining it (`exec`).
//!
//! Order follows runc: namespaces, session, root filesystem and pivot, console,
//! hostname and sysctls, masked and read-only paths, limits, then identity (bounding
//! set, user, capabilities, no_new_privs), and finally the wait for `start`.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use super::channel::{ChildEnd, StartReply};
use super::{limits, user};
use crate::capability::CapabilityPlan;
use crate::container::Status;
use crate::namespace::Namespaces;
use crate::seccomp::Filter;
use crate::terminal;

/// Why the child could not reach `execve`.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The sync channel failed.
    #[error(transparent)]
    Channel(#[from] super::channel::ChannelError),
    /// Joining or creating namespaces failed.
    #[error(transparent)]
    Namespace(#[from] crate::namespace::NamespaceError),
    /// A hook failed.
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    /// Root filesystem setup failed.
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
    /// The console could not be set up.
    #[error(transparent)]
    Terminal(#[from] crate::terminal::TerminalError),
    /// Limits could not be applied.
    #[error(transparent)]
    Limit(#[from] limits::LimitError),
    /// The identity could not be applied, or the program is missing.
    #[error(transparent)]
    User(#[from] user::UserError),
    /// Capabilities could not be applied.
    #[error(transparent)]
    Capability(#[from] crate::capability::CapabilityError),
    /// The seccomp filter could not be loaded.
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    /// The process could not join the container's cgroup.
    #[error(transparent)]
    Cgroup(#[from] crate::cgroup::CgroupError),
    /// A config field the runtime cannot honour.
    #[error("{0}")]
    Config(String),
    /// A system call failed.
    #[error("{op}: {errno}")]
    Sys {
        /// What was being done.
        op: String,
        /// What the kernel said.
        errno: nix::errno::Errno,
    },
}

fn sys(op: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> InitError {
    let op = op.into();
    move |errno| InitError::Sys { op, errno }
}

/// What the container's init needs, prepared by `create` before the clone.
pub struct InitConfig<'a> {
    /// The container's record (for the state hooks read).
    pub container: &'a crate::container::Container,
    /// The container's config.
    pub spec: &'a Spec,
    /// The root filesystem on the host.
    pub rootfs: &'a Path,
    /// The namespace plan (fds of namespaces to join are open in it).
    pub namespaces: &'a Namespaces,
    /// Use MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// Where to send the pty master, when `process.terminal` is set.
    pub console: Option<OwnedFd>,
    /// The listening socket `start` connects to.
    pub start: OwnedFd,
    /// Extra fds (after stdio) passed to the program.
    pub preserve_fds: i32,
    /// Join a new session keyring named after the container.
    pub new_keyring: bool,
    /// `linux.seccomp`, compiled by `create`.
    pub seccomp: Option<&'a Filter>,
    /// The container's cgroup, joined first thing.
    pub cgroup: Option<&'a crate::cgroup::Entry>,
}

/// What a process joining a container needs.
pub struct ExecConfig<'a> {
    /// The process to run.
    pub process: &'a Process,
    /// The container's namespaces, opened from its init.
    pub namespaces: &'a Namespaces,
    /// The rootfs to chroot into, for a container without a mount namespace.
    pub chroot: Option<&'a Path>,
    /// Where to send the pty master, when `process.terminal` is set.
    pub console: Option<OwnedFd>,
    /// Extra fds (after stdio) passed to the program.
    pub preserve_fds: i32,
    /// The container's `linux.seccomp`, compiled by `exec`: it confines every process
    /// of the container, not only its init.
    pub seccomp: Option<&'a Filter>,
    /// The container's cgroup, joined first thing.
    pub cgroup: Option<&'a crate::cgroup::Entry>,
}

/// Run the init side and exec; on failure tell the runtime why and exit 1.
pub fn container_init(cfg: InitConfig, chan: ChildEnd) -> ! {
    let err = match init(cfg, &chan) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    match err {
        InitError::Hook(_) => chan.hook_failed(&err.to_string()),
        _ => chan.failed(&err.to_string()),
    }
    super::child_exit(1)
}

/// Run the exec side; on failure tell the runtime why and exit 1.
pub fn exec_init(cfg: ExecConfig, chan: ChildEnd) -> ! {
    let err = match exec(cfg, &chan) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    chan.failed(&err.to_string());
    super::child_exit(1)
}

fn init(cfg: InitConfig, chan: &ChildEnd) -> Result<std::convert::Infallible, InitError> {
    if let Some(cgroup) = cfg.cgroup {
        cgroup.join_self()?;
    }
    chan.wait_go()?;
    let spec = cfg.spec;
    // Hooks run here are in the container's namespaces: the spec wants the pid they
    // see as the container's, not the host's.
    let mut record = cfg.container.clone();
    record.pid = Some(nix::unistd::getpid().as_raw());
    let state = |status| record.state_json(status);
    // A container may be created without a process; `start` refuses to start it.
    let process = spec.process().as_ref();
    let ns = cfg.namespaces;
    let mut rootfs = None;
    // With a user namespace, new or joined, the init starts inside it.
    if ns.has(LinuxNamespaceType::User) {
        // Still the host's uid 0 here: reach the rootfs now, while directories only the
        // host's root may enter can still be crossed (see `rootfs::attach`).
        if ns.creates(LinuxNamespaceType::Mount) {
            rootfs = Some(crate::rootfs::attach(spec, cfg.rootfs)?);
        }
        // The id maps are in place (a new namespace's written by the runtime): become
        // root of the namespace (uid and gid 0) before creating anything, as runc does.
        let root = (nix::unistd::Gid::from_raw(0), nix::unistd::Uid::from_raw(0));
        nix::unistd::setresgid(root.0, root.0, root.0)
            .map_err(sys("setresgid 0 in the user namespace"))?;
        nix::unistd::setresuid(root.1, root.1, root.1)
            .map_err(sys("setresuid 0 in the user namespace"))?;
    }
    ns.join_all()?;
    ns.unshare_cgroup()?;
    nix::unistd::setsid().map_err(sys("setsid"))?;
    if cfg.new_keyring {
        session_keyring(&record.id)?;
    }
    let rootfs = match rootfs {
        Some(attached) => attached,
        None => crate::rootfs::attach(spec, cfg.rootfs)?,
    };
    crate::rootfs::prepare(spec, &rootfs, ns.creates(LinuxNamespaceType::Cgroup))?;
    let hooks = spec.hooks().clone().unwrap_or_default();
    #[allow(deprecated)]
    if hooks.prestart().is_some() || hooks.create_runtime().is_some() {
        chan.run_hooks()?;
        chan.wait_go()?;
    }
    if let Some(list) = hooks.create_container() {
        crate::hooks::run("createContainer", list, &state(Status::Created))?;
    }
    if ns.has(LinuxNamespaceType::Mount) {
        crate::rootfs::pivot(&rootfs, cfg.no_pivot)?;
    } else {
        crate::rootfs::chroot(cfg.rootfs)?;
    }
    if let Some(process) = process.filter(|p| p.terminal() == Some(true)) {
        console(process, cfg.console.as_ref(), true)?;
    }
    names(spec, ns)?;
    sysctls(spec, ns)?;
    if let Some(linux) = spec.linux() {
        if let Some(persona) = super::personality::value(linux).map_err(InitError::Config)? {
            super::personality::apply(persona).map_err(InitError::Config)?;
        }
    }
    crate::rootfs::finalize(spec)?;
    let program = process
        .map(|p| prepare_process(p, cfg.seccomp))
        .transpose()?;
    chan.ready()?;
    let start_hooks = hooks.start_container().clone().unwrap_or_default();
    let (program, started) = wait_for_start(cfg.start, || {
        let program = program.ok_or_else(|| InitError::Config("process: not set".into()))?;
        crate::hooks::run("startContainer", &start_hooks, &state(Status::Created))?;
        load_late(&program)?;
        Ok(program)
    })?;
    close_extra_fds(cfg.preserve_fds);
    let err = match execute(program) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    // `start` has its confirmation and waits for the connection to close with execve.
    let _ = nix::unistd::write(&started, &StartReply::Failed(err.to_string()).encode());
    Err(err)
}

fn exec(cfg: ExecConfig, chan: &ChildEnd) -> Result<std::convert::Infallible, InitError> {
    if let Some(cgroup) = cfg.cgroup {
        cgroup.join_self()?;
    }
    chan.wait_go()?;
    cfg.namespaces.join_all()?;
    if let Some(rootfs) = cfg.chroot {
        crate::rootfs::chroot(rootfs)?;
    }
    let process = cfg.process;
    if process.terminal() == Some(true) {
        nix::unistd::setsid().map_err(sys("setsid"))?;
        console(process, cfg.console.as_ref(), false)?;
    }
    let program = prepare_process(process, cfg.seccomp)?;
    load_late(&program)?;
    close_extra_fds(cfg.preserve_fds);
    // Success is the channel closing on execve (it is close-on-exec).
    execute(program)
}

/// Open a pty in the container, hand the master to the caller, and make the slave
/// this process's terminal. For the init, /dev/console points at it too.
fn console(
    process: &Process,
    socket: Option<&OwnedFd>,
    mount_console: bool,
) -> Result<(), InitError> {
    let socket = socket.ok_or_else(|| {
        InitError::Config("process.terminal is true but no console socket was given".into())
    })?;
    let size = process
        .console_size()
        .map(|b| (b.height() as u16, b.width() as u16));
    let pty = terminal::open_pty(size)?;
    if mount_console {
        let console = Path::new("/dev/console");
        if !console.exists() {
            std::fs::File::create(console)
                .map_err(|e| InitError::Config(format!("create /dev/console: {e}")))?;
        }
        nix::mount::mount(
            Some(pty.path.as_str()),
            console,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys(format!("bind {} on /dev/console", pty.path)))?;
    }
    terminal::send_fd(socket.as_fd(), &pty.path, pty.master.as_fd())?;
    drop(pty.master);
    terminal::become_stdio(&pty.slave)?;
    Ok(())
}

/// Join a new session keyring `_ses.<id>`, so the container does not share the
/// caller's keys, and let its user search it (as runc does). Kernels without keyrings
/// (ENOSYS) or that refuse it (EPERM, e.g. in some user namespaces) are let be.
fn session_keyring(id: &str) -> Result<(), InitError> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    const KEYCTL_SETPERM: libc::c_long = 5;
    // Possessor: all; user: view, read, search, link (the mask runc sets).
    const PERM: libc::c_long = 0x3f1b_0000;
    let name = std::ffi::CString::new(format!("_ses.{id}"))
        .map_err(|_| InitError::Config(format!("container id {id:?} holds a NUL byte")))?;
    // SAFETY: keyctl with a valid NUL-terminated name; returns a key serial or -1.
    let serial =
        unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if serial < 0 {
        return match nix::errno::Errno::last() {
            nix::errno::Errno::ENOSYS | nix::errno::Errno::EPERM => Ok(()),
            errno => Err(InitError::Sys {
                op: "join a new session keyring".into(),
                errno,
            }),
        };
    }
    // SAFETY: keyctl on the serial the kernel just gave us, with a permission mask.
    if unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_SETPERM, serial, PERM) } < 0 {
        return Err(InitError::Sys {
            op: "set the session keyring's permissions".into(),
            errno: nix::errno::Errno::last(),
        });
    }
    Ok(())
}

/// Hostname and domainname: only with a UTS namespace of the container's own.
fn names(spec: &Spec, ns: &Namespaces) -> Result<(), InitError> {
    let uts = ns.has(LinuxNamespaceType::Uts);
    if let Some(hostname) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        if !uts {
            return Err(InitError::Config(
                "hostname: setting it needs a uts namespace in linux.namespaces".into(),
            ));
        }
        nix::unistd::sethostname(hostname).map_err(sys(format!("sethostname {hostname:?}")))?;
    }
    if let Some(domain) = spec.domainname().as_deref().filter(|h| !h.is_empty()) {
        if !uts {
            return Err(InitError::Config(
                "domainname: setting it needs a uts namespace in linux.namespaces".into(),
            ));
        }
        // SAFETY: the pointer and length describe the live `domain` string.
        let rc = unsafe { libc::setdomainname(domain.as_ptr().cast(), domain.len()) };
        if rc != 0 {
            return Err(InitError::Sys {
                op: format!("setdomainname {domain:?}"),
                errno: nix::errno::Errno::last(),
            });
        }
    }
    Ok(())
}

/// `linux.sysctl`, written through the container's /proc/sys. Only keys that belong to
/// a namespace the container has are accepted, as runc does: anything else would change
/// the host.
fn sysctls(spec: &Spec, ns: &Namespaces) -> Result<(), InitError> {
    let Some(sysctl) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    for (key, value) in sysctl {
        let path = super::sysctl::path_of(key, |kind| ns.has(kind)).map_err(InitError::Config)?;
        let path = PathBuf::from("/proc/sys").join(path);
        std::fs::write(&path, value)
            .map_err(|e| InitError::Config(format!("linux.sysctl {key}={value}: {e}")))?;
    }
    Ok(())
}

/// A program ready for `execve`.
struct Program<'a> {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// A seccomp filter still to load, as late as possible (with no_new_privs set).
    seccomp: Option<&'a Filter>,
}

/// Load the filter [`prepare_process`] left for last, so that as few of the runtime's
/// own syscalls as possible run under it (only closing fds, signals and `execve`).
fn load_late(program: &Program) -> Result<(), InitError> {
    if let Some(filter) = program.seccomp {
        filter.load()?;
    }
    Ok(())
}

/// Everything about the process itself: OOM score, rlimits, umask, cwd, identity,
/// capabilities, no_new_privs, and the executable's path. The seccomp filter is loaded
/// here when the process will not set no_new_privs (the kernel then demands
/// CAP_SYS_ADMIN, which only holds before capabilities are trimmed); otherwise it is
/// left in the returned program for [`load_late`].
fn prepare_process<'a>(
    process: &Process,
    seccomp: Option<&'a Filter>,
) -> Result<Program<'a>, InitError> {
    if let Some(score) = process.oom_score_adj() {
        limits::apply_oom_score_adj(score)?;
    }
    if let Some(rlimits) = process.rlimits() {
        limits::apply_rlimits(rlimits)?;
    }
    let u = process.user();
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
        u.umask().unwrap_or(0o022) as libc::mode_t,
    ));
    let cwd = process.cwd();
    // Try before dropping privileges, and again after for dirs only the user may enter.
    let cwd_early = nix::unistd::chdir(cwd.as_path()).is_ok();

    let no_new_privs = process.no_new_privileges() == Some(true);
    if let Some(filter) = seccomp.filter(|_| !no_new_privs) {
        filter.load()?;
    }
    let plan = CapabilityPlan::new(process.capabilities().as_ref());
    plan.drop_bounding()?;
    nix::sys::prctl::set_keepcaps(true).map_err(sys("PR_SET_KEEPCAPS"))?;
    user::switch(u)?;
    nix::sys::prctl::set_keepcaps(false).map_err(sys("PR_SET_KEEPCAPS"))?;
    plan.apply()?;
    if !cwd_early {
        nix::unistd::chdir(cwd.as_path()).map_err(sys(format!("chdir {}", cwd.display())))?;
    }
    if no_new_privs {
        nix::sys::prctl::set_no_new_privs().map_err(sys("PR_SET_NO_NEW_PRIVS"))?;
    }
    let env = process.env().clone().unwrap_or_default();
    let args = process.args().clone().unwrap_or_default();
    let path = user::find_executable(&args[0], &env)?;
    let cstr =
        |s: &str| CString::new(s).map_err(|_| InitError::Config(format!("NUL byte in {s:?}")));
    Ok(Program {
        path: cstr(&path.to_string_lossy())?,
        argv: args.iter().map(|a| cstr(a)).collect::<Result<_, _>>()?,
        envp: user::environment(&env, u.uid(), Path::new("/etc/passwd")),
        seccomp: seccomp.filter(|_| no_new_privs),
    })
}

/// Block in `accept` on the start socket until `start` connects, run `before_exec`
/// (the startContainer hooks), then confirm or send `start` the error. The connection
/// is returned open and close-on-exec: `start` reads until it closes, so it returns
/// (and runs the poststart hooks) only once `execve` has happened.
fn wait_for_start<T>(
    listener: OwnedFd,
    before_exec: impl FnOnce() -> Result<T, InitError>,
) -> Result<(T, OwnedFd), InitError> {
    let conn = loop {
        match nix::sys::socket::accept4(
            listener.as_raw_fd(),
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other.map_err(sys("wait for start: accept"))?,
        }
    };
    // SAFETY: accept4 returned a new fd that nothing else owns.
    let conn = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(conn) };
    let ready = match before_exec() {
        Ok(ready) => ready,
        Err(e) => {
            let reply = match e {
                InitError::Hook(_) => StartReply::HookFailed(e.to_string()),
                _ => StartReply::Failed(e.to_string()),
            };
            let _ = nix::unistd::write(&conn, &reply.encode());
            return Err(e);
        }
    };
    nix::unistd::write(&conn, &StartReply::Started.encode())
        .map_err(sys("wait for start: confirm"))?;
    Ok((ready, conn))
}

/// Mark every fd above stdio and the preserved ones close-on-exec, as runc does, so
/// the program sees only what it was given.
fn close_extra_fds(preserve: i32) {
    let first = 3 + preserve.max(0) as u32;
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only flags fds; it closes nothing now.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc != 0 {
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            let fds: Vec<i32> = dir
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter(|fd| *fd >= first as i32)
                .collect();
            for fd in fds {
                // SAFETY: setting FD_CLOEXEC on an fd number changes no memory.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
        }
    }
}

fn execute(p: Program) -> Result<std::convert::Infallible, InitError> {
    // Signals the runtime blocked or ignored must not leak into the program: Rust
    // ignores SIGPIPE, and an ignored signal stays ignored across execve.
    // SAFETY: restoring the default disposition installs no handler code.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
    let argv0 = p
        .argv
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    nix::unistd::execve(&p.path, &p.argv, &p.envp).map_err(sys(format!("exec {argv0:?}")))
}
