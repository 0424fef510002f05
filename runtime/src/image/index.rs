//! The reference index: normalised image names → [`Image`] records, in one JSON file shared safely between processes.

use super::content::{sync_dir, unique_name};
use super::{io_err, Error, Image, Result};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// `<store root>/images.json`, read and rewritten (temp file + rename) under an
/// exclusive `flock` on `<store root>/lock`, so concurrent pulls never lose a record.
#[derive(Debug, Clone)]
pub struct Index {
    path: PathBuf,
    lock: PathBuf,
}

/// The store's exclusive lock, held until dropped.
///
/// `flock` locks belong to the open file description, so two threads of one
/// process each opening the lock file exclude each other just like two processes.
#[derive(Debug)]
pub struct StoreLock {
    _file: Flock<File>,
}

impl Index {
    /// The index of the store under `root`.
    pub fn new(root: &Path) -> Index {
        Index {
            path: root.join("images.json"),
            lock: root.join("lock"),
        }
    }

    /// Takes the store's exclusive lock (blocking). Everything that must not
    /// interleave with index updates — garbage collection, reserving a
    /// snapshot — runs while holding it.
    pub fn lock(&self) -> Result<StoreLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.lock)
            .map_err(io_err("open lock file", &self.lock))?;
        let file = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| Error::Io {
            op: "lock",
            path: self.lock.clone(),
            source: io::Error::from(errno),
        })?;
        Ok(StoreLock { _file: file })
    }

    /// All records, sorted by name.
    ///
    /// Reads without the lock: the file is only ever replaced by rename, so a
    /// reader sees either the old or the new version, never a mix.
    pub fn list(&self) -> Result<Vec<Image>> {
        self.load()
    }

    /// The record named `name` (normalised).
    pub fn get(&self, name: &str) -> Result<Option<Image>> {
        Ok(self.load()?.into_iter().find(|image| image.name == name))
    }

    /// Runs `f` on all records under the lock and saves what it leaves.
    /// If `f` fails, nothing is saved.
    pub fn update<T>(&self, f: impl FnOnce(&mut Vec<Image>) -> Result<T>) -> Result<T> {
        let _lock = self.lock()?;
        self.update_locked(&_lock, f)
    }

    /// [`Index::update`] for a caller already holding the store lock.
    pub fn update_locked<T>(
        &self,
        _lock: &StoreLock,
        f: impl FnOnce(&mut Vec<Image>) -> Result<T>,
    ) -> Result<T> {
        let mut images = self.load()?;
        let before = images.clone();
        let out = f(&mut images)?;
        if images != before {
            images.sort_by(|a, b| a.name.cmp(&b.name));
            self.save(&images)?;
        }
        Ok(out)
    }

    /// Reads the file; missing means no images yet.
    fn load(&self) -> Result<Vec<Image>> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read image index", &self.path)(e)),
        };
        // A corrupt index is an error, never "no images": silently starting
        // over would make the next update drop every record.
        let mut images: Vec<Image> =
            serde_json::from_slice(&bytes).map_err(|e| Error::Invalid {
                what: format!("image index {}", self.path.display()),
                reason: format!("{e} (fix or remove the file; blobs and layers are kept)"),
            })?;
        images.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(images)
    }

    /// Writes a temp file beside the index, fsyncs it and renames it over the index.
    fn save(&self, images: &[Image]) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let temp = dir.join(unique_name(".images.json"));
        let result = (|| {
            let mut bytes = serde_json::to_vec_pretty(images).map_err(|e| Error::Invalid {
                what: format!("image index {}", self.path.display()),
                reason: format!("cannot encode: {e}"),
            })?;
            bytes.push(b'\n');
            let mut file = File::create(&temp).map_err(io_err("create", &temp))?;
            file.write_all(&bytes).map_err(io_err("write", &temp))?;
            file.sync_all().map_err(io_err("sync", &temp))?;
            fs::rename(&temp, &self.path).map_err(io_err("replace image index", &self.path))?;
            sync_dir(dir)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str) -> Image {
        Image {
            name: name.to_string(),
            digest: format!("sha256:{}", "1".repeat(64)),
            manifest: format!("sha256:{}", "1".repeat(64)),
            config: format!("sha256:{}", "2".repeat(64)),
            layers: Vec::new(),
            stored_at: "2024-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn missing_file_is_empty_and_updates_persist() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::new(dir.path());
        assert!(index.list().unwrap().is_empty());
        index
            .update(|images| {
                images.push(image("docker.io/library/b:latest"));
                images.push(image("docker.io/library/a:latest"));
                Ok(())
            })
            .unwrap();
        let names: Vec<_> = index.list().unwrap().into_iter().map(|i| i.name).collect();
        assert_eq!(
            names,
            ["docker.io/library/a:latest", "docker.io/library/b:latest"]
        );
        assert!(index.get("docker.io/library/a:latest").unwrap().is_some());
        assert!(index.get("docker.io/library/c:latest").unwrap().is_none());

        // A failing update saves nothing.
        let err = index.update(|images| {
            images.clear();
            Err::<(), _>(Error::NotFound("x".into()))
        });
        assert!(err.is_err());
        assert_eq!(index.list().unwrap().len(), 2);
    }

    #[test]
    fn corrupt_index_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::new(dir.path());
        fs::write(dir.path().join("images.json"), b"[{\"name\": tru").unwrap();
        let err = index.list().unwrap_err().to_string();
        assert!(err.contains("images.json"), "{err}");
        let err = index.update(|_| Ok(())).unwrap_err().to_string();
        assert!(err.contains("images.json"), "{err}");
        // The corrupt file is left for the operator, not overwritten.
        assert_eq!(
            fs::read(dir.path().join("images.json")).unwrap(),
            b"[{\"name\": tru"
        );
    }

    #[test]
    fn concurrent_updates_lose_no_record() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let index = Index::new(dir.path());
                std::thread::spawn(move || {
                    for i in 0..25 {
                        index
                            .update(|images| {
                                images.push(image(&format!("127.0.0.1:5000/t{t}/img:{i}")));
                                Ok(())
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let images = Index::new(dir.path()).list().unwrap();
        assert_eq!(images.len(), 200);
        // No temp files left behind.
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "images.json" && n != "lock")
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
