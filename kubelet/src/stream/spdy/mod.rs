//! SPDY/3.1, server side, as Kubernetes streams exec, attach and port-forward over it
//! (the API server's tunnel to kubelets, and kubectl without WebSockets).
//!
//! - [`headers`]: header blocks and their zlib compression with the SPDY/3 dictionary.
//! - [`frame`]: frames on the wire.
//! - [`window`]: flow-control accounting.
//! - [`session`]: a connection's streams, with flow control.
//! - [`remote_command`]: exec and attach on a session; [`port_forward`]: port-forward.
//!
//! The handshake is an HTTP/1.1 upgrade: the client sends `Upgrade: SPDY/3.1` and the
//! protocols it speaks in `X-Stream-Protocol-Version` (one header each, or
//! comma-separated); we answer `101 Switching Protocols` naming the first of them we
//! speak, or `403 Forbidden` listing ours in `X-Accepted-Stream-Protocol-Versions`.

pub mod frame;
pub mod headers;
pub mod port_forward;
pub mod remote_command;
pub mod session;
pub mod window;

#[cfg(test)]
mod test_peer;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;

pub use session::{Session, Stream, StreamReader, StreamWriter};

/// The `Upgrade` token of SPDY/3.1.
pub const UPGRADE: &str = "SPDY/3.1";
/// The header a client offers its stream protocols in, and the server names its choice.
pub const PROTOCOL_HEADER: &str = "X-Stream-Protocol-Version";
/// The header listing the server's protocols when none of the client's fit.
pub const ACCEPTED_PROTOCOLS_HEADER: &str = "X-Accepted-Stream-Protocol-Versions";

/// Whether a request asks to be upgraded to SPDY/3.1.
pub fn is_requested(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case(UPGRADE))
}

/// The protocols the client offers, in its order of preference.
pub fn offered(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The first protocol the client offers that we speak.
pub fn negotiate(offered: &[String], supported: &[&'static str]) -> Option<&'static str> {
    offered
        .iter()
        .find_map(|p| supported.iter().find(|s| **s == p.as_str()).copied())
}

/// A request asking to become a SPDY/3.1 session.
pub struct SpdyUpgrade {
    offered: Vec<String>,
    on_upgrade: hyper::upgrade::OnUpgrade,
}

impl SpdyUpgrade {
    /// Take the upgrade out of a request's parts; None if it does not ask for SPDY/3.1
    /// (or its connection cannot be upgraded).
    pub fn from_parts(parts: &mut axum::http::request::Parts) -> Option<SpdyUpgrade> {
        if !is_requested(&parts.headers) {
            return None;
        }
        let on_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>()?;
        Some(SpdyUpgrade {
            offered: offered(&parts.headers),
            on_upgrade,
        })
    }

    /// Agree on one of `supported` and answer `101 Switching Protocols`, running
    /// `serve` on the session once the connection is switched; `403 Forbidden` if the
    /// client offers none of them.
    pub fn on_upgrade<F, Fut>(self, supported: &[&'static str], serve: F) -> Response
    where
        F: FnOnce(Session, &'static str) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let Some(protocol) = negotiate(&self.offered, supported) else {
            return refuse(&self.offered, supported);
        };
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => serve(Session::new(TokioIo::new(upgraded)), protocol).await,
                Err(e) => tracing::debug!("SPDY upgrade failed: {e}"),
            }
        });
        (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("Upgrade")),
                (header::UPGRADE, HeaderValue::from_static(UPGRADE)),
                (
                    header::HeaderName::from_static("x-stream-protocol-version"),
                    HeaderValue::from_static(protocol),
                ),
            ],
        )
            .into_response()
    }
}

/// `403 Forbidden` for a client whose protocols we do not speak.
fn refuse(offered: &[String], supported: &[&'static str]) -> Response {
    let mut response = (
        StatusCode::FORBIDDEN,
        format!(
            "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {supported:?}"
        ),
    )
        .into_response();
    for protocol in supported {
        response.headers_mut().append(
            header::HeaderName::from_static("x-accepted-stream-protocol-versions"),
            HeaderValue::from_static(protocol),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrades_and_protocols_are_read_as_kubernetes_sends_them() {
        let mut headers = HeaderMap::new();
        assert!(!is_requested(&headers));
        headers.insert(header::UPGRADE, HeaderValue::from_static("spdy/3.1"));
        assert!(is_requested(&headers));
        headers.append(
            PROTOCOL_HEADER,
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        headers.append(
            PROTOCOL_HEADER,
            HeaderValue::from_static("v3.channel.k8s.io, v2.channel.k8s.io"),
        );
        let offered = offered(&headers);
        assert_eq!(
            offered,
            [
                "v4.channel.k8s.io",
                "v3.channel.k8s.io",
                "v2.channel.k8s.io"
            ]
        );
        assert_eq!(
            negotiate(&offered, &["v2.channel.k8s.io", "v3.channel.k8s.io"]),
            Some("v3.channel.k8s.io"),
            "the client's preference wins"
        );
        assert_eq!(negotiate(&offered, &["portforward.k8s.io"]), None);
        let refused = refuse(&offered, &["portforward.k8s.io"]);
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            refused.headers()[ACCEPTED_PROTOCOLS_HEADER],
            "portforward.k8s.io"
        );
    }
}
