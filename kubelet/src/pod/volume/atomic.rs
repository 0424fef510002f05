//! The atomic writer of API-data volumes (configMap, secret, downwardAPI, projected):
//! a payload is written into a fresh `..<timestamp>` directory, the `..data` symlink is
//! swapped to it by rename, and the names users see are symlinks into `..data`, so a
//! reader sees either the whole old payload or the whole new one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};

/// The symlink to the current payload directory.
pub const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";
const MAX_PATH: usize = 4096;
const MAX_NAME: usize = 255;

/// One file of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    /// The content.
    pub data: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
}

/// A payload: relative path → file.
pub type Payload = BTreeMap<String, FileProjection>;

/// Why a payload could not be written.
#[derive(Debug, thiserror::Error)]
pub enum AtomicError {
    /// A path of the payload is not a relative path inside the volume.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The file system refused.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// The step.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> AtomicError + 'a {
    move |source| AtomicError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Check a payload path as upstream does: relative, no `..` element, not starting with
/// `..`, and within the length limits.
pub fn validate_path(path: &str) -> Result<(), AtomicError> {
    let invalid = |reason| AtomicError::InvalidPath {
        path: path.to_string(),
        reason,
    };
    if path.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if path.len() > MAX_PATH {
        return Err(invalid("must be at most 4096 characters"));
    }
    if Path::new(path).is_absolute() {
        return Err(invalid("must be a relative path"));
    }
    if path.starts_with("..") {
        return Err(invalid("must not start with '..'"));
    }
    for part in path.split('/') {
        if part == ".." {
            return Err(invalid("must not contain '..'"));
        }
        if part.len() > MAX_NAME {
            return Err(invalid("each element must be at most 255 characters"));
        }
    }
    Ok(())
}

/// Write `payload` into the volume directory `dir` (created if missing). Returns whether
/// anything changed: an identical payload leaves the volume alone.
pub fn write(dir: &Path, payload: &Payload) -> Result<bool, AtomicError> {
    for path in payload.keys() {
        validate_path(path)?;
    }
    fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let data_link = dir.join(DATA_DIR);
    let old = fs::read_link(&data_link).ok();
    if let Some(old) = &old {
        if same_payload(&dir.join(old), payload) {
            return Ok(false);
        }
    }
    let fresh = new_payload_dir(dir)?;
    let fresh_name = fresh.file_name().map(PathBuf::from).unwrap_or_default();
    if let Err(e) = write_files(&fresh, payload) {
        let _ = fs::remove_dir_all(&fresh);
        return Err(e);
    }
    // The swap: a new symlink renamed over the old one replaces it in one step.
    let tmp = dir.join(DATA_DIR_TMP);
    let _ = fs::remove_file(&tmp);
    symlink(&fresh_name, &tmp).map_err(io_err("linking", &tmp))?;
    fs::rename(&tmp, &data_link).map_err(io_err("renaming to", &data_link))?;
    let tops: BTreeSet<String> = payload.keys().map(|p| top(p).to_string()).collect();
    for name in &tops {
        let link = dir.join(name);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_DIR).join(name), &link).map_err(io_err("linking", &link))?;
        }
    }
    remove_stale_links(dir, &tops)?;
    if let Some(old) = old.filter(|o| *o != fresh_name) {
        let old = dir.join(old);
        fs::remove_dir_all(&old).map_err(io_err("removing", &old))?;
    }
    Ok(true)
}

fn top(path: &str) -> &str {
    path.split('/')
        .find(|p| !p.is_empty() && *p != ".")
        .unwrap_or(path)
}

/// A directory `..<UTC time>.<n>` no one else has.
fn new_payload_dir(dir: &Path) -> Result<PathBuf, AtomicError> {
    let stamp = chrono::Utc::now().format("%Y_%m_%d_%H_%M_%S");
    for n in 0..1000u32 {
        let candidate = dir.join(format!("..{stamp}.{:03}{n}", std::process::id() % 1000));
        match fs::create_dir(&candidate) {
            Ok(()) => {
                fs::set_permissions(&candidate, fs::Permissions::from_mode(0o755))
                    .map_err(io_err("setting the mode of", &candidate))?;
                return Ok(candidate);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("creating", &candidate)(e)),
        }
    }
    Err(io_err("creating a payload directory in", dir)(
        io::Error::from(io::ErrorKind::AlreadyExists),
    ))
}

fn write_files(root: &Path, payload: &Payload) -> Result<(), AtomicError> {
    for (path, file) in payload {
        let target = root.join(clean(path));
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        }
        fs::write(&target, &file.data).map_err(io_err("writing", &target))?;
        fs::set_permissions(&target, fs::Permissions::from_mode(file.mode & 0o7777))
            .map_err(io_err("setting the mode of", &target))?;
    }
    Ok(())
}

fn clean(path: &str) -> PathBuf {
    Path::new(path)
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

fn same_payload(current: &Path, payload: &Payload) -> bool {
    let mut found = BTreeSet::new();
    if collect_files(current, current, &mut found).is_err() {
        return false;
    }
    let wanted: BTreeSet<PathBuf> = payload.keys().map(|p| clean(p)).collect();
    found == wanted
        && payload.iter().all(|(path, file)| {
            let p = current.join(clean(path));
            let mode = fs::metadata(&p).map(|m| m.permissions().mode() & 0o7777);
            fs::read(&p).is_ok_and(|d| d == file.data)
                && mode.is_ok_and(|m| m == file.mode & 0o7777)
        })
}

fn collect_files(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect_files(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.insert(rel.to_path_buf());
        }
    }
    Ok(())
}

/// Remove user-visible links of names the payload no longer has.
fn remove_stale_links(dir: &Path, keep: &BTreeSet<String>) -> Result<(), AtomicError> {
    for entry in fs::read_dir(dir).map_err(io_err("listing", dir))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") || keep.contains(&name) {
            continue;
        }
        let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
        if is_link {
            let path = entry.path();
            fs::remove_file(&path).map_err(io_err("removing", &path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn updates_swap_data_and_remove_the_old_payload() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        let first = Payload::from([
            ("a".to_string(), file("one", 0o644)),
            ("sub/b".to_string(), file("two", 0o400)),
        ]);
        assert!(write(&dir, &first).unwrap());
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "one");
        assert_eq!(fs::read_to_string(dir.join("sub/b")).unwrap(), "two");
        assert!(fs::symlink_metadata(dir.join("a")).unwrap().is_symlink());
        assert_eq!(fs::read_link(dir.join("a")).unwrap(), Path::new("..data/a"));
        let mode = fs::metadata(dir.join("sub/b"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400);
        let old = fs::read_link(dir.join(DATA_DIR)).unwrap();

        assert!(!write(&dir, &first).unwrap(), "same payload: no change");
        assert_eq!(fs::read_link(dir.join(DATA_DIR)).unwrap(), old);

        let second = Payload::from([("c".to_string(), file("three", 0o644))]);
        assert!(write(&dir, &second).unwrap());
        let new = fs::read_link(dir.join(DATA_DIR)).unwrap();
        assert_ne!(new, old);
        assert!(
            !dir.join(&old).exists(),
            "the old payload directory is gone"
        );
        assert_eq!(fs::read_to_string(dir.join("c")).unwrap(), "three");
        let mut wanted = vec![
            "..data".to_string(),
            new.to_string_lossy().into_owned(),
            "c".into(),
        ];
        wanted.sort();
        assert_eq!(entries(&dir), wanted);
    }

    #[test]
    fn mode_changes_alone_rewrite() {
        let tmp = tempfile::tempdir().unwrap();
        let p = |mode| Payload::from([("a".to_string(), file("x", mode))]);
        assert!(write(tmp.path(), &p(0o644)).unwrap());
        assert!(write(tmp.path(), &p(0o600)).unwrap());
        let mode = fs::metadata(tmp.path().join("a"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn paths_are_validated() {
        for bad in ["", "/abs", "../x", "a/../b", "..hidden", &"x".repeat(256)] {
            assert!(validate_path(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "a/b/c", "a..b", ".x"] {
            assert!(validate_path(good).is_ok(), "{good:?} refused");
        }
        let tmp = tempfile::tempdir().unwrap();
        let bad = Payload::from([("../escape".to_string(), file("x", 0o644))]);
        assert!(write(tmp.path(), &bad).is_err());
        assert!(!tmp.path().parent().unwrap().join("escape").exists());
    }
}
