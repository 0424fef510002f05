//! Port-forward over SPDY (`portforward.k8s.io`): per forwarded connection the client
//! opens an `error` stream and a `data` stream, both with headers `port` and
//! `requestID`; once both are there we dial the port inside the pod and pipe the data
//! stream, reporting a failure on the error stream. One session carries many requests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::remote_command::STREAM_TYPE;
use super::{Session, Stream, StreamReader, StreamWriter};
use crate::stream::exec::QUEUE;

/// The port-forward protocol over SPDY.
pub const PROTOCOLS: &[&str] = &["portforward.k8s.io"];

/// How long a request's second stream may take to follow its first.
const PAIR_WAIT: Duration = Duration::from_secs(30);

/// A request's streams as they arrive.
#[derive(Default)]
struct Pair {
    port: Option<String>,
    error: Option<StreamWriter>,
    data: Option<Stream>,
}

/// Serve port-forward requests on `session` until the client goes away, dialing inside
/// the network namespace pinned at `netns`.
pub async fn serve(mut session: Session, netns: PathBuf) {
    let netns: Arc<Path> = netns.into();
    let mut pending: HashMap<String, (Pair, tokio::time::Instant)> = HashMap::new();
    let mut forwards = JoinSet::new();
    let mut sweep = tokio::time::interval(PAIR_WAIT / 3);
    loop {
        let stream = tokio::select! {
            stream = session.accept() => match stream {
                Some(stream) => stream,
                None => break,
            },
            _ = sweep.tick() => {
                let now = tokio::time::Instant::now();
                let expired: Vec<String> = pending
                    .iter()
                    .filter(|(_, (_, since))| now.duration_since(*since) > PAIR_WAIT)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in expired {
                    if let Some((pair, _)) = pending.remove(&id) {
                        abandon(pair, &format!("timed out waiting for the streams of request {id}")).await;
                    }
                }
                continue;
            }
            // Reap finished forwards so the set does not grow with the session.
            Some(_) = forwards.join_next(), if !forwards.is_empty() => continue,
        };
        let id = request_id(&stream);
        let (pair, _) = pending
            .entry(id.clone())
            .or_insert_with(|| (Pair::default(), tokio::time::Instant::now()));
        pair.port = pair
            .port
            .take()
            .or(stream.header("port").map(str::to_owned));
        match stream.header(STREAM_TYPE) {
            Some("error") => pair.error = Some(stream.writer),
            Some("data") => pair.data = Some(stream),
            other => {
                let kind = other.unwrap_or_default().to_owned();
                stream.writer.reset().await;
                if let Some((pair, _)) = pending.remove(&id) {
                    abandon(
                        pair,
                        &format!("unknown stream type {kind:?} in request {id}"),
                    )
                    .await;
                }
                continue;
            }
        }
        if pair.error.is_some() && pair.data.is_some() {
            if let Some((pair, _)) = pending.remove(&id) {
                forwards.spawn(forward(pair, netns.clone()));
            }
        }
    }
    // The client is gone: its connections go with it.
    forwards.shutdown().await;
    session.close().await;
}

/// The request a stream belongs to: its `requestID` header, or (clients before
/// requestID) the error stream's id, which the data stream follows by two.
fn request_id(stream: &Stream) -> String {
    if let Some(id) = stream.header("requestID") {
        return id.to_owned();
    }
    let id = match stream.header(STREAM_TYPE) {
        Some("data") => stream.id.saturating_sub(2),
        _ => stream.id,
    };
    format!("stream-{id}")
}

/// Tell the client why a request will not be served, and end its streams.
async fn abandon(pair: Pair, reason: &str) {
    if let Some(error) = pair.error {
        let _ = error.write(reason.as_bytes()).await;
        let _ = error.close().await;
    }
    if let Some(data) = pair.data {
        data.writer.reset().await;
    }
}

/// One forwarded connection: dial, pipe, close.
async fn forward(pair: Pair, netns: Arc<Path>) {
    let (Some(error), Some(data)) = (pair.error, pair.data) else {
        return;
    };
    let port = pair.port.as_deref().unwrap_or_default();
    let Some(port) = port.parse::<u16>().ok().filter(|p| *p != 0) else {
        let reason = format!("invalid port {port:?}: expected a port number in the port header");
        let _ = error.write(reason.as_bytes()).await;
        let _ = error.close().await;
        data.writer.reset().await;
        return;
    };
    let (from_client, from_client_rx) = mpsc::channel(QUEUE);
    let (to_client, mut to_client_rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    let reader = tokio::spawn(read_data(data.reader, from_client));
    let writer = data.writer;
    let sending = async {
        while let Some(chunk) = to_client_rx.recv().await {
            if writer.write(&chunk).await.is_err() {
                return;
            }
        }
    };
    let (result, ()) = tokio::join!(
        crate::stream::port_forward::forward(&netns, port, from_client_rx, to_client),
        sending
    );
    reader.abort();
    if let Err(reason) = result {
        let _ = error.write(reason.as_bytes()).await;
    }
    let _ = error.close().await;
    let _ = writer.close().await;
}

/// The client's bytes, to the pod; the stream's FIN ends the channel (a half-close).
async fn read_data(mut data: StreamReader, to: mpsc::Sender<Vec<u8>>) {
    while let Some(chunk) = data.read().await {
        if to.send(chunk).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_peer::Peer;
    use super::*;

    /// Serve port-forward on a fresh session whose pod network cannot be entered.
    fn start() -> Peer {
        let (peer, session) = Peer::connect();
        tokio::spawn(serve(session, PathBuf::from("/nonexistent/netns")));
        peer
    }

    #[tokio::test]
    async fn requests_pair_by_id_and_failures_go_to_their_error_stream() {
        let mut peer = start();
        let request = |kind, port, id| [("streamType", kind), ("port", port), ("requestID", id)];
        peer.open_with(1, &request("error", "80", "0")).await;
        peer.open_with(3, &request("error", "nope", "1")).await;
        peer.open_with(5, &request("data", "nope", "1")).await;
        let invalid = peer.until_fin(3).await;
        assert!(invalid.contains("invalid port \"nope\""), "{invalid}");
        peer.open_with(7, &request("data", "80", "0")).await;
        let dial = peer.until_fin(1).await;
        assert!(
            dial.contains("error forwarding port 80 to pod") && dial.contains("/nonexistent/netns"),
            "{dial}"
        );
    }

    #[tokio::test]
    async fn clients_without_request_ids_pair_by_stream_id() {
        let mut peer = start();
        peer.open_with(1, &[("streamType", "error"), ("port", "80")])
            .await;
        peer.open_with(3, &[("streamType", "data"), ("port", "80")])
            .await;
        let dial = peer.until_fin(1).await;
        assert!(dial.contains("/nonexistent/netns"), "{dial}");
        peer.open_with(5, &[("streamType", "bogus"), ("requestID", "9")])
            .await;
        assert_eq!(peer.until_fin(5).await, "RST");
    }
}
