//! The HTTP client of the kubelet's local API: HTTP/1.1 over its unix socket.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

/// The socket `peapod-kubelet` listens on by default.
pub const DEFAULT_SOCKET: &str = "/run/peapod/kubelet.sock";

/// An error the kubelet answered, printed as kubectl prints API errors:
/// `Error from server (NotFound): pods "x" not found`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// The HTTP status code.
    pub code: u16,
    /// The Status' reason (`NotFound`, `Invalid`, ...); empty if none.
    pub reason: String,
    /// The Status' message, or the body as text.
    pub message: String,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason.is_empty() {
            write!(f, "Error from server: {}", self.message)
        } else {
            write!(f, "Error from server ({}): {}", self.reason, self.message)
        }
    }
}

impl std::error::Error for ServerError {}

impl ServerError {
    /// Read a non-2xx answer: a v1 Status body, else the body as text.
    pub fn from_body(code: u16, body: &[u8]) -> ServerError {
        let status: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let field = |name: &str| {
            status
                .as_ref()
                .and_then(|s| s.get(name))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        match field("message") {
            Some(message) => ServerError {
                code,
                reason: field("reason").unwrap_or_default(),
                message,
            },
            None => ServerError {
                code,
                reason: String::new(),
                message: format!("{code}: {}", String::from_utf8_lossy(body).trim_end()),
            },
        }
    }

    /// Whether the kubelet said there is no such object.
    pub fn is_not_found(&self) -> bool {
        self.code == 404
    }
}

/// A client of one kubelet socket.
pub struct Client {
    socket: PathBuf,
}

impl Client {
    /// A client of the kubelet listening on `socket`.
    pub fn new(socket: &Path) -> Client {
        Client {
            socket: socket.to_path_buf(),
        }
    }

    /// `GET path`, the JSON answer decoded.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let body = self.call(Method::GET, path, Bytes::new()).await?;
        decode(path, &body)
    }

    /// `POST path` with `body`, the JSON answer decoded.
    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: Vec<u8>) -> anyhow::Result<T> {
        let answer = self.call(Method::POST, path, Bytes::from(body)).await?;
        decode(path, &answer)
    }

    /// `DELETE path`, the JSON answer decoded.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let body = self.call(Method::DELETE, path, Bytes::new()).await?;
        decode(path, &body)
    }

    /// `GET path`, copying the body to `out` as it arrives (logs, `-f`).
    pub async fn stream(&self, path: &str, out: &mut dyn Write) -> anyhow::Result<()> {
        let response = self.send(Method::GET, path, Bytes::new()).await?;
        let code = response.status().as_u16();
        let mut body = response.into_body();
        if !(200..300).contains(&code) {
            let bytes = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(ServerError::from_body(code, &bytes).into());
        }
        while let Some(frame) = body.frame().await {
            let frame = frame.context("the kubelet broke off the stream")?;
            if let Some(data) = frame.data_ref() {
                out.write_all(data).context("writing the output")?;
                out.flush().context("writing the output")?;
            }
        }
        Ok(())
    }

    async fn call(&self, method: Method, path: &str, body: Bytes) -> anyhow::Result<Bytes> {
        let response = self.send(method, path, body).await?;
        let code = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the kubelet's answer to {path}"))?
            .to_bytes();
        if !(200..300).contains(&code) {
            return Err(ServerError::from_body(code, &body).into());
        }
        Ok(body)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<Response<Incoming>> {
        let unreachable = |why: String| {
            anyhow::anyhow!(
                "cannot reach the kubelet at {}: {why} (is peapod-kubelet running?)",
                self.socket.display()
            )
        };
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        // The connection task ends with the exchange; its errors surface in send_request.
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "localhost")
            .body(Full::new(body))
            .with_context(|| format!("building the request for {path}"))?;
        sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(e.to_string()))
    }
}

fn decode<T: DeserializeOwned>(path: &str, body: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(body).with_context(|| format!("decoding the kubelet's answer to {path}"))
}

/// `text` percent-encoded for a URL path segment or query value.
pub fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bodies_read_as_kubectl_prints_them() {
        let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"x\" not found","reason":"NotFound","code":404}"#;
        let err = ServerError::from_body(404, body);
        assert_eq!(
            err.to_string(),
            r#"Error from server (NotFound): pods "x" not found"#
        );
        assert!(err.is_not_found());
        let err = ServerError::from_body(502, b"bad gateway\n");
        assert_eq!(err.to_string(), "Error from server: 502: bad gateway");
        assert!(!err.is_not_found());
    }

    #[tokio::test]
    async fn an_absent_kubelet_is_named_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("kubelet.sock");
        let err = Client::new(&socket)
            .get::<serde_json::Value>("/pods")
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot reach the kubelet at {}: No such file or directory (os error 2) (is peapod-kubelet running?)",
                socket.display()
            )
        );
    }

    #[test]
    fn encodes_what_a_url_cannot_hold() {
        assert_eq!(encode("my pod.yaml"), "my%20pod.yaml");
        assert_eq!(encode("a/b&c"), "a%2Fb%26c");
    }
}
