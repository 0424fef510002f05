//! [`Store`]: the image store as the CLI and the kubelet see it — images by name, layers, container roots.

use super::content::{digest_hex, sync_dir, unique_name, ContentStore};
use super::index::{Index, StoreLock};
use super::snapshot::{Snapshot, Snapshotter};
use super::unpack::{drain, unpack_counted, Compression};
use super::{io_err, Error, Reference, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The default store root.
pub const DEFAULT_ROOT: &str = "/var/lib/peapod";

/// Ingest files and unpack directories untouched this long belong to a writer
/// that died; younger ones may still be in use by another process.
const STALE_AFTER: Duration = Duration::from_secs(60 * 60);

/// Prefix of the scratch directories of archive imports (`<root>/import-*`).
pub(crate) const IMPORT_PREFIX: &str = "import-";
/// Prefix of layer directories being unpacked (`layers/tmp-*`).
const UNPACKING_PREFIX: &str = "tmp-";
/// Prefix of layer directories being deleted (`layers/del-*`): renamed out of
/// `sha256/` first so a crash mid-delete never leaves half a layer under its id.
const DELETING_PREFIX: &str = "del-";

/// Shortest image id prefix accepted, as Docker does.
const MIN_ID_PREFIX: usize = 4;

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

    /// Every blob this image needs: repo digest (index or manifest), platform
    /// manifest, config and layer blobs.
    fn blobs(&self) -> impl Iterator<Item = &str> {
        [
            self.digest.as_str(),
            self.manifest.as_str(),
            self.config.as_str(),
        ]
        .into_iter()
        .chain(self.layers.iter().map(|l| l.digest.as_str()))
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

/// How a user's `name_or_id` matched.
struct Found {
    /// The matching records (several when an id names an image with several names).
    images: Vec<Image>,
}

impl Store {
    /// Opens (creating if needed) the store under `root`.
    pub fn open(root: &Path) -> Result<Store> {
        for dir in [
            root.to_path_buf(),
            root.join("layers").join("sha256"),
            root.join("snapshots"),
        ] {
            fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
            content: ContentStore::new(&root.join("content"))?,
            index: Index::new(root),
        })
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

    /// The snapshotter for container roots, under `<root>/snapshots`.
    pub fn snapshotter(&self) -> Snapshotter {
        Snapshotter::new(&self.root.join("snapshots"))
    }

    fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    /// All stored images, sorted by name.
    pub fn images(&self) -> Result<Vec<Image>> {
        self.index.list()
    }

    /// The image stored under `name` (normalised), if any.
    pub fn get(&self, name: &Reference) -> Result<Option<Image>> {
        self.index.get(&name.to_string())
    }

    /// Finds an image by name (`nginx`, `docker.io/library/nginx:latest`), full or
    /// short id (a unique prefix of the config digest), or repo digest.
    pub fn resolve(&self, name_or_id: &str) -> Result<Image> {
        let found = find(&self.index.list()?, name_or_id)?;
        Ok(found
            .images
            .into_iter()
            .next()
            .expect("find returns at least one"))
    }

    /// Records `image` under its name (replacing an older record of that name).
    /// Every blob and unpacked layer it names must already be in the store.
    pub fn put(&self, image: &Image) -> Result<()> {
        let invalid = |reason: String| Error::Invalid {
            what: format!("image {}", image.name),
            reason,
        };
        if image.name.is_empty() {
            return Err(invalid("no name".into()));
        }
        for digest in image.blobs() {
            digest_hex(digest)?;
        }
        for layer in &image.layers {
            digest_hex(&layer.diff_id)?;
        }
        // Checked under the lock, so a concurrent prune cannot delete what the
        // record needs between the check and the write.
        self.index.update(|images| {
            for digest in image.blobs() {
                if !self.content.has(digest) {
                    return Err(invalid(format!("blob {digest} is not in the store")));
                }
            }
            for layer in &image.layers {
                if self.layer_dir(&layer.diff_id).is_none() {
                    return Err(invalid(format!(
                        "layer {} is not unpacked in the store",
                        layer.diff_id
                    )));
                }
            }
            images.retain(|i| i.name != image.name);
            images.push(image.clone());
            Ok(())
        })
    }

    /// The directory holding layer `diff_id` unpacked, if it is complete.
    pub fn layer_dir(&self, diff_id: &str) -> Option<PathBuf> {
        let dir = self
            .layers_dir()
            .join("sha256")
            .join(digest_hex(diff_id).ok()?);
        // Only complete layers are ever renamed to this name.
        dir.symlink_metadata()
            .is_ok_and(|m| m.is_dir())
            .then_some(dir)
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
        let hex = digest_hex(diff_id)?;
        let compression =
            Compression::from_media_type(media_type).ok_or_else(|| Error::Invalid {
                what: format!("layer {diff_id}"),
                reason: format!("unsupported layer media type {media_type:?}"),
            })?;
        let target = self.layers_dir().join("sha256").join(hex);
        if self.layer_dir(diff_id).is_some() {
            drain(blob).map_err(|e| Error::Invalid {
                what: format!("layer {diff_id}"),
                reason: format!("reading blob: {e}"),
            })?;
            return Ok(target);
        }
        let temp = self
            .layers_dir()
            .join(unique_name(&format!("{UNPACKING_PREFIX}{}", &hex[..12])));
        fs::create_dir(&temp).map_err(io_err("create directory", &temp))?;
        let result = self.finish_layer(blob, compression, diff_id, &temp, &target);
        if temp.symlink_metadata().is_ok() {
            let _ = fs::remove_dir_all(&temp);
        }
        result
    }

    fn finish_layer(
        &self,
        blob: &mut dyn std::io::Read,
        compression: Compression,
        diff_id: &str,
        temp: &Path,
        target: &Path,
    ) -> Result<PathBuf> {
        let (actual, size) = unpack_counted(blob, compression, temp)?;
        if actual != diff_id {
            return Err(Error::DigestMismatch {
                expected: diff_id.to_string(),
                actual,
                size,
            });
        }
        // One syncfs for the whole tree instead of an fsync per file: the layer
        // is durable before it appears under its id.
        let dir = fs::File::open(temp).map_err(io_err("open", temp))?;
        nix::unistd::syncfs(&dir).map_err(|e| io_err("sync layer", temp)(e.into()))?;
        match fs::rename(temp, target) {
            Ok(()) => {}
            // Another process unpacked the same layer first: keep theirs.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) => {}
            Err(e) => return Err(io_err("store layer", target)(e)),
        }
        sync_dir(target.parent().unwrap_or(target))?;
        Ok(target.to_path_buf())
    }

    /// Removes the name `name_or_id` resolves to (all names of the image when given
    /// an id), then collects what no image uses any more. Fails with
    /// [`super::Error::InUse`] while a snapshot uses the image.
    pub fn remove(&self, name_or_id: &str) -> Result<Vec<Image>> {
        let lock = self.index.lock()?;
        let found = find(&self.index.list()?, name_or_id)?;
        let snapshots = self.snapshotter().list()?;
        for image in &found.images {
            if let Some(snapshot) = snapshots.iter().find(|s| s.image == image.name) {
                return Err(Error::InUse {
                    image: image.name.clone(),
                    container: snapshot.id.clone(),
                });
            }
        }
        let names: HashSet<&str> = found.images.iter().map(|i| i.name.as_str()).collect();
        self.index.update_locked(&lock, |images| {
            images.retain(|i| !names.contains(i.name.as_str()));
            Ok(())
        })?;
        self.prune_locked(&lock)?;
        Ok(found.images)
    }

    /// Deletes blobs and layers no image references and no snapshot uses, and
    /// stale ingest/temporary files.
    ///
    /// Content written by a pull that has not yet recorded its image is not
    /// referenced yet and may be collected; that pull's [`Store::put`] then
    /// fails (it checks every blob and layer under the lock) and the pull can
    /// simply be retried: a stored image never loses content.
    pub fn prune(&self) -> Result<Pruned> {
        let lock = self.index.lock()?;
        self.prune_locked(&lock)
    }

    fn prune_locked(&self, _lock: &StoreLock) -> Result<Pruned> {
        let images = self.index.list()?;
        let mut pruned = Pruned::default();

        let keep_blobs: HashSet<&str> = images.iter().flat_map(Image::blobs).collect();
        for digest in self.content.list()? {
            if !keep_blobs.contains(digest.as_str()) {
                if let Some(size) = self.content.delete(&digest)? {
                    pruned.bytes += size;
                    pruned.blobs.push(digest);
                }
            }
        }

        let layers = self.layers_dir().join("sha256");
        let mut keep_layers: HashSet<PathBuf> = images
            .iter()
            .flat_map(|i| &i.layers)
            .filter_map(|l| digest_hex(&l.diff_id).ok())
            .map(|hex| layers.join(hex))
            .collect();
        keep_layers.extend(self.snapshotter().used_layers()?);
        for entry in read_dir(&layers)? {
            let hex = entry.to_string_lossy().into_owned();
            let diff_id = format!("sha256:{hex}");
            let dir = layers.join(&entry);
            if digest_hex(&diff_id).is_err() || keep_layers.contains(&dir) {
                continue;
            }
            let doomed = self
                .layers_dir()
                .join(unique_name(&format!("{DELETING_PREFIX}{}", &hex[..12])));
            fs::rename(&dir, &doomed).map_err(io_err("remove layer", &dir))?;
            fs::remove_dir_all(&doomed).map_err(io_err("remove layer", &doomed))?;
            pruned.layers.push(diff_id);
        }

        self.remove_stale()?;
        Ok(pruned)
    }

    /// Leftovers of writers that died: ingest files, unpack directories and
    /// archive-import scratch directories older than [`STALE_AFTER`], and
    /// interrupted layer deletions.
    fn remove_stale(&self) -> Result<()> {
        let now = SystemTime::now();
        let stale = |path: &Path| {
            path.symlink_metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE_AFTER)
        };
        let ingest = self.content.ingest_dir();
        for name in read_dir(&ingest)? {
            let path = ingest.join(name);
            if stale(&path) {
                remove_any(&path)?;
            }
        }
        for name in read_dir(&self.root)? {
            let path = self.root.join(&name);
            if name.to_string_lossy().starts_with(IMPORT_PREFIX) && stale(&path) {
                remove_any(&path)?;
            }
        }
        let layers = self.layers_dir();
        for name in read_dir(&layers)? {
            let path = layers.join(&name);
            let name = name.to_string_lossy();
            if name.starts_with(DELETING_PREFIX)
                || (name.starts_with(UNPACKING_PREFIX) && stale(&path))
            {
                remove_any(&path)?;
            }
        }
        Ok(())
    }

    /// Prepares the root filesystem of container `id` from `image`: an overlayfs of
    /// its layers with a fresh upper directory (a copy where overlayfs is unavailable).
    pub fn prepare_rootfs(&self, id: &str, image: &Image) -> Result<Snapshot> {
        let snapshotter = self.snapshotter();
        {
            // Reserved under the lock: once the snapshot exists, `remove` and
            // `prune` see it and keep the image and its layers.
            let _lock = self.index.lock()?;
            if self.index.get(&image.name)?.is_none() {
                return Err(Error::NotFound(image.name.clone()));
            }
            let layers = image
                .layers
                .iter()
                .map(|l| {
                    self.layer_dir(&l.diff_id).ok_or_else(|| Error::Invalid {
                        what: format!("image {}", image.name),
                        reason: format!("layer {} is not unpacked in the store", l.diff_id),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            snapshotter.reserve(id, &image.name, &layers)?;
        }
        snapshotter.activate(id)
    }

    /// Unmounts and deletes container `id`'s root filesystem; a no-op if it has none.
    pub fn remove_rootfs(&self, id: &str) -> Result<()> {
        self.snapshotter().remove(id)
    }
}

/// Resolves `input` against `images` (see [`Store::resolve`]): a name first,
/// then digests and ids, as Docker does.
fn find(images: &[Image], input: &str) -> Result<Found> {
    let one = |image: &Image| Found {
        images: vec![image.clone()],
    };
    let by_config = |config: &str| Found {
        images: images
            .iter()
            .filter(|i| i.config == config)
            .cloned()
            .collect(),
    };
    if let Some(image) = images.iter().find(|i| i.name == input) {
        return Ok(one(image));
    }
    if digest_hex(input).is_ok() {
        if images.iter().any(|i| i.config == input) {
            return Ok(by_config(input));
        }
        let matched: Vec<Image> = images
            .iter()
            .filter(|i| i.digest == input || i.manifest == input)
            .cloned()
            .collect();
        if !matched.is_empty() {
            return Ok(Found { images: matched });
        }
        return Err(Error::NotFound(input.to_string()));
    }
    let is_hex =
        |s: &str| !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let hex_id = input.strip_prefix("sha256:").unwrap_or(input);
    let maybe_id = hex_id.len() >= MIN_ID_PREFIX && hex_id.len() <= 64 && is_hex(hex_id);
    if hex_id.len() == 64 && maybe_id {
        let full = format!("sha256:{hex_id}");
        if images.iter().any(|i| i.config == full) {
            return Ok(by_config(&full));
        }
    }
    let parse_error = if input.starts_with("sha256:") {
        None
    } else {
        match Reference::parse(input) {
            Ok(reference) => {
                let name = reference.to_string();
                if let Some(image) = images.iter().find(|i| i.name == name) {
                    return Ok(one(image));
                }
                if let Some(digest) = &reference.digest {
                    let repo = format!("{}/{}", reference.registry, reference.repository);
                    if let Some(image) = images.iter().find(|i| {
                        repository_of(&i.name) == repo
                            && (&i.digest == digest || &i.manifest == digest)
                    }) {
                        return Ok(one(image));
                    }
                }
                None
            }
            Err(e) => Some(e),
        }
    };
    if maybe_id {
        let configs: BTreeSet<&str> = images
            .iter()
            .filter(|i| {
                i.config
                    .strip_prefix("sha256:")
                    .is_some_and(|h| h.starts_with(hex_id))
            })
            .map(|i| i.config.as_str())
            .collect();
        match configs.len() {
            0 => {}
            1 => return Ok(by_config(configs.first().expect("one"))),
            _ => {
                let candidates: Vec<String> = configs
                    .iter()
                    .map(|config| {
                        let names: Vec<&str> = images
                            .iter()
                            .filter(|i| i.config == *config)
                            .map(|i| i.name.as_str())
                            .collect();
                        format!("{} ({})", &config[7..19], names.join(", "))
                    })
                    .collect();
                return Err(Error::Invalid {
                    what: format!("image id {input}"),
                    reason: format!(
                        "ambiguous: matches {} (give more digits)",
                        candidates.join("; ")
                    ),
                });
            }
        }
    }
    match parse_error {
        Some(e) if !maybe_id => Err(e),
        _ => Err(Error::NotFound(input.to_string())),
    }
}

/// `registry/repository` of a normalised name, without tag or digest.
fn repository_of(name: &str) -> &str {
    let base = name.split('@').next().unwrap_or(name);
    let last = base.rfind('/').map_or(0, |i| i + 1);
    match base[last..].rfind(':') {
        Some(colon) => &base[..last + colon],
        None => base,
    }
}

/// Names in a directory (empty if it does not exist).
fn read_dir(dir: &Path) -> Result<Vec<std::ffi::OsString>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", dir)(e)),
    };
    entries
        .map(|e| e.map(|e| e.file_name()).map_err(io_err("list", dir)))
        .collect()
}

/// Removes a file or a whole tree; absent is fine.
fn remove_any(path: &Path) -> Result<()> {
    let result = match path.symlink_metadata() {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", path)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
