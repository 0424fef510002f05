//! `peapod-runtime`: an OCI runtime with runc's command line, so containerd and other
//! callers of runc can use it as a drop-in.

mod foreground;
mod log;

/// `println!` that treats a closed stdout (e.g. `state ID | grep -q running`) as the
/// end of the output instead of a panic.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use oci_spec::runtime::Process;
use runtime::container::{self, CreateOptions, ExecOptions, Status, Store};

#[derive(Parser)]
#[command(
    name = "peapod-runtime",
    version,
    about = "Run OCI containers (runc-compatible)"
)]
struct Cli {
    /// Directory holding the containers' state.
    #[arg(long, global = true, default_value = container::DEFAULT_ROOT)]
    root: PathBuf,
    /// Write log lines to this file instead of stderr.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log line format: text or json.
    #[arg(long, global = true, default_value = "text")]
    log_format: String,
    /// Log debug messages too.
    #[arg(long, global = true)]
    debug: bool,
    /// Use the systemd cgroup driver (not supported: peapod manages cgroupfs directly).
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// Accepted for compatibility with runc's flag; rootless mode is detected.
    #[arg(long, global = true)]
    rootless: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct CreateArgs {
    /// The container id.
    id: String,
    /// The bundle directory.
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Write the init's PID to this file.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master when process.terminal is set.
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root (for a rootfs on ramfs).
    #[arg(long)]
    no_pivot: bool,
    /// Keep the caller's session keyring instead of giving the container its own.
    #[arg(long)]
    no_new_keyring: bool,
    /// Pass this many extra fds (after stdio) to the program.
    #[arg(long, default_value_t = 0)]
    preserve_fds: i32,
}

#[derive(Subcommand)]
enum Command {
    /// Create a container, leaving it waiting for `start`.
    Create(CreateArgs),
    /// Start the user program of a created container.
    Start {
        /// The container id.
        id: String,
    },
    /// Print the container's OCI state as JSON.
    State {
        /// The container id.
        id: String,
    },
    /// Send a signal (name or number, default SIGTERM) to the container.
    Kill {
        /// Signal every process in the container, not only its init.
        #[arg(short, long)]
        all: bool,
        /// The container id.
        id: String,
        /// The signal.
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container and its resources.
    Delete {
        /// Kill a running container first.
        #[arg(short, long)]
        force: bool,
        /// The container id.
        id: String,
    },
    /// Create and start a container; in the foreground, wait for it and delete it.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once the container has started.
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it exits.
        #[arg(long)]
        keep: bool,
    },
    /// Run a new process inside a container.
    Exec(ExecArgs),
    /// List the processes in a container.
    Ps {
        /// table or json (a list of PIDs).
        #[arg(short, long, default_value = "table")]
        format: String,
        /// The container id.
        id: String,
        /// Options for ps(1) in table mode.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// List containers.
    #[command(alias = "ls")]
    List {
        /// table or json.
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Print only the ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Write an example config.json.
    Spec {
        /// The bundle directory to write it in.
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
    /// Print the features document of the runtime-spec.
    Features,
    /// Change the resource limits of a created, running or paused container.
    Update(UpdateArgs),
    /// Suspend every process in a container (cgroup freezer).
    Pause {
        /// The container id.
        id: String,
    },
    /// Resume the processes of a paused container.
    Resume {
        /// The container id.
        id: String,
    },
    /// Print a container's resource statistics and OOM kills as JSON lines.
    Events {
        /// Print the statistics once, then exit.
        #[arg(long)]
        stats: bool,
        /// How often to print statistics (e.g. 5s, 500ms, 1m).
        #[arg(long, default_value = "5s", value_parser = container::parse_duration)]
        interval: std::time::Duration,
        /// The container id.
        id: String,
    },
    /// Checkpoint a container (not supported: peapod-runtime has no CRIU).
    Checkpoint {
        /// runc's options and the container id (refused as a whole).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Restore a checkpointed container (not supported: peapod-runtime has no CRIU).
    Restore {
        /// runc's options and the container id (refused as a whole).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// `update`'s flags, with runc's names. Negative values (-1: unlimited) are accepted.
#[derive(clap::Args)]
struct UpdateArgs {
    /// The container id.
    id: String,
    /// A JSON linux.resources file (fields left out are kept), or - for stdin.
    #[arg(short, long)]
    resources: Option<PathBuf>,
    /// Memory limit in bytes (sizes such as 64m are accepted; -1: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    memory: Option<String>,
    /// Memory soft limit in bytes.
    #[arg(long, allow_hyphen_values = true)]
    memory_reservation: Option<String>,
    /// Memory plus swap in bytes (-1: unlimited swap).
    #[arg(long, allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Obsolete; ignored with a warning.
    #[arg(long, hide = true, allow_hyphen_values = true)]
    kernel_memory: Option<String>,
    /// Obsolete; ignored with a warning.
    #[arg(long, hide = true, allow_hyphen_values = true)]
    kernel_memory_tcp: Option<String>,
    /// CPU shares (relative weight).
    #[arg(long = "cpu-share", alias = "cpu-shares")]
    cpu_share: Option<u64>,
    /// CFS period in microseconds.
    #[arg(long)]
    cpu_period: Option<u64>,
    /// CFS quota in microseconds per period (-1: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    cpu_quota: Option<i64>,
    /// CFS burst in microseconds.
    #[arg(long)]
    cpu_burst: Option<u64>,
    /// 1: run the container's tasks as SCHED_IDLE.
    #[arg(long)]
    cpu_idle: Option<i64>,
    /// Realtime period in microseconds.
    #[arg(long)]
    cpu_rt_period: Option<u64>,
    /// Realtime runtime in microseconds per period.
    #[arg(long, allow_hyphen_values = true)]
    cpu_rt_runtime: Option<i64>,
    /// CPUs to run on, e.g. 0-3,7.
    #[arg(long)]
    cpuset_cpus: Option<String>,
    /// Memory nodes to use.
    #[arg(long)]
    cpuset_mems: Option<String>,
    /// Maximum number of processes (-1: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Block I/O weight, 10 to 1000.
    #[arg(long)]
    blkio_weight: Option<u16>,
    /// Intel RDT L3 cache schema (not supported).
    #[arg(long)]
    l3_cache_schema: Option<String>,
    /// Intel RDT memory bandwidth schema (not supported).
    #[arg(long)]
    mem_bw_schema: Option<String>,
}

#[derive(clap::Args)]
struct ExecArgs {
    /// The container id.
    id: String,
    /// A process.json describing the process (instead of the trailing command).
    #[arg(short, long)]
    process: Option<PathBuf>,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    tty: bool,
    /// Return once the process has started.
    #[arg(short, long)]
    detach: bool,
    /// Write the process's PID to this file.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master.
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Working directory inside the container.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Extra environment variables (KEY=VALUE).
    #[arg(short, long)]
    env: Vec<String>,
    /// `uid[:gid]` to run as.
    #[arg(short, long)]
    user: Option<String>,
    /// Extra group ids.
    #[arg(short = 'g', long)]
    additional_gids: Vec<u32>,
    /// Set no_new_privs for the process.
    #[arg(long)]
    no_new_privs: bool,
    /// Add a capability (e.g. CAP_KILL).
    #[arg(short, long)]
    cap: Vec<String>,
    /// Pass this many extra fds (after stdio) to the program.
    #[arg(long, default_value_t = 0)]
    preserve_fds: i32,
    /// Accepted for runc compatibility (SELinux is not supported).
    #[arg(long)]
    process_label: Option<String>,
    /// Accepted for runc compatibility (AppArmor is not supported).
    #[arg(long)]
    apparmor: Option<String>,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = log::init(cli.log.as_deref(), &cli.log_format, cli.debug) {
        eprintln!("peapod-runtime: {e:#}");
        std::process::exit(1);
    }
    let logs_to_file = cli.log.is_some();
    match dispatch(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let message = format!("{e:#}");
            // containerd reads the reason back from the log file; people read stderr.
            if logs_to_file {
                tracing::error!("{message}");
            }
            eprintln!("peapod-runtime: {message}");
            std::process::exit(1);
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    if cli.systemd_cgroup {
        bail!("--systemd-cgroup: the systemd cgroup driver is not supported; peapod manages cgroupfs itself");
    }
    let store = || Store::open(&cli.root).with_context(|| format!("--root {}", cli.root.display()));
    match cli.command {
        Command::Create(args) => {
            let console = console_socket(args.console_socket.as_deref())?;
            container::create(&store()?, create_options(&args, console))?;
            Ok(0)
        }
        Command::Start { id } => {
            container::start(&store()?, &id)?;
            Ok(0)
        }
        Command::State { id } => {
            let store = store()?;
            let c = store.load(&id)?;
            let state = c.state_json(c.status(&store));
            out!("{}", serde_json::to_string_pretty(&state)?);
            Ok(0)
        }
        Command::Kill { all, id, signal } => {
            let signal = container::parse_signal(&signal).map_err(anyhow::Error::msg)?;
            container::kill(&store()?, &id, signal, all)?;
            Ok(0)
        }
        Command::Delete { force, id } => {
            container::delete(&store()?, &id, force)?;
            Ok(0)
        }
        Command::Run {
            create,
            detach,
            keep,
        } => run(&store()?, &create, detach, keep),
        Command::Exec(args) => exec(&store()?, args),
        Command::Ps {
            format,
            id,
            ps_args,
        } => ps(&store()?, &id, &format, &ps_args),
        Command::List { format, quiet } => list(&store()?, &format, quiet),
        Command::Spec { bundle } => {
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("File {} exists. Remove it first", path.display());
            }
            let text = serde_json::to_string_pretty(&runtime::defaults::example_spec())?;
            std::fs::write(&path, text + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(0)
        }
        Command::Update(args) => update(&store()?, args),
        Command::Pause { id } => {
            container::pause(&store()?, &id)?;
            Ok(0)
        }
        Command::Resume { id } => {
            container::resume(&store()?, &id)?;
            Ok(0)
        }
        Command::Events {
            stats,
            interval,
            id,
        } => events(&store()?, &id, stats, interval),
        Command::Checkpoint { .. } | Command::Restore { .. } => {
            bail!("checkpoint/restore is not supported by peapod-runtime (no CRIU)")
        }
        Command::Features => {
            out!(
                "{}",
                serde_json::to_string_pretty(&runtime::defaults::features())?
            );
            Ok(0)
        }
    }
}

fn console_socket(path: Option<&Path>) -> anyhow::Result<Option<OwnedFd>> {
    Ok(match path {
        Some(path) => Some(runtime::terminal::connect(path)?),
        None => None,
    })
}

fn create_options(args: &CreateArgs, console: Option<OwnedFd>) -> CreateOptions<'_> {
    CreateOptions {
        id: &args.id,
        bundle: &args.bundle,
        pid_file: args.pid_file.as_deref(),
        console,
        no_pivot: args.no_pivot,
        preserve_fds: args.preserve_fds,
        new_keyring: !args.no_new_keyring,
    }
}

/// Does the bundle ask for a terminal? (Decides who owns the pty in `run`.)
fn wants_terminal(bundle: &Path) -> bool {
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["process"]["terminal"].as_bool())
        .unwrap_or(false)
}

fn run(store: &Store, args: &CreateArgs, detach: bool, keep: bool) -> anyhow::Result<i32> {
    let terminal = wants_terminal(&args.bundle);
    if detach {
        if terminal && args.console_socket.is_none() {
            bail!(
                "cannot allocate tty if peapod-runtime will detach without setting console socket"
            );
        }
        let console = console_socket(args.console_socket.as_deref())?;
        container::create(store, create_options(args, console))?;
        return start_or_clean(store, &args.id).map(|()| 0);
    }
    foreground::block_signals();
    let (console, own) =
        foreground::Console::for_process(args.console_socket.as_deref(), terminal)?;
    let created = container::create(store, create_options(args, console))?;
    let attached = own.map(|c| c.attach()).transpose()?;
    start_or_clean(store, &args.id)?;
    let code = foreground::supervise(created.pid, attached);
    if !keep {
        container::delete(store, &args.id, true)?;
    }
    Ok(code)
}

fn start_or_clean(store: &Store, id: &str) -> anyhow::Result<()> {
    if let Err(e) = container::start(store, id) {
        let _ = container::delete(store, id, true);
        return Err(e.into());
    }
    Ok(())
}

fn exec(store: &Store, args: ExecArgs) -> anyhow::Result<i32> {
    let process = exec_process(store, &args)?;
    let terminal = process.terminal() == Some(true);
    if args.detach && terminal && args.console_socket.is_none() {
        bail!("cannot allocate tty if peapod-runtime will detach without setting console socket");
    }
    if !args.detach {
        foreground::block_signals();
    }
    let (console, own) =
        foreground::Console::for_process(args.console_socket.as_deref(), terminal)?;
    let spawned = container::exec(
        store,
        ExecOptions {
            id: &args.id,
            process,
            console,
            pid_file: args.pid_file.as_deref(),
            preserve_fds: args.preserve_fds,
        },
    )?;
    if args.detach {
        return Ok(0);
    }
    let attached = own.map(|c| c.attach()).transpose()?;
    Ok(foreground::supervise(spawned.pid, attached))
}

/// The process for `exec`: from `--process`, or the container's own process settings
/// with the command line's overrides, as runc builds it.
fn exec_process(store: &Store, args: &ExecArgs) -> anyhow::Result<Process> {
    if let Some(path) = &args.process {
        let text = std::fs::read(path).with_context(|| format!("--process {}", path.display()))?;
        let process: Process = serde_json::from_slice(&text)
            .with_context(|| format!("--process {}: not a valid OCI process", path.display()))?;
        return Ok(process);
    }
    if args.command.is_empty() {
        bail!("exec: a command is required (or --process FILE)");
    }
    let container = store.load(&args.id)?;
    let mut process = container.spec.process().clone().unwrap_or_default();
    process.set_args(Some(args.command.clone()));
    process.set_terminal(Some(args.tty));
    process.set_console_size(None);
    if let Some(cwd) = &args.cwd {
        process.set_cwd(cwd.clone());
    }
    let mut env = process.env().clone().unwrap_or_default();
    env.extend(args.env.iter().cloned());
    process.set_env(Some(env));
    if let Some(user) = &args.user {
        let (uid, gid) = user.split_once(':').unwrap_or((user, "0"));
        let u = process.user_mut();
        u.set_uid(
            uid.parse()
                .with_context(|| format!("--user {user}: expected uid[:gid]"))?,
        );
        u.set_gid(
            gid.parse()
                .with_context(|| format!("--user {user}: expected uid[:gid]"))?,
        );
    }
    if !args.additional_gids.is_empty() {
        process
            .user_mut()
            .set_additional_gids(Some(args.additional_gids.clone()));
    }
    if args.no_new_privs {
        process.set_no_new_privileges(Some(true));
    }
    if !args.cap.is_empty() {
        let mut caps = process.capabilities().clone().unwrap_or_default();
        let with = |set: &Option<oci_spec::runtime::Capabilities>, cap| {
            let mut set = set.clone().unwrap_or_default();
            set.insert(cap);
            Some(set)
        };
        for name in &args.cap {
            let cap: oci_spec::runtime::Capability =
                serde_json::from_value(serde_json::Value::String(name.to_ascii_uppercase()))
                    .with_context(|| format!("--cap {name}: unknown capability"))?;
            // runc adds an --cap capability to the bounding, effective and permitted sets.
            caps.set_bounding(with(caps.bounding(), cap));
            caps.set_effective(with(caps.effective(), cap));
            caps.set_permitted(with(caps.permitted(), cap));
        }
        process.set_capabilities(Some(caps));
    }
    Ok(process)
}

fn ps(store: &Store, id: &str, format: &str, ps_args: &[String]) -> anyhow::Result<i32> {
    let container = store.load(id)?;
    let pids = match &container.cgroup {
        Some(cgroup) => cgroup.pids()?,
        None => container.pid.into_iter().collect(),
    };
    match format {
        "json" => out!("{}", serde_json::to_string(&pids)?),
        "table" => {
            let args: Vec<String> = if ps_args.is_empty() {
                vec!["-ef".into()]
            } else {
                ps_args.to_vec()
            };
            let out = std::process::Command::new("ps")
                .args(&args)
                .output()
                .context("running ps")?;
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let pid_col = header
                .split_whitespace()
                .position(|h| h == "PID")
                .context("ps output has no PID column")?;
            out!("{header}");
            for line in lines {
                let pid: Option<i32> = line
                    .split_whitespace()
                    .nth(pid_col)
                    .and_then(|p| p.parse().ok());
                if pid.is_some_and(|p| pids.contains(&p)) {
                    out!("{line}");
                }
            }
        }
        other => bail!("--format: expected table or json, got {other:?}"),
    }
    Ok(0)
}

fn list(store: &Store, format: &str, quiet: bool) -> anyhow::Result<i32> {
    let containers = store.list()?;
    if quiet {
        for c in &containers {
            out!("{}", c.id);
        }
        return Ok(0);
    }
    let rows: Vec<(container::Container, Status)> = containers
        .into_iter()
        .map(|c| {
            let s = c.status(store);
            (c, s)
        })
        .collect();
    match format {
        "json" => {
            let docs: Vec<serde_json::Value> = rows
                .iter()
                .map(|(c, s)| {
                    let mut v = c.state_json(*s);
                    v["owner"] = owner(&store.dir(&c.id)).into();
                    v
                })
                .collect();
            out!("{}", serde_json::to_string(&docs)?);
        }
        "table" => {
            let mut table = vec![[
                "ID".to_string(),
                "PID".into(),
                "STATUS".into(),
                "BUNDLE".into(),
                "CREATED".into(),
                "OWNER".into(),
            ]];
            for (c, s) in &rows {
                let pid = if *s == Status::Stopped {
                    0
                } else {
                    c.pid.unwrap_or(0)
                };
                table.push([
                    c.id.clone(),
                    pid.to_string(),
                    s.as_str().into(),
                    c.bundle.display().to_string(),
                    c.created.clone(),
                    owner(&store.dir(&c.id)),
                ]);
            }
            let widths: Vec<usize> = (0..6)
                .map(|i| table.iter().map(|r| r[i].len()).max().unwrap_or(0))
                .collect();
            for row in table {
                let line: Vec<String> = row
                    .iter()
                    .zip(&widths)
                    .map(|(cell, w)| format!("{cell:<w$}"))
                    .collect();
                out!("{}", line.join("   ").trim_end());
            }
        }
        other => bail!("--format: expected table or json, got {other:?}"),
    }
    Ok(0)
}

/// The owner of a container's state directory, by name when /etc/passwd knows it.
fn owner(dir: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata(dir).map(|m| m.uid()).unwrap_or(0);
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("#{uid}"))
}

fn update(store: &Store, args: UpdateArgs) -> anyhow::Result<i32> {
    let resources = match &args.resources {
        None => None,
        Some(path) if path.as_os_str() == "-" => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                .context("--resources -: reading stdin")?;
            Some(bytes)
        }
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("--resources {}", path.display()))?)
        }
    };
    let flags = container::ResourceFlags {
        memory: args.memory,
        memory_reservation: args.memory_reservation,
        memory_swap: args.memory_swap,
        kernel_memory: args.kernel_memory,
        kernel_memory_tcp: args.kernel_memory_tcp,
        cpu_shares: args.cpu_share,
        cpu_period: args.cpu_period,
        cpu_quota: args.cpu_quota,
        cpu_burst: args.cpu_burst,
        cpu_idle: args.cpu_idle,
        cpu_rt_period: args.cpu_rt_period,
        cpu_rt_runtime: args.cpu_rt_runtime,
        cpuset_cpus: args.cpuset_cpus,
        cpuset_mems: args.cpuset_mems,
        pids_limit: args.pids_limit,
        blkio_weight: args.blkio_weight,
        l3_cache_schema: args.l3_cache_schema,
        mem_bw_schema: args.mem_bw_schema,
    };
    container::update(store, &args.id, resources.as_deref(), &flags)?;
    Ok(0)
}

fn events(
    store: &Store,
    id: &str,
    stats: bool,
    interval: std::time::Duration,
) -> anyhow::Result<i32> {
    let emit = |event: &container::Event| {
        use std::io::Write as _;
        let line = serde_json::to_string(event)?;
        writeln!(std::io::stdout().lock(), "{line}")
    };
    if stats {
        let _ = emit(&container::stats(store, id)?);
    } else {
        container::events(store, id, interval, emit)?;
    }
    Ok(0)
}
