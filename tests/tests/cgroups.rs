//! Cgroups: `linux.resources` lands in the container's cgroup files on the
//! host, `cgroupsPath` places the cgroup, and delete removes it. Written for
//! both cgroup v1 (and hybrid) and v2 hosts.

use std::path::PathBuf;

use serde_json::json;

use peapod_tests::host::{
    cgroup_dirs, controller_cgroup, is_cgroup_v2, read_cgroup_file, unique_suffix, CgroupDir,
};
use peapod_tests::{Bundle, Container};

/// The cgroup dirs of `pid` that the runtime made: those that are not this
/// test process's own (a hierarchy the runtime does not manage leaves the
/// container where the runtime was).
#[track_caller]
fn container_cgroups(pid: i32) -> Vec<CgroupDir> {
    let own = cgroup_dirs(std::process::id() as i32);
    cgroup_dirs(pid)
        .into_iter()
        .filter(|dir| !own.iter().any(|o| o.dir == dir.dir))
        .collect()
}

/// Removes cgroup dirs a failed runtime may have left, after the assertions
/// (which come first) have had their say.
struct CgroupCleanup(Vec<PathBuf>);

impl Drop for CgroupCleanup {
    fn drop(&mut self) {
        for dir in &self.0 {
            // Best effort: gone already, which is the normal case.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Deletes `ctr` and checks that all of `dirs` are gone.
#[track_caller]
fn assert_removed_on_delete(ctr: &Container, dirs: &[CgroupDir]) {
    assert!(!dirs.is_empty(), "the container got no cgroup of its own");
    ctr.delete_force();
    let left: Vec<&PathBuf> = dirs.iter().map(|d| &d.dir).filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "cgroups left after delete: {left:?}");
}

#[test]
fn memory_limit_and_reservation() {
    let ctr = Container::sleeping_with(
        json!({ "memory": { "limit": 67108864, "reservation": 33554432 } }),
    );
    let pid = ctr.pid();
    let (limit, reservation) = if is_cgroup_v2() {
        ("memory.max", "memory.low")
    } else {
        ("memory.limit_in_bytes", "memory.soft_limit_in_bytes")
    };
    assert_eq!(read_cgroup_file(pid, "memory", limit), "67108864");
    assert_eq!(read_cgroup_file(pid, "memory", reservation), "33554432");
}

#[test]
fn cpu_shares_quota_and_period() {
    let ctr = Container::sleeping_with(
        json!({ "cpu": { "shares": 512, "quota": 50000, "period": 100000 } }),
    );
    let pid = ctr.pid();
    if is_cgroup_v2() {
        // The OCI conversion from v1 shares [2, 262144] to v2 weight [1, 10000].
        let weight = 1 + ((512 - 2) * 9999) / 262142;
        assert_eq!(
            read_cgroup_file(pid, "cpu", "cpu.weight"),
            weight.to_string()
        );
        assert_eq!(read_cgroup_file(pid, "cpu", "cpu.max"), "50000 100000");
    } else {
        assert_eq!(read_cgroup_file(pid, "cpu", "cpu.shares"), "512");
        assert_eq!(read_cgroup_file(pid, "cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(read_cgroup_file(pid, "cpu", "cpu.cfs_period_us"), "100000");
    }
}

#[test]
fn cpuset_cpus_and_mems() {
    let ctr = Container::sleeping_with(json!({ "cpu": { "cpus": "0", "mems": "0" } }));
    let pid = ctr.pid();
    assert_eq!(read_cgroup_file(pid, "cpuset", "cpuset.cpus"), "0");
    assert_eq!(read_cgroup_file(pid, "cpuset", "cpuset.mems"), "0");
    let allowed = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        allowed
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Cpus_allowed_list:", "0"]),
        "the process may run elsewhere: {allowed}"
    );
}

#[test]
fn pids_limit() {
    let ctr = Container::sleeping_with(json!({ "pids": { "limit": 64 } }));
    assert_eq!(read_cgroup_file(ctr.pid(), "pids", "pids.max"), "64");
}

#[test]
fn all_container_processes_are_in_its_cgroup() {
    let mut bundle = Bundle::new();
    let shared = bundle.share();
    bundle.sh("sleep 1000 & echo ready > /shared/ready; wait");
    let ctr = Container::new(bundle);
    ctr.run_detached();
    peapod_tests::host::wait_for_file(&shared.join("ready"));
    let pid = ctr.pid();
    let procs = read_cgroup_file(pid, "pids", "cgroup.procs");
    assert_eq!(procs.lines().count(), 2, "sh and sleep: {procs}");
    assert!(procs.lines().any(|p| p == pid.to_string()), "{procs}");
}

#[test]
fn default_cgroup_is_removed_on_delete() {
    let ctr = Container::sleeping_with(json!({ "pids": { "limit": 64 } }));
    let dirs = container_cgroups(ctr.pid());
    let _cleanup = CgroupCleanup(dirs.iter().map(|d| d.dir.clone()).collect());
    assert_removed_on_delete(&ctr, &dirs);
}

/// Runs a container with `cgroupsPath` set to `path`, checks with `expect`
/// that its memory and pids cgroups are where that path says, and that
/// delete removes them.
#[track_caller]
fn check_cgroups_path(path: &str, expect: impl Fn(&str) -> bool) {
    let mut bundle = Bundle::new();
    bundle.args(&["sleep", "1000"]);
    bundle.spec["linux"]["cgroupsPath"] = json!(path);
    bundle.spec["linux"]["resources"] = json!({ "pids": { "limit": 32 } });
    let ctr = Container::new(bundle);
    ctr.run_detached();
    let pid = ctr.pid();
    let dirs = container_cgroups(pid);
    let _cleanup = CgroupCleanup(dirs.iter().map(|d| d.dir.clone()).collect());
    for controller in ["memory", "pids"] {
        let cgroup = controller_cgroup(pid, controller);
        assert!(
            expect(&cgroup.path),
            "{controller} cgroup {cgroup:?} for cgroupsPath {path}"
        );
    }
    assert_eq!(read_cgroup_file(pid, "pids", "pids.max"), "32");
    assert_removed_on_delete(&ctr, &dirs);
}

#[test]
fn relative_cgroups_path() {
    // runc puts a relative path below the runtime's own cgroup.
    let name = format!("peapod-test-{}", unique_suffix());
    let own = cgroup_dirs(std::process::id() as i32);
    check_cgroups_path(&name, |path| {
        path.ends_with(&format!("/{name}"))
            && own
                .iter()
                .any(|o| format!("{}/{name}", o.path.trim_end_matches('/')) == path)
    });
}

#[test]
fn absolute_cgroups_path() {
    let path = format!("/peapod-test-{}", unique_suffix());
    check_cgroups_path(&path, |cgroup| cgroup == path);
}

#[test]
fn device_rules_allow_only_the_listed_devices() {
    // v1: devices.allow/deny; v2: the runtime's eBPF device filter.
    let mut bundle = Bundle::new();
    bundle.spec["linux"]["resources"]["devices"] = json!([{ "allow": false, "access": "rwm" }]);
    for set in ["bounding", "effective", "permitted"] {
        let caps = bundle.spec["process"]["capabilities"][set]
            .as_array_mut()
            .expect("capability set");
        caps.push(json!("CAP_MKNOD"));
    }
    // /dev/null is on the default allowlist; /dev/fuse (c 10:229), which root may
    // otherwise open without further capabilities, is not. Any node may still be
    // created ("c *:* m"). `: <` only opens the file.
    bundle.sh("head -c0 /dev/null && echo null-opened; \
         mknod /dev/pp-fuse c 10 229 && echo fuse-created; \
         (: < /dev/pp-fuse) 2>/dev/null && echo fuse-opened || echo fuse-refused");
    let out = Container::new(bundle).run().ok();
    assert_eq!(
        out.stdout, "null-opened\nfuse-created\nfuse-refused\n",
        "{out}"
    );
}
