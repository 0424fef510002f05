//! Running one plugin binary: find it on the plugin path, hand it its config on
//! stdin and the `CNI_*` variables, wait (bounded) and read its result or error.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::CallerError;
use crate::spec::ErrorResult;

/// One invocation of a plugin.
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    /// The plugin's `type` (its executable name).
    pub plugin: &'a str,
    /// `CNI_COMMAND`.
    pub verb: &'a str,
    /// The `CNI_*` variables besides the command.
    pub env: BTreeMap<&'static str, String>,
    /// The config on stdin.
    pub stdin: Vec<u8>,
}

/// Find `plugin` in `dirs`, in order, as libcni does (the same search a plugin
/// uses for its delegate).
pub fn find(plugin: &str, dirs: &[PathBuf]) -> Result<PathBuf, CallerError> {
    if plugin.is_empty() || plugin.contains('/') {
        return Err(CallerError::BadPluginName(plugin.to_string()));
    }
    crate::delegate::find(plugin, dirs).map_err(|_| CallerError::PluginNotFound {
        plugin: plugin.to_string(),
        path: std::env::join_paths(dirs)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
    })
}

/// Run the plugin and return its stdout on success. A non-zero exit becomes
/// [`CallerError::Plugin`] with the error JSON's code and message; running longer
/// than `timeout` kills it.
pub fn run(inv: &Invocation, dirs: &[PathBuf], timeout: Duration) -> Result<Vec<u8>, CallerError> {
    let path = find(inv.plugin, dirs)?;
    let io = |e: std::io::Error| CallerError::Io {
        plugin: inv.plugin.to_string(),
        verb: inv.verb.to_string(),
        source: e,
    };
    let mut cmd = Command::new(&path);
    cmd.env("CNI_COMMAND", inv.verb)
        .env(
            "CNI_PATH",
            std::env::join_paths(dirs).map_err(|e| io(std::io::Error::other(e)))?,
        )
        .envs(&inv.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(io)?;
    let pid = child.id();
    if let Some(mut stdin) = child.stdin.take() {
        // A plugin that exits without reading stdin is judged by its exit status.
        let _ = stdin.write_all(&inv.stdin);
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(timeout) {
        Ok(output) => output.map_err(io)?,
        Err(_) => {
            // SAFETY: kill(2) on the pid of the child we spawned and have not reaped
            // (the waiting thread reaps it once it dies).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            return Err(CallerError::Timeout {
                plugin: inv.plugin.to_string(),
                verb: inv.verb.to_string(),
                secs: timeout.as_secs(),
            });
        }
    };
    if output.status.success() {
        return Ok(output.stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    let (code, msg, details) = match serde_json::from_slice::<ErrorResult>(&output.stdout) {
        Ok(e) => (e.code, e.msg, e.details),
        Err(_) => (
            0,
            format!("{} (no error JSON on stdout)", output.status),
            stderr.clone(),
        ),
    };
    Err(CallerError::Plugin {
        plugin: inv.plugin.to_string(),
        verb: inv.verb.to_string(),
        code,
        msg,
        details: if details.is_empty() { stderr } else { details },
    })
}
