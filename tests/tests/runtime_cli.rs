//! runc's maintenance commands: update, pause/resume, events, checkpoint/restore, and how a
//! paused container shows in state/list/ps and goes with kill and delete --force.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use peapod_tests::cli::runtime_path;
use peapod_tests::host::{
    cgroup_dirs, is_cgroup_v2, process_gone, read_cgroup_file, wait_for_file, wait_until,
};
use peapod_tests::{require_root, Bundle, Container};

/// A container whose init writes an ever-growing counter to `/shared/count`.
fn counting() -> (Container, std::path::PathBuf) {
    let mut bundle = Bundle::new();
    let shared = bundle.share();
    bundle.sh("i=0; while :; do i=$((i+1)); echo $i > /shared/count.tmp; mv /shared/count.tmp /shared/count; sleep 0.02; done");
    let ctr = Container::new(bundle);
    ctr.run_detached();
    wait_for_file(&shared.join("count"));
    (ctr, shared)
}

fn count(shared: &Path) -> u64 {
    fs::read_to_string(shared.join("count"))
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

/// The container's stored resources, as a later `update` or the runtime's state sees them.
fn stored_resources(ctr: &Container) -> Value {
    let path = ctr.root().join(ctr.id()).join("state.json");
    let state: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    state["spec"]["linux"]["resources"].clone()
}

fn memory_limit_file() -> &'static str {
    if is_cgroup_v2() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    }
}

#[test]
fn update_changes_memory_and_pids_of_a_running_container() {
    let ctr =
        Container::sleeping_with(json!({"memory": {"limit": 67108864}, "pids": {"limit": 64}}));
    let pid = ctr.pid();
    ctr.cmd(["update", "--memory", "128m", "--pids-limit", "10", ctr.id()])
        .ok();
    assert_eq!(
        read_cgroup_file(pid, "memory", memory_limit_file()),
        "134217728"
    );
    assert_eq!(read_cgroup_file(pid, "pids", "pids.max"), "10");
    let stored = stored_resources(&ctr);
    assert_eq!(stored["memory"]["limit"], 134217728, "{stored}");
    assert_eq!(stored["pids"]["limit"], 10, "{stored}");

    // A --resources file changes only what it names; a flag overrides it.
    let file = tempfile::NamedTempFile::new().unwrap();
    fs::write(
        file.path(),
        r#"{"pids": {"limit": 20}, "memory": {"reservation": 33554432}}"#,
    )
    .unwrap();
    let path = file.path().to_str().unwrap();
    ctr.cmd([
        "update",
        "--resources",
        path,
        "--pids-limit",
        "30",
        ctr.id(),
    ])
    .ok();
    assert_eq!(read_cgroup_file(pid, "pids", "pids.max"), "30");
    assert_eq!(
        read_cgroup_file(pid, "memory", memory_limit_file()),
        "134217728",
        "kept"
    );
    let stored = stored_resources(&ctr);
    assert_eq!(stored["memory"]["reservation"], 33554432, "{stored}");
    assert_eq!(stored["memory"]["limit"], 134217728, "{stored}");

    // -1 lifts the limit.
    ctr.cmd(["update", "--pids-limit", "-1", ctr.id()]).ok();
    assert_eq!(read_cgroup_file(pid, "pids", "pids.max"), "max");
    assert_eq!(ctr.status(), "running");
}

#[test]
fn update_refuses_bad_values_without_changing_anything() {
    let ctr = Container::sleeping_with(json!({"pids": {"limit": 64}}));
    let pid = ctr.pid();
    let out = ctr
        .cmd(["update", "--memory", "12q", "--pids-limit", "5", ctr.id()])
        .failed();
    assert!(out.stderr.contains("--memory"), "{out}");
    let out = ctr.cmd(["update", "--cpu-quota", "5", ctr.id()]).failed();
    assert!(out.stderr.contains("cpu.quota"), "{out}");
    let out = ctr
        .cmd(["update", "--l3-cache-schema", "L3:0=f", ctr.id()])
        .failed();
    assert!(out.stderr.contains("Intel RDT"), "{out}");
    let file = tempfile::NamedTempFile::new().unwrap();
    fs::write(file.path(), r#"{"memory": {"limit": "lots"}}"#).unwrap();
    let out = ctr
        .cmd(["update", "-r", file.path().to_str().unwrap(), ctr.id()])
        .failed();
    assert!(out.stderr.contains("memory.limit"), "{out}");
    assert!(!out.stderr.contains("panicked"), "{out}");
    assert_eq!(read_cgroup_file(pid, "pids", "pids.max"), "64");
    assert_eq!(stored_resources(&ctr)["pids"]["limit"], 64);

    ctr.cmd(["kill", ctr.id(), "KILL"]).ok();
    ctr.wait_for_status("stopped");
    let out = ctr.cmd(["update", "--pids-limit", "5", ctr.id()]).failed();
    assert!(out.stderr.contains("stopped"), "{out}");
}

#[test]
fn pause_stops_the_processes_and_resume_lets_them_run() {
    let (ctr, shared) = counting();
    let pid = ctr.pid();
    ctr.cmd(["pause", ctr.id()]).ok();
    assert_eq!(ctr.status(), "paused");
    let frozen = count(&shared);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(&shared), frozen, "the counter advanced while paused");

    let list = ctr.cmd(["list", "--format", "json"]).ok().json();
    assert_eq!(list[0]["status"], "paused", "{list}");
    let table = ctr.cmd(["list"]).ok().stdout;
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(ctr.id()) && l.contains(" paused ")),
        "{table}"
    );
    let pids = ctr.cmd(["ps", "--format", "json", ctr.id()]).ok().json();
    assert!(pids.as_array().unwrap().contains(&json!(pid)), "{pids}");
    let ps = ctr.cmd(["ps", ctr.id()]).ok().stdout;
    assert!(ps.lines().count() >= 2, "{ps}");
    let out = ctr.cmd(["pause", ctr.id()]).failed();
    assert!(out.stderr.contains("paused"), "{out}");
    let out = ctr.cmd(["delete", ctr.id()]).failed();
    assert!(out.stderr.contains("paused"), "{out}");
    let out = ctr.exec(&[], &["true"]).failed();
    assert!(out.stderr.contains("paused"), "{out}");

    ctr.cmd(["resume", ctr.id()]).ok();
    assert_eq!(ctr.status(), "running");
    assert!(
        wait_until(Duration::from_secs(5), || count(&shared) > frozen),
        "the counter did not advance after resume"
    );
    let out = ctr.cmd(["resume", ctr.id()]).failed();
    assert!(out.stderr.contains("not paused"), "{out}");
}

#[test]
fn delete_force_of_a_paused_container_leaves_nothing() {
    let ctr = Container::sleeping_with(json!({"pids": {"limit": 16}}));
    let pid = ctr.pid();
    let own = cgroup_dirs(std::process::id() as i32);
    let dirs: Vec<_> = cgroup_dirs(pid)
        .into_iter()
        .filter(|d| !own.iter().any(|o| o.dir == d.dir))
        .collect();
    assert!(!dirs.is_empty(), "the container got no cgroup of its own");
    ctr.cmd(["pause", ctr.id()]).ok();
    ctr.delete_force();
    assert!(process_gone(pid), "the paused init outlived delete --force");
    let left: Vec<_> = dirs.iter().filter(|d| d.dir.exists()).collect();
    assert!(left.is_empty(), "cgroups left: {left:?}");
    ctr.cmd(["state", ctr.id()]).failed();
}

#[test]
fn sigkill_ends_a_paused_container() {
    let ctr = Container::sleeping_with(json!({}));
    ctr.cmd(["pause", ctr.id()]).ok();
    ctr.cmd(["kill", ctr.id(), "KILL"]).ok();
    ctr.wait_for_status("stopped");
}

#[test]
fn events_stats_prints_one_sample_of_memory_and_pids() {
    let ctr =
        Container::sleeping_with(json!({"memory": {"limit": 67108864}, "pids": {"limit": 32}}));
    let out = ctr.cmd(["events", "--stats", ctr.id()]).ok();
    assert_eq!(out.stdout.lines().count(), 1, "{out}");
    let event = out.json();
    assert_eq!(event["type"], "stats", "{event}");
    assert_eq!(event["id"], ctr.id(), "{event}");
    let data = &event["data"];
    assert!(
        data["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
        "{event}"
    );
    assert_eq!(data["memory"]["usage"]["limit"], 67108864, "{event}");
    assert!(
        data["pids"]["current"].as_u64().unwrap_or(0) >= 1,
        "{event}"
    );
    assert_eq!(data["pids"]["limit"], 32, "{event}");
    assert!(
        data["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0,
        "{event}"
    );

    ctr.cmd(["kill", ctr.id(), "KILL"]).ok();
    ctr.wait_for_status("stopped");
    let out = ctr.cmd(["events", "--stats", ctr.id()]).failed();
    assert!(out.stderr.contains("not running"), "{out}");
}

/// The runtime with `args`, its stdout piped, killed on drop if it is still running.
struct Streaming(std::process::Child);

impl Drop for Streaming {
    fn drop(&mut self) {
        // Best effort: it normally exited already.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn events_streams_stats_and_oom_kills_until_the_container_stops() {
    require_root();
    let mut bundle = Bundle::new();
    let shared = bundle.share();
    // `tail /dev/zero` buffers an endless line: the OOM killer ends it, the init lives on.
    bundle.sh("until [ -e /shared/go ]; do sleep 0.05; done; tail /dev/zero; sleep 1000");
    bundle.spec["linux"]["resources"] = json!({"memory": {"limit": 16777216, "swap": 16777216}});
    let ctr = Container::new(bundle);
    ctr.run_detached();
    let child = Command::new(runtime_path())
        .args([
            "--root",
            ctr.root().to_str().unwrap(),
            "events",
            "--interval",
            "200ms",
            ctr.id(),
        ])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut events = Streaming(child);
    let mut lines = BufReader::new(events.0.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["type"], "stats", "{first}");
    assert_eq!(first["id"], ctr.id(), "{first}");

    fs::write(shared.join("go"), "").unwrap();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let event: Value = serde_json::from_str(&line.unwrap()).unwrap();
        let oom = event["type"] == "oom";
        seen.push(event);
        if oom || seen.len() > 50 {
            break;
        }
    }
    assert_eq!(
        seen.last().unwrap()["type"],
        "oom",
        "no oom event in {seen:?}"
    );
    assert_eq!(seen.last().unwrap()["id"], ctr.id());

    ctr.cmd(["kill", ctr.id(), "KILL"]).ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    while events.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "events outlived its container");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(events.0.try_wait().unwrap().unwrap().success());
}

#[test]
fn checkpoint_and_restore_are_refused_cleanly() {
    let ctr = Container::sleeping_with(json!({}));
    let before = fs::read(ctr.root().join(ctr.id()).join("state.json")).unwrap();
    for args in [
        vec![
            "checkpoint",
            "--image-path",
            "/nonexistent",
            "--leave-running",
            ctr.id(),
        ],
        vec!["restore", "--image-path", "/nonexistent", ctr.id()],
    ] {
        let out = ctr.cmd(&args).failed();
        assert!(
            out.stderr
                .contains("not supported by peapod-runtime (no CRIU)"),
            "{out}"
        );
        assert!(!out.stderr.contains("panicked"), "{out}");
    }
    assert_eq!(ctr.status(), "running");
    assert_eq!(
        fs::read(ctr.root().join(ctr.id()).join("state.json")).unwrap(),
        before
    );
}

#[test]
fn the_shims_pause_resume_update_sequence() {
    // containerd's runc shim: global --root/--log/--log-format json, then `pause <id>`,
    // `resume <id>`, `update --resources - <id>` with the JSON on stdin, `events --stats`.
    let (ctr, shared) = counting();
    let pid = ctr.pid();
    let log = ctr.root().join("shim.log");
    let global = |cmd: &[&str]| {
        let mut all = vec!["--log", log.to_str().unwrap(), "--log-format", "json"];
        all.extend_from_slice(cmd);
        all.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    ctr.cmd(global(&["pause", ctr.id()])).ok();
    assert_eq!(ctr.status(), "paused");
    ctr.cmd(global(&["resume", ctr.id()])).ok();
    assert_eq!(ctr.status(), "running");
    let before = count(&shared);
    assert!(wait_until(Duration::from_secs(5), || count(&shared) > before));

    let mut update = Command::new(runtime_path())
        .args(["--root", ctr.root().to_str().unwrap()])
        .args(global(&["update", "--resources", "-", ctr.id()]))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let resources = json!({"memory": {"limit": 100663296}, "pids": {"limit": 40}});
    update
        .stdin
        .take()
        .unwrap()
        .write_all(resources.to_string().as_bytes())
        .unwrap();
    assert!(
        update.wait().unwrap().success(),
        "update --resources - failed"
    );
    assert_eq!(
        read_cgroup_file(pid, "memory", memory_limit_file()),
        "100663296"
    );
    assert_eq!(read_cgroup_file(pid, "pids", "pids.max"), "40");

    let stats = ctr
        .cmd(global(&["events", "--stats", ctr.id()]))
        .ok()
        .json();
    assert_eq!(stats["data"]["pids"]["limit"], 40, "{stats}");
}
