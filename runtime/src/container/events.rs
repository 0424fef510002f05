//! `events`: a container's resource statistics and OOM kills, as the JSON lines runc prints.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Container, ContainerError, Status, Store};
use crate::cgroup::Stats;

/// How often a watch looks for OOM kills and for the container's end: events arrive this
/// late at most, without making a watched idle container cost much.
const POLL: Duration = Duration::from_millis(100);

/// One event, printed as one line of JSON: `{"type":"stats","id":"c1","data":{...}}` or
/// `{"type":"oom","id":"c1"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// `stats` or `oom`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The container id.
    pub id: String,
    /// The statistics of a `stats` event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Stats>,
}

/// One `stats` event for a container that has not stopped (`events --stats`).
pub fn stats(store: &Store, id: &str) -> Result<Event, ContainerError> {
    let container = live(store, id)?;
    sample(&container)
}

/// Watch a container until it stops: a `stats` event every `interval` and an `oom` event
/// for each OOM kill, each handed to `emit`. Also ends when `emit` fails (e.g. the reader
/// of the output went away).
pub fn events(
    store: &Store,
    id: &str,
    interval: Duration,
    mut emit: impl FnMut(&Event) -> std::io::Result<()>,
) -> Result<(), ContainerError> {
    if interval.is_zero() {
        return Err(ContainerError::Invalid(
            "--interval: the interval must be greater than 0".into(),
        ));
    }
    let container = live(store, id)?;
    let cgroup = container.cgroup.as_ref();
    // Kills before the watch began are not news: count from the current reading.
    let mut oom_kills = cgroup.map_or(Ok(0), |c| c.oom_kills())?;
    let mut next_stats = Instant::now() + interval;
    loop {
        std::thread::sleep(POLL.min(interval));
        if container.status(store) == Status::Stopped {
            return Ok(());
        }
        let kills = cgroup.map_or(Ok(0), |c| c.oom_kills()).unwrap_or(oom_kills);
        if kills > oom_kills {
            oom_kills = kills;
            let oom = Event {
                kind: "oom",
                id: id.to_owned(),
                data: None,
            };
            if emit(&oom).is_err() {
                return Ok(());
            }
        }
        if Instant::now() >= next_stats {
            next_stats += interval;
            match sample(&container) {
                Ok(event) => {
                    if emit(&event).is_err() {
                        return Ok(());
                    }
                }
                // A container may stop between the look above and the read.
                Err(e) => tracing::warn!("container {id}: reading its statistics: {e}"),
            }
        }
    }
}

fn live(store: &Store, id: &str) -> Result<Container, ContainerError> {
    let container = store.load(id)?;
    if container.status(store) == Status::Stopped {
        return Err(ContainerError::State(format!(
            "container with id {id} is not running"
        )));
    }
    Ok(container)
}

fn sample(container: &Container) -> Result<Event, ContainerError> {
    let stats = match &container.cgroup {
        Some(cgroup) => cgroup.stats()?,
        None => Stats::default(),
    };
    Ok(Event {
        kind: "stats",
        id: container.id.clone(),
        data: Some(stats),
    })
}

/// A duration as Go writes it (runc's `--interval`, the kubelet's configuration): numbers
/// with units `ns`, `us`, `ms`, `s`, `m`, `h`, e.g. `5s`, `250ms`, `1m30s`, or `0`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?}: expected a duration such as 5s, 500ms or 1m30s");
    let mut rest = text.trim();
    let mut seconds = 0f64;
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let number: f64 = rest[..split].parse().map_err(|_| bad())?;
        let unit_end = rest[split..]
            .find(|c: char| c.is_ascii_digit())
            .map_or(rest.len(), |i| split + i);
        let scale = match &rest[split..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        seconds += number * scale;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_as_go_durations() {
        let ms = Duration::from_millis;
        let cases = [
            ("5s", ms(5000)),
            ("250ms", ms(250)),
            ("1m30s", ms(90_000)),
            ("1.5s", ms(1500)),
            ("1h", ms(3_600_000)),
            ("1m0s", ms(60_000)),
            ("0", ms(0)),
        ];
        for (text, duration) in cases {
            assert_eq!(parse_duration(text), Ok(duration), "{text}");
        }
        for bad in ["", "5", "s", "5x", "-1s", "1s5", "1..5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn events_serialize_as_runc_prints_them() {
        let oom = Event {
            kind: "oom",
            id: "c1".into(),
            data: None,
        };
        assert_eq!(
            serde_json::to_string(&oom).unwrap(),
            r#"{"type":"oom","id":"c1"}"#
        );
        let stats = Event {
            kind: "stats",
            id: "c1".into(),
            data: Some(Stats::default()),
        };
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["type"], "stats");
        assert_eq!(json["data"]["memory"]["usage"]["limit"], 0);
    }
}
