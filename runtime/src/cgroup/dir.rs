//! Cgroup directories: create them (remembering which), list their processes, remove them.
//!
//! Done with plain file-system calls rather than cgroups-rs: its `create` uses
//! `create_dir_all`, which does not say which directories it made, and its `delete` removes
//! whatever it is pointed at, while a container must never remove a parent it did not create.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};

use super::CgroupError;

/// Create `dir` and its missing ancestors below `mount_point`, appending each directory this
/// call made to `created` (outermost first), even when it then fails, so the caller can undo.
/// Directories that already exist (or that a concurrent caller makes first) are not appended.
pub fn create(
    dir: &Path,
    mount_point: &Path,
    created: &mut Vec<PathBuf>,
) -> Result<(), CgroupError> {
    let below = dir.strip_prefix(mount_point).unwrap_or(dir);
    let mut path = mount_point.to_path_buf();
    for component in below.components() {
        path.push(component);
        match fs::create_dir(&path) {
            Ok(()) => created.push(path.clone()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(source) => return Err(CgroupError::CreateDir { path, source }),
        }
    }
    Ok(())
}

/// Remove the directories `create` made (`created`, outermost first), innermost first.
///
/// The innermost one is the container's cgroup: it goes with any sub-cgroups the container
/// made inside it; while processes are in it, `rmdir` fails with `EBUSY` (see
/// [`CgroupError::is_busy`]) and the caller may retry. The ancestors go only if they are now
/// empty: a sibling container may have been created in them since. Directories already gone
/// are fine.
pub fn remove(created: &[PathBuf]) -> Result<(), CgroupError> {
    let Some((own, ancestors)) = created.split_last() else {
        return Ok(());
    };
    remove_tree(own).map_err(|(path, source)| CgroupError::Remove { path, source })?;
    for dir in ancestors.iter().rev() {
        match fs::remove_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::ENOTEMPTY)) => break,
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: dir.clone(),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// `rmdir` a cgroup and, if that fails, its sub-cgroups first (a cgroup directory holds only
/// interface files, which `rmdir` ignores, and sub-cgroups).
fn remove_tree(dir: &Path) -> Result<(), (PathBuf, io::Error)> {
    let first = match fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => e,
    };
    let mut had_children = false;
    for entry in fs::read_dir(dir).map_err(|e| (dir.to_path_buf(), e))? {
        let entry = entry.map_err(|e| (dir.to_path_buf(), e))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            had_children = true;
            remove_tree(&entry.path())?;
        }
    }
    if !had_children {
        return Err((dir.to_path_buf(), first));
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err((dir.to_path_buf(), e)),
    }
}

/// Add the processes in `dir` and in every cgroup below it to `pids`. A directory that does
/// not exist (any more) has none.
pub fn collect_pids(dir: &Path, pids: &mut BTreeSet<i32>) -> Result<(), CgroupError> {
    let file = dir.join("cgroup.procs");
    let text = match fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(CgroupError::Read { file, source }),
    };
    pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Read {
                file: dir.to_path_buf(),
                source,
            })
        }
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_pids(&entry.path(), pids)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_records_only_the_directories_it_made() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("pods")).unwrap();
        let mut created = Vec::new();
        create(&tmp.path().join("pods/p1/c1"), tmp.path(), &mut created).unwrap();
        assert_eq!(
            created,
            [tmp.path().join("pods/p1"), tmp.path().join("pods/p1/c1")]
        );

        let mut again = Vec::new();
        create(&tmp.path().join("pods/p1/c1"), tmp.path(), &mut again).unwrap();
        assert!(again.is_empty());
    }

    #[test]
    fn remove_takes_sub_cgroups_but_stops_at_shared_ancestors() {
        let tmp = tempfile::tempdir().unwrap();
        let mut created = Vec::new();
        create(&tmp.path().join("pod/c1"), tmp.path(), &mut created).unwrap();
        fs::create_dir_all(tmp.path().join("pod/c1/nested/deeper")).unwrap();
        fs::create_dir(tmp.path().join("pod/c2")).unwrap();

        remove(&created).unwrap();
        assert!(!tmp.path().join("pod/c1").exists());
        assert!(
            tmp.path().join("pod/c2").exists(),
            "a sibling keeps the pod"
        );

        remove(&created).unwrap();
    }

    #[test]
    fn remove_reports_what_it_cannot_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let own = tmp.path().join("c1");
        fs::create_dir(&own).unwrap();
        fs::write(own.join("not-a-cgroup-file"), "x").unwrap();
        let err = remove(std::slice::from_ref(&own)).unwrap_err();
        assert!(
            err.to_string().contains(&own.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn pids_are_collected_from_the_whole_subtree() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("c/sub")).unwrap();
        fs::write(tmp.path().join("c/cgroup.procs"), "12\n7\n").unwrap();
        fs::write(tmp.path().join("c/sub/cgroup.procs"), "99\n12\n").unwrap();
        let mut pids = BTreeSet::new();
        collect_pids(&tmp.path().join("c"), &mut pids).unwrap();
        collect_pids(&tmp.path().join("gone"), &mut pids).unwrap();
        assert_eq!(pids.into_iter().collect::<Vec<_>>(), [7, 12, 99]);
    }
}
