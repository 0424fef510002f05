//! An IP address with a prefix length (`10.1.0.5/24`), as CNI writes addresses and subnets.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address plus prefix length; host bits may be set (a result's `address` keeps them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    /// The address, possibly with host bits set.
    pub addr: IpAddr,
    /// The prefix length (0..=32 for IPv4, 0..=128 for IPv6).
    pub prefix: u8,
}

/// Why a string is not a CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The text has no `/prefix` part.
    #[error("{0:?} is not in CIDR notation (address/prefix)")]
    MissingPrefix(String),
    /// The address part is not an IP address.
    #[error("{0:?} has an invalid address")]
    BadAddress(String),
    /// The prefix is not a number or too long for the address family.
    #[error("{0:?} has an invalid prefix length")]
    BadPrefix(String),
}

impl Cidr {
    /// An address with a prefix; `None` when the prefix is too long for the family.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        (prefix <= bits(addr)).then_some(Cidr { addr, prefix })
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> IpAddr {
        from_u128(to_u128(self.addr) & self.mask(), self.addr.is_ipv4())
    }

    /// The last address of the subnet (the IPv4 broadcast address).
    pub fn last(&self) -> IpAddr {
        from_u128(
            to_u128(self.addr) | !self.mask() & max(self.addr),
            self.addr.is_ipv4(),
        )
    }

    /// Whether `ip` is of the same family and inside this subnet.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4()
            && to_u128(ip) & self.mask() == to_u128(self.addr) & self.mask()
    }

    /// The same prefix with the network address (host bits cleared).
    pub fn to_network(self) -> Cidr {
        Cidr {
            addr: self.network(),
            prefix: self.prefix,
        }
    }

    fn mask(&self) -> u128 {
        let host_bits = u32::from(bits(self.addr) - self.prefix);
        max(self.addr) & !(u128::MAX.checked_shl(host_bits).map_or(u128::MAX, |m| !m))
    }
}

/// The address width in bits: 32 or 128.
fn bits(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn max(ip: IpAddr) -> u128 {
    if ip.is_ipv4() {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    }
}

/// An address as an integer (IPv4 in the low 32 bits), for arithmetic.
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address for an integer; IPv4 takes the low 32 bits.
pub fn from_u128(n: u128, ipv4: bool) -> IpAddr {
    if ipv4 {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| Error::MissingPrefix(s.to_string()))?;
        let addr: IpAddr = addr.parse().map_err(|_| Error::BadAddress(s.to_string()))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| Error::BadPrefix(s.to_string()))?;
        Cidr::new(addr, prefix).ok_or_else(|| Error::BadPrefix(s.to_string()))
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_arithmetic() {
        let c: Cidr = "10.1.2.3/24".parse().unwrap();
        assert_eq!(c.to_string(), "10.1.2.3/24");
        assert_eq!(c.network().to_string(), "10.1.2.0");
        assert_eq!(c.last().to_string(), "10.1.2.255");
        assert!(c.contains("10.1.2.200".parse().unwrap()));
        assert!(!c.contains("10.1.3.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let z: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(z.contains("8.8.8.8".parse().unwrap()));
        let v6: Cidr = "fd00::5/120".parse().unwrap();
        assert_eq!(v6.last().to_string(), "fd00::ff");
        assert_eq!(v6.to_network().to_string(), "fd00::/120");
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            "10.0.0.1".parse::<Cidr>(),
            Err(Error::MissingPrefix(_))
        ));
        assert!(matches!(
            "10.0.0.1/33".parse::<Cidr>(),
            Err(Error::BadPrefix(_))
        ));
        assert!(matches!("x/3".parse::<Cidr>(), Err(Error::BadAddress(_))));
    }
}
