//! A static pod's identity: its UID, its node-suffixed name and its `config.*` annotations.
//!
//! As in the upstream kubelet, a static pod's UID is a hash, so the same
//! manifest always yields the same UID (a kubelet restart finds its running
//! pods again) and any change to it yields a new one (the old pod is stopped,
//! the new one started). What is hashed, in order, into SHA-256:
//!
//! 1. `host:<node name>` — the same manifest on two nodes makes two pods;
//! 2. `file:<path>` — the path the folder source lists (manifests dir joined
//!    with the file name), so the same pod in two files is two pods;
//! 3. the pod as decoded and defaulted, serialized as JSON by `k8s-openapi`
//!    (fields in a fixed order, maps sorted), before the name suffix, node
//!    name and annotations are added.
//!
//! The UID is the first 16 bytes in hex (32 characters, the shape of upstream's
//! MD5-based UIDs). Because step 3 hashes the decoded object, not the bytes,
//! comments, whitespace, key order and YAML-vs-JSON do not change the UID;
//! any change to a value does, including labels and annotations — upstream
//! restarts a static pod on those too. A `metadata.uid` set in the manifest is
//! kept as is, as upstream does.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::{Pod, PodStatus, Toleration};
use sha2::{Digest, Sha256};

/// Annotation naming where the pod came from (`file` for manifests).
pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
/// Annotation holding the hash of the manifest (the generated UID).
pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
/// Annotation holding when the kubelet first saw this version of the pod.
pub const CONFIG_SEEN: &str = "kubernetes.io/config.seen";
/// The `config.source` of pods read from a manifests folder.
pub const FILE_SOURCE: &str = "file";

/// Give a decoded, defaulted and validated pod its static identity.
pub fn assign(pod: &mut Pod, file: &Path, node_name: &str) {
    if pod.metadata.uid.as_deref().unwrap_or_default().is_empty() {
        pod.metadata.uid = Some(content_hash(pod, file, node_name));
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let name = pod.metadata.name.take().unwrap_or_default();
    pod.metadata.name = Some(format!("{name}-{}", node_name.to_lowercase()));
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(CONFIG_SOURCE.into(), FILE_SOURCE.into());
    annotations.insert(CONFIG_HASH.into(), uid);
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_name = Some(node_name.to_owned());
        // A static pod has no API server to reschedule it: it tolerates every
        // NoExecute taint, so node trouble never evicts it.
        let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
        let tolerate_all = Toleration {
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            ..Toleration::default()
        };
        if !tolerations.contains(&tolerate_all) {
            tolerations.push(tolerate_all);
        }
    }
    pod.status = Some(PodStatus {
        phase: Some("Pending".into()),
        ..PodStatus::default()
    });
}

/// The generated UID of `pod` read from `file` on `node_name` (see the module docs).
pub fn content_hash(pod: &Pod, file: &Path, node_name: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!("host:{node_name}").as_bytes());
    hasher.update(format!("file:{}", file.display()).as_bytes());
    // Serializing plain data structs cannot fail; if it ever did, the UID
    // would still be stable, only coarser.
    hasher.update(serde_json::to_vec(pod).unwrap_or_default());
    let digest = hasher.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Stamp when the source first saw this version (this UID) of the pod.
pub fn mark_seen(pod: &mut Pod, when: DateTime<Utc>) {
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(
        CONFIG_SEEN.into(),
        when.to_rfc3339_opts(SecondsFormat::Nanos, true),
    );
}

/// The UID of a pod, empty if it has none.
pub fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}
