//! The process's identity: groups, gid and uid, umask, HOME, and the executable path.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
use oci_spec::runtime::User;

/// Why the identity could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// A set*id call failed.
    #[error("process.user: {op}({id}): {errno}")]
    Set {
        /// The call.
        op: &'static str,
        /// The id asked for.
        id: String,
        /// What the kernel said.
        errno: nix::errno::Errno,
    },
    /// The program is not in the container.
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotFound(String),
    /// The program exists but cannot be executed.
    #[error("exec: {path:?}: {reason}")]
    NotExecutable {
        /// The path found.
        path: PathBuf,
        /// Why it is unusable.
        reason: String,
    },
}

/// Switch groups, gid and uid. Capabilities survive through PR_SET_KEEPCAPS, set by the
/// caller, so they can be trimmed to the config afterwards.
pub fn switch(user: &User) -> Result<(), UserError> {
    let gids: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    // In a user namespace with setgroups denied this fails; leave groups alone then.
    if let Err(errno) = setgroups(&gids) {
        if errno != nix::errno::Errno::EPERM || !gids.is_empty() {
            return Err(UserError::Set {
                op: "setgroups",
                id: format!("{gids:?}"),
                errno,
            });
        }
    }
    let gid = Gid::from_raw(user.gid());
    setresgid(gid, gid, gid).map_err(|errno| UserError::Set {
        op: "setresgid",
        id: gid.to_string(),
        errno,
    })?;
    let uid = Uid::from_raw(user.uid());
    setresuid(uid, uid, uid).map_err(|errno| UserError::Set {
        op: "setresuid",
        id: uid.to_string(),
        errno,
    })?;
    Ok(())
}

/// The home directory of `uid` from the container's /etc/passwd, or "/".
pub fn home_of(passwd: &Path, uid: u32) -> String {
    std::fs::read_to_string(passwd)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                (f.len() >= 6 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
            })
        })
        .unwrap_or_else(|| "/".to_string())
}

/// The environment for `execve`: the config's, plus HOME when it does not set one.
pub fn environment(env: &[String], uid: u32, passwd: &Path) -> Vec<CString> {
    let mut out: Vec<CString> = env
        .iter()
        .filter_map(|e| CString::new(e.as_bytes()).ok())
        .collect();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        if let Ok(home) = CString::new(format!("HOME={}", home_of(passwd, uid))) {
            out.push(home);
        }
    }
    out
}

/// Resolve the program like `execvp`, with the container's PATH, so a missing program
/// is reported by `create` rather than after `start`.
pub fn find_executable(program: &str, env: &[String]) -> Result<PathBuf, UserError> {
    use std::os::unix::fs::PermissionsExt;
    let usable = |p: &Path| -> Result<(), String> {
        let meta = std::fs::metadata(p).map_err(|e| e.to_string())?;
        if meta.is_dir() {
            return Err("is a directory".into());
        }
        if meta.permissions().mode() & 0o111 == 0 {
            return Err("permission denied".into());
        }
        Ok(())
    };
    if program.contains('/') {
        let path = PathBuf::from(program);
        return match usable(&path) {
            Ok(()) => Ok(path),
            Err(reason) if reason.contains("No such file") => {
                Err(UserError::NotFound(program.to_string()))
            }
            Err(reason) => Err(UserError::NotExecutable { path, reason }),
        };
    }
    let path_var = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(program);
        if usable(&candidate).is_ok() {
            return Ok(candidate);
        }
    }
    Err(UserError::NotFound(program.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_on_path() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        assert!(find_executable("sh", &env).unwrap().ends_with("sh"));
        let err = find_executable("no-such-program-xyz", &env).unwrap_err();
        assert!(err.to_string().contains("no-such-program-xyz"));
        assert!(matches!(
            find_executable("/etc", &env),
            Err(UserError::NotExecutable { .. })
        ));
    }

    #[test]
    fn home_comes_from_passwd() {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        std::fs::write(
            &passwd,
            "root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\n",
        )
        .unwrap();
        assert_eq!(home_of(&passwd, 1000), "/home/u");
        assert_eq!(home_of(&passwd, 5), "/");
        let env = environment(&["A=1".into()], 0, &passwd);
        assert_eq!(env[1].to_str().unwrap(), "HOME=/root");
    }
}
