//! Address ranges (`{subnet, rangeStart, rangeEnd, gateway}`) and range sets, with host-local's defaults.

use crate::spec::cidr::{from_u128, to_u128};
use crate::spec::Cidr;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

/// A range as written in the config; missing fields get host-local's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeConf {
    /// The subnet; must be a network address (no host bits).
    pub subnet: Cidr,
    /// The first address to hand out (default: network + 1; the gateway is skipped).
    #[serde(
        rename = "rangeStart",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub range_start: Option<IpAddr>,
    /// The last address to hand out (default: the last address, minus broadcast for IPv4).
    #[serde(rename = "rangeEnd", default, skip_serializing_if = "Option::is_none")]
    pub range_end: Option<IpAddr>,
    /// The gateway, never handed out (default: network + 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

/// Why a range or range set is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The subnet has no room for a gateway and one address (IPv4 /31, /32; IPv6 /127, /128).
    #[error("network {0} too small to allocate from")]
    TooSmall(Cidr),
    /// The subnet is not written as its network address.
    #[error("network {subnet} has host bits set; the network address is {network}")]
    HostBitsSet {
        /// The subnet as written.
        subnet: Cidr,
        /// Its network address.
        network: IpAddr,
    },
    /// `rangeStart`, `rangeEnd` or `gateway` lies outside the subnet.
    #[error("{field} {ip} not in network {subnet}")]
    OutsideSubnet {
        /// The config field.
        field: &'static str,
        /// Its value.
        ip: IpAddr,
        /// The subnet.
        subnet: Cidr,
    },
    /// `rangeStart` is after `rangeEnd`.
    #[error("rangeStart {start} is after rangeEnd {end}")]
    StartAfterEnd {
        /// The start.
        start: IpAddr,
        /// The end.
        end: IpAddr,
    },
    /// A range set without ranges.
    #[error("empty range set")]
    Empty,
    /// A range set mixing IPv4 and IPv6.
    #[error("range set {0} mixes address families")]
    MixedFamilies(String),
    /// Two ranges (in one set or across sets) overlap.
    #[error("ranges {0} and {1} overlap")]
    Overlap(String, String),
}

/// A validated range with its defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The subnet (network address).
    pub subnet: Cidr,
    /// The first address handed out.
    pub start: IpAddr,
    /// The last address handed out.
    pub end: IpAddr,
    /// The gateway, never handed out.
    pub gateway: IpAddr,
}

impl Range {
    /// A range from its config, validated, with host-local's defaults.
    pub fn new(conf: &RangeConf) -> Result<Range, Error> {
        let subnet = conf.subnet;
        let bits = if subnet.addr.is_ipv4() { 32 } else { 128 };
        if subnet.prefix > bits - 2 {
            return Err(Error::TooSmall(subnet));
        }
        if subnet.addr != subnet.network() {
            return Err(Error::HostBitsSet {
                subnet,
                network: subnet.network(),
            });
        }
        let after_network = next(subnet.network());
        let last = if subnet.addr.is_ipv4() {
            prev(subnet.last())
        } else {
            subnet.last()
        };
        let inside = |field, ip: Option<IpAddr>, default| match ip {
            Some(ip) if subnet.contains(ip) => Ok(ip),
            Some(ip) => Err(Error::OutsideSubnet { field, ip, subnet }),
            None => Ok(default),
        };
        let range = Range {
            subnet,
            start: inside("rangeStart", conf.range_start, after_network)?,
            end: inside("rangeEnd", conf.range_end, last)?,
            gateway: inside("gateway", conf.gateway, after_network)?,
        };
        if to_u128(range.start) > to_u128(range.end) {
            return Err(Error::StartAfterEnd {
                start: range.start,
                end: range.end,
            });
        }
        Ok(range)
    }

    /// Whether `ip` is between start and end (inclusive) and of the same family.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.subnet.contains(ip)
            && to_u128(self.start) <= to_u128(ip)
            && to_u128(ip) <= to_u128(self.end)
    }

    /// Whether `ip` may be handed out: not the gateway, the network address or the IPv4 broadcast.
    pub fn is_assignable(&self, ip: IpAddr) -> bool {
        ip != self.gateway
            && ip != self.subnet.network()
            && !(ip.is_ipv4() && ip == self.subnet.last())
    }

    fn overlaps(&self, other: &Range) -> bool {
        self.subnet.addr.is_ipv4() == other.subnet.addr.is_ipv4()
            && (self.contains(other.start)
                || self.contains(other.end)
                || other.contains(self.start)
                || other.contains(self.end))
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// The address after `ip` (wrapping within its family).
pub fn next(ip: IpAddr) -> IpAddr {
    let max = if ip.is_ipv4() {
        u32::MAX as u128
    } else {
        u128::MAX
    };
    let n = to_u128(ip);
    from_u128(if n == max { 0 } else { n + 1 }, ip.is_ipv4())
}

fn prev(ip: IpAddr) -> IpAddr {
    from_u128(to_u128(ip).wrapping_sub(1), ip.is_ipv4())
}

/// Ranges of one family from which exactly one address is allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet {
    /// The ranges in config order.
    pub ranges: Vec<Range>,
}

impl RangeSet {
    /// A range set from its config: non-empty, one family, no overlaps.
    pub fn new(confs: &[RangeConf]) -> Result<RangeSet, Error> {
        let ranges = confs
            .iter()
            .map(Range::new)
            .collect::<Result<Vec<_>, _>>()?;
        let set = RangeSet { ranges };
        let first = set.ranges.first().ok_or(Error::Empty)?;
        if set
            .ranges
            .iter()
            .any(|r| r.subnet.addr.is_ipv4() != first.subnet.addr.is_ipv4())
        {
            return Err(Error::MixedFamilies(set.to_string()));
        }
        for (i, a) in set.ranges.iter().enumerate() {
            if let Some(b) = set.ranges[i + 1..].iter().find(|b| a.overlaps(b)) {
                return Err(Error::Overlap(a.to_string(), b.to_string()));
            }
        }
        Ok(set)
    }

    /// The range containing `ip`, with its index.
    pub fn range_for(&self, ip: IpAddr) -> Option<(usize, &Range)> {
        self.ranges.iter().enumerate().find(|(_, r)| r.contains(ip))
    }

    /// Whether any range contains `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    /// Whether any range of this set overlaps any range of `other`.
    pub fn overlaps(&self, other: &RangeSet) -> bool {
        self.ranges
            .iter()
            .any(|a| other.ranges.iter().any(|b| a.overlaps(b)))
    }

    /// Every candidate address in host-local's order: starting after `last`
    /// (or at the first range's start), moving through the ranges and wrapping
    /// around, ending with `last` itself; unassignable addresses are skipped.
    pub fn candidates(&self, last: Option<IpAddr>) -> impl Iterator<Item = (&Range, IpAddr)> + '_ {
        let (mut index, mut cur) =
            match last.and_then(|ip| self.range_for(ip).map(|(i, _)| (i, ip))) {
                Some((i, ip)) => (i, Some(ip)),
                None => (0, None),
            };
        let mut first: Option<IpAddr> = None;
        std::iter::from_fn(move || loop {
            let range = &self.ranges[index];
            let ip = match cur {
                None => range.start,
                Some(ip) if ip == range.end => {
                    index = (index + 1) % self.ranges.len();
                    self.ranges[index].start
                }
                Some(ip) => next(ip),
            };
            cur = Some(ip);
            match first {
                None => first = Some(ip),
                Some(f) if f == ip => return None,
                Some(_) => {}
            }
            let range = &self.ranges[index];
            if range.is_assignable(ip) {
                return Some((range, ip));
            }
        })
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.ranges.iter().map(Range::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(subnet: &str) -> RangeConf {
        RangeConf {
            subnet: subnet.parse().unwrap(),
            range_start: None,
            range_end: None,
            gateway: None,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_match_host_local() {
        let r = Range::new(&conf("10.1.0.0/24")).unwrap();
        assert_eq!(
            (r.start, r.end, r.gateway),
            (ip("10.1.0.1"), ip("10.1.0.254"), ip("10.1.0.1"))
        );
        let r = Range::new(&conf("fd00::/120")).unwrap();
        assert_eq!((r.start, r.end), (ip("fd00::1"), ip("fd00::ff")));
    }

    #[test]
    fn validation_errors() {
        assert!(matches!(
            Range::new(&conf("10.0.0.0/31")),
            Err(Error::TooSmall(_))
        ));
        assert!(matches!(
            Range::new(&conf("10.0.0.5/24")),
            Err(Error::HostBitsSet { .. })
        ));
        let mut c = conf("10.0.0.0/24");
        c.range_start = Some(ip("10.0.1.5"));
        assert!(matches!(
            Range::new(&c),
            Err(Error::OutsideSubnet {
                field: "rangeStart",
                ..
            })
        ));
        let mut c = conf("10.0.0.0/24");
        c.range_start = Some(ip("10.0.0.9"));
        c.range_end = Some(ip("10.0.0.5"));
        assert!(matches!(Range::new(&c), Err(Error::StartAfterEnd { .. })));
        assert_eq!(RangeSet::new(&[]).unwrap_err(), Error::Empty);
        assert!(matches!(
            RangeSet::new(&[conf("10.0.0.0/24"), conf("fd00::/64")]),
            Err(Error::MixedFamilies(_))
        ));
        assert!(matches!(
            RangeSet::new(&[conf("10.0.0.0/16"), conf("10.0.5.0/24")]),
            Err(Error::Overlap(..))
        ));
    }

    #[test]
    fn candidates_start_after_last_and_wrap_across_ranges() {
        let set = RangeSet::new(&[conf("10.0.0.0/29"), conf("10.0.1.0/30")]).unwrap();
        let all: Vec<String> = set.candidates(None).map(|(_, i)| i.to_string()).collect();
        assert_eq!(
            all,
            ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.1.2"]
        );
        let from: Vec<String> = set
            .candidates(Some(ip("10.0.0.5")))
            .map(|(_, i)| i.to_string())
            .collect();
        assert_eq!(
            from,
            ["10.0.0.6", "10.0.1.2", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"]
        );
        // A last IP outside the set starts from the beginning.
        assert_eq!(set.candidates(Some(ip("192.168.0.1"))).count(), 6);
    }
}
