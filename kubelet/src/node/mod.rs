//! The node itself as the API sees it: the v1 `Node` the kubelet registers (labels,
//! taints, capacity, allocatable, addresses, nodeInfo, conditions) and its Lease, built
//! from the host as the upstream kubelet builds them. No API client here: these are the
//! objects a registration loop creates, patches and renews.
//!
//! - [`config`]: the operator's settings (`--node-labels`, `--register-with-taints`, ...).
//! - [`host`]: the host's facts, read from paths given as parameters.
//! - [`capacity`]: capacity, allocatable, eviction thresholds and pressure.
//! - [`conditions`]: the node conditions with stable transition times.
//! - [`status`]: the `Node` and its `NodeStatus`; [`lease`]: the node Lease.
//!
//! One status computation:
//! `HostFacts::read` (and `host::pids`) → `EvictionThresholds::pressure` →
//! `Conditions::observe` →
//! `node_status` → `node`; `status_changed` says whether to post it before the next
//! periodic report.

pub mod capacity;
pub mod conditions;
pub mod config;
pub mod host;
pub mod lease;
pub mod status;
