//! Exec and port-forward over WebSocket (placeholder: the `stream` branch
//! replaces this file with the real implementation at merge).

use std::path::PathBuf;

use axum::extract::ws::{Message, WebSocket};

use crate::api::RuntimeRef;

/// WebSocket subprotocols exec accepts, preferred first.
pub const EXEC_PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];
/// WebSocket subprotocols port-forward accepts.
pub const PORT_FORWARD_PROTOCOLS: &[&str] = &["v4.channel.k8s.io"];

/// What to run in a container, and which streams to attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Attach stdin.
    pub stdin: bool,
    /// Attach stdout.
    pub stdout: bool,
    /// Attach stderr.
    pub stderr: bool,
    /// Allocate a terminal.
    pub tty: bool,
}

/// Run `request` in container `container_id` (placeholder: closes the socket).
pub async fn exec(
    mut socket: WebSocket,
    _runtime: RuntimeRef,
    _container_id: String,
    _request: ExecRequest,
) {
    let _ = socket.send(Message::Close(None)).await;
}

/// Forward the socket to `port` inside `netns` (placeholder: closes the socket).
pub async fn port_forward(mut socket: WebSocket, _netns: PathBuf, _port: u16) {
    let _ = socket.send(Message::Close(None)).await;
}
