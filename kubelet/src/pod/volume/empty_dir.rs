//! emptyDir volumes: a directory of the pod on the node's disk, or a tmpfs for
//! `medium: Memory` sized as upstream sizes it; also the tmpfs under secret volumes.

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, Pod};
use nix::mount::{mount, MsFlags};

use crate::pod::downward::{parse_milli, Allocatable};

/// An emptyDir is open to every user of the pod, as upstream makes it.
const EMPTY_DIR_MODE: u32 = 0o777;

/// Make the emptyDir at `dir`: a directory, or a tmpfs for `medium: Memory`.
pub fn set_up(
    dir: &Path,
    source: &EmptyDirVolumeSource,
    pod: &Pod,
    node: Allocatable,
) -> Result<(), String> {
    let limit = size_limit(source)?;
    match source.medium.as_deref().unwrap_or("") {
        "" => make_dir(dir)?,
        "Memory" => {
            make_dir(dir)?;
            tmpfs(dir, memory_size(pod, limit, node))?;
        }
        m if m == "HugePages" || m.starts_with("HugePages-") => {
            return Err(format!(
                "emptyDir medium {m:?} is not supported on this node (no hugetlbfs support)"
            ))
        }
        m => {
            return Err(format!(
                "unknown emptyDir medium {m:?}: expected \"\", Memory or HugePages"
            ))
        }
    }
    // The mode, after any mount: tmpfs comes up 1777, and the umask trims mkdir's.
    fs::set_permissions(dir, fs::Permissions::from_mode(EMPTY_DIR_MODE))
        .map_err(|e| format!("setting the mode of {}: {e}", dir.display()))
}

/// `sizeLimit` in bytes, if set.
pub fn size_limit(source: &EmptyDirVolumeSource) -> Result<Option<i128>, String> {
    match &source.size_limit {
        Some(q) if !q.0.is_empty() => {
            let bytes = parse_milli(&q.0)? / 1000;
            Ok((bytes > 0).then_some(bytes))
        }
        _ => Ok(None),
    }
}

fn make_dir(dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))
}

/// The size of a memory-backed volume, as upstream computes it: the node's allocatable
/// memory, lowered to the pod's memory limit (when every container declares one) and
/// to `sizeLimit`.
pub fn memory_size(pod: &Pod, size_limit: Option<i128>, node: Allocatable) -> Option<i128> {
    let mut size = (node.memory > 0).then_some(node.memory);
    let lower = |size: Option<i128>, to: i128| Some(size.map_or(to, |s| s.min(to)));
    if let Some(limit) = pod_memory_limit(pod).filter(|l| *l > 0) {
        size = lower(size, limit);
    }
    if let Some(limit) = size_limit {
        size = lower(size, limit);
    }
    size
}

/// The pod's memory limit: the sum of its app containers' limits, or the largest init
/// container limit if higher; None when a container has no limit.
fn pod_memory_limit(pod: &Pod) -> Option<i128> {
    let spec = pod.spec.as_ref()?;
    let limit = |c: &k8s_openapi::api::core::v1::Container| -> Option<i128> {
        let q = c.resources.as_ref()?.limits.as_ref()?.get("memory")?;
        parse_milli(&q.0).ok().map(|m| m / 1000)
    };
    let mut sum = 0;
    for c in &spec.containers {
        sum += limit(c)?;
    }
    for c in spec.init_containers.iter().flatten() {
        sum = sum.max(limit(c)?);
    }
    Some(sum)
}

/// Mount a tmpfs of `size` bytes (None: the kernel's default) at `dir`, unless one is
/// there already (a restarted kubelet sets volumes up again).
pub fn tmpfs(dir: &Path, size: Option<i128>) -> Result<(), String> {
    if is_mount_point(dir) {
        return Ok(());
    }
    let options = size.map(|s| format!("size={s}"));
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::empty(),
        options.as_deref(),
    )
    .map_err(|e| format!("mounting a tmpfs at {}: {e}", dir.display()))
}

/// Whether `dir` is the root of a mount (a different device than its parent).
pub fn is_mount_point(dir: &Path) -> bool {
    let (Ok(this), Some(Ok(parent))) = (
        fs::symlink_metadata(dir),
        dir.parent().map(fs::symlink_metadata),
    ) else {
        return false;
    };
    this.dev() != parent.dev() || this.ino() == parent.ino()
}

/// Bytes used under `dir` (its files' allocated blocks), not following symlinks or
/// crossing into other file systems.
pub fn usage(dir: &Path) -> u64 {
    let Ok(root) = fs::symlink_metadata(dir) else {
        return 0;
    };
    let mut total = root.blocks() * 512;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.dev() != root.dev() {
                continue;
            }
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use std::collections::BTreeMap;

    fn pod(limits: &[Option<&str>]) -> Pod {
        let containers = limits
            .iter()
            .enumerate()
            .map(|(i, l)| Container {
                name: format!("c{i}"),
                resources: l.map(|l| ResourceRequirements {
                    limits: Some(BTreeMap::from([("memory".to_string(), Quantity(l.into()))])),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        Pod {
            spec: Some(PodSpec {
                containers,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn memory_volumes_are_sized_as_upstream() {
        let node = Allocatable {
            cpu_millis: 1000,
            memory: 1 << 30,
            ephemeral_storage: 0,
        };
        let mi = 1 << 20;
        assert_eq!(memory_size(&pod(&[None]), None, node), Some(1 << 30));
        assert_eq!(memory_size(&pod(&[None]), Some(mi), node), Some(mi));
        assert_eq!(
            memory_size(&pod(&[Some("64Mi"), Some("64Mi")]), None, node),
            Some(128 * mi)
        );
        assert_eq!(
            memory_size(&pod(&[Some("64Mi"), None]), None, node),
            Some(1 << 30),
            "a container without a limit leaves the pod unlimited"
        );
        assert_eq!(
            memory_size(&pod(&[Some("64Mi")]), Some(8 * mi), node),
            Some(8 * mi)
        );
        let source = EmptyDirVolumeSource {
            size_limit: Some(Quantity("2Mi".into())),
            ..Default::default()
        };
        assert_eq!(size_limit(&source), Ok(Some(2 * mi)));
    }
}
