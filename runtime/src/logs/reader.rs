//! [`read`]: a CRI log printed back as the container wrote it (`peapod logs`).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::line::{timestamp, Entry};
use super::{rotated_files, LogError};

/// What to print.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Only the last N lines (`--tail N`); None for all.
    pub tail: Option<usize>,
    /// Prefix each line with its timestamp (`--timestamps`).
    pub timestamps: bool,
    /// Keep printing appended lines (`-f`), following rotations, until `stop` says so.
    pub follow: bool,
    /// How often a followed log is checked for new lines.
    pub poll: Duration,
    /// Only lines written at or after this time (`--since`, `--since-time`); applied after
    /// `tail`, as the kubelet applies it.
    pub since: Option<DateTime<Utc>>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            tail: None,
            timestamps: false,
            follow: false,
            poll: Duration::from_millis(100),
            since: None,
        }
    }
}

/// One line as the container wrote it: partial entries joined, stamped with the time of
/// its first piece; `newline` is false for output that ended without one.
struct Line {
    time: DateTime<Utc>,
    content: Vec<u8>,
    newline: bool,
}

/// Where lines go: straight out, or into the last-N window of `--tail`.
struct Sink<'a> {
    out: &'a mut dyn Write,
    timestamps: bool,
    since: Option<DateTime<Utc>>,
    tail: Option<(usize, VecDeque<Line>)>,
    /// The partial line of stdout and of stderr, waiting for its final piece.
    partial: [Option<Line>; 2],
}

impl Sink<'_> {
    fn entry(&mut self, entry: Entry) -> Result<(), LogError> {
        let slot = &mut self.partial[entry.stream as usize];
        let mut line = slot.take().unwrap_or(Line {
            time: entry.time,
            content: Vec::new(),
            newline: true,
        });
        line.content.extend_from_slice(&entry.content);
        if entry.partial {
            *slot = Some(line);
            return Ok(());
        }
        self.line(line)
    }

    fn line(&mut self, line: Line) -> Result<(), LogError> {
        match &mut self.tail {
            Some((n, window)) => {
                window.push_back(line);
                if window.len() > *n {
                    window.pop_front();
                }
                Ok(())
            }
            None => self.print(&line),
        }
    }

    fn print(&mut self, line: &Line) -> Result<(), LogError> {
        if self.since.is_some_and(|since| line.time < since) {
            return Ok(());
        }
        let out = &mut self.out;
        if self.timestamps {
            write!(out, "{} ", timestamp(line.time)).map_err(LogError::Output)?;
        }
        out.write_all(&line.content).map_err(LogError::Output)?;
        if line.newline {
            out.write_all(b"\n").map_err(LogError::Output)?;
        }
        Ok(())
    }

    /// Lines still partial at the end of the log are what the container last wrote
    /// without a newline.
    fn finish_partials(&mut self) -> Result<(), LogError> {
        for slot in 0..2 {
            if let Some(mut line) = self.partial[slot].take() {
                line.newline = false;
                self.line(line)?;
            }
        }
        Ok(())
    }

    /// End `--tail`: print its window; later lines print directly.
    fn flush_tail(&mut self) -> Result<(), LogError> {
        if let Some((_, window)) = self.tail.take() {
            for line in &window {
                self.print(line)?;
            }
        }
        self.out.flush().map_err(LogError::Output)
    }
}

/// An open log file read line by line; an unfinished last line waits in `pending`.
struct Cursor {
    reader: BufReader<File>,
    inode: u64,
    pending: Vec<u8>,
}

impl Cursor {
    fn open(path: &Path) -> Result<Option<Cursor>, LogError> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LogError::io("opening", path)(e)),
        };
        let inode = file.metadata().map_err(LogError::io("stat", path))?.ino();
        Ok(Some(Cursor {
            reader: BufReader::new(file),
            inode,
            pending: Vec::new(),
        }))
    }

    /// Feed every complete line from here to the end of the file to `sink`.
    fn drain(&mut self, path: &Path, sink: &mut Sink) -> Result<(), LogError> {
        loop {
            let n = self
                .reader
                .read_until(b'\n', &mut self.pending)
                .map_err(LogError::io("reading", path))?;
            if n == 0 || !self.pending.ends_with(b"\n") {
                return Ok(());
            }
            let line = std::mem::take(&mut self.pending);
            match Entry::parse(&line) {
                Ok(entry) => sink.entry(entry)?,
                // A foreign line does not hide the rest of the log.
                Err(e) => tracing::debug!("{}: skipping: {e}", path.display()),
            }
        }
    }
}

/// Print the log at `path` (its rotated files first) to `out`. With `follow`, keep
/// printing lines as they are appended, across rotations, until `stop()` returns true;
/// the log is then read to its end once more, so nothing written before the stop is lost.
pub fn read(
    path: &Path,
    options: &ReadOptions,
    out: &mut dyn Write,
    stop: &dyn Fn() -> bool,
) -> Result<(), LogError> {
    let mut sink = Sink {
        out,
        timestamps: options.timestamps,
        since: options.since,
        tail: options.tail.map(|n| (n, VecDeque::new())),
        partial: [None, None],
    };
    for file in rotated_files(path)? {
        if let Some(mut cursor) = Cursor::open(&file)? {
            cursor.drain(&file, &mut sink)?;
        }
    }
    let mut cursor = Cursor::open(path)?;
    if let Some(cursor) = &mut cursor {
        cursor.drain(path, &mut sink)?;
    }
    if !options.follow {
        sink.finish_partials()?;
        return sink.flush_tail();
    }
    sink.flush_tail()?;
    loop {
        let stopping = stop();
        if let Some(c) = &mut cursor {
            c.drain(path, &mut sink)?;
        }
        // A new inode at `path` means the file was rotated: the old one is complete
        // (drained above), and the new one is read from its start.
        let current = std::fs::metadata(path).ok().map(|m| m.ino());
        if current.is_some() && current != cursor.as_ref().map(|c| c.inode) {
            // Lines may have reached the old file between the drain and the rename.
            if let Some(c) = &mut cursor {
                c.drain(path, &mut sink)?;
            }
            cursor = Cursor::open(path)?;
            continue;
        }
        sink.out.flush().map_err(LogError::Output)?;
        if stopping {
            return sink.finish_partials().and_then(|()| sink.flush_tail());
        }
        std::thread::sleep(options.poll);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{LogOptions, LogWriter, Stream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn read_all(path: &Path, options: ReadOptions) -> String {
        let mut out = Vec::new();
        read(path, &options, &mut out, &|| true).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn merges_partials_per_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(
            &path,
            "2024-01-01T00:00:00.1Z stdout P hel\n\
             2024-01-01T00:00:00.2Z stderr F oops\n\
             2024-01-01T00:00:00.3Z stdout F lo\n\
             not a log line\n\
             2024-01-01T00:00:00.4Z stdout P no newline",
        )
        .unwrap();
        assert_eq!(read_all(&path, ReadOptions::default()), "oops\nhello\n");
        // The unfinished line at the end is not an entry yet; once finished it shows.
        std::fs::write(
            &path,
            "2024-01-01T00:00:00.1Z stdout P hel\n\
             2024-01-01T00:00:00.3Z stdout F lo\n\
             2024-01-01T00:00:00.4Z stdout P no newline\n",
        )
        .unwrap();
        let options = ReadOptions {
            timestamps: true,
            ..ReadOptions::default()
        };
        assert_eq!(
            read_all(&path, options),
            "2024-01-01T00:00:00.100000000Z hello\n\
             2024-01-01T00:00:00.400000000Z no newline"
        );
    }

    #[test]
    fn tail_counts_lines_across_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let options = LogOptions {
            max_size: 300,
            max_files: 10,
        };
        let mut w = LogWriter::open(&path, options).unwrap();
        for i in 0..30 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        drop(w);
        assert!(!rotated_files(&path).unwrap().is_empty());
        let all = read_all(&path, ReadOptions::default());
        let want: String = (0..30).map(|i| format!("line {i}\n")).collect();
        assert_eq!(all, want);
        let tail = ReadOptions {
            tail: Some(3),
            ..ReadOptions::default()
        };
        assert_eq!(read_all(&path, tail), "line 27\nline 28\nline 29\n");
        let none = ReadOptions {
            tail: Some(0),
            ..ReadOptions::default()
        };
        assert_eq!(read_all(&path, none), "");
    }

    #[test]
    fn since_drops_older_lines_after_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let lines = [
            "2024-05-01T10:00:00.000000000Z stdout F old\n",
            "2024-05-01T10:00:05.000000000Z stdout F edge\n",
            "2024-05-01T10:00:09.000000000Z stderr F new\n",
        ];
        std::fs::write(&path, lines.concat()).unwrap();
        let since = "2024-05-01T10:00:05Z".parse().unwrap();
        let recent = ReadOptions {
            since: Some(since),
            ..ReadOptions::default()
        };
        assert_eq!(read_all(&path, recent), "edge\nnew\n");
        let tail_first = ReadOptions {
            tail: Some(1),
            since: Some(since),
            ..ReadOptions::default()
        };
        assert_eq!(read_all(&path, tail_first), "new\n");
    }

    #[test]
    fn follow_sees_appends_and_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let options = LogOptions {
            max_size: 400,
            max_files: 100,
        };
        let mut w = LogWriter::open(&path, options).unwrap();
        w.write(Stream::Stdout, b"before\n").unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let writer = {
            let done = done.clone();
            std::thread::spawn(move || {
                for i in 0..60 {
                    w.write(Stream::Stdout, format!("after {i}\n").as_bytes())
                        .unwrap();
                    std::thread::sleep(Duration::from_millis(2));
                }
                drop(w);
                done.store(true, Ordering::SeqCst);
            })
        };
        let mut out = Vec::new();
        let options = ReadOptions {
            follow: true,
            tail: Some(1),
            poll: Duration::from_millis(5),
            ..ReadOptions::default()
        };
        read(&path, &options, &mut out, &|| done.load(Ordering::SeqCst)).unwrap();
        writer.join().unwrap();
        assert!(rotated_files(&path).unwrap().len() >= 2);
        let want: String = std::iter::once("before\n".to_string())
            .chain((0..60).map(|i| format!("after {i}\n")))
            .collect();
        let got = String::from_utf8(out).unwrap();
        // `tail: 1` may have caught "before" or an early "after" line at the start.
        let start = want
            .find(&format!("{}\n", got.lines().next().unwrap()))
            .unwrap();
        assert_eq!(got, want[start..]);
        assert!(got.ends_with("after 59\n"));
    }
}
