//! A pod container's confinement in the OCI config: capabilities, no_new_privs, the
//! seccomp profile resolved for the final capabilities, and what `privileged` lifts
//! (masked and read-only paths, the read-only `/sys`, the device allowlist), as
//! containerd's CRI plugin sets them.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::seccomp::profile::{host_arch, host_kernel, Profile, Target};

/// The capabilities of a Kubernetes container that asks for none in particular: the set
/// container engines grant by default (wider than `runc spec`'s three, e.g. `CHOWN` for
/// package managers and `NET_RAW` for `ping`).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// `/dev` subdirectories that hold per-mount instances, not host devices to copy.
const NOT_HOST_DEVICES: &[&str] = &["pts", "shm", "mqueue", "fd", "hugepages"];

/// The pod namespace a sysctl belongs to, in the sandbox's plain terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysctlScope {
    /// The pod's network namespace (`net.*`).
    Network,
    /// The pod's IPC namespace (`kernel.shm*`, `kernel.msg*`, `kernel.sem*`, `fs.mqueue.*`).
    Ipc,
}

/// Which of the pod's namespaces `key` (dotted) is confined to; `None` for a sysctl a pod
/// may not set (global ones, and the UTS names the pod's hostname owns).
pub fn sysctl_scope(key: &str) -> Option<SysctlScope> {
    use oci_spec::runtime::LinuxNamespaceType;
    match crate::namespace::of_sysctl(key)? {
        LinuxNamespaceType::Network => Some(SysctlScope::Network),
        LinuxNamespaceType::Ipc => Some(SysctlScope::Ipc),
        _ => None,
    }
}

/// How a container is confined. The default is an ordinary container: the default
/// capabilities, privilege escalation allowed, no seccomp filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Security {
    /// The process's capabilities (`CAP_*`: bounding, effective and permitted); `None`:
    /// [`DEFAULT_CAPABILITIES`].
    pub capabilities: Option<Vec<String>>,
    /// All host devices, no masked or read-only paths, writable `/sys` and cgroupfs.
    pub privileged: bool,
    /// Set no_new_privs (`allowPrivilegeEscalation: false`).
    pub no_new_privileges: bool,
    /// The seccomp profile, resolved against the final capabilities; `None`: unconfined.
    pub seccomp: Option<Profile>,
}

impl Security {
    /// The capability names the process gets.
    pub fn capability_names(&self) -> Vec<String> {
        match &self.capabilities {
            Some(caps) => caps.clone(),
            None => DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect(),
        }
    }
}

/// Write `security` into an OCI config being built (as JSON). `dev` is the host's `/dev`,
/// read for a privileged container's devices. Fails only if the resolved seccomp filter
/// cannot be written, so a container never runs unconfined by accident.
pub fn apply(spec: &mut Value, security: &Security, dev: &Path) -> Result<(), serde_json::Error> {
    let caps = security.capability_names();
    let process = &mut spec["process"];
    process["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps});
    process["noNewPrivileges"] = json!(security.no_new_privileges);
    if let Some(profile) = &security.seccomp {
        let seccomp = profile.resolve(&Target {
            capabilities: &caps,
            arch: host_arch(),
            kernel: host_kernel(),
        });
        spec["linux"]["seccomp"] = serde_json::to_value(seccomp)?;
    }
    if security.privileged {
        unconfine(spec, dev);
    }
    Ok(())
}

/// What `privileged` lifts: nothing masked or read-only, `/sys` and the cgroupfs
/// writable, every host device present and allowed.
fn unconfine(spec: &mut Value, dev: &Path) {
    let linux = &mut spec["linux"];
    linux["maskedPaths"] = json!([]);
    linux["readonlyPaths"] = json!([]);
    linux["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
    linux["devices"] = Value::Array(host_devices(dev));
    if let Some(mounts) = spec["mounts"].as_array_mut() {
        for mount in mounts.iter_mut() {
            if matches!(mount["type"].as_str(), Some("sysfs" | "cgroup")) {
                if let Some(options) = mount["options"].as_array_mut() {
                    options.retain(|o| o != "ro");
                    options.push(json!("rw"));
                }
            }
        }
    }
}

/// The character and block devices under `dev`, as `linux.devices` entries.
pub fn host_devices(dev: &Path) -> Vec<Value> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut dirs = vec![dev.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let kind = meta.file_type();
            if kind.is_dir() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if dir == dev && (NOT_HOST_DEVICES.contains(&&*name) || name.starts_with('.')) {
                    continue;
                }
                dirs.push(path);
                continue;
            }
            let type_ = if kind.is_char_device() {
                "c"
            } else if kind.is_block_device() {
                "b"
            } else {
                continue;
            };
            // /dev/console is the container's own (its terminal, or nothing).
            if path == dev.join("console") {
                continue;
            }
            let Ok(inside) = path.strip_prefix(dev) else {
                continue;
            };
            out.push(json!({
                "path": Path::new("/dev").join(inside),
                "type": type_,
                "major": nix::sys::stat::major(meta.rdev()),
                "minor": nix::sys::stat::minor(meta.rdev()),
                "fileMode": meta.mode() & 0o7777,
                "uid": meta.uid(),
                "gid": meta.gid(),
            }));
        }
    }
    out.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Value {
        crate::defaults::example_spec()
    }

    #[test]
    fn defaults_are_an_ordinary_container() {
        let mut s = spec();
        apply(&mut s, &Security::default(), Path::new("/nonexistent")).unwrap();
        assert_eq!(
            s["process"]["capabilities"]["bounding"],
            json!(DEFAULT_CAPABILITIES)
        );
        assert_eq!(s["process"]["noNewPrivileges"], json!(false));
        assert!(s["linux"]["seccomp"].is_null());
        assert!(!s["linux"]["maskedPaths"].as_array().unwrap().is_empty());
    }

    #[test]
    fn seccomp_is_resolved_for_the_final_capabilities() {
        let mut s = spec();
        let security = Security {
            capabilities: Some(vec!["CAP_SYS_ADMIN".into()]),
            no_new_privileges: true,
            seccomp: Some(Profile::runtime_default()),
            ..Security::default()
        };
        apply(&mut s, &security, Path::new("/nonexistent")).unwrap();
        let text = s["linux"]["seccomp"].to_string();
        assert!(text.contains("\"mount\""), "CAP_SYS_ADMIN allows mount");
        assert_eq!(s["process"]["noNewPrivileges"], json!(true));
        let _: oci_spec::runtime::Spec = serde_json::from_value(s).unwrap();
    }

    #[test]
    fn privileged_lifts_masks_and_copies_devices() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = spec();
        let security = Security {
            privileged: true,
            ..Security::default()
        };
        apply(&mut s, &security, tmp.path()).unwrap();
        assert_eq!(s["linux"]["maskedPaths"], json!([]));
        assert_eq!(s["linux"]["readonlyPaths"], json!([]));
        let sysfs = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["type"] == "sysfs")
            .unwrap();
        assert!(!sysfs["options"].as_array().unwrap().contains(&json!("ro")));
        assert_eq!(s["linux"]["resources"]["devices"][0]["allow"], json!(true));
        let devices = host_devices(Path::new("/dev"));
        assert!(devices.iter().any(|d| d["path"] == "/dev/null"));
        assert!(!devices
            .iter()
            .any(|d| d["path"].as_str().unwrap().starts_with("/dev/pts/")));
        let _: oci_spec::runtime::Spec = serde_json::from_value(s).unwrap();
    }
}
