//! SPDY/3.1 frames on the wire: an 8-byte header (control bit, version and type, or the
//! stream id of a data frame; flags; 24-bit length), then the payload. Header blocks go
//! through the connection's [`Compressor`] / [`Decompressor`], in wire order.

use tokio::io::{AsyncRead, AsyncReadExt};

use super::headers::{Compressor, Decompressor, HeaderError, Headers};

/// The protocol version in every control frame.
pub const VERSION: u16 = 3;
/// The last frame a sender sends on a stream (data, SYN_STREAM, SYN_REPLY, HEADERS).
pub const FLAG_FIN: u8 = 0x01;
/// A SYN_STREAM the recipient may not answer with data.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// The SETTINGS id of the initial stream window size.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;
/// RST_STREAM: the frame broke the protocol.
pub const PROTOCOL_ERROR: u32 = 1;
/// RST_STREAM: a frame for a stream that is not open.
pub const INVALID_STREAM: u32 = 2;
/// RST_STREAM: the stream is not wanted (it arrived after we stopped accepting).
pub const REFUSED_STREAM: u32 = 3;
/// RST_STREAM: the sender abandons the stream.
pub const CANCEL: u32 = 5;
/// RST_STREAM: the peer sent past its window.
pub const FLOW_CONTROL_ERROR: u32 = 7;
/// RST_STREAM: a SYN_STREAM reused a live stream id.
pub const STREAM_IN_USE: u32 = 8;
/// GOAWAY: a normal end of the session.
pub const GOAWAY_OK: u32 = 0;
/// GOAWAY: the peer broke the protocol.
pub const GOAWAY_PROTOCOL_ERROR: u32 = 1;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// Stream ids, window deltas and last-good ids are 31 bits.
const ID_MASK: u32 = 0x7fff_ffff;
/// The largest payload a 24-bit length can carry.
pub const MAX_PAYLOAD: usize = 0x00ff_ffff;

/// One SETTINGS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// FLAG_SETTINGS_PERSIST_VALUE / PERSISTED (ignored by us).
    pub flags: u8,
    /// Which setting (24 bits), e.g. [`SETTINGS_INITIAL_WINDOW_SIZE`].
    pub id: u32,
    /// Its value.
    pub value: u32,
}

/// A SPDY/3.1 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Opens a stream (the client's streams have odd ids).
    SynStream {
        /// The new stream.
        stream: u32,
        /// The stream it belongs to (server push); 0 for none.
        associated: u32,
        /// 0 (highest) to 7.
        priority: u8,
        /// FLAG_FIN / FLAG_UNIDIRECTIONAL.
        flags: u8,
        /// The stream's headers (`streamtype`, `port`, `requestid`, ...).
        headers: Headers,
    },
    /// Accepts a stream.
    SynReply {
        /// The stream accepted.
        stream: u32,
        /// FLAG_FIN.
        flags: u8,
        /// Reply headers.
        headers: Headers,
    },
    /// Ends a stream abnormally.
    RstStream {
        /// The stream.
        stream: u32,
        /// Why ([`CANCEL`], [`PROTOCOL_ERROR`], ...).
        status: u32,
    },
    /// Connection parameters.
    Settings {
        /// FLAG_SETTINGS_CLEAR_SETTINGS.
        flags: u8,
        /// The settings.
        entries: Vec<Setting>,
    },
    /// A liveness check, echoed by the side that did not send it.
    Ping {
        /// Odd from the client, even from the server.
        id: u32,
    },
    /// The sender will accept no new streams.
    GoAway {
        /// The last stream the sender handled.
        last_good: u32,
        /// [`GOAWAY_OK`] or an error.
        status: u32,
    },
    /// More headers for a stream.
    Headers {
        /// The stream.
        stream: u32,
        /// FLAG_FIN.
        flags: u8,
        /// The headers.
        headers: Headers,
    },
    /// More window for a stream, or for the session (stream 0).
    WindowUpdate {
        /// The stream, or 0 for the whole session.
        stream: u32,
        /// Bytes the sender may send in addition.
        delta: u32,
    },
    /// A stream's bytes.
    Data {
        /// The stream.
        stream: u32,
        /// FLAG_FIN.
        flags: u8,
        /// The payload.
        data: Vec<u8>,
    },
    /// A control frame of a type SPDY/3.1 does not define; the spec says ignore it.
    Unknown {
        /// Its type.
        kind: u16,
    },
}

/// A frame that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Reading the connection failed, or it ended inside a frame.
    #[error("reading a frame: {0}")]
    Io(#[from] std::io::Error),
    /// A control frame of another SPDY version.
    #[error("unsupported SPDY version {0}: expected 3")]
    Version(u16),
    /// A control frame shorter or longer than its type allows.
    #[error("{kind} frame with a {length}-byte payload: {expected}")]
    Length {
        /// The frame type.
        kind: &'static str,
        /// The payload length it came with.
        length: usize,
        /// What the type needs.
        expected: &'static str,
    },
    /// A header block that does not inflate or parse.
    #[error("{kind} of stream {stream}: {source}")]
    Headers {
        /// The frame type.
        kind: &'static str,
        /// The stream.
        stream: u32,
        /// What is wrong with the block.
        source: HeaderError,
    },
    /// A payload too large for one frame (a bug of ours: writers split data).
    #[error("a {0}-byte payload does not fit one frame")]
    TooLarge(usize),
}

impl Frame {
    /// The frame's bytes; header blocks are compressed on `compressor`'s stream, so
    /// frames must be encoded in the order they are sent.
    pub fn encode(&self, compressor: &mut Compressor) -> Result<Vec<u8>, FrameError> {
        let headers_of = |compressor: &mut Compressor, kind, stream, headers: &Headers| {
            compressor
                .compress(headers)
                .map_err(|source| FrameError::Headers {
                    kind,
                    stream,
                    source,
                })
        };
        let (kind, flags, payload) = match self {
            Frame::Data {
                stream,
                flags,
                data,
            } => return data_frame(*stream, *flags, data),
            Frame::SynStream {
                stream,
                associated,
                priority,
                flags,
                headers,
            } => {
                let mut p = words(&[stream & ID_MASK, associated & ID_MASK]);
                p.extend_from_slice(&[(priority & 7) << 5, 0]);
                p.extend(headers_of(compressor, "SYN_STREAM", *stream, headers)?);
                (SYN_STREAM, *flags, p)
            }
            Frame::SynReply {
                stream,
                flags,
                headers,
            } => {
                let mut p = words(&[stream & ID_MASK]);
                p.extend(headers_of(compressor, "SYN_REPLY", *stream, headers)?);
                (SYN_REPLY, *flags, p)
            }
            Frame::Headers {
                stream,
                flags,
                headers,
            } => {
                let mut p = words(&[stream & ID_MASK]);
                p.extend(headers_of(compressor, "HEADERS", *stream, headers)?);
                (HEADERS, *flags, p)
            }
            Frame::RstStream { stream, status } => {
                (RST_STREAM, 0, words(&[stream & ID_MASK, *status]))
            }
            Frame::Settings { flags, entries } => {
                let mut p = words(&[entries.len() as u32]);
                for e in entries {
                    p.extend_from_slice(
                        &((u32::from(e.flags) << 24) | (e.id & 0xff_ffff)).to_be_bytes(),
                    );
                    p.extend_from_slice(&e.value.to_be_bytes());
                }
                (SETTINGS, *flags, p)
            }
            Frame::Ping { id } => (PING, 0, words(&[*id])),
            Frame::GoAway { last_good, status } => {
                (GOAWAY, 0, words(&[last_good & ID_MASK, *status]))
            }
            Frame::WindowUpdate { stream, delta } => (
                WINDOW_UPDATE,
                0,
                words(&[stream & ID_MASK, delta & ID_MASK]),
            ),
            Frame::Unknown { kind } => (*kind, 0, Vec::new()),
        };
        let mut bytes = words(&[0x8000_0000 | (u32::from(VERSION) << 16) | u32::from(kind)]);
        bytes.extend_from_slice(&length_word(flags, payload.len())?);
        bytes.extend(payload);
        Ok(bytes)
    }

    /// Parse a frame from its 8-byte header and its payload.
    pub fn decode(
        head: [u8; 8],
        payload: Vec<u8>,
        decompressor: &mut Decompressor,
    ) -> Result<Frame, FrameError> {
        let first = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let flags = head[4];
        if first & 0x8000_0000 == 0 {
            return Ok(Frame::Data {
                stream: first & ID_MASK,
                flags,
                data: payload,
            });
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        let kind = (first & 0xffff) as u16;
        let p = &payload;
        let length = |name, ok: bool, expected| {
            if ok {
                Ok(())
            } else {
                Err(FrameError::Length {
                    kind: name,
                    length: p.len(),
                    expected,
                })
            }
        };
        let word = |i: usize| u32::from_be_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
        let block = |name, stream, bytes: &[u8], d: &mut Decompressor| {
            d.decompress(bytes).map_err(|source| FrameError::Headers {
                kind: name,
                stream,
                source,
            })
        };
        Ok(match kind {
            SYN_STREAM => {
                length("SYN_STREAM", p.len() >= 10, "at least 10 bytes")?;
                let stream = word(0) & ID_MASK;
                Frame::SynStream {
                    stream,
                    associated: word(4) & ID_MASK,
                    priority: p[8] >> 5,
                    flags,
                    headers: block("SYN_STREAM", stream, &p[10..], decompressor)?,
                }
            }
            SYN_REPLY | HEADERS => {
                let name = if kind == SYN_REPLY {
                    "SYN_REPLY"
                } else {
                    "HEADERS"
                };
                length(name, p.len() >= 4, "at least 4 bytes")?;
                let stream = word(0) & ID_MASK;
                let headers = block(name, stream, &p[4..], decompressor)?;
                if kind == SYN_REPLY {
                    Frame::SynReply {
                        stream,
                        flags,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream,
                        flags,
                        headers,
                    }
                }
            }
            RST_STREAM => {
                length("RST_STREAM", p.len() == 8, "8 bytes")?;
                Frame::RstStream {
                    stream: word(0) & ID_MASK,
                    status: word(4),
                }
            }
            SETTINGS => {
                length("SETTINGS", p.len() >= 4, "at least 4 bytes")?;
                let count = word(0) as usize;
                length(
                    "SETTINGS",
                    count.checked_mul(8).and_then(|n| n.checked_add(4)) == Some(p.len()),
                    "4 bytes and 8 per entry",
                )?;
                let entries = (0..count)
                    .map(|i| {
                        let at = 4 + 8 * i;
                        Setting {
                            flags: p[at],
                            id: word(at) & 0xff_ffff,
                            value: word(at + 4),
                        }
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            PING => {
                length("PING", p.len() == 4, "4 bytes")?;
                Frame::Ping { id: word(0) }
            }
            GOAWAY => {
                length("GOAWAY", p.len() == 8, "8 bytes")?;
                Frame::GoAway {
                    last_good: word(0) & ID_MASK,
                    status: word(4),
                }
            }
            WINDOW_UPDATE => {
                length("WINDOW_UPDATE", p.len() == 8, "8 bytes")?;
                Frame::WindowUpdate {
                    stream: word(0) & ID_MASK,
                    delta: word(4) & ID_MASK,
                }
            }
            kind => Frame::Unknown { kind },
        })
    }

    /// Read the next frame; None if the connection ended cleanly between frames.
    pub async fn read<R: AsyncRead + Unpin>(
        reader: &mut R,
        decompressor: &mut Decompressor,
    ) -> Result<Option<Frame>, FrameError> {
        let mut head = [0u8; 8];
        let first = reader.read(&mut head).await?;
        if first == 0 {
            return Ok(None);
        }
        reader.read_exact(&mut head[first..]).await?;
        let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let mut payload = vec![0; length];
        reader.read_exact(&mut payload).await?;
        Frame::decode(head, payload, decompressor).map(Some)
    }
}

/// A data frame's bytes (no compression involved).
pub fn data_frame(stream: u32, flags: u8, data: &[u8]) -> Result<Vec<u8>, FrameError> {
    let mut bytes = words(&[stream & ID_MASK]);
    bytes.extend_from_slice(&length_word(flags, data.len())?);
    bytes.extend_from_slice(data);
    Ok(bytes)
}

fn words(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn length_word(flags: u8, length: usize) -> Result<[u8; 4], FrameError> {
    if length > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(length));
    }
    Ok(((u32::from(flags) << 24) | length as u32).to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frames: &[Frame]) {
        let mut compressor = Compressor::new().unwrap();
        let mut decompressor = Decompressor::default();
        let mut wire = Vec::new();
        for frame in frames {
            wire.extend(frame.encode(&mut compressor).unwrap());
        }
        let mut reader = &wire[..];
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for frame in frames {
            let back = rt
                .block_on(Frame::read(&mut reader, &mut decompressor))
                .unwrap();
            assert_eq!(back.as_ref(), Some(frame));
        }
        assert!(rt
            .block_on(Frame::read(&mut reader, &mut decompressor))
            .unwrap()
            .is_none());
    }

    fn headers(list: &[(&str, &str)]) -> Headers {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_frame_type_round_trips() {
        round_trip(&[
            Frame::SynStream {
                stream: 1,
                associated: 0,
                priority: 7,
                flags: FLAG_FIN,
                headers: headers(&[("streamtype", "error")]),
            },
            Frame::SynReply {
                stream: 1,
                flags: 0,
                headers: vec![],
            },
            Frame::Headers {
                stream: 3,
                flags: FLAG_FIN,
                headers: headers(&[("a", "b\0c")]),
            },
            Frame::Data {
                stream: 3,
                flags: FLAG_FIN,
                data: b"hello".to_vec(),
            },
            Frame::Data {
                stream: 5,
                flags: 0,
                data: vec![],
            },
            Frame::RstStream {
                stream: 5,
                status: CANCEL,
            },
            Frame::Settings {
                flags: 0,
                entries: vec![Setting {
                    flags: 1,
                    id: SETTINGS_INITIAL_WINDOW_SIZE,
                    value: 1 << 20,
                }],
            },
            Frame::Ping { id: 1 },
            Frame::GoAway {
                last_good: 7,
                status: GOAWAY_OK,
            },
            Frame::WindowUpdate {
                stream: 0,
                delta: 65536,
            },
        ]);
    }

    #[test]
    fn frames_have_the_spec_layout() {
        let mut compressor = Compressor::new().unwrap();
        let ping = Frame::Ping { id: 3 }.encode(&mut compressor).unwrap();
        assert_eq!(ping, [0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 3]);
        let update = Frame::WindowUpdate {
            stream: 1,
            delta: 0x8000_0001,
        };
        assert_eq!(
            update.encode(&mut compressor).unwrap(),
            [0x80, 3, 0, 9, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 1]
        );
        assert_eq!(
            data_frame(0x8000_0002, FLAG_FIN, b"ab").unwrap(),
            [0, 0, 0, 2, 1, 0, 0, 2, b'a', b'b']
        );
    }

    #[test]
    fn bad_frames_are_refused_with_reasons() {
        let mut d = Decompressor::default();
        let spdy2 = [0x80, 2, 0, 6, 0, 0, 0, 4];
        assert!(matches!(
            Frame::decode(spdy2, vec![0; 4], &mut d),
            Err(FrameError::Version(2))
        ));
        let short_ping = [0x80, 3, 0, 6, 0, 0, 0, 2];
        let err = Frame::decode(short_ping, vec![0; 2], &mut d).unwrap_err();
        assert_eq!(err.to_string(), "PING frame with a 2-byte payload: 4 bytes");
        let settings = [0x80, 3, 0, 4, 0, 0, 0, 4];
        assert!(Frame::decode(settings, vec![0, 0, 0, 9], &mut d).is_err());
        let garbage_headers = [0x80, 3, 0, 2, 0, 0, 0, 6];
        let err = Frame::decode(garbage_headers, vec![0, 0, 0, 1, 0xde, 0xad], &mut d);
        assert!(matches!(err, Err(FrameError::Headers { stream: 1, .. })));
        assert_eq!(
            Frame::decode([0x80, 3, 0, 10, 0, 0, 0, 0], vec![], &mut d).unwrap(),
            Frame::Unknown { kind: 10 }
        );
        assert!(matches!(
            data_frame(1, 0, &vec![0; MAX_PAYLOAD + 1]),
            Err(FrameError::TooLarge(_))
        ));
    }
}
