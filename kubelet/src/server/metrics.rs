//! `/metrics` and `/metrics/resource` in the Prometheus text exposition format (0.0.4):
//! the kubelet's own gauges and counters (pods, containers by state, HTTP requests, the
//! process), and the resource metrics (node, pod and container cpu and working set) that
//! upstream's resource metrics endpoint serves.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;

use super::summary::{CpuStats, MemoryStats, PodStats, Summary};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metrics page being written: families, each with HELP, TYPE and samples.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// Start a family: `kind` is `gauge` or `counter`.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape(help, false));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// One sample of the current family, with an optional timestamp (ms since the epoch).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64, at: Option<i64>) {
        self.text.push_str(name);
        if !labels.is_empty() {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v, true)))
                .collect();
            let _ = write!(self.text, "{{{}}}", labels.join(","));
        }
        let _ = write!(self.text, " {}", number(value));
        if let Some(at) = at {
            let _ = write!(self.text, " {at}");
        }
        self.text.push('\n');
    }

    /// The page.
    pub fn finish(self) -> String {
        self.text
    }
}

/// Label values escape `\`, `"` and newlines; HELP text escapes `\` and newlines.
fn escape(text: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

/// Integers without a fraction, as Prometheus clients print them.
fn number(value: f64) -> String {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// Requests served, by method and the path's first segment (as upstream's `path` label).
#[derive(Default)]
pub struct Requests {
    counts: Mutex<BTreeMap<(String, String), u64>>,
}

impl Requests {
    /// Count one request.
    pub fn record(&self, method: &str, path: &str) {
        let segment = path.trim_start_matches('/').split('/').next().unwrap_or("");
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry((method.into(), segment.into())).or_default() += 1;
    }

    fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// `/metrics`: the kubelet's own metrics.
pub fn kubelet_metrics(
    node_name: &str,
    pods: &[Pod],
    running_pods: usize,
    requests: &Requests,
    proc_self: &Path,
) -> String {
    let mut page = Exposition::default();
    page.family(
        "kubelet_node_name",
        "gauge",
        "The node's name. The count is always 1.",
    );
    page.sample("kubelet_node_name", &[("node", node_name)], 1.0, None);
    page.family(
        "kubelet_running_pods",
        "gauge",
        "Number of pods that have a running pod sandbox",
    );
    page.sample("kubelet_running_pods", &[], running_pods as f64, None);
    page.family(
        "kubelet_running_containers",
        "gauge",
        "Number of containers currently running",
    );
    for (state, count) in container_states(pods) {
        page.sample(
            "kubelet_running_containers",
            &[("container_state", state)],
            count as f64,
            None,
        );
    }
    page.family(
        "kubelet_http_requests_total",
        "counter",
        "Number of the http requests received since the server started",
    );
    for ((method, path), count) in requests.snapshot() {
        let labels = [
            ("method", method.as_str()),
            ("path", path.as_str()),
            ("server_type", "readwrite"),
        ];
        page.sample("kubelet_http_requests_total", &labels, count as f64, None);
    }
    process_metrics(&mut page, proc_self);
    page.finish()
}

/// Containers by runtime state: `running`, `exited`, and `created` (made, not started).
fn container_states(pods: &[Pod]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::from([("created", 0), ("exited", 0), ("running", 0)]);
    let statuses = pods.iter().filter_map(|p| p.status.as_ref()).flat_map(|s| {
        let init = s.init_container_statuses.iter().flatten();
        init.chain(s.container_statuses.iter().flatten())
    });
    for status in statuses {
        let state = status.state.as_ref();
        let key = if state.is_some_and(|s| s.running.is_some()) {
            "running"
        } else if state.is_some_and(|s| s.terminated.is_some()) {
            "exited"
        } else if status.container_id.is_some() {
            "created"
        } else {
            continue;
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
}

/// The process metrics every Prometheus client exports, from `/proc/self`.
fn process_metrics(page: &mut Exposition, proc_self: &Path) {
    let status = std::fs::read_to_string(proc_self.join("status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
    if let Some(kib) = rss_kib {
        page.family(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        page.sample(
            "process_resident_memory_bytes",
            &[],
            (kib * 1024) as f64,
            None,
        );
    }
    // Fields after the command's closing parenthesis: utime and stime are the 12th and
    // 13th, in clock ticks of 10 ms.
    let stat = std::fs::read_to_string(proc_self.join("stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    if let (Some(user), Some(system)) = (ticks(11), ticks(12)) {
        page.family(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
        );
        page.sample(
            "process_cpu_seconds_total",
            &[],
            (user + system) as f64 / 100.0,
            None,
        );
    }
    if let Ok(fds) = std::fs::read_dir(proc_self.join("fd")) {
        page.family(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
        );
        page.sample("process_open_fds", &[], fds.count() as f64, None);
    }
}

/// `/metrics/resource`: cpu and working set of the node, pods and containers, stamped
/// with the time they were read, as upstream's resource metrics endpoint.
pub fn resource_metrics(summary: &Summary, now: DateTime<Utc>) -> String {
    let mut page = Exposition::default();
    for level in [Level::Node, Level::Pod, Level::Container] {
        let scope = format!("the {}", level.name());
        for measure in [Measure::Cpu, Measure::Memory] {
            let name = format!("{}_{}", level.name(), measure.suffix());
            page.family(&name, measure.kind(), &measure.help(&scope));
            for (labels, value) in samples(summary, level, measure) {
                let labels: Vec<(&str, &str)> =
                    labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                if let Some((value, at)) = value {
                    page.sample(&name, &labels, value, at);
                }
            }
        }
    }
    page.family(
        "resource_scrape_error",
        "gauge",
        "1 if there was an error while getting container metrics, 0 otherwise",
    );
    page.sample(
        "resource_scrape_error",
        &[],
        0.0,
        Some(now.timestamp_millis()),
    );
    page.finish()
}

/// Whose resources a metric measures.
#[derive(Clone, Copy)]
enum Level {
    Node,
    Pod,
    Container,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Node => "node",
            Level::Pod => "pod",
            Level::Container => "container",
        }
    }
}

/// What a resource metric measures.
#[derive(Clone, Copy)]
enum Measure {
    Cpu,
    Memory,
}

impl Measure {
    fn suffix(self) -> &'static str {
        match self {
            Measure::Cpu => "cpu_usage_seconds_total",
            Measure::Memory => "memory_working_set_bytes",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Measure::Cpu => "counter",
            Measure::Memory => "gauge",
        }
    }

    fn help(self, scope: &str) -> String {
        match self {
            Measure::Cpu => format!("Cumulative cpu time consumed by {scope} in core-seconds"),
            Measure::Memory => format!("Current working set of {scope} in bytes"),
        }
    }

    /// The value and its time (ms since the epoch) from a summary's stats.
    fn read(
        self,
        cpu: Option<&CpuStats>,
        memory: Option<&MemoryStats>,
    ) -> Option<(f64, Option<i64>)> {
        match self {
            Measure::Cpu => {
                cpu.and_then(|c| Some((c.usage_core_nano_seconds? as f64 / 1e9, ms(&c.time))))
            }
            Measure::Memory => {
                memory.and_then(|m| Some((m.working_set_bytes? as f64, ms(&m.time))))
            }
        }
    }
}

/// One label set and value per node, pod or container of the summary.
type Sample = (Vec<(&'static str, String)>, Option<(f64, Option<i64>)>);

fn samples(summary: &Summary, level: Level, measure: Measure) -> Vec<Sample> {
    let pod_labels = |pod: &PodStats| {
        vec![
            ("namespace", pod.pod_ref.namespace.clone()),
            ("pod", pod.pod_ref.name.clone()),
        ]
    };
    match level {
        Level::Node => vec![(
            Vec::new(),
            measure.read(Some(&summary.node.cpu), Some(&summary.node.memory)),
        )],
        Level::Pod => summary
            .pods
            .iter()
            .map(|pod| {
                (
                    pod_labels(pod),
                    measure.read(pod.cpu.as_ref(), pod.memory.as_ref()),
                )
            })
            .collect(),
        Level::Container => summary
            .pods
            .iter()
            .flat_map(|pod| {
                pod.containers.iter().map(move |c| {
                    let mut labels = vec![("container", c.name.clone())];
                    labels.extend(pod_labels(pod));
                    (labels, measure.read(c.cpu.as_ref(), c.memory.as_ref()))
                })
            })
            .collect(),
    }
}

/// Milliseconds since the epoch of an RFC 3339 time.
fn ms(time: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(time)
        .ok()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStatus, PodStatus,
    };

    #[test]
    fn samples_follow_the_text_format() {
        let mut page = Exposition::default();
        page.family("x_total", "counter", "Things.\nCounted \\ here");
        page.sample("x_total", &[("a", "q\"u\\o\nte"), ("b", "2")], 3.0, None);
        page.sample("x_total", &[], 0.25, Some(1700000000000));
        assert_eq!(
            page.finish(),
            "# HELP x_total Things.\\nCounted \\\\ here\n# TYPE x_total counter\n\
             x_total{a=\"q\\\"u\\\\o\\nte\",b=\"2\"} 3\nx_total 0.25 1700000000000\n"
        );
    }

    #[test]
    fn kubelet_metrics_count_pods_containers_and_requests() {
        let running = ContainerStatus {
            name: "web".into(),
            container_id: Some("peapod://c1".into()),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        };
        let pod = Pod {
            status: Some(PodStatus {
                container_statuses: Some(vec![running]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        };
        let requests = Requests::default();
        requests.record("GET", "/pods");
        requests.record("GET", "/pods");
        requests.record("POST", "/exec/ns/p/c");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("status"), "Name:\tx\nVmRSS:\t   2048 kB\n").unwrap();
        std::fs::write(
            dir.path().join("stat"),
            "7 (peapod kubelet) S 1 7 7 0 -1 4194560 1 0 0 0 150 50 0 0\n",
        )
        .unwrap();
        let text = kubelet_metrics("node-a", &[pod], 1, &requests, dir.path());
        for line in [
            "kubelet_node_name{node=\"node-a\"} 1",
            "kubelet_running_pods 1",
            "kubelet_running_containers{container_state=\"running\"} 1",
            "kubelet_running_containers{container_state=\"exited\"} 0",
            "kubelet_http_requests_total{method=\"GET\",path=\"pods\",server_type=\"readwrite\"} 2",
            "kubelet_http_requests_total{method=\"POST\",path=\"exec\",server_type=\"readwrite\"} 1",
            "process_resident_memory_bytes 2097152",
            "process_cpu_seconds_total 2",
            "# TYPE kubelet_running_pods gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from:\n{text}");
        }
    }
}
