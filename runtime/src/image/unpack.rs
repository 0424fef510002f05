//! One layer tar (plain, gzip or zstd) unpacked into a directory, with OCI whiteouts turned into overlayfs ones.
//!
//! `.wh.<name>` becomes a 0:0 character device `<name>`; `.wh..wh..opq` marks its
//! directory opaque (`trusted.overlay.opaque=y`). Modes, ownership, xattrs,
//! hardlinks, symlinks and times are kept; no entry may escape the directory.

use super::Result;
use std::io::Read;
use std::path::Path;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// tar+gzip.
    Gzip,
    /// tar+zstd.
    Zstd,
}

impl Compression {
    /// The compression of an OCI or Docker layer media type; `None` for a non-layer type.
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        let _ = media_type;
        todo!("unpack: from_media_type")
    }
}

/// Unpacks the layer read from `blob` into the empty directory `dest`; returns the
/// diff id (`sha256:` of the uncompressed tar). Reads `blob` to its end.
pub fn unpack(blob: &mut dyn Read, compression: Compression, dest: &Path) -> Result<String> {
    let _ = (blob, compression, dest);
    todo!("unpack: unpack")
}
