//! Pod admission: whether a pod the API server bound to this node fits it, checked before
//! it runs, as upstream's predicate admit handler checks (the scheduler may have placed it
//! on a stale view, or another kubelet's pods took the room). Pure: no I/O.
//!
//! A pod fits when its effective requests (app containers and sidecars together, each
//! init container beside the sidecars before it, plus overhead), added to those of the
//! admitted pods still running, stay within allocatable for `cpu`, `memory` and
//! `ephemeral-storage`, and the pod count stays within `pods`. A pod that does not fit is
//! rejected for good: phase Failed with reason `OutOf<resource>` and upstream's message,
//! never started.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::pod::quantity::{cpu_millis, memory_bytes};

/// Allocatable resources as the Node reports them (`kubelet::node::capacity::allocatable`).
pub type Resources = BTreeMap<String, Quantity>;

/// The resources checked, in upstream's order (after the pod count).
const CHECKED: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];

/// Why a pod may not run here: `status.reason` and the message after `Pod was rejected: `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// `OutOfcpu`, `OutOfmemory`, `OutOfephemeral-storage`, `OutOfpods`, `NodeName`.
    pub reason: String,
    /// Upstream's message, e.g. `Node didn't have enough resource: cpu, requested: 2000,
    /// used: 500, capacity: 2000`.
    pub message: String,
}

/// Whether `pod` may run on `node_name` beside the `active` pods (the admitted pods that
/// have not ended; the pod itself, by namespace/name, is left out of them).
pub fn admit(
    pod: &Pod,
    active: &[Pod],
    allocatable: &Resources,
    node_name: &str,
) -> Result<(), Rejection> {
    let key = key_of(pod);
    let others: Vec<&Pod> = active
        .iter()
        .filter(|p| key_of(p) != key && !terminal(p))
        .collect();
    if let Some(allowed) = allocatable.get("pods").and_then(|q| amount("pods", q)) {
        let used = others.len() as i64;
        if used + 1 > allowed {
            return Err(insufficient("pods", 1, used, allowed));
        }
    }
    let wanted: Vec<i64> = CHECKED.iter().map(|r| pod_request(pod, r)).collect();
    // A pod that requests nothing fits anywhere there is room for one more pod.
    if wanted.iter().any(|n| *n > 0) {
        for (resource, requested) in CHECKED.iter().zip(wanted) {
            let Some(capacity) = allocatable.get(*resource).and_then(|q| amount(resource, q))
            else {
                continue;
            };
            let used: i64 = others.iter().map(|p| pod_request(p, resource)).sum();
            if requested > 0 && requested > capacity - used {
                return Err(insufficient(resource, requested, used, capacity));
            }
        }
    }
    let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
    if bound.is_some_and(|name| name != node_name) {
        return Err(Rejection {
            reason: "NodeName".into(),
            message: "Predicate NodeName failed: node(s) didn't match the requested node name"
                .into(),
        });
    }
    Ok(())
}

/// The status a rejected pod gets (as upstream's `rejectPod`): Failed, for good.
pub fn rejected_status(pod: &Pod, rejection: &Rejection) -> PodStatus {
    PodStatus {
        phase: Some("Failed".into()),
        reason: Some(rejection.reason.clone()),
        message: Some(format!("Pod was rejected: {}", rejection.message)),
        qos_class: Some(crate::pod::status::qos_class(pod).into()),
        ..PodStatus::default()
    }
}

/// Whether the API already shows the pod as ended (it takes no room).
pub fn terminal(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded") | Some("Failed"))
}

fn insufficient(resource: &str, requested: i64, used: i64, capacity: i64) -> Rejection {
    Rejection {
        reason: format!("OutOf{resource}"),
        message: format!(
            "Node didn't have enough resource: {resource}, requested: {requested}, used: \
             {used}, capacity: {capacity}"
        ),
    }
}

fn key_of(pod: &Pod) -> (Option<&str>, Option<&str>) {
    (
        pod.metadata.namespace.as_deref(),
        pod.metadata.name.as_deref(),
    )
}

/// A quantity of `resource` as upstream counts it: CPU in millicores, the rest in units.
/// Unreadable quantities count as none (API validation keeps them out).
fn amount(resource: &str, quantity: &Quantity) -> Option<i64> {
    if resource == "cpu" {
        cpu_millis(quantity).ok()
    } else {
        memory_bytes(quantity).ok()
    }
}

fn container_request(container: &Container, resource: &str) -> i64 {
    container
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|requests| requests.get(resource))
        .and_then(|q| amount(resource, q))
        .unwrap_or(0)
}

/// The pod's effective request of `resource`: app containers and sidecars run together;
/// an ordinary init container runs alone beside the sidecars started before it; the
/// larger of the two, plus the pod's overhead.
pub fn pod_request(pod: &Pod, resource: &str) -> i64 {
    let Some(spec) = &pod.spec else {
        return 0;
    };
    let mut together: i64 = spec
        .containers
        .iter()
        .map(|c| container_request(c, resource))
        .sum();
    let mut sidecars = 0;
    let mut init_peak = 0;
    for c in spec.init_containers.iter().flatten() {
        let own = container_request(c, resource);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars += own;
            together += own;
            init_peak = init_peak.max(sidecars);
        } else {
            init_peak = init_peak.max(own + sidecars);
        }
    }
    let overhead = spec
        .overhead
        .as_ref()
        .and_then(|o| o.get(resource))
        .and_then(|q| amount(resource, q))
        .unwrap_or(0);
    together.max(init_peak) + overhead
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, cpu: Option<&str>, memory: Option<&str>) -> Pod {
        let mut requests = BTreeMap::new();
        if let Some(cpu) = cpu {
            requests.insert("cpu".to_string(), Quantity(cpu.into()));
        }
        if let Some(memory) = memory {
            requests.insert("memory".to_string(), Quantity(memory.into()));
        }
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": {
                "nodeName": "node-a",
                "containers": [{"name": "app", "image": "busybox",
                                "resources": {"requests": requests}}]
            },
            "status": {"phase": "Running"}
        }))
        .expect("a pod")
    }

    fn allocatable(cpu: &str, memory: &str, pods: &str) -> Resources {
        [
            ("cpu", cpu),
            ("memory", memory),
            ("pods", pods),
            ("ephemeral-storage", "10Gi"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.into())))
        .collect()
    }

    #[test]
    fn a_pod_within_allocatable_is_admitted() {
        let running = [pod("a", Some("500m"), Some("1Gi"))];
        let new = pod("b", Some("1500m"), Some("1Gi"));
        assert_eq!(
            admit(&new, &running, &allocatable("2", "2Gi", "110"), "node-a"),
            Ok(())
        );
    }

    #[test]
    fn too_much_cpu_is_rejected_with_upstreams_reason_and_message() {
        let running = [pod("a", Some("500m"), None)];
        let new = pod("b", Some("2"), None);
        let rejection =
            admit(&new, &running, &allocatable("2", "2Gi", "110"), "node-a").expect_err("rejected");
        assert_eq!(rejection.reason, "OutOfcpu");
        assert_eq!(
            rejection.message,
            "Node didn't have enough resource: cpu, requested: 2000, used: 500, capacity: 2000"
        );
        let status = rejected_status(&new, &rejection);
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        assert_eq!(status.reason.as_deref(), Some("OutOfcpu"));
        assert_eq!(
            status.message.as_deref(),
            Some(
                "Pod was rejected: Node didn't have enough resource: cpu, requested: 2000, \
                 used: 500, capacity: 2000"
            )
        );
        assert_eq!(status.qos_class.as_deref(), Some("Burstable"));
    }

    #[test]
    fn memory_is_counted_in_bytes() {
        let running = [pod("a", None, Some("1Gi"))];
        let new = pod("b", None, Some("1536Mi"));
        let rejection =
            admit(&new, &running, &allocatable("2", "2Gi", "110"), "node-a").expect_err("rejected");
        assert_eq!(rejection.reason, "OutOfmemory");
        assert_eq!(
            rejection.message,
            "Node didn't have enough resource: memory, requested: 1610612736, used: \
             1073741824, capacity: 2147483648"
        );
    }

    #[test]
    fn ended_pods_and_the_pod_itself_take_no_room() {
        let mut done = pod("a", Some("2"), None);
        done.status = Some(PodStatus {
            phase: Some("Succeeded".into()),
            ..PodStatus::default()
        });
        let same = pod("b", Some("2"), None);
        let new = pod("b", Some("2"), None);
        assert_eq!(
            admit(&new, &[done, same], &allocatable("2", "2Gi", "2"), "node-a"),
            Ok(())
        );
    }

    #[test]
    fn the_pod_count_is_checked_first_even_for_pods_requesting_nothing() {
        let running = [pod("a", None, None), pod("b", None, None)];
        let new = pod("c", Some("100"), None);
        let rejection =
            admit(&new, &running, &allocatable("2", "2Gi", "2"), "node-a").expect_err("rejected");
        assert_eq!(rejection.reason, "OutOfpods");
        assert_eq!(
            rejection.message,
            "Node didn't have enough resource: pods, requested: 1, used: 2, capacity: 2"
        );
    }

    #[test]
    fn ephemeral_storage_requests_count() {
        let mut new = pod("b", None, None);
        if let Some(spec) = new.spec.as_mut() {
            spec.containers[0].resources = serde_json::from_value(serde_json::json!({
                "requests": {"ephemeral-storage": "20Gi"}
            }))
            .expect("resources");
        }
        let rejection =
            admit(&new, &[], &allocatable("2", "2Gi", "10"), "node-a").expect_err("rejected");
        assert_eq!(rejection.reason, "OutOfephemeral-storage");
    }

    #[test]
    fn a_pod_bound_to_another_node_is_rejected() {
        let new = pod("b", None, None);
        let rejection =
            admit(&new, &[], &allocatable("2", "2Gi", "10"), "node-b").expect_err("rejected");
        assert_eq!(rejection.reason, "NodeName");
    }

    #[test]
    fn init_containers_and_sidecars_make_the_effective_request() {
        let new: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {
                "initContainers": [
                    {"name": "sidecar", "restartPolicy": "Always",
                     "resources": {"requests": {"cpu": "100m"}}},
                    {"name": "setup", "resources": {"requests": {"cpu": "1"}}}
                ],
                "containers": [{"name": "app", "resources": {"requests": {"cpu": "200m"}}}],
                "overhead": {"cpu": "10m"}
            }
        }))
        .expect("a pod");
        // The init step (1000m beside the 100m sidecar) outweighs app + sidecar (300m).
        assert_eq!(pod_request(&new, "cpu"), 1110);
    }
}
