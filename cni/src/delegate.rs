//! Running another plugin (typically IPAM) the way a runtime would: exec it from `CNI_PATH`.
//!
//! The delegate inherits this process's environment with `CNI_COMMAND` set
//! to the verb, gets the same config on stdin, and its stdout is parsed as a
//! result (ADD) or as CNI error JSON (failure), per SPEC.md "Delegated plugins".

use crate::spec::{CniResult, Code, Command, Error, ErrorResult};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Finds the executable `plugin` in the `CNI_PATH` directories.
pub fn find(plugin: &str, cni_path: &[PathBuf]) -> Result<PathBuf, Error> {
    if plugin.is_empty() || plugin.contains('/') {
        return Err(Error::new(
            Code::InvalidConfig,
            format!("invalid plugin type {plugin:?}"),
        ));
    }
    cni_path
        .iter()
        .map(|dir| dir.join(plugin))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::new(
                Code::InvalidConfig,
                format!("failed to find plugin {plugin:?} in path {cni_path:?}"),
            )
        })
}

/// Runs `plugin` for `command` with `stdin`; returns its parsed result for ADD, `None` otherwise.
///
/// A non-zero exit becomes the delegate's own CNI error when its stdout holds one.
pub fn exec(
    plugin: &str,
    command: Command,
    cni_path: &[PathBuf],
    stdin: &[u8],
) -> Result<Option<CniResult>, Error> {
    let path = find(plugin, cni_path)?;
    run(&path, command, stdin)
}

fn run(path: &Path, command: Command, stdin: &[u8]) -> Result<Option<CniResult>, Error> {
    let io_err = |what: &str, e: std::io::Error| {
        Error::new(Code::Io, format!("{what} {}", path.display())).with_details(e.to_string())
    };
    let mut child = std::process::Command::new(path)
        .env("CNI_COMMAND", command.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| io_err("failed to run", e))?;
    // Writing can only fail if the child exited early; its exit status tells why.
    let _ = child.stdin.take().map(|mut s| s.write_all(stdin));
    let out = child
        .wait_with_output()
        .map_err(|e| io_err("failed to wait for", e))?;
    if !out.status.success() {
        return Err(match serde_json::from_slice::<ErrorResult>(&out.stdout) {
            Ok(e) => e.into(),
            Err(_) => Error::new(
                Code::INTERNAL,
                format!("{} {command} failed: {}", path.display(), out.status),
            )
            .with_details(String::from_utf8_lossy(&out.stdout).into_owned()),
        });
    }
    if command != Command::Add {
        return Ok(None);
    }
    CniResult::parse(&out.stdout).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn finds_in_order_and_rejects_paths() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        script(b.path(), "ipam", "true");
        let path = vec![a.path().to_path_buf(), b.path().to_path_buf()];
        assert_eq!(find("ipam", &path).unwrap(), b.path().join("ipam"));
        assert_eq!(find("nope", &path).unwrap_err().code, Code::InvalidConfig);
        assert_eq!(
            find("../ipam", &path).unwrap_err().code,
            Code::InvalidConfig
        );
    }

    #[test]
    fn passes_verb_and_stdin_and_parses_results_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        script(
            dir.path(),
            "echo-ipam",
            r#"read -r conf; [ "$CNI_COMMAND" = ADD ] || exit 0
echo '{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}]}'"#,
        );
        script(
            dir.path(),
            "bad-ipam",
            r#"echo '{"code":11,"msg":"busy"}'; exit 1"#,
        );
        let path = vec![dir.path().to_path_buf()];
        let r = exec("echo-ipam", Command::Add, &path, b"{}\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.0.0.2/24");
        assert!(exec("echo-ipam", Command::Del, &path, b"{}\n")
            .unwrap()
            .is_none());
        let e = exec("bad-ipam", Command::Add, &path, b"{}").unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (Code::TryAgainLater, "busy"));
    }
}
