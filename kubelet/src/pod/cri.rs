//! The node's container operations the pod workers call: sandboxes with their network,
//! images, and containers run by shims. Synchronous (except image pulls): workers call
//! them on tokio's blocking pool. Every OS side effect of the kubelet goes through here.

use std::fs;
use std::io::Read as _;
use std::net::IpAddr;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, Pod};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use runtime::container::{self as rt, ContainerError};
use runtime::image::config::ImageProcess;
use runtime::image::pull::{PullOptions, PullPolicy};
use runtime::image::{Image, Store as ImageStore};
use runtime::logs::LogOptions;
use runtime::sandbox::{Mount, Paths, Qos, Sandbox, SandboxConfig};
use runtime::shim::{self, ShimConfig};

use crate::network::{PodNetwork, PodRef};
use crate::source::defaults::TERMINATION_MESSAGE_PATH;

use super::dns::{self, NodeDns};
use super::downward::Allocatable;
use super::process::{self, ConfigError};
use super::sandbox_config;
use super::volume::{NoApiServer, ObjectSource, VolumeError, Volumes};

/// The kubelet's record of a container, beside its bundle, so a restarted kubelet knows
/// which pod container an id is and which shim watches it.
pub const RECORD: &str = "kubelet.json";
/// The shim's exit record, beside the bundle.
pub const EXIT_FILE: &str = "exit.json";

/// Where the node keeps things and which programs it runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's name.
    pub node_name: String,
    /// The image store (`/var/lib/peapod`).
    pub image_root: PathBuf,
    /// Per-pod data such as emptyDir volumes (`/var/lib/peapod/pods`).
    pub pods_dir: PathBuf,
    /// The pods' CRI logs (`/var/log/pods`).
    pub log_dir: PathBuf,
    /// Sandbox locations (netns dir, sandbox state, cgroups).
    pub sandbox: Paths,
    /// `peapod-runtime`.
    pub runtime_binary: PathBuf,
    /// The runtime's state root (`/run/peapod`).
    pub runtime_root: PathBuf,
    /// `peapod-shim`.
    pub shim_binary: PathBuf,
    /// The CNI config dir, plugin dirs and result cache.
    pub cni_conf_dir: PathBuf,
    /// Where CNI plugins are looked up.
    pub cni_bin_dirs: Vec<PathBuf>,
    /// The CNI result cache.
    pub cni_cache_dir: PathBuf,
    /// The network namespace CNI plugins run in (the node side of pod networks);
    /// None: the kubelet's own.
    pub cni_netns: Option<PathBuf>,
    /// How container logs rotate.
    pub log_options: LogOptions,
    /// How images are pulled.
    pub pull: PullOptions,
    /// The cluster's DNS (`--cluster-dns`, `--cluster-domain`); the node's resolver file
    /// (`--resolv-conf`) is `sandbox.resolv_conf`.
    pub dns: NodeDns,
    /// The node's addresses (`--node-ip`); none: found in the node's network namespace.
    pub node_ips: Vec<IpAddr>,
    /// Seccomp default and profile root, allowed unsafe sysctls.
    pub security: super::security::NodeSecurity,
    /// The first crash back-off of a container (upstream: 10 s), doubled on each crash.
    pub crash_backoff: std::time::Duration,
    /// The node's memory and `--pod-max-pids`, for the resource formulas.
    pub resources: super::resources::NodeResources,
}

/// Why an operation failed; the worker maps it to a container's waiting reason.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    /// The image could not be had (`ErrImagePull`, `ErrImageNeverPull`).
    #[error("{message}")]
    Image {
        /// The waiting reason.
        reason: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The container's settings cannot be applied (`CreateContainerConfigError`).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A pod volume could not be set up (event `FailedMount`, the container waits in
    /// `ContainerCreating`).
    #[error(transparent)]
    Mount(#[from] VolumeError),
    /// Creating or starting failed (`RunContainerError`).
    #[error("{0}")]
    Run(String),
    /// The sandbox or its network failed.
    #[error("{0}")]
    Sandbox(String),
}

/// What the kubelet remembers of one container instance ([`RECORD`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// The name in the pod.
    pub name: String,
    /// Whether it is an init container.
    pub init: bool,
    /// Its restart count when it was started.
    pub restart_count: i32,
    /// The image as the pod names it, and its id.
    pub image: String,
    /// `<name>@<config digest>`.
    pub image_id: String,
    /// The shim's pid.
    pub shim_pid: i32,
    /// The CRI log.
    pub log_path: PathBuf,
    /// The image's `StopSignal` (empty: SIGTERM).
    #[serde(default)]
    pub stop_signal: String,
    /// The host file mounted at the container's `terminationMessagePath`.
    #[serde(default)]
    pub termination_log: Option<PathBuf>,
}

/// A container instance that runs (or ran) in a sandbox.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The runtime's id.
    pub id: String,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The kubelet's record of it.
    pub record: ContainerRecord,
}

impl Instance {
    /// The shim's exit record path.
    pub fn exit_file(&self) -> PathBuf {
        self.bundle.join(EXIT_FILE)
    }
}

/// One container to start, and where.
#[derive(Clone, Copy)]
pub struct Start<'a> {
    /// The pod's sandbox.
    pub sandbox: &'a Sandbox,
    /// The pod.
    pub pod: &'a Pod,
    /// The container.
    pub container: &'a Container,
    /// Whether it is an init container.
    pub init: bool,
    /// Its image, present in the store.
    pub image: &'a Image,
    /// Its restart count (names its log file).
    pub restart_count: i32,
    /// The pod's IPs (for the downward API).
    pub pod_ips: &'a [IpAddr],
    /// The node's IPs (`status.hostIP` for the downward API).
    pub host_ips: &'a [IpAddr],
}

/// The node's container operations.
pub struct Cri {
    config: NodeConfig,
    images: ImageStore,
    containers: rt::Store,
    network: PodNetwork,
    volumes: Volumes,
    observer: std::sync::Arc<super::observer::Observer>,
}

impl Cri {
    /// Open the image and container stores and load the pod network.
    pub fn open(config: NodeConfig) -> anyhow::Result<Cri> {
        use anyhow::Context as _;
        let images = ImageStore::open(&config.image_root)
            .with_context(|| format!("opening the image store {}", config.image_root.display()))?;
        let containers = rt::Store::open(&config.runtime_root).with_context(|| {
            format!("opening the runtime root {}", config.runtime_root.display())
        })?;
        let network = PodNetwork::load(
            &config.cni_conf_dir,
            &config.cni_bin_dirs,
            &config.cni_cache_dir,
        )?;
        // The image root exists by now and shares the pods dir's file system.
        let node = Allocatable::detect(std::path::Path::new("/proc/meminfo"), &config.image_root);
        Ok(Cri {
            config,
            images,
            containers,
            network,
            volumes: Volumes::new(std::sync::Arc::new(NoApiServer), node),
            observer: Default::default(),
        })
    }

    /// Where pod state changes and events are announced.
    pub fn observer(&self) -> &std::sync::Arc<super::observer::Observer> {
        &self.observer
    }

    /// Take configMaps, secrets (for volumes and env) and tokens from `objects`.
    pub fn set_object_source(&self, objects: std::sync::Arc<dyn ObjectSource>) {
        self.volumes.set_objects(objects);
    }

    /// Rewrite the pod's configMap, secret, downwardAPI and projected volumes (the pod's
    /// labels or annotations, or the objects, changed). Cheap when nothing changed.
    pub fn refresh_volumes(&self, pod: &Pod) -> Result<(), VolumeError> {
        self.volumes.refresh(pod, &self.volumes_dir(pod))
    }

    /// The pod's emptyDir volumes over their `sizeLimit`, as eviction messages.
    pub fn volumes_over_limit(&self, pod: &Pod) -> Vec<String> {
        self.volumes.over_limit(pod, &self.volumes_dir(pod))
    }

    /// The node's settings.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The pod network's name (for messages).
    pub fn network_name(&self) -> &str {
        self.network.name()
    }

    /// Create the pod's sandbox and attach it to the pod network; a `hostNetwork` pod is
    /// not attached and has the node's addresses.
    pub fn run_sandbox(&self, pod: &Pod, qos: Qos) -> Result<(Sandbox, Vec<IpAddr>), CriError> {
        let (config, warnings) = sandbox_config::config(pod, qos, &self.config)?;
        for warning in &warnings {
            tracing::warn!(pod = %config.sandbox_name(), reason = warning.reason, "{}", warning.message);
        }
        let mut sandbox = Sandbox::create(&config, &self.config.sandbox).map_err(|e| {
            CriError::Sandbox(format!(
                "creating the pod sandbox: {}",
                runtime::error_chain(&e)
            ))
        })?;
        let attached = if config.namespaces.host_network {
            Ok(self.node_ips())
        } else {
            self.in_cni_netns(|| {
                self.network.attach(
                    sandbox.name(),
                    &sandbox.pins().net,
                    &pod_ref(&config),
                    &sandbox_config::port_mappings(pod),
                )
            })
        };
        let ips = match attached {
            Ok(ips) => ips,
            Err(e) => {
                let _ = sandbox.remove();
                return Err(CriError::Sandbox(format!(
                    "setting up the network for the pod sandbox: {e}"
                )));
            }
        };
        if let Err(e) = sandbox.set_ip(ips.first().copied()) {
            let _ = self.remove_sandbox(&sandbox);
            return Err(CriError::Sandbox(e.to_string()));
        }
        Ok((sandbox, ips))
    }

    /// The warnings (events) about a pod's DNS settings that [`Cri::run_sandbox`] logs:
    /// `MissingClusterDNS`, `DNSConfigForming`.
    pub fn dns_warnings(&self, pod: &Pod) -> Vec<dns::Warning> {
        sandbox_config::config(pod, Qos::BestEffort, &self.config)
            .map(|(_, warnings)| warnings)
            .unwrap_or_default()
    }

    /// The node's addresses: `--node-ip`, else those found in the node's network namespace
    /// (the CNI one when given); the pod IPs of `hostNetwork` pods and every pod's host IP.
    pub fn node_ips(&self) -> Vec<IpAddr> {
        if !self.config.node_ips.is_empty() {
            return self.config.node_ips.clone();
        }
        self.in_cni_netns(|| Ok(crate::network::node_addresses()))
            .unwrap_or_else(|e| {
                tracing::warn!("finding the node's addresses: {e}");
                Vec::new()
            })
    }

    /// The sandbox of that name, if one exists (after a kubelet restart).
    pub fn find_sandbox(&self, name: &str) -> Option<Sandbox> {
        Sandbox::load(name, &self.config.sandbox).ok()
    }

    /// Every sandbox on the node.
    pub fn sandboxes(&self) -> Vec<Sandbox> {
        Sandbox::list(&self.config.sandbox).unwrap_or_default()
    }

    /// Detach the sandbox from the network and remove it (its containers must be gone).
    pub fn remove_sandbox(&self, sandbox: &Sandbox) -> Result<(), CriError> {
        if sandbox.config().namespaces.host_network {
            return sandbox
                .remove()
                .map_err(|e| CriError::Sandbox(format!("removing the pod sandbox: {e}")));
        }
        let detached = self.in_cni_netns(|| {
            self.network.detach(
                sandbox.name(),
                &sandbox.pins().net,
                &pod_ref(sandbox.config()),
            )
        });
        detached.map_err(|e| CriError::Sandbox(format!("tearing down the pod network: {e}")))?;
        sandbox
            .remove()
            .map_err(|e| CriError::Sandbox(format!("removing the pod sandbox: {e}")))
    }

    /// Whether starting the container pulls its image (the policy is Always, or the
    /// image is not stored).
    pub fn pulls(&self, container: &Container) -> bool {
        let name = container.image.as_deref().unwrap_or_default();
        match pull_policy(container) {
            PullPolicy::Always => true,
            PullPolicy::Never => false,
            PullPolicy::IfNotPresent => runtime::image::Reference::parse(name)
                .ok()
                .and_then(|r| self.images.get(&r).ok().flatten())
                .is_none(),
        }
    }

    /// Take a sandbox whose containers are gone down for good: its network and the
    /// sandbox itself, retried for up to 5 s (a container's last processes may take a
    /// moment to leave the pod cgroup), then the pod's volumes and logs. If the sandbox
    /// stays, its files stay too, for whoever looks into why.
    pub fn tear_down(&self, sandbox: &Sandbox) -> Result<(), CriError> {
        let mut result = self.remove_sandbox(sandbox);
        for _ in 0..50 {
            if result.is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            result = self.remove_sandbox(sandbox);
        }
        result?;
        self.remove_pod_files(sandbox.name(), &sandbox.config().uid);
        Ok(())
    }

    /// The image a container runs, pulled per its `imagePullPolicy`.
    pub async fn ensure_image(&self, container: &Container) -> Result<Image, CriError> {
        let name = container.image.as_deref().unwrap_or_default();
        let policy = pull_policy(container);
        runtime::image::pull::ensure(&self.images, name, policy, &self.config.pull)
            .await
            .map_err(|e| match policy {
                PullPolicy::Never => CriError::Image {
                    reason: "ErrImageNeverPull",
                    message: format!(
                        "Container image \"{name}\" is not present with pull policy of Never"
                    ),
                },
                _ => CriError::Image {
                    reason: "ErrImagePull",
                    message: format!("Failed to pull image \"{name}\": {e}"),
                },
            })
    }

    /// Create and start one container of the pod in its sandbox, under a shim.
    pub fn start_container(
        &self,
        start: &Start<'_>,
    ) -> Result<(Instance, shim::Started), CriError> {
        let Start {
            sandbox,
            pod,
            container,
            init,
            image,
            restart_count,
            pod_ips,
            host_ips,
        } = *start;
        let volumes_dir = self.volumes_dir(pod);
        self.volumes.set_up(pod, &volumes_dir)?;
        let id = new_id().map_err(|e| CriError::Run(format!("making a container id: {e}")))?;
        let snapshot = self
            .images
            .prepare_rootfs(&id, image)
            .map_err(|e| CriError::Run(format!("preparing the root filesystem: {e}")))?;
        let undo = |e: CriError| {
            let _ = self.images.remove_rootfs(&id);
            let _ = sandbox.remove_bundle(&id);
            e
        };
        let config_blob = self
            .images
            .content()
            .read(&image.config)
            .map_err(|e| undo(CriError::Run(format!("reading the image config: {e}"))))?;
        let stop_signal = ImageProcess::from_config_json(&config_blob)
            .map(|p| p.stop_signal)
            .unwrap_or_default();
        let mut config = process::container_config(&process::Inputs {
            pod,
            container,
            image_config: &config_blob,
            rootfs: &snapshot.rootfs,
            volumes_dir: &volumes_dir,
            pod_ips,
            host_ips,
            node_name: &self.config.node_name,
            volumes: &self.volumes,
            security: &self.config.security,
            node_resources: &self.config.resources,
        })
        .map_err(|e| undo(e.into()))?;
        let termination_log = self
            .termination_log(pod, container, &id)
            .map_err(|e| undo(CriError::Run(e)))?;
        if let Some((file, destination)) = &termination_log {
            config.mounts.push(Mount {
                source: file.clone(),
                destination: destination.clone(),
                readonly: false,
                ..Mount::default()
            });
        }
        let bundle = sandbox
            .write_bundle(&id, &config)
            .map_err(|e| undo(CriError::Run(e.to_string())))?;
        let log_path = self
            .config
            .log_dir
            .join(sandbox.name())
            .join(&container.name)
            .join(format!("{restart_count}.log"));
        let shim_config = ShimConfig {
            binary: self.config.shim_binary.clone(),
            id: id.clone(),
            root: self.config.runtime_root.clone(),
            bundle: bundle.clone(),
            log_path: log_path.clone(),
            exit_file: bundle.join(EXIT_FILE),
            shim_log: bundle.join("shim.log"),
            log: self.config.log_options,
        };
        let started = shim::spawn(&shim_config).map_err(|e| undo(CriError::Run(e.to_string())))?;
        let record = ContainerRecord {
            name: container.name.clone(),
            init,
            restart_count,
            image: container.image.clone().unwrap_or_default(),
            image_id: format!("{}@{}", image.name, image.config),
            shim_pid: started.shim_pid,
            log_path,
            stop_signal,
            termination_log: termination_log.map(|(file, _)| file),
        };
        let text = serde_json::to_vec(&record).expect("a container record serializes");
        // Without the record a restarted kubelet cannot adopt the container; it then
        // treats it as unknown and removes it, so a failed write is not fatal here.
        if let Err(e) = fs::write(bundle.join(RECORD), text) {
            tracing::warn!("writing {}: {e}", bundle.join(RECORD).display());
        }
        Ok((Instance { id, bundle, record }, started))
    }

    /// The container instances a sandbox holds, from their bundles and records.
    pub fn instances(&self, sandbox: &Sandbox) -> Vec<Instance> {
        let dir = sandbox.dir().join("containers");
        let Ok(entries) = fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let bundle = entry.path();
            let id = entry.file_name().to_string_lossy().into_owned();
            let record = fs::read(bundle.join(RECORD))
                .ok()
                .and_then(|t| serde_json::from_slice::<ContainerRecord>(&t).ok());
            match record {
                Some(record) => found.push(Instance { id, bundle, record }),
                None => {
                    // A bundle without a record is a start that did not finish.
                    self.remove_container(sandbox, &id);
                }
            }
        }
        found
    }

    /// Send a signal to a container's init; a container that is gone is fine.
    pub fn kill(&self, id: &str, signal: Signal) {
        match rt::kill(&self.containers, id, signal, false) {
            Ok(()) => {}
            Err(e) => tracing::debug!("kill {id} {signal}: {e}"),
        }
    }

    /// Delete a container (killing what is left of it), its root filesystem and bundle.
    pub fn remove_container(&self, sandbox: &Sandbox, id: &str) {
        match rt::delete(&self.containers, id, true) {
            Ok(()) | Err(ContainerError::Store(rt::StoreError::NotFound(_))) => {}
            Err(e) => tracing::warn!("deleting container {id}: {e}"),
        }
        if let Err(e) = self.images.remove_rootfs(id) {
            tracing::warn!("removing the root filesystem of {id}: {e}");
        }
        if let Err(e) = sandbox.remove_bundle(id) {
            tracing::warn!("removing the bundle of {id}: {e}");
        }
    }

    /// How to run the runtime's CLI (exec for `peapod exec` and exec probes and hooks).
    pub fn runtime(&self) -> crate::api::RuntimeRef {
        crate::api::RuntimeRef {
            binary: self.config.runtime_binary.clone(),
            root: self.config.runtime_root.clone(),
        }
    }

    /// The empty host file behind a container's `terminationMessagePath`, and that path
    /// (None when the pod sets it empty): `<pods dir>/<uid>/containers/<name>/<id>`, as
    /// upstream keeps it, so the message outlives the container's root filesystem.
    fn termination_log(
        &self,
        pod: &Pod,
        container: &Container,
        id: &str,
    ) -> Result<Option<(PathBuf, PathBuf)>, String> {
        let path = container
            .termination_message_path
            .as_deref()
            .unwrap_or(TERMINATION_MESSAGE_PATH);
        if path.is_empty() {
            return Ok(None);
        }
        let dir = self
            .config
            .pods_dir
            .join(pod.metadata.uid.as_deref().unwrap_or_default())
            .join("containers")
            .join(&container.name);
        let file = dir.join(id);
        fs::create_dir_all(&dir)
            .and_then(|()| fs::write(&file, b""))
            .map_err(|e| format!("creating the termination log {}: {e}", file.display()))?;
        Ok(Some((file, PathBuf::from(path))))
    }

    /// The pod's volumes directory (`<pods dir>/<uid>/volumes`).
    pub fn volumes_dir(&self, pod: &Pod) -> PathBuf {
        self.config
            .pods_dir
            .join(pod.metadata.uid.as_deref().unwrap_or_default())
            .join("volumes")
    }

    /// Remove what the pod left on disk: its volumes (unmounted first; a volume that
    /// stays mounted keeps the pod's directory) and its log directory.
    fn remove_pod_files(&self, sandbox_name: &str, uid: &str) {
        let pod_dir = self.config.pods_dir.join(uid);
        if let Err(e) = self.volumes.tear_down(uid, &pod_dir) {
            tracing::warn!("keeping {}: {e}", pod_dir.display());
            let _ = fs::remove_dir_all(self.config.log_dir.join(sandbox_name));
            return;
        }
        for dir in [
            self.config.pods_dir.join(uid),
            self.config.log_dir.join(sandbox_name),
        ] {
            match fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("removing {}: {e}", dir.display()),
            }
        }
    }

    /// Run `f` (which starts CNI plugins) with the CNI network namespace as the thread's
    /// network namespace: plugins inherit it, so their host side (bridge, veth ends,
    /// rules) lands there. Done on a thread of its own, which ends with `f`, so no
    /// other work ever runs in that namespace by accident.
    fn in_cni_netns<T: Send>(
        &self,
        f: impl FnOnce() -> Result<T, crate::network::NetworkError> + Send,
    ) -> Result<T, String> {
        let Some(netns) = &self.config.cni_netns else {
            return f().map_err(|e| e.to_string());
        };
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let file = fs::File::open(netns)
                        .map_err(|e| format!("opening the CNI netns {}: {e}", netns.display()))?;
                    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(|e| format!("entering the CNI netns {}: {e}", netns.display()))?;
                    f().map_err(|e| e.to_string())
                })
                .join()
                .unwrap_or_else(|_| Err("the CNI thread panicked".into()))
        })
    }
}

/// The name of a pod's sandbox (`<namespace>_<name>_<uid>`, as its log directory).
pub fn sandbox_name(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}_{}_{}",
        m.namespace.as_deref().unwrap_or_default(),
        m.name.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default()
    )
}

fn pull_policy(container: &Container) -> PullPolicy {
    match container.image_pull_policy.as_deref() {
        Some("Always") => PullPolicy::Always,
        Some("Never") => PullPolicy::Never,
        _ => PullPolicy::IfNotPresent,
    }
}

fn pod_ref(config: &SandboxConfig) -> PodRef<'_> {
    PodRef {
        namespace: &config.namespace,
        name: &config.name,
        uid: &config.uid,
    }
}

/// A new container id: 64 random hex digits, as containerd makes them.
fn new_id() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
