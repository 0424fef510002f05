//! A loopback TCP proxy that cuts a download midway, to test interrupted pulls.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// A loopback TCP proxy to `upstream` that cuts the first connection whose
/// response passes `cut_after` bytes (once), to interrupt a blob download.
pub struct CuttingProxy {
    port: u16,
    stop: Arc<AtomicBool>,
    cut: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<thread::JoinHandle<()>>,
}

impl CuttingProxy {
    /// Starts the proxy on a free 127.0.0.1 port.
    pub fn start(upstream: u16, cut_after: usize) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicBool::new(false));
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let accept = {
            let (stop, cut, streams) = (stop.clone(), cut.clone(), streams.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let client = match listener.accept() {
                        Ok((client, _)) => client,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(5));
                            continue;
                        }
                        Err(_) => break,
                    };
                    client.set_nonblocking(false).unwrap();
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                        continue;
                    };
                    {
                        let mut all = streams.lock().unwrap();
                        all.push(client.try_clone().unwrap());
                        all.push(server.try_clone().unwrap());
                    }
                    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    thread::spawn(move || pipe(client, server, None));
                    let cut = cut.clone();
                    thread::spawn(move || pipe(s2, c2, Some((cut, cut_after))));
                }
            })
        };
        CuttingProxy {
            port,
            stop,
            cut,
            streams,
            accept: Some(accept),
        }
    }

    /// `127.0.0.1:<port>`, the registry host to pull from.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Whether a connection was cut.
    pub fn has_cut(&self) -> bool {
        self.cut.load(Ordering::Relaxed)
    }
}

/// Copies `from` → `to`; with a cut switch not yet used, cuts both
/// connections after `limit` bytes and flips the switch.
fn pipe(mut from: TcpStream, mut to: TcpStream, cut: Option<(Arc<AtomicBool>, usize)>) {
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((switch, limit)) = &cut {
            if total + n > *limit && !switch.swap(true, Ordering::SeqCst) {
                let _ = to.write_all(&buf[..limit - total]);
                break;
            }
        }
        total += n;
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for stream in self.streams.lock().unwrap().iter() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}
