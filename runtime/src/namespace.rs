//! Linux namespaces from `linux.namespaces`: which to create with the container's
//! `clone`, and which to join by path.
//!
//! Paths are opened by the runtime before it clones, so they resolve in the host's
//! mount namespace; the child then joins through the open fds, user namespace first
//! (it grants the rights to join the others).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use nix::fcntl::{open, OFlag};
use nix::sched::{setns, CloneFlags};
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

/// Why namespaces could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    /// The same namespace type appears twice.
    #[error("linux.namespaces: {0} namespace listed more than once")]
    Duplicate(&'static str),
    /// The clock offsets of a new time namespace could not be set.
    #[error("linux.timeOffsets: {0}")]
    Offsets(String),
    /// A namespace path could not be opened or is not a namespace of that type.
    #[error("linux.namespaces: {kind} namespace path {path}: {errno}")]
    Open {
        /// The namespace type.
        kind: &'static str,
        /// The path from the config.
        path: PathBuf,
        /// What the OS said.
        errno: nix::errno::Errno,
    },
    /// `setns` or `unshare` failed.
    #[error("{op} {kind} namespace: {errno}")]
    Enter {
        /// `setns` or `unshare`.
        op: &'static str,
        /// The namespace type.
        kind: &'static str,
        /// What the OS said.
        errno: nix::errno::Errno,
    },
}

/// The short name used in /proc/PID/ns.
pub fn proc_name(kind: LinuxNamespaceType) -> &'static str {
    match kind {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

fn flag(kind: LinuxNamespaceType) -> CloneFlags {
    CloneFlags::from_bits_retain(kind as i32)
}

/// Every namespace type, in the order a process joins them: user first, mount last
/// but one (so later joins still see the host's /proc), pid (children only).
pub const JOIN_ORDER: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::Pid,
];

/// A namespace to join, already opened.
#[derive(Debug)]
pub struct Join {
    /// The type.
    pub kind: LinuxNamespaceType,
    /// The open namespace file.
    pub fd: OwnedFd,
}

/// The container's namespace plan.
#[derive(Debug)]
pub struct Namespaces {
    new: CloneFlags,
    joins: Vec<Join>,
}

impl Namespaces {
    /// Read `linux.namespaces`, opening every path to join now.
    pub fn from_spec(list: &[LinuxNamespace]) -> Result<Namespaces, NamespaceError> {
        let mut ns = Namespaces {
            new: CloneFlags::empty(),
            joins: Vec::new(),
        };
        let mut seen = CloneFlags::empty();
        for entry in list {
            let kind = entry.typ();
            let name = proc_name(kind);
            if seen.contains(flag(kind)) {
                return Err(NamespaceError::Duplicate(name));
            }
            seen |= flag(kind);
            match entry.path() {
                Some(path) if !path.as_os_str().is_empty() => {
                    let fd = open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
                        .map_err(|errno| NamespaceError::Open {
                            kind: name,
                            path: path.clone(),
                            errno,
                        })?;
                    ns.joins.push(Join { kind, fd });
                }
                _ => ns.new |= flag(kind),
            }
        }
        ns.joins
            .sort_by_key(|j| JOIN_ORDER.iter().position(|k| *k == j.kind));
        Ok(ns)
    }

    /// A plan that joins the given namespace files (for `exec`).
    pub fn joining(joins: Vec<Join>) -> Namespaces {
        let mut joins = joins;
        joins.sort_by_key(|j| JOIN_ORDER.iter().position(|k| *k == j.kind));
        Namespaces {
            new: CloneFlags::empty(),
            joins,
        }
    }

    /// Whether the container gets a new namespace of this type.
    pub fn creates(&self, kind: LinuxNamespaceType) -> bool {
        self.new.contains(flag(kind))
    }

    /// The namespaces the container's init must be in before it is cloned, as (type flag,
    /// file) in joining order. A user namespace joined by path comes alone: the others
    /// are joined from inside it, and the new ones are created in it. With a new user
    /// namespace, every namespace joined by path but pid and time (the runtime enters
    /// those for its children) is joined first, with the host's privileges, as runc does:
    /// from inside the new user namespace the kernel would refuse them. Empty otherwise.
    pub fn before_clone(&self) -> Vec<(CloneFlags, BorrowedFd<'_>)> {
        let joined_user = self
            .joins
            .iter()
            .any(|j| j.kind == LinuxNamespaceType::User);
        if !joined_user && !self.creates(LinuxNamespaceType::User) {
            return Vec::new();
        }
        self.joins
            .iter()
            .filter(|j| !for_children(j.kind))
            .filter(|j| !joined_user || j.kind == LinuxNamespaceType::User)
            .map(|j| (flag(j.kind), j.fd.as_fd()))
            .collect()
    }

    /// Whether the container has a namespace of its own of this type, new or joined.
    pub fn has(&self, kind: LinuxNamespaceType) -> bool {
        self.creates(kind) || self.joins.iter().any(|j| j.kind == kind)
    }

    /// The namespace file the container joins for this type, if it joins one by path.
    pub fn joined(&self, kind: LinuxNamespaceType) -> Option<&OwnedFd> {
        self.joins.iter().find(|j| j.kind == kind).map(|j| &j.fd)
    }

    /// Flags for the container's `clone`. The cgroup namespace is left out: it is
    /// unshared only after the runtime has moved the child into its cgroup, so the
    /// namespace is rooted there. The time namespace is left out too: `clone` cannot
    /// take its flag; [`Namespaces::enter_for_children`] unshares it instead.
    pub fn clone_flags(&self) -> CloneFlags {
        self.new - CloneFlags::CLONE_NEWCGROUP - CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)
    }

    /// Runtime side, just before clone: enter the pid and time namespaces the child
    /// must start in. Both only apply to children created from now on, so the
    /// runtime's own view is unchanged. A new time namespace gets `offsets`
    /// (clock name, seconds, nanoseconds) before any process is in it.
    pub fn enter_for_children(&self, offsets: &[(String, i64, u32)]) -> Result<(), NamespaceError> {
        for j in self.joins.iter().filter(|j| for_children(j.kind)) {
            enter(j)?;
        }
        if self.creates(LinuxNamespaceType::Time) {
            nix::sched::unshare(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)).map_err(
                |errno| NamespaceError::Enter {
                    op: "unshare",
                    kind: "time",
                    errno,
                },
            )?;
            let text: String = offsets
                .iter()
                .map(|(clock, secs, nanos)| format!("{clock} {secs} {nanos}\n"))
                .collect();
            if !text.is_empty() {
                std::fs::write("/proc/self/timens_offsets", text)
                    .map_err(|e| NamespaceError::Offsets(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Child side: join every namespace given by path but pid and time (the runtime
    /// entered those for it), in [`JOIN_ORDER`].
    pub fn join_all(&self) -> Result<(), NamespaceError> {
        for j in self.joins.iter().filter(|j| !for_children(j.kind)) {
            enter(j)?;
        }
        Ok(())
    }

    /// Child side, once in its cgroup: create the cgroup namespace if asked for.
    pub fn unshare_cgroup(&self) -> Result<(), NamespaceError> {
        if self.creates(LinuxNamespaceType::Cgroup) {
            nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).map_err(|errno| {
                NamespaceError::Enter {
                    op: "unshare",
                    kind: "cgroup",
                    errno,
                }
            })?;
        }
        Ok(())
    }

    /// The fds the child must keep open until it has joined.
    pub fn fds(&self) -> Vec<i32> {
        self.joins.iter().map(|j| j.fd.as_raw_fd()).collect()
    }
}

/// Namespaces whose `setns`/`unshare` applies to the caller's future children only.
fn for_children(kind: LinuxNamespaceType) -> bool {
    matches!(kind, LinuxNamespaceType::Pid | LinuxNamespaceType::Time)
}

fn enter(j: &Join) -> Result<(), NamespaceError> {
    // Already there: the init may have been cloned inside (see `Namespaces::before_clone`),
    // and setns(2) refuses one's own user namespace, or any namespace the current user
    // namespace does not own.
    if is_current(&j.fd, proc_name(j.kind)) {
        return Ok(());
    }
    setns(&j.fd, flag(j.kind)).map_err(|errno| NamespaceError::Enter {
        op: "setns",
        kind: proc_name(j.kind),
        errno,
    })
}

/// Whether the namespace file `fd` is this process's namespace `name` (as in /proc/self/ns).
fn is_current(fd: &OwnedFd, name: &str) -> bool {
    let ours = std::fs::metadata(format!("/proc/self/ns/{name}"));
    let theirs = nix::sys::stat::fstat(fd.as_fd());
    match (ours, theirs) {
        (Ok(ours), Ok(theirs)) => {
            use std::os::unix::fs::MetadataExt;
            ours.ino() == theirs.st_ino && ours.dev() == theirs.st_dev
        }
        _ => false,
    }
}

/// The namespace a sysctl key (dotted) is confined to, if any: the IPC namespace's
/// `kernel.shm*`, `kernel.msg*`, `kernel.sem*` and `fs.mqueue.*`, the network
/// namespace's `net.*`, the UTS namespace's host and domain names. Any other key is
/// global: setting it from a container would change the host.
pub fn of_sysctl(key: &str) -> Option<LinuxNamespaceType> {
    const IPC: &[&str] = &["kernel.shm", "kernel.msg", "kernel.sem", "fs.mqueue."];
    if IPC.iter().any(|prefix| key.starts_with(prefix)) {
        Some(LinuxNamespaceType::Ipc)
    } else if key.starts_with("net.") {
        Some(LinuxNamespaceType::Network)
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some(LinuxNamespaceType::Uts)
    } else {
        None
    }
}

/// Open the namespaces of a running process that differ from ours (for `exec`).
pub fn of_process(pid: i32) -> Result<Vec<Join>, NamespaceError> {
    let mut joins = Vec::new();
    for kind in JOIN_ORDER {
        let name = proc_name(kind);
        let theirs = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
        let ours = PathBuf::from(format!("/proc/self/ns/{name}"));
        let (Ok(a), Ok(b)) = (std::fs::metadata(&theirs), std::fs::metadata(&ours)) else {
            continue; // the kernel lacks this namespace type
        };
        use std::os::unix::fs::MetadataExt;
        if a.ino() == b.ino() && a.dev() == b.dev() {
            continue;
        }
        let fd =
            open(&theirs, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(|errno| {
                NamespaceError::Open {
                    kind: name,
                    path: theirs.clone(),
                    errno,
                }
            })?;
        joins.push(Join { kind, fd });
    }
    Ok(joins)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(kind: LinuxNamespaceType, path: Option<&str>) -> LinuxNamespace {
        let mut n = LinuxNamespace::default();
        n.set_typ(kind);
        n.set_path(path.map(PathBuf::from));
        n
    }

    #[test]
    fn new_namespaces_become_clone_flags_without_cgroup() {
        let plan = Namespaces::from_spec(&[
            ns(LinuxNamespaceType::Pid, None),
            ns(LinuxNamespaceType::Mount, None),
            ns(LinuxNamespaceType::Cgroup, None),
        ])
        .unwrap();
        assert_eq!(
            plan.clone_flags(),
            CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS
        );
        assert!(plan.creates(LinuxNamespaceType::Cgroup));
        assert!(!plan.has(LinuxNamespaceType::Network));
    }

    #[test]
    fn duplicates_and_bad_paths_are_errors() {
        let err = Namespaces::from_spec(&[
            ns(LinuxNamespaceType::Pid, None),
            ns(LinuxNamespaceType::Pid, None),
        ])
        .unwrap_err();
        assert!(err
            .to_string()
            .contains("pid namespace listed more than once"));
        let err =
            Namespaces::from_spec(&[ns(LinuxNamespaceType::Network, Some("/nonexistent/ns"))])
                .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ns"), "{err}");
    }

    #[test]
    fn what_is_joined_before_the_clone() {
        let net = || ns(LinuxNamespaceType::Network, Some("/proc/self/ns/net"));
        let pid = || ns(LinuxNamespaceType::Pid, Some("/proc/self/ns/pid"));
        let kinds = |list: &[LinuxNamespace]| -> Vec<CloneFlags> {
            let plan = Namespaces::from_spec(list).unwrap();
            plan.before_clone().iter().map(|(k, _)| *k).collect()
        };
        // No user namespace: the init joins everything itself.
        assert_eq!(kinds(&[net(), pid()]), []);
        // A new one: the others first, with the host's privileges (pid is for children).
        let new_user = ns(LinuxNamespaceType::User, None);
        assert_eq!(kinds(&[new_user, net(), pid()]), [CloneFlags::CLONE_NEWNET]);
        // A joined one: only it; the rest is joined from inside.
        let user = ns(LinuxNamespaceType::User, Some("/proc/self/ns/user"));
        assert_eq!(kinds(&[net(), user]), [CloneFlags::CLONE_NEWUSER]);
    }

    #[test]
    fn joins_are_ordered_user_first() {
        let plan = Namespaces::from_spec(&[
            ns(LinuxNamespaceType::Network, Some("/proc/self/ns/net")),
            ns(LinuxNamespaceType::User, Some("/proc/self/ns/user")),
        ])
        .unwrap();
        assert_eq!(plan.joins[0].kind, LinuxNamespaceType::User);
        assert_eq!(plan.fds().len(), 2);
    }
}
