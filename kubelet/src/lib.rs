//! The peapod node agent: pod workers, probes, node registration (grows in later issues).
//!
//! # Layout
//! - [`source`]: the pods this node should run, read from a static manifests
//!   folder (`source::manifest` parses one file, `source::folder` watches).
//! - [`netns`]: dialing TCP from inside a pod's network namespace (probes,
//!   port-forward).
//! - [`network`]: a pod's network through CNI (attach, detach, status), with
//!   peapod's default network when the node has no config.
//! - [`pod`]: the pod manager and one worker per pod, driving the runtime.
//! - [`node`]: the v1 Node and Lease this node registers and renews, from the host.
//! - [`cluster`]: the API server side: registration, lease, pods bound to the node, their
//!   status, events and volume data.
//! - [`api`]: the local API on a unix socket that the `peapod` CLI talks to.
//! - [`stream`]: exec, attach and port-forward over WebSocket and SPDY/3.1 (server and CLI sides).
//! - [`server`]: the kubelet API on :10250 over TLS (authn, authz, stats, metrics).
//!
//! Start reading at `source::folder`.
#![warn(missing_docs)]

pub mod api;
pub mod cluster;
pub mod netns;
pub mod network;
pub mod node;
pub mod pod;
pub mod server;
pub mod source;
pub mod stream;
