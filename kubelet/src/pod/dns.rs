//! A pod's names and resolver: its hostname and DNS domain, and its `resolv.conf` from
//! `dnsPolicy` and `dnsConfig`, composed as the upstream kubelet composes them (pure: the
//! node's settings and resolver file come in as arguments).
//!
//! - `ClusterFirst` (the default): the cluster's DNS servers, the search path
//!   `<namespace>.svc.<domain> svc.<domain> <domain>` then the node's, and `ndots:5`. A
//!   `hostNetwork` pod gets `Default` instead, unless its policy is `ClusterFirstWithHostNet`;
//!   a node without `--cluster-dns` falls back to `Default` with a `MissingClusterDNS` warning.
//! - `Default`: the node's resolver (`--resolv-conf`); with an empty `--resolv-conf`, the
//!   local machine's (`nameserver 127.0.0.1`, `search .`).
//! - `None`: nothing but the pod's `dnsConfig`.
//!
//! The pod's `dnsConfig` is then appended (duplicates dropped, options merged by name), and
//! the result cut to the resolver's limits: 3 nameservers, 32 search domains of at most 253
//! characters, 2048 characters in the search line; each cut is a `DNSConfigForming` warning.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, PodDNSConfig};

/// The most nameservers a resolver uses (glibc's `MAXNS`).
pub const MAX_NAMESERVERS: usize = 3;
/// The most search domains upstream keeps.
pub const MAX_SEARCH_DOMAINS: usize = 32;
/// The longest search line upstream keeps, in characters.
pub const MAX_SEARCH_CHARS: usize = 2048;
/// The longest search domain (a DNS-1123 subdomain); longer ones crash some resolvers.
const MAX_DOMAIN_CHARS: usize = 253;
/// The longest hostname a pod gets (a DNS-1123 label).
const MAX_HOSTNAME_CHARS: usize = 63;
/// The longest FQDN `setHostnameAsFQDN` may make (the kernel's hostname limit).
const MAX_FQDN_CHARS: usize = 64;

/// The node's DNS settings: the kubelet's `--cluster-dns`, `--cluster-domain` and
/// `--resolv-conf`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeDns {
    /// The cluster's DNS servers; none: `ClusterFirst` falls back to `Default`.
    pub cluster_dns: Vec<IpAddr>,
    /// The cluster's domain, e.g. `cluster.local`; empty as upstream's default.
    pub cluster_domain: String,
    /// Whether a node resolver file is configured (`--resolv-conf` not empty).
    pub has_resolv_conf: bool,
}

/// A resolver configuration: the three lines of `resolv.conf` the kubelet writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` addresses, in order.
    pub nameservers: Vec<String>,
    /// The `search` domains, in order.
    pub searches: Vec<String>,
    /// `options`, e.g. `ndots:5`.
    pub options: Vec<String>,
}

/// Something about the pod's DNS that the user should hear of, as an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The event reason (`MissingClusterDNS`, `DNSConfigForming`).
    pub reason: &'static str,
    /// The event message.
    pub message: String,
}

impl ResolvConf {
    /// Parse a node's `resolv.conf` as upstream does: `#` comments, every `nameserver`,
    /// the last `search` line (trailing dots dropped, `.` alone skipped), `options` merged by
    /// name.
    pub fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            if line.trim_start().starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            match fields.next() {
                Some("nameserver") => conf.nameservers.extend(fields.map(str::to_owned)),
                Some("search") => {
                    conf.searches = fields
                        .filter(|s| *s != ".")
                        .map(|s| s.trim_end_matches('.').to_owned())
                        .collect();
                }
                Some("options") => {
                    for option in fields {
                        merge_option(&mut conf.options, option.to_owned());
                    }
                }
                _ => {}
            }
        }
        conf
    }

    /// The file: `search`, then one `nameserver` line each, then `options`, each line only
    /// when it has something to say (as containerd writes it).
    pub fn render(&self) -> String {
        let mut text = String::new();
        if !self.searches.is_empty() {
            text.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for server in &self.nameservers {
            text.push_str(&format!("nameserver {server}\n"));
        }
        if !self.options.is_empty() {
            text.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        text
    }
}

/// The resolver configuration upstream would give `pod`: see the module documentation.
/// `node_resolv` is the text of the node's `--resolv-conf`.
pub fn pod_resolv_conf(pod: &Pod, node: &NodeDns, node_resolv: &str) -> (ResolvConf, Vec<Warning>) {
    let mut warnings = Vec::new();
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let cluster = match policy {
        "None" => None,
        "ClusterFirstWithHostNet" => Some(true),
        "ClusterFirst" if !host_network => Some(true),
        _ => Some(false),
    };
    let mut conf = match cluster {
        None => ResolvConf::default(),
        Some(true) if !node.cluster_dns.is_empty() => cluster_first(pod, node, node_resolv),
        Some(wants_cluster) => {
            if wants_cluster {
                warnings.push(Warning {
                    reason: "MissingClusterDNS",
                    message: format!(
                        "pod: \"{}\". kubelet does not have ClusterDNS IP configured and cannot \
                         create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy.",
                        pod_label(pod)
                    ),
                });
            }
            node_default(node, node_resolv)
        }
    };
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        append(&mut conf, extra);
    }
    fit_limits(&mut conf, &mut warnings);
    (conf, warnings)
}

/// `ClusterFirst`: the cluster's servers, its search path before the node's, `ndots:5`.
fn cluster_first(pod: &Pod, node: &NodeDns, node_resolv: &str) -> ResolvConf {
    let host = ResolvConf::parse(node_resolv);
    let mut searches = Vec::new();
    if !node.cluster_domain.is_empty() {
        let domain = &node.cluster_domain;
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        searches.push(format!("{namespace}.svc.{domain}"));
        searches.push(format!("svc.{domain}"));
        searches.push(domain.clone());
    }
    searches.extend(host.searches);
    ResolvConf {
        nameservers: node.cluster_dns.iter().map(IpAddr::to_string).collect(),
        searches: without_duplicates(searches),
        options: vec!["ndots:5".into()],
    }
}

/// `Default`: the node's resolver; without one, the local machine's.
fn node_default(node: &NodeDns, node_resolv: &str) -> ResolvConf {
    if node.has_resolv_conf {
        return ResolvConf::parse(node_resolv);
    }
    ResolvConf {
        nameservers: vec!["127.0.0.1".into()],
        searches: vec![".".into()],
        options: Vec::new(),
    }
}

/// Append the pod's `dnsConfig`: servers and searches without duplicates, options merged by
/// name (the pod's win).
fn append(conf: &mut ResolvConf, extra: &PodDNSConfig) {
    let mut servers = std::mem::take(&mut conf.nameservers);
    servers.extend(extra.nameservers.iter().flatten().cloned());
    conf.nameservers = without_duplicates(servers);
    let mut searches = std::mem::take(&mut conf.searches);
    searches.extend(extra.searches.iter().flatten().cloned());
    conf.searches = without_duplicates(searches);
    for option in extra.options.iter().flatten() {
        let name = option.name.clone().unwrap_or_default();
        let text = match option.value.as_deref() {
            Some(value) if !value.is_empty() => format!("{name}:{value}"),
            _ => name,
        };
        merge_option(&mut conf.options, text);
    }
}

/// Put `option` in `options`, replacing one of the same name (the part before `:`) in place.
fn merge_option(options: &mut Vec<String>, option: String) {
    let name = |o: &str| o.split(':').next().unwrap_or_default().to_owned();
    let key = name(&option);
    match options.iter_mut().find(|o| name(o) == key) {
        Some(existing) => *existing = option,
        None => options.push(option),
    }
}

fn without_duplicates(items: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .filter(|item| seen.insert(item.clone()))
        .collect()
}

/// Cut the configuration to the resolver's limits, saying so as upstream does.
fn fit_limits(conf: &mut ResolvConf, warnings: &mut Vec<Warning>) {
    if conf.nameservers.len() > MAX_NAMESERVERS {
        conf.nameservers.truncate(MAX_NAMESERVERS);
        warnings.push(Warning {
            reason: "DNSConfigForming",
            message: format!(
                "Nameserver limits were exceeded, some nameservers have been omitted, the \
                 applied nameserver line is: {}",
                conf.nameservers.join(" ")
            ),
        });
    }
    let mut cut = false;
    if conf.searches.len() > MAX_SEARCH_DOMAINS {
        conf.searches.truncate(MAX_SEARCH_DOMAINS);
        cut = true;
    }
    let before = conf.searches.len();
    conf.searches.retain(|s| s.len() <= MAX_DOMAIN_CHARS);
    cut |= conf.searches.len() != before;
    // Drop domains from the end until the line fits.
    let mut line = conf.searches.join(" ").len();
    while line > MAX_SEARCH_CHARS {
        let last = conf.searches.pop().map_or(0, |s| s.len() + 1);
        line = line.saturating_sub(last);
        cut = true;
    }
    if cut {
        warnings.push(Warning {
            reason: "DNSConfigForming",
            message: format!(
                "Search Line limits were exceeded, some search paths have been omitted, the \
                 applied search line is: {}",
                conf.searches.join(" ")
            ),
        });
    }
}

/// The pod's hostname and DNS domain, as upstream makes them: `spec.hostname` or the pod's
/// name, cut to 63 characters (without a trailing `-` or `.`); the domain
/// `<subdomain>.<namespace>.svc.<cluster domain>` when the pod has a subdomain; with
/// `setHostnameAsFQDN` the hostname is the FQDN. Err: the FQDN is too long.
pub fn hostname_and_domain(
    pod: &Pod,
    cluster_domain: &str,
) -> Result<(String, Option<String>), String> {
    let spec = pod.spec.as_ref();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let mut hostname = spec
        .and_then(|s| s.hostname.as_deref())
        .filter(|h| !h.is_empty())
        .unwrap_or(name)
        .to_owned();
    if hostname.len() > MAX_HOSTNAME_CHARS {
        hostname.truncate(MAX_HOSTNAME_CHARS);
        hostname = hostname.trim_end_matches(['-', '.']).to_owned();
    }
    let domain = spec
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty())
        .map(|sub| {
            let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
            format!("{sub}.{namespace}.svc.{cluster_domain}")
        });
    let as_fqdn = spec.and_then(|s| s.set_hostname_as_fqdn).unwrap_or(false);
    if let (true, Some(domain)) = (as_fqdn, &domain) {
        let fqdn = format!("{hostname}.{domain}");
        if fqdn.len() > MAX_FQDN_CHARS {
            return Err(format!(
                "failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is \
                 too long ({MAX_FQDN_CHARS} characters is the max, {} characters requested)",
                fqdn.len()
            ));
        }
        hostname = fqdn;
    }
    Ok((hostname, domain))
}

/// `<name>_<namespace>(<uid>)`, as upstream names a pod in messages.
fn pod_label(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}_{}({})",
        m.name.as_deref().unwrap_or_default(),
        m.namespace.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn cluster() -> NodeDns {
        NodeDns {
            cluster_dns: vec!["10.96.0.10".parse().unwrap()],
            cluster_domain: "cluster.local".into(),
            has_resolv_conf: true,
        }
    }

    const NODE_RESOLV: &str = "# node\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n\
                               search old.example\nsearch corp.example. .\noptions ndots:2 rotate\n";

    #[test]
    fn the_nodes_resolv_conf_parses_as_upstream_reads_it() {
        let conf = ResolvConf::parse(NODE_RESOLV);
        assert_eq!(conf.nameservers, ["192.0.2.53", "192.0.2.54"]);
        assert_eq!(conf.searches, ["corp.example"], "the last search line wins");
        assert_eq!(conf.options, ["ndots:2", "rotate"]);
        assert_eq!(
            conf.render(),
            "search corp.example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n\
             options ndots:2 rotate\n"
        );
    }

    #[test]
    fn cluster_first_uses_the_cluster_servers_and_search_path() {
        let (conf, warnings) =
            pod_resolv_conf(&pod(serde_json::json!({})), &cluster(), NODE_RESOLV);
        assert!(warnings.is_empty());
        assert_eq!(
            conf.render(),
            "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\n\
             nameserver 10.96.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn host_network_pods_get_the_nodes_resolver_unless_they_ask_for_the_cluster() {
        let node = cluster();
        let (conf, _) = pod_resolv_conf(
            &pod(serde_json::json!({"hostNetwork": true})),
            &node,
            NODE_RESOLV,
        );
        assert_eq!(conf.nameservers, ["192.0.2.53", "192.0.2.54"]);
        let (conf, _) = pod_resolv_conf(
            &pod(serde_json::json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"})),
            &node,
            NODE_RESOLV,
        );
        assert_eq!(conf.nameservers, ["10.96.0.10"]);
    }

    #[test]
    fn without_cluster_dns_cluster_first_falls_back_to_default_with_a_warning() {
        let node = NodeDns {
            has_resolv_conf: true,
            ..NodeDns::default()
        };
        let (conf, warnings) = pod_resolv_conf(&pod(serde_json::json!({})), &node, NODE_RESOLV);
        assert_eq!(conf, ResolvConf::parse(NODE_RESOLV));
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].reason, "MissingClusterDNS");
        assert!(
            warnings[0].message.contains("web_shop(u1)"),
            "{:?}",
            warnings[0]
        );

        let no_file = NodeDns::default();
        let (conf, _) = pod_resolv_conf(
            &pod(serde_json::json!({"dnsPolicy": "Default"})),
            &no_file,
            "",
        );
        assert_eq!(conf.render(), "search .\nnameserver 127.0.0.1\n");
    }

    #[test]
    fn dns_config_is_appended_and_options_merge_by_name() {
        let spec = serde_json::json!({
            "dnsPolicy": "ClusterFirst",
            "dnsConfig": {
                "nameservers": ["10.96.0.10", "192.0.2.99"],
                "searches": ["svc.cluster.local", "extra.example"],
                "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
            },
        });
        let (conf, _) = pod_resolv_conf(&pod(spec), &cluster(), "");
        assert_eq!(conf.nameservers, ["10.96.0.10", "192.0.2.99"]);
        assert_eq!(
            conf.searches,
            [
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "extra.example"
            ]
        );
        assert_eq!(conf.options, ["ndots:2", "edns0"]);
    }

    #[test]
    fn policy_none_is_only_the_pods_dns_config() {
        let spec = serde_json::json!({
            "dnsPolicy": "None",
            "dnsConfig": {"nameservers": ["192.0.2.1"], "searches": ["a.example"]},
        });
        let (conf, _) = pod_resolv_conf(&pod(spec), &cluster(), NODE_RESOLV);
        assert_eq!(conf.render(), "search a.example\nnameserver 192.0.2.1\n");
    }

    #[test]
    fn limits_cut_nameservers_search_domains_and_the_search_line() {
        let servers: Vec<String> = (1..=5).map(|i| format!("192.0.2.{i}")).collect();
        let searches: Vec<String> = (0..40).map(|i| format!("d{i}.example")).collect();
        let spec = serde_json::json!({
            "dnsPolicy": "None",
            "dnsConfig": {"nameservers": servers, "searches": searches},
        });
        let (conf, warnings) = pod_resolv_conf(&pod(spec), &cluster(), "");
        assert_eq!(conf.nameservers, ["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
        assert_eq!(conf.searches.len(), MAX_SEARCH_DOMAINS);
        assert_eq!(conf.searches[31], "d31.example");
        let reasons: Vec<&str> = warnings.iter().map(|w| w.reason).collect();
        assert_eq!(reasons, ["DNSConfigForming", "DNSConfigForming"]);
        assert!(warnings[0]
            .message
            .ends_with("192.0.2.1 192.0.2.2 192.0.2.3"));

        // 20 domains of 200 characters: the line is cut to at most 2048 characters, from the
        // end; a domain longer than 253 characters is dropped.
        let mut long: Vec<String> = (0..20)
            .map(|i| format!("{i:02}{}", "a".repeat(198)))
            .collect();
        long.insert(0, "b".repeat(254));
        let spec = serde_json::json!({"dnsPolicy": "None", "dnsConfig": {"searches": long}});
        let (conf, warnings) = pod_resolv_conf(&pod(spec), &cluster(), "");
        assert_eq!(
            conf.searches.len(),
            10,
            "10 × 201 - 1 = 2009 characters fit"
        );
        assert!(conf.searches[0].starts_with("00"));
        assert!(conf.searches.join(" ").len() <= MAX_SEARCH_CHARS);
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn hostname_and_domain_follow_the_pod() {
        let plain = pod(serde_json::json!({}));
        assert_eq!(
            hostname_and_domain(&plain, "cluster.local").unwrap(),
            ("web".to_string(), None)
        );
        let named = pod(serde_json::json!({"hostname": "db-0", "subdomain": "db"}));
        assert_eq!(
            hostname_and_domain(&named, "cluster.local").unwrap(),
            (
                "db-0".to_string(),
                Some("db.shop.svc.cluster.local".to_string())
            )
        );
        let fqdn = pod(serde_json::json!({
            "hostname": "db-0", "subdomain": "db", "setHostnameAsFQDN": true
        }));
        assert_eq!(
            hostname_and_domain(&fqdn, "cluster.local").unwrap().0,
            "db-0.db.shop.svc.cluster.local"
        );
        let too_long = pod(serde_json::json!({
            "hostname": "h".repeat(40), "subdomain": "s".repeat(20), "setHostnameAsFQDN": true
        }));
        assert!(hostname_and_domain(&too_long, "cluster.local")
            .unwrap_err()
            .contains("too long"));
        let mut long_name = plain.clone();
        long_name.metadata.name = Some(format!("{}-{}", "x".repeat(62), "y".repeat(5)));
        assert_eq!(
            hostname_and_domain(&long_name, "").unwrap().0,
            "x".repeat(62),
            "cut to 63 characters, then the trailing '-' trimmed"
        );
    }
}
