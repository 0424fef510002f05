//! The host-local `ipam` section of a network config, plus the IPs a runtime requests.

use super::range::{self, RangeConf, RangeSet};
use crate::spec::{Cidr, CniArgs, NetConf, Route};
use serde::Deserialize;
use serde_json::Value;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Where host-local keeps reservations unless `dataDir` says otherwise.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// The `CNI_ARGS` keys this IPAM understands.
pub const KNOWN_ARGS: [&str; 1] = ["IP"];

/// Why the IPAM config is unusable.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config has no `ipam` section.
    #[error("missing 'ipam' section")]
    MissingIpam,
    /// The `ipam` section does not have host-local's shape.
    #[error("invalid ipam config: {0}")]
    Decode(#[source] serde_json::Error),
    /// Neither `ranges`, `subnet` nor the `ipRanges` capability gives a range.
    #[error("no IP ranges specified")]
    NoRanges,
    /// A range or range set is invalid.
    #[error("invalid range set {index}: {source}")]
    Range {
        /// The range set's position.
        index: usize,
        /// What is wrong.
        #[source]
        source: range::Error,
    },
    /// Two range sets overlap.
    #[error("range set {0} overlaps with range set {1}")]
    Overlap(usize, usize),
    /// A requested IP (from `CNI_ARGS`, `args.cni.ips` or `runtimeConfig.ips`) is not an address.
    #[error("invalid requested IP {0:?}")]
    BadRequestedIp(String),
}

impl From<Error> for crate::spec::Error {
    fn from(e: Error) -> Self {
        let code = match e {
            Error::Decode(_) => crate::spec::Code::Decode,
            _ => crate::spec::Code::InvalidConfig,
        };
        crate::spec::Error::new(code, e.to_string())
    }
}

/// A usable host-local configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamConfig {
    /// The network name (the store's directory name).
    pub name: String,
    /// The range sets; one address is allocated from each.
    pub ranges: Vec<RangeSet>,
    /// Routes returned in the result.
    pub routes: Vec<Route>,
    /// `dataDir`, if set.
    pub data_dir: Option<PathBuf>,
    /// `resolvConf`, if set: a resolv.conf whose settings become the result's `dns`.
    pub resolv_conf: Option<PathBuf>,
    /// Addresses the runtime asked for, at most one per range set.
    pub requested_ips: Vec<IpAddr>,
}

/// The `ipam` section as written.
#[derive(Debug, Deserialize)]
struct RawIpam {
    #[serde(default)]
    ranges: Vec<Vec<RangeConf>>,
    // The legacy single-range form, prepended to `ranges` as host-local does.
    subnet: Option<Cidr>,
    #[serde(rename = "rangeStart")]
    range_start: Option<IpAddr>,
    #[serde(rename = "rangeEnd")]
    range_end: Option<IpAddr>,
    gateway: Option<IpAddr>,
    #[serde(default)]
    routes: Vec<Route>,
    #[serde(rename = "dataDir")]
    data_dir: Option<PathBuf>,
    #[serde(rename = "resolvConf")]
    resolv_conf: Option<PathBuf>,
}

impl IpamConfig {
    /// The IPAM config of `conf`, with requested IPs from `CNI_ARGS` `IP=` (comma-separated),
    /// `args.cni.ips` and `runtimeConfig.ips`, and `runtimeConfig.ipRanges` replacing `ranges`.
    pub fn from_netconf(conf: &NetConf, args: &CniArgs) -> Result<IpamConfig, Error> {
        let ipam = conf.ipam.clone().ok_or(Error::MissingIpam)?;
        let raw: RawIpam = serde_json::from_value(Value::Object(ipam)).map_err(Error::Decode)?;
        let runtime = conf.runtime_config.as_ref();
        let mut range_confs = raw.ranges;
        if let Some(subnet) = raw.subnet {
            range_confs.insert(
                0,
                vec![RangeConf {
                    subnet,
                    range_start: raw.range_start,
                    range_end: raw.range_end,
                    gateway: raw.gateway,
                }],
            );
        }
        if let Some(ip_ranges) = runtime.and_then(|r| r.get("ipRanges")) {
            let from_runtime: Vec<Vec<RangeConf>> =
                serde_json::from_value(ip_ranges.clone()).map_err(Error::Decode)?;
            if !from_runtime.is_empty() {
                range_confs = from_runtime;
            }
        }
        if range_confs.is_empty() {
            return Err(Error::NoRanges);
        }
        let ranges = range_confs
            .iter()
            .enumerate()
            .map(|(index, c)| RangeSet::new(c).map_err(|source| Error::Range { index, source }))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, a) in ranges.iter().enumerate() {
            if let Some(j) = (i + 1..ranges.len()).find(|&j| a.overlaps(&ranges[j])) {
                return Err(Error::Overlap(i, j));
            }
        }
        let mut requested = Vec::new();
        if let Some(ips) = args.get("IP") {
            for item in ips.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                requested.push(parse_requested(item)?);
            }
        }
        let from_args = conf
            .args
            .as_ref()
            .and_then(|a| a.get("cni"))
            .and_then(|c| c.get("ips"));
        let from_runtime = runtime.and_then(|r| r.get("ips"));
        for list in [from_args, from_runtime].into_iter().flatten() {
            for item in list.as_array().into_iter().flatten() {
                let text = item
                    .as_str()
                    .ok_or_else(|| Error::BadRequestedIp(item.to_string()))?;
                requested.push(parse_requested(text)?);
            }
        }
        let mut seen = std::collections::HashSet::new();
        requested.retain(|ip| seen.insert(*ip));
        Ok(IpamConfig {
            name: conf.name.clone(),
            ranges,
            routes: raw.routes,
            data_dir: raw.data_dir,
            resolv_conf: raw.resolv_conf,
            requested_ips: requested,
        })
    }

    /// `dataDir`, or `default` when the config has none.
    pub fn data_dir_or<'a>(&'a self, default: &'a Path) -> &'a Path {
        self.data_dir.as_deref().unwrap_or(default)
    }
}

/// A requested IP, written bare or in CIDR form.
fn parse_requested(text: &str) -> Result<IpAddr, Error> {
    text.parse::<IpAddr>()
        .or_else(|_| text.parse::<Cidr>().map(|c| c.addr))
        .map_err(|_| Error::BadRequestedIp(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(json: &str, args: &str) -> Result<IpamConfig, Error> {
        let conf = NetConf::parse(json.as_bytes()).unwrap();
        IpamConfig::from_netconf(&conf, &CniArgs::parse(args).unwrap())
    }

    #[test]
    fn ranges_routes_and_requested_ips() {
        let c = load(
            r#"{"cniVersion":"1.0.0","name":"net","type":"bridge",
               "ipam":{"type":"host-local","dataDir":"/d","resolvConf":"/r",
                 "ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"fd00::/64"}]],
                 "routes":[{"dst":"0.0.0.0/0"}]},
               "args":{"cni":{"ips":["10.0.0.7/24"]}},
               "runtimeConfig":{"ips":["fd00::9"]}}"#,
            "IP=10.0.0.8",
        )
        .unwrap();
        assert_eq!(c.name, "net");
        assert_eq!(c.ranges.len(), 2);
        assert_eq!(c.routes.len(), 1);
        assert_eq!(c.data_dir.as_deref(), Some(Path::new("/d")));
        let req: Vec<String> = c.requested_ips.iter().map(ToString::to_string).collect();
        assert_eq!(req, ["10.0.0.8", "10.0.0.7", "fd00::9"]);
    }

    #[test]
    fn legacy_subnet_and_ip_ranges_capability() {
        let c = load(
            r#"{"name":"n","ipam":{"subnet":"10.1.0.0/16","rangeStart":"10.1.0.10",
               "ranges":[[{"subnet":"10.2.0.0/16"}]]}}"#,
            "",
        )
        .unwrap();
        assert_eq!(c.ranges.len(), 2);
        assert_eq!(c.ranges[0].ranges[0].start.to_string(), "10.1.0.10");
        let c = load(
            r#"{"name":"n","ipam":{"ranges":[[{"subnet":"10.2.0.0/16"}]]},
               "runtimeConfig":{"ipRanges":[[{"subnet":"10.3.0.0/16"}]]}}"#,
            "",
        )
        .unwrap();
        assert_eq!(c.ranges[0].ranges[0].subnet.to_string(), "10.3.0.0/16");
    }

    #[test]
    fn errors() {
        assert!(matches!(
            load(r#"{"name":"n"}"#, ""),
            Err(Error::MissingIpam)
        ));
        assert!(matches!(
            load(r#"{"name":"n","ipam":{}}"#, ""),
            Err(Error::NoRanges)
        ));
        assert!(matches!(
            load(r#"{"name":"n","ipam":{"ranges":"x"}}"#, ""),
            Err(Error::Decode(_))
        ));
        assert!(matches!(
            load(
                r#"{"name":"n","ipam":{"ranges":[[{"subnet":"10.0.0.1/24"}]]}}"#,
                ""
            ),
            Err(Error::Range { index: 0, .. })
        ));
        assert!(matches!(
            load(
                r#"{"name":"n","ipam":{"ranges":[[{"subnet":"10.0.0.0/16"}],[{"subnet":"10.0.1.0/24"}]]}}"#,
                ""
            ),
            Err(Error::Overlap(0, 1))
        ));
        assert!(matches!(
            load(r#"{"name":"n","ipam":{"subnet":"10.0.0.0/24"}}"#, "IP=nope"),
            Err(Error::BadRequestedIp(_))
        ));
    }
}
