//! The node's Lease in `kube-node-lease`, renewed as the kubelet's heartbeat. Pure.

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};

use crate::pod::status::time;

/// The namespace holding node leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How long the lease holds without renewal (upstream's default `nodeLeaseDurationSeconds`).
pub const LEASE_DURATION_SECONDS: i32 = 40;

/// The lease of node `node_name` renewed at `now`, holding for `duration_seconds`.
/// `node_uid`: the registered Node's uid, once known, so the lease is owned by (and
/// deleted with) the Node, as upstream does.
pub fn node_lease(
    node_name: &str,
    node_uid: Option<&str>,
    duration_seconds: i32,
    now: DateTime<Utc>,
) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(node_name.to_string()),
            namespace: Some(LEASE_NAMESPACE.to_string()),
            owner_references: node_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".to_string(),
                    kind: "Node".to_string(),
                    name: node_name.to_string(),
                    uid: uid.to_string(),
                    ..OwnerReference::default()
                }]
            }),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node_name.to_string()),
            lease_duration_seconds: Some(duration_seconds),
            renew_time: Some(MicroTime(time(now).0)),
            ..LeaseSpec::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn lease_names_its_holder_and_owner() {
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let json = serde_json::to_value(node_lease(
            "node-a",
            Some("uid-1"),
            LEASE_DURATION_SECONDS,
            now,
        ))
        .unwrap();
        let expected = serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": "node-a",
                "namespace": "kube-node-lease",
                "ownerReferences": [
                    { "apiVersion": "v1", "kind": "Node", "name": "node-a", "uid": "uid-1" }
                ]
            },
            "spec": {
                "holderIdentity": "node-a",
                "leaseDurationSeconds": 40,
                "renewTime": "2026-01-02T03:04:05.000000Z"
            }
        });
        assert_eq!(json, expected);
        let unowned = node_lease("node-a", None, LEASE_DURATION_SECONDS, now);
        assert!(unowned.metadata.owner_references.is_none());
    }
}
