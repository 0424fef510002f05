//! Mirror pods: the API server's read-only copies of the node's static pods, so that
//! `kubectl get pods` shows them, as upstream's mirror client makes them.
//!
//! A mirror pod has the static pod's name, namespace and spec, the annotation
//! `kubernetes.io/config.mirror` set to the static pod's hash, and the Node as owner (so
//! it goes when the Node does). It is created when missing, deleted and made again when
//! its hash no longer matches (the manifest changed) or someone deleted it, and deleted
//! when the static pod is gone. Deletes carry grace 0 and the mirror's UID. The status
//! manager patches its status from the static pod's. The decisions are pure ([`plan`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::PostParams;
use kube::Api;

use super::pod_status::delete_pod;
use super::pods::{View, CONFIG_MIRROR};
use crate::source::full_name;
use crate::source::identity::{uid, CONFIG_HASH, CONFIG_SOURCE, FILE_SOURCE};

/// The Node the mirror pods belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeOwner {
    /// The Node's name.
    pub name: String,
    /// The Node's UID.
    pub uid: String,
}

/// One write to the API server.
#[derive(Debug, Clone, PartialEq)]
pub enum MirrorWrite {
    /// Create this mirror pod.
    Create(Box<Pod>),
    /// Delete the mirror pod with this UID (grace 0).
    Delete {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Its UID (the precondition).
        uid: String,
    },
}

/// The hash of a static pod (None: not a static pod).
fn static_hash(pod: &Pod) -> Option<&str> {
    let annotations = pod.metadata.annotations.as_ref()?;
    if annotations.get(CONFIG_SOURCE).map(String::as_str) != Some(FILE_SOURCE) {
        return None;
    }
    annotations.get(CONFIG_HASH).map(String::as_str)
}

fn mirror_hash(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(CONFIG_MIRROR)
        .map(String::as_str)
}

/// The mirror pod of `static_pod`, owned by `node`.
pub fn desired(static_pod: &Pod, node: &NodeOwner) -> Pod {
    let mut mirror = static_pod.clone();
    let hash = static_hash(static_pod).unwrap_or_default().to_string();
    let metadata = &mut mirror.metadata;
    // The API server gives the mirror its own UID, version and times.
    metadata.uid = None;
    metadata.resource_version = None;
    metadata.creation_timestamp = None;
    metadata.deletion_timestamp = None;
    metadata.deletion_grace_period_seconds = None;
    metadata.managed_fields = None;
    metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(CONFIG_MIRROR.into(), hash);
    metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.name.clone(),
        uid: node.uid.clone(),
        ..OwnerReference::default()
    }]);
    mirror.status = None;
    mirror
}

/// The writes that make the API's mirror pods match the node's static pods. `local` is
/// every pod the node runs (static pods being stopped count as gone); `mirrors` the
/// mirror pods the API has; `deleted` the mirror UIDs already deleted; `node` the owner,
/// once the Node is registered (no creates before).
pub fn plan(
    local: &[Pod],
    mirrors: &BTreeMap<String, Pod>,
    deleted: &HashSet<String>,
    node: Option<&NodeOwner>,
) -> Vec<MirrorWrite> {
    let statics: BTreeMap<String, &Pod> = local
        .iter()
        .filter(|p| static_hash(p).is_some() && p.metadata.deletion_timestamp.is_none())
        .map(|p| (full_name(p), p))
        .collect();
    let mut writes = Vec::new();
    for (key, mirror) in mirrors {
        let current = statics
            .get(key)
            .is_some_and(|s| static_hash(s) == mirror_hash(mirror))
            && mirror.metadata.deletion_timestamp.is_none();
        if !current && !deleted.contains(uid(mirror)) {
            writes.push(MirrorWrite::Delete {
                namespace: mirror.metadata.namespace.clone().unwrap_or_default(),
                name: mirror.metadata.name.clone().unwrap_or_default(),
                uid: uid(mirror).to_string(),
            });
        }
    }
    if let Some(node) = node {
        for (key, pod) in &statics {
            if !mirrors.contains_key(key) {
                writes.push(MirrorWrite::Create(Box::new(desired(pod, node))));
            }
        }
    }
    writes
}

/// Keeps the mirror pods in line, against the API server.
pub struct MirrorPods {
    client: kube::Client,
    node_name: String,
    node: Option<NodeOwner>,
    deleted: HashSet<String>,
    /// Mirrors created and not yet seen in the watch, by `namespace/name`: not created
    /// again until [`CREATED_TTL`] has passed (then the create is retried, in case it was
    /// deleted before this kubelet saw it).
    created: HashMap<String, Instant>,
}

/// How long a created mirror pod may take to show up in the watch.
const CREATED_TTL: Duration = Duration::from_secs(30);

impl MirrorPods {
    /// Mirror pods for the static pods of `node_name`.
    pub fn new(client: kube::Client, node_name: &str) -> MirrorPods {
        MirrorPods {
            client,
            node_name: node_name.to_string(),
            node: None,
            deleted: HashSet::new(),
            created: HashMap::new(),
        }
    }

    /// One round, once every pod source has listed (before that a static pod that is
    /// merely not read yet would lose its mirror). API errors are logged and retried on
    /// the next round.
    pub async fn sync(&mut self, view: &View, local: &[Pod], all_synced: bool) {
        if !all_synced || !view.synced {
            return;
        }
        let live: HashSet<&str> = view.mirrors.values().map(uid).collect();
        self.deleted.retain(|u| live.contains(u.as_str()));
        self.created
            .retain(|key, at| !view.mirrors.contains_key(key) && at.elapsed() < CREATED_TTL);
        // The Node is looked up only when there is a mirror to make.
        if self.node.is_none() && local.iter().any(|p| static_hash(p).is_some()) {
            self.node = self.owner().await;
        }
        for write in plan(local, &view.mirrors, &self.deleted, self.node.as_ref()) {
            match write {
                MirrorWrite::Create(pod) if self.created.contains_key(&full_name(&pod)) => {}
                MirrorWrite::Create(pod) => {
                    if self.create(&pod).await {
                        self.created.insert(full_name(&pod), Instant::now());
                    }
                }
                MirrorWrite::Delete {
                    namespace,
                    name,
                    uid,
                } => {
                    if delete_pod(&self.client, &namespace, &name, &uid).await {
                        self.deleted.insert(uid);
                    }
                }
            }
        }
    }

    /// Create a mirror pod; whether it exists now.
    async fn create(&self, pod: &Pod) -> bool {
        let key = full_name(pod);
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        match api.create(&PostParams::default(), pod).await {
            Ok(_) => {
                tracing::info!(pod = %key, "mirror pod created");
                true
            }
            // Its watch event has not arrived yet.
            Err(kube::Error::Api(status)) if status.is_already_exists() => true,
            Err(e) => {
                tracing::warn!(pod = %key, "creating the mirror pod (will retry): {e}");
                false
            }
        }
    }

    /// The Node's name and UID, once it is registered.
    async fn owner(&self) -> Option<NodeOwner> {
        let api: Api<Node> = Api::all(self.client.clone());
        match api.get(&self.node_name).await {
            Ok(node) => Some(NodeOwner {
                name: self.node_name.clone(),
                uid: node.metadata.uid.unwrap_or_default(),
            }),
            Err(e) => {
                tracing::debug!(node = %self.node_name, "mirror pods wait for the Node: {e}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn static_pod(hash: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "etcd-node-a", "namespace": "kube-system", "uid": hash,
                "creationTimestamp": "2026-11-22T10:00:00Z",
                "annotations": {
                    "kubernetes.io/config.source": "file",
                    "kubernetes.io/config.hash": hash,
                    "kubernetes.io/config.seen": "2026-11-22T10:00:00.000000000Z"
                }
            },
            "spec": {"nodeName": "node-a", "containers": [{"name": "etcd", "image": "etcd"}]},
            "status": {"phase": "Running"}
        }))
        .expect("a pod")
    }

    fn node() -> NodeOwner {
        NodeOwner {
            name: "node-a".into(),
            uid: "node-uid".into(),
        }
    }

    fn mirror(hash: &str, uid: &str) -> Pod {
        let mut pod = desired(&static_pod(hash), &node());
        pod.metadata.uid = Some(uid.into());
        pod
    }

    fn mirrors(pods: &[Pod]) -> BTreeMap<String, Pod> {
        pods.iter().map(|p| (full_name(p), p.clone())).collect()
    }

    #[test]
    fn the_mirror_copies_the_static_pod_with_hash_and_node_owner() {
        let mirror = desired(&static_pod("h1"), &node());
        let json = serde_json::to_value(&mirror).expect("json");
        assert_eq!(json["metadata"]["name"], "etcd-node-a");
        assert_eq!(json["metadata"]["annotations"][CONFIG_MIRROR], "h1");
        assert_eq!(json["metadata"]["annotations"][CONFIG_SOURCE], "file");
        assert_eq!(
            json["metadata"]["ownerReferences"],
            serde_json::json!([{"apiVersion": "v1", "kind": "Node", "name": "node-a", "uid": "node-uid"}])
        );
        assert!(json["metadata"].get("uid").is_none());
        assert!(json["metadata"].get("creationTimestamp").is_none());
        assert!(json.get("status").is_none());
        assert_eq!(json["spec"]["nodeName"], "node-a");
    }

    #[test]
    fn a_missing_mirror_is_created_once_the_node_is_known() {
        let local = [static_pod("h1")];
        let none = BTreeMap::new();
        assert!(plan(&local, &none, &HashSet::new(), None).is_empty());
        let writes = plan(&local, &none, &HashSet::new(), Some(&node()));
        assert_eq!(
            writes,
            vec![MirrorWrite::Create(Box::new(desired(&local[0], &node())))]
        );
        assert!(plan(
            &local,
            &mirrors(&[mirror("h1", "m1")]),
            &HashSet::new(),
            Some(&node())
        )
        .is_empty());
    }

    #[test]
    fn a_stale_or_deleted_mirror_is_deleted_then_made_again() {
        let local = [static_pod("h2")];
        let stale = mirrors(&[mirror("h1", "m1")]);
        let delete = MirrorWrite::Delete {
            namespace: "kube-system".into(),
            name: "etcd-node-a".into(),
            uid: "m1".into(),
        };
        assert_eq!(
            plan(&local, &stale, &HashSet::new(), Some(&node())),
            vec![delete.clone()]
        );
        // Deleted already: wait for the watch to show it gone, then create.
        let deleted = HashSet::from(["m1".to_string()]);
        assert!(plan(&local, &stale, &deleted, Some(&node())).is_empty());
        let mut deleting = mirror("h2", "m1");
        deleting.metadata.deletion_timestamp = static_pod("h2").metadata.creation_timestamp;
        assert_eq!(
            plan(
                &local,
                &mirrors(&[deleting]),
                &HashSet::new(),
                Some(&node())
            ),
            vec![delete]
        );
    }

    #[test]
    fn the_mirror_of_a_removed_static_pod_is_deleted() {
        let mut stopping = static_pod("h1");
        stopping.metadata.deletion_timestamp = stopping.metadata.creation_timestamp.clone();
        let existing = mirrors(&[mirror("h1", "m1")]);
        for local in [vec![], vec![stopping]] {
            let writes = plan(&local, &existing, &HashSet::new(), Some(&node()));
            assert!(
                matches!(&writes[..], [MirrorWrite::Delete { uid, .. }] if uid == "m1"),
                "{writes:?}"
            );
        }
    }
}
