//! [`Store`]: the image store as the CLI and the kubelet see it — images by name, layers, container roots.

use super::content::ContentStore;
use super::index::Index;
use super::snapshot::Snapshot;
use super::{Reference, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The default store root.
pub const DEFAULT_ROOT: &str = "/var/lib/peapod";

/// One layer of a stored image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Layer {
    /// Digest of the blob as stored (compressed), `sha256:…`.
    pub digest: String,
    /// Digest of the uncompressed tar (`rootfs.diff_ids` in the config), `sha256:…`;
    /// names the unpacked directory.
    pub diff_id: String,
    /// The blob's media type (tar, tar+gzip, tar+zstd; OCI or Docker).
    pub media_type: String,
    /// Size of the blob in bytes.
    pub size: u64,
}

/// A stored image: what a name resolved to when it was pulled or imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// The normalised name, e.g. `docker.io/library/nginx:latest`.
    pub name: String,
    /// Digest of what the name pointed at (an index or a manifest): the repo digest.
    pub digest: String,
    /// Digest of the platform manifest whose layers are used.
    pub manifest: String,
    /// Digest of the image config blob: the image id.
    pub config: String,
    /// Layers, bottom first.
    pub layers: Vec<Layer>,
    /// When it was stored, RFC 3339.
    pub stored_at: String,
}

impl Image {
    /// The short image id as `peapod images` shows it (12 hex digits of the config digest).
    pub fn short_id(&self) -> &str {
        let hex = self.config.strip_prefix("sha256:").unwrap_or(&self.config);
        &hex[..hex.len().min(12)]
    }

    /// Total size of the layer blobs, in bytes.
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

/// What `prune` removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// Blobs deleted (digests).
    pub blobs: Vec<String>,
    /// Unpacked layer directories deleted (diff ids).
    pub layers: Vec<String>,
    /// Bytes freed, counting blobs only.
    pub bytes: u64,
}

/// The image store under one root directory. Cheap to open; safe to use from
/// several processes at once (the index and GC take the store's lock file).
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    content: ContentStore,
    index: Index,
}

impl Store {
    /// Opens (creating if needed) the store under `root`.
    pub fn open(root: &Path) -> Result<Store> {
        let _ = root;
        todo!("image store: open")
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The blob store.
    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    /// The reference index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// All stored images, sorted by name.
    pub fn images(&self) -> Result<Vec<Image>> {
        todo!("image store: images")
    }

    /// The image stored under `name` (normalised), if any.
    pub fn get(&self, name: &Reference) -> Result<Option<Image>> {
        let _ = name;
        todo!("image store: get")
    }

    /// Finds an image by name (`nginx`, `docker.io/library/nginx:latest`), full or
    /// short id (a unique prefix of the config digest), or repo digest.
    pub fn resolve(&self, name_or_id: &str) -> Result<Image> {
        let _ = name_or_id;
        todo!("image store: resolve")
    }

    /// Records `image` under its name (replacing an older record of that name).
    /// Every blob and unpacked layer it names must already be in the store.
    pub fn put(&self, image: &Image) -> Result<()> {
        let _ = image;
        todo!("image store: put")
    }

    /// The directory holding layer `diff_id` unpacked, if it is complete.
    pub fn layer_dir(&self, diff_id: &str) -> Option<PathBuf> {
        let _ = diff_id;
        todo!("image store: layer_dir")
    }

    /// Unpacks a layer blob read from `blob` (media type `media_type`) into the
    /// store, checking that it unpacks to `diff_id`; a no-op if already there.
    /// The reader is consumed to its end so a caller hashing it sees every byte.
    pub fn unpack_layer(
        &self,
        blob: &mut dyn std::io::Read,
        media_type: &str,
        diff_id: &str,
    ) -> Result<PathBuf> {
        let _ = (blob, media_type, diff_id);
        todo!("image store: unpack_layer")
    }

    /// Removes the name `name_or_id` resolves to (all names of the image when given
    /// an id), then collects what no image uses any more. Fails with
    /// [`super::Error::InUse`] while a snapshot uses the image.
    pub fn remove(&self, name_or_id: &str) -> Result<Vec<Image>> {
        let _ = name_or_id;
        todo!("image store: remove")
    }

    /// Deletes blobs and layers no image references and no snapshot uses, and
    /// stale ingest/temporary files.
    pub fn prune(&self) -> Result<Pruned> {
        todo!("image store: prune")
    }

    /// Prepares the root filesystem of container `id` from `image`: an overlayfs of
    /// its layers with a fresh upper directory (a copy where overlayfs is unavailable).
    pub fn prepare_rootfs(&self, id: &str, image: &Image) -> Result<Snapshot> {
        let _ = (id, image);
        todo!("image store: prepare_rootfs")
    }

    /// Unmounts and deletes container `id`'s root filesystem; a no-op if it has none.
    pub fn remove_rootfs(&self, id: &str) -> Result<()> {
        let _ = id;
        todo!("image store: remove_rootfs")
    }
}
