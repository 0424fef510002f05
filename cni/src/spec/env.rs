//! The `CNI_*` environment of a plugin invocation, parsed from a variable map with per-verb rules.

use super::config::is_identifier;
use super::error::{Code, Error};
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The verb in `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Attach a container to the network.
    Add,
    /// Detach; idempotent.
    Del,
    /// Verify an attachment (0.4.0+).
    Check,
    /// Report supported versions.
    Version,
    /// Release everything not in the valid attachments (1.1.0+).
    Gc,
    /// Report whether ADD can be serviced (1.1.0+).
    Status,
}

impl Command {
    /// The verb as spelled in `CNI_COMMAND`.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Gc => "GC",
            Command::Status => "STATUS",
        }
    }

    /// The variables besides `CNI_COMMAND` the spec requires for this verb.
    pub fn required_vars(self) -> &'static [&'static str] {
        match self {
            Command::Add | Command::Check => &[CONTAINER_ID, NETNS, IFNAME],
            Command::Del => &[CONTAINER_ID, IFNAME],
            Command::Gc => &[PATH],
            Command::Version | Command::Status => &[],
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Command {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            other => {
                return Err(Error::new(
                    Code::InvalidEnvironment,
                    format!("unknown CNI_COMMAND {other:?}"),
                ))
            }
        })
    }
}

/// `CNI_COMMAND`.
pub const COMMAND: &str = "CNI_COMMAND";
/// `CNI_CONTAINERID`.
pub const CONTAINER_ID: &str = "CNI_CONTAINERID";
/// `CNI_NETNS`.
pub const NETNS: &str = "CNI_NETNS";
/// `CNI_IFNAME`.
pub const IFNAME: &str = "CNI_IFNAME";
/// `CNI_ARGS`.
pub const ARGS: &str = "CNI_ARGS";
/// `CNI_PATH`.
pub const PATH: &str = "CNI_PATH";

/// A plugin invocation's environment, validated for its verb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// The verb.
    pub command: Command,
    /// `CNI_CONTAINERID`; empty for verbs without one.
    pub container_id: String,
    /// `CNI_NETNS`; `None` when unset or empty (allowed for DEL).
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`; empty for verbs without one.
    pub ifname: String,
    /// `CNI_ARGS`.
    pub args: CniArgs,
    /// `CNI_PATH`, split on `:`.
    pub path: Vec<PathBuf>,
}

impl Environment {
    /// The environment from a variable map; code 4 naming the variable when one is missing or invalid.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Environment, Error> {
        let get = |k: &str| vars.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let command: Command = get(COMMAND)
            .ok_or_else(|| {
                Error::new(
                    Code::InvalidEnvironment,
                    "required env variables [CNI_COMMAND] missing",
                )
            })?
            .parse()?;
        let missing: Vec<&str> = command
            .required_vars()
            .iter()
            .copied()
            .filter(|k| get(k).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(Error::new(
                Code::InvalidEnvironment,
                format!("required env variables [{}] missing", missing.join(",")),
            ));
        }
        let container_id = get(CONTAINER_ID).unwrap_or_default().to_string();
        if !container_id.is_empty() && !is_identifier(&container_id) {
            return Err(Error::new(
                Code::InvalidEnvironment,
                format!("invalid characters in {CONTAINER_ID} {container_id:?}"),
            ));
        }
        let ifname = get(IFNAME).unwrap_or_default().to_string();
        if !ifname.is_empty() {
            validate_ifname(&ifname)?;
        }
        Ok(Environment {
            command,
            container_id,
            netns: get(NETNS).map(PathBuf::from),
            ifname,
            args: CniArgs::parse(get(ARGS).unwrap_or_default())?,
            path: get(PATH)
                .map(|p| {
                    p.split(':')
                        .filter(|s| !s.is_empty())
                        .map(PathBuf::from)
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// Interface names: 1–15 bytes, not `.` or `..`, no `/`, `:` or whitespace.
fn validate_ifname(name: &str) -> Result<(), Error> {
    let bad = name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if bad {
        return Err(Error::new(
            Code::InvalidEnvironment,
            format!("invalid {IFNAME} {name:?}"),
        )
        .with_details("at most 15 bytes, not . or .., no '/', ':' or whitespace"));
    }
    Ok(())
}

/// `CNI_ARGS`: `K=V` pairs separated by `;`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    /// The pairs in order.
    pub pairs: Vec<(String, String)>,
}

impl CniArgs {
    /// The pairs of a `CNI_ARGS` value; code 4 for an element without `=`.
    pub fn parse(s: &str) -> Result<CniArgs, Error> {
        let mut pairs = Vec::new();
        for item in s.split(';').filter(|i| !i.is_empty()) {
            let (k, v) = item.split_once('=').ok_or_else(|| {
                Error::new(
                    Code::InvalidEnvironment,
                    format!("invalid {ARGS} pair {item:?} (expected KEY=VALUE)"),
                )
            })?;
            pairs.push((k.to_string(), v.to_string()));
        }
        Ok(CniArgs { pairs })
    }

    /// The value of `key` (the last one if repeated).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `IgnoreUnknown` is `1` or `true`.
    pub fn ignore_unknown(&self) -> bool {
        self.get("IgnoreUnknown")
            .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
    }

    /// Code 4 naming the pairs a plugin does not know, unless `IgnoreUnknown` is set.
    pub fn check_known(&self, known: &[&str]) -> Result<(), Error> {
        if self.ignore_unknown() {
            return Ok(());
        }
        let unknown: Vec<String> = self
            .pairs
            .iter()
            .filter(|(k, _)| k != "IgnoreUnknown" && !known.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(Error::new(
                Code::InvalidEnvironment,
                format!("{ARGS}: unknown args {unknown:?}"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn add_needs_id_netns_ifname() {
        let e = Environment::from_vars(&vars(&[("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "eth0")]))
            .unwrap_err();
        assert_eq!(e.code, Code::InvalidEnvironment);
        assert!(e.msg.contains("CNI_CONTAINERID"), "{e}");
        assert!(e.msg.contains("CNI_NETNS"), "{e}");
        let env = Environment::from_vars(&vars(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin::/usr/lib/cni"),
            ("CNI_ARGS", "IgnoreUnknown=1;IP=10.0.0.5"),
        ]))
        .unwrap();
        assert_eq!(env.command, Command::Add);
        assert_eq!(env.path.len(), 2);
        assert_eq!(env.args.get("IP"), Some("10.0.0.5"));
    }

    #[test]
    fn del_allows_empty_netns() {
        let env = Environment::from_vars(&vars(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", ""),
            ("CNI_IFNAME", "eth0"),
        ]))
        .unwrap();
        assert_eq!(env.netns, None);
        let e = Environment::from_vars(&vars(&[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "a")]))
            .unwrap_err();
        assert!(e.msg.contains("CNI_IFNAME"));
    }

    #[test]
    fn per_verb_requirements() {
        assert!(Environment::from_vars(&vars(&[("CNI_COMMAND", "VERSION")])).is_ok());
        assert!(Environment::from_vars(&vars(&[("CNI_COMMAND", "STATUS")])).is_ok());
        let e = Environment::from_vars(&vars(&[("CNI_COMMAND", "GC")])).unwrap_err();
        assert!(e.msg.contains("CNI_PATH"));
        let e = Environment::from_vars(&vars(&[])).unwrap_err();
        assert!(e.msg.contains("CNI_COMMAND"));
        let e = Environment::from_vars(&vars(&[("CNI_COMMAND", "FROB")])).unwrap_err();
        assert_eq!(e.code, Code::InvalidEnvironment);
    }

    #[test]
    fn invalid_values_name_the_variable() {
        let base = [
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "a/b"),
            ("CNI_IFNAME", "eth0"),
        ];
        let e = Environment::from_vars(&vars(&base)).unwrap_err();
        assert_eq!(e.code, Code::InvalidEnvironment);
        assert!(e.msg.contains("CNI_CONTAINERID"));
        for bad in ["..", "a:b", "has space", "sixteen-chars-xx"] {
            let e = Environment::from_vars(&vars(&[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", "a"),
                ("CNI_IFNAME", bad),
            ]))
            .unwrap_err();
            assert!(e.msg.contains("CNI_IFNAME"), "{bad}");
        }
        let e = Environment::from_vars(&vars(&[
            ("CNI_COMMAND", "VERSION"),
            ("CNI_ARGS", "novalue"),
        ]))
        .unwrap_err();
        assert!(e.msg.contains("CNI_ARGS"));
    }

    #[test]
    fn unknown_args_respect_ignore_unknown() {
        let args = CniArgs::parse("IP=10.0.0.1;K8S_POD_NAME=x").unwrap();
        assert!(args
            .check_known(&["IP"])
            .unwrap_err()
            .msg
            .contains("K8S_POD_NAME=x"));
        let args = CniArgs::parse("IgnoreUnknown=true;K8S_POD_NAME=x").unwrap();
        assert!(args.check_known(&["IP"]).is_ok());
    }
}
