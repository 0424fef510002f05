//! Image references, normalised as Docker and containerd do (`nginx` → `docker.io/library/nginx:latest`).

use super::Result;
use std::fmt;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host and optional port, e.g. `docker.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// Repository path, e.g. `library/nginx`, `team/app`.
    pub repository: String,
    /// The tag; `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    /// The digest, `sha256:…`, when given with `@`.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses and normalises `input`, e.g. `nginx`, `nginx:1.25`,
    /// `127.0.0.1:5000/team/app:1`, `repo@sha256:…`.
    pub fn parse(input: &str) -> Result<Reference> {
        let _ = input;
        todo!("reference: parse")
    }

    /// Whether the registry is on a loopback address (`localhost`, 127.0.0.0/8, `[::1]`),
    /// where plain HTTP is allowed as Docker allows it.
    pub fn is_loopback(&self) -> bool {
        todo!("reference: is_loopback")
    }
}

impl fmt::Display for Reference {
    /// The full normalised name: `registry/repository[:tag][@digest]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let _ = f;
        todo!("reference: display")
    }
}
