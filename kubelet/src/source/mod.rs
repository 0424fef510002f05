//! Where the kubelet learns which pods to run: the static manifests folder.
//!
//! - [`manifest`]: one file → validated, defaulted `v1.Pod`s with their static
//!   identity (helpers: `defaults`, `validate`, `identity`).
//! - [`folder`]: watch a folder, stream [`SourceEvent`]s.
//! - `desired`: the pure bookkeeping behind `folder` (what is desired, what
//!   was announced, which events close the gap).

pub mod defaults;
mod desired;
pub mod folder;
pub mod identity;
pub mod manifest;
pub mod validate;

#[cfg(test)]
mod desired_tests;
#[cfg(test)]
mod manifest_tests;

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;

pub use desired::{Desired, Listed};
pub use folder::{run as watch_folder, FolderConfig};
pub use manifest::{full_name, ManifestError};

/// A change in the pods a source wants running.
///
/// Per-pod deltas, keyed by `namespace/name` (unique among static pods), fit
/// a pod worker manager with one worker per pod: each event goes to one
/// worker as is, and rescans that change nothing cost it nothing. A full
/// desired set would make the manager diff every 20 s what the source, which
/// must keep that state anyway, already knows.
#[derive(Debug, Clone)]
pub enum SourceEvent {
    /// A pod to start: its name was not announced before.
    Add(Pod),
    /// A pod whose manifest changed: same `namespace/name`, new UID. The
    /// worker stops the pod it runs under that name (the old UID) and then
    /// starts this one, as upstream restarts a static pod whose file changed.
    Update(Pod),
    /// A pod to stop and remove: its file, or its document, is gone.
    Remove(Pod),
    /// A manifest (or the folder itself) could not be used. Pods the file
    /// described before it went bad stay as they are.
    Error {
        /// The manifest file, or the folder for folder-level problems.
        file: PathBuf,
        /// What is wrong, naming the file, document and field.
        message: String,
    },
    /// The first full listing has been announced: pods not announced by now
    /// are not wanted, so a restarted kubelet may clean up leftovers.
    Synced,
}
