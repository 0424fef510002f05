//! The `linux.*` settings outside cgroups: `personality`, `intelRdt` (refused on this
//! runtime), and the `sysctl` keys runc refuses.

use serde_json::json;

use peapod_tests::host::require_root;
use peapod_tests::{Bundle, Container};

#[test]
fn personality_linux32_changes_what_uname_reports() {
    require_root();
    let mut bundle = Bundle::new();
    bundle.args(&["uname", "-m"]);
    bundle.spec["linux"]["personality"] = json!({ "domain": "LINUX32" });
    let out = Container::new(bundle).run().ok();
    assert_eq!(out.stdout, "i686\n", "{out}");

    let mut bundle = Bundle::new();
    bundle.args(&["uname", "-m"]);
    bundle.spec["linux"]["personality"] = json!({ "domain": "LINUX" });
    let out = Container::new(bundle).run().ok();
    assert_eq!(out.stdout, "x86_64\n", "{out}");
}

#[test]
fn an_unknown_personality_flag_is_refused() {
    require_root();
    let mut bundle = Bundle::new();
    bundle.args(&["true"]);
    bundle.spec["linux"]["personality"] = json!({ "domain": "LINUX", "flags": ["NOPE"] });
    let out = Container::new(bundle).run();
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("linux.personality.flags"), "{out}");
}

#[test]
fn intel_rdt_is_refused_clearly() {
    require_root();
    let mut bundle = Bundle::new();
    bundle.args(&["true"]);
    bundle.spec["linux"]["intelRdt"] = json!({ "closID": "pp", "l3CacheSchema": "L3:0=f" });
    let out = Container::new(bundle).run();
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr
            .contains("linux.intelRdt: not supported on this host"),
        "{out}"
    );
}

#[test]
fn sysctls_that_would_reach_the_host_are_refused() {
    require_root();
    let cases = [
        ("kernel.hostname", "hostname field"),
        ("vm.swappiness", "not namespaced"),
        ("user.max_user_namespaces", "User namespace"),
    ];
    for (key, expected) in cases {
        let mut bundle = Bundle::new();
        bundle.args(&["true"]);
        bundle.spec["linux"]["sysctl"] = json!({ key: "1" });
        let out = Container::new(bundle).run();
        assert!(!out.success(), "{key}: {out}");
        assert!(out.stderr.contains(expected), "{key}: {out}");
    }
    // A namespaced key in slash form is accepted and written.
    let mut bundle = Bundle::new();
    bundle.args(&["cat", "/proc/sys/kernel/shmmni"]);
    bundle.spec["linux"]["sysctl"] = json!({ "kernel/shmmni": "2048" });
    let out = Container::new(bundle).run().ok();
    assert_eq!(out.stdout, "2048\n", "{out}");
}
