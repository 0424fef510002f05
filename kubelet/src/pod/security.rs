//! A container's securityContext in the runtime's terms, as the upstream kubelet and
//! containerd compute it: the pod's context merged under the container's, capabilities
//! from containerd's default set with add/drop, privileged mode, no_new_privs, the
//! seccomp profile (RuntimeDefault, Unconfined, Localhost), runAsNonRoot, and the pod's
//! sysctls checked against the safe set and `--allowed-unsafe-sysctls`.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{
    Container, Pod, PodSecurityContext, PodSpec, SeccompProfile, SecurityContext,
};

use runtime::sandbox::{sysctl_scope, Security, SysctlScope, DEFAULT_CAPABILITIES};
use runtime::seccomp::profile::Profile;

use super::process::ConfigError;

/// The sysctls Kubernetes deems safe: namespaced, and unable to affect other pods.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];
/// The pod admission reason of a forbidden sysctl.
pub const SYSCTL_FORBIDDEN: &str = "SysctlForbidden";

/// The node's security settings (kubelet flags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSecurity {
    /// `--seccomp-default`: RuntimeDefault for containers that name no profile.
    pub seccomp_default: bool,
    /// Where `Localhost` profiles live (`<--root>/seccomp`, as upstream's `<root-dir>/seccomp`).
    pub seccomp_root: PathBuf,
    /// `--allowed-unsafe-sysctls`: names or `prefix*` patterns of namespaced sysctls.
    pub allowed_unsafe_sysctls: Vec<String>,
}

impl NodeSecurity {
    /// Check `--allowed-unsafe-sysctls`: every pattern must be namespaced, as upstream
    /// refuses to start otherwise.
    pub fn check(&self) -> Result<(), String> {
        for pattern in &self.allowed_unsafe_sysctls {
            let name = pattern.trim_end_matches('*');
            if sysctl_scope(name).is_none() {
                return Err(format!(
                    "--allowed-unsafe-sysctls: {pattern:?} is not a namespaced sysctl"
                ));
            }
        }
        Ok(())
    }
}

/// The context a container runs with: the container's fields over the pod's where both
/// may set them (users, groups, runAsNonRoot, seccomp), and the pod's groups.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effective {
    /// runAsUser.
    pub run_as_user: Option<i64>,
    /// runAsGroup.
    pub run_as_group: Option<i64>,
    /// runAsNonRoot.
    pub run_as_non_root: bool,
    /// supplementalGroups, then fsGroup (which the process also joins).
    pub supplemental_groups: Vec<i64>,
    /// seccompProfile.
    pub seccomp: Option<SeccompProfile>,
    /// The container's own context.
    pub container: SecurityContext,
}

impl Effective {
    /// Merge `container`'s context over `pod`'s.
    pub fn of(pod: &Pod, container: &Container) -> Effective {
        let p: PodSecurityContext = pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.clone())
            .unwrap_or_default();
        let c = container.security_context.clone().unwrap_or_default();
        let mut groups = p.supplemental_groups.clone().unwrap_or_default();
        groups.extend(p.fs_group);
        Effective {
            run_as_user: c.run_as_user.or(p.run_as_user),
            run_as_group: c.run_as_group.or(p.run_as_group),
            run_as_non_root: c.run_as_non_root.or(p.run_as_non_root).unwrap_or(false),
            supplemental_groups: groups,
            seccomp: c.seccomp_profile.clone().or(p.seccomp_profile),
            container: c,
        }
    }

    fn privileged(&self) -> bool {
        self.container.privileged.unwrap_or(false)
    }
}

/// `runAsNonRoot`: refuse a container that would run as uid 0, judged like upstream from
/// runAsUser or else the image's `User` (empty means root; a name cannot be verified).
pub fn verify_run_as_non_root(
    pod: &Pod,
    container: &Container,
    effective: &Effective,
    image_user: &str,
) -> Result<(), ConfigError> {
    if !effective.run_as_non_root {
        return Ok(());
    }
    let meta = &pod.metadata;
    let who = format!(
        "pod: \"{}_{}({})\", container: {}",
        meta.name.as_deref().unwrap_or_default(),
        meta.namespace.as_deref().unwrap_or_default(),
        meta.uid.as_deref().unwrap_or_default(),
        container.name
    );
    if let Some(uid) = effective.run_as_user {
        return match uid {
            0 => Err(ConfigError(format!(
                "container's runAsUser breaks non-root policy ({who})"
            ))),
            _ => Ok(()),
        };
    }
    let user = image_user.split(':').next().unwrap_or_default();
    match user.parse::<u32>() {
        _ if user.is_empty() => Err(ConfigError(format!(
            "container has runAsNonRoot and image will run as root ({who})"
        ))),
        Ok(0) => Err(ConfigError(format!(
            "container has runAsNonRoot and image will run as root ({who})"
        ))),
        Ok(_) => Ok(()),
        Err(_) => Err(ConfigError(format!(
            "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root ({who})"
        ))),
    }
}

/// Capabilities, privileged mode, no_new_privs and the seccomp profile.
pub fn runtime_security(
    effective: &Effective,
    node: &NodeSecurity,
) -> Result<Security, ConfigError> {
    let c = &effective.container;
    if c.proc_mount.as_deref().is_some_and(|m| m != "Default") {
        return Err(ConfigError(format!(
            "securityContext.procMount {:?}: only Default is supported (Unmasked needs a user namespace)",
            c.proc_mount.as_deref().unwrap_or_default()
        )));
    }
    let privileged = effective.privileged();
    let capabilities = if privileged {
        runtime::capability::current()
    } else {
        let caps = c.capabilities.clone().unwrap_or_default();
        capabilities(
            caps.add.as_deref().unwrap_or_default(),
            caps.drop.as_deref().unwrap_or_default(),
        )?
    };
    // Privileged containers run unconfined, as containerd runs them.
    let seccomp = if privileged {
        None
    } else {
        seccomp_profile(effective.seccomp.as_ref(), node)?
    };
    Ok(Security {
        capabilities: Some(capabilities),
        privileged,
        no_new_privileges: !privileged && c.allow_privilege_escalation == Some(false),
        seccomp,
    })
}

/// containerd's rule: the default set; `ALL` in add grants every capability the node
/// agent holds, `ALL` in drop removes every one; then the named ones are added, then the named ones dropped.
/// Names are case-insensitive and the `CAP_` prefix is optional.
pub fn capabilities(add: &[String], drop: &[String]) -> Result<Vec<String>, ConfigError> {
    let known = runtime::capability::known();
    let is_all = |c: &&String| c.eq_ignore_ascii_case("ALL");
    let normal = |list: &[String], field: &str| -> Result<Vec<String>, ConfigError> {
        list.iter()
            .filter(|c| !is_all(c))
            .map(|c| {
                let upper = c.to_ascii_uppercase();
                let name = if upper.starts_with("CAP_") {
                    upper
                } else {
                    format!("CAP_{upper}")
                };
                if known.contains(&name) {
                    Ok(name)
                } else {
                    Err(ConfigError(format!(
                        "securityContext.capabilities.{field}: unknown capability {c:?}"
                    )))
                }
            })
            .collect()
    };
    let (added, dropped) = (normal(add, "add")?, normal(drop, "drop")?);
    let mut caps: Vec<String> = if add.iter().any(|c| is_all(&c)) {
        runtime::capability::current()
    } else {
        DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect()
    };
    if drop.iter().any(|c| is_all(&c)) {
        caps.clear();
    }
    for cap in added {
        if !caps.contains(&cap) {
            caps.push(cap);
        }
    }
    caps.retain(|c| !dropped.contains(c));
    Ok(caps)
}

/// The profile a container gets: its own or the pod's seccompProfile, else RuntimeDefault
/// under `--seccomp-default`, else none (Unconfined), as upstream.
fn seccomp_profile(
    profile: Option<&SeccompProfile>,
    node: &NodeSecurity,
) -> Result<Option<Profile>, ConfigError> {
    let Some(profile) = profile else {
        return Ok(node.seccomp_default.then(Profile::runtime_default));
    };
    match profile.type_.as_str() {
        "RuntimeDefault" => Ok(Some(Profile::runtime_default())),
        "Unconfined" => Ok(None),
        "Localhost" => {
            let relative = profile.localhost_profile.as_deref().unwrap_or_default();
            let path = localhost_path(&node.seccomp_root, relative)?;
            let text = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError(format!(
                    "seccompProfile Localhost: reading {}: {e}",
                    path.display()
                ))
            })?;
            Profile::from_json(&text).map(Some).map_err(|e| {
                ConfigError(format!("seccompProfile Localhost {}: {e}", path.display()))
            })
        }
        other => Err(ConfigError(format!(
            "seccompProfile.type {other:?}: expected RuntimeDefault, Unconfined or Localhost"
        ))),
    }
}

/// A Localhost profile's file: a relative path without `..` under the seccomp root.
fn localhost_path(root: &Path, relative: &str) -> Result<PathBuf, ConfigError> {
    let path = Path::new(relative);
    if relative.is_empty()
        || !path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(ConfigError(format!(
            "seccompProfile.localhostProfile {relative:?}: expected a relative path without '..' under {}",
            root.display()
        )));
    }
    Ok(root.join(path))
}

/// The pod's sysctls, checked as upstream admits them; names may use `/` separators.
pub fn sysctls(pod: &Pod, node: &NodeSecurity) -> Result<BTreeMap<String, String>, ConfigError> {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut out = BTreeMap::new();
    for sysctl in spec
        .security_context
        .as_ref()
        .and_then(|s| s.sysctls.as_ref())
        .into_iter()
        .flatten()
    {
        let name = dotted(&sysctl.name);
        check_sysctl(&name, &spec, node).map_err(ConfigError)?;
        out.insert(name, sysctl.value.clone());
    }
    Ok(out)
}

/// Pod admission: `Err((reason, message))` when a sysctl is not allowed on this node, so
/// the pod fails as upstream's kubelet rejects it.
pub fn admit_sysctls(pod: &Pod, node: &NodeSecurity) -> Result<(), (&'static str, String)> {
    sysctls(pod, node)
        .map(drop)
        .map_err(|e| (SYSCTL_FORBIDDEN, e.0))
}

fn check_sysctl(name: &str, spec: &PodSpec, node: &NodeSecurity) -> Result<(), String> {
    let allowed = SAFE_SYSCTLS.contains(&name)
        || node
            .allowed_unsafe_sysctls
            .iter()
            .any(|p| match p.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => p == name,
            });
    if !allowed {
        return Err(format!("forbidden sysctl: {name:?} not allowlisted"));
    }
    match sysctl_scope(name) {
        Some(SysctlScope::Network) if spec.host_network == Some(true) => Err(format!(
            "forbidden sysctl: {name:?} not allowed with host net enabled"
        )),
        Some(SysctlScope::Ipc) if spec.host_ipc == Some(true) => Err(format!(
            "forbidden sysctl: {name:?} not allowed with host ipc enabled"
        )),
        Some(_) => Ok(()),
        None => Err(format!(
            "forbidden sysctl: {name:?} is not namespaced by the pod (net.* or IPC)"
        )),
    }
}

/// `a/b.c/d` → `a.b/c.d`: a name written with `/` separators, where a `.` is part of a
/// component, in the usual dotted form.
fn dotted(name: &str) -> String {
    if !name.contains('/') {
        return name.to_string();
    }
    name.chars()
        .map(|c| match c {
            '/' => '.',
            '.' => '/',
            c => c,
        })
        .collect()
}

/// The API server's securityContext checks: privilege escalation cannot be forbidden
/// for a container that is privileged or adds CAP_SYS_ADMIN. Returns (path, message).
pub fn validate(spec: &PodSpec) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    let init = spec.init_containers.iter().flatten().enumerate();
    let all = init
        .map(|(i, c)| (format!("spec.initContainers[{i}]"), c))
        .chain(
            spec.containers
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("spec.containers[{i}]"), c)),
        );
    for (path, c) in all {
        let Some(sc) = &c.security_context else {
            continue;
        };
        if sc.allow_privilege_escalation != Some(false) {
            continue;
        }
        let path = format!("{path}.securityContext");
        if sc.privileged == Some(true) {
            errors.push((
                path.clone(),
                "Invalid value: cannot set `allowPrivilegeEscalation` to false and `privileged` to true".into(),
            ));
        }
        let adds_sys_admin = sc
            .capabilities
            .as_ref()
            .and_then(|caps| caps.add.as_ref())
            .is_some_and(|add| add.iter().any(|c| c == "SYS_ADMIN" || c == "CAP_SYS_ADMIN"));
        if adds_sys_admin {
            errors.push((
                path,
                "Invalid value: cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN".into(),
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn pod(yaml: serde_json::Value) -> Pod {
        serde_json::from_value(yaml).unwrap()
    }

    #[test]
    fn capabilities_follow_containerd() {
        let caps = capabilities(&[], &[]).unwrap();
        assert_eq!(caps, DEFAULT_CAPABILITIES);
        let caps = capabilities(&strings(&["NET_BIND_SERVICE"]), &strings(&["ALL"])).unwrap();
        assert_eq!(caps, ["CAP_NET_BIND_SERVICE"]);
        let caps = capabilities(
            &strings(&["net_admin", "CAP_SYS_TIME"]),
            &strings(&["KILL"]),
        )
        .unwrap();
        assert!(caps.contains(&"CAP_NET_ADMIN".into()) && caps.contains(&"CAP_SYS_TIME".into()));
        assert!(!caps.contains(&"CAP_KILL".into()));
        let caps = capabilities(&strings(&["ALL"]), &strings(&["SYS_ADMIN"])).unwrap();
        assert!(caps.contains(&"CAP_CHOWN".into()), "tests run as root");
        assert!(!caps.contains(&"CAP_SYS_ADMIN".into()));
        let err = capabilities(&strings(&["FLY"]), &[]).unwrap_err();
        assert!(err.0.contains("\"FLY\""), "{err}");
    }

    #[test]
    fn container_fields_override_the_pods() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "securityContext": {"runAsUser": 1000, "runAsNonRoot": true, "supplementalGroups": [5], "fsGroup": 2000,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "c", "securityContext": {"runAsUser": 7, "seccompProfile": {"type": "Unconfined"}}}]
            }
        }));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let e = Effective::of(&p, c);
        assert_eq!(e.run_as_user, Some(7));
        assert!(e.run_as_non_root);
        assert_eq!(e.supplemental_groups, [5, 2000]);
        assert_eq!(e.seccomp.as_ref().unwrap().type_, "Unconfined");
        let s = runtime_security(&e, &NodeSecurity::default()).unwrap();
        assert!(s.seccomp.is_none());
        assert!(!s.no_new_privileges);
    }

    #[test]
    fn seccomp_defaults_to_unconfined_unless_the_node_says_so() {
        let p = pod(
            serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}),
        );
        let e = Effective::of(&p, &p.spec.as_ref().unwrap().containers[0]);
        let mut node = NodeSecurity::default();
        assert!(runtime_security(&e, &node).unwrap().seccomp.is_none());
        node.seccomp_default = true;
        let s = runtime_security(&e, &node).unwrap();
        assert_eq!(s.seccomp, Some(Profile::runtime_default()));
    }

    #[test]
    fn privileged_means_all_capabilities_and_no_filter() {
        let p = pod(serde_json::json!({"metadata": {"name": "p"}, "spec": {
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "securityContext": {"privileged": true}}]}}));
        let e = Effective::of(&p, &p.spec.as_ref().unwrap().containers[0]);
        let s = runtime_security(&e, &NodeSecurity::default()).unwrap();
        assert!(s.privileged && s.seccomp.is_none());
        assert!(s.capabilities.unwrap().contains(&"CAP_SYS_ADMIN".into()));
    }

    #[test]
    fn localhost_profiles_come_from_the_seccomp_root() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("team")).unwrap();
        std::fs::write(
            tmp.path().join("team/deny-mkdir.json"),
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        let node = NodeSecurity {
            seccomp_root: tmp.path().to_path_buf(),
            ..NodeSecurity::default()
        };
        let local = |path: &str| SeccompProfile {
            type_: "Localhost".into(),
            localhost_profile: Some(path.into()),
        };
        let p = seccomp_profile(Some(&local("team/deny-mkdir.json")), &node)
            .unwrap()
            .unwrap();
        assert_eq!(p.syscalls[0].names, ["mkdir"]);
        let err = seccomp_profile(Some(&local("../etc/x.json")), &node).unwrap_err();
        assert!(err.0.contains("without '..'"), "{err}");
        let err = seccomp_profile(Some(&local("missing.json")), &node).unwrap_err();
        assert!(err.0.contains("missing.json"), "{err}");
    }

    #[test]
    fn run_as_non_root_is_judged_like_upstream() {
        let p = pod(
            serde_json::json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}, "spec": {
            "securityContext": {"runAsNonRoot": true}, "containers": [{"name": "c"}]}}),
        );
        let c = &p.spec.as_ref().unwrap().containers[0];
        let e = Effective::of(&p, c);
        let err = verify_run_as_non_root(&p, c, &e, "").unwrap_err();
        assert_eq!(
            err.0,
            "container has runAsNonRoot and image will run as root (pod: \"p_ns(u1)\", container: c)"
        );
        assert!(verify_run_as_non_root(&p, c, &e, "0:0").is_err());
        assert!(verify_run_as_non_root(&p, c, &e, "1000").is_ok());
        let err = verify_run_as_non_root(&p, c, &e, "nobody").unwrap_err();
        assert!(err.0.contains("non-numeric user (nobody)"), "{err}");
        let mut e = e;
        e.run_as_user = Some(0);
        let err = verify_run_as_non_root(&p, c, &e, "1000").unwrap_err();
        assert!(err.0.contains("runAsUser breaks non-root policy"), "{err}");
    }

    #[test]
    fn sysctls_are_admitted_as_upstream() {
        let with = |sysctls: serde_json::Value, host_network: bool| {
            pod(serde_json::json!({"metadata": {"name": "p"}, "spec": {
                "hostNetwork": host_network,
                "securityContext": {"sysctls": sysctls}, "containers": [{"name": "c"}]}}))
        };
        let node = NodeSecurity {
            allowed_unsafe_sysctls: strings(&["kernel.msg*", "net.core.somaxconn"]),
            ..NodeSecurity::default()
        };
        let p = with(
            serde_json::json!([{"name": "net/ipv4/ip_unprivileged_port_start", "value": "80"},
                               {"name": "kernel.msgmax", "value": "9000"},
                               {"name": "net.core.somaxconn", "value": "1024"}]),
            false,
        );
        let got = sysctls(&p, &node).unwrap();
        assert_eq!(got["net.ipv4.ip_unprivileged_port_start"], "80");
        assert_eq!(got.len(), 3);
        let p = with(
            serde_json::json!([{"name": "kernel.sem", "value": "1"}]),
            false,
        );
        let (reason, message) = admit_sysctls(&p, &node).unwrap_err();
        assert_eq!(reason, SYSCTL_FORBIDDEN);
        assert!(message.contains("not allowlisted"), "{message}");
        let p = with(
            serde_json::json!([{"name": "net.ipv4.tcp_syncookies", "value": "1"}]),
            true,
        );
        let err = sysctls(&p, &node).unwrap_err();
        assert!(err.0.contains("host net"), "{err}");
        assert!(NodeSecurity {
            allowed_unsafe_sysctls: strings(&["kernel.pid_max"]),
            ..NodeSecurity::default()
        }
        .check()
        .is_err());
        assert!(node.check().is_ok());
    }

    #[test]
    fn escalation_rules_of_the_api_server() {
        let p = pod(
            serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "securityContext": {"allowPrivilegeEscalation": false, "privileged": true}},
            {"name": "b", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"add": ["SYS_ADMIN"]}}},
            {"name": "c", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"add": ["NET_ADMIN"]}}}]}}),
        );
        let errors = validate(p.spec.as_ref().unwrap());
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].0, "spec.containers[0].securityContext");
        assert!(errors[1].1.contains("CAP_SYS_ADMIN"));
    }
}
