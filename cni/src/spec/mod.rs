//! The CNI protocol (SPEC.md 1.1): configuration, environment, results, errors and versions.
//!
//! Everything here is plain data plus parsing and emission; no I/O. Plugins
//! and callers share these types so both sides agree on the wire format.

pub mod cidr;
pub mod config;
pub mod env;
pub mod error;
pub mod result;
pub mod version;

pub use cidr::Cidr;
pub use config::{Attachment, NetConf, NetConfList};
pub use env::{CniArgs, Command, Environment};
pub use error::{Code, Error, ErrorResult};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use version::{Version, VersionInfo};
