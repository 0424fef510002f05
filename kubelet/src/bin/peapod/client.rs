//! The HTTP client of the kubelet's local API: HTTP/1.1 over its unix socket.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

pub use kubelet::api::ServerError;

/// The socket `peapod-kubelet` listens on by default.
pub const DEFAULT_SOCKET: &str = "/run/peapod/kubelet.sock";

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
