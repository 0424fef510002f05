//! The reference index: normalised image names → [`Image`] records, in one JSON file shared safely between processes.

use super::{Image, Result};
use std::path::{Path, PathBuf};

/// `<store root>/images.json`, read and rewritten (temp file + rename) under an
/// exclusive `flock` on `<store root>/lock`, so concurrent pulls never lose a record.
#[derive(Debug, Clone)]
pub struct Index {
    path: PathBuf,
    lock: PathBuf,
}

impl Index {
    /// The index of the store under `root`.
    pub fn new(root: &Path) -> Index {
        Index {
            path: root.join("images.json"),
            lock: root.join("lock"),
        }
    }

    /// All records, sorted by name.
    pub fn list(&self) -> Result<Vec<Image>> {
        let _ = (&self.path, &self.lock);
        todo!("index: list")
    }

    /// The record named `name` (normalised).
    pub fn get(&self, name: &str) -> Result<Option<Image>> {
        let _ = name;
        todo!("index: get")
    }

    /// Runs `f` on all records under the lock and saves what it leaves.
    pub fn update<T>(&self, f: impl FnOnce(&mut Vec<Image>) -> Result<T>) -> Result<T> {
        let _ = f;
        todo!("index: update")
    }
}
