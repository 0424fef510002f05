//! [`LogWriter`]: turns a container's output into CRI entries in a size-rotated file.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::line::{Entry, Stream};
use super::{rotated_files, LogError};

/// The longest content of one entry: longer lines are cut into `P` entries, as the
/// kubelet and containerd cut them.
pub const MAX_CHUNK: usize = 16 * 1024;

/// How a log is rotated (the kubelet's `containerLogMaxSize` / `containerLogMaxFiles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogOptions {
    /// Rotate before an entry would take the file past this many bytes; 0 never rotates.
    pub max_size: u64,
    /// Files kept, the live one included (so `max_files - 1` rotated ones).
    pub max_files: usize,
}

impl Default for LogOptions {
    /// The kubelet's defaults: 10 MiB, 5 files.
    fn default() -> Self {
        LogOptions {
            max_size: 10 * 1024 * 1024,
            max_files: 5,
        }
    }
}

/// Writes one container's log file; each stream's bytes are buffered until a newline.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    options: LogOptions,
    /// The unfinished line of stdout and of stderr.
    pending: [Vec<u8>; 2],
}

impl LogWriter {
    /// Open (append to) the log at `path`, creating its directories (0755).
    pub fn open(path: &Path, options: LogOptions) -> Result<LogWriter, LogError> {
        if let Some(dir) = path.parent() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(LogError::io("creating the log directory", dir))?;
        }
        let file = open_append(path)?;
        let size = file
            .metadata()
            .map_err(LogError::io("reading the size of", path))?
            .len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            options,
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Log bytes the container wrote to `stream`: every finished line becomes an `F`
    /// entry, and an unfinished one longer than [`MAX_CHUNK`] gives up `P` entries.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> Result<(), LogError> {
        let mut pending = std::mem::take(&mut self.pending[stream as usize]);
        pending.extend_from_slice(data);
        let mut start = 0;
        let result = loop {
            let rest = &pending[start..];
            let window = &rest[..rest.len().min(MAX_CHUNK + 1)];
            let (len, partial, skip) = match window.iter().position(|b| *b == b'\n') {
                Some(n) if n <= MAX_CHUNK => (n, false, 1),
                _ if rest.len() > MAX_CHUNK => (MAX_CHUNK, true, 0),
                _ => break Ok(()),
            };
            if let Err(e) = self.entry(stream, partial, &rest[..len]) {
                break Err(e);
            }
            start += len + skip;
        };
        pending.drain(..start);
        self.pending[stream as usize] = pending;
        result
    }

    /// The stream closed: what is left without a newline is logged as a `P` entry.
    pub fn end(&mut self, stream: Stream) -> Result<(), LogError> {
        let rest = std::mem::take(&mut self.pending[stream as usize]);
        if rest.is_empty() {
            return Ok(());
        }
        self.entry(stream, true, &rest)
    }

    fn entry(&mut self, stream: Stream, partial: bool, content: &[u8]) -> Result<(), LogError> {
        let line = Entry {
            time: Utc::now(),
            stream,
            partial,
            content: content.to_vec(),
        }
        .to_line();
        let max = self.options.max_size;
        if max > 0 && self.size > 0 && self.size + line.len() as u64 > max {
            self.rotate()?;
        }
        self.file
            .write_all(&line)
            .map_err(LogError::io("writing", &self.path))?;
        self.size += line.len() as u64;
        Ok(())
    }

    /// `0.log` → `0.log.<timestamp>`, a new `0.log`, and the oldest rotated files removed.
    fn rotate(&mut self) -> Result<(), LogError> {
        let target = rotated_name(&self.path, Utc::now());
        std::fs::rename(&self.path, &target).map_err(LogError::io("rotating", &self.path))?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        let rotated = rotated_files(&self.path)?;
        let keep = self.options.max_files.saturating_sub(1);
        for old in &rotated[..rotated.len().saturating_sub(keep)] {
            std::fs::remove_file(old).map_err(LogError::io("removing the rotated log", old))?;
        }
        Ok(())
    }
}

impl Drop for LogWriter {
    /// Whatever is unfinished still reaches the file.
    fn drop(&mut self) {
        let _ = self.end(Stream::Stdout);
        let _ = self.end(Stream::Stderr);
    }
}

fn open_append(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(LogError::io("opening", path))
}

/// `<path>.<YYYYMMDD-hhmmss>` (the kubelet's format), with `.<n>` added when several
/// rotations fall in one second, numbered past any file of that second still there, so
/// that none overwrites another and the names still sort oldest first.
fn rotated_name(path: &Path, now: DateTime<Utc>) -> PathBuf {
    let base = format!("{}.{}", path.display(), now.format("%Y%m%d-%H%M%S"));
    let taken = rotated_files(path)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| {
            let rest = p.to_str()?.strip_prefix(&base)?;
            match rest.strip_prefix('.') {
                Some(n) => n.parse::<u32>().ok(),
                None => rest.is_empty().then_some(0),
            }
        })
        .max();
    match taken {
        None => PathBuf::from(base),
        Some(n) => PathBuf::from(format!("{base}.{:04}", n + 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(path: &Path) -> Vec<Entry> {
        let text = std::fs::read(path).unwrap();
        text.split_inclusive(|b| *b == b'\n')
            .map(|l| Entry::parse(l).unwrap())
            .collect()
    }

    #[test]
    fn splits_lines_and_long_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ns_pod_uid/c/0.log");
        let mut w = LogWriter::open(&path, LogOptions::default()).unwrap();
        w.write(Stream::Stdout, b"one\ntw").unwrap();
        w.write(Stream::Stderr, b"err\n").unwrap();
        w.write(Stream::Stdout, b"o\n\n").unwrap();
        let long = vec![b'x'; 40 * 1024];
        w.write(Stream::Stdout, &long).unwrap();
        w.write(Stream::Stdout, b"\nlast").unwrap();
        w.end(Stream::Stdout).unwrap();
        let got: Vec<(Stream, bool, usize)> = entries(&path)
            .iter()
            .map(|e| (e.stream, e.partial, e.content.len()))
            .collect();
        use Stream::*;
        assert_eq!(
            got,
            [
                (Stdout, false, 3),
                (Stderr, false, 3),
                (Stdout, false, 3),
                (Stdout, false, 0),
                (Stdout, true, MAX_CHUNK),
                (Stdout, true, MAX_CHUNK),
                (Stdout, false, 40 * 1024 - 2 * MAX_CHUNK),
                (Stdout, true, 4),
            ]
        );
        assert_eq!(entries(&path)[2].content, b"two");
    }

    #[test]
    fn a_line_of_exactly_the_chunk_size_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut w = LogWriter::open(&path, LogOptions::default()).unwrap();
        let mut line = vec![b'y'; MAX_CHUNK];
        line.push(b'\n');
        w.write(Stream::Stdout, &line).unwrap();
        let e = entries(&path);
        assert_eq!(e.len(), 1);
        assert!(!e[0].partial);
    }

    #[test]
    fn rotates_and_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let options = LogOptions {
            max_size: 200,
            max_files: 3,
        };
        let mut w = LogWriter::open(&path, options).unwrap();
        for i in 0..40 {
            w.write(Stream::Stdout, format!("line {i:02}\n").as_bytes())
                .unwrap();
        }
        let rotated = rotated_files(&path).unwrap();
        assert_eq!(rotated.len(), 2, "{rotated:?}");
        for file in rotated.iter().chain([&path]) {
            let len = std::fs::metadata(file).unwrap().len();
            assert!(len <= 200, "{} has {len} bytes", file.display());
        }
        let live = entries(&path);
        assert_eq!(live.last().unwrap().content, b"line 39");
        // The newest rotated file ends right before the live one starts.
        let previous = entries(rotated.last().unwrap());
        let last: u32 = String::from_utf8_lossy(&previous.last().unwrap().content)[5..]
            .parse()
            .unwrap();
        let first: u32 = String::from_utf8_lossy(&live[0].content)[5..]
            .parse()
            .unwrap();
        assert_eq!(last + 1, first);
        // Nothing else in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
    }

    #[test]
    fn rotated_names_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let now = Utc::now();
        let first = rotated_name(&path, now);
        std::fs::write(&first, "").unwrap();
        let second = rotated_name(&path, now);
        assert!(first < second, "{first:?} {second:?}");
        std::fs::write(&second, "").unwrap();
        // The first one pruned: the next name still sorts after the second.
        std::fs::remove_file(&first).unwrap();
        let third = rotated_name(&path, now);
        assert!(second < third, "{second:?} {third:?}");
    }
}
