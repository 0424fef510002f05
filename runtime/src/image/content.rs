//! The blob store: content addressed by `sha256:` digest, written only through a checked, atomic ingest.

use super::{io_err, Error, Result};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The only digest algorithm images use in practice, and the only one stored.
const SHA256_PREFIX: &str = "sha256:";

/// Buffer in front of an ingest file, so callers writing small chunks (HTTP
/// frames) do not cost one `write(2)` each.
const INGEST_BUFFER: usize = 256 * 1024;

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
    /// `None` once committed or failed, so `Drop` knows there is nothing to clean.
    file: Option<BufWriter<File>>,
    temp: PathBuf,
    target: PathBuf,
    digest: String,
    size: Option<u64>,
    hasher: Sha256,
    written: u64,
}

/// Checks that `digest` is `sha256:` + 64 lowercase hex digits and returns the hex.
pub fn digest_hex(digest: &str) -> Result<&str> {
    let invalid = |reason: String| Error::Invalid {
        what: format!("digest {digest:?}"),
        reason,
    };
    let Some(hex) = digest.strip_prefix(SHA256_PREFIX) else {
        return Err(match digest.split_once(':') {
            Some((algorithm, _)) => invalid(format!(
                "unsupported digest algorithm {algorithm:?} (only sha256 is supported)"
            )),
            None => invalid("expected sha256:<64 hex digits>".into()),
        });
    };
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(invalid(
            "expected sha256: and 64 lowercase hex digits".into(),
        ));
    }
    Ok(hex)
}

/// `sha256:<hex>` of `bytes` held in memory (manifests, configs).
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    format_digest(Sha256::new_with_prefix(bytes))
}

/// `sha256:<hex>` of a finished hasher.
pub(crate) fn format_digest(hasher: Sha256) -> String {
    let mut out = String::with_capacity(SHA256_PREFIX.len() + 64);
    out.push_str(SHA256_PREFIX);
    for byte in hasher.finalize() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// A name no other writer in this or another process uses at the same time:
/// `<stem>-<pid>-<counter>-<nanos>`.
pub(crate) fn unique_name(stem: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{stem}-{}-{n}-{nanos:08x}", std::process::id())
}

/// Fsyncs a directory so a rename into it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync directory", dir))
}

impl ContentStore {
    /// The store under `root` (= `<store root>/content`), creating its directories.
    pub fn new(root: &Path) -> Result<ContentStore> {
        let store = ContentStore {
            root: root.to_path_buf(),
        };
        for dir in [store.blobs_dir(), store.ingest_dir()] {
            fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        }
        Ok(store)
    }

    /// `content/blobs/sha256`.
    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// `content/ingest`: blobs being written; anything here is unfinished.
    pub fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }

    /// Where blob `digest` lives (whether or not it exists).
    pub fn path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.blobs_dir().join(digest_hex(digest)?))
    }

    /// Whether blob `digest` is present.
    pub fn has(&self, digest: &str) -> bool {
        self.path(digest)
            .map(|p| p.symlink_metadata().is_ok_and(|m| m.is_file()))
            .unwrap_or(false)
    }

    /// Reads a whole blob (manifests, configs: small documents).
    pub fn read(&self, digest: &str) -> Result<Vec<u8>> {
        let path = self.path(digest)?;
        fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound(format!("blob {digest}")),
            _ => Error::Io {
                op: "read blob",
                path,
                source: e,
            },
        })
    }

    /// Starts writing blob `digest`; `size`, when known, is checked on commit too.
    pub fn ingest(&self, digest: &str, size: Option<u64>) -> Result<Ingest> {
        let hex = digest_hex(digest)?;
        let temp = self.ingest_dir().join(unique_name(&hex[..12]));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(io_err("create ingest file", &temp))?;
        Ok(Ingest {
            file: Some(BufWriter::with_capacity(INGEST_BUFFER, file)),
            temp,
            target: self.blobs_dir().join(hex),
            digest: digest.to_string(),
            size,
            hasher: Sha256::new(),
            written: 0,
        })
    }

    /// Stores `bytes` as blob `digest` (checked), e.g. a manifest already in memory.
    pub fn write(&self, digest: &str, bytes: &[u8]) -> Result<PathBuf> {
        let mut ingest = self.ingest(digest, Some(bytes.len() as u64))?;
        ingest
            .write_all(bytes)
            .map_err(io_err("write ingest file", &ingest.temp))?;
        ingest.commit()
    }

    /// All blob digests present, sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        let dir = self.blobs_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("list blobs", &dir))? {
            let entry = entry.map_err(io_err("list blobs", &dir))?;
            let digest = format!("{SHA256_PREFIX}{}", entry.file_name().to_string_lossy());
            // Anything else in there is not ours to report (or to delete).
            if digest_hex(&digest).is_ok() {
                out.push(digest);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes a blob; returns its size, or `None` if it was absent.
    pub fn delete(&self, digest: &str) -> Result<Option<u64>> {
        let path = self.path(digest)?;
        let size = match path.symlink_metadata() {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("stat blob", &path)(e)),
        };
        match fs::remove_file(&path) {
            Ok(()) => Ok(Some(size)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("delete blob", &path)(e)),
        }
    }
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("ingest already finished"))?;
        let n = file.write(buf)?;
        // Hash exactly what was accepted, so a short write cannot skew the digest.
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

impl Ingest {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The digest this blob is announced with.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Checks size and digest, then renames the blob into place (an identical blob
    /// already there is fine). On mismatch nothing is stored.
    pub fn commit(mut self) -> Result<PathBuf> {
        let file = self
            .file
            .take()
            .expect("an Ingest is only finished by commit, which consumes it");
        // From here on every return path must remove the temp file: `Drop` no
        // longer does, since `file` is taken.
        let result = self.finish(file);
        if result.is_err() {
            let _ = fs::remove_file(&self.temp);
        }
        result
    }

    fn finish(&mut self, file: BufWriter<File>) -> Result<PathBuf> {
        if let Some(expected) = self.size {
            if expected != self.written {
                return Err(Error::SizeMismatch {
                    digest: self.digest.clone(),
                    expected,
                    actual: self.written,
                });
            }
        }
        let actual = format_digest(std::mem::take(&mut self.hasher));
        if actual != self.digest {
            return Err(Error::DigestMismatch {
                expected: self.digest.clone(),
                actual,
                size: self.written,
            });
        }
        let file = file
            .into_inner()
            .map_err(|e| io_err("write ingest file", &self.temp)(e.into_error()))?;
        file.sync_all()
            .map_err(io_err("sync ingest file", &self.temp))?;
        drop(file);
        if self.target.symlink_metadata().is_ok() {
            // Same digest, same bytes: keep the one already in place (readers may
            // have it open) and drop ours.
            let _ = fs::remove_file(&self.temp);
            return Ok(self.target.clone());
        }
        fs::rename(&self.temp, &self.target).map_err(io_err("store blob", &self.target))?;
        if let Some(dir) = self.target.parent() {
            sync_dir(dir)?;
        }
        Ok(self.target.clone())
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        let mut h = Sha256::new();
        h.update(bytes);
        format_digest(h)
    }

    fn ingest_is_empty(store: &ContentStore) -> bool {
        fs::read_dir(store.ingest_dir()).unwrap().next().is_none()
    }

    #[test]
    fn digests_are_validated() {
        let hex = "a".repeat(64);
        assert_eq!(digest_hex(&format!("sha256:{hex}")).unwrap(), hex);
        let err = digest_hex(&format!("sha512:{hex}"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unsupported digest algorithm \"sha512\""),
            "{err}"
        );
        for bad in [
            hex.clone(),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha256:../{}", "a".repeat(61)),
        ] {
            assert!(digest_hex(&bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn ingest_commit_stores_checked_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::new(dir.path()).unwrap();
        let data = b"hello blob".repeat(100_000);
        let digest = sha(&data);
        let mut ingest = store.ingest(&digest, Some(data.len() as u64)).unwrap();
        for chunk in data.chunks(1000) {
            ingest.write_all(chunk).unwrap();
        }
        assert_eq!(ingest.written(), data.len() as u64);
        assert!(!store.has(&digest), "visible before commit");
        let path = ingest.commit().unwrap();
        assert_eq!(fs::read(path).unwrap(), data);
        assert!(store.has(&digest));
        assert_eq!(store.read(&digest).unwrap(), data);
        assert_eq!(store.list().unwrap(), vec![digest.clone()]);
        assert!(ingest_is_empty(&store));

        // The same blob again is fine and leaves nothing behind.
        store.write(&digest, &data).unwrap();
        assert!(ingest_is_empty(&store));

        assert_eq!(store.delete(&digest).unwrap(), Some(data.len() as u64));
        assert_eq!(store.delete(&digest).unwrap(), None);
        assert!(!store.has(&digest));
        assert!(matches!(store.read(&digest), Err(Error::NotFound(_))));
    }

    #[test]
    fn mismatches_store_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::new(dir.path()).unwrap();
        let digest = sha(b"expected");

        let err = store.write(&digest, b"tampered").unwrap_err();
        assert!(
            matches!(err, Error::DigestMismatch { ref actual, size: 8, .. } if *actual == sha(b"tampered")),
            "{err}"
        );
        assert!(!store.has(&digest));

        let mut ingest = store.ingest(&digest, Some(100)).unwrap();
        ingest.write_all(b"expected").unwrap();
        let err = ingest.commit().unwrap_err();
        assert!(
            matches!(
                err,
                Error::SizeMismatch {
                    expected: 100,
                    actual: 8,
                    ..
                }
            ),
            "{err}"
        );
        assert!(!store.has(&digest));
        assert!(store.list().unwrap().is_empty());
        assert!(ingest_is_empty(&store));
    }

    #[test]
    fn dropped_ingest_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::new(dir.path()).unwrap();
        let digest = sha(b"cut connection");
        let mut ingest = store.ingest(&digest, None).unwrap();
        ingest.write_all(b"cut conn").unwrap();
        assert!(!ingest_is_empty(&store));
        drop(ingest);
        assert!(ingest_is_empty(&store));
        assert!(!store.has(&digest));
    }
}
