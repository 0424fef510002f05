//! Tests on the real cgroups of this host. They need root, and fail (never skip) without it.
//!
//! Each test uses its own `peapod-test-<pid>-<n>` cgroup and a [`Guard`] that kills its child
//! and removes the cgroup even when an assertion fails. They work on v1, hybrid and v2 hosts.

use std::fs;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};

use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

use super::{Cgroup, CgroupError, Mode, Placement};

const MIB: i64 = 1 << 20;

/// A cgroup name no other test (or test run) uses.
fn unique_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    assert!(
        nix::unistd::geteuid().is_root(),
        "the cgroup host tests need root: run them as root (they create real cgroups)"
    );
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("peapod-test-{}-{n}", std::process::id())
}

/// Kills the child and removes the cgroup when the test ends, however it ends.
#[derive(Default)]
struct Guard {
    cgroup: Option<Cgroup>,
    child: Option<Child>,
}

impl Guard {
    fn kill_child(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill_child();
        if let Some(cgroup) = self.cgroup.take() {
            let _ = cgroup.remove();
        }
    }
}

fn resources() -> LinuxResources {
    let memory = LinuxMemoryBuilder::default()
        .limit(64 * MIB)
        .reservation(32 * MIB)
        .build()
        .unwrap();
    let cpu = LinuxCpuBuilder::default()
        .shares(512_u64)
        .quota(20_000_i64)
        .period(100_000_u64)
        .cpus("0")
        .build()
        .unwrap();
    LinuxResourcesBuilder::default()
        .memory(memory)
        .cpu(cpu)
        .pids(LinuxPidsBuilder::default().limit(32).build().unwrap())
        .build()
        .unwrap()
}

/// The container's directory for `controller`: its v1 hierarchy, or the v2 one.
fn dir_of<'a>(cgroup: &'a Cgroup, controller: &str) -> &'a Path {
    let placement = match cgroup.mode() {
        Mode::Unified => cgroup.placements().first(),
        Mode::Legacy | Mode::Hybrid => cgroup.placements().iter().find(|p| p.has(controller)),
    };
    &placement
        .unwrap_or_else(|| panic!("no {controller} in {cgroup:?}"))
        .path
}

fn read(cgroup: &Cgroup, controller: &str, file: &str) -> String {
    let path = dir_of(cgroup, controller).join(file);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.trim().to_owned()
}

/// Whether `/proc/<pid>/cgroup` puts `pid` in `placement`'s directory.
fn is_member(pid: u32, placement: &Placement) -> bool {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines().any(|line| {
        let mut fields = line.splitn(3, ':').skip(1);
        let (names, path) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
        names == placement.hierarchy && placement.path.ends_with(path.trim_start_matches('/'))
    })
}

#[test]
fn a_container_cgroup_limits_holds_lists_and_releases_a_process() {
    let id = unique_name();
    let mut guard = Guard::default();
    let cgroup = guard
        .cgroup
        .insert(Cgroup::create(None, &id, Some(&resources())).unwrap())
        .clone();

    for placement in cgroup.placements() {
        assert!(placement.path.is_dir(), "{}", placement.path.display());
        assert!(placement.path.ends_with(&id));
        assert_eq!(placement.created.last(), Some(&placement.path));
    }
    assert_eq!(read(&cgroup, "pids", "pids.max"), "32");
    assert_eq!(read(&cgroup, "cpuset", "cpuset.cpus"), "0");
    if cgroup.mode() == Mode::Unified {
        assert_eq!(
            read(&cgroup, "memory", "memory.max"),
            (64 * MIB).to_string()
        );
        assert_eq!(
            read(&cgroup, "memory", "memory.low"),
            (32 * MIB).to_string()
        );
        assert_eq!(read(&cgroup, "cpu", "cpu.weight"), "20");
        assert_eq!(read(&cgroup, "cpu", "cpu.max"), "20000 100000");
    } else {
        let memory = |file| read(&cgroup, "memory", file);
        assert_eq!(memory("memory.limit_in_bytes"), (64 * MIB).to_string());
        assert_eq!(memory("memory.soft_limit_in_bytes"), (32 * MIB).to_string());
        assert_eq!(read(&cgroup, "cpu", "cpu.shares"), "512");
        assert_eq!(read(&cgroup, "cpu", "cpu.cfs_quota_us"), "20000");
        assert_eq!(read(&cgroup, "cpu", "cpu.cfs_period_us"), "100000");
        assert!(!read(&cgroup, "cpuset", "cpuset.mems").is_empty());
    }

    let child = guard
        .child
        .insert(Command::new("sleep").arg("1000").spawn().unwrap());
    let pid = child.id();
    cgroup.add_process(pid as i32).unwrap();
    for placement in cgroup.placements() {
        assert!(
            is_member(pid, placement),
            "{pid} not in {}",
            placement.path.display()
        );
    }
    assert_eq!(cgroup.pids().unwrap(), [pid as i32]);

    let err = cgroup.remove().unwrap_err();
    assert!(
        matches!(&err, CgroupError::Remove { source, .. } if source.raw_os_error() == Some(libc::EBUSY)),
        "{err}"
    );

    guard.kill_child();
    cgroup.remove().unwrap();
    for placement in cgroup.placements() {
        assert!(
            !placement.path.exists(),
            "{} is left",
            placement.path.display()
        );
    }
    assert_eq!(cgroup.pids().unwrap(), Vec::<i32>::new());
}

#[test]
fn an_absolute_path_is_made_from_each_root_and_removed_with_its_parent() {
    let name = unique_name();
    let mut guard = Guard::default();
    let path = format!("/{name}/nested");
    let cgroup = guard
        .cgroup
        .insert(Cgroup::create(Some(Path::new(&path)), "ignored", None).unwrap())
        .clone();
    let layout = super::Host::default().layout().unwrap();
    for (placement, hierarchy) in cgroup.placements().iter().zip(&layout.hierarchies) {
        assert_eq!(placement.path, hierarchy.mount_point.join(&path[1..]));
        assert_eq!(placement.created.len(), 2, "{placement:?}");
        assert!(placement.path.is_dir());
    }
    cgroup.remove().unwrap();
    for placement in cgroup.placements() {
        assert!(
            !placement.created[0].exists(),
            "{}",
            placement.created[0].display()
        );
    }
}

#[test]
fn joining_an_existing_cgroup_leaves_it_to_its_creator() {
    let id = unique_name();
    let mut guard = Guard::default();
    let owner = guard
        .cgroup
        .insert(Cgroup::create(None, &id, None).unwrap())
        .clone();
    let joined = Cgroup::create(None, &id, Some(&resources())).unwrap();
    assert!(joined.placements().iter().all(|p| p.created.is_empty()));
    assert_eq!(
        read(&joined, "pids", "pids.max"),
        "32",
        "limits still apply"
    );

    joined.remove().unwrap();
    assert!(owner.placements().iter().all(|p| p.path.is_dir()));
    owner.remove().unwrap();
    assert!(owner.placements().iter().all(|p| !p.path.exists()));
}

#[test]
fn swap_limits_follow_the_kernels_swap_accounting() {
    let id = unique_name();
    let mut guard = Guard::default();
    let memory = LinuxMemoryBuilder::default()
        .limit(64 * MIB)
        .swap(128 * MIB)
        .build()
        .unwrap();
    let resources = LinuxResourcesBuilder::default()
        .memory(memory)
        .build()
        .unwrap();
    match Cgroup::create(None, &id, Some(&resources)) {
        Ok(cgroup) => {
            let cgroup = guard.cgroup.insert(cgroup);
            if cgroup.mode() == Mode::Unified {
                assert_eq!(
                    read(cgroup, "memory", "memory.swap.max"),
                    (64 * MIB).to_string()
                );
            } else {
                let memsw = read(cgroup, "memory", "memory.memsw.limit_in_bytes");
                assert_eq!(memsw, (128 * MIB).to_string());
            }
        }
        Err(err) => assert!(matches!(err, CgroupError::SwapUnsupported { .. }), "{err}"),
    }
}

#[test]
fn a_value_the_kernel_refuses_is_reported_and_nothing_is_left() {
    let id = unique_name();
    let cpu = LinuxCpuBuilder::default().cpus("4095").build().unwrap();
    let resources = LinuxResourcesBuilder::default().cpu(cpu).build().unwrap();
    let err = Cgroup::create(None, &id, Some(&resources)).unwrap_err();
    assert!(matches!(err, CgroupError::Apply { .. }), "{err}");
    assert!(err.to_string().contains("cpuset.cpus"), "{err}");
    assert!(err.to_string().contains("\"4095\""), "{err}");

    let layout = super::Host::default().layout().unwrap();
    for hierarchy in &layout.hierarchies {
        let leftover = walk_for(&hierarchy.mount_point, &id);
        assert!(leftover.is_none(), "{leftover:?} is left");
    }
}

/// The first directory named `name` at most three levels below `dir`.
fn walk_for(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    fn walk(dir: &Path, name: &str, depth: u32) -> Option<std::path::PathBuf> {
        let entries = fs::read_dir(dir).ok()?;
        for entry in entries.flatten().filter(|e| e.path().is_dir()) {
            if entry.file_name() == name {
                return Some(entry.path());
            }
            if depth > 0 {
                if let Some(found) = walk(&entry.path(), name, depth - 1) {
                    return Some(found);
                }
            }
        }
        None
    }
    walk(dir, name, 3)
}

/// A cgroup directory made by hand on the unified (v2) hierarchy, removed on drop.
struct UnifiedDir(std::path::PathBuf);

impl UnifiedDir {
    fn new() -> UnifiedDir {
        let layout = super::Host::default().layout().unwrap();
        let v2 = layout
            .v2()
            .expect("this test needs a cgroup2 hierarchy (hybrid or unified host)");
        let dir = v2.mount_point.join(unique_name());
        fs::create_dir(&dir).unwrap();
        UnifiedDir(dir)
    }

    /// Run `script` in `sh` inside this cgroup; its stdout and stderr.
    fn run(&self, script: &str) -> (String, String) {
        let procs = self.0.join("cgroup.procs");
        let script = format!("echo $$ > {} && {script}", procs.display());
        let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
        let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
        (text(out.stdout), text(out.stderr))
    }
}

impl Drop for UnifiedDir {
    fn drop(&mut self) {
        // The shells have exited: the cgroup is empty, and its programs go with it.
        let _ = fs::remove_dir(&self.0);
    }
}

#[test]
fn the_v2_device_filter_allows_listed_devices_and_denies_the_rest() {
    let dir = UnifiedDir::new();
    let deny_all = oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()
        .unwrap();
    let kmsg_read_only = oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(oci_spec::runtime::LinuxDeviceType::C)
        .major(1_i64)
        .minor(11_i64)
        .access("r")
        .build()
        .unwrap();
    // Deny all, a read-only /dev/kmsg, then runc's defaults (which allow /dev/null but not
    // the disk).
    let rules = super::devices::rules(&[deny_all, kmsg_read_only]).unwrap();
    let program = super::device_filter::program(&rules).unwrap();
    let loaded = super::bpf::DeviceProgram::load(&program).unwrap();
    loaded.attach(&dir.0).unwrap();

    // Opening is what the filter checks: nothing is read from or written to a device here.
    let disk = "/dev/vda";
    assert!(
        Path::new(disk).exists(),
        "the test needs the host disk {disk}"
    );
    let (out, err) = dir.run(&format!(
        "cat /dev/null && echo null-ok; dd if=/dev/kmsg count=0 2>/dev/null && echo kmsg-read-ok; \
         true > /dev/kmsg || echo kmsg-write-denied; dd if={disk} count=0 || echo disk-denied"
    ));
    assert!(out.contains("null-ok"), "{out} {err}");
    assert!(out.contains("kmsg-read-ok"), "{out} {err}");
    assert!(out.contains("kmsg-write-denied"), "{out} {err}");
    assert!(out.contains("disk-denied"), "{out} {err}");
    assert!(
        err.contains("Operation not permitted"),
        "EPERM expected: {err}"
    );

    loaded.detach(&dir.0).unwrap();
    let (out, err) = dir.run("true > /dev/kmsg && echo kmsg-write-ok");
    assert!(out.contains("kmsg-write-ok"), "detached: {out} {err}");
}

/// Takes back a controller the test's cgroup made the cgroup2 root enable, so the host's
/// `cgroup.subtree_control` ends as it began.
/// Tests that use it run one at a time, so none takes the controller from another.
struct SubtreeController {
    file: std::path::PathBuf,
    name: &'static str,
    was_enabled: bool,
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

impl SubtreeController {
    fn enabled_until_drop(root: &Path, name: &'static str) -> Self {
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let lock = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let file = root.join("cgroup.subtree_control");
        let was_enabled = fs::read_to_string(&file)
            .unwrap()
            .split_whitespace()
            .any(|c| c == name);
        Self {
            file,
            name,
            was_enabled,
            _one_at_a_time: lock,
        }
    }
}

impl Drop for SubtreeController {
    fn drop(&mut self) {
        if !self.was_enabled {
            let _ = fs::write(&self.file, format!("-{}", self.name));
        }
    }
}

#[test]
fn hybrid_hugetlb_limits_go_to_the_unified_directory() {
    let layout = super::Host::default().layout().unwrap();
    assert_eq!(
        layout.mode,
        Mode::Hybrid,
        "this test is for the hybrid host"
    );
    // Declared before the cgroup's guard, so it runs after the cgroup is gone.
    let _controller = SubtreeController::enabled_until_drop(
        &layout.v2().expect("a cgroup2 mount").mount_point,
        "hugetlb",
    );
    let mut guard = Guard::default();
    let limit = oci_spec::runtime::LinuxHugepageLimitBuilder::default()
        .page_size("2MB")
        .limit(4 * MIB)
        .build()
        .unwrap();
    let resources = LinuxResourcesBuilder::default()
        .hugepage_limits(vec![limit])
        .build()
        .unwrap();
    let name = unique_name();
    let cgroup = Cgroup::create(None, &name, Some(&resources)).unwrap();
    guard.cgroup = Some(cgroup.clone());
    let unified = cgroup
        .placements()
        .iter()
        .find(|p| p.version == super::Version::V2)
        .unwrap();
    let max = fs::read_to_string(unified.path.join("hugetlb.2MB.max")).unwrap();
    assert_eq!(max.trim(), (4 * MIB).to_string());
}

#[test]
fn v1_kernel_tcp_and_blkio_weight_and_throttles_are_written() {
    let mut guard = Guard::default();
    let memory = LinuxMemoryBuilder::default()
        .kernel_tcp(16 * MIB)
        .build()
        .unwrap();
    // A whole disk (throttles refuse partitions): the first virtio or loop disk.
    let disk = ["vda", "loop0"]
        .iter()
        .find_map(|d| fs::read_to_string(format!("/sys/block/{d}/dev")).ok())
        .expect("a block device for the throttle test");
    let (major, minor) = disk.trim().split_once(':').unwrap();
    let (major, minor): (i64, i64) = (major.parse().unwrap(), minor.parse().unwrap());
    let throttle = oci_spec::runtime::LinuxThrottleDeviceBuilder::default()
        .major(major)
        .minor(minor)
        .rate(1_048_576_u64)
        .build()
        .unwrap();
    let block_io = oci_spec::runtime::LinuxBlockIoBuilder::default()
        .weight(300_u16)
        .throttle_read_bps_device(vec![throttle])
        .build()
        .unwrap();
    let resources = LinuxResourcesBuilder::default()
        .memory(memory)
        .block_io(block_io)
        .build()
        .unwrap();
    let cgroup = Cgroup::create(None, &unique_name(), Some(&resources)).unwrap();
    guard.cgroup = Some(cgroup.clone());
    let tcp = read(&cgroup, "memory", "memory.kmem.tcp.limit_in_bytes");
    assert_eq!(tcp, (16 * MIB).to_string());
    // The host's kernel has BFQ's weight files (below the root only), not CFQ's.
    let weight = read(&cgroup, "blkio", "blkio.bfq.weight");
    assert!(weight.ends_with("300"), "{weight}");
    let bps = read(&cgroup, "blkio", "blkio.throttle.read_bps_device");
    assert_eq!(bps, format!("{major}:{minor} 1048576"));
}

#[test]
fn what_this_host_cannot_honour_is_refused_and_nothing_is_left() {
    // BFQ has no leaf weight (runc fails the same way).
    let leaf_weight = oci_spec::runtime::LinuxBlockIoBuilder::default()
        .leaf_weight(500_u16)
        .build()
        .unwrap();
    let network = oci_spec::runtime::LinuxNetworkBuilder::default()
        .class_id(7_u32)
        .build()
        .unwrap();
    let cases = [
        (
            LinuxResourcesBuilder::default()
                .block_io(leaf_weight)
                .build()
                .unwrap(),
            "blkio.leaf_weight does not exist",
        ),
        (
            LinuxResourcesBuilder::default()
                .network(network)
                .build()
                .unwrap(),
            "net_cls controller, which is not available",
        ),
        (
            LinuxResourcesBuilder::default()
                .unified(std::collections::HashMap::from([(
                    "memory.high".to_string(),
                    "1".to_string(),
                )]))
                .build()
                .unwrap(),
            "no unified resources",
        ),
    ];
    for (resources, expected) in cases {
        let name = unique_name();
        let result = Cgroup::create(None, &name, Some(&resources));
        if let Ok(cgroup) = &result {
            let _ = cgroup.remove();
        }
        let err = result.expect_err(expected);
        assert!(err.to_string().contains(expected), "{err}");
        assert!(
            walk_for(Path::new("/sys/fs/cgroup"), &name).is_none(),
            "{name} left"
        );
    }
}

#[test]
fn on_a_v2_only_host_the_device_rules_become_an_attached_filter() {
    // The hybrid host's cgroup2 mount, taken as the cgroup root, is a v2-only host to
    // `Cgroup`: the same code path as on /sys/fs/cgroup of a unified host.
    let layout = super::Host::default().layout().unwrap();
    let v2 = layout.v2().expect("a cgroup2 hierarchy");
    // As on a v2 host, the root enables the controllers it offers (hugetlb here).
    let _controller = SubtreeController::enabled_until_drop(&v2.mount_point, "hugetlb");
    let host = super::Host {
        root: v2.mount_point.clone(),
        ..super::Host::default()
    };
    let deny_all = oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()
        .unwrap();
    let resources = LinuxResourcesBuilder::default()
        .devices(vec![deny_all])
        .build()
        .unwrap();
    let name = unique_name();
    let path = format!("/{name}");
    let cgroup = Cgroup::create_on(&host, Some(Path::new(&path)), &name, Some(&resources)).unwrap();
    let guard = Guard {
        cgroup: Some(cgroup.clone()),
        child: None,
    };
    assert_eq!(cgroup.mode(), Mode::Unified);
    let dir = UnifiedDir(cgroup.placements()[0].path.clone());
    let (out, err) = dir.run(
        "cat /dev/null && echo null-ok; dd if=/dev/kmsg count=0 2>/dev/null || echo kmsg-denied",
    );
    drop((dir, guard));
    assert!(out.contains("null-ok"), "{out} {err}");
    assert!(out.contains("kmsg-denied"), "{out} {err}");
}
