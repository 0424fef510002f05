//! Network configuration (one plugin's stdin) and configuration lists (conflists).

use super::error::{Code, Error};
use super::result::{CniResult, Dns};
use super::version::{self, Version};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The key GC requests carry the attachments to keep under (SPEC 1.1).
pub const VALID_ATTACHMENTS_KEY: &str = "cni.dev/valid-attachments";
/// The key libcni also writes (containernetworking/cni#1103); accepted as a synonym.
pub const ATTACHMENTS_KEY: &str = "cni.dev/attachments";

/// One plugin's network configuration, as it arrives on stdin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetConf {
    /// The spec version the config (and the result) is written in.
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    /// Versions the config supports (1.1 conflists); the runtime picks one.
    #[serde(
        rename = "cniVersions",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cni_versions: Option<Vec<String>>,
    /// The network name.
    #[serde(default)]
    pub name: String,
    /// The plugin executable's name.
    #[serde(rename = "type", default)]
    pub plugin_type: String,
    /// IPAM settings; `type` names the IPAM plugin, the rest is that plugin's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Map<String, Value>>,
    /// DNS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
    /// The previous plugin's result (chained ADD; CHECK and DEL).
    #[serde(
        rename = "prevResult",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub prev_result: Option<Value>,
    /// Capability arguments from the runtime (e.g. `ips`, `ipRanges`, `portMappings`).
    #[serde(
        rename = "runtimeConfig",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub runtime_config: Option<Map<String, Value>>,
    /// Capabilities the plugin declares in the on-disk config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Map<String, Value>>,
    /// Free-form arguments from the runtime (e.g. `args.cni.ips`); ignored if not understood.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Map<String, Value>>,
    /// Every other field: plugin-specific settings, and GC's `cni.dev/valid-attachments`.
    #[serde(flatten)]
    pub plugin: Map<String, Value>,
}

/// A (container, interface) pair: what one ADD created and one DEL removes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Attachment {
    /// The container ID (`CNI_CONTAINERID`).
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// The interface name (`CNI_IFNAME`).
    pub ifname: String,
}

impl NetConf {
    /// A config from stdin: code 6 if it is not JSON of the right shape, 7 if the name is invalid.
    pub fn parse(json: &[u8]) -> Result<NetConf, Error> {
        let conf: NetConf = serde_json::from_slice(json).map_err(|e| {
            Error::new(Code::Decode, "failed to decode network config").with_details(e.to_string())
        })?;
        validate_network_name(&conf.name)?;
        Ok(conf)
    }

    /// The version to answer in, or code 1.
    pub fn version(&self) -> Result<Version, Error> {
        version::negotiate(
            &self.cni_version,
            self.cni_versions.as_deref().unwrap_or(&[]),
        )
    }

    /// The IPAM plugin's name, if the config has an `ipam` section with a type.
    pub fn ipam_type(&self) -> Option<&str> {
        self.ipam.as_ref()?.get("type")?.as_str()
    }

    /// The parsed `prevResult`, if any.
    pub fn prev_result(&self) -> Result<Option<CniResult>, Error> {
        self.prev_result
            .clone()
            .map(CniResult::from_value)
            .transpose()
    }

    /// GC's attachments to keep (`cni.dev/valid-attachments`, or `cni.dev/attachments`);
    /// `None` when the config has neither key.
    pub fn valid_attachments(&self) -> Result<Option<Vec<Attachment>>, Error> {
        let Some((key, value)) = [VALID_ATTACHMENTS_KEY, ATTACHMENTS_KEY]
            .iter()
            .find_map(|k| self.plugin.get(*k).map(|v| (*k, v)))
        else {
            return Ok(None);
        };
        serde_json::from_value(value.clone())
            .map(Some)
            .map_err(|e| {
                Error::new(Code::Decode, format!("failed to decode {key}"))
                    .with_details(e.to_string())
            })
    }
}

/// A network name must match `[a-zA-Z0-9][a-zA-Z0-9_.-]*` (it becomes a directory name).
pub fn validate_network_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::new(Code::InvalidConfig, "missing network name"));
    }
    if !is_identifier(name) {
        return Err(Error::new(
            Code::InvalidConfig,
            format!("invalid characters in network name {name:?}"),
        )
        .with_details("must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"));
    }
    Ok(())
}

/// Whether `s` matches `[a-zA-Z0-9][a-zA-Z0-9_.-]*` (network names and container IDs).
pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A network configuration list: several plugins run in order for one network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetConfList {
    /// The spec version of the list and of every plugin in it.
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    /// Versions the list supports (1.1).
    #[serde(
        rename = "cniVersions",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cni_versions: Option<Vec<String>>,
    /// The network name, copied into every plugin's config.
    pub name: String,
    /// When true the runtime must not call CHECK (spec: the string "true", or a boolean).
    #[serde(
        rename = "disableCheck",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub disable_check: Option<Value>,
    /// When true the runtime must not call GC (1.1).
    #[serde(rename = "disableGC", default, skip_serializing_if = "Option::is_none")]
    pub disable_gc: Option<Value>,
    /// The plugins' configurations, in ADD order.
    pub plugins: Vec<Map<String, Value>>,
}

impl NetConfList {
    /// A conflist: code 6 if malformed, 7 if the name is invalid or there are no plugins.
    pub fn parse(json: &[u8]) -> Result<NetConfList, Error> {
        let list: NetConfList = serde_json::from_slice(json).map_err(|e| {
            Error::new(Code::Decode, "failed to decode network config list")
                .with_details(e.to_string())
        })?;
        validate_network_name(&list.name)?;
        if list.plugins.is_empty() {
            return Err(Error::new(
                Code::InvalidConfig,
                "config list has no plugins",
            ));
        }
        Ok(list)
    }

    /// The version the runtime uses for this list, or code 1.
    pub fn version(&self) -> Result<Version, Error> {
        version::negotiate(
            &self.cni_version,
            self.cni_versions.as_deref().unwrap_or(&[]),
        )
    }

    /// Whether CHECK is disabled.
    pub fn check_disabled(&self) -> bool {
        is_true(self.disable_check.as_ref())
    }

    /// Whether GC is disabled.
    pub fn gc_disabled(&self) -> bool {
        is_true(self.disable_gc.as_ref())
    }

    /// Plugin `index`'s config with the list's `name` and the chosen `cniVersion` written in, as the spec requires.
    pub fn plugin_config(&self, index: usize, version: Version) -> Option<Map<String, Value>> {
        let mut conf = self.plugins.get(index)?.clone();
        conf.insert("name".into(), Value::from(self.name.clone()));
        conf.insert("cniVersion".into(), Value::from(version.as_str()));
        conf.remove("cniVersions");
        Some(conf)
    }
}

fn is_true(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_known_and_plugin_fields() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"net1","type":"bridge","bridge":"cni0",
                "ipam":{"type":"host-local","subnet":"10.1.0.0/16"},
                "dns":{"nameservers":["10.1.0.1"]},"args":{"cni":{"ips":["10.1.0.9"]}},
                "runtimeConfig":{"ips":["10.1.0.8"]},
                "prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.2/16"}]}}"#,
        )
        .unwrap();
        assert_eq!(conf.plugin_type, "bridge");
        assert_eq!(conf.ipam_type(), Some("host-local"));
        assert_eq!(conf.plugin["bridge"], "cni0");
        assert_eq!(conf.dns.as_ref().unwrap().nameservers, vec!["10.1.0.1"]);
        assert_eq!(conf.prev_result().unwrap().unwrap().ips.len(), 1);
        assert_eq!(conf.version().unwrap(), Version::V1_0_0);
        // Emitting keeps the plugin-specific fields at top level.
        let v = serde_json::to_value(&conf).unwrap();
        assert_eq!(v["bridge"], "cni0");
    }

    #[test]
    fn decode_and_name_errors() {
        assert_eq!(NetConf::parse(b"{").unwrap_err().code, Code::Decode);
        assert_eq!(
            NetConf::parse(br#"{"name":5}"#).unwrap_err().code,
            Code::Decode
        );
        assert_eq!(
            NetConf::parse(br#"{"cniVersion":"1.0.0"}"#)
                .unwrap_err()
                .code,
            Code::InvalidConfig
        );
        assert_eq!(
            NetConf::parse(br#"{"name":"../etc"}"#).unwrap_err().code,
            Code::InvalidConfig
        );
    }

    #[test]
    fn valid_attachments_accepts_both_keys() {
        for key in [VALID_ATTACHMENTS_KEY, ATTACHMENTS_KEY] {
            let json = json!({"cniVersion":"1.1.0","name":"n","type":"t",
                key: [{"containerID":"a","ifname":"eth0"}]});
            let conf = NetConf::parse(json.to_string().as_bytes()).unwrap();
            assert_eq!(
                conf.valid_attachments().unwrap().unwrap(),
                vec![Attachment {
                    container_id: "a".into(),
                    ifname: "eth0".into()
                }]
            );
        }
        let conf = NetConf::parse(br#"{"name":"n"}"#).unwrap();
        assert_eq!(conf.valid_attachments().unwrap(), None);
    }

    #[test]
    fn conflist_injects_name_and_version() {
        let list = NetConfList::parse(
            br#"{"cniVersion":"1.0.0","cniVersions":["1.0.0","1.1.0"],"name":"l","disableCheck":"true",
                "plugins":[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#,
        )
        .unwrap();
        let version = list.version().unwrap();
        assert_eq!(version, Version::V1_1_0);
        assert!(list.check_disabled());
        assert!(!list.gc_disabled());
        let p = list.plugin_config(1, version).unwrap();
        assert_eq!(p["name"], "l");
        assert_eq!(p["cniVersion"], "1.1.0");
        assert_eq!(
            NetConfList::parse(br#"{"name":"l","plugins":[]}"#)
                .unwrap_err()
                .code,
            Code::InvalidConfig
        );
    }
}
