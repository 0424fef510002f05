//! A pod container's process and mounts in the runtime's plain terms: the image config
//! merged with the container's command, args, env, workingDir and securityContext, as
//! the upstream kubelet does, and its volumeMounts resolved to host paths.

use std::collections::BTreeMap;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, Pod};

use runtime::image::config::ImageProcess;
use runtime::sandbox::{ContainerConfig, User};

use super::downward::{self, Use};
use super::volume::source::{self, Kind};
use super::volume::{self, Volumes};

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
    /// The node's IPs.
    pub host_ips: &'a [IpAddr],
    /// The node's name.
    pub node_name: &'a str,
    /// The node's volumes (configMaps and secrets for env, the node's allocatable).
    pub volumes: &'a Volumes,
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
        mounts: volume::mounts::container_mounts(
            inputs.pod,
            c,
            inputs.volumes_dir,
            &own_env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        )
        .map_err(ConfigError)?,
        security: security::runtime_security(&effective, inputs.security)?,
        sysctls: security::sysctls(inputs.pod, inputs.security)?,
        resources: resources.cgroup,
        oom_score_adj: Some(resources.oom_score_adj),
    })
}

/// The container's own env, as upstream builds it: `envFrom` sources first, then `env`
/// in order, values with `$(VAR)` expanded against the variables before them, and
/// `valueFrom` from the downward API, configMaps and secrets.
fn env(inputs: &Inputs<'_>) -> Result<Vec<(String, String)>, ConfigError> {
    let c = inputs.container;
    let namespace = inputs.pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut out: Vec<(String, String)> = Vec::new();
    let set = |out: &mut Vec<(String, String)>, name: String, value: String| {
        out.retain(|(k, _)| *k != name);
        out.push((name, value));
    };
    for from in c.env_from.iter().flatten() {
        let (kind, name, optional) = match (&from.config_map_ref, &from.secret_ref) {
            (Some(r), _) => (Kind::ConfigMap, &r.name, r.optional.unwrap_or(false)),
            (None, Some(r)) => (Kind::Secret, &r.name, r.optional.unwrap_or(false)),
            (None, None) => continue,
        };
        let Some(data) = object_data(inputs, kind, namespace, name, optional)? else {
            continue;
        };
        let prefix = from.prefix.as_deref().unwrap_or_default();
        for (key, bytes) in data {
            let var = format!("{prefix}{key}");
            // Upstream skips keys that are not valid variable names (with an event).
            if is_env_var_name(&var) {
                set(&mut out, var, String::from_utf8_lossy(&bytes).into_owned());
            }
        }
    }
    for var in c.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (_, Some(from)) => match value_from(inputs, var, from, namespace)? {
                Some(value) => value,
                None => continue,
            },
            (Some(v), None) => {
                let known: BTreeMap<&str, &str> =
                    out.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                expand(v, &known)
            }
            (None, None) => String::new(),
        };
        set(&mut out, var.name.clone(), value);
    }
    Ok(out)
}

/// One `valueFrom`; None when an optional configMap or secret (or key) is missing.
fn value_from(
    inputs: &Inputs<'_>,
    var: &EnvVar,
    from: &EnvVarSource,
    namespace: &str,
) -> Result<Option<String>, ConfigError> {
    let ctx = downward::Context {
        pod: inputs.pod,
        pod_ips: inputs.pod_ips,
        host_ips: inputs.host_ips,
        node_name: inputs.node_name,
        allocatable: inputs.volumes.node(),
    };
    let named = |e: String| ConfigError(format!("env {:?}: {e}", var.name));
    if let Some(field) = &from.field_ref {
        return downward::field_value(&ctx, field, Use::Env)
            .map(Some)
            .map_err(named);
    }
    if let Some(resource) = &from.resource_field_ref {
        return downward::resource_value(&ctx, &inputs.container.name, resource)
            .map(Some)
            .map_err(named);
    }
    let (kind, name, key, optional) = match (&from.config_map_key_ref, &from.secret_key_ref) {
        (Some(r), _) => (
            Kind::ConfigMap,
            &r.name,
            &r.key,
            r.optional.unwrap_or(false),
        ),
        (None, Some(r)) => (Kind::Secret, &r.name, &r.key, r.optional.unwrap_or(false)),
        (None, None) => return Err(named("valueFrom names no source".into())),
    };
    let Some(data) = object_data(inputs, kind, namespace, name, optional)? else {
        return Ok(None);
    };
    match data.get(key) {
        Some(bytes) => Ok(Some(String::from_utf8_lossy(bytes).into_owned())),
        None if optional => Ok(None),
        None => Err(ConfigError(format!(
            "couldn't find key {key} in {} {namespace}/{name}",
            kind.title()
        ))),
    }
}

/// A configMap's or secret's data; None if it is missing and optional.
fn object_data(
    inputs: &Inputs<'_>,
    kind: Kind,
    namespace: &str,
    name: &str,
    optional: bool,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, ConfigError> {
    match source::data(inputs.volumes.objects().as_ref(), kind, namespace, name)
        .map_err(ConfigError)?
    {
        Some(data) => Ok(Some(data)),
        None if optional => Ok(None),
        None => Err(ConfigError(kind.not_found(name))),
    }
}

/// `[-._a-zA-Z][-._a-zA-Z0-9]*`, as upstream validates env var names.
fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || "-._".contains(c))
        && chars.all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
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
