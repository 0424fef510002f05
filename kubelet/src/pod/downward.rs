//! The downward API: a pod's own fields (`fieldRef`) and its containers' resources
//! (`resourceFieldRef`) as text, shared by env `valueFrom` and downwardAPI volumes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use k8s_openapi::api::core::v1::{ObjectFieldSelector, Pod, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::quantity;

/// What the node can give a container that sets no limit: the defaults of
/// `resourceFieldRef` `limits.*`, as upstream uses the node's allocatable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocatable {
    /// CPU in millicores.
    pub cpu_millis: i128,
    /// Memory in bytes.
    pub memory: i128,
    /// Local ephemeral storage in bytes.
    pub ephemeral_storage: i128,
}

impl Allocatable {
    /// The node's CPUs, `MemTotal` of `meminfo` and the size of the filesystem holding
    /// `storage_dir` (unknown values are 0).
    pub fn detect(meminfo: &Path, storage_dir: &Path) -> Allocatable {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as i128;
        let memory = std::fs::read_to_string(meminfo)
            .ok()
            .and_then(|text| super::resources::meminfo_bytes(&text, "MemTotal"))
            .map_or(0, i128::from);
        let ephemeral_storage = nix::sys::statvfs::statvfs(storage_dir)
            .map(|s| s.blocks() as i128 * s.fragment_size() as i128)
            .unwrap_or(0);
        Allocatable {
            cpu_millis: cpus * 1000,
            memory,
            ephemeral_storage,
        }
    }
}

/// What the downward API reads besides the pod itself.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// The pod's IPs.
    pub pod_ips: &'a [IpAddr],
    /// The node's IPs (`status.hostIP`).
    pub host_ips: &'a [IpAddr],
    /// The node's name.
    pub node_name: &'a str,
    /// The node's allocatable resources.
    pub allocatable: Allocatable,
}

/// Where a value is used: env takes more fields than a volume file (whose content must
/// not change while the pod lives, except labels and annotations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// An env var.
    Env,
    /// A downwardAPI volume file.
    Volume,
}

/// The value of `fieldRef`, or why the field cannot be given.
pub fn field_value(
    ctx: &Context<'_>,
    field: &ObjectFieldSelector,
    used: Use,
) -> Result<String, String> {
    let meta = &ctx.pod.metadata;
    let path = field.field_path.as_str();
    let empty = BTreeMap::new();
    let labels = meta.labels.as_ref().unwrap_or(&empty);
    let annotations = meta.annotations.as_ref().unwrap_or(&empty);
    if let Some(key) = subscript(path, "metadata.labels") {
        return Ok(labels.get(key).cloned().unwrap_or_default());
    }
    if let Some(key) = subscript(path, "metadata.annotations") {
        return Ok(annotations.get(key).cloned().unwrap_or_default());
    }
    let ips = |list: &[IpAddr]| list.iter().map(ToString::to_string).collect::<Vec<_>>();
    let value = match (path, used) {
        ("metadata.name", _) => meta.name.clone().unwrap_or_default(),
        ("metadata.namespace", _) => meta.namespace.clone().unwrap_or_default(),
        ("metadata.uid", _) => meta.uid.clone().unwrap_or_default(),
        ("metadata.labels", Use::Volume) => format_map(labels),
        ("metadata.annotations", Use::Volume) => format_map(annotations),
        ("spec.nodeName", Use::Env) => ctx.node_name.to_string(),
        ("spec.serviceAccountName", Use::Env) => ctx
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        ("status.podIP", Use::Env) => ips(ctx.pod_ips).first().cloned().unwrap_or_default(),
        ("status.podIPs", Use::Env) => ips(ctx.pod_ips).join(","),
        ("status.hostIP", Use::Env) => ips(ctx.host_ips).first().cloned().unwrap_or_default(),
        ("status.hostIPs", Use::Env) => ips(ctx.host_ips).join(","),
        _ => return Err(format!("unsupported fieldPath: {path}")),
    };
    Ok(value)
}

/// `prefix['key']` → `key`.
fn subscript<'p>(path: &'p str, prefix: &str) -> Option<&'p str> {
    path.strip_prefix(prefix)?
        .strip_prefix("['")?
        .strip_suffix("']")
}

/// A map as the downward API writes it: `key="value"` lines sorted by key, the value
/// quoted as Go's `%q` does.
pub fn format_map(map: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (key, value) in map {
        let _ = writeln!(out, "{key}={}", go_quote(value));
    }
    out.pop();
    out
}

fn go_quote(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The value of `resourceFieldRef` for `container` (the selector's `containerName` wins
/// when set): the limit or request divided by the divisor, rounded up. A limit the
/// container does not set is the node's allocatable, as upstream.
pub fn resource_value(
    ctx: &Context<'_>,
    container: &str,
    selector: &ResourceFieldSelector,
) -> Result<String, String> {
    let name = selector
        .container_name
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(container);
    let spec = ctx.pod.spec.as_ref().ok_or("the pod has no spec")?;
    let found = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .ok_or_else(|| format!("container {name:?} not found in the pod"))?;
    let resources = found.resources.clone().unwrap_or_default();
    let (kind, resource) = selector
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource: {}", selector.resource))?;
    let (set, default) = match kind {
        "limits" => (resources.limits, true),
        "requests" => (resources.requests, false),
        _ => {
            return Err(format!(
                "unsupported container resource: {}",
                selector.resource
            ))
        }
    };
    let from_node = match resource {
        "cpu" => ctx.allocatable.cpu_millis,
        "memory" => ctx.allocatable.memory * 1000,
        "ephemeral-storage" => ctx.allocatable.ephemeral_storage * 1000,
        _ => {
            return Err(format!(
                "unsupported container resource: {}",
                selector.resource
            ))
        }
    };
    let value = match set.as_ref().and_then(|m| m.get(resource)) {
        Some(q) => milli(q)?,
        None if default => from_node,
        None => 0,
    };
    let divisor = match &selector.divisor {
        Some(q) if !q.0.is_empty() => milli(q)?,
        _ => 1000,
    };
    if divisor <= 0 {
        return Err(format!("divisor {:?} must be positive", selector.divisor));
    }
    Ok(ceil_div(value, divisor).to_string())
}

fn ceil_div(value: i128, divisor: i128) -> i128 {
    let q = value / divisor;
    if value % divisor > 0 {
        q + 1
    } else {
        q
    }
}

fn milli(q: &Quantity) -> Result<i128, String> {
    parse_milli(&q.0)
}

/// A Kubernetes quantity (`100m`, `1.5`, `2Gi`, `1e3`) in thousandths of its unit,
/// rounded up (the shared quantity parser, at milli scale).
pub fn parse_milli(text: &str) -> Result<i128, String> {
    quantity::cpu_millis(&Quantity(text.to_string()))
        .map(i128::from)
        .map_err(|e| format!("quantity {text:?} {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};

    #[test]
    fn quantities_parse_to_millis() {
        assert_eq!(parse_milli("100m"), Ok(100));
        assert_eq!(parse_milli("1"), Ok(1000));
        assert_eq!(parse_milli("1.5"), Ok(1500));
        assert_eq!(parse_milli("2Gi"), Ok(2 * (1 << 30) * 1000));
        assert_eq!(parse_milli("500M"), Ok(500_000_000_000));
        assert_eq!(parse_milli("1e3"), Ok(1_000_000));
        assert_eq!(parse_milli("0.1m"), Ok(1), "sub-milli rounds up");
        assert!(parse_milli("1X").is_err());
        assert!(parse_milli("").is_err());
    }

    fn pod() -> Pod {
        let mut limits = BTreeMap::new();
        limits.insert("cpu".to_string(), Quantity("250m".into()));
        limits.insert("memory".to_string(), Quantity("64Mi".into()));
        let mut pod = Pod::default();
        pod.metadata.name = Some("p".into());
        pod.metadata.labels = Some(BTreeMap::from([
            ("app".to_string(), "web".to_string()),
            ("tier".to_string(), "a \"b\"".to_string()),
        ]));
        pod.spec = Some(PodSpec {
            containers: vec![
                Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        limits: Some(limits),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                Container {
                    name: "free".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        pod
    }

    fn ctx(pod: &Pod) -> Context<'_> {
        Context {
            pod,
            pod_ips: &[],
            host_ips: &[],
            node_name: "n",
            allocatable: Allocatable {
                cpu_millis: 2000,
                memory: 1 << 30,
                ephemeral_storage: 10 << 30,
            },
        }
    }

    fn selector(resource: &str, divisor: Option<&str>) -> ResourceFieldSelector {
        ResourceFieldSelector {
            container_name: None,
            resource: resource.into(),
            divisor: divisor.map(|d| Quantity(d.into())),
        }
    }

    #[test]
    fn resources_divide_and_round_up() {
        let pod = pod();
        let c = ctx(&pod);
        let v = |container, res, div| resource_value(&c, container, &selector(res, div));
        assert_eq!(
            v("c", "limits.cpu", None).as_deref(),
            Ok("1"),
            "250m rounds up to 1"
        );
        assert_eq!(v("c", "limits.cpu", Some("1m")).as_deref(), Ok("250"));
        assert_eq!(v("c", "limits.memory", Some("1Mi")).as_deref(), Ok("64"));
        assert_eq!(v("c", "limits.memory", None).as_deref(), Ok("67108864"));
        assert_eq!(v("c", "limits.memory", Some("1G")).as_deref(), Ok("1"));
        assert_eq!(
            v("free", "limits.cpu", Some("1m")).as_deref(),
            Ok("2000"),
            "node allocatable"
        );
        assert_eq!(
            v("free", "limits.memory", Some("1Mi")).as_deref(),
            Ok("1024")
        );
        assert_eq!(v("free", "requests.cpu", None).as_deref(), Ok("0"));
        assert!(v("c", "limits.gpu", None).is_err());
        let mut named = selector("limits.cpu", Some("1m"));
        named.container_name = Some("c".into());
        assert_eq!(resource_value(&c, "free", &named).as_deref(), Ok("250"));
    }

    #[test]
    fn fields_by_use() {
        let pod = pod();
        let c = ctx(&pod);
        let f = |path: &str, used| {
            field_value(
                &c,
                &ObjectFieldSelector {
                    field_path: path.into(),
                    api_version: None,
                },
                used,
            )
        };
        assert_eq!(f("metadata.name", Use::Env).as_deref(), Ok("p"));
        assert_eq!(f("metadata.labels['app']", Use::Env).as_deref(), Ok("web"));
        assert_eq!(f("metadata.labels['nope']", Use::Env).as_deref(), Ok(""));
        assert_eq!(
            f("metadata.labels", Use::Volume).as_deref(),
            Ok("app=\"web\"\ntier=\"a \\\"b\\\"\"")
        );
        assert!(f("metadata.labels", Use::Env).is_err());
        assert!(f("spec.nodeName", Use::Volume).is_err());
        assert_eq!(f("spec.nodeName", Use::Env).as_deref(), Ok("n"));
    }
}
