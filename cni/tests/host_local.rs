//! Runs the built `peapod-host-local` binary as a runtime would, alone and side by side with the reference host-local.
//!
//! These tests need no network namespace: IPAM only touches its data directory.
//! The interop tests need the Debian package `containernetworking-plugins`.

use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const OURS: &str = env!("CARGO_BIN_EXE_peapod-host-local");
/// Where Debian's `containernetworking-plugins` installs the reference plugins.
const REFERENCE_DIR: &str = "/usr/lib/cni";

fn reference() -> PathBuf {
    let path = Path::new(REFERENCE_DIR).join("host-local");
    assert!(
        path.exists(),
        "{} is missing: install the reference plugins with `apt-get install containernetworking-plugins` \
         (the interop tests must not be skipped)",
        path.display()
    );
    path
}

/// A network config for `testnet` storing its state in `data_dir`.
fn config(data_dir: &Path, version: &str, ranges: Value) -> Value {
    json!({
        "cniVersion": version,
        "name": "testnet",
        "type": "host-local",
        "ipam": {
            "type": "host-local",
            "dataDir": data_dir,
            "ranges": ranges,
            "routes": [{"dst": "0.0.0.0/0"}]
        }
    })
}

fn v4(subnet: &str) -> Value {
    json!([[{"subnet": subnet}]])
}

/// What one plugin invocation returned.
struct Outcome {
    ok: bool,
    stdout: String,
}

impl Outcome {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }

    fn ips(&self) -> Vec<String> {
        assert!(self.ok, "plugin failed: {}", self.stdout);
        self.json()["ips"]
            .as_array()
            .expect("result has ips")
            .iter()
            .map(|ip| ip["address"].as_str().unwrap().to_string())
            .collect()
    }
}

fn command(bin: &Path, verb: &str, id: &str) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("CNI_COMMAND", verb)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", "/var/run/netns/peapod-ipam-test")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", REFERENCE_DIR)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

fn finish(mut child: std::process::Child, stdin: &[u8]) -> Outcome {
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    Outcome {
        ok: out.status.success(),
        stdout: String::from_utf8(out.stdout).unwrap(),
    }
}

fn run_raw(bin: &Path, verb: &str, id: &str, stdin: &[u8], env: &[(&str, &str)]) -> Outcome {
    let mut cmd = command(bin, verb, id);
    cmd.envs(env.iter().copied());
    finish(cmd.spawn().unwrap(), stdin)
}

fn run(bin: &Path, verb: &str, id: &str, conf: &Value) -> Outcome {
    run_raw(bin, verb, id, conf.to_string().as_bytes(), &[])
}

fn ours() -> &'static Path {
    Path::new(OURS)
}

/// The reservation files (named after addresses) in the network's directory.
fn reserved_files(data_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir.join("testnet"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn assert_distinct(ips: &[String]) {
    let unique: HashSet<&String> = ips.iter().collect();
    assert_eq!(unique.len(), ips.len(), "duplicate addresses: {ips:?}");
}

#[test]
fn fifty_sequential_adds_are_distinct_and_del_releases_them() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = config(tmp.path(), "1.0.0", v4("10.77.0.0/24"));
    let ips: Vec<String> = (0..50)
        .flat_map(|i| run(ours(), "ADD", &format!("seq{i}"), &conf).ips())
        .collect();
    assert_eq!(ips.len(), 50);
    assert_distinct(&ips);
    assert_eq!(ips[0], "10.77.0.2/24");
    assert_eq!(reserved_files(tmp.path()).len(), 50);
    for i in 0..50 {
        let out = run(ours(), "DEL", &format!("seq{i}"), &conf);
        assert!(out.ok && out.stdout.is_empty(), "{}", out.stdout);
    }
    assert!(reserved_files(tmp.path()).is_empty());
}

#[test]
fn twenty_concurrent_adds_are_distinct() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = config(tmp.path(), "1.0.0", v4("10.78.0.0/24"));
    let stdin = conf.to_string();
    let children: Vec<_> = (0..20)
        .map(|i| command(ours(), "ADD", &format!("conc{i}")).spawn().unwrap())
        .collect();
    let ips: Vec<String> = children
        .into_iter()
        .flat_map(|c| finish(c, stdin.as_bytes()).ips())
        .collect();
    assert_eq!(ips.len(), 20);
    assert_distinct(&ips);
    assert_eq!(reserved_files(tmp.path()).len(), 20);
}

#[test]
fn add_result_dual_stack_in_each_version() {
    let tmp = tempfile::tempdir().unwrap();
    let resolv = tmp.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 10.79.0.53\nsearch example.test\n").unwrap();
    for (i, version) in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"].iter().enumerate() {
        let mut conf = config(
            tmp.path(),
            version,
            json!([[{"subnet": "10.79.0.0/24"}], [{"subnet": "fd00:79::/64"}]]),
        );
        conf["ipam"]["resolvConf"] = json!(resolv);
        let out = run(ours(), "ADD", &format!("ds{i}"), &conf);
        let v = out.json();
        assert_eq!(v["cniVersion"], *version);
        assert_eq!(v["ips"][0]["gateway"], "10.79.0.1");
        assert_eq!(v["ips"][1]["address"], format!("fd00:79::{}/64", i + 2));
        assert!(v.get("interfaces").is_none());
        assert_eq!(v["routes"], json!([{"dst": "0.0.0.0/0"}]));
        assert_eq!(v["dns"]["nameservers"], json!(["10.79.0.53"]));
        let has_version = v["ips"][0].get("version").is_some();
        assert_eq!(has_version, version.starts_with("0."), "{version}");
    }
}

#[test]
fn del_of_unknown_container_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = config(tmp.path(), "1.0.0", v4("10.80.0.0/24"));
    let out = run_raw(
        ours(),
        "DEL",
        "never-added",
        conf.to_string().as_bytes(),
        &[("CNI_NETNS", "")],
    );
    assert!(out.ok, "{}", out.stdout);
    assert!(out.stdout.is_empty());
}

#[test]
fn check_follows_the_reservation() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = config(tmp.path(), "1.0.0", v4("10.81.0.0/24"));
    run(ours(), "ADD", "chk", &conf).ips();
    assert!(run(ours(), "CHECK", "chk", &conf).ok);
    assert!(run(ours(), "DEL", "chk", &conf).ok);
    let out = run(ours(), "CHECK", "chk", &conf);
    assert!(!out.ok);
    assert_eq!(out.json()["code"], 999);
}

#[test]
fn malformed_config_gives_cni_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_raw(ours(), "ADD", "bad", b"{\"cniVersion\":", &[]);
    assert!(!out.ok);
    assert_eq!(out.json()["code"], 6);
    assert!(out.json()["msg"].is_string());

    let conf = config(tmp.path(), "1.0.0", v4("10.82.0.1/24"));
    let out = run(ours(), "ADD", "bad", &conf);
    assert_eq!(out.json()["code"], 7, "{}", out.stdout);
    assert_eq!(out.json()["cniVersion"], "1.0.0");

    let mut no_ipam = config(tmp.path(), "1.0.0", v4("10.82.0.0/24"));
    no_ipam.as_object_mut().unwrap().remove("ipam");
    assert_eq!(run(ours(), "ADD", "bad", &no_ipam).json()["code"], 7);

    let old = config(tmp.path(), "0.2.0", v4("10.82.0.0/24"));
    assert_eq!(run(ours(), "ADD", "bad", &old).json()["code"], 1);

    let good = config(tmp.path(), "1.0.0", v4("10.82.0.0/24"));
    let out = run_raw(
        ours(),
        "ADD",
        "bad",
        good.to_string().as_bytes(),
        &[("CNI_IFNAME", "")],
    );
    assert_eq!(out.json()["code"], 4);
    assert!(out.json()["msg"].as_str().unwrap().contains("CNI_IFNAME"));
    let out = run_raw(
        ours(),
        "ADD",
        "bad",
        good.to_string().as_bytes(),
        &[("CNI_ARGS", "K8S_POD_NAME=x")],
    );
    assert_eq!(out.json()["code"], 4);
    assert!(reserved_files(tmp.path()).is_empty());
}

#[test]
fn requested_ip_from_cni_args() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = config(tmp.path(), "1.0.0", v4("10.83.0.0/24"));
    let out = run_raw(
        ours(),
        "ADD",
        "req",
        conf.to_string().as_bytes(),
        &[("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.83.0.42")],
    );
    assert_eq!(out.ips(), ["10.83.0.42/24"]);
}

#[test]
fn version_gc_and_status() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_raw(ours(), "VERSION", "", br#"{"cniVersion":"1.1.0"}"#, &[]);
    assert_eq!(
        out.json()["supportedVersions"],
        json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );

    // 10.84.0.0/29: .2-.6 are assignable.
    let mut conf = config(tmp.path(), "1.1.0", v4("10.84.0.0/29"));
    for id in ["a", "b", "c"] {
        run(ours(), "ADD", id, &conf).ips();
    }
    assert!(run(ours(), "STATUS", "", &conf).ok);
    conf["cni.dev/valid-attachments"] = json!([{"containerID": "b", "ifname": "eth0"}]);
    let out = run(ours(), "GC", "", &conf);
    assert!(out.ok, "{}", out.stdout);
    assert_eq!(reserved_files(tmp.path()), ["10.84.0.3"]);

    conf.as_object_mut()
        .unwrap()
        .remove("cni.dev/valid-attachments");
    for id in ["d", "e", "f", "g"] {
        run(ours(), "ADD", id, &conf).ips();
    }
    let out = run(ours(), "STATUS", "", &conf);
    assert!(!out.ok);
    assert_eq!(out.json()["code"], 50);
    let out = run(ours(), "ADD", "h", &conf);
    assert_eq!(out.json()["code"], 999);

    // The libcni spelling of the key works too.
    conf["cni.dev/attachments"] = json!([]);
    assert!(run(ours(), "GC", "", &conf).ok);
    assert!(reserved_files(tmp.path()).is_empty());
    assert!(run(ours(), "STATUS", "", &conf).ok);
}

#[test]
fn interop_reference_then_ours_and_back() {
    let reference = reference();
    let tmp = tempfile::tempdir().unwrap();
    // The Debian reference speaks up to 1.0.0.
    let conf = config(
        tmp.path(),
        "1.0.0",
        json!([[{"subnet": "10.85.0.0/24"}], [{"subnet": "fd00:85::/64"}]]),
    );
    let mut ips = Vec::new();
    for round in 0..3 {
        ips.extend(run(&reference, "ADD", &format!("ref{round}"), &conf).ips());
        ips.extend(run(ours(), "ADD", &format!("ours{round}"), &conf).ips());
    }
    assert_eq!(ips.len(), 12);
    assert_distinct(&ips);
    // Both continue after each other's last reservation: strictly sequential.
    let v4s: Vec<&String> = ips.iter().filter(|ip| ip.contains('.')).collect();
    assert_eq!(v4s.first().unwrap().as_str(), "10.85.0.2/24");
    assert_eq!(v4s.last().unwrap().as_str(), "10.85.0.7/24");

    // Files look the same whoever wrote them.
    let dir = tmp.path().join("testnet");
    assert_eq!(
        std::fs::read(dir.join("10.85.0.2")).unwrap(),
        b"ref0\r\neth0"
    );
    assert_eq!(
        std::fs::read(dir.join("10.85.0.3")).unwrap(),
        b"ours0\r\neth0"
    );
    assert_eq!(
        std::fs::read(dir.join("fd00:85::3")).unwrap(),
        b"ours0\r\neth0"
    );

    // CHECK by either sees the other's reservation.
    assert!(run(ours(), "CHECK", "ref0", &conf).ok);
    assert!(run(&reference, "CHECK", "ours0", &conf).ok);

    // DEL by either releases the other's files.
    for round in 0..3 {
        assert!(run(ours(), "DEL", &format!("ref{round}"), &conf).ok);
        assert!(run(&reference, "DEL", &format!("ours{round}"), &conf).ok);
    }
    assert!(
        reserved_files(tmp.path()).is_empty(),
        "{:?}",
        reserved_files(tmp.path())
    );
}

#[test]
fn interop_concurrent_mixed_adds_share_the_lock() {
    let reference = reference();
    let tmp = tempfile::tempdir().unwrap();
    let conf = config(tmp.path(), "1.0.0", v4("10.86.0.0/24"));
    let stdin = conf.to_string();
    let children: Vec<_> = (0..20)
        .map(|i| {
            let bin = if i % 2 == 0 {
                reference.as_path()
            } else {
                ours()
            };
            command(bin, "ADD", &format!("mix{i}")).spawn().unwrap()
        })
        .collect();
    let ips: Vec<String> = children
        .into_iter()
        .flat_map(|c| finish(c, stdin.as_bytes()).ips())
        .collect();
    assert_eq!(ips.len(), 20);
    assert_distinct(&ips);
}
