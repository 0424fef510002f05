//! Extended attributes of a path itself (the `l*xattr` calls: symlinks are not followed).

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn c_name(name: impl AsRef<OsStr>) -> io::Result<CString> {
    CString::new(name.as_ref().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Sets an xattr on `path` itself (not following a symlink).
pub(crate) fn set_xattr(path: &Path, name: impl AsRef<OsStr>, value: &[u8]) -> io::Result<()> {
    let (path, name) = (c_path(path)?, c_name(name)?);
    // SAFETY: both strings are NUL-terminated and outlive the call; the value
    // pointer and length describe a live slice.
    let rc = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The value of xattr `name` on `path` itself, `None` if it is not set.
pub(crate) fn get_xattr(path: &Path, name: impl AsRef<OsStr>) -> io::Result<Option<Vec<u8>>> {
    let (path, name) = (c_path(path)?, c_name(name)?);
    loop {
        // SAFETY: NUL-terminated strings; a null buffer of size 0 asks for the size.
        let size =
            unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
        if size < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENODATA) | Some(libc::ENOTSUP) => Ok(None),
                _ => Err(e),
            };
        }
        let mut buf = vec![0u8; size as usize];
        // SAFETY: `buf` is writable for `buf.len()` bytes.
        let got = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        // The value grew between the two calls: ask again.
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e);
        }
    }
}

/// The names of the xattrs on `path` itself.
pub(crate) fn list_xattrs(path: &Path) -> io::Result<Vec<OsString>> {
    let path = c_path(path)?;
    loop {
        // SAFETY: NUL-terminated path; a null buffer of size 0 asks for the size.
        let size = unsafe { libc::llistxattr(path.as_ptr(), std::ptr::null_mut(), 0) };
        if size < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOTSUP) => Ok(Vec::new()),
                _ => Err(e),
            };
        }
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; size as usize];
        // SAFETY: `buf` is writable for `buf.len()` bytes.
        let got = unsafe { libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(buf
                .split(|b| *b == 0)
                .filter(|n| !n.is_empty())
                .map(|n| OsStr::from_bytes(n).to_owned())
                .collect());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e);
        }
    }
}
