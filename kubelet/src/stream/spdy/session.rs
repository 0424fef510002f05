//! One SPDY/3.1 connection, server side: a reader task that parses frames and routes
//! them to streams, a writer task that owns the wire (and the header compressor, whose
//! zlib stream must see blocks in sending order), and per-stream handles with flow
//! control.
//!
//! Flow control: we grant the peer's windows back as the application reads, and we
//! honour the peer's windows once it shows it keeps them (its first WINDOW_UPDATE or
//! SETTINGS initial window). Kubernetes' SPDY library (moby/spdystream, used by the API
//! server and kubectl) neither sends WINDOW_UPDATE nor enforces windows; holding such a
//! peer to 64 KiB would stall every exec after its first 64 KiB of output.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use super::frame::{
    Frame, FrameError, CANCEL, FLAG_FIN, FLOW_CONTROL_ERROR, GOAWAY_OK, GOAWAY_PROTOCOL_ERROR,
    INVALID_STREAM, PROTOCOL_ERROR, REFUSED_STREAM, SETTINGS_INITIAL_WINDOW_SIZE, STREAM_IN_USE,
};
use super::headers::{self, Compressor, Decompressor, Headers};
use super::window::{RecvWindow, SendWindow, INITIAL_WINDOW};

/// The largest data frame we send (smaller frames keep streams interleaved).
const MAX_DATA_FRAME: usize = 32 * 1024;

/// Frames queued for the writer; the queue's bound is the session's back-pressure.
const OUT_QUEUE: usize = 64;

/// What the writer task is asked to do.
enum Outgoing {
    Frame(Frame),
    /// Send GOAWAY after everything queued before, then end the connection.
    Close,
}

/// A stream as the session tracks it.
struct StreamState {
    send: SendWindow,
    recv: RecvWindow,
    /// Where the peer's data goes; None once the peer sent FIN or the stream was reset.
    data: Option<mpsc::UnboundedSender<Vec<u8>>>,
    /// We may not send any more (we sent FIN, or either side reset it).
    send_closed: bool,
}

/// The session's state, shared by the tasks and the handles.
struct State {
    streams: HashMap<u32, StreamState>,
    send: SendWindow,
    recv: RecvWindow,
    /// The initial window of new streams, as the peer last set it.
    initial_send: u32,
    /// The peer has shown that it keeps windows.
    flow_controlled: bool,
    /// The highest stream id the peer opened.
    last_stream: u32,
    /// The connection's read side has ended: no more frames, no more window.
    ended: bool,
}

impl State {
    /// Forget a stream that is over both ways (its reader keeps what was queued).
    fn settle(&mut self, id: u32) {
        if self
            .streams
            .get(&id)
            .is_some_and(|s| s.send_closed && s.data.is_none())
        {
            self.streams.remove(&id);
        }
    }
}

struct Shared {
    state: Mutex<State>,
    /// Woken when a window grows or the session ends.
    window: Notify,
    out: mpsc::Sender<Outgoing>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain counters behind; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn send(&self, frame: Frame) -> io::Result<()> {
        self.out
            .send(Outgoing::Frame(frame))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the SPDY session has ended"))
    }
}

/// A server-side SPDY/3.1 session over an upgraded connection.
pub struct Session {
    incoming: mpsc::Receiver<Stream>,
    shared: Arc<Shared>,
    reader: JoinHandle<()>,
    writer: Option<JoinHandle<()>>,
}

impl Session {
    /// Start serving `io` (the connection after `101 Switching Protocols`).
    pub fn new<T>(io: T) -> Session
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(io);
        let (out, queue) = mpsc::channel(OUT_QUEUE);
        let (accepted, incoming) = mpsc::channel(16);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                streams: HashMap::new(),
                send: SendWindow::new(INITIAL_WINDOW),
                recv: RecvWindow::new(INITIAL_WINDOW),
                initial_send: INITIAL_WINDOW,
                flow_controlled: false,
                last_stream: 0,
                ended: false,
            }),
            window: Notify::new(),
            out,
        });
        let writer = tokio::spawn(write_frames(Box::new(write), queue));
        let reader = tokio::spawn(read_frames(Box::new(read), shared.clone(), accepted));
        Session {
            incoming,
            shared,
            reader,
            writer: Some(writer),
        }
    }

    /// The next stream the peer opens (already accepted with SYN_REPLY); None once the
    /// connection has ended or the peer sent GOAWAY.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.incoming.recv().await
    }

    /// Send GOAWAY after every frame queued so far, end the connection, and wait until
    /// the writer is done (so the peer has everything before the connection closes).
    pub async fn close(mut self) {
        let _ = self.shared.out.send(Outgoing::Close).await;
        if let Some(writer) = self.writer.take() {
            let _ = writer.await;
        }
    }

    /// Resolves once the connection's read side has ended (the peer is gone).
    pub async fn closed(&self) {
        loop {
            let notified = self.shared.window.notified();
            if self.shared.lock().ended {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A stream the peer opened: its headers and both directions.
pub struct Stream {
    /// The stream id.
    pub id: u32,
    /// The headers of its SYN_STREAM (names lower case).
    pub headers: Headers,
    /// What the peer sends on it.
    pub reader: StreamReader,
    /// What we send on it.
    pub writer: StreamWriter,
}

impl Stream {
    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        headers::get(&self.headers, name)
    }
}

/// The receiving half of a stream.
pub struct StreamReader {
    id: u32,
    data: mpsc::UnboundedReceiver<Vec<u8>>,
    shared: Arc<Shared>,
}

impl StreamReader {
    /// The next chunk the peer sent; None at its FIN, a reset, or the end of the
    /// session. Reading grants the peer more window.
    pub async fn read(&mut self) -> Option<Vec<u8>> {
        let chunk = self.data.recv().await?;
        let updates = {
            let mut state = self.shared.lock();
            let session = state.recv.consume(chunk.len());
            let stream = state
                .streams
                .get_mut(&self.id)
                .and_then(|s| s.recv.consume(chunk.len()));
            [(0, session), (self.id, stream)]
        };
        for (stream, delta) in updates {
            if let Some(delta) = delta {
                // A session that is going away needs no more window.
                let _ = self
                    .shared
                    .send(Frame::WindowUpdate { stream, delta })
                    .await;
            }
        }
        Some(chunk)
    }
}

/// The sending half of a stream; clones share it.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    shared: Arc<Shared>,
}

impl StreamWriter {
    /// Send `data`, split into frames, waiting for window when the peer keeps windows.
    pub async fn write(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = self.reserve(data.len().min(MAX_DATA_FRAME)).await?;
            let (chunk, rest) = data.split_at(n);
            self.shared
                .send(Frame::Data {
                    stream: self.id,
                    flags: 0,
                    data: chunk.to_vec(),
                })
                .await?;
            data = rest;
        }
        Ok(())
    }

    /// Wait until up to `want` bytes may be sent, and spend them.
    async fn reserve(&self, want: usize) -> io::Result<usize> {
        loop {
            let notified = self.shared.window.notified();
            {
                let mut state = self.shared.lock();
                let enforce = state.flow_controlled;
                let ended = state.ended;
                let session = state.send.available();
                let Some(stream) = state.streams.get_mut(&self.id).filter(|s| !s.send_closed)
                else {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        format!("SPDY stream {} is closed", self.id),
                    ));
                };
                if ended {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the SPDY session has ended",
                    ));
                }
                let n = if enforce {
                    want.min(stream.send.available()).min(session)
                } else {
                    want
                };
                if n > 0 {
                    stream.send.spend(n);
                    state.send.spend(n);
                    return Ok(n);
                }
            }
            notified.await;
        }
    }

    /// End our side of the stream (an empty data frame with FIN).
    pub async fn close(&self) -> io::Result<()> {
        if !self.mark_closed() {
            return Ok(());
        }
        self.shared
            .send(Frame::Data {
                stream: self.id,
                flags: FLAG_FIN,
                data: Vec::new(),
            })
            .await
    }

    /// Abandon the stream both ways (RST_STREAM CANCEL).
    pub async fn reset(&self) {
        self.mark_closed();
        {
            let mut state = self.shared.lock();
            if let Some(stream) = state.streams.get_mut(&self.id) {
                stream.data = None;
            }
            state.settle(self.id);
        }
        let _ = self
            .shared
            .send(Frame::RstStream {
                stream: self.id,
                status: CANCEL,
            })
            .await;
    }

    /// Mark our side closed; false if it already was.
    fn mark_closed(&self) -> bool {
        let mut state = self.shared.lock();
        match state.streams.get_mut(&self.id) {
            Some(stream) if !stream.send_closed => {
                stream.send_closed = true;
                state.settle(self.id);
                true
            }
            _ => false,
        }
    }
}

/// The writer task: encode frames in order and write them; GOAWAY and shutdown on close.
async fn write_frames(
    mut wire: Box<dyn AsyncWrite + Send + Unpin>,
    mut queue: mpsc::Receiver<Outgoing>,
) {
    let mut compressor = match Compressor::new() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("SPDY session: {e}");
            return;
        }
    };
    let mut last_good = 0;
    while let Some(outgoing) = queue.recv().await {
        let frame = match outgoing {
            Outgoing::Frame(frame) => frame,
            Outgoing::Close => {
                let goaway = Frame::GoAway {
                    last_good,
                    status: GOAWAY_OK,
                };
                if let Ok(bytes) = goaway.encode(&mut compressor) {
                    let _ = wire.write_all(&bytes).await;
                }
                let _ = wire.shutdown().await;
                return;
            }
        };
        if let Frame::SynReply { stream, .. } = &frame {
            last_good = last_good.max(*stream);
        }
        let written = match frame.encode(&mut compressor) {
            Ok(bytes) => wire.write_all(&bytes).await,
            Err(e) => Err(io::Error::other(e.to_string())),
        };
        // Flush when nothing else is waiting, so frames batch under load.
        let flushed = match written {
            Ok(()) if queue.is_empty() => wire.flush().await,
            other => other,
        };
        if let Err(e) = flushed {
            tracing::debug!("SPDY session: writing: {e}");
            return;
        }
    }
    let _ = wire.shutdown().await;
}

/// The reader task: parse frames until the connection ends, then end every stream.
async fn read_frames(
    mut wire: Box<dyn AsyncRead + Send + Unpin>,
    shared: Arc<Shared>,
    accepted: mpsc::Sender<Stream>,
) {
    let mut decompressor = Decompressor::default();
    let mut accepted = Some(accepted);
    loop {
        match Frame::read(&mut wire, &mut decompressor).await {
            Ok(Some(frame)) => {
                if handle(frame, &shared, &mut accepted).await.is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(FrameError::Io(e)) => {
                tracing::debug!("SPDY session: {e}");
                break;
            }
            Err(e) => {
                // A frame we cannot parse leaves the stream of frames (and the shared
                // zlib stream) in an unknown state: the session is over.
                tracing::debug!("SPDY session: {e}");
                let last_good = shared.lock().last_stream;
                let _ = shared
                    .send(Frame::GoAway {
                        last_good,
                        status: GOAWAY_PROTOCOL_ERROR,
                    })
                    .await;
                break;
            }
        }
    }
    let mut state = shared.lock();
    state.ended = true;
    for stream in state.streams.values_mut() {
        stream.data = None;
    }
    drop(state);
    shared.window.notify_waiters();
}

/// Act on one frame from the peer; Err when the writer is gone (the session is over).
async fn handle(
    frame: Frame,
    shared: &Arc<Shared>,
    accepted: &mut Option<mpsc::Sender<Stream>>,
) -> io::Result<()> {
    match frame {
        Frame::SynStream {
            stream: id,
            flags,
            headers,
            ..
        } => open(id, flags, headers, shared, accepted).await,
        Frame::Data {
            stream: id,
            flags,
            data,
        } => {
            let refused = {
                let mut state = shared.lock();
                state.recv.receive(data.len());
                let last = state.last_stream;
                match state.streams.get_mut(&id) {
                    Some(stream) => {
                        stream.recv.receive(data.len());
                        if let Some(sender) = &stream.data {
                            if !data.is_empty() {
                                let _ = sender.send(data);
                            }
                        }
                        if flags & FLAG_FIN != 0 {
                            stream.data = None;
                            state.settle(id);
                        }
                        false
                    }
                    // Data racing our reset of a stream is dropped quietly.
                    None => id > last,
                }
            };
            if refused {
                shared
                    .send(Frame::RstStream {
                        stream: id,
                        status: INVALID_STREAM,
                    })
                    .await?;
            }
            Ok(())
        }
        Frame::RstStream { stream: id, .. } => {
            {
                let mut state = shared.lock();
                if let Some(stream) = state.streams.get_mut(&id) {
                    stream.data = None;
                    stream.send_closed = true;
                }
                state.settle(id);
            }
            shared.window.notify_waiters();
            Ok(())
        }
        Frame::Settings { entries, .. } => {
            {
                let mut state = shared.lock();
                for entry in entries {
                    if entry.id == SETTINGS_INITIAL_WINDOW_SIZE {
                        let delta = i64::from(entry.value) - i64::from(state.initial_send);
                        state.initial_send = entry.value;
                        state.flow_controlled = true;
                        for stream in state.streams.values_mut() {
                            stream.send.shift(delta);
                        }
                    }
                }
            }
            shared.window.notify_waiters();
            Ok(())
        }
        // Odd ids are the client's pings, to echo; even ones would answer ours.
        Frame::Ping { id } if id % 2 == 1 => shared.send(Frame::Ping { id }).await,
        Frame::WindowUpdate { stream: id, delta } => {
            let overflow = {
                let mut state = shared.lock();
                state.flow_controlled = true;
                if id == 0 {
                    // The session window is the peer's to keep sane; refuse nothing.
                    let _ = state.send.grant(delta);
                    false
                } else {
                    match state.streams.get_mut(&id) {
                        Some(stream) => stream.send.grant(delta).is_err(),
                        None => false,
                    }
                }
            };
            shared.window.notify_waiters();
            if overflow {
                if let Some(stream) = shared.lock().streams.get_mut(&id) {
                    stream.data = None;
                    stream.send_closed = true;
                }
                shared
                    .send(Frame::RstStream {
                        stream: id,
                        status: FLOW_CONTROL_ERROR,
                    })
                    .await?;
            }
            Ok(())
        }
        Frame::GoAway { .. } => {
            // No new streams; the open ones finish.
            *accepted = None;
            Ok(())
        }
        Frame::SynReply { .. }
        | Frame::Headers { .. }
        | Frame::Ping { .. }
        | Frame::Unknown { .. } => Ok(()),
    }
}

/// A SYN_STREAM: register the stream, accept it with SYN_REPLY, hand it to the
/// application.
async fn open(
    id: u32,
    flags: u8,
    headers: Headers,
    shared: &Arc<Shared>,
    accepted: &mut Option<mpsc::Sender<Stream>>,
) -> io::Result<()> {
    let refusal = {
        let state = shared.lock();
        if id.is_multiple_of(2) || id <= state.last_stream {
            Some(if state.streams.contains_key(&id) {
                STREAM_IN_USE
            } else {
                PROTOCOL_ERROR
            })
        } else if accepted.is_none() {
            Some(REFUSED_STREAM)
        } else {
            None
        }
    };
    if let Some(status) = refusal {
        return shared.send(Frame::RstStream { stream: id, status }).await;
    }
    let (sender, data) = mpsc::unbounded_channel();
    {
        let mut state = shared.lock();
        state.last_stream = id;
        let send = SendWindow::new(state.initial_send);
        state.streams.insert(
            id,
            StreamState {
                send,
                recv: RecvWindow::new(INITIAL_WINDOW),
                data: (flags & FLAG_FIN == 0).then_some(sender),
                send_closed: false,
            },
        );
    }
    shared
        .send(Frame::SynReply {
            stream: id,
            flags: 0,
            headers: Vec::new(),
        })
        .await?;
    let stream = Stream {
        id,
        headers,
        reader: StreamReader {
            id,
            data,
            shared: shared.clone(),
        },
        writer: StreamWriter {
            id,
            shared: shared.clone(),
        },
    };
    let delivered = match accepted {
        Some(to) => to.send(stream).await.is_ok(),
        None => false,
    };
    if !delivered {
        *accepted = None;
        shared
            .send(Frame::RstStream {
                stream: id,
                status: REFUSED_STREAM,
            })
            .await?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
