//! A pod's volumes: set up once per pod before its containers start, refreshed when the
//! pod's metadata or its configMaps and secrets change, and torn down with the pod.
//!
//! - [`empty_dir`], [`host_path`]: the node-local volume types.
//! - [`projection`] + [`atomic`]: configMap, secret, downwardAPI and projected volumes,
//!   written atomically; their data comes from an [`ObjectSource`] ([`source`]).
//! - [`ownership`]: the pod's fsGroup on volumes that support it.
//! - [`mounts`]: a container's volumeMounts (subPath, readOnly, propagation) as mounts.

pub mod atomic;
pub mod empty_dir;
pub mod host_path;
pub mod mounts;
pub mod ownership;
pub mod projection;
pub mod source;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use k8s_openapi::api::core::v1::{Pod, Volume};

use super::downward::{Allocatable, Context};
use projection::ApiVolume;
pub use source::{NoApiServer, ObjectSource};

/// A volume that could not be set up (event `FailedMount`; the pod's containers wait in
/// `ContainerCreating`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume {volume:?} : {message}")]
pub struct VolumeError {
    /// The volume's name in the pod.
    pub volume: String,
    /// What went wrong, in upstream's words where it has them.
    pub message: String,
}

/// The node's volume manager.
pub struct Volumes {
    /// Swapped once when the API client starts, after the pod manager owns the node.
    objects: RwLock<Arc<dyn ObjectSource>>,
    node: Allocatable,
    mountinfo: PathBuf,
    /// The pods (by UID) whose volumes are set up.
    ready: Mutex<HashSet<String>>,
}

impl Volumes {
    /// A manager taking configMaps and secrets from `objects`; `node` sizes memory
    /// volumes and answers `resourceFieldRef`s of containers without limits.
    pub fn new(objects: Arc<dyn ObjectSource>, node: Allocatable) -> Volumes {
        Volumes {
            objects: RwLock::new(objects),
            node,
            mountinfo: PathBuf::from("/proc/self/mountinfo"),
            ready: Mutex::new(HashSet::new()),
        }
    }

    /// Where configMaps and secrets come from (the API server client sets itself here).
    pub fn set_objects(&self, objects: Arc<dyn ObjectSource>) {
        *self.objects.write().unwrap_or_else(PoisonError::into_inner) = objects;
    }

    /// The configMaps and secrets (env `valueFrom` reads them too).
    pub fn objects(&self) -> Arc<dyn ObjectSource> {
        self.objects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The node's allocatable resources.
    pub fn node(&self) -> Allocatable {
        self.node
    }

    /// Set up every volume of `pod` under `dir` (the pod's volumes directory), once per
    /// pod: later calls return at once. Idempotent, so a restarted kubelet calls it again.
    pub fn set_up(&self, pod: &Pod, dir: &Path) -> Result<(), VolumeError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if self.lock().contains(&uid) {
            return Ok(());
        }
        for volume in pod_volumes(pod) {
            self.set_up_one(pod, volume, dir)
                .map_err(|message| VolumeError {
                    volume: volume.name.clone(),
                    message,
                })?;
        }
        self.lock().insert(uid);
        Ok(())
    }

    /// Rewrite the pod's configMap, secret, downwardAPI and projected volumes from the
    /// pod as it is now (labels, annotations) and the current objects. The worker calls
    /// it when the pod changes; an unchanged payload leaves the files alone. The volumes
    /// of a pod this kubelet adopted after a restart (set up by its predecessor: the
    /// directory exists) are refreshed too, so their tokens and objects stay current.
    pub fn refresh(&self, pod: &Pod, dir: &Path) -> Result<(), VolumeError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if !self.lock().contains(&uid) && !dir.is_dir() {
            return Ok(());
        }
        for volume in pod_volumes(pod) {
            if let Some(kind) = ApiVolume::of(volume) {
                self.write_api_volume(pod, volume, kind, dir)
                    .map_err(|message| VolumeError {
                        volume: volume.name.clone(),
                        message,
                    })?;
            }
        }
        Ok(())
    }

    /// Unmount every mount under `pod_dir` (tmpfs volumes), deepest first, so the pod's
    /// files can be removed, and forget the pod. A mount that stays is an error: the
    /// caller must then keep the directory.
    pub fn tear_down(&self, uid: &str, pod_dir: &Path) -> Result<(), String> {
        self.lock().remove(uid);
        let Ok(root) = fs::canonicalize(pod_dir) else {
            return Ok(());
        };
        let text = fs::read_to_string(&self.mountinfo)
            .map_err(|e| format!("reading {}: {e}", self.mountinfo.display()))?;
        let mut points: Vec<PathBuf> = runtime::rootfs::mountinfo::parse(&text)
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|p| p.starts_with(&root))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        points.dedup();
        for point in points {
            nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH)
                .map_err(|e| format!("unmounting {}: {e}", point.display()))?;
        }
        Ok(())
    }

    /// emptyDir volumes using more than their `sizeLimit`, with upstream's eviction
    /// message (`Usage of EmptyDir volume "x" exceeds the limit "1Mi".`).
    pub fn over_limit(&self, pod: &Pod, dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for volume in pod_volumes(pod) {
            let Some(source) = &volume.empty_dir else {
                continue;
            };
            let Ok(Some(limit)) = empty_dir::size_limit(source) else {
                continue;
            };
            let used = empty_dir::usage(&host_path(volume, dir)) as i128;
            if used > limit {
                let shown = source
                    .size_limit
                    .as_ref()
                    .map(|q| q.0.clone())
                    .unwrap_or_default();
                out.push(format!(
                    "Usage of EmptyDir volume {:?} exceeds the limit {shown:?}.",
                    volume.name
                ));
            }
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.ready.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_up_one(&self, pod: &Pod, volume: &Volume, dir: &Path) -> Result<(), String> {
        let path = host_path(volume, dir);
        if let Some(source) = &volume.empty_dir {
            empty_dir::set_up(&path, source, pod, self.node)?;
            return own(pod, &path, false);
        }
        if let Some(source) = &volume.host_path {
            return host_path::check(source);
        }
        if let Some(kind) = ApiVolume::of(volume) {
            return self.write_api_volume(pod, volume, kind, dir);
        }
        Err(
            "volume type not supported on this node (supported: emptyDir, hostPath, \
             configMap, secret, downwardAPI, projected)"
                .to_string(),
        )
    }

    fn write_api_volume(
        &self,
        pod: &Pod,
        volume: &Volume,
        kind: ApiVolume,
        dir: &Path,
    ) -> Result<(), String> {
        let path = host_path(volume, dir);
        let ctx = Context {
            pod,
            pod_ips: &[],
            host_ips: &[],
            node_name: "",
            allocatable: self.node,
        };
        let payload = projection::payload(volume, &ctx, self.objects().as_ref())?;
        fs::create_dir_all(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        if kind.in_memory() {
            empty_dir::tmpfs(&path, empty_dir::memory_size(pod, None, self.node))?;
        }
        let changed = atomic::write(&path, &payload).map_err(|e| e.to_string())?;
        if changed {
            own(pod, &path, true)?;
        }
        Ok(())
    }
}

/// Apply the pod's fsGroup to a volume that supports ownership management.
fn own(pod: &Pod, path: &Path, read_only: bool) -> Result<(), String> {
    let security = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let Some(group) = security.and_then(|s| s.fs_group) else {
        return Ok(());
    };
    let gid =
        u32::try_from(group).map_err(|_| format!("fsGroup {group} is not a valid group id"))?;
    let policy =
        ownership::Policy::parse(security.and_then(|s| s.fs_group_change_policy.as_deref()));
    ownership::apply(path, gid, read_only, policy)
        .map_err(|e| format!("applying fsGroup {gid} to {}: {e}", path.display()))
}

fn pod_volumes(pod: &Pod) -> impl Iterator<Item = &Volume> {
    pod.spec.iter().flat_map(|s| s.volumes.iter().flatten())
}

/// Where a volume's files are on the host: hostPath's own path, or
/// `<volumes dir>/kubernetes.io~<plugin>/<name>` as upstream lays them out.
pub fn host_path(volume: &Volume, volumes_dir: &Path) -> PathBuf {
    if let Some(source) = &volume.host_path {
        return PathBuf::from(&source.path);
    }
    let plugin = match ApiVolume::of(volume) {
        Some(kind) => kind.plugin_dir(),
        None if volume.empty_dir.is_some() => "kubernetes.io~empty-dir",
        None => "kubernetes.io~unsupported",
    };
    volumes_dir.join(plugin).join(&volume.name)
}

#[cfg(test)]
mod tests;
