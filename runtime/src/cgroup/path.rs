//! Where a container's cgroup directory lies in each hierarchy, from the OCI `cgroupsPath`.
//!
//! Follows runc's cgroupfs driver: an absolute `cgroupsPath` is taken from each hierarchy's
//! root; a relative one from the cgroup the calling process is in (read from
//! `/proc/self/cgroup`), so a runtime started inside a cgroup keeps its containers inside it;
//! no `cgroupsPath` means the relative path `<id>`. Pure functions over text and paths.

use std::path::{Component, Path, PathBuf};

use super::hierarchy::{Hierarchy, Version};
use super::CgroupError;

/// A cleaned `cgroupsPath`: which base it is relative to, and the path below that base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InnerPath {
    /// `true`: below each hierarchy's root; `false`: below the caller's own cgroup.
    pub absolute: bool,
    /// The path below the base: relative, without `.` or `..`, never empty.
    pub path: PathBuf,
}

impl InnerPath {
    /// Clean `cgroups_path` (or use `<id>` when there is none, or it is empty, as runc does).
    ///
    /// As runc's `CleanPath`, `..` can never climb above the base: `../x` becomes `x` and
    /// `/a/../../b` becomes `/b`. A path that cleans to the base itself is rejected, because
    /// the container must have a cgroup of its own to be limited and removed.
    pub fn new(cgroups_path: Option<&Path>, id: &str) -> Result<InnerPath, CgroupError> {
        let requested = cgroups_path.filter(|p| !p.as_os_str().is_empty());
        let Some(requested) = requested else {
            if id.is_empty() || id.contains('/') || id == "." || id == ".." {
                return Err(CgroupError::InvalidId { id: id.to_owned() });
            }
            return Ok(InnerPath {
                absolute: false,
                path: PathBuf::from(id),
            });
        };
        let mut path = PathBuf::new();
        for component in requested.components() {
            match component {
                Component::Normal(name) => path.push(name),
                Component::ParentDir => {
                    path.pop();
                }
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        if path.as_os_str().is_empty() {
            return Err(CgroupError::InvalidPath {
                path: requested.to_path_buf(),
            });
        }
        Ok(InnerPath {
            absolute: requested.is_absolute(),
            path,
        })
    }
}

/// One line of `/proc/<pid>/cgroup`: `4:memory:/user.slice` or `0::/user.slice/x.scope`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnCgroup {
    /// The hierarchy's controllers as listed (`memory`, `cpu,cpuacct`, `name=systemd`; `""`
    /// for cgroup v2).
    pub names: String,
    /// The cgroup's path from the hierarchy's root.
    pub path: PathBuf,
}

/// Parse the text of `/proc/<pid>/cgroup`. The path is everything after the second colon, as
/// it may itself contain colons.
pub fn parse_own_cgroups(text: &str) -> Vec<OwnCgroup> {
    text.lines()
        .filter_map(|line| {
            let (_id, rest) = line.split_once(':')?;
            let (names, path) = rest.split_once(':')?;
            Some(OwnCgroup {
                names: names.to_owned(),
                path: PathBuf::from(path),
            })
        })
        .collect()
}

/// The container's directory in `hierarchy`.
///
/// `own` is the caller's `/proc/self/cgroup` (only consulted for relative paths) and
/// `own_file` where it was read from, for the error message. On cgroup v2, when the caller
/// sits in a systemd `.scope`, the scope's parent is used instead, as runc does: the scope
/// holds processes, so the v2 "no internal processes" rule would forbid enabling controllers
/// for a child of it.
pub fn directory(
    hierarchy: &Hierarchy,
    inner: &InnerPath,
    own: &[OwnCgroup],
    own_file: &Path,
) -> Result<PathBuf, CgroupError> {
    let mut dir = hierarchy.mount_point.clone();
    if !inner.absolute {
        let names = hierarchy.name();
        let mine = own
            .iter()
            .find(|o| hierarchy.is_named(&o.names))
            .ok_or_else(|| CgroupError::OwnCgroupUnknown {
                path: own_file.to_path_buf(),
                hierarchy: names,
            })?;
        // The mount shows the hierarchy from `mount_root` down (inside a container, only
        // the container's own cgroup), so the caller's path is taken relative to it.
        let mut base = mine
            .path
            .strip_prefix(&hierarchy.mount_root)
            .unwrap_or(&mine.path)
            .to_path_buf();
        if hierarchy.version == Version::V2 && base.extension().is_some_and(|e| e == "scope") {
            base.pop();
        }
        for component in base.components() {
            if let Component::Normal(name) = component {
                dir.push(name);
            }
        }
    }
    dir.push(&inner.path);
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hierarchy(version: Version, controllers: &[&str], mount: &str) -> Hierarchy {
        Hierarchy {
            version,
            controllers: controllers.iter().map(|c| c.to_string()).collect(),
            mount_point: PathBuf::from(mount),
            mount_root: PathBuf::from("/"),
        }
    }

    const OWN: &str = "\
9:name=systemd:/
4:memory:/process_api/8f5c
2:cpu,cpuacct:/
0::/user.slice/user-0.slice/session-1.scope
";

    fn resolve(h: &Hierarchy, path: Option<&str>, id: &str) -> PathBuf {
        let inner = InnerPath::new(path.map(Path::new), id).unwrap();
        directory(
            h,
            &inner,
            &parse_own_cgroups(OWN),
            Path::new("/proc/self/cgroup"),
        )
        .unwrap()
    }

    #[test]
    fn no_path_means_id_below_the_callers_cgroup() {
        let memory = hierarchy(Version::V1, &["memory"], "/sys/fs/cgroup/memory");
        assert_eq!(
            resolve(&memory, None, "web"),
            Path::new("/sys/fs/cgroup/memory/process_api/8f5c/web")
        );
        let cpu = hierarchy(
            Version::V1,
            &["cpuacct", "cpu"],
            "/sys/fs/cgroup/cpu,cpuacct",
        );
        assert_eq!(
            resolve(&cpu, None, "web"),
            Path::new("/sys/fs/cgroup/cpu,cpuacct/web")
        );
    }

    #[test]
    fn an_empty_path_is_no_path() {
        let inner = InnerPath::new(Some(Path::new("")), "web").unwrap();
        assert_eq!(inner, InnerPath::new(None, "web").unwrap());
    }

    #[test]
    fn absolute_paths_start_at_each_hierarchys_root() {
        let memory = hierarchy(Version::V1, &["memory"], "/sys/fs/cgroup/memory");
        assert_eq!(
            resolve(&memory, Some("/kubepods/pod1/c1"), "c1"),
            Path::new("/sys/fs/cgroup/memory/kubepods/pod1/c1")
        );
    }

    #[test]
    fn relative_paths_start_at_the_callers_cgroup_and_v2_skips_its_scope() {
        let unified = hierarchy(Version::V2, &[], "/sys/fs/cgroup");
        assert_eq!(
            resolve(&unified, Some("pods/c1"), "c1"),
            Path::new("/sys/fs/cgroup/user.slice/user-0.slice/pods/c1")
        );
        let systemd = hierarchy(Version::V1, &["name=systemd"], "/sys/fs/cgroup/systemd");
        assert_eq!(
            resolve(&systemd, Some("pods/c1"), "c1"),
            Path::new("/sys/fs/cgroup/systemd/pods/c1")
        );
    }

    #[test]
    fn dot_dot_never_climbs_above_the_base() {
        let inner = InnerPath::new(Some(Path::new("../../etc/./x/..")), "id").unwrap();
        assert_eq!(
            inner,
            InnerPath {
                absolute: false,
                path: PathBuf::from("etc")
            }
        );
        let inner = InnerPath::new(Some(Path::new("/a/../../b")), "id").unwrap();
        assert!(inner.absolute);
        assert_eq!(inner.path, Path::new("b"));
    }

    #[test]
    fn paths_naming_no_cgroup_of_their_own_are_rejected() {
        for bad in ["/", ".", "..", "a/.."] {
            let err = InnerPath::new(Some(Path::new(bad)), "id").unwrap_err();
            assert!(
                matches!(err, CgroupError::InvalidPath { .. }),
                "{bad}: {err}"
            );
        }
        for bad in ["", ".", "..", "a/b"] {
            let err = InnerPath::new(None, bad).unwrap_err();
            assert!(matches!(err, CgroupError::InvalidId { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn mount_root_is_stripped_from_the_callers_path() {
        let mut memory = hierarchy(Version::V1, &["memory"], "/sys/fs/cgroup/memory");
        memory.mount_root = PathBuf::from("/process_api");
        assert_eq!(
            resolve(&memory, None, "c"),
            Path::new("/sys/fs/cgroup/memory/8f5c/c")
        );
    }

    #[test]
    fn a_hierarchy_missing_from_proc_self_cgroup_is_an_error() {
        let pids = hierarchy(Version::V1, &["pids"], "/sys/fs/cgroup/pids");
        let inner = InnerPath::new(None, "c").unwrap();
        let err = directory(
            &pids,
            &inner,
            &parse_own_cgroups(OWN),
            Path::new("/x/cgroup"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("\"pids\""), "{err}");
        assert!(err.to_string().contains("/x/cgroup"), "{err}");
    }

    #[test]
    fn paths_with_colons_survive_parsing() {
        let own = parse_own_cgroups("2:cpu,cpuacct:/system.slice/cri-containerd:96b3\n");
        assert_eq!(own[0].names, "cpu,cpuacct");
        assert_eq!(own[0].path, Path::new("/system.slice/cri-containerd:96b3"));
    }
}
