//! Fetching blobs: small documents into memory, layers streamed at once into the blob store and the unpacker.
//!
//! A layer's bytes arrive on the async side and go down a bounded channel to
//! a blocking thread. There a [`Tee`] hands them to [`Store::unpack_layer`]
//! while writing each chunk into the blob's [`Ingest`], so downloading,
//! hashing and unpacking overlap and every byte crosses the network once.
//! The ingest is committed (size and digest checked) only after the unpack
//! succeeded; any failure drops it, leaving nothing half-written behind.

use super::registry::{Failure, Registry, Subject};
use crate::image::content::Ingest;
use crate::image::{Error, Layer, Result, Store};
use futures::StreamExt;
use indicatif::ProgressBar;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// Chunks buffered between the network and the unpacker (each up to a few tens of KiB).
const CHANNEL_CHUNKS: usize = 64;

/// The largest manifest or config accepted into memory.
const MAX_DOCUMENT: u64 = 16 << 20;

/// What the network side tells the unpacking thread.
enum Chunk {
    /// The next bytes of the blob.
    Data(Vec<u8>),
    /// The blob ended normally.
    End,
    /// The download broke; the blob is incomplete.
    Failed,
}

/// Returns blob `digest` (a config), fetching and storing it if absent.
pub(super) async fn document(
    registry: &Registry,
    store: &Store,
    digest: &str,
    size: u64,
) -> Result<Vec<u8>> {
    if store.content().has(digest) {
        return store.content().read(digest);
    }
    let what = format!("blob {digest}");
    if size > MAX_DOCUMENT {
        return Err(Error::Invalid {
            what,
            reason: format!(
                "{size} bytes is more than the {MAX_DOCUMENT} bytes allowed for a config"
            ),
        });
    }
    let received = AtomicU64::new(0);
    let bytes = registry
        .retry(|| async {
            let mut stream = registry.blob_stream(digest).await?;
            let mut bytes = Vec::with_capacity(size as usize);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(Failure::from_io)?;
                bytes.extend_from_slice(&chunk);
                received.store(bytes.len() as u64, Ordering::Relaxed);
                if bytes.len() as u64 > size {
                    return Err(Failure::Fatal(Error::SizeMismatch {
                        digest: digest.to_string(),
                        expected: size,
                        actual: bytes.len() as u64,
                    }));
                }
            }
            Ok(bytes)
        })
        .await
        .map_err(|f| {
            f.into_error(
                registry,
                Subject::Blob(digest),
                received.load(Ordering::Relaxed),
            )
        })?;
    store.content().write(digest, &bytes)?;
    Ok(bytes)
}

/// Makes `layer` present: its blob stored and its directory unpacked.
/// A blob already stored is unpacked from disk; otherwise it is downloaded.
pub(super) async fn fetch(
    registry: &Registry,
    store: &Store,
    layer: &Layer,
    bar: Option<ProgressBar>,
) -> Result<()> {
    if store.content().has(&layer.digest) {
        let name = layer_name(layer);
        let (store, layer) = (store.clone(), layer.clone());
        let unpacked = tokio::task::spawn_blocking(move || -> Result<()> {
            let path = store.content().path(&layer.digest)?;
            let mut file =
                std::fs::File::open(&path).map_err(crate::image::io_err("open blob", &path))?;
            store.unpack_layer(&mut file, &layer.media_type, &layer.diff_id)?;
            Ok(())
        })
        .await
        .map_err(|e| worker_died(&name, e))?;
        if let Some(bar) = bar {
            bar.finish_with_message("unpacked from the local blob");
        }
        return unpacked;
    }
    let received = AtomicU64::new(0);
    let outcome = registry
        .retry(|| attempt(registry, store, layer, bar.as_ref(), &received))
        .await
        .map_err(|f| {
            f.into_error(
                registry,
                Subject::Blob(&layer.digest),
                received.load(Ordering::Relaxed),
            )
        });
    if let Some(bar) = bar {
        match &outcome {
            Ok(()) => bar.finish_with_message("done"),
            Err(_) => bar.abandon_with_message("failed"),
        }
    }
    outcome
}

/// One try at downloading and unpacking `layer`; a retry starts it afresh.
async fn attempt(
    registry: &Registry,
    store: &Store,
    layer: &Layer,
    bar: Option<&ProgressBar>,
    received: &AtomicU64,
) -> std::result::Result<(), Failure> {
    received.store(0, Ordering::Relaxed);
    if let Some(bar) = bar {
        bar.set_position(0);
        bar.set_message("");
    }
    let mut stream = registry.blob_stream(&layer.digest).await?;
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let worker = {
        let (store, layer) = (store.clone(), layer.clone());
        tokio::task::spawn_blocking(move || store_and_unpack(&store, &layer, rx))
    };

    // The network side: forward chunks until the blob ends, breaks, or the
    // worker stops listening (it failed; its error says why).
    let mut cut = None;
    loop {
        match stream.next().await {
            Some(Ok(bytes)) => {
                received.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                if let Some(bar) = bar {
                    bar.inc(bytes.len() as u64);
                }
                if tx.send(Chunk::Data(bytes.into())).await.is_err() {
                    break;
                }
            }
            Some(Err(e)) => {
                cut = Some(Failure::from_io(e));
                let _ = tx.send(Chunk::Failed).await;
                break;
            }
            None => {
                let _ = tx.send(Chunk::End).await;
                break;
            }
        }
    }
    drop(tx);
    let stored = worker
        .await
        .map_err(|e| Failure::Fatal(worker_died(&layer_name(layer), e)))?;
    if let Some(failure) = cut {
        return Err(failure);
    }
    match stored {
        Ok(()) => Ok(()),
        // The body ended early without a transport error: retry it.
        Err(Error::SizeMismatch {
            expected, actual, ..
        }) if actual < expected => Err(Failure::Transient(format!(
            "the download ended after {actual} of {expected} bytes"
        ))),
        Err(err) => Err(Failure::Fatal(err)),
    }
}

/// The blocking side: unpack what `rx` delivers while storing it as the blob.
fn store_and_unpack(store: &Store, layer: &Layer, rx: mpsc::Receiver<Chunk>) -> Result<()> {
    let ingest = store.content().ingest(&layer.digest, Some(layer.size))?;
    let mut tee = Tee {
        rx,
        pending: Vec::new(),
        offset: 0,
        ingest,
        ended: false,
    };
    let unpacked = store.unpack_layer(&mut tee, &layer.media_type, &layer.diff_id);
    // Whatever the unpacker left unread still belongs to the blob; reading it
    // also lets the network side finish, so a corrupt blob is reported as
    // the digest mismatch it is rather than as the tar error it caused.
    let drained = std::io::copy(&mut tee, &mut std::io::sink());
    unpacked?;
    drained.map_err(|e| Error::Invalid {
        what: layer_name(layer),
        reason: e.to_string(),
    })?;
    tee.ingest.commit()?;
    Ok(())
}

/// A reader over the channel whose every chunk is also written to the ingest.
struct Tee {
    rx: mpsc::Receiver<Chunk>,
    pending: Vec<u8>,
    offset: usize,
    ingest: Ingest,
    ended: bool,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.offset == self.pending.len() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Chunk::Data(bytes)) => {
                    self.ingest.write_all(&bytes)?;
                    self.pending = bytes;
                    self.offset = 0;
                }
                Some(Chunk::End) => self.ended = true,
                // Never report a cut download as a clean end: the unpacker
                // could take a truncated tar for a complete one.
                Some(Chunk::Failed) | None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the download was interrupted",
                    ))
                }
            }
        }
        let n = buf.len().min(self.pending.len() - self.offset);
        buf[..n].copy_from_slice(&self.pending[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}

fn layer_name(layer: &Layer) -> String {
    format!("layer {}", layer.digest)
}

fn worker_died(what: &str, err: tokio::task::JoinError) -> Error {
    Error::Invalid {
        what: what.to_string(),
        reason: format!("the unpacking thread failed: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::unpack::tests::{sha256, LayerBuilder};

    const TAR: &str = "application/vnd.oci.image.layer.v1.tar";

    /// A store in a fresh temporary directory, and a plain-tar layer for it.
    fn setup() -> (tempfile::TempDir, Store, Layer, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let blob = LayerBuilder::new()
            .file("etc/hello", b"hello\n")
            .file("data/big", &vec![7u8; 300_000])
            .finish();
        let layer = Layer {
            digest: sha256(&blob),
            diff_id: sha256(&blob),
            media_type: TAR.into(),
            size: blob.len() as u64,
        };
        (dir, store, layer, blob)
    }

    /// Runs the blocking side on `blob` sent in small chunks, then `last`.
    fn feed(store: &Store, layer: &Layer, blob: &[u8], last: Option<Chunk>) -> Result<()> {
        let (tx, rx) = mpsc::channel(4);
        let chunks: Vec<Vec<u8>> = blob.chunks(10_000).map(<[u8]>::to_vec).collect();
        let sender = std::thread::spawn(move || {
            for chunk in chunks {
                if tx.blocking_send(Chunk::Data(chunk)).is_err() {
                    return;
                }
            }
            if let Some(last) = last {
                let _ = tx.blocking_send(last);
            }
        });
        let outcome = store_and_unpack(store, layer, rx);
        sender.join().unwrap();
        outcome
    }

    fn nothing_stored(store: &Store, layer: &Layer) {
        assert!(!store.content().has(&layer.digest), "blob stored");
        assert!(store.layer_dir(&layer.diff_id).is_none(), "layer unpacked");
        let leftovers = std::fs::read_dir(store.content().ingest_dir())
            .unwrap()
            .count();
        assert_eq!(leftovers, 0, "ingest files left behind");
    }

    #[test]
    fn streams_into_blob_and_layer_at_once() {
        let (_dir, store, layer, blob) = setup();
        feed(&store, &layer, &blob, Some(Chunk::End)).unwrap();
        assert_eq!(store.content().read(&layer.digest).unwrap(), blob);
        let dir = store.layer_dir(&layer.diff_id).expect("unpacked");
        assert_eq!(std::fs::read(dir.join("etc/hello")).unwrap(), b"hello\n");
        assert_eq!(
            std::fs::metadata(dir.join("data/big")).unwrap().len(),
            300_000
        );
    }

    #[test]
    fn a_cut_download_stores_nothing() {
        let (_dir, store, layer, blob) = setup();
        let half = &blob[..blob.len() / 2];
        assert!(feed(&store, &layer, half, Some(Chunk::Failed)).is_err());
        nothing_stored(&store, &layer);
        // The sender vanishing without a word is a cut too, never a clean end.
        assert!(feed(&store, &layer, half, None).is_err());
        nothing_stored(&store, &layer);
    }

    #[test]
    fn a_corrupt_blob_stores_nothing() {
        let (_dir, store, layer, mut blob) = setup();
        let at = blob.len() - 2000;
        blob[at] ^= 0xff;
        let err = feed(&store, &layer, &blob, Some(Chunk::End)).unwrap_err();
        assert!(
            matches!(err, Error::DigestMismatch { .. } | Error::Invalid { .. }),
            "{err:?}"
        );
        nothing_stored(&store, &layer);
    }
}
