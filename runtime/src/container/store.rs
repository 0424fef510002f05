//! The state store: one directory per container under the runtime root, each record
//! written to a temp file and renamed into place so readers never see half a record.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::Container;

/// The default state root, as `/run/runc` is runc's.
pub const DEFAULT_ROOT: &str = "/run/peapod";

const STATE_FILE: &str = "state.json";
const START_SOCKET: &str = "start.sock";

/// Why the store could not read or write a record.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No container of that id exists under the root.
    #[error("container {0} does not exist")]
    NotFound(String),
    /// `create` was given an id already in use.
    #[error("container with id {0} already exists")]
    Exists(String),
    /// A file operation on the store failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A record does not parse (written by another version, or damaged).
    #[error("{path}: corrupt state: {message}")]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// The parser's complaint.
        message: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The state root directory (`--root`).
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Open (and create, mode 0700) the state root.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(io(root))?;
        let root = fs::canonicalize(root).map_err(io(root))?;
        Ok(Store { root })
    }

    /// The directory of one container.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// The socket a created container's init listens on until `start` connects.
    pub fn start_socket(&self, id: &str) -> PathBuf {
        self.dir(id).join(START_SOCKET)
    }

    /// Claim an id: the directory's creation is the atomic test for duplicates.
    pub fn reserve(&self, id: &str) -> Result<PathBuf, StoreError> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = self.dir(id);
        match fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(StoreError::Exists(id.to_string()))
            }
            Err(e) => Err(io(&dir)(e)),
        }
    }

    /// Write a container's record atomically: a temp file renamed into place, so a
    /// reader sees the old record or the new one, never half of one. No fsync: the
    /// state root is runtime state (tmpfs under /run, like runc's), gone at reboot
    /// anyway, and a sync on every create would cost milliseconds on disk-backed roots.
    pub fn save(&self, container: &Container) -> Result<(), StoreError> {
        let dir = self.dir(&container.id);
        let path = dir.join(STATE_FILE);
        let tmp = dir.join(".state.json.tmp");
        let json = serde_json::to_vec(container).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let mut file = fs::File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(&json).map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// Read a container's record.
    pub fn load(&self, id: &str) -> Result<Container, StoreError> {
        if super::check_id(id).is_err() {
            return Err(StoreError::NotFound(id.to_string()));
        }
        let path = self.dir(id).join(STATE_FILE);
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(id.to_string()))
            }
            Err(e) => return Err(io(&path)(e)),
        };
        serde_json::from_slice(&text).map_err(|e| StoreError::Corrupt {
            path,
            message: e.to_string(),
        })
    }

    /// Every container with a record, sorted by id.
    pub fn list(&self) -> Result<Vec<Container>, StoreError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io(&self.root))? {
            let entry = entry.map_err(io(&self.root))?;
            let Some(id) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            match self.load(&id) {
                Ok(c) => out.push(c),
                // A directory without a record is a create in progress or a crash: skip it.
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Forget a container: remove its directory and everything in it.
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        let dir = self.dir(id);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&dir)(e)),
            _ => Ok(()),
        }
    }
}
