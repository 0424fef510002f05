//! A pod's network through CNI: load the node's network config and run its plugin
//! chain to attach a sandbox's network namespace (ADD), detach it (DEL) and ask
//! whether the network is ready (STATUS), passing the arguments the upstream kubelet
//! and containerd pass.
//!
//! The calls block while plugins run: from async code, call them inside
//! `tokio::task::spawn_blocking`. They only spawn processes, never `setns`, so any
//! thread will do.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cni::caller::{Cache, Caller, CallerError, Network, RuntimeConf};
use cni::spec::CniResult;

/// The interface the pod's network shows up as inside the pod, as in Kubernetes.
pub const POD_INTERFACE: &str = "eth0";

/// The file name the quickstart installs [`DEFAULT_CONFLIST`] under, in the conf dir.
pub const DEFAULT_CONFLIST_NAME: &str = "10-peapod.conflist";

/// peapod's default network, used when the conf dir holds no config: `loopback`, then
/// `peapod-bridge` on bridge `peapod0` with host-local addresses from 10.88.0.0/16,
/// the bridge as the pods' gateway and their traffic masqueraded off the node, then the
/// reference `portmap` plugin for the pods' `hostPort`s (it declares the `portMappings`
/// capability, so the kubelet hands it the mappings).
/// cniVersion 1.0.0 because the distributions' `loopback` does not speak 1.1.
pub const DEFAULT_CONFLIST: &str = r#"{
  "cniVersion": "1.0.0",
  "name": "peapod",
  "plugins": [
    {
      "type": "loopback"
    },
    {
      "type": "peapod-bridge",
      "bridge": "peapod0",
      "isGateway": true,
      "ipMasq": true,
      "ipam": {
        "type": "peapod-host-local",
        "subnet": "10.88.0.0/16",
        "routes": [{ "dst": "0.0.0.0/0" }],
        "dataDir": "/var/lib/cni/networks"
      }
    },
    {
      "type": "portmap",
      "capabilities": { "portMappings": true },
      "snat": true
    }
  ]
}
"#;

/// How long one plugin may run before it is killed.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a pod's network could not be set up, torn down or checked.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The conf dir could not be read, or its first config does not parse.
    #[error("loading the network config from {dir}: {source}")]
    Load {
        /// The conf dir.
        dir: PathBuf,
        /// What the caller said (boxed: it is large and errors are rare).
        source: Box<CallerError>,
    },
    /// The built-in default network does not parse (a bug in peapod).
    #[error("the default network config: {0}")]
    Default(String),
    /// A plugin failed while attaching the pod.
    #[error("attaching sandbox {sandbox} to network {network}: {source}")]
    Attach {
        /// The sandbox.
        sandbox: String,
        /// The network's name.
        network: String,
        /// What the caller said (boxed: it is large and errors are rare).
        source: Box<CallerError>,
    },
    /// A plugin failed while detaching the pod.
    #[error("detaching sandbox {sandbox} from network {network}: {source}")]
    Detach {
        /// The sandbox.
        sandbox: String,
        /// The network's name.
        network: String,
        /// What the caller said (boxed: it is large and errors are rare).
        source: Box<CallerError>,
    },
    /// A plugin says the network cannot take pods now.
    #[error("network {network} is not ready: {source}")]
    NotReady {
        /// The network's name.
        network: String,
        /// What the caller said (boxed: it is large and errors are rare).
        source: Box<CallerError>,
    },
}

/// The pod a network attachment is for, named as Kubernetes names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef<'a> {
    /// The pod's namespace.
    pub namespace: &'a str,
    /// The pod's name.
    pub name: &'a str,
    /// The pod's uid.
    pub uid: &'a str,
}

/// A `hostPort` to forward to the pod, as the CNI `portMappings` capability argument
/// (the conventions' field names, the protocol in lower case as containerd passes it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// The node's port.
    pub host_port: u16,
    /// The pod's port.
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// The node address to listen on; all when absent.
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

/// The node's pod network: its config and the caller that runs its plugins.
#[derive(Debug, Clone)]
pub struct PodNetwork {
    network: Network,
    caller: Caller,
}

impl PodNetwork {
    /// The first config in `conf_dir` (by file name, as containerd picks it), or
    /// [`DEFAULT_CONFLIST`] when the dir has none or does not exist; plugins are looked
    /// up in `plugin_dirs` and results cached under `cache_dir`.
    pub fn load(
        conf_dir: &Path,
        plugin_dirs: &[PathBuf],
        cache_dir: &Path,
    ) -> Result<PodNetwork, NetworkError> {
        let network = match Network::load_default(conf_dir) {
            Ok(network) => network,
            Err(CallerError::NoConfig(_)) => default_network()?,
            Err(CallerError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                default_network()?
            }
            Err(source) => {
                return Err(NetworkError::Load {
                    dir: conf_dir.to_path_buf(),
                    source: Box::new(source),
                })
            }
        };
        Ok(PodNetwork {
            network,
            caller: Caller {
                plugin_dirs: plugin_dirs.to_vec(),
                cache: Cache::new(cache_dir),
                timeout: PLUGIN_TIMEOUT,
            },
        })
    }

    /// The network's name.
    pub fn name(&self) -> &str {
        self.network.name()
    }

    /// The loaded config.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// ADD: connect the network namespace at `netns` of sandbox `sandbox_id` as
    /// [`POD_INTERFACE`], forwarding `ports` from the node; the pod's addresses on it.
    pub fn attach(
        &self,
        sandbox_id: &str,
        netns: &Path,
        pod: &PodRef<'_>,
        ports: &[PortMapping],
    ) -> Result<Vec<IpAddr>, NetworkError> {
        let mut rt = runtime_conf(sandbox_id, netns, pod);
        if !ports.is_empty() {
            rt.capability_args = serde_json::json!({ "portMappings": ports });
        }
        let result =
            self.caller
                .add(&self.network, &rt)
                .map_err(|source| NetworkError::Attach {
                    sandbox: sandbox_id.into(),
                    network: self.name().into(),
                    source: Box::new(source),
                })?;
        Ok(pod_ips(&result, POD_INTERFACE))
    }

    /// DEL: disconnect the sandbox and free its addresses. Idempotent: detaching a sandbox
    /// that is already detached, or whose netns is gone (`netns` may be empty), succeeds.
    /// The capability arguments ADD was given (the port mappings) are passed again, from
    /// the result cache, so plugins such as `portmap` find the rules to remove.
    pub fn detach(
        &self,
        sandbox_id: &str,
        netns: &Path,
        pod: &PodRef<'_>,
    ) -> Result<(), NetworkError> {
        let mut rt = runtime_conf(sandbox_id, netns, pod);
        if let Some(added) = self.caller.cache.load(self.name(), &rt) {
            rt.capability_args = added.capability_args;
        }
        self.caller
            .del(&self.network, &rt)
            .map_err(|source| NetworkError::Detach {
                sandbox: sandbox_id.into(),
                network: self.name().into(),
                source: Box::new(source),
            })
    }

    /// STATUS: whether every plugin can attach pods now. Configs older than CNI 1.1
    /// have no STATUS; for them the network counts as ready once loaded.
    pub fn status(&self) -> Result<(), NetworkError> {
        let supported = self
            .network
            .list
            .version()
            .is_ok_and(|v| v.supports_gc_and_status());
        if !supported {
            return Ok(());
        }
        self.caller
            .status(&self.network)
            .map_err(|source| NetworkError::NotReady {
                network: self.name().into(),
                source: Box::new(source),
            })
    }
}

/// [`DEFAULT_CONFLIST`] as a loaded network; its source names the file it would be
/// installed as.
pub fn default_network() -> Result<Network, NetworkError> {
    let list = cni::spec::NetConfList::parse(DEFAULT_CONFLIST.as_bytes())
        .map_err(|e| NetworkError::Default(e.to_string()))?;
    Ok(Network {
        list,
        bytes: DEFAULT_CONFLIST.as_bytes().to_vec(),
        source: PathBuf::from(cni::caller::DEFAULT_CONF_DIR).join(DEFAULT_CONFLIST_NAME),
    })
}

/// The node's addresses, as the kubelet picks them without `--node-ip`: the global
/// addresses of the interface the default route leaves by, else of every interface that is
/// up and not loopback; IPv4 first. Reads the calling thread's network namespace, so call
/// it on a thread inside the node's.
pub fn node_addresses() -> Vec<IpAddr> {
    let default_link = default_route_interface();
    let Ok(addresses) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut found: Vec<(bool, IpAddr)> = Vec::new();
    for address in addresses {
        let up = address
            .flags
            .contains(nix::net::if_::InterfaceFlags::IFF_UP);
        let loopback = address
            .flags
            .contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK);
        let Some(ip) = address.address.as_ref().and_then(socket_ip) else {
            continue;
        };
        if !up || loopback || !is_global(ip) {
            continue;
        }
        found.push((default_link.as_deref() == Some(&address.interface_name), ip));
    }
    let on_default: Vec<IpAddr> = found
        .iter()
        .filter(|(d, _)| *d)
        .map(|(_, ip)| *ip)
        .collect();
    let mut ips = if on_default.is_empty() {
        found.into_iter().map(|(_, ip)| ip).collect()
    } else {
        on_default
    };
    ips.sort_by_key(|ip| ip.is_ipv6());
    ips.dedup();
    ips
}

fn socket_ip(address: &nix::sys::socket::SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

/// Not loopback, link-local, unspecified or multicast.
fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_loopback() || v4.is_link_local() || v4.is_unspecified()),
        IpAddr::V6(v6) => {
            !(v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// The interface of the IPv4 default route, from the calling thread's
/// `/proc/thread-self/net/route` (the thread's network namespace, not the process's).
fn default_route_interface() -> Option<String> {
    let table = std::fs::read_to_string("/proc/thread-self/net/route").ok()?;
    default_route_in(&table)
}

/// The interface whose route has destination and mask 0 in a `/proc/net/route` table.
fn default_route_in(table: &str) -> Option<String> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.len() > 7 && fields[1] == "00000000" && fields[7] == "00000000")
            .then(|| fields[0].to_owned())
    })
}

/// The runtime side of one attachment, with the `CNI_ARGS` the upstream kubelet and
/// containerd pass (`IgnoreUnknown` so plugins that know none of them still run).
fn runtime_conf(sandbox_id: &str, netns: &Path, pod: &PodRef<'_>) -> RuntimeConf {
    let args = [
        ("K8S_POD_NAMESPACE", pod.namespace),
        ("K8S_POD_NAME", pod.name),
        ("K8S_POD_INFRA_CONTAINER_ID", sandbox_id),
        ("K8S_POD_UID", pod.uid),
        ("IgnoreUnknown", "1"),
    ];
    RuntimeConf {
        container_id: sandbox_id.into(),
        netns: netns.to_string_lossy().into_owned(),
        ifname: POD_INTERFACE.into(),
        args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        capability_args: serde_json::Value::Null,
    }
}

/// The addresses on interface `ifname` inside the sandbox. An address that names no
/// interface counts too: plugins that create one interface may leave the index out.
fn pod_ips(result: &CniResult, ifname: &str) -> Vec<IpAddr> {
    result
        .ips
        .iter()
        .filter(|ip| match ip.interface {
            None => true,
            Some(i) => result
                .interfaces
                .get(i)
                .is_some_and(|iface| iface.name == ifname && iface.sandbox.is_some()),
        })
        .map(|ip| ip.address.addr)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_network_is_loopback_then_our_bridge() {
        let net = default_network().unwrap();
        assert_eq!(net.name(), "peapod");
        let types: Vec<&str> = net
            .list
            .plugins
            .iter()
            .map(|p| p["type"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(types, ["loopback", "peapod-bridge", "portmap"]);
        assert_eq!(net.list.plugins[2]["capabilities"]["portMappings"], true);
        let bridge = &net.list.plugins[1];
        assert_eq!(bridge["bridge"], "peapod0");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], true);
        assert_eq!(bridge["ipam"]["type"], "peapod-host-local");
        assert_eq!(bridge["ipam"]["subnet"], "10.88.0.0/16");
        assert_eq!(bridge["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(bridge["ipam"]["dataDir"], "/var/lib/cni/networks");
    }

    #[test]
    fn an_empty_or_missing_conf_dir_gives_the_default_and_a_config_wins() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let net = PodNetwork::load(dir.path(), &[], &cache).unwrap();
        assert_eq!(net.name(), "peapod");
        let missing = PodNetwork::load(&dir.path().join("absent"), &[], &cache).unwrap();
        assert_eq!(missing.name(), "peapod");

        std::fs::write(
            dir.path().join("05-mine.conflist"),
            r#"{"cniVersion":"1.0.0","name":"mine","plugins":[{"type":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(
            PodNetwork::load(dir.path(), &[], &cache).unwrap().name(),
            "mine"
        );

        std::fs::write(dir.path().join("01-bad.conflist"), "{not json").unwrap();
        let err = PodNetwork::load(dir.path(), &[], &cache).unwrap_err();
        assert!(
            matches!(err, NetworkError::Load { .. }),
            "a broken config is an error, not a silent fallback: {err}"
        );
        assert!(err.to_string().contains("01-bad.conflist"), "{err}");
    }

    #[test]
    fn the_default_route_names_its_interface() {
        let table = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
                     eth1\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\n\
                     eth0\t00000000\t0102000A\t0003\t0\t0\t0\t00000000\n";
        assert_eq!(default_route_in(table).as_deref(), Some("eth0"));
        assert_eq!(default_route_in("Iface\tDestination\n"), None);
        assert!(!is_global("169.254.1.1".parse().unwrap()));
        assert!(!is_global("fe80::1".parse().unwrap()));
        assert!(is_global("192.0.2.10".parse().unwrap()));
    }

    #[test]
    fn the_cni_args_are_the_kubelets() {
        let pod = PodRef {
            namespace: "default",
            name: "web",
            uid: "u1",
        };
        let rt = runtime_conf("sb1", Path::new("/run/netns/sb1"), &pod);
        assert_eq!(rt.container_id, "sb1");
        assert_eq!(rt.ifname, "eth0");
        assert_eq!(rt.netns, "/run/netns/sb1");
        let args: Vec<String> = rt.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            args.join(";"),
            "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=u1;IgnoreUnknown=1"
        );
    }

    #[test]
    fn port_mappings_are_written_as_the_cni_conventions_name_them() {
        let ports = [
            PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: String::new(),
            },
            PortMapping {
                host_port: 5353,
                container_port: 53,
                protocol: "udp".into(),
                host_ip: "192.0.2.1".into(),
            },
        ];
        assert_eq!(
            serde_json::to_value(ports).unwrap(),
            serde_json::json!([
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "192.0.2.1"},
            ])
        );
    }

    #[test]
    fn only_the_pods_interface_addresses_are_the_pods() {
        let result = CniResult::parse(
            br#"{"cniVersion":"1.0.0",
                "interfaces":[{"name":"br0"},{"name":"veth1"},{"name":"eth0","sandbox":"/run/netns/x"}],
                "ips":[{"address":"10.1.0.1/24","interface":0},
                       {"address":"10.1.0.5/24","interface":2},
                       {"address":"fd00::5/64","interface":2}]}"#,
        )
        .unwrap();
        let ips: Vec<String> = pod_ips(&result, "eth0")
            .iter()
            .map(|ip| ip.to_string())
            .collect();
        assert_eq!(ips, ["10.1.0.5", "fd00::5"]);
    }
}
