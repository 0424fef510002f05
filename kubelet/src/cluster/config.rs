//! The kubelet's configuration file (`--config`): a `KubeletConfiguration` of
//! `kubelet.config.k8s.io/v1beta1`, YAML or JSON, read into [`KubeletConfig`], a plain
//! struct of the settings peapod has. Flags given on the command line win over the file,
//! as upstream ([`choose`]). Pure but for reading the file.
//!
//! Every field is `None` when the file leaves it out, so a reader can merge it with its
//! flags, except the authentication and authorization fields, which take the file
//! format's own defaults (no anonymous access, webhook authentication and authorization)
//! as upstream applies them to any configuration file.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::Deserialize;

use crate::node::capacity::{EvictionThresholds, Threshold};
use crate::node::config::parse_taints;
use crate::pod::quantity::memory_bytes;

/// The only `apiVersion` read.
pub const API_VERSION: &str = "kubelet.config.k8s.io/v1beta1";
/// The only `kind` read.
pub const KIND: &str = "KubeletConfiguration";

/// Why the configuration file cannot be used. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file cannot be read.
    #[error("reading the kubelet configuration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is neither YAML nor JSON, or not a mapping.
    #[error("{path}: not a YAML or JSON KubeletConfiguration: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        message: String,
    },
    /// `apiVersion` or `kind` is not the one read.
    #[error("{path}: expected apiVersion {API_VERSION} and kind {KIND}, found {found}")]
    Kind {
        /// The file.
        path: PathBuf,
        /// The `apiVersion`/`kind` found.
        found: String,
    },
    /// A field has a value that cannot be used.
    #[error("{path}: field {field}: {message}")]
    Field {
        /// The file.
        path: PathBuf,
        /// The field's path, e.g. `authentication.x509.clientCAFile`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// The kubelet API server's settings from the file, for the server to merge with its
/// own flags (`--address`, `--port`, `--tls-cert-file`, ...).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServerSettings {
    /// `address`: the IP the kubelet API listens on.
    pub address: Option<IpAddr>,
    /// `port`: the kubelet API's port.
    pub port: Option<u16>,
    /// `tlsCertFile`: the serving certificate (PEM, chain allowed).
    pub tls_cert_file: Option<PathBuf>,
    /// `tlsPrivateKeyFile`: its key.
    pub tls_private_key_file: Option<PathBuf>,
    /// `authentication.x509.clientCAFile`: the CA client certificates must chain to.
    pub client_ca_file: Option<PathBuf>,
    /// `authentication.anonymous.enabled` (the file format's default: false).
    pub anonymous_auth: Option<bool>,
    /// `authentication.webhook.enabled`: bearer tokens checked by TokenReview (the file
    /// format's default: true).
    pub webhook_authn: Option<bool>,
    /// `authorization.mode`: `Webhook` (SubjectAccessReview) or `AlwaysAllow` (the file
    /// format's default: Webhook).
    pub authorization_mode: Option<String>,
}

/// The settings a configuration file gives; `None`: not in the file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KubeletConfig {
    /// `staticPodPath`: the static pod manifests folder (`--manifests`).
    pub static_pod_path: Option<PathBuf>,
    /// The kubelet API server's settings.
    pub server: ServerSettings,
    /// `clusterDNS` (`--cluster-dns`).
    pub cluster_dns: Option<Vec<IpAddr>>,
    /// `clusterDomain` (`--cluster-domain`).
    pub cluster_domain: Option<String>,
    /// `resolvConf` (`--resolv-conf`).
    pub resolv_conf: Option<PathBuf>,
    /// `maxPods` (`--max-pods`).
    pub max_pods: Option<i64>,
    /// `podPidsLimit` (`--pod-max-pids`).
    pub pod_pids_limit: Option<i64>,
    /// `registerNode` (`--register-node`).
    pub register_node: Option<bool>,
    /// `registerWithTaints` (`--register-with-taints`).
    pub register_with_taints: Option<Vec<Taint>>,
    /// `nodeStatusUpdateFrequency` (`--node-status-update-frequency`).
    pub node_status_update_frequency: Option<Duration>,
    /// `nodeStatusReportFrequency`: the longest time between status reports.
    pub node_status_report_frequency: Option<Duration>,
    /// `nodeLeaseDurationSeconds`: the Lease's duration (renewed every quarter of it).
    pub node_lease_duration_seconds: Option<i32>,
    /// `containerLogMaxSize` in bytes (`--container-log-max-size`).
    pub container_log_max_size: Option<u64>,
    /// `containerLogMaxFiles` (`--container-log-max-files`).
    pub container_log_max_files: Option<usize>,
    /// `seccompDefault` (`--seccomp-default`).
    pub seccomp_default: Option<bool>,
    /// `allowedUnsafeSysctls` (`--allowed-unsafe-sysctls`).
    pub allowed_unsafe_sysctls: Option<Vec<String>>,
    /// `evictionHard`: signals left out are zero, as upstream treats a partial map.
    pub eviction_hard: Option<EvictionThresholds>,
    /// `providerID` (`--provider-id`): the Node's `spec.providerID`.
    pub provider_id: Option<String>,
}

/// A read configuration file and the fields it has that peapod ignores.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The settings.
    pub config: KubeletConfig,
    /// Fields peapod has no setting for (dotted paths), to warn about.
    pub ignored: Vec<String>,
}

/// The value a setting takes: the command line's when given there, else the file's,
/// else the flag's default (upstream's precedence).
pub fn choose<T>(on_command_line: bool, flag: T, file: Option<T>) -> T {
    match file {
        Some(value) if !on_command_line => value,
        _ => flag,
    }
}

/// Read and check the configuration file at `path`.
pub fn load(path: &Path) -> Result<Loaded, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Check the configuration file `text` (YAML or JSON; `path` names it in errors).
pub fn parse(path: &Path, text: &str) -> Result<Loaded, ConfigFileError> {
    // JSON is YAML, so one decoder reads both.
    let value: serde_json::Value =
        yaml_serde::from_str(text).map_err(|e| ConfigFileError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if !value.is_object() {
        return Err(ConfigFileError::Syntax {
            path: path.to_path_buf(),
            message: "expected a mapping of fields".to_string(),
        });
    }
    let ignored = unknown_fields(&value, "");
    let file: File =
        serde_path_to_error::deserialize(value).map_err(|e| ConfigFileError::Field {
            path: path.to_path_buf(),
            field: e.path().to_string(),
            message: e.inner().to_string(),
        })?;
    if file.api_version != API_VERSION || file.kind != KIND {
        return Err(ConfigFileError::Kind {
            path: path.to_path_buf(),
            found: format!("{}/{}", file.api_version, file.kind),
        });
    }
    let config = file
        .settings()
        .map_err(|(field, message)| ConfigFileError::Field {
            path: path.to_path_buf(),
            field: field.to_string(),
            message,
        })?;
    Ok(Loaded { config, ignored })
}

/// A Go duration as Kubernetes writes them: `10s`, `1m0s`, `1h30m`, `500ms`, `1.5s`,
/// or `0` (the runtime's parser, which also reads runc's `--interval`).
pub use runtime::container::parse_duration;

/// An `evictionHard` map (`memory.available: 100Mi`, `nodefs.available: "10%"`, ...).
/// Signals left out are zero, as upstream reads a map that sets any of them.
pub fn eviction_thresholds(
    map: &BTreeMap<String, String>,
) -> Result<EvictionThresholds, (String, String)> {
    let mut thresholds = EvictionThresholds {
        memory_available: Threshold::Amount(0),
        nodefs_available: Threshold::Amount(0),
        nodefs_inodes_free: Threshold::Amount(0),
        imagefs_available: Threshold::Amount(0),
        imagefs_inodes_free: Threshold::Amount(0),
        pid_available: None,
    };
    for (signal, value) in map {
        let field = format!("evictionHard.{signal}");
        let threshold = threshold(value).map_err(|m| (field.clone(), m))?;
        match signal.as_str() {
            "memory.available" => thresholds.memory_available = threshold,
            "nodefs.available" => thresholds.nodefs_available = threshold,
            "nodefs.inodesFree" => thresholds.nodefs_inodes_free = threshold,
            "imagefs.available" => thresholds.imagefs_available = threshold,
            "imagefs.inodesFree" => thresholds.imagefs_inodes_free = threshold,
            "pid.available" => thresholds.pid_available = Some(threshold),
            _ => {
                return Err((
                    field,
                    "unknown eviction signal; expected memory.available, nodefs.available, \
                     nodefs.inodesFree, imagefs.available, imagefs.inodesFree or pid.available"
                        .to_string(),
                ))
            }
        }
    }
    Ok(thresholds)
}

/// `--eviction-hard`: `memory.available<100Mi,nodefs.available<10%,...`, read as the
/// file's `evictionHard` map (signals left out are zero).
pub fn parse_eviction_hard(text: &str) -> Result<EvictionThresholds, String> {
    let mut map = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (signal, value) = item
            .split_once('<')
            .ok_or_else(|| format!("--eviction-hard {item:?}: expected signal<value"))?;
        map.insert(signal.trim().to_string(), value.trim().to_string());
    }
    eviction_thresholds(&map).map_err(|(field, message)| {
        let signal = field.trim_start_matches("evictionHard.");
        format!("--eviction-hard {signal}: {message}")
    })
}

/// `10%` or a quantity (`100Mi`, `1000`).
fn threshold(value: &str) -> Result<Threshold, String> {
    if let Some(percent) = value.strip_suffix('%') {
        return match percent.trim().parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => Ok(Threshold::Share(p / 100.0)),
            _ => Err(format!("{value:?}: expected a percentage from 0% to 100%")),
        };
    }
    memory_bytes(&Quantity(value.to_string()))
        .map(Threshold::Amount)
        .map_err(|e| format!("{value:?} {e}"))
}

/// The fields read, as dotted paths; a section (a mapping read field by field) is listed
/// with its fields. Maps read whole (`evictionHard`) are not descended into.
const KNOWN_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "staticPodPath",
    "address",
    "port",
    "tlsCertFile",
    "tlsPrivateKeyFile",
    "authentication",
    "authentication.x509",
    "authentication.x509.clientCAFile",
    "authentication.webhook",
    "authentication.webhook.enabled",
    "authentication.anonymous",
    "authentication.anonymous.enabled",
    "authorization",
    "authorization.mode",
    "clusterDNS",
    "clusterDomain",
    "resolvConf",
    "maxPods",
    "podPidsLimit",
    "registerNode",
    "registerWithTaints",
    "nodeStatusUpdateFrequency",
    "nodeStatusReportFrequency",
    "nodeLeaseDurationSeconds",
    "containerLogMaxSize",
    "containerLogMaxFiles",
    "seccompDefault",
    "allowedUnsafeSysctls",
    "evictionHard",
    "providerID",
];

/// The sections: mappings whose fields are checked one by one.
const SECTIONS: &[&str] = &[
    "authentication",
    "authentication.x509",
    "authentication.webhook",
    "authentication.anonymous",
    "authorization",
];

/// The fields under `prefix` that peapod does not read.
fn unknown_fields(value: &serde_json::Value, prefix: &str) -> Vec<String> {
    let Some(fields) = value.as_object() else {
        return Vec::new();
    };
    let mut unknown = Vec::new();
    for (key, value) in fields {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if !KNOWN_FIELDS.contains(&path.as_str()) {
            unknown.push(path);
        } else if SECTIONS.contains(&path.as_str()) {
            unknown.extend(unknown_fields(value, &path));
        }
    }
    unknown
}

/// The file as written; fields peapod does not read are skipped here (and listed by
/// [`unknown_fields`]).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct File {
    api_version: String,
    kind: String,
    static_pod_path: Option<PathBuf>,
    address: Option<IpAddr>,
    port: Option<u16>,
    tls_cert_file: Option<PathBuf>,
    tls_private_key_file: Option<PathBuf>,
    authentication: Authentication,
    authorization: Authorization,
    #[serde(rename = "clusterDNS")]
    cluster_dns: Option<Vec<IpAddr>>,
    cluster_domain: Option<String>,
    resolv_conf: Option<PathBuf>,
    max_pods: Option<i64>,
    pod_pids_limit: Option<i64>,
    register_node: Option<bool>,
    register_with_taints: Option<Vec<Taint>>,
    node_status_update_frequency: Option<String>,
    node_status_report_frequency: Option<String>,
    node_lease_duration_seconds: Option<i32>,
    container_log_max_size: Option<String>,
    container_log_max_files: Option<usize>,
    seccomp_default: Option<bool>,
    allowed_unsafe_sysctls: Option<Vec<String>>,
    eviction_hard: Option<BTreeMap<String, String>>,
    #[serde(rename = "providerID")]
    provider_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Authentication {
    x509: X509,
    webhook: Enabled,
    anonymous: Enabled,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct X509 {
    #[serde(rename = "clientCAFile")]
    client_ca_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Enabled {
    enabled: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Authorization {
    mode: Option<String>,
}

impl File {
    /// The settings, checked; an error names the field.
    fn settings(self) -> Result<KubeletConfig, (&'static str, String)> {
        let duration = |field: &'static str, text: Option<String>| {
            text.map(|t| parse_duration(&t).map_err(|m| (field, m)))
                .transpose()
        };
        if let Some(mode) = &self.authorization.mode {
            if !matches!(mode.as_str(), "Webhook" | "AlwaysAllow") {
                return Err((
                    "authorization.mode",
                    format!("{mode:?}: expected Webhook or AlwaysAllow"),
                ));
            }
        }
        if let Some(n) = self.max_pods.filter(|n| *n < 1) {
            return Err(("maxPods", format!("{n}: must be at least 1")));
        }
        if let Some(n) = self.node_lease_duration_seconds.filter(|n| *n < 1) {
            return Err((
                "nodeLeaseDurationSeconds",
                format!("{n}: must be at least 1"),
            ));
        }
        let taints = match self.register_with_taints {
            Some(taints) => Some(checked_taints(&taints).map_err(|m| ("registerWithTaints", m))?),
            None => None,
        };
        let log_size = match self.container_log_max_size {
            Some(text) => Some(
                memory_bytes(&Quantity(text.clone()))
                    .map_err(|e| ("containerLogMaxSize", format!("{text:?} {e}")))
                    .map(|n| n as u64)?,
            ),
            None => None,
        };
        let eviction_hard = match &self.eviction_hard {
            Some(map) => Some(eviction_thresholds(map).map_err(|(field, message)| {
                // The signal is in the message: the field stays a static name.
                ("evictionHard", format!("{field}: {message}"))
            })?),
            None => None,
        };
        Ok(KubeletConfig {
            static_pod_path: self.static_pod_path,
            server: ServerSettings {
                address: self.address,
                port: self.port,
                tls_cert_file: self.tls_cert_file,
                tls_private_key_file: self.tls_private_key_file,
                client_ca_file: self.authentication.x509.client_ca_file,
                anonymous_auth: Some(self.authentication.anonymous.enabled.unwrap_or(false)),
                webhook_authn: Some(self.authentication.webhook.enabled.unwrap_or(true)),
                authorization_mode: Some(
                    self.authorization
                        .mode
                        .unwrap_or_else(|| "Webhook".to_string()),
                ),
            },
            cluster_dns: self.cluster_dns,
            cluster_domain: self.cluster_domain,
            resolv_conf: self.resolv_conf,
            max_pods: self.max_pods,
            pod_pids_limit: self.pod_pids_limit,
            register_node: self.register_node,
            register_with_taints: taints,
            node_status_update_frequency: duration(
                "nodeStatusUpdateFrequency",
                self.node_status_update_frequency,
            )?,
            node_status_report_frequency: duration(
                "nodeStatusReportFrequency",
                self.node_status_report_frequency,
            )?,
            node_lease_duration_seconds: self.node_lease_duration_seconds,
            container_log_max_size: log_size,
            container_log_max_files: self.container_log_max_files,
            seccomp_default: self.seccomp_default,
            allowed_unsafe_sysctls: self.allowed_unsafe_sysctls,
            eviction_hard,
            provider_id: self.provider_id,
        })
    }
}

/// Taints from the file, checked by the same rules as `--register-with-taints`.
fn checked_taints(taints: &[Taint]) -> Result<Vec<Taint>, String> {
    let text: Vec<String> = taints
        .iter()
        .map(|t| match &t.value {
            Some(value) => format!("{}={value}:{}", t.key, t.effect),
            None => format!("{}:{}", t.key, t.effect),
        })
        .collect();
    parse_taints(&text.join(",")).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Loaded, ConfigFileError> {
        parse(Path::new("/etc/peapod/kubelet.yaml"), text)
    }

    #[test]
    fn a_full_file_sets_every_setting() {
        let loaded = parsed(
            r#"
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: /etc/kubernetes/manifests
address: 0.0.0.0
port: 10250
tlsCertFile: /var/lib/kubelet/pki/kubelet.crt
tlsPrivateKeyFile: /var/lib/kubelet/pki/kubelet.key
authentication:
  x509:
    clientCAFile: /etc/kubernetes/pki/ca.crt
  webhook:
    enabled: true
    cacheTTL: 2m0s
  anonymous:
    enabled: false
authorization:
  mode: Webhook
clusterDNS: [10.96.0.10]
clusterDomain: cluster.local
resolvConf: /run/systemd/resolve/resolv.conf
maxPods: 50
podPidsLimit: 4096
registerNode: true
registerWithTaints:
  - key: dedicated
    value: gpu
    effect: NoSchedule
nodeStatusUpdateFrequency: 1m0s
nodeStatusReportFrequency: 5m
nodeLeaseDurationSeconds: 20
containerLogMaxSize: 5Mi
containerLogMaxFiles: 3
seccompDefault: true
allowedUnsafeSysctls: ["net.core.somaxconn"]
evictionHard:
  memory.available: 200Mi
  nodefs.available: "5%"
providerID: peapod://node-a
cgroupDriver: systemd
"#,
        )
        .unwrap();
        let c = &loaded.config;
        assert_eq!(
            loaded.ignored,
            ["authentication.webhook.cacheTTL", "cgroupDriver"]
        );
        assert_eq!(
            c.static_pod_path.as_deref(),
            Some(Path::new("/etc/kubernetes/manifests"))
        );
        assert_eq!(c.server.address, Some("0.0.0.0".parse().unwrap()));
        assert_eq!(c.server.port, Some(10250));
        assert_eq!(
            c.server.client_ca_file.as_deref(),
            Some(Path::new("/etc/kubernetes/pki/ca.crt"))
        );
        assert_eq!(c.server.anonymous_auth, Some(false));
        assert_eq!(c.server.webhook_authn, Some(true));
        assert_eq!(c.cluster_dns, Some(vec!["10.96.0.10".parse().unwrap()]));
        assert_eq!(c.max_pods, Some(50));
        assert_eq!(c.pod_pids_limit, Some(4096));
        assert_eq!(c.register_with_taints.as_ref().unwrap()[0].key, "dedicated");
        assert_eq!(
            c.node_status_update_frequency,
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            c.node_status_report_frequency,
            Some(Duration::from_secs(300))
        );
        assert_eq!(c.node_lease_duration_seconds, Some(20));
        assert_eq!(c.container_log_max_size, Some(5 << 20));
        assert_eq!(c.container_log_max_files, Some(3));
        assert_eq!(c.seccomp_default, Some(true));
        let eviction = c.eviction_hard.unwrap();
        assert_eq!(eviction.memory_available, Threshold::Amount(200 << 20));
        assert_eq!(eviction.nodefs_available, Threshold::Share(0.05));
        assert_eq!(
            eviction.imagefs_available,
            Threshold::Amount(0),
            "left out: 0"
        );
        assert_eq!(c.provider_id.as_deref(), Some("peapod://node-a"));
    }

    #[test]
    fn json_is_read_and_left_out_fields_stay_unset() {
        let loaded = parsed(
            r#"{"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
                "maxPods": 20}"#,
        )
        .unwrap();
        assert_eq!(loaded.config.max_pods, Some(20));
        assert_eq!(loaded.config.register_node, None);
        assert_eq!(loaded.config.server.port, None);
        // The file format's own defaults for the API server's access control.
        assert_eq!(loaded.config.server.anonymous_auth, Some(false));
        assert_eq!(loaded.config.server.webhook_authn, Some(true));
        assert_eq!(
            loaded.config.server.authorization_mode.as_deref(),
            Some("Webhook")
        );
        assert!(loaded.ignored.is_empty());
    }

    #[test]
    fn bad_values_name_the_file_and_the_field() {
        let header = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";
        let cases = [
            ("maxPods: many", "field maxPods"),
            ("maxPods: 0", "field maxPods: 0: must be at least 1"),
            (
                "nodeStatusUpdateFrequency: soon",
                "field nodeStatusUpdateFrequency",
            ),
            (
                "authentication:\n  anonymous:\n    enabled: maybe",
                "authentication.anonymous.enabled",
            ),
            ("authorization:\n  mode: RBAC", "field authorization.mode"),
            ("clusterDNS: [not-an-ip]", "field clusterDNS"),
            ("containerLogMaxSize: big", "field containerLogMaxSize"),
            (
                "evictionHard:\n  memory.available: lots",
                "memory.available",
            ),
            (
                "evictionHard:\n  swap.available: 1Gi",
                "unknown eviction signal",
            ),
            (
                "registerWithTaints:\n  - key: a\n    effect: Sometimes",
                "registerWithTaints",
            ),
        ];
        for (body, expected) in cases {
            let error = parsed(&format!("{header}{body}\n"))
                .unwrap_err()
                .to_string();
            assert!(error.contains("/etc/peapod/kubelet.yaml"), "{error}");
            assert!(error.contains(expected), "{body}: {error}");
        }
        let wrong_kind = parsed("apiVersion: v1\nkind: Pod\n")
            .unwrap_err()
            .to_string();
        assert!(wrong_kind.contains("found v1/Pod"), "{wrong_kind}");
        assert!(matches!(
            parsed("- a\n- b\n"),
            Err(ConfigFileError::Syntax { .. })
        ));
    }

    #[test]
    fn durations_read_as_go_writes_them() {
        let secs = |t| parse_duration(t).unwrap().as_secs_f64();
        assert_eq!(secs("10s"), 10.0);
        assert_eq!(secs("1m0s"), 60.0);
        assert_eq!(secs("1h30m"), 5400.0);
        assert_eq!(secs("500ms"), 0.5);
        assert_eq!(secs("1.5s"), 1.5);
        assert_eq!(secs("0"), 0.0);
        for bad in ["", "10", "s", "10x", "1..5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_eviction_flag_reads_as_the_file_map() {
        let t = parse_eviction_hard("memory.available<1Gi, pid.available<5%").unwrap();
        assert_eq!(t.memory_available, Threshold::Amount(1 << 30));
        assert_eq!(t.pid_available, Some(Threshold::Share(0.05)));
        assert_eq!(t.nodefs_available, Threshold::Amount(0));
        let error = parse_eviction_hard("memory.available=1Gi").unwrap_err();
        assert!(error.contains("expected signal<value"), "{error}");
        let error = parse_eviction_hard("swap.available<1Gi").unwrap_err();
        assert!(
            error.contains("--eviction-hard swap.available: unknown"),
            "{error}"
        );
    }

    #[test]
    fn the_command_line_wins_over_the_file() {
        assert_eq!(choose(true, 30, Some(50)), 30);
        assert_eq!(choose(false, 110, Some(50)), 50);
        assert_eq!(choose(false, 110, None), 110);
    }
}
