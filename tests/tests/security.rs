//! securityContext through the kubelet, seen from inside real pods: capabilities with
//! add/drop, allowPrivilegeEscalation, seccompProfile RuntimeDefault and Localhost,
//! privileged, readOnlyRootFilesystem, supplementalGroups and fsGroup, pod
//! sysctls, and runAsNonRoot refusing a root image.

use std::time::Duration;

use serde_json::Value;

use peapod_tests::kubelet::{container_status, phase, Kubelet, BUSYBOX};
use peapod_tests::spec::cap_mask;

/// A container of the test pod: prints what it checks, then waits to be stopped.
fn container(name: &str, script: &str, security: &str) -> String {
    format!(
        r#"  - name: {name}
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: ["sh", "-c", "{script}; exec sleep 3600"]
    securityContext: {security}
"#
    )
}

fn all_running(pod: &Value) -> bool {
    pod["status"]["containerStatuses"]
        .as_array()
        .is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c["state"]["running"].is_object()))
}

/// `peapod logs` of one container, once it has printed `until`.
fn logs(node: &Kubelet, pod: &str, name: &str, until: &str) -> String {
    let mut out = String::new();
    peapod_tests::host::wait_until(Duration::from_secs(10), || {
        out = node.peapod(&["logs", pod, "-c", name]).stdout;
        out.contains(until)
    });
    out
}

/// The `key:` line of a /proc/self/status text, as printed by `grep`.
fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in {text:?}"))
}

#[test]
fn security_contexts_confine_and_unconfine_containers() {
    let node = Kubelet::start();
    let mut manifest = String::from(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: secure
spec:
  terminationGracePeriodSeconds: 1
  securityContext:
    supplementalGroups: [3000]
    fsGroup: 2000
    sysctls:
    - {name: kernel.shm_rmid_forced, value: "1"}
    - {name: net.ipv4.ip_unprivileged_port_start, value: "80"}
  containers:
"#,
    );
    let status = "grep -E \\\"^(CapEff|NoNewPrivs|Seccomp|Groups):\\\" /proc/self/status";
    manifest += &container(
        "caps",
        status,
        "{capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}}",
    );
    manifest += &container("nnp", status, "{allowPrivilegeEscalation: false}");
    manifest += &container(
        "readonly",
        "touch /probe; echo touch=$?; touch /tmp/probe; echo tmp=$?",
        "{readOnlyRootFilesystem: true}",
    );
    manifest += &container(
        "seccomp",
        "unshare -U true; echo unshare=$?",
        "{seccompProfile: {type: RuntimeDefault}}",
    );
    // A Localhost profile, from the kubelet's seccomp root (`<--root>/seccomp`).
    let profiles = node.path("images/seccomp/team");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::write(
        profiles.join("deny-mkdir.json"),
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95}]}"#,
    )
    .unwrap();
    manifest += &container(
        "localhost",
        "mkdir /dev/shm/d; echo mkdir=$?",
        "{seccompProfile: {type: Localhost, localhostProfile: team/deny-mkdir.json}}",
    );
    manifest += &container(
        "unconfined",
        "unshare -U true; echo unshare=$?",
        "{seccompProfile: {type: Unconfined}}",
    );
    manifest += &container(
        "privileged",
        &format!("{status}; ls /dev | wc -l; echo sys=$(grep ' /sys sysfs ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1)"),
        "{privileged: true}",
    );
    manifest += &container(
        "sysctl",
        "echo shm=$(cat /proc/sys/kernel/shm_rmid_forced) port=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start)",
        "{}",
    );
    node.write_manifest("secure.yaml", &manifest);
    let name = format!("secure-{}", node.node_name());
    node.wait_pod(&name, Duration::from_secs(20), all_running);

    let caps = logs(&node, &name, "caps", "Seccomp");
    assert_eq!(
        u64::from_str_radix(field(&caps, "CapEff"), 16).unwrap(),
        cap_mask(&["CAP_NET_BIND_SERVICE"]),
        "{caps}"
    );
    assert_eq!(field(&caps, "NoNewPrivs"), "0", "{caps}");
    assert_eq!(
        field(&caps, "Seccomp"),
        "0",
        "Unconfined by default: {caps}"
    );
    let groups: Vec<&str> = field(&caps, "Groups").split_whitespace().collect();
    assert!(
        groups.contains(&"3000") && groups.contains(&"2000"),
        "supplementalGroups and fsGroup: {caps}"
    );

    let nnp = logs(&node, &name, "nnp", "Seccomp");
    assert_eq!(field(&nnp, "NoNewPrivs"), "1", "{nnp}");

    let readonly = logs(&node, &name, "readonly", "tmp=");
    assert!(readonly.contains("touch=1"), "{readonly}");

    let seccomp = logs(&node, &name, "seccomp", "unshare=");
    assert!(seccomp.contains("unshare=1"), "{seccomp}");
    let localhost = logs(&node, &name, "localhost", "mkdir=");
    assert!(
        localhost.contains("mkdir=1") && localhost.contains("Operation not supported"),
        "{localhost}"
    );
    let unconfined = logs(&node, &name, "unconfined", "unshare=");
    assert!(unconfined.contains("unshare=0"), "{unconfined}");

    let privileged = logs(&node, &name, "privileged", "sys=");
    let all = u64::from_str_radix(field(&privileged, "CapEff"), 16).unwrap();
    // Every capability the node agent holds (root here may lack some, as this test does).
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let own = u64::from_str_radix(field(&own, "CapEff"), 16).unwrap();
    assert_eq!(all, own, "{privileged}");
    assert!(
        privileged.contains("sys=rw"),
        "/sys is writable: {privileged}"
    );
    let dev_entries: usize = privileged
        .lines()
        .find_map(|l| l.trim().parse().ok())
        .unwrap_or(0);
    assert!(dev_entries > 20, "the host's devices: {privileged}");

    let sysctl = logs(&node, &name, "sysctl", "port=");
    assert!(sysctl.contains("shm=1 port=80"), "{sysctl}");
    let host_port =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap();
    assert_ne!(host_port.trim(), "80", "the host's value is untouched");
    let in_node_netns = node
        .host_sh("cat /proc/sys/net/ipv4/ip_unprivileged_port_start")
        .unwrap();
    assert_ne!(in_node_netns.trim(), "80");

    std::fs::remove_file(node.manifests().join("secure.yaml")).unwrap();
    assert!(peapod_tests::host::wait_until(
        Duration::from_secs(20),
        || node.empty()
    ));
}

#[test]
fn run_as_non_root_refuses_a_root_image() {
    let node = Kubelet::start();
    node.write_manifest(
        "nonroot.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: nonroot
spec:
  securityContext: {{runAsNonRoot: true}}
  containers:
  - name: app
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: ["sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: unsafe-sysctl
spec:
  securityContext: {{sysctls: [{{name: kernel.msgmax, value: "65536"}}]}}
  containers:
  - name: app
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: ["sleep", "3600"]
"#
        ),
    );
    // A sysctl outside the safe set (and not allowed by --allowed-unsafe-sysctls) fails
    // the pod at admission, before anything runs.
    let refused = node.wait_pod(
        &format!("unsafe-sysctl-{}", node.node_name()),
        Duration::from_secs(20),
        |pod| phase(pod) == "Failed",
    );
    assert_eq!(refused["status"]["reason"], "SysctlForbidden", "{refused}");
    assert!(
        refused["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("kernel.msgmax")),
        "{refused}"
    );
    let name = format!("nonroot-{}", node.node_name());
    let pod = node.wait_pod(&name, Duration::from_secs(20), |pod| {
        container_status(pod, "app")["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    });
    assert!(container_status(&pod, "app")["state"]["running"].is_null());
    let expected = "container has runAsNonRoot and image will run as root";
    // The waiting state keeps the message through the back-off, and an event says it.
    std::thread::sleep(Duration::from_secs(2));
    let pod = node.pod(&name).unwrap();
    assert!(
        container_status(&pod, "app")["state"]["waiting"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(expected)),
        "{pod}"
    );
    let mut events = String::new();
    let found = peapod_tests::host::wait_until(Duration::from_secs(10), || {
        events = node.events(&name);
        events.contains(expected)
    });
    assert!(found, "no event says {expected:?}: {events}");
    std::fs::remove_file(node.manifests().join("nonroot.yaml")).unwrap();
    assert!(peapod_tests::host::wait_until(
        Duration::from_secs(20),
        || node.empty()
    ));
}
