//! The sandbox's network, IPC and UTS namespaces, made on a throwaway thread and pinned by
//! bind-mounting their `nsfs` files onto empty files, as `ip netns add` pins a netns. A pod
//! that shares one of the node's namespaces (`hostNetwork`, `hostIPC`) gets no pin for it:
//! its [`Pins`] name the node's namespace instead, and unpinning leaves that one alone.
//!
//! `unshare` moves only the calling thread, so it happens on a thread spawned for it: the
//! caller's threads (tokio workers in the kubelet) never change namespace. Once its namespaces
//! are pinned the thread simply ends; the bind mounts keep them alive.

use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

use super::SandboxError;

/// Where a sandbox's namespaces are pinned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pins {
    /// The network namespace, `<netns dir>/<sandbox name>`, where `ip netns` looks.
    pub net: PathBuf,
    /// The IPC namespace, in the sandbox's state directory.
    pub ipc: PathBuf,
    /// The UTS namespace, in the sandbox's state directory.
    pub uts: PathBuf,
    /// Which of the three are the node's own namespaces, named here rather than pinned (so
    /// never unpinned). Records written before this field existed pinned all three.
    #[serde(default)]
    pub node: NodeNamespaces,
}

/// Which namespaces a pod shares with the node instead of having its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeNamespaces {
    /// The node's network namespace (`hostNetwork`).
    pub net: bool,
    /// The node's IPC namespace (`hostIPC`).
    pub ipc: bool,
    /// The node's UTS namespace (follows `hostNetwork`, as upstream: the node's hostname).
    pub uts: bool,
}

impl Pins {
    /// The pins the sandbox made, with their `/proc/<tid>/ns` names.
    pub(super) fn each(&self) -> Vec<(&'static str, &Path)> {
        [
            ("net", &self.net, self.node.net),
            ("ipc", &self.ipc, self.node.ipc),
            ("uts", &self.uts, self.node.uts),
        ]
        .into_iter()
        .filter(|(_, _, node)| !node)
        .map(|(kind, path, _)| (kind, path.as_path()))
        .collect()
    }

    /// The `unshare` flags of the namespaces the sandbox makes.
    fn clone_flags(&self) -> CloneFlags {
        let mut flags = CloneFlags::empty();
        for (kind, _) in self.each() {
            flags |= match kind {
                "net" => CloneFlags::CLONE_NEWNET,
                "ipc" => CloneFlags::CLONE_NEWIPC,
                _ => CloneFlags::CLONE_NEWUTS,
            };
        }
        flags
    }
}

/// Making and unpinning a sandbox's namespaces: the sandbox's one OS seam besides the cgroup
/// tree (which tests replace with a fixture tree through [`Paths`](super::Paths)).
pub(crate) trait Pinner {
    /// Make the namespaces and pin them; see [`create`].
    fn create(&self, pins: &Pins, hostname: &str) -> Result<(), SandboxError>;
    /// Unpin them; see [`unpin`].
    fn unpin(&self, pins: &Pins) -> Result<(), SandboxError>;
}

/// The real thing: `unshare` and bind mounts.
pub(crate) struct Linux;

impl Pinner for Linux {
    fn create(&self, pins: &Pins, hostname: &str) -> Result<(), SandboxError> {
        create(pins, hostname)
    }

    fn unpin(&self, pins: &Pins) -> Result<(), SandboxError> {
        unpin(pins)
    }
}

/// Make new network, IPC and UTS namespaces, set the hostname, bring `lo` up, and pin them at
/// `pins`. The pin files must not exist yet: an existing one belongs to someone else (another
/// sandbox, or `ip netns add`) and is left alone. On error, what this call made is taken down.
fn create(pins: &Pins, hostname: &str) -> Result<(), SandboxError> {
    if pins.each().is_empty() {
        return Ok(());
    }
    if let Some(dir) = pins.net.parent().filter(|_| !pins.node.net) {
        share_netns_dir(dir)?;
    }
    let mut made = Vec::new();
    let result = create_pins(pins, &mut made).and_then(|()| pin_new_namespaces(pins, hostname));
    if result.is_err() {
        for pin in made {
            // The first error is the one worth reporting.
            let _ = unpin_one(pin);
        }
    }
    result
}

/// Create the empty pin files, recording each one made in `made`.
fn create_pins<'a>(pins: &'a Pins, made: &mut Vec<&'a Path>) -> Result<(), SandboxError> {
    for (_, pin) in pins.each() {
        // Mode 0 as iproute2 uses: the file is only a mount point.
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o000)
            .open(pin)
            .map_err(|e| SandboxError::Io {
                op: "create the namespace pin",
                path: pin.to_path_buf(),
                source: e,
            })?;
        made.push(pin);
    }
    Ok(())
}

/// Unshare on a thread of its own, which ends once the namespaces are pinned.
fn pin_new_namespaces(pins: &Pins, hostname: &str) -> Result<(), SandboxError> {
    let pins = pins.clone();
    let hostname = hostname.to_owned();
    std::thread::Builder::new()
        .name("sandbox-unshare".into())
        .spawn(move || make_and_pin(&pins, &hostname))
        .map_err(|e| SandboxError::Io {
            op: "spawn the namespace thread for",
            path: PathBuf::from("sandbox-unshare"),
            source: e,
        })?
        .join()
        .unwrap_or_else(|_| {
            Err(SandboxError::Namespace {
                op: "namespace thread panicked while pinning",
                path: PathBuf::new(),
                errno: Errno::UnknownErrno,
            })
        })
}

/// On the throwaway thread: unshare, configure, pin.
fn make_and_pin(pins: &Pins, hostname: &str) -> Result<(), SandboxError> {
    let fail = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |errno| SandboxError::Namespace { op, path, errno }
    };
    unshare(pins.clone_flags()).map_err(fail("unshare the pod's namespaces for", &pins.net))?;
    if !pins.node.uts {
        nix::unistd::sethostname(hostname).map_err(fail("sethostname in", &pins.uts))?;
    }
    if !pins.node.net {
        loopback_up().map_err(fail("bring lo up in", &pins.net))?;
    }
    let tid = nix::unistd::gettid();
    for (kind, pin) in pins.each() {
        let source = PathBuf::from(format!("/proc/self/task/{tid}/ns/{kind}"));
        mount(
            Some(&source),
            pin,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(fail("bind-mount the namespace on", pin))?;
    }
    Ok(())
}

/// `ip link set lo up` in the calling thread's network namespace, with the classic
/// `SIOCSIFFLAGS` ioctl rather than a netlink client.
fn loopback_up() -> Result<(), Errno> {
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: `request` is a valid ifreq naming an interface; the kernel fills in its flags.
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) })?;
    // SAFETY: SIOCGIFFLAGS has just set the flags member of the union.
    unsafe { request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above; the kernel only reads the request.
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &request) })?;
    Ok(())
}

/// Make `dir` (e.g. `/run/netns`) a shared mount, as `ip netns add` does, so that unmounting
/// a pin also unmounts its copies in mount namespaces made since (containers, `ip netns exec`).
/// A directory that is not a mount point yet is first bind-mounted onto itself.
fn share_netns_dir(dir: &Path) -> Result<(), SandboxError> {
    // Two sandboxes of this process must not both bind the directory onto itself.
    static SHARING: Mutex<()> = Mutex::new(());
    let _guard = SHARING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| SandboxError::Io {
            op: "create the netns directory",
            path: dir.to_path_buf(),
            source: e,
        })?;
    let fail = |op: &'static str| {
        move |errno| SandboxError::Namespace {
            op,
            path: dir.to_path_buf(),
            errno,
        }
    };
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    match mount(None::<&str>, dir, None::<&str>, shared, None::<&str>) {
        Ok(()) => return Ok(()),
        Err(Errno::EINVAL) => {}
        Err(errno) => return Err(fail("make shared")(errno)),
    }
    mount(
        Some(dir),
        dir,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(fail("bind-mount onto itself"))?;
    mount(None::<&str>, dir, None::<&str>, shared, None::<&str>).map_err(fail("make shared"))
}

/// Unmount and delete every pin. Pins already unmounted or deleted are fine, so this can be
/// run again after a partial failure; the first real error is returned after trying them all.
fn unpin(pins: &Pins) -> Result<(), SandboxError> {
    let mut first = None;
    for (_, pin) in pins.each() {
        if let Err(e) = unpin_one(pin) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

fn unpin_one(pin: &Path) -> Result<(), SandboxError> {
    // Detach, not a plain unmount: `ip netns exec` or a `setns` holder keeps the namespace,
    // but must not keep the pin busy.
    match umount2(pin, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => {}
        Err(errno) => {
            return Err(SandboxError::Namespace {
                op: "unmount the namespace pin",
                path: pin.to_path_buf(),
                errno,
            })
        }
    }
    match fs::remove_file(pin) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SandboxError::Io {
            op: "remove the namespace pin",
            path: pin.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpinning_missing_pins_is_not_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let pins = Pins {
            net: tmp.path().join("net"),
            ipc: tmp.path().join("ipc"),
            uts: tmp.path().join("uts"),
            node: NodeNamespaces::default(),
        };
        fs::write(&pins.ipc, "").unwrap();
        unpin(&pins).unwrap();
        assert!(!pins.ipc.exists());
        unpin(&pins).unwrap();
    }

    #[test]
    fn the_nodes_namespaces_are_neither_made_nor_unpinned() {
        let tmp = tempfile::tempdir().unwrap();
        let node_net = tmp.path().join("node-net");
        fs::write(&node_net, "").unwrap();
        let pins = Pins {
            net: node_net.clone(),
            ipc: tmp.path().join("ipc"),
            uts: PathBuf::from("/proc/self/ns/uts"),
            node: NodeNamespaces {
                net: true,
                ipc: false,
                uts: true,
            },
        };
        assert_eq!(pins.clone_flags(), CloneFlags::CLONE_NEWIPC);
        unpin(&pins).unwrap();
        assert!(node_net.exists(), "the node's netns is never unpinned");
    }
}
