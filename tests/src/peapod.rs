//! The `peapod` node CLI under test, pointed at an image store root of its own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use runtime::image::Store;
use tempfile::TempDir;

use crate::cli::{binary_path, run_captured, Output};
use crate::host::{require_root, unmount_under};

/// Upper bound for one CLI call; pulls in the tests move a few MB over loopback.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// The `peapod` binary under test: `$PEAPOD`, else `peapod` in the cargo
/// profile directory of the test.
pub fn peapod_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        binary_path(
            "PEAPOD",
            "peapod",
            "`cargo build -p peapod-kubelet --bin peapod`",
        )
    })
}

/// A store root of its own and the CLI pointed at it. On drop, whatever is
/// still mounted under the root is unmounted before the root is removed.
pub struct Peapod {
    root: TempDir,
    /// `DOCKER_CONFIG` for every call, when set.
    pub docker_config: Option<PathBuf>,
}

impl Peapod {
    /// A fresh, empty store root.
    pub fn new() -> Peapod {
        require_root();
        let root = tempfile::Builder::new()
            .prefix("pp-images-")
            .tempdir()
            .expect("a store root");
        Peapod {
            root,
            docker_config: None,
        }
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The store the CLI writes, opened through the library.
    pub fn store(&self) -> Store {
        Store::open(self.root()).expect("open the store the CLI wrote")
    }

    /// Runs `peapod --root <root> ARGS` to its end. The host's registry
    /// credentials can neither leak into a test nor be needed by one: `HOME`
    /// is an empty directory and `DOCKER_CONFIG` is only what the test set.
    pub fn run(&self, args: &[&str]) -> Output {
        let home = tempfile::tempdir().expect("a HOME for the CLI");
        let mut command = Command::new(peapod_path());
        command
            .arg("--root")
            .arg(self.root())
            .args(args)
            .env("HOME", home.path())
            .env_remove("DOCKER_CONFIG");
        if let Some(dir) = &self.docker_config {
            command.env("DOCKER_CONFIG", dir);
        }
        run_captured(command, CLI_TIMEOUT)
    }

    /// `peapod pull --quiet NAME`.
    pub fn pull(&self, name: &str) -> Output {
        self.run(&["pull", "--quiet", name])
    }
}

impl Default for Peapod {
    fn default() -> Self {
        Peapod::new()
    }
}

impl Drop for Peapod {
    fn drop(&mut self) {
        unmount_under(self.root());
    }
}
