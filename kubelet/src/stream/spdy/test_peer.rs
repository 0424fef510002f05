//! A test client of [`super::Session`]: a peer speaking frames over an in-memory
//! connection.

use std::time::Duration;

use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

use super::frame::{Frame, FLAG_FIN};
use super::headers::{Compressor, Decompressor};
use super::Session;

/// The client's end of a session, speaking frames.
pub(crate) struct Peer {
    pub(crate) read: ReadHalf<DuplexStream>,
    pub(crate) write: WriteHalf<DuplexStream>,
    compressor: Compressor,
    decompressor: Decompressor,
}

impl Peer {
    pub(crate) fn connect() -> (Peer, Session) {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let (read, write) = tokio::io::split(ours);
        let peer = Peer {
            read,
            write,
            compressor: Compressor::new().unwrap(),
            decompressor: Decompressor::default(),
        };
        (peer, Session::new(theirs))
    }

    pub(crate) async fn send(&mut self, frame: Frame) {
        let bytes = frame.encode(&mut self.compressor).unwrap();
        self.write.write_all(&bytes).await.unwrap();
    }

    pub(crate) async fn open(&mut self, stream: u32, kind: &str) {
        self.open_with(stream, &[("streamType", kind)]).await;
    }

    /// Open `stream` with these headers.
    pub(crate) async fn open_with(&mut self, stream: u32, headers: &[(&str, &str)]) {
        let headers = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        self.send(Frame::SynStream {
            stream,
            associated: 0,
            priority: 0,
            flags: 0,
            headers,
        })
        .await;
    }

    /// What `stream` carries up to its FIN (or reset: the text is then "RST").
    pub(crate) async fn until_fin(&mut self, stream: u32) -> String {
        let mut text = Vec::new();
        while let Some(frame) = self.next().await {
            match frame {
                Frame::Data {
                    stream: id,
                    flags,
                    data,
                } if id == stream => {
                    text.extend(data);
                    if flags & FLAG_FIN != 0 {
                        break;
                    }
                }
                Frame::RstStream { stream: id, .. } if id == stream => return "RST".into(),
                _ => {}
            }
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    /// The next frame, if one comes within a moment.
    pub(crate) async fn next(&mut self) -> Option<Frame> {
        let read = Frame::read(&mut self.read, &mut self.decompressor);
        tokio::time::timeout(Duration::from_millis(500), read)
            .await
            .ok()?
            .unwrap()
    }

    /// The data of stream 1 until `n` bytes came (other frames skipped).
    pub(crate) async fn data(&mut self, n: usize) -> Vec<u8> {
        let mut got = Vec::new();
        while got.len() < n {
            match self.next().await {
                Some(Frame::Data { data, .. }) => got.extend(data),
                Some(_) => {}
                None => break,
            }
        }
        got
    }
}
