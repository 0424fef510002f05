//! One CRI log entry: `<timestamp> <stream> <F|P> <content>\n`.

use chrono::{DateTime, SecondsFormat, Utc};

use super::LogError;

/// Which output of the container an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output (and a terminal's output).
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// The name in the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One parsed log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When the runtime read the content.
    pub time: DateTime<Utc>,
    /// The stream it came from.
    pub stream: Stream,
    /// `P`: the line continues in the next entry of the same stream.
    pub partial: bool,
    /// The bytes, without the newline.
    pub content: Vec<u8>,
}

/// The timestamp as written: RFC 3339 with nine fraction digits, always UTC. Go's
/// RFC3339Nano trims trailing zeros; fixed width parses the same and sorts as text.
pub fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

impl Entry {
    /// The line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let tag = if self.partial { "P" } else { "F" };
        let head = format!("{} {} {tag} ", timestamp(self.time), self.stream.as_str());
        let mut line = Vec::with_capacity(head.len() + self.content.len() + 1);
        line.extend_from_slice(head.as_bytes());
        line.extend_from_slice(&self.content);
        line.push(b'\n');
        line
    }

    /// Parse one line (with or without its newline).
    pub fn parse(line: &[u8]) -> Result<Entry, LogError> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let bad = |reason| LogError::Malformed {
            reason,
            line: String::from_utf8_lossy(&line[..line.len().min(120)]).into_owned(),
        };
        let mut fields = line.splitn(4, |b| *b == b' ');
        let time = fields.next().ok_or(bad("no timestamp"))?;
        let time = std::str::from_utf8(time)
            .ok()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .ok_or(bad("the timestamp is not RFC 3339"))?
            .with_timezone(&Utc);
        let stream = match fields.next() {
            Some(b"stdout") => Stream::Stdout,
            Some(b"stderr") => Stream::Stderr,
            _ => return Err(bad("the stream is not stdout or stderr")),
        };
        let partial = match fields.next() {
            Some(b"P") => true,
            Some(b"F") => false,
            _ => return Err(bad("the tag is not F or P")),
        };
        // An empty line is written as "... F " and may have lost its trailing space.
        let content = fields.next().unwrap_or_default().to_vec();
        Ok(Entry {
            time,
            stream,
            partial,
            content,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(nanos: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, nanos).unwrap()
    }

    #[test]
    fn formats_as_the_cri_does() {
        let e = Entry {
            time: at(120),
            stream: Stream::Stderr,
            partial: true,
            content: b"a b".to_vec(),
        };
        assert_eq!(
            e.to_line(),
            b"2023-11-14T22:13:20.000000120Z stderr P a b\n".to_vec()
        );
        assert_eq!(Entry::parse(&e.to_line()).unwrap(), e);
    }

    #[test]
    fn parses_go_timestamps_and_empty_lines() {
        let e = Entry::parse(b"2023-11-14T23:13:20.5+01:00 stdout F").unwrap();
        assert_eq!(e.time, at(500_000_000));
        assert!(e.content.is_empty() && !e.partial);
        let e = Entry::parse(b"2023-11-14T22:13:20Z stdout F  two spaces").unwrap();
        assert_eq!(e.content, b" two spaces");
    }

    #[test]
    fn rejects_bad_lines() {
        for line in [
            &b"hello"[..],
            b"2023-11-14T22:13:20Z stdin F x",
            b"2023-11-14T22:13:20Z stdout X x",
            b"yesterday stdout F x",
        ] {
            assert!(Entry::parse(line).is_err(), "{line:?}");
        }
    }
}
