//! hostPath volumes: the `type` checks upstream makes before the path is mounted.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt as _, FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

use k8s_openapi::api::core::v1::HostPathVolumeSource;

/// Check (or create) the host path as its `type` asks; the message is upstream's.
pub fn check(source: &HostPathVolumeSource) -> Result<(), String> {
    let path = Path::new(&source.path);
    let shown = path.display();
    let kind = source.type_.as_deref().unwrap_or("");
    let meta = fs::metadata(path).ok();
    let is = |test: fn(&fs::Metadata) -> bool| meta.as_ref().is_some_and(test);
    let failed = |what: &str| Err(format!("hostPath type check failed: {shown} is not {what}"));
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" if meta.is_none() => make_dir(path),
        "DirectoryOrCreate" | "Directory" if !is(|m| m.is_dir()) => failed("a directory"),
        "FileOrCreate" if meta.is_none() => make_file(path),
        "FileOrCreate" | "File" if !is(|m| m.is_file()) => failed("a file"),
        "Socket" if !is(|m| m.file_type().is_socket()) => failed("a socket file"),
        "CharDevice" if !is(|m| m.file_type().is_char_device()) => failed("a character device"),
        "BlockDevice" if !is(|m| m.file_type().is_block_device()) => failed("a block device"),
        "DirectoryOrCreate" | "Directory" | "FileOrCreate" | "File" | "Socket" | "CharDevice"
        | "BlockDevice" => Ok(()),
        other => Err(format!("{other} is an invalid volume type")),
    }
}

/// `DirectoryOrCreate`: the directory and its parents, 0755, owned by the kubelet.
fn make_dir(path: &Path) -> Result<(), String> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .map_err(|e| format!("hostPath: creating directory {}: {e}", path.display()))
}

/// `FileOrCreate`: an empty file, 0644; its parent directory must exist.
fn make_file(path: &Path) -> Result<(), String> {
    match fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(format!(
            "hostPath: creating file {}: the parent directory does not exist",
            path.display()
        )),
        Err(e) => Err(format!("hostPath: creating file {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn source(path: &Path, kind: &str) -> HostPathVolumeSource {
        HostPathVolumeSource {
            path: path.to_string_lossy().into_owned(),
            type_: Some(kind.into()),
        }
    }

    #[test]
    fn types_are_checked_with_upstreams_messages() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let file = tmp.path().join("f");
        fs::create_dir(&dir).unwrap();
        fs::write(&file, "x").unwrap();
        assert_eq!(check(&source(&dir, "Directory")), Ok(()));
        assert_eq!(check(&source(&file, "File")), Ok(()));
        assert_eq!(check(&source(&tmp.path().join("none"), "")), Ok(()));
        assert_eq!(
            check(&source(&file, "Directory")),
            Err(format!(
                "hostPath type check failed: {} is not a directory",
                file.display()
            ))
        );
        assert_eq!(
            check(&source(&dir, "File")),
            Err(format!(
                "hostPath type check failed: {} is not a file",
                dir.display()
            ))
        );
        assert!(check(&source(&dir, "Socket"))
            .unwrap_err()
            .ends_with("is not a socket file"));
        assert!(check(&source(&dir, "CharDevice"))
            .unwrap_err()
            .ends_with("is not a character device"));
        assert!(check(&source(&dir, "BlockDevice"))
            .unwrap_err()
            .ends_with("is not a block device"));
        assert_eq!(check(&source(Path::new("/dev/null"), "CharDevice")), Ok(()));
        assert_eq!(
            check(&source(&dir, "Bogus")),
            Err("Bogus is an invalid volume type".into())
        );
    }

    #[test]
    fn or_create_types_create() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        check(&source(&dir, "DirectoryOrCreate")).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode();
        assert!(fs::metadata(&dir).unwrap().is_dir());
        assert_eq!(mode & 0o777, 0o755 & !umask());
        let file = tmp.path().join("f");
        check(&source(&file, "FileOrCreate")).unwrap();
        assert!(fs::metadata(&file).unwrap().is_file());
        let err = check(&source(&tmp.path().join("no/f"), "FileOrCreate")).unwrap_err();
        assert!(err.contains("parent directory does not exist"), "{err}");
        assert!(check(&source(&file, "DirectoryOrCreate")).is_err());
    }

    fn umask() -> u32 {
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        nix::sys::stat::umask(old);
        old.bits()
    }
}
