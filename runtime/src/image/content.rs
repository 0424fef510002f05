//! The blob store: content addressed by `sha256:` digest, written only through a checked, atomic ingest.

use super::Result;
use std::path::{Path, PathBuf};

/// Blobs under `<root>/content`.
#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

/// A blob being written: bytes go to a temporary file under `content/ingest/`
/// while being hashed; [`Ingest::commit`] checks the size and digest and renames
/// it into place. Dropped without commit, the temporary file is removed.
#[derive(Debug)]
pub struct Ingest {
    _private: (),
}

impl ContentStore {
    /// The store under `root` (= `<store root>/content`), creating its directories.
    pub fn new(root: &Path) -> Result<ContentStore> {
        let _ = root;
        todo!("content: new")
    }

    /// Where blob `digest` lives (whether or not it exists).
    pub fn path(&self, digest: &str) -> Result<PathBuf> {
        let _ = digest;
        todo!("content: path")
    }

    /// Whether blob `digest` is present.
    pub fn has(&self, digest: &str) -> bool {
        let _ = digest;
        todo!("content: has")
    }

    /// Reads a whole blob (manifests, configs: small documents).
    pub fn read(&self, digest: &str) -> Result<Vec<u8>> {
        let _ = digest;
        todo!("content: read")
    }

    /// Starts writing blob `digest`; `size`, when known, is checked on commit too.
    pub fn ingest(&self, digest: &str, size: Option<u64>) -> Result<Ingest> {
        let _ = (digest, size);
        todo!("content: ingest")
    }

    /// Stores `bytes` as blob `digest` (checked), e.g. a manifest already in memory.
    pub fn write(&self, digest: &str, bytes: &[u8]) -> Result<PathBuf> {
        let _ = (digest, bytes);
        todo!("content: write")
    }

    /// All blob digests present.
    pub fn list(&self) -> Result<Vec<String>> {
        todo!("content: list")
    }

    /// Deletes a blob; returns its size, or `None` if it was absent.
    pub fn delete(&self, digest: &str) -> Result<Option<u64>> {
        let _ = digest;
        todo!("content: delete")
    }
}

impl std::io::Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = buf;
        todo!("ingest: write")
    }

    fn flush(&mut self) -> std::io::Result<()> {
        todo!("ingest: flush")
    }
}

impl Ingest {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        todo!("ingest: written")
    }

    /// Checks size and digest, then renames the blob into place (an identical blob
    /// already there is fine). On mismatch nothing is stored.
    pub fn commit(self) -> Result<PathBuf> {
        todo!("ingest: commit")
    }
}
