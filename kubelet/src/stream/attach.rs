//! Attach's server side, whatever the transport: peapod's containers have no stdin pipe
//! or terminal to attach to, so attach streams the container's live output as its CRI
//! log records it (new entries from now on, stdout and stderr apart), until the
//! container exits or the client goes away.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use runtime::logs::{Entry, Stream as LogStream};

use super::channel::{STDERR, STDOUT};
use super::exec::Client;
use super::{status, StreamFlags};

/// How often the log is checked for new entries.
const POLL: Duration = Duration::from_millis(100);

/// The container instance to attach to: its CRI log and the file that says it exited.
#[derive(Debug, Clone)]
pub struct AttachTarget {
    /// The current instance's CRI log.
    pub log_path: PathBuf,
    /// The shim's exit record; once it exists (and the log is drained) attach ends.
    pub exit_file: Option<PathBuf>,
}

/// Stream what the container writes from now on to `client` (stdout and stderr on
/// their channels; both on stdout with a tty, which has one stream). Returns Success
/// when the container has exited, None if the client went away.
pub async fn run(
    target: &AttachTarget,
    request: &StreamFlags,
    mut client: Client,
) -> Option<Status> {
    let mut follower = Follower::new(target.log_path.clone());
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            input = client.input.recv() => {
                // No stdin to write to: input is dropped; its end is the client's.
                input.as_ref()?;
                continue;
            }
            _ = tick.tick() => {}
        }
        let exited = target.exit_file.as_ref().is_some_and(|f| f.exists());
        for entry in follower.poll() {
            let channel = match entry.stream {
                LogStream::Stderr if !request.tty => STDERR,
                _ => STDOUT,
            };
            let wanted = if channel == STDOUT {
                request.stdout
            } else {
                request.stderr
            };
            if !wanted {
                continue;
            }
            let mut data = entry.content;
            if !entry.partial {
                data.push(b'\n');
            }
            client.output.send((channel, data)).await.ok()?;
        }
        if exited {
            return Some(status::success());
        }
    }
}

/// Reads the entries appended to a CRI log since it was opened, across rotations (a new
/// file at the path is read from its start).
struct Follower {
    path: PathBuf,
    /// The inode read and the offset reached; None until the log exists.
    at: Option<(u64, u64)>,
    /// The unfinished line at the end of the file.
    pending: Vec<u8>,
}

impl Follower {
    /// Start at the log's current end: attach shows new output only.
    fn new(path: PathBuf) -> Follower {
        let at = std::fs::metadata(&path).ok().map(|m| (m.ino(), m.len()));
        Follower {
            path,
            at,
            pending: Vec::new(),
        }
    }

    /// The complete entries appended since the last poll.
    fn poll(&mut self) -> Vec<Entry> {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let Ok(meta) = file.metadata() else {
            return Vec::new();
        };
        let offset = match self.at {
            Some((inode, offset)) if inode == meta.ino() && offset <= meta.len() => offset,
            // Rotated or truncated: the new file is all new output.
            _ => {
                self.pending.clear();
                0
            }
        };
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(offset)).is_err() || file.read_to_end(&mut bytes).is_err() {
            return Vec::new();
        }
        self.at = Some((meta.ino(), offset + bytes.len() as u64));
        self.pending.extend_from_slice(&bytes);
        let Some(end) = self.pending.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        let complete: Vec<u8> = self.pending.drain(..=end).collect();
        complete
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            // A foreign line does not stop the output.
            .filter_map(|line| Entry::parse(line).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn followers_see_only_new_complete_entries_across_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, "2024-01-01T00:00:00Z stdout F old\n").unwrap();
        let mut follower = Follower::new(path.clone());
        assert!(follower.poll().is_empty());
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"2024-01-01T00:00:01Z stdout P new \n2024-01-01T00:00:02Z stderr F oops\n2024-01-01T00:00:03Z stdout F ha")
            .unwrap();
        let entries = follower.poll();
        let seen: Vec<_> = entries
            .iter()
            .map(|e| {
                (
                    e.stream,
                    e.partial,
                    String::from_utf8_lossy(&e.content).into_owned(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (LogStream::Stdout, true, "new ".to_string()),
                (LogStream::Stderr, false, "oops".to_string())
            ]
        );
        file.write_all(b"lf\n").unwrap();
        assert_eq!(follower.poll()[0].content, b"half");
        // Rotation: the log is renamed and a new file starts at the path.
        std::fs::rename(&path, dir.path().join("0.log.1")).unwrap();
        std::fs::write(&path, "2024-01-01T00:00:04Z stdout F fresh\n").unwrap();
        assert_eq!(follower.poll()[0].content, b"fresh");
    }
}
