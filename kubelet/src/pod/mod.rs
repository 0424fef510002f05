//! Running pods: a worker per pod that drives the runtime (sandbox, CNI, image store,
//! shims) and reports a v1 `PodStatus`, and the manager that feeds workers from the pod
//! source and answers the local API.
//!
//! - [`manager`]: workers by pod, the [`crate::api::Node`] view.
//! - [`worker`]: one pod's lifecycle, following [`plan`] (sandbox, init containers in
//!   order, native sidecars, app containers, restarts with back-off, kills), and
//!   [`termination`] (preStop, stop signal, grace, SIGKILL; termination messages).
//! - [`cri`]: the node's container operations (every OS side effect).
//! - [`process`]: a container's process and mounts from the pod and image.
//! - [`security`]: securityContext (capabilities, privileged, seccomp, runAsNonRoot, sysctls).
//! - [`resources`] ([`quantity`]): requests and limits as cgroup values and OOM scores.
//! - [`state`], [`status`], [`events`]: what workers observed, as v1 status and events.

pub mod cri;
pub mod events;
pub mod manager;
pub mod plan;
pub mod process;
pub mod quantity;
pub mod resources;
pub mod security;
pub mod state;
pub mod status;
pub mod termination;
pub mod worker;

#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod resources_tests;
#[cfg(test)]
mod status_tests;

pub use cri::{Cri, NodeConfig};
pub use manager::PodManager;
