//! `peapod describe pod NAME`: a pod and its events in kubectl's layout.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::{Container, ContainerState, ContainerStatus, Event, Pod};
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::List;

use crate::client::{encode, Client};
use crate::get::pod_names;
use crate::pods::{self, age};

/// Arguments of `peapod describe`.
#[derive(clap::Args)]
pub struct DescribeArgs {
    /// The resource type: pod (also pods, po), or pod/NAME.
    #[arg(value_name = "TYPE")]
    resource: String,
    /// The pods to describe.
    #[arg(value_name = "NAME")]
    names: Vec<String>,
}

/// Run `peapod describe`.
pub async fn run(client: &Client, namespace: &str, args: &DescribeArgs) -> anyhow::Result<()> {
    let names = pod_names(&args.resource, &args.names)?;
    let pods = if names.is_empty() {
        pods::fetch_all(client)
            .await?
            .into_iter()
            .filter(|p| pods::namespace(p) == namespace)
            .collect()
    } else {
        let mut found = Vec::new();
        for name in &names {
            found.push(pods::fetch(client, namespace, name).await?);
        }
        found
    };
    for (i, pod) in pods.iter().enumerate() {
        let path = format!(
            "/events?namespace={}&name={}",
            encode(pods::namespace(pod)),
            encode(pods::name(pod))
        );
        let events: List<Event> = client.get(&path).await?;
        if i > 0 {
            out!("\n");
        }
        out!(
            "{}",
            describe(pod, &events.items, crate::pods::now()).trim_end()
        );
    }
    Ok(())
}

/// The text kubectl prints for a pod and its events.
pub fn describe(pod: &Pod, events: &[Event], now: Timestamp) -> String {
    let mut w = String::new();
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let meta = &pod.metadata;
    let _ = writeln!(w, "Name:\t{}", pods::name(pod));
    let _ = writeln!(w, "Namespace:\t{}", pods::namespace(pod));
    let node = match (spec.node_name.as_deref(), status.host_ip.as_deref()) {
        (Some(node), Some(ip)) => format!("{node}/{ip}"),
        (Some(node), None) => node.to_owned(),
        _ => "<none>".into(),
    };
    let _ = writeln!(w, "Node:\t{node}");
    if let Some(start) = &status.start_time {
        let _ = writeln!(w, "Start Time:\t{}", time(start.0));
    }
    map(&mut w, "Labels", meta.labels.as_ref(), "=");
    map(&mut w, "Annotations", meta.annotations.as_ref(), ": ");
    match &meta.deletion_timestamp {
        Some(at) => {
            let _ = writeln!(w, "Status:\tTerminating (lasts {})", age(at.0, now));
        }
        None => {
            let _ = writeln!(w, "Status:\t{}", status.phase.as_deref().unwrap_or(""));
        }
    }
    if let Some(reason) = status.reason.as_deref().filter(|r| !r.is_empty()) {
        let _ = writeln!(w, "Reason:\t{reason}");
    }
    if let Some(message) = status.message.as_deref().filter(|m| !m.is_empty()) {
        let _ = writeln!(w, "Message:\t{message}");
    }
    let _ = writeln!(w, "IP:\t{}", status.pod_ip.as_deref().unwrap_or(""));
    let ips = status.pod_ips.clone().unwrap_or_default();
    if ips.is_empty() {
        let _ = writeln!(w, "IPs:\t<none>");
    } else {
        let _ = writeln!(w, "IPs:");
        for ip in ips {
            let _ = writeln!(w, "  IP:\t{}", ip.ip);
        }
    }
    let init = spec.init_containers.clone().unwrap_or_default();
    if !init.is_empty() {
        let _ = writeln!(w, "Init Containers:");
        let statuses = status.init_container_statuses.clone().unwrap_or_default();
        for c in &init {
            container(&mut w, c, statuses.iter().find(|s| s.name == c.name));
        }
    }
    let _ = writeln!(w, "Containers:");
    let statuses = status.container_statuses.clone().unwrap_or_default();
    for c in &spec.containers {
        container(&mut w, c, statuses.iter().find(|s| s.name == c.name));
    }
    let conditions = status.conditions.clone().unwrap_or_default();
    if !conditions.is_empty() {
        let _ = writeln!(w, "Conditions:\n  Type\tStatus");
        for c in conditions {
            let _ = writeln!(w, "  {} \t{} ", c.type_, c.status);
        }
    }
    let volumes = spec.volumes.clone().unwrap_or_default();
    if volumes.is_empty() {
        let _ = writeln!(w, "Volumes:\t<none>");
    } else {
        let _ = writeln!(w, "Volumes:");
        for v in volumes {
            let _ = writeln!(w, "  {}:", v.name);
            let kind = if let Some(e) = &v.empty_dir {
                let medium = e.medium.as_deref().unwrap_or("");
                format!("EmptyDir (a temporary directory that shares a pod's lifetime)\n    Medium:\t{medium}")
            } else if let Some(h) = &v.host_path {
                format!(
                    "HostPath (bare host directory volume)\n    Path:\t{}\n    HostPathType:\t{}",
                    h.path,
                    h.type_.as_deref().unwrap_or("")
                )
            } else if let Some(c) = &v.config_map {
                format!(
                    "ConfigMap (a volume populated by a ConfigMap)\n    Name:\t{}",
                    c.name
                )
            } else if let Some(s) = &v.secret {
                format!(
                    "Secret (a volume populated by a Secret)\n    SecretName:\t{}",
                    s.secret_name.as_deref().unwrap_or("")
                )
            } else {
                "<unknown>".into()
            };
            let _ = writeln!(w, "    Type:\t{kind}");
        }
    }
    let _ = writeln!(
        w,
        "QoS Class:\t{}",
        status.qos_class.as_deref().unwrap_or("")
    );
    map(&mut w, "Node-Selectors", spec.node_selector.as_ref(), "=");
    let tolerations: Vec<String> = spec
        .tolerations
        .unwrap_or_default()
        .iter()
        .map(|t| {
            let mut text = t.key.clone().unwrap_or_default();
            if let Some(value) = t.value.as_deref().filter(|v| !v.is_empty()) {
                let _ = write!(text, "={value}");
            }
            if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty()) {
                let _ = write!(text, ":{effect}");
            }
            if t.operator.as_deref() == Some("Exists") && t.value.is_none() {
                text.push_str(" op=Exists");
            }
            if let Some(seconds) = t.toleration_seconds {
                let _ = write!(text, " for {seconds}s");
            }
            text
        })
        .collect();
    list(&mut w, "Tolerations", &tolerations);
    if events.is_empty() {
        let _ = writeln!(w, "Events:\t<none>");
    } else {
        let _ = writeln!(w, "Events:\n  Type\tReason\tAge\tFrom\tMessage");
        let _ = writeln!(w, "  ----\t------\t----\t----\t-------");
        for e in events {
            let _ = writeln!(
                w,
                "  {}\t{}\t{}\t{}\t{}",
                e.type_.as_deref().unwrap_or(""),
                e.reason.as_deref().unwrap_or(""),
                event_age(e, now),
                e.source
                    .as_ref()
                    .and_then(|s| s.component.as_deref())
                    .or(e.reporting_component.as_deref())
                    .unwrap_or(""),
                e.message.as_deref().unwrap_or("").trim()
            );
        }
    }
    pods::align(&w, 0, 2)
}

/// An event's AGE cell: `5s`, or `2m (x3 over 10m)` for a repeated one.
fn event_age(event: &Event, now: Timestamp) -> String {
    let last = event
        .last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or(event.event_time.as_ref().map(|t| t.0));
    let first = event.first_timestamp.as_ref().map(|t| t.0).or(last);
    let Some(last) = last else {
        return "<unknown>".into();
    };
    match (event.count.unwrap_or(1), first) {
        (count, Some(first)) if count > 1 => {
            format!("{} (x{count} over {})", age(last, now), age(first, now))
        }
        _ => age(last, now),
    }
}

fn container(w: &mut String, c: &Container, status: Option<&ContainerStatus>) {
    let _ = writeln!(w, "  {}:", c.name);
    if let Some(id) = status.and_then(|s| s.container_id.as_deref()) {
        let _ = writeln!(w, "    Container ID:\t{id}");
    }
    let _ = writeln!(w, "    Image:\t{}", c.image.as_deref().unwrap_or(""));
    if let Some(s) = status {
        let _ = writeln!(w, "    Image ID:\t{}", s.image_id);
    }
    let ports = c.ports.clone().unwrap_or_default();
    let port =
        |p: i32, protocol: &Option<String>| format!("{p}/{}", protocol.as_deref().unwrap_or("TCP"));
    let container_ports: Vec<String> = ports
        .iter()
        .map(|p| port(p.container_port, &p.protocol))
        .collect();
    let host_ports: Vec<String> = ports
        .iter()
        .map(|p| port(p.host_port.unwrap_or(0), &p.protocol))
        .collect();
    let label = |many: bool, one: &str, several: &str| {
        if many {
            several.to_owned()
        } else {
            one.to_owned()
        }
    };
    let none = |v: &[String]| {
        if v.is_empty() {
            "<none>".into()
        } else {
            v.join(", ")
        }
    };
    let _ = writeln!(
        w,
        "    {}:\t{}",
        label(ports.len() > 1, "Port", "Ports"),
        none(&container_ports)
    );
    let _ = writeln!(
        w,
        "    {}:\t{}",
        label(ports.len() > 1, "Host Port", "Host Ports"),
        none(&host_ports)
    );
    for (title, items) in [("Command", &c.command), ("Args", &c.args)] {
        if let Some(items) = items.as_ref().filter(|i| !i.is_empty()) {
            let _ = writeln!(w, "    {title}:");
            for item in items {
                let _ = writeln!(w, "      {item}");
            }
        }
    }
    match status {
        Some(s) => {
            state(w, "State", s.state.as_ref());
            if let Some(last) = s.last_state.as_ref().filter(|l| l.terminated.is_some()) {
                state(w, "Last State", Some(last));
            }
            let _ = writeln!(w, "    Ready:\t{}", title_bool(s.ready));
            let _ = writeln!(w, "    Restart Count:\t{}", s.restart_count);
        }
        None => {
            let _ = writeln!(w, "    State:\tWaiting");
            let _ = writeln!(w, "    Ready:\tFalse");
            let _ = writeln!(w, "    Restart Count:\t0");
        }
    }
    let env = c.env.clone().unwrap_or_default();
    if env.is_empty() {
        let _ = writeln!(w, "    Environment:\t<none>");
    } else {
        let _ = writeln!(w, "    Environment:");
        for e in env {
            let value = e.value.unwrap_or_else(|| {
                if e.value_from.is_some() {
                    "<set from a source>".into()
                } else {
                    String::new()
                }
            });
            let _ = writeln!(w, "      {}:\t{value}", e.name);
        }
    }
    let mounts = c.volume_mounts.clone().unwrap_or_default();
    if mounts.is_empty() {
        let _ = writeln!(w, "    Mounts:\t<none>");
    } else {
        let _ = writeln!(w, "    Mounts:");
        for m in mounts {
            let mode = if m.read_only == Some(true) {
                "ro"
            } else {
                "rw"
            };
            let _ = writeln!(w, "      {} from {} ({mode})", m.mount_path, m.name);
        }
    }
}

fn state(w: &mut String, label: &str, state: Option<&ContainerState>) {
    let state = state.cloned().unwrap_or_default();
    if let Some(r) = &state.running {
        let _ = writeln!(w, "    {label}:\tRunning");
        if let Some(at) = &r.started_at {
            let _ = writeln!(w, "      Started:\t{}", time(at.0));
        }
    } else if let Some(t) = &state.terminated {
        let _ = writeln!(w, "    {label}:\tTerminated");
        if let Some(reason) = &t.reason {
            let _ = writeln!(w, "      Reason:\t{reason}");
        }
        if let Some(message) = t.message.as_deref().filter(|m| !m.is_empty()) {
            let _ = writeln!(w, "      Message:\t{message}");
        }
        let _ = writeln!(w, "      Exit Code:\t{}", t.exit_code);
        if let Some(signal) = t.signal.filter(|s| *s > 0) {
            let _ = writeln!(w, "      Signal:\t{signal}");
        }
        if let Some(at) = &t.started_at {
            let _ = writeln!(w, "      Started:\t{}", time(at.0));
        }
        if let Some(at) = &t.finished_at {
            let _ = writeln!(w, "      Finished:\t{}", time(at.0));
        }
    } else {
        let _ = writeln!(w, "    {label}:\tWaiting");
        if let Some(reason) = state.waiting.as_ref().and_then(|s| s.reason.as_deref()) {
            let _ = writeln!(w, "      Reason:\t{reason}");
        }
    }
}

/// `Labels:  a=b` then one `k=v` per line, aligned; `<none>` when empty.
fn map(w: &mut String, title: &str, values: Option<&BTreeMap<String, String>>, separator: &str) {
    let items: Vec<String> = values
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}{separator}{v}"))
        .collect();
    list(w, title, &items);
}

fn list(w: &mut String, title: &str, items: &[String]) {
    if items.is_empty() {
        let _ = writeln!(w, "{title}:\t<none>");
    }
    for (i, item) in items.iter().enumerate() {
        let head = if i == 0 {
            format!("{title}:")
        } else {
            String::new()
        };
        let _ = writeln!(w, "{head}\t{item}");
    }
}

fn title_bool(value: bool) -> &'static str {
    if value {
        "True"
    } else {
        "False"
    }
}

/// A time as kubectl's describe prints it (RFC 1123 with a numeric zone), in local time.
fn time(at: Timestamp) -> String {
    let utc = chrono::DateTime::from_timestamp(at.as_second(), 0).unwrap_or_default();
    utc.with_timezone(&chrono::Local)
        .format("%a, %d %b %Y %H:%M:%S %z")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerPort, ContainerStateRunning, ContainerStateTerminated, EnvVar, EventSource,
        PodCondition, PodIP, PodSpec, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    #[test]
    fn layout_is_kubectls() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("web-node1".into()),
                namespace: Some("default".into()),
                labels: Some(
                    [
                        ("app".into(), "web".into()),
                        ("tier".into(), "front".into()),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node1".into()),
                containers: vec![Container {
                    name: "web".into(),
                    image: Some("busybox".into()),
                    ports: Some(vec![ContainerPort {
                        container_port: 8080,
                        ..Default::default()
                    }]),
                    env: Some(vec![EnvVar {
                        name: "MODE".into(),
                        value: Some("demo".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some("10.88.0.5".into()),
                pod_ips: Some(vec![PodIP {
                    ip: "10.88.0.5".into(),
                }]),
                qos_class: Some("BestEffort".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                container_statuses: Some(vec![ContainerStatus {
                    name: "web".into(),
                    image_id: "sha256:abc".into(),
                    ready: true,
                    restart_count: 1,
                    state: Some(ContainerState {
                        running: Some(ContainerStateRunning { started_at: None }),
                        ..Default::default()
                    }),
                    last_state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: 1,
                            reason: Some("Error".into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        };
        let event = Event {
            type_: Some("Normal".into()),
            reason: Some("Started".into()),
            message: Some("Started container web".into()),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                ..Default::default()
            }),
            last_timestamp: Some(Time(at(0))),
            ..Default::default()
        };
        let text = describe(&pod, &[event], at(45));
        // One tabwriter for the whole text, as kubectl: consecutive lines with
        // tabs share a column, so Conditions aligns with the lines after it.
        let expected = "\
Name:         web-node1
Namespace:    default
Node:         node1
Labels:       app=web
              tier=front
Annotations:  <none>
Status:       Running
IP:           10.88.0.5
IPs:
  IP:  10.88.0.5
Containers:
  web:
    Image:          busybox
    Image ID:       sha256:abc
    Port:           8080/TCP
    Host Port:      0/TCP
    State:          Running
    Last State:     Terminated
      Reason:       Error
      Exit Code:    1
    Ready:          True
    Restart Count:  1
    Environment:
      MODE:  demo
    Mounts:  <none>
Conditions:
  Type           Status
  Ready          True 
Volumes:         <none>
QoS Class:       BestEffort
Node-Selectors:  <none>
Tolerations:     <none>
Events:
  Type    Reason   Age   From     Message
  ----    ------   ----  ----     -------
  Normal  Started  45s   kubelet  Started container web
";
        assert_eq!(text, expected);
    }
}
