//! The node as a member of a Kubernetes cluster: everything that talks to the API server
//! (`--kubeconfig`). Without it the kubelet runs static pods only and nothing here starts.
//!
//! The pure builders of the Node and Lease objects live in [`crate::node`]; this module
//! sends them, watches the pods bound to the node, reports their status and events, and
//! serves the data their volumes need.
//!
//! - [`client`]: the API client from `--kubeconfig`.
//! - [`config`]: the KubeletConfiguration file (`--config`).
//! - [`registration`]: the Node's registration and status reports.
//! - [`lease`]: the node Lease, the kubelet's heartbeat.
//! - [`objects`]: configMaps, secrets and tokens for volumes and env, watched per object.
//! - [`tokens`]: service account tokens (TokenRequest), renewed before they expire.
//! - [`events`]: the pods' events posted as core/v1 Events, counted and rate-limited.
//! - [`pods`]: the pods bound to this node (`spec.nodeName`), a pod source; [`pods::start`].
//! - [`pod_status`]: the status manager: `pods/status` patches, deletion of stopped pods;
//!   [`diff`]: two-way strategic merge patches.
//! - [`mirror`]: mirror pods for the static pods.
//! - [`admission`]: whether a pod fits the node's allocatable (`OutOf*` rejections).

pub mod admission;
pub mod client;
pub mod config;
pub mod diff;
pub mod events;
pub mod lease;
pub mod mirror;
pub mod objects;
pub mod pod_status;
pub mod pods;
pub mod registration;
pub mod tokens;
