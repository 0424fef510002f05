//! The harness the root CNI tests share: a private "host" netns per test, pod
//! namespaces, a unique bridge and subnet, an IPAM data dir, a CNI_PATH dir with
//! our plugins and the reference ones, and a way to run a plugin as a runtime would.
//!
//! Needs root (it fails loudly otherwise), iproute2, iptables and the Debian
//! package `containernetworking-plugins` for the interop tests. Every
//! test owns a unique bridge `ppbr<pid%10000><n>`, netns `pp-cni-<pid>-<n>`
//! and subnet `10.<from pid>.<n>.0/24`; a [`Net`] guard removes them and the
//! IPAM data in `Drop`, even when the test fails.
//!
//! Safety: the plugins run in a private "host" network namespace each test
//! makes (no uplink, only lo), as a runtime's host would be: the bridge, the
//! veths' host ends, the masquerade rules and ip_forward live there, never in
//! the machine's own namespace. Traffic only goes to pods' addresses and their
//! bridge gateway.
// Each test file uses its own subset of the harness.
#![allow(dead_code)]

pub mod icmp;

use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub const BRIDGE: &str = env!("CARGO_BIN_EXE_peapod-bridge");
/// Where Debian's `containernetworking-plugins` installs the reference plugins.
pub const REFERENCE_DIR: &str = "/usr/lib/cni";

static NEXT: AtomicU32 = AtomicU32::new(1);

pub fn unique() -> u32 {
    NEXT.fetch_add(1, Ordering::SeqCst)
}

pub fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("failed to run {args:?}: {e}"))
}

/// A test network: bridge, subnet, IPAM data dir, CNI_PATH dir and the netns it created.
pub struct Net {
    /// The network's name (also in the masquerade rules' comments).
    pub name: String,
    /// The bridge in the host netns.
    pub bridge: String,
    /// `10.a.b` of the subnet `10.a.b.0/24`.
    pub prefix: String,
    /// The IPAM data dir.
    pub data: tempfile::TempDir,
    /// The CNI_PATH dir: symlinks to our plugins and the reference ones.
    pub cni_path: tempfile::TempDir,
    /// The private "host" netns the plugins run in.
    pub host: String,
    /// The pod namespaces, by name.
    pub namespaces: Vec<String>,
}

impl Net {
    pub fn new() -> Net {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the bridge tests need root (they create netns, bridges and iptables rules)"
        );
        let pid = std::process::id();
        let n = unique();
        let cni_path = tempfile::tempdir().unwrap();
        let ours = Path::new(BRIDGE);
        let bin_dir = ours.parent().unwrap();
        let links = [
            (ours.to_path_buf(), "peapod-bridge"),
            (bin_dir.join("peapod-host-local"), "peapod-host-local"),
            (Path::new(REFERENCE_DIR).join("bridge"), "bridge"),
            (Path::new(REFERENCE_DIR).join("host-local"), "host-local"),
        ];
        for (target, name) in links {
            assert!(
                target.exists(),
                "{} is missing (apt-get install containernetworking-plugins; cargo builds ours)",
                target.display()
            );
            std::os::unix::fs::symlink(&target, cni_path.path().join(name)).unwrap();
        }
        let host = format!("pp-cnihost-{pid}-{n}");
        let out = sh(&["ip", "netns", "add", &host]);
        assert!(out.status.success(), "ip netns add {host}: {out:?}");
        sh(&[
            "ip", "netns", "exec", &host, "ip", "link", "set", "lo", "up",
        ]);
        Net {
            host,
            name: format!("ppnet{pid}-{n}"),
            bridge: format!("ppbr{}{n}", pid % 10000),
            prefix: format!("10.{}.{n}", 20 + pid % 200),
            data: tempfile::tempdir().unwrap(),
            cni_path,
            namespaces: Vec::new(),
        }
    }

    /// Runs a command in the private host netns.
    pub fn host_sh(&self, args: &[&str]) -> std::process::Output {
        let mut full = vec!["ip", "netns", "exec", &self.host];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Standard output of a command run in the private host netns, as text.
    pub fn host_out(&self, args: &[&str]) -> String {
        String::from_utf8(self.host_sh(args).stdout).unwrap()
    }

    /// Runs `f` on a thread inside the private host netns (processes it starts
    /// inherit that namespace); the thread, and its namespace, end with `f`.
    pub fn in_host<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = PathBuf::from("/run/netns").join(&self.host);
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = std::fs::File::open(&path).unwrap();
                nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                f()
            })
            .join()
            .unwrap()
        })
    }

    /// Puts the reference plugin `name` from [`REFERENCE_DIR`] on the network's CNI_PATH.
    pub fn add_reference_plugin(&self, name: &str) {
        let target = Path::new(REFERENCE_DIR).join(name);
        assert!(
            target.exists(),
            "{} is missing (apt-get install containernetworking-plugins)",
            target.display()
        );
        std::os::unix::fs::symlink(&target, self.cni_path.path().join(name)).unwrap();
    }

    /// The veths whose host ends are still on the bridge.
    pub fn bridge_ports(&self) -> Vec<String> {
        let out = self.host_sh(&["ip", "-o", "link", "show", "master", &self.bridge]);
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Whether a link exists in the private host netns.
    pub fn link_exists(&self, name: &str) -> bool {
        self.host_sh(&["ip", "link", "show", name]).status.success()
    }

    pub fn gateway(&self) -> String {
        format!("{}.1", self.prefix)
    }

    /// Creates a fresh netns and returns its path.
    pub fn netns(&mut self) -> PathBuf {
        let name = format!("pp-cni-{}-{}", std::process::id(), unique());
        let out = sh(&["ip", "netns", "add", &name]);
        assert!(out.status.success(), "ip netns add {name}: {out:?}");
        self.namespaces.push(name.clone());
        PathBuf::from("/run/netns").join(name)
    }

    /// Our pair: `peapod-bridge` with `peapod-host-local`, plus `extra` fields.
    pub fn ours(&self, extra: Value) -> Value {
        self.config("peapod-bridge", "peapod-host-local", extra)
    }

    /// The network config for `plugin` with `ipam` as IPAM plugin, plus `extra` fields.
    pub fn config(&self, plugin: &str, ipam: &str, extra: Value) -> Value {
        let mut conf = json!({
            "cniVersion": "1.0.0",
            "name": self.name,
            "type": plugin,
            "bridge": self.bridge,
            "isDefaultGateway": true,
            "ipam": {
                "type": ipam,
                "subnet": format!("{}.0/24", self.prefix),
                "dataDir": self.data.path(),
            }
        });
        for (k, v) in extra.as_object().unwrap() {
            conf[k] = v.clone();
        }
        conf
    }

    pub fn run(
        &mut self,
        plugin: &str,
        verb: &str,
        id: &str,
        netns: &Path,
        conf: &Value,
    ) -> Outcome {
        run_plugin(self, plugin, verb, id, netns, conf)
    }

    /// Host-side nat rules mentioning this network (by comment).
    pub fn masq_rules(&self) -> Vec<String> {
        self.host_out(&["iptables", "-w", "-t", "nat", "-S"])
            .lines()
            .filter(|l| l.contains(&format!("name: \\\"{}\\\"", self.name)))
            .map(str::to_string)
            .collect()
    }

    /// The reservation files (named after addresses) in the IPAM data dir.
    pub fn reserved(&self) -> Vec<String> {
        std::fs::read_dir(self.data.path().join(&self.name))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().into_string().unwrap())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // The host netns takes the bridge, the veths and every rule with it.
        for ns in self.namespaces.iter().chain([&self.host]) {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
    }
}

/// Runs `plugin` from the network's CNI_PATH with a runtime-like environment.
pub fn run_plugin(
    net: &Net,
    plugin: &str,
    verb: &str,
    id: &str,
    netns: &Path,
    conf: &Value,
) -> Outcome {
    run_plugin_raw(net, plugin, verb, id, netns, conf.to_string().as_bytes())
}

/// [`run_plugin`] with `stdin` given as bytes, e.g. malformed JSON.
pub fn run_plugin_raw(
    net: &Net,
    plugin: &str,
    verb: &str,
    id: &str,
    netns: &Path,
    stdin: &[u8],
) -> Outcome {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &net.host])
        .arg(net.cni_path.path().join(plugin))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CNI_COMMAND", verb)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", net.cni_path.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    Outcome {
        ok: out.status.success(),
        stdout: String::from_utf8(out.stdout).unwrap(),
    }
}

/// What one plugin invocation returned.
pub struct Outcome {
    pub ok: bool,
    pub stdout: String,
}

impl Outcome {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }

    /// The result of a successful ADD.
    pub fn result(&self) -> Value {
        assert!(self.ok, "plugin failed: {}", self.stdout);
        self.json()
    }

    pub fn assert_ok(&self) {
        assert!(self.ok, "plugin failed: {}", self.stdout);
    }
}

pub fn ip_in(netns: &Path, args: &[&str]) -> String {
    let name = netns.file_name().unwrap().to_str().unwrap();
    let mut full = vec!["ip", "netns", "exec", name];
    full.extend_from_slice(args);
    let out = sh(&full);
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

pub fn pings(netns: &Path, target: &str) -> bool {
    let name = netns.file_name().unwrap().to_str().unwrap();
    sh(&["ip", "netns", "exec", name, "ping", "-c1", "-W1", target])
        .status
        .success()
}

pub fn address(result: &Value) -> String {
    result["ips"][0]["address"].as_str().unwrap().to_string()
}

pub fn host_ip(result: &Value) -> String {
    address(result).split('/').next().unwrap().to_string()
}

pub fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut conf = conf.clone();
    conf["prevResult"] = prev.clone();
    conf
}
