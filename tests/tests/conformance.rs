//! OCI conformance: behaviours that opencontainers/runtime-tools' validation
//! suite checks and no other test file covers, so a regression shows in CI
//! without the suite. Each test names the suite's test it mirrors;
//! runtime/CONFORMANCE.md maps every suite test to ours.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;

use peapod_tests::host::{is_cgroup_v2, remove_cgroup_tree, unique_suffix, wait_for_file};
use peapod_tests::{Bundle, Container};

/// Panics unless `create` of `bundle` fails naming `needle` and leaves nothing.
#[track_caller]
fn assert_create_fails(bundle: Bundle, needle: &str) {
    let ctr = Container::new(bundle);
    let out = ctr.create_with(&[]).failed();
    assert!(
        out.stderr.contains(needle),
        "stderr lacks {needle:?}: {out}"
    );
    ctr.assert_nothing_left();
}

/// A pids cgroup the test (not the runtime) makes; removed on drop.
struct ForeignCgroup {
    name: String,
    dir: PathBuf,
}

impl ForeignCgroup {
    #[track_caller]
    fn new() -> Self {
        let name = format!("pp-conf-foreign-{}", unique_suffix());
        let hierarchy = if is_cgroup_v2() {
            PathBuf::from("/sys/fs/cgroup")
        } else {
            PathBuf::from("/sys/fs/cgroup/pids")
        };
        let dir = hierarchy.join(&name);
        fs::create_dir(&dir).expect("mkdir the foreign cgroup");
        ForeignCgroup { name, dir }
    }
}

impl Drop for ForeignCgroup {
    fn drop(&mut self) {
        remove_cgroup_tree(Path::new("/").join(&self.name).as_path());
    }
}

// runtime-tools: config_updates_without_affect
#[test]
fn editing_config_json_after_create_does_not_change_the_container() {
    let mut bundle = Bundle::new();
    let shared = bundle.share();
    bundle.sh("echo \"$MARK\" > /shared/out");
    bundle.spec["process"]["env"] = json!(["PATH=/bin", "MARK=from-create"]);
    let ctr = Container::new(bundle);
    ctr.create();
    // What runtime-tools writes: a config no runtime could run.
    let config = ctr.bundle().path().join("config.json");
    fs::write(&config, r#"{"ociVersion":"1.0.0"}"#).unwrap();
    ctr.start();
    wait_for_file(&shared.join("out"));
    ctr.wait_for_status("stopped");
    assert_eq!(
        fs::read_to_string(shared.join("out")).unwrap(),
        "from-create\n"
    );
    let state = ctr.state();
    assert_eq!(state["bundle"], json!(ctr.bundle().path()), "{state}");
}

// runtime-tools: linux_mount_label
#[test]
fn a_mount_label_is_accepted_on_a_host_without_selinux() {
    assert!(
        !Path::new("/sys/fs/selinux/enforce").exists(),
        "this test expects a host without SELinux"
    );
    let mut bundle = Bundle::new();
    bundle.args(&["true"]);
    bundle.spec["linux"]["mountLabel"] =
        json!("system_u:object_r:svirt_sandbox_file_t:s0:c715,c811");
    let out = Container::new(bundle).run();
    assert_eq!(out.code, 0, "{out}");
}

// runtime-tools: linux_process_apparmor_profile
#[test]
fn an_apparmor_profile_is_accepted_on_a_host_without_apparmor() {
    let enabled = fs::read_to_string("/sys/module/apparmor/parameters/enabled").unwrap_or_default();
    assert!(
        !enabled.starts_with('Y'),
        "this test expects a host without AppArmor"
    );
    let mut bundle = Bundle::new();
    bundle.args(&["true"]);
    bundle.spec["process"]["apparmorProfile"] = json!("pp_no_such_profile");
    let out = Container::new(bundle).run();
    assert_eq!(out.code, 0, "{out}");
}

// runtime-tools: linux_rootfs_propagation
#[test]
fn rootfs_propagation_decides_whether_a_bind_of_root_sees_new_mounts() {
    // Inside: bind / recursively at /tmp/t, then mount something at /tmp/m;
    // only a shared root propagates it to /tmp/t/tmp/m, and an unbindable
    // root refuses the bind itself.
    const PROBE: &str = "mkdir -p /tmp/t /tmp/m /tmp/d && touch /tmp/d/f
mount --rbind / /tmp/t 2>/dev/null || { echo refused; exit 0; }
mount --bind /tmp/d /tmp/m
if [ -e /tmp/t/tmp/m/f ]; then echo exposed; else echo hidden; fi";
    for (mode, expected) in [
        ("shared", "exposed"),
        ("slave", "hidden"),
        ("private", "hidden"),
        ("unbindable", "refused"),
    ] {
        let mut bundle = Bundle::new();
        bundle.sh(PROBE);
        bundle.spec["root"]["readonly"] = json!(false);
        bundle.spec["linux"]["rootfsPropagation"] = json!(mode);
        for set in ["bounding", "effective", "permitted"] {
            bundle.spec["process"]["capabilities"][set] = json!(["CAP_SYS_ADMIN"]);
        }
        let out = Container::new(bundle).run();
        assert_eq!(out.code, 0, "{mode}: {out}");
        assert_eq!(out.stdout.trim(), expected, "{mode}: {out}");
    }
}

// runtime-tools: process_capabilities_fail
#[test]
fn an_unknown_capability_fails_create() {
    let mut bundle = Bundle::new();
    bundle.args(&["true"]);
    bundle.spec["process"]["capabilities"]["bounding"]
        .as_array_mut()
        .unwrap()
        .push(json!("CAP_PP_BOGUS"));
    assert_create_fails(bundle, "CAP_PP_BOGUS");
}

// runtime-tools: process_rlimits_fail
#[test]
fn an_unknown_rlimit_type_fails_create() {
    let mut bundle = Bundle::new();
    bundle.args(&["true"]);
    bundle.spec["process"]["rlimits"] =
        json!([{ "type": "RLIMIT_PP_BOGUS", "soft": 1024, "hard": 1024 }]);
    assert_create_fails(bundle, "RLIMIT_PP_BOGUS");
}

// runtime-tools: linux_ns_path_type
#[test]
fn joining_a_namespace_path_of_another_type_fails_create() {
    for (kind, wrong) in [
        ("cgroup", "ipc"),
        ("ipc", "mnt"),
        ("mount", "net"),
        ("network", "pid"),
        ("pid", "user"),
        ("user", "uts"),
        ("uts", "cgroup"),
    ] {
        let mut bundle = Bundle::new();
        bundle.args(&["true"]);
        bundle.namespace(kind, Some(Path::new(&format!("/proc/self/ns/{wrong}"))));
        let ctr = Container::new(bundle);
        let out = ctr.create_with(&[]);
        assert!(!out.success(), "{kind} joined a {wrong} namespace: {out}");
        ctr.assert_nothing_left();
    }
}

// runtime-tools: kill_no_effect
#[test]
fn kill_of_a_stopped_container_leaves_its_state_unchanged() {
    let ctr = Container::with_args(&["true"]);
    ctr.run_detached();
    ctr.wait_for_status("stopped");
    let before = ctr.state();
    ctr.kill("KILL").failed();
    assert_eq!(ctr.state(), before);
}

// runtime-tools: delete_only_create_resources
#[test]
fn delete_leaves_a_cgroup_the_runtime_did_not_create() {
    let foreign = ForeignCgroup::new();
    let ctr = Container::with_args(&["true"]);
    ctr.create();
    fs::write(foreign.dir.join("cgroup.procs"), ctr.pid().to_string())
        .expect("move the init into the foreign cgroup");
    ctr.start();
    ctr.wait_for_status("stopped");
    ctr.cmd(["delete", ctr.id()]).ok();
    assert!(
        foreign.dir.exists(),
        "delete removed {}, which it did not create",
        foreign.dir.display()
    );
}
