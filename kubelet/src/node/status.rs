//! The v1 `Node` object the kubelet registers and its `status`, built as upstream's
//! `initialNode` and status setters build them. Pure: no I/O.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::capacity::{allocatable, capacity, EvictionThresholds};
use super::config::NodeConfig;
use super::host::{go_arch, HostFacts};
use crate::pod::status::CONTAINER_ID_SCHEME;

/// Set on the Node as upstream sets it: volumes are attached by the controller manager.
const ATTACH_DETACH_ANNOTATION: &str = "volumes.kubernetes.io/controller-managed-attach-detach";

/// This build's architecture as Go names it (`amd64`, `arm64`).
pub fn architecture() -> &'static str {
    go_arch(std::env::consts::ARCH)
}

/// The labels the kubelet sets on its Node: hostname, os and arch (GA and the beta ones
/// upstream still sets), then the operator's `--node-labels`, which win on a clash. The
/// node name is the hostname here: `--node-name` plays upstream's `--hostname-override`.
pub fn labels(config: &NodeConfig, _host: &HostFacts) -> BTreeMap<String, String> {
    let arch = architecture().to_string();
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), config.name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), arch.clone()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), arch),
    ]);
    labels.extend(config.labels.clone());
    labels
}

/// The Node to register: name, labels, taints and `status`.
pub fn node(config: &NodeConfig, host: &HostFacts, status: NodeStatus) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            labels: Some(labels(config, host)),
            annotations: Some(BTreeMap::from([(
                ATTACH_DETACH_ANNOTATION.to_string(),
                "true".to_string(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            taints: (!config.taints.is_empty()).then(|| config.taints.clone()),
            provider_id: config.provider_id.clone(),
            ..NodeSpec::default()
        }),
        status: Some(status),
    }
}

/// The Node's status: addresses, capacity, allocatable, `conditions` (from
/// [`super::conditions::Conditions::observe`]), the kubelet endpoint and nodeInfo.
pub fn node_status(
    config: &NodeConfig,
    host: &HostFacts,
    thresholds: &EvictionThresholds,
    conditions: Vec<NodeCondition>,
) -> NodeStatus {
    let mut addresses: Vec<NodeAddress> = config
        .node_ips
        .iter()
        .map(|ip| NodeAddress {
            type_: "InternalIP".to_string(),
            address: ip.to_string(),
        })
        .collect();
    addresses.push(NodeAddress {
        type_: "Hostname".to_string(),
        address: config.name.clone(),
    });
    NodeStatus {
        addresses: Some(addresses),
        capacity: Some(capacity(host, config.max_pods)),
        allocatable: Some(allocatable(host, config.max_pods, thresholds)),
        conditions: Some(conditions),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: config.port }),
        }),
        node_info: Some(NodeSystemInfo {
            machine_id: host.machine_id.clone(),
            system_uuid: host.system_uuid.clone(),
            boot_id: host.boot_id.clone(),
            kernel_version: host.kernel_version.clone(),
            os_image: host.os_image.clone(),
            container_runtime_version: format!("{CONTAINER_ID_SCHEME}{}", config.version),
            kubelet_version: format!("v{}", config.version),
            kube_proxy_version: String::new(),
            operating_system: "linux".to_string(),
            architecture: architecture().to_string(),
            ..NodeSystemInfo::default()
        }),
        ..NodeStatus::default()
    }
}

/// Whether `new` differs from `old` in anything but heartbeat times: upstream posts a
/// status on such a change and otherwise only every `nodeStatusReportFrequency`.
pub fn status_changed(old: &NodeStatus, new: &NodeStatus) -> bool {
    let without_heartbeats = |status: &NodeStatus| {
        let mut status = status.clone();
        for condition in status.conditions.iter_mut().flatten() {
            condition.last_heartbeat_time = None;
        }
        status
    };
    without_heartbeats(old) != without_heartbeats(new)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::node::capacity::Pressure;
    use crate::node::conditions::Conditions;
    use crate::node::config::{parse_labels, parse_taints};
    use crate::node::host::tests::fixture_paths;
    use crate::node::host::FsStats;

    /// The fixture host with a fixed filesystem (statvfs of a temp dir varies by machine).
    fn fixture_host() -> HostFacts {
        let dir = tempfile::tempdir().unwrap();
        let mut host = HostFacts::read(&fixture_paths(dir.path())).unwrap();
        host.nodefs = FsStats {
            capacity_bytes: 102_626_232 * 1024,
            available_bytes: 60 << 30,
            inodes: 6_553_600,
            inodes_free: 6_000_000,
        };
        host.imagefs = host.nodefs;
        host.system_uuid = "ec2f1e4b-0c3a-4d5e-8f60-7a8b9c0d1e2f".to_string();
        host
    }

    #[test]
    fn node_serialises_to_the_shape_upstream_registers() {
        let mut config = NodeConfig::new("node-a", vec!["10.0.0.5".parse().unwrap()]);
        config.version = "0.1.0".to_string();
        config.labels = parse_labels("node.kubernetes.io/pool=blue,team=infra").unwrap();
        config.taints = parse_taints("dedicated=gpu:NoSchedule").unwrap();
        let host = fixture_host();
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let conditions = Conditions::default().observe(Pressure::default(), &[], now);
        let status = node_status(&config, &host, &EvictionThresholds::default(), conditions);
        let json = serde_json::to_value(node(&config, &host, status)).unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/node/fixtures/node.json");
        let text = std::fs::read_to_string(fixture)
            .unwrap()
            .replace("ARCH", architecture());
        let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json,
            expected,
            "got:\n{}",
            serde_json::to_string_pretty(&json).unwrap()
        );
    }

    #[test]
    fn only_real_changes_count_as_changes() {
        let config = NodeConfig::new("n", Vec::new());
        let host = fixture_host();
        let thresholds = EvictionThresholds::default();
        let mut tracker = Conditions::default();
        let at = |s| Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, s).unwrap();
        let mut status = |host: &HostFacts, s| {
            let conditions = tracker.observe(thresholds.pressure(host, None), &[], at(s));
            node_status(&config, host, &thresholds, conditions)
        };
        let first = status(&host, 0);
        let later = status(&host, 10);
        assert!(!status_changed(&first, &later), "only heartbeats moved");
        let mut pressed = host.clone();
        pressed.memory_available_bytes = 1 << 20;
        let pressured = status(&pressed, 20);
        assert!(status_changed(&later, &pressured));
    }

    #[test]
    fn operator_labels_win_and_addresses_keep_their_order() {
        let mut config = NodeConfig::new(
            "n",
            vec!["10.0.0.5".parse().unwrap(), "fd00::5".parse().unwrap()],
        );
        config.labels = parse_labels("kubernetes.io/hostname=custom").unwrap();
        let host = fixture_host();
        assert_eq!(labels(&config, &host)["kubernetes.io/hostname"], "custom");
        let status = node_status(&config, &host, &EvictionThresholds::default(), Vec::new());
        let addresses: Vec<_> = status
            .addresses
            .unwrap()
            .into_iter()
            .map(|a| format!("{}={}", a.type_, a.address))
            .collect();
        assert_eq!(
            addresses,
            ["InternalIP=10.0.0.5", "InternalIP=fd00::5", "Hostname=n"]
        );
        assert!(node(&config, &host, NodeStatus::default())
            .spec
            .unwrap()
            .taints
            .is_none());
    }
}
