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
//! - [`sandbox_config`], [`dns`]: the pod's sandbox (namespaces, names, `/etc` files, host
//!   ports) from its spec.
//! - [`volume`]: the pod's volumes (set up, refreshed, torn down); [`downward`]: the
//!   downward API values volumes and env share.
//! - [`security`]: securityContext (capabilities, privileged, seccomp, runAsNonRoot, sysctls).
//! - [`resources`] ([`quantity`]): requests and limits as cgroup values and OOM scores.
//! - [`handler`]: the actions of probes and lifecycle hooks (exec, httpGet, tcpSocket,
//!   grpc, sleep), run against a container.
//! - [`probe`]: startup, liveness and readiness probers per container.
//! - [`state`], [`status`], [`events`]: what workers observed, as v1 status and events;
//!   [`observer`]: those changes and events as they happen, for reporters to the API server.

pub mod cri;
pub mod dns;
pub mod downward;
pub mod events;
pub mod handler;
pub mod manager;
pub mod observer;
pub mod plan;
pub mod probe;
pub mod process;
pub mod quantity;
pub mod resources;
pub mod sandbox_config;
pub mod security;
pub mod state;
pub mod status;
pub mod termination;
pub mod volume;
pub mod worker;

#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod resources_tests;
#[cfg(test)]
mod status_tests;

pub use cri::{Cri, NodeConfig};
pub use manager::PodManager;
