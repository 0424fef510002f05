//! How kubectl shows pods, shared by `get`, `describe` and `logs`: the STATUS
//! and RESTARTS cells, ages, aligned columns, and finding a pod by name.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::List;

use crate::client::{encode, Client};

/// The pod `namespace/name` (`name` may be written `pod/NAME`, as kubectl takes it).
pub async fn fetch(client: &Client, namespace: &str, name: &str) -> anyhow::Result<Pod> {
    let name = pod_name(name);
    client
        .get(&format!("/pods/{}/{}", encode(namespace), encode(name)))
        .await
}

/// `pod/web` and `pods/web` name the pod `web`, as kubectl accepts them.
pub fn pod_name(arg: &str) -> &str {
    arg.strip_prefix("pod/")
        .or_else(|| arg.strip_prefix("pods/"))
        .unwrap_or(arg)
}

/// Every pod of the node.
pub async fn fetch_all(client: &Client) -> anyhow::Result<Vec<Pod>> {
    let list: List<Pod> = client.get("/pods").await?;
    Ok(list.items)
}

/// The current time (k8s-openapi's jiff is built without a clock).
pub fn now() -> Timestamp {
    let now = chrono::Utc::now();
    Timestamp::new(now.timestamp(), now.timestamp_subsec_nanos() as i32)
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A pod's name, namespace and node name, empty if unset.
pub fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

/// A pod's namespace.
pub fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

/// The READY, STATUS and RESTARTS cells of a pod, computed as kubectl's pod
/// printer computes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `ready/total` containers.
    pub ready: String,
    /// The STATUS cell.
    pub status: String,
    /// Restarts of all containers.
    pub restarts: i32,
    /// When a container last ended before a restart.
    pub last_restart: Option<Timestamp>,
}

impl Summary {
    /// The RESTARTS cell: `3 (5m ago)` once something restarted.
    pub fn restarts_cell(&self, now: Timestamp) -> String {
        match self.last_restart {
            Some(at) if self.restarts != 0 => format!("{} ({} ago)", self.restarts, age(at, now)),
            _ => self.restarts.to_string(),
        }
    }
}

/// kubectl's reading of a pod's status (see [`Summary`]).
pub fn summarize(pod: &Pod) -> Summary {
    let spec = pod.spec.as_ref();
    let status = pod.status.clone().unwrap_or_default();
    let init_specs = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[]);
    let mut total = spec.map_or(0, |s| s.containers.len());
    let mut ready = 0;
    let mut restarts = 0;
    let mut last_restart: Option<Timestamp> = None;
    let mut note_restart = |c: &ContainerStatus, restarts: &mut i32| {
        *restarts += c.restart_count;
        let finished = c
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.finished_at.as_ref());
        if let Some(at) = finished {
            if last_restart.is_none_or(|last| at.0 > last) {
                last_restart = Some(at.0);
            }
        }
    };
    let mut reason = status.phase.clone().unwrap_or_default();
    if let Some(r) = status.reason.as_deref().filter(|r| !r.is_empty()) {
        reason = r.to_owned();
    }

    // Init containers run in order: the first unfinished one says where the pod is.
    // Sidecars (restartable init containers) count as app containers once started.
    let mut initializing = false;
    let init_statuses = status.init_container_statuses.as_deref().unwrap_or(&[]);
    for (i, c) in init_statuses.iter().enumerate() {
        note_restart(c, &mut restarts);
        let sidecar = init_specs
            .iter()
            .any(|s| s.name == c.name && s.restart_policy.as_deref() == Some("Always"));
        if sidecar {
            total += 1;
            if c.ready {
                ready += 1;
            }
        }
        let state = c.state.clone().unwrap_or_default();
        if let Some(t) = &state.terminated {
            if t.exit_code == 0 {
                continue;
            }
            reason = match t.reason.as_deref().filter(|r| !r.is_empty()) {
                Some(r) => format!("Init:{r}"),
                None if t.signal.unwrap_or(0) != 0 => {
                    format!("Init:Signal:{}", t.signal.unwrap_or(0))
                }
                None => format!("Init:ExitCode:{}", t.exit_code),
            };
        } else if sidecar && c.started == Some(true) {
            continue;
        } else if let Some(r) = state
            .waiting
            .as_ref()
            .and_then(|w| w.reason.as_deref())
            .filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            reason = format!("Init:{r}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(pod, "Initialized") {
        let mut running = false;
        for c in status
            .container_statuses
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .rev()
        {
            note_restart(c, &mut restarts);
            let state = c.state.clone().unwrap_or_default();
            let waiting = state.waiting.as_ref().and_then(|w| w.reason.as_deref());
            let terminated = state.terminated.as_ref();
            if let Some(r) = waiting.filter(|r| !r.is_empty()) {
                reason = r.to_owned();
            } else if let Some(t) = terminated {
                reason = match t.reason.as_deref().filter(|r| !r.is_empty()) {
                    Some(r) => r.to_owned(),
                    None if t.signal.unwrap_or(0) != 0 => {
                        format!("Signal:{}", t.signal.unwrap_or(0))
                    }
                    None => format!("ExitCode:{}", t.exit_code),
                };
            } else if c.ready && state.running.is_some() {
                running = true;
                ready += 1;
            }
        }
        // A pod whose finished containers say Completed while others run is running.
        if reason == "Completed" && running {
            reason = if condition_true(pod, "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    if pod.metadata.deletion_timestamp.is_some() {
        reason = if status.reason.as_deref() == Some("NodeLost") {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    Summary {
        ready: format!("{ready}/{total}"),
        status: reason,
        restarts,
        last_restart,
    }
}

/// Whether the pod's condition `kind` is `True`.
pub fn condition_true(pod: &Pod, kind: &str) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == kind && c.status == "True"))
}

/// The time since `then`, shortened as kubectl shows ages: `45s`, `3m12s`,
/// `17m`, `5h3m`, `20h`, `2d4h`, `30d`, `2y10d`.
pub fn age(then: Timestamp, now: Timestamp) -> String {
    let seconds = now.as_second() - then.as_second();
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return pair(minutes, "m", seconds % 60, "s");
    }
    if minutes < 3 * 60 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return pair(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return pair(days, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return pair(years, "y", days % 365, "d");
    }
    format!("{years}y")
}

fn pair(big: i64, big_unit: &str, small: i64, small_unit: &str) -> String {
    if small == 0 {
        format!("{big}{big_unit}")
    } else {
        format!("{big}{big_unit}{small}{small_unit}")
    }
}

/// The age of an optional time, `<unknown>` without one (kubectl's cell).
pub fn age_cell(then: Option<Timestamp>, now: Timestamp) -> String {
    then.map_or_else(|| "<unknown>".into(), |t| age(t, now))
}

/// Rows of tab-separated cells aligned as Go's tabwriter aligns them, which
/// kubectl prints through: a column's cells are padded to its widest cell plus
/// `padding` (at least `min_width`) over each run of consecutive lines that have
/// that column; the last cell of a line is never padded.
pub fn align(text: &str, min_width: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<Vec<usize>> = lines.iter().map(|l| vec![0; l.len()]).collect();
    block(&lines, &mut widths, 0, lines.len(), 0, min_width, padding);
    let mut out = String::new();
    for (cells, widths) in lines.iter().zip(&widths) {
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < cells.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

fn block(
    lines: &[Vec<&str>],
    widths: &mut [Vec<usize>],
    start: usize,
    end: usize,
    column: usize,
    min_width: usize,
    padding: usize,
) {
    // A line has a cell in `column` to align when a tab ends it.
    let has = |line: &Vec<&str>| line.len() > column + 1;
    let mut i = start;
    while i < end {
        if !has(&lines[i]) {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut width = min_width;
        while j < end && has(&lines[j]) {
            width = width.max(lines[j][column].chars().count() + padding);
            j += 1;
        }
        for row in widths.iter_mut().take(j).skip(i) {
            row[column] = width;
        }
        block(lines, widths, i, j, column + 1, min_width, padding);
        i = j;
    }
}

#[cfg(test)]
#[path = "pods_tests.rs"]
mod tests;
