//! `linux.sysctl`: which keys a container may set, and where they live under `/proc/sys`.
//!
//! As runc: only keys of a namespace the container has of its own are accepted, since any
//! other would change the host. IPC keys (`kernel.shm*`, `kernel.msg*`, `kernel.sem*`,
//! `fs.mqueue.*`) need an IPC namespace; `net.*` a network namespace that is not the
//! runtime's own (a joined path naming the runtime's namespace is the host's);
//! `kernel.domainname` a UTS namespace; `user.*` a user namespace. `kernel.hostname` is
//! refused, since the OCI `hostname` field sets it. Keys may be written with dots or, as in
//! `/proc/sys`, with slashes.

use std::os::fd::AsFd;
use std::path::PathBuf;

use oci_spec::runtime::{Linux, LinuxNamespaceType};

use crate::namespace::Namespaces;

/// The namespace a key belongs to, for a key in dotted form; None: not namespaced.
fn namespace_of(key: &str) -> Option<LinuxNamespaceType> {
    const IPC: &[&str] = &["kernel.shm", "kernel.msg", "kernel.sem", "fs.mqueue."];
    if IPC.iter().any(|prefix| key.starts_with(prefix)) {
        Some(LinuxNamespaceType::Ipc)
    } else if key.starts_with("net.") {
        Some(LinuxNamespaceType::Network)
    } else if key == "kernel.domainname" {
        Some(LinuxNamespaceType::Uts)
    } else if key.starts_with("user.") {
        Some(LinuxNamespaceType::User)
    } else {
        None
    }
}

/// Check `key` against the namespaces the container has (`has`), and give its path under
/// `/proc/sys`. A key with slashes is a path already (and may hold dots, as in
/// `net/ipv4/conf/eth0.1/forwarding`); a dotted key has its dots turned into slashes.
pub fn path_of(key: &str, has: impl Fn(LinuxNamespaceType) -> bool) -> Result<PathBuf, String> {
    let path = if key.contains('/') {
        key.trim_start_matches('/').to_owned()
    } else {
        key.replace('.', "/")
    };
    let invalid = path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..");
    if invalid {
        return Err(format!("linux.sysctl: invalid key {key:?}"));
    }
    let dotted = path.replace('/', ".");
    if dotted == "kernel.hostname" {
        return Err(format!(
            "linux.sysctl: {key} is refused: the hostname field sets it"
        ));
    }
    match namespace_of(&dotted) {
        Some(kind) if has(kind) => Ok(PathBuf::from(path)),
        Some(kind) => Err(format!(
            "linux.sysctl: {key} needs a {kind:?} namespace of the container's own"
        )),
        None => Err(format!(
            "linux.sysctl: {key} is not namespaced: setting it would change the host"
        )),
    }
}

/// Check every key of `linux.sysctl` before the container is made (in the runtime, which can
/// still tell its own network namespace from the container's).
pub fn check(linux: &Linux, namespaces: &Namespaces) -> Result<(), String> {
    let Some(sysctl) = linux.sysctl().as_ref() else {
        return Ok(());
    };
    let host_net = joins_own_netns(namespaces);
    for key in sysctl.keys() {
        path_of(key, |kind| namespaces.has(kind))?;
        let dotted = key.replace('/', ".");
        if host_net && dotted.starts_with("net.") {
            return Err(format!(
                "linux.sysctl: {key} is refused: the network namespace joined is the host's"
            ));
        }
    }
    Ok(())
}

/// Whether the container joins (by path) the network namespace the runtime runs in.
fn joins_own_netns(namespaces: &Namespaces) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(own) = std::fs::metadata("/proc/self/ns/net") else {
        return false;
    };
    namespaces
        .joined(LinuxNamespaceType::Network)
        .and_then(|fd| nix::sys::stat::fstat(fd.as_fd()).ok())
        .is_some_and(|st| st.st_ino == own.ino() && st.st_dev == own.dev())
}

#[cfg(test)]
mod tests {
    use super::*;
    use LinuxNamespaceType::*;

    fn with(kinds: &[LinuxNamespaceType]) -> impl Fn(LinuxNamespaceType) -> bool + '_ {
        move |k| kinds.contains(&k)
    }

    #[test]
    fn keys_need_the_namespace_they_belong_to() {
        let all = [Ipc, Network, Uts, User];
        for key in [
            "kernel.shmmax",
            "kernel.msgmnb",
            "kernel.sem",
            "fs.mqueue.queues_max",
            "net.ipv4.ip_forward",
            "kernel.domainname",
            "user.max_user_namespaces",
        ] {
            assert!(path_of(key, with(&all)).is_ok(), "{key}");
            let err = path_of(key, with(&[])).unwrap_err();
            assert!(err.contains("namespace of the container's own"), "{err}");
        }
        let err = path_of("kernel.pid_max", with(&all)).unwrap_err();
        assert!(err.contains("not namespaced"), "{err}");
        let err = path_of("vm.swappiness", with(&all)).unwrap_err();
        assert!(err.contains("not namespaced"), "{err}");
    }

    #[test]
    fn hostname_is_left_to_the_hostname_field() {
        let err = path_of("kernel.hostname", with(&[Uts])).unwrap_err();
        assert!(err.contains("hostname field"), "{err}");
    }

    #[test]
    fn slashed_keys_are_paths_and_escapes_are_refused() {
        assert_eq!(
            path_of("net/ipv4/conf/eth0.1/forwarding", with(&[Network])).unwrap(),
            PathBuf::from("net/ipv4/conf/eth0.1/forwarding")
        );
        assert_eq!(
            path_of("net.ipv4.ip_forward", with(&[Network])).unwrap(),
            PathBuf::from("net/ipv4/ip_forward")
        );
        for bad in ["net/../kernel/pid_max", "net..ipv4", "net.ipv4.", "net/./x"] {
            let err = path_of(bad, with(&[Network])).unwrap_err();
            assert!(err.contains("invalid key"), "{bad}: {err}");
        }
    }
}
