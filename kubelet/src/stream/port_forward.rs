//! Port-forward's server side: dials a port on the loopback of a pod's network namespace
//! and copies bytes between that connection and a WebSocket (`v4.channel.k8s.io`:
//! channel 0 data, channel 1 errors, each opened by the port as 2 bytes little-endian).

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::channel::{self, DATA, PORT_ERROR};
use crate::netns::Dialer;

/// How long dialing the pod's port may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Forward one connection to `127.0.0.1:port` inside the network namespace pinned at
/// `netns`; a failed dial goes to the client as text on the error channel.
pub async fn port_forward(mut socket: WebSocket, netns: PathBuf, port: u16) {
    for channel in [DATA, PORT_ERROR] {
        let header = channel::port_header(channel, port);
        if socket.send(Message::Binary(header.into())).await.is_err() {
            return;
        }
    }
    let stream = match dial(netns.clone(), port).await {
        Ok(stream) => stream,
        Err(e) => {
            let text = format!(
                "error forwarding port {port} to pod: dialing 127.0.0.1:{port} in network namespace {}: {e}",
                netns.display()
            );
            let _ = socket
                .send(Message::Binary(
                    channel::frame(PORT_ERROR, text.as_bytes()).into(),
                ))
                .await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
    };
    copy(socket, stream).await;
}

/// Copy both ways until either side ends, then close both.
async fn copy(mut socket: WebSocket, stream: TcpStream) {
    let (mut from_pod, mut to_pod) = stream.into_split();
    let mut buf = vec![0; 32 * 1024];
    loop {
        tokio::select! {
            read = from_pod.read(&mut buf) => match read {
                Ok(n @ 1..) => {
                    let message = channel::frame(DATA, &buf[..n]);
                    if socket.send(Message::Binary(message.into())).await.is_err() {
                        return;
                    }
                }
                // The pod's side closed (or failed): the forwarded connection is over.
                _ => break,
            },
            message = socket.recv() => match message {
                Some(Ok(Message::Binary(data))) => {
                    if let Ok((DATA, bytes)) = channel::split(&data) {
                        if to_pod.write_all(bytes).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

/// Connect to `127.0.0.1:port` from inside `netns`, through the namespace's shared
/// [`Dialer`].
pub async fn dial(netns: PathBuf, port: u16) -> io::Result<TcpStream> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    Dialer::for_netns(&netns)
        .await?
        .connect(address, DIAL_TIMEOUT)
        .await
}
