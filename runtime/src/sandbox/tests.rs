//! Tests of the sandbox record and the container spec, on a sandbox whose pod cgroup lives in
//! a fake cgroup tree and whose namespaces are never made (no root needed).

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use tempfile::TempDir;

use super::cgroup::tests::fake_host;
use super::*;

const UID: &str = "0d6e4c1a-7f41-4b7e-9a52-3c1f7e2d9b10";

/// A sandbox record as [`Sandbox::create`] would make it, minus the namespaces.
fn sandbox(tmp: &TempDir) -> (Sandbox, Paths) {
    let paths = Paths {
        netns_dir: tmp.path().join("netns"),
        state_dir: tmp.path().join("sandboxes"),
        cgroup: fake_host(tmp.path(), &[]),
        resolv_conf: tmp.path().join("resolv.conf"),
    };
    let config = SandboxConfig {
        name: "web".into(),
        namespace: "default".into(),
        uid: UID.into(),
        hostname: "web".into(),
        qos: Qos::Burstable,
    };
    let name = config.sandbox_name();
    let dir = paths.state_dir.join(&name);
    fs::create_dir_all(&dir).unwrap();
    files::write_all(&dir, "web", None, &paths.resolv_conf).unwrap();
    let sandbox = Sandbox {
        pins: Pins {
            net: paths.netns_dir.join(&name),
            ipc: dir.join("ipc"),
            uts: dir.join("uts"),
        },
        name,
        dir,
        cgroup_path: pod_path(config.qos, UID),
        cgroup: cgroup::create(&paths.cgroup, config.qos, UID).unwrap(),
        config,
        ip: None,
        created: "2026-01-01T00:00:00Z".into(),
    };
    sandbox.save().unwrap();
    (sandbox, paths)
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
    assert_eq!(spec.hostname().as_deref(), Some("web"));
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
fn the_process_is_the_containers_with_pod_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let (sandbox, _) = sandbox(&tmp);
    let spec: Spec = sandbox.container_spec("c1", &container()).unwrap();
    let process = spec.process().as_ref().unwrap();
    assert_eq!(process.args().as_ref().unwrap(), &["httpd", "-f"]);
    let env = process.env().as_ref().unwrap();
    assert_eq!(env[0], "GREETING=a=b");
    assert!(env.iter().any(|e| e.starts_with("PATH=/usr/local/sbin:")));
    assert!(env.contains(&"HOSTNAME=web".to_string()));
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
    sandbox.remove().unwrap();
    assert!(!pod_dir.exists());
    assert!(!sandbox.dir().exists());
    sandbox.remove().unwrap();
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
    let err = sandbox.remove().unwrap_err();
    assert!(
        matches!(&err, SandboxError::Busy { pids, .. } if pids == &[4242]),
        "{err:?}"
    );
    assert!(
        sandbox.dir().join("sandbox.json").exists(),
        "nothing was touched"
    );
}
