//! [`ExitRecord`]: how a container ended, written once by its shim and read by the kubelet.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cgroup::{Cgroup, Version};

/// Why a container ended, as the CRI's `ContainerStatus.reason` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reason {
    /// Exit code 0.
    Completed,
    /// A non-zero exit code or a signal.
    Error,
    /// The kernel's OOM killer ended a process of the container's memory cgroup.
    #[serde(rename = "OOMKilled")]
    OomKilled,
}

/// The end of a container's init, as its shim saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit code; `128 + signal` when a signal ended it, as the CRI reports it.
    pub exit_code: i32,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// When the container was started (RFC 3339, nanoseconds).
    pub started_at: String,
    /// When the shim reaped it (RFC 3339, nanoseconds).
    pub finished_at: String,
    /// Completed, Error or OOMKilled.
    pub reason: Reason,
}

impl ExitRecord {
    /// The reason for an exit code, given whether the cgroup saw an OOM kill.
    pub fn reason_for(exit_code: i32, oom_killed: bool) -> Reason {
        match (oom_killed, exit_code) {
            (true, _) => Reason::OomKilled,
            (false, 0) => Reason::Completed,
            (false, _) => Reason::Error,
        }
    }

    /// Write the record to `path` through a temp file and a rename, so a reader sees
    /// the whole record or none.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("exit");
        let tmp = path.with_file_name(format!(".{name}.tmp"));
        let text = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
}

/// The exit record at `path`: None while the container runs (the file is absent) or
/// when the file is not a record. It is written by rename, so never half.
pub fn exit_status(path: &Path) -> Option<ExitRecord> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Whether the kernel OOM-killed a process in the cgroup: `oom_kill` in v1's
/// `memory.oom_control` (kernel 4.13+) or in v2's `memory.events`.
pub fn oom_killed(cgroup: &Cgroup) -> bool {
    cgroup.placements().iter().any(|p| {
        let file = match p.version {
            Version::V1 if p.has("memory") => "memory.oom_control",
            Version::V2 => "memory.events",
            Version::V1 => return false,
        };
        std::fs::read_to_string(p.path.join(file)).is_ok_and(|text| oom_kill_count(&text) > 0)
    })
}

/// The `oom_kill N` counter of a flat-keyed cgroup file.
fn oom_kill_count(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.strip_prefix("oom_kill "))
        .filter_map(|n| n.trim().parse().ok())
        .next()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons() {
        assert_eq!(ExitRecord::reason_for(0, false), Reason::Completed);
        assert_eq!(ExitRecord::reason_for(137, false), Reason::Error);
        assert_eq!(ExitRecord::reason_for(137, true), Reason::OomKilled);
    }

    #[test]
    fn oom_counter_from_v1_and_v2_files() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(oom_kill_count(v1), 2);
        let v2 = "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\noom_group_kill 0\n";
        assert_eq!(oom_kill_count(v2), 0);
        assert_eq!(oom_kill_count(""), 0);
    }

    #[test]
    fn records_round_trip_and_absent_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit");
        assert_eq!(exit_status(&path), None);
        let record = ExitRecord {
            exit_code: 137,
            signal: Some(9),
            started_at: "2026-01-01T00:00:00.000000001Z".into(),
            finished_at: "2026-01-01T00:00:01.000000001Z".into(),
            reason: Reason::OomKilled,
        };
        record.save(&path).unwrap();
        assert_eq!(exit_status(&path), Some(record));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"OOMKilled\""), "{text}");
        std::fs::write(&path, "{").unwrap();
        assert_eq!(exit_status(&path), None);
    }
}
