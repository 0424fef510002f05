//! Host-local IP address management, compatible with the reference `host-local` plugin.
//!
//! - [`config`]: the `ipam` section (ranges, routes, dataDir, resolvConf) and requested IPs.
//! - [`range`]: ranges and range sets (one address per set: dual-stack = two sets).
//! - [`allocator`]: the pure allocation logic over a [`Store`].
//! - [`store`]: the [`Store`] trait; [`disk`] (flock'd files, the reference's layout) and
//!   [`memory`] (for tests) implement it.
//! - [`resolv_conf`]: the `resolvConf` file turned into a result's `dns`.

pub mod allocator;
pub mod config;
pub mod disk;
pub mod memory;
pub mod range;
pub mod resolv_conf;
pub mod store;

pub use allocator::Allocator;
pub use config::IpamConfig;
pub use disk::DiskStore;
pub use memory::MemoryStore;
pub use range::{Range, RangeSet};
pub use store::{Reservation, Store};
