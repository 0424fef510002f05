//! Exec and attach over SPDY (`v4.channel.k8s.io`, `v3`, `v2`): the client opens one
//! stream per channel, named by its `streamType` header; we wait for the ones the query
//! asked for, run the job on them, and end with its Status on the error stream.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;

use super::{Session, StreamReader, StreamWriter};
use crate::stream::channel::{Size, STDERR, STDOUT};
use crate::stream::exec::{Client, Input};
use crate::stream::StreamFlags;

/// The remote-command protocols we speak over SPDY, preferred first (`v5` is
/// WebSocket-only; `channel.k8s.io`, v1, is not spoken).
pub const PROTOCOLS: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
];

/// The `streamType` header that names a stream's role.
pub const STREAM_TYPE: &str = "streamType";

/// How long the client has to open the streams it asked for (the kubelet's default
/// stream creation timeout).
pub const STREAM_WAIT: Duration = Duration::from_secs(30);

/// The streams of one remote command.
#[derive(Default)]
struct Streams {
    error: Option<StreamWriter>,
    stdin: Option<StreamReader>,
    stdout: Option<StreamWriter>,
    stderr: Option<StreamWriter>,
    resize: Option<StreamReader>,
}

impl Streams {
    /// Whether every stream `flags` calls for (in `protocol`) has arrived.
    fn complete(&self, flags: &StreamFlags, protocol: &str) -> bool {
        let resizes = flags.tty && protocol != "v2.channel.k8s.io";
        self.error.is_some()
            && (!flags.stdin || self.stdin.is_some())
            && (!flags.stdout || self.stdout.is_some())
            && (!flags.stderr || self.stderr.is_some())
            && (!resizes || self.resize.is_some())
    }
}

/// Wait for the client's streams; Err names what is missing after [`STREAM_WAIT`].
async fn wait_for_streams(
    session: &mut Session,
    flags: &StreamFlags,
    protocol: &str,
) -> Result<Streams, String> {
    let mut streams = Streams::default();
    let deadline = tokio::time::Instant::now() + STREAM_WAIT;
    while !streams.complete(flags, protocol) {
        let stream = match tokio::time::timeout_at(deadline, session.accept()).await {
            Ok(Some(stream)) => stream,
            Ok(None) => return Err("the client went away before opening its streams".into()),
            Err(_) => return Err("timed out waiting for the client's streams".into()),
        };
        let kind = stream.header(STREAM_TYPE).unwrap_or_default().to_owned();
        match kind.as_str() {
            "error" => streams.error = Some(stream.writer),
            "stdin" => streams.stdin = Some(stream.reader),
            "stdout" => streams.stdout = Some(stream.writer),
            "stderr" => streams.stderr = Some(stream.writer),
            "resize" => streams.resize = Some(stream.reader),
            _ => {
                tracing::debug!("exec over SPDY: ignoring a stream of type {kind:?}");
                stream.writer.reset().await;
            }
        }
    }
    Ok(streams)
}

/// Serve one remote command (exec or attach) on `session`: `job` gets the client's
/// channels and returns the Status to end with (None: the client is gone).
pub async fn serve<F, Fut>(mut session: Session, protocol: &'static str, flags: StreamFlags, job: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = Option<Status>>,
{
    let streams = match wait_for_streams(&mut session, &flags, protocol).await {
        Ok(streams) => streams,
        Err(e) => {
            tracing::debug!("exec over SPDY: {e}");
            session.close().await;
            return;
        }
    };
    let (client, input, mut output) = Client::channels();
    // Stdin and resizes become input. `input` itself is held until the session ends:
    // its closing is what tells the job the client is gone.
    if let Some(mut stdin) = streams.stdin {
        let input = input.clone();
        tokio::spawn(async move {
            while let Some(data) = stdin.read().await {
                if input.send(Input::Stdin(data)).await.is_err() {
                    return;
                }
            }
            let _ = input.send(Input::StdinClosed).await;
        });
    }
    if let Some(resize) = streams.resize {
        tokio::spawn(read_resizes(resize, input.clone()));
    }
    let (stdout, stderr) = (streams.stdout, streams.stderr);
    let writer = async {
        while let Some((channel, data)) = output.recv().await {
            let to = match channel {
                STDOUT => stdout.as_ref(),
                STDERR => stderr.as_ref(),
                _ => None,
            };
            if let Some(to) = to {
                if to.write(&data).await.is_err() {
                    // Dropping `output` makes the job's next send fail.
                    return false;
                }
            }
        }
        true
    };
    let running = async {
        let ran = job(client);
        tokio::pin!(ran);
        tokio::select! {
            status = &mut ran => status,
            _ = session.closed() => {
                drop(input);
                ran.await
            }
        }
    };
    let (status, delivered) = tokio::join!(running, writer);
    if let Some(status) = status.filter(|_| delivered) {
        for to in [&stdout, &stderr].into_iter().flatten() {
            let _ = to.close().await;
        }
        if let Some(error) = &streams.error {
            let _ = error.write(&status_bytes(&status, protocol)).await;
            let _ = error.close().await;
        }
    }
    session.close().await;
}

/// What the error stream carries: v4 the Status as JSON; v2 and v3 only a failure's
/// message (nothing for success).
fn status_bytes(status: &Status, protocol: &str) -> Vec<u8> {
    if protocol == "v4.channel.k8s.io" {
        // Serializing a Status cannot fail; an empty one still ends the exec.
        return serde_json::to_vec(status).unwrap_or_default();
    }
    if status.status.as_deref() == Some("Success") {
        return Vec::new();
    }
    status.message.clone().unwrap_or_default().into_bytes()
}

/// The resize stream: JSON sizes back to back (`{"Width":W,"Height":H}`, as a JSON
/// encoder writes them), split across data frames anyhow.
async fn read_resizes(mut resize: StreamReader, input: tokio::sync::mpsc::Sender<Input>) {
    let mut buffer = Vec::new();
    while let Some(data) = resize.read().await {
        buffer.extend_from_slice(&data);
        let mut sizes = serde_json::Deserializer::from_slice(&buffer).into_iter::<Size>();
        let mut parsed = Vec::new();
        let mut consumed = 0;
        while let Some(size) = sizes.next() {
            match size {
                Ok(size) => {
                    parsed.push(size);
                    consumed = sizes.byte_offset();
                }
                // An object cut off by the frame: wait for the rest.
                Err(e) if e.is_eof() => break,
                Err(e) => {
                    tracing::debug!("exec over SPDY: bad resize message: {e}");
                    return;
                }
            }
        }
        buffer.drain(..consumed);
        for size in parsed {
            if input.send(Input::Resize(size)).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::status;

    #[test]
    fn v4_reports_json_and_older_protocols_only_failures() {
        let failed = status::exit_code(&["false".to_string()], 1);
        let json: serde_json::Value =
            serde_json::from_slice(&status_bytes(&failed, "v4.channel.k8s.io")).unwrap();
        assert_eq!(json["reason"], "NonZeroExitCode");
        assert!(status_bytes(&status::success(), "v3.channel.k8s.io").is_empty());
        assert_eq!(
            String::from_utf8(status_bytes(&failed, "v2.channel.k8s.io")).unwrap(),
            failed.message.unwrap()
        );
    }
}
