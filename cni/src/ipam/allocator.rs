//! Pure allocation logic (no I/O): host-local's next-free search, requested IPs, release and GC over a [`Store`].

use super::config::IpamConfig;
use super::range::RangeSet;
use super::store::{self, Store};
use crate::spec::{Attachment, Cidr, IpConfig};
use std::collections::HashSet;
use std::net::IpAddr;

/// Why an allocation or release failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Every address of the range set is taken.
    #[error("no IP addresses available in range set: {0}")]
    Exhausted(String),
    /// A requested address is already reserved.
    #[error("requested IP address {ip} is not available in range set {range_set}")]
    Unavailable {
        /// The address.
        ip: IpAddr,
        /// The range set.
        range_set: String,
    },
    /// A requested address is the subnet's gateway (or network/broadcast address).
    #[error("requested IP address {0} cannot be assigned (gateway, network or broadcast address)")]
    NotAssignable(IpAddr),
    /// Requested addresses fall in no range set.
    #[error("failed to allocate all requested IPs: {0:?}")]
    Unfulfilled(Vec<IpAddr>),
    /// The attachment already holds an address in this range set (ADD twice without DEL).
    #[error("{ip} has been allocated to {container_id}, duplicate allocation is not allowed")]
    Duplicate {
        /// The held address.
        ip: IpAddr,
        /// The container.
        container_id: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl From<Error> for crate::spec::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Store(e) => e.into(),
            e => crate::spec::Error::new(crate::spec::Code::INTERNAL, e.to_string()),
        }
    }
}

/// Allocates and releases addresses of one network's range sets on a store the caller holds exclusively.
pub struct Allocator<'a, S: Store + ?Sized> {
    store: &'a mut S,
}

impl<'a, S: Store + ?Sized> Allocator<'a, S> {
    /// An allocator working on `store`.
    pub fn new(store: &'a mut S) -> Self {
        Self { store }
    }

    /// One address from range set `index` for `holder`: `requested` if given, else the
    /// next free one after the set's last reserved address.
    pub fn allocate(
        &mut self,
        set: &RangeSet,
        index: usize,
        holder: &Attachment,
        requested: Option<IpAddr>,
    ) -> Result<IpConfig, Error> {
        if let Some(ip) = requested {
            let (_, range) = set.range_for(ip).ok_or(Error::Unfulfilled(vec![ip]))?;
            if !range.is_assignable(ip) {
                return Err(Error::NotAssignable(ip));
            }
            if !self.store.reserve(ip, holder, index)? {
                return Err(Error::Unavailable {
                    ip,
                    range_set: set.to_string(),
                });
            }
            return Ok(ip_config(range.subnet, range.gateway, ip));
        }
        if let Some(held) = self
            .store
            .reservations()?
            .into_iter()
            .find(|r| r.is_held_by(holder) && set.contains(r.ip))
        {
            return Err(Error::Duplicate {
                ip: held.ip,
                container_id: holder.container_id.clone(),
            });
        }
        let last = self.store.last_reserved(index)?;
        for (range, ip) in set.candidates(last) {
            if self.store.reserve(ip, holder, index)? {
                return Ok(ip_config(range.subnet, range.gateway, ip));
            }
        }
        Err(Error::Exhausted(set.to_string()))
    }

    /// One address per range set of `config` (honouring its requested IPs); on
    /// any failure the addresses already taken are released again.
    pub fn allocate_all(
        &mut self,
        config: &IpamConfig,
        holder: &Attachment,
    ) -> Result<Vec<IpConfig>, Error> {
        let mut requested = config.requested_ips.clone();
        let mut ips = Vec::new();
        for (index, set) in config.ranges.iter().enumerate() {
            let wanted = requested
                .iter()
                .position(|ip| set.contains(*ip))
                .map(|i| requested.remove(i));
            match self.allocate(set, index, holder, wanted) {
                Ok(ip) => ips.push(ip),
                Err(e) => {
                    self.undo(&ips)?;
                    return Err(e);
                }
            }
        }
        if !requested.is_empty() {
            self.undo(&ips)?;
            return Err(Error::Unfulfilled(requested));
        }
        Ok(ips)
    }

    /// Releases the addresses a failed [`Allocator::allocate_all`] took, and only those:
    /// what the holder held before (a duplicate ADD) stays reserved.
    fn undo(&mut self, taken: &[IpConfig]) -> Result<(), Error> {
        for ip in taken {
            self.store.release(ip.address.addr)?;
        }
        Ok(())
    }

    /// Releases every address `holder` holds (falling back, as host-local does, to
    /// interface-less legacy reservations of the container); returns them. Idempotent.
    pub fn release(&mut self, holder: &Attachment) -> Result<Vec<IpAddr>, Error> {
        let all = self.store.reservations()?;
        let mut mine: Vec<IpAddr> = all
            .iter()
            .filter(|r| r.is_held_by(holder))
            .map(|r| r.ip)
            .collect();
        if mine.is_empty() {
            mine = all
                .iter()
                .filter(|r| r.ifname.is_none() && r.container_id == holder.container_id)
                .map(|r| r.ip)
                .collect();
        }
        for ip in &mine {
            self.store.release(*ip)?;
        }
        Ok(mine)
    }

    /// The addresses `holder` holds.
    pub fn held_by(&self, holder: &Attachment) -> Result<Vec<IpAddr>, Error> {
        Ok(self
            .store
            .reservations()?
            .into_iter()
            .filter(|r| r.is_held_by(holder))
            .map(|r| r.ip)
            .collect())
    }

    /// Releases every reservation not held by one of `valid` (legacy reservations are
    /// kept while their container has any valid attachment); returns the released addresses.
    pub fn gc(&mut self, valid: &[Attachment]) -> Result<Vec<IpAddr>, Error> {
        let keep: HashSet<&Attachment> = valid.iter().collect();
        let live_ids: HashSet<&str> = valid.iter().map(|a| a.container_id.as_str()).collect();
        let mut released = Vec::new();
        for r in self.store.reservations()? {
            let kept = match &r.ifname {
                Some(ifname) => keep.contains(&Attachment {
                    container_id: r.container_id.clone(),
                    ifname: ifname.clone(),
                }),
                None => live_ids.contains(r.container_id.as_str()),
            };
            if !kept {
                self.store.release(r.ip)?;
                released.push(r.ip);
            }
        }
        Ok(released)
    }

    /// Whether range set `set` still has an unreserved assignable address (for STATUS).
    pub fn has_free(&self, set: &RangeSet) -> Result<bool, Error> {
        let taken: HashSet<IpAddr> = self.store.reservations()?.iter().map(|r| r.ip).collect();
        Ok(set.candidates(None).any(|(_, ip)| !taken.contains(&ip)))
    }
}

fn ip_config(subnet: Cidr, gateway: IpAddr, ip: IpAddr) -> IpConfig {
    IpConfig {
        address: Cidr {
            addr: ip,
            prefix: subnet.prefix,
        },
        gateway: Some(gateway),
        interface: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::memory::MemoryStore;
    use crate::ipam::range::RangeConf;

    fn set(subnet: &str, start: Option<&str>, end: Option<&str>) -> RangeSet {
        RangeSet::new(&[RangeConf {
            subnet: subnet.parse().unwrap(),
            range_start: start.map(|s| s.parse().unwrap()),
            range_end: end.map(|s| s.parse().unwrap()),
            gateway: None,
        }])
        .unwrap()
    }

    fn holder(id: &str) -> Attachment {
        Attachment {
            container_id: id.into(),
            ifname: "eth0".into(),
        }
    }

    fn config(ranges: Vec<RangeSet>, requested: &[&str]) -> IpamConfig {
        IpamConfig {
            name: "net".into(),
            ranges,
            routes: vec![],
            data_dir: None,
            resolv_conf: None,
            requested_ips: requested.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    fn addr(c: &IpConfig) -> String {
        c.address.addr.to_string()
    }

    #[test]
    fn sequential_distinct_skipping_gateway() {
        let mut store = MemoryStore::new();
        let s = set("10.0.0.0/24", None, None);
        let mut a = Allocator::new(&mut store);
        let got: Vec<String> = (0..5)
            .map(|i| addr(&a.allocate(&s, 0, &holder(&format!("c{i}")), None).unwrap()))
            .collect();
        assert_eq!(
            got,
            ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
        );
        let c = a.allocate(&s, 0, &holder("c9"), None).unwrap();
        assert_eq!(c.address.to_string(), "10.0.0.7/24");
        assert_eq!(c.gateway.unwrap().to_string(), "10.0.0.1");
    }

    #[test]
    fn wraps_around_after_last_reserved_and_exhausts() {
        // /29 has .2-.6 assignable (gateway .1, broadcast .7).
        let mut store = MemoryStore::new();
        let s = set("10.0.0.0/29", None, None);
        let mut a = Allocator::new(&mut store);
        for i in 0..5 {
            a.allocate(&s, 0, &holder(&format!("c{i}")), None).unwrap();
        }
        let e = a.allocate(&s, 0, &holder("full"), None).unwrap_err();
        assert!(matches!(e, Error::Exhausted(_)), "{e}");
        a.release(&holder("c1")).unwrap(); // frees .3
        a.release(&holder("c3")).unwrap(); // frees .5
                                           // Last reserved is .6, so the search wraps and finds .3 before .5.
        assert_eq!(
            addr(&a.allocate(&s, 0, &holder("x"), None).unwrap()),
            "10.0.0.3"
        );
        assert_eq!(
            addr(&a.allocate(&s, 0, &holder("y"), None).unwrap()),
            "10.0.0.5"
        );
    }

    #[test]
    fn next_search_starts_after_last_reserved_not_at_lowest_free() {
        let mut store = MemoryStore::new();
        let s = set("10.0.0.0/24", None, None);
        let mut a = Allocator::new(&mut store);
        a.allocate(&s, 0, &holder("a"), None).unwrap(); // .2
        a.allocate(&s, 0, &holder("b"), None).unwrap(); // .3
        a.release(&holder("a")).unwrap();
        assert_eq!(
            addr(&a.allocate(&s, 0, &holder("c"), None).unwrap()),
            "10.0.0.4"
        );
    }

    #[test]
    fn honours_range_start_and_end() {
        let mut store = MemoryStore::new();
        let s = set("10.0.0.0/24", Some("10.0.0.100"), Some("10.0.0.101"));
        let mut a = Allocator::new(&mut store);
        assert_eq!(
            addr(&a.allocate(&s, 0, &holder("a"), None).unwrap()),
            "10.0.0.100"
        );
        assert_eq!(
            addr(&a.allocate(&s, 0, &holder("b"), None).unwrap()),
            "10.0.0.101"
        );
        assert!(a.allocate(&s, 0, &holder("c"), None).is_err());
        assert!(!a.has_free(&s).unwrap());
    }

    #[test]
    fn ipv6_and_dual_stack() {
        let mut store = MemoryStore::new();
        let cfg = config(
            vec![
                set("10.0.0.0/24", None, None),
                set("fd00:10::/64", None, None),
            ],
            &[],
        );
        let mut a = Allocator::new(&mut store);
        let ips = a.allocate_all(&cfg, &holder("a")).unwrap();
        assert_eq!(
            ips.iter()
                .map(|c| c.address.to_string())
                .collect::<Vec<_>>(),
            ["10.0.0.2/24", "fd00:10::2/64"]
        );
        assert_eq!(ips[1].gateway.unwrap().to_string(), "fd00:10::1");
        let ips = a.allocate_all(&cfg, &holder("b")).unwrap();
        assert_eq!(addr(&ips[1]), "fd00:10::3");
        assert_eq!(a.release(&holder("a")).unwrap().len(), 2);
    }

    #[test]
    fn requested_ip() {
        let mut store = MemoryStore::new();
        let cfg = config(vec![set("10.0.0.0/24", None, None)], &["10.0.0.50"]);
        let mut a = Allocator::new(&mut store);
        let ips = a.allocate_all(&cfg, &holder("a")).unwrap();
        assert_eq!(addr(&ips[0]), "10.0.0.50");
        let e = a.allocate_all(&cfg, &holder("b")).unwrap_err();
        assert!(matches!(e, Error::Unavailable { .. }), "{e}");
        let gw = config(vec![set("10.0.0.0/24", None, None)], &["10.0.0.1"]);
        assert!(matches!(
            a.allocate_all(&gw, &holder("c")).unwrap_err(),
            Error::NotAssignable(_)
        ));
        let outside = config(vec![set("10.0.0.0/24", None, None)], &["10.9.0.1"]);
        assert!(matches!(
            a.allocate_all(&outside, &holder("d")).unwrap_err(),
            Error::Unfulfilled(_)
        ));
        // Failed attempts leave nothing behind.
        assert!(a.held_by(&holder("d")).unwrap().is_empty());
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn duplicate_add_is_rejected_and_failed_dual_stack_rolls_back() {
        let mut store = MemoryStore::new();
        let s4 = set("10.0.0.0/24", None, None);
        let full6 = set("fd00::/126", None, None); // ::1 gateway, ::2 and ::3 assignable
        let mut a = Allocator::new(&mut store);
        a.allocate(&s4, 0, &holder("a"), None).unwrap();
        assert!(matches!(
            a.allocate(&s4, 0, &holder("a"), None).unwrap_err(),
            Error::Duplicate { .. }
        ));
        a.allocate(&full6, 1, &holder("x"), None).unwrap();
        a.allocate(&full6, 1, &holder("y"), None).unwrap();
        let cfg = config(vec![s4, full6], &[]);
        assert!(a.allocate_all(&cfg, &holder("b")).is_err());
        assert!(a.held_by(&holder("b")).unwrap().is_empty());
        // A duplicate ADD fails without touching the first ADD's reservation.
        assert!(a.allocate_all(&cfg, &holder("a")).is_err());
        assert_eq!(a.held_by(&holder("a")).unwrap().len(), 1);
    }

    #[test]
    fn release_is_idempotent_and_handles_legacy_files() {
        let mut store = MemoryStore::new();
        store.insert_legacy("10.0.0.9".parse().unwrap(), "old");
        let mut a = Allocator::new(&mut store);
        assert!(a.release(&holder("nobody")).unwrap().is_empty());
        assert_eq!(a.release(&holder("old")).unwrap().len(), 1);
        assert!(a.release(&holder("old")).unwrap().is_empty());
    }

    #[test]
    fn gc_releases_everything_not_valid() {
        let mut store = MemoryStore::new();
        store.insert_legacy("10.0.0.200".parse().unwrap(), "b");
        store.insert_legacy("10.0.0.201".parse().unwrap(), "gone");
        let s = set("10.0.0.0/24", None, None);
        let mut a = Allocator::new(&mut store);
        for id in ["a", "b", "c"] {
            a.allocate(&s, 0, &holder(id), None).unwrap();
        }
        let mut b_net1 = holder("b");
        b_net1.ifname = "net1".into();
        a.allocate(&s, 0, &b_net1, None).unwrap();
        let mut released = a.gc(&[holder("b")]).unwrap();
        released.sort();
        let released: Vec<String> = released.iter().map(ToString::to_string).collect();
        assert_eq!(released, ["10.0.0.2", "10.0.0.4", "10.0.0.5", "10.0.0.201"]);
        assert_eq!(store.len(), 2);
    }
}
