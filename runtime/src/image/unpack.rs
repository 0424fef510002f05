//! One layer tar (plain, gzip or zstd) unpacked into a directory, with OCI whiteouts turned into overlayfs ones.
//!
//! `.wh.<name>` becomes a 0:0 character device `<name>`; `.wh..wh..opq` marks its
//! directory opaque (`trusted.overlay.opaque=y`). Modes, ownership, xattrs,
//! hardlinks, symlinks and times are kept; no entry may escape the directory.
//!
//! # Staying inside the destination
//! The tar crate's `unpack_in` skips `..` entries and checks, by
//! canonicalising, that an entry's parent resolves inside the destination.
//! We keep that guarantee with stricter, cheaper rules: an absolute path or a
//! `..` component is an error; every parent component must be a real directory
//! (a symlink there is an error, so nothing is ever written through one); the
//! entry itself is created with `O_EXCL`/`O_NOFOLLOW` semantics after removing
//! whatever was at its path, so a symlink at the final component is replaced,
//! never followed; hardlink targets obey the same rules. Directories checked
//! once are remembered, so a deep tree costs one `lstat` per directory, not
//! one per entry and level.

use super::content::format_digest;
use super::{io_err, Error, Result};
use nix::sys::stat::{futimens, mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{fchown, lchown, symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use xattr::set_xattr;

/// Read size in front of the decompressor and of the tar parser: large reads
/// keep syscalls and decoder calls per byte low.
const READ_BUFFER: usize = 1 << 20;
/// Chunk size when copying a file's data out of the tar.
const COPY_BUFFER: usize = 256 * 1024;

/// The xattr overlayfs reads to treat a directory as opaque.
pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Namespace of overlayfs' own xattrs.
const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";
const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";

pub(crate) mod xattr;

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
        // Parameters (`; foo=bar`) do not change the format.
        let media_type = media_type.split(';').next().unwrap_or("").trim();
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar" => Some(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                Some(Compression::Gzip)
            }
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// Unpacks the layer read from `blob` into the empty directory `dest`; returns the
/// diff id (`sha256:` of the uncompressed tar). Reads `blob` to its end.
pub fn unpack(blob: &mut dyn Read, compression: Compression, dest: &Path) -> Result<String> {
    unpack_counted(blob, compression, dest).map(|(diff_id, _)| diff_id)
}

/// [`unpack`], also returning the size of the uncompressed tar (for errors).
pub(crate) fn unpack_counted(
    blob: &mut dyn Read,
    compression: Compression,
    dest: &Path,
) -> Result<(String, u64)> {
    let what = || format!("layer unpacked into {}", dest.display());
    let bad = |reason: String| Error::Invalid {
        what: what(),
        reason,
    };
    let mut input = BufReader::with_capacity(READ_BUFFER, blob);
    let (diff_id, size) = {
        let decoder: Box<dyn Read + '_> = match compression {
            Compression::None => Box::new(&mut input),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(&mut input)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(&mut input)
                    .map_err(|e| bad(format!("zstd: {e}")))?,
            ),
        };
        let tee = HashingReader {
            inner: decoder,
            hasher: Sha256::new(),
            count: 0,
        };
        let mut archive = tar::Archive::new(BufReader::with_capacity(READ_BUFFER, tee));
        let mut unpacker = Unpacker::new(dest)?;
        let entries = archive
            .entries()
            .map_err(|e| bad(format!("reading tar: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| bad(format!("reading tar: {e}")))?;
            unpacker.entry(&mut entry)?;
        }
        unpacker.finish()?;
        // The diff id covers the whole uncompressed stream, end-of-archive
        // blocks and any padding after them included.
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(|e| bad(format!("reading tar: {e}")))?;
        let tee = rest.into_inner();
        (format_digest(tee.hasher), tee.count)
    };
    // And a caller hashing the compressed stream must see all of it.
    io::copy(&mut input, &mut io::sink()).map_err(|e| bad(format!("reading blob: {e}")))?;
    Ok((diff_id, size))
}

/// Hashes everything read through it: the diff id of the uncompressed tar.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// What one tar entry creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
    Device(SFlag),
    Fifo,
}

/// Metadata of an entry, read once from its header and PAX records.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: TimeSpec,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

/// Per-layer state: the destination, the directories known to be real ones,
/// and the directory times to set once their contents are complete.
struct Unpacker<'a> {
    dest: &'a Path,
    /// Relative paths already verified (or created) as real directories.
    dirs: HashSet<PathBuf>,
    dir_times: Vec<(PathBuf, TimeSpec)>,
    buf: Vec<u8>,
}

impl<'a> Unpacker<'a> {
    fn new(dest: &'a Path) -> Result<Unpacker<'a>> {
        let meta = dest
            .symlink_metadata()
            .map_err(io_err("unpack layer into", dest))?;
        if !meta.is_dir() {
            return Err(Error::Invalid {
                what: format!("layer destination {}", dest.display()),
                reason: "not a directory".into(),
            });
        }
        let mut dirs = HashSet::new();
        dirs.insert(PathBuf::new());
        Ok(Unpacker {
            dest,
            dirs,
            dir_times: Vec::new(),
            buf: vec![0; COPY_BUFFER],
        })
    }

    fn invalid(&self, entry: &Path, reason: impl Into<String>) -> Error {
        Error::Invalid {
            what: format!("layer entry {:?}", entry.display().to_string()),
            reason: reason.into(),
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw_path = entry.path_bytes().into_owned();
        let shown = PathBuf::from(OsString::from_vec(raw_path.clone()));
        let header_type = entry.header().entry_type();
        let kind = match header_type {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                Kind::File
            }
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink,
            tar::EntryType::Link => Kind::HardLink,
            tar::EntryType::Char => Kind::Device(SFlag::S_IFCHR),
            tar::EntryType::Block => Kind::Device(SFlag::S_IFBLK),
            tar::EntryType::Fifo => Kind::Fifo,
            // Global PAX records describe the archive, not a file.
            tar::EntryType::XGlobalHeader => return Ok(()),
            other => {
                return Err(self.invalid(&shown, format!("unsupported tar entry type {other:?}")))
            }
        };
        let rel = relative_path(&raw_path).map_err(|reason| self.invalid(&shown, reason))?;
        let meta = read_meta(entry).map_err(|reason| self.invalid(&shown, reason))?;

        let Some(name) = rel.file_name().map(OsStr::to_owned) else {
            // `./`: the layer's root directory itself.
            if kind != Kind::Dir {
                return Err(self.invalid(&shown, "the layer root must be a directory"));
            }
            return self.set_dir_meta(PathBuf::new(), &meta);
        };
        let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        self.ensure_dir(&parent, &shown)?;

        let name_bytes = name.as_bytes();
        if name_bytes == OPAQUE_MARKER.as_bytes() {
            let dir = self.dest.join(&parent);
            return set_xattr(&dir, OPAQUE_XATTR, b"y").map_err(io_err("mark opaque", dir));
        }
        if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            // `.wh..wh.*` other than the opaque marker is AUFS bookkeeping.
            if hidden.starts_with(WHITEOUT_PREFIX.as_bytes()) {
                return Ok(());
            }
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(self.invalid(&shown, "whiteout names no file"));
            }
            let target = parent.join(OsStr::from_bytes(hidden));
            return self.create(&target, false, |path| {
                mknod(path, SFlag::S_IFCHR, Mode::empty(), 0).map_err(io::Error::from)
            });
        }

        let path = self.dest.join(&rel);
        match kind {
            Kind::Dir => {
                self.create(&rel, true, |path| fs::create_dir(path))?;
                self.dirs.insert(rel.clone());
                self.set_dir_meta(rel, &meta)
            }
            Kind::File => {
                let mut file = None;
                self.create(&rel, false, |path| {
                    file = Some(
                        OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .mode(0o600)
                            .custom_flags(libc::O_NOFOLLOW)
                            .open(path)?,
                    );
                    Ok(())
                })?;
                let mut file = file.expect("created above");
                copy_data(entry, &mut file, &mut self.buf).map_err(|e| match e {
                    CopyError::Read(e) => self.invalid(&shown, format!("reading data: {e}")),
                    CopyError::Write(e) => io_err("write", &path)(e),
                })?;
                apply_file_meta(&file, &path, &meta)
            }
            Kind::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| self.invalid(&shown, "symlink without a target"))?
                    .into_owned();
                self.create(&rel, false, |path| {
                    symlink(OsStr::from_bytes(&target), path)
                })?;
                apply_meta(&path, &meta, Target::Symlink)
            }
            Kind::HardLink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.invalid(&shown, "hardlink without a target"))?
                    .into_owned();
                let target_rel = relative_path(&target)
                    .map_err(|reason| self.invalid(&shown, format!("hardlink target: {reason}")))?;
                if target_rel == rel {
                    return Ok(());
                }
                self.check_link_target(&target_rel, &shown)?;
                let source = self.dest.join(&target_rel);
                self.create(&rel, false, |path| fs::hard_link(&source, path))
            }
            Kind::Device(_) | Kind::Fifo => {
                let (flag, dev) = match kind {
                    Kind::Device(flag) => {
                        let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                        let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                        (flag, nix::sys::stat::makedev(major.into(), minor.into()))
                    }
                    _ => (SFlag::S_IFIFO, 0),
                };
                self.create(&rel, false, |path| {
                    mknod(path, flag, Mode::from_bits_truncate(0o600), dev).map_err(io::Error::from)
                })?;
                apply_meta(&path, &meta, Target::Other)
            }
        }
    }

    /// Creates `rel` with `create`, first removing whatever an earlier entry put
    /// there (a directory is kept if a directory is wanted).
    fn create(
        &mut self,
        rel: &Path,
        want_dir: bool,
        mut create: impl FnMut(&Path) -> io::Result<()>,
    ) -> Result<()> {
        let path = self.dest.join(rel);
        match create(&path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create", &path)(e)),
        }
        let existing = path.symlink_metadata().map_err(io_err("stat", &path))?;
        if existing.is_dir() {
            if want_dir {
                return Ok(());
            }
            fs::remove_dir_all(&path).map_err(io_err("replace directory", &path))?;
            self.dirs.retain(|d| !d.starts_with(rel));
            self.dir_times.retain(|(d, _)| !d.starts_with(rel));
        } else {
            fs::remove_file(&path).map_err(io_err("replace", &path))?;
        }
        create(&path).map_err(io_err("create", &path))
    }

    /// Makes sure every component of `rel` is a real directory under `dest`,
    /// creating missing ones (0755, as tar does for implied parents).
    fn ensure_dir(&mut self, rel: &Path, shown: &Path) -> Result<()> {
        if self.dirs.contains(rel) {
            return Ok(());
        }
        let mut prefix = PathBuf::new();
        for component in rel.components() {
            prefix.push(component);
            if self.dirs.contains(&prefix) {
                continue;
            }
            let path = self.dest.join(&prefix);
            match path.symlink_metadata() {
                Ok(meta) if meta.is_dir() => {}
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(self.invalid(
                        shown,
                        format!(
                            "would be written through the symlink {} (refused)",
                            prefix.display()
                        ),
                    ))
                }
                Ok(_) => {
                    return Err(self.invalid(
                        shown,
                        format!("parent {} is not a directory", prefix.display()),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&path).map_err(io_err("create directory", &path))?;
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                        .map_err(io_err("chmod", &path))?;
                }
                Err(e) => return Err(io_err("stat", &path)(e)),
            }
            self.dirs.insert(prefix.clone());
        }
        Ok(())
    }

    /// A hardlink's target must already exist in this layer, below real
    /// directories only, and not be a directory.
    fn check_link_target(&mut self, target: &Path, shown: &Path) -> Result<()> {
        let parent = target.parent().unwrap_or(Path::new(""));
        let mut prefix = PathBuf::new();
        for component in parent.components() {
            prefix.push(component);
            if self.dirs.contains(&prefix) {
                continue;
            }
            let real_dir = self
                .dest
                .join(&prefix)
                .symlink_metadata()
                .is_ok_and(|m| m.is_dir());
            if !real_dir {
                return Err(self.invalid(
                    shown,
                    format!(
                        "hardlink target {} is not inside the layer",
                        target.display()
                    ),
                ));
            }
            self.dirs.insert(prefix.clone());
        }
        match self.dest.join(target).symlink_metadata() {
            Ok(meta) if !meta.is_dir() => Ok(()),
            Ok(_) => Err(self.invalid(shown, "hardlink to a directory")),
            Err(_) => Err(self.invalid(
                shown,
                format!("hardlink target {} is not in the layer", target.display()),
            )),
        }
    }

    fn set_dir_meta(&mut self, rel: PathBuf, meta: &Meta) -> Result<()> {
        let path = self.dest.join(&rel);
        apply_meta(&path, meta, Target::Dir)?;
        // Creating entries inside changes a directory's mtime: set it last.
        self.dir_times.push((rel, meta.mtime));
        Ok(())
    }

    /// Sets directory times, deepest first.
    fn finish(self) -> Result<()> {
        for (rel, mtime) in self.dir_times.iter().rev() {
            let path = self.dest.join(rel);
            utimensat(
                nix::fcntl::AT_FDCWD,
                &path,
                mtime,
                mtime,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(|e| io_err("set times", &path)(e.into()))?;
        }
        Ok(())
    }
}

/// Turns a tar path into a relative path of normal components, refusing
/// absolute paths and `..` (`.` and empty components are dropped).
fn relative_path(raw: &[u8]) -> std::result::Result<PathBuf, String> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path (refused)".into());
    }
    if raw.contains(&0) {
        return Err("NUL byte in path".into());
    }
    let mut rel = PathBuf::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("`..` in path (refused: it could escape the layer)".into()),
            part => rel.push(OsStr::from_bytes(part)),
        }
    }
    Ok(rel)
}

/// A numeric header field; an empty one (all NUL or spaces) reads as 0, as Go's
/// archive/tar — which writes most layers and is containerd's reader — takes it.
fn numeric(field: &str, raw: &[u8], parsed: io::Result<u64>) -> std::result::Result<u64, String> {
    parsed.or_else(|e| {
        if raw.iter().all(|b| *b == 0 || *b == b' ') {
            Ok(0)
        } else {
            Err(format!("header field {field}: {e}"))
        }
    })
}

/// Mode, owner, time and xattrs of an entry.
fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> std::result::Result<Meta, String> {
    let header = entry.header();
    let old = header.as_old();
    let mode = numeric("mode", &old.mode, header.mode().map(u64::from))? as u32 & 0o7777;
    let uid = numeric("uid", &old.uid, header.uid())?;
    let gid = numeric("gid", &old.gid, header.gid())?;
    let uid = u32::try_from(uid).map_err(|_| format!("uid {uid} out of range"))?;
    let gid = u32::try_from(gid).map_err(|_| format!("gid {gid} out of range"))?;
    let mut mtime = TimeSpec::new(header.mtime().unwrap_or(0) as i64, 0);
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions().map_err(|e| e.to_string())? {
        for record in pax {
            let record = record.map_err(|e| e.to_string())?;
            let key = record.key_bytes();
            if key == b"mtime" {
                if let Some(t) = parse_pax_time(record.value_bytes()) {
                    mtime = t;
                }
            } else if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX.as_bytes()) {
                // overlayfs' own xattrs in a layer would change how the layer is
                // read (opaque, redirects): only whiteout entries may set them.
                if name.starts_with(OVERLAY_XATTR_PREFIX.as_bytes()) || name.is_empty() {
                    continue;
                }
                xattrs.push((
                    OsStr::from_bytes(name).to_owned(),
                    record.value_bytes().to_vec(),
                ));
            }
        }
    }
    Ok(Meta {
        mode,
        uid,
        gid,
        mtime,
        xattrs,
    })
}

/// A PAX time, `seconds[.fraction]`.
fn parse_pax_time(value: &[u8]) -> Option<TimeSpec> {
    let value = std::str::from_utf8(value).ok()?;
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nanos: i64 = if digits.is_empty() {
        0
    } else {
        digits.parse::<i64>().ok()? * 10_i64.pow(9 - digits.len() as u32)
    };
    // A negative time with a fraction counts the fraction downwards.
    Some(if secs < 0 && nanos > 0 {
        TimeSpec::new(secs - 1, 1_000_000_000 - nanos)
    } else {
        TimeSpec::new(secs, nanos)
    })
}

/// Which side of a copy failed: the archive (bad input) or the file (the disk).
enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

fn copy_data(
    from: &mut dyn Read,
    to: &mut File,
    buf: &mut [u8],
) -> std::result::Result<(), CopyError> {
    loop {
        let n = match from.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(CopyError::Write)?;
    }
}

/// What [`apply_meta`] applies metadata to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// No `chmod` (meaningless, and it would follow the link).
    Symlink,
    /// Times are set later, once the directory's contents are complete.
    Dir,
    /// Devices and fifos.
    Other,
}

/// Owner, then mode (chown clears setuid/setgid), then xattrs (chown clears
/// `security.capability`), then times, all through the open file.
fn apply_file_meta(file: &File, path: &Path, meta: &Meta) -> Result<()> {
    fchown(file, Some(meta.uid), Some(meta.gid)).map_err(io_err("chown", path))?;
    file.set_permissions(fs::Permissions::from_mode(meta.mode))
        .map_err(io_err("chmod", path))?;
    for (name, value) in &meta.xattrs {
        set_xattr(path, name, value).map_err(io_err("set xattr", path))?;
    }
    futimens(file, &meta.mtime, &meta.mtime).map_err(|e| io_err("set times", path)(e.into()))
}

/// [`apply_file_meta`] by path.
fn apply_meta(path: &Path, meta: &Meta, target: Target) -> Result<()> {
    lchown(path, Some(meta.uid), Some(meta.gid)).map_err(io_err("chown", path))?;
    if target != Target::Symlink {
        fs::set_permissions(path, fs::Permissions::from_mode(meta.mode))
            .map_err(io_err("chmod", path))?;
    }
    for (name, value) in &meta.xattrs {
        match set_xattr(path, name, value) {
            Ok(()) => {}
            // `user.*` xattrs are not allowed on symlinks: a layer made on a
            // system that allowed it should still unpack.
            Err(e) if target == Target::Symlink && e.raw_os_error() == Some(libc::EPERM) => {}
            Err(e) => return Err(io_err("set xattr", path)(e)),
        }
    }
    if target == Target::Dir {
        return Ok(());
    }
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &meta.mtime,
        &meta.mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| io_err("set times", path)(e.into()))
}

/// Drains a reader to its end (used when a layer is already unpacked but the
/// caller still hashes the blob it streams).
pub(crate) fn drain(reader: &mut dyn Read) -> io::Result<u64> {
    let mut reader = BufReader::with_capacity(READ_BUFFER, reader);
    let mut total = 0;
    loop {
        let n = reader.fill_buf()?.len();
        if n == 0 {
            return Ok(total);
        }
        reader.consume(n);
        total += n as u64;
    }
}

#[cfg(test)]
pub(crate) mod tests;
