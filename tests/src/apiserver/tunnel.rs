//! kubectl's WebSocket port-forward (`Sec-WebSocket-Protocol: SPDY/3.1+portforward.k8s.io`,
//! the default since 1.31) carries SPDY inside WebSocket binary messages. Kubelets speak
//! plain SPDY, so kube-apiserver unwraps the tunnel: it upgrades to SPDY with the kubelet,
//! answers the client's WebSocket upgrade, and passes the SPDY bytes between the two.
//! This does the same.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::proxy::{Exchange, KubeletClient};
use super::status::{ApiError, ApiResult};

/// The WebSocket subprotocol of the tunnel.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// Whether `request` asks for the tunnel.
pub fn requested(request: &Request<Body>) -> bool {
    request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == TUNNEL_PROTOCOL)
}

/// Upgrades to SPDY with the kubelet at `address` on `path`, then answers the client's
/// WebSocket upgrade and relays SPDY bytes between them; a kubelet refusing the upgrade
/// is relayed as it answered.
pub async fn port_forward(
    kubelet: &KubeletClient,
    address: &str,
    path: &str,
    mut request: Request<Body>,
) -> ApiResult<Response<Body>> {
    let key = request
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| ApiError::bad_request("a WebSocket upgrade without Sec-WebSocket-Key"))?;
    let accept = derive_accept_key(key.as_bytes());
    let client_upgrade = hyper::upgrade::on(&mut request);
    let mut spdy = Request::post(path)
        .header(header::HOST, address)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", "portforward.k8s.io")
        .header(header::CONTENT_LENGTH, "0")
        .body(Body::empty())
        .map_err(|e| ApiError::bad_request(format!("port-forward request: {e}")))?;
    for name in ["user-agent", "kubectl-command", "kubectl-session"] {
        if let Some(value) = request.headers().get(name) {
            spdy.headers_mut().insert(name, value.clone());
        }
    }
    let splice = |client, kubelet| async move {
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(client), Role::Server, None).await;
        relay(socket, TokioIo::new(kubelet)).await;
    };
    if let Exchange::Relayed(refused) = kubelet
        .exchange(address, spdy, client_upgrade, splice)
        .await?
    {
        return Ok(refused);
    }
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(TUNNEL_PROTOCOL),
    );
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    Ok(response)
}

/// WebSocket binary messages to the kubelet as bytes, and its bytes back as messages,
/// until either side ends.
async fn relay<S, K>(socket: WebSocketStream<S>, kubelet: K)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    K: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut to_client, mut from_client) = socket.split();
    let (mut from_kubelet, mut to_kubelet) = tokio::io::split(kubelet);
    let upstream = async {
        while let Some(Ok(message)) = from_client.next().await {
            let bytes = match message {
                Message::Binary(bytes) => bytes,
                Message::Close(_) => break,
                _ => continue,
            };
            if to_kubelet.write_all(&bytes).await.is_err() {
                break;
            }
        }
        // The client is gone: so is the kubelet's side.
        let _ = to_kubelet.shutdown().await;
    };
    let downstream = async {
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            match from_kubelet.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let message = Message::Binary(Bytes::copy_from_slice(&buffer[..n]));
                    if to_client.send(message).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to_client.close().await;
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
}
