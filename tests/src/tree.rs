//! Root filesystems compared file by file: the tree a stack of test layers should give, and the tree found on disk.
//!
//! [`expected`] applies [`Layer`]s the way the OCI image spec says (whiteouts
//! delete from the layers below, an opaque marker hides a directory's lower
//! contents, later entries replace earlier ones); [`walk`] reads a real
//! directory tree; [`assert_same`] compares kind, content or link target,
//! permission bits and owner of every path, and that hard-linked paths
//! share one inode.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::oci::{Entry, Layer};

/// What a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file and its bytes.
    File(Vec<u8>),
    /// A symlink and its target.
    Symlink(String),
    /// Anything else (devices, fifos, sockets): never expected in a rootfs here.
    Other(String),
}

/// One path of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Its kind and content.
    pub kind: Kind,
    /// Permission bits (`mode & 0o7777`); 0 for symlinks, whose mode means nothing.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// The inode on disk ([`walk`]), or the path of the first file of its
    /// hard-link group ([`expected`]).
    pub link_key: String,
}

/// A tree: relative path → node.
pub type Tree = BTreeMap<String, Node>;

/// The tree `layers` (bottom first) make.
pub fn expected(layers: &[Layer]) -> Tree {
    let mut tree = Tree::new();
    for layer in layers {
        // Deletions apply to the layers below only, whatever their tar order.
        for entry in &layer.entries {
            match entry {
                Entry::Whiteout { path } => remove_under(&mut tree, path, true),
                Entry::Opaque { dir } => remove_under(&mut tree, dir, false),
                _ => {}
            }
        }
        for entry in &layer.entries {
            add(&mut tree, entry);
        }
    }
    tree
}

fn remove_under(tree: &mut Tree, path: &str, itself: bool) {
    let prefix = format!("{}/", path.trim_end_matches('/'));
    tree.retain(|p, _| !(p.starts_with(&prefix) || (itself && p == path)));
}

fn add(tree: &mut Tree, entry: &Entry) {
    let (path, node) = match entry {
        Entry::Dir {
            path,
            mode,
            uid,
            gid,
        } => (path, node(Kind::Dir, *mode, *uid, *gid, path)),
        Entry::File {
            path,
            content,
            mode,
            uid,
            gid,
        } => (
            path,
            node(Kind::File(content.clone()), *mode, *uid, *gid, path),
        ),
        Entry::Symlink { path, target } => {
            (path, node(Kind::Symlink(target.clone()), 0, 0, 0, path))
        }
        Entry::Hardlink { path, target } => {
            let linked = tree
                .get(target.as_str())
                .unwrap_or_else(|| panic!("hardlink {path} to {target}, which is not in the tree"))
                .clone();
            (path, linked)
        }
        Entry::Whiteout { .. } | Entry::Opaque { .. } => return,
    };
    let path = path.trim_end_matches('/').to_owned();
    // Parents a layer does not declare get what unpacking gives them.
    let mut parent = Path::new(&path).parent();
    while let Some(dir) = parent.filter(|p| !p.as_os_str().is_empty()) {
        let key = dir.to_string_lossy().into_owned();
        tree.entry(key.clone())
            .or_insert_with(|| self::node(Kind::Dir, 0o755, 0, 0, &key));
        parent = dir.parent();
    }
    tree.insert(path, node);
}

fn node(kind: Kind, mode: u32, uid: u64, gid: u64, path: &str) -> Node {
    Node {
        kind,
        mode,
        uid: uid as u32,
        gid: gid as u32,
        link_key: path.trim_end_matches('/').to_owned(),
    }
}

/// The tree under `root` (not following symlinks; `root` itself left out).
#[track_caller]
pub fn walk(root: &Path) -> Tree {
    let mut tree = Tree::new();
    walk_into(root, root, &mut tree);
    tree
}

fn walk_into(root: &Path, dir: &Path, tree: &mut Tree) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        let meta =
            fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
        let kind = if meta.is_dir() {
            Kind::Dir
        } else if meta.file_type().is_symlink() {
            Kind::Symlink(fs::read_link(&path).unwrap().to_string_lossy().into_owned())
        } else if meta.is_file() {
            Kind::File(fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())))
        } else {
            let t = meta.file_type();
            let what = if t.is_char_device() {
                format!("char device {}:{}", meta.rdev() >> 8, meta.rdev() & 0xff)
            } else {
                format!("{t:?}")
            };
            Kind::Other(what)
        };
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let symlink = matches!(kind, Kind::Symlink(_));
        tree.insert(
            rel,
            Node {
                kind,
                mode: if symlink { 0 } else { meta.mode() & 0o7777 },
                uid: meta.uid(),
                gid: meta.gid(),
                link_key: format!("{}:{}", meta.dev(), meta.ino()),
            },
        );
        if meta.is_dir() {
            walk_into(root, &path, tree);
        }
    }
}

/// Panics listing every difference between `actual` and `expected`: paths
/// missing or extra, and per path kind, content, mode and owner; paths that
/// are hard links of each other in `expected` must share an inode in `actual`.
#[track_caller]
pub fn assert_same(actual: &Tree, expected: &Tree) {
    let mut problems = Vec::new();
    for (path, want) in expected {
        let Some(got) = actual.get(path) else {
            problems.push(format!("{path}: missing"));
            continue;
        };
        if got.kind != want.kind {
            problems.push(format!(
                "{path}: expected {}, found {}",
                describe(&want.kind),
                describe(&got.kind)
            ));
        }
        if (got.mode, got.uid, got.gid) != (want.mode, want.uid, want.gid) {
            problems.push(format!(
                "{path}: expected mode {:o} owner {}:{}, found mode {:o} owner {}:{}",
                want.mode, want.uid, want.gid, got.mode, got.uid, got.gid
            ));
        }
    }
    for path in actual.keys().filter(|p| !expected.contains_key(*p)) {
        problems.push(format!(
            "{path}: unexpected ({})",
            describe(&actual[path].kind)
        ));
    }
    // Hard-link groups: same expected key ⇒ same inode.
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (path, node) in expected {
        if matches!(node.kind, Kind::File(_)) {
            groups.entry(&node.link_key).or_default().push(path);
        }
    }
    for paths in groups.values().filter(|g| g.len() > 1) {
        let inodes: Vec<_> = paths
            .iter()
            .filter_map(|p| actual.get(*p).map(|n| n.link_key.as_str()))
            .collect();
        if inodes.windows(2).any(|w| w[0] != w[1]) {
            problems.push(format!(
                "{paths:?}: hard links but different inodes {inodes:?}"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "root filesystem differs from the layers:\n  {}",
        problems.join("\n  ")
    );
}

fn describe(kind: &Kind) -> String {
    match kind {
        Kind::Dir => "a directory".into(),
        Kind::File(bytes) if bytes.len() <= 64 => {
            format!("a file {:?}", String::from_utf8_lossy(bytes))
        }
        Kind::File(bytes) => format!("a file of {} bytes", bytes.len()),
        Kind::Symlink(target) => format!("a symlink to {target:?}"),
        Kind::Other(what) => what.clone(),
    }
}
