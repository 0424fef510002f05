//! A router served on a unix socket in a temp dir, on a tokio runtime of its own, for
//! the root tests that are plain `#[test]` functions around blocking harness code.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use tempfile::TempDir;

/// The served router; the socket dir goes with it.
pub struct Served {
    dir: TempDir,
    /// The runtime the server (and the test's client side) runs on.
    pub runtime: tokio::runtime::Runtime,
}

impl Served {
    /// Serve `router` on `kubelet.sock` in a new temp dir named after `prefix`.
    pub fn serve(prefix: &str, router: Router) -> Served {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("a socket dir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let listener = {
            let _entered = runtime.enter();
            tokio::net::UnixListener::bind(dir.path().join("kubelet.sock")).expect("binding")
        };
        runtime.spawn(async move { axum::serve(listener, router).await });
        Served { dir, runtime }
    }

    /// The socket the router answers on.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("kubelet.sock")
    }

    /// Run `f` on the server's runtime; it must finish within 30 s.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), f)
                .await
                .expect("the exchange finished within 30 s")
        })
    }
}
