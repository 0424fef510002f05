//! Lifecycle: create, start, state, run, kill, delete, list, ps, spec, features.

use std::fs;
use std::path::Path;
use std::time::Duration;

use peapod_tests::host::{cmdline, process_gone, wait_for_file, wait_until};
use peapod_tests::{require_root, run_in, Bundle, Container};

/// Blocks until the test creates `/shared/go`, then exits 0.
const WAIT_FOR_GO: &str = "until [ -e /shared/go ]; do sleep 0.05; done";

#[test]
fn create_blocks_until_start_then_runs_to_stopped() {
    let mut bundle = Bundle::new();
    let shared = bundle.share();
    bundle.sh(&format!("echo started > /shared/started; {WAIT_FOR_GO}"));
    let ctr = Container::new(bundle);

    ctr.create();
    let state = ctr.state();
    assert_eq!(state["status"], "created", "{state}");
    let pid = ctr.pid();
    assert!(
        pid > 0 && !process_gone(pid),
        "created container has no live init: {state}"
    );
    // The init waits for `start` before it executes the user's program.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !cmdline(pid).contains("/shared/go"),
        "program ran before start: {}",
        cmdline(pid)
    );
    assert!(!shared.join("started").exists(), "program ran before start");

    ctr.start();
    wait_for_file(&shared.join("started"));
    assert_eq!(ctr.status(), "running");
    assert_eq!(ctr.pid(), pid, "start must not replace the init process");
    assert!(
        cmdline(pid).contains("/shared/go"),
        "init is not the program: {}",
        cmdline(pid)
    );

    fs::write(shared.join("go"), "").unwrap();
    ctr.wait_for_status("stopped");
    assert!(process_gone(pid));
}

#[test]
fn run_returns_the_program_exit_code_and_output() {
    let mut bundle = Bundle::new();
    bundle.sh("echo hello from inside; echo oops >&2; exit 7");
    let ctr = Container::new(bundle);
    let out = ctr.run();
    assert_eq!(out.code, 7, "{out}");
    assert_eq!(out.stdout, "hello from inside\n", "{out}");
    assert!(out.stderr.contains("oops"), "{out}");
}

#[test]
fn run_exit_code_zero() {
    let ctr = Container::with_args(&["echo", "ran"]);
    assert_eq!(ctr.run().ok().stdout, "ran\n");
}

#[test]
fn run_detach_returns_while_the_container_runs() {
    let mut bundle = Bundle::new();
    let shared = bundle.share();
    bundle.sh(&format!("echo up > /shared/up; {WAIT_FOR_GO}"));
    let ctr = Container::new(bundle);

    ctr.run_detached();
    wait_for_file(&shared.join("up"));
    assert_eq!(ctr.status(), "running");
    fs::write(shared.join("go"), "").unwrap();
    ctr.wait_for_status("stopped");
}

#[test]
fn delete_of_a_running_container_needs_force() {
    let ctr = Container::with_args(&["sleep", "1000"]);
    ctr.run_detached();
    let pid = ctr.pid();

    let out = ctr.cmd(["delete", ctr.id()]).failed();
    assert!(!out.stderr.is_empty(), "{out}");
    assert_eq!(
        ctr.status(),
        "running",
        "a refused delete must leave the container alone"
    );

    ctr.delete_force();
    assert!(
        wait_until(Duration::from_secs(10), || process_gone(pid)),
        "init outlived delete --force"
    );
    ctr.cmd(["state", ctr.id()]).failed();
}

#[test]
fn delete_of_a_stopped_container_needs_no_force() {
    let ctr = Container::with_args(&["true"]);
    ctr.run_detached();
    ctr.wait_for_status("stopped");
    ctr.cmd(["delete", ctr.id()]).ok();
    ctr.cmd(["state", ctr.id()]).failed();
    let out = ctr.cmd(["list", "--quiet"]).ok();
    assert!(!out.stdout.contains(ctr.id()), "{out}");
}

/// A container whose init traps SIGTERM, records it and exits.
fn trapping_container() -> (Container, std::path::PathBuf) {
    let mut bundle = Bundle::new();
    let shared = bundle.share();
    bundle.sh("trap 'echo TERM > /shared/signal; exit 0' TERM; \
         echo ready > /shared/ready; while :; do sleep 0.05; done");
    let ctr = Container::new(bundle);
    ctr.run_detached();
    wait_for_file(&shared.join("ready"));
    (ctr, shared)
}

#[test]
fn kill_by_signal_name() {
    let (ctr, shared) = trapping_container();
    ctr.kill("TERM").ok();
    wait_for_file(&shared.join("signal"));
    ctr.wait_for_status("stopped");
}

// runtime-tools: killsig (TERM above; USR1 and USR2 here)
#[test]
fn kill_delivers_usr1_and_usr2_to_the_init() {
    let mut bundle = Bundle::new();
    let shared = bundle.share();
    bundle.sh(
        "trap 'touch /shared/USR1' USR1; trap 'touch /shared/USR2' USR2; \
         echo ready > /shared/ready; while :; do sleep 0.05; done",
    );
    let ctr = Container::new(bundle);
    ctr.run_detached();
    wait_for_file(&shared.join("ready"));
    for signal in ["USR1", "USR2"] {
        ctr.kill(signal).ok();
        wait_for_file(&shared.join(signal));
    }
    assert_eq!(ctr.status(), "running");
}

#[test]
fn kill_by_sig_prefixed_name() {
    let (ctr, shared) = trapping_container();
    ctr.kill("SIGTERM").ok();
    wait_for_file(&shared.join("signal"));
    ctr.wait_for_status("stopped");
}

#[test]
fn kill_defaults_to_sigterm() {
    let (ctr, shared) = trapping_container();
    ctr.cmd(["kill", ctr.id()]).ok();
    wait_for_file(&shared.join("signal"));
    ctr.wait_for_status("stopped");
}

#[test]
fn kill_by_number() {
    let ctr = Container::with_args(&["sleep", "1000"]);
    ctr.run_detached();
    ctr.kill("9").ok();
    ctr.wait_for_status("stopped");
}

#[test]
fn kill_sigkill_stops_a_container_that_ignores_term() {
    let mut bundle = Bundle::new();
    bundle.sh("trap '' TERM; while :; do sleep 0.05; done");
    let ctr = Container::new(bundle);
    ctr.run_detached();
    ctr.kill("SIGKILL").ok();
    ctr.wait_for_status("stopped");
}

#[test]
fn kill_of_a_created_container_stops_it() {
    let ctr = Container::with_args(&["sleep", "1000"]);
    ctr.create();
    ctr.kill("KILL").ok();
    ctr.wait_for_status("stopped");
}

#[test]
fn kill_all_signals_every_process() {
    // Without a pid namespace, killing the init would not take its children
    // down with it: only `--all` reaches them.
    let mut bundle = Bundle::new();
    let shared = bundle.share();
    bundle.without_namespace("pid");
    bundle.sh("sleep 1000 & sleep 1000 & echo ready > /shared/ready; wait");
    let ctr = Container::new(bundle);
    ctr.run_detached();
    wait_for_file(&shared.join("ready"));
    let pids = ctr.cmd(["ps", "--format", "json", ctr.id()]).ok().json();
    let pids: Vec<i32> = pids
        .as_array()
        .expect("ps --format json prints an array")
        .iter()
        .map(|pid| pid.as_i64().expect("pids are numbers") as i32)
        .collect();
    assert_eq!(pids.len(), 3, "sh and two sleeps: {pids:?}");

    ctr.cmd(["kill", "--all", ctr.id(), "KILL"]).ok();
    assert!(
        wait_until(Duration::from_secs(10), || pids
            .iter()
            .all(|pid| process_gone(*pid))),
        "processes survived kill --all: {:?}",
        pids.iter()
            .filter(|pid| !process_gone(**pid))
            .collect::<Vec<_>>()
    );
    ctr.wait_for_status("stopped");
}

#[test]
fn list_shows_a_table_and_json() {
    let ctr = Container::with_args(&["sleep", "1000"]);
    ctr.create();
    let pid = ctr.pid();

    let table = ctr.cmd(["list"]).ok().stdout;
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("a header").split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"],
        "{table}"
    );
    let row: Vec<&str> = lines.next().expect("a row").split_whitespace().collect();
    assert_eq!(row[..3], [ctr.id(), &pid.to_string(), "created"], "{table}");
    assert_eq!(Path::new(row[3]), ctr.bundle().path(), "{table}");
    assert_eq!(row.last(), Some(&"root"), "{table}");
    assert!(lines.next().is_none(), "one container, one row: {table}");

    let json = ctr.cmd(["list", "--format", "json"]).ok().json();
    let entries = json.as_array().expect("list --format json prints an array");
    assert_eq!(entries.len(), 1, "{json}");
    assert_eq!(entries[0]["id"], ctr.id());
    assert_eq!(entries[0]["pid"], pid);
    assert_eq!(entries[0]["status"], "created");
    assert_eq!(
        Path::new(entries[0]["bundle"].as_str().unwrap()),
        ctr.bundle().path()
    );

    let quiet = ctr.cmd(["list", "-q"]).ok().stdout;
    assert_eq!(quiet, format!("{}\n", ctr.id()));
}

#[test]
fn list_of_an_empty_root_is_just_the_header_or_empty_json() {
    let bundle = Bundle::new();
    let ctr = Container::new(bundle);
    let table = ctr.cmd(["list"]).ok().stdout;
    assert_eq!(table.lines().count(), 1, "{table}");
    let json = ctr.cmd(["list", "--format", "json"]).ok();
    // runc prints `null` for no containers; an empty array is as good.
    let json = json.json();
    assert!(
        json.is_null() || json.as_array().is_some_and(Vec::is_empty),
        "{json}"
    );
}

#[test]
fn ps_json_lists_the_container_pids() {
    let mut bundle = Bundle::new();
    let shared = bundle.share();
    bundle.sh("sleep 1000 & echo ready > /shared/ready; wait");
    let ctr = Container::new(bundle);
    ctr.run_detached();
    wait_for_file(&shared.join("ready"));
    let json = ctr.cmd(["ps", "--format", "json", ctr.id()]).ok().json();
    let pids: Vec<i64> = json
        .as_array()
        .expect("ps --format json prints an array")
        .iter()
        .filter_map(|pid| pid.as_i64())
        .collect();
    assert_eq!(pids.len(), 2, "sh and sleep: {json}");
    assert!(
        pids.contains(&(ctr.pid() as i64)),
        "init is missing from {json}"
    );
}

#[test]
fn state_json_has_the_oci_fields() {
    let mut bundle = Bundle::new();
    bundle.args(&["sleep", "1000"]);
    bundle.spec["annotations"] = serde_json::json!({ "org.peapod.test": "yes" });
    let ctr = Container::new(bundle);
    ctr.create();
    let state = ctr.state();
    assert!(
        state["ociVersion"].as_str().is_some_and(|v| !v.is_empty()),
        "{state}"
    );
    assert_eq!(state["id"], ctr.id(), "{state}");
    assert_eq!(state["status"], "created", "{state}");
    assert!(state["pid"].as_i64().is_some_and(|pid| pid > 0), "{state}");
    assert_eq!(
        Path::new(state["bundle"].as_str().expect("bundle")),
        ctr.bundle().path()
    );
    assert_eq!(state["annotations"]["org.peapod.test"], "yes", "{state}");

    ctr.kill("KILL").ok();
    ctr.wait_for_status("stopped");
    let state = ctr.state();
    assert_eq!(state["id"], ctr.id(), "{state}");
}

#[test]
fn create_writes_the_pid_file() {
    let ctr = Container::with_args(&["sleep", "1000"]);
    let pid_file = ctr.bundle().path().join("init.pid");
    ctr.create_with(&["--pid-file", pid_file.to_str().unwrap()])
        .ok();
    let written = fs::read_to_string(&pid_file).expect("the pid file");
    assert_eq!(
        written.trim(),
        ctr.pid().to_string(),
        "pid file {written:?}"
    );
}

#[test]
fn run_detach_writes_the_pid_file() {
    let ctr = Container::with_args(&["sleep", "1000"]);
    let pid_file = ctr.bundle().path().join("init.pid");
    ctr.run_with(&["--detach", "--pid-file", pid_file.to_str().unwrap()])
        .ok();
    let written = fs::read_to_string(&pid_file).expect("the pid file");
    assert_eq!(
        written.trim(),
        ctr.pid().to_string(),
        "pid file {written:?}"
    );
}

#[test]
fn spec_writes_a_default_config() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    run_in(dir.path(), ["spec"]).ok();
    let text = fs::read_to_string(dir.path().join("config.json")).expect("spec wrote config.json");
    let spec: serde_json::Value = serde_json::from_str(&text).expect("config.json is JSON");
    assert!(spec["ociVersion"].as_str().is_some(), "{spec}");
    assert_eq!(spec["root"]["path"], "rootfs", "{spec}");
    assert!(
        spec["process"]["args"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{spec}"
    );
    assert!(spec["linux"]["namespaces"].as_array().is_some(), "{spec}");

    // It refuses to overwrite an existing config.
    let out = run_in(dir.path(), ["spec"]).failed();
    assert!(out.stderr.contains("config.json"), "{out}");
}

#[test]
fn spec_with_bundle_flag_writes_there() {
    require_root();
    let cwd = tempfile::tempdir().unwrap();
    let bundle = tempfile::tempdir().unwrap();
    run_in(
        cwd.path(),
        ["spec", "--bundle", bundle.path().to_str().unwrap()],
    )
    .ok();
    assert!(bundle.path().join("config.json").is_file());
    assert!(!cwd.path().join("config.json").exists());
}

#[test]
fn spec_output_runs_a_busybox_container() {
    // What `spec` writes must be usable as is (with a rootfs and no terminal).
    let scratch = Bundle::new();
    run_in(
        scratch.path(),
        ["spec", "--bundle", scratch.path().to_str().unwrap()],
    )
    .ok();
    let text = fs::read_to_string(scratch.path().join("config.json")).unwrap();
    let mut bundle = Bundle::new();
    bundle.spec = serde_json::from_str(&text).unwrap();
    bundle.spec["process"]["terminal"] = serde_json::json!(false);
    bundle.args(&["true"]);
    let ctr = Container::new(bundle);
    ctr.run().ok();
}

#[test]
fn features_describes_the_runtime() {
    require_root();
    let features = peapod_tests::run(["features"]).ok().json();
    for field in ["ociVersionMin", "ociVersionMax"] {
        assert!(
            features[field]
                .as_str()
                .is_some_and(|v| v.starts_with("1.")),
            "{field}: {features}"
        );
    }
    let strings = |value: &serde_json::Value| -> Vec<String> {
        value
            .as_array()
            .unwrap_or_else(|| panic!("not an array: {value}"))
            .iter()
            .map(|s| s.as_str().expect("a string").to_owned())
            .collect()
    };
    let hooks = strings(&features["hooks"]);
    assert!(
        hooks
            .iter()
            .any(|h| h == "prestart" || h == "createRuntime"),
        "{hooks:?}"
    );
    let options = strings(&features["mountOptions"]);
    for option in ["ro", "nosuid", "nodev", "noexec", "bind", "rbind"] {
        assert!(
            options.iter().any(|o| o == option),
            "{option} missing from {options:?}"
        );
    }
    let namespaces = strings(&features["linux"]["namespaces"]);
    for ns in ["pid", "network", "ipc", "uts", "mount"] {
        assert!(
            namespaces.iter().any(|n| n == ns),
            "{ns} missing from {namespaces:?}"
        );
    }
    let caps = strings(&features["linux"]["capabilities"]);
    assert!(caps.iter().any(|c| c == "CAP_SYS_ADMIN"), "{caps:?}");
    let cgroup = &features["linux"]["cgroup"];
    assert!(
        cgroup["v1"].is_boolean() && cgroup["v2"].is_boolean(),
        "{cgroup}"
    );
}
