//! Tests of the sandbox record and the container spec, on a sandbox whose pod cgroup lives in
//! a fake cgroup tree and whose namespaces are never made (no root needed).

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use tempfile::TempDir;

use std::cell::RefCell;

use super::cgroup::tests::fake_host;
use super::namespaces::Pinner;
use super::*;

const UID: &str = "0d6e4c1a-7f41-4b7e-9a52-3c1f7e2d9b10";

/// Records what it is asked to do and stands in empty files for the pinned namespaces.
#[derive(Default)]
struct FakePinner {
    calls: RefCell<Vec<String>>,
    fail: bool,
}

impl Pinner for FakePinner {
    fn create(&self, pins: &Pins, hostname: &str) -> Result<(), SandboxError> {
        let net = pins.net.file_name().unwrap().to_string_lossy();
        self.calls
            .borrow_mut()
            .push(format!("create {net} {hostname}"));
        if self.fail {
            return Err(SandboxError::Namespace {
                op: "unshare",
                path: pins.net.clone(),
                errno: nix::errno::Errno::EPERM,
            });
        }
        for (_, pin) in pins.each() {
            fs::create_dir_all(pin.parent().unwrap()).unwrap();
            fs::write(pin, "").unwrap();
        }
        Ok(())
    }

    fn unpin(&self, pins: &Pins) -> Result<(), SandboxError> {
        self.calls.borrow_mut().push("unpin".into());
        for (_, pin) in pins.each() {
            let _ = fs::remove_file(pin);
        }
        Ok(())
    }
}

fn paths(tmp: &TempDir) -> Paths {
    let paths = Paths {
        netns_dir: tmp.path().join("netns"),
        state_dir: tmp.path().join("sandboxes"),
        cgroup: fake_host(tmp.path(), &[]),
        resolv_conf: tmp.path().join("resolv.conf"),
        hosts: tmp.path().join("hosts"),
        cgroup_root: PathBuf::from("/"),
    };
    fs::write(&paths.resolv_conf, "nameserver 192.0.2.53\n").unwrap();
    paths
}

fn config() -> SandboxConfig {
    SandboxConfig {
        name: "web".into(),
        namespace: "default".into(),
        uid: UID.into(),
        hostname: "web-host".into(),
        qos: Qos::Burstable,
        ..SandboxConfig::default()
    }
}

/// A sandbox made by [`Sandbox::create`], its namespaces faked, its cgroup in a fake tree.
fn sandbox(tmp: &TempDir) -> (Sandbox, Paths) {
    let paths = paths(tmp);
    let sandbox = Sandbox::create_with(&config(), &paths, &FakePinner::default()).unwrap();
    (sandbox, paths)
}

#[test]
fn create_writes_the_pods_files_and_record_and_makes_its_cgroup() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = paths(&tmp);
    let pinner = FakePinner::default();
    let sandbox = Sandbox::create_with(&config(), &paths, &pinner).unwrap();
    let name = format!("default_web_{UID}");
    assert_eq!(*pinner.calls.borrow(), [format!("create {name} web-host")]);
    assert_eq!(sandbox.pins().net, paths.netns_dir.join(&name));
    assert_eq!(sandbox.dir(), paths.state_dir.join(&name));
    let read = |file: &str| fs::read_to_string(sandbox.dir().join(file)).unwrap();
    assert_eq!(read("hostname"), "web-host\n");
    assert_eq!(read("resolv.conf"), "nameserver 192.0.2.53\n");
    assert!(read("hosts").contains("localhost"));
    assert!(paths
        .cgroup
        .root
        .join(format!("kubepods/burstable/pod{UID}"))
        .is_dir());
    assert_eq!(Sandbox::load(&name, &paths).unwrap(), sandbox);
}

#[test]
fn when_the_namespaces_cannot_be_made_nothing_is_left() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = paths(&tmp);
    let pinner = FakePinner {
        fail: true,
        ..FakePinner::default()
    };
    let err = Sandbox::create_with(&config(), &paths, &pinner).unwrap_err();
    assert!(matches!(err, SandboxError::Namespace { .. }), "{err}");
    assert_eq!(fs::read_dir(&paths.state_dir).unwrap().count(), 0);
    assert!(!paths.cgroup.root.join("kubepods").exists());
}

#[test]
fn when_the_cgroup_cannot_be_made_the_namespaces_are_unpinned_and_nothing_is_left() {
    let tmp = tempfile::tempdir().unwrap();
    let mut paths = paths(&tmp);
    paths.cgroup.mountinfo = tmp.path().join("no-mountinfo");
    let pinner = FakePinner::default();
    let err = Sandbox::create_with(&config(), &paths, &pinner).unwrap_err();
    assert!(
        err.to_string().starts_with("cgroup /kubepods/burstable"),
        "{err}"
    );
    assert_eq!(pinner.calls.borrow().last().unwrap(), "unpin");
    assert_eq!(fs::read_dir(&paths.state_dir).unwrap().count(), 0);
    assert_eq!(fs::read_dir(&paths.netns_dir).unwrap().count(), 0);
}

fn container() -> ContainerConfig {
    ContainerConfig {
        name: "app".into(),
        rootfs: PathBuf::from("/var/lib/peapod/snapshots/abc/rootfs"),
        args: vec!["httpd".into(), "-f".into()],
        env: vec![("GREETING".into(), "a=b".into())],
        user: User {
            uid: 1000,
            gid: 1000,
            additional_gids: vec![100],
        },
        mounts: vec![Mount {
            source: PathBuf::from("/srv/data"),
            destination: PathBuf::from("/data"),
            readonly: true,
            ..Mount::default()
        }],
        ..ContainerConfig::default()
    }
}

#[test]
fn the_sandbox_name_is_the_pods_log_directory_name() {
    let tmp = tempfile::tempdir().unwrap();
    let (sandbox, _) = sandbox(&tmp);
    assert_eq!(sandbox.name(), format!("default_web_{UID}"));
}

#[test]
fn containers_join_the_sandbox_namespaces_by_path_and_get_their_own_mount_and_pid() {
    let tmp = tempfile::tempdir().unwrap();
    let (sandbox, _) = sandbox(&tmp);
    let spec = sandbox.container_spec("c1", &container()).unwrap();
    let linux = spec.linux().as_ref().unwrap();
    let namespaces = linux.namespaces().as_ref().unwrap();
    let path_of = |kind| {
        namespaces
            .iter()
            .find(|ns| ns.typ() == kind)
            .unwrap_or_else(|| panic!("no {kind:?} namespace"))
            .path()
            .clone()
    };
    assert_eq!(
        path_of(LinuxNamespaceType::Network),
        Some(sandbox.pins().net.clone())
    );
    assert_eq!(
        path_of(LinuxNamespaceType::Ipc),
        Some(sandbox.pins().ipc.clone())
    );
    assert_eq!(
        path_of(LinuxNamespaceType::Uts),
        Some(sandbox.pins().uts.clone())
    );
    assert_eq!(path_of(LinuxNamespaceType::Pid), None);
    assert_eq!(path_of(LinuxNamespaceType::Mount), None);
    assert!(!namespaces
        .iter()
        .any(|ns| ns.typ() == LinuxNamespaceType::User));

    assert_eq!(
        linux.cgroups_path().as_deref(),
        Some(Path::new(&format!("/kubepods/burstable/pod{UID}/c1")))
    );
    assert_eq!(spec.hostname().as_deref(), Some("web-host"));
    let annotations = spec.annotations().as_ref().unwrap();
    let annotation = |key: &str| annotations.get(key).map(String::as_str);
    assert_eq!(annotation(SANDBOX_ANNOTATION), Some(sandbox.name()));
    assert_eq!(annotation(POD_UID_ANNOTATION), Some(UID));
    assert_eq!(
        annotation(POD_NAME_ANNOTATION),
        Some(sandbox.config().name.as_str())
    );
    assert_eq!(
        annotation(POD_NAMESPACE_ANNOTATION),
        Some(sandbox.config().namespace.as_str())
    );
    assert_eq!(
        annotation(CONTAINER_NAME_ANNOTATION),
        Some(container().name.as_str())
    );
    assert!(linux
        .masked_paths()
        .as_ref()
        .unwrap()
        .contains(&"/proc/kcore".to_string()));
}

#[test]
fn containers_get_the_pods_etc_files_the_default_mounts_and_their_volumes() {
    let tmp = tempfile::tempdir().unwrap();
    let (sandbox, _) = sandbox(&tmp);
    let spec = sandbox.container_spec("c1", &container()).unwrap();
    let mounts = spec.mounts().as_ref().unwrap();
    let at = |destination: &str| {
        mounts
            .iter()
            .find(|m| m.destination() == Path::new(destination))
            .unwrap_or_else(|| panic!("no mount at {destination}"))
    };
    for (file, destination) in [
        ("hosts", "/etc/hosts"),
        ("hostname", "/etc/hostname"),
        ("resolv.conf", "/etc/resolv.conf"),
    ] {
        let mount = at(destination);
        assert_eq!(
            mount.source().as_deref(),
            Some(sandbox.dir().join(file).as_path())
        );
        assert!(mount
            .options()
            .as_ref()
            .unwrap()
            .contains(&"rbind".to_string()));
    }
    for destination in [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/sys",
        "/sys/fs/cgroup",
    ] {
        at(destination);
    }
    let data = at("/data");
    assert_eq!(data.source().as_deref(), Some(Path::new("/srv/data")));
    assert!(data.options().as_ref().unwrap().contains(&"ro".to_string()));
}

#[test]
fn mount_propagation_maps_to_options_and_a_shared_root() {
    let tmp = tempfile::tempdir().unwrap();
    let (sandbox, _) = sandbox(&tmp);
    let mut config = container();
    let options = |spec: &Spec, destination: &str| -> Vec<String> {
        let mounts = spec.mounts().as_ref().unwrap();
        let m = mounts
            .iter()
            .find(|m| m.destination() == Path::new(destination))
            .unwrap();
        m.options().clone().unwrap()
    };
    for (propagation, option, root_shared) in [
        (super::Propagation::Private, "rprivate", false),
        (super::Propagation::Slave, "rslave", false),
        (super::Propagation::Shared, "rshared", true),
    ] {
        config.mounts[0].propagation = propagation;
        let spec = sandbox.container_spec("c1", &config).unwrap();
        assert!(options(&spec, "/data").contains(&option.to_string()));
        let root = spec.linux().as_ref().unwrap().rootfs_propagation().clone();
        assert_eq!(root.as_deref() == Some("rshared"), root_shared, "{option}");
    }
}

#[test]
fn the_process_is_the_containers_with_pod_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let (sandbox, _) = sandbox(&tmp);
    let spec: Spec = sandbox.container_spec("c1", &container()).unwrap();
    let process = spec.process().as_ref().unwrap();
    assert_eq!(process.args().as_ref().unwrap(), &["httpd", "-f"]);
    let env = process.env().as_ref().unwrap();
    assert_eq!(env[0], "GREETING=a=b");
    assert!(env.iter().any(|e| e.starts_with("PATH=/usr/local/sbin:")));
    assert!(env.contains(&"HOSTNAME=web-host".to_string()));
    assert_eq!(process.cwd(), Path::new("/"));
    assert_eq!(process.user().uid(), 1000);
    assert_eq!(
        process.user().additional_gids().as_deref(),
        Some(&[100][..])
    );
    assert!(!process.terminal().unwrap_or(false));
    assert_eq!(
        spec.root().as_ref().unwrap().path(),
        Path::new("/var/lib/peapod/snapshots/abc/rootfs")
    );
}

#[test]
fn resources_join_the_default_device_rules_and_the_oom_score_goes_to_the_process() {
    let tmp = tempfile::tempdir().unwrap();
    let (sandbox, _) = sandbox(&tmp);
    let plain = sandbox.container_spec("c1", &container()).unwrap();
    let plain_resources = plain
        .linux()
        .as_ref()
        .unwrap()
        .resources()
        .as_ref()
        .unwrap();
    assert!(plain_resources.cpu().is_none() && plain_resources.memory().is_none());
    assert_eq!(plain.process().as_ref().unwrap().oom_score_adj(), None);

    let config = ContainerConfig {
        resources: Resources {
            cpu_shares: 256,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            memory_limit: 64 << 20,
            pids_limit: 0,
        },
        oom_score_adj: Some(-997),
        ..container()
    };
    let spec = sandbox.container_spec("c1", &config).unwrap();
    let resources = spec.linux().as_ref().unwrap().resources().as_ref().unwrap();
    let cpu = resources.cpu().as_ref().unwrap();
    assert_eq!(
        (cpu.shares(), cpu.quota(), cpu.period()),
        (Some(256), Some(50_000), Some(100_000))
    );
    assert_eq!(resources.memory().as_ref().unwrap().limit(), Some(64 << 20));
    assert!(resources.pids().is_none());
    assert_eq!(
        resources.devices().as_ref().map(Vec::len),
        plain_resources.devices().as_ref().map(Vec::len),
        "the default device rules stay"
    );
    assert_eq!(spec.process().as_ref().unwrap().oom_score_adj(), Some(-997));
}

#[test]
fn on_cgroup_v2_a_containers_resources_land_in_weight_max_and_memory_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (sandbox, paths) = sandbox(&tmp);
    let config = ContainerConfig {
        resources: Resources {
            cpu_shares: 256,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            memory_limit: 64 << 20,
            pids_limit: 32,
        },
        ..container()
    };
    let spec = sandbox.container_spec("c1", &config).unwrap();
    let linux = spec.linux().as_ref().unwrap();
    // The default spec's device rules become a v2 device filter (compiled only: a fake tree).
    crate::cgroup::Cgroup::create_on(
        &paths.cgroup,
        linux.cgroups_path().as_deref(),
        "c1",
        linux.resources().as_ref(),
    )
    .unwrap();
    let dir = paths
        .cgroup
        .root
        .join("kubepods/burstable")
        .join(format!("pod{UID}/c1"));
    let read = |file: &str| fs::read_to_string(dir.join(file)).unwrap();
    assert_eq!(read("cpu.weight"), "10");
    assert_eq!(read("cpu.max"), "50000 100000");
    assert_eq!(read("memory.max"), (64 << 20).to_string());
    assert_eq!(read("pids.max"), "32");
}

#[test]
fn bad_container_configs_name_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let (sandbox, _) = sandbox(&tmp);
    let mut relative = container();
    relative.rootfs = PathBuf::from("rootfs");
    let mut bad_env = container();
    bad_env.env.push(("A=B".into(), "x".into()));
    let mut no_args = container();
    no_args.args.clear();
    for (id, config, field) in [
        ("c1", relative, "rootfs"),
        ("c1", bad_env, "env"),
        ("c1", no_args, "args"),
        ("../c1", container(), "container id"),
    ] {
        let err = sandbox.container_spec(id, &config).unwrap_err();
        assert!(err.to_string().starts_with(field), "{field}: {err}");
    }
}

#[test]
fn bundles_are_written_under_the_sandbox_and_parse_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (sandbox, _) = sandbox(&tmp);
    let mut config = container();
    config.rootfs = tmp.path().join("rootfs");
    fs::create_dir(&config.rootfs).unwrap();
    let bundle = sandbox.write_bundle("c1", &config).unwrap();
    assert_eq!(bundle, sandbox.dir().join("containers/c1"));
    let spec = crate::bundle::Bundle::load(&bundle);
    assert!(spec.is_ok(), "{spec:?}");
    sandbox.remove_bundle("c1").unwrap();
    assert!(!bundle.exists());
    sandbox.remove_bundle("c1").unwrap();
}

#[test]
fn records_load_and_list_after_a_restart_and_set_ip_persists() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut sandbox, paths) = sandbox(&tmp);
    sandbox.set_ip(Some("10.88.0.4".parse().unwrap())).unwrap();
    let loaded = Sandbox::load(sandbox.name(), &paths).unwrap();
    assert_eq!(loaded, sandbox);
    assert_eq!(loaded.ip(), Some("10.88.0.4".parse().unwrap()));

    // A directory without a record is a create or remove under way, not a sandbox.
    fs::create_dir(paths.state_dir.join("half-made")).unwrap();
    assert_eq!(Sandbox::list(&paths).unwrap(), [sandbox.clone()]);

    fs::write(sandbox.dir().join("sandbox.json"), "{").unwrap();
    let err = Sandbox::list(&paths).unwrap_err();
    assert!(err.to_string().contains("sandbox.json"), "{err}");
}

#[test]
fn loading_a_missing_sandbox_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, paths) = sandbox(&tmp);
    let err = Sandbox::load("default_gone_1", &paths).unwrap_err();
    assert!(matches!(err, SandboxError::NotFound { .. }), "{err}");
    let err = Sandbox::load("../sandboxes", &paths).unwrap_err();
    assert!(err.to_string().starts_with("sandbox name"), "{err}");
}

#[test]
fn remove_takes_what_is_there_and_is_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let (sandbox, paths) = sandbox(&tmp);
    let pod_dir = paths
        .cgroup
        .root
        .join(format!("kubepods/burstable/pod{UID}"));
    assert!(pod_dir.is_dir());
    sandbox.remove_with(&FakePinner::default()).unwrap();
    assert!(!pod_dir.exists());
    assert!(!sandbox.dir().exists());
    sandbox.remove_with(&FakePinner::default()).unwrap();
    assert!(Sandbox::list(&paths).unwrap().is_empty());
}

#[test]
fn bad_sandbox_configs_name_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let (sandbox, paths) = sandbox(&tmp);
    let mut config = sandbox.config().clone();
    config.namespace = "a_b".into();
    let err = Sandbox::create(&config, &paths).unwrap_err();
    assert!(err.to_string().starts_with("namespace \"a_b\""), "{err}");
    config.namespace = "default".into();
    config.hostname = "h".repeat(65);
    let err = Sandbox::create(&config, &paths).unwrap_err();
    assert!(err.to_string().starts_with("hostname"), "{err}");
    config.hostname = "web".into();
    let err = Sandbox::create(&config, &paths).unwrap_err();
    assert!(matches!(err, SandboxError::Exists { .. }), "{err}");
}

#[test]
fn remove_refuses_while_processes_run_in_the_pod_cgroup() {
    let tmp = tempfile::tempdir().unwrap();
    let (sandbox, _) = sandbox(&tmp);
    // A fake tree has no interface files: the pod's (empty) and a container's are written.
    let pod = &sandbox.cgroup().placements()[0].path;
    fs::write(pod.join("cgroup.procs"), "").unwrap();
    fs::create_dir(pod.join("c1")).unwrap();
    fs::write(pod.join("c1/cgroup.procs"), "4242\n").unwrap();
    let err = sandbox.remove_with(&FakePinner::default()).unwrap_err();
    assert!(
        matches!(&err, SandboxError::Busy { pids, .. } if pids == &[4242]),
        "{err:?}"
    );
    assert!(
        sandbox.dir().join("sandbox.json").exists(),
        "nothing was touched"
    );
}

/// The namespace entries of container `c1`'s spec: type and path.
fn namespace_entries(sandbox: &Sandbox) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
    let spec = sandbox.container_spec("c1", &container()).unwrap();
    let linux = spec.linux().as_ref().unwrap();
    linux
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .map(|ns| (ns.typ(), ns.path().clone()))
        .collect()
}

#[test]
fn host_network_and_ipc_pods_join_the_nodes_namespaces_and_pin_nothing_for_them() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = paths(&tmp);
    let node_netns = tmp.path().join("node-netns");
    fs::write(&node_netns, "").unwrap();
    let mut config = config();
    config.namespaces = NamespaceOptions {
        host_network: true,
        node_netns: Some(node_netns.clone()),
        host_ipc: true,
        pid: PidMode::Node,
    };
    let pinner = FakePinner::default();
    let sandbox = Sandbox::create_with(&config, &paths, &pinner).unwrap();
    assert_eq!(
        sandbox.pins().net,
        node_netns,
        "CNI's and probes' netns is the node's"
    );
    assert!(!paths.netns_dir.join(sandbox.name()).exists());
    let entries = namespace_entries(&sandbox);
    use LinuxNamespaceType::*;
    assert_eq!(
        entries,
        [
            (Mount, None),
            (Cgroup, None),
            (Network, Some(node_netns.clone()))
        ],
        "no pid, ipc or uts entry: the runtime stays in the node's"
    );
    let spec = sandbox.container_spec("c1", &container()).unwrap();
    assert_eq!(
        spec.hostname(),
        &None,
        "the node's UTS namespace keeps its name"
    );

    sandbox.remove_with(&pinner).unwrap();
    assert!(
        node_netns.exists(),
        "the node's netns is not the sandbox's to remove"
    );

    // Without a CNI netns the node's network namespace is the runtime's own: no entry.
    config.namespaces.node_netns = None;
    let sandbox = Sandbox::create_with(&config, &paths, &pinner).unwrap();
    assert!(!namespace_entries(&sandbox)
        .iter()
        .any(|(kind, _)| *kind == Network));
}

#[test]
fn a_shared_pid_namespace_without_its_holder_refuses_containers() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut sandbox, _) = sandbox(&tmp);
    sandbox.config.namespaces.pid = PidMode::Pod;
    let err = sandbox.container_spec("c1", &container()).unwrap_err();
    assert!(
        matches!(err, SandboxError::PidNamespaceGone { .. }),
        "{err}"
    );
    sandbox.pid_holder = Some(PidHolder {
        pid: std::process::id() as i32,
        start_time: 0,
    });
    assert!(
        sandbox.container_spec("c1", &container()).is_err(),
        "a pid whose start time differs is another process"
    );
}
