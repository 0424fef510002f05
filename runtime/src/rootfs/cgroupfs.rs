//! The `cgroup` mount entry: the container's view of its cgroups on v1, hybrid and v2 hosts.
//!
//! - v1 (and hybrid): a tmpfs at the destination holding one directory per hierarchy. Without
//!   a cgroup namespace each is a bind of the container's own cgroup directory in that host
//!   hierarchy (read-only if the entry is); with one, a fresh `cgroup` mount of the hierarchy.
//!   Co-mounted controllers (`cpu,cpuacct`) get `cpu` and `cpuacct` symlinks. On a hybrid host
//!   the cgroup2 hierarchy (`unified`) is added the v2 way.
//! - v2: with a cgroup namespace a fresh `cgroup2` mount, otherwise a bind of the container's
//!   own cgroup directory.
//!
//! Which hierarchies exist and where the container sits in each comes from
//! `/proc/self/mountinfo` and `/proc/self/cgroup`.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::stat::Mode;
use nix::unistd::symlinkat;

use super::mount::{self, Context, Entry};
use super::mountinfo::{self, MountInfo};
use super::options::MountOptions;
use super::resolve::Root;
use super::RootfsError;

/// One cgroup hierarchy the container can see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Directory name under the cgroup mount: the host mount point's last component
    /// (`memory`, `cpu,cpuacct`, `systemd`, `unified`).
    pub name: String,
    /// The hierarchy as `/proc/self/cgroup` names it (`cpu,cpuacct`, `name=systemd`; empty for
    /// cgroup2): also the data that mounts a v1 hierarchy afresh.
    pub controllers: String,
    /// The host mount of the hierarchy.
    pub mount_point: PathBuf,
    /// Which cgroup of the hierarchy that mount shows at its top.
    pub mount_root: PathBuf,
    /// The container's own cgroup in the hierarchy.
    pub own: PathBuf,
}

impl Hierarchy {
    /// The host directory of the container's own cgroup, if the host mount shows it.
    pub fn host_dir(&self) -> Option<PathBuf> {
        let relative = self.own.strip_prefix(&self.mount_root).ok()?;
        Some(self.mount_point.join(relative))
    }
}

/// The cgroup hierarchies of the host, as the container process sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// cgroup v1 hierarchies, in `/proc/self/cgroup` order.
    pub v1: Vec<Hierarchy>,
    /// The cgroup2 hierarchy (the whole tree on v2, `unified` on a hybrid host).
    pub unified: Option<Hierarchy>,
}

impl Layout {
    /// Matches the lines of `/proc/self/cgroup` (`4:memory:/a/b`, `0::/a/b`) to the cgroup
    /// mounts in `mounts`, ignoring mounts under `skip` (the rootfs being set up). A v1 line
    /// matches a `cgroup` mount whose superblock options list all its controllers; lines
    /// without a mount are left out.
    pub fn discover(mounts: &[MountInfo], proc_cgroup: &str, skip: &Path) -> Self {
        let candidates: Vec<&MountInfo> = mounts
            .iter()
            .filter(|m| !m.mount_point.starts_with(skip))
            .collect();
        let mut layout = Layout::default();
        for line in proc_cgroup.lines() {
            let mut fields = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(own)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let own = PathBuf::from(own);
            if id == "0" && controllers.is_empty() {
                let found = pick(candidates.iter().filter(|m| m.fstype == "cgroup2"), &own);
                layout.unified = found.map(|m| hierarchy(m, "", own));
                continue;
            }
            let wanted: Vec<&str> = controllers.split(',').filter(|c| !c.is_empty()).collect();
            if wanted.is_empty() {
                continue;
            }
            let matching = candidates
                .iter()
                .filter(|m| m.fstype == "cgroup" && wanted.iter().all(|c| m.has_super_option(c)));
            if let Some(m) = pick(matching, &own) {
                layout.v1.push(hierarchy(m, controllers, own));
            }
        }
        layout
    }
}

/// Of several mounts of one hierarchy, the first that shows `own`, else the first.
fn pick<'a, 'b, I>(mut mounts: I, own: &Path) -> Option<&'a MountInfo>
where
    'a: 'b,
    I: Iterator<Item = &'b &'a MountInfo> + Clone,
{
    let first = mounts.clone().next();
    mounts.find(|m| own.starts_with(&m.root)).or(first).copied()
}

fn hierarchy(m: &MountInfo, controllers: &str, own: PathBuf) -> Hierarchy {
    let name = m
        .mount_point
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Hierarchy {
        name,
        controllers: controllers.to_string(),
        mount_point: m.mount_point.clone(),
        mount_root: m.root.clone(),
        own,
    }
}

/// Performs a `cgroup` (or `cgroup2`) mount entry.
pub fn mount(root: &Root, entry: &Entry, context: &Context) -> Result<(), RootfsError> {
    let mountinfo_path = context.host.proc.join("self/mountinfo");
    let cgroup_path = context.host.proc.join("self/cgroup");
    let mounts = mountinfo::parse(&read(&mountinfo_path)?);
    let layout = Layout::discover(&mounts, &read(&cgroup_path)?, root.path());
    if entry.fstype == "cgroup2" || layout.v1.is_empty() {
        let unified = layout.unified.as_ref().ok_or_else(|| RootfsError::Cgroup {
            destination: entry.destination.clone(),
            reason: "the host has no cgroup2 hierarchy for this process".into(),
        })?;
        return mount_v2(root, entry, context, unified, &entry.destination);
    }
    mount_v1(root, entry, context, &layout)
}

fn mount_v1(
    root: &Root,
    entry: &Entry,
    context: &Context,
    layout: &Layout,
) -> Result<(), RootfsError> {
    let base = MsFlags::MS_NOEXEC | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let tmpfs = Entry {
        destination: entry.destination.clone(),
        source: "tmpfs".into(),
        fstype: "tmpfs".into(),
        options: MountOptions {
            flags: base,
            propagation: entry.options.propagation.clone(),
            data: "mode=755".into(),
            ..MountOptions::default()
        },
    };
    mount::filesystem(root, &tmpfs)?;
    for hierarchy in &layout.v1 {
        let destination = entry.destination.join(&hierarchy.name);
        if context.cgroup_ns {
            let fresh = Entry {
                destination,
                source: "cgroup".into(),
                fstype: "cgroup".into(),
                options: MountOptions {
                    flags: base | (entry.options.flags & MsFlags::MS_RDONLY),
                    propagation: entry.options.propagation.clone(),
                    data: hierarchy.controllers.clone(),
                    ..MountOptions::default()
                },
            };
            mount::filesystem(root, &fresh)?;
        } else {
            let source = own_dir(entry, hierarchy)?;
            mount::bind(root, &own_bind(entry, source, destination))?;
        }
    }
    let dir = root.mkdir_all(&entry.destination, Mode::from_bits_truncate(0o755))?;
    for hierarchy in layout.v1.iter().filter(|h| h.name.contains(',')) {
        for controller in hierarchy.name.split(',') {
            match symlinkat(hierarchy.name.as_str(), dir.as_fd(), controller) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(errno) => {
                    let link = entry.destination.join(controller);
                    return Err(RootfsError::syscall(
                        "symlinkat",
                        root.host_path(&link),
                        errno,
                    ));
                }
            }
        }
    }
    if let Some(unified) = &layout.unified {
        let destination = entry.destination.join(&unified.name);
        mount_v2(root, entry, context, unified, &destination)?;
    }
    Ok(())
}

fn mount_v2(
    root: &Root,
    entry: &Entry,
    context: &Context,
    unified: &Hierarchy,
    destination: &Path,
) -> Result<(), RootfsError> {
    if context.cgroup_ns {
        let fresh = Entry {
            destination: destination.to_path_buf(),
            source: "cgroup2".into(),
            fstype: "cgroup2".into(),
            options: MountOptions {
                flags: entry.options.flags,
                propagation: entry.options.propagation.clone(),
                data: entry.options.data.clone(),
                ..MountOptions::default()
            },
        };
        match mount::filesystem(root, &fresh) {
            // As runc: e.g. a user namespace that does not own the cgroup namespace.
            Err(RootfsError::Mount {
                errno: Errno::EPERM | Errno::EBUSY,
                ..
            }) => {}
            other => return other,
        }
    }
    let source = own_dir(entry, unified)?;
    mount::bind(root, &own_bind(entry, source, destination.to_path_buf()))
}

/// A bind of the container's own cgroup directory with the entry's flags (`ro`, `nosuid` ...).
fn own_bind(entry: &Entry, source: PathBuf, destination: PathBuf) -> Entry {
    Entry {
        destination,
        source: source.to_string_lossy().into_owned(),
        fstype: "bind".into(),
        options: MountOptions {
            flags: entry.options.flags | MsFlags::MS_BIND | MsFlags::MS_REC,
            cleared: entry.options.cleared,
            propagation: entry.options.propagation.clone(),
            ..MountOptions::default()
        },
    }
}

fn own_dir(entry: &Entry, hierarchy: &Hierarchy) -> Result<PathBuf, RootfsError> {
    hierarchy.host_dir().ok_or_else(|| RootfsError::Cgroup {
        destination: entry.destination.clone(),
        reason: format!(
            "own cgroup {} is not visible in the {} mount at {} (root {})",
            hierarchy.own.display(),
            hierarchy.name,
            hierarchy.mount_point.display(),
            hierarchy.mount_root.display()
        ),
    })
}

fn read(path: &Path) -> Result<String, RootfsError> {
    std::fs::read_to_string(path).map_err(|source| RootfsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
90 80 0:32 / /run/rootfs/sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
91 27 0:32 /other /mnt/memory-elsewhere rw,relatime - cgroup cgroup rw,memory
";

    const HYBRID_CGROUP: &str = "\
12:net_cls,net_prio:/ctr
9:name=systemd:/system.slice/ctr
4:memory:/pod/ctr
2:cpu,cpuacct:/pod/ctr
0::/pod/ctr
";

    #[test]
    fn hybrid_layout() {
        let mounts = mountinfo::parse(HYBRID_MOUNTINFO);
        let layout = Layout::discover(&mounts, HYBRID_CGROUP, Path::new("/run/rootfs"));
        let names: Vec<&str> = layout.v1.iter().map(|h| h.name.as_str()).collect();
        // net_cls,net_prio is not mounted on this host: left out.
        assert_eq!(names, ["systemd", "memory", "cpu,cpuacct"]);
        assert_eq!(layout.v1[0].controllers, "name=systemd");
        assert_eq!(
            layout.v1[0].host_dir(),
            Some(PathBuf::from("/sys/fs/cgroup/systemd/system.slice/ctr"))
        );
        assert_eq!(
            layout.v1[1].host_dir(),
            Some(PathBuf::from("/sys/fs/cgroup/memory/pod/ctr"))
        );
        let unified = layout.unified.expect("unified");
        assert_eq!(unified.name, "unified");
        assert_eq!(
            unified.host_dir(),
            Some(PathBuf::from("/sys/fs/cgroup/unified/pod/ctr"))
        );
    }

    #[test]
    fn unified_layout() {
        let mounts = mountinfo::parse(
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        let layout = Layout::discover(&mounts, "0::/user.slice/ctr\n", Path::new("/rootfs"));
        assert!(layout.v1.is_empty());
        let unified = layout.unified.unwrap();
        assert_eq!(unified.controllers, "");
        assert_eq!(
            unified.host_dir(),
            Some(PathBuf::from("/sys/fs/cgroup/user.slice/ctr"))
        );
    }

    #[test]
    fn cgroup_outside_the_mount_root_has_no_host_dir() {
        let mounts = mountinfo::parse(
            "35 31 0:32 /kubepods /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
        );
        let layout = Layout::discover(&mounts, "4:memory:/system.slice\n", Path::new("/r"));
        assert_eq!(layout.v1[0].host_dir(), None);
        let layout = Layout::discover(&mounts, "4:memory:/kubepods/pod1\n", Path::new("/r"));
        assert_eq!(
            layout.v1[0].host_dir(),
            Some(PathBuf::from("/sys/fs/cgroup/memory/pod1"))
        );
    }
}
