//! IPAM
