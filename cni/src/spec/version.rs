//! CNI spec versions: the supported set, negotiation, and the VERSION verb's output.

use super::error::{Code, Error};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A CNI spec version this crate speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// 0.3.0: `ips[].version`, interfaces.
    V0_3_0,
    /// 0.3.1.
    V0_3_1,
    /// 0.4.0: adds CHECK and prevResult on DEL.
    V0_4_0,
    /// 1.0.0: drops `ips[].version`.
    V1_0_0,
    /// 1.1.0: adds GC, STATUS, `cniVersions`, interface and route fields.
    V1_1_0,
}

impl Version {
    /// Every supported version, oldest first (what VERSION reports).
    pub const ALL: [Version; 5] = [
        Version::V0_3_0,
        Version::V0_3_1,
        Version::V0_4_0,
        Version::V1_0_0,
        Version::V1_1_0,
    ];

    /// The newest supported version.
    pub const LATEST: Version = Version::V1_1_0;

    /// The version as written in JSON, e.g. `"1.0.0"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V0_3_0 => "0.3.0",
            Version::V0_3_1 => "0.3.1",
            Version::V0_4_0 => "0.4.0",
            Version::V1_0_0 => "1.0.0",
            Version::V1_1_0 => "1.1.0",
        }
    }

    /// The version named in a config, or code 1 (incompatible version) when unsupported.
    pub fn parse(s: &str) -> Result<Version, Error> {
        Version::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                Error::new(Code::IncompatibleVersion, "incompatible CNI versions").with_details(
                    format!(
                        "config is {s:?}, plugin supports {:?}",
                        Version::ALL.map(Version::as_str)
                    ),
                )
            })
    }

    /// Results of this version carry `ips[].version` ("4"/"6").
    pub fn has_ip_version_field(self) -> bool {
        self < Version::V1_0_0
    }

    /// CHECK exists from 0.4.0 on.
    pub fn supports_check(self) -> bool {
        self >= Version::V0_4_0
    }

    /// GC and STATUS exist from 1.1.0 on.
    pub fn supports_gc_and_status(self) -> bool {
        self >= Version::V1_1_0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Version {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Version::parse(s)
    }
}

/// The version a runtime uses for a config: the highest supported entry of
/// `cniVersions` (1.1) if there is one, else `cniVersion`.
pub fn negotiate(cni_version: &str, cni_versions: &[String]) -> Result<Version, Error> {
    if let Some(best) = cni_versions
        .iter()
        .filter_map(|s| Version::parse(s).ok())
        .max()
    {
        return Ok(best);
    }
    Version::parse(cni_version)
}

/// The output of the VERSION verb.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// The version of the VERSION request (echoed back).
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// Every version the plugin supports.
    #[serde(rename = "supportedVersions")]
    pub supported_versions: Vec<String>,
}

impl VersionInfo {
    /// The answer to a VERSION request whose stdin named `requested` (if any).
    pub fn answer(requested: Option<&str>) -> VersionInfo {
        let cni_version = requested
            .and_then(|s| Version::parse(s).ok())
            .unwrap_or(Version::LATEST);
        VersionInfo {
            cni_version: cni_version.as_str().to_string(),
            supported_versions: Version::ALL
                .iter()
                .map(|v| v.as_str().to_string())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_order() {
        assert_eq!(Version::parse("0.4.0").unwrap(), Version::V0_4_0);
        assert!(Version::V0_3_1 < Version::V1_0_0);
        let e = Version::parse("0.2.0").unwrap_err();
        assert_eq!(e.code, Code::IncompatibleVersion);
        assert!(e.details.contains("0.2.0"));
    }

    #[test]
    fn negotiation_prefers_highest_of_cni_versions() {
        let vs = vec!["0.4.0".into(), "1.1.0".into(), "9.9.9".into()];
        assert_eq!(negotiate("0.3.1", &vs).unwrap(), Version::V1_1_0);
        assert_eq!(negotiate("1.0.0", &[]).unwrap(), Version::V1_0_0);
        assert_eq!(
            negotiate("2.0.0", &[]).unwrap_err().code,
            Code::IncompatibleVersion
        );
    }

    #[test]
    fn version_info_lists_all() {
        let v = serde_json::to_value(VersionInfo::answer(Some("1.0.0"))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]})
        );
    }
}
