//! The defaults the API server fills into a Pod it admits, applied to static pods.
//!
//! A pod from a manifest never passes through an API server, yet the rest of
//! the kubelet (and `peapod get pods -o yaml`) should see the same object a
//! cluster would show. Only unset fields are filled; what the user wrote wins.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The namespace of a pod that names none.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Seconds between SIGTERM and SIGKILL when the pod does not say.
pub const DEFAULT_GRACE_PERIOD_SECONDS: i64 = 30;
/// Where a container writes its termination message.
pub const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

/// Fill every unset field the API server would default.
pub fn apply(pod: &mut Pod) {
    set(&mut pod.metadata.namespace, DEFAULT_NAMESPACE);
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    set(&mut spec.restart_policy, "Always");
    set(&mut spec.dns_policy, "ClusterFirst");
    set(&mut spec.scheduler_name, "default-scheduler");
    spec.termination_grace_period_seconds
        .get_or_insert(DEFAULT_GRACE_PERIOD_SECONDS);
    spec.security_context
        .get_or_insert_with(PodSecurityContext::default);
    spec.enable_service_links.get_or_insert(true);
    let host_network = spec.host_network.unwrap_or(false);
    for container in spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut())
    {
        container_defaults(container, host_network);
    }
}

fn container_defaults(c: &mut Container, host_network: bool) {
    if c.image_pull_policy.is_none() {
        c.image_pull_policy =
            Some(pull_policy_for(c.image.as_deref().unwrap_or_default()).to_owned());
    }
    set(&mut c.termination_message_path, TERMINATION_MESSAGE_PATH);
    set(&mut c.termination_message_policy, "File");
    for port in c.ports.iter_mut().flatten() {
        set(&mut port.protocol, "TCP");
        // In the host's network namespace the container port *is* the host port.
        if host_network && port.host_port.unwrap_or(0) == 0 {
            port.host_port = Some(port.container_port);
        }
    }
    // A limit without a request requests the limit: this decides the QoS
    // class, and so the pod's cgroup (Guaranteed vs Burstable).
    if let Some(resources) = c.resources.as_mut() {
        if let Some(limits) = &resources.limits {
            let requests = resources
                .requests
                .get_or_insert_with(BTreeMap::<String, Quantity>::new);
            for (name, quantity) in limits {
                requests
                    .entry(name.clone())
                    .or_insert_with(|| quantity.clone());
            }
        }
    }
}

/// `Always` for `:latest` or an untagged image, else `IfNotPresent`: a moving
/// tag must be re-pulled to mean anything, a fixed one need not be.
pub fn pull_policy_for(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((name, _)) => (name, true),
        None => (image, false),
    };
    // A ':' after the last '/' starts the tag; before it, it is a registry port.
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.rsplit_once(':') {
        Some((_, "latest")) => "Always",
        Some(_) => "IfNotPresent",
        // A digest pins the image even without a tag.
        None if digest => "IfNotPresent",
        None => "Always",
    }
}

fn set(field: &mut Option<String>, value: &str) {
    if field.as_deref().unwrap_or_default().is_empty() {
        *field = Some(value.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(pull_policy_for("busybox"), "Always");
        assert_eq!(pull_policy_for("busybox:latest"), "Always");
        assert_eq!(pull_policy_for("busybox:1.36"), "IfNotPresent");
        assert_eq!(pull_policy_for("localhost:5000/busybox"), "Always");
        assert_eq!(
            pull_policy_for("localhost:5000/busybox:1.36"),
            "IfNotPresent"
        );
        assert_eq!(pull_policy_for("busybox@sha256:abcd"), "IfNotPresent");
        assert_eq!(pull_policy_for("busybox:latest@sha256:abcd"), "Always");
    }
}
