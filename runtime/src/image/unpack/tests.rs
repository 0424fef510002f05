//! Unpack tests: layer tars built here with the tar crate, unpacked into temp dirs.

use super::xattr::get_xattr;
use super::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// Entries of a test layer.
pub(crate) struct LayerBuilder {
    builder: tar::Builder<Vec<u8>>,
}

impl LayerBuilder {
    pub(crate) fn new() -> LayerBuilder {
        LayerBuilder {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: tar::EntryType, mode: u32, owner: (u64, u64), mtime: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(owner.0);
        h.set_gid(owner.1);
        h.set_mtime(mtime);
        h.set_size(0);
        h
    }

    fn append(&mut self, mut h: tar::Header, path: &str, data: &[u8]) -> &mut Self {
        h.set_size(data.len() as u64);
        // Raw name bytes: the tar crate refuses to write `..` or absolute
        // names, which are exactly what some tests need.
        let name = &mut h.as_old_mut().name;
        name.fill(0);
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        self.builder.append(&h, data).unwrap();
        self
    }

    pub(crate) fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        let h = Self::header(tar::EntryType::Directory, mode, (0, 0), 1_600_000_000);
        self.append(h, path, b"")
    }

    pub(crate) fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        self.file_with(path, data, 0o644, (0, 0))
    }

    pub(crate) fn file_with(
        &mut self,
        path: &str,
        data: &[u8],
        mode: u32,
        owner: (u64, u64),
    ) -> &mut Self {
        let h = Self::header(tar::EntryType::Regular, mode, owner, 1_500_000_000);
        self.append(h, path, data)
    }

    fn link(&mut self, kind: tar::EntryType, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(kind, 0o777, (0, 0), 1_500_000_000);
        h.set_link_name_literal(target).unwrap();
        self.append(h, path, b"")
    }

    pub(crate) fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.link(tar::EntryType::Symlink, path, target)
    }

    pub(crate) fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.link(tar::EntryType::Link, path, target)
    }

    fn device(&mut self, kind: tar::EntryType, path: &str, major: u32, minor: u32) -> &mut Self {
        let mut h = Self::header(kind, 0o620, (0, 5), 1_500_000_000);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.append(h, path, b"")
    }

    /// A PAX extended header for the next entry.
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (key, value) in records {
            let body_len = key.len() + value.len() + 3; // ' ', '=', '\n'
            let mut len = body_len + 1;
            while len != body_len + len.to_string().len() {
                len = body_len + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        let h = Self::header(tar::EntryType::XHeader, 0o644, (0, 0), 0);
        self.append(h, "././@PaxHeader", &data)
    }

    pub(crate) fn whiteout(&mut self, path: &str) -> &mut Self {
        self.file(path, b"")
    }

    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let builder = std::mem::replace(&mut self.builder, tar::Builder::new(Vec::new()));
        builder.into_inner().unwrap()
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    format_digest(h)
}

fn assert_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (devices, ownership, trusted.* xattrs): run as root"
    );
}

fn unpack_tar(tar: &[u8]) -> (tempfile::TempDir, Result<String>) {
    let dir = tempfile::tempdir().unwrap();
    let result = unpack(&mut &tar[..], Compression::None, dir.path());
    (dir, result)
}

#[test]
fn media_types() {
    use Compression::*;
    let cases = [
        ("application/vnd.oci.image.layer.v1.tar", Some(None)),
        ("application/vnd.oci.image.layer.v1.tar+gzip", Some(Gzip)),
        ("application/vnd.oci.image.layer.v1.tar+zstd", Some(Zstd)),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            Some(None),
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            Some(Gzip),
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
            Some(Zstd),
        ),
        (
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            Some(Gzip),
        ),
        ("application/vnd.docker.image.rootfs.diff.tar", Some(None)),
        ("application/vnd.oci.image.config.v1+json", Option::None),
        ("application/vnd.oci.image.manifest.v1+json", Option::None),
    ];
    for (media_type, want) in cases {
        assert_eq!(
            Compression::from_media_type(media_type),
            want,
            "{media_type}"
        );
    }
}

#[test]
fn unpacks_every_entry_kind() {
    assert_root();
    let tar = LayerBuilder::new()
        .dir("bin/", 0o755)
        .file_with("bin/busybox", b"#!busybox", 0o755, (0, 0))
        .file_with("bin/su", b"su", 0o4755, (0, 0))
        .file_with("bin/wall", b"wall", 0o2755, (0, 5))
        .symlink("bin/sh", "busybox")
        .hardlink("bin/ls", "bin/busybox")
        .dir("tmp/", 0o1777)
        .file_with("home/user/.profile", b"export A=1\n", 0o600, (1000, 1001))
        .device(tar::EntryType::Char, "dev/null", 1, 3)
        .device(tar::EntryType::Block, "dev/loop0", 7, 0)
        .device(tar::EntryType::Fifo, "run/initctl", 0, 0)
        .pax(&[
            ("SCHILY.xattr.user.peapod", b"hello"),
            ("SCHILY.xattr.trusted.overlay.redirect", b"/elsewhere"),
            ("mtime", b"1234567890.5"),
        ])
        .file("etc/xattr", b"x")
        .dir("etc/", 0o700)
        .finish();
    let (dir, result) = unpack_tar(&tar);
    let diff_id = result.unwrap();
    assert_eq!(diff_id, sha256(&tar));
    let root = dir.path();
    let meta = |p: &str| root.join(p).symlink_metadata().unwrap();

    assert_eq!(fs::read(root.join("bin/busybox")).unwrap(), b"#!busybox");
    assert_eq!(meta("bin/busybox").mode() & 0o7777, 0o755);
    assert_eq!(meta("bin/busybox").mtime(), 1_500_000_000);
    assert_eq!(meta("bin/su").mode() & 0o7777, 0o4755);
    assert_eq!(meta("bin/wall").mode() & 0o7777, 0o2755);
    assert_eq!(meta("bin/wall").gid(), 5);
    assert_eq!(
        fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(meta("bin/ls").ino(), meta("bin/busybox").ino());
    assert_eq!(meta("bin/ls").nlink(), 2);
    assert_eq!(meta("tmp").mode() & 0o7777, 0o1777);
    assert_eq!(
        meta("bin").mtime(),
        1_600_000_000,
        "dir mtime set after contents"
    );
    let profile = meta("home/user/.profile");
    assert_eq!(
        (profile.uid(), profile.gid(), profile.mode() & 0o777),
        (1000, 1001, 0o600)
    );
    // Implied parents are created 0755.
    assert_eq!(meta("home/user").mode() & 0o7777, 0o755);

    let null = meta("dev/null");
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    assert_eq!((null.mode() & 0o7777, null.gid()), (0o620, 5));
    let loop0 = meta("dev/loop0");
    assert!(loop0.file_type().is_block_device());
    assert_eq!(loop0.rdev(), nix::sys::stat::makedev(7, 0));
    assert!(meta("run/initctl").file_type().is_fifo());

    let xattr_file = root.join("etc/xattr");
    assert_eq!(
        get_xattr(&xattr_file, "user.peapod").unwrap().unwrap(),
        b"hello"
    );
    assert_eq!(
        get_xattr(&xattr_file, "trusted.overlay.redirect").unwrap(),
        Option::None,
        "overlayfs xattrs from a layer are dropped"
    );
    assert_eq!(meta("etc/xattr").mtime(), 1_234_567_890);
    assert_eq!(meta("etc/xattr").mtime_nsec(), 500_000_000);
    // A directory entry after its contents still wins on mode.
    assert_eq!(meta("etc").mode() & 0o7777, 0o700);
}

#[test]
fn whiteouts_become_overlayfs_whiteouts() {
    assert_root();
    let tar = LayerBuilder::new()
        .dir("etc/", 0o755)
        .whiteout("etc/.wh.passwd")
        .dir("var/cache/", 0o755)
        .whiteout("var/cache/.wh..wh..opq")
        .file("var/cache/new", b"new")
        .whiteout(".wh..wh.plnk")
        .whiteout("opt/.wh.app")
        .finish();
    let (dir, result) = unpack_tar(&tar);
    result.unwrap();
    let root = dir.path();
    for gone in ["etc/passwd", "opt/app"] {
        let meta = root.join(gone).symlink_metadata().unwrap();
        assert!(meta.file_type().is_char_device(), "{gone}");
        assert_eq!(meta.rdev(), 0, "{gone}");
    }
    assert_eq!(
        get_xattr(&root.join("var/cache"), OPAQUE_XATTR)
            .unwrap()
            .unwrap(),
        b"y"
    );
    assert_eq!(
        get_xattr(&root.join("etc"), OPAQUE_XATTR).unwrap(),
        Option::None
    );
    assert_eq!(fs::read(root.join("var/cache/new")).unwrap(), b"new");
    // No `.wh.` name survives.
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            assert!(
                !e.file_name().to_string_lossy().starts_with(".wh."),
                "{:?}",
                e.path()
            );
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
}

#[test]
fn escapes_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    let target = outside.path().to_str().unwrap().to_string();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "absolute",
            LayerBuilder::new()
                .file(&format!("{target}/victim"), b"x")
                .finish(),
        ),
        (
            "dotdot",
            LayerBuilder::new().file("../victim", b"x").finish(),
        ),
        (
            "inner dotdot",
            LayerBuilder::new()
                .dir("a/", 0o755)
                .file("a/../../victim", b"x")
                .finish(),
        ),
        (
            "through absolute symlink",
            LayerBuilder::new()
                .symlink("out", &target)
                .file("out/victim", b"x")
                .finish(),
        ),
        (
            "through relative symlink",
            LayerBuilder::new()
                .dir("a/", 0o755)
                .symlink("a/up", "../..")
                .file("a/up/victim", b"x")
                .finish(),
        ),
        (
            "whiteout through symlink",
            LayerBuilder::new()
                .symlink("out", &target)
                .whiteout("out/.wh.victim")
                .finish(),
        ),
        (
            "hardlink to outside",
            LayerBuilder::new().hardlink("x", "../victim").finish(),
        ),
        (
            "hardlink through symlink",
            LayerBuilder::new()
                .symlink("out", &target)
                .hardlink("x", "out/victim")
                .finish(),
        ),
    ];
    for (name, tar) in cases {
        fs::write(&victim, b"original").unwrap();
        let (_dir, result) = unpack_tar(&tar);
        let err = result.expect_err(name).to_string();
        assert!(
            err.contains("refused")
                || err.contains("not inside")
                || err.contains("not in the layer"),
            "{name}: {err}"
        );
        assert_eq!(fs::read(&victim).unwrap(), b"original", "{name}");
    }
    // A symlink at the final component is replaced, never followed.
    fs::write(&victim, b"original").unwrap();
    let tar = LayerBuilder::new()
        .symlink("f", victim.to_str().unwrap())
        .file("f", b"replaced")
        .finish();
    let (dir, result) = unpack_tar(&tar);
    result.unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"original");
    assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"replaced");
}

#[test]
fn later_entries_replace_other_types() {
    let tar = LayerBuilder::new()
        .file("a", b"file")
        .dir("a/", 0o755)
        .file("a/b", b"inner")
        .dir("d/sub/", 0o755)
        .file("d/sub/x", b"x")
        .symlink("d", "a")
        .file("s", b"one")
        .symlink("s", "a")
        .file("dup", b"first")
        .file("dup", b"second")
        .finish();
    let (dir, result) = unpack_tar(&tar);
    result.unwrap();
    let root = dir.path();
    assert_eq!(fs::read(root.join("a/b")).unwrap(), b"inner");
    assert_eq!(fs::read_link(root.join("d")).unwrap(), Path::new("a"));
    assert_eq!(fs::read_link(root.join("s")).unwrap(), Path::new("a"));
    assert_eq!(fs::read(root.join("dup")).unwrap(), b"second");
}

/// A reader that counts what was taken from it.
struct Counting<'a> {
    inner: &'a [u8],
    read: usize,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n;
        Ok(n)
    }
}

#[test]
fn compressions_give_the_same_tree_and_diff_id() {
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let tar = LayerBuilder::new()
        .dir("data/", 0o755)
        .file("data/big", &big)
        .file("data/small", b"small")
        .finish();
    let gzip = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&tar).unwrap();
        e.finish().unwrap()
    };
    let zstd = zstd::encode_all(&tar[..], 3).unwrap();
    for (compression, blob) in [
        (Compression::None, &tar),
        (Compression::Gzip, &gzip),
        (Compression::Zstd, &zstd),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut reader = Counting {
            inner: blob,
            read: 0,
        };
        let diff_id = unpack(&mut reader, compression, dir.path()).unwrap();
        assert_eq!(diff_id, sha256(&tar), "{compression:?}");
        assert_eq!(
            reader.read,
            blob.len(),
            "{compression:?}: blob read to its end"
        );
        assert_eq!(fs::read(dir.path().join("data/big")).unwrap(), big);
        assert_eq!(fs::read(dir.path().join("data/small")).unwrap(), b"small");
    }
    // A truncated blob is an error, not a short layer.
    let dir = tempfile::tempdir().unwrap();
    let cut = &gzip[..gzip.len() / 2];
    assert!(unpack(&mut &cut[..], Compression::Gzip, dir.path()).is_err());
    // Garbage is an error too.
    let dir = tempfile::tempdir().unwrap();
    assert!(unpack(
        &mut &b"not a gzip stream"[..],
        Compression::Gzip,
        dir.path()
    )
    .is_err());
}

#[test]
fn empty_numeric_fields_read_as_zero_and_garbage_is_refused() {
    assert_root();
    let blank = |uid: &[u8]| {
        let mut h = LayerBuilder::header(tar::EntryType::Regular, 0o644, (0, 0), 0);
        let old = h.as_old_mut();
        old.uid.fill(0);
        old.uid[..uid.len()].copy_from_slice(uid);
        old.gid.fill(b' ');
        h
    };
    let mut layer = LayerBuilder::new();
    layer.append(blank(b""), "etc/.wh.gone", b"");
    let (dir, result) = unpack_tar(&layer.finish());
    result.unwrap();
    assert!(dir
        .path()
        .join("etc/gone")
        .symlink_metadata()
        .unwrap()
        .file_type()
        .is_char_device());

    let mut layer = LayerBuilder::new();
    layer.append(blank(b"12x"), "file", b"data");
    let (_dir, result) = unpack_tar(&layer.finish());
    let err = result.unwrap_err().to_string();
    assert!(err.contains("uid"), "{err}");
}
