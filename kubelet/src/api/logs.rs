//! `GET /containerLogs/{ns}/{pod}/{container}`: a container's log as plain text,
//! streamed (the kubelet's endpoint and query names).
//!
//! `sinceSeconds`/`sinceTime` filter by the lines' own timestamps (after `tailLines`, as
//! the kubelet does); `limitBytes` ends the body after that many bytes.
//!
//! The log is read by `runtime::logs::read`, which blocks (it polls the file
//! when following), so it runs on a blocking thread and writes into a channel
//! that is the response body. A followed log ends once the container's exit
//! record exists (and the log is drained), or when the client goes away.

use std::io::{self, Write};
use std::path::PathBuf;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use runtime::logs::{self, ReadOptions};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::server::{truthy, Shared};
use super::status::ApiError;

/// Bytes gathered before a chunk is sent, unless the reader flushes first.
const CHUNK: usize = 32 * 1024;

/// The kubelet's query parameters for container logs.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogsQuery {
    follow: Option<String>,
    tail_lines: Option<String>,
    timestamps: Option<String>,
    previous: Option<String>,
    limit_bytes: Option<String>,
    since_seconds: Option<String>,
    since_time: Option<String>,
}

impl LogsQuery {
    /// The earliest time of the lines wanted, from `sinceSeconds` or `sinceTime` (RFC 3339);
    /// at most one of them may be given, as the API validates it.
    fn since(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, ApiError> {
        match (self.since_seconds.as_deref(), self.since_time.as_deref()) {
            (Some(_), Some(_)) => Err(ApiError::bad_request(
                "at most one of sinceTime or sinceSeconds may be specified",
            )),
            (Some(seconds), None) => {
                let seconds = seconds
                    .parse::<i64>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "sinceSeconds: expected a positive number of seconds, found {seconds:?}"
                        ))
                    })?;
                Ok(Some(now - chrono::Duration::seconds(seconds)))
            }
            (None, Some(time)) => DateTime::parse_from_rfc3339(time)
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(|e| {
                    ApiError::bad_request(format!(
                        "sinceTime: expected an RFC 3339 time, found {time:?}: {e}"
                    ))
                }),
            (None, None) => Ok(None),
        }
    }

    /// `limitBytes`: a positive number of bytes, or none.
    fn limit(&self) -> Result<Option<usize>, ApiError> {
        self.limit_bytes
            .as_deref()
            .map(|n| {
                n.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "limitBytes: expected a positive number of bytes, found {n:?}"
                    ))
                })
            })
            .transpose()
    }
}

/// `GET /containerLogs/{ns}/{pod}/{container}?follow&tailLines&timestamps&previous&limitBytes&sinceSeconds&sinceTime`.
pub async fn container_logs(
    State(node): State<Shared>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(query): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let flag = |v: &Option<String>| v.as_deref().is_some_and(truthy);
    let tail = match query.tail_lines.as_deref() {
        None => None,
        // kubectl sends -1 for "all".
        Some(n) if n.starts_with('-') => None,
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            ApiError::bad_request(format!(
                "tailLines: expected a number of lines, found {n:?}"
            ))
        })?),
    };
    let since = query.since(Utc::now())?;
    let limit = query.limit()?;
    let previous = flag(&query.previous);
    let found = node.container(&namespace, &pod, &container)?;
    let (path, exit_file) = if previous {
        let path = found.previous_log_path.ok_or_else(|| {
            ApiError::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{pod}\" not found"
            ))
        })?;
        // The previous instance has ended: there is nothing to wait for.
        (path, None)
    } else {
        let path = found.log_path.ok_or_else(|| {
            ApiError::bad_request(format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start"
            ))
        })?;
        (path, found.exit_file)
    };
    let options = ReadOptions {
        tail,
        timestamps: flag(&query.timestamps),
        follow: flag(&query.follow) && !previous,
        since,
        ..ReadOptions::default()
    };
    let (sender, mut receiver) = mpsc::channel::<io::Result<Bytes>>(8);
    tokio::task::spawn_blocking(move || stream_log(path, options, exit_file, limit, sender));
    let body = Body::from_stream(futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)));
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

/// Read the log into the channel; a read error ends the body with that error,
/// which aborts the chunked response so the client does not take it as the end.
fn stream_log(
    path: PathBuf,
    options: ReadOptions,
    exit_file: Option<PathBuf>,
    limit: Option<usize>,
    sender: mpsc::Sender<io::Result<Bytes>>,
) {
    let mut out = ChannelWriter {
        sender: sender.clone(),
        buffer: Vec::new(),
        remaining: limit,
    };
    // Stop following when the instance has ended, or nobody listens any more
    // (a quiet log would otherwise be followed forever for a gone client). An instance
    // whose directory is gone has ended too: its pod was removed, exit record and all,
    // perhaps between two looks.
    let ended = |f: &PathBuf| f.exists() || f.parent().is_some_and(|dir| !dir.exists());
    let stop = || sender.is_closed() || exit_file.as_ref().is_some_and(ended);
    let result = logs::read(&path, &options, &mut out, &stop)
        .and_then(|()| out.flush().map_err(logs::LogError::Output));
    // Reaching limitBytes ends the read with a write error: the body is complete.
    if out.remaining == Some(0) {
        return;
    }
    if let Err(e) = result {
        let _ = sender.blocking_send(Err(io::Error::other(e.to_string())));
    }
}

/// A `Write` whose bytes become chunks of the response body.
/// With `limitBytes`, `remaining` counts down; at zero the writer refuses more, which
/// ends the read.
struct ChannelWriter {
    sender: mpsc::Sender<io::Result<Bytes>>,
    buffer: Vec<u8>,
    remaining: Option<usize>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let taken = match &mut self.remaining {
            Some(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "limitBytes reached",
                ))
            }
            Some(remaining) => {
                let n = data.len().min(*remaining);
                *remaining -= n;
                n
            }
            None => data.len(),
        };
        self.buffer.extend_from_slice(&data[..taken]);
        if self.buffer.len() >= CHUNK || self.remaining == Some(0) {
            self.flush()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buffer));
        self.sender
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}
