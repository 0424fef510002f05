//! Links, addresses and routes over rtnetlink: the bridge, veth pairs and their IP configuration.
//!
//! A [`Netlink`] is one rtnetlink connection bound to one network namespace:
//! the plugin's own ([`Netlink::host`]) or a container's ([`Netlink::in_netns`],
//! via a socket created inside it, see [`crate::netns`]). Methods must run
//! inside a tokio runtime; the plugin uses a current-thread one.

use crate::netns::{self, NetNs};
use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::link::{
    AfSpecBridge, BridgeVlanInfo, BridgeVlanInfoFlags, InfoBridge, InfoBridgePort, InfoData,
    InfoPortData, InfoVeth, LinkAttribute, LinkExtentMask, LinkMessage,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::AddressFamily;
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, IntoRawFd};

/// Errors from netlink operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The netlink socket could not be opened.
    #[error("failed to open a netlink connection: {0}")]
    Connect(#[source] io::Error),
    /// Opening the container's namespace failed.
    #[error(transparent)]
    Netns(#[from] netns::Error),
    /// A netlink request failed; `op` says which.
    #[error("{op}: {source}")]
    Request {
        /// What was being done, e.g. `create bridge cni0`.
        op: String,
        /// The kernel's or the library's error.
        source: rtnetlink::Error,
    },
    /// A link expected to exist does not.
    #[error("link {0} not found")]
    NotFound(String),
}

/// The parts of a link a plugin reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// MAC address as `aa:bb:..`, if the link has one.
    pub mac: Option<String>,
    /// Index of the bridge the link is a port of, if any.
    pub controller: Option<u32>,
}

impl Error {
    /// The kernel's errno, when a request failed with one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Request { source, .. } => errno(source),
            _ => None,
        }
    }
}

/// The errno of a failed netlink request, if the kernel sent one.
pub fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

fn request(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Error {
    let op = op.into();
    move |source| Error::Request { op, source }
}

/// An rtnetlink connection bound to one network namespace.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// A connection in the calling process's namespace.
    pub fn host() -> Result<Netlink, Error> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(Error::Connect)?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// A connection inside `ns`, without moving any thread of this process there.
    pub fn in_netns(ns: &NetNs) -> Result<Netlink, Error> {
        let fd = ns.route_socket()?;
        // SAFETY: `fd` is an open AF_NETLINK socket we own; ownership passes to the TokioSocket.
        let socket = unsafe {
            <rtnetlink::sys::TokioSocket as std::os::fd::FromRawFd>::from_raw_fd(fd.into_raw_fd())
        };
        let (conn, handle, _) = rtnetlink::from_socket(socket);
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// The link named `name`, or `None` if there is none.
    pub async fn by_name(&self, name: &str) -> Result<Option<Link>, Error> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(Some(to_link(&msg))),
            Ok(None) => Ok(None),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(request(format!("look up link {name}"))(e)),
        }
    }

    async fn require(&self, name: &str) -> Result<Link, Error> {
        self.by_name(name)
            .await?
            .ok_or_else(|| Error::NotFound(name.to_string()))
    }

    /// Creates the bridge if absent (a concurrent creator's EEXIST is fine), then sets MTU, promisc and up.
    /// `vlan_filtering` applies to a bridge this call creates; an existing bridge is left as it is.
    pub async fn ensure_bridge(
        &self,
        name: &str,
        mtu: Option<u32>,
        promisc: bool,
        vlan_filtering: bool,
    ) -> Result<Link, Error> {
        if self.by_name(name).await?.is_none() {
            let mut msg = LinkBridge::new(name);
            if let Some(mtu) = mtu {
                msg = msg.mtu(mtu);
            }
            if vlan_filtering {
                msg = msg.set_info_data(InfoData::Bridge(vec![InfoBridge::VlanFiltering(true)]));
            }
            match self.handle.link().add(msg.build()).execute().await {
                Err(e) if errno(&e) != Some(libc::EEXIST) => {
                    return Err(request(format!("create bridge {name}"))(e))
                }
                _ => {}
            }
        }
        let link = self.require(name).await?;
        let mut set = LinkUnspec::new_with_index(link.index).up();
        if promisc {
            set = set.promiscuous(true);
        }
        if let Some(mtu) = mtu {
            set = set.mtu(mtu);
        }
        self.handle
            .link()
            .set(set.build())
            .execute()
            .await
            .map_err(request(format!("set up bridge {name}")))?;
        Ok(link)
    }

    /// Creates a veth pair: `host_name` here, enslaved to `bridge` and up; its peer created
    /// directly inside `ns` as `ifname` (so the name only has to be free there), or here
    /// when `ns` is `None`.
    pub async fn add_veth(
        &self,
        host_name: &str,
        ns: Option<&NetNs>,
        ifname: &str,
        bridge: u32,
        mtu: Option<u32>,
    ) -> Result<Link, Error> {
        let mut peer = LinkMessageBuilder::<LinkUnspec>::new().name(ifname.to_string());
        if let Some(ns) = ns {
            peer = peer.setns_by_fd(ns.file().as_raw_fd());
        }
        let mut host = LinkVeth::new(host_name, ifname);
        if let Some(mtu) = mtu {
            peer = peer.mtu(mtu);
            host = host.mtu(mtu);
        }
        let msg = host
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .controller(bridge)
            .up()
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(request(format!("create veth {host_name} <-> {ifname}")))?;
        self.require(host_name).await
    }

    /// Turns hairpin mode on for a bridge port.
    pub async fn set_hairpin(&self, port: u32) -> Result<(), Error> {
        let msg = LinkUnspec::new_with_index(port)
            .set_port_data(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                true,
            )]))
            .build();
        self.handle
            .link()
            .set_port(msg)
            .execute()
            .await
            .map_err(request("enable hairpin mode"))
    }

    /// Adds VLAN `vid` to a bridge port, as `bridge vlan add dev PORT vid VID [pvid untagged]`.
    pub async fn add_port_vlan(
        &self,
        port: u32,
        vid: u16,
        pvid_untagged: bool,
    ) -> Result<(), Error> {
        let flags = if pvid_untagged {
            BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged
        } else {
            BridgeVlanInfoFlags::empty()
        };
        self.handle
            .link()
            .set(port_vlan_message(port, vid, flags))
            .execute()
            .await
            .map_err(request(format!("add VLAN {vid} to bridge port {port}")))
    }

    /// Removes VLAN `vid` from a bridge port.
    pub async fn del_port_vlan(&self, port: u32, vid: u16) -> Result<(), Error> {
        let mut del = self.handle.link().del(port);
        *del.message_mut() = port_vlan_message(port, vid, BridgeVlanInfoFlags::empty());
        del.execute().await.map_err(request(format!(
            "remove VLAN {vid} from bridge port {port}"
        )))
    }

    /// The VLAN ids a bridge port is a member of.
    pub async fn port_vlans(&self, port: u32) -> Result<Vec<u16>, Error> {
        let msgs: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .set_filter_mask(AddressFamily::Bridge, vec![LinkExtentMask::Brvlan])
            .execute()
            .try_collect()
            .await
            .map_err(request(format!("list VLANs of bridge port {port}")))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.index == port)
            .flat_map(|m| &m.attributes)
            .filter_map(|a| match a {
                LinkAttribute::AfSpecBridge(spec) => Some(spec),
                _ => None,
            })
            .flatten()
            .filter_map(|s| match s {
                AfSpecBridge::VlanInfo(info) => Some(info.vid),
                _ => None,
            })
            .collect())
    }

    /// Brings a link up.
    pub async fn set_up(&self, index: u32) -> Result<(), Error> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(request(format!("set link {index} up")))
    }

    /// Deletes the link named `name`; returns false when it did not exist.
    pub async fn delete(&self, name: &str) -> Result<bool, Error> {
        let Some(link) = self.by_name(name).await? else {
            return Ok(false);
        };
        match self.handle.link().del(link.index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(request(format!("delete link {name}"))(e)),
        }
    }

    /// The addresses on a link, as (address, prefix length).
    pub async fn addresses(&self, index: u32) -> Result<Vec<(IpAddr, u8)>, Error> {
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(request(format!("list addresses of link {index}")))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.index == index)
            .filter_map(|m| {
                m.attributes
                    .iter()
                    .find_map(|a| match a {
                        AddressAttribute::Local(ip) => Some((*ip, m.header.prefix_len)),
                        _ => None,
                    })
                    .or_else(|| {
                        m.attributes.iter().find_map(|a| match a {
                            AddressAttribute::Address(ip) => Some((*ip, m.header.prefix_len)),
                            _ => None,
                        })
                    })
            })
            .collect())
    }

    /// Adds an address (IPv6 without duplicate address detection); with `exist_ok`, an
    /// identical address already present is fine.
    pub async fn add_address(
        &self,
        index: u32,
        ip: IpAddr,
        prefix: u8,
        exist_ok: bool,
    ) -> Result<(), Error> {
        let mut add = self.handle.address().add(index, ip, prefix);
        if ip.is_ipv6() {
            // As the reference's default (enabledad=false): usable at once, no DAD wait.
            add.message_mut().header.flags |= AddressHeaderFlags::Nodad;
        }
        match add.execute().await {
            Err(e) if !(exist_ok && errno(&e) == Some(libc::EEXIST)) => {
                Err(request(format!("add address {ip}/{prefix}"))(e))
            }
            _ => Ok(()),
        }
    }

    /// Removes an address from a link.
    pub async fn del_address(&self, index: u32, ip: IpAddr, prefix: u8) -> Result<(), Error> {
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(ip)
            .execute()
            .try_collect()
            .await
            .map_err(request(format!("find address {ip}/{prefix}")))?;
        for msg in msgs.into_iter().filter(|m| m.header.index == index) {
            self.handle
                .address()
                .del(msg)
                .execute()
                .await
                .map_err(request(format!("delete address {ip}/{prefix}")))?;
        }
        Ok(())
    }

    /// Adds a route to `dst/prefix` out of link `index`, via `gw` when given.
    pub async fn add_route(
        &self,
        index: u32,
        dst: IpAddr,
        prefix: u8,
        gw: Option<IpAddr>,
    ) -> Result<(), Error> {
        let op = || format!("add route {dst}/{prefix} via {gw:?}");
        // The builder's error type is not exported, hence the generic helper.
        fn invalid(op: String, e: impl std::fmt::Debug) -> Error {
            Error::Request {
                op,
                source: rtnetlink::Error::InvalidNla(format!("{e:?}")),
            }
        }
        let mut builder = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(dst, prefix)
            .map_err(|e| invalid(op(), e))?
            .output_interface(index);
        if let Some(gw) = gw {
            builder = builder.gateway(gw).map_err(|e| invalid(op(), e))?;
        }
        match self.handle.route().add(builder.build()).execute().await {
            Err(e) if errno(&e) != Some(libc::EEXIST) => Err(request(op())(e)),
            _ => Ok(()),
        }
    }

    /// All routes in the main table, as (destination, prefix length, gateway).
    pub async fn routes(&self) -> Result<Vec<(IpAddr, u8, Option<IpAddr>)>, Error> {
        let mut out = Vec::new();
        let dumps = [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ];
        for (dump, unspecified) in dumps.into_iter().zip([
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ]) {
            let msgs: Vec<RouteMessage> = self
                .handle
                .route()
                .get(dump)
                .execute()
                .try_collect()
                .await
                .map_err(request("list routes"))?;
            for m in msgs {
                let addr = |want_gw: bool| {
                    m.attributes.iter().find_map(|a| match (a, want_gw) {
                        (RouteAttribute::Destination(r), false)
                        | (RouteAttribute::Gateway(r), true) => route_ip(r),
                        _ => None,
                    })
                };
                out.push((
                    addr(false).unwrap_or(unspecified),
                    m.header.destination_prefix_length,
                    addr(true),
                ));
            }
        }
        Ok(out)
    }
}

/// An AF_BRIDGE link message carrying one VLAN entry for `port` (the bridge side, as iproute2's default).
fn port_vlan_message(port: u32, vid: u16, flags: BridgeVlanInfoFlags) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.interface_family = AddressFamily::Bridge;
    msg.header.index = port;
    msg.attributes
        .push(LinkAttribute::AfSpecBridge(vec![AfSpecBridge::VlanInfo(
            BridgeVlanInfo { flags, vid },
        )]));
    msg
}

fn route_ip(r: &RouteAddress) -> Option<IpAddr> {
    match r {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

fn to_link(msg: &LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        mac: None,
        controller: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Address(a) if !a.is_empty() => {
                link.mac = Some(
                    a.iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                )
            }
            LinkAttribute::Controller(c) => link.controller = Some(*c),
            _ => {}
        }
    }
    link
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_core::Emitable;

    /// The request body must be byte for byte what iproute2 sends for
    /// `bridge vlan add dev PORT vid 100 pvid untagged` (read with strace), since
    /// kernels without VLAN filtering cannot check it for us.
    #[test]
    fn port_vlan_message_matches_iproute2() {
        let msg = port_vlan_message(
            4,
            100,
            BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged,
        );
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        let want: Vec<u8> = [
            // ifinfomsg: AF_BRIDGE, pad, type 0, index 4, flags 0, change 0
            &[7u8, 0, 0, 0][..],
            &4u32.to_ne_bytes(),
            &[0; 8],
            // IFLA_AF_SPEC (26), len 12, holding IFLA_BRIDGE_VLAN_INFO (2), len 8
            &12u16.to_ne_bytes(),
            &26u16.to_ne_bytes(),
            &8u16.to_ne_bytes(),
            &2u16.to_ne_bytes(),
            // flags PVID|UNTAGGED, vid 100
            &6u16.to_ne_bytes(),
            &100u16.to_ne_bytes(),
        ]
        .concat();
        assert_eq!(buf, want);
    }
}
