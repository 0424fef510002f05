//! The kubelet's local API on a unix socket (`/run/peapod/kubelet.sock`), used by the
//! `peapod` CLI.
//!
//! - [`node`]: the seam to the pod manager ([`Node`]).

pub mod node;

pub use node::{ContainerRef, Node, NodeError, RuntimeRef};
