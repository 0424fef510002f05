//! The files a sandbox keeps in its state directory and lends its containers: `hosts`,
//! `hostname` and `resolv.conf` (bind-mounted over the container's `/etc` files), and the
//! helpers that write them.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::io;
use super::{Paths, SandboxConfig, SandboxError};

/// The pod's `/etc/hosts`, bind-mounted into every container.
pub const HOSTS: &str = "hosts";
/// The pod's `/etc/hostname`.
pub const HOSTNAME: &str = "hostname";
/// The pod's `/etc/resolv.conf`, as the caller composed it or a copy of the host's.
pub const RESOLV_CONF: &str = "resolv.conf";

/// The first line of a hosts file the kubelet writes, as upstream marks it.
const MANAGED: &str = "# Kubernetes-managed hosts file.\n";
/// The first line of a `hostNetwork` pod's hosts file (the node's, copied).
const MANAGED_HOST_NETWORK: &str = "# Kubernetes-managed hosts file (host network).\n";

/// One extra `/etc/hosts` line: an address and the names it answers to (`hostAliases`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostAlias {
    /// The address, as written in the pod.
    pub ip: String,
    /// The names.
    pub hostnames: Vec<String>,
}

/// The text of a pod's own `/etc/hosts`, as the upstream kubelet writes it: the loopback and
/// IPv6 boilerplate, the pod's name on each of its IPs (`<ip>\t<hostname>.<domain>\t<hostname>`
/// when it has a domain), then its host aliases.
pub fn hosts(
    hostname: &str,
    domain: Option<&str>,
    ips: &[IpAddr],
    aliases: &[HostAlias],
) -> String {
    let mut text = String::from(MANAGED);
    text.push_str(
        "127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    for ip in ips {
        match domain.filter(|d| !d.is_empty()) {
            Some(domain) => text.push_str(&format!("{ip}\t{hostname}.{domain}\t{hostname}\n")),
            None => text.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    text.push_str(&alias_lines(aliases));
    text
}

/// A `hostNetwork` pod's `/etc/hosts`: the node's own, then the pod's host aliases.
pub fn node_hosts(node: &str, aliases: &[HostAlias]) -> String {
    let mut text = String::from(MANAGED_HOST_NETWORK);
    text.push_str(node);
    if !node.is_empty() && !node.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&alias_lines(aliases));
    text
}

/// The host aliases' section: nothing without aliases, else a blank line, a comment and one
/// line per alias with its names separated by tabs.
fn alias_lines(aliases: &[HostAlias]) -> String {
    if aliases.is_empty() {
        return String::new();
    }
    let mut text = String::from("\n# Entries added by HostAliases.\n");
    for alias in aliases {
        text.push_str(&format!("{}\t{}\n", alias.ip, alias.hostnames.join("\t")));
    }
    text
}

/// The pod's `/etc/hosts` for its config and IP.
fn hosts_for(
    config: &SandboxConfig,
    ip: Option<IpAddr>,
    paths: &Paths,
) -> Result<String, SandboxError> {
    if config.namespaces.host_network {
        let node = read_or_empty(&paths.hosts)?;
        return Ok(node_hosts(
            &String::from_utf8_lossy(&node),
            &config.host_aliases,
        ));
    }
    let ips: Vec<IpAddr> = ip.into_iter().collect();
    Ok(hosts(
        &config.hostname,
        config.domain.as_deref(),
        &ips,
        &config.host_aliases,
    ))
}

/// A host file's bytes; a missing one reads as empty, so the bind mount still has a source.
fn read_or_empty(path: &Path) -> Result<Vec<u8>, SandboxError> {
    match fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io("read", path)(e)),
    }
}

/// Write the three files into `dir` (a fresh sandbox directory): `resolv.conf` as the config
/// has it, else a copy of the host's (empty if the host has none); `hostname`; `hosts`.
pub fn write_all(
    dir: &Path,
    config: &SandboxConfig,
    ip: Option<IpAddr>,
    paths: &Paths,
) -> Result<(), SandboxError> {
    let resolv = match &config.resolv_conf {
        Some(text) => text.as_bytes().to_vec(),
        None => read_or_empty(&paths.resolv_conf)?,
    };
    write_atomic(&dir.join(RESOLV_CONF), &resolv)?;
    write_atomic(
        &dir.join(HOSTNAME),
        format!("{}\n", config.hostname).as_bytes(),
    )?;
    write_atomic(&dir.join(HOSTS), hosts_for(config, ip, paths)?.as_bytes())
}

/// Rewrite `hosts` for a new pod IP *in place*: running containers have the file's inode
/// bind-mounted, so a renamed replacement would never reach them.
pub fn rewrite_hosts(
    dir: &Path,
    config: &SandboxConfig,
    ip: Option<IpAddr>,
) -> Result<(), SandboxError> {
    let path = dir.join(HOSTS);
    let ips: Vec<IpAddr> = ip.into_iter().collect();
    let text = hosts(
        &config.hostname,
        config.domain.as_deref(),
        &ips,
        &config.host_aliases,
    );
    fs::write(&path, text).map_err(io("write", &path))
}

/// Write `bytes` to a temp file next to `path` and rename it into place, so a reader (or a
/// crash) never sees half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SandboxError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.tmp"));
    let mut file = fs::File::create(&temp).map_err(io("create", &temp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io("write", &temp))?;
    fs::rename(&temp, path).map_err(io("rename into place", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> Paths {
        Paths {
            resolv_conf: dir.join("host-resolv.conf"),
            hosts: dir.join("host-hosts"),
            ..Paths::default()
        }
    }

    fn config() -> SandboxConfig {
        SandboxConfig {
            hostname: "web".into(),
            ..SandboxConfig::default()
        }
    }

    #[test]
    fn hosts_is_upstreams_and_names_the_pod_only_once_it_has_an_ip() {
        let without = hosts("web", None, &[], &[]);
        assert_eq!(
            without,
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
             fe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
        );
        let with = hosts("web", None, &["10.88.0.7".parse().unwrap()], &[]);
        assert!(with.ends_with("ip6-allrouters\n10.88.0.7\tweb\n"), "{with}");
    }

    #[test]
    fn a_domain_names_the_pod_by_fqdn_and_aliases_follow_their_comment() {
        let ips = ["10.88.0.7".parse().unwrap(), "fd00::7".parse().unwrap()];
        let aliases = [
            HostAlias {
                ip: "127.0.0.1".into(),
                hostnames: vec!["foo.local".into(), "bar.local".into()],
            },
            HostAlias {
                ip: "10.1.2.3".into(),
                hostnames: vec!["foo.remote".into()],
            },
        ];
        let text = hosts("web", Some("sub.default.svc.cluster.local"), &ips, &aliases);
        assert!(
            text.ends_with(
                "10.88.0.7\tweb.sub.default.svc.cluster.local\tweb\n\
                 fd00::7\tweb.sub.default.svc.cluster.local\tweb\n\
                 \n# Entries added by HostAliases.\n\
                 127.0.0.1\tfoo.local\tbar.local\n10.1.2.3\tfoo.remote\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_host_network_pod_gets_the_nodes_hosts_and_its_aliases() {
        let aliases = [HostAlias {
            ip: "192.0.2.9".into(),
            hostnames: vec!["db".into()],
        }];
        assert_eq!(
            node_hosts("127.0.0.1 localhost", &aliases),
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n\
             \n# Entries added by HostAliases.\n192.0.2.9\tdb\n"
        );
        let tmp = tempfile::tempdir().unwrap();
        let paths = paths(tmp.path());
        fs::write(&paths.hosts, "10.0.0.1 node\n").unwrap();
        let mut config = config();
        config.namespaces.host_network = true;
        write_all(tmp.path(), &config, None, &paths).unwrap();
        let text = fs::read_to_string(tmp.path().join(HOSTS)).unwrap();
        assert!(text.ends_with("\n10.0.0.1 node\n"), "{text}");
    }

    #[test]
    fn files_are_written_and_a_missing_host_resolv_conf_gives_an_empty_one() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = paths(tmp.path());
        write_all(tmp.path(), &config(), None, &paths).unwrap();
        let read = |name| fs::read_to_string(tmp.path().join(name)).unwrap();
        assert_eq!(read(RESOLV_CONF), "");
        assert_eq!(read(HOSTNAME), "web\n");

        fs::write(&paths.resolv_conf, "nameserver 192.0.2.1\n").unwrap();
        write_all(tmp.path(), &config(), None, &paths).unwrap();
        assert_eq!(read(RESOLV_CONF), "nameserver 192.0.2.1\n");

        let mut composed = config();
        composed.resolv_conf = Some("nameserver 10.96.0.10\n".into());
        write_all(tmp.path(), &composed, None, &paths).unwrap();
        assert_eq!(read(RESOLV_CONF), "nameserver 10.96.0.10\n");
    }

    #[test]
    fn rewriting_hosts_keeps_the_inode_containers_have_mounted() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        write_all(tmp.path(), &config(), None, &paths(tmp.path())).unwrap();
        let before = fs::metadata(tmp.path().join(HOSTS)).unwrap().ino();
        rewrite_hosts(tmp.path(), &config(), Some("10.88.0.9".parse().unwrap())).unwrap();
        let after = fs::metadata(tmp.path().join(HOSTS)).unwrap();
        assert_eq!(after.ino(), before);
        let text = fs::read_to_string(tmp.path().join(HOSTS)).unwrap();
        assert!(text.contains("10.88.0.9\tweb"), "{text}");
    }
}
