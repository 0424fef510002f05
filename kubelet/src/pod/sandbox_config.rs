//! A pod's sandbox from its spec, as the upstream kubelet's sandbox config: the namespaces it
//! shares with the node or across its containers, its hostname, domain and host aliases, its
//! `resolv.conf` (see [`dns`](super::dns)), its pod cgroup's limits (see
//! [`resources`](super::resources)), and the `hostPort`s the network forwards.

use k8s_openapi::api::core::v1::Pod;

use runtime::sandbox::{HostAlias, NamespaceOptions, PidMode, Qos, SandboxConfig};

use super::cri::{CriError, NodeConfig};
use super::dns;
use crate::network::PortMapping;

/// The sandbox config of `pod` on this node, with the DNS warnings to report as events.
/// The node's resolver file is read here (missing: empty).
pub fn config(
    pod: &Pod,
    qos: Qos,
    node: &NodeConfig,
) -> Result<(SandboxConfig, Vec<dns::Warning>), CriError> {
    let meta = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network.unwrap_or(false);
    let (hostname, domain) = if host_network {
        // The node's UTS namespace, so the node's name.
        let name = nix::unistd::gethostname()
            .map_err(|e| CriError::Sandbox(format!("reading the node's hostname: {e}")))?;
        (name.to_string_lossy().into_owned(), None)
    } else {
        dns::hostname_and_domain(pod, &node.dns.cluster_domain).map_err(CriError::Sandbox)?
    };
    let resolv_path = &node.sandbox.resolv_conf;
    let node_resolv = if resolv_path.as_os_str().is_empty() {
        String::new()
    } else {
        std::fs::read_to_string(resolv_path).unwrap_or_default()
    };
    let mut node_dns = node.dns.clone();
    node_dns.has_resolv_conf = !resolv_path.as_os_str().is_empty();
    let (resolv, warnings) = dns::pod_resolv_conf(pod, &node_dns, &node_resolv);
    let pid = if spec.host_pid == Some(true) {
        PidMode::Node
    } else if spec.share_process_namespace == Some(true) {
        PidMode::Pod
    } else {
        PidMode::Container
    };
    let config = SandboxConfig {
        name: meta.name.clone().unwrap_or_default(),
        namespace: meta.namespace.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        hostname,
        qos,
        namespaces: NamespaceOptions {
            host_network,
            node_netns: node.cni_netns.clone().filter(|_| host_network),
            host_ipc: spec.host_ipc.unwrap_or(false),
            pid,
        },
        domain,
        host_aliases: spec
            .host_aliases
            .iter()
            .flatten()
            .map(|alias| HostAlias {
                ip: alias.ip.clone(),
                hostnames: alias.hostnames.clone().unwrap_or_default(),
            })
            .collect(),
        resolv_conf: Some(resolv.render()),
        resources: super::resources::pod_cgroup(pod, &node.resources)
            .map_err(|e| CriError::Sandbox(e.to_string()))?,
    };
    Ok((config, warnings))
}

/// The app containers' ports that have a `hostPort`, as CNI port mappings (upstream
/// forwards neither init containers' ports nor ports without a host port).
pub fn port_mappings(pod: &Pod) -> Vec<PortMapping> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|port| {
            let host_port = u16::try_from(port.host_port?).ok().filter(|p| *p > 0)?;
            Some(PortMapping {
                host_port,
                container_port: u16::try_from(port.container_port).ok()?,
                protocol: port
                    .protocol
                    .as_deref()
                    .unwrap_or("TCP")
                    .to_ascii_lowercase(),
                host_ip: port.host_ip.clone().unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["containers"] = serde_json::json!([{
            "name": "web",
            "image": "busybox",
            "ports": [
                {"containerPort": 80, "hostPort": 8080},
                {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "192.0.2.1"},
                {"containerPort": 9090},
            ],
        }]);
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn node() -> NodeConfig {
        NodeConfig {
            node_name: "n".into(),
            image_root: "/nonexistent/images".into(),
            pods_dir: "/nonexistent/pods".into(),
            log_dir: "/nonexistent/logs".into(),
            sandbox: runtime::sandbox::Paths {
                resolv_conf: "/nonexistent/resolv.conf".into(),
                ..Default::default()
            },
            runtime_binary: "peapod-runtime".into(),
            runtime_root: "/nonexistent/run".into(),
            shim_binary: "peapod-shim".into(),
            cni_conf_dir: "/nonexistent/cni".into(),
            cni_bin_dirs: Vec::new(),
            cni_cache_dir: "/nonexistent/cache".into(),
            cni_netns: Some("/run/netns/node".into()),
            log_options: runtime::logs::LogOptions {
                max_size: 1 << 20,
                max_files: 2,
            },
            pull: Default::default(),
            dns: dns::NodeDns {
                cluster_dns: vec!["10.96.0.10".parse().unwrap()],
                cluster_domain: "cluster.local".into(),
                has_resolv_conf: true,
            },
            node_ips: Vec::new(),
            crash_backoff: std::time::Duration::from_secs(10),
            resources: super::super::resources::NodeResources {
                memory_capacity: 1 << 30,
                pod_max_pids: 0,
            },
            security: Default::default(),
        }
    }

    #[test]
    fn only_host_ports_are_mapped_in_lower_case_protocols() {
        let ports = port_mappings(&pod(serde_json::json!({})));
        assert_eq!(ports.len(), 2);
        assert_eq!((ports[0].host_port, ports[0].container_port), (8080, 80));
        assert_eq!(ports[0].protocol, "tcp");
        assert_eq!(ports[1].protocol, "udp");
        assert_eq!(ports[1].host_ip, "192.0.2.1");
    }

    #[test]
    fn namespaces_follow_the_pods_host_and_sharing_fields() {
        let (plain, _) = config(&pod(serde_json::json!({})), Qos::BestEffort, &node()).unwrap();
        assert_eq!(plain.namespaces, NamespaceOptions::default());
        assert_eq!(plain.namespaces.pid, PidMode::Container);
        assert_eq!(plain.hostname, "web");

        let shared = pod(serde_json::json!({"shareProcessNamespace": true, "hostIPC": true}));
        let (shared, _) = config(&shared, Qos::BestEffort, &node()).unwrap();
        assert_eq!(shared.namespaces.pid, PidMode::Pod);
        assert!(shared.namespaces.host_ipc);
        assert!(!shared.namespaces.host_network);
        assert_eq!(shared.namespaces.node_netns, None);

        let host = pod(serde_json::json!({"hostNetwork": true, "hostPID": true}));
        let (host, _) = config(&host, Qos::BestEffort, &node()).unwrap();
        assert!(host.namespaces.host_network);
        assert_eq!(
            host.namespaces.node_netns.as_deref(),
            Some(std::path::Path::new("/run/netns/node")),
            "a host-network pod joins the node's network namespace, the CNI one"
        );
        assert_eq!(host.namespaces.pid, PidMode::Node);
        let node_name = nix::unistd::gethostname().unwrap();
        assert_eq!(host.hostname, node_name.to_string_lossy());
    }

    #[test]
    fn names_aliases_and_resolver_come_from_the_spec() {
        let spec = serde_json::json!({
            "hostname": "db-0",
            "subdomain": "db",
            "hostAliases": [{"ip": "192.0.2.9", "hostnames": ["a", "b"]}],
        });
        let (config, warnings) = config(&pod(spec), Qos::BestEffort, &node()).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(config.hostname, "db-0");
        assert_eq!(config.domain.as_deref(), Some("db.shop.svc.cluster.local"));
        assert_eq!(config.host_aliases[0].hostnames, ["a", "b"]);
        assert_eq!(
            config.resolv_conf.as_deref(),
            Some(
                "search shop.svc.cluster.local svc.cluster.local cluster.local\n\
                 nameserver 10.96.0.10\noptions ndots:5\n"
            )
        );
    }
}
