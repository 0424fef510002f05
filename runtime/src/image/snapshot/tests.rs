//! Snapshot tests (root): overlayfs and copy roots of layers unpacked here must show the same tree.

use super::*;
use crate::image::unpack::tests::LayerBuilder;
use crate::image::unpack::{unpack, Compression};
use std::collections::BTreeMap;

fn assert_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "snapshot tests mount overlayfs and create devices: run them as root"
    );
}

/// Unpacks each tar into `<dir>/layer<n>`; returns the directories, bottom first.
fn layers(dir: &Path, tars: &[Vec<u8>]) -> Vec<PathBuf> {
    tars.iter()
        .enumerate()
        .map(|(n, tar)| {
            let layer = dir.join(format!("layer{n}"));
            fs::create_dir(&layer).unwrap();
            unpack(&mut &tar[..], Compression::None, &layer).unwrap();
            layer
        })
        .collect()
}

/// Every path under `root` with what a container would see there.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = path.symlink_metadata().unwrap();
            let kind = meta.file_type();
            let what = if kind.is_dir() {
                stack.push(path.clone());
                "dir".to_string()
            } else if kind.is_symlink() {
                format!("-> {}", fs::read_link(&path).unwrap().display())
            } else if kind.is_file() {
                format!(
                    "file {}",
                    String::from_utf8_lossy(&fs::read(&path).unwrap())
                )
            } else if kind.is_char_device() {
                format!("char {}", meta.rdev())
            } else {
                "other".to_string()
            };
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            out.insert(
                rel,
                format!(
                    "{what} {:o} {}:{}",
                    meta.mode() & 0o7777,
                    meta.uid(),
                    meta.gid()
                ),
            );
        }
    }
    out
}

fn three_layers() -> Vec<Vec<u8>> {
    vec![
        LayerBuilder::new()
            .dir("bin/", 0o755)
            .file_with("bin/sh", b"sh0", 0o755, (0, 0))
            .hardlink("bin/ls", "bin/sh")
            .file("etc/passwd", b"root")
            .file("etc/hosts", b"localhost")
            .file("var/cache/a", b"a")
            .file("var/cache/b", b"b")
            .file("keep/x", b"x")
            .file_with("home/u/f", b"mine", 0o4750, (1000, 1000))
            .symlink("lib", "usr/lib")
            .finish(),
        LayerBuilder::new()
            .whiteout("etc/.wh.hosts")
            .file("etc/passwd", b"root2")
            .dir("var/cache/", 0o700)
            .whiteout("var/cache/.wh..wh..opq")
            .file("var/cache/c", b"c")
            .whiteout(".wh.keep")
            .finish(),
        LayerBuilder::new()
            .file("usr/lib/libc", b"libc")
            .file_with("bin/sh", b"sh2", 0o755, (0, 0))
            .file("var/cache/d", b"d")
            .finish(),
    ]
}

fn expected() -> BTreeMap<String, String> {
    [
        ("bin", "dir 755 0:0"),
        ("bin/sh", "file sh2 755 0:0"),
        ("bin/ls", "file sh0 755 0:0"),
        ("etc", "dir 755 0:0"),
        ("etc/passwd", "file root2 644 0:0"),
        ("var", "dir 755 0:0"),
        // The top layer's implied `var/cache` (0755) wins over layer 1's 0700.
        ("var/cache", "dir 755 0:0"),
        ("var/cache/c", "file c 644 0:0"),
        ("var/cache/d", "file d 644 0:0"),
        ("home", "dir 755 0:0"),
        ("home/u", "dir 755 0:0"),
        ("home/u/f", "file mine 4750 1000:1000"),
        ("lib", "-> usr/lib 777 0:0"),
        ("usr", "dir 755 0:0"),
        ("usr/lib", "dir 755 0:0"),
        ("usr/lib/libc", "file libc 644 0:0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Mount points under `dir` still listed in /proc/self/mountinfo.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&dir))
        .collect()
}

/// Removes what a failed test left mounted, so the temp dir can go.
struct Cleanup(Snapshotter, Vec<&'static str>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for id in &self.1 {
            let _ = self.0.remove(id);
        }
    }
}

#[test]
fn overlay_shows_exactly_the_merged_layers() {
    assert_root();
    let dir = tempfile::tempdir().unwrap();
    let layers = layers(dir.path(), &three_layers());
    let snapshotter = Snapshotter {
        root: dir.path().join("snapshots"),
        copy_only: false,
    };
    let _cleanup = Cleanup(snapshotter.clone(), vec!["ctr-overlay"]);
    let snapshot = snapshotter
        .prepare("ctr-overlay", "docker.io/library/test:latest", &layers)
        .unwrap();
    assert!(snapshot.overlay, "overlayfs is available here");
    assert_eq!(tree(&snapshot.rootfs), expected());
    assert_eq!(mounts_under(dir.path()).len(), 1);

    // Writes land in the upper directory, not in the shared layers.
    fs::write(snapshot.rootfs.join("etc/passwd"), b"changed").unwrap();
    fs::remove_file(snapshot.rootfs.join("bin/ls")).unwrap();
    assert_eq!(fs::read(layers[1].join("etc/passwd")).unwrap(), b"root2");
    assert!(layers[0].join("bin/ls").exists());

    let listed = snapshotter.list().unwrap();
    assert_eq!(listed, vec![snapshot.clone()]);
    assert_eq!(snapshotter.used_layers().unwrap(), layers);

    let err = snapshotter
        .prepare("ctr-overlay", "docker.io/library/test:latest", &layers)
        .unwrap_err()
        .to_string();
    assert!(err.contains("already has a root filesystem"), "{err}");

    snapshotter.remove("ctr-overlay").unwrap();
    assert!(mounts_under(dir.path()).is_empty());
    assert!(!dir.path().join("snapshots/ctr-overlay").exists());
    assert!(snapshotter.list().unwrap().is_empty());
    snapshotter.remove("ctr-overlay").unwrap();
}

#[test]
fn copy_fallback_gives_the_same_tree() {
    assert_root();
    let dir = tempfile::tempdir().unwrap();
    let layers = layers(dir.path(), &three_layers());
    let snapshotter = Snapshotter::copying(&dir.path().join("snapshots"));
    let _cleanup = Cleanup(snapshotter.clone(), vec!["ctr-copy"]);
    let snapshot = snapshotter
        .prepare("ctr-copy", "docker.io/library/test:latest", &layers)
        .unwrap();
    assert!(!snapshot.overlay);
    assert_eq!(tree(&snapshot.rootfs), expected());
    assert!(mounts_under(dir.path()).is_empty());
    let rootfs = &snapshot.rootfs;
    // Hardlinks stay hardlinks (bin/ls kept the old bin/sh's inode).
    assert_eq!(rootfs.join("bin/ls").metadata().unwrap().nlink(), 1);
    assert_eq!(snapshotter.list().unwrap(), vec![snapshot.clone()]);
    snapshotter.remove("ctr-copy").unwrap();
    assert!(!dir.path().join("snapshots/ctr-copy").exists());
}

#[test]
fn single_empty_and_many_layer_images() {
    assert_root();
    let dir = tempfile::tempdir().unwrap();
    // 120 layers: absolute paths would not fit in one page of mount options.
    let tars: Vec<Vec<u8>> = (0..120)
        .map(|n| {
            LayerBuilder::new()
                .file(&format!("files/f{n}"), n.to_string().as_bytes())
                .file("top", n.to_string().as_bytes())
                .finish()
        })
        .collect();
    let layers = layers(dir.path(), &tars);
    let snapshotter = Snapshotter {
        root: dir.path().join("snapshots"),
        copy_only: false,
    };
    let _cleanup = Cleanup(snapshotter.clone(), vec!["many", "single", "empty"]);

    let many = snapshotter.prepare("many", "img", &layers).unwrap();
    assert!(many.overlay);
    assert_eq!(
        fs::read_dir(many.rootfs.join("files")).unwrap().count(),
        120
    );
    assert_eq!(fs::read(many.rootfs.join("top")).unwrap(), b"119");

    let single = snapshotter.prepare("single", "img", &layers[..1]).unwrap();
    assert!(single.overlay);
    assert_eq!(fs::read(single.rootfs.join("top")).unwrap(), b"0");

    let empty = snapshotter.prepare("empty", "img", &[]).unwrap();
    assert_eq!(fs::read_dir(&empty.rootfs).unwrap().count(), 0);
    fs::write(empty.rootfs.join("new"), b"x").unwrap();

    assert_eq!(mounts_under(dir.path()).len(), 3);
    for id in ["many", "single", "empty"] {
        snapshotter.remove(id).unwrap();
    }
    assert!(mounts_under(dir.path()).is_empty());
}

#[test]
fn busy_roots_are_detached_and_bad_ids_refused() {
    assert_root();
    let dir = tempfile::tempdir().unwrap();
    let layers = layers(dir.path(), &three_layers()[..1]);
    let snapshotter = Snapshotter {
        root: dir.path().join("snapshots"),
        copy_only: false,
    };
    let _cleanup = Cleanup(snapshotter.clone(), vec!["busy"]);
    let snapshot = snapshotter.prepare("busy", "img", &layers).unwrap();
    // An open directory keeps the mount busy: remove detaches it lazily.
    let open = File::open(snapshot.rootfs.join("bin")).unwrap();
    snapshotter.remove("busy").unwrap();
    assert!(mounts_under(dir.path()).is_empty());
    assert!(!dir.path().join("snapshots/busy").exists());
    drop(open);

    for bad in ["", ".", "..", "a/b", "../x", "white space"] {
        assert!(snapshotter.prepare(bad, "img", &layers).is_err(), "{bad:?}");
        assert!(snapshotter.remove(bad).is_err(), "{bad:?}");
    }
    assert!(fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .next()
        .is_none());
}
