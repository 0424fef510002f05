//! `peapod-shim`: the per-container supervisor started by `runtime::shim::spawn`. It
//! detaches, runs one container, logs its output in the CRI format and records its
//! exit; see the `runtime::shim` module for the whole story.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Mutex;

use clap::Parser;
use runtime::logs::LogOptions;
use runtime::shim::{ShimConfig, REPORT_FD};

/// Supervise one container: started by peapod's kubelet, not by hand.
#[derive(Parser)]
#[command(name = "peapod-shim", version)]
struct Args {
    /// The container id.
    #[arg(long)]
    id: String,
    /// The runtime's state root.
    #[arg(long)]
    root: PathBuf,
    /// The OCI bundle.
    #[arg(long)]
    bundle: PathBuf,
    /// The CRI log file.
    #[arg(long)]
    log_path: PathBuf,
    /// Where the exit record goes.
    #[arg(long)]
    exit_file: PathBuf,
    /// This shim's own log (it is also the shim's stderr).
    #[arg(long)]
    shim_log: PathBuf,
    /// Rotate the CRI log past this many bytes (0: never).
    #[arg(long, default_value_t = LogOptions::default().max_size)]
    log_max_size: u64,
    /// Log files kept, the live one included.
    #[arg(long, default_value_t = LogOptions::default().max_files)]
    log_max_files: usize,
}

fn main() {
    let args = Args::parse();
    // SAFETY: F_GETFD only checks that the fd is open.
    if unsafe { libc::fcntl(REPORT_FD, libc::F_GETFD) } < 0 {
        eprintln!(
            "peapod-shim: fd {REPORT_FD} (the report pipe) is not open: use runtime::shim::spawn"
        );
        std::process::exit(2);
    }
    // SAFETY: fd 3 is open (checked above) and nothing else in this process owns it.
    let report = unsafe { OwnedFd::from_raw_fd(REPORT_FD) };
    // SAFETY: setting FD_CLOEXEC touches no memory; the container must not inherit it.
    unsafe { libc::fcntl(REPORT_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    init_tracing();
    let config = ShimConfig {
        binary: std::env::current_exe().unwrap_or_default(),
        id: args.id,
        root: args.root,
        bundle: args.bundle,
        log_path: args.log_path,
        exit_file: args.exit_file,
        shim_log: args.shim_log,
        log: LogOptions {
            max_size: args.log_max_size,
            max_files: args.log_max_files,
        },
    };
    std::process::exit(runtime::shim::supervisor::run(&config, report));
}

/// Warnings from the runtime library go to the shim log through a copy of fd 2 taken
/// now: while the container is created, fd 2 is briefly the container's stderr pipe.
fn init_tracing() {
    // SAFETY: F_DUPFD_CLOEXEC makes a new fd and touches no memory.
    let fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) };
    if fd < 0 {
        return;
    }
    // SAFETY: fcntl just returned this fd; nothing else owns it.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    tracing_subscriber::fmt()
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .init();
}
