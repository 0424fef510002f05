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
