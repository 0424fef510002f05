//! How a new container process enters its cgroups without the kernel's cgroup-wide lock.
//!
//! Writing a PID to `cgroup.procs` moves a whole thread group, so the kernel takes the global
//! `cgroup_threadgroup_rwsem` for writing; taking that per-CPU semaphore for writing waits for
//! an RCU grace period (10-20 ms on a busy host: about half of a `run` of `/bin/true`). A new
//! process can instead be placed in ways that only take it for reading, or not at all:
//!
//! - **v2**: `clone3` with `CLONE_INTO_CGROUP` creates the child in the container's cgroup
//!   (`fork` holds the semaphore for reading anyway).
//! - **v1**: the child, still single-threaded, writes `0` (the calling thread) to each
//!   hierarchy's `tasks` file. Moving only the caller needs no thread-group stability, so the
//!   kernel skips the semaphore (`cgroup_procs_write_start` in kernel/cgroup/cgroup.c); with
//!   one thread, the whole process has then moved.
//!
//! Either way the process is in every hierarchy of its cgroup before it does anything of the
//! container's, as when the runtime moved it: [`Entry::join_self`] is the child's first step.
//! When `clone3` is not available (old kernels, seccomp filters that refuse it) the child
//! writes `0` to the v2 `cgroup.procs` itself: slower, same result.

use std::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use super::{Cgroup, CgroupError, Version};

/// The ways into one container's cgroup, prepared before the clone (the child only writes).
#[derive(Debug)]
pub struct Entry {
    /// The v2 cgroup directory, open for `CLONE_INTO_CGROUP`.
    v2_dir: Option<OwnedFd>,
    /// The v2 `cgroup.procs`, written by the child if the clone did not place it.
    v2_procs: Option<PathBuf>,
    /// Each v1 hierarchy's `tasks` file.
    v1_tasks: Vec<PathBuf>,
}

impl Cgroup {
    /// Open the ways into this cgroup, for a process about to be cloned.
    pub fn entry(&self) -> Result<Entry, CgroupError> {
        let mut entry = Entry {
            v2_dir: None,
            v2_procs: None,
            v1_tasks: Vec::new(),
        };
        for placement in self.placements() {
            match placement.version {
                Version::V1 => entry.v1_tasks.push(placement.path.join("tasks")),
                Version::V2 => {
                    let dir =
                        fs::File::open(&placement.path).map_err(|source| CgroupError::OpenDir {
                            path: placement.path.clone(),
                            source,
                        })?;
                    entry.v2_dir = Some(dir.into());
                    entry.v2_procs = Some(placement.path.join("cgroup.procs"));
                }
            }
        }
        Ok(entry)
    }
}

impl Entry {
    /// The v2 directory to pass to `clone3(CLONE_INTO_CGROUP)`, if the cgroup has one.
    pub fn clone_target(&self) -> Option<BorrowedFd<'_>> {
        self.v2_dir.as_ref().map(AsFd::as_fd)
    }

    /// In the child: `clone3` put it in the v2 cgroup, so [`Entry::join_self`] need not.
    pub fn placed_by_clone(&mut self) {
        self.v2_procs = None;
    }

    /// In the single-threaded child, first thing: join the v1 hierarchies (and v2, unless the
    /// clone did). Writing `0` names the caller, whatever PID namespace it is in.
    pub fn join_self(&self) -> Result<(), CgroupError> {
        for file in self.v1_tasks.iter().chain(&self.v2_procs) {
            fs::write(file, "0").map_err(|source| CgroupError::JoinSelf {
                file: file.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Mode, Placement};
    use super::*;

    /// A hybrid cgroup in a temp dir: v1 `cpu` and `memory`, and the unified hierarchy.
    fn hybrid(root: &Path) -> Cgroup {
        let placement = |hierarchy: &str, dir: &str, version| {
            let path = root.join(dir).join("c1");
            fs::create_dir_all(&path).unwrap();
            Placement {
                hierarchy: hierarchy.into(),
                version,
                path: path.clone(),
                created: vec![path],
            }
        };
        Cgroup {
            mode: Mode::Hybrid,
            placements: vec![
                placement("cpu", "cpu", Version::V1),
                placement("memory", "memory", Version::V1),
                placement("", "unified", Version::V2),
            ],
        }
    }

    fn read(root: &Path, file: &str) -> Option<String> {
        fs::read_to_string(root.join(file)).ok()
    }

    #[test]
    fn the_child_names_itself_in_every_v1_tasks_file_and_in_v2_without_clone3() {
        let tmp = tempfile::tempdir().unwrap();
        let entry = hybrid(tmp.path()).entry().unwrap();
        assert!(entry.clone_target().is_some());
        entry.join_self().unwrap();
        for file in ["cpu/c1/tasks", "memory/c1/tasks", "unified/c1/cgroup.procs"] {
            assert_eq!(read(tmp.path(), file).as_deref(), Some("0"), "{file}");
        }
        // Thread-level files only: a v1 cgroup.procs write takes the lock this avoids.
        assert_eq!(read(tmp.path(), "cpu/c1/cgroup.procs"), None);
    }

    #[test]
    fn a_child_placed_by_clone3_leaves_v2_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let mut entry = hybrid(tmp.path()).entry().unwrap();
        entry.placed_by_clone();
        entry.join_self().unwrap();
        assert_eq!(read(tmp.path(), "memory/c1/tasks").as_deref(), Some("0"));
        assert_eq!(read(tmp.path(), "unified/c1/cgroup.procs"), None);
    }

    #[test]
    fn a_missing_cgroup_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let cgroup = hybrid(tmp.path());
        let entry = cgroup.entry().unwrap();
        fs::remove_dir_all(tmp.path().join("memory")).unwrap();
        let err = entry.join_self().unwrap_err().to_string();
        assert!(err.contains("memory/c1/tasks"), "{err}");
    }

    #[test]
    fn a_v1_only_cgroup_has_nothing_to_clone_into() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cgroup = hybrid(tmp.path());
        cgroup.placements.pop();
        cgroup.mode = Mode::Legacy;
        assert!(cgroup.entry().unwrap().clone_target().is_none());
    }
}
