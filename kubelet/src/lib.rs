//! The peapod node agent: pod workers, probes, node registration (grows in later issues).
//!
//! # Layout
//! - [`source`]: the pods this node should run, read from a static manifests
//!   folder (`source::manifest` parses one file, `source::folder` watches).
//!
//! Start reading at `source::folder`.
#![warn(missing_docs)]

pub mod source;
