//! Container root filesystems: an overlayfs of an image's layers plus a per-container upper directory.
//!
//! A snapshot lives in `<snapshots>/<id>/`: `snapshot.json` (the image and the
//! layer directories it uses), `upper/` and `work/` for overlayfs, `l/` with
//! one short symlink per layer, and `rootfs/`, the mount point. Where overlayfs
//! cannot be mounted the layers are copied into `rootfs/` instead (see
//! [`copy`](self#copy-fallback)).
//!
//! # Why `l/<n>` symlinks
//! overlayfs takes all lower directories in one mount option string, which the
//! kernel limits to a page (4 KiB). Absolute layer paths
//! (`/var/lib/peapod/layers/sha256/<64 hex>`, ~95 bytes) would cap an image at
//! about 40 layers. Instead the mount runs in a thread that has its own working
//! directory (`unshare(CLONE_FS)`, so the rest of the process is unaffected),
//! changes into the snapshot directory and passes `l/0:l/1:…`, a few bytes per
//! layer: enough for overlayfs' own limit of 500 layers.
//!
//! # Copy fallback
//! Layers are applied bottom-up: a 0:0 character device deletes the path, an
//! opaque directory (`trusted.overlay.opaque=y`) first empties what lower
//! layers put there; modes, owners, xattrs, times and hardlinks are kept.

use super::content::unique_name;
use super::unpack::xattr::{get_xattr, list_xattrs, set_xattr};
use super::unpack::OPAQUE_XATTR;
use super::{io_err, Error, Result};
use nix::errno::Errno;
use nix::mount::{umount2, MntFlags, MsFlags};
use nix::sys::stat::{mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{lchown, symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Set to `copy` to never use overlayfs (e.g. on a filesystem it cannot stack on).
pub const DRIVER_ENV: &str = "PEAPOD_SNAPSHOTTER";

const RECORD: &str = "snapshot.json";
/// The kernel's limit on mount option data: one page, NUL included.
const MOUNT_DATA_MAX: usize = 4095;

/// A prepared root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The container id.
    pub id: String,
    /// The image name it was made from (so the image cannot be removed under it).
    pub image: String,
    /// The mounted root filesystem (the bundle's `root.path`).
    pub rootfs: PathBuf,
    /// Whether `rootfs` is an overlayfs mount (false: a private copy of the layers).
    pub overlay: bool,
}

/// What `snapshot.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    image: String,
    /// Layer directories, bottom first: kept by GC while the snapshot exists.
    layers: Vec<PathBuf>,
    overlay: bool,
}

/// Snapshots under `<store root>/snapshots`.
#[derive(Debug, Clone)]
pub struct Snapshotter {
    root: PathBuf,
    /// Never try overlayfs.
    copy_only: bool,
}

impl Snapshotter {
    /// The snapshotter under `root` (= `<store root>/snapshots`). Uses overlayfs
    /// unless [`DRIVER_ENV`] is `copy`.
    pub fn new(root: &Path) -> Snapshotter {
        Snapshotter {
            root: root.to_path_buf(),
            copy_only: std::env::var(DRIVER_ENV).is_ok_and(|v| v == "copy"),
        }
    }

    /// A snapshotter that always copies layers instead of mounting overlayfs.
    pub fn copying(root: &Path) -> Snapshotter {
        Snapshotter {
            root: root.to_path_buf(),
            copy_only: true,
        }
    }

    /// Mounts `layers` (bottom first) with a fresh upper directory as container `id`'s root.
    pub fn prepare(&self, id: &str, image: &str, layers: &[PathBuf]) -> Result<Snapshot> {
        self.reserve(id, image, layers)?;
        self.activate(id)
    }

    /// First half of [`Snapshotter::prepare`]: creates the snapshot directory and
    /// its record, so the image and layers count as in use from now on. Fails if
    /// `id` already has a snapshot.
    pub fn reserve(&self, id: &str, image: &str, layers: &[PathBuf]) -> Result<()> {
        let dir = self.dir(id)?;
        fs::create_dir_all(&self.root).map_err(io_err("create directory", &self.root))?;
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::Invalid {
                    what: format!("snapshot {id}"),
                    reason: "the container already has a root filesystem (remove it first)".into(),
                })
            }
            Err(e) => return Err(io_err("create snapshot", &dir)(e)),
        }
        let record = Record {
            image: image.to_string(),
            layers: layers.to_vec(),
            overlay: false,
        };
        let result = write_record(&dir, &record);
        if result.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        result
    }

    /// Second half of [`Snapshotter::prepare`]: mounts (or copies) the reserved
    /// snapshot's root. On failure the snapshot is removed again.
    pub fn activate(&self, id: &str) -> Result<Snapshot> {
        let dir = self.dir(id)?;
        let result = self.activate_in(&dir);
        match result {
            Ok(overlay) => Ok(Snapshot {
                id: id.to_string(),
                image: read_record(&dir)?.image,
                rootfs: dir.join("rootfs"),
                overlay,
            }),
            Err(e) => {
                let _ = self.remove(id);
                Err(e)
            }
        }
    }

    fn activate_in(&self, dir: &Path) -> Result<bool> {
        let mut record = read_record(dir)?;
        for sub in ["upper", "work", "rootfs"] {
            let path = dir.join(sub);
            fs::create_dir(&path).map_err(io_err("create directory", &path))?;
        }
        let rootfs = dir.join("rootfs");
        let mounted = if self.copy_only {
            false
        } else {
            match mount_overlay(dir, &record.layers) {
                Ok(()) => true,
                // No overlayfs, or it cannot stack here (e.g. no xattrs or
                // d_type on this filesystem): fall back to a private copy.
                Err(MountError::Unsupported) => false,
                Err(MountError::Failed(e)) => return Err(e),
            }
        };
        if !mounted {
            // The root starts as the bottom layer's root would: 0755 root:root
            // unless a layer says otherwise.
            for layer in &record.layers {
                apply_layer(layer, &rootfs)?;
            }
        }
        record.overlay = mounted;
        write_record(dir, &record)?;
        Ok(mounted)
    }

    /// Unmounts and deletes snapshot `id`; a no-op if absent.
    pub fn remove(&self, id: &str) -> Result<()> {
        let dir = self.dir(id)?;
        if dir.symlink_metadata().is_err() {
            return Ok(());
        }
        let rootfs = dir.join("rootfs");
        unmount(&rootfs)?;
        // Never delete through a mount that is still there: that would empty
        // the container's upper layer behind its back, or worse.
        if is_mount_point(&rootfs) {
            return Err(Error::Io {
                op: "unmount",
                path: rootfs,
                source: io::Error::from_raw_os_error(libc::EBUSY),
            });
        }
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(io_err("remove snapshot", &dir)(e))
            }
            _ => Ok(()),
        }
    }

    /// All snapshots present, sorted by id.
    pub fn list(&self) -> Result<Vec<Snapshot>> {
        Ok(self
            .records()?
            .into_iter()
            .map(|(id, record)| Snapshot {
                rootfs: self.root.join(&id).join("rootfs"),
                id,
                image: record.image,
                overlay: record.overlay,
            })
            .collect())
    }

    /// Every layer directory a snapshot uses.
    pub fn used_layers(&self) -> Result<Vec<PathBuf>> {
        Ok(self
            .records()?
            .into_iter()
            .flat_map(|(_, record)| record.layers)
            .collect())
    }

    fn records(&self) -> Result<Vec<(String, Record)>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("list snapshots", &self.root)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("list snapshots", &self.root))?;
            let Ok(id) = entry.file_name().into_string() else {
                continue;
            };
            if validate_id(&id).is_err() || !entry.path().is_dir() {
                continue;
            }
            let record = match read_record(&entry.path()) {
                Ok(record) => record,
                // A crash between creating the directory and writing its record:
                // listed (so it can be removed) but holding nothing.
                Err(Error::NotFound(_)) => Record {
                    image: String::new(),
                    layers: Vec::new(),
                    overlay: false,
                },
                Err(e) => return Err(e),
            };
            out.push((id, record));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn dir(&self, id: &str) -> Result<PathBuf> {
        validate_id(id)?;
        Ok(self.root.join(id))
    }
}

/// A container id names a directory: one plain path component.
fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 255
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            what: format!("container id {id:?}"),
            reason: "expected letters, digits, '-', '_' or '.'".into(),
        })
    }
}

fn read_record(dir: &Path) -> Result<Record> {
    let path = dir.join(RECORD);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::NotFound(format!(
                "snapshot record {}",
                path.display()
            )))
        }
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    serde_json::from_slice(&bytes).map_err(|e| Error::Invalid {
        what: format!("snapshot record {}", path.display()),
        reason: e.to_string(),
    })
}

fn write_record(dir: &Path, record: &Record) -> Result<()> {
    let path = dir.join(RECORD);
    let temp = dir.join(unique_name(".snapshot.json"));
    let bytes = serde_json::to_vec(record).map_err(|e| Error::Invalid {
        what: format!("snapshot record {}", path.display()),
        reason: e.to_string(),
    })?;
    let result = File::create(&temp)
        .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
        .and_then(|()| fs::rename(&temp, &path));
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(io_err("write", &path))
}

/// Why an overlay mount did not happen.
enum MountError {
    /// overlayfs is missing or cannot be used here: copy instead.
    Unsupported,
    /// Anything else is a real error.
    Failed(Error),
}

/// Mounts `dir/rootfs` as overlayfs of `layers` (bottom first) with `dir/upper`
/// and `dir/work`, naming the layers through `dir/l/<n>` (see the module doc).
fn mount_overlay(dir: &Path, layers: &[PathBuf]) -> std::result::Result<(), MountError> {
    let links = dir.join("l");
    fs::create_dir(&links)
        .map_err(|e| MountError::Failed(io_err("create directory", &links)(e)))?;
    let mut lower = Vec::with_capacity(layers.len().max(1));
    if layers.is_empty() {
        // An image without layers: overlayfs still needs one lower directory.
        let empty = links.join("empty");
        fs::create_dir(&empty).map_err(|e| MountError::Failed(io_err("create", &empty)(e)))?;
        lower.push("l/empty".to_string());
    }
    for (n, layer) in layers.iter().enumerate() {
        let link = links.join(n.to_string());
        symlink(layer, &link).map_err(|e| MountError::Failed(io_err("link layer", &link)(e)))?;
        lower.push(format!("l/{n}"));
    }
    // overlayfs wants the top layer first.
    lower.reverse();
    let data = format!("lowerdir={},upperdir=upper,workdir=work", lower.join(":"));
    if data.len() > MOUNT_DATA_MAX {
        return Err(MountError::Failed(Error::Invalid {
            what: format!("snapshot {}", dir.display()),
            reason: format!("{} layers do not fit in one overlayfs mount", layers.len()),
        }));
    }
    let rootfs = dir.join("rootfs");
    let result = std::thread::scope(|scope| {
        scope
            .spawn(|| -> nix::Result<()> {
                // This thread gets its own working directory, so changing it
                // does not move the rest of the process.
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)?;
                nix::unistd::chdir(dir)?;
                nix::mount::mount(
                    Some("overlay"),
                    &rootfs,
                    Some("overlay"),
                    MsFlags::empty(),
                    Some(data.as_str()),
                )
            })
            .join()
            .unwrap_or(Err(Errno::EIO))
    });
    match result {
        Ok(()) => Ok(()),
        Err(Errno::ENODEV | Errno::EINVAL) => Err(MountError::Unsupported),
        Err(errno) => Err(MountError::Failed(Error::Io {
            op: "mount overlayfs on",
            path: rootfs,
            source: io::Error::from(errno),
        })),
    }
}

/// Unmounts `path` if it is a mount point: normally, else lazily (busy).
fn unmount(path: &Path) -> Result<()> {
    loop {
        match umount2(path, MntFlags::UMOUNT_NOFOLLOW) {
            // Mounts may be stacked: go again until nothing is left.
            Ok(()) => continue,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return Ok(()),
            Err(Errno::EBUSY) => {
                umount2(path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW)
                    .map_err(|e| io_err("unmount", path)(e.into()))?;
            }
            Err(e) => return Err(io_err("unmount", path)(e.into())),
        }
    }
}

/// Whether `path` is the root of a mount (its device differs from its parent's).
fn is_mount_point(path: &Path) -> bool {
    let (Ok(meta), Some(parent)) = (path.symlink_metadata(), path.parent()) else {
        return false;
    };
    parent
        .symlink_metadata()
        .is_ok_and(|p| p.dev() != meta.dev())
}

/// Applies one unpacked layer (overlayfs form) on top of `rootfs`.
fn apply_layer(layer: &Path, rootfs: &Path) -> Result<()> {
    let mut links = HashMap::new();
    apply_dir(layer, rootfs, &mut links)
}

/// Copies directory `src` over `dst` (which exists as a directory), then its metadata.
fn apply_dir(src: &Path, dst: &Path, links: &mut HashMap<(u64, u64), PathBuf>) -> Result<()> {
    if get_xattr(src, OPAQUE_XATTR)
        .map_err(io_err("read xattr", src))?
        .is_some_and(|v| v == b"y")
    {
        // Opaque: nothing from lower layers shows through.
        for name in fs::read_dir(dst).map_err(io_err("list", dst))? {
            let path = name.map_err(io_err("list", dst))?.path();
            remove_path(&path)?;
        }
    }
    for entry in fs::read_dir(src).map_err(io_err("list", src))? {
        let entry = entry.map_err(io_err("list", src))?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let meta = from.symlink_metadata().map_err(io_err("stat", &from))?;
        let kind = meta.file_type();
        if kind.is_char_device() && meta.rdev() == 0 {
            remove_path(&to)?;
            continue;
        }
        if kind.is_dir() {
            match to.symlink_metadata() {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    remove_path(&to)?;
                    fs::create_dir(&to).map_err(io_err("create directory", &to))?;
                }
                Err(_) => fs::create_dir(&to).map_err(io_err("create directory", &to))?,
            }
            apply_dir(&from, &to, links)?;
            continue;
        }
        remove_path(&to)?;
        if meta.nlink() > 1 {
            if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                fs::hard_link(first, &to).map_err(io_err("link", &to))?;
                continue;
            }
            links.insert((meta.dev(), meta.ino()), to.clone());
        }
        copy_node(&from, &to, &meta)?;
    }
    copy_meta(
        src,
        dst,
        &src.symlink_metadata().map_err(io_err("stat", src))?,
    )
}

/// Copies one non-directory: file data, a symlink, a device or a fifo.
fn copy_node(from: &Path, to: &Path, meta: &fs::Metadata) -> Result<()> {
    let kind = meta.file_type();
    if kind.is_file() {
        let mut src = File::open(from).map_err(io_err("open", from))?;
        let mut dst = File::create_new(to).map_err(io_err("create", to))?;
        // `io::copy` between files uses copy_file_range (reflinks where possible).
        io::copy(&mut src, &mut dst).map_err(io_err("copy", to))?;
    } else if kind.is_symlink() {
        let target = fs::read_link(from).map_err(io_err("read link", from))?;
        symlink(&target, to).map_err(io_err("create symlink", to))?;
    } else {
        let flag = if kind.is_char_device() {
            SFlag::S_IFCHR
        } else if kind.is_block_device() {
            SFlag::S_IFBLK
        } else if kind.is_fifo() {
            SFlag::S_IFIFO
        } else {
            // Sockets are not part of an image.
            return Ok(());
        };
        mknod(to, flag, Mode::from_bits_truncate(0o600), meta.rdev())
            .map_err(|e| io_err("create", to)(e.into()))?;
    }
    copy_meta(from, to, meta)
}

/// Owner, mode, xattrs (but overlayfs' own) and times of `from` onto `to`.
fn copy_meta(from: &Path, to: &Path, meta: &fs::Metadata) -> Result<()> {
    let symlink = meta.file_type().is_symlink();
    lchown(to, Some(meta.uid()), Some(meta.gid())).map_err(io_err("chown", to))?;
    if !symlink {
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(io_err("chmod", to))?;
    }
    for name in list_xattrs(from).map_err(io_err("list xattrs", from))? {
        if name.to_string_lossy().starts_with("trusted.overlay.") {
            continue;
        }
        if let Some(value) = get_xattr(from, &name).map_err(io_err("read xattr", from))? {
            set_xattr(to, &name, &value).map_err(io_err("set xattr", to))?;
        }
    }
    let atime = TimeSpec::new(meta.atime(), meta.atime_nsec());
    let mtime = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    utimensat(
        nix::fcntl::AT_FDCWD,
        to,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| io_err("set times", to)(e.into()))
}

/// Removes a file or a tree; absent is fine.
fn remove_path(path: &Path) -> Result<()> {
    let result = match path.symlink_metadata() {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => return Ok(()),
    };
    result.map_err(io_err("remove", path))
}

#[cfg(test)]
mod tests;
