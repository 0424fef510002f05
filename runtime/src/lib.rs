//! peapod's OCI runtime: run containers from OCI bundles, as runc does.
//!
//! # Layout
//! - [`bundle`]: load and validate a bundle's `config.json`.
//! - [`container`]: the container record, its status, the state store and one
//!   file per lifecycle operation (create, start, kill, delete, exec, update, pause, events).
//! - [`process`]: spawning the container's init with one `clone`, the typed
//!   parent/child channel, and the in-container setup (`init`).
//! - [`namespace`], [`idmap`], [`rootfs`], [`cgroup`], [`capability`], [`seccomp`],
//!   [`terminal`]: one OS concern each.
//! - [`image`]: the image store — pulls from registries, layers, container roots.
//! - [`sandbox`]: pod sandboxes — the namespaces and cgroup a pod's containers share, and
//!   their bundles.
//! - [`shim`]: the per-container supervisor that holds a container's output, writes its
//!   CRI log ([`logs`]) and records how it exited, surviving its starter.
//!
//! Start reading at `container::create`.
#![warn(missing_docs)]

pub mod bundle;
pub mod capability;
pub mod cgroup;
pub mod container;
pub mod defaults;
pub mod hooks;
pub mod idmap;
pub mod image;
pub mod logs;
pub mod namespace;
pub mod process;
pub mod rootfs;
pub mod sandbox;
pub mod seccomp;
pub mod shim;
pub mod terminal;

/// An error and its sources, `: `-joined, each cause once (a message that already quotes its
/// source is not repeated): for log lines and messages that cross a crate boundary as text.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}
