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
