//! Pod sandboxes: the network, IPC and UTS namespaces and the cgroup that a pod's containers
//! share, and the OCI bundles of the containers that join them.
//!
//! A CRI-shaped API with plain types: [`Sandbox::create`] from a [`SandboxConfig`], then
//! [`Sandbox::write_bundle`] for each [`ContainerConfig`] and any OCI runtime to run the
//! bundle; [`Sandbox::remove`] once the containers are gone. Records live in the state
//! directory, so [`Sandbox::load`] and [`Sandbox::list`] find the sandboxes again after the
//! caller restarts. All OS locations come in [`Paths`], so tests use throwaway ones.
//!
//! # What a sandbox is on the host
//! - the network namespace, pinned at `<netns dir>/<name>` (`/run/netns`) exactly as
//!   `ip netns add` pins one, so `ip netns list` and `ip netns exec` see it; `lo` is up;
//! - the IPC and UTS namespaces (hostname = the pod's), pinned at `<state dir>/<name>/ipc`
//!   and `.../uts`;
//! - the pod cgroup `kubepods[/burstable|/besteffort]/pod<uid>` in every hierarchy (see
//!   [`Qos`]); each container's cgroup is `<pod cgroup>/<container id>`;
//! - `<state dir>/<name>/`: `sandbox.json` (the record), `hosts`, `hostname`, `resolv.conf`
//!   (bind-mounted into every container) and `containers/<id>/config.json` (the bundles);
//! - for `shareProcessNamespace` only, a [`PidHolder`] process in `<pod cgroup>/pidns-init`.
//!
//! The name is `<namespace>_<pod name>_<uid>`, as the pod's log directory is named.
//!
//! # Namespaces are held by bind mounts, not by a pause process
//! A pinned namespace lives as long as its bind mount, with no process to start, supervise,
//! reap or restart. That is why it was chosen:
//! - *Restarts*: the kubelet (or the whole runtime) can restart or crash at any time and the
//!   pods keep their network and hostname; there is no pause process that could die and take
//!   the pod's IP with it, and nothing to re-adopt. Only a reboot ends a sandbox (and then the
//!   record names pins that are gone; [`Sandbox::remove`] cleans it up all the same).
//! - *cgroup v2*: the pod cgroup holds no process itself, so the "no internal processes" rule
//!   never stops controllers from being enabled for the container cgroups below it.
//! - *Speed and memory*: no fork/exec and no image for a pause binary per pod.
//!
//! What it means:
//! - */proc inspection*: until a container runs, no `/proc/<pid>/ns` shows the pod's
//!   namespaces. Look at the pins instead: `stat -L -c %i /run/netns/<name>` gives the inode
//!   that `readlink /proc/<pid>/ns/net` shows as `net:[<inode>]` in each container;
//!   `ip netns exec <name> ...` and `nsenter --net=/run/netns/<name> --uts=<state>/uts` enter
//!   them. `lsns` lists namespaces by process, so it only shows them through the containers.
//! - *PID namespace sharing* (`shareProcessNamespace: true`) is not possible this way: a PID
//!   namespace whose first process has exited accepts no new processes, so it needs a living
//!   init. Only the pods that ask for it get one (see [`PidHolder`]); otherwise each container
//!   has its own PID namespace.
//! - *POSIX shared memory*: the IPC namespace is shared (System V IPC, message queues), but
//!   each container mounts its own `/dev/shm` tmpfs, so POSIX shm objects are not yet shared
//!   between containers.
//!
//! # Namespaces shared with the node
//! [`NamespaceOptions`] asks for the node's network (and with it UTS) namespace
//! (`hostNetwork`), IPC namespace (`hostIPC`) or PID namespace (`hostPID`): nothing is made or
//! pinned for those, and containers join the node's. The node's network namespace is the one
//! [`NamespaceOptions::node_netns`] names (a kubelet running its pod networks in a namespace
//! of their own), else the caller's.
//!
//! Not here yet: the pod network (CNI gives the IP later, see [`Sandbox::set_ip`]) and the
//! supervision of container processes.

mod cgroup;
mod error;
mod files;
mod namespaces;
mod pidns;
mod resources;
mod security;
mod spec;

#[cfg(test)]
mod tests;

use std::fs;
use std::io::ErrorKind;
use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use self::cgroup::{pod_path, Qos};
pub use error::SandboxError;
pub use files::HostAlias;
pub use namespaces::{NodeNamespaces, Pins};
pub use pidns::PidHolder;
pub use resources::Resources;
pub use security::{sysctl_scope, Security, SysctlScope, DEFAULT_CAPABILITIES};
pub use spec::{
    ContainerConfig, Mount, Propagation, User, CONTAINER_NAME_ANNOTATION, POD_NAMESPACE_ANNOTATION,
    POD_NAME_ANNOTATION, POD_UID_ANNOTATION, SANDBOX_ANNOTATION,
};

use crate::cgroup::{Cgroup, Host};
use error::io;
use namespaces::Pinner;

/// The record's file name in the sandbox's directory.
const RECORD: &str = "sandbox.json";
/// The directory of the containers' bundles in the sandbox's directory.
const BUNDLES: &str = "containers";
/// The longest hostname the kernel accepts.
const HOST_NAME_MAX: usize = 64;

/// The OS locations a sandbox uses. [`Paths::default`] gives the real ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Where network namespaces are pinned, normally `/run/netns` (where `ip netns` looks).
    pub netns_dir: PathBuf,
    /// Where sandboxes keep their records, files and bundles, normally
    /// `/run/peapod/sandboxes`. Under `/run` because a sandbox does not survive a reboot.
    pub state_dir: PathBuf,
    /// The host's cgroup root, mount table and own cgroup.
    pub cgroup: Host,
    /// The host's resolver configuration that pods get a copy of, normally `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
    /// The host's hosts file that `hostNetwork` pods get a copy of, normally `/etc/hosts`.
    pub hosts: PathBuf,
    /// The kubelet's `--cgroup-root`: `kubepods` is made below it in every hierarchy,
    /// normally `/`.
    pub cgroup_root: PathBuf,
}

impl Default for Paths {
    fn default() -> Paths {
        Paths {
            netns_dir: PathBuf::from("/run/netns"),
            state_dir: PathBuf::from("/run/peapod/sandboxes"),
            cgroup: Host::default(),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            hosts: PathBuf::from("/etc/hosts"),
            cgroup_root: PathBuf::from("/"),
        }
    }
}

/// What the kubelet asks for when it creates a pod's sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxConfig {
    /// The pod's name.
    pub name: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's uid, which names its cgroup.
    pub uid: String,
    /// The hostname the pod's containers see (the pod name, unless the pod sets one).
    pub hostname: String,
    /// The pod's QoS class, which places its cgroup.
    pub qos: Qos,
    /// Which namespaces are the node's, and whether the containers share a PID namespace.
    #[serde(default)]
    pub namespaces: NamespaceOptions,
    /// The pod's DNS domain, `<subdomain>.<namespace>.svc.<cluster domain>` when the pod has
    /// a subdomain: `/etc/hosts` then names the pod by its FQDN too.
    #[serde(default)]
    pub domain: Option<String>,
    /// Extra `/etc/hosts` entries (the pod's `hostAliases`).
    #[serde(default)]
    pub host_aliases: Vec<HostAlias>,
    /// The pod's `/etc/resolv.conf` as the caller composed it; None: a copy of the host's.
    #[serde(default)]
    pub resolv_conf: Option<String>,
    /// The pod cgroup's limits, written when the sandbox is made.
    #[serde(default)]
    pub resources: Resources,
}

/// The namespaces a pod shares with the node, and its PID namespace (CRI's `NamespaceOption`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceOptions {
    /// The node's network namespace, and with it the node's UTS namespace and hostname.
    pub host_network: bool,
    /// The node's network namespace file, when it is not the caller's own (a kubelet whose
    /// pod networks live in a namespace of their own); None: the caller's.
    pub node_netns: Option<PathBuf>,
    /// The node's IPC namespace.
    pub host_ipc: bool,
    /// Which PID namespace the containers run in.
    pub pid: PidMode,
}

/// Which PID namespace a pod's containers run in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PidMode {
    /// One of its own per container (Kubernetes' default).
    #[default]
    Container,
    /// One for the whole pod, held by a [`PidHolder`] (`shareProcessNamespace`).
    Pod,
    /// The node's (`hostPID`).
    Node,
}

impl NamespaceOptions {
    fn node(&self) -> NodeNamespaces {
        NodeNamespaces {
            net: self.host_network,
            ipc: self.host_ipc,
            uts: self.host_network,
        }
    }
}

impl Default for SandboxConfig {
    /// Empty names (to be filled in), BestEffort, and no options.
    fn default() -> SandboxConfig {
        SandboxConfig {
            name: String::new(),
            namespace: String::new(),
            uid: String::new(),
            hostname: String::new(),
            qos: Qos::BestEffort,
            namespaces: NamespaceOptions::default(),
            domain: None,
            host_aliases: Vec::new(),
            resolv_conf: None,
            resources: Resources::default(),
        }
    }
}

impl SandboxConfig {
    /// The sandbox name: `<namespace>_<name>_<uid>`.
    pub fn sandbox_name(&self) -> String {
        format!("{}_{}_{}", self.namespace, self.name, self.uid)
    }

    fn check(&self) -> Result<(), SandboxError> {
        // The parts become a file name, a netns name and a cgroup name: a safe alphabet, and
        // no '_' so the sandbox name splits back into them.
        let part = |field, value: &str| {
            let ok = !value.is_empty()
                && value.len() <= 253
                && !value.starts_with('.')
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if ok {
                Ok(())
            } else {
                Err(SandboxError::InvalidConfig {
                    field,
                    value: value.to_owned(),
                    expected: "letters, digits, '-' and '.', not starting with '.'",
                })
            }
        };
        part("name", &self.name)?;
        part("namespace", &self.namespace)?;
        part("uid", &self.uid)?;
        part("hostname", &self.hostname)?;
        if self.hostname.len() > HOST_NAME_MAX {
            return Err(SandboxError::InvalidConfig {
                field: "hostname",
                value: self.hostname.clone(),
                expected: "at most 64 characters",
            });
        }
        Ok(())
    }
}

/// A pod sandbox: its record, as saved in `<state dir>/<name>/sandbox.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    name: String,
    config: SandboxConfig,
    /// The sandbox's directory in the state dir.
    dir: PathBuf,
    pins: Pins,
    /// The pod cgroup from each hierarchy's root (`/kubepods/.../pod<uid>`).
    cgroup_path: PathBuf,
    cgroup: Cgroup,
    ip: Option<IpAddr>,
    /// When the sandbox was created, RFC 3339.
    created: String,
    /// The init holding the pod's shared PID namespace, if it has one.
    #[serde(default)]
    pid_holder: Option<PidHolder>,
}

impl Sandbox {
    /// Create the sandbox: its directory and files, pinned namespaces and pod cgroup, then its
    /// record. If any step fails, what was made is taken down again.
    pub fn create(config: &SandboxConfig, paths: &Paths) -> Result<Sandbox, SandboxError> {
        Sandbox::create_with(config, paths, &namespaces::Linux)
    }

    /// [`Sandbox::create`] with the namespaces made by `pinner`.
    fn create_with(
        config: &SandboxConfig,
        paths: &Paths,
        pinner: &dyn Pinner,
    ) -> Result<Sandbox, SandboxError> {
        config.check()?;
        let name = config.sandbox_name();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&paths.state_dir)
            .map_err(io("create the state directory", &paths.state_dir))?;
        let dir = paths.state_dir.join(&name);
        // Making the directory is the atomic test for an existing sandbox of that name.
        match fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(SandboxError::Exists { name, path: dir })
            }
            Err(e) => return Err(io("create the sandbox directory", &dir)(e)),
        }
        let pins = pins(config, paths, &name, &dir);
        let cgroup_path = pod_path(&paths.cgroup_root, config.qos, &config.uid);
        // On failure, undo what was made; the first error is the one worth reporting.
        let undo_dir = |e| {
            let _ = fs::remove_dir_all(&dir);
            e
        };
        files::write_all(&dir, config, None, paths).map_err(undo_dir)?;
        pinner.create(&pins, &config.hostname).map_err(undo_dir)?;
        let cgroup = cgroup::create(&paths.cgroup, &paths.cgroup_root, config).map_err(|e| {
            let _ = pinner.unpin(&pins);
            undo_dir(e)
        })?;
        let pid_holder = match config.namespaces.pid {
            PidMode::Pod => match PidHolder::start(&paths.cgroup, &cgroup_path) {
                Ok(holder) => Some(holder),
                Err(e) => {
                    let _ = pinner.unpin(&pins);
                    let _ = cgroup::remove(&cgroup, &cgroup_path);
                    return Err(undo_dir(e));
                }
            },
            PidMode::Container | PidMode::Node => None,
        };
        let sandbox = Sandbox {
            name,
            config: config.clone(),
            dir,
            pins,
            cgroup_path,
            cgroup,
            ip: None,
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            pid_holder,
        };
        if let Err(e) = sandbox.save() {
            let _ = sandbox.remove_with(pinner);
            return Err(e);
        }
        Ok(sandbox)
    }

    /// Load the record of the sandbox called `name` (see [`SandboxConfig::sandbox_name`]).
    pub fn load(name: &str, paths: &Paths) -> Result<Sandbox, SandboxError> {
        if name.is_empty() || name.starts_with('.') || name.contains('/') {
            return Err(SandboxError::InvalidConfig {
                field: "sandbox name",
                value: name.to_owned(),
                expected: "<namespace>_<pod name>_<uid>",
            });
        }
        let path = paths.state_dir.join(name).join(RECORD);
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(SandboxError::NotFound {
                    name: name.to_owned(),
                    path,
                })
            }
            Err(e) => return Err(io("read", &path)(e)),
        };
        serde_json::from_slice(&text).map_err(|source| SandboxError::Corrupt { path, source })
    }

    /// Every sandbox with a record in the state dir, sorted by name. Directories without a
    /// record (a create or remove under way) are skipped; a damaged record is an error.
    pub fn list(paths: &Paths) -> Result<Vec<Sandbox>, SandboxError> {
        let entries = match fs::read_dir(&paths.state_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("read", &paths.state_dir)(e)),
        };
        let mut sandboxes = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io("read", &paths.state_dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            match Sandbox::load(&name, paths) {
                Ok(sandbox) => sandboxes.push(sandbox),
                Err(SandboxError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        sandboxes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(sandboxes)
    }

    /// Take the sandbox down: stop its PID namespace holder, unpin its namespaces, remove the
    /// pod cgroup, then the sandbox's directory with the record (so a failure in the first
    /// steps leaves the record for a retry). Pieces already gone are fine, so this can be
    /// repeated after a failure or a reboot. While processes (other than the holder) still
    /// run in the pod cgroup nothing is touched and [`SandboxError::Busy`] is returned:
    /// delete the containers first.
    pub fn remove(&self) -> Result<(), SandboxError> {
        self.remove_with(&namespaces::Linux)
    }

    /// [`Sandbox::remove`] with the namespaces unpinned by `pinner`.
    fn remove_with(&self, pinner: &dyn Pinner) -> Result<(), SandboxError> {
        let mut pids = self.cgroup.pids().map_err(|source| SandboxError::Cgroup {
            path: self.cgroup_path.clone(),
            source: Box::new(source),
        })?;
        if let Some(holder) = &self.pid_holder {
            pids.retain(|pid| *pid != holder.pid);
        }
        if !pids.is_empty() {
            pids.truncate(10);
            return Err(SandboxError::Busy {
                name: self.name.clone(),
                pids,
            });
        }
        if let Some(holder) = &self.pid_holder {
            holder.stop()?;
        }
        pinner.unpin(&self.pins)?;
        cgroup::remove(&self.cgroup, &self.cgroup_path)?;
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove", &self.dir)(e)),
        }
    }

    /// Record the pod's IP (from CNI, or the node's for `hostNetwork`) and name the pod on it
    /// in the pod's `/etc/hosts` (a `hostNetwork` pod's is the node's and stays as it is).
    pub fn set_ip(&mut self, ip: Option<IpAddr>) -> Result<(), SandboxError> {
        self.ip = ip;
        if !self.config.namespaces.host_network {
            files::rewrite_hosts(&self.dir, &self.config, ip)?;
        }
        self.save()
    }

    /// The OCI config of container `id` of this pod. The id names the container's cgroup,
    /// `<pod cgroup>/<id>`, and should be the id the runtime is given.
    pub fn container_spec(
        &self,
        id: &str,
        config: &ContainerConfig,
    ) -> Result<oci_spec::runtime::Spec, SandboxError> {
        spec::build(self, id, config)
    }

    /// Write the bundle of container `id` (`config.json`, written temp-then-rename; the root
    /// filesystem stays where `config.rootfs` says) and return its directory.
    pub fn write_bundle(
        &self,
        id: &str,
        config: &ContainerConfig,
    ) -> Result<PathBuf, SandboxError> {
        let spec = self.container_spec(id, config)?;
        let bundle = self.dir.join(BUNDLES).join(id);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&bundle)
            .map_err(io("create the bundle directory", &bundle))?;
        let text = serde_json::to_vec_pretty(&spec).map_err(|source| SandboxError::Spec {
            container: config.name.clone(),
            source,
        })?;
        files::write_atomic(&bundle.join("config.json"), &text)?;
        Ok(bundle)
    }

    /// Remove the bundle of container `id` (missing is fine).
    pub fn remove_bundle(&self, id: &str) -> Result<(), SandboxError> {
        crate::container::check_id(id).map_err(|_| SandboxError::InvalidConfig {
            field: "container id",
            value: id.to_owned(),
            expected: "letters, digits, '-', '_', '.', '+'",
        })?;
        let bundle = self.dir.join(BUNDLES).join(id);
        match fs::remove_dir_all(&bundle) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove", &bundle)(e)),
        }
    }

    fn save(&self) -> Result<(), SandboxError> {
        let text = serde_json::to_vec_pretty(self).expect("a sandbox record always serializes");
        files::write_atomic(&self.dir.join(RECORD), &text)
    }

    /// The sandbox name, `<namespace>_<pod>_<uid>`; also the netns name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the sandbox was created from.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// The pod's hostname.
    pub fn hostname(&self) -> &str {
        &self.config.hostname
    }

    /// The sandbox's directory in the state dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the namespaces are pinned; the network one is what CNI is given as the netns.
    pub fn pins(&self) -> &Pins {
        &self.pins
    }

    /// The pod cgroup from each hierarchy's root, e.g. `/kubepods/burstable/pod<uid>`.
    pub fn cgroup_path(&self) -> &Path {
        &self.cgroup_path
    }

    /// The pod cgroup's directories on the host.
    pub fn cgroup(&self) -> &Cgroup {
        &self.cgroup
    }

    /// The pod's IP, once set.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    /// The init holding the pod's shared PID namespace (`shareProcessNamespace`), if any.
    pub fn pid_holder(&self) -> Option<&PidHolder> {
        self.pid_holder.as_ref()
    }

    /// When the sandbox was created (RFC 3339, UTC).
    pub fn created(&self) -> &str {
        &self.created
    }
}

/// Where the sandbox's namespaces are: pins it makes for its own, the node's namespace files
/// for those it shares with the node.
fn pins(config: &SandboxConfig, paths: &Paths, name: &str, dir: &Path) -> Pins {
    let node = config.namespaces.node();
    let own_or_node = |own: bool, pin: PathBuf, kind: &str| {
        if own {
            pin
        } else {
            PathBuf::from(format!("/proc/self/ns/{kind}"))
        }
    };
    let net = match (&config.namespaces.node_netns, node.net) {
        (Some(node_netns), true) => node_netns.clone(),
        _ => own_or_node(!node.net, paths.netns_dir.join(name), "net"),
    };
    Pins {
        net,
        ipc: own_or_node(!node.ipc, dir.join("ipc"), "ipc"),
        uts: own_or_node(!node.uts, dir.join("uts"), "uts"),
        node,
    }
}
