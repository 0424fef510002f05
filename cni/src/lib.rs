//! CNI: a spec-exact bridge plugin, host-local IPAM and a caller for plugin chains (grows in later issues).
//!
//! # Layout
//! - [`spec`]: the CNI protocol types — network configuration, the `CNI_*`
//!   environment, results of every supported version, error JSON, versions.
//! - [`plugin`]: the skeleton every plugin binary runs: read stdin and the
//!   environment, dispatch to the verb callbacks, print the result or error.
//! - [`ipam`]: host-local IP address management — a pure allocator over a
//!   [`ipam::Store`], the disk store shared with the reference `host-local`,
//!   and an in-memory store for tests.
//!
//! Start reading at `src/bin/peapod-host-local.rs`, then [`plugin::dispatch`].
#![warn(missing_docs)]

pub mod delegate;
pub mod ipam;
pub mod link;
pub mod masq;
pub mod netns;
pub mod plugin;
pub mod spec;
pub mod spoofchk;
