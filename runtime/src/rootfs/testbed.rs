//! The harness of the real rootfs tests: a busybox rootfs fixture, a forked "container init"
//! in fresh namespaces reporting back over a pipe, and checks on what it sees.
//!
//! The tests need root and `/bin/busybox`, and fail loudly without them.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Uid};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceBuilder, LinuxDeviceType, Mount, MountBuilder};

use super::mountinfo::{self, MountInfo};

const BUSYBOX: &str = "/bin/busybox";
const APPLETS: &[&str] = &["sh", "cat", "ls", "echo", "test"];

/// `return Err(format!(...))` unless the condition holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}
pub(super) use ensure;

/// A temp dir holding a busybox rootfs and host-side files to bind.
pub(super) struct Fixture {
    /// The temp dir: `rootfs/` and the host-side files.
    pub(super) dir: tempfile::TempDir,
    /// The busybox rootfs.
    pub(super) rootfs: PathBuf,
}

impl Fixture {
    /// A fresh busybox rootfs in a temp dir.
    pub(super) fn new() -> Self {
        assert!(
            Uid::effective().is_root(),
            "the rootfs tests mount filesystems and must run as root"
        );
        assert!(
            Path::new(BUSYBOX).is_file(),
            "the rootfs tests need {BUSYBOX} (Debian: busybox-static)"
        );
        let dir = tempfile::Builder::new()
            .prefix("peapod-rootfs-")
            .tempdir()
            .unwrap();
        let rootfs = dir.path().join("rootfs");
        fs::create_dir_all(rootfs.join("bin")).unwrap();
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
        for applet in APPLETS {
            symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        Self { dir, rootfs }
    }

    /// A host-side path in the temp dir, next to the rootfs.
    pub(super) fn host(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Checks nothing under the fixture is mounted in this (the host's) namespace, then
    /// removes it.
    pub(super) fn finish(self) {
        let dir = self.dir.path().to_path_buf();
        let leaked: Vec<MountInfo> = host_mounts()
            .into_iter()
            .filter(|m| m.mount_point.starts_with(&dir))
            .collect();
        assert!(leaked.is_empty(), "mounts leaked to the host: {leaked:#?}");
        self.dir.close().unwrap();
        assert!(!dir.exists());
    }
}

pub(super) fn host_mounts() -> Vec<MountInfo> {
    mountinfo::parse(&fs::read_to_string("/proc/self/mountinfo").unwrap())
}

/// Runs `scenario` as the "container init": a child runs `prelude` (unsharing namespaces) and
/// forks again, so that a new pid namespace applies; the grandchild's error or panic comes
/// back through a pipe.
pub(super) fn isolated(
    prelude: impl FnOnce() -> Result<(), String>,
    scenario: impl FnOnce() -> Result<(), String>,
) {
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    // SAFETY: the child runs only this test's code and leaves through _exit; glibc keeps
    // malloc usable in a child forked from a threaded process.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(read_end);
            let code = middle(prelude, write_end, scenario);
            // SAFETY: ends the forked child without running the harness's exit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut report = String::new();
            fs::File::from(read_end)
                .read_to_string(&mut report)
                .unwrap();
            let status = waitpid(child, None).unwrap();
            assert_eq!(
                status,
                WaitStatus::Exited(child, 0),
                "container scenario failed: {report}"
            );
        }
    }
}

fn middle(
    prelude: impl FnOnce() -> Result<(), String>,
    report: OwnedFd,
    scenario: impl FnOnce() -> Result<(), String>,
) -> i32 {
    let mut report = fs::File::from(report);
    if let Err(message) = prelude() {
        let _ = write!(report, "{message}");
        return 2;
    }
    // SAFETY: as in `isolated`; this process is single-threaded now.
    match unsafe { fork() } {
        Err(errno) => {
            let _ = write!(report, "fork: {errno}");
            2
        }
        Ok(ForkResult::Child) => {
            let code = match catch_unwind(AssertUnwindSafe(scenario)) {
                Ok(Ok(())) => 0,
                Ok(Err(message)) => {
                    let _ = write!(report, "{message}");
                    1
                }
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    let _ = write!(report, "panic: {message}");
                    3
                }
            };
            // SAFETY: ends the container init without the harness's exit handlers.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => code,
            other => {
                let _ = write!(report, "container init ended with {other:?}");
                4
            }
        },
    }
}

/// A prelude that only unshares `namespaces`.
pub(super) fn unshared(namespaces: CloneFlags) -> impl FnOnce() -> Result<(), String> {
    move || unshare(namespaces).map_err(|errno| format!("unshare({namespaces:?}): {errno}"))
}

pub(super) fn spec_mount(
    destination: &str,
    typ: &str,
    source: impl AsRef<Path>,
    options: &[&str],
) -> Mount {
    MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source.as_ref())
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .unwrap()
}

pub(super) fn spec_device(path: &str, typ: LinuxDeviceType, major: i64, minor: i64) -> LinuxDevice {
    LinuxDeviceBuilder::default()
        .path(path)
        .typ(typ)
        .major(major)
        .minor(minor)
        .build()
        .unwrap()
}

pub(super) fn mount_at<'a>(mounts: &'a [MountInfo], point: &str) -> Result<&'a MountInfo, String> {
    // The last entry for a mount point is the one on top.
    mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == Path::new(point))
        .ok_or_else(|| format!("no mount at {point}"))
}

pub(super) fn with_options(m: &MountInfo, options: &[&str]) -> Result<(), String> {
    for option in options {
        ensure!(
            m.has_mount_option(option) || m.has_super_option(option),
            "{} lacks {option}: {m:?}",
            m.mount_point.display()
        );
    }
    Ok(())
}

pub(super) fn expect_mount(
    mounts: &[MountInfo],
    point: &str,
    fstype: &str,
    options: &[&str],
) -> Result<(), String> {
    let m = mount_at(mounts, point)?;
    ensure!(m.fstype == fstype, "{point} is {} not {fstype}", m.fstype);
    with_options(m, options)
}

pub(super) fn expect_node(
    path: &str,
    char_dev: bool,
    major: u64,
    minor: u64,
    mode: u32,
) -> Result<(), String> {
    let meta = fs::symlink_metadata(path).map_err(|e| format!("{path}: {e}"))?;
    let kind_ok = match char_dev {
        true => meta.file_type().is_char_device(),
        false => meta.file_type().is_block_device(),
    };
    ensure!(kind_ok, "{path} has the wrong type: {:?}", meta.file_type());
    let rdev = meta.rdev();
    let numbers = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    ensure!(numbers == (major, minor), "{path} is {numbers:?}");
    ensure!(
        meta.mode() & 0o7777 == mode,
        "{path} mode {:o}",
        meta.mode()
    );
    Ok(())
}

pub(super) fn expect_read_only(path: &str) -> Result<(), String> {
    let err = fs::write(path, "x").expect_err(path);
    ensure!(
        err.raw_os_error() == Some(libc::EROFS),
        "writing {path}: {err}, not EROFS"
    );
    Ok(())
}

/// Enters a new user namespace (with mount, pid, network and IPC namespaces it owns) mapping
/// root to root, after mounting a nosuid,nodev,noexec tmpfs at `locked` in an intermediate
/// mount namespace: in the new namespaces its flags are locked, as host mounts are for a
/// rootless or userns container.
pub(super) fn user_namespace_with_locked_mount(
    locked: PathBuf,
) -> impl FnOnce() -> Result<(), String> {
    move || {
        unshared(CloneFlags::CLONE_NEWNS)()?;
        let recursive_slave = MsFlags::MS_SLAVE | MsFlags::MS_REC;
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            recursive_slave,
            None::<&str>,
        )
        .map_err(|e| format!("rslave /: {e}"))?;
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        nix::mount::mount(
            Some("tmpfs"),
            &locked,
            Some("tmpfs"),
            flags,
            Some("size=1m"),
        )
        .map_err(|e| format!("tmpfs on {}: {e}", locked.display()))?;
        fs::write(locked.join("file"), "locked\n").map_err(|e| e.to_string())?;
        unshared(
            CloneFlags::CLONE_NEWUSER
                | CloneFlags::CLONE_NEWNS
                | CloneFlags::CLONE_NEWPID
                | CloneFlags::CLONE_NEWNET
                | CloneFlags::CLONE_NEWIPC,
        )()?;
        for (file, map) in [
            ("setgroups", "deny"),
            ("uid_map", "0 0 1"),
            ("gid_map", "0 0 1"),
        ] {
            fs::write(Path::new("/proc/self").join(file), map)
                .map_err(|e| format!("writing /proc/self/{file}: {e}"))?;
        }
        Ok(())
    }
}
