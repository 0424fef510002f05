//! A pod's v1 `PodStatus`, computed from what its worker observed, the way the upstream
//! kubelet computes it (`getPhase`, `GeneratePodReadyCondition`, ...). Pure: no I/O.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{
    ContainerState as V1State, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::state::{ContainerState, Current, PodState, Terminated};

/// A chrono time as the API's `Time`.
pub fn time(at: DateTime<Utc>) -> Time {
    let nanos = at.timestamp_nanos_opt().unwrap_or_default();
    Time(k8s_openapi::jiff::Timestamp::from_nanosecond(i128::from(nanos)).unwrap_or_default())
}

/// The scheme of container ids in statuses (`peapod://<id>`), as `containerd://` upstream.
pub const CONTAINER_ID_SCHEME: &str = "peapod://";

/// The pod's phase, as upstream's `getPhase`.
pub fn phase(state: &PodState) -> &'static str {
    if state.failure.is_some() {
        return "Failed";
    }
    let restart = restart_policy(state);
    if let Some(failed) = init_failed(state) {
        if failed && restart == "Never" {
            return "Failed";
        }
    }
    if !initialized(state) {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in &state.containers {
        match &c.current {
            Current::Running { .. } => running += 1,
            Current::Terminated(t) => {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1;
                }
            }
            Current::Waiting { .. } => {
                if let Some(last) = &c.last {
                    stopped += 1;
                    if last.exit_code == 0 {
                        succeeded += 1;
                    }
                } else {
                    waiting += 1;
                }
            }
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        return match restart {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "OnFailure" => "Running",
            _ => "Failed",
        };
    }
    "Pending"
}

/// The pod's `restartPolicy` (defaulted to Always by the source).
fn restart_policy(state: &PodState) -> &str {
    state
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// Some(true) when an init container's latest run failed, Some(false) when none did,
/// None when the pod has no init containers.
fn init_failed(state: &PodState) -> Option<bool> {
    if state.init.is_empty() {
        return None;
    }
    let sidecars = sidecars(state);
    Some(state.init.iter().any(|c| {
        !sidecars.contains(&c.name) && c.ended().is_some_and(|t| t.exit_code != 0) && !c.running()
    }))
}

/// The names of the pod's native sidecars (init containers with `restartPolicy: Always`).
fn sidecars(state: &PodState) -> Vec<String> {
    state
        .pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| super::plan::is_sidecar(c))
        .map(|c| c.name.clone())
        .collect()
}

/// Whether the pod is initialized: every init container completed successfully and every
/// sidecar has started, or an app container has run (which only happens after that).
pub fn initialized(state: &PodState) -> bool {
    let sidecars = sidecars(state);
    let apps_began = state.containers.iter().any(|c| c.id.is_some());
    state.init.iter().all(|c| {
        if sidecars.contains(&c.name) {
            c.started || apps_began
        } else {
            matches!(&c.current, Current::Terminated(t) if t.exit_code == 0)
        }
    })
}

/// Whether a container counts as ready: running, started and passing its readiness probe.
fn ready(c: &ContainerState) -> bool {
    c.running() && c.ready
}

/// The full status at `now`.
pub fn pod_status(state: &mut PodState, host_ip: Option<&str>, now: DateTime<Utc>) -> PodStatus {
    let phase = phase(state);
    let init_done = initialized(state);
    let sidecars = sidecars(state);
    let containers_ready = init_done
        && state.containers.iter().all(ready)
        && state
            .init
            .iter()
            .filter(|c| sidecars.contains(&c.name))
            .all(ready);
    let sandbox_ready = state.sandbox.is_some() && state.deleting_since.is_none();
    let mut condition =
        |kind: &str, status: bool, reason: Option<&str>, message: Option<String>| {
            let since = state.transitions.observe(kind, status, now);
            PodCondition {
                type_: kind.to_string(),
                status: if status { "True" } else { "False" }.to_string(),
                last_transition_time: Some(time(since)),
                reason: reason.map(str::to_string),
                message,
                ..PodCondition::default()
            }
        };
    let not_ready: Vec<&str> = state
        .init
        .iter()
        .filter(|c| sidecars.contains(&c.name))
        .chain(&state.containers)
        .filter(|c| !ready(c))
        .map(|c| c.name.as_str())
        .collect();
    let unready_message = (!not_ready.is_empty())
        .then(|| format!("containers with unready status: [{}]", not_ready.join(" ")));
    let pending_init: Vec<&str> = state
        .init
        .iter()
        .filter(|c| {
            if sidecars.contains(&c.name) {
                !c.started
            } else {
                !matches!(&c.current, Current::Terminated(t) if t.exit_code == 0)
            }
        })
        .map(|c| c.name.as_str())
        .collect();
    let (ready_reason, ready_message) = match (init_done, containers_ready) {
        (_, true) => (None, None),
        (false, _) if phase != "Succeeded" => (
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                pending_init.join(" ")
            )),
        ),
        _ if phase == "Succeeded" || phase == "Failed" => (Some("PodCompleted"), None),
        _ => (Some("ContainersNotReady"), unready_message.clone()),
    };
    let mut conditions = vec![
        condition("PodReadyToStartContainers", sandbox_ready, None, None),
        condition(
            "Initialized",
            init_done,
            (!init_done).then_some("ContainersNotInitialized"),
            (!init_done).then(|| {
                format!(
                    "containers with incomplete status: [{}]",
                    pending_init.join(" ")
                )
            }),
        ),
        condition(
            "Ready",
            containers_ready,
            ready_reason,
            ready_message.clone(),
        ),
        condition(
            "ContainersReady",
            containers_ready,
            ready_reason,
            ready_message,
        ),
    ];
    conditions.push(PodCondition {
        type_: "PodScheduled".into(),
        status: "True".into(),
        last_transition_time: Some(time(state.start_time)),
        ..PodCondition::default()
    });
    let ips: Vec<String> = state
        .sandbox
        .iter()
        .flat_map(|s| s.ips.iter().map(|ip| ip.to_string()))
        .collect();
    let qos = state
        .pod
        .status
        .as_ref()
        .and_then(|s| s.qos_class.clone())
        .unwrap_or_else(|| qos_class(&state.pod).to_string());
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: host_ip.map(str::to_string),
        host_ips: host_ip.map(|ip| vec![k8s_openapi::api::core::v1::HostIP { ip: ip.to_string() }]),
        pod_ip: ips.first().cloned(),
        pod_ips: (!ips.is_empty()).then(|| ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
        start_time: Some(time(state.start_time)),
        qos_class: Some(qos),
        init_container_statuses: (!state.init.is_empty()).then(|| {
            state
                .init
                .iter()
                .map(|c| container_status(c, sidecars.contains(&c.name) && ready(c)))
                .collect()
        }),
        reason: state.failure.as_ref().map(|(reason, _)| reason.clone()),
        message: state.failure.as_ref().map(|(_, message)| message.clone()),
        container_statuses: Some(
            state
                .containers
                .iter()
                .map(|c| container_status(c, ready(c)))
                .collect(),
        ),
        ..PodStatus::default()
    }
}

/// One container's v1 status.
fn container_status(c: &ContainerState, ready: bool) -> ContainerStatus {
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: c.image_id.clone().unwrap_or_default(),
        container_id: c.id.as_ref().map(|id| format!("{CONTAINER_ID_SCHEME}{id}")),
        ready,
        started: Some(c.running() && c.started),
        restart_count: c.restart_count,
        state: Some(v1_state(&c.current)),
        last_state: Some(
            c.last
                .as_ref()
                .map(|t| V1State {
                    terminated: Some(terminated(t)),
                    ..V1State::default()
                })
                .unwrap_or_default(),
        ),
        ..ContainerStatus::default()
    }
}

fn v1_state(current: &Current) -> V1State {
    match current {
        Current::Waiting { reason, message } => V1State {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..V1State::default()
        },
        Current::Running { started_at } => V1State {
            running: Some(ContainerStateRunning {
                started_at: Some(time(*started_at)),
            }),
            ..V1State::default()
        },
        Current::Terminated(t) => V1State {
            terminated: Some(terminated(t)),
            ..V1State::default()
        },
    }
}

fn terminated(t: &Terminated) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: t.exit_code,
        signal: t.signal,
        reason: Some(t.reason.clone()),
        message: t.message.clone(),
        started_at: t.started_at.map(time),
        finished_at: Some(time(t.finished_at)),
        container_id: t
            .container_id
            .as_ref()
            .map(|id| format!("{CONTAINER_ID_SCHEME}{id}")),
    }
}

/// The pod's QoS class from its containers' requests and limits, as upstream's
/// `GetPodQOS`: BestEffort with none at all, Guaranteed when every container limits cpu
/// and memory with requests equal to the limits, Burstable otherwise.
pub fn qos_class(pod: &k8s_openapi::api::core::v1::Pod) -> &'static str {
    let Some(spec) = &pod.spec else {
        return "BestEffort";
    };
    let all: Vec<_> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &all {
        let resources = c.resources.clone().unwrap_or_default();
        let requests = resources.requests.unwrap_or_default();
        let limits = resources.limits.unwrap_or_default();
        let relevant = |k: &String| k == "cpu" || k == "memory";
        if requests.keys().any(relevant) || limits.keys().any(relevant) {
            any = true;
        }
        for resource in ["cpu", "memory"] {
            match (limits.get(resource), requests.get(resource)) {
                // By value: `1` and `1000m` are the same request.
                (Some(limit), Some(request)) if !same_amount(resource, limit, request) => {
                    guaranteed = false
                }
                (Some(_), _) => {}
                (None, _) => guaranteed = false,
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// Whether two cpu or memory quantities are equal in value.
fn same_amount(resource: &str, a: &Quantity, b: &Quantity) -> bool {
    let value = match resource {
        "cpu" => super::resources::cpu_millis,
        _ => super::resources::memory_bytes,
    };
    matches!((value(a), value(b)), (Ok(a), Ok(b)) if a == b)
}
