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
