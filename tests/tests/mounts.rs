//! Mounts: the default filesystems, tmpfs and bind mounts with options,
//! devices, /dev symlinks, masked and read-only paths, a read-only root,
//! `--no-pivot`, and nothing leaking to the host.

use std::fs;

use serde_json::json;

use peapod_tests::host::{is_cgroup_v2, mount_at, parse_mountinfo, MountInfo};
use peapod_tests::{Bundle, Container};

/// Runs `script` in a container from `bundle`; panics unless it exits 0.
#[track_caller]
fn output_of(mut bundle: Bundle, script: &str) -> String {
    bundle.sh(script);
    Container::new(bundle).run().ok().stdout
}

/// The container's own mount table.
#[track_caller]
fn mounts_inside(bundle: Bundle) -> Vec<MountInfo> {
    parse_mountinfo(&output_of(bundle, "cat /proc/self/mountinfo"))
}

/// Panics unless `mount` has every option in `options`.
#[track_caller]
fn assert_options(mount: &MountInfo, options: &[&str]) {
    for option in options {
        assert!(
            mount.has_option(option),
            "{} lacks {option}: {mount:?}",
            mount.mount_point
        );
    }
}

#[test]
fn default_filesystems_are_mounted() {
    let mounts = mounts_inside(Bundle::new());
    for (point, fstype, options) in [
        ("/proc", "proc", &[][..]),
        ("/dev", "tmpfs", &["nosuid", "mode=755"][..]),
        ("/dev/pts", "devpts", &["nosuid", "noexec"][..]),
        (
            "/dev/shm",
            "tmpfs",
            &["nosuid", "nodev", "noexec", "size=65536k"][..],
        ),
        ("/dev/mqueue", "mqueue", &["nosuid", "nodev", "noexec"][..]),
        ("/sys", "sysfs", &["ro", "nosuid", "nodev", "noexec"][..]),
    ] {
        let mount = mount_at(&mounts, point);
        assert_eq!(mount.fstype, fstype, "{mount:?}");
        assert_options(mount, options);
    }

    // cgroup v2: one read-only cgroup2 mount; v1: a tmpfs (runc leaves it
    // read-write) with one read-only mount per hierarchy.
    let cgroup = mount_at(&mounts, "/sys/fs/cgroup");
    if is_cgroup_v2() {
        assert_eq!(cgroup.fstype, "cgroup2", "{cgroup:?}");
        assert_options(cgroup, &["ro"]);
    } else {
        for controller in ["memory", "cpu", "pids"] {
            let hierarchy = mounts
                .iter()
                .find(|m| m.fstype == "cgroup" && m.has_option(controller))
                .unwrap_or_else(|| panic!("no {controller} hierarchy in {mounts:#?}"));
            assert!(
                hierarchy.mount_point.starts_with("/sys/fs/cgroup/"),
                "{hierarchy:?}"
            );
            assert_options(hierarchy, &["ro"]);
        }
    }
}

#[test]
fn cgroup_files_are_visible_inside() {
    let script = if is_cgroup_v2() {
        "cat /sys/fs/cgroup/cgroup.procs"
    } else {
        "cat /sys/fs/cgroup/pids/cgroup.procs"
    };
    let out = output_of(Bundle::new(), script);
    // The container sees its own cgroup, holding only its own processes.
    assert!(out.lines().count() >= 1, "{out}");
}

#[test]
fn tmpfs_with_options() {
    let mut bundle = Bundle::new();
    bundle.mount(json!({
        "destination": "/scratch",
        "type": "tmpfs",
        "source": "tmpfs",
        // Not tmpfs's default 1777, which mountinfo would not show.
        "options": ["nosuid", "nodev", "noexec", "size=1m", "mode=750"],
    }));
    bundle.sh(
        "stat -c %a /scratch; echo hi > /scratch/f && cat /scratch/f; cat /proc/self/mountinfo",
    );
    let out = Container::new(bundle).run().ok().stdout;
    let (head, table) = out.split_at(out.find("hi\n").expect("the write worked") + 3);
    assert_eq!(head, "750\nhi\n");
    let mounts = parse_mountinfo(table);
    let scratch = mount_at(&mounts, "/scratch");
    assert_eq!(scratch.fstype, "tmpfs");
    assert_options(
        scratch,
        &["nosuid", "nodev", "noexec", "size=1024k", "mode=750"],
    );
}

#[test]
fn read_only_bind_mount_of_a_host_dir() {
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("hello"), "from the host\n").unwrap();
    fs::write(host.path().join("run.sh"), "#!/bin/sh\necho ran\n").unwrap();
    let mut bundle = Bundle::new();
    bundle.bind(host.path(), "/data", &["ro", "nosuid", "nodev", "noexec"]);
    bundle.sh("cat /data/hello; \
         touch /data/new 2>/dev/null && echo wrote || echo read-only; \
         sh /data/run.sh; chmod +x /data/run.sh 2>/dev/null || echo no-chmod; \
         grep ' /data ' /proc/self/mountinfo");
    let out = Container::new(bundle).run().ok().stdout;
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("from the host"), "{out}");
    assert_eq!(lines.next(), Some("read-only"), "{out}");
    assert_eq!(
        lines.next(),
        Some("ran"),
        "reading a script to sh is fine: {out}"
    );
    assert_eq!(lines.next(), Some("no-chmod"), "{out}");
    let mounts = parse_mountinfo(lines.next().expect("the /data mountinfo line"));
    assert_options(&mounts[0], &["ro", "nosuid", "nodev", "noexec"]);
    assert!(!host.path().join("new").exists());
}

#[test]
fn noexec_bind_mount_refuses_to_execute() {
    let host = tempfile::tempdir().unwrap();
    fs::copy("/bin/busybox", host.path().join("busybox")).unwrap();
    let mut bundle = Bundle::new();
    bundle.bind(host.path(), "/data", &["noexec"]);
    let out = output_of(
        bundle,
        "/data/busybox true 2>/dev/null && echo executed || echo refused",
    );
    assert_eq!(out, "refused\n");
}

#[test]
fn read_write_bind_mount_reaches_the_host() {
    let host = tempfile::tempdir().unwrap();
    let mut bundle = Bundle::new();
    bundle.bind(host.path(), "/data", &["rw"]);
    output_of(bundle, "echo written > /data/out");
    assert_eq!(
        fs::read_to_string(host.path().join("out")).unwrap(),
        "written\n"
    );
}

#[test]
fn bind_mount_of_a_single_file() {
    let host = tempfile::tempdir().unwrap();
    let file = host.path().join("extra.conf");
    fs::write(&file, "key=value\n").unwrap();
    let mut bundle = Bundle::new();
    bundle.bind(&file, "/etc/extra.conf", &["ro"]);
    assert_eq!(output_of(bundle, "cat /etc/extra.conf"), "key=value\n");
}

#[test]
fn default_devices_exist_with_the_right_numbers() {
    let out = output_of(
        Bundle::new(),
        "stat -c '%n %F %t:%T' /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty; \
         echo discarded > /dev/null && head -c 4 /dev/zero | wc -c",
    );
    // stat prints major:minor in hex.
    let expected = "\
/dev/null character special file 1:3
/dev/zero character special file 1:5
/dev/full character special file 1:7
/dev/random character special file 1:8
/dev/urandom character special file 1:9
/dev/tty character special file 5:0
4
";
    assert_eq!(out, expected);
}

#[test]
fn dev_symlinks() {
    let out = output_of(
        Bundle::new(),
        "for l in fd stdin stdout stderr ptmx; do echo $l $(readlink /dev/$l); done",
    );
    let expected = "\
fd /proc/self/fd
stdin /proc/self/fd/0
stdout /proc/self/fd/1
stderr /proc/self/fd/2
ptmx pts/ptmx
";
    assert_eq!(out, expected);
}

#[test]
fn masked_paths_are_empty() {
    let mut bundle = Bundle::new();
    let rootfs = bundle.rootfs();
    fs::write(rootfs.join("etc/secret"), "top secret\n").unwrap();
    fs::create_dir_all(rootfs.join("opt/secrets")).unwrap();
    fs::write(rootfs.join("opt/secrets/key"), "top secret\n").unwrap();
    bundle.spec["linux"]["maskedPaths"]
        .as_array_mut()
        .unwrap()
        .extend([json!("/etc/secret"), json!("/opt/secrets")]);
    let paths: Vec<String> = bundle.spec["linux"]["maskedPaths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    // Paths missing on this kernel (e.g. /proc/kcore) are skipped, as the
    // runtime skips them too.
    let out = output_of(
        bundle,
        &format!(
            "for p in {}; do \
               if [ -d $p ]; then echo $p $(ls -A $p | wc -l); \
               elif [ -e $p ]; then echo $p $(cat $p 2>/dev/null | wc -c); fi; \
             done",
            paths.join(" ")
        ),
    );
    assert!(out.contains("/etc/secret "), "{out}");
    assert!(out.contains("/opt/secrets "), "{out}");
    for line in out.lines() {
        assert!(line.ends_with(" 0"), "masked path shows content: {line}");
    }
}

#[test]
fn readonly_paths_are_read_only() {
    let mut bundle = Bundle::new();
    bundle.spec["root"]["readonly"] = json!(false);
    fs::create_dir_all(bundle.rootfs().join("opt/ro")).unwrap();
    bundle.spec["linux"]["readonlyPaths"]
        .as_array_mut()
        .unwrap()
        .push(json!("/opt/ro"));
    let out = output_of(
        bundle,
        "touch /opt/ro/x 2>/dev/null && echo writable || echo read-only; \
         touch /opt/x && echo writable; \
         (echo 1 > /proc/sys/net/ipv4/ip_forward) 2>/dev/null && echo writable || echo read-only; \
         grep -E ' /(opt/ro|proc/sys) ' /proc/self/mountinfo",
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("read-only"), "/opt/ro: {out}");
    assert_eq!(lines.next(), Some("writable"), "/opt: {out}");
    assert_eq!(lines.next(), Some("read-only"), "/proc/sys: {out}");
    let mounts = parse_mountinfo(&lines.collect::<Vec<_>>().join("\n"));
    assert_options(mount_at(&mounts, "/opt/ro"), &["ro"]);
    assert_options(mount_at(&mounts, "/proc/sys"), &["ro"]);
}

#[test]
fn readonly_root() {
    let mut bundle = Bundle::new();
    bundle.spec["root"]["readonly"] = json!(true);
    let out = output_of(
        bundle,
        "touch /x 2>/dev/null && echo writable || echo read-only; awk '$5 == \"/\"' /proc/self/mountinfo",
    );
    let (first, table) = out.split_once('\n').unwrap();
    assert_eq!(first, "read-only", "{out}");
    assert_options(mount_at(&parse_mountinfo(table), "/"), &["ro"]);
}

#[test]
fn writable_root() {
    let mut bundle = Bundle::new();
    bundle.spec["root"]["readonly"] = json!(false);
    bundle.sh("echo hi > /x && cat /x");
    let ctr = Container::new(bundle);
    assert_eq!(ctr.run().ok().stdout, "hi\n");
    assert_eq!(
        fs::read_to_string(ctr.bundle().rootfs().join("x")).unwrap(),
        "hi\n"
    );
}

#[test]
fn no_pivot_still_confines_the_root() {
    let mut bundle = Bundle::new();
    bundle.sh("ls /; cat /etc/passwd | head -n 1");
    let out = Container::new(bundle).run_with(&["--no-pivot"]).ok();
    let entries: Vec<&str> = out.stdout.lines().collect();
    assert!(
        entries.contains(&"bin") && entries.contains(&"etc"),
        "{out}"
    );
    assert!(!entries.contains(&"usr"), "saw the host's root: {out}");
    assert_eq!(
        entries.last(),
        Some(&"root:x:0:0:root:/root:/bin/sh"),
        "{out}"
    );
}

#[test]
fn mounts_do_not_leak_to_the_host() {
    let host = tempfile::tempdir().unwrap();
    let mut bundle = Bundle::new();
    bundle.bind(host.path(), "/data", &["ro"]);
    bundle.mount(json!({ "destination": "/scratch", "type": "tmpfs", "source": "tmpfs" }));
    let bundle_dir = bundle.path().to_string_lossy().into_owned();
    assert_eq!(output_of(bundle, "ls /data; echo ran"), "ran\n");
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let leaked: Vec<MountInfo> = parse_mountinfo(&table)
        .into_iter()
        .filter(|m| m.mount_point.starts_with(&bundle_dir))
        .collect();
    assert!(leaked.is_empty(), "mounts left on the host: {leaked:#?}");
}

// runtime-tools: mounts
#[test]
fn mounts_with_every_propagation_option() {
    let mut bundle = Bundle::new();
    let source = bundle.path().join("propagation-source");
    fs::create_dir(&source).unwrap();
    for mode in ["shared", "slave", "private"] {
        bundle.mount(json!({
            "destination": format!("/tmp/tmpfs-{mode}"),
            "type": "tmpfs",
            "source": "tmpfs",
            "options": [mode],
        }));
    }
    for mode in ["shared", "slave", "private", "unbindable"] {
        for (bind, prefix) in [("bind", ""), ("rbind", "r")] {
            bundle.bind(
                &source,
                &format!("/mnt/{prefix}{mode}"),
                &[bind, &format!("{prefix}{mode}")],
            );
        }
    }
    let table = output_of(bundle, "cat /proc/self/mountinfo");
    // The optional fields (between the options and " - ") carry the propagation.
    let propagation = |mount_point: &str| -> String {
        let line = table
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(mount_point))
            .unwrap_or_else(|| panic!("{mount_point} is not mounted:\n{table}"));
        let fields: Vec<&str> = line.split(' ').collect();
        let end = fields
            .iter()
            .position(|f| *f == "-")
            .unwrap_or(fields.len());
        fields[6..end].join(" ")
    };
    for mount_point in ["/tmp/tmpfs-shared", "/mnt/shared", "/mnt/rshared"] {
        assert!(
            propagation(mount_point).contains("shared:"),
            "{mount_point}:\n{table}"
        );
    }
    for mount_point in ["/mnt/unbindable", "/mnt/runbindable"] {
        assert_eq!(
            propagation(mount_point),
            "unbindable",
            "{mount_point}:\n{table}"
        );
    }
    for mount_point in ["/tmp/tmpfs-private", "/mnt/private", "/mnt/rprivate"] {
        assert_eq!(propagation(mount_point), "", "{mount_point}:\n{table}");
    }
    for mount_point in ["/tmp/tmpfs-slave", "/mnt/slave", "/mnt/rslave"] {
        assert!(
            !propagation(mount_point).contains("shared:"),
            "{mount_point}:\n{table}"
        );
    }
}
