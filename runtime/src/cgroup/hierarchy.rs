//! Which cgroup hierarchies the host has mounted, and so whether it runs cgroup v1, v2 or both.
//!
//! Everything here is pure: it reads a mount table's text (`/proc/self/mountinfo`) and the
//! cgroup root it is given, so tests describe any host in a string.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CgroupError;

/// The v1 controllers a mount's super options may name (besides `name=<hierarchy>`).
const V1_CONTROLLERS: &[&str] = &[
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "misc",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
];

/// How the host lays out its cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// cgroup v1 only: each mount of the root's subdirectories is a hierarchy of controllers.
    Legacy,
    /// cgroup v1 controllers, plus a cgroup v2 hierarchy mounted below the root (typically
    /// `/sys/fs/cgroup/unified`) that holds few or no controllers. Containers join both, as runc
    /// does.
    Hybrid,
    /// cgroup v2 only, mounted at the root itself.
    Unified,
}

/// The cgroup version of one hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    /// A cgroup v1 hierarchy (filesystem type `cgroup`).
    V1,
    /// The cgroup v2 hierarchy (filesystem type `cgroup2`).
    V2,
}

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// v1 or v2.
    pub version: Version,
    /// v1: the controllers and `name=` of the mount, in mount option order (`["cpu"]`,
    /// `["cpu", "cpuacct"]`, `["name=systemd"]`). v2: empty.
    pub controllers: Vec<String>,
    /// Where the hierarchy is mounted, e.g. `/sys/fs/cgroup/memory`.
    pub mount_point: PathBuf,
    /// Which cgroup of the hierarchy the mount shows: `/` normally, a deeper path when the
    /// caller runs inside a container that mounted only its own cgroup.
    pub mount_root: PathBuf,
}

impl Hierarchy {
    /// The hierarchy's name as `/proc/<pid>/cgroup` spells it: the controllers joined by commas
    /// (`cpu,cpuacct`, `name=systemd`), or `""` for cgroup v2.
    pub fn name(&self) -> String {
        self.controllers.join(",")
    }

    /// Whether this hierarchy carries the named v1 controller.
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }

    /// Whether `names` (a `/proc/<pid>/cgroup` controller list) denotes this hierarchy.
    pub(crate) fn is_named(&self, names: &str) -> bool {
        let mut theirs: Vec<&str> = names.split(',').filter(|n| !n.is_empty()).collect();
        let mut ours: Vec<&str> = self.controllers.iter().map(String::as_str).collect();
        theirs.sort_unstable();
        ours.sort_unstable();
        theirs == ours
    }
}

/// The host's cgroup layout: its mode and the hierarchies a container joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// v1, hybrid or v2.
    pub mode: Mode,
    /// Every hierarchy a container joins, in mount table order. In [`Mode::Unified`] this is
    /// the single v2 hierarchy; in [`Mode::Hybrid`] the v2 hierarchy comes last.
    pub hierarchies: Vec<Hierarchy>,
}

impl Layout {
    /// The v1 hierarchy that carries `controller`, if one is mounted.
    pub fn v1(&self, controller: &str) -> Option<&Hierarchy> {
        self.hierarchies
            .iter()
            .find(|h| h.version == Version::V1 && h.has(controller))
    }

    /// The v2 hierarchy, if one is mounted.
    pub fn v2(&self) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.version == Version::V2)
    }
}

/// Tell the host's cgroup layout from its mount table (the text of `/proc/self/mountinfo`)
/// and the cgroup root (normally `/sys/fs/cgroup`). Only cgroup mounts at or below `root`
/// count, so mounts inside container root filesystems are ignored.
///
/// - cgroup2 mounted at `root` itself: [`Mode::Unified`] (any v1 mounts are ignored);
/// - v1 mounts below `root` and a cgroup2 mount below it too: [`Mode::Hybrid`];
/// - v1 mounts only: [`Mode::Legacy`].
///
/// A hierarchy mounted twice is listed once (the first mount wins).
pub fn detect(mountinfo: &str, root: &Path) -> Result<Layout, CgroupError> {
    let mounts: Vec<Hierarchy> = mountinfo
        .lines()
        .filter_map(parse_line)
        .filter(|h| h.mount_point.starts_with(root))
        .collect();

    if let Some(unified) = mounts
        .iter()
        .find(|h| h.version == Version::V2 && h.mount_point == root)
    {
        return Ok(Layout {
            mode: Mode::Unified,
            hierarchies: vec![unified.clone()],
        });
    }

    let mut hierarchies: Vec<Hierarchy> = Vec::new();
    for mount in mounts
        .iter()
        .filter(|h| h.version == Version::V1 && h.mount_point != root)
    {
        if !hierarchies
            .iter()
            .any(|h| h.controllers == mount.controllers)
        {
            hierarchies.push(mount.clone());
        }
    }
    if hierarchies.is_empty() {
        return Err(CgroupError::NoCgroupMounts {
            root: root.to_path_buf(),
        });
    }
    let unified = mounts
        .iter()
        .find(|h| h.version == Version::V2 && h.mount_point != root);
    let mode = match unified {
        Some(unified) => {
            hierarchies.push(unified.clone());
            Mode::Hybrid
        }
        None => Mode::Legacy,
    };
    Ok(Layout { mode, hierarchies })
}

/// Parse one mountinfo line (see proc(5)) into a hierarchy, if it is a cgroup mount:
/// `36 25 0:32 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory`.
fn parse_line(line: &str) -> Option<Hierarchy> {
    let (mount, fs) = line.split_once(" - ")?;
    let mut mount = mount.split(' ');
    let mount_root = mount.nth(3)?;
    let mount_point = mount.next()?;
    let mut fs = fs.split(' ');
    let fs_type = fs.next()?;
    let super_options = fs.nth(1).unwrap_or("");

    let (version, controllers) = match fs_type {
        "cgroup2" => (Version::V2, Vec::new()),
        "cgroup" => {
            let controllers: Vec<String> = super_options
                .split(',')
                .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                .map(str::to_owned)
                .collect();
            if controllers.is_empty() {
                return None;
            }
            (Version::V1, controllers)
        }
        _ => return None,
    };
    Some(Hierarchy {
        version,
        controllers,
        mount_point: PathBuf::from(unescape(mount_point)),
        mount_root: PathBuf::from(unescape(mount_root)),
    })
}

/// Undo mountinfo's octal escapes (`\040` for a space, `\011` tab, `\012` newline, `\134` `\`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let digits = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(digits, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This development host: v1 controllers mounted one per directory (cpu and cpuacct apart),
    /// and cgroup2 at /sys/fs/cgroup/unified.
    const HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const UNIFIED: &str = "\
29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    /// A classic systemd v1 host: cpu and cpuacct co-mounted, no cgroup2.
    const LEGACY: &str = "\
31 23 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
34 31 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:16 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,nosuid shared:17 - cgroup cgroup rw,memory
99 88 0:32 / /var/lib/ctr/rootfs/sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
";

    fn root() -> &'static Path {
        Path::new("/sys/fs/cgroup")
    }

    #[test]
    fn hybrid_host_lists_every_v1_mount_then_the_unified_one() {
        let layout = detect(HYBRID, root()).unwrap();
        assert_eq!(layout.mode, Mode::Hybrid);
        let names: Vec<String> = layout.hierarchies.iter().map(Hierarchy::name).collect();
        assert_eq!(
            names,
            [
                "cpu",
                "cpuacct",
                "cpuset",
                "memory",
                "devices",
                "pids",
                "name=systemd",
                ""
            ]
        );
        assert_eq!(
            layout.v1("cpu").unwrap().mount_point,
            Path::new("/sys/fs/cgroup/cpu")
        );
        assert_eq!(
            layout.v2().unwrap().mount_point,
            Path::new("/sys/fs/cgroup/unified")
        );
    }

    #[test]
    fn cgroup2_at_the_root_is_unified() {
        let layout = detect(UNIFIED, root()).unwrap();
        assert_eq!(layout.mode, Mode::Unified);
        assert_eq!(layout.hierarchies.len(), 1);
        assert_eq!(layout.hierarchies[0].version, Version::V2);
        assert_eq!(layout.hierarchies[0].mount_root, Path::new("/"));
    }

    #[test]
    fn co_mounted_controllers_form_one_hierarchy_and_outside_mounts_are_ignored() {
        let layout = detect(LEGACY, root()).unwrap();
        assert_eq!(layout.mode, Mode::Legacy);
        assert_eq!(layout.hierarchies.len(), 2);
        let cpu = layout.v1("cpuacct").unwrap();
        assert_eq!(cpu.controllers, ["cpu", "cpuacct"]);
        assert!(cpu.is_named("cpuacct,cpu"));
        assert!(!cpu.is_named("cpu"));
    }

    #[test]
    fn no_cgroup_mount_under_the_root_is_an_error() {
        let err = detect(LEGACY, Path::new("/elsewhere")).unwrap_err();
        assert!(matches!(err, CgroupError::NoCgroupMounts { .. }), "{err}");
        assert!(err.to_string().contains("/elsewhere"));
    }

    #[test]
    fn mount_roots_and_escaped_paths_are_kept() {
        let line = "50 31 0:32 /docker/abc /sys/fs/cgroup/my\\040mem rw - cgroup cgroup rw,memory";
        let h = parse_line(line).unwrap();
        assert_eq!(h.mount_root, Path::new("/docker/abc"));
        assert_eq!(h.mount_point, Path::new("/sys/fs/cgroup/my mem"));
    }

    #[test]
    fn cgroup_mounts_without_known_controllers_are_skipped() {
        let line = "50 31 0:40 / /sys/fs/cgroup/odd rw - cgroup cgroup rw,xattr";
        assert_eq!(parse_line(line), None);
    }
}
