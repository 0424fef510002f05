//! Requests and limits as cgroup values and OOM scores, computed as the upstream kubelet
//! computes them, for a container (its own cgroup and process) and for the pod cgroup.
//! Pure, apart from [`NodeResources::from_host`].
//!
//! - A container: cpu shares from its cpu request (from its limit when only that is set),
//!   a CFS quota from its cpu limit over a 100 ms period, its memory limit, and an
//!   `oom_score_adj` from the pod's QoS class.
//! - The pod: cpu shares from the pod's effective cpu request; a quota only when every
//!   container limits cpu, a memory limit only when every container limits memory (a
//!   container without one could use all the node has); `--pod-max-pids`. A BestEffort pod
//!   gets the smallest shares.
//!
//! The effective request of a pod counts init containers as they run: one at a time, each
//! beside the sidecars started before it, so the pod needs the larger of its app
//! containers plus sidecars and its largest init step.
//!
//! Quantities are read by [`cpu_millis`] and [`memory_bytes`], which others (the downward
//! API's `resourceFieldRef`) use too.

use std::fs;
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use runtime::sandbox::Resources;

pub use super::quantity::{cpu_millis, memory_bytes, QuantityError};
use super::status::qos_class;

/// The smallest cpu shares the kernel takes: what a container without a request gets.
pub const MIN_SHARES: u64 = 2;
/// The largest cpu shares the kernel takes.
pub const MAX_SHARES: u64 = 262_144;
/// The shares of one whole CPU.
const SHARES_PER_CPU: u64 = 1024;
/// Millicores in a CPU.
const MILLIS_PER_CPU: u64 = 1000;
/// The CFS period the kubelet sets, in µs (upstream's default `--cpu-cfs-quota-period`).
pub const QUOTA_PERIOD_US: u64 = 100_000;
/// The smallest CFS quota the kernel takes, in µs.
pub const MIN_QUOTA_US: i64 = 1_000;
/// `oom_score_adj` of Guaranteed pods' containers (and node-critical pods'): the OOM
/// killer takes them last, after everything but the node's own daemons.
pub const GUARANTEED_OOM_SCORE_ADJ: i32 = -997;
/// `oom_score_adj` of BestEffort pods' containers: the OOM killer takes them first.
pub const BEST_EFFORT_OOM_SCORE_ADJ: i32 = 1000;
/// The priority class of pods the node cannot run without: scored as Guaranteed.
const NODE_CRITICAL: &str = "system-node-critical";

/// What the node contributes to the formulas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeResources {
    /// The machine's memory in bytes (`MemTotal`), against which Burstable containers'
    /// memory requests set their OOM score.
    pub memory_capacity: i64,
    /// `--pod-max-pids`: the pod cgroup's pids limit; 0 or less: unlimited.
    pub pod_max_pids: i64,
}

impl NodeResources {
    /// The host's memory from `meminfo` (normally `/proc/meminfo`).
    pub fn from_host(meminfo: &Path, pod_max_pids: i64) -> Result<NodeResources, String> {
        let text = fs::read_to_string(meminfo)
            .map_err(|e| format!("reading {}: {e}", meminfo.display()))?;
        let memory_capacity = mem_total(&text)
            .ok_or_else(|| format!("{}: no MemTotal line in kB", meminfo.display()))?;
        Ok(NodeResources {
            memory_capacity,
            pod_max_pids,
        })
    }
}

/// `MemTotal:  24683648 kB` in bytes.
fn mem_total(meminfo: &str) -> Option<i64> {
    meminfo_bytes(meminfo, "MemTotal")
}

/// A `/proc/meminfo` field given in kB (`MemAvailable:  1234 kB`), in bytes.
pub fn meminfo_bytes(meminfo: &str, field: &str) -> Option<i64> {
    let kb: i64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    kb.checked_mul(1024)
}

/// A request or limit that cannot be read, naming the container and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("container {container:?}: {field} {value:?} {reason}")]
pub struct ResourceError {
    /// The container's name.
    pub container: String,
    /// The field, e.g. `resources.limits.memory`.
    pub field: String,
    /// The value as written.
    pub value: String,
    /// What is wrong, e.g. "must be greater than or equal to 0".
    pub reason: String,
}

/// A container's cpu and memory, as requests or as limits. None: not given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amounts {
    /// CPU in millicores.
    pub cpu_millis: Option<i64>,
    /// Memory in bytes.
    pub memory_bytes: Option<i64>,
}

impl Amounts {
    /// Both amounts added, an amount missing on both sides staying missing.
    fn plus(self, other: Amounts) -> Amounts {
        let add = |a: Option<i64>, b: Option<i64>| match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
        };
        Amounts {
            cpu_millis: add(self.cpu_millis, other.cpu_millis),
            memory_bytes: add(self.memory_bytes, other.memory_bytes),
        }
    }

    /// The larger of each amount.
    fn max(self, other: Amounts) -> Amounts {
        let max = |a: Option<i64>, b: Option<i64>| a.max(b);
        Amounts {
            cpu_millis: max(self.cpu_millis, other.cpu_millis),
            memory_bytes: max(self.memory_bytes, other.memory_bytes),
        }
    }
}

/// The container's `resources.requests` cpu and memory.
pub fn requests(container: &Container) -> Result<Amounts, ResourceError> {
    let resources = container.resources.as_ref();
    amounts(
        container,
        "requests",
        resources.and_then(|r| r.requests.as_ref()),
    )
}

/// The container's `resources.limits` cpu and memory.
pub fn limits(container: &Container) -> Result<Amounts, ResourceError> {
    let resources = container.resources.as_ref();
    amounts(
        container,
        "limits",
        resources.and_then(|r| r.limits.as_ref()),
    )
}

fn amounts(
    container: &Container,
    kind: &str,
    list: Option<&std::collections::BTreeMap<String, Quantity>>,
) -> Result<Amounts, ResourceError> {
    let read = |name: &str, parse: fn(&Quantity) -> Result<i64, QuantityError>| {
        list.and_then(|l| l.get(name))
            .map(|q| {
                parse(q).map_err(|e| ResourceError {
                    container: container.name.clone(),
                    field: format!("resources.{kind}.{name}"),
                    value: q.0.clone(),
                    reason: e.to_string(),
                })
            })
            .transpose()
    };
    Ok(Amounts {
        cpu_millis: read("cpu", cpu_millis)?,
        memory_bytes: read("memory", memory_bytes)?,
    })
}

/// What the API server would reject in a container's resources: quantities that cannot
/// be read, and requests above limits. Each problem as (field, message).
pub fn problems(container: &Container) -> Vec<(String, String)> {
    let (requests, limits) = match (requests(container), limits(container)) {
        (Ok(r), Ok(l)) => (r, l),
        (r, l) => {
            return [r.err(), l.err()]
                .into_iter()
                .flatten()
                .map(|e| {
                    (
                        e.field,
                        format!("Invalid value: {:?}: {}", e.value, e.reason),
                    )
                })
                .collect()
        }
    };
    let mut out = Vec::new();
    for (name, request, limit) in [
        ("cpu", requests.cpu_millis, limits.cpu_millis),
        ("memory", requests.memory_bytes, limits.memory_bytes),
    ] {
        if let (Some(request), Some(limit)) = (request, limit) {
            if request > limit {
                out.push((
                    format!("resources.requests.{name}"),
                    format!("Invalid value: must be less than or equal to {name} limit"),
                ));
            }
        }
    }
    out
}

/// cpu shares for a cpu request in millicores: 1024 per CPU, at least [`MIN_SHARES`].
pub fn shares(millis: i64) -> u64 {
    let millis = u64::try_from(millis).unwrap_or(0);
    (millis.saturating_mul(SHARES_PER_CPU) / MILLIS_PER_CPU).clamp(MIN_SHARES, MAX_SHARES)
}

/// The CFS quota in µs for a cpu limit in millicores over `period` µs: 0 (none) without a
/// limit, else at least [`MIN_QUOTA_US`].
pub fn quota(millis: i64, period: u64) -> i64 {
    if millis <= 0 {
        return 0;
    }
    let period = i64::try_from(period).unwrap_or(i64::MAX);
    (millis.saturating_mul(period) / MILLIS_PER_CPU as i64).max(MIN_QUOTA_US)
}

/// The container cgroup's values and its process's OOM score.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerResources {
    /// cpu shares, quota and period, memory limit.
    pub cgroup: Resources,
    /// The process's `oom_score_adj`.
    pub oom_score_adj: i32,
}

/// The cgroup values and OOM score of `container` in `pod`.
pub fn container(
    pod: &Pod,
    container: &Container,
    node: &NodeResources,
) -> Result<ContainerResources, ResourceError> {
    let requests = requests(container)?;
    let limits = limits(container)?;
    // A limit alone is the request too (the API server defaults it so; repeated here for
    // pods that did not pass through the defaulting).
    let cpu_request = requests.cpu_millis.or(limits.cpu_millis).unwrap_or(0);
    let cgroup = Resources {
        cpu_shares: shares(cpu_request),
        cpu_quota: quota(limits.cpu_millis.unwrap_or(0), QUOTA_PERIOD_US),
        cpu_period: QUOTA_PERIOD_US,
        memory_limit: limits.memory_bytes.unwrap_or(0),
        pids_limit: 0,
    };
    Ok(ContainerResources {
        cgroup,
        oom_score_adj: oom_score_adj(pod, container, node.memory_capacity)?,
    })
}

/// The OOM score of a container, as upstream's policy: -997 for Guaranteed (and
/// node-critical) pods, 1000 for BestEffort ones, and for Burstable ones `1000 - 1000 ×
/// memory request / node memory`, kept within 3..=999 so they stay between the two. A
/// sidecar scores no higher than the app container with the least memory, so it is not
/// killed before the containers it serves.
pub fn oom_score_adj(
    pod: &Pod,
    container: &Container,
    memory_capacity: i64,
) -> Result<i32, ResourceError> {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.priority_class_name.as_deref()) == Some(NODE_CRITICAL) {
        return Ok(GUARANTEED_OOM_SCORE_ADJ);
    }
    match qos_class(pod) {
        "Guaranteed" => return Ok(GUARANTEED_OOM_SCORE_ADJ),
        "BestEffort" => return Ok(BEST_EFFORT_OOM_SCORE_ADJ),
        _ => {}
    }
    let capacity = memory_capacity.max(1);
    let score = |request: i64| -> i64 {
        1000 - (1000_i128 * i128::from(request) / i128::from(capacity)).min(2000) as i64
    };
    let mut adj = score(requests(container)?.memory_bytes.unwrap_or(0));
    let sidecar = container.restart_policy.as_deref() == Some("Always")
        && spec.is_some_and(|s| {
            s.init_containers
                .iter()
                .flatten()
                .any(|c| c.name == container.name)
        });
    if sidecar {
        let mut least: Option<i64> = None;
        for app in spec.map(|s| s.containers.as_slice()).unwrap_or_default() {
            let memory = requests(app)?.memory_bytes.unwrap_or(0);
            least = Some(least.map_or(memory, |l| l.min(memory)));
        }
        adj = adj.min(score(least.unwrap_or(0)));
    }
    let floor = i64::from(1000 + GUARANTEED_OOM_SCORE_ADJ);
    let adj = if adj < floor {
        floor
    } else if adj == i64::from(BEST_EFFORT_OOM_SCORE_ADJ) {
        adj - 1
    } else {
        adj
    };
    Ok(adj as i32)
}

/// The pod's effective requests and limits: app containers and sidecars run together,
/// each ordinary init container alone beside the sidecars started before it. Pod
/// `overhead` is added, as upstream adds it.
pub fn pod_amounts(pod: &Pod) -> Result<(Amounts, Amounts), ResourceError> {
    let Some(spec) = &pod.spec else {
        return Ok(Default::default());
    };
    let mut totals = (Amounts::default(), Amounts::default());
    for c in &spec.containers {
        totals = (totals.0.plus(requests(c)?), totals.1.plus(limits(c)?));
    }
    let mut sidecars = (Amounts::default(), Amounts::default());
    let mut init_peak = (Amounts::default(), Amounts::default());
    for c in spec.init_containers.iter().flatten() {
        let own = (requests(c)?, limits(c)?);
        let step = if c.restart_policy.as_deref() == Some("Always") {
            totals = (totals.0.plus(own.0), totals.1.plus(own.1));
            sidecars = (sidecars.0.plus(own.0), sidecars.1.plus(own.1));
            sidecars
        } else {
            (own.0.plus(sidecars.0), own.1.plus(sidecars.1))
        };
        init_peak = (init_peak.0.max(step.0), init_peak.1.max(step.1));
    }
    let mut effective = (totals.0.max(init_peak.0), totals.1.max(init_peak.1));
    if let Some(overhead) = &spec.overhead {
        let overhead = Container {
            name: "overhead".into(),
            resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
                requests: Some(overhead.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let extra = requests(&overhead)?;
        effective = (effective.0.plus(extra), effective.1.plus(extra));
    }
    Ok(effective)
}

/// The pod cgroup's values (see the module documentation).
pub fn pod_cgroup(pod: &Pod, node: &NodeResources) -> Result<Resources, ResourceError> {
    let (pod_requests, pod_limits) = pod_amounts(pod)?;
    let all: Vec<&Container> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
        .collect();
    let mut cpu_limited = true;
    let mut memory_limited = true;
    for c in &all {
        let own = limits(c)?;
        cpu_limited &= own.cpu_millis.unwrap_or(0) > 0;
        memory_limited &= own.memory_bytes.unwrap_or(0) > 0;
    }
    let mut out = Resources {
        pids_limit: node.pod_max_pids.max(0),
        ..Resources::default()
    };
    match qos_class(pod) {
        "BestEffort" => out.cpu_shares = MIN_SHARES,
        qos => {
            // Guaranteed pods limit everything by definition; Burstable ones only where
            // every container does.
            let guaranteed = qos == "Guaranteed";
            out.cpu_shares = shares(pod_requests.cpu_millis.unwrap_or(0));
            if guaranteed || cpu_limited {
                out.cpu_quota = quota(pod_limits.cpu_millis.unwrap_or(0), QUOTA_PERIOD_US);
                out.cpu_period = QUOTA_PERIOD_US;
            }
            if guaranteed || memory_limited {
                out.memory_limit = pod_limits.memory_bytes.unwrap_or(0);
            }
        }
    }
    Ok(out)
}
