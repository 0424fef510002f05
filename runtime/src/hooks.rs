//! OCI lifecycle hooks: programs run at fixed points of a container's life with its
//! state JSON on stdin.
//!
//! Who runs them follows the runtime-spec (config.md, "POSIX-platform Hooks"):
//! prestart and createRuntime run in the runtime's namespaces once the container's
//! exist; createContainer and startContainer run inside the container (its init forks
//! them); poststart and poststop run in the runtime, where a failure is only a warning.
//!
//! A hook's stdin is a memory file holding the state and its stdout and stderr go to
//! another, so neither side can block on a full pipe: a hook that never reads its
//! input, or leaves a child behind holding its output, cannot hang the runtime.
//! A timeout kills the hook's whole process group.

use std::ffi::CStr;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Hooks};

use crate::process::pidfd;

/// How much of a failed hook's output goes into the error.
const OUTPUT_LIMIT: u64 = 4096;

/// Why a hook failed or is unusable.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// A hook entry breaks a rule of config.md.
    #[error("hooks.{phase}[{index}].{field}: {expected}")]
    Invalid {
        /// The lifecycle point, e.g. createRuntime.
        phase: &'static str,
        /// The entry's position in its list.
        index: usize,
        /// `path` or `timeout`.
        field: &'static str,
        /// What the spec requires, and what was found.
        expected: String,
    },
    /// The hook could not be started.
    #[error("{phase} hook #{index} {path}: {source}")]
    Spawn {
        /// The lifecycle point, e.g. prestart.
        phase: &'static str,
        /// The entry's position in its list.
        index: usize,
        /// The hook's path.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The hook ran and failed.
    #[error("{phase} hook #{index} {path}: {outcome}{output}")]
    Failed {
        /// The lifecycle point.
        phase: &'static str,
        /// The entry's position in its list.
        index: usize,
        /// The hook's path.
        path: String,
        /// "exit status N", "killed by signal N" or "timed out after Ns".
        outcome: String,
        /// What the hook wrote to stdout and stderr, if anything.
        output: String,
    },
    /// The runtime could not get back into its own namespaces to run a hook there.
    #[error("returning to the runtime's {kind} namespace to run hooks: {source}")]
    RuntimeNamespace {
        /// `pid` or `time`.
        kind: &'static str,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// Check every hook entry against config.md: `path` MUST be absolute, and `timeout`,
/// if set, MUST be greater than zero. `create` calls this before it changes anything.
pub fn validate(hooks: &Hooks) -> Result<(), HookError> {
    for (phase, list) in phases(hooks) {
        for (index, hook) in list.iter().enumerate() {
            let invalid = |field, expected: String| HookError::Invalid {
                phase,
                index,
                field,
                expected,
            };
            if !hook.path().is_absolute() {
                return Err(invalid(
                    "path",
                    format!("must be absolute, got {:?}", hook.path()),
                ));
            }
            if let Some(t) = hook.timeout().filter(|t| *t <= 0) {
                return Err(invalid(
                    "timeout",
                    format!("must be greater than zero, got {t}"),
                ));
            }
        }
    }
    Ok(())
}

/// Every hook list with its config.json name, in lifecycle order.
fn phases(hooks: &Hooks) -> [(&'static str, &[Hook]); 6] {
    fn list(l: &Option<Vec<Hook>>) -> &[Hook] {
        l.as_deref().unwrap_or_default()
    }
    #[allow(deprecated)]
    let prestart = list(hooks.prestart());
    [
        ("prestart", prestart),
        ("createRuntime", list(hooks.create_runtime())),
        ("createContainer", list(hooks.create_container())),
        ("startContainer", list(hooks.start_container())),
        ("poststart", list(hooks.poststart())),
        ("poststop", list(hooks.poststop())),
    ]
}

/// Run hooks in order; the first failure stops the rest.
pub fn run(
    phase: &'static str,
    hooks: &[Hook],
    state: &serde_json::Value,
) -> Result<(), HookError> {
    let input = state.to_string();
    for (index, hook) in hooks.iter().enumerate() {
        run_one(phase, index, hook, &input)?;
    }
    Ok(())
}

/// Run hooks where failure must not stop the lifecycle (poststart, poststop): every
/// hook runs, failures are logged as warnings.
pub fn run_warn(phase: &'static str, hooks: &[Hook], state: &serde_json::Value) {
    let input = state.to_string();
    for (index, hook) in hooks.iter().enumerate() {
        if let Err(e) = run_one(phase, index, hook, &input) {
            tracing::warn!("{e}");
        }
    }
}

fn run_one(phase: &'static str, index: usize, hook: &Hook, input: &str) -> Result<(), HookError> {
    let path = hook.path().display().to_string();
    let spawn_err = |source| HookError::Spawn {
        phase,
        index,
        path: path.clone(),
        source,
    };
    let mut cmd = Command::new(hook.path());
    let args = hook.args().clone().unwrap_or_default();
    if let Some((argv0, rest)) = args.split_first() {
        cmd.arg0(argv0);
        cmd.args(rest);
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    // A group of its own, so a timeout ends whatever the hook started too.
    cmd.process_group(0);
    let output = memfd(c"peapod-hook-output").ok();
    if let Some(out) = &output {
        cmd.stdout(out.try_clone().map_err(spawn_err)?);
        cmd.stderr(out.try_clone().map_err(spawn_err)?);
    } else {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    let child = match state_file(input) {
        Ok(file) => cmd.stdin(file).spawn().map_err(spawn_err)?,
        Err(_) => {
            // No memory files here (a seccomp profile may refuse memfd_create): a pipe
            // holds a state document of ordinary size without blocking.
            let mut child = cmd.stdin(Stdio::piped()).spawn().map_err(spawn_err)?;
            if let Some(mut stdin) = child.stdin.take() {
                // A hook that exits without reading its stdin is not an error.
                let _ = stdin.write_all(input.as_bytes());
            }
            child
        }
    };
    let timeout = hook.timeout().filter(|t| *t > 0).map(|t| t as u64);
    let outcome = match wait(child, timeout).map_err(spawn_err)? {
        Ended::Exited(status) if status.success() => return Ok(()),
        Ended::Exited(status) => describe(status),
        Ended::TimedOut(secs) => format!("timed out after {secs}s and was killed"),
    };
    let written = output.map(tail).unwrap_or_default();
    Err(HookError::Failed {
        phase,
        index,
        path,
        outcome,
        output: if written.is_empty() {
            String::new()
        } else {
            format!(": {written}")
        },
    })
}

/// How a hook's run ended.
enum Ended {
    /// It exited (or was killed by someone else) within its time.
    Exited(ExitStatus),
    /// It ran past its timeout of this many seconds; its group was killed.
    TimedOut(u64),
}

/// Wait for the hook, at most `timeout` seconds when one is set. A timed-out hook's
/// process group is killed and the hook reaped.
fn wait(mut child: Child, timeout: Option<u64>) -> std::io::Result<Ended> {
    let Some(secs) = timeout else {
        return child.wait().map(Ended::Exited);
    };
    // Our unreaped child: its pid cannot be reused while we hold it.
    let fd = pidfd::open(child.id() as i32)?;
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // A signal may cut the poll short: look again until the deadline.
        if pidfd::exits_within(&fd, left) {
            return child.wait().map(Ended::Exited);
        }
        if left.is_zero() {
            break;
        }
    }
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    child.wait()?;
    Ok(Ended::TimedOut(secs))
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => format!("ended with {status}"),
    }
}

/// A memory file holding `input`, positioned at its start, to serve as stdin.
fn state_file(input: &str) -> std::io::Result<File> {
    let mut file = memfd(c"peapod-hook-state")?;
    file.write_all(input.as_bytes())?;
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

/// The last [`OUTPUT_LIMIT`] bytes a hook wrote, trimmed.
fn tail(mut file: File) -> String {
    let Ok(len) = file.seek(SeekFrom::End(0)) else {
        return String::new();
    };
    let mut text = Vec::new();
    let from = len.saturating_sub(OUTPUT_LIMIT);
    if file.seek(SeekFrom::Start(from)).is_err() || file.read_to_end(&mut text).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&text).trim().to_string()
}

fn memfd(name: &CStr) -> std::io::Result<File> {
    // SAFETY: memfd_create takes a NUL-terminated name and flags; returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a new fd that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// The runtime's own pid and time namespaces for new children, kept while `create`
/// points them at the container's (joining a pid namespace by path, or making a time
/// namespace, only takes effect for children). Restored after the clone, the hooks the
/// runtime spawns next (prestart, createRuntime, poststart and poststop when `run`
/// does it all in one process) start in the runtime namespace, as the spec requires.
pub struct RuntimeNamespace {
    pid: Option<OwnedFd>,
    time: Option<OwnedFd>,
}

impl RuntimeNamespace {
    /// Remember the namespaces for children that are about to change: `pid` when a pid
    /// namespace is joined by path, `time` when a time namespace is made or joined.
    pub fn save(pid: bool, time: bool) -> Result<RuntimeNamespace, HookError> {
        let open = |kind: &'static str| -> Result<OwnedFd, HookError> {
            File::open(format!("/proc/self/ns/{kind}_for_children"))
                .map(OwnedFd::from)
                .map_err(|source| HookError::RuntimeNamespace { kind, source })
        };
        Ok(RuntimeNamespace {
            pid: pid.then(|| open("pid")).transpose()?,
            time: time.then(|| open("time")).transpose()?,
        })
    }

    /// Point the namespaces for children back at the saved ones.
    pub fn restore(self) -> Result<(), HookError> {
        for (kind, fd, flag) in [
            ("pid", self.pid, nix::sched::CloneFlags::CLONE_NEWPID),
            (
                "time",
                self.time,
                nix::sched::CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
            ),
        ] {
            if let Some(fd) = fd {
                nix::sched::setns(&fd, flag).map_err(|errno| HookError::RuntimeNamespace {
                    kind,
                    source: errno.into(),
                })?;
            }
        }
        Ok(())
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

    fn sh(script: &str) -> Hook {
        hook("/bin/sh", &["sh", "-c", script], None)
    }

    #[test]
    fn state_reaches_stdin_and_failures_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("state");
        run(
            "prestart",
            &[sh(&format!("cat > {}", out.display()))],
            &serde_json::json!({"id": "x"}),
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), r#"{"id":"x"}"#);

        let err = run(
            "prestart",
            &[sh("true"), sh("echo out; echo boom >&2; exit 3")],
            &serde_json::json!({}),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(err, "prestart hook #1 /bin/sh: exit status 3: out\nboom");
    }

    #[test]
    fn argv0_and_env_are_the_hook_s_own() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("seen");
        let mut h = hook(
            "/bin/sh",
            &[
                "hook-name",
                "-c",
                &format!("echo \"$0 $A ${{USER-unset}}\" > {}", out.display()),
            ],
            None,
        );
        h.set_env(Some(vec!["A=b=c".into(), "junk".into()]));
        run("poststop", &[h], &serde_json::json!({})).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "hook-name b=c unset\n"
        );
    }

    #[test]
    fn a_large_state_does_not_block_a_hook_that_never_reads_it() {
        let state = serde_json::json!({ "annotations": { "big": "x".repeat(1 << 20) } });
        run("createRuntime", &[sh("exit 0")], &state).unwrap();
    }

    #[test]
    fn timeouts_kill_the_hook_and_its_children() {
        let started = Instant::now();
        let err = run(
            "createRuntime",
            // The background sleep keeps the output file open: it must not be waited for.
            &[hook(
                "/bin/sh",
                &["sh", "-c", "sleep 30 & sleep 30"],
                Some(1),
            )],
            &serde_json::json!({}),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "createRuntime hook #0 /bin/sh: timed out after 1s and was killed"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn warnings_do_not_stop_the_list() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ran");
        run_warn(
            "poststop",
            &[
                sh("exit 1"),
                sh(&format!("echo second >> {}", out.display())),
            ],
            &serde_json::json!({}),
        );
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "second\n");
    }

    #[test]
    fn entries_are_validated() {
        let mut hooks = Hooks::default();
        hooks.set_poststart(Some(vec![hook("/bin/true", &[], None)]));
        validate(&hooks).unwrap();
        hooks.set_create_runtime(Some(vec![
            hook("/bin/true", &[], Some(5)),
            hook("/bin/true", &[], Some(0)),
        ]));
        assert_eq!(
            validate(&hooks).unwrap_err().to_string(),
            "hooks.createRuntime[1].timeout: must be greater than zero, got 0"
        );
        hooks.set_create_runtime(None);
        hooks.set_start_container(Some(vec![hook("bin/true", &[], None)]));
        assert_eq!(
            validate(&hooks).unwrap_err().to_string(),
            "hooks.startContainer[0].path: must be absolute, got \"bin/true\""
        );
    }
}
