//! `peapod-bridge`: a CNI plugin attaching containers to a Linux bridge, like the reference `bridge`.
//!
//! ADD creates the bridge if needed, a veth pair with the host end on the
//! bridge and the other end inside `CNI_NETNS` as `CNI_IFNAME`, asks the IPAM
//! plugin named by `ipam.type` for addresses, configures them and their routes
//! in the container, and optionally makes the bridge the gateway and
//! masquerades the pod. DEL undoes all of that idempotently; CHECK compares
//! the container with `prevResult`; GC and STATUS forward to IPAM.
//!
//! Netlink work runs on a current-thread tokio runtime (rtnetlink is async);
//! the container's namespace is reached through a netlink socket opened inside
//! it by a short-lived thread (see `cni::netns`), so no thread of the plugin
//! stays in a foreign namespace.

use cni::link::{self, Netlink};
use cni::netns::{self, NetNs};
use cni::plugin::{self, Plugin, Request};
use cni::spec::{Cidr, CniResult, Code, Command, Error, Interface, IpConfig, Route, Version};
use cni::vlan::{PortVlans, Trunk};
use cni::{delegate, masq, spoofchk};
use serde::Deserialize;
use sha2::{Digest, Sha512};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// The bridge plugin's own configuration fields.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BridgeConf {
    #[serde(default = "default_bridge")]
    bridge: String,
    #[serde(default)]
    is_gateway: bool,
    #[serde(default)]
    is_default_gateway: bool,
    #[serde(default)]
    force_address: bool,
    #[serde(default)]
    ip_masq: bool,
    #[serde(default)]
    hairpin_mode: bool,
    #[serde(default)]
    promisc_mode: bool,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    vlan: i64,
    #[serde(default)]
    vlan_trunk: Option<Vec<Trunk>>,
    #[serde(default)]
    preserve_default_vlan: bool,
    /// `vlan`, `vlanTrunk` and `preserveDefaultVlan`, checked.
    #[serde(skip)]
    vlans: PortVlans,
    #[serde(default)]
    macspoofchk: bool,
    #[serde(default)]
    disable_container_interface: bool,
}

fn default_bridge() -> String {
    "cni0".to_string()
}

impl BridgeConf {
    fn load(req: &Request) -> Result<BridgeConf, Error> {
        let value = serde_json::Value::Object(req.config.plugin.clone());
        let mut conf: BridgeConf = serde_json::from_value(value).map_err(|e| {
            Error::new(Code::Decode, "failed to decode bridge config").with_details(e.to_string())
        })?;
        if conf.bridge.is_empty() || conf.bridge.len() > 15 {
            return Err(Error::new(
                Code::InvalidConfig,
                format!("invalid bridge name {:?}", conf.bridge),
            ));
        }
        if conf.is_default_gateway {
            conf.is_gateway = true;
        }
        if conf.hairpin_mode && conf.promisc_mode {
            return Err(Error::new(
                Code::InvalidConfig,
                "cannot set hairpin mode and promiscuous mode at the same time",
            ));
        }
        conf.vlans = PortVlans::new(
            conf.vlan,
            conf.vlan_trunk.as_deref(),
            conf.preserve_default_vlan,
        )
        .map_err(|m| Error::new(Code::InvalidConfig, m))?;
        if conf.is_gateway && conf.vlans.access != 0 {
            let gateway = vlan_gateway_name(&conf.bridge, conf.vlans.access);
            if gateway.len() > 15 {
                return Err(Error::new(
                    Code::InvalidConfig,
                    format!(
                        "bridge name {:?} is too long for its VLAN gateway interface {gateway:?} \
                         (interface names have at most 15 characters)",
                        conf.bridge
                    ),
                ));
            }
        }
        Ok(conf)
    }
}

/// The host interface holding the gateway address of a VLAN (the reference's name).
fn vlan_gateway_name(bridge: &str, vid: u16) -> String {
    format!("{bridge}.{vid}")
}

/// Maps a failed VLAN request; a kernel without bridge VLAN filtering answers EOPNOTSUPP.
fn vlan_err(conf: &BridgeConf) -> impl Fn(link::Error) -> Error + '_ {
    move |e| {
        if e.errno() == Some(libc::EOPNOTSUPP) {
            Error::new(
                Code::UnsupportedField,
                format!(
                    "vlan={} vlanTrunk={:?}: this kernel has no bridge VLAN filtering \
                     (CONFIG_BRIDGE_VLAN_FILTERING)",
                    conf.vlan, conf.vlans.trunk
                ),
            )
            .with_details(e.to_string())
        } else {
            netlink_err(e)
        }
    }
}

fn netlink_err(e: link::Error) -> Error {
    Error::new(Code::INTERNAL, e.to_string())
}

fn spoofchk_err(e: spoofchk::Error) -> Error {
    Error::new(Code::INTERNAL, e.to_string())
}

fn masq_err(e: masq::Error) -> Error {
    Error::new(Code::INTERNAL, e.to_string())
}

/// Runs the netlink part of a verb on a current-thread runtime.
fn block_on<T>(f: impl std::future::Future<Output = Result<T, Error>>) -> Result<T, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| {
            Error::new(Code::Io, "failed to start the netlink runtime").with_details(e.to_string())
        })?
        .block_on(f)
}

/// The host-side veth name: stable per attachment, so DEL finds it without the netns.
fn host_veth_name(network: &str, container_id: &str, ifname: &str) -> String {
    veth_name(&[network, container_id, ifname])
}

/// `veth` + 10 hex digits of a hash of `parts`: a name no two owners share.
fn veth_name(parts: &[&str]) -> String {
    let digest = Sha512::digest(parts.join("\0").as_bytes());
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    format!("veth{hex}")
}

fn ipam_type(req: &Request) -> Option<&str> {
    req.config.ipam_type().filter(|t| !t.is_empty())
}

fn open_netns(req: &Request) -> Result<NetNs, Error> {
    let path = req
        .env
        .netns
        .as_deref()
        .ok_or_else(|| Error::new(Code::InvalidEnvironment, "missing CNI_NETNS"))?;
    NetNs::open(path).map_err(|e| Error::new(Code::InvalidEnvironment, e.to_string()))
}

struct Bridge;

impl Plugin for Bridge {
    fn add(&self, req: &Request) -> Result<CniResult, Error> {
        let conf = BridgeConf::load(req)?;
        let ns = open_netns(req)?;
        let ipam = match ipam_type(req) {
            Some(t) => Some(
                delegate::exec(t, Command::Add, &req.env.path, &req.stdin)?
                    .ok_or_else(|| Error::new(Code::INTERNAL, "IPAM returned no result"))?,
            ),
            None => None,
        };
        match attach(req, &conf, &ns, ipam.as_ref()) {
            Ok(result) => Ok(result),
            Err(e) => {
                // Roll back what this ADD did; the runtime may never send DEL.
                let host_veth =
                    host_veth_name(&req.config.name, &req.env.container_id, &req.env.ifname);
                let _ = block_on(async {
                    Netlink::host()
                        .map_err(netlink_err)?
                        .delete(&host_veth)
                        .await
                        .map_err(netlink_err)
                });
                if conf.ip_masq {
                    let _ = masq::teardown(&req.config.name, &req.env.container_id);
                }
                if conf.macspoofchk {
                    let _ = spoofchk::teardown(&req.env.container_id, &req.env.ifname);
                }
                if let Some(t) = ipam_type(req) {
                    let _ = delegate::exec(t, Command::Del, &req.env.path, &req.stdin);
                }
                Err(e)
            }
        }
    }

    fn del(&self, req: &Request) -> Result<(), Error> {
        let conf = BridgeConf::load(req)?;
        let host_veth = host_veth_name(&req.config.name, &req.env.container_id, &req.env.ifname);
        let ns = match req.env.netns.as_deref().map(NetNs::open) {
            Some(Ok(ns)) => Some(ns),
            Some(Err(netns::Error::NotFound(_))) | None => None,
            Some(Err(e)) => return Err(Error::new(Code::Io, e.to_string())),
        };
        let ifname = req.env.ifname.clone();
        // The three teardowns are independent: run IPAM and iptables (both child
        // processes) alongside the netlink work, which waits on the kernel
        // (deleting a veth takes an RCU grace period). No thread enters a netns.
        let (ipam, masq, links) = std::thread::scope(|s| {
            let ipam = ipam_type(req).map(|t| {
                s.spawn(move || delegate::exec(t, Command::Del, &req.env.path, &req.stdin))
            });
            let masq = conf
                .ip_masq
                .then(|| s.spawn(|| masq::teardown(&req.config.name, &req.env.container_id)));
            let links = block_on(async move {
                if let Some(ns) = &ns {
                    Netlink::in_netns(ns)
                        .map_err(netlink_err)?
                        .delete(&ifname)
                        .await
                        .map_err(netlink_err)?;
                }
                // Gone with its peer in the common case; still there if the netns vanished oddly.
                Netlink::host()
                    .map_err(netlink_err)?
                    .delete(&host_veth)
                    .await
                    .map_err(netlink_err)?;
                Ok(())
            });
            (ipam.map(join), masq.map(join), links)
        });
        ipam.transpose()?;
        masq.transpose().map_err(masq_err)?;
        links?;
        if conf.macspoofchk {
            spoofchk::teardown(&req.env.container_id, &req.env.ifname).map_err(spoofchk_err)?;
        }
        Ok(())
    }

    fn check(&self, req: &Request) -> Result<(), Error> {
        let conf = BridgeConf::load(req)?;
        let prev = req
            .config
            .prev_result()?
            .ok_or_else(|| Error::new(Code::InvalidConfig, "CHECK needs prevResult"))?;
        if let Some(t) = ipam_type(req) {
            delegate::exec(t, Command::Check, &req.env.path, &req.stdin)?;
        }
        if conf.ip_masq && !masq::exists(&req.config.name, &req.env.container_id) {
            return Err(failed(format!(
                "masquerade chain {} is missing",
                masq::chain_name(&req.config.name, &req.env.container_id)
            )));
        }
        let ns = open_netns(req)?;
        let ifname = req.env.ifname.clone();
        block_on(async move {
            let host = Netlink::host().map_err(netlink_err)?;
            let bridge = host
                .by_name(&conf.bridge)
                .await
                .map_err(netlink_err)?
                .ok_or_else(|| failed(format!("bridge {} not found", conf.bridge)))?;
            let nl = Netlink::in_netns(&ns).map_err(netlink_err)?;
            let link = nl
                .by_name(&ifname)
                .await
                .map_err(netlink_err)?
                .ok_or_else(|| {
                    failed(format!(
                        "interface {ifname} not found in {}",
                        ns.path().display()
                    ))
                })?;
            let container_index = prev
                .interfaces
                .iter()
                .position(|i| i.name == ifname && i.sandbox.is_some());
            if let Some(i) = container_index {
                if let Some(mac) = &prev.interfaces[i].mac {
                    if link.mac.as_deref().map(str::to_lowercase) != Some(mac.to_lowercase()) {
                        return Err(failed(format!(
                            "interface {ifname} has mac {:?}, expected {mac}",
                            link.mac
                        )));
                    }
                }
            }
            let have = nl.addresses(link.index).await.map_err(netlink_err)?;
            for ip in prev
                .ips
                .iter()
                .filter(|ip| ip.interface.is_none() || ip.interface == container_index)
            {
                if !have.contains(&(ip.address.addr, ip.address.prefix)) {
                    return Err(failed(format!(
                        "address {} not found on {ifname}",
                        ip.address
                    )));
                }
            }
            let routes = nl.routes().await.map_err(netlink_err)?;
            for r in &prev.routes {
                if !routes
                    .iter()
                    .any(|(dst, prefix, _)| *dst == r.dst.addr && *prefix == r.dst.prefix)
                {
                    return Err(failed(format!("route to {} not found", r.dst)));
                }
            }
            // The host end must still be a port of the bridge.
            if let Some(veth) = prev
                .interfaces
                .iter()
                .find(|i| i.sandbox.is_none() && i.name != conf.bridge)
            {
                let port = host.by_name(&veth.name).await.map_err(netlink_err)?;
                let port = port
                    .filter(|p| p.controller == Some(bridge.index))
                    .ok_or_else(|| {
                        failed(format!("{} is not a port of {}", veth.name, conf.bridge))
                    })?;
                let want = conf
                    .vlans
                    .pvid()
                    .into_iter()
                    .chain(conf.vlans.trunk.clone());
                let have = if conf.vlans.any() {
                    host.port_vlans(port.index).await.map_err(netlink_err)?
                } else {
                    Vec::new()
                };
                if let Some(missing) = want.into_iter().find(|v| !have.contains(v)) {
                    return Err(failed(format!(
                        "bridge port {} is not a member of VLAN {missing}",
                        veth.name
                    )));
                }
            }
            Ok(())
        })
    }

    fn gc(&self, req: &Request) -> Result<(), Error> {
        let conf = BridgeConf::load(req)?;
        let valid = req
            .config
            .valid_attachments()?
            .ok_or_else(|| Error::new(Code::InvalidConfig, "GC needs cni.dev/valid-attachments"))?;
        // Keep going on errors, report the first.
        let mut first = None;
        if let Some(t) = ipam_type(req) {
            first = delegate::exec(t, Command::Gc, &req.env.path, &req.stdin).err();
        }
        if conf.ip_masq {
            let stale = masq::attachments(&req.config.name).map_err(masq_err)?;
            for id in stale
                .iter()
                .filter(|id| !valid.iter().any(|a| &a.container_id == *id))
            {
                if let Err(e) = masq::teardown(&req.config.name, id) {
                    first.get_or_insert(masq_err(e));
                }
            }
        }
        if conf.macspoofchk {
            let refs = spoofchk::attachments().map_err(spoofchk_err)?;
            for r in refs.iter().filter(|r| {
                !valid
                    .iter()
                    .any(|a| spoofchk::is_reference_of(r, &a.container_id, &a.ifname))
            }) {
                if let Err(e) = spoofchk::teardown_reference(r) {
                    first.get_or_insert(spoofchk_err(e));
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn status(&self, req: &Request) -> Result<(), Error> {
        BridgeConf::load(req)?;
        if let Some(t) = ipam_type(req) {
            delegate::exec(t, Command::Status, &req.env.path, &req.stdin)?;
        }
        Ok(())
    }
}

/// Joins a scoped helper thread, re-raising its panic.
fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn failed(msg: String) -> Error {
    Error::new(Code::INTERNAL, msg)
}

/// Everything ADD does after IPAM: links, addresses, routes, gateway, masquerade.
fn attach(
    req: &Request,
    conf: &BridgeConf,
    ns: &NetNs,
    ipam: Option<&CniResult>,
) -> Result<CniResult, Error> {
    let ifname = req.env.ifname.as_str();
    let host_veth = host_veth_name(&req.config.name, &req.env.container_id, ifname);
    let mut ips: Vec<IpConfig> = ipam.map(|r| r.ips.clone()).unwrap_or_default();
    let mut routes: Vec<Route> = ipam.map(|r| r.routes.clone()).unwrap_or_default();
    for ip in &mut ips {
        ip.interface = Some(2);
        if ip.gateway.is_none() && conf.is_gateway {
            // As the reference: the gateway defaults to the subnet's first address.
            ip.gateway = Some(next_ip(ip.address.network()));
        }
    }
    if conf.is_default_gateway {
        for ip in &ips {
            let any = if ip.address.addr.is_ipv4() {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            } else {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            };
            let dst = Cidr::new(any, 0).expect("a /0 is valid");
            if !routes.iter().any(|r| r.dst == dst) {
                routes.push(Route {
                    dst,
                    gw: ip.gateway,
                    mtu: None,
                    advmss: None,
                    priority: None,
                    table: None,
                    scope: None,
                });
            }
        }
    }
    let addrs: Vec<Cidr> = ips.iter().map(|ip| ip.address).collect();
    // iptables (a child process) runs while the netlink work waits on the kernel.
    let (masq, links) = std::thread::scope(|s| {
        let masq = conf
            .ip_masq
            .then(|| s.spawn(|| masq::setup(&req.config.name, &req.env.container_id, &addrs)));
        let links = block_on(async {
            let host = Netlink::host().map_err(netlink_err)?;
            let bridge = host
                .ensure_bridge(&conf.bridge, conf.mtu, conf.promisc_mode, conf.vlans.any())
                .await
                .map_err(vlan_err(conf))?;
            let nl = Netlink::in_netns(ns).map_err(netlink_err)?;
            if nl.by_name(ifname).await.map_err(netlink_err)?.is_some() {
                return Err(Error::new(
                    Code::INTERNAL,
                    format!(
                        "interface {ifname} already exists in {}",
                        ns.path().display()
                    ),
                ));
            }
            let veth = host
                .add_veth(&host_veth, Some(ns), ifname, bridge.index, conf.mtu)
                .await
                .map_err(netlink_err)?;
            if conf.hairpin_mode {
                host.set_hairpin(veth.index).await.map_err(netlink_err)?;
            }
            if conf.vlans.any() {
                conf.vlans
                    .apply(&host, veth.index)
                    .await
                    .map_err(vlan_err(conf))?;
            }
            let container = nl
                .by_name(ifname)
                .await
                .map_err(netlink_err)?
                .ok_or_else(|| failed(format!("{ifname} missing after creation")))?;
            if !conf.disable_container_interface {
                for ip in &ips {
                    nl.add_address(container.index, ip.address.addr, ip.address.prefix, false)
                        .await
                        .map_err(netlink_err)?;
                }
                nl.set_up(container.index).await.map_err(netlink_err)?;
                for r in &routes {
                    // As the reference: a route without gw goes via the gateway of its family.
                    let gw = r.gw.or_else(|| {
                        ips.iter()
                            .find(|ip| ip.address.addr.is_ipv4() == r.dst.addr.is_ipv4())
                            .and_then(|ip| ip.gateway)
                    });
                    nl.add_route(container.index, r.dst.addr, r.dst.prefix, gw)
                        .await
                        .map_err(netlink_err)?;
                }
            }
            let mut gateway_link = None;
            if conf.is_gateway && ips.iter().any(|ip| ip.gateway.is_some()) {
                // With an access VLAN the gateway lives on that VLAN, not on the bridge itself.
                if conf.vlans.access != 0 {
                    gateway_link = Some(
                        ensure_vlan_gateway(&host, &bridge, conf)
                            .await
                            .map_err(vlan_err(conf))?,
                    );
                }
                let target = gateway_link.as_ref().unwrap_or(&bridge);
                for ip in &ips {
                    if let Some(gw) = ip.gateway {
                        set_gateway(&host, target, gw, ip.address.prefix, conf.force_address)
                            .await?;
                    }
                }
            }
            Ok((bridge, veth, container, gateway_link))
        });
        (masq.map(join), links)
    });
    masq.transpose().map_err(masq_err)?;
    let (bridge, veth, container, gateway_link) = links?;
    if conf.macspoofchk {
        let mac = container
            .mac
            .as_deref()
            .ok_or_else(|| failed(format!("{ifname} has no MAC address")))?;
        spoofchk::setup(&req.env.container_id, ifname, &veth.name, mac).map_err(spoofchk_err)?;
    }
    if conf.is_gateway {
        enable_forwarding(&ips)?;
    }
    let sandbox = req.env.netns.as_ref().map(|p| p.display().to_string());
    let mut interfaces = vec![
        Interface {
            name: bridge.name,
            mac: bridge.mac,
            ..Default::default()
        },
        Interface {
            name: veth.name,
            mac: veth.mac,
            ..Default::default()
        },
        Interface {
            name: container.name,
            mac: container.mac,
            sandbox,
            ..Default::default()
        },
    ];
    // As the reference: the VLAN gateway interface comes after the container's.
    interfaces.extend(gateway_link.map(|l| Interface {
        name: l.name,
        mac: l.mac,
        ..Default::default()
    }));
    Ok(CniResult {
        cni_version: Version::LATEST.as_str().to_string(),
        interfaces,
        ips,
        routes,
        dns: ipam.map(|r| r.dns.clone()).unwrap_or_default(),
    })
}

/// The interface `<bridge>.<vlan>` holding the VLAN's gateway address: one end of a veth
/// pair whose other end is an access port of the VLAN on the bridge. Created once per
/// bridge and VLAN, shared by every pod on it, and kept (like the bridge) after DEL.
async fn ensure_vlan_gateway(
    host: &Netlink,
    bridge: &link::Link,
    conf: &BridgeConf,
) -> Result<link::Link, link::Error> {
    let vid = conf.vlans.access;
    let name = vlan_gateway_name(&bridge.name, vid);
    if let Some(existing) = host.by_name(&name).await? {
        return Ok(existing);
    }
    let port_name = veth_name(&[&bridge.name, &vid.to_string(), "vlan-gateway"]);
    match host
        .add_veth(&port_name, None, &name, bridge.index, conf.mtu)
        .await
    {
        Ok(port) => {
            let access = PortVlans {
                access: vid,
                trunk: Vec::new(),
                preserve_default: conf.vlans.preserve_default,
            };
            access.apply(host, port.index).await?;
        }
        // A concurrent ADD created it first.
        Err(e) if e.errno() == Some(libc::EEXIST) => {}
        Err(e) => return Err(e),
    }
    let gateway = host
        .by_name(&name)
        .await?
        .ok_or_else(|| link::Error::NotFound(name.clone()))?;
    host.set_up(gateway.index).await?;
    Ok(gateway)
}

fn next_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4).wrapping_add(1))),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6).wrapping_add(1))),
    }
}

/// Puts `gw/prefix` on the bridge; another address of the same subnet is an error unless `force`.
async fn set_gateway(
    host: &Netlink,
    bridge: &link::Link,
    gw: IpAddr,
    prefix: u8,
    force: bool,
) -> Result<(), Error> {
    let subnet = Cidr::new(gw, prefix)
        .expect("IPAM prefixes are valid")
        .to_network();
    for (addr, p) in host.addresses(bridge.index).await.map_err(netlink_err)? {
        if addr == gw || !subnet.contains(addr) {
            continue;
        }
        if !force {
            return Err(failed(format!(
                "{} already has address {addr}/{p} in {subnet}; set forceAddress to replace it",
                bridge.name
            )));
        }
        host.del_address(bridge.index, addr, p)
            .await
            .map_err(netlink_err)?;
    }
    host.add_address(bridge.index, gw, prefix, true)
        .await
        .map_err(netlink_err)
}

fn enable_forwarding(ips: &[IpConfig]) -> Result<(), Error> {
    let mut files = Vec::new();
    if ips.iter().any(|ip| ip.address.addr.is_ipv4()) {
        files.push("/proc/sys/net/ipv4/ip_forward");
    }
    if ips.iter().any(|ip| ip.address.addr.is_ipv6()) {
        files.push("/proc/sys/net/ipv6/conf/all/forwarding");
    }
    for f in files {
        if std::fs::read_to_string(f).is_ok_and(|v| v.trim() == "1") {
            continue;
        }
        std::fs::write(Path::new(f), "1").map_err(|e| {
            Error::new(Code::Io, format!("failed to enable forwarding in {f}"))
                .with_details(e.to_string())
        })?;
    }
    Ok(())
}

fn main() {
    plugin::run(&Bridge)
}
