//! An in-memory [`Store`] for tests and for callers that keep IPAM state elsewhere.

use super::store::{Error, Reservation, Store};
use crate::spec::Attachment;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// Reservations in a map; never fails.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    reserved: BTreeMap<IpAddr, (String, Option<String>)>,
    last: HashMap<usize, IpAddr>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a reservation without an interface, as old host-local versions wrote them.
    pub fn insert_legacy(&mut self, ip: IpAddr, container_id: &str) {
        self.reserved.insert(ip, (container_id.to_string(), None));
    }

    /// How many addresses are reserved.
    pub fn len(&self) -> usize {
        self.reserved.len()
    }

    /// Whether nothing is reserved.
    pub fn is_empty(&self) -> bool {
        self.reserved.is_empty()
    }
}

impl Store for MemoryStore {
    fn reserve(
        &mut self,
        ip: IpAddr,
        holder: &Attachment,
        range_set: usize,
    ) -> Result<bool, Error> {
        if self.reserved.contains_key(&ip) {
            return Ok(false);
        }
        self.reserved.insert(
            ip,
            (holder.container_id.clone(), Some(holder.ifname.clone())),
        );
        self.last.insert(range_set, ip);
        Ok(true)
    }

    fn last_reserved(&self, range_set: usize) -> Result<Option<IpAddr>, Error> {
        Ok(self.last.get(&range_set).copied())
    }

    fn reservations(&self) -> Result<Vec<Reservation>, Error> {
        Ok(self
            .reserved
            .iter()
            .map(|(ip, (id, ifname))| Reservation {
                ip: *ip,
                container_id: id.clone(),
                ifname: ifname.clone(),
            })
            .collect())
    }

    fn release(&mut self, ip: IpAddr) -> Result<(), Error> {
        self.reserved.remove(&ip);
        Ok(())
    }
}
