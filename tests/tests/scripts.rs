//! The pod debugging scripts (`scripts/pod-*.sh`) against a real pod: a sandbox made by the
//! runtime library, attached by our bridge plugin, with two busybox containers run by shims
//! that write CRI logs. The scripts read that host state directly, pointed at the test's
//! locations by their environment overrides.
//!
//! Safety: the bridge, the veth's host end, the masquerade rules and the MAC-spoof table
//! live in a private "host" network namespace the test makes (the plugin and `pod-net.sh`
//! run in it through `ip netns exec`), never in the machine's own. The sandbox, runtime
//! root and logs are in temp dirs, and the pod cgroup under a cgroup root of the test's own.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use runtime::sandbox::{Qos, Sandbox};
use serde_json::json;
use tempfile::TempDir;

use peapod_tests::cli::{binary_path, run_captured, runtime_path, Output};
use peapod_tests::host::{host_command, ns_link, unique_suffix, wait_for_file, wait_until};
use peapod_tests::pod::{TestPod, NAMESPACE};

/// The scripts under test, each run with `--help` and linted.
const SCRIPTS: [&str; 4] = ["pod-enter.sh", "pod-net.sh", "pod-ls.sh", "pod-logs.sh"];

/// What the container writes before it sleeps: one line on each stream.
const LINES: [&str; 2] = ["line one on stdout", "line two on stderr"];

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(name)
}

/// The private "host" network namespace the bridge plugin runs in; deleting it takes the
/// bridge, the veth pair and every rule with it.
struct HostNs {
    name: String,
}

impl HostNs {
    fn new() -> HostNs {
        let name = format!("pp-scripts-host-{}", unique_suffix());
        host_command("ip", &["netns", "add", &name]);
        let host = HostNs { name };
        host.run(&["ip", "link", "set", "lo", "up"]);
        host
    }

    /// Runs a command in this namespace; panics unless it succeeds.
    #[track_caller]
    fn run(&self, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(args);
        host_command("ip", &all)
    }
}

impl Drop for HostNs {
    fn drop(&mut self) {
        // Best effort in drop: a failure here must not turn into a double panic.
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// A pod as the kubelet leaves it on the host: a sandbox in the test's state dir (its netns
/// pinned in the real `/run/netns`), attached to a bridge in the private host namespace,
/// with containers `web` and then `sidecar`, each run by a shim. Everything is taken down on
/// drop: the pod's containers and sandbox first, then the network.
struct Pod {
    /// The sandbox (its state dir is `PEAPOD_STATE_DIR` for the scripts) and its
    /// containers (their runtime root is `PEAPOD_RUNTIME_ROOT`).
    pod: TestPod,
    /// The pods' CRI logs (`PEAPOD_LOG_DIR`).
    logs: TempDir,
    /// Where the bridge and the veth's host end are. Deleting it on drop is the network's
    /// teardown: the veth pair, the bridge and the rules go with it.
    host: HostNs,
    bridge: String,
    /// The pod's IP, from the plugin's result.
    ip: String,
    /// The CNI config and the host-local allocations.
    ipam: TempDir,
}

impl Pod {
    #[track_caller]
    fn new() -> Pod {
        let mut pod = Pod {
            pod: TestPod::new("pp-scripts", Qos::BestEffort),
            logs: tempdir("pp-scripts-logs-"),
            host: HostNs::new(),
            bridge: format!("pps{}", std::process::id() % 1_000_000),
            ip: String::new(),
            ipam: tempdir("pp-scripts-ipam-"),
        };
        pod.attach();
        pod.start(
            "web",
            "echo line one on stdout; echo line two on stderr >&2; exec sleep 1000",
        );
        pod.start("sidecar", "echo sidecar up; exec sleep 999");
        pod
    }

    /// Attaches the pod as the kubelet does: `peapod-bridge` ADD (veth, bridge, address,
    /// masquerade, MAC-spoof check), run inside the private host namespace.
    #[track_caller]
    fn attach(&mut self) {
        let plugin = binary_path(
            "PEAPOD_BRIDGE_PLUGIN",
            "peapod-bridge",
            "`cargo build --workspace --bins`",
        );
        let plugin_dir = plugin.parent().expect("the plugin's directory").to_owned();
        let config = json!({
            "cniVersion": "1.0.0",
            "name": "ppscripts",
            "type": "peapod-bridge",
            "bridge": self.bridge,
            "isGateway": true,
            "ipMasq": true,
            "macspoofchk": true,
            "ipam": {
                "type": "peapod-host-local",
                "subnet": "10.77.0.0/24",
                "dataDir": self.ipam.path(),
            }
        });
        let config_file = self.ipam.path().join("config.json");
        fs::write(&config_file, config.to_string()).expect("the CNI config is written");
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.host.name])
            .arg(&plugin)
            .env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", self.sandbox().name())
            .env("CNI_NETNS", &self.sandbox().pins().net)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &plugin_dir)
            .stdin(fs::File::open(&config_file).expect("the CNI config"));
        let out = command.output().expect("running peapod-bridge");
        assert!(out.status.success(), "peapod-bridge ADD: {out:?}");
        let result: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("a CNI result on stdout");
        let address = result["ips"][0]["address"]
            .as_str()
            .unwrap_or_else(|| panic!("no address in {result}"));
        self.ip = address.split('/').next().unwrap_or_default().to_owned();
        self.pod
            .sandbox
            .set_ip(Some(self.ip.parse().expect("an IP address")))
            .expect("the IP is recorded");
    }

    /// Runs container `name` with `script` through a shim, as the pod manager does: the
    /// bundle in the sandbox, the CRI log at `<logs>/<sandbox>/<name>/0.log`.
    #[track_caller]
    fn start(&mut self, name: &str, script: &str) {
        let log_path = self.log_path(name);
        self.pod.start(name, script, log_path);
    }

    fn log_path(&self, container: &str) -> PathBuf {
        self.logs
            .path()
            .join(self.sandbox().name())
            .join(container)
            .join("0.log")
    }

    /// Kills container `name` and waits for its shim to record the exit.
    #[track_caller]
    fn stop(&self, name: &str) {
        let id = &self.pod.container(name).id;
        self.pod.runtime(&["kill", id, "KILL"]).ok();
        wait_for_file(
            &self
                .sandbox()
                .dir()
                .join("containers")
                .join(id)
                .join("exit.json"),
        );
    }

    /// Runs `scripts/<name>` with `args`, pointed at this pod's locations.
    fn script(&self, name: &str, args: &[&str]) -> Output {
        self.script_via(&[], name, args)
    }

    /// Runs `scripts/<name>` with `args` as an argument of the command `via` (such as
    /// `ip netns exec <ns>`), pointed at this pod's locations.
    fn script_via(&self, via: &[&str], name: &str, args: &[&str]) -> Output {
        let mut command = match via.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(script(name));
                c
            }
            None => Command::new(script(name)),
        };
        command
            .args(args)
            .env("PEAPOD_STATE_DIR", &self.pod.scratch.paths.state_dir)
            .env("PEAPOD_RUNTIME_ROOT", self.pod.runtime_root())
            .env("PEAPOD_LOG_DIR", self.logs.path())
            .env("PEAPOD_RUNTIME", runtime_path())
            .env_remove("PEAPOD_NETNS_DIR");
        run_captured(command, Duration::from_secs(60))
    }

    /// `POD -n NAMESPACE`, then `extra`: a script's arguments for this pod.
    fn args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![self.name(), "-n", NAMESPACE];
        args.extend_from_slice(extra);
        args
    }

    fn name(&self) -> &str {
        self.pod.name()
    }

    fn sandbox(&self) -> &Sandbox {
        &self.pod.sandbox
    }
}

fn tempdir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("a temp dir")
}

#[track_caller]
fn assert_contains(out: &Output, wanted: &str) {
    assert!(out.stdout.contains(wanted), "{wanted:?} not in:\n{out}");
}

#[test]
fn the_scripts_show_a_running_pod_from_the_host_state() {
    let pod = Pod::new();
    let netns_inode = host_command(
        "stat",
        &[
            "-L",
            "-c",
            "%i",
            &pod.sandbox().pins().net.to_string_lossy(),
        ],
    )
    .trim()
    .to_owned();
    pod_logs_prints_the_messages(&pod);
    pod_enter_runs_in_the_containers(&pod);
    pod_net_shows_the_veth_bridge_and_rules(&pod, &netns_inode);
    pod_ls_shows_the_shared_and_own_namespaces(&pod, &netns_inode);

    // Once web has stopped: pod-ls shows the pod's pins for it, pod-enter picks the
    // sidecar, refuses web by name, and --net-only still works.
    pod.stop("web");
    let ls = pod.script("pod-ls.sh", &["-n", NAMESPACE]).ok();
    let web = container_row(&ls, "web");
    assert_eq!(web[2..5], ["-", "stopped", netns_inode.as_str()], "{ls}");
    let init = pod
        .script("pod-enter.sh", &pod.args(&["--", "cat", "/proc/1/cmdline"]))
        .ok();
    assert_eq!(init.stdout, "sleep\x00999\0", "{init}");
    let refused = pod
        .script("pod-enter.sh", &pod.args(&["-c", "web", "--", "true"]))
        .failed();
    assert_eq!(refused.code, 1, "{refused}");
    assert!(refused.stderr.contains("is not running"), "{refused}");
    pod.script("pod-enter.sh", &pod.args(&["--net-only", "--", "true"]))
        .ok();
}

/// pod-logs: a container's messages, its raw CRI lines, following, and kubectl's complaint
/// when the pod has several containers and none is named.
fn pod_logs_prints_the_messages(pod: &Pod) {
    for (container, lines) in [("web", 2), ("sidecar", 1)] {
        let log = pod.log_path(container);
        assert!(
            wait_until(Duration::from_secs(10), || {
                fs::read_to_string(&log).is_ok_and(|l| l.lines().count() >= lines)
            }),
            "the container's lines never reached {}",
            log.display()
        );
    }
    let logs = pod.script("pod-logs.sh", &pod.args(&["-c", "web"])).ok();
    // The two streams are separate pipes: their lines may reach the log in either order.
    let mut lines: Vec<&str> = logs.stdout.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, LINES, "{logs}");

    let raw = pod
        .script("pod-logs.sh", &pod.args(&["--raw", "-c", "web"]))
        .ok();
    let has = |suffix: &str| raw.stdout.lines().any(|l| l.ends_with(suffix));
    assert!(
        has(" stdout F line one on stdout") && has(" stderr F line two on stderr"),
        "{raw}"
    );

    // -f prints what is there and keeps waiting: timeout ends it (124).
    let follow = pod.script_via(
        &["timeout", "2"],
        "pod-logs.sh",
        &pod.args(&["-c", "sidecar", "-f"]),
    );
    assert_eq!(
        (follow.code, follow.stdout.as_str()),
        (124, "sidecar up\n"),
        "{follow}"
    );

    let unnamed = pod.script("pod-logs.sh", &pod.args(&[])).failed();
    assert_eq!(
        unnamed.stderr,
        format!(
            "pod-logs: a container name must be specified for pod {}, \
             choose one of: [sidecar web]\n",
            pod.name()
        ),
        "{unnamed}"
    );
}

/// pod-enter: the pod's hostname, each container's own init as pid 1 (the first running
/// container by default), the pod's address with --net-only.
fn pod_enter_runs_in_the_containers(pod: &Pod) {
    let hostname = pod
        .script("pod-enter.sh", &pod.args(&["--", "hostname"]))
        .ok();
    assert_eq!(
        hostname.stdout.trim(),
        pod.sandbox().hostname(),
        "{hostname}"
    );

    let web_pid = pod.pod.pid("web");
    let init = pod
        .script("pod-enter.sh", &pod.args(&["--", "cat", "/proc/1/cmdline"]))
        .ok();
    let own_init =
        fs::read_to_string(format!("/proc/{web_pid}/cmdline")).expect("the init's cmdline");
    assert_eq!(init.stdout, own_init, "{init}");
    assert_eq!(init.stdout, "sleep\x001000\0", "{init}");
    let sidecar = pod
        .script(
            "pod-enter.sh",
            &pod.args(&["-c", "sidecar", "--", "cat", "/proc/1/cmdline"]),
        )
        .ok();
    assert_eq!(sidecar.stdout, "sleep\x00999\0", "{sidecar}");

    let addresses = pod
        .script(
            "pod-enter.sh",
            &pod.args(&["--net-only", "--", "ip", "-o", "addr"]),
        )
        .ok();
    assert_contains(&addresses, &format!(" {}/24 ", pod.ip));

    let missing = pod
        .script("pod-enter.sh", &pod.args(&["-c", "nosuch"]))
        .failed();
    assert_eq!(missing.code, 1, "{missing}");
    assert!(
        missing.stderr.contains("no container \"nosuch\""),
        "{missing}"
    );
}

/// pod-net, run in the private host namespace: the IP, the host end of the veth (as the
/// bridge lists its ports), the bridge, the masquerade chain and the MAC-spoof check.
fn pod_net_shows_the_veth_bridge_and_rules(pod: &Pod, netns_inode: &str) {
    let ports = pod
        .host
        .run(&["ip", "-o", "link", "show", "master", &pod.bridge]);
    let host_veth = ports
        .split(": ")
        .nth(1)
        .and_then(|n| n.split('@').next())
        .unwrap_or_else(|| panic!("no port on {}: {ports}", pod.bridge));
    let net = pod
        .script_via(
            &["ip", "netns", "exec", &pod.host.name],
            "pod-net.sh",
            &pod.args(&[]),
        )
        .ok();
    assert_contains(&net, &format!("pod IP:   {}", pod.ip));
    assert_contains(&net, &format!("host: {host_veth} "));
    assert_contains(&net, &format!("  {}, addresses: 10.77.0.1/24", pod.bridge));
    assert_contains(&net, &format!("(inode {netns_inode})"));
    assert_contains(&net, &format!("-s {}/32", pod.ip));
    assert_contains(&net, "-j MASQUERADE");
    assert_contains(&net, &format!("iifname \"{host_veth}\""));
}

/// pod-ls: the pod with its netns inode; each container with the pod's net, ipc and uts
/// and pid and mnt namespaces of its own, as /proc shows them, and its cgroup.
fn pod_ls_shows_the_shared_and_own_namespaces(pod: &Pod, netns_inode: &str) {
    let name = pod.name();
    let ls = pod.script("pod-ls.sh", &["-n", NAMESPACE]).ok();
    let pod_row = ls
        .stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no row for {name}:\n{ls}"));
    let uid = pod.sandbox().config().uid.as_str();
    assert_eq!(
        pod_row.split_whitespace().collect::<Vec<_>>(),
        [NAMESPACE, name, uid, pod.ip.as_str(), netns_inode],
        "{ls}"
    );
    let mut own = Vec::new();
    for container in pod.pod.containers() {
        let fields = container_row(&ls, &container.name);
        let pid = pod.pod.pid(&container.name).to_string();
        // CONTAINER ID PID STATUS NET IPC UTS PIDNS MNT CGROUP
        assert_eq!(fields.len(), 10, "{ls}");
        assert_eq!(
            fields[..5],
            [
                &container.name,
                &container.id[..12],
                &pid,
                "running",
                netns_inode
            ],
            "{ls}"
        );
        for (kind, inode) in ["net", "ipc", "uts", "pid", "mnt"]
            .iter()
            .zip(&fields[4..9])
        {
            assert_eq!(ns_link(&pid, kind), format!("{kind}:[{inode}]"), "{ls}");
        }
        own.push(fields[7..9].to_vec());
        assert!(
            fields[9].ends_with(&format!("pod{uid}/{}", container.id)),
            "cgroup {}: {ls}",
            fields[9]
        );
    }
    assert_ne!(own[0], own[1], "pid and mnt namespaces are shared: {ls}");

    let everywhere = pod.script("pod-ls.sh", &["-A"]).ok();
    assert!(everywhere.stdout.contains(pod_row), "{everywhere}");
}

/// The fields of container `name`'s row in pod-ls's output.
#[track_caller]
fn container_row(ls: &Output, name: &str) -> Vec<String> {
    ls.stdout
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no row for container {name}:\n{ls}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_script_has_help_rejects_bad_arguments_and_names_a_missing_pod() {
    let empty = tempdir("pp-scripts-empty-");
    let run = |name: &str, args: &[&str]| {
        let mut command = Command::new(script(name));
        command
            .args(args)
            .env("PEAPOD_STATE_DIR", empty.path())
            .env("PEAPOD_LOG_DIR", empty.path())
            .env("PEAPOD_RUNTIME_ROOT", empty.path());
        run_captured(command, Duration::from_secs(30))
    };
    for name in SCRIPTS {
        for help in ["--help", "-h"] {
            let out = run(name, &[help]);
            assert_eq!(out.code, 0, "{name} {help}: {out}");
            assert!(out.stdout.starts_with("Usage:"), "{name} {help}: {out}");
            assert!(out.stdout.contains("Examples:"), "{name} {help}: {out}");
        }
        let out = run(name, &["--no-such-option"]);
        assert_eq!(out.code, 2, "{name}: {out}");
        assert!(out.stderr.contains("Usage:"), "{name}: {out}");
        assert!(out.stdout.is_empty(), "{name}: {out}");
    }
    let prog = |name: &str| name.trim_end_matches(".sh").to_owned();
    for name in ["pod-enter.sh", "pod-net.sh", "pod-logs.sh"] {
        let out = run(name, &["web"]);
        assert_eq!(out.code, 1, "{name}: {out}");
        assert_eq!(
            out.stderr,
            format!("{}: no pod \"web\" in namespace \"default\"\n", prog(name)),
            "{name}: {out}"
        );
        let out = run(name, &["web", "-n", "shop"]);
        assert!(
            out.stderr.contains("in namespace \"shop\""),
            "{name}: {out}"
        );
        let out = run(name, &[]);
        assert_eq!(out.code, 2, "{name} without a pod: {out}");
    }
    let out = run("pod-ls.sh", &[]);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out}");
    assert!(out.stderr.contains("No pods found"), "{out}");
}

#[test]
fn every_script_passes_bash_n_and_shellcheck() {
    let shellcheck = Command::new("shellcheck").arg("--version").output().is_ok();
    for name in SCRIPTS.iter().chain(&["pod-lib.sh"]) {
        let path = script(name);
        let out = Command::new("bash")
            .arg("-n")
            .arg(&path)
            .output()
            .expect("bash");
        assert!(out.status.success(), "bash -n {name}: {out:?}");
        if shellcheck {
            // -x follows `source`, from the repository root as the directives name it.
            let out = Command::new("shellcheck")
                .arg("-x")
                .arg(&path)
                .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
                .output()
                .expect("shellcheck");
            assert!(
                out.status.success(),
                "shellcheck {name}:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        } else {
            eprintln!("shellcheck not installed: only bash -n checked {name}");
        }
    }
}
