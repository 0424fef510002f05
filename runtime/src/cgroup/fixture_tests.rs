//! Tests of the whole module against fake cgroup trees in a temporary directory.
//!
//! A fake tree is plain directories and files: `mkdir` does not make interface files as the
//! kernel would, so a test that needs one (e.g. `memory.swap.max`, whose presence means swap
//! accounting) creates the container's directory beforehand, which `create` then joins.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};
use tempfile::TempDir;

use super::{Cgroup, CgroupError, Host, Mode, Version};

const MIB: i64 = 1 << 20;
const V2_CONTROLLERS: &str = "cpuset cpu io memory hugetlb pids rdma misc";
/// The v1 hierarchies of this development host, one mount each, plus cgroup2 at `unified`.
const V1_MOUNTS: &[(&str, &str)] = &[
    ("cpu", "cpu"),
    ("cpuacct", "cpuacct"),
    ("cpuset", "cpuset"),
    ("memory", "memory"),
    ("pids", "pids"),
    ("systemd", "xattr,name=systemd"),
];

/// A fake cgroup root with its mount table and the caller's `/proc/self/cgroup`.
struct Fixture {
    _tmp: TempDir,
    host: Host,
}

impl Fixture {
    /// cgroup v2 at the root, offering `controllers`; the caller is in a systemd scope.
    fn v2(controllers: &str) -> Fixture {
        let (tmp, host) = Fixture::files();
        let root = host.root.display();
        fs::write(
            &host.mountinfo,
            format!("29 23 0:26 / {root} rw - cgroup2 cgroup2 rw\n"),
        )
        .unwrap();
        fs::write(&host.own_cgroup, "0::/user.slice/session-1.scope\n").unwrap();
        let fixture = Fixture { _tmp: tmp, host };
        fixture.write("cgroup.controllers", controllers);
        fixture.write("cgroup.subtree_control", "");
        fixture.mkdir("user.slice/session-1.scope");
        fixture
    }

    /// cgroup v1 hierarchies `mounts` (directory, super options), and cgroup2 at `unified`
    /// when `hybrid`. The caller's memory cgroup is `/process_api/x`; the cpuset root has
    /// CPUs 0-1 and memory node 0.
    fn v1(mounts: &[(&str, &str)], hybrid: bool) -> Fixture {
        let (tmp, host) = Fixture::files();
        let mut mountinfo = String::new();
        let mut own = String::new();
        for (n, (dir, options)) in mounts.iter().enumerate() {
            let point = host.root.join(dir);
            fs::create_dir(&point).unwrap();
            let line = format!(
                "{} 31 0:{n} / {} rw - cgroup cgroup rw,{options}\n",
                32 + n,
                point.display()
            );
            mountinfo.push_str(&line);
            let names = options.trim_start_matches("xattr,");
            let path = if *dir == "memory" {
                "/process_api/x"
            } else {
                "/"
            };
            own.push_str(&format!("{}:{names}:{path}\n", n + 1));
        }
        if hybrid {
            let point = host.root.join("unified");
            fs::create_dir(&point).unwrap();
            mountinfo.push_str(&format!(
                "41 31 0:38 / {} rw - cgroup2 cgroup2 rw\n",
                point.display()
            ));
            own.push_str("0::/\n");
        }
        fs::write(&host.mountinfo, mountinfo).unwrap();
        fs::write(&host.own_cgroup, own).unwrap();
        let fixture = Fixture { _tmp: tmp, host };
        if mounts.iter().any(|(dir, _)| *dir == "memory") {
            fixture.mkdir("memory/process_api/x");
        }
        if mounts.iter().any(|(dir, _)| *dir == "cpuset") {
            fixture.write("cpuset/cpuset.cpus", "0-1\n");
            fixture.write("cpuset/cpuset.mems", "0\n");
        }
        fixture
    }

    fn files() -> (TempDir, Host) {
        let tmp = tempfile::tempdir().unwrap();
        let host = Host {
            root: tmp.path().join("cgroup"),
            mountinfo: tmp.path().join("mountinfo"),
            own_cgroup: tmp.path().join("self-cgroup"),
            device_filters: false,
        };
        fs::create_dir(&host.root).unwrap();
        (tmp, host)
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.host.root.join(relative)
    }

    fn mkdir(&self, relative: &str) {
        fs::create_dir_all(self.path(relative)).unwrap();
    }

    fn write(&self, relative: &str, text: &str) {
        fs::write(self.path(relative), text).unwrap();
    }

    fn read(&self, relative: &str) -> String {
        let path = self.path(relative);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn create(
        &self,
        path: Option<&str>,
        resources: Option<&LinuxResources>,
    ) -> Result<Cgroup, CgroupError> {
        Cgroup::create_on(&self.host, path.map(Path::new), "web", resources)
    }
}

fn memory(limit: i64, reservation: i64, swap: Option<i64>) -> LinuxResources {
    let mut memory = LinuxMemoryBuilder::default()
        .limit(limit)
        .reservation(reservation);
    if let Some(swap) = swap {
        memory = memory.swap(swap);
    }
    let memory = memory.build().unwrap();
    LinuxResourcesBuilder::default()
        .memory(memory)
        .build()
        .unwrap()
}

fn everything() -> LinuxResources {
    let cpu = LinuxCpuBuilder::default()
        .shares(1024_u64)
        .quota(50_000_i64)
        .period(100_000_u64)
        .cpus("1")
        .mems("0")
        .build()
        .unwrap();
    let memory = LinuxMemoryBuilder::default()
        .limit(100 * MIB)
        .reservation(50 * MIB)
        .build()
        .unwrap();
    LinuxResourcesBuilder::default()
        .memory(memory)
        .cpu(cpu)
        .pids(LinuxPidsBuilder::default().limit(64).build().unwrap())
        .build()
        .unwrap()
}

#[test]
fn v2_absolute_path_enables_controllers_down_to_the_parent_and_writes_limits() {
    let f = Fixture::v2(V2_CONTROLLERS);
    f.mkdir("kubepods");
    f.write("kubepods/cgroup.subtree_control", "cpu memory\n");

    let cgroup = f
        .create(Some("/kubepods/pod1/c1"), Some(&everything()))
        .unwrap();

    assert_eq!(cgroup.mode(), Mode::Unified);
    let [placement] = cgroup.placements() else {
        panic!("{cgroup:?}")
    };
    assert_eq!(
        (placement.hierarchy.as_str(), placement.version),
        ("", Version::V2)
    );
    assert_eq!(placement.path, f.path("kubepods/pod1/c1"));
    assert_eq!(
        placement.created,
        [f.path("kubepods/pod1"), f.path("kubepods/pod1/c1")]
    );

    let all = "+cpuset +cpu +io +memory +hugetlb +pids +rdma +misc";
    assert_eq!(f.read("cgroup.subtree_control"), all);
    assert_eq!(
        f.read("kubepods/cgroup.subtree_control"),
        "+cpuset +io +hugetlb +pids +rdma +misc"
    );
    assert_eq!(f.read("kubepods/pod1/cgroup.subtree_control"), all);
    assert!(!f.path("kubepods/pod1/c1/cgroup.subtree_control").exists());

    let c1 = |file: &str| f.read(&format!("kubepods/pod1/c1/{file}"));
    assert_eq!(c1("memory.max"), (100 * MIB).to_string());
    assert_eq!(c1("memory.low"), (50 * MIB).to_string());
    assert!(
        !f.path("kubepods/pod1/c1/memory.swap.max").exists(),
        "unset swap is not written"
    );
    assert_eq!(c1("cpu.weight"), "39");
    assert_eq!(c1("cpu.max"), "50000 100000");
    assert_eq!(c1("cpuset.cpus"), "1");
    assert_eq!(c1("cpuset.mems"), "0");
    assert_eq!(c1("pids.max"), "64");
}

#[test]
fn v2_default_path_is_the_id_beside_the_callers_scope() {
    let f = Fixture::v2("cpu memory pids");
    let cgroup = f.create(None, None).unwrap();
    assert_eq!(cgroup.placements()[0].path, f.path("user.slice/web"));
    assert_eq!(cgroup.placements()[0].created, [f.path("user.slice/web")]);
    assert_eq!(
        f.read("user.slice/cgroup.subtree_control"),
        "+cpu +memory +pids"
    );
}

#[test]
fn v2_swap_is_memory_plus_swap_minus_memory() {
    let cases = [
        (100 * MIB, Some(300 * MIB), "209715200"),
        (100 * MIB, Some(100 * MIB), "0"),
        (100 * MIB, Some(-1), "max"),
        (-1, None, "max"),
    ];
    for (limit, swap, expected) in cases {
        let f = Fixture::v2("memory");
        f.mkdir("pod/web");
        f.write("pod/web/memory.swap.max", "max");
        let cgroup = f
            .create(Some("/pod/web"), Some(&memory(limit, 0, swap)))
            .unwrap();
        assert!(cgroup.placements()[0].created.is_empty(), "joined");
        assert_eq!(
            f.read("pod/web/memory.swap.max"),
            expected,
            "{limit} {swap:?}"
        );
    }
}

#[test]
fn v2_without_swap_accounting_only_none_or_unlimited_swap_is_accepted() {
    let f = Fixture::v2("memory");
    f.create(Some("/a"), Some(&memory(100 * MIB, 0, Some(100 * MIB))))
        .unwrap();
    assert!(!f.path("a/memory.swap.max").exists());

    let err = f
        .create(Some("/b"), Some(&memory(100 * MIB, 0, Some(300 * MIB))))
        .unwrap_err();
    assert!(
        matches!(err, CgroupError::SwapUnsupported { swap, .. } if swap == 300 * MIB),
        "{err}"
    );
    assert!(err.to_string().contains("memory.swap.max"), "{err}");
    assert!(
        !f.path("b").exists(),
        "a failed create leaves nothing behind"
    );
}

#[test]
fn v2_missing_controller_fails_and_undoes_the_directories() {
    let f = Fixture::v2("cpu memory");
    let pids = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(5).build().unwrap())
        .build()
        .unwrap();
    let err = f.create(Some("/a/b"), Some(&pids)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "linux.resources asks for the pids controller, which is not available under {}",
            f.host.root.display()
        )
    );
    assert!(!f.path("a").exists());
}

#[test]
fn v2_a_required_controller_that_cannot_be_enabled_is_an_error() {
    let f = Fixture::v2("memory pids");
    f.mkdir("stuck");
    // Reads as missing (empty), refuses writes: a dangling link into a missing directory.
    std::os::unix::fs::symlink(f.path("gone/x"), f.path("stuck/cgroup.subtree_control")).unwrap();
    let err = f
        .create(Some("/stuck/c"), Some(&memory(MIB, 0, None)))
        .unwrap_err();
    assert!(
        matches!(&err, CgroupError::EnableController { controller, .. } if controller == "memory"),
        "{err}"
    );
    assert!(
        err.to_string().contains("stuck/cgroup.subtree_control"),
        "{err}"
    );
    assert!(!f.path("stuck/c").exists());
    assert!(
        f.path("stuck").exists(),
        "a parent that existed before is kept"
    );
}

#[test]
fn v2_processes_are_added_and_listed() {
    let f = Fixture::v2("memory");
    let cgroup = f.create(Some("/p/c"), None).unwrap();
    cgroup.add_process(4242).unwrap();
    assert_eq!(f.read("p/c/cgroup.procs"), "4242");
    f.mkdir("p/c/inner");
    f.write("p/c/inner/cgroup.procs", "77\n");
    assert_eq!(cgroup.pids().unwrap(), [77, 4242]);
}

#[test]
fn v1_hybrid_joins_every_hierarchy_and_the_unified_one() {
    let f = Fixture::v1(V1_MOUNTS, true);
    let cgroup = f.create(None, None).unwrap();
    assert_eq!(cgroup.mode(), Mode::Hybrid);
    let placed: Vec<(&str, PathBuf)> = cgroup
        .placements()
        .iter()
        .map(|p| (p.hierarchy.as_str(), p.path.clone()))
        .collect();
    assert_eq!(
        placed,
        [
            ("cpu", f.path("cpu/web")),
            ("cpuacct", f.path("cpuacct/web")),
            ("cpuset", f.path("cpuset/web")),
            ("memory", f.path("memory/process_api/x/web")),
            ("pids", f.path("pids/web")),
            ("name=systemd", f.path("systemd/web")),
            ("", f.path("unified/web")),
        ]
    );
    assert_eq!(cgroup.placements()[6].version, Version::V2);
    assert_eq!(
        f.read("cpuset/web/cpuset.cpus"),
        "0-1",
        "initialised from the parent"
    );
    assert_eq!(f.read("cpuset/web/cpuset.mems"), "0");

    cgroup.add_process(99).unwrap();
    for p in cgroup.placements() {
        assert_eq!(
            fs::read_to_string(p.path.join("cgroup.procs")).unwrap(),
            "99"
        );
    }
    assert_eq!(cgroup.pids().unwrap(), [99]);
}

#[test]
fn v1_limits_go_to_each_controllers_hierarchy() {
    let f = Fixture::v1(V1_MOUNTS, true);
    f.create(Some("/pod/web"), Some(&everything())).unwrap();
    assert_eq!(
        f.read("memory/pod/web/memory.limit_in_bytes"),
        (100 * MIB).to_string()
    );
    assert_eq!(
        f.read("memory/pod/web/memory.soft_limit_in_bytes"),
        (50 * MIB).to_string()
    );
    assert_eq!(f.read("cpu/pod/web/cpu.shares"), "1024");
    assert_eq!(f.read("cpu/pod/web/cpu.cfs_period_us"), "100000");
    assert_eq!(f.read("cpu/pod/web/cpu.cfs_quota_us"), "50000");
    assert_eq!(
        f.read("cpuset/pod/cpuset.cpus"),
        "0-1",
        "created parents are initialised too"
    );
    assert_eq!(f.read("cpuset/pod/web/cpuset.cpus"), "1");
    assert_eq!(f.read("cpuset/pod/web/cpuset.mems"), "0");
    assert_eq!(f.read("pids/pod/web/pids.max"), "64");
    assert!(!f.path("cpuacct/pod/web/cpu.shares").exists());
    assert_eq!(
        fs::read_dir(f.path("unified/pod/web")).unwrap().count(),
        0,
        "no limits in unified"
    );
}

#[test]
fn v1_swap_needs_memsw_unless_it_asks_for_nothing() {
    let f = Fixture::v1(&[("memory", "memory")], false);
    f.create(Some("/same"), Some(&memory(100 * MIB, 0, Some(100 * MIB))))
        .unwrap();
    f.create(Some("/unlimited"), Some(&memory(100 * MIB, 0, Some(-1))))
        .unwrap();
    assert!(!f.path("memory/same/memory.memsw.limit_in_bytes").exists());

    let err = f
        .create(Some("/more"), Some(&memory(100 * MIB, 0, Some(300 * MIB))))
        .unwrap_err();
    assert!(matches!(err, CgroupError::SwapUnsupported { .. }), "{err}");
    assert!(
        err.to_string().contains("memory.memsw.limit_in_bytes"),
        "{err}"
    );
    assert!(!f.path("memory/more").exists());
}

#[test]
fn v1_swap_is_written_when_the_kernel_accounts_it() {
    let cases = [
        (100 * MIB, Some(300 * MIB), "104857600", "314572800"),
        (-1, None, "-1", "-1"),
    ];
    for (limit, swap, expected_limit, expected_swap) in cases {
        let f = Fixture::v1(&[("memory", "memory")], false);
        f.mkdir("memory/web");
        f.write("memory/web/memory.limit_in_bytes", "9223372036854771712\n");
        f.write(
            "memory/web/memory.memsw.limit_in_bytes",
            "9223372036854771712\n",
        );
        f.create(Some("/web"), Some(&memory(limit, 0, swap)))
            .unwrap();
        assert_eq!(f.read("memory/web/memory.limit_in_bytes"), expected_limit);
        assert_eq!(
            f.read("memory/web/memory.memsw.limit_in_bytes"),
            expected_swap
        );
    }
}

#[test]
fn v1_cpuset_without_cpus_anywhere_is_an_error() {
    let f = Fixture::v1(&[("cpuset", "cpuset")], false);
    f.write("cpuset/cpuset.cpus", "\n");
    let err = f.create(Some("/a/b"), None).unwrap_err();
    assert!(matches!(err, CgroupError::CpusetInit { .. }), "{err}");
    assert!(err.to_string().contains("a/cpuset.cpus"), "{err}");
    assert!(!f.path("cpuset/a").exists());
}

#[test]
fn v1_missing_controller_fails_before_creating_anything() {
    let f = Fixture::v1(&[("memory", "memory")], false);
    let pids = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(5).build().unwrap())
        .build()
        .unwrap();
    let err = f.create(None, Some(&pids)).unwrap_err();
    assert!(
        matches!(&err, CgroupError::ControllerUnavailable { controller, .. } if controller == "pids")
    );
    assert!(!f.path("memory/process_api/x/web").exists());
}

#[test]
fn invalid_resources_fail_before_creating_anything() {
    let f = Fixture::v1(&[("memory", "memory")], false);
    let err = f
        .create(None, Some(&memory(100 * MIB, 0, Some(MIB))))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid linux.resources.memory: swap (memory+swap) 1048576 is below the memory limit 104857600"
    );
    assert!(!f.path("memory/process_api/x/web").exists());
}

#[test]
fn remove_takes_only_what_create_made() {
    let f = Fixture::v1(&[("memory", "memory"), ("pids", "pids")], false);
    f.mkdir("pids/pod");
    let cgroup = f.create(Some("/pod/c1"), None).unwrap();
    assert_eq!(
        cgroup.placements()[0].created,
        [f.path("memory/pod"), f.path("memory/pod/c1")]
    );
    assert_eq!(cgroup.placements()[1].created, [f.path("pids/pod/c1")]);

    cgroup.remove().unwrap();
    assert!(!f.path("memory/pod").exists(), "made by create, so removed");
    assert!(f.path("pids/pod").exists(), "existed before, so kept");
    assert!(!f.path("pids/pod/c1").exists());
    cgroup.remove().unwrap();

    f.mkdir("memory/joined");
    let joined = f.create(Some("/joined"), None).unwrap();
    joined.remove().unwrap();
    assert!(
        f.path("memory/joined").exists(),
        "a joined cgroup is not ours to remove"
    );
}

#[test]
fn a_relative_path_needs_the_callers_cgroup_for_every_hierarchy() {
    let f = Fixture::v1(&[("memory", "memory")], false);
    fs::write(&f.host.own_cgroup, "1:pids:/\n").unwrap();
    let err = f.create(None, None).unwrap_err();
    assert!(matches!(err, CgroupError::OwnCgroupUnknown { .. }), "{err}");
    f.create(Some("/absolute"), None).unwrap();
}

#[test]
fn the_state_survives_a_json_round_trip() {
    let f = Fixture::v1(V1_MOUNTS, true);
    let cgroup = f.create(Some("/pod/web"), None).unwrap();
    let json = serde_json::to_string(&cgroup).unwrap();
    assert!(json.contains("\"mode\":\"hybrid\""), "{json}");
    let back: Cgroup = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cgroup);
}

/// A v2 container directory `c1` made beforehand with the interface files a kernel would
/// show (a fake tree has none), for the resources beyond cpu, memory and pids.
fn v2_with_files(files: &[&str]) -> Fixture {
    let f = Fixture::v2(V2_CONTROLLERS);
    f.mkdir("c1");
    f.write("c1/cgroup.controllers", V2_CONTROLLERS);
    for file in files {
        f.write(&format!("c1/{file}"), "");
    }
    f
}

fn io_and_hugepages() -> LinuxResources {
    let throttle = |major: i64, rate: u64| {
        oci_spec::runtime::LinuxThrottleDeviceBuilder::default()
            .major(major)
            .minor(0)
            .rate(rate)
            .build()
            .unwrap()
    };
    let block_io = oci_spec::runtime::LinuxBlockIoBuilder::default()
        .weight(500_u16)
        .leaf_weight(300_u16)
        .throttle_read_bps_device(vec![throttle(8, 1000)])
        .throttle_write_iops_device(vec![throttle(8, 30)])
        .build()
        .unwrap();
    let page = oci_spec::runtime::LinuxHugepageLimitBuilder::default()
        .page_size("2MB")
        .limit(4 * MIB)
        .build()
        .unwrap();
    let rdma = oci_spec::runtime::LinuxRdmaBuilder::default()
        .hca_handles(3_u32)
        .hca_objects(1000_u32)
        .build()
        .unwrap();
    LinuxResourcesBuilder::default()
        .block_io(block_io)
        .hugepage_limits(vec![page])
        .rdma(std::collections::HashMap::from([(
            "mlx4_0".to_string(),
            rdma,
        )]))
        .build()
        .unwrap()
}

#[test]
fn v2_block_io_hugepages_and_rdma_are_written_to_their_files() {
    let f = v2_with_files(&["io.weight", "io.max", "hugetlb.2MB.max", "rdma.max"]);
    f.create(Some("/c1"), Some(&io_and_hugepages())).unwrap();
    assert_eq!(f.read("c1/io.weight"), "4950", "500 converted as runc does");
    // A fake file keeps the last write; the kernel takes one device line per write.
    assert_eq!(f.read("c1/io.max"), "8:0 wiops=30");
    assert_eq!(f.read("c1/hugetlb.2MB.max"), (4 * MIB).to_string());
    assert_eq!(f.read("c1/rdma.max"), "mlx4_0 hca_handle=3 hca_object=1000");
    assert!(f
        .read("cgroup.subtree_control")
        .contains("+io +memory +hugetlb +pids +rdma"));
}

#[test]
fn v2_uses_bfq_weights_when_the_kernel_has_them() {
    let f = v2_with_files(&[
        "io.bfq.weight",
        "io.weight",
        "io.max",
        "hugetlb.2MB.max",
        "rdma.max",
    ]);
    f.create(Some("/c1"), Some(&io_and_hugepages())).unwrap();
    assert_eq!(f.read("c1/io.bfq.weight"), "500");
    assert_eq!(
        f.read("c1/io.weight"),
        "",
        "io.weight is left alone with BFQ"
    );
}

#[test]
fn v2_a_missing_huge_page_size_or_controller_is_an_error() {
    let f = v2_with_files(&["io.weight", "io.max", "rdma.max"]);
    let err = f
        .create(Some("/c1"), Some(&io_and_hugepages()))
        .unwrap_err();
    assert!(err.to_string().contains("no 2MB huge pages"), "{err}");
    let f = Fixture::v2("cpu memory pids");
    let err = f
        .create(Some("/c2"), Some(&io_and_hugepages()))
        .unwrap_err();
    assert!(
        matches!(err, CgroupError::ControllerUnavailable { .. }),
        "{err}"
    );
    assert!(!f.path("c2").exists());
}

#[test]
fn v2_unified_entries_are_written_last_and_checked() {
    let f = v2_with_files(&["memory.max", "memory.high", "cgroup.max.depth"]);
    let unified = std::collections::HashMap::from([
        ("memory.max".to_string(), "123".to_string()),
        ("memory.high".to_string(), "100".to_string()),
        ("cgroup.max.depth".to_string(), "2".to_string()),
    ]);
    let mut resources = memory(50 * MIB, 0, None);
    resources.set_unified(Some(unified));
    f.create(Some("/c1"), Some(&resources)).unwrap();
    assert_eq!(
        f.read("c1/memory.max"),
        "123",
        "unified wins over memory.limit"
    );
    assert_eq!(f.read("c1/memory.high"), "100");
    assert_eq!(f.read("c1/cgroup.max.depth"), "2");

    let f = v2_with_files(&["memory.max"]);
    f.write("c1/cgroup.controllers", "memory");
    for (key, expected) in [
        ("../memory.max", "path separators"),
        ("memory", "<controller>.<setting>"),
        ("pids.max", "pids controller is not enabled"),
    ] {
        let mut resources = LinuxResources::default();
        let entry = std::collections::HashMap::from([(key.to_string(), "1".to_string())]);
        resources.set_unified(Some(entry));
        let err = f.create(Some("/c1"), Some(&resources)).unwrap_err();
        assert!(err.to_string().contains(expected), "{key}: {err}");
    }
}

#[test]
fn v2_network_and_kernel_tcp_are_reported_not_applied() {
    let network = oci_spec::runtime::LinuxNetworkBuilder::default()
        .class_id(7_u32)
        .build()
        .unwrap();
    let memory = LinuxMemoryBuilder::default()
        .kernel_tcp(MIB)
        .build()
        .unwrap();
    let resources = LinuxResourcesBuilder::default()
        .network(network)
        .memory(memory)
        .build()
        .unwrap();
    let limits = super::limits::Limits::new(Some(&resources), Version::V2).unwrap();
    assert_eq!(limits.ignored, ["memory.kernelTCP", "network"]);
    let f = Fixture::v2(V2_CONTROLLERS);
    f.create(Some("/c1"), Some(&resources)).unwrap();
}

#[test]
fn v2_device_rules_are_compiled_into_a_filter_and_bad_ones_refused() {
    // A fake tree is no cgroup: the filter is compiled but not attached (the real attach is
    // in host_tests).
    let f = Fixture::v2(V2_CONTROLLERS);
    let rule = |major: i64| {
        oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(oci_spec::runtime::LinuxDeviceType::C)
            .major(major)
            .access("rwm")
            .build()
            .unwrap()
    };
    let resources = LinuxResourcesBuilder::default()
        .devices(vec![rule(10)])
        .build()
        .unwrap();
    f.create(Some("/c1"), Some(&resources)).unwrap();
    let resources = LinuxResourcesBuilder::default()
        .devices(vec![rule(1 << 40)])
        .build()
        .unwrap();
    let err = f.create(Some("/c2"), Some(&resources)).unwrap_err();
    assert!(matches!(err, CgroupError::DeviceFilter(_)), "{err}");
    assert!(!f.path("c2").exists(), "undone");
}

#[test]
fn v1_network_rdma_and_hugetlb_need_their_controllers() {
    let network = oci_spec::runtime::LinuxNetworkBuilder::default()
        .class_id(7_u32)
        .priorities(vec![
            oci_spec::runtime::LinuxInterfacePriorityBuilder::default()
                .name("eth0")
                .priority(5_u32)
                .build()
                .unwrap(),
        ])
        .build()
        .unwrap();
    let resources = LinuxResourcesBuilder::default()
        .network(network)
        .build()
        .unwrap();
    let f = Fixture::v1(&[("net_cls", "net_cls"), ("net_prio", "net_prio")], false);
    f.mkdir("net_cls/c1");
    f.mkdir("net_prio/c1");
    f.create(Some("/c1"), Some(&resources)).unwrap();
    assert_eq!(f.read("net_cls/c1/net_cls.classid"), "7");
    assert_eq!(f.read("net_prio/c1/net_prio.ifpriomap"), "eth0 5");

    let f = Fixture::v1(V1_MOUNTS, true);
    let err = f.create(Some("/c1"), Some(&resources)).unwrap_err();
    assert!(err.to_string().contains("net_cls controller"), "{err}");
    let err = f
        .create(Some("/c1"), Some(&io_and_hugepages()))
        .unwrap_err();
    assert!(err.to_string().contains("blkio controller"), "{err}");
    // Legacy (no unified hierarchy): hugetlb has nowhere to go.
    let f = Fixture::v1(V1_MOUNTS, false);
    let page = oci_spec::runtime::LinuxHugepageLimitBuilder::default()
        .page_size("2MB")
        .limit(MIB)
        .build()
        .unwrap();
    let resources = LinuxResourcesBuilder::default()
        .hugepage_limits(vec![page])
        .build()
        .unwrap();
    let err = f.create(Some("/c1"), Some(&resources)).unwrap_err();
    assert!(err.to_string().contains("hugetlb controller"), "{err}");
}

#[test]
fn hybrid_hugetlb_goes_to_the_unified_directory_and_unified_is_refused() {
    let f = Fixture::v1(V1_MOUNTS, true);
    f.write("unified/cgroup.controllers", "hugetlb");
    f.write("unified/cgroup.subtree_control", "");
    f.mkdir("unified/c1");
    f.write("unified/c1/hugetlb.2MB.max", "max");
    let page = oci_spec::runtime::LinuxHugepageLimitBuilder::default()
        .page_size("2MB")
        .limit(MIB)
        .build()
        .unwrap();
    let mut resources = LinuxResourcesBuilder::default()
        .hugepage_limits(vec![page])
        .build()
        .unwrap();
    f.create(Some("/c1"), Some(&resources)).unwrap();
    assert_eq!(f.read("unified/c1/hugetlb.2MB.max"), MIB.to_string());
    assert_eq!(f.read("unified/cgroup.subtree_control"), "+hugetlb");

    resources.set_unified(Some(std::collections::HashMap::from([(
        "hugetlb.2MB.max".to_string(),
        "1".to_string(),
    )])));
    let err = f.create(Some("/c2"), Some(&resources)).unwrap_err();
    assert!(err.to_string().contains("no unified resources"), "{err}");
}
