//! What the operator says about the node: its name, `--node-labels`,
//! `--register-with-taints`, `--max-pods`, node IPs. Pure: parsing and validation.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Taint;

/// Upstream's default `--max-pods`.
pub const DEFAULT_MAX_PODS: i64 = 110;
/// The port of the kubelet API, published as `daemonEndpoints.kubeletEndpoint`.
pub const KUBELET_PORT: i32 = 10250;

/// Label keys in the `kubernetes.io` / `k8s.io` namespaces a kubelet may set on its own
/// Node (upstream's `KubeletLabels`); any other key there is refused, as the
/// NodeRestriction admission plugin would refuse it.
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
];
/// Label namespaces (and their subdomains) a kubelet may set freely.
const KUBELET_LABEL_NAMESPACES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];

/// Why a setting cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A `--node-labels` item is not `key=value`.
    #[error("--node-labels {item:?}: expected key=value")]
    LabelSyntax {
        /// The item as written.
        item: String,
    },
    /// A label key or value breaks the API's label rules.
    #[error("--node-labels {item:?}: {reason}")]
    LabelInvalid {
        /// The item as written.
        item: String,
        /// What is wrong.
        reason: String,
    },
    /// A `kubernetes.io` or `k8s.io` label the kubelet may not set on its own Node.
    #[error(
        "--node-labels {key:?}: unknown 'kubernetes.io' or 'k8s.io' label; a kubelet may only \
         set {allowed} or labels under kubelet.kubernetes.io/ and node.kubernetes.io/",
        allowed = KUBELET_LABELS.join(", ")
    )]
    LabelForbidden {
        /// The label key.
        key: String,
    },
    /// A `--register-with-taints` item is not `key[=value]:Effect` with a valid key,
    /// value and effect.
    #[error("--register-with-taints {item:?}: {reason}")]
    Taint {
        /// The item as written.
        item: String,
        /// What is wrong.
        reason: String,
    },
    /// `--max-pods` below one.
    #[error("--max-pods {0}: must be at least 1")]
    MaxPods(i64),
}

/// The node's settings, as flags or a KubeletConfiguration file give them.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// The Node's name (`--node-name`, else the hostname).
    pub name: String,
    /// `--node-labels`, already validated.
    pub labels: BTreeMap<String, String>,
    /// `--register-with-taints`, already validated.
    pub taints: Vec<Taint>,
    /// `--max-pods`: the node's `pods` capacity.
    pub max_pods: i64,
    /// `--node-ip`: the node's InternalIP addresses, in order.
    pub node_ips: Vec<IpAddr>,
    /// The kubelet's version without the `v` (the crate's version).
    pub version: String,
    /// The kubelet API's port.
    pub port: i32,
    /// `--provider-id`: the Node's `spec.providerID`, if any.
    pub provider_id: Option<String>,
}

impl NodeConfig {
    /// A node named `name` with no labels or taints and upstream's defaults.
    pub fn new(name: &str, node_ips: Vec<IpAddr>) -> NodeConfig {
        NodeConfig {
            name: name.to_string(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            max_pods: DEFAULT_MAX_PODS,
            node_ips,
            version: env!("CARGO_PKG_VERSION").to_string(),
            port: KUBELET_PORT,
            provider_id: None,
        }
    }

    /// Check the settings that cannot be checked while parsing.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_pods < 1 {
            return Err(ConfigError::MaxPods(self.max_pods));
        }
        Ok(())
    }
}

/// `--node-labels`: `k1=v1,k2=v2` (empty: none).
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut labels = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| ConfigError::LabelSyntax {
                item: item.to_string(),
            })?;
        let invalid = |reason: String| ConfigError::LabelInvalid {
            item: item.to_string(),
            reason,
        };
        check_qualified_name(key).map_err(|r| invalid(format!("key {r}")))?;
        check_label_value(value).map_err(|r| invalid(format!("value {r}")))?;
        if !kubelet_may_set(key) {
            return Err(ConfigError::LabelForbidden {
                key: key.to_string(),
            });
        }
        labels.insert(key.to_string(), value.to_string());
    }
    Ok(labels)
}

/// `--register-with-taints`: `key=value:Effect,key:Effect` (empty: none).
pub fn parse_taints(text: &str) -> Result<Vec<Taint>, ConfigError> {
    let mut taints: Vec<Taint> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let error = |reason: &str| ConfigError::Taint {
            item: item.to_string(),
            reason: reason.to_string(),
        };
        let (key_value, effect) = item
            .rsplit_once(':')
            .ok_or_else(|| error("expected key=value:Effect or key:Effect"))?;
        if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            return Err(error(
                "effect must be one of NoSchedule, PreferNoSchedule, NoExecute",
            ));
        }
        let (key, value) = match key_value.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (key_value, None),
        };
        check_qualified_name(key).map_err(|r| error(&format!("key {r}")))?;
        if let Some(value) = value {
            check_label_value(value).map_err(|r| error(&format!("value {r}")))?;
        }
        if taints.iter().any(|t| t.key == key && t.effect == effect) {
            return Err(error("the same key and effect is given twice"));
        }
        taints.push(Taint {
            key: key.to_string(),
            value: value.map(str::to_string),
            effect: effect.to_string(),
            time_added: None,
        });
    }
    Ok(taints)
}

/// Whether a kubelet may set label `key` on its own Node (upstream's rule).
pub fn kubelet_may_set(key: &str) -> bool {
    let Some((namespace, _)) = key.split_once('/') else {
        return true;
    };
    let under = |domain: &str| namespace == domain || namespace.ends_with(&format!(".{domain}"));
    if !under("kubernetes.io") && !under("k8s.io") {
        return true;
    }
    KUBELET_LABELS.contains(&key) || KUBELET_LABEL_NAMESPACES.iter().any(|ns| under(ns))
}

/// A qualified name: an optional DNS-subdomain prefix and `/`, then a name of at most
/// 63 characters, alphanumeric at both ends with `-`, `_`, `.` inside.
fn check_qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if prefix.is_empty() || prefix.len() > 253 || !prefix.split('.').all(label_ok) {
            return Err(format!(
                "prefix {prefix:?} must be a DNS subdomain (lowercase alphanumerics, '-', '.')"
            ));
        }
    }
    if name.is_empty() {
        return Err("name must not be empty".to_string());
    }
    check_label_value(name)
}

/// A label value: empty, or at most 63 characters, alphanumeric at both ends with `-`,
/// `_`, `.` inside.
fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if value.len() > 63
        || !edge_ok(value.chars().next())
        || !edge_ok(value.chars().last())
        || !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "{value:?} must be at most 63 characters: alphanumerics, '-', '_' or '.', \
             starting and ending with an alphanumeric"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_and_follow_the_kubelet_label_rule() {
        let labels = parse_labels("a=b, example.com/tier=web,node.kubernetes.io/pool=x,").unwrap();
        assert_eq!(labels.len(), 3);
        assert_eq!(labels["example.com/tier"], "web");
        assert!(parse_labels("").unwrap().is_empty());
        assert!(parse_labels("topology.kubernetes.io/zone=z1,x.kubelet.kubernetes.io/y=1").is_ok());
        for forbidden in [
            "node-role.kubernetes.io/master=",
            "kubernetes.io/role=x",
            "foo.k8s.io/bar=1",
            "node-restriction.kubernetes.io/a=b",
        ] {
            let error = parse_labels(forbidden).unwrap_err();
            assert!(
                matches!(error, ConfigError::LabelForbidden { .. }),
                "{forbidden}: {error}"
            );
        }
        assert!(matches!(
            parse_labels("novalue"),
            Err(ConfigError::LabelSyntax { .. })
        ));
        let bad = parse_labels("Bad_Prefix/x=1").unwrap_err().to_string();
        assert!(bad.contains("DNS subdomain"), "{bad}");
        assert!(parse_labels("a=-x").is_err());
    }

    #[test]
    fn taints_parse_with_clear_errors() {
        let taints = parse_taints("dedicated=gpu:NoSchedule,spot:PreferNoSchedule").unwrap();
        assert_eq!(taints.len(), 2);
        assert_eq!(taints[0].key, "dedicated");
        assert_eq!(taints[0].value.as_deref(), Some("gpu"));
        assert_eq!(taints[0].effect, "NoSchedule");
        assert_eq!(taints[1].value, None);
        let cases = [
            ("dedicated=gpu", "expected key=value:Effect"),
            ("dedicated=gpu:Sometimes", "effect must be one of"),
            ("=gpu:NoSchedule", "name must not be empty"),
            ("a=b c:NoExecute", "value"),
            ("a:NoSchedule,a=x:NoSchedule", "twice"),
        ];
        for (text, expected) in cases {
            let error = parse_taints(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(error.contains("--register-with-taints"), "{error}");
        }
    }

    #[test]
    fn max_pods_must_be_positive() {
        let mut config = NodeConfig::new("n", Vec::new());
        assert_eq!(config.max_pods, 110);
        assert!(config.validate().is_ok());
        config.max_pods = 0;
        assert_eq!(config.validate(), Err(ConfigError::MaxPods(0)));
    }
}
