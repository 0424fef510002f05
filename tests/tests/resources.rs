//! Requests and limits, end to end: the QoS class picks the pod cgroup's parent, the pod
//! and container cgroups get upstream's cpu shares (or v2 weight), CFS quota and memory
//! limit, containers get their QoS's OOM score, and a container over its memory limit is
//! OOM-killed, reported as `OOMKilled` and restarted per the pod's policy.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use peapod_tests::host::is_cgroup_v2;
use peapod_tests::kubelet::{container_status, running, Kubelet, BUSYBOX};

const MIB: i64 = 1 << 20;

/// A container of a test pod: busybox sleeping, with `resources`.
fn sleeper(name: &str, resources: &str) -> String {
    format!(
        "  - {{name: {name}, image: \"{BUSYBOX}\", imagePullPolicy: Never, command: [sleep, \"3600\"], resources: {resources}}}\n"
    )
}

fn pod_yaml(name: &str, containers: &[String]) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n{}---\n",
        containers.concat()
    )
}

/// What a cgroup enforces: cpu shares (v2: `cpu.weight`), quota (-1: none), period,
/// memory limit (None: unlimited).
#[derive(Debug, PartialEq, Eq)]
struct Enforced {
    shares: u64,
    quota: i64,
    period: u64,
    memory: Option<i64>,
}

/// The cgroup `relative` (from a hierarchy's root) as the kernel shows it.
fn enforced(relative: &str) -> Enforced {
    let read = |controller: &str, file: &str| {
        let dir = if is_cgroup_v2() {
            PathBuf::from("/sys/fs/cgroup")
        } else {
            PathBuf::from("/sys/fs/cgroup").join(controller)
        };
        let path = dir.join(relative.trim_start_matches('/')).join(file);
        fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
            .trim()
            .to_string()
    };
    if is_cgroup_v2() {
        let weight: u64 = read("", "cpu.weight").parse().unwrap();
        let max = read("", "cpu.max");
        let (quota, period) = max.split_once(' ').unwrap_or((&max, "100000"));
        let memory = read("", "memory.max");
        Enforced {
            shares: weight,
            quota: quota.parse().unwrap_or(-1),
            period: period.parse().unwrap(),
            memory: memory.parse().ok(),
        }
    } else {
        let memory: i64 = read("memory", "memory.limit_in_bytes").parse().unwrap();
        Enforced {
            shares: read("cpu", "cpu.shares").parse().unwrap(),
            quota: read("cpu", "cpu.cfs_quota_us").parse().unwrap(),
            period: read("cpu", "cpu.cfs_period_us").parse().unwrap(),
            // The kernel shows "no limit" as the largest page-aligned value.
            memory: (memory < 1 << 62).then_some(memory),
        }
    }
}

/// The expected [`Enforced`] for v1 shares, as this host's layout shows them.
fn expect(shares: u64, quota: i64, memory: Option<i64>) -> Enforced {
    let shares = if is_cgroup_v2() {
        // runc's shares-to-weight map, which the runtime applies.
        1 + ((shares.max(2) - 2) * 9_999) / 262_142
    } else {
        shares
    };
    Enforced {
        shares,
        quota,
        period: 100_000,
        memory,
    }
}

/// The pod cgroup and a container's cgroup (from the hierarchy root).
fn cgroups(node: &Kubelet, pod: &Value, parent: &str, container: &str) -> (String, String) {
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let pod_cgroup = format!("{}/kubepods{parent}/pod{uid}", node.cgroup_root().display());
    let id = container_status(pod, container)["containerID"]
        .as_str()
        .and_then(|id| id.strip_prefix("peapod://"))
        .unwrap_or_else(|| panic!("no container id for {container}: {pod}"))
        .to_string();
    let container_cgroup = format!("{pod_cgroup}/{id}");
    (pod_cgroup, container_cgroup)
}

fn oom_score_adj(node: &Kubelet, pod: &str, container: &str) -> String {
    let out = node
        .peapod(&[
            "exec",
            pod,
            "-c",
            container,
            "--",
            "cat",
            "/proc/1/oom_score_adj",
        ])
        .ok();
    out.stdout.trim().to_string()
}

fn mem_total() -> i64 {
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap();
    let kb: i64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("MemTotal in /proc/meminfo");
    kb * 1024
}

#[test]
fn qos_classes_place_the_pod_cgroup_and_requests_and_limits_reach_the_cgroups() {
    let node = Kubelet::start();
    let guaranteed = sleeper(
        "g",
        "{requests: {cpu: 500m, memory: 64Mi}, limits: {cpu: 500m, memory: 64Mi}}",
    );
    let burstable = [
        sleeper(
            "a",
            "{requests: {cpu: 250m}, limits: {cpu: 500m, memory: 32Mi}}",
        ),
        sleeper("b", "{requests: {cpu: 100m, memory: 1Gi}}"),
    ];
    node.write_manifest(
        "qos.yaml",
        &[
            pod_yaml("guaranteed", &[guaranteed]),
            pod_yaml("burstable", &burstable),
            pod_yaml("besteffort", &[sleeper("e", "{}")]),
        ]
        .concat(),
    );
    let suffix = format!("-{}", node.node_name());
    let wait =
        |name: &str| node.wait_pod(&format!("{name}{suffix}"), Duration::from_secs(20), running);

    // Guaranteed: directly under kubepods; the pod cgroup limits what its one container
    // limits. Its OOM score -997 needs CAP_SYS_RESOURCE: without it the container still
    // runs, keeping the score it inherited.
    let pod = wait("guaranteed");
    assert_eq!(pod["status"]["qosClass"], "Guaranteed");
    let (pod_cgroup, container) = cgroups(&node, &pod, "", "g");
    assert_eq!(enforced(&container), expect(512, 50_000, Some(64 * MIB)));
    assert_eq!(enforced(&pod_cgroup), expect(512, 50_000, Some(64 * MIB)));
    let score: i32 = oom_score_adj(&node, &format!("guaranteed{suffix}"), "g")
        .parse()
        .unwrap();
    assert!(
        score == -997 || score <= 0,
        "a Guaranteed container is never more likely to be killed than the node: {score}"
    );

    // Burstable: under kubepods/burstable; the pod's shares sum the requests, but no
    // quota or memory limit because b limits neither.
    let pod = wait("burstable");
    assert_eq!(pod["status"]["qosClass"], "Burstable");
    let (pod_cgroup, a) = cgroups(&node, &pod, "/burstable", "a");
    let (_, b) = cgroups(&node, &pod, "/burstable", "b");
    assert_eq!(enforced(&pod_cgroup), expect(358, -1, None));
    assert_eq!(enforced(&a), expect(256, 50_000, Some(32 * MIB)));
    assert_eq!(enforced(&b), expect(102, -1, None));
    // 1000 - 1000 × request / node memory, within 3..=999.
    let expected_b = (1000 - (1000 * 1024 * MIB) / mem_total()).clamp(3, 999);
    assert_eq!(
        oom_score_adj(&node, &format!("burstable{suffix}"), "b"),
        expected_b.to_string()
    );
    // a requests no memory: 1000 would be BestEffort's, so it gets 999.
    assert_eq!(
        oom_score_adj(&node, &format!("burstable{suffix}"), "a"),
        "999"
    );

    // BestEffort: under kubepods/besteffort, whose shares are the kernel's minimum.
    let pod = wait("besteffort");
    assert_eq!(pod["status"]["qosClass"], "BestEffort");
    let (pod_cgroup, e) = cgroups(&node, &pod, "/besteffort", "e");
    let parent = format!("{}/kubepods/besteffort", node.cgroup_root().display());
    assert_eq!(enforced(&parent).shares, expect(2, -1, None).shares);
    assert_eq!(enforced(&pod_cgroup), expect(2, -1, None));
    assert_eq!(enforced(&e), expect(2, -1, None));
    assert_eq!(
        oom_score_adj(&node, &format!("besteffort{suffix}"), "e"),
        "1000"
    );

    // Deleting the pods removes their cgroups; the QoS parents stay, as upstream.
    fs::remove_file(node.manifests().join("qos.yaml")).unwrap();
    assert!(
        peapod_tests::host::wait_until(Duration::from_secs(20), || node.empty()),
        "the pods went away:\n{}",
        node.log()
    );
    let v1_cpu = if is_cgroup_v2() { "" } else { "cpu" };
    let kubepods = PathBuf::from("/sys/fs/cgroup")
        .join(v1_cpu)
        .join(node.cgroup_root().strip_prefix("/").unwrap())
        .join("kubepods");
    let left: Vec<_> = ["", "burstable", "besteffort"]
        .iter()
        .flat_map(|p| {
            fs::read_dir(kubepods.join(p))
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pod"))
        .collect();
    assert!(left.is_empty(), "pod cgroups left: {left:?}");
}

/// A container that fills more memory than its 32Mi limit: the shell holds 64 MiB in a
/// variable, so the kernel OOM-kills it.
fn hog(name: &str, restart_policy: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: {restart_policy}
  terminationGracePeriodSeconds: 1
  containers:
  - name: hog
    image: "{BUSYBOX}"
    imagePullPolicy: Never
    command: ["sh", "-c", "echo filling; x=$(head -c 64m /dev/zero | tr '\\0' a); echo survived; sleep 1"]
    resources: {{limits: {{memory: 32Mi}}}}
---
"#
    )
}

#[test]
fn a_container_over_its_memory_limit_is_oom_killed_and_restarted_per_policy() {
    let node = Kubelet::start();
    node.write_manifest(
        "hogs.yaml",
        &[hog("always", "Always"), hog("never", "Never")].concat(),
    );
    let suffix = format!("-{}", node.node_name());

    let pod = node.wait_pod(&format!("never{suffix}"), Duration::from_secs(30), |p| {
        p["status"]["phase"] == "Failed"
    });
    let terminated = &container_status(&pod, "hog")["state"]["terminated"];
    assert_eq!(terminated["reason"], "OOMKilled", "{pod}");
    assert_eq!(terminated["exitCode"], 137, "{pod}");
    assert_eq!(container_status(&pod, "hog")["restartCount"], 0);

    let pod = node.wait_pod(&format!("always{suffix}"), Duration::from_secs(30), |p| {
        container_status(p, "hog")["restartCount"].as_i64() >= Some(1)
    });
    let last = &container_status(&pod, "hog")["lastState"]["terminated"];
    assert_eq!(last["reason"], "OOMKilled", "{pod}");
    assert_eq!(last["exitCode"], 137, "{pod}");
    assert_eq!(
        pod["status"]["phase"], "Running",
        "Always keeps the pod Running"
    );
}
