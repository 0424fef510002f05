//! The files a sandbox keeps in its state directory and lends its containers: `hosts`,
//! `hostname` and `resolv.conf` (bind-mounted over the container's `/etc` files), and the
//! helpers that write them.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use super::error::io;
use super::SandboxError;

/// The pod's `/etc/hosts`, bind-mounted into every container.
pub const HOSTS: &str = "hosts";
/// The pod's `/etc/hostname`.
pub const HOSTNAME: &str = "hostname";
/// The pod's `/etc/resolv.conf`, a copy of the host's.
pub const RESOLV_CONF: &str = "resolv.conf";

/// The text of the pod's `/etc/hosts`: loopback names, and the pod's own name on its IP once
/// the network has given it one.
pub fn hosts(hostname: &str, ip: Option<IpAddr>) -> String {
    let mut text = String::from(
        "# Written by peapod for this pod; changes are lost when the pod's IP changes.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\n\
         ff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    if let Some(ip) = ip {
        text.push_str(&format!("{ip}\t{hostname}\n"));
    }
    text
}

/// Write the three files into `dir` (a fresh sandbox directory). `host_resolv_conf` is copied;
/// a host without one gives the pod an empty file, so the bind mount still has a source.
pub fn write_all(
    dir: &Path,
    hostname: &str,
    ip: Option<IpAddr>,
    host_resolv_conf: &Path,
) -> Result<(), SandboxError> {
    let resolv = match fs::read(host_resolv_conf) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io("read", host_resolv_conf)(e)),
    };
    write_atomic(&dir.join(RESOLV_CONF), &resolv)?;
    write_atomic(&dir.join(HOSTNAME), format!("{hostname}\n").as_bytes())?;
    write_atomic(&dir.join(HOSTS), hosts(hostname, ip).as_bytes())
}

/// Rewrite `hosts` for a new pod IP *in place*: running containers have the file's inode
/// bind-mounted, so a renamed replacement would never reach them.
pub fn rewrite_hosts(dir: &Path, hostname: &str, ip: Option<IpAddr>) -> Result<(), SandboxError> {
    let path = dir.join(HOSTS);
    fs::write(&path, hosts(hostname, ip)).map_err(io("write", &path))
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

    #[test]
    fn hosts_names_the_pod_only_once_it_has_an_ip() {
        let without = hosts("web", None);
        assert!(without.contains("127.0.0.1\tlocalhost\n"));
        assert!(!without.contains("web"));
        let with = hosts("web", Some("10.88.0.7".parse().unwrap()));
        assert!(with.ends_with("10.88.0.7\tweb\n"), "{with}");
    }

    #[test]
    fn files_are_written_and_a_missing_host_resolv_conf_gives_an_empty_one() {
        let tmp = tempfile::tempdir().unwrap();
        let host = tmp.path().join("host-resolv.conf");
        write_all(tmp.path(), "web", None, &host).unwrap();
        assert_eq!(
            fs::read_to_string(tmp.path().join(RESOLV_CONF)).unwrap(),
            ""
        );
        assert_eq!(
            fs::read_to_string(tmp.path().join(HOSTNAME)).unwrap(),
            "web\n"
        );

        fs::write(&host, "nameserver 192.0.2.1\n").unwrap();
        write_all(tmp.path(), "web", None, &host).unwrap();
        assert_eq!(
            fs::read_to_string(tmp.path().join(RESOLV_CONF)).unwrap(),
            "nameserver 192.0.2.1\n"
        );
    }

    #[test]
    fn rewriting_hosts_keeps_the_inode_containers_have_mounted() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        write_all(tmp.path(), "web", None, &tmp.path().join("none")).unwrap();
        let before = fs::metadata(tmp.path().join(HOSTS)).unwrap().ino();
        rewrite_hosts(tmp.path(), "web", Some("10.88.0.9".parse().unwrap())).unwrap();
        let after = fs::metadata(tmp.path().join(HOSTS)).unwrap();
        assert_eq!(after.ino(), before);
        let text = fs::read_to_string(tmp.path().join(HOSTS)).unwrap();
        assert!(text.contains("10.88.0.9\tweb"), "{text}");
    }
}
