//! The node's conditions (MemoryPressure, DiskPressure, PIDPressure, Ready) with
//! upstream's reasons and messages, and a tracker that keeps `lastTransitionTime` until
//! a condition's status changes.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::NodeCondition;

use super::capacity::Pressure;
use crate::pod::state::Transitions;
use crate::pod::status::time;

/// The node's conditions over time: one per node, fed each status computation.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    transitions: Transitions,
}

impl Conditions {
    /// Take the transition times of `existing` conditions (the registered Node's, after a
    /// kubelet restart), so a condition that keeps its status keeps its time, as upstream's
    /// setters keep the existing node's.
    pub fn seed(&mut self, existing: &[NodeCondition]) {
        for condition in existing {
            let Some(since) = condition.last_transition_time.as_ref() else {
                continue;
            };
            let nanos = u32::try_from(since.0.subsec_nanosecond()).unwrap_or(0);
            let since = DateTime::from_timestamp(since.0.as_second(), nanos).unwrap_or_default();
            let status = condition.status == "True";
            self.transitions
                .seen
                .retain(|(kind, _, _)| *kind != condition.type_);
            self.transitions
                .seen
                .push((condition.type_.clone(), status, since));
        }
    }

    /// The conditions for `pressure` and readiness at `now`, in upstream's order.
    /// `not_ready`: why the node is not ready (empty: it is). `lastHeartbeatTime` is
    /// `now`, as upstream stamps every status it posts; `lastTransitionTime` is when the
    /// condition last took its status.
    pub fn observe(
        &mut self,
        pressure: Pressure,
        not_ready: &[String],
        now: DateTime<Utc>,
    ) -> Vec<NodeCondition> {
        let ready = not_ready.is_empty();
        let ready_message = if ready {
            "kubelet is posting ready status".to_string()
        } else {
            not_ready.join(", ")
        };
        // (type, status, reason, message): pressure conditions are True under pressure.
        let rows = [
            (
                "MemoryPressure",
                pressure.memory,
                if pressure.memory {
                    (
                        "KubeletHasInsufficientMemory",
                        "kubelet has insufficient memory available",
                    )
                } else {
                    (
                        "KubeletHasSufficientMemory",
                        "kubelet has sufficient memory available",
                    )
                },
            ),
            (
                "DiskPressure",
                pressure.disk,
                if pressure.disk {
                    ("KubeletHasDiskPressure", "kubelet has disk pressure")
                } else {
                    ("KubeletHasNoDiskPressure", "kubelet has no disk pressure")
                },
            ),
            (
                "PIDPressure",
                pressure.pid,
                if pressure.pid {
                    (
                        "KubeletHasInsufficientPID",
                        "kubelet has insufficient PID available",
                    )
                } else {
                    (
                        "KubeletHasSufficientPID",
                        "kubelet has sufficient PID available",
                    )
                },
            ),
            (
                "Ready",
                ready,
                if ready {
                    ("KubeletReady", "")
                } else {
                    ("KubeletNotReady", "")
                },
            ),
        ];
        rows.into_iter()
            .map(|(kind, status, (reason, message))| {
                let since = self.transitions.observe(kind, status, now);
                let message = if kind == "Ready" {
                    ready_message.clone()
                } else {
                    message.to_string()
                };
                NodeCondition {
                    type_: kind.to_string(),
                    status: if status { "True" } else { "False" }.to_string(),
                    reason: Some(reason.to_string()),
                    message: Some(message),
                    last_heartbeat_time: Some(time(now)),
                    last_transition_time: Some(time(since)),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, second).unwrap()
    }

    fn find<'a>(conditions: &'a [NodeCondition], kind: &str) -> &'a NodeCondition {
        conditions.iter().find(|c| c.type_ == kind).unwrap()
    }

    #[test]
    fn healthy_node_reads_as_upstream() {
        let conditions = Conditions::default().observe(Pressure::default(), &[], at(0));
        let kinds: Vec<_> = conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            kinds,
            ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        );
        let ready = find(&conditions, "Ready");
        assert_eq!(ready.status, "True");
        assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("kubelet is posting ready status")
        );
        let memory = find(&conditions, "MemoryPressure");
        assert_eq!(memory.status, "False");
        assert_eq!(memory.reason.as_deref(), Some("KubeletHasSufficientMemory"));
        assert_eq!(
            find(&conditions, "PIDPressure").reason.as_deref(),
            Some("KubeletHasSufficientPID")
        );
    }

    #[test]
    fn seeded_transition_times_survive_a_restart() {
        let before = Conditions::default().observe(Pressure::default(), &[], at(5));
        let mut restarted = Conditions::default();
        restarted.seed(&before);
        let after = restarted.observe(Pressure::default(), &[], at(30));
        assert_eq!(
            find(&after, "Ready").last_transition_time,
            Some(time(at(5)))
        );
        let pressed = Pressure {
            memory: true,
            ..Pressure::default()
        };
        let changed = restarted.observe(pressed, &[], at(40));
        let memory = find(&changed, "MemoryPressure");
        assert_eq!(memory.last_transition_time, Some(time(at(40))));
    }

    #[test]
    fn transition_times_hold_until_the_status_changes() {
        let mut tracker = Conditions::default();
        tracker.observe(Pressure::default(), &[], at(0));
        let same = tracker.observe(Pressure::default(), &[], at(10));
        let disk = find(&same, "DiskPressure");
        assert_eq!(disk.last_transition_time, Some(time(at(0))));
        assert_eq!(disk.last_heartbeat_time, Some(time(at(10))));
        let pressed = Pressure {
            disk: true,
            ..Pressure::default()
        };
        let changed = tracker.observe(pressed, &["container runtime is down".into()], at(20));
        let disk = find(&changed, "DiskPressure");
        assert_eq!(disk.status, "True");
        assert_eq!(disk.reason.as_deref(), Some("KubeletHasDiskPressure"));
        assert_eq!(disk.last_transition_time, Some(time(at(20))));
        let memory = find(&changed, "MemoryPressure");
        assert_eq!(memory.last_transition_time, Some(time(at(0))));
        let ready = find(&changed, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("KubeletNotReady"));
        assert_eq!(ready.message.as_deref(), Some("container runtime is down"));
        assert_eq!(ready.last_transition_time, Some(time(at(20))));
    }
}
