//! Watch a manifests folder and stream the changes of its static pods.
//!
//! On start every manifest is read and announced, then [`SourceEvent::Synced`]
//! is sent. After that the folder is rescanned whenever inotify reports a
//! change (after a short quiet time, so an editor's burst of writes or an
//! atomic rename is one rescan) and every `resync_period` as a safety net for
//! missed events, as the upstream kubelet relists every 20 s.
//!
//! Any event triggers a full rescan rather than a per-file update: a rescan of
//! a few dozen small files costs little, unchanged files are not re-parsed
//! (see [`Desired`]), and it spares us deciding what a rename or an
//! `IN_MOVED_TO` over an existing file means.
//!
//! Files skipped, as upstream: dotfiles (so `.web.yaml.swp` and the API's own
//! `.name.tmp` staging files), directories (no recursion) and anything that
//! is not a regular file. Beyond upstream, editor backups (`name~`) and Emacs
//! autosaves (`#name#`) are skipped too: upstream would report them as broken
//! manifests, or worse run a stale copy of a pod under the same name.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{mpsc, Notify};
use tokio::time::{self, Instant};

use super::desired::{Desired, Listed};
use super::{manifest, SourceEvent};

/// How a manifests folder is watched.
#[derive(Debug, Clone)]
pub struct FolderConfig {
    /// The manifests folder.
    pub dir: PathBuf,
    /// This node's name: part of each pod's name and UID.
    pub node_name: String,
    /// Full rescan period, the safety net for missed inotify events.
    pub resync_period: Duration,
    /// Quiet time after the last change before rescanning.
    pub debounce: Duration,
}

impl FolderConfig {
    /// Upstream's periods: rescan every 20 s; rescan 100 ms after a burst settles.
    pub fn new(dir: impl Into<PathBuf>, node_name: impl Into<String>) -> Self {
        FolderConfig {
            dir: dir.into(),
            node_name: node_name.into(),
            resync_period: Duration::from_secs(20),
            debounce: Duration::from_millis(100),
        }
    }
}

/// Watch `config.dir` and send its pods' changes to `events` until the
/// receiver is dropped. Problems are sent as [`SourceEvent::Error`], never
/// returned: a static pod source keeps going whatever the folder holds.
pub async fn run(config: FolderConfig, events: mpsc::Sender<SourceEvent>) {
    let period = config.resync_period;
    let debounce = config.debounce;
    let mut scanner = Scanner {
        desired: Desired::new(config.node_name.clone()),
        config,
        watcher: None,
        dir_error: None,
        wake: Arc::new(Notify::new()),
    };
    let mut tick = time::interval_at(Instant::now() + period, period);
    tick.set_missed_tick_behavior(time::MissedTickBehavior::Delay);
    let mut synced = false;
    loop {
        let Ok(listed) = scanner.scan(&events).await else {
            return;
        };
        // Synced only after a real listing: a consumer told "that is all"
        // after a failed one would stop every pod it has.
        if listed && !synced {
            synced = true;
            if events.send(SourceEvent::Synced).await.is_err() {
                return;
            }
        }
        let wake = scanner.wake.clone();
        tokio::select! {
            _ = events.closed() => return,
            _ = tick.tick() => {}
            _ = wake.notified() => settle(&wake, debounce).await,
        }
    }
}

/// Wait until no change was reported for `quiet`, but no longer than ten
/// quiet times, so a file rewritten in a loop still gets read.
async fn settle(wake: &Notify, quiet: Duration) {
    let deadline = Instant::now() + quiet * 10;
    loop {
        tokio::select! {
            _ = wake.notified() => if Instant::now() >= deadline { return },
            _ = time::sleep(quiet) => return,
        }
    }
}

/// The receiver of the events is gone: the source has nobody to tell.
struct Closed;

struct Scanner {
    config: FolderConfig,
    desired: Desired,
    watcher: Option<RecommendedWatcher>,
    /// The folder-level error last reported, to report each once.
    dir_error: Option<String>,
    wake: Arc<Notify>,
}

impl Scanner {
    /// Rescan and send the changes; whether the folder could be listed.
    async fn scan(&mut self, events: &mpsc::Sender<SourceEvent>) -> Result<bool, Closed> {
        // Watch before listing, so a change made during the listing is not lost.
        if self.watcher.is_none() {
            match watch(&self.config.dir, self.wake.clone()) {
                Ok(w) => self.watcher = Some(w),
                // A missing folder is reported by the listing below.
                Err(_) if !self.config.dir.exists() => {}
                Err(e) => {
                    self.report_dir_error(events, format!("cannot watch: {e}"))
                        .await?
                }
            }
        }
        let dir = self.config.dir.clone();
        let listing = match tokio::task::spawn_blocking(move || list(&dir)).await {
            Ok(result) => result,
            Err(e) => Err(io::Error::other(e.to_string())),
        };
        let listing = match listing {
            Ok(listing) => listing,
            // A folder that is gone holds no pods, as upstream has it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.watcher = None;
                let message = "does not exist: no static pods until it is created";
                self.report_dir_error(events, message.into()).await?;
                Vec::new()
            }
            // Unreadable for now: keep the pods, try again later.
            Err(e) => {
                self.report_dir_error(events, format!("cannot list: {e}"))
                    .await?;
                return Ok(false);
            }
        };
        for event in self.desired.apply(listing, chrono::Utc::now()) {
            events.send(event).await.map_err(|_| Closed)?;
        }
        if self.watcher.is_some() {
            self.dir_error = None;
        }
        Ok(true)
    }

    async fn report_dir_error(
        &mut self,
        events: &mpsc::Sender<SourceEvent>,
        message: String,
    ) -> Result<(), Closed> {
        let message = format!("{}: {message}", self.config.dir.display());
        if self.dir_error.as_ref() == Some(&message) {
            return Ok(());
        }
        self.dir_error = Some(message.clone());
        let event = SourceEvent::Error {
            file: self.config.dir.clone(),
            message,
        };
        events.send(event).await.map_err(|_| Closed)
    }
}

/// An inotify watch on `dir` that wakes the scanner on any change to a manifest.
fn watch(dir: &Path, wake: Arc<Notify>) -> notify::Result<RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match event {
            // Our own reads show up as access events: never rescan for those.
            Ok(event) => {
                !matches!(event.kind, EventKind::Access(_))
                    && event.paths.iter().any(|p| {
                        p.file_name()
                            .is_some_and(|n| !ignored(&n.to_string_lossy()))
                    })
            }
            // A queue overflow or the like: rescan to be sure.
            Err(_) => true,
        };
        if relevant {
            wake.notify_one();
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// Every manifest file in `dir`, sorted by path, with its bytes.
fn list(dir: &Path) -> io::Result<Vec<Listed>> {
    let mut listing = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if ignored(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let path = entry.path();
        // Follow symlinks, as upstream's stat does: a manifest may be a link.
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => continue,
            // Deleted between readdir and stat: it is simply gone.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                listing.push(Listed {
                    path,
                    content: Err(format!("cannot stat: {e}")),
                });
                continue;
            }
        }
        match std::fs::read(&path) {
            Ok(bytes) => listing.push(Listed {
                path,
                content: Ok(bytes),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => listing.push(Listed {
                path,
                content: Err(format!("cannot read: {e}")),
            }),
        }
    }
    listing.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(listing)
}

/// The manifest in `dir` that defines pod `namespace/name` for node `node_name` (`name`
/// as the node runs it, node name suffix included): the first such file by path among
/// those the folder source reads. None if no file does, or `dir` cannot be listed; a
/// file that cannot be read or parsed defines nothing.
pub fn defining_file(dir: &Path, node_name: &str, namespace: &str, name: &str) -> Option<PathBuf> {
    let key = format!("{namespace}/{name}");
    list(dir).ok()?.into_iter().find_map(|listed| {
        let bytes = listed.content.ok()?;
        let pods = manifest::parse(&listed.path, &bytes, node_name).ok()?;
        pods.iter()
            .any(|pod| manifest::full_name(pod) == key)
            .then_some(listed.path)
    })
}

/// Whether a file name is never a manifest (see the module docs).
pub fn ignored(name: &str) -> bool {
    name.starts_with('.') || name.ends_with('~') || (name.starts_with('#') && name.ends_with('#'))
}

#[cfg(test)]
mod tests {
    use super::{defining_file, ignored};

    fn pod(name: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  \
             - name: c\n    image: busybox\n"
        )
    }

    #[test]
    fn the_defining_file_is_the_first_readable_manifest_that_names_the_pod() {
        let dir = tempfile::tempdir().unwrap();
        let write = |file: &str, text: &str| std::fs::write(dir.path().join(file), text).unwrap();
        write(".a-staged.yaml", &pod("web"));
        write("b-broken.yaml", "kind: [");
        write("c-both.yaml", &format!("{}---\n{}", pod("db"), pod("web")));
        write("d-web.yaml", &pod("web"));
        let find = |namespace: &str, name: &str| defining_file(dir.path(), "n1", namespace, name);
        assert_eq!(
            find("default", "web-n1"),
            Some(dir.path().join("c-both.yaml"))
        );
        assert_eq!(
            find("default", "db-n1"),
            Some(dir.path().join("c-both.yaml"))
        );
        assert_eq!(find("default", "web"), None, "names carry the node's");
        assert_eq!(find("other", "web-n1"), None);
        assert_eq!(
            defining_file(&dir.path().join("gone"), "n1", "default", "web-n1"),
            None
        );
    }

    #[test]
    fn dotfiles_and_editor_files_are_ignored() {
        for name in [
            ".web.yaml",
            ".web.yaml.swp",
            "web.yaml~",
            "#web.yaml#",
            ".web.yaml.tmp",
        ] {
            assert!(ignored(name), "{name} should be ignored");
        }
        for name in ["web.yaml", "web.json", "web", "web.yaml.bak", "my#web.yaml"] {
            assert!(!ignored(name), "{name} should be read");
        }
    }
}
