//! Test images built from a description: an OCI image layout on disk, docker-save and OCI archives, and pushes with skopeo.
//!
//! An [`ImageSpec`] lists layers ([`Layer`]: [`Entry`] lists, each layer
//! plain, gzip or zstd) and the config fields the runtime applies. An
//! [`OciLayout`] writes them as `oci-layout`, `index.json` and
//! `blobs/sha256/…`, one manifest per tag (or a multi-platform index), which
//! [`push`] copies to a [`Registry`] with `skopeo copy --preserve-digests`, so
//! the registry serves exactly the blobs the test knows the digests of.
//! [`busybox_layer`] gives a base layer from Debian's busybox-static.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::registry::{Credentials, Registry};

/// OCI media types used here.
pub mod media {
    /// An OCI image manifest.
    pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// An OCI image index.
    pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// An OCI image config.
    pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// A plain tar layer.
    pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    /// A gzip'd tar layer.
    pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// A zstd-compressed tar layer.
    pub const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    Plain,
    /// tar+gzip.
    Gzip,
    /// tar+zstd.
    Zstd,
}

impl Compression {
    /// The OCI layer media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Plain => media::LAYER_TAR,
            Compression::Gzip => media::LAYER_GZIP,
            Compression::Zstd => media::LAYER_ZSTD,
        }
    }

    /// `tar` compressed this way.
    pub fn compress(self, tar: &[u8]) -> Vec<u8> {
        match self {
            Compression::Plain => tar.to_vec(),
            Compression::Gzip => {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                encoder.write_all(tar).expect("gzip in memory");
                encoder.finish().expect("gzip in memory")
            }
            Compression::Zstd => zstd::encode_all(tar, 3).expect("zstd in memory"),
        }
    }
}

/// One entry of a layer tar. Paths are relative (`etc/passwd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A directory.
    Dir {
        /// Its path.
        path: String,
        /// Permission bits (e.g. `0o755`, `0o1777`).
        mode: u32,
        /// Owner.
        uid: u64,
        /// Group.
        gid: u64,
    },
    /// A regular file.
    File {
        /// Its path.
        path: String,
        /// Its bytes.
        content: Vec<u8>,
        /// Permission bits.
        mode: u32,
        /// Owner.
        uid: u64,
        /// Group.
        gid: u64,
    },
    /// A symbolic link.
    Symlink {
        /// Its path.
        path: String,
        /// Where it points, as written.
        target: String,
    },
    /// A hard link to an earlier entry of the same layer.
    Hardlink {
        /// Its path.
        path: String,
        /// The path of the entry it links to.
        target: String,
    },
    /// Deletes `path` from the layers below (`.wh.<name>`).
    Whiteout {
        /// The path deleted.
        path: String,
    },
    /// Hides everything the layers below have in `dir` (`<dir>/.wh..wh..opq`).
    Opaque {
        /// The directory made opaque.
        dir: String,
    },
}

impl Entry {
    /// A directory, 0755 root:root.
    pub fn dir(path: &str) -> Entry {
        Entry::Dir {
            path: path.into(),
            mode: 0o755,
            uid: 0,
            gid: 0,
        }
    }

    /// A file, 0644 root:root.
    pub fn file(path: &str, content: impl Into<Vec<u8>>) -> Entry {
        Entry::file_with(path, content, 0o644, 0, 0)
    }

    /// A file with mode and owner.
    pub fn file_with(
        path: &str,
        content: impl Into<Vec<u8>>,
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> Entry {
        Entry::File {
            path: path.into(),
            content: content.into(),
            mode,
            uid,
            gid,
        }
    }

    /// A symlink `path -> target`.
    pub fn symlink(path: &str, target: &str) -> Entry {
        Entry::Symlink {
            path: path.into(),
            target: target.into(),
        }
    }

    /// A hardlink `path` to `target`.
    pub fn hardlink(path: &str, target: &str) -> Entry {
        Entry::Hardlink {
            path: path.into(),
            target: target.into(),
        }
    }

    /// A whiteout deleting `path`.
    pub fn whiteout(path: &str) -> Entry {
        Entry::Whiteout { path: path.into() }
    }

    /// An opaque marker for `dir`.
    pub fn opaque(dir: &str) -> Entry {
        Entry::Opaque { dir: dir.into() }
    }
}

/// One layer: its entries in tar order and how it is compressed.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The entries.
    pub entries: Vec<Entry>,
    /// The blob's compression.
    pub compression: Compression,
}

impl Layer {
    /// A layer of `entries`.
    pub fn new(compression: Compression, entries: Vec<Entry>) -> Layer {
        Layer {
            entries,
            compression,
        }
    }

    /// The uncompressed tar.
    pub fn tar(&self) -> Vec<u8> {
        layer_tar(&self.entries)
    }
}

/// The config fields a container's process takes from the image.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `Entrypoint`.
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    pub cmd: Option<Vec<String>>,
    /// `Env`, `KEY=value`.
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `User`.
    pub user: Option<String>,
}

/// An image to build.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// Layers, bottom first.
    pub layers: Vec<Layer>,
    /// The process config.
    pub config: Config,
    /// GOARCH spelling: `amd64`, `arm64`.
    pub architecture: String,
}

impl ImageSpec {
    /// A linux/amd64 image of `layers` running `sh`.
    pub fn new(layers: Vec<Layer>) -> ImageSpec {
        ImageSpec {
            layers,
            config: Config {
                cmd: Some(vec!["sh".into()]),
                env: vec![
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                ],
                ..Config::default()
            },
            architecture: "amd64".into(),
        }
    }

    /// The same image for another architecture.
    pub fn for_arch(mut self, architecture: &str) -> ImageSpec {
        self.architecture = architecture.into();
        self
    }

    /// The config JSON, with `rootfs.diff_ids` of the layers.
    pub fn config_json(&self, diff_ids: &[String]) -> Vec<u8> {
        let mut config = serde_json::Map::new();
        let c = &self.config;
        if let Some(v) = &c.entrypoint {
            config.insert("Entrypoint".into(), json!(v));
        }
        if let Some(v) = &c.cmd {
            config.insert("Cmd".into(), json!(v));
        }
        if !c.env.is_empty() {
            config.insert("Env".into(), json!(c.env));
        }
        if let Some(v) = &c.working_dir {
            config.insert("WorkingDir".into(), json!(v));
        }
        if let Some(v) = &c.user {
            config.insert("User".into(), json!(v));
        }
        serde_json::to_vec(&json!({
            "architecture": self.architecture,
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": self.layers.iter().map(|_| json!({"created_by": "peapod-tests"})).collect::<Vec<_>>(),
        }))
        .expect("config JSON")
    }
}

/// A blob as a manifest or index names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Its media type.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
}

impl Descriptor {
    fn to_json(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }
}

/// What [`OciLayout::add_image`] wrote.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The manifest.
    pub manifest: Descriptor,
    /// The config (its digest is the image id).
    pub config: Descriptor,
    /// The layer blobs, bottom first.
    pub layers: Vec<Descriptor>,
    /// `rootfs.diff_ids`.
    pub diff_ids: Vec<String>,
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// An OCI image layout directory being written.
pub struct OciLayout {
    dir: PathBuf,
    index: Vec<Value>,
}

impl OciLayout {
    /// Creates the layout in `dir` (made if missing) with an empty index.
    pub fn create(dir: &Path) -> OciLayout {
        fs::create_dir_all(dir.join("blobs/sha256")).expect("layout blob dir");
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("write oci-layout");
        let layout = OciLayout {
            dir: dir.to_path_buf(),
            index: Vec::new(),
        };
        layout.save_index();
        layout
    }

    /// The layout directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where blob `digest` is stored.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    /// Stores `bytes` as a blob of `media_type`.
    pub fn write_blob(&self, media_type: &str, bytes: &[u8]) -> Descriptor {
        let digest = digest(bytes);
        fs::write(self.blob_path(&digest), bytes).expect("write blob");
        Descriptor {
            media_type: media_type.into(),
            digest,
            size: bytes.len() as u64,
        }
    }

    /// Writes layers, config and manifest of `spec` without naming it.
    pub fn write_image(&self, spec: &ImageSpec) -> BuiltImage {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for layer in &spec.layers {
            let tar = layer.tar();
            diff_ids.push(digest(&tar));
            let compression = layer.compression;
            layers.push(self.write_blob(compression.media_type(), &compression.compress(&tar)));
        }
        let config = self.write_blob(media::CONFIG, &spec.config_json(&diff_ids));
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media::MANIFEST,
            "config": config.to_json(),
            "layers": layers.iter().map(Descriptor::to_json).collect::<Vec<_>>(),
        });
        let manifest = self.write_blob(
            media::MANIFEST,
            &serde_json::to_vec(&manifest).expect("JSON"),
        );
        BuiltImage {
            manifest,
            config,
            layers,
            diff_ids,
        }
    }

    /// Writes `spec` and names its manifest `tag` in `index.json`.
    pub fn add_image(&mut self, tag: &str, spec: &ImageSpec) -> BuiltImage {
        let image = self.write_image(spec);
        let mut entry = image.manifest.to_json();
        entry["platform"] = json!({"architecture": spec.architecture, "os": "linux"});
        entry["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        self.index.push(entry);
        self.save_index();
        image
    }

    /// Writes each spec and an image index of them (platform `linux/<arch>`),
    /// named `tag` in `index.json`. Returns the index and the images.
    pub fn add_multi_platform(
        &mut self,
        tag: &str,
        specs: &[ImageSpec],
    ) -> (Descriptor, Vec<BuiltImage>) {
        let images: Vec<BuiltImage> = specs.iter().map(|s| self.write_image(s)).collect();
        let manifests: Vec<Value> = images
            .iter()
            .zip(specs)
            .map(|(image, spec)| {
                let mut entry = image.manifest.to_json();
                entry["platform"] = json!({"architecture": spec.architecture, "os": "linux"});
                entry
            })
            .collect();
        let index = json!({"schemaVersion": 2, "mediaType": media::INDEX, "manifests": manifests});
        let index = self.write_blob(media::INDEX, &serde_json::to_vec(&index).expect("JSON"));
        let mut entry = index.to_json();
        entry["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        self.index.push(entry);
        self.save_index();
        (index, images)
    }

    fn save_index(&self) {
        let index = json!({"schemaVersion": 2, "mediaType": media::INDEX, "manifests": self.index});
        fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).expect("JSON"),
        )
        .expect("write index.json");
    }

    /// The layout as an OCI archive (a tar of the directory) at `out`.
    pub fn archive(&self, out: &Path) {
        let file = fs::File::create(out).expect("create archive");
        let mut builder = tar::Builder::new(file);
        builder.mode(tar::HeaderMode::Deterministic);
        builder
            .append_dir_all(".", &self.dir)
            .expect("tar the layout");
        builder.finish().expect("finish archive");
    }
}

/// Writes a `docker save` tarball of `images` (their `RepoTags`; an empty
/// list makes an untagged image) at `out`: `manifest.json`, `<id>.json`
/// configs and `<diff id>/layer.tar` uncompressed layers.
pub fn docker_save(out: &Path, images: &[(Vec<String>, &ImageSpec)]) {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut manifest = Vec::new();
    for (tags, spec) in images {
        let mut layer_paths = Vec::new();
        let mut diff_ids = Vec::new();
        for layer in &spec.layers {
            let tar = layer.tar();
            let id = digest(&tar);
            let path = format!("{}/layer.tar", id.trim_start_matches("sha256:"));
            diff_ids.push(id);
            layer_paths.push(path.clone());
            files.push((path, tar));
        }
        let config = spec.config_json(&diff_ids);
        let config_path = format!("{}.json", digest(&config).trim_start_matches("sha256:"));
        files.push((config_path.clone(), config));
        manifest.push(json!({"Config": config_path, "RepoTags": tags, "Layers": layer_paths}));
    }
    files.push((
        "manifest.json".into(),
        serde_json::to_vec(&manifest).expect("JSON"),
    ));
    let file = fs::File::create(out).expect("create docker-save tarball");
    let mut builder = tar::Builder::new(file);
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(bytes.len() as u64);
        builder
            .append_data(&mut header, &path, bytes.as_slice())
            .expect("append to tarball");
    }
    builder.finish().expect("finish tarball");
}

/// The uncompressed tar of `entries`, times 0.
pub fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        // Real tars always fill these; entries below override them.
        header.set_uid(0);
        header.set_gid(0);
        let (path, data): (String, &[u8]) = match entry {
            Entry::Dir {
                path,
                mode,
                uid,
                gid,
            } => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(*mode);
                header.set_uid(*uid);
                header.set_gid(*gid);
                (format!("{}/", path.trim_end_matches('/')), &[])
            }
            Entry::File {
                path,
                content,
                mode,
                uid,
                gid,
            } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_uid(*uid);
                header.set_gid(*gid);
                (path.clone(), content.as_slice())
            }
            Entry::Symlink { path, target } | Entry::Hardlink { path, target } => {
                let hardlink = matches!(entry, Entry::Hardlink { .. });
                // A hard link's header carries its file's metadata, as tar
                // tools write it (some unpackers apply it to the shared inode).
                let (mode, uid, gid) = entries
                    .iter()
                    .find_map(|e| match e {
                        Entry::File {
                            path,
                            mode,
                            uid,
                            gid,
                            ..
                        } if hardlink && path == target => Some((*mode, *uid, *gid)),
                        _ => None,
                    })
                    .unwrap_or((0o777, 0, 0));
                header.set_entry_type(if hardlink {
                    tar::EntryType::Link
                } else {
                    tar::EntryType::Symlink
                });
                header.set_mode(mode);
                header.set_uid(uid);
                header.set_gid(gid);
                header.set_size(0);
                builder
                    .append_link(&mut header, path, target)
                    .expect("append link");
                continue;
            }
            Entry::Whiteout { path } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                let (parent, name) = match path.rsplit_once('/') {
                    Some((parent, name)) => (format!("{parent}/"), name),
                    None => (String::new(), path.as_str()),
                };
                (format!("{parent}.wh.{name}"), &[])
            }
            Entry::Opaque { dir } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                (format!("{}/.wh..wh..opq", dir.trim_end_matches('/')), &[])
            }
        };
        header.set_size(data.len() as u64);
        builder
            .append_data(&mut header, &path, data)
            .expect("append entry");
    }
    builder.into_inner().expect("finish layer tar")
}

/// Where busybox is looked for; Debian's busybox-static installs `/bin/busybox`.
const BUSYBOX_CANDIDATES: [&str; 2] = ["/bin/busybox", "/usr/bin/busybox"];

/// Applets linked in the base layer.
pub const BUSYBOX_APPLETS: [&str; 8] = ["sh", "ls", "cat", "echo", "env", "id", "sleep", "true"];

/// A base layer: `bin/busybox` (the host's static busybox), a symlink per
/// applet in [`BUSYBOX_APPLETS`], `etc/passwd`, `etc/group`, `tmp` (1777).
#[track_caller]
pub fn busybox_layer(compression: Compression) -> Layer {
    let busybox = BUSYBOX_CANDIDATES
        .iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or_else(|| panic!("busybox not found; install Debian's busybox-static"));
    let binary = fs::read(busybox).unwrap_or_else(|e| panic!("read {busybox}: {e}"));
    let mut entries = vec![
        Entry::dir("bin"),
        Entry::file_with("bin/busybox", binary, 0o755, 0, 0),
        Entry::dir("etc"),
        Entry::file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        Entry::file("etc/group", "root:x:0:\n"),
        Entry::Dir {
            path: "tmp".into(),
            mode: 0o1777,
            uid: 0,
            gid: 0,
        },
    ];
    entries.extend(
        BUSYBOX_APPLETS
            .iter()
            .map(|a| Entry::symlink(&format!("bin/{a}"), "busybox")),
    );
    Layer::new(compression, entries)
}

/// Copies image `tag` of the layout at `layout` to `<registry>/<repo>:<tag>`
/// with skopeo, keeping every blob as it is (`--preserve-digests`: zstd and
/// plain layers are pushed unchanged, or the copy fails). `all` copies every
/// platform of an index.
#[track_caller]
pub fn push(
    layout: &Path,
    tag: &str,
    registry: &Registry,
    repo: &str,
    creds: Option<&Credentials>,
    all: bool,
) {
    let mut command = Command::new("skopeo");
    // Tests must not depend on the host's signature policy.
    command.args(["--insecure-policy", "copy", "--quiet", "--preserve-digests"]);
    command.arg("--dest-tls-verify=false");
    match creds {
        Some(creds) => command.args(["--dest-creds", &creds.joined()]),
        None => command.arg("--dest-no-creds"),
    };
    if all {
        command.arg("--all");
    }
    command
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{}/{repo}:{tag}", registry.host()));
    let described = format!("{command:?}");
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run skopeo (Debian package skopeo): {e}"));
    assert!(
        out.status.success(),
        "{described} failed: {}{}\n--- registry log ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        registry.log()
    );
}
