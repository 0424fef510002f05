//! The desired pods of a manifests folder, and the events that move a consumer to them.
//!
//! Pure bookkeeping, no I/O: the folder task hands in a listing (every
//! manifest file with its bytes) and gets back the [`SourceEvent`]s that take
//! the pods it announced so far to the pods the listing describes. Keeping
//! this apart from the watching makes every rule here testable without a
//! file system or a clock.
//!
//! Rules:
//! - A file is all or nothing: its pods come from its last good content.
//! - A file that turns bad keeps its last good pods running and reports the
//!   error once per distinct message. (Upstream's inotify path does the same,
//!   but its 20 s relist then drops pods of unparsable files, so there a
//!   typo in an edit stops the pod within 20 s; here the pod runs on, as
//!   the issue asks, until the file is fixed or deleted.)
//! - A deleted file removes its pods.
//! - A pod (`namespace/name`) belongs to the file that defined it first; a
//!   later file defining it too is refused with an error naming both.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use sha2::{Digest, Sha256};

use super::identity;
use super::manifest::{self, full_name, ManifestError};
use super::SourceEvent;

/// One manifest file as the folder task read it.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Its path (manifests dir joined with the file name).
    pub path: PathBuf,
    /// Its bytes, or why they could not be read.
    pub content: Result<Vec<u8>, String>,
}

/// What is known of one manifest file.
#[derive(Debug, Default)]
struct FileState {
    /// SHA-256 of the content last parsed, to skip unchanged files on rescans.
    digest: Option<[u8; 32]>,
    /// The pods of the last good content (unstamped).
    pods: Vec<Pod>,
    /// The error last reported for this file, if its current content is bad.
    error: Option<String>,
}

/// The desired pods of one folder and the pods announced to the consumer.
#[derive(Debug)]
pub struct Desired {
    node_name: String,
    files: BTreeMap<PathBuf, FileState>,
    /// Announced pods by `namespace/name`, with `config.seen` stamped.
    announced: BTreeMap<String, Pod>,
}

impl Desired {
    /// Nothing desired yet, for pods of node `node_name`.
    pub fn new(node_name: impl Into<String>) -> Self {
        Desired {
            node_name: node_name.into(),
            files: BTreeMap::new(),
            announced: BTreeMap::new(),
        }
    }

    /// The pods currently announced, by `namespace/name`.
    pub fn pods(&self) -> &BTreeMap<String, Pod> {
        &self.announced
    }

    /// Take in a full listing of the folder (files not in it are gone) and
    /// return the events that bring the consumer up to date. `now` stamps
    /// `config.seen` on pods announced by this call.
    pub fn apply(&mut self, mut listing: Vec<Listed>, now: DateTime<Utc>) -> Vec<SourceEvent> {
        listing.sort_by(|a, b| a.path.cmp(&b.path));
        self.files
            .retain(|path, _| listing.iter().any(|l| &l.path == path));
        let mut events = Vec::new();
        for listed in listing {
            if let Some(error) = self.update_file(listed) {
                events.push(SourceEvent::Error {
                    file: error.file().to_path_buf(),
                    message: error.to_string(),
                });
            }
        }
        events.extend(self.announce(now));
        events
    }

    /// Re-read one file's state; the error to report, if it is new.
    fn update_file(&mut self, listed: Listed) -> Option<ManifestError> {
        let path = listed.path;
        let outcome = match listed.content {
            Err(message) => (
                None,
                Err(ManifestError::Read {
                    file: path.clone(),
                    message,
                }),
            ),
            Ok(bytes) => {
                let digest: [u8; 32] = Sha256::digest(&bytes).into();
                let state = self.files.get(&path);
                // Unchanged and good: nothing to do. A bad file is re-parsed
                // every time, since a duplicate may have gone away meanwhile.
                if state.is_some_and(|s| s.digest == Some(digest) && s.error.is_none()) {
                    return None;
                }
                let parsed = manifest::parse(&path, &bytes, &self.node_name)
                    .and_then(|pods| self.claim(&path, pods));
                (Some(digest), parsed)
            }
        };
        let state = self.files.entry(path).or_default();
        state.digest = outcome.0;
        match outcome.1 {
            Ok(pods) => {
                state.pods = pods;
                state.error = None;
                None
            }
            Err(error) => {
                let message = error.to_string();
                let new = state.error.as_deref() != Some(message.as_str());
                state.error = Some(message);
                new.then_some(error)
            }
        }
    }

    /// Refuse `pods` of `path` if another file already defines one of them.
    fn claim(&self, path: &PathBuf, pods: Vec<Pod>) -> Result<Vec<Pod>, ManifestError> {
        for pod in &pods {
            let name = full_name(pod);
            let owner = self.files.iter().find(|(other, state)| {
                *other != path && state.pods.iter().any(|p| full_name(p) == name)
            });
            if let Some((other, _)) = owner {
                return Err(ManifestError::Duplicate {
                    file: path.clone(),
                    pod: name,
                    other: other.clone(),
                });
            }
        }
        Ok(pods)
    }

    /// Diff the files' pods against what was announced.
    fn announce(&mut self, now: DateTime<Utc>) -> Vec<SourceEvent> {
        let desired: BTreeMap<String, &Pod> = self
            .files
            .values()
            .flat_map(|f| f.pods.iter())
            .map(|p| (full_name(p), p))
            .collect();
        let mut events = Vec::new();
        let gone: Vec<String> = self
            .announced
            .keys()
            .filter(|k| !desired.contains_key(*k))
            .cloned()
            .collect();
        for name in gone {
            if let Some(pod) = self.announced.remove(&name) {
                events.push(SourceEvent::Remove(pod));
            }
        }
        for (name, pod) in desired {
            let existed = match self.announced.get(&name) {
                Some(p) if identity::uid(p) == identity::uid(pod) => continue,
                Some(_) => true,
                None => false,
            };
            let mut pod = pod.clone();
            identity::mark_seen(&mut pod, now);
            self.announced.insert(name, pod.clone());
            events.push(if existed {
                SourceEvent::Update(pod)
            } else {
                SourceEvent::Add(pod)
            });
        }
        events
    }
}
