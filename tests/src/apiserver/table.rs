//! Server-side printing (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`), which
//! `kubectl get` asks for: the columns of the real server's pod and node printers (with
//! `-o wide` columns at priority 1), and NAME/AGE for everything else.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::resources::Resource;

/// Whether an `Accept` header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

/// The cells of one object's row.
type Cells = fn(&Value, DateTime<Utc>) -> Vec<Value>;

fn column(name: &str, kind: &str, format: &str, priority: u8, description: &str) -> Value {
    json!({"name": name, "type": kind, "format": format, "priority": priority, "description": description})
}

/// The Table of `objects`, each row carrying the object as `include_object` says
/// (`None`, `Metadata` (the default) or `Object`).
pub fn table(resource: &Resource, objects: &[Value], rv: u64, include_object: &str) -> Value {
    let now = Utc::now();
    let (columns, cells): (Vec<Value>, Cells) = match (resource.group, resource.plural) {
        ("", "pods") => (pod_columns(), pod_cells),
        ("", "nodes") => (node_columns(), node_cells),
        ("", "events") => (event_columns(), event_cells),
        _ => (
            vec![
                column("Name", "string", "name", 0, "Name of the object."),
                column("Age", "string", "", 0, "Time since creation."),
            ],
            |o, now| vec![json!(name(o)), json!(age(o, now))],
        ),
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut row = json!({"cells": cells(o, now)});
            match include_object {
                "None" => {}
                "Object" => row["object"] = o.clone(),
                _ => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o["metadata"],
                    })
                }
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv.to_string()},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or("")
}

fn text_or_none(v: &Value) -> Value {
    match v.as_str() {
        Some(s) if !s.is_empty() => json!(s),
        _ => json!("<none>"),
    }
}

fn age(o: &Value, now: DateTime<Utc>) -> String {
    since(&o["metadata"]["creationTimestamp"], now).unwrap_or_else(|| "<unknown>".into())
}

fn since(timestamp: &Value, now: DateTime<Utc>) -> Option<String> {
    let at = DateTime::parse_from_rfc3339(timestamp.as_str()?).ok()?;
    Some(human_duration((now - at.with_timezone(&Utc)).num_seconds()))
}

/// A duration as the API server's printers write ages: `45s`, `3m20s`, `95m`, `5h10m`,
/// `2d3h`, `40d`, `2y30d`.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86_400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        match s % 60 {
            0 => format!("{m}m"),
            r => format!("{m}m{r}s"),
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        match m % 60 {
            0 => format!("{h}h"),
            r => format!("{h}h{r}m"),
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 192 {
        match h % 24 {
            0 => format!("{d}d"),
            r => format!("{d}d{r}h"),
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else if d < 365 * 8 {
        match d % 365 {
            0 => format!("{}y", d / 365),
            r => format!("{}y{r}d", d / 365),
        }
    } else {
        format!("{}y", d / 365)
    }
}

fn pod_columns() -> Vec<Value> {
    vec![
        column("Name", "string", "name", 0, "Name of the pod."),
        column("Ready", "string", "", 0, "The aggregate readiness state of this pod for accepting traffic."),
        column("Status", "string", "", 0, "The aggregate status of the containers in this pod."),
        column("Restarts", "string", "", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
        column("Age", "string", "", 0, "Time since creation."),
        column("IP", "string", "", 1, "IP address assigned to the pod."),
        column("Node", "string", "", 1, "Name of the node the pod is assigned to."),
        column("Nominated Node", "string", "", 1, "Name of the node the pod is nominated to."),
        column("Readiness Gates", "string", "", 1, "Readiness gates of the pod."),
    ]
}

fn exit_text(prefix: &str, terminated: &Value) -> String {
    match terminated["reason"].as_str() {
        Some(r) if !r.is_empty() => format!("{prefix}{r}"),
        _ => match terminated["signal"].as_i64() {
            Some(sig) if sig != 0 => format!("{prefix}Signal:{sig}"),
            _ => format!(
                "{prefix}ExitCode:{}",
                terminated["exitCode"].as_i64().unwrap_or(0)
            ),
        },
    }
}

/// The STATUS column of a pod, as the server's printer derives it from phase, reason,
/// init and app container states and the deletion timestamp.
pub fn pod_status(pod: &Value) -> String {
    let status = &pod["status"];
    let mut reason = match status["reason"].as_str() {
        Some(r) if !r.is_empty() => r.to_string(),
        _ => status["phase"].as_str().unwrap_or("").to_string(),
    };
    let empty = Vec::new();
    let inits = status["initContainerStatuses"].as_array().unwrap_or(&empty);
    let init_total = pod["spec"]["initContainers"].as_array().map_or(0, Vec::len);
    let mut initializing = false;
    for (i, c) in inits.iter().enumerate() {
        let (terminated, waiting) = (&c["state"]["terminated"], &c["state"]["waiting"]);
        if terminated.is_object() && terminated["exitCode"].as_i64() == Some(0) {
            continue;
        }
        initializing = true;
        reason = if terminated.is_object() {
            exit_text("Init:", terminated)
        } else {
            match waiting["reason"].as_str() {
                Some(r) if !r.is_empty() && r != "PodInitializing" => format!("Init:{r}"),
                _ => format!("Init:{i}/{init_total}"),
            }
        };
        break;
    }
    if !initializing {
        let mut has_running = false;
        let containers = status["containerStatuses"].as_array().unwrap_or(&empty);
        for c in containers.iter().rev() {
            let state = &c["state"];
            if let Some(r) = state["waiting"]["reason"]
                .as_str()
                .filter(|r| !r.is_empty())
            {
                reason = r.to_string();
            } else if state["terminated"].is_object() {
                reason = exit_text("", &state["terminated"]);
            } else if state["running"].is_object() && c["ready"] == json!(true) {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            let ready = status["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == json!("Ready") && c["status"] == json!("True"))
            });
            reason = if ready { "Running" } else { "NotReady" }.into();
        }
    }
    if pod["metadata"]["deletionTimestamp"].is_string() {
        reason = if status["reason"] == json!("NodeLost") {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    reason
}

fn restarts(pod: &Value, now: DateTime<Utc>) -> String {
    let status = &pod["status"];
    let all: Vec<&Value> = ["initContainerStatuses", "containerStatuses"]
        .iter()
        .flat_map(|l| status[*l].as_array().into_iter().flatten())
        .collect();
    let count: i64 = all.iter().filter_map(|c| c["restartCount"].as_i64()).sum();
    let last = all
        .iter()
        .filter_map(|c| c["lastState"]["terminated"]["finishedAt"].as_str())
        .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
        .max();
    match last {
        Some(at) if count > 0 => format!(
            "{count} ({} ago)",
            human_duration((now - at.with_timezone(&Utc)).num_seconds())
        ),
        _ => count.to_string(),
    }
}

fn pod_cells(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let total = pod["spec"]["containers"].as_array().map_or(0, Vec::len);
    let ready = pod["status"]["containerStatuses"]
        .as_array()
        .map_or(0, |cs| {
            cs.iter().filter(|c| c["ready"] == json!(true)).count()
        });
    let gates = pod["spec"]["readinessGates"].as_array().map_or(0, Vec::len);
    let gates_text = if gates == 0 {
        "<none>".to_string()
    } else {
        let conditions = pod["status"]["conditions"].as_array();
        let met = pod["spec"]["readinessGates"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| {
                conditions.is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == g["conditionType"] && c["status"] == json!("True"))
                })
            })
            .count();
        format!("{met}/{gates}")
    };
    vec![
        json!(name(pod)),
        json!(format!("{ready}/{total}")),
        json!(pod_status(pod)),
        json!(restarts(pod, now)),
        json!(age(pod, now)),
        text_or_none(&pod["status"]["podIP"]),
        text_or_none(&pod["spec"]["nodeName"]),
        text_or_none(&pod["status"]["nominatedNodeName"]),
        json!(gates_text),
    ]
}

fn node_columns() -> Vec<Value> {
    vec![
        column("Name", "string", "name", 0, "Name of the node."),
        column("Status", "string", "", 0, "The status of the node."),
        column("Roles", "string", "", 0, "The roles of the node."),
        column("Age", "string", "", 0, "Time since creation."),
        column(
            "Version",
            "string",
            "",
            0,
            "Kubelet Version reported by the node.",
        ),
        column("Internal-IP", "string", "", 1, "The node's internal IP."),
        column("External-IP", "string", "", 1, "The node's external IP."),
        column(
            "OS-Image",
            "string",
            "",
            1,
            "OS image reported by the node.",
        ),
        column(
            "Kernel-Version",
            "string",
            "",
            1,
            "Kernel version reported by the node.",
        ),
        column(
            "Container-Runtime",
            "string",
            "",
            1,
            "Container runtime reported by the node.",
        ),
    ]
}

/// The STATUS column of a node: its Ready condition, and SchedulingDisabled if cordoned.
pub fn node_status(node: &Value) -> String {
    let ready = node["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == json!("Ready")))
        .map(|c| match c["status"].as_str() {
            Some("True") => "Ready",
            Some("False") => "NotReady",
            _ => "Unknown",
        })
        .unwrap_or("Unknown");
    if node["spec"]["unschedulable"] == json!(true) {
        format!("{ready},SchedulingDisabled")
    } else {
        ready.to_string()
    }
}

fn node_cells(node: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut roles: Vec<String> = node["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            k.strip_prefix("node-role.kubernetes.io/")
                .map(str::to_string)
                .or_else(|| {
                    (k == "kubernetes.io/role").then(|| v.as_str().unwrap_or("").to_string())
                })
        })
        .filter(|r| !r.is_empty())
        .collect();
    roles.sort();
    let address = |kind: &str| {
        node["status"]["addresses"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["type"] == json!(kind)))
            .map_or(json!("<none>"), |x| text_or_none(&x["address"]))
    };
    let info = &node["status"]["nodeInfo"];
    vec![
        json!(name(node)),
        json!(node_status(node)),
        json!(if roles.is_empty() {
            "<none>".to_string()
        } else {
            roles.join(",")
        }),
        json!(age(node, now)),
        json!(info["kubeletVersion"].as_str().unwrap_or("")),
        address("InternalIP"),
        address("ExternalIP"),
        text_or_none(&info["osImage"]),
        text_or_none(&info["kernelVersion"]),
        text_or_none(&info["containerRuntimeVersion"]),
    ]
}

fn event_columns() -> Vec<Value> {
    vec![
        column(
            "Last Seen",
            "string",
            "",
            0,
            "Time since the event was last seen.",
        ),
        column(
            "Type",
            "string",
            "",
            0,
            "Type of the event (Normal, Warning).",
        ),
        column("Reason", "string", "", 0, "Why the event happened."),
        column("Object", "string", "", 0, "The object the event is about."),
        column("Message", "string", "", 0, "What happened."),
        column("Name", "string", "name", 1, "Name of the event."),
    ]
}

fn event_cells(event: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let last = ["lastTimestamp", "eventTime", "firstTimestamp"]
        .iter()
        .find_map(|f| since(&event[*f], now))
        .or_else(|| since(&event["metadata"]["creationTimestamp"], now))
        .unwrap_or_else(|| "<unknown>".into());
    let object = &event["involvedObject"];
    let kind = object["kind"].as_str().unwrap_or("").to_ascii_lowercase();
    vec![
        json!(last),
        json!(event["type"].as_str().unwrap_or("")),
        json!(event["reason"].as_str().unwrap_or("")),
        json!(format!("{kind}/{}", object["name"].as_str().unwrap_or(""))),
        json!(event["message"].as_str().unwrap_or("").trim()),
        json!(name(event)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_status_follows_the_printer() {
        let running = json!({"status": {"phase": "Running", "containerStatuses": [
            {"name": "a", "ready": true, "state": {"running": {}}}]}});
        assert_eq!(pod_status(&running), "Running");
        let creating = json!({"status": {"phase": "Pending", "containerStatuses": [
            {"name": "a", "ready": false, "state": {"waiting": {"reason": "ContainerCreating"}}}]}});
        assert_eq!(pod_status(&creating), "ContainerCreating");
        let init = json!({"spec": {"initContainers": [{}, {}]}, "status": {"phase": "Pending",
            "initContainerStatuses": [{"state": {"terminated": {"exitCode": 0}}},
                                      {"state": {"running": {}}}]}});
        assert_eq!(pod_status(&init), "Init:1/2");
        let done = json!({"status": {"phase": "Succeeded", "containerStatuses": [
            {"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}});
        assert_eq!(pod_status(&done), "Completed");
        let crash = json!({"status": {"phase": "Running", "containerStatuses": [
            {"state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(pod_status(&crash), "CrashLoopBackOff");
        let going = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"},
                           "status": {"phase": "Running"}});
        assert_eq!(pod_status(&going), "Terminating");
    }

    #[test]
    fn ages_read_like_the_printer() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(200), "3m20s");
        assert_eq!(human_duration(95 * 60), "95m");
        assert_eq!(human_duration(5 * 3600 + 600), "5h10m");
        assert_eq!(human_duration(3 * 86_400 + 3600), "3d1h");
    }
}
