//! User namespaces: a container whose root is an unprivileged host uid, with a rootfs
//! below a directory only the host's root may enter; joining a user namespace by path;
//! mappings without a user namespace and a user namespace without mappings.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use serde_json::{json, Value};

use peapod_tests::host::ns_link;
use peapod_tests::{Bundle, Container, Netns};

/// The host uid and gid container root maps to (any range unused on the host).
const HOST_BASE: u32 = 231_072;
/// How many ids are mapped.
const SIZE: u32 = 65_536;

/// A bundle with a new user namespace mapping container ids 0.. to `HOST_BASE`...
#[track_caller]
fn userns_bundle() -> Bundle {
    let mut bundle = Bundle::new();
    bundle.namespace("user", None);
    bundle.spec["root"]["readonly"] = json!(false);
    let map = json!([{ "containerID": 0, "hostID": HOST_BASE, "size": SIZE }]);
    bundle.spec["linux"]["uidMappings"] = map.clone();
    bundle.spec["linux"]["gidMappings"] = map;
    bundle
}

/// The mount points of this process that lie under `dir`.
fn mounts_under(dir: &std::path::Path) -> Vec<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    let dir = dir.to_string_lossy();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|point| point.starts_with(dir.as_ref()))
        .map(str::to_owned)
        .collect()
}

/// The split lines of `stdout`.
fn words(stdout: &str) -> Vec<Vec<&str>> {
    stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect()
}

#[test]
fn root_of_a_user_namespace_runs_from_a_rootfs_under_a_private_bundle() {
    let mut bundle = userns_bundle();
    // The bundle directory as `mktemp -d` leaves it: only the host's root may enter it,
    // and the host's root is not mapped in the container's user namespace.
    fs::set_permissions(bundle.path(), fs::Permissions::from_mode(0o700)).expect("chmod bundle");
    let bundle_dir = bundle.path().to_path_buf();
    let made = bundle.rootfs().join("tmp/made-by-root");
    bundle.sh("id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; touch /tmp/made-by-root");
    let container = Container::new(bundle);
    let out = container.run().ok();
    let lines = words(&out.stdout);
    let mapping = ["0".to_string(), HOST_BASE.to_string(), SIZE.to_string()];
    assert_eq!(lines.first(), Some(&vec!["0"]), "uid: {out}");
    assert_eq!(lines.get(1), Some(&vec!["0"]), "gid: {out}");
    assert_eq!(
        lines.get(2).cloned(),
        Some(mapping.iter().map(String::as_str).collect()),
        "{out}"
    );
    assert_eq!(
        lines.get(3).cloned(),
        Some(mapping.iter().map(String::as_str).collect()),
        "{out}"
    );
    let meta = fs::metadata(&made).expect("the file the container made");
    assert_eq!(
        (meta.uid(), meta.gid()),
        (HOST_BASE, HOST_BASE),
        "container root's file is owned by the mapped host ids"
    );
    // The rootfs keeps its owners: nothing was chowned.
    let rootfs = fs::metadata(bundle_dir.join("rootfs/bin")).expect("rootfs /bin");
    assert_eq!((rootfs.uid(), rootfs.gid()), (0, 0));
    container.cmd(["state", container.id()]).failed();
    assert_eq!(
        mounts_under(&bundle_dir),
        Vec::<String>::new(),
        "mounts left behind"
    );
}

/// A script printing `<mount point> <fstype>` for the container's standard mounts, then
/// whether the bound device nodes work.
const MOUNTS_SCRIPT: &str = "for m in /proc /sys /sys/fs/cgroup /dev /dev/pts /dev/shm /dev/mqueue; do \
       awk -v m=$m '$5 == m { for (i = 7; i < NF; i++) if ($i == \"-\") { print m, $(i + 1); exit } }' \
         /proc/self/mountinfo; done; \
     echo x > /dev/null && head -c 1 /dev/zero | wc -c";

/// What [`MOUNTS_SCRIPT`] prints when every mount is in place.
const MOUNTS: [&str; 8] = [
    "/proc proc",
    "/sys sysfs",
    "/sys/fs/cgroup tmpfs",
    "/dev tmpfs",
    "/dev/pts devpts",
    "/dev/shm tmpfs",
    "/dev/mqueue mqueue",
    "1",
];

/// Runs [`MOUNTS_SCRIPT`] in a container of `bundle` and checks it prints [`MOUNTS`].
#[track_caller]
fn assert_mounts(mut bundle: Bundle) {
    bundle.sh(MOUNTS_SCRIPT);
    let out = Container::new(bundle).run().ok();
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), MOUNTS, "{out}");
}

#[test]
fn mounts_work_inside_the_user_namespace() {
    let mut bundle = userns_bundle();
    bundle.namespace("cgroup", None);
    assert_mounts(bundle);
}

/// Without a network namespace of its own sysfs cannot be mounted: the host's /sys is bound
/// (as runc does); without a cgroup namespace the cgroup directories are bound.
#[test]
fn mounts_work_in_a_user_namespace_sharing_the_hosts_network_and_cgroups() {
    let mut bundle = userns_bundle();
    bundle
        .without_namespace("network")
        .without_namespace("cgroup");
    assert_mounts(bundle);
}

/// A network namespace joined by path belongs to the host's user namespace: sysfs cannot be
/// mounted for it from the container's, and the host's /sys is bound instead (as runc).
#[test]
fn sysfs_is_bound_for_a_network_namespace_the_user_namespace_does_not_own() {
    let netns = Netns::new();
    let mut bundle = userns_bundle();
    bundle.namespace("network", Some(&netns.path()));
    assert_mounts(bundle);
}

/// A detached container in a new user namespace, sleeping, and its init's pid.
#[track_caller]
fn sleeping_in_a_user_namespace() -> (Container, String) {
    let mut bundle = userns_bundle();
    bundle.args(&["sleep", "1000"]);
    let container = Container::new(bundle);
    container.run_detached();
    let pid = container.pid().to_string();
    (container, pid)
}

#[test]
fn exec_joins_the_user_namespace() {
    let (container, pid) = sleeping_in_a_user_namespace();
    let out = container
        .exec(&[], &["sh", "-c", "id -u; readlink /proc/self/ns/user"])
        .ok();
    assert_eq!(
        out.stdout,
        format!("0\n{}\n", ns_link(&pid, "user")),
        "{out}"
    );
}

#[test]
fn join_a_user_namespace_by_path() {
    let (_first, pid) = sleeping_in_a_user_namespace();

    let mut second = Bundle::new();
    for (kind, file) in [("user", "user"), ("network", "net"), ("ipc", "ipc")] {
        second.namespace(kind, Some(format!("/proc/{pid}/ns/{file}").as_ref()));
    }
    second.sh("readlink /proc/self/ns/user; id -u; cat /proc/self/uid_map");
    let out = Container::new(second).run().ok();
    let lines = words(&out.stdout);
    assert_eq!(lines[0], [ns_link(&pid, "user").as_str()], "{out}");
    assert_eq!(lines[1], ["0"], "{out}");
    let mapping = ["0".to_string(), HOST_BASE.to_string(), SIZE.to_string()];
    assert_eq!(
        lines[2],
        mapping.iter().map(String::as_str).collect::<Vec<_>>(),
        "{out}"
    );
}

/// `create` fails, and its error names `field`.
#[track_caller]
fn refused(bundle: Bundle, field: &str) {
    let container = Container::new(bundle);
    let out = container.create_with(&[]).failed();
    assert!(
        out.stderr.contains(field),
        "error does not name {field}: {out}"
    );
}

#[test]
fn mappings_without_a_user_namespace_are_refused() {
    let mut bundle = Bundle::new();
    bundle.spec["linux"]["uidMappings"] =
        json!([{ "containerID": 0, "hostID": HOST_BASE, "size": SIZE }]);
    refused(bundle, "linux.uidMappings");
}

#[test]
fn a_user_namespace_without_mappings_is_refused() {
    let mut bundle = userns_bundle();
    bundle.spec["linux"]["uidMappings"] = Value::Null;
    bundle.spec["linux"]["gidMappings"] = json!([]);
    refused(bundle, "linux.uidMappings");
}

/// The rootfs itself unreachable for the mapped root: a clear error, not a failed lookup.
#[test]
fn a_rootfs_the_mapped_root_cannot_enter_is_refused_clearly() {
    let bundle = userns_bundle();
    fs::set_permissions(bundle.rootfs(), fs::Permissions::from_mode(0o700)).expect("chmod");
    refused(bundle, "the container's user cannot enter it");
}

#[test]
fn no_pivot_in_a_user_namespace() {
    let mut bundle = userns_bundle();
    fs::set_permissions(bundle.path(), fs::Permissions::from_mode(0o700)).expect("chmod bundle");
    bundle.sh("id -u; ls /");
    let out = Container::new(bundle).run_with(&["--no-pivot"]).ok();
    assert_eq!(out.stdout.lines().next(), Some("0"), "{out}");
    assert!(out.stdout.contains("bin\n"), "{out}");
}
