//! `/dev` inside the rootfs: device nodes, the standard symlinks and `/dev/ptmx`.
//!
//! Nodes are made with mknod(2); where that is not permitted (a user namespace, no
//! `CAP_MKNOD`) the host's node of the same path is bind-mounted onto an empty file instead,
//! as runc does.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::mount::MsFlags;
use nix::sys::stat::{fchmodat, fstatat, makedev, mknodat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{fchownat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Spec};

use super::mount::sys_mount;
use super::resolve::{clean, Root};
use super::RootfsError;

/// The kind of a device node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Character device (`c`, `u`).
    Char,
    /// Block device (`b`).
    Block,
    /// Named pipe (`p`).
    Fifo,
}

impl Kind {
    fn file_type(self) -> SFlag {
        match self {
            Kind::Char => SFlag::S_IFCHR,
            Kind::Block => SFlag::S_IFBLK,
            Kind::Fifo => SFlag::S_IFIFO,
        }
    }
}

/// A device node to create in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Container path, e.g. `/dev/fuse`; also the host node bound when mknod is refused.
    pub path: PathBuf,
    /// Node type.
    pub kind: Kind,
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
    /// Permission bits (no file type bits).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

impl Device {
    fn char(path: &str, major: u64, minor: u64) -> Self {
        Self {
            path: PathBuf::from(path),
            kind: Kind::Char,
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        }
    }

    /// Reads a `linux.devices` entry: type `c`/`u`, `b` or `p` (not `a`), non-negative numbers,
    /// `fileMode` default 0666 with type bits dropped, uid/gid default 0.
    pub fn from_spec(device: &LinuxDevice) -> Result<Self, RootfsError> {
        let path = clean(device.path());
        let invalid = |reason: String| RootfsError::Device {
            path: device.path().clone(),
            reason,
        };
        let kind = match device.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => Kind::Char,
            LinuxDeviceType::B => Kind::Block,
            LinuxDeviceType::P => Kind::Fifo,
            LinuxDeviceType::A => return Err(invalid("type \"a\" is not a node type".into())),
        };
        let number = |n: i64, what: &str| {
            u64::try_from(n).map_err(|_| invalid(format!("negative {what} number {n}")))
        };
        Ok(Self {
            path,
            kind,
            major: number(device.major(), "major")?,
            minor: number(device.minor(), "minor")?,
            mode: device.file_mode().unwrap_or(0o666) & !libc::S_IFMT,
            uid: device.uid().unwrap_or(0),
            gid: device.gid().unwrap_or(0),
        })
    }

    fn rdev(&self) -> libc::dev_t {
        makedev(self.major, self.minor)
    }
}

/// The nodes every container gets (runc's list), unless `linux.devices` redefines the path.
pub fn default_devices() -> Vec<Device> {
    vec![
        Device::char("/dev/null", 1, 3),
        Device::char("/dev/random", 1, 8),
        Device::char("/dev/full", 1, 7),
        Device::char("/dev/tty", 5, 0),
        Device::char("/dev/zero", 1, 5),
        Device::char("/dev/urandom", 1, 9),
    ]
}

/// Default devices not overridden by the spec, then the spec's `linux.devices`; `/dev/ptmx`
/// is left out since it becomes a symlink into the devpts instance.
pub fn devices_for(spec: &Spec) -> Result<Vec<Device>, RootfsError> {
    let listed = spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_ref())
        .map(|devices| devices.iter().map(Device::from_spec).collect())
        .transpose()?
        .unwrap_or_else(Vec::new);
    let mut devices: Vec<Device> = default_devices()
        .into_iter()
        .filter(|d| !listed.iter().any(|l| l.path == d.path))
        .collect();
    devices.extend(listed);
    devices.retain(|d| d.path != Path::new("/dev/ptmx"));
    Ok(devices)
}

/// Creates `devices`, `/dev/ptmx -> pts/ptmx` and the `/dev/fd`, `stdin`, `stdout`, `stderr`
/// (and, if the host has `/proc/kcore`, `core`) symlinks.
pub fn populate_dev(root: &Root, devices: &[Device], kcore: bool) -> Result<(), RootfsError> {
    for device in devices {
        create(root, device)?;
    }
    let dev = root.mkdir_all(Path::new("/dev"), Mode::from_bits_truncate(0o755))?;
    match unlinkat(dev.as_fd(), "ptmx", UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(errno) => return Err(syscall(root, "unlinkat", "/dev/ptmx", errno)),
    }
    link(root, &dev, "pts/ptmx", "ptmx")?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if kcore {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        match link(root, &dev, target, name) {
            Err(RootfsError::Syscall {
                errno: Errno::EEXIST,
                ..
            }) => {}
            other => other?,
        }
    }
    Ok(())
}

fn link(root: &Root, dev: &OwnedFd, target: &str, name: &str) -> Result<(), RootfsError> {
    symlinkat(target, dev.as_fd(), name)
        .map_err(|errno| syscall(root, "symlinkat", &format!("/dev/{name}"), errno))
}

/// Makes one node; an existing file of that name is left alone (runc).
fn create(root: &Root, device: &Device) -> Result<(), RootfsError> {
    let (dir, name) = root.mkdir_parent(&device.path, Mode::from_bits_truncate(0o755))?;
    let perm = Mode::from_bits_truncate(device.mode);
    match mknodat(
        dir.as_fd(),
        name.as_os_str(),
        device.kind.file_type(),
        perm,
        device.rdev(),
    ) {
        Ok(()) => finish_node(root, &dir, &name, device),
        Err(Errno::EEXIST) => Ok(()),
        Err(Errno::EPERM) => bind_host_node(root, &dir, &name, device),
        Err(errno) => Err(node_error(root, "mknodat", device, errno)),
    }
}

/// Checks the new node is what was asked for, then sets its exact mode (mknod applies the
/// umask) and owner.
fn finish_node(
    root: &Root,
    dir: &OwnedFd,
    name: &OsStr,
    device: &Device,
) -> Result<(), RootfsError> {
    let st = fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|errno| node_error(root, "fstatat", device, errno))?;
    let file_type = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let wrong_rdev = device.kind != Kind::Fifo && st.st_rdev != device.rdev();
    if file_type != device.kind.file_type() || wrong_rdev {
        return Err(RootfsError::Device {
            path: device.path.clone(),
            reason: format!(
                "created node has mode {:o}, rdev {}:{}",
                st.st_mode,
                nix::sys::stat::major(st.st_rdev),
                nix::sys::stat::minor(st.st_rdev)
            ),
        });
    }
    let perm = Mode::from_bits_truncate(device.mode);
    fchmodat(dir.as_fd(), name, perm, FchmodatFlags::FollowSymlink)
        .map_err(|errno| node_error(root, "fchmodat", device, errno))?;
    let (uid, gid) = (Uid::from_raw(device.uid), Gid::from_raw(device.gid));
    fchownat(
        dir.as_fd(),
        name,
        Some(uid),
        Some(gid),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|errno| node_error(root, "fchownat", device, errno))
}

/// The fallback when mknod is not permitted: an empty file with the host's node bound on it.
fn bind_host_node(
    root: &Root,
    dir: &OwnedFd,
    name: &OsStr,
    device: &Device,
) -> Result<(), RootfsError> {
    let flags = OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let file = openat(dir.as_fd(), name, flags, Mode::empty())
        .map_err(|errno| node_error(root, "openat", device, errno))?;
    let source = device.path.to_string_lossy();
    let on = root.fd_path(&file);
    sys_mount(Some(&source), &on, None, MsFlags::MS_BIND, "", &device.path)
}

fn node_error(root: &Root, syscall: &'static str, device: &Device, errno: Errno) -> RootfsError {
    RootfsError::syscall(syscall, root.host_path(&device.path), errno)
}

fn syscall(root: &Root, syscall: &'static str, path: &str, errno: Errno) -> RootfsError {
    RootfsError::syscall(syscall, root.host_path(Path::new(path)), errno)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBuilder, SpecBuilder};

    use crate::rootfs::testbed::spec_device;

    #[test]
    fn spec_device_defaults_and_mode_bits() {
        let device =
            Device::from_spec(&spec_device("/dev/fuse", LinuxDeviceType::C, 10, 229)).unwrap();
        assert_eq!(device, {
            let mut d = Device::char("/dev/fuse", 10, 229);
            d.mode = 0o666;
            d
        });
        let mut raw = spec_device("/dev/sda", LinuxDeviceType::B, 8, 0);
        raw.set_file_mode(Some(0o060640));
        raw.set_uid(Some(1000));
        raw.set_gid(Some(6));
        let device = Device::from_spec(&raw).unwrap();
        assert_eq!(device.kind, Kind::Block);
        assert_eq!(device.mode, 0o640);
        assert_eq!((device.uid, device.gid), (1000, 6));
        assert_eq!(device.rdev(), makedev(8, 0));
        let fifo = Device::from_spec(&spec_device("/dev/../dev/pipe", LinuxDeviceType::P, 0, 0));
        assert_eq!(fifo.unwrap().path, PathBuf::from("/dev/pipe"));
        let unbuffered = Device::from_spec(&spec_device("/dev/u", LinuxDeviceType::U, 4, 1));
        assert_eq!(unbuffered.unwrap().kind, Kind::Char);
    }

    #[test]
    fn invalid_spec_devices() {
        let all = Device::from_spec(&spec_device("/dev/x", LinuxDeviceType::A, 1, 1));
        assert!(matches!(all, Err(RootfsError::Device { .. })));
        let negative = Device::from_spec(&spec_device("/dev/x", LinuxDeviceType::C, -1, 1));
        assert!(negative.unwrap_err().to_string().contains("negative major"));
    }

    #[test]
    fn spec_devices_override_defaults_and_ptmx_is_skipped() {
        let mut null = spec_device("/dev/null", LinuxDeviceType::C, 1, 3);
        null.set_file_mode(Some(0o600));
        let linux = LinuxBuilder::default()
            .devices(vec![
                null,
                spec_device("/dev/ptmx", LinuxDeviceType::C, 5, 2),
                spec_device("/dev/fuse", LinuxDeviceType::C, 10, 229),
            ])
            .build()
            .unwrap();
        let spec = SpecBuilder::default().linux(linux).build().unwrap();
        let devices = devices_for(&spec).unwrap();
        let paths: Vec<&Path> = devices.iter().map(|d| d.path.as_path()).collect();
        assert_eq!(
            paths,
            [
                "/dev/random",
                "/dev/full",
                "/dev/tty",
                "/dev/zero",
                "/dev/urandom",
                "/dev/null",
                "/dev/fuse"
            ]
            .map(Path::new)
        );
        assert_eq!(devices[5].mode, 0o600);
        let defaults = devices_for(&SpecBuilder::default().build().unwrap()).unwrap();
        assert_eq!(defaults, default_devices());
    }
}
