//! `update`: change the resource limits of a container that has not stopped, as runc's
//! `update` does, and remember them in the container's state.
//!
//! The request is a partial `linux.resources` (fields left out keep their values): from a
//! JSON file (`--resources`) and the command line's flags, which override the file. It is
//! merged into the resources the container runs with, the result is validated and written
//! to the cgroup as `create` writes it, then stored so `state` and later updates see it.
//! Device rules are not rewritten (runc skips them too: a running container's device
//! access is not changed behind its back).

use oci_spec::runtime::LinuxResources;
use serde_json::{json, Map, Value};

use super::{ContainerError, Status, Store};

/// The resource flags of `update`, with runc's meanings. Each one that is set overrides the
/// same field of the `--resources` file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResourceFlags {
    /// `--memory`: memory limit, a size such as `64m` ([`parse_bytes`]) or -1.
    pub memory: Option<String>,
    /// `--memory-reservation`: soft limit, a size or -1.
    pub memory_reservation: Option<String>,
    /// `--memory-swap`: memory plus swap, a size or -1 (unlimited swap).
    pub memory_swap: Option<String>,
    /// `--kernel-memory`, `--kernel-memory-tcp`: obsolete; warned about and ignored, as runc.
    pub kernel_memory: Option<String>,
    /// `--kernel-memory-tcp`: obsolete, see `kernel_memory`.
    pub kernel_memory_tcp: Option<String>,
    /// `--cpu-share`: relative CPU weight.
    pub cpu_shares: Option<u64>,
    /// `--cpu-period`: CFS period, µs.
    pub cpu_period: Option<u64>,
    /// `--cpu-quota`: CFS quota per period, µs (-1: unlimited).
    pub cpu_quota: Option<i64>,
    /// `--cpu-burst`: CFS burst, µs.
    pub cpu_burst: Option<u64>,
    /// `--cpu-idle`: 1 for SCHED_IDLE.
    pub cpu_idle: Option<i64>,
    /// `--cpu-rt-period`: realtime period, µs.
    pub cpu_rt_period: Option<u64>,
    /// `--cpu-rt-runtime`: realtime runtime per period, µs.
    pub cpu_rt_runtime: Option<i64>,
    /// `--cpuset-cpus`: CPUs, e.g. `0-3,7`.
    pub cpuset_cpus: Option<String>,
    /// `--cpuset-mems`: memory nodes.
    pub cpuset_mems: Option<String>,
    /// `--pids-limit`: process limit (-1: unlimited).
    pub pids_limit: Option<i64>,
    /// `--blkio-weight`: block I/O weight, 10 to 1000.
    pub blkio_weight: Option<u16>,
    /// `--l3-cache-schema`: Intel RDT, not supported.
    pub l3_cache_schema: Option<String>,
    /// `--mem-bw-schema`: Intel RDT, not supported.
    pub mem_bw_schema: Option<String>,
}

/// Change a container's resources: `resources` is the `--resources` JSON (if given),
/// `flags` the flags. Nothing is written if any value is invalid or cannot be applied here.
pub fn update(
    store: &Store,
    id: &str,
    resources: Option<&[u8]>,
    flags: &ResourceFlags,
) -> Result<(), ContainerError> {
    let mut container = store.load(id)?;
    let status = container.status(store);
    if status == Status::Stopped {
        return Err(ContainerError::State(format!(
            "cannot update container {id}: it is stopped"
        )));
    }
    let request = request(resources, flags)?;
    let linux = container.spec.linux().clone().unwrap_or_default();
    let current = serde_json::to_value(linux.resources().clone().unwrap_or_default())
        .map_err(|e| ContainerError::Invalid(format!("linux.resources: {e}")))?;
    let merged: LinuxResources = parse("linux.resources", merge(current, &request))?;
    let Some(cgroup) = &container.cgroup else {
        return Err(ContainerError::State(format!(
            "cannot update container {id}: it has no cgroup"
        )));
    };
    let mut written = merged.clone();
    written.set_devices(None);
    let refused: Vec<&str> = cgroup
        .unapplied(&written)?
        .into_iter()
        .filter(|field| !field.starts_with("memory.kernel") && is_set(&request, field))
        .collect();
    if !refused.is_empty() {
        return Err(ContainerError::Unsupported(format!(
            "cannot update linux.resources.{}: not supported by peapod-runtime on this host",
            refused.join(", linux.resources.")
        )));
    }
    cgroup.update(&written)?;
    let mut linux = linux;
    linux.set_resources(Some(merged));
    container.spec.set_linux(Some(linux));
    store.save(&container)?;
    tracing::debug!(id, "resources updated");
    Ok(())
}

/// The partial `linux.resources` asked for: the file's, with the flags on top.
fn request(file: Option<&[u8]>, flags: &ResourceFlags) -> Result<Value, ContainerError> {
    let mut request = match file {
        Some(bytes) => {
            let value: Value = serde_json::from_slice(bytes)
                .map_err(|e| ContainerError::Invalid(format!("--resources: not JSON: {e}")))?;
            // Checked as a whole so an error names the field (`memory.limit`).
            parse::<LinuxResources>("--resources", value.clone())?;
            value
        }
        None => json!({}),
    };
    if flags.l3_cache_schema.is_some() || flags.mem_bw_schema.is_some() {
        return Err(ContainerError::Unsupported(
            "--l3-cache-schema, --mem-bw-schema: Intel RDT is not supported by peapod-runtime"
                .into(),
        ));
    }
    if flags.kernel_memory.is_some() || flags.kernel_memory_tcp.is_some() {
        tracing::warn!("kernel memory settings are ignored");
    }
    let sizes = [
        ("--memory", &flags.memory, "limit"),
        (
            "--memory-reservation",
            &flags.memory_reservation,
            "reservation",
        ),
        ("--memory-swap", &flags.memory_swap, "swap"),
    ];
    for (flag, value, field) in sizes {
        if let Some(text) = value {
            let bytes = parse_bytes(text)
                .map_err(|e| ContainerError::Invalid(format!("{flag} {text:?}: {e}")))?;
            set(&mut request, "memory", field, bytes.into());
        }
    }
    let numbers: [(&str, &str, Option<Value>); 9] = [
        ("cpu", "shares", flags.cpu_shares.map(Into::into)),
        ("cpu", "period", flags.cpu_period.map(Into::into)),
        ("cpu", "quota", flags.cpu_quota.map(Into::into)),
        ("cpu", "burst", flags.cpu_burst.map(Into::into)),
        ("cpu", "idle", flags.cpu_idle.map(Into::into)),
        ("cpu", "realtimePeriod", flags.cpu_rt_period.map(Into::into)),
        (
            "cpu",
            "realtimeRuntime",
            flags.cpu_rt_runtime.map(Into::into),
        ),
        ("pids", "limit", flags.pids_limit.map(Into::into)),
        ("blockIO", "weight", flags.blkio_weight.map(Into::into)),
    ];
    for (section, field, value) in numbers {
        if let Some(value) = value {
            set(&mut request, section, field, value);
        }
    }
    for (field, value) in [("cpus", &flags.cpuset_cpus), ("mems", &flags.cpuset_mems)] {
        if let Some(list) = value {
            set(&mut request, "cpu", field, list.clone().into());
        }
    }
    // As runc: an unlimited memory with swap unspecified lifts the swap limit too, instead of
    // keeping an old swap limit that would now lack a memory limit.
    let memory = &request["memory"];
    if memory["limit"] == json!(-1) && memory.get("swap").is_none() {
        set(&mut request, "memory", "swap", 0.into());
    }
    Ok(request)
}

fn set(request: &mut Value, section: &str, field: &str, value: Value) {
    if !request[section].is_object() {
        request[section] = Value::Object(Map::new());
    }
    request[section][field] = value;
}

/// Whether the request sets `field` (`blockIO`, `cpu.realtimePeriod`).
fn is_set(request: &Value, field: &str) -> bool {
    field
        .split('.')
        .try_fold(request, |value, key| value.get(key))
        .is_some_and(|v| !v.is_null())
}

/// Overlay `request` on `current`: objects merge key by key, anything else is replaced.
fn merge(mut current: Value, request: &Value) -> Value {
    match (&mut current, request) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                let old = into.remove(key).unwrap_or(Value::Null);
                into.insert(key.clone(), merge(old, value));
            }
            current
        }
        _ => request.clone(),
    }
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, value: Value) -> Result<T, ContainerError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        ContainerError::Invalid(format!(
            "{what}: invalid value at {}: {}",
            e.path(),
            e.inner()
        ))
    })
}

/// A memory size as runc reads it (docker's `RAMInBytes`): a number, maybe with a fraction,
/// then an optional unit `k`, `m`, `g`, `t` or `p` (powers of 1024, any case, optionally
/// followed by `i` and/or `b`); `-1` means unlimited.
pub fn parse_bytes(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if text == "-1" {
        return Ok(-1);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .ok()
        .filter(|_| !number.starts_with('.') && !number.ends_with('.'))
        .ok_or("expected a size such as 1024, 512k, 64m or 1.5g, or -1")?;
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let power = match unit {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        _ => return Err("unknown unit: use k, m, g, t or p (powers of 1024)".into()),
    };
    let bytes = number * 1024f64.powi(power);
    if bytes >= i64::MAX as f64 {
        return Err("too large".into());
    }
    Ok(bytes as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_runc_reads_them() {
        let cases = [
            ("1024", 1024),
            ("64m", 64 << 20),
            ("64M", 64 << 20),
            ("64MiB", 64 << 20),
            ("64mb", 64 << 20),
            ("1.5g", 3 << 29),
            ("2 k", 2048),
            ("1t", 1 << 40),
            ("-1", -1),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_bytes(text), Ok(bytes), "{text}");
        }
        for bad in ["", "m", "-2", "12x", "1.2.3", "1mm", ".5m"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_override_the_file_and_leave_the_rest() {
        let file = br#"{"memory": {"limit": 1048576, "reservation": 4096}, "pids": {"limit": 5}}"#;
        let flags = ResourceFlags {
            memory: Some("64m".into()),
            cpu_quota: Some(-1),
            cpuset_cpus: Some("0".into()),
            ..ResourceFlags::default()
        };
        let request = request(Some(file), &flags).unwrap();
        assert_eq!(
            request,
            json!({
                "memory": {"limit": 64 << 20, "reservation": 4096},
                "pids": {"limit": 5},
                "cpu": {"quota": -1, "cpus": "0"}
            })
        );
    }

    #[test]
    fn bad_requests_name_the_field() {
        let err = request(
            Some(br#"{"memory": {"limit": "lots"}}"#),
            &ResourceFlags::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("memory.limit"), "{err}");
        let flags = ResourceFlags {
            memory_swap: Some("12q".into()),
            ..ResourceFlags::default()
        };
        let err = request(None, &flags).unwrap_err().to_string();
        assert!(err.starts_with("--memory-swap \"12q\""), "{err}");
        let flags = ResourceFlags {
            l3_cache_schema: Some("L3:0=f".into()),
            ..ResourceFlags::default()
        };
        let err = request(None, &flags).unwrap_err().to_string();
        assert!(err.contains("Intel RDT"), "{err}");
    }

    #[test]
    fn unlimited_memory_without_swap_lifts_the_swap_limit() {
        let flags = ResourceFlags {
            memory: Some("-1".into()),
            ..ResourceFlags::default()
        };
        assert_eq!(
            request(None, &flags).unwrap(),
            json!({"memory": {"limit": -1, "swap": 0}})
        );
    }

    #[test]
    fn merge_keeps_what_the_request_leaves_out() {
        let current = json!({
            "memory": {"limit": 100, "swap": 200},
            "cpu": {"shares": 512, "cpus": "0-1"},
            "devices": [{"allow": false, "access": "rwm"}]
        });
        let request = json!({"memory": {"limit": 150}, "cpu": {"cpus": "1"}, "pids": {"limit": 3}});
        assert_eq!(
            merge(current, &request),
            json!({
                "memory": {"limit": 150, "swap": 200},
                "cpu": {"shares": 512, "cpus": "1"},
                "devices": [{"allow": false, "access": "rwm"}],
                "pids": {"limit": 3}
            })
        );
        assert!(is_set(&request, "cpu.cpus"));
        assert!(!is_set(&request, "cpu.realtimePeriod"));
        assert!(!is_set(&request, "blockIO"));
    }
}
