//! A container's volumeMounts as bind mounts: the volume's host path, a validated
//! subPath (or subPathExpr) inside it, readOnly, and mount propagation.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, VolumeMount};
use runtime::sandbox::{Mount, Propagation};

use super::projection::ApiVolume;
use crate::pod::process::expand;

/// The mounts of `container`; `env` is the container's own env, for `subPathExpr`.
pub fn container_mounts(
    pod: &Pod,
    container: &Container,
    volumes_dir: &Path,
    env: &BTreeMap<&str, &str>,
) -> Result<Vec<Mount>, String> {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    let privileged = container
        .security_context
        .as_ref()
        .and_then(|s| s.privileged)
        .unwrap_or(false);
    let mut out = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let volume = volumes
            .iter()
            .find(|v| v.name == mount.name)
            .ok_or_else(|| {
                format!(
                    "cannot find volume {:?} to mount into container {:?}",
                    mount.name, container.name
                )
            })?;
        let base = super::host_path(volume, volumes_dir);
        let source = match sub_path(mount, env) {
            Some(sub) => prepare_sub_path(&base, &sub).map_err(|e| {
                format!(
                    "failed to prepare subPath for volumeMount {:?} of container {:?}: {e}",
                    mount.name, container.name
                )
            })?,
            None => base,
        };
        // API data is never writable from a container, as upstream mounts it.
        let read_only = mount.read_only.unwrap_or(false) || ApiVolume::of(volume).is_some();
        out.push(Mount {
            source,
            destination: PathBuf::from(&mount.mount_path),
            readonly: read_only,
            propagation: propagation(mount, privileged)?,
        });
    }
    Ok(out)
}

fn sub_path(mount: &VolumeMount, env: &BTreeMap<&str, &str>) -> Option<String> {
    if let Some(expr) = mount.sub_path_expr.as_deref().filter(|s| !s.is_empty()) {
        return Some(expand(expr, env));
    }
    mount.sub_path.clone().filter(|s| !s.is_empty())
}

fn propagation(mount: &VolumeMount, privileged: bool) -> Result<Propagation, String> {
    match mount.mount_propagation.as_deref().unwrap_or("None") {
        "None" => Ok(Propagation::Private),
        "HostToContainer" => Ok(Propagation::Slave),
        "Bidirectional" if privileged => Ok(Propagation::Shared),
        "Bidirectional" => Err(format!(
            "volumeMount {:?}: Bidirectional mount propagation is available only to privileged containers",
            mount.name
        )),
        other => Err(format!(
            "volumeMount {:?}: invalid mount propagation {other:?}: expected None, HostToContainer or Bidirectional",
            mount.name
        )),
    }
}

/// The host path of `sub` inside the volume at `base`, created as a directory with the
/// volume's mode if missing; refused if absolute, with `..`, or if a symlink leads out
/// of the volume.
pub fn prepare_sub_path(base: &Path, sub: &str) -> Result<PathBuf, String> {
    if Path::new(sub).is_absolute() {
        return Err(format!(
            "error SubPath `{sub}` must not be an absolute path"
        ));
    }
    if sub.split('/').any(|p| p == "..") {
        return Err(format!(
            "unable to provision SubPath `{sub}`: must not contain '..'"
        ));
    }
    let root =
        fs::canonicalize(base).map_err(|e| format!("volume path {}: {e}", base.display()))?;
    let mode = fs::metadata(&root)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o755);
    let mut here = root.clone();
    for part in Path::new(sub).components() {
        let Component::Normal(part) = part else {
            continue;
        };
        let next = here.join(part);
        if fs::symlink_metadata(&next).is_err() {
            fs::DirBuilder::new()
                .mode(mode)
                .create(&next)
                .map_err(|e| format!("creating {}: {e}", next.display()))?;
            fs::set_permissions(&next, fs::Permissions::from_mode(mode))
                .map_err(|e| format!("setting the mode of {}: {e}", next.display()))?;
        }
        here = fs::canonicalize(&next).map_err(|e| format!("{}: {e}", next.display()))?;
        if !here.starts_with(&root) {
            return Err(format!(
                "subpath {:?} not within volume path {:?}",
                here.display().to_string(),
                root.display().to_string()
            ));
        }
    }
    Ok(here)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_paths_stay_inside_the_volume() {
        let tmp = tempfile::tempdir().unwrap();
        let vol = tmp.path().join("vol");
        fs::create_dir(&vol).unwrap();
        fs::set_permissions(&vol, fs::Permissions::from_mode(0o777)).unwrap();
        let made = prepare_sub_path(&vol, "a/b").unwrap();
        assert_eq!(made, fs::canonicalize(&vol).unwrap().join("a/b"));
        assert_eq!(
            fs::metadata(&made).unwrap().permissions().mode() & 0o777,
            0o777
        );
        assert!(prepare_sub_path(&vol, "/etc")
            .unwrap_err()
            .contains("must not be an absolute path"));
        assert!(prepare_sub_path(&vol, "a/../..")
            .unwrap_err()
            .contains("must not contain '..'"));
        std::os::unix::fs::symlink(tmp.path(), vol.join("out")).unwrap();
        assert!(prepare_sub_path(&vol, "out/x")
            .unwrap_err()
            .contains("not within volume path"));
        std::os::unix::fs::symlink("a", vol.join("in")).unwrap();
        assert!(
            prepare_sub_path(&vol, "in/b").is_ok(),
            "a symlink inside the volume is fine"
        );
    }
}
