//! Importing images from files: `docker save` tarballs and OCI image-layout archives.
//!
//! The archive (a tar, optionally gzip'd) is read once into a scratch
//! directory under the store root, then its format is told by its contents:
//! `manifest.json` (docker-save: `Config`, `RepoTags`, `Layers` by path) or
//! `oci-layout` + `index.json` (OCI: everything by digest under
//! `blobs/sha256/`). Every blob goes through the content store's checked
//! ingest, so a blob that does not hash to its digest is refused before
//! anything is unpacked from it; layers are then unpacked from the stored
//! blobs and the image recorded last, so a failed import leaves no record.

use super::content::{sha256_digest as sha256, ContentStore};
use super::manifest::{
    select_platform, Descriptor, Document, Platform, OCI_CONFIG, OCI_LAYER_GZIP, OCI_LAYER_TAR,
    OCI_LAYER_ZSTD, OCI_MANIFEST,
};
use super::store::IMPORT_PREFIX;
use super::unpack::Compression;
use super::{config, io_err, Error, Image, Layer, Reference, Result, Store};
use serde::Deserialize;
use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The annotation naming an image in an OCI index (often only a tag).
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation carrying the full image name.
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// A nested document this large is not a manifest; refuse instead of reading it.
const MAX_DOCUMENT: u64 = 4 << 20;

/// Imports every image in the archive at `path` (its format detected from its
/// contents: `manifest.json` for docker-save, `oci-layout` + `index.json` for OCI).
/// Blobs are checked against their digests; images are named by their
/// `RepoTags` / `org.opencontainers.image.ref.name` annotation.
pub fn import(store: &Store, path: &Path) -> Result<Vec<Image>> {
    let archive = Archive::extract(store.root(), path)?;
    if archive.has("manifest.json") {
        archive.import_docker_save(store)
    } else if archive.has("index.json") {
        if !archive.has("oci-layout") {
            return Err(archive.invalid("has index.json but no oci-layout file"));
        }
        archive.import_oci(store)
    } else {
        Err(archive.invalid(
            "neither manifest.json (docker save) nor index.json (OCI layout) found; \
             is it an image archive?",
        ))
    }
}

/// An archive unpacked into a scratch directory, removed on drop.
struct Archive {
    /// The archive as the user named it, for messages.
    source: PathBuf,
    /// The scratch directory.
    dir: PathBuf,
    /// Regular files by normalised archive path.
    files: HashMap<String, PathBuf>,
    /// Symlinks by normalised archive path → their target, as written
    /// (older `docker save` links layers shared between images).
    links: HashMap<String, String>,
}

/// One entry of a docker-save `manifest.json`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl Archive {
    /// Reads the tar (or tar.gz) at `source` into a scratch dir under `store_root`.
    fn extract(store_root: &Path, source: &Path) -> Result<Archive> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let file = fs::File::open(source).map_err(io_err("open archive", source))?;
        let mut reader = BufReader::new(file);
        let gzip = reader
            .fill_buf()
            .map_err(io_err("read archive", source))?
            .starts_with(&[0x1f, 0x8b]);
        let reader: Box<dyn Read> = if gzip {
            Box::new(flate2::read::MultiGzDecoder::new(reader))
        } else {
            Box::new(reader)
        };
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // Under the store root, not /tmp: the same filesystem as the blobs,
        // and archives of real images are too big for a tmpfs.
        let dir = store_root.join(format!("{IMPORT_PREFIX}{}-{n}", std::process::id()));
        fs::create_dir_all(&dir).map_err(io_err("create import dir", &dir))?;
        let mut archive = Archive {
            source: source.to_path_buf(),
            dir,
            files: HashMap::new(),
            links: HashMap::new(),
        };
        archive.read_entries(reader)?;
        Ok(archive)
    }

    /// Copies every regular file of the tar into the scratch dir and notes symlinks.
    fn read_entries(&mut self, reader: Box<dyn Read>) -> Result<()> {
        let mut tar = tar::Archive::new(reader);
        let entries = tar
            .entries()
            .map_err(|e| self.invalid(format!("not a tar archive: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.invalid(format!("not a tar archive: {e}")))?;
            let raw = entry.path_bytes().into_owned();
            let name = String::from_utf8_lossy(&raw).into_owned();
            let Some(key) = normalise(&name) else {
                return Err(self.invalid(format!("entry {name:?} leaves the archive")));
            };
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let dest = self.dir.join(format!("f{}", self.files.len()));
                    let mut out = fs::File::create(&dest).map_err(io_err("create", &dest))?;
                    io::copy(&mut entry, &mut out)
                        .map_err(|e| self.invalid(format!("entry {name}: cannot read it: {e}")))?;
                    self.files.insert(key, dest);
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .map(|t| String::from_utf8_lossy(&t).into_owned())
                        .unwrap_or_default();
                    // A hard link names its target from the archive root,
                    // a symlink from its own directory.
                    let target = if entry.header().entry_type() == tar::EntryType::Link {
                        format!("/{target}")
                    } else {
                        target
                    };
                    self.links.insert(key, target);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether the archive holds `name` (a file or a link).
    fn has(&self, name: &str) -> bool {
        self.files.contains_key(name) || self.links.contains_key(name)
    }

    /// The scratch copy of archive entry `name`, following links inside the archive.
    fn file(&self, name: &str) -> Result<&Path> {
        let mut key = normalise(name)
            .ok_or_else(|| self.invalid(format!("entry {name:?} leaves the archive")))?;
        for _ in 0..16 {
            if let Some(path) = self.files.get(&key) {
                return Ok(path);
            }
            let Some(target) = self.links.get(&key) else {
                return Err(self.invalid(format!("entry {name} is missing")));
            };
            let joined = match target.strip_prefix('/') {
                Some(absolute) => absolute.to_owned(),
                None => match key.rsplit_once('/') {
                    Some((parent, _)) => format!("{parent}/{target}"),
                    None => target.clone(),
                },
            };
            key = normalise(&joined).ok_or_else(|| {
                self.invalid(format!("entry {name} links outside the archive ({target})"))
            })?;
        }
        Err(self.invalid(format!("entry {name}: too many levels of links")))
    }

    /// Reads a small document `name` of the archive (JSON: an index, a manifest, a config).
    fn document_bytes(&self, name: &str) -> Result<Vec<u8>> {
        let path = self.file(name)?;
        let len = fs::metadata(path).map_err(io_err("stat", path))?.len();
        if len > MAX_DOCUMENT {
            return Err(self.invalid(format!("entry {name} is {len} bytes; too big for JSON")));
        }
        fs::read(path).map_err(io_err("read", path))
    }

    /// Reads the JSON document `name` of the archive as a `T`.
    fn json<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<T> {
        serde_json::from_slice(&self.document_bytes(name)?)
            .map_err(|e| self.invalid(format!("entry {name} is not valid: {e}")))
    }

    /// Reads the manifest or index `name` of the archive.
    fn manifest(&self, name: &str) -> Result<Document> {
        let what = format!("archive {}: entry {name}", self.source.display());
        Document::parse(&self.document_bytes(name)?, &what)
    }

    /// The diff ids of the image config `name` of the archive.
    fn diff_ids(&self, name: &str) -> Result<Vec<String>> {
        config::diff_ids(&self.document_bytes(name)?)
            .map_err(|e| self.invalid(format!("entry {name}: {e}")))
    }

    /// An [`Error::Invalid`] about this archive.
    fn invalid(&self, reason: impl std::fmt::Display) -> Error {
        Error::Invalid {
            what: format!("archive {}", self.source.display()),
            reason: reason.to_string(),
        }
    }

    /// Stores archive entry `name` as blob `digest` (checked; `size` too when known).
    fn ingest(
        &self,
        content: &ContentStore,
        name: &str,
        digest: &str,
        size: Option<u64>,
    ) -> Result<()> {
        if content.has(digest) {
            return Ok(());
        }
        let path = self.file(name)?;
        let mut ingest = content
            .ingest(digest, size)
            .map_err(|e| self.invalid(format!("entry {name}: {e}")))?;
        let mut file = fs::File::open(path).map_err(io_err("open", path))?;
        io::copy(&mut file, &mut ingest).map_err(io_err("write blob", path))?;
        ingest
            .commit()
            .map_err(|e| self.invalid(format!("entry {name}: {e}")))?;
        Ok(())
    }

    /// A `docker save` tarball: one image per `manifest.json` entry.
    fn import_docker_save(&self, store: &Store) -> Result<Vec<Image>> {
        let manifests: Vec<SaveManifest> = self.json("manifest.json")?;
        let content = store.content();
        let mut images = Vec::new();
        for saved in &manifests {
            let config_path = self.file(&saved.config)?;
            let config_bytes = fs::read(config_path).map_err(io_err("read", config_path))?;
            let config_digest = sha256(&config_bytes);
            // The file is named by its digest; a different name means it was altered.
            let stem = saved.config.rsplit('/').next().unwrap_or_default();
            let stem = stem.strip_suffix(".json").unwrap_or(stem);
            if is_hex_digest(stem) && format!("sha256:{stem}") != config_digest {
                return Err(self.invalid(format!(
                    "entry {}: digest mismatch: named sha256:{stem}, content is {config_digest}",
                    saved.config
                )));
            }
            let diff_ids = self.diff_ids(&saved.config)?;
            if diff_ids.len() != saved.layers.len() {
                return Err(self.invalid(format!(
                    "config {} lists {} diff ids for {} layers",
                    saved.config,
                    diff_ids.len(),
                    saved.layers.len()
                )));
            }
            let mut layers = Vec::new();
            for (name, diff_id) in saved.layers.iter().zip(&diff_ids) {
                let media_type = self.sniff_layer(name)?;
                let digest = if media_type == OCI_LAYER_TAR {
                    // Uncompressed: the blob is the tar, its digest the diff id.
                    diff_id.clone()
                } else {
                    sha256_file(self.file(name)?)?
                };
                self.ingest(content, name, &digest, None)?;
                let size = fs::metadata(content.path(&digest)?)
                    .map_err(io_err("stat blob", content.path(&digest)?))?
                    .len();
                layers.push(Layer {
                    digest,
                    diff_id: diff_id.clone(),
                    media_type: media_type.to_owned(),
                    size,
                });
            }
            content.write(&config_digest, &config_bytes)?;
            // docker save keeps no manifest; write one so the image record
            // names only blobs the store holds, as a pulled image does.
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_bytes.len()},
                "layers": layers.iter().map(|l| serde_json::json!({
                    "mediaType": l.media_type, "digest": l.digest, "size": l.size,
                })).collect::<Vec<_>>(),
            });
            let manifest = serde_json::to_vec(&manifest).expect("a JSON value serialises");
            let manifest_digest = sha256(&manifest);
            content.write(&manifest_digest, &manifest)?;
            self.unpack(store, &layers)?;
            let names = match &saved.repo_tags {
                Some(tags) if !tags.is_empty() => tags.clone(),
                _ => vec![config_digest.clone()],
            };
            for name in names {
                let image = Image {
                    name: self.image_name(&name, &config_digest)?,
                    digest: manifest_digest.clone(),
                    manifest: manifest_digest.clone(),
                    config: config_digest.clone(),
                    layers: layers.clone(),
                    stored_at: now(),
                };
                store.put(&image)?;
                images.push(image);
            }
        }
        Ok(images)
    }

    /// The OCI media type of a docker-save layer file, from its first bytes.
    fn sniff_layer(&self, name: &str) -> Result<&'static str> {
        let path = self.file(name)?;
        let mut magic = [0u8; 4];
        let mut file = fs::File::open(path).map_err(io_err("open", path))?;
        let n = read_up_to(&mut file, &mut magic).map_err(io_err("read", path))?;
        Ok(match &magic[..n] {
            [0x1f, 0x8b, ..] => OCI_LAYER_GZIP,
            [0x28, 0xb5, 0x2f, 0xfd] => OCI_LAYER_ZSTD,
            _ => OCI_LAYER_TAR,
        })
    }

    /// An OCI layout archive: one image per `index.json` entry (an index entry
    /// contributes the host platform's manifest).
    fn import_oci(&self, store: &Store) -> Result<Vec<Image>> {
        let Document::Index(index) = self.manifest("index.json")? else {
            return Err(self.invalid("index.json is a manifest, expected an index"));
        };
        if index.is_empty() {
            return Err(self.invalid("index.json lists no images"));
        }
        let content = store.content();
        let mut images = Vec::new();
        for top in &index {
            let top_name = blob_name(&top.digest);
            self.ingest(content, &top_name, &top.digest, Some(top.size))?;
            let manifest_desc = match self.manifest(&top_name)? {
                Document::Index(nested) => self.pick_platform(&top.digest, &nested)?,
                Document::Manifest { .. } => top.clone(),
            };
            let manifest_name = blob_name(&manifest_desc.digest);
            self.ingest(
                content,
                &manifest_name,
                &manifest_desc.digest,
                Some(manifest_desc.size),
            )?;
            let Document::Manifest {
                config: config_desc,
                layers: layer_descs,
            } = self.manifest(&manifest_name)?
            else {
                return Err(self.invalid(format!(
                    "manifest {}: an index inside an index inside index.json",
                    manifest_desc.digest
                )));
            };
            let config_name = blob_name(&config_desc.digest);
            self.ingest(
                content,
                &config_name,
                &config_desc.digest,
                Some(config_desc.size),
            )?;
            let diff_ids = self.diff_ids(&config_name)?;
            if diff_ids.len() != layer_descs.len() {
                return Err(self.invalid(format!(
                    "config {} lists {} diff ids for {} layers",
                    config_desc.digest,
                    diff_ids.len(),
                    layer_descs.len()
                )));
            }
            let mut layers = Vec::new();
            for (desc, diff_id) in layer_descs.iter().zip(&diff_ids) {
                if Compression::from_media_type(&desc.media_type).is_none() {
                    return Err(self.invalid(format!(
                        "layer {}: unsupported media type {:?}",
                        desc.digest, desc.media_type
                    )));
                }
                self.ingest(
                    content,
                    &blob_name(&desc.digest),
                    &desc.digest,
                    Some(desc.size),
                )?;
                layers.push(Layer {
                    digest: desc.digest.clone(),
                    diff_id: diff_id.clone(),
                    media_type: desc.media_type.clone(),
                    size: desc.size,
                });
            }
            self.unpack(store, &layers)?;
            let name = top
                .annotations
                .get(CONTAINERD_NAME)
                .or_else(|| top.annotations.get(REF_NAME))
                .filter(|n| looks_like_reference(n))
                .cloned()
                .unwrap_or_else(|| config_desc.digest.clone());
            let image = Image {
                name: self.image_name(&name, &config_desc.digest)?,
                digest: top.digest.clone(),
                manifest: manifest_desc.digest.clone(),
                config: config_desc.digest.clone(),
                layers,
                stored_at: now(),
            };
            store.put(&image)?;
            images.push(image);
        }
        Ok(images)
    }

    /// The host platform's entry of the index `digest`.
    fn pick_platform(&self, digest: &str, manifests: &[Descriptor]) -> Result<Descriptor> {
        let wanted = Platform::host();
        select_platform(manifests, &wanted)
            .cloned()
            .map_err(|available| Error::NoMatchingPlatform {
                image: format!("{} (index {digest})", self.source.display()),
                platform: wanted.to_string(),
                available,
            })
    }

    /// Unpacks each layer not unpacked yet from its stored (checked) blob.
    fn unpack(&self, store: &Store, layers: &[Layer]) -> Result<()> {
        for layer in layers {
            if store.layer_dir(&layer.diff_id).is_some() {
                continue;
            }
            let path = store.content().path(&layer.digest)?;
            let mut blob = fs::File::open(&path).map_err(io_err("open blob", &path))?;
            store
                .unpack_layer(&mut blob, &layer.media_type, &layer.diff_id)
                .map_err(|e| self.invalid(format!("layer {}: {e}", layer.digest)))?;
        }
        Ok(())
    }

    /// The record name for `name`: normalised, or the image id for untagged images.
    fn image_name(&self, name: &str, config_digest: &str) -> Result<String> {
        if name == config_digest {
            return Ok(name.to_owned());
        }
        Reference::parse(name)
            .map(|r| r.to_string())
            .map_err(|e| self.invalid(format!("image name {name:?}: {e}")))
    }
}

impl Drop for Archive {
    fn drop(&mut self) {
        // Best effort: a leftover scratch dir only wastes space, and
        // `prune` would not know it; nothing else to do about a failure here.
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// `a/./b/` → `a/b`; `None` if it climbs out with `..` (leading `/` and `./` are dropped).
fn normalise(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(parts.join("/"))
}

/// The archive path of blob `digest` in an OCI layout.
fn blob_name(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algorithm, hex)) => format!("blobs/{algorithm}/{hex}"),
        None => format!("blobs/{digest}"),
    }
}

/// Whether an index annotation is a whole image name rather than a bare tag
/// (`skopeo` writes only the tag, e.g. `1` or `latest`).
fn looks_like_reference(name: &str) -> bool {
    name.contains('/') || name.contains(':') || name.contains('@')
}

fn is_hex_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut file = fs::File::open(path).map_err(io_err("open", path))?;
    io::copy(&mut file, &mut hasher).map_err(io_err("read", path))?;
    Ok(format!("sha256:{:x}", hasher.finalize()))
}

/// Reads until `buf` is full or the end; returns how much was read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::Write;

    fn require_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "archive tests unpack layers (ownership) and must run as root"
        );
    }

    /// A tar of regular files `(path, bytes)`.
    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, bytes) in files {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            header.set_size(bytes.len() as u64);
            if path.contains("..") {
                // `set_path` refuses `..`; a hostile archive would not.
                header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
                header.set_cksum();
                builder.append(&header, *bytes).unwrap();
            } else {
                builder.append_data(&mut header, path, *bytes).unwrap();
            }
        }
        builder.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn hex(digest: &str) -> &str {
        digest.strip_prefix("sha256:").unwrap()
    }

    fn config(diff_ids: &[&str]) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap()
    }

    struct Fixture {
        dir: tempfile::TempDir,
        store: Store,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        Fixture { dir, store }
    }

    impl Fixture {
        fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let path = self.dir.path().join(name);
            fs::write(&path, bytes).unwrap();
            path
        }

        /// Nothing recorded, no blob and no layer stored, no scratch dir left.
        fn assert_empty(&self) {
            assert!(self.store.images().unwrap().is_empty());
            assert!(self.store.content().list().unwrap().is_empty());
            let leftovers: Vec<_> = fs::read_dir(self.store.root())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.starts_with("import-"))
                .collect();
            assert!(leftovers.is_empty(), "{leftovers:?}");
        }
    }

    /// An OCI layout archive of one image whose layer (gzip) holds `hello`,
    /// named by `annotations`; returns the tar and the layer digest.
    fn oci_archive(annotations: serde_json::Value, layer_media: &str) -> (Vec<u8>, String) {
        let layer_tar = tar_of(&[("hello", b"world\n")]);
        let diff_id = sha256(&layer_tar);
        let layer = gzip(&layer_tar);
        let layer_digest = sha256(&layer);
        let config = config(&[&diff_id]);
        let config_digest = sha256(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": layer_media, "digest": layer_digest, "size": layer.len()}],
        }))
        .unwrap();
        let manifest_digest = sha256(&manifest);
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": manifest_digest,
                "size": manifest.len(), "annotations": annotations}],
        }))
        .unwrap();
        let names = [
            format!("./blobs/sha256/{}", hex(&layer_digest)),
            format!("./blobs/sha256/{}", hex(&config_digest)),
            format!("./blobs/sha256/{}", hex(&manifest_digest)),
        ];
        let tar = tar_of(&[
            ("./oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
            ("./index.json", &index),
            (&names[0], &layer),
            (&names[1], &config),
            (&names[2], &manifest),
        ]);
        (tar, layer_digest)
    }

    #[test]
    fn imports_a_docker_save_tarball_with_tagged_and_untagged_images() {
        require_root();
        let f = fixture();
        let base = tar_of(&[("etc/os", b"base\n"), ("gone", b"x")]);
        let top = tar_of(&[(".wh.gone", b""), ("etc/app", b"app\n")]);
        let (base_id, top_id) = (sha256(&base), sha256(&top));
        let tagged = config(&[&base_id, &top_id]);
        let untagged = config(&[&base_id]);
        let tagged_name = format!("{}.json", hex(&sha256(&tagged)));
        let untagged_name = format!("{}.json", hex(&sha256(&untagged)));
        let base_path = format!("{}/layer.tar", hex(&base_id));
        let top_path = format!("{}/layer.tar", hex(&top_id));
        let manifest = serde_json::to_vec(&json!([
            {"Config": tagged_name, "RepoTags": ["example.test/team/app:1"], "Layers": [base_path, top_path]},
            {"Config": untagged_name, "RepoTags": null, "Layers": [base_path]},
        ]))
        .unwrap();
        let tarball = gzip(&tar_of(&[
            (&base_path, &base),
            (&top_path, &top),
            (&tagged_name, &tagged),
            (&untagged_name, &untagged),
            ("manifest.json", &manifest),
        ]));
        let path = f.write("save.tar.gz", &tarball);

        let images = import(&f.store, &path).unwrap();
        assert_eq!(images.len(), 2);
        assert_eq!(images[0].name, "example.test/team/app:1");
        assert_eq!(images[0].config, sha256(&tagged));
        assert_eq!(images[0].layers.len(), 2);
        assert_eq!(
            images[1].name,
            sha256(&untagged),
            "untagged: stored under its id"
        );
        for image in &images {
            assert_eq!(f.store.resolve(&image.config).unwrap().config, image.config);
            assert!(f.store.content().has(&image.manifest));
            for layer in &image.layers {
                assert!(f.store.content().has(&layer.digest), "{layer:?}");
                assert!(f.store.layer_dir(&layer.diff_id).is_some(), "{layer:?}");
            }
        }
        let top_dir = f.store.layer_dir(&top_id).unwrap();
        assert_eq!(fs::read(top_dir.join("etc/app")).unwrap(), b"app\n");
    }

    #[test]
    fn imports_an_oci_archive_named_by_its_annotation() {
        require_root();
        let f = fixture();
        let (tar, layer) = oci_archive(
            json!({REF_NAME: "1", CONTAINERD_NAME: "example.test/oci/app:2"}),
            OCI_LAYER_GZIP,
        );
        let path = f.write("oci.tar", &tar);
        let images = import(&f.store, &path).unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].name, "example.test/oci/app:2");
        assert_eq!(images[0].layers[0].digest, layer);
        let dir = f.store.layer_dir(&images[0].layers[0].diff_id).unwrap();
        assert_eq!(fs::read(dir.join("hello")).unwrap(), b"world\n");
        assert_eq!(f.store.images().unwrap().len(), 1);
    }

    #[test]
    fn a_blob_that_does_not_match_its_digest_is_refused_and_nothing_stored() {
        let f = fixture();
        let (tar, layer) = oci_archive(json!({REF_NAME: "example.test/a:1"}), OCI_LAYER_GZIP);
        // Flip one byte of the layer blob's content inside the tar.
        let mut tar = tar;
        let (_, offset) = find_entry(&tar, &format!("blobs/sha256/{}", hex(&layer)));
        tar[offset + 20] ^= 0xff;
        let path = f.write("bad.tar", &tar);
        let err = import(&f.store, &path).unwrap_err().to_string();
        assert!(err.contains("bad.tar"), "{err}");
        assert!(err.contains(hex(&layer)), "{err}");
        assert!(err.contains("digest mismatch"), "{err}");
        assert!(!f.store.content().has(&layer));
        assert!(f.store.images().unwrap().is_empty());
    }

    /// The name and data offset of the entry `name` of `tar`.
    fn find_entry(tar: &[u8], name: &str) -> (String, usize) {
        let mut archive = tar::Archive::new(tar);
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            if normalise(&path).as_deref() == Some(name) {
                return (path, entry.raw_file_position() as usize);
            }
        }
        panic!("{name} not in the tar");
    }

    #[test]
    fn a_missing_blob_is_named() {
        let f = fixture();
        let (tar, layer) = oci_archive(json!({REF_NAME: "example.test/a:1"}), OCI_LAYER_GZIP);
        // Rebuild the tar without the layer blob.
        let mut files = Vec::new();
        let mut archive = tar::Archive::new(tar.as_slice());
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            if !path.ends_with(hex(&layer)) {
                files.push((path, bytes));
            }
        }
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, b)| (p.as_str(), b.as_slice()))
            .collect();
        let path = f.write("short.tar", &tar_of(&refs));
        let err = import(&f.store, &path).unwrap_err().to_string();
        assert!(err.contains("short.tar"), "{err}");
        assert!(
            err.contains(&format!("blobs/sha256/{} is missing", hex(&layer))),
            "{err}"
        );
        assert!(f.store.images().unwrap().is_empty());
    }

    #[test]
    fn an_unsupported_layer_media_type_is_refused() {
        let f = fixture();
        let (tar, _) = oci_archive(
            json!({REF_NAME: "example.test/a:1"}),
            "application/vnd.example.layer.v1.tar+lz4",
        );
        let path = f.write("lz4.tar", &tar);
        let err = import(&f.store, &path).unwrap_err().to_string();
        assert!(err.contains("unsupported media type"), "{err}");
        assert!(err.contains("lz4"), "{err}");
        assert!(f.store.images().unwrap().is_empty());
    }

    #[test]
    fn files_that_are_not_image_archives_are_refused_clearly() {
        let f = fixture();
        let path = f.write(
            "text.tar",
            b"this is not a tar archive at all, just some text\n",
        );
        let err = import(&f.store, &path).unwrap_err().to_string();
        assert!(err.contains("text.tar"), "{err}");
        assert!(
            err.contains("not a tar") || err.contains("neither manifest.json"),
            "{err}"
        );

        let path = f.write("other.tar", &tar_of(&[("README", b"hello")]));
        let err = import(&f.store, &path).unwrap_err().to_string();
        assert!(err.contains("other.tar"), "{err}");
        assert!(
            err.contains("manifest.json") && err.contains("index.json"),
            "{err}"
        );

        let path = f.write("escape.tar", &tar_of(&[("../../etc/evil", b"x")]));
        assert!(import(&f.store, &path).is_err());
        f.assert_empty();
    }

    #[test]
    fn paths_are_normalised_inside_the_archive() {
        assert_eq!(
            normalise("./blobs/sha256/ab").as_deref(),
            Some("blobs/sha256/ab")
        );
        assert_eq!(normalise("/a/./b/").as_deref(), Some("a/b"));
        assert_eq!(normalise("a/../b").as_deref(), Some("b"));
        assert_eq!(normalise("../x"), None);
        assert_eq!(blob_name("sha256:ab"), "blobs/sha256/ab");
        assert!(looks_like_reference("example.test/a:1"));
        assert!(!looks_like_reference("latest"));
    }
}
