//! Ending one container as the kubelet does: its preStop hook, then the image's
//! `STOPSIGNAL` (or SIGTERM), then SIGKILL when the grace period runs out; and the
//! termination message it leaves behind (`terminationMessagePath`, or the tail of its
//! log under `FallbackToLogsOnError`).

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::io::unix::AsyncFd;

use super::cri::Cri;

/// How long after SIGKILL a container may take to be reaped before it is left behind.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// The least grace a container gets after its preStop hook used up the period, as
/// upstream's `minimumGracePeriodInSeconds`.
pub const MINIMUM_GRACE: Duration = Duration::from_secs(2);
/// The most of a termination message file that is read, as upstream.
const MAX_MESSAGE_BYTES: u64 = 4096;
/// The log tail `FallbackToLogsOnError` uses: lines, then bytes, as upstream.
const FALLBACK_LINES: usize = 80;
const FALLBACK_BYTES: usize = 2048;

/// One running container instance to stop.
#[derive(Debug, Clone)]
pub struct Victim {
    /// The runtime's id.
    pub id: String,
    /// Its shim, whose exit is the container's.
    pub shim_pid: i32,
    /// The image's `StopSignal` (empty: SIGTERM).
    pub stop_signal: String,
}

/// The signal that asks a container to stop: the image's `StopSignal` (`SIGQUIT`,
/// `QUIT` or `3`), else SIGTERM.
pub fn stop_signal(name: &str) -> Signal {
    let name = name.trim();
    if name.is_empty() {
        return Signal::SIGTERM;
    }
    if let Ok(number) = name.parse::<i32>() {
        return Signal::try_from(number).unwrap_or(Signal::SIGTERM);
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full).unwrap_or(Signal::SIGTERM)
}

/// Stop `victim`: run `pre_stop` (bounded by the grace period), send the stop signal,
/// wait for the rest of the grace period (at least [`MINIMUM_GRACE`] after a hook),
/// then SIGKILL. Returns once the container has ended or could not be reaped.
pub async fn stop<F>(cri: Arc<Cri>, victim: Victim, grace: Duration, pre_stop: Option<F>)
where
    F: std::future::Future<Output = ()>,
{
    let mut deadline = Instant::now() + grace;
    let exit = process_exit(victim.shim_pid);
    tokio::pin!(exit);
    if let Some(hook) = pre_stop {
        tokio::select! {
            _ = hook => {}
            _ = tokio::time::sleep_until(deadline.into()) => {}
            _ = &mut exit => return,
        }
        deadline = deadline.max(Instant::now() + MINIMUM_GRACE);
    }
    signal(&cri, &victim.id, stop_signal(&victim.stop_signal)).await;
    if tokio::time::timeout_at(deadline.into(), &mut exit)
        .await
        .is_ok()
    {
        return;
    }
    signal(&cri, &victim.id, Signal::SIGKILL).await;
    let _ = tokio::time::timeout(KILL_WAIT, exit).await;
}

async fn signal(cri: &Arc<Cri>, id: &str, signal: Signal) {
    let cri = cri.clone();
    let id = id.to_string();
    let _ = tokio::task::spawn_blocking(move || cri.kill(&id, signal)).await;
}

/// Resolves when process `pid` has exited (at once if it is already gone), through a
/// pidfd, which works for processes that are not our children, as shims are not.
pub async fn process_exit(pid: i32) {
    let Ok(fd) = runtime::process::pidfd::open(pid) else {
        return;
    };
    // SAFETY: the AsyncFd owns the pidfd, so it stays open until it is deregistered.
    let registered = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) };
    match registered {
        Ok(async_fd) => {
            let _ = async_fd.readable().await;
        }
        Err(e) => tracing::warn!("watching process {pid}: {e}"),
    }
}

/// The message a container left: its termination log file (at most 4 KiB), or, under
/// `FallbackToLogsOnError` with an empty file and a failed exit, its log's tail.
pub fn message(
    file: Option<&Path>,
    log: Option<&Path>,
    policy: &str,
    exit_code: i32,
) -> Option<String> {
    use std::io::Read as _;
    let mut text = String::new();
    if let Some(file) = file {
        if let Ok(f) = std::fs::File::open(file) {
            let mut bytes = Vec::new();
            let _ = f.take(MAX_MESSAGE_BYTES).read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    if text.is_empty() && policy == "FallbackToLogsOnError" && exit_code != 0 {
        if let Some(log) = log {
            text = log_tail(log);
        }
    }
    (!text.is_empty()).then_some(text)
}

fn log_tail(log: &Path) -> String {
    let options = runtime::logs::ReadOptions {
        tail: Some(FALLBACK_LINES),
        ..Default::default()
    };
    let mut out = Vec::new();
    if runtime::logs::read(log, &options, &mut out, &|| true).is_err() {
        return String::new();
    }
    let start = out.len().saturating_sub(FALLBACK_BYTES);
    String::from_utf8_lossy(&out[start..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_signals_follow_docker_spellings() {
        assert_eq!(stop_signal(""), Signal::SIGTERM);
        assert_eq!(stop_signal("SIGQUIT"), Signal::SIGQUIT);
        assert_eq!(stop_signal("quit"), Signal::SIGQUIT);
        assert_eq!(stop_signal("3"), Signal::SIGQUIT);
        assert_eq!(stop_signal("SIGRTMAX+99"), Signal::SIGTERM);
    }

    #[test]
    fn messages_come_from_the_file_or_the_log_tail() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("termination-log");
        std::fs::write(&file, "x".repeat(5000)).unwrap();
        let got = message(Some(&file), None, "File", 1).unwrap();
        assert_eq!(got.len(), 4096);

        std::fs::write(&file, "").unwrap();
        let log = dir.path().join("0.log");
        let mut lines = String::new();
        for i in 0..100 {
            lines.push_str(&format!(
                "2026-01-01T00:00:00.000000000Z stdout F line {i}\n"
            ));
        }
        std::fs::write(&log, lines).unwrap();
        assert_eq!(message(Some(&file), Some(&log), "File", 1), None);
        assert_eq!(
            message(Some(&file), Some(&log), "FallbackToLogsOnError", 0),
            None
        );
        let tail = message(Some(&file), Some(&log), "FallbackToLogsOnError", 1).unwrap();
        assert!(tail.ends_with("line 99\n"), "{tail:?}");
        assert!(!tail.contains("line 19\n"), "80 lines at most: {tail:?}");
    }
}
