//! `linux.seccomp` and `linux.sysctl` seen from inside real containers: a denied syscall
//! returns the configured errno (with and without noNewPrivileges, and in `exec`'d
//! processes), the RuntimeDefault profile stops user namespaces and mounts, unknown
//! syscall names are skipped, SCMP_ACT_NOTIFY is refused at create, and namespaced
//! sysctls apply inside only.

use serde_json::{json, Value};

use peapod_tests::{Bundle, Container};
use runtime::seccomp::profile::{host_arch, host_kernel, Profile, Target};

/// A filter that allows everything except `mkdir`, which fails with `errno`.
fn deny_mkdir(errno: u32, extra_names: &[&str]) -> Value {
    let mut names = vec!["mkdir", "mkdirat"];
    names.extend_from_slice(extra_names);
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": errno}]
    })
}

/// The RuntimeDefault profile resolved for a container whose bounding set is `caps`.
fn runtime_default(caps: &[&str]) -> Value {
    let caps: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
    let seccomp = Profile::runtime_default().resolve(&Target {
        capabilities: &caps,
        arch: host_arch(),
        kernel: host_kernel(),
    });
    serde_json::to_value(seccomp).expect("a LinuxSeccomp serializes")
}

/// A bundle running `script` without a terminal, with `seccomp` as its filter.
fn bundle(script: &str, seccomp: Value) -> Bundle {
    let mut bundle = Bundle::new();
    bundle.sh(script);
    bundle.spec["process"]["terminal"] = json!(false);
    bundle.spec["linux"]["seccomp"] = seccomp;
    bundle
}

#[test]
fn a_denied_syscall_returns_the_configured_errno() {
    // EOPNOTSUPP: an errno nothing else would give mkdir on a tmpfs.
    let ctr = Container::new(bundle(
        "mkdir /dev/shm/x; echo rc=$?; ls -d /dev/shm",
        deny_mkdir(95, &[]),
    ));
    let out = ctr.run().ok();
    assert!(out.stderr.contains("Operation not supported"), "{out}");
    assert!(out.stdout.contains("rc=1"), "{out}");
    assert!(
        out.stdout.contains("/dev/shm"),
        "other syscalls are allowed: {out}"
    );
}

#[test]
fn without_no_new_privileges_the_filter_is_loaded_while_privileged() {
    // The kernel refuses a filter from a process with neither no_new_privs nor
    // CAP_SYS_ADMIN: the runtime must load it before trimming capabilities.
    let mut b = bundle(
        "mkdir /dev/shm/x; cat /proc/self/status",
        deny_mkdir(18, &[]),
    );
    b.spec["process"]["noNewPrivileges"] = json!(false);
    b.spec["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    let out = Container::new(b).run().ok();
    assert!(out.stderr.contains("cross-device link"), "{out}");
    assert!(out.stdout.contains("NoNewPrivs:\t0"), "{out}");
    assert!(out.stdout.contains("Seccomp:\t2"), "{out}");
}

#[test]
fn exec_processes_are_confined_too() {
    let ctr = Container::new(bundle("sleep 30", deny_mkdir(95, &[])));
    ctr.run_detached();
    let out = ctr.exec(&[], &["mkdir", "/dev/shm/y"]);
    assert!(
        out.code != 0 && out.stderr.contains("Operation not supported"),
        "{out}"
    );
    let status = ctr.exec(&[], &["cat", "/proc/self/status"]).ok();
    assert!(status.stdout.contains("Seccomp:\t2"), "{status}");
}

#[test]
fn unknown_syscall_names_are_skipped() {
    let ctr = Container::new(bundle(
        "mkdir /dev/shm/x",
        deny_mkdir(95, &["no_such_syscall_peapod", "cachestat_from_the_future"]),
    ));
    let out = ctr.run();
    assert!(out.stderr.contains("Operation not supported"), "{out}");
}

#[test]
fn notify_without_a_listener_fails_create_clearly() {
    let seccomp = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    });
    let ctr = Container::new(bundle("true", seccomp));
    let out = ctr.create_with(&[]).failed();
    assert!(
        out.stderr.contains("SCMP_ACT_NOTIFY") && out.stderr.contains("listener"),
        "{out}"
    );
    ctr.cmd(["state", ctr.id()]).failed();
}

#[test]
fn without_a_profile_user_namespaces_work() {
    // The baseline for the next test: the host allows unprivileged user namespaces.
    let ctr = Container::new(bundle("unshare -U true && echo ok", Value::Null));
    let out = ctr.run();
    assert!(out.stdout.contains("ok"), "{out}");
}

#[test]
fn runtime_default_stops_user_namespaces_and_mounts() {
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let ctr = Container::new(bundle(
        "unshare -U true; echo unshare=$?; echo ok",
        runtime_default(&caps),
    ));
    let out = ctr.run().ok();
    assert!(out.stdout.contains("unshare=1"), "{out}");
    assert!(out.stderr.contains("Operation not permitted"), "{out}");

    // With CAP_SYS_ADMIN in the process but a profile resolved without it, only the
    // filter can be what refuses the mount (the same container mounts without it).
    let mount = |seccomp: Value| {
        let mut b = bundle("mount -t tmpfs t /dev/shm; echo mount=$?", seccomp);
        let admin = json!(["CAP_SYS_ADMIN"]);
        for set in ["bounding", "effective", "permitted"] {
            b.spec["process"]["capabilities"][set] = admin.clone();
        }
        Container::new(b).run().ok()
    };
    let out = mount(Value::Null);
    assert!(out.stdout.contains("mount=0"), "{out}");
    let out = mount(runtime_default(&caps));
    assert!(out.stdout.contains("mount=1"), "{out}");
    assert!(out.stderr.contains("permission denied"), "{out}");
}

#[test]
fn features_report_seccomp() {
    let features = peapod_tests::run(["features"]).ok().json();
    let seccomp = &features["linux"]["seccomp"];
    assert_eq!(seccomp["enabled"], json!(true), "{seccomp}");
    assert!(seccomp["actions"]
        .as_array()
        .is_some_and(|a| a.contains(&json!("SCMP_ACT_ERRNO"))));
}

#[test]
fn namespaced_sysctls_apply_inside_only() {
    let host = std::fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").unwrap();
    let mut b = bundle("cat /proc/sys/kernel/shm_rmid_forced", Value::Null);
    let flipped = if host.trim() == "1" { "0" } else { "1" };
    b.spec["linux"]["sysctl"] = json!({"kernel.shm_rmid_forced": flipped});
    let out = Container::new(b).run().ok();
    assert_eq!(out.stdout.trim(), flipped, "{out}");
    let after = std::fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").unwrap();
    assert_eq!(after, host, "the host's value must not change");

    let mut b = bundle("true", Value::Null);
    b.spec["linux"]["sysctl"] = json!({"kernel.pid_max": "65536"});
    let out = Container::new(b).run().failed();
    assert!(out.stderr.contains("not namespaced"), "{out}");
}
