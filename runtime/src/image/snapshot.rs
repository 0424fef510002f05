//! Container root filesystems: an overlayfs of an image's layers plus a per-container upper directory.

use super::Result;
use std::path::{Path, PathBuf};

/// A prepared root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The container id.
    pub id: String,
    /// The image name it was made from (so the image cannot be removed under it).
    pub image: String,
    /// The mounted root filesystem (the bundle's `root.path`).
    pub rootfs: PathBuf,
    /// Whether `rootfs` is an overlayfs mount (false: a private copy of the layers).
    pub overlay: bool,
}

/// Snapshots under `<store root>/snapshots`.
#[derive(Debug, Clone)]
pub struct Snapshotter {
    root: PathBuf,
}

impl Snapshotter {
    /// The snapshotter under `root` (= `<store root>/snapshots`).
    pub fn new(root: &Path) -> Snapshotter {
        Snapshotter {
            root: root.to_path_buf(),
        }
    }

    /// Mounts `layers` (bottom first) with a fresh upper directory as container `id`'s root.
    pub fn prepare(&self, id: &str, image: &str, layers: &[PathBuf]) -> Result<Snapshot> {
        let _ = (&self.root, id, image, layers);
        todo!("snapshot: prepare")
    }

    /// Unmounts and deletes snapshot `id`; a no-op if absent.
    pub fn remove(&self, id: &str) -> Result<()> {
        let _ = id;
        todo!("snapshot: remove")
    }

    /// All snapshots present.
    pub fn list(&self) -> Result<Vec<Snapshot>> {
        todo!("snapshot: list")
    }
}
