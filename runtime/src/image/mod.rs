//! Images: blobs by digest, pulls from OCI registries, layers unpacked once, and an overlayfs root per container.
//!
//! # On disk, under the store root (default `/var/lib/peapod`)
//! - `content/blobs/sha256/<hex>`: manifests, indexes, configs and compressed
//!   layers by digest. A blob is written under `content/ingest/` first and only
//!   renamed into place after its size and digest are checked, so a crash or a
//!   cut connection never leaves a half-written blob under its digest.
//! - `images.json`: the reference index (normalised name → [`Image`]),
//!   rewritten temp-file + rename while holding the store's `lock` file.
//! - `layers/sha256/<diff-id hex>/`: each layer unpacked once, whiteouts in
//!   overlayfs form, shared by every image and container that uses it.
//!   Unpacked under `layers/tmp-*` and renamed into place when complete.
//! - `snapshots/<container id>/{upper,work,rootfs}`: a container's writable
//!   layer and the mount point of its overlayfs root.
//!
//! # Layout
//! - [`reference`]: image names as Docker and containerd normalise them.
//! - [`content`]: the blob store and its checked, atomic ingest.
//! - [`index`]: the name → image records.
//! - [`unpack`]: one layer tar (plain, gzip, zstd) into a directory.
//! - [`snapshot`]: container root filesystems (overlayfs, or a copy where
//!   overlayfs is unavailable).
//! - [`manifest`]: manifests, indexes, media types, platform selection.
//! - [`auth`] and [`pull`]: credentials and fetching from registries.
//! - [`archive`]: importing `docker save` tarballs and OCI archives.
//! - [`config`]: the image config applied to a container's process.
//! - [`store`]: [`Store`], what the CLI and the kubelet use.

pub mod archive;
pub mod auth;
pub mod config;
pub mod content;
pub mod index;
pub mod manifest;
pub mod pull;
pub mod reference;
pub mod snapshot;
pub mod store;
pub mod unpack;

pub use reference::Reference;
pub use store::{Image, Layer, Store};

/// Errors of the image store, each saying what failed and on what.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation under the store root failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done, e.g. `write blob`.
        op: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An image name could not be parsed.
    #[error("invalid image reference {input:?}: {reason}")]
    InvalidReference {
        /// What the user gave.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No stored image has this name or id.
    #[error("image {0} not found (pull or import it first)")]
    NotFound(String),
    /// Content did not hash to the digest it was announced with.
    #[error("digest mismatch for {expected}: got {actual} ({size} bytes)")]
    DigestMismatch {
        /// The announced digest.
        expected: String,
        /// What the bytes hash to.
        actual: String,
        /// How many bytes were received.
        size: u64,
    },
    /// Content had a different size than announced.
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob's digest.
        digest: String,
        /// The announced size.
        expected: u64,
        /// The received size.
        actual: u64,
    },
    /// A manifest, index, config or archive is malformed or unsupported.
    #[error("{what}: {reason}")]
    Invalid {
        /// Which document, e.g. `manifest sha256:…` or `archive img.tar`.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The registry refused or failed a request.
    #[error("{registry}: {reason}")]
    Registry {
        /// The registry host, e.g. `127.0.0.1:5000`.
        registry: String,
        /// What went wrong: unauthorized, manifest unknown, unreachable...
        reason: String,
    },
    /// The image has no manifest for the wanted platform.
    #[error("{image}: no manifest for platform {platform} (available: {available})")]
    NoMatchingPlatform {
        /// The image name.
        image: String,
        /// The platform wanted, e.g. `linux/amd64`.
        platform: String,
        /// The platforms the index lists.
        available: String,
    },
    /// The image is used by a container and cannot be removed.
    #[error("image {image} is in use by container {container}")]
    InUse {
        /// The image name.
        image: String,
        /// A container using it.
        container: String,
    },
}

/// Shorthand for `Result<T, image::Error>`.
pub type Result<T> = std::result::Result<T, Error>;

/// An [`Error::Io`] builder for `map_err`.
pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<std::path::PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { op, path, source }
}
