//! Opening and creating paths inside the rootfs without ever leaving it.
//!
//! Every lookup goes through openat2(2) with `RESOLVE_IN_ROOT`, so `..` and symlinks (absolute
//! or relative) are resolved as if the rootfs were `/`: a container image cannot point a mount
//! at the host. New directories and files are created one component at a time from a handle
//! that was itself resolved that way.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, readlink, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{mkdirat, Mode};

use super::RootfsError;

/// Lexically cleans a container path: absolute, no `.`, `..` folded (never above `/`).
///
/// `"a/../../b/./c"` becomes `"/b/c"`. Symlinks are not consulted; that is the resolver's job.
pub fn clean(path: &Path) -> PathBuf {
    let mut parts: Vec<&OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let mut cleaned = PathBuf::from("/");
    cleaned.extend(parts);
    cleaned
}

/// The rootfs as a directory handle, plus the host paths needed to talk about its contents.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
    proc_self_fd: PathBuf,
}

impl Root {
    /// Opens the rootfs at `path` (absolute, symlink-free) and remembers `proc` (the host procfs
    /// mount, normally `/proc`) to reach handles through `/proc/self/fd`.
    pub fn open(path: &Path, proc: &Path) -> Result<Self, RootfsError> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| RootfsError::syscall("open", path, errno))?;
        Ok(Self {
            fd,
            path: path.to_path_buf(),
            proc_self_fd: proc.join("self/fd"),
        })
    }

    /// The rootfs handle itself.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The rootfs's host path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The host path of `container_path` (lexically; for messages and host-side checks).
    pub fn host_path(&self, container_path: &Path) -> PathBuf {
        self.path.join(relative(&clean(container_path)))
    }

    /// `/proc/self/fd/<n>` for a handle: a path that mount(2) and friends accept as "this very
    /// inode", so nothing is resolved a second time.
    pub fn fd_path(&self, fd: &impl AsRawFd) -> PathBuf {
        self.proc_self_fd.join(fd.as_raw_fd().to_string())
    }

    /// Opens `path` inside the rootfs (`O_PATH` plus `flags`), resolving it with the rootfs as `/`.
    pub fn open_in(&self, path: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
        let relative = relative(&clean(path));
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC | flags)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        openat2(self.fd.as_fd(), relative.as_path(), how)
    }

    /// Opens the directory `path`, creating it and any missing parents with `mode` (like
    /// `mkdir -p`, but every step stays inside the rootfs).
    pub fn mkdir_all(&self, path: &Path, mode: Mode) -> Result<OwnedFd, RootfsError> {
        let path = clean(path);
        match self.open_in(&path, OFlag::O_DIRECTORY) {
            Err(Errno::ENOENT) => {}
            other => return other.map_err(|errno| self.error("openat2", &path, errno)),
        }
        let mut current = self
            .open_in(Path::new("/"), OFlag::O_DIRECTORY)
            .map_err(|errno| RootfsError::syscall("openat2", &self.path, errno))?;
        let mut so_far = PathBuf::from("/");
        for part in relative(&path).iter() {
            so_far.push(part);
            current = match self.open_in(&so_far, OFlag::O_DIRECTORY) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    match mkdirat(current.as_fd(), part, mode) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(errno) => return Err(self.error("mkdirat", &so_far, errno)),
                    }
                    self.open_in(&so_far, OFlag::O_DIRECTORY)
                        .map_err(|errno| self.dangling_or(&so_far, errno))?
                }
                Err(errno) => return Err(self.error("openat2", &so_far, errno)),
            };
        }
        Ok(current)
    }

    /// Opens the parent directory of `path` (creating it if missing) and returns it with the
    /// last component's name.
    pub fn mkdir_parent(
        &self,
        path: &Path,
        mode: Mode,
    ) -> Result<(OwnedFd, OsString), RootfsError> {
        let path = clean(path);
        let name = path
            .file_name()
            .ok_or_else(|| RootfsError::OverRoot {
                destination: path.clone(),
            })?
            .to_os_string();
        let parent = path.parent().unwrap_or(Path::new("/"));
        Ok((self.mkdir_all(parent, mode)?, name))
    }

    /// Creates the empty file `path` (and its parents) with `mode` and opens it; an existing
    /// file is an error, as is a dangling symlink in its place.
    pub fn create_file(&self, path: &Path, mode: Mode) -> Result<OwnedFd, RootfsError> {
        let path = clean(path);
        let (parent, name) = self.mkdir_parent(&path, Mode::from_bits_truncate(0o755))?;
        let created = openat(
            parent.as_fd(),
            name.as_os_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            mode,
        )
        .map_err(|errno| self.error("openat", &path, errno))?;
        drop(created);
        self.open_in(&path, OFlag::empty())
            .map_err(|errno| self.error("openat2", &path, errno))
    }

    /// The container path (`/dev/pts`) that an open handle really refers to, read back through
    /// `/proc/self/fd`. Fails if the handle somehow sits outside the rootfs.
    pub fn container_path(&self, fd: &impl AsRawFd) -> Result<PathBuf, RootfsError> {
        let link = self.fd_path(fd);
        let target =
            readlink(&link).map_err(|errno| RootfsError::syscall("readlink", &link, errno))?;
        let target = PathBuf::from(target);
        match target.strip_prefix(&self.path) {
            Ok(rest) => Ok(Path::new("/").join(rest)),
            Err(_) => Err(RootfsError::Escape { resolved: target }),
        }
    }

    fn error(&self, syscall: &'static str, path: &Path, errno: Errno) -> RootfsError {
        RootfsError::syscall(syscall, self.host_path(path), errno)
    }

    /// After a successful mkdirat (or EEXIST) the path must open; ENOENT then means a symlink
    /// pointing at nothing took the name.
    fn dangling_or(&self, path: &Path, errno: Errno) -> RootfsError {
        if errno == Errno::ENOENT {
            RootfsError::DanglingSymlink {
                path: self.host_path(path),
            }
        } else {
            self.error("openat2", path, errno)
        }
    }
}

/// `/a/b` → `a/b`, and `/` → `.` (openat2 needs a non-empty relative path).
fn relative(cleaned: &Path) -> PathBuf {
    let stripped = cleaned.strip_prefix("/").unwrap_or(cleaned);
    if stripped.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        stripped.to_path_buf()
    }
}

/// Whether `path` has a NUL byte, which no syscall can take.
pub fn has_nul(path: &Path) -> bool {
    path.as_os_str().as_bytes().contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn clean_folds_dots_and_clamps_at_root() {
        assert_eq!(clean(Path::new("a/../../b/./c")), PathBuf::from("/b/c"));
        assert_eq!(clean(Path::new("/../..")), PathBuf::from("/"));
        assert_eq!(clean(Path::new("/dev//pts/")), PathBuf::from("/dev/pts"));
        assert_eq!(clean(Path::new("")), PathBuf::from("/"));
        assert_eq!(relative(&clean(Path::new("/"))), PathBuf::from("."));
        assert_eq!(relative(&clean(Path::new("/x/y"))), PathBuf::from("x/y"));
    }

    fn fixture() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        let rootfs = rootfs.canonicalize().unwrap();
        let root = Root::open(&rootfs, Path::new("/proc")).unwrap();
        (dir, root)
    }

    #[test]
    fn absolute_symlink_pointing_outside_stays_inside() {
        let (_dir, root) = fixture();
        // `/etc` exists on the host and in the rootfs: the link must mean the rootfs's one.
        symlink("/etc", root.path().join("hostetc")).unwrap();
        let name = format!("peapod-resolve-test-{}", std::process::id());
        let fd = root
            .mkdir_all(
                &Path::new("/hostetc").join(&name),
                Mode::from_bits_truncate(0o755),
            )
            .unwrap();
        assert_eq!(
            root.container_path(&fd).unwrap(),
            Path::new("/etc").join(&name)
        );
        assert!(root.path().join("etc").join(&name).is_dir());
        assert!(
            !Path::new("/etc").join(&name).exists(),
            "escaped to the host"
        );
    }

    #[test]
    fn symlink_to_a_host_only_directory_is_not_followed_out() {
        let (dir, root) = fixture();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        symlink(&outside, root.path().join("escape")).unwrap();
        // Inside the rootfs the link points at nothing: refused, and the host is untouched.
        let err = root
            .mkdir_all(Path::new("/escape/sub"), Mode::from_bits_truncate(0o755))
            .unwrap_err();
        assert!(matches!(err, RootfsError::DanglingSymlink { .. }), "{err}");
        assert!(root
            .create_file(Path::new("/escape/file"), Mode::empty())
            .is_err());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn relative_dotdot_symlink_is_clamped_at_the_rootfs() {
        let (dir, root) = fixture();
        symlink("../../../../..", root.path().join("up")).unwrap();
        let fd = root
            .mkdir_all(Path::new("/up/made"), Mode::from_bits_truncate(0o755))
            .unwrap();
        assert_eq!(root.container_path(&fd).unwrap(), PathBuf::from("/made"));
        assert!(root.path().join("made").is_dir());
        assert!(!dir.path().join("made").exists());
        // `..` in the requested path itself never leaves either.
        let fd = root
            .open_in(Path::new("/../../etc"), OFlag::O_DIRECTORY)
            .unwrap();
        assert_eq!(root.container_path(&fd).unwrap(), PathBuf::from("/etc"));
    }

    #[test]
    fn create_file_through_symlinked_parent() {
        let (dir, root) = fixture();
        symlink("/etc", root.path().join("conf")).unwrap();
        let fd = root
            .create_file(Path::new("/conf/hosts"), Mode::from_bits_truncate(0o644))
            .unwrap();
        assert_eq!(
            root.container_path(&fd).unwrap(),
            PathBuf::from("/etc/hosts")
        );
        assert!(root.path().join("etc/hosts").is_file());
        // A second create is refused rather than silently reusing the file.
        assert!(root
            .create_file(Path::new("/etc/hosts"), Mode::empty())
            .is_err());
        drop(dir);
    }

    #[test]
    fn dangling_symlink_is_reported() {
        let (_dir, root) = fixture();
        symlink("/nowhere/at/all", root.path().join("dangling")).unwrap();
        let err = root
            .mkdir_all(Path::new("/dangling/x"), Mode::from_bits_truncate(0o755))
            .unwrap_err();
        assert!(matches!(err, RootfsError::DanglingSymlink { .. }), "{err}");
        let err = root
            .mkdir_parent(Path::new("/"), Mode::empty())
            .unwrap_err();
        assert!(matches!(err, RootfsError::OverRoot { .. }), "{err}");
    }
}
