//! Reading and writing cgroup interface files, with errors that name the full path.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use super::CgroupError;

/// Read a small interface file, trimmed; a missing file reads as empty.
pub fn read_or_empty(file: &Path) -> Result<String, CgroupError> {
    match fs::read_to_string(file) {
        Ok(text) => Ok(text.trim().to_owned()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(CgroupError::Read {
            file: file.to_path_buf(),
            source,
        }),
    }
}

/// Write `value` to `dir/file` directly (for what cgroups-rs does not cover).
pub fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let file = dir.join(file);
    fs::write(&file, value).map_err(|source| CgroupError::Write {
        file,
        value: value.to_owned(),
        source,
    })
}

/// Turn the result of a cgroups-rs write of `value` to `dir/file` into ours.
pub fn check(
    dir: &Path,
    file: &str,
    value: impl ToString,
    result: cgroups_rs::fs::error::Result<()>,
) -> Result<(), CgroupError> {
    result.map_err(|source| CgroupError::Apply {
        file: dir.join(file),
        value: value.to_string(),
        source,
    })
}
