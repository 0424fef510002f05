//! The transport a streaming request asks for, chosen by its `Upgrade` header
//! (`websocket` or `SPDY/3.1`), and the exec, attach and port-forward servers started on
//! it once the connection is switched.

use std::path::PathBuf;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::attach::{self, AttachTarget};
use super::spdy::{self, SpdyUpgrade};
use super::{exec, websocket, ExecRequest, StreamFlags, EXEC_PROTOCOLS, PORT_FORWARD_PROTOCOLS};
use crate::api::RuntimeRef;

/// A request to switch to a streaming transport (an axum extractor): WebSocket (GET)
/// or SPDY/3.1 (POST from kubectl and the API server's stream tunnel, or GET).
pub enum Upgrade {
    /// `Upgrade: websocket`.
    WebSocket(WebSocketUpgrade),
    /// `Upgrade: SPDY/3.1`.
    Spdy(SpdyUpgrade),
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if spdy::is_requested(&parts.headers) {
            return SpdyUpgrade::from_parts(parts)
                .map(Upgrade::Spdy)
                .ok_or_else(|| {
                    (
                        StatusCode::BAD_REQUEST,
                        "this connection cannot be upgraded to SPDY/3.1",
                    )
                        .into_response()
                });
        }
        WebSocketUpgrade::from_request_parts(parts, state)
            .await
            .map(Upgrade::WebSocket)
            .map_err(|e| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("Upgrade request required (websocket or SPDY/3.1): {e}"),
                )
                    .into_response()
            })
    }
}

impl Upgrade {
    /// Whether the client asked for a WebSocket.
    pub fn is_websocket(&self) -> bool {
        matches!(self, Upgrade::WebSocket(_))
    }

    /// Switch and run `request.command` in container `container_id` through the runtime.
    pub fn exec(self, runtime: RuntimeRef, container_id: String, request: ExecRequest) -> Response {
        match self {
            Upgrade::WebSocket(ws) => ws
                .protocols(EXEC_PROTOCOLS.iter().copied())
                .on_upgrade(move |socket| websocket::exec(socket, runtime, container_id, request))
                .into_response(),
            Upgrade::Spdy(upgrade) => {
                upgrade.on_upgrade(spdy::remote_command::PROTOCOLS, move |session, protocol| {
                    let flags = request.flags();
                    spdy::remote_command::serve(
                        session,
                        protocol,
                        flags,
                        move |client| async move {
                            exec::run(&runtime, &container_id, &request, client).await
                        },
                    )
                })
            }
        }
    }

    /// Switch and stream the container's new output (see [`attach`](mod@attach)).
    pub fn attach(self, target: AttachTarget, request: StreamFlags) -> Response {
        match self {
            Upgrade::WebSocket(ws) => ws
                .protocols(EXEC_PROTOCOLS.iter().copied())
                .on_upgrade(move |socket| {
                    websocket::remote_command(socket, move |client| async move {
                        attach::run(&target, &request, client).await
                    })
                })
                .into_response(),
            Upgrade::Spdy(upgrade) => {
                upgrade.on_upgrade(spdy::remote_command::PROTOCOLS, move |session, protocol| {
                    spdy::remote_command::serve(
                        session,
                        protocol,
                        request,
                        move |client| async move { attach::run(&target, &request, client).await },
                    )
                })
            }
        }
    }

    /// Switch and forward connections into the network namespace pinned at `netns`: a
    /// WebSocket carries one connection to `port` (so it needs one: Err otherwise); a
    /// SPDY session names the port in each request's streams.
    pub fn port_forward(self, netns: PathBuf, port: Option<u16>) -> Result<Response, String> {
        Ok(match self {
            Upgrade::WebSocket(ws) => {
                let port = port.ok_or("a port to forward is required (?port=N)")?;
                ws.protocols(PORT_FORWARD_PROTOCOLS.iter().copied())
                    .on_upgrade(move |socket| websocket::port_forward(socket, netns, port))
                    .into_response()
            }
            Upgrade::Spdy(upgrade) => upgrade
                .on_upgrade(spdy::port_forward::PROTOCOLS, move |session, _| {
                    spdy::port_forward::serve(session, netns)
                }),
        })
    }
}
