//! The summary from fixture `/proc` and cgroup v2 trees.

use super::*;
use crate::api::ContainerCgroup;

const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0
  eth0:    5000      10    2    0    0     0          0         0     7000      12    1    0    0     0       0          0
";

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A fixture host: /proc with one container process (pid 42), a v2 cgroup tree with a
/// pod and its container.
fn host(dir: &Path) -> Host {
    let proc = dir.join("proc");
    write(
        &proc.join("stat"),
        "cpu  100 0 50 1000 20 5 5 0 0 0\ncpu0 100 0 50 1000 20 5 5 0 0 0\n",
    );
    write(
        &proc.join("meminfo"),
        "MemTotal:       4096 kB\nMemFree:        1024 kB\nInactive(file):  512 kB\nAnonPages:       256 kB\n",
    );
    write(&proc.join("vmstat"), "pgfault 900\npgmajfault 9\n");
    write(&proc.join("self/net/dev"), NET_DEV);
    write(&proc.join("42/net/dev"), NET_DEV);
    write(&proc.join("sys/kernel/pid_max"), "4194304\n");
    write(&proc.join("loadavg"), "0.10 0.20 0.30 2/345 6789\n");
    let cgroup = dir.join("cgroup");
    write(
        &cgroup.join("kubepods/podu1/cpu.stat"),
        "usage_usec 1000000\n",
    );
    write(&cgroup.join("kubepods/podu1/memory.current"), "4000\n");
    write(
        &cgroup.join("kubepods/podu1/memory.stat"),
        "inactive_file 1000\nanon 2000\n",
    );
    write(
        &cgroup.join("kubepods/podu1/c1/cpu.stat"),
        "usage_usec 900000\n",
    );
    write(&cgroup.join("kubepods/podu1/c1/memory.current"), "3000\n");
    write(&cgroup.join("kubepods/podu1/c1/cgroup.procs"), "42\n");
    write(&dir.join("logs/web/0.log"), "0123456789");
    Host {
        proc,
        cgroups: Some(CgroupFs::V2 { root: cgroup }),
        root_dir: dir.to_path_buf(),
        image_dir: dir.to_path_buf(),
    }
}

fn pods(dir: &Path, start: DateTime<Utc>) -> Vec<PodCgroups> {
    vec![PodCgroups {
        namespace: "default".into(),
        name: "web".into(),
        uid: "u1".into(),
        start_time: start,
        cgroup: "/kubepods/podu1".into(),
        containers: vec![ContainerCgroup {
            name: "web".into(),
            start_time: start,
            cgroup: "/kubepods/podu1/c1".into(),
            log_path: Some(dir.join("logs/web/0.log")),
        }],
    }]
}

#[test]
fn summary_has_the_shape_metrics_server_reads() {
    let dir = tempfile::tempdir().unwrap();
    let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let stats = Stats::new(host(dir.path()), "node-a", start);
    let now = start + chrono::Duration::seconds(60);
    let summary = serde_json::to_value(stats.summary(&pods(dir.path(), start), now)).unwrap();

    let node = &summary["node"];
    assert_eq!(node["nodeName"], "node-a");
    assert_eq!(node["startTime"], "2026-01-01T00:00:00Z");
    // (100 + 50 + 5 + 5) ticks of 10ms.
    assert_eq!(node["cpu"]["usageCoreNanoSeconds"], 1_600_000_000u64);
    assert!(
        node["cpu"].get("usageNanoCores").is_none(),
        "no rate from one reading"
    );
    assert_eq!(node["memory"]["usageBytes"], 3072 * 1024);
    assert_eq!(node["memory"]["workingSetBytes"], 2560 * 1024);
    assert_eq!(node["memory"]["availableBytes"], 1536 * 1024);
    assert_eq!(node["memory"]["pageFaults"], 900);
    assert_eq!(node["network"]["name"], "eth0");
    assert_eq!(node["network"]["rxBytes"], 5000);
    assert_eq!(node["network"]["interfaces"].as_array().unwrap().len(), 1);
    assert!(node["fs"]["capacityBytes"].as_u64().unwrap() > 0);
    assert!(node["runtime"]["imageFs"]["availableBytes"].is_u64());
    assert_eq!(node["rlimit"]["maxpid"], 4194304);
    assert_eq!(node["rlimit"]["curproc"], 345);

    let pod = &summary["pods"][0];
    assert_eq!(
        pod["podRef"],
        serde_json::json!({"name": "web", "namespace": "default", "uid": "u1"})
    );
    assert_eq!(pod["cpu"]["usageCoreNanoSeconds"], 1_000_000_000u64);
    assert_eq!(pod["memory"]["workingSetBytes"], 3000);
    assert_eq!(pod["memory"]["rssBytes"], 2000);
    assert_eq!(pod["network"]["txBytes"], 7000);
    assert_eq!(pod["ephemeral-storage"]["usedBytes"], 10);
    let container = &pod["containers"][0];
    assert_eq!(container["name"], "web");
    assert_eq!(container["cpu"]["usageCoreNanoSeconds"], 900_000_000u64);
    assert_eq!(container["memory"]["workingSetBytes"], 3000);
    assert_eq!(container["logs"]["usedBytes"], 10);
}

#[test]
fn usage_nano_cores_is_the_rate_between_readings() {
    let dir = tempfile::tempdir().unwrap();
    let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let host = host(dir.path());
    let cgroup = match &host.cgroups {
        Some(CgroupFs::V2 { root }) => root.clone(),
        _ => unreachable!(),
    };
    let stats = Stats::new(host, "node-a", start);
    let pods = pods(dir.path(), start);
    stats.summary(&pods, start);
    // Half a core over 10 s: 5 s of cpu time more.
    std::fs::write(
        cgroup.join("kubepods/podu1/cpu.stat"),
        "usage_usec 6000000\n",
    )
    .unwrap();
    // A scrape too soon after keeps the older reading (and has no rate yet).
    let soon = stats.summary(&pods, start + chrono::Duration::milliseconds(10));
    let later = stats.summary(&pods, start + chrono::Duration::seconds(10));
    assert_eq!(soon.pods[0].cpu.as_ref().unwrap().usage_nano_cores, None);
    assert_eq!(
        later.pods[0].cpu.as_ref().unwrap().usage_nano_cores,
        Some(500_000_000)
    );
    // A pod that is gone loses its reading; the node keeps its own.
    stats.summary(&[], start + chrono::Duration::seconds(20));
    assert_eq!(stats.lock().len(), 1);
}
