//! Container logs in the CRI format the kubelet and containerd write:
//! `<RFC 3339 nano timestamp> <stdout|stderr> <F|P> <content>`, one entry per line.
//!
//! - [`line`]: one entry, formatted and parsed.
//! - [`writer`]: [`LogWriter`] splits a stream's bytes into entries (16 KiB at most, the
//!   longer pieces tagged `P`) and rotates the file by size.
//! - [`reader`]: [`read`] prints a log back as the container wrote it: partial entries
//!   merged, `--tail`, `--timestamps`, and follow across rotations.
//!
//! A log is a file such as `/var/log/pods/<ns>_<pod>_<uid>/<container>/0.log` and its
//! rotated predecessors `0.log.<YYYYMMDD-hhmmss>`, named as the kubelet's container log
//! manager names them (which also gzips older ones; peapod does not).

pub mod line;
pub mod reader;
pub mod writer;

pub use line::{Entry, Stream};
pub use reader::{read, ReadOptions};
pub use writer::{LogOptions, LogWriter};

use std::path::{Path, PathBuf};

/// Why a log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A line is not a CRI log entry.
    #[error("not a CRI log line ({reason}): {line:?}")]
    Malformed {
        /// What was expected.
        reason: &'static str,
        /// The line, lossily decoded and shortened.
        line: String,
    },
    /// Writing the output of `read` failed (e.g. the client went away).
    #[error("writing log output: {0}")]
    Output(std::io::Error),
}

impl LogError {
    fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LogError {
        let path = path.to_path_buf();
        move |source| LogError::Io { op, path, source }
    }
}

/// The rotated files of the log at `path`, oldest first: `<name>.<timestamp>[.<n>]` in the
/// same directory. The timestamps sort as text, so the order is by name.
pub fn rotated_files(path: &Path) -> Result<Vec<PathBuf>, LogError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{name}.");
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LogError::io("listing", dir)(e)),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .map(|e| e.path())
        .collect();
    files.sort();
    Ok(files)
}
