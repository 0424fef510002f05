//! The kubelet's local API on a unix socket (`/run/peapod/kubelet.sock`), used by the
//! `peapod` CLI.
//!
//! - [`node`]: the seam to the pod manager ([`Node`]).
//! - [`server`]: the routes, [`bind`] and [`serve`]; exec and port-forward are
//!   handed to [`crate::stream`].
//! - [`pods`]: pods and events; [`logs`]: container logs; [`manifests`]: apply
//!   and delete, by writing the manifests folder.
//! - [`status`]: errors as v1 `Status` bodies, and those bodies read back by a client.

pub mod logs;
pub mod manifests;
pub mod node;
pub mod pods;
pub mod server;
pub mod status;

pub use manifests::{Action, Applied, ApplyResult};
pub use node::{ContainerCgroup, ContainerRef, Node, NodeError, PodCgroups, RuntimeRef};
pub use server::{bind, router, serve};
pub use status::{ApiError, ServerError};
