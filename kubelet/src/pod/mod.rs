//! Running pods: a worker per pod that drives the runtime (sandbox, CNI, image store,
//! shims) and reports a v1 `PodStatus`, and the manager that feeds workers from the pod
//! source and answers the local API.
//!
//! - [`manager`]: workers by pod, the [`crate::api::Node`] view.
//! - [`worker`]: one pod's lifecycle (sandbox, init containers in order, app containers,
//!   restarts with back-off, graceful stop).
//! - [`cri`]: the node's container operations (every OS side effect).
//! - [`process`]: a container's process and mounts from the pod and image.
//! - [`handler`]: the actions of probes and lifecycle hooks (exec, httpGet, tcpSocket,
//!   grpc, sleep), run against a container.
//! - [`probe`]: startup, liveness and readiness probers per container.
//! - [`state`], [`status`], [`events`]: what workers observed, as v1 status and events.

pub mod cri;
pub mod events;
pub mod handler;
pub mod manager;
pub mod probe;
pub mod process;
pub mod state;
pub mod status;
pub mod worker;

#[cfg(test)]
mod status_tests;

pub use cri::{Cri, NodeConfig};
pub use manager::PodManager;
