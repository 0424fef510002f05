//! Pulling images from OCI and Docker registries into the [`Store`], with the `oci-client` crate.

use super::auth::Keyring;
use super::{Image, Result, Store};

/// When to contact the registry (Kubernetes' `imagePullPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Always resolve the name again (layers already present are not fetched again).
    Always,
    /// Pull only when no image of that name is stored.
    IfNotPresent,
    /// Never pull; a missing image is an error.
    Never,
}

/// How a pull reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Nothing (the kubelet, `--quiet`).
    Quiet,
    /// One bar per layer on stderr (when it is a terminal).
    Bars,
}

/// What a pull needs besides the name.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Credentials to offer.
    pub keyring: Keyring,
    /// The platform to pick from an index, e.g. `linux/amd64` (default: the host's).
    pub platform: String,
    /// Registries reached over plain HTTP besides loopback ones (`host:port`).
    pub insecure_registries: Vec<String>,
    /// Attempts per request on transient errors (connection reset, 5xx, 429).
    pub retries: u32,
    /// How to report progress.
    pub progress: Progress,
}

/// Pulls `name` into `store` and records it: resolves the name, picks the
/// platform's manifest from an index, fetches config and missing layers in
/// parallel (checked against their digests), unpacks each layer once.
pub async fn pull(store: &Store, name: &str, options: &PullOptions) -> Result<Image> {
    let _ = (store, name, options);
    todo!("pull: pull")
}

/// Returns the stored image for `name`, pulling it first as `policy` says.
pub async fn ensure(
    store: &Store,
    name: &str,
    policy: PullPolicy,
    options: &PullOptions,
) -> Result<Image> {
    let _ = (store, name, policy, options);
    todo!("pull: ensure")
}
