//! [`TestPod`]: a pod sandbox in throwaway locations ([`Scratch`]) with busybox containers
//! run from the bundles the sandbox writes, by the runtime CLI or by a shim, as the pod
//! manager runs them; everything is taken down on drop, even when the test fails.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use runtime::logs::LogOptions;
use runtime::sandbox::{ContainerConfig, Paths, Qos, Sandbox, SandboxConfig};
use runtime::shim::{self, ShimConfig, Started};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::cli::{self, binary_path, Output};
use crate::host::{process_gone, remove_cgroup_tree, require_root, unique_suffix, wait_until};
use crate::Bundle;

/// The Kubernetes namespace of every test pod.
pub const NAMESPACE: &str = "peapod-tests";

/// Throwaway sandbox locations: a state dir and a cgroup root of the test's own, so the
/// node-level `kubepods` parents a sandbox keeps (as the kubelet keeps them) go with the
/// test. The pod netns is still pinned in the real `/run/netns`, where `ip netns` looks.
pub struct Scratch {
    /// Where sandboxes made with these locations keep their state and cgroups.
    pub paths: Paths,
    _state: TempDir,
}

impl Scratch {
    /// A state dir `<prefix>-sandboxes-*` in the temp dir and the cgroup root
    /// `/<prefix>-<unique>`; the cgroup tree is removed on drop.
    pub fn new(prefix: &str) -> Scratch {
        let state = tempdir(&format!("{prefix}-sandboxes-"));
        let paths = Paths {
            state_dir: state.path().to_path_buf(),
            cgroup_root: PathBuf::from(format!("/{prefix}-{}", unique_suffix())),
            ..Paths::default()
        };
        Scratch {
            paths,
            _state: state,
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        remove_cgroup_tree(&self.paths.cgroup_root);
    }
}

/// A sandbox (pod `web-<unique>` in [`NAMESPACE`]) in a [`Scratch`] of its own, whose
/// containers run with a runtime `--root` of the pod's own. On drop the containers are
/// killed (their shims waited for) and force-deleted, then the sandbox is removed.
pub struct TestPod {
    /// The pod's sandbox: its namespaces' pins, cgroup, state dir and bundles.
    pub sandbox: Sandbox,
    /// Where the sandbox lives.
    pub scratch: Scratch,
    /// The runtime's `--root` for the pod's containers.
    root: TempDir,
    /// In the order they were started.
    containers: Vec<PodContainer>,
    /// The busybox rootfs of each container (one each: containers write to them).
    rootfs: Vec<Bundle>,
}

/// A container of a [`TestPod`].
#[derive(Debug, Clone)]
pub struct PodContainer {
    /// The container's name in the pod.
    pub name: String,
    /// The runtime's id for it: 64 lowercase hex digits, as containerd makes them.
    pub id: String,
    /// Its shim, when a shim runs it.
    pub shim: Option<Started>,
}

impl TestPod {
    /// Creates the sandbox, with scratch locations named after `prefix` (such as
    /// `pp-stream`) and `qos` for its cgroup's place under `kubepods`.
    #[track_caller]
    pub fn new(prefix: &str, qos: Qos) -> TestPod {
        require_root();
        let scratch = Scratch::new(prefix);
        let suffix = unique_suffix();
        let config = SandboxConfig {
            name: format!("web-{suffix}"),
            namespace: NAMESPACE.into(),
            uid: format!("uid-{suffix}"),
            hostname: format!("web-{suffix}"),
            qos,
            resources: Default::default(),
        };
        let sandbox = Sandbox::create(&config, &scratch.paths).expect("the sandbox is created");
        TestPod {
            sandbox,
            scratch,
            root: tempdir(&format!("{prefix}-root-")),
            containers: Vec::new(),
            rootfs: Vec::new(),
        }
    }

    /// The pod's name.
    pub fn name(&self) -> &str {
        &self.sandbox.config().name
    }

    /// The runtime's `--root` for the pod's containers.
    pub fn runtime_root(&self) -> &Path {
        self.root.path()
    }

    /// Runs container `name` of the pod, detached, with `sh -c script`, through the
    /// runtime CLI; returns its id.
    #[track_caller]
    pub fn run(&mut self, name: &str, script: &str) -> String {
        let (id, bundle) = self.write_bundle(name, script);
        self.runtime(&[
            "run",
            "--detach",
            "--bundle",
            &bundle.to_string_lossy(),
            &id,
        ])
        .ok();
        self.containers.push(PodContainer {
            name: name.into(),
            id: id.clone(),
            shim: None,
        });
        id
    }

    /// Runs container `name` of the pod with `sh -c script` through a shim, as the pod
    /// manager does, its CRI log at `log_path`; returns its id.
    #[track_caller]
    pub fn start(&mut self, name: &str, script: &str, log_path: PathBuf) -> String {
        let (id, bundle) = self.write_bundle(name, script);
        let config = ShimConfig {
            binary: binary_path(
                "PEAPOD_SHIM",
                "peapod-shim",
                "`cargo build -p peapod-runtime`",
            ),
            id: id.clone(),
            root: self.root.path().to_path_buf(),
            bundle: bundle.clone(),
            log_path,
            exit_file: bundle.join("exit.json"),
            shim_log: bundle.join("shim.log"),
            log: LogOptions::default(),
        };
        let started = shim::spawn(&config).unwrap_or_else(|e| panic!("shim spawn: {e}"));
        self.containers.push(PodContainer {
            name: name.into(),
            id: id.clone(),
            shim: Some(started),
        });
        id
    }

    /// Writes the bundle of container `name` into the sandbox: `sh -c script` in a busybox
    /// rootfs of its own (only the rootfs of the [`Bundle`] is used; the sandbox writes the
    /// config). Returns the container's id and the bundle.
    #[track_caller]
    fn write_bundle(&mut self, name: &str, script: &str) -> (String, PathBuf) {
        let rootfs = Bundle::new();
        let id = container_id(&format!("{}/{name}", self.sandbox.name()));
        let config = ContainerConfig {
            name: name.into(),
            rootfs: rootfs.rootfs(),
            args: vec!["sh".into(), "-c".into(), script.into()],
            ..ContainerConfig::default()
        };
        let bundle = self
            .sandbox
            .write_bundle(&id, &config)
            .expect("the bundle is written");
        self.rootfs.push(rootfs);
        (id, bundle)
    }

    /// The pod's containers, in the order they were started.
    pub fn containers(&self) -> &[PodContainer] {
        &self.containers
    }

    /// Container `name`; panics if the test never started it.
    #[track_caller]
    pub fn container(&self, name: &str) -> &PodContainer {
        self.containers
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no container {name} was started"))
    }

    /// Runs the runtime CLI with `args` on the pod's `--root`.
    pub fn runtime(&self, args: &[&str]) -> Output {
        let root = self.root.path().to_string_lossy().into_owned();
        let mut all = vec!["--root", root.as_str()];
        all.extend_from_slice(args);
        cli::run(all)
    }

    /// Runs `sh -c script` in container `name` (`runtime exec`).
    #[track_caller]
    pub fn exec(&self, name: &str, script: &str) -> Output {
        self.runtime(&["exec", &self.container(name).id, "sh", "-c", script])
    }

    /// Waits until `script` succeeds in container `name` (e.g. a server listens); panics
    /// after 10 s.
    #[track_caller]
    pub fn wait_for(&self, name: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.exec(name, script).success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{script:?} never succeeded in {name}");
    }

    /// The host PID of container `name`'s init: as its shim reported it, else from
    /// `runtime state`.
    #[track_caller]
    pub fn pid(&self, name: &str) -> i32 {
        let container = self.container(name);
        if let Some(started) = container.shim {
            return started.pid;
        }
        let state = self.runtime(&["state", &container.id]).ok().json();
        state["pid"]
            .as_i64()
            .and_then(|pid| i32::try_from(pid).ok())
            .unwrap_or_else(|| panic!("no pid in {state}"))
    }

    /// Force-deletes container `name`; panics unless the runtime succeeds.
    #[track_caller]
    pub fn delete(&self, name: &str) {
        self.runtime(&["delete", "--force", &self.container(name).id])
            .ok();
    }
}

impl Drop for TestPod {
    fn drop(&mut self) {
        // Best effort: the test has already failed if any of this is still needed, and a
        // container the test deleted makes `delete` fail harmlessly.
        for container in &self.containers {
            if let Some(started) = container.shim {
                // The shim writes the exit record into the sandbox: let it finish first.
                if !process_gone(started.shim_pid) {
                    let _ = self.runtime(&["kill", &container.id, "KILL"]);
                    wait_until(Duration::from_secs(20), || process_gone(started.shim_pid));
                }
            }
            let _ = self.runtime(&["delete", "--force", &container.id]);
        }
        if let Err(e) = self.sandbox.remove() {
            eprintln!("removing sandbox {}: {e}", self.sandbox.name());
        }
    }
}

/// A container id shaped as containerd makes them (64 lowercase hex digits), from `seed`.
fn container_id(seed: &str) -> String {
    Sha256::digest(seed.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn tempdir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("a temp dir")
}
