//! Namespaces: new ones differ from the host's, unlisted ones are shared,
//! joining by path, user namespace id maps, hostname and domainname.

use std::os::unix::fs::MetadataExt;

use serde_json::json;

use peapod_tests::cli::runc_version;
use peapod_tests::host::ns_link;
use peapod_tests::{Bundle, Container, Netns};

/// The `/proc/<pid>/ns` files of the namespace types tests look at.
const NS_FILES: [&str; 7] = ["pid", "net", "ipc", "uts", "mnt", "cgroup", "user"];

/// Runs a container from `bundle` that prints `<ns file> <link>` for each
/// of [`NS_FILES`], and returns them as pairs.
#[track_caller]
fn inside_ns_links(mut bundle: Bundle) -> Vec<(String, String)> {
    bundle.sh(&format!(
        "for ns in {}; do echo $ns $(readlink /proc/self/ns/$ns); done",
        NS_FILES.join(" ")
    ));
    let out = Container::new(bundle).run().ok();
    let links: Vec<(String, String)> = out
        .stdout
        .lines()
        .map(|line| {
            let (ns, link) = line.split_once(' ').expect("`<ns> <link>` lines");
            (ns.to_owned(), link.to_owned())
        })
        .collect();
    assert_eq!(links.len(), NS_FILES.len(), "{out}");
    links
}

#[test]
fn new_namespaces_differ_from_the_hosts() {
    let mut bundle = Bundle::new();
    bundle.namespace("cgroup", None);
    for (ns, link) in inside_ns_links(bundle) {
        if ns == "user" {
            assert_eq!(
                link,
                ns_link("self", "user"),
                "no user namespace was asked for"
            );
        } else {
            assert_ne!(link, ns_link("self", &ns), "{ns} namespace is the host's");
        }
    }
}

#[test]
fn unlisted_namespaces_are_the_hosts() {
    let mut bundle = Bundle::new();
    bundle.without_namespace("network").without_namespace("ipc");
    let links = inside_ns_links(bundle);
    for (ns, link) in &links {
        let shared = ["net", "ipc", "cgroup", "user"].contains(&ns.as_str());
        assert_eq!(*link == ns_link("self", ns), shared, "{ns}: {link}");
    }
}

#[test]
fn pid_namespace_makes_the_program_pid_1() {
    let mut bundle = Bundle::new();
    bundle.sh("echo $$");
    let out = Container::new(bundle).run().ok();
    assert_eq!(out.stdout, "1\n");
}

#[test]
fn network_namespace_has_only_loopback() {
    let mut bundle = Bundle::new();
    bundle.sh("ls /sys/class/net");
    let out = Container::new(bundle).run().ok();
    assert_eq!(out.stdout, "lo\n");
}

#[test]
fn join_a_network_namespace_by_path() {
    let netns = Netns::new();
    let inode = std::fs::metadata(netns.path())
        .expect("the netns file")
        .ino();
    let mut bundle = Bundle::new();
    bundle.namespace("network", Some(&netns.path()));
    bundle.sh("readlink /proc/self/ns/net");
    let out = Container::new(bundle).run().ok();
    assert_eq!(
        out.stdout.trim(),
        format!("net:[{inode}]"),
        "netns {}",
        netns.name()
    );
}

#[test]
fn join_another_containers_namespaces() {
    let mut first = Bundle::new();
    first.spec["hostname"] = json!("pp-first");
    first.args(&["sleep", "1000"]);
    let first = Container::new(first);
    first.run_detached();
    let pid = first.pid().to_string();

    let mut second = Bundle::new();
    // Joining a UTS namespace means taking its hostname, not setting one.
    second.spec.as_object_mut().unwrap().remove("hostname");
    for (kind, file) in [("uts", "uts"), ("ipc", "ipc"), ("network", "net")] {
        second.namespace(kind, Some(format!("/proc/{pid}/ns/{file}").as_ref()));
    }
    second.sh("hostname; for ns in uts ipc net pid; do readlink /proc/self/ns/$ns; done");
    let out = Container::new(second).run().ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "pp-first", "{out}");
    assert_eq!(
        lines[1..4],
        [
            ns_link(&pid, "uts"),
            ns_link(&pid, "ipc"),
            ns_link(&pid, "net")
        ],
        "{out}"
    );
    assert_ne!(
        lines[4],
        ns_link(&pid, "pid"),
        "the pid namespace was not to be joined: {out}"
    );
}

#[test]
fn user_namespace_maps_ids() {
    let mut bundle = Bundle::new();
    bundle.namespace("user", None);
    bundle.spec["linux"]["uidMappings"] =
        json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
    bundle.spec["linux"]["gidMappings"] =
        json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
    // A v1 cgroup hierarchy cannot be mounted from a user namespace.
    bundle.spec["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["destination"] != "/sys/fs/cgroup");
    bundle.sh("cat /proc/self/uid_map /proc/self/gid_map; id -u; readlink /proc/self/ns/user");
    let out = Container::new(bundle).run().ok();
    let lines: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0", "100000", "65536"], "{out}");
    assert_eq!(lines[1], ["0", "100000", "65536"], "{out}");
    assert_eq!(lines[2], ["0"], "{out}");
    assert_ne!(lines[3], [ns_link("self", "user").as_str()], "{out}");
}

#[test]
fn hostname_is_set() {
    let mut bundle = Bundle::new();
    bundle.spec["hostname"] = json!("pp-hostname-test");
    bundle.sh("hostname; cat /proc/sys/kernel/hostname");
    let out = Container::new(bundle).run().ok();
    assert_eq!(out.stdout, "pp-hostname-test\npp-hostname-test\n");
}

#[test]
fn domainname_is_set() {
    let mut bundle = Bundle::new();
    bundle.spec["domainname"] = json!("pp.example");
    bundle.sh("cat /proc/sys/kernel/domainname");
    let out = Container::new(bundle).run().ok();
    if runc_version().is_some_and(|v| v < (1, 2)) {
        // `domainname` came with runtime-spec 1.1; runc 1.1 ignores it.
        eprintln!(
            "runc {:?} ignores `domainname`; not checked",
            runc_version()
        );
        return;
    }
    assert_eq!(out.stdout, "pp.example\n");
}

#[test]
fn sysctls_are_applied_in_the_containers_namespaces() {
    let mut bundle = Bundle::new();
    bundle.spec["linux"]["sysctl"] = json!({
        "kernel.domainname": "pp-sysctl.example",
        "net.ipv4.ip_forward": "1",
    });
    bundle.sh("cat /proc/sys/kernel/domainname /proc/sys/net/ipv4/ip_forward");
    let out = Container::new(bundle).run().ok();
    assert_eq!(out.stdout, "pp-sysctl.example\n1\n");
}

#[test]
fn time_namespace_shifts_the_clocks() {
    if runc_version().is_some_and(|v| v < (1, 2)) {
        // Time namespaces came with runtime-spec 1.2; runc 1.1 does not know them.
        eprintln!(
            "runc {:?} has no time namespaces; not checked",
            runc_version()
        );
        return;
    }
    let mut bundle = Bundle::new();
    bundle.namespace("time", None);
    let year = 365 * 24 * 3600;
    bundle.spec["linux"]["timeOffsets"] = json!({
        "boottime": { "secs": year, "nanosecs": 0 },
        "monotonic": { "secs": 1000, "nanosecs": 0 }
    });
    bundle.sh("cut -d. -f1 /proc/uptime; readlink /proc/self/ns/time");
    let host_uptime: u64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let out = Container::new(bundle).run().ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let uptime: u64 = lines[0].parse().unwrap_or_else(|_| panic!("{out}"));
    assert!(
        uptime >= host_uptime + year && uptime < host_uptime + year + 60,
        "uptime {uptime} inside, {host_uptime} outside: {out}"
    );
    assert_ne!(
        lines[1],
        std::fs::read_link("/proc/self/ns/time")
            .unwrap()
            .to_string_lossy(),
        "{out}"
    );
}
