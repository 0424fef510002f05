//! ADD results for 0.3.x/0.4.0 (`ips[].version`) and 1.0.0/1.1.0, and conversion between them.
//!
//! One in-memory shape (the 1.1 one) is parsed from any supported version and
//! emitted in the version the config asked for: fields a version lacks are
//! dropped, and `ips[].version` is added for versions before 1.0.

use super::cidr::Cidr;
use super::error::{Code, Error};
use super::version::Version;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::IpAddr;

/// The result of ADD (also what runtimes send back as `prevResult`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniResult {
    /// The version the result was written in.
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    /// Interfaces the plugin created; empty in an IPAM plugin's abbreviated result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// Assigned addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    /// Routes to install in the sandbox.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// DNS settings for the sandbox.
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

/// An interface a plugin created or configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// The interface name, e.g. `eth0`.
    pub name: String,
    /// The hardware address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The MTU (1.1 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path for interfaces inside a sandbox; absent for host-side ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// A vhost-user or similar socket path (1.1 only).
    #[serde(
        rename = "socketPath",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub socket_path: Option<String>,
    /// The PCI address of a device (1.1 only).
    #[serde(rename = "pciID", default, skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
}

/// An assigned address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// The address with its subnet's prefix length, e.g. `10.1.0.5/24`.
    pub address: Cidr,
    /// The default gateway for this subnet, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`; absent in an IPAM plugin's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// A route to install in the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The destination.
    pub dst: Cidr,
    /// The next hop; absent means the default gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// The route MTU (1.1 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The TCP advertised MSS (1.1 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    /// The route priority/metric (1.1 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// The routing table (1.1 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// The route scope (1.1 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

/// DNS settings (result `dns`, and a config's `dns`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Nameserver addresses in priority order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// The local domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Search domains in priority order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    /// No field set.
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// Interface fields that only exist from 1.1.0 on.
const INTERFACE_1_1_FIELDS: [&str; 3] = ["mtu", "socketPath", "pciID"];
/// Route fields that only exist from 1.1.0 on.
const ROUTE_1_1_FIELDS: [&str; 5] = ["mtu", "advmss", "priority", "table", "scope"];

impl CniResult {
    /// A result of any supported version (code 6 if malformed, 1 if the version is unsupported).
    pub fn parse(json: &[u8]) -> Result<CniResult, Error> {
        let value: Value = serde_json::from_slice(json).map_err(|e| {
            Error::new(Code::Decode, "failed to decode result").with_details(e.to_string())
        })?;
        CniResult::from_value(value)
    }

    /// A result from an already decoded JSON value (e.g. a config's `prevResult`).
    pub fn from_value(value: Value) -> Result<CniResult, Error> {
        let result: CniResult = serde_json::from_value(value).map_err(|e| {
            Error::new(Code::Decode, "failed to decode result").with_details(e.to_string())
        })?;
        Version::parse(&result.cni_version)?;
        Ok(result)
    }

    /// This result as JSON in `version`: `ips[].version` added before 1.0,
    /// 1.1-only fields dropped before 1.1.
    pub fn to_value(&self, version: Version) -> Value {
        let mut value = serde_json::to_value(self).expect("results always serialize");
        value["cniVersion"] = Value::from(version.as_str());
        if version < Version::V1_1_0 {
            strip(&mut value, "interfaces", &INTERFACE_1_1_FIELDS);
            strip(&mut value, "routes", &ROUTE_1_1_FIELDS);
        }
        if version.has_ip_version_field() {
            if let Some(ips) = value.get_mut("ips").and_then(Value::as_array_mut) {
                for (ip, parsed) in ips.iter_mut().zip(&self.ips) {
                    let family = if parsed.address.addr.is_ipv4() {
                        "4"
                    } else {
                        "6"
                    };
                    ip["version"] = Value::from(family);
                }
            }
        }
        value
    }

    /// This result as pretty JSON in `version`, as a plugin prints it.
    pub fn to_json(&self, version: Version) -> String {
        serde_json::to_string_pretty(&self.to_value(version)).expect("results always serialize")
    }

    /// The same result re-stamped as `version` (what a chained plugin passes on).
    pub fn convert(&self, version: Version) -> CniResult {
        let mut converted: CniResult = serde_json::from_value(self.to_value(version))
            .expect("an emitted result always parses back");
        converted.cni_version = version.as_str().to_string();
        converted
    }
}

/// Removes `fields` from every object of the array `list`.
fn strip(value: &mut Value, list: &str, fields: &[&str]) {
    if let Some(items) = value.get_mut(list).and_then(Value::as_array_mut) {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            for field in fields {
                item.remove(*field);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn full() -> CniResult {
        CniResult::from_value(json!({
            "cniVersion": "1.1.0",
            "interfaces": [
                {"name": "cni0", "mac": "00:11:22:33:44:55", "mtu": 1400},
                {"name": "eth0", "mac": "99:88:77:66:55:44", "sandbox": "/run/netns/a",
                 "socketPath": "/s", "pciID": "0000:00:01.0"}
            ],
            "ips": [
                {"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 1},
                {"address": "fd00::5/64", "interface": 1}
            ],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1", "mtu": 1300, "advmss": 1200,
                        "priority": 5, "table": 100, "scope": 0}],
            "dns": {"nameservers": ["10.1.0.1"], "domain": "example", "search": ["a"], "options": ["ndots:5"]}
        }))
        .unwrap()
    }

    #[test]
    fn emits_1_1_unchanged() {
        let v = full().to_value(Version::V1_1_0);
        assert_eq!(v["interfaces"][1]["pciID"], "0000:00:01.0");
        assert_eq!(v["routes"][0]["table"], 100);
        assert!(v["ips"][0].get("version").is_none());
        assert_eq!(v["ips"][0]["interface"], 1);
    }

    #[test]
    fn emits_1_0_without_1_1_fields() {
        let v = full().to_value(Version::V1_0_0);
        assert_eq!(v["cniVersion"], "1.0.0");
        assert!(v["interfaces"][0].get("mtu").is_none());
        assert!(v["interfaces"][1].get("socketPath").is_none());
        assert_eq!(
            v["routes"][0],
            json!({"dst": "0.0.0.0/0", "gw": "10.1.0.1"})
        );
        assert!(v["ips"][0].get("version").is_none());
        assert_eq!(v["dns"]["search"], json!(["a"]));
    }

    #[test]
    fn emits_0_4_and_0_3_with_ip_versions() {
        for version in [Version::V0_3_0, Version::V0_3_1, Version::V0_4_0] {
            let v = full().to_value(version);
            assert_eq!(v["cniVersion"], version.as_str());
            assert_eq!(v["ips"][0]["version"], "4");
            assert_eq!(v["ips"][1]["version"], "6");
            assert_eq!(v["ips"][1]["interface"], 1);
        }
    }

    #[test]
    fn parses_0_4_result_and_converts_up() {
        let old = br#"{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.0.0.5/32","interface":2}],
            "interfaces":[{"name":"cni0"},{"name":"veth"},{"name":"eth0","sandbox":"/var/run/netns/blue"}],
            "dns":{"nameservers":["10.1.0.1"]}}"#;
        let r = CniResult::parse(old).unwrap();
        assert_eq!(r.ips[0].interface, Some(2));
        let up = r.convert(Version::V1_0_0);
        assert_eq!(up.cni_version, "1.0.0");
        assert!(up.to_value(Version::V1_0_0)["ips"][0]
            .get("version")
            .is_none());
        assert_eq!(
            up.interfaces[2].sandbox.as_deref(),
            Some("/var/run/netns/blue")
        );
    }

    #[test]
    fn round_trips_each_version() {
        for version in Version::ALL {
            let text = full().to_json(version);
            let back = CniResult::parse(text.as_bytes()).unwrap();
            assert_eq!(back.cni_version, version.as_str());
            assert_eq!(back.ips, full().ips);
        }
    }

    #[test]
    fn abbreviated_ipam_result_has_no_interfaces() {
        let r = CniResult {
            ips: vec![IpConfig {
                address: "10.0.0.2/24".parse().unwrap(),
                gateway: Some("10.0.0.1".parse().unwrap()),
                interface: None,
            }],
            ..Default::default()
        };
        assert_eq!(
            r.to_value(Version::V1_0_0),
            json!({"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24","gateway":"10.0.0.1"}]})
        );
    }

    #[test]
    fn rejects_bad_results() {
        assert_eq!(CniResult::parse(b"{").unwrap_err().code, Code::Decode);
        assert_eq!(
            CniResult::parse(br#"{"cniVersion":"0.2.0"}"#)
                .unwrap_err()
                .code,
            Code::IncompatibleVersion
        );
        assert_eq!(
            CniResult::parse(br#"{"cniVersion":"1.0.0","ips":[{"address":"nope"}]}"#)
                .unwrap_err()
                .code,
            Code::Decode
        );
    }
}
