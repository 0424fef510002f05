//! Events about a pod, shaped as the v1 `Event`s the kubelet posts (`Pulled`, `Created`,
//! `Started`, `Killing`, `BackOff`, `Failed`, ...), kept with the pod for `describe`.

use chrono::Utc;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

use super::status::time;

/// An event's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Things going as they should.
    Normal,
    /// Something the user may need to act on.
    Warning,
}

/// An event about `pod` (and one of its containers, if given), from the kubelet.
pub fn event(
    pod: &Pod,
    kind: Kind,
    reason: &str,
    message: String,
    container: Option<&str>,
) -> Event {
    let now = Utc::now();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let field_path = container.map(|c| container_field_path(pod, c));
    Event {
        metadata: ObjectMeta {
            name: Some(format!(
                "{name}.{:x}",
                now.timestamp_nanos_opt().unwrap_or_default()
            )),
            namespace: pod.metadata.namespace.clone(),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(name),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            field_path,
            ..ObjectReference::default()
        },
        reason: Some(reason.to_string()),
        message: Some(message),
        type_: Some(
            match kind {
                Kind::Normal => "Normal",
                Kind::Warning => "Warning",
            }
            .into(),
        ),
        source: Some(EventSource {
            component: Some("kubelet".into()),
            host: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        }),
        first_timestamp: Some(time(now)),
        last_timestamp: Some(time(now)),
        event_time: Some(MicroTime(time(now).0)),
        count: Some(1),
        reporting_component: Some("kubelet".into()),
        ..Event::default()
    }
}

/// `spec.containers{web}` or `spec.initContainers{setup}`, as upstream names them.
fn container_field_path(pod: &Pod, container: &str) -> String {
    let init = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.name == container));
    let list = if init { "initContainers" } else { "containers" };
    format!("spec.{list}{{{container}}}")
}
