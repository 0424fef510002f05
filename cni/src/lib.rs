//! CNI: a spec-exact bridge plugin, host-local IPAM and a caller for plugin chains.
//!
//! # Layout
//! - [`spec`]: the CNI protocol types — network configuration, the `CNI_*`
//!   environment, results of every supported version, error JSON, versions.
//! - [`plugin`]: the skeleton every plugin binary runs: read stdin and the
//!   environment, dispatch to the verb callbacks, print the result or error.
//! - [`caller`]: what a runtime uses — load a network config and run its plugin
//!   chain (ADD/DEL/CHECK/GC/STATUS) with a result cache and timeouts.
//! - [`ipam`]: host-local IP address management — a pure allocator over a
//!   [`ipam::Store`], the disk store shared with the reference `host-local`,
//!   and an in-memory store for tests.
//! - The bridge plugin's parts: [`netns`] (work inside a pod's network
//!   namespace without a thread living there), [`link`] (bridge, veth,
//!   addresses, routes over rtnetlink), [`masq`] (ipMasq chains as the
//!   reference names them), [`spoofchk`] (macspoofchk via nftables), [`vlan`]
//!   (access and trunk VLANs of a pod's bridge port) and
//!   [`delegate`] (running the IPAM plugin from `CNI_PATH`).
//!
//! Start reading at `src/bin/peapod-bridge.rs` and `src/bin/peapod-host-local.rs`,
//! then [`plugin::dispatch`].
#![warn(missing_docs)]

pub mod caller;
pub mod delegate;
pub mod ipam;
pub mod link;
pub mod masq;
pub mod netns;
pub mod plugin;
pub mod spec;
pub mod spoofchk;
pub mod vlan;
