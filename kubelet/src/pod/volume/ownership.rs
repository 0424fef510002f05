//! fsGroup: volumes that support ownership management are given to the pod's fsGroup,
//! group read/write and setgid directories, as upstream does.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

const RW: u32 = 0o660;
const RO: u32 = 0o440;
const EXEC: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// `fsGroupChangePolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Always walk the volume (the default).
    Always,
    /// Only when the volume's root does not already have the group and permissions.
    OnRootMismatch,
}

impl Policy {
    /// From the pod's `fsGroupChangePolicy`.
    pub fn parse(text: Option<&str>) -> Policy {
        match text {
            Some("OnRootMismatch") => Policy::OnRootMismatch,
            _ => Policy::Always,
        }
    }
}

/// Give everything under `dir` to group `gid`: group rw (read-only volumes: group r),
/// directories also group x and setgid. Symlinks are regrouped but never followed.
pub fn apply(dir: &Path, gid: u32, read_only: bool, policy: Policy) -> io::Result<()> {
    let mask = if read_only { RO } else { RW };
    if policy == Policy::OnRootMismatch {
        let meta = fs::metadata(dir)?;
        let mode = meta.permissions().mode();
        let wanted = mask | EXEC | SETGID;
        if meta.gid() == gid && mode & wanted == wanted {
            return Ok(());
        }
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path)?;
        std::os::unix::fs::lchown(&path, None, Some(gid))?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mut mode = meta.permissions().mode() | mask;
        if meta.is_dir() {
            mode |= SETGID | EXEC;
            for entry in fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("v");
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("sub/f"), "x").unwrap();
        fs::set_permissions(dir.join("sub/f"), fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("sub/f", dir.join("link")).unwrap();
        let gid = nix::unistd::getgid().as_raw();
        apply(&dir, gid, false, Policy::Always).unwrap();
        let mode = |p: &str| fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode("sub/f"), 0o660);
        assert_eq!(mode("sub") & 0o2070, 0o2070);
        assert_eq!(mode("") & 0o2070, 0o2070);
        // OnRootMismatch skips a volume whose root is already right.
        fs::set_permissions(dir.join("sub/f"), fs::Permissions::from_mode(0o600)).unwrap();
        apply(&dir, gid, false, Policy::OnRootMismatch).unwrap();
        assert_eq!(mode("sub/f"), 0o600);
    }
}
