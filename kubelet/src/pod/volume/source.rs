//! Where configMaps, secrets and service account tokens come from: a trait the API
//! server client implements; without one, no object exists and no token can be had.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccountTokenProjection};

/// The configMaps and secrets of the pods' namespaces, and their service accounts' tokens.
///
/// Called from blocking threads (volume set-up and container start run under
/// `spawn_blocking`): an implementation may wait for the API server, with a timeout.
pub trait ObjectSource: Send + Sync {
    /// The configMap `namespace/name`; `Ok(None)` when it does not exist.
    fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, String>;
    /// The secret `namespace/name`; `Ok(None)` when it does not exist.
    fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, String>;
    /// A token of `pod`'s service account for a projected `serviceAccountToken` source,
    /// bound to the pod. Without an API server there is none.
    fn service_account_token(
        &self,
        pod: &Pod,
        projection: &ServiceAccountTokenProjection,
    ) -> Result<String, String> {
        let _ = (pod, projection);
        Err("failed to fetch token: the node has no API server (no --kubeconfig)".into())
    }
}

/// A node without an API server: no configMap or secret exists.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoApiServer;

impl ObjectSource for NoApiServer {
    fn config_map(&self, _: &str, _: &str) -> Result<Option<ConfigMap>, String> {
        Ok(None)
    }

    fn secret(&self, _: &str, _: &str) -> Result<Option<Secret>, String> {
        Ok(None)
    }
}

/// The kind of object a reference names, with upstream's wording for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A configMap.
    ConfigMap,
    /// A secret.
    Secret,
}

impl Kind {
    /// `configmap "x" not found` / `secret "x" not found`.
    pub fn not_found(self, name: &str) -> String {
        match self {
            Kind::ConfigMap => format!("configmap {name:?} not found"),
            Kind::Secret => format!("secret {name:?} not found"),
        }
    }

    /// The kind as upstream names it in key errors (`ConfigMap`, `Secret`).
    pub fn title(self) -> &'static str {
        match self {
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
        }
    }
}

/// The keys and bytes of a configMap or secret, or None when it does not exist.
pub fn data(
    source: &dyn ObjectSource,
    kind: Kind,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
    let mut out = BTreeMap::new();
    match kind {
        Kind::ConfigMap => {
            let Some(map) = source.config_map(namespace, name)? else {
                return Ok(None);
            };
            for (k, v) in map.data.unwrap_or_default() {
                out.insert(k, v.into_bytes());
            }
            for (k, v) in map.binary_data.unwrap_or_default() {
                out.insert(k, v.0);
            }
        }
        Kind::Secret => {
            let Some(secret) = source.secret(namespace, name)? else {
                return Ok(None);
            };
            for (k, v) in secret.data.unwrap_or_default() {
                out.insert(k, v.0);
            }
            for (k, v) in secret.string_data.unwrap_or_default() {
                out.insert(k, v.into_bytes());
            }
        }
    }
    Ok(Some(out))
}
