//! The on-disk [`Store`], byte-compatible with the reference host-local so either plugin can take over.
//!
//! Layout under `<dataDir>/<network>/`: one file per reserved address, named
//! after it and holding `<containerID>\r\n<ifname>`; `last_reserved_ip.<range
//! set index>` holding the last address handed out from that set; and `lock`,
//! flock'ed exclusively for every operation by both implementations.

use super::store::{Error, Reservation, Store};
use crate::spec::Attachment;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Separates the container ID from the interface name in a reservation file.
const LINE_BREAK: &str = "\r\n";
/// The lock file's name.
const LOCK_FILE: &str = "lock";
/// The prefix of the per-range-set last reserved address files.
const LAST_RESERVED_PREFIX: &str = "last_reserved_ip.";

/// One network's reservation directory.
#[derive(Debug, Clone)]
pub struct DiskStore {
    dir: PathBuf,
}

impl DiskStore {
    /// The store of `network` under `data_dir`, creating the directory if needed.
    pub fn open(data_dir: &Path, network: &str) -> Result<DiskStore, Error> {
        let dir = data_dir.join(network);
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)
            .map_err(|source| io(&dir, source))?;
        Ok(DiskStore { dir })
    }

    /// The network's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the network's lock (blocking) for one operation; released when the guard drops.
    pub fn lock(&self) -> Result<LockedDiskStore, Error> {
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o750)
            .open(&path)
            .map_err(|source| io(&path, source))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| io(&path, errno.into()))?;
        Ok(LockedDiskStore {
            dir: self.dir.clone(),
            _lock: lock,
        })
    }
}

/// A [`DiskStore`] whose lock is held: the only way to read or change reservations.
#[derive(Debug)]
pub struct LockedDiskStore {
    dir: PathBuf,
    _lock: Flock<File>,
}

impl LockedDiskStore {
    fn ip_path(&self, ip: IpAddr) -> PathBuf {
        self.dir.join(ip.to_string())
    }

    fn last_reserved_path(&self, range_set: usize) -> PathBuf {
        self.dir.join(format!("{LAST_RESERVED_PREFIX}{range_set}"))
    }
}

impl Store for LockedDiskStore {
    fn reserve(
        &mut self,
        ip: IpAddr,
        holder: &Attachment,
        range_set: usize,
    ) -> Result<bool, Error> {
        let path = self.ip_path(ip);
        let mut file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
            Err(source) => return Err(io(&path, source)),
        };
        let content = format!(
            "{}{LINE_BREAK}{}",
            holder.container_id.trim(),
            holder.ifname
        );
        if let Err(source) = file.write_all(content.as_bytes()) {
            // A half-written reservation would leak the address; drop it.
            let _ = fs::remove_file(&path);
            return Err(io(&path, source));
        }
        let last = self.last_reserved_path(range_set);
        fs::write(&last, ip.to_string()).map_err(|source| io(&last, source))?;
        Ok(true)
    }

    fn last_reserved(&self, range_set: usize) -> Result<Option<IpAddr>, Error> {
        let path = self.last_reserved_path(range_set);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text.trim().parse().ok()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(source) => Err(io(&path, source)),
        }
    }

    fn reservations(&self) -> Result<Vec<Reservation>, Error> {
        let entries = fs::read_dir(&self.dir).map_err(|source| io(&self.dir, source))?;
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| io(&self.dir, source))?;
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<IpAddr>().ok())
            else {
                continue; // lock, last_reserved_ip.N, or foreign files
            };
            let path = entry.path();
            let text = match fs::read_to_string(&path) {
                Ok(t) => t,
                // Released by someone not honouring the lock, or a directory: not a reservation.
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::IsADirectory) => {
                    continue
                }
                Err(source) => return Err(io(&path, source)),
            };
            let text = text.trim();
            let (container_id, ifname) = match text.split_once(LINE_BREAK) {
                Some((id, ifname)) => (id.to_string(), Some(ifname.to_string())),
                None => (text.to_string(), None),
            };
            found.push(Reservation {
                ip,
                container_id,
                ifname,
            });
        }
        found.sort();
        Ok(found)
    }

    fn release(&mut self, ip: IpAddr) -> Result<(), Error> {
        let path = self.ip_path(ip);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(io(&path, e)),
            _ => Ok(()),
        }
    }
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::allocator::Allocator;
    use crate::ipam::range::{RangeConf, RangeSet};
    use std::os::unix::fs::PermissionsExt;

    fn holder(id: &str) -> Attachment {
        Attachment {
            container_id: id.into(),
            ifname: "eth0".into(),
        }
    }

    fn set(subnet: &str) -> RangeSet {
        RangeSet::new(&[RangeConf {
            subnet: subnet.parse().unwrap(),
            range_start: None,
            range_end: None,
            gateway: None,
        }])
        .unwrap()
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn layout_matches_reference_host_local() {
        let tmp = tempfile::tempdir().unwrap();
        let store = DiskStore::open(tmp.path(), "net1").unwrap();
        {
            let mut locked = store.lock().unwrap();
            let mut a = Allocator::new(&mut locked);
            a.allocate(&set("10.9.0.0/29"), 0, &holder("abc"), None)
                .unwrap();
            a.allocate(&set("fd00::/125"), 1, &holder("abc"), None)
                .unwrap();
        }
        let dir = tmp.path().join("net1");
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "10.9.0.2",
                "fd00::2",
                "last_reserved_ip.0",
                "last_reserved_ip.1",
                "lock"
            ]
        );
        assert_eq!(fs::read(dir.join("10.9.0.2")).unwrap(), b"abc\r\neth0");
        assert_eq!(fs::read(dir.join("fd00::2")).unwrap(), b"abc\r\neth0");
        assert_eq!(
            fs::read(dir.join("last_reserved_ip.0")).unwrap(),
            b"10.9.0.2"
        );
        assert_eq!(
            fs::read(dir.join("last_reserved_ip.1")).unwrap(),
            b"fd00::2"
        );
        assert_eq!(fs::read(dir.join("lock")).unwrap(), b"");
        assert_eq!(mode(&dir), 0o755);
        assert_eq!(mode(&dir.join("10.9.0.2")), 0o644);
    }

    #[test]
    fn reads_legacy_files_and_releases() {
        let tmp = tempfile::tempdir().unwrap();
        let store = DiskStore::open(tmp.path(), "n").unwrap();
        fs::write(store.dir().join("10.0.0.9"), "old-id\n").unwrap();
        let mut locked = store.lock().unwrap();
        let r = locked.reservations().unwrap();
        assert_eq!(r[0].container_id, "old-id");
        assert_eq!(r[0].ifname, None);
        let released = Allocator::new(&mut locked)
            .release(&holder("old-id"))
            .unwrap();
        assert_eq!(released.len(), 1);
        assert!(!store.dir().join("10.0.0.9").exists());
        // Releasing what is gone is fine.
        locked.release("10.0.0.9".parse().unwrap()).unwrap();
    }

    #[test]
    fn concurrent_threads_get_distinct_ips() {
        let tmp = tempfile::tempdir().unwrap();
        let s = set("10.20.0.0/24");
        let ips: Vec<IpAddr> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..20)
                .map(|i| {
                    let (path, s) = (tmp.path(), &s);
                    scope.spawn(move || {
                        // Each thread opens its own store and lock file, as separate processes would.
                        let store = DiskStore::open(path, "conc").unwrap();
                        let mut locked = store.lock().unwrap();
                        Allocator::new(&mut locked)
                            .allocate(s, 0, &holder(&format!("c{i}")), None)
                            .unwrap()
                            .address
                            .addr
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let unique: std::collections::HashSet<_> = ips.iter().collect();
        assert_eq!(unique.len(), 20);
        let store = DiskStore::open(tmp.path(), "conc").unwrap();
        assert_eq!(store.lock().unwrap().reservations().unwrap().len(), 20);
    }
}
