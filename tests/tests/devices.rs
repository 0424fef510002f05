//! Devices: `linux.devices` nodes appear in the container with their type, numbers, mode
//! and owner; the device cgroup (v1 `devices.allow`/`devices.deny`, or on cgroup v2 the
//! eBPF device filter) lets the container open only what the rules allow.

use nix::sys::stat::{Mode, SFlag};
use serde_json::{json, Value};

use peapod_tests::host::{cgroup_dirs, require_root};
use peapod_tests::{Bundle, Container};

/// A bundle whose process has CAP_MKNOD too (to make nodes the rules do not list).
fn bundle_with_mknod(script: &str) -> Bundle {
    let mut bundle = Bundle::new();
    for set in ["bounding", "effective", "permitted"] {
        let caps = bundle.spec["process"]["capabilities"][set]
            .as_array_mut()
            .expect("capability set");
        caps.push(json!("CAP_MKNOD"));
    }
    bundle.sh(script);
    bundle
}

/// `linux.devices`: a loop disk (block 7:0), /dev/fuse under another name (char 10:229)
/// and a FIFO.
fn listed_devices() -> Value {
    json!([
        { "path": "/dev/pp-loop0", "type": "b", "major": 7, "minor": 0,
          "fileMode": 0o640, "uid": 1000, "gid": 100 },
        { "path": "/dev/pp-fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600 },
        { "path": "/dev/pp-fifo", "type": "p", "major": 0, "minor": 0 }
    ])
}

#[test]
fn listed_devices_exist_with_their_type_numbers_mode_and_owner() {
    require_root();
    let mut bundle = Bundle::new();
    bundle.spec["linux"]["devices"] = listed_devices();
    // stat prints major:minor in hex.
    bundle.sh("stat -c '%n %F %t:%T %a %u:%g' /dev/pp-loop0 /dev/pp-fuse /dev/pp-fifo");
    let out = Container::new(bundle).run().ok();
    let expected = "\
/dev/pp-loop0 block special file 7:0 640 1000:100
/dev/pp-fuse character special file a:e5 600 0:0
/dev/pp-fifo fifo 0:0 666 0:0
";
    assert_eq!(out.stdout, expected, "{out}");
}

/// A loop disk (block 7:0) in `linux.devices`, with the default mode and owner (root may
/// open it without CAP_DAC_OVERRIDE).
fn openable_device() -> Value {
    json!([{ "path": "/dev/pp-loop0", "type": "b", "major": 7, "minor": 0 }])
}

/// The script of the enforcement test: /dev/null (runc's default allowlist), the listed
/// loop disk, and 7:1, made in the container but listed nowhere. `: <` only opens.
const OPEN_SCRIPT: &str = "head -c0 /dev/null && echo null-opened; \
     (: < /dev/pp-loop0) && echo listed-opened; \
     mknod /dev/pp-loop1 b 7 1 && echo unlisted-created; \
     (: < /dev/pp-loop1) 2>/dev/null && echo unlisted-opened || echo unlisted-refused";

#[test]
fn deny_all_keeps_the_defaults_and_listed_devices_and_refuses_the_rest() {
    require_root();
    let mut bundle = bundle_with_mknod(OPEN_SCRIPT);
    bundle.spec["linux"]["devices"] = openable_device();
    bundle.spec["linux"]["resources"]["devices"] = json!([{ "allow": false, "access": "rwm" }]);
    let out = Container::new(bundle).run().ok();
    assert_eq!(
        out.stdout, "null-opened\nlisted-opened\nunlisted-created\nunlisted-refused\n",
        "{out}"
    );
}

#[test]
fn the_config_rules_keep_their_order() {
    require_root();
    // Deny all, allow all again, then deny 7:1: the later rules win, for 7:1 only. The
    // nodes are made on the host, outside /dev (the container may not mknod 7:1).
    let mut bundle = Bundle::new();
    for (name, minor) in [("pp-loop1", 1), ("pp-loop2", 2)] {
        let path = bundle.rootfs().join(name);
        let dev = nix::sys::stat::makedev(7, minor);
        nix::sys::stat::mknod(&path, SFlag::S_IFBLK, Mode::from_bits_truncate(0o600), dev)
            .unwrap_or_else(|e| panic!("mknod {}: {e}", path.display()));
    }
    bundle.sh("(: < /pp-loop2) && echo loop2-opened; \
         (: < /pp-loop1) 2>/dev/null && echo loop1-opened || echo loop1-refused");
    bundle.spec["linux"]["resources"]["devices"] = json!([
        { "allow": false, "access": "rwm" },
        { "allow": true, "access": "rwm" },
        { "allow": false, "type": "b", "major": 7, "minor": 1, "access": "rwm" }
    ]);
    let out = Container::new(bundle).run().ok();
    assert_eq!(out.stdout, "loop2-opened\nloop1-refused\n", "{out}");
}

#[test]
fn a_rule_the_devices_cgroup_would_ignore_is_refused() {
    require_root();
    // Allow every block device, then deny 7:1: cgroup v1 cannot take 7:1 out of a wildcard.
    let mut bundle = Bundle::new();
    bundle.args(&["true"]);
    bundle.spec["linux"]["resources"]["devices"] = json!([
        { "allow": false, "access": "rwm" },
        { "allow": true, "type": "b", "access": "rwm" },
        { "allow": false, "type": "b", "major": 7, "minor": 1, "access": "rwm" }
    ]);
    let out = Container::new(bundle).run();
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr
            .contains("cannot narrow the earlier wildcard rule"),
        "{out}"
    );
}

#[test]
fn a_device_filter_on_the_containers_unified_cgroup_is_enforced() {
    require_root();
    // On a hybrid host the runtime relies on the v1 devices controller; the kernel also runs
    // the BPF device filters of the container's cgroup2 directory. Attach the filter the
    // runtime builds for "deny all" there, and check that it blocks what v1 allows. (On a
    // v2 host the runtime's own filter already allows the listed device: this one is added.)
    let mut bundle = Bundle::new();
    bundle.args(&["sleep", "1000"]);
    bundle.spec["linux"]["devices"] = openable_device();
    let ctr = Container::new(bundle);
    ctr.run_detached();
    let unified = cgroup_dirs(ctr.pid())
        .into_iter()
        .find(|d| d.controllers.is_empty())
        .expect("the container's cgroup2 directory");
    let opens = || {
        let script = "(: < /dev/pp-loop0) 2>&1 && echo listed-opened";
        ctr.exec(&[], &["sh", "-c", script]).stdout
    };
    assert_eq!(opens(), "listed-opened\n", "before the filter");

    let deny_all = oci_spec_rule(false);
    let rules = runtime::cgroup::device_rules(&[deny_all]).unwrap();
    let program = runtime::cgroup::compile_device_filter(&rules).unwrap();
    let loaded = runtime::cgroup::DeviceProgram::load(&program).unwrap();
    loaded.attach(&unified.dir).unwrap();
    let after = opens();
    // The container's cgroup goes with delete, and the filter with it.
    ctr.delete_force();
    assert!(after.contains("Operation not permitted"), "{after}");
    assert!(!after.contains("listed-opened"), "{after}");
}

fn oci_spec_rule(allow: bool) -> oci_spec::runtime::LinuxDeviceCgroup {
    serde_json::from_value(json!({ "allow": allow, "access": "rwm" })).unwrap()
}
