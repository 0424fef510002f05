//! A pod container's process and mounts in the runtime's plain terms: the image config
//! merged with the container's command, args, env, workingDir and securityContext, as
//! the upstream kubelet does, and its volumeMounts resolved to host paths.

use std::collections::BTreeMap;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, Volume};

use runtime::image::config::ImageProcess;
use runtime::sandbox::{ContainerConfig, Mount, User};

use super::resources::{self, NodeResources};
use super::security::{self, Effective, NodeSecurity};

/// Why a container's settings cannot be applied (`CreateContainerConfigError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// What [`container_config`] reads.
pub struct Inputs<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// The container.
    pub container: &'a Container,
    /// The image config blob.
    pub image_config: &'a [u8],
    /// The container's prepared root filesystem.
    pub rootfs: &'a Path,
    /// The pod's volumes directory.
    pub volumes_dir: &'a Path,
    /// The pod's IPs.
    pub pod_ips: &'a [IpAddr],
    /// The node's name.
    pub node_name: &'a str,
    /// The node's security settings (seccomp default and root, allowed sysctls).
    pub security: &'a NodeSecurity,
    /// The node's memory and pod limits, for the resource formulas.
    pub node_resources: &'a NodeResources,
}

/// The container as the sandbox runs it.
pub fn container_config(inputs: &Inputs<'_>) -> Result<ContainerConfig, ConfigError> {
    let c = inputs.container;
    let image = ImageProcess::from_config_json(inputs.image_config)
        .map_err(|e| ConfigError(format!("reading the image config: {e}")))?;
    let own_env = env(inputs)?;
    let merged: Vec<(String, String)> = image
        .env(&own_env)
        .into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv, String::new()),
        })
        .collect();
    let vars: BTreeMap<&str, &str> = merged
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let expand_all = |list: &Option<Vec<String>>| -> Vec<String> {
        list.iter().flatten().map(|s| expand(s, &vars)).collect()
    };
    let args = image
        .argv(&expand_all(&c.command), &expand_all(&c.args))
        .map_err(|e| ConfigError(format!("container {:?}: {e}", c.name)))?;
    let working_dir = c
        .working_dir
        .clone()
        .filter(|d| !d.is_empty())
        .or_else(|| (!image.working_dir.is_empty()).then(|| image.working_dir.clone()))
        .map(PathBuf::from);
    let effective = Effective::of(inputs.pod, c);
    security::verify_run_as_non_root(inputs.pod, c, &effective, &image.user)?;
    let user = user(
        &image.user,
        effective.run_as_user,
        effective.run_as_group,
        effective.supplemental_groups.clone(),
        inputs.rootfs,
    )?;
    let resources = resources::container(inputs.pod, c, inputs.node_resources)
        .map_err(|e| ConfigError(e.to_string()))?;
    Ok(ContainerConfig {
        name: c.name.clone(),
        rootfs: inputs.rootfs.to_path_buf(),
        readonly_rootfs: effective
            .container
            .read_only_root_filesystem
            .unwrap_or(false),
        args,
        env: merged,
        working_dir,
        user,
        tty: c.tty.unwrap_or(false),
        mounts: mounts(inputs)?,
        security: security::runtime_security(&effective, inputs.security)?,
        sysctls: security::sysctls(inputs.pod, inputs.security)?,
        resources: resources.cgroup,
        oom_score_adj: Some(resources.oom_score_adj),
    })
}

/// The container's own env: values with `$(VAR)` expanded against the variables before
/// them, and the downward API fields a static pod has.
fn env(inputs: &Inputs<'_>) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for var in inputs.container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (_, Some(_)) => field_value(inputs, var)?,
            (Some(v), None) => {
                let known: BTreeMap<&str, &str> =
                    out.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                expand(v, &known)
            }
            (None, None) => String::new(),
        };
        out.push((var.name.clone(), value));
    }
    Ok(out)
}

/// `valueFrom.fieldRef` for the fields the node knows; config maps and secrets need an
/// API server.
fn field_value(inputs: &Inputs<'_>, var: &EnvVar) -> Result<String, ConfigError> {
    let from = var.value_from.as_ref().expect("called with valueFrom");
    let Some(field) = &from.field_ref else {
        return Err(ConfigError(format!(
            "env {:?}: only valueFrom.fieldRef is supported without an API server",
            var.name
        )));
    };
    let meta = &inputs.pod.metadata;
    let spec = inputs.pod.spec.clone().unwrap_or_default();
    let ips: Vec<String> = inputs.pod_ips.iter().map(|ip| ip.to_string()).collect();
    let value = match field.field_path.as_str() {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => inputs.node_name.to_string(),
        "spec.serviceAccountName" => spec.service_account_name.unwrap_or_default(),
        "status.podIP" => ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => ips.join(","),
        path => {
            if let Some(key) = path
                .strip_prefix("metadata.labels['")
                .and_then(|k| k.strip_suffix("']"))
            {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(key).cloned())
                    .unwrap_or_default()
            } else if let Some(key) = path
                .strip_prefix("metadata.annotations['")
                .and_then(|k| k.strip_suffix("']"))
            {
                meta.annotations
                    .as_ref()
                    .and_then(|a| a.get(key).cloned())
                    .unwrap_or_default()
            } else {
                return Err(ConfigError(format!(
                    "env {:?}: fieldRef.fieldPath {path:?} is not supported",
                    var.name
                )));
            }
        }
    };
    Ok(value)
}

/// Kubernetes' `$(VAR)` expansion: a defined variable is replaced, `$$` is a literal
/// `$`, anything else is left as written.
pub fn expand(input: &str, vars: &BTreeMap<&str, &str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(name_end) = after.strip_prefix('(').and_then(|a| a.find(')')) {
            let name = &after[1..1 + name_end];
            match vars.get(name) {
                Some(value) => out.push_str(value),
                None => out.push_str(&rest[at..at + name_end + 3]),
            }
            rest = &after[name_end + 2..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The numeric user: runAsUser/runAsGroup first, else the image's `User` looked up in the
/// root filesystem's `/etc/passwd` and `/etc/group`, as the runtime does for images.
fn user(
    image_user: &str,
    run_as_user: Option<i64>,
    run_as_group: Option<i64>,
    supplemental: Vec<i64>,
    rootfs: &Path,
) -> Result<User, ConfigError> {
    let (name, group) = match image_user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (image_user, None),
    };
    let passwd = fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let lookup_user = |name: &str| -> Result<(u32, u32), ConfigError> {
        if name.is_empty() {
            return Ok((0, 0));
        }
        if let Ok(uid) = name.parse::<u32>() {
            let gid = passwd_entry(&passwd, |f| f[2] == name)
                .and_then(|f| f[3].parse().ok())
                .unwrap_or(0);
            return Ok((uid, gid));
        }
        passwd_entry(&passwd, |f| f[0] == name)
            .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .ok_or_else(|| {
                ConfigError(format!(
                    "the image's user {name:?} is not in the image's /etc/passwd"
                ))
            })
    };
    let (mut uid, mut gid) = lookup_user(name)?;
    if let Some(group) = group {
        gid = match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let groups = fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
                passwd_entry(&groups, |f| f[0] == group)
                    .and_then(|f| f[2].parse().ok())
                    .ok_or_else(|| {
                        ConfigError(format!(
                            "the image's group {group:?} is not in the image's /etc/group"
                        ))
                    })?
            }
        };
    }
    let id = |v: i64, what: &str| {
        u32::try_from(v).map_err(|_| ConfigError(format!("{what} {v} is not a valid id")))
    };
    if let Some(u) = run_as_user {
        uid = id(u, "runAsUser")?;
        if run_as_group.is_none() && group.is_none() {
            gid = passwd_entry(&passwd, |f| f[2] == uid.to_string())
                .and_then(|f| f[3].parse().ok())
                .unwrap_or(0);
        }
    }
    if let Some(g) = run_as_group {
        gid = id(g, "runAsGroup")?;
    }
    // As containerd merges them (supplementalGroupsPolicy Merge): the primary group, the
    // user's memberships in the image's /etc/group, then the pod's groups.
    let groups = fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    let mut additional_gids = vec![gid];
    if let Some(entry) = passwd_entry(&passwd, |f| f[2] == uid.to_string()) {
        additional_gids.extend(member_groups(&groups, entry[0]));
    }
    for g in supplemental {
        let g = id(g, "supplementalGroups")?;
        if !additional_gids.contains(&g) {
            additional_gids.push(g);
        }
    }
    Ok(User {
        uid,
        gid,
        additional_gids,
    })
}

/// The gids of the groups in a group file that list `user` as a member.
fn member_groups(file: &str, user: &str) -> Vec<u32> {
    file.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4 && f[3].split(',').any(|m| m.trim() == user))
        .filter_map(|f| f[2].parse().ok())
        .collect()
}

/// The first `name:...` line of a passwd/group file whose fields satisfy `matches`.
fn passwd_entry(file: &str, matches: impl Fn(&[&str]) -> bool) -> Option<Vec<&str>> {
    file.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && matches(f))
}

/// The container's volumeMounts as host bind mounts. emptyDir and hostPath volumes are
/// supported without an API server.
fn mounts(inputs: &Inputs<'_>) -> Result<Vec<Mount>, ConfigError> {
    let volumes: Vec<Volume> = inputs
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    for mount in inputs.container.volume_mounts.iter().flatten() {
        let volume = volumes
            .iter()
            .find(|v| v.name == mount.name)
            .ok_or_else(|| {
                ConfigError(format!(
                    "volumeMounts {:?}: the pod has no volume of that name",
                    mount.name
                ))
            })?;
        let mut source = volume_path(volume, inputs.volumes_dir)?;
        if let Some(sub) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            if Path::new(sub).is_absolute() || sub.split('/').any(|p| p == "..") {
                return Err(ConfigError(format!(
                    "volumeMounts {:?}: subPath {sub:?} must be a relative path without '..'",
                    mount.name
                )));
            }
            source = source.join(sub);
            fs::create_dir_all(&source)
                .map_err(|e| ConfigError(format!("creating subPath {}: {e}", source.display())))?;
        }
        out.push(Mount {
            source,
            destination: PathBuf::from(&mount.mount_path),
            readonly: mount.read_only.unwrap_or(false),
        });
    }
    Ok(out)
}

/// Where a volume lives on the host, made if the volume type says so.
fn volume_path(volume: &Volume, volumes_dir: &Path) -> Result<PathBuf, ConfigError> {
    if volume.empty_dir.is_some() {
        let dir = volumes_dir
            .join("kubernetes.io~empty-dir")
            .join(&volume.name);
        fs::create_dir_all(&dir)
            .map_err(|e| ConfigError(format!("creating emptyDir {}: {e}", dir.display())))?;
        return Ok(dir);
    }
    if let Some(host) = &volume.host_path {
        let path = PathBuf::from(&host.path);
        match host.type_.as_deref().unwrap_or("") {
            "DirectoryOrCreate" => fs::create_dir_all(&path)
                .map_err(|e| ConfigError(format!("creating hostPath {}: {e}", path.display())))?,
            "Directory" if !path.is_dir() => {
                return Err(ConfigError(format!(
                    "hostPath type check failed: {} is not a directory",
                    path.display()
                )))
            }
            "File" if !path.is_file() => {
                return Err(ConfigError(format!(
                    "hostPath type check failed: {} is not a file",
                    path.display()
                )))
            }
            _ => {}
        }
        return Ok(path);
    }
    Err(ConfigError(format!(
        "volume {:?}: only emptyDir and hostPath volumes are supported without an API server",
        volume.name
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let vars = BTreeMap::from([("A", "1"), ("B", "two")]);
        assert_eq!(expand("$(A)-$(B)", &vars), "1-two");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("$(C) $A $", &vars), "$(C) $A $");
        assert_eq!(expand("x$(A", &vars), "x$(A");
    }

    #[test]
    fn users_resolve_against_the_images_passwd() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("etc")).unwrap();
        fs::write(
            tmp.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nwww:x:33:34::/var/www:/bin/false\n",
        )
        .unwrap();
        fs::write(
            tmp.path().join("etc/group"),
            "root:x:0:\nweb:x:34:\nlogs:x:40:root,www\nwww:x:41:nobody\n",
        )
        .unwrap();
        let u = user("www", None, None, vec![], tmp.path()).unwrap();
        assert_eq!((u.uid, u.gid), (33, 34));
        let u = user("www:root", None, None, vec![5], tmp.path()).unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids), (33, 0, vec![0, 40, 5]));
        let u = user("", None, None, vec![0, 9], tmp.path()).unwrap();
        assert_eq!(u.additional_gids, [0, 40, 9]);
        let u = user("", Some(33), None, vec![], tmp.path()).unwrap();
        assert_eq!((u.uid, u.gid), (33, 34));
        let u = user("1000", None, Some(7), vec![], tmp.path()).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 7));
        let err = user("nobody", None, None, vec![], tmp.path()).unwrap_err();
        assert!(err.0.contains("\"nobody\""), "{err}");
        assert!(user("", Some(-1), None, vec![], tmp.path()).is_err());
    }
}
