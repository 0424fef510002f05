//! OCI lifecycle hooks: programs run at fixed points of a container's life with its
//! state JSON on stdin.
//!
//! Who runs them follows the runtime-spec: prestart and createRuntime run in the
//! runtime's namespaces once the container's exist; createContainer and
//! startContainer run inside the container (its init forks them); poststart and
//! poststop run in the runtime, where a failure is only a warning.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use oci_spec::runtime::Hook;

use crate::process::pidfd;

/// Why a hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The hook could not be started.
    #[error("{phase} hook {path}: {source}")]
    Spawn {
        /// The lifecycle point, e.g. prestart.
        phase: &'static str,
        /// The hook's path.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The hook ran and failed.
    #[error("{phase} hook {path}: {outcome}{stderr}")]
    Failed {
        /// The lifecycle point.
        phase: &'static str,
        /// The hook's path.
        path: String,
        /// "exit status N", "killed by signal" or "timed out after Ns".
        outcome: String,
        /// What the hook wrote to stderr, if anything.
        stderr: String,
    },
}

/// Run hooks in order; the first failure stops the rest.
pub fn run(
    phase: &'static str,
    hooks: &[Hook],
    state: &serde_json::Value,
) -> Result<(), HookError> {
    let input = state.to_string();
    for hook in hooks {
        run_one(phase, hook, &input)?;
    }
    Ok(())
}

/// Run hooks where failure must not stop the lifecycle: every hook runs, failures are
/// logged as warnings.
pub fn run_warn(phase: &'static str, hooks: &[Hook], state: &serde_json::Value) {
    let input = state.to_string();
    for hook in hooks {
        if let Err(e) = run_one(phase, hook, &input) {
            tracing::warn!("{e}");
        }
    }
}

fn run_one(phase: &'static str, hook: &Hook, input: &str) -> Result<(), HookError> {
    let path = hook.path().display().to_string();
    let spawn_err = |source| HookError::Spawn {
        phase,
        path: path.clone(),
        source,
    };
    let mut cmd = Command::new(hook.path());
    let args = hook.args().clone().unwrap_or_default();
    if let Some((argv0, rest)) = args.split_first() {
        std::os::unix::process::CommandExt::arg0(&mut cmd, argv0);
        cmd.args(rest);
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that exits without reading its stdin is not an error.
        let _ = stdin.write_all(input.as_bytes());
    }
    let timeout = hook.timeout().filter(|t| *t > 0);
    let timed_out = timeout.is_some_and(|secs| !exits_within(child.id() as i32, secs));
    if timed_out {
        let _ = child.kill();
    }
    let output = child.wait_with_output().map_err(spawn_err)?;
    let outcome = if timed_out {
        format!("timed out after {}s", timeout.unwrap_or_default())
    } else if output.status.success() {
        return Ok(());
    } else {
        match output.status.code() {
            Some(code) => format!("exit status {code}"),
            None => "killed by a signal".to_string(),
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    Err(HookError::Failed {
        phase,
        path,
        outcome,
        stderr: if stderr.is_empty() {
            String::new()
        } else {
            format!(": {stderr}")
        },
    })
}

/// Wait for a child to exit, at most `secs` seconds, without reaping it.
fn exits_within(pid: i32, secs: i64) -> bool {
    match pidfd::open(pid) {
        Ok(fd) => pidfd::exits_within(&fd, Duration::from_secs(secs.max(0) as u64)),
        Err(_) => true, // already gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(path: &str, args: &[&str], timeout: Option<i64>) -> Hook {
        let mut h = Hook::default();
        h.set_path(path.into());
        h.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
        h.set_timeout(timeout);
        h
    }

    #[test]
    fn state_reaches_stdin_and_failures_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("state");
        let script = format!("cat > {}", out.display());
        run(
            "prestart",
            &[hook("/bin/sh", &["sh", "-c", &script], None)],
            &serde_json::json!({"id": "x"}),
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), r#"{"id":"x"}"#);

        let err = run(
            "prestart",
            &[hook(
                "/bin/sh",
                &["sh", "-c", "echo boom >&2; exit 3"],
                None,
            )],
            &serde_json::json!({}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("prestart hook /bin/sh: exit status 3: boom"),
            "{err}"
        );
    }

    #[test]
    fn timeouts_kill_the_hook() {
        let started = std::time::Instant::now();
        let err = run(
            "createRuntime",
            &[hook("/bin/sleep", &["sleep", "10"], Some(1))],
            &serde_json::json!({}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("timed out after 1s"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
