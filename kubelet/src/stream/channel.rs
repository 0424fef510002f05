//! The Kubernetes channel framing of exec and port-forward WebSockets
//! (`v4.channel.k8s.io`, `v5.channel.k8s.io`): each binary message is one channel byte,
//! then that channel's bytes.

use serde::{Deserialize, Serialize};

/// A client's standard input (exec), or the data channel (port-forward).
pub const STDIN: u8 = 0;
/// The command's standard output (exec), or port-forward's error channel.
pub const STDOUT: u8 = 1;
/// The command's standard error.
pub const STDERR: u8 = 2;
/// The final v1 `Status` of an exec.
pub const ERROR: u8 = 3;
/// Terminal resize messages (`{"Width":W,"Height":H}`).
pub const RESIZE: u8 = 4;
/// v5 only: the payload names a channel the sender has closed (stdin EOF).
pub const CLOSE: u8 = 255;

/// Port-forward's data channel.
pub const DATA: u8 = 0;
/// Port-forward's error channel.
pub const PORT_ERROR: u8 = 1;

/// The channel protocol a WebSocket agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `v4.channel.k8s.io`: no way to close one channel.
    V4,
    /// `v5.channel.k8s.io`: v4 plus the close channel (255).
    V5,
}

impl Protocol {
    /// The subprotocol name, as the `Sec-WebSocket-Protocol` header carries it.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::V4 => "v4.channel.k8s.io",
            Protocol::V5 => "v5.channel.k8s.io",
        }
    }

    /// The protocol a header value names; None for any other (e.g. the base64 ones).
    pub fn from_name(name: &str) -> Option<Protocol> {
        match name.trim() {
            "v4.channel.k8s.io" => Some(Protocol::V4),
            "v5.channel.k8s.io" => Some(Protocol::V5),
            _ => None,
        }
    }
}

/// A message that does not fit the framing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A binary message with no channel byte.
    #[error("empty message: expected a channel byte")]
    Empty,
    /// A resize message whose payload is not `{"Width":W,"Height":H}`.
    #[error("resize message {text:?}: expected {{\"Width\":W,\"Height\":H}}: {reason}")]
    Resize {
        /// The payload, lossily decoded.
        text: String,
        /// What the JSON parser said.
        reason: String,
    },
}

/// One channel's message.
pub fn frame(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(data.len() + 1);
    message.push(channel);
    message.extend_from_slice(data);
    message
}

/// The channel and payload of a binary message.
pub fn split(message: &[u8]) -> Result<(u8, &[u8]), FrameError> {
    message
        .split_first()
        .map(|(channel, data)| (*channel, data))
        .ok_or(FrameError::Empty)
}

/// A terminal size, as the resize channel carries it (the kubelet's `TerminalSize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Size {
    /// Columns.
    #[serde(rename = "Width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height")]
    pub height: u16,
}

impl Size {
    /// Parse a resize channel payload.
    pub fn parse(data: &[u8]) -> Result<Size, FrameError> {
        serde_json::from_slice(data).map_err(|e| FrameError::Resize {
            text: String::from_utf8_lossy(data).into_owned(),
            reason: e.to_string(),
        })
    }

    /// The resize channel message for this size.
    pub fn message(self) -> Vec<u8> {
        // Serializing two integers cannot fail.
        let json = serde_json::to_vec(&self).unwrap_or_default();
        frame(RESIZE, &json)
    }
}

/// The first message port-forward sends on each channel: the port, 2 bytes little-endian.
pub fn port_header(channel: u8, port: u16) -> Vec<u8> {
    frame(channel, &port.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_back_into_channel_and_payload() {
        let message = frame(STDERR, b"oops\n");
        assert_eq!(message, b"\x02oops\n");
        assert_eq!(split(&message), Ok((STDERR, &b"oops\n"[..])));
        assert_eq!(split(&[CLOSE, STDIN]), Ok((CLOSE, &[STDIN][..])));
        assert_eq!(split(&[STDOUT]), Ok((STDOUT, &[][..])));
        assert_eq!(split(&[]), Err(FrameError::Empty));
    }

    #[test]
    fn resize_messages_are_the_kubelets_json() {
        let size = Size {
            width: 120,
            height: 40,
        };
        assert_eq!(size.message(), b"\x04{\"Width\":120,\"Height\":40}");
        assert_eq!(
            Size::parse(br#"{"Width":80,"Height":24}"#),
            Ok(Size {
                width: 80,
                height: 24
            })
        );
        let err = Size::parse(b"{\"Width\":-1}").unwrap_err();
        assert!(err.to_string().contains("expected {\"Width\""), "{err}");
    }

    #[test]
    fn port_headers_are_little_endian() {
        assert_eq!(port_header(DATA, 8080), [0, 0x90, 0x1f]);
        assert_eq!(port_header(PORT_ERROR, 80), [1, 80, 0]);
    }

    #[test]
    fn protocols_round_trip_their_names() {
        for protocol in [Protocol::V4, Protocol::V5] {
            assert_eq!(Protocol::from_name(protocol.name()), Some(protocol));
        }
        assert_eq!(Protocol::from_name("base64.channel.k8s.io"), None);
    }
}
