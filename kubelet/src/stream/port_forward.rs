//! Port-forward's server side, whatever the transport: dials a port on the loopback of a
//! pod's network namespace and copies bytes between that connection and a client's
//! channels. [`super::websocket`] (one connection per WebSocket) and
//! [`super::spdy::port_forward`] (many per SPDY session, by `requestID`) carry it.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::netns::Dialer;

/// How long dialing the pod's port may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Forward one connection to `127.0.0.1:port` inside the network namespace pinned at
/// `netns`: what arrives on `from_client` goes to the pod (its end is the client's
/// half-close), what the pod sends goes to `to_client`, until the pod's side ends or the
/// client stops taking data. A failed dial is returned as the text for the client's
/// error channel. Dropping the future drops the connection (the client is gone).
pub async fn forward(
    netns: &Path,
    port: u16,
    mut from_client: mpsc::Receiver<Vec<u8>>,
    to_client: mpsc::Sender<Vec<u8>>,
) -> Result<(), String> {
    let stream = dial(netns, port).await.map_err(|e| {
        format!(
            "error forwarding port {port} to pod: dialing 127.0.0.1:{port} in network namespace {}: {e}",
            netns.display()
        )
    })?;
    let (mut from_pod, mut to_pod) = stream.into_split();
    let mut buf = vec![0; 32 * 1024];
    let mut client_sending = true;
    loop {
        tokio::select! {
            read = from_pod.read(&mut buf) => match read {
                Ok(n @ 1..) => {
                    if to_client.send(buf[..n].to_vec()).await.is_err() {
                        return Ok(());
                    }
                }
                // The pod's side closed (or failed): the forwarded connection is over.
                _ => return Ok(()),
            },
            data = from_client.recv(), if client_sending => match data {
                Some(data) => {
                    if to_pod.write_all(&data).await.is_err() {
                        return Ok(());
                    }
                }
                None => {
                    // The client is done sending; the pod may still answer.
                    client_sending = false;
                    let _ = to_pod.shutdown().await;
                }
            },
        }
    }
}

/// Connect to `127.0.0.1:port` from inside `netns`, through the namespace's shared
/// [`Dialer`].
pub async fn dial(netns: &Path, port: u16) -> io::Result<TcpStream> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    Dialer::for_netns(netns)
        .await?
        .connect(address, DIAL_TIMEOUT)
        .await
}
