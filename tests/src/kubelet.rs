//! [`Kubelet`]: a `peapod-kubelet` under test with a node of its own — manifests folder,
//! image store (holding a busybox image made from the host's busybox-static), runtime
//! root, sandbox state, logs and cgroup root in throwaway places, and its pod network in
//! a private "host" network namespace, so the bridge, the veths' host ends and the
//! masquerade rules never touch the real host. Pods' namespaces are pinned in the real
//! `/run/netns` (unique names: the pod UID includes the test's manifests path).
//!
//! On drop every manifest is removed and the kubelet is given time to take its pods
//! down; whatever a failed test left is then forced away (containers, mounts, netns
//! pins, cgroups), so a failing test leaves nothing either.

use std::fs;
use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tempfile::TempDir;

use crate::cli::{binary_path, run_captured, Output};
use crate::host::{remove_cgroup_tree, require_root, unique_suffix, unmount_under, wait_until};

/// The image every test pod runs: busybox with all its applets.
pub const BUSYBOX: &str = "peapod.test/busybox:latest";
/// How long a CLI call may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// The `peapod-kubelet` binary under test (`$PEAPOD_KUBELET`, else beside the tests).
pub fn kubelet_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        binary_path(
            "PEAPOD_KUBELET",
            "peapod-kubelet",
            "`cargo build --workspace --bins`",
        )
    })
}

/// A running kubelet with a node of its own.
pub struct Kubelet {
    dir: TempDir,
    host_netns: String,
    node_name: String,
    cgroup_root: PathBuf,
    /// Flags added to the kubelet's command line.
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl Kubelet {
    /// Start a kubelet whose pod network is peapod's bridge in a private host netns.
    #[track_caller]
    pub fn start() -> Kubelet {
        Kubelet::start_with_args(&[])
    }

    /// [`Kubelet::start`] with more `peapod-kubelet` flags (e.g. `--cluster-domain`).
    #[track_caller]
    pub fn start_with_args(args: &[&str]) -> Kubelet {
        require_root();
        let suffix = unique_suffix();
        let dir = tempfile::Builder::new()
            .prefix("pp-node-")
            .tempdir()
            .expect("a node directory");
        let host_netns = format!("pp-node-{suffix}");
        run_ok("ip", &["netns", "add", &host_netns]);
        let mut kubelet = Kubelet {
            dir,
            host_netns,
            node_name: "pp-node".into(),
            cgroup_root: PathBuf::from(format!("/pp-node-{suffix}")),
            extra_args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        kubelet.host_sh("ip link set lo up").ok();
        for sub in ["manifests", "cni", "images"] {
            fs::create_dir_all(kubelet.path(sub)).expect("a node subdirectory");
        }
        // peapod's default network as the kubelet prints it, with its address
        // allocations kept in the node's directory.
        let printed = Command::new(kubelet_path())
            .arg("--print-default-cni-config")
            .output()
            .expect("peapod-kubelet --print-default-cni-config");
        let mut conflist: serde_json::Value =
            serde_json::from_slice(&printed.stdout).expect("the default conflist is JSON");
        conflist["plugins"][1]["ipam"]["dataDir"] = serde_json::json!(kubelet.path("ipam"));
        fs::write(
            kubelet.path("cni/10-peapod.conflist"),
            serde_json::to_vec_pretty(&conflist).unwrap(),
        )
        .expect("writing the conflist");
        kubelet.import_busybox();
        kubelet.spawn();
        kubelet
    }

    /// A path in the node's directory.
    pub fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// The manifests folder.
    pub fn manifests(&self) -> PathBuf {
        self.path("manifests")
    }

    /// The node's name (static pods are named `<name>-<node>`).
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// The cgroup under which the kubelet makes `kubepods`.
    pub fn cgroup_root(&self) -> &Path {
        &self.cgroup_root
    }

    /// The local API socket.
    pub fn socket(&self) -> PathBuf {
        self.path("kubelet.sock")
    }

    /// The pods' CRI log directory.
    pub fn log_dir(&self) -> PathBuf {
        self.path("logs")
    }

    /// The private host network namespace's name.
    pub fn host_netns(&self) -> &str {
        &self.host_netns
    }

    /// The kubelet's own log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.path("kubelet.log")).unwrap_or_default()
    }

    fn import_busybox(&self) {
        let archive = self.path("busybox.tar");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/oci-image.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(&archive)
            .arg(BUSYBOX)
            .output()
            .expect("running scripts/oci-image.sh");
        assert!(out.status.success(), "oci-image.sh: {out:?}");
        let mut import = Command::new(crate::peapod::peapod_path());
        import
            .arg("--root")
            .arg(self.path("images"))
            .args(["image", "import"])
            .arg(&archive);
        run_captured(import, CLI_TIMEOUT).ok();
    }

    fn spawn(&mut self) {
        let log = fs::File::create(self.path("kubelet.log")).expect("the kubelet log");
        let bins = kubelet_path().parent().expect("the binaries' directory");
        let mut command = Command::new(kubelet_path());
        command
            .arg("--manifests")
            .arg(self.manifests())
            .arg("--socket")
            .arg(self.socket())
            .args(["--node-name", &self.node_name])
            .arg("--root")
            .arg(self.path("images"))
            .arg("--runtime-root")
            .arg(self.path("run"))
            .arg("--sandbox-dir")
            .arg(self.path("sandboxes"))
            .arg("--pod-log-dir")
            .arg(self.log_dir())
            .arg("--cgroup-root")
            .arg(&self.cgroup_root)
            .arg("--cni-conf-dir")
            .arg(self.path("cni"))
            .arg("--cni-bin-dir")
            .arg(bins)
            .args(["--cni-bin-dir", "/usr/lib/cni"])
            .arg("--cni-cache-dir")
            .arg(self.path("cni-cache"))
            .arg("--cni-netns")
            .arg(Path::new("/run/netns").join(&self.host_netns))
            .args(&self.extra_args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(command.spawn().expect("starting peapod-kubelet"));
        let up = wait_until(Duration::from_secs(20), || {
            self.get("/healthz").is_some_and(|b| b == "ok")
        });
        assert!(up, "peapod-kubelet did not answer /healthz: {}", self.log());
    }

    /// Stop the kubelet (SIGTERM) without touching its pods; [`Kubelet::restart`] starts
    /// it again on the same node.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
    }

    /// Start the kubelet again after [`Kubelet::stop`].
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// `GET path` on the local API: the body of a 200 answer.
    pub fn get(&self, path: &str) -> Option<String> {
        let mut stream = UnixStream::connect(self.socket()).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        let (head, body) = answer.split_once("\r\n\r\n")?;
        ok_status(head).then(|| body.to_string())
    }

    /// The events of pod `name` in `default` as the API's EventList JSON (empty if none).
    pub fn events(&self, name: &str) -> String {
        self.get(&format!("/events?namespace=default&name={name}"))
            .unwrap_or_default()
    }

    /// The pods the kubelet reports (`/pods` items).
    pub fn pods(&self) -> Vec<serde_json::Value> {
        self.get("/pods")
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .and_then(|v| v["items"].as_array().cloned())
            .unwrap_or_default()
    }

    /// The pod named `name` (the full, node-suffixed name), if reported.
    pub fn pod(&self, name: &str) -> Option<serde_json::Value> {
        self.pods()
            .into_iter()
            .find(|p| p["metadata"]["name"] == name)
    }

    /// Runs `peapod --socket <sock> --root <images> ARGS`.
    pub fn peapod(&self, args: &[&str]) -> Output {
        run_captured(self.peapod_command(args), CLI_TIMEOUT)
    }

    /// The command `peapod --socket <sock> --root <images> ARGS`, to run as the test wants.
    pub fn peapod_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(crate::peapod::peapod_path());
        command
            .arg("--root")
            .arg(self.path("images"))
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .stdin(Stdio::null());
        command
    }

    /// Runs `sh -c SCRIPT` in the private host netns; Err with the output on failure.
    pub fn host_sh(&self, script: &str) -> Result<String, String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.host_netns, "sh", "-c", script])
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// `GET /` from the node's side (the private host netns) to `ip:port`: the body.
    /// A thread of its own enters the netns, so nothing else runs there.
    pub fn http_get(&self, ip: &str, port: u16) -> Result<String, String> {
        let netns = Path::new("/run/netns").join(&self.host_netns);
        let addr = format!("{ip}:{port}");
        std::thread::spawn(move || {
            let ns = fs::File::open(&netns).map_err(|e| format!("{}: {e}", netns.display()))?;
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("entering {}: {e}", netns.display()))?;
            http_get(&addr)
        })
        .join()
        .unwrap_or_else(|_| Err("the HTTP thread panicked".into()))
    }

    /// Write a manifest into the folder (atomically, as an editor's save would).
    pub fn write_manifest(&self, name: &str, content: &str) {
        let tmp = self.manifests().join(format!(".{name}.tmp"));
        fs::write(&tmp, content).expect("writing a manifest");
        fs::rename(&tmp, self.manifests().join(name)).expect("renaming a manifest");
    }

    /// Wait until `check` holds for the pod `name`, returning it; panics with the
    /// kubelet's view and log after `timeout`.
    #[track_caller]
    pub fn wait_pod(
        &self,
        name: &str,
        timeout: Duration,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut last = None;
        let ok = wait_until(timeout, || {
            last = self.pod(name);
            last.as_ref().is_some_and(&check)
        });
        assert!(
            ok,
            "pod {name} did not reach the expected state in {timeout:?}: {}\nkubelet log:\n{}",
            serde_json::to_string_pretty(&last).unwrap_or_default(),
            self.log()
        );
        last.unwrap()
    }

    /// Whether no pod is left: none reported and no sandbox on disk.
    pub fn empty(&self) -> bool {
        self.pods().is_empty()
            && fs::read_dir(self.path("sandboxes"))
                .map(|d| d.count() == 0)
                .unwrap_or(true)
    }

    /// Force away what a failed test left: containers, sandboxes' pins, mounts.
    fn force_clean(&self) {
        let runtime = kubelet_path().with_file_name("peapod-runtime");
        if let Ok(dirs) = fs::read_dir(self.path("run")) {
            for dir in dirs.flatten() {
                let id = dir.file_name();
                let _ = Command::new(&runtime)
                    .arg("--root")
                    .arg(self.path("run"))
                    .args(["delete", "--force"])
                    .arg(&id)
                    .output();
            }
        }
        if let Ok(sandboxes) = fs::read_dir(self.path("sandboxes")) {
            for sandbox in sandboxes.flatten() {
                kill_pid_holder(&sandbox.path().join("sandbox.json"));
                let name = sandbox.file_name();
                let _ = Command::new("ip")
                    .args(["netns", "delete"])
                    .arg(&name)
                    .output();
            }
        }
        unmount_under(self.dir.path());
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        if let Ok(files) = fs::read_dir(self.manifests()) {
            for file in files.flatten() {
                let _ = fs::remove_file(file.path());
            }
        }
        if self.child.is_some() {
            wait_until(Duration::from_secs(60), || self.empty());
        }
        self.stop();
        self.force_clean();
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.host_netns])
            .output();
        remove_cgroup_tree(&self.cgroup_root);
    }
}

/// Stop the init holding a sandbox's shared PID namespace, if its record names one that
/// still runs (the runtime checks it is the same process).
fn kill_pid_holder(record: &Path) {
    let holder = fs::read(record)
        .ok()
        .and_then(|text| serde_json::from_slice::<serde_json::Value>(&text).ok())
        .and_then(|record| {
            serde_json::from_value::<runtime::sandbox::PidHolder>(record["pid_holder"].clone()).ok()
        });
    if let Some(holder) = holder {
        let _ = holder.stop();
    }
}

/// `GET /` over HTTP/1.0 to `addr` (`host:port`): the body of the answer.
pub fn http_get(addr: &str) -> Result<String, String> {
    let mut conn = std::net::TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    conn.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)
        .map_err(|e| format!("{addr}: {e}"))?;
    match answer.split_once("\r\n\r\n") {
        Some((head, body)) if ok_status(head) => Ok(body.to_string()),
        _ => Err(format!("{addr}: unexpected answer {answer:?}")),
    }
}

/// Whether an HTTP answer's head says 200.
fn ok_status(head: &str) -> bool {
    head.starts_with("HTTP/1.") && head.split(' ').nth(1) == Some("200")
}

#[track_caller]
fn run_ok(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {out:?}");
}

/// A pod's `status.phase`.
pub fn phase(pod: &serde_json::Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or_default()
}

/// The status of the app or init container `name` (Null if there is none).
pub fn container_status<'a>(pod: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    ["containerStatuses", "initContainerStatuses"]
        .iter()
        .filter_map(|list| pod["status"][list].as_array())
        .flatten()
        .find(|c| c["name"] == name)
        .unwrap_or(&serde_json::Value::Null)
}

/// Whether the pod runs with every app container ready.
pub fn running(pod: &serde_json::Value) -> bool {
    phase(pod) == "Running"
        && pod["status"]["containerStatuses"]
            .as_array()
            .is_some_and(|cs| cs.iter().all(|c| c["ready"] == true))
}
