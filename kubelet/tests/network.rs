//! A pod's network through CNI, as root: a sandbox is attached with our bridge and
//! host-local plugins, gets an address on eth0 that answers ping, names itself on it in
//! its /etc/hosts, and is detached with its address freed.
//!
//! Needs root, iproute2, iptables, the Debian package `containernetworking-plugins`
//! (for `loopback`) and our plugins built next to this test (`cargo build --workspace
//! --bins`).
//!
//! Safety: the plugins run on a thread inside a private "host" network namespace the
//! test makes, so the bridge, the veths' host ends, the masquerade rules and ip_forward
//! live there and go with it, never in the machine's own namespace. The sandbox gets a
//! state dir and a cgroup root of its own, removed at the end even when the test fails.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use kubelet::network::{PodNetwork, PodRef};
use peapod_tests::pod::TestPod;
use runtime::sandbox::Qos;
use serde_json::json;

/// Where Debian's `containernetworking-plugins` installs `loopback`.
const REFERENCE_DIR: &str = "/usr/lib/cni";

static NEXT: AtomicU32 = AtomicU32::new(1);

/// A suffix no other test in any running test process uses.
fn unique() -> String {
    format!(
        "{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("failed to run {args:?}: {e}"))
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The private "host" network namespace the plugins run in; deleted on drop, taking the
/// bridge, the veths' host ends and every iptables rule with it.
struct HostNs {
    name: String,
}

impl HostNs {
    fn new() -> HostNs {
        let name = format!("pp-nethost-{}", unique());
        let out = sh(&["ip", "netns", "add", &name]);
        assert!(out.status.success(), "ip netns add {name}: {out:?}");
        let host = HostNs { name };
        let out = host.sh(&["ip", "link", "set", "lo", "up"]);
        assert!(out.status.success(), "lo up in {}: {out:?}", host.name);
        host
    }

    fn sh(&self, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Runs `f` on a thread that entered this namespace; plugins it starts inherit it.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = Path::new("/run/netns").join(&self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = fs::File::open(&path).expect("the private host netns");
                nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .expect("entering the private host netns");
                f()
            })
            .join()
            .expect("the host-netns thread")
        })
    }
}

impl Drop for HostNs {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.name]);
    }
}

/// The name of the pod's netns in `/run/netns`, for `ip -n`.
fn netns_name(pod: &TestPod) -> String {
    pod.sandbox
        .pins()
        .net
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// The directory cargo put this crate's and the cni crate's binaries in.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // <target>/<profile>/deps/<test> -> <target>/<profile>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the profile directory")
        .to_path_buf();
    for plugin in ["peapod-bridge", "peapod-host-local"] {
        assert!(
            dir.join(plugin).exists(),
            "{} is missing: run `cargo build --workspace --bins` first",
            dir.join(plugin).display()
        );
    }
    let loopback = Path::new(REFERENCE_DIR).join("loopback");
    assert!(
        loopback.exists(),
        "{} is missing (apt-get install containernetworking-plugins)",
        loopback.display()
    );
    dir
}

#[test]
fn a_pod_is_attached_answers_ping_and_is_detached() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the network test needs root (it creates netns, bridges and iptables rules)"
    );
    let suffix = unique();
    let n = NEXT.fetch_add(1, Ordering::SeqCst) % 250;
    let pid = std::process::id();
    let subnet_prefix = format!("10.{}.{n}", 100 + pid % 100);
    let net_name = format!("ppnet-{suffix}");
    let bridge = format!("ppn{}{n}", pid % 100_000);

    let host = HostNs::new();
    let conf_dir = tempfile::tempdir().unwrap();
    let ipam_data = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": net_name,
        "plugins": [
            {"type": "loopback"},
            {
                "type": "peapod-bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": true,
                "ipam": {
                    "type": "peapod-host-local",
                    "subnet": format!("{subnet_prefix}.0/24"),
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": ipam_data.path(),
                }
            }
        ]
    });
    fs::write(
        conf_dir.path().join("10-test.conflist"),
        conflist.to_string(),
    )
    .unwrap();
    let network = PodNetwork::load(
        conf_dir.path(),
        &[bin_dir(), PathBuf::from(REFERENCE_DIR)],
        cache.path(),
    )
    .expect("the test network loads");
    assert_eq!(network.name(), net_name);
    network
        .status()
        .expect("a 1.0.0 network is ready once loaded");

    let mut pod = TestPod::new("pp-network", Qos::BestEffort);
    let netns = pod.sandbox.pins().net.clone();
    let id = pod.sandbox.name().to_string();
    let (namespace, name, uid) = {
        let c = pod.sandbox.config();
        (c.namespace.clone(), c.name.clone(), c.uid.clone())
    };
    let pod_ref = PodRef {
        namespace: &namespace,
        name: &name,
        uid: &uid,
    };

    let ips = host
        .run(|| network.attach(&id, &netns, &pod_ref, &[]))
        .expect("the pod is attached");
    assert_eq!(ips.len(), 1, "one address on eth0: {ips:?}");
    let ip: IpAddr = ips[0];
    assert!(
        ip.to_string().starts_with(&format!("{subnet_prefix}.")),
        "{ip} is in {subnet_prefix}.0/24"
    );

    let ns = netns_name(&pod);
    let eth0 = text(&sh(&["ip", "-n", &ns, "-o", "addr", "show", "eth0"]));
    assert!(
        eth0.contains(&format!(" {ip}/24 ")),
        "eth0 in the pod has {ip}: {eth0}"
    );
    let lo = text(&sh(&["ip", "-n", &ns, "-o", "link", "show", "lo"]));
    assert!(lo.contains(",UP"), "lo in the pod is up: {lo}");
    let ping = host.sh(&["ping", "-c1", "-W1", &ip.to_string()]);
    assert!(
        ping.status.success(),
        "the pod answers ping from the host side: {ping:?}"
    );

    pod.sandbox
        .set_ip(Some(ip))
        .expect("the pod's IP is recorded");
    let hosts = fs::read_to_string(pod.sandbox.dir().join("hosts")).unwrap();
    assert!(
        hosts
            .lines()
            .any(|l| l.starts_with(&ip.to_string()) && l.contains(&name)),
        "/etc/hosts names the pod on {ip}: {hosts}"
    );

    let reservation = ipam_data.path().join(&net_name).join(ip.to_string());
    assert!(
        reservation.exists(),
        "{} is reserved",
        reservation.display()
    );
    host.run(|| network.detach(&id, &netns, &pod_ref))
        .expect("the pod is detached");
    assert!(
        !reservation.exists(),
        "detach frees {}",
        reservation.display()
    );
    let eth0 = sh(&["ip", "-n", &ns, "link", "show", "eth0"]);
    assert!(!eth0.status.success(), "eth0 is gone from the pod");
    host.run(|| network.detach(&id, &netns, &pod_ref))
        .expect("a second detach succeeds");

    pod.sandbox.remove().expect("the sandbox is removed");
    assert!(!netns.exists(), "{} is unpinned", netns.display());
}
