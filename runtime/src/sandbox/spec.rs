//! A container of the pod as an OCI config: the runtime's default container, joined to the
//! sandbox's network, IPC and UTS namespaces by path (or the node's), with the pod's hostname
//! and `/etc` files, in a cgroup under the pod cgroup.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::files::{HOSTNAME, HOSTS, RESOLV_CONF};
use super::resources::Resources;
use super::security::Security;
use super::{PidMode, Sandbox, SandboxError};

/// The `PATH` a container gets when its image sets none, as container engines default it.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The annotation naming the sandbox a container belongs to, for debugging tools.
pub const SANDBOX_ANNOTATION: &str = "io.github.peapod.sandbox";
/// The annotations that name a container's pod and the container itself, as the kubelet
/// labels its containers, so `peapod-runtime state` and the debugging scripts can tell
/// which pod a container id belongs to without the kubelet.
pub const POD_NAME_ANNOTATION: &str = "io.kubernetes.pod.name";
/// See [`POD_NAME_ANNOTATION`].
pub const POD_NAMESPACE_ANNOTATION: &str = "io.kubernetes.pod.namespace";
/// See [`POD_NAME_ANNOTATION`].
pub const POD_UID_ANNOTATION: &str = "io.kubernetes.pod.uid";
/// See [`POD_NAME_ANNOTATION`].
pub const CONTAINER_NAME_ANNOTATION: &str = "io.kubernetes.container.name";

/// What the kubelet asks of one container in a pod, in plain types.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// The container's name in the pod, e.g. `web`.
    pub name: String,
    /// The container's root filesystem, already prepared by the image store. Absolute.
    pub rootfs: PathBuf,
    /// Whether the root filesystem is mounted read-only.
    pub readonly_rootfs: bool,
    /// The command and its arguments (the image's entrypoint and cmd, already merged).
    pub args: Vec<String>,
    /// Environment variables, in order. `PATH` and `HOSTNAME` are added when absent.
    pub env: Vec<(String, String)>,
    /// The working directory (absolute); `/` when unset.
    pub working_dir: Option<PathBuf>,
    /// Who the process runs as.
    pub user: User,
    /// Whether the process gets a terminal.
    pub tty: bool,
    /// Host paths bind-mounted into the container (volumes), after the default mounts.
    pub mounts: Vec<Mount>,
    /// Capabilities, no_new_privs, seccomp and privileged mode.
    #[serde(default)]
    pub security: Security,
    /// Namespaced sysctls set in the container (`linux.sysctl`), e.g. `net.ipv4.ip_unprivileged_port_start`.
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    /// The container cgroup's limits (cpu, memory, pids).
    #[serde(default)]
    pub resources: Resources,
    /// The process's `oom_score_adj`; None: inherited. A value the runtime may not set
    /// (lowering it needs CAP_SYS_RESOURCE) is kept at the inherited one with a warning.
    #[serde(default)]
    pub oom_score_adj: Option<i32>,
}

/// The numeric identity the container's process runs as.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub additional_gids: Vec<u32>,
}

/// A host path bind-mounted into the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// The host path.
    pub source: PathBuf,
    /// Where it appears in the container (absolute).
    pub destination: PathBuf,
    /// Whether the container may only read it.
    pub readonly: bool,
    /// How mounts below it propagate between the host and the container.
    #[serde(default)]
    pub propagation: Propagation,
}

/// Mount propagation of a bind mount (Kubernetes' `mountPropagation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Propagation {
    /// `rprivate` (`None`): nothing propagates.
    #[default]
    Private,
    /// `rslave` (`HostToContainer`): host mounts below it appear in the container.
    Slave,
    /// `rshared` (`Bidirectional`): mounts propagate both ways.
    Shared,
}

impl Propagation {
    /// The OCI mount option.
    pub fn option(self) -> &'static str {
        match self {
            Propagation::Private => "rprivate",
            Propagation::Slave => "rslave",
            Propagation::Shared => "rshared",
        }
    }
}

/// Build the OCI config of container `id` (the runtime's container id, which also names its
/// cgroup) from `config`, to run in `sandbox`.
pub fn build(sandbox: &Sandbox, id: &str, config: &ContainerConfig) -> Result<Spec, SandboxError> {
    check(id, config)?;
    let mut spec = crate::defaults::example_spec();
    spec["process"] = process(config, sandbox.hostname());
    spec["root"] = json!({"path": config.rootfs, "readonly": config.readonly_rootfs});
    // Only a UTS namespace of the pod's own may be given a hostname; a `hostNetwork` pod
    // has the node's.
    if sandbox.pins().node.uts {
        if let Some(spec) = spec.as_object_mut() {
            spec.remove("hostname");
        }
    } else {
        spec["hostname"] = json!(sandbox.hostname());
    }
    let pod = sandbox.config();
    spec["annotations"] = json!({
        SANDBOX_ANNOTATION: sandbox.name(),
        POD_NAME_ANNOTATION: pod.name,
        POD_NAMESPACE_ANNOTATION: pod.namespace,
        POD_UID_ANNOTATION: pod.uid,
        CONTAINER_NAME_ANNOTATION: config.name,
    });

    let mounts = spec["mounts"]
        .as_array_mut()
        .expect("the default spec has mounts");
    for (file, destination) in [
        (HOSTS, "/etc/hosts"),
        (HOSTNAME, "/etc/hostname"),
        (RESOLV_CONF, "/etc/resolv.conf"),
    ] {
        mounts.push(bind(
            &sandbox.dir().join(file),
            Path::new(destination),
            false,
            Propagation::Private,
        ));
    }
    for mount in &config.mounts {
        mounts.push(bind(
            &mount.source,
            &mount.destination,
            mount.readonly,
            mount.propagation,
        ));
    }
    // A Bidirectional mount only propagates back if the container's root stays shared.
    if config
        .mounts
        .iter()
        .any(|m| m.propagation == Propagation::Shared)
    {
        spec["linux"]["rootfsPropagation"] = json!("rshared");
    }

    let namespaces = namespaces(sandbox)?;
    let linux = &mut spec["linux"];
    linux["namespaces"] = json!(namespaces);
    linux["cgroupsPath"] = json!(sandbox.cgroup_path().join(id));
    if let (Value::Object(resources), Value::Object(limits)) =
        (&mut linux["resources"], config.resources.to_json())
    {
        resources.extend(limits);
    }
    if !config.sysctls.is_empty() {
        linux["sysctl"] = json!(config.sysctls);
    }
    super::security::apply(&mut spec, &config.security, Path::new("/dev")).map_err(|source| {
        SandboxError::Spec {
            container: config.name.clone(),
            source,
        }
    })?;

    serde_json::from_value(spec).map_err(|source| SandboxError::Spec {
        container: config.name.clone(),
        source,
    })
}

/// `linux.namespaces`: new mount and cgroup namespaces; the pod's network, IPC and UTS
/// namespaces by path, or none for those that are the node's (the runtime then stays in its
/// own, which are the node's) except a node network namespace named by path; and per the
/// pod's [`PidMode`] a new PID namespace, the pod's shared one, or the node's.
fn namespaces(sandbox: &Sandbox) -> Result<Vec<Value>, SandboxError> {
    let pins = sandbox.pins();
    let mut list = vec![json!({"type": "mount"}), json!({"type": "cgroup"})];
    let options = &sandbox.config().namespaces;
    match options.pid {
        PidMode::Container => list.push(json!({"type": "pid"})),
        PidMode::Pod => {
            let holder = sandbox.pid_holder().filter(|h| h.alive()).ok_or_else(|| {
                SandboxError::PidNamespaceGone {
                    name: sandbox.name().to_owned(),
                }
            })?;
            list.push(json!({"type": "pid", "path": holder.namespace_path()}));
        }
        PidMode::Node => {}
    }
    if !pins.node.net {
        list.push(json!({"type": "network", "path": pins.net}));
    } else if let Some(node_netns) = &options.node_netns {
        list.push(json!({"type": "network", "path": node_netns}));
    }
    if !pins.node.ipc {
        list.push(json!({"type": "ipc", "path": pins.ipc}));
    }
    if !pins.node.uts {
        list.push(json!({"type": "uts", "path": pins.uts}));
    }
    Ok(list)
}

/// `process`: the container's command, environment and identity (capabilities and
/// no_new_privs come from [`Security`]), without `runc spec`'s 1024-file limit (the runtime's own limits apply).
fn process(config: &ContainerConfig, hostname: &str) -> Value {
    let mut env: Vec<String> = config.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for (key, value) in [("PATH", DEFAULT_PATH), ("HOSTNAME", hostname)] {
        if !config.env.iter().any(|(k, _)| k == key) {
            env.push(format!("{key}={value}"));
        }
    }
    let mut process = json!({
        "terminal": config.tty,
        "user": {
            "uid": config.user.uid,
            "gid": config.user.gid,
            "additionalGids": config.user.additional_gids,
        },
        "args": config.args,
        "env": env,
        "cwd": config.working_dir.as_deref().unwrap_or(Path::new("/")),
    });
    if let Some(score) = config.oom_score_adj {
        process["oomScoreAdj"] = json!(score);
    }
    process
}

fn bind(source: &Path, destination: &Path, readonly: bool, propagation: Propagation) -> Value {
    json!({
        "destination": destination,
        "type": "bind",
        "source": source,
        "options": ["rbind", propagation.option(), if readonly { "ro" } else { "rw" }],
    })
}

/// Reject what the runtime would fail on later with a less helpful message.
fn check(id: &str, config: &ContainerConfig) -> Result<(), SandboxError> {
    let invalid = |field, value: &dyn std::fmt::Debug, expected| SandboxError::InvalidConfig {
        field,
        value: format!("{value:?}"),
        expected,
    };
    if crate::container::check_id(id).is_err() {
        return Err(invalid(
            "container id",
            &id,
            "letters, digits, '-', '_', '.', '+'",
        ));
    }
    if !config.rootfs.is_absolute() {
        return Err(invalid("rootfs", &config.rootfs, "an absolute path"));
    }
    if config.args.is_empty() {
        return Err(invalid("args", &config.args, "at least the program to run"));
    }
    if let Some((key, _)) = config
        .env
        .iter()
        .find(|(k, _)| k.is_empty() || k.contains('='))
    {
        return Err(invalid("env", key, "a name without '='"));
    }
    if let Some(dir) = config.working_dir.as_ref().filter(|d| !d.is_absolute()) {
        return Err(invalid("working_dir", dir, "an absolute path"));
    }
    if let Some(mount) = config.mounts.iter().find(|m| !m.destination.is_absolute()) {
        return Err(invalid(
            "mounts.destination",
            &mount.destination,
            "an absolute path",
        ));
    }
    Ok(())
}
