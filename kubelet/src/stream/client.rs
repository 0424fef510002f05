//! The CLI's side of exec and port-forward: WebSockets to the kubelet's unix socket.
//! Plain requests (such as the pod, for its container names) go through the CLI's HTTP
//! client; a refused upgrade reads as the same [`ServerError`].
//!
//! The functions take their I/O as arguments (readers, writers, a local connection), so
//! tests drive them with in-memory buffers.

use std::io;
use std::path::{Path, PathBuf};

use futures::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use super::channel::{self, Protocol, Size, CLOSE, DATA, ERROR, PORT_ERROR, STDERR, STDIN, STDOUT};
use super::status::{self, Outcome};
use super::{ExecRequest, EXEC_PROTOCOLS, PORT_FORWARD_PROTOCOLS};
use crate::api::ServerError;

/// Why a call to the kubelet failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers on the socket.
    #[error("cannot reach the kubelet at {}: {source} (is peapod-kubelet running?)", path.display())]
    Unreachable {
        /// The socket.
        path: PathBuf,
        /// Why connecting failed.
        source: io::Error,
    },
    /// The kubelet refused the request with a Status (printed as kubectl prints it).
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The exchange broke off or made no sense.
    #[error("{0}")]
    Protocol(String),
    /// The remote side reported a failure of its own (exec could not run the command,
    /// port-forward could not dial).
    #[error("{0}")]
    Remote(String),
    /// Local I/O failed (the terminal, a local connection).
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// The container an exec goes into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The container's name.
    pub container: String,
}

/// An exec's local ends: input (when `-i`), output sinks, and terminal sizes (when `-t`).
pub struct ExecIo<I, O, E> {
    /// The command's standard input; its end is sent as stdin's close (v5).
    pub stdin: Option<I>,
    /// Where the command's standard output goes.
    pub stdout: O,
    /// Where its standard error goes.
    pub stderr: E,
    /// Terminal sizes to send (the first one right away, then on each change).
    pub resize: Option<mpsc::Receiver<Size>>,
}

/// The container kubectl picks when none is named: the first one. The second value is
/// the note kubectl prints when there was a choice.
pub fn default_container(pod: &Pod) -> Result<(String, Option<String>), ClientError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let containers = pod
        .spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let Some(first) = containers.first().cloned() else {
        return Err(ClientError::Protocol(format!(
            "pod {name} has no containers"
        )));
    };
    let note = (containers.len() > 1).then(|| {
        format!(
            "Defaulted container \"{first}\" out of: {}",
            containers.join(", ")
        )
    });
    Ok((first, note))
}

/// Run a command in a container and stream it through `io`; returns its exit code
/// (from the final Status, as kubectl reads it).
pub async fn exec<I, O, E>(
    socket: &Path,
    target: &Target,
    request: &ExecRequest,
    mut io: ExecIo<I, O, E>,
) -> Result<i32, ClientError>
where
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    let path = format!(
        "/exec/{}/{}/{}?{}",
        segment(&target.namespace),
        segment(&target.pod),
        segment(&target.container),
        request.to_query()
    );
    let (ws, protocol) = connect(socket, &path, EXEC_PROTOCOLS).await?;
    let (mut sink, mut stream) = ws.split();
    let mut buf = vec![0; 32 * 1024];
    let mut status: Option<Status> = None;
    loop {
        tokio::select! {
            read = read_some(io.stdin.as_mut(), &mut buf), if io.stdin.is_some() => {
                let n = read.map_err(|source| ClientError::Io { op: "reading stdin", source })?;
                let message = if n == 0 {
                    io.stdin = None;
                    if protocol != Protocol::V5 {
                        continue;
                    }
                    vec![CLOSE, STDIN]
                } else {
                    channel::frame(STDIN, &buf[..n])
                };
                sink.send(Message::Binary(message.into())).await.map_err(broken)?;
            }
            size = next_size(io.resize.as_mut()), if io.resize.is_some() => match size {
                Some(size) => sink.send(Message::Binary(size.message().into())).await.map_err(broken)?,
                None => io.resize = None,
            },
            message = stream.next() => match message {
                Some(Ok(Message::Binary(data))) => match channel::split(&data) {
                    Ok((STDOUT, bytes)) => write(&mut io.stdout, bytes, "writing stdout").await?,
                    Ok((STDERR, bytes)) => write(&mut io.stderr, bytes, "writing stderr").await?,
                    Ok((ERROR, bytes)) => {
                        status = Some(serde_json::from_slice(bytes).map_err(|e| {
                            ClientError::Protocol(format!("the exec's final status is not a v1 Status: {e}"))
                        })?);
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(broken(e)),
            },
        }
    }
    let Some(status) = status else {
        return Err(ClientError::Protocol(
            "the exec ended without an exit status".into(),
        ));
    };
    match status::outcome(&status) {
        Outcome::Exited(code) => Ok(code),
        Outcome::Failed(message) => Err(ClientError::Remote(message)),
    }
}

/// Forward one local connection to `port` of a pod, over its own WebSocket, until
/// either side closes. A dial error on the kubelet's side comes back as
/// [`ClientError::Remote`].
pub async fn forward<S>(
    socket: &Path,
    namespace: &str,
    pod: &str,
    port: u16,
    local: S,
) -> Result<(), ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let path = format!(
        "/portForward/{}/{}?port={port}",
        segment(namespace),
        segment(pod)
    );
    let (ws, _) = connect(socket, &path, PORT_FORWARD_PROTOCOLS).await?;
    let (mut sink, mut stream) = ws.split();
    let (mut from_local, mut to_local) = tokio::io::split(local);
    let mut buf = vec![0; 32 * 1024];
    // Each channel opens with the port (2 bytes); the payload starts after it.
    let (mut data_header, mut error_header) = (true, true);
    let mut error_text = Vec::new();
    loop {
        tokio::select! {
            read = from_local.read(&mut buf) => match read {
                Ok(n @ 1..) => {
                    let message = channel::frame(DATA, &buf[..n]);
                    sink.send(Message::Binary(message.into())).await.map_err(broken)?;
                }
                // A half-close cannot cross the WebSocket: the local end closing ends it.
                _ => break,
            },
            message = stream.next() => match message {
                Some(Ok(Message::Binary(data))) => match channel::split(&data) {
                    Ok((DATA, bytes)) if data_header => {
                        data_header = false;
                        let rest = bytes.get(2..).unwrap_or_default();
                        write(&mut to_local, rest, "writing to the local connection").await?;
                    }
                    Ok((DATA, bytes)) => {
                        write(&mut to_local, bytes, "writing to the local connection").await?;
                    }
                    Ok((PORT_ERROR, bytes)) if error_header => {
                        error_header = false;
                        error_text.extend_from_slice(bytes.get(2..).unwrap_or_default());
                    }
                    Ok((PORT_ERROR, bytes)) => error_text.extend_from_slice(bytes),
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(broken(e)),
            },
        }
    }
    let _ = sink.send(Message::Close(None)).await;
    let _ = to_local.shutdown().await;
    if error_text.is_empty() {
        Ok(())
    } else {
        Err(ClientError::Remote(
            String::from_utf8_lossy(&error_text).trim().to_owned(),
        ))
    }
}

/// Open a WebSocket on the kubelet's socket, offering `protocols`; returns the channel
/// protocol the server chose.
async fn connect(
    socket: &Path,
    path: &str,
    protocols: &[&str],
) -> Result<(WebSocketStream<UnixStream>, Protocol), ClientError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::Unreachable {
            path: socket.to_path_buf(),
            source,
        })?;
    let mut request = format!("ws://localhost{path}")
        .into_client_request()
        .map_err(|e| ClientError::Protocol(format!("request {path}: {e}")))?;
    let offer = HeaderValue::from_str(&protocols.join(", "))
        .map_err(|e| ClientError::Protocol(format!("subprotocols {protocols:?}: {e}")))?;
    request
        .headers_mut()
        .insert(header::SEC_WEBSOCKET_PROTOCOL, offer);
    let (ws, response) = match tokio_tungstenite::client_async(request, stream).await {
        Ok(answer) => answer,
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().unwrap_or_default();
            return Err(ServerError::from_body(response.status().as_u16(), body).into());
        }
        Err(e) => {
            return Err(ClientError::Protocol(format!(
                "opening a WebSocket for {path}: {e}"
            )))
        }
    };
    let protocol = response
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(Protocol::from_name)
        .unwrap_or(Protocol::V4);
    Ok((ws, protocol))
}

/// A name as one URL path segment.
fn segment(name: &str) -> String {
    form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn broken(e: tungstenite::Error) -> ClientError {
    ClientError::Protocol(format!("the connection to the kubelet broke: {e}"))
}

async fn write<W: AsyncWrite + Unpin>(
    to: &mut W,
    bytes: &[u8],
    op: &'static str,
) -> Result<(), ClientError> {
    to.write_all(bytes)
        .await
        .and(to.flush().await)
        .map_err(|source| ClientError::Io { op, source })
}

async fn read_some<I: AsyncRead + Unpin>(
    from: Option<&mut I>,
    buf: &mut [u8],
) -> io::Result<usize> {
    match from {
        Some(from) => from.read(buf).await,
        None => std::future::pending().await,
    }
}

async fn next_size(from: Option<&mut mpsc::Receiver<Size>>) -> Option<Size> {
    match from {
        Some(from) => from.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_container_is_the_default_and_a_choice_is_noted() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {"containers": [{"name": "web"}, {"name": "sidecar"}]}
        }))
        .unwrap();
        let (name, note) = default_container(&pod).unwrap();
        assert_eq!(name, "web");
        assert_eq!(
            note.as_deref(),
            Some("Defaulted container \"web\" out of: web, sidecar")
        );
        let single: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "one"},
            "spec": {"containers": [{"name": "only"}]}
        }))
        .unwrap();
        assert_eq!(default_container(&single).unwrap(), ("only".into(), None));
        let empty: Pod =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "e"}})).unwrap();
        assert!(default_container(&empty).is_err());
    }

    #[test]
    fn names_are_escaped_as_path_segments() {
        assert_eq!(segment("web"), "web");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
    }
}
