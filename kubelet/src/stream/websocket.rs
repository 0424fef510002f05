//! Exec, attach and port-forward over a WebSocket in the kubelet's channel framing
//! (`v5.channel.k8s.io` / `v4.channel.k8s.io`): adapters from the socket to the
//! transport-agnostic [`exec`](mod@super::exec), [`attach`](mod@super::attach) and
//! [`port_forward`](mod@super::port_forward).

use std::future::Future;
use std::path::PathBuf;

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket};
use futures::{SinkExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use tokio::sync::mpsc;

use super::channel::{self, Protocol, Size, CLOSE, DATA, ERROR, PORT_ERROR, RESIZE, STDIN};
use super::exec::{self, Client, Input, QUEUE};
use super::ExecRequest;
use crate::api::RuntimeRef;

/// Run `request.command` in container `container_id` over `socket`: stdin from channel
/// 0, stdout/stderr on 1/2, resizes from 4, and the final `Status` on 3, then close. The
/// command is killed if the client goes away.
pub async fn exec(
    socket: WebSocket,
    runtime: RuntimeRef,
    container_id: String,
    request: ExecRequest,
) {
    remote_command(socket, move |client| async move {
        exec::run(&runtime, &container_id, &request, client).await
    })
    .await;
}

/// Serve one remote command (exec or attach) on `socket`: `job` gets the client's
/// channels and returns the Status to end with (None: the client is gone).
pub async fn remote_command<F, Fut>(socket: WebSocket, job: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = Option<Status>>,
{
    let protocol = socket
        .protocol()
        .and_then(|p| p.to_str().ok())
        .and_then(Protocol::from_name)
        .unwrap_or(Protocol::V4);
    let (mut sink, mut messages) = socket.split();
    let (client, input, mut output) = Client::channels();
    // The client's messages become input; the socket ending drops `input`, which tells
    // the job the client is gone.
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = messages.next().await {
            let data = match message {
                Message::Binary(data) => data,
                Message::Close(_) => return,
                _ => continue,
            };
            let parsed = match channel::split(&data) {
                Ok((STDIN, bytes)) => Some(Input::Stdin(bytes.to_vec())),
                Ok((RESIZE, bytes)) => Size::parse(bytes).ok().map(Input::Resize),
                Ok((CLOSE, [STDIN])) if protocol == Protocol::V5 => Some(Input::StdinClosed),
                _ => None,
            };
            if let Some(parsed) = parsed {
                if input.send(parsed).await.is_err() {
                    return;
                }
            }
        }
    });
    let writer = async {
        while let Some((channel, data)) = output.recv().await {
            let message = Message::Binary(channel::frame(channel, &data).into());
            if sink.send(message).await.is_err() {
                // Dropping `output` makes the job's next send fail: the client is gone.
                return false;
            }
        }
        true
    };
    let (status, delivered) = tokio::join!(job(client), writer);
    reader.abort();
    let Some(status) = status.filter(|_| delivered) else {
        return;
    };
    // Serializing a Status cannot fail; an empty message would still end the exec.
    let json = serde_json::to_vec(&status).unwrap_or_default();
    let _ = sink
        .send(Message::Binary(channel::frame(ERROR, &json).into()))
        .await;
    let _ = sink.send(normal_close()).await;
}

/// Forward one connection to `127.0.0.1:port` inside the network namespace pinned at
/// `netns` over `socket` (`v4.channel.k8s.io`: channel 0 data, channel 1 errors, each
/// opened by the port as 2 bytes little-endian); a failed dial goes to the client as
/// text on the error channel.
pub async fn port_forward(mut socket: WebSocket, netns: PathBuf, port: u16) {
    for channel in [DATA, PORT_ERROR] {
        let header = channel::port_header(channel, port);
        if socket.send(Message::Binary(header.into())).await.is_err() {
            return;
        }
    }
    let (from_client, from_client_rx) = mpsc::channel(QUEUE);
    let (to_client, mut to_client_rx) = mpsc::channel(QUEUE);
    let forward = super::port_forward::forward(&netns, port, from_client_rx, to_client);
    tokio::pin!(forward);
    let mut from_client = Some(from_client);
    let result = loop {
        tokio::select! {
            result = &mut forward => break result,
            Some(data) = to_client_rx.recv() => {
                let message = channel::frame(DATA, &data);
                if socket.send(Message::Binary(message.into())).await.is_err() {
                    return;
                }
            }
            message = socket.recv() => match message {
                Some(Ok(Message::Binary(data))) => {
                    if let (Ok((DATA, bytes)), Some(to)) = (channel::split(&data), &from_client) {
                        if to.send(bytes.to_vec()).await.is_err() {
                            from_client = None;
                        }
                    }
                }
                // The client is gone: dropping the forward closes the pod connection.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    };
    // What the pod sent before it closed still goes out.
    while let Ok(data) = to_client_rx.try_recv() {
        let message = channel::frame(DATA, &data);
        if socket.send(Message::Binary(message.into())).await.is_err() {
            return;
        }
    }
    if let Err(text) = result {
        let message = channel::frame(PORT_ERROR, text.as_bytes());
        let _ = socket.send(Message::Binary(message.into())).await;
    }
    let _ = socket.send(normal_close()).await;
}

/// A close with status 1000: kubectl (gorilla/websocket) reads a close without a status
/// (1005) as an error, and would fail the exec while reading its error channel.
fn normal_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: close_code::NORMAL,
        reason: "".into(),
    }))
}
