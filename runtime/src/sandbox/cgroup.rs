//! The pod cgroup: named as the upstream kubelet's cgroupfs driver names it, made with the
//! runtime's [`cgroup`](crate::cgroup) module in every hierarchy the host has.
//!
//! The QoS-class parents (`kubepods`, `kubepods/burstable`, `kubepods/besteffort`) are node
//! structure, as they are for the upstream kubelet: a sandbox makes them when missing and never
//! removes them. That also keeps two sandboxes from racing, one removing an empty
//! `kubepods/burstable` while the other is about to make its pod cgroup inside it.
//!
//! The pod cgroup gets the pod's [`Resources`] (the kubelet sums its containers), and
//! `kubepods/besteffort` the smallest cpu weight, as the upstream kubelet's QoS manager
//! gives it: best-effort pods only get the CPU that no one else asks for.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cgroup::{Cgroup, CgroupError, Host};

use super::{Resources, SandboxConfig, SandboxError};

/// The node cgroup every pod cgroup lives under, below the kubelet's `--cgroup-root`.
const KUBEPODS: &str = "kubepods";
/// The cpu shares of `kubepods/besteffort`: the kernel's minimum, as upstream.
const BEST_EFFORT_SHARES: u64 = 2;

/// A pod's Kubernetes QoS class, which picks the parent of its cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Qos {
    /// Every container has equal requests and limits: directly under `kubepods`.
    Guaranteed,
    /// Some requests or limits: under `kubepods/burstable`.
    Burstable,
    /// No requests or limits at all: under `kubepods/besteffort`.
    BestEffort,
}

impl Qos {
    /// The QoS parent cgroup below `cgroup_root` (the kubelet's `--cgroup-root`, normally `/`).
    pub fn parent(self, cgroup_root: &Path) -> PathBuf {
        let root = cgroup_root.join(KUBEPODS);
        match self {
            Qos::Guaranteed => root.to_path_buf(),
            Qos::Burstable => root.join("burstable"),
            Qos::BestEffort => root.join("besteffort"),
        }
    }

    /// The limits of the QoS parent: only `besteffort` has any (its minimal cpu weight).
    /// `burstable`'s weight, the sum of its pods' requests upstream, is left to the kernel.
    fn parent_resources(self) -> Resources {
        match self {
            Qos::BestEffort => Resources {
                cpu_shares: BEST_EFFORT_SHARES,
                ..Resources::default()
            },
            Qos::Guaranteed | Qos::Burstable => Resources::default(),
        }
    }
}

/// The pod cgroup's path from each hierarchy's root:
/// `<cgroup root>/kubepods[/burstable|/besteffort]/pod<uid>`. The cgroupfs driver keeps the
/// uid's dashes (only the systemd driver turns them into `_`).
pub fn pod_path(cgroup_root: &Path, qos: Qos, uid: &str) -> PathBuf {
    qos.parent(cgroup_root).join(format!("pod{uid}"))
}

/// Make the QoS parent (kept for good) and the pod cgroup with the pod's limits in every
/// hierarchy of `host`.
pub fn create(
    host: &Host,
    cgroup_root: &Path,
    config: &SandboxConfig,
) -> Result<Cgroup, SandboxError> {
    let parent = config.qos.parent(cgroup_root);
    let parent_limits = config.qos.parent_resources().to_oci();
    // Dropped on purpose: the handle is what would remove the parent, and nothing should.
    Cgroup::create_on(host, Some(&parent), "kubepods", parent_limits.as_ref())
        .map_err(wrap(&parent))?;
    let path = pod_path(cgroup_root, config.qos, &config.uid);
    let limits = config.resources.to_oci();
    Cgroup::create_on(host, Some(&path), "pod", limits.as_ref()).map_err(wrap(&path))
}

/// Remove the pod cgroup from every hierarchy, with any empty container cgroups left inside it.
/// Missing directories are fine; one still holding processes is an error. A pod cgroup that
/// already existed when the sandbox was created (left by a crash) is removed too: the sandbox
/// owns its pod cgroup whoever made the directory.
pub fn remove(cgroup: &Cgroup, path: &Path) -> Result<(), SandboxError> {
    cgroup.remove().map_err(wrap(path))?;
    for placement in cgroup.placements() {
        match fs::remove_dir(&placement.path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(source) => {
                return Err(SandboxError::Io {
                    op: "remove the pod cgroup",
                    path: placement.path.clone(),
                    source,
                })
            }
        }
    }
    Ok(())
}

fn wrap(path: &Path) -> impl FnOnce(CgroupError) -> SandboxError {
    let path = path.to_path_buf();
    move |source| SandboxError::Cgroup {
        path,
        source: Box::new(source),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::cgroup::Version;

    const UID: &str = "6f1c7b0e-1d2a-4c3b-9e8f-0a1b2c3d4e5f";

    fn pod(qos: Qos, uid: &str) -> SandboxConfig {
        SandboxConfig {
            name: "web".into(),
            namespace: "default".into(),
            uid: uid.into(),
            hostname: "web".into(),
            qos,
            resources: Resources::default(),
            ..SandboxConfig::default()
        }
    }

    fn read(dir: &Path, file: &str) -> String {
        fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
    }

    #[test]
    fn pod_cgroups_are_named_as_the_kubelets_cgroupfs_driver_names_them() {
        assert_eq!(
            pod_path(Path::new("/"), Qos::Guaranteed, UID),
            Path::new("/kubepods/pod6f1c7b0e-1d2a-4c3b-9e8f-0a1b2c3d4e5f")
        );
        assert_eq!(
            pod_path(Path::new("/"), Qos::Burstable, "u1"),
            Path::new("/kubepods/burstable/podu1")
        );
        assert_eq!(
            pod_path(Path::new("/"), Qos::BestEffort, "u1"),
            Path::new("/kubepods/besteffort/podu1")
        );
    }

    /// A fake cgroup root: cgroup2 mounted at `root` (a pure v2 host), or the given v1
    /// hierarchies with cgroup2 at `unified` (this development host's hybrid layout).
    pub(in crate::sandbox) fn fake_host(tmp: &Path, v1: &[&str]) -> Host {
        let host = Host {
            root: tmp.join("cgroup"),
            mountinfo: tmp.join("mountinfo"),
            own_cgroup: tmp.join("self-cgroup"),
            device_filters: false,
        };
        fs::create_dir(&host.root).unwrap();
        let mut mountinfo = String::new();
        if v1.is_empty() {
            let root = host.root.display();
            mountinfo.push_str(&format!("29 23 0:26 / {root} rw - cgroup2 cgroup2 rw\n"));
            fs::write(host.root.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
            fs::write(host.root.join("cgroup.subtree_control"), "").unwrap();
        } else {
            for (n, controller) in v1.iter().chain(&["unified"]).enumerate() {
                let point = host.root.join(controller);
                fs::create_dir(&point).unwrap();
                let (fstype, options) = match *controller {
                    "unified" => ("cgroup2", String::new()),
                    c => ("cgroup", format!(",{c}")),
                };
                mountinfo.push_str(&format!(
                    "{} 31 0:{n} / {} rw - {fstype} {fstype} rw{options}\n",
                    40 + n,
                    point.display()
                ));
            }
        }
        fs::write(&host.mountinfo, mountinfo).unwrap();
        fs::write(&host.own_cgroup, "0::/\n").unwrap();
        host
    }

    #[test]
    fn v2_pod_cgroup_is_one_directory_under_the_qos_parent() {
        let tmp = tempfile::tempdir().unwrap();
        let host = fake_host(tmp.path(), &[]);
        let cgroup = create(&host, Path::new("/"), &pod(Qos::BestEffort, "u1")).unwrap();
        let [placement] = cgroup.placements() else {
            panic!("{cgroup:?}")
        };
        assert_eq!(placement.version, Version::V2);
        assert_eq!(placement.path, host.root.join("kubepods/besteffort/podu1"));

        remove(&cgroup, &pod_path(Path::new("/"), Qos::BestEffort, "u1")).unwrap();
        assert!(!placement.path.exists());
        assert!(
            host.root.join("kubepods/besteffort").is_dir(),
            "QoS parents stay"
        );
        remove(&cgroup, &pod_path(Path::new("/"), Qos::BestEffort, "u1")).unwrap();
    }

    #[test]
    fn v1_pod_cgroup_is_made_in_every_hierarchy_and_removed_with_leftover_containers() {
        let tmp = tempfile::tempdir().unwrap();
        let host = fake_host(tmp.path(), &["memory", "pids"]);
        let cgroup = create(&host, Path::new("/"), &pod(Qos::Guaranteed, "u2")).unwrap();
        let dirs: Vec<&Path> = cgroup
            .placements()
            .iter()
            .map(|p| p.path.as_path())
            .collect();
        assert_eq!(
            dirs,
            [
                host.root.join("memory/kubepods/podu2"),
                host.root.join("pids/kubepods/podu2"),
                host.root.join("unified/kubepods/podu2"),
            ]
        );
        fs::create_dir(host.root.join("memory/kubepods/podu2/c1")).unwrap();

        remove(&cgroup, &pod_path(Path::new("/"), Qos::Guaranteed, "u2")).unwrap();
        for dir in dirs {
            assert!(!dir.exists(), "{}", dir.display());
        }
        assert!(host.root.join("memory/kubepods").is_dir());
    }

    #[test]
    fn a_pod_cgroup_left_by_a_crash_is_joined_and_still_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let host = fake_host(tmp.path(), &[]);
        fs::create_dir_all(host.root.join("kubepods/burstable/podu3")).unwrap();
        let cgroup = create(&host, Path::new("/"), &pod(Qos::Burstable, "u3")).unwrap();
        remove(&cgroup, &pod_path(Path::new("/"), Qos::Burstable, "u3")).unwrap();
        assert!(!host.root.join("kubepods/burstable/podu3").exists());
    }

    #[test]
    fn v2_pod_limits_land_in_weight_max_and_pids_files() {
        let tmp = tempfile::tempdir().unwrap();
        let host = fake_host(tmp.path(), &[]);
        let config = SandboxConfig {
            resources: Resources {
                cpu_shares: 512,
                cpu_quota: 150_000,
                cpu_period: 100_000,
                memory_limit: 128 << 20,
                pids_limit: 100,
            },
            ..pod(Qos::Burstable, "u4")
        };
        // The fake tree's interface files keep it from being removed: the temp dir goes.
        create(&host, Path::new("/"), &config).unwrap();
        let dir = host.root.join("kubepods/burstable/podu4");
        assert_eq!(read(&dir, "cpu.weight"), "20", "runc's shares-to-weight");
        assert_eq!(read(&dir, "cpu.max"), "150000 100000");
        assert_eq!(read(&dir, "memory.max"), (128 << 20).to_string());
        assert_eq!(read(&dir, "pids.max"), "100");
        assert!(
            !host.root.join("kubepods/burstable/cpu.weight").exists(),
            "the burstable parent keeps the kernel's weight"
        );
    }

    #[test]
    fn v2_best_effort_parent_gets_the_smallest_weight() {
        let tmp = tempfile::tempdir().unwrap();
        let host = fake_host(tmp.path(), &[]);
        let config = SandboxConfig {
            resources: Resources {
                cpu_shares: 2,
                ..Resources::default()
            },
            ..pod(Qos::BestEffort, "u5")
        };
        // The fake tree's interface files keep it from being removed: the temp dir goes.
        create(&host, Path::new("/"), &config).unwrap();
        let parent = host.root.join("kubepods/besteffort");
        assert_eq!(read(&parent, "cpu.weight"), "1");
        assert_eq!(read(&parent.join("podu5"), "cpu.weight"), "1");
        assert!(!parent.join("podu5/memory.max").exists(), "no limit asked");
    }

    #[test]
    fn v1_pod_limits_go_to_each_controllers_hierarchy() {
        let tmp = tempfile::tempdir().unwrap();
        let host = fake_host(tmp.path(), &["cpu", "memory", "pids"]);
        let config = SandboxConfig {
            resources: Resources {
                cpu_shares: 1024,
                cpu_quota: 100_000,
                cpu_period: 100_000,
                memory_limit: 64 << 20,
                pids_limit: 0,
            },
            ..pod(Qos::Guaranteed, "u6")
        };
        // The fake tree's interface files keep it from being removed: the temp dir goes.
        create(&host, Path::new("/"), &config).unwrap();
        let cpu = host.root.join("cpu/kubepods/podu6");
        assert_eq!(read(&cpu, "cpu.shares"), "1024");
        assert_eq!(read(&cpu, "cpu.cfs_period_us"), "100000");
        assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "100000");
        let memory = host.root.join("memory/kubepods/podu6");
        assert_eq!(
            read(&memory, "memory.limit_in_bytes"),
            (64 << 20).to_string()
        );
        assert!(!host.root.join("pids/kubepods/podu6/pids.max").exists());
    }
}
