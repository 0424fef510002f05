//! Real rootfs tests: a busybox rootfs set up by `prepare`, `pivot` and `finalize` in forked
//! children with their own mount (and pid, net, cgroup, user) namespaces, checked from inside.
//!
//! They need root and `/bin/busybox`, and fail loudly without them.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxDeviceType, LinuxNamespaceType, Mount, Spec};

use super::cgroupfs::Layout;
use super::mountinfo::{self, MountInfo};
use super::testbed::{
    ensure, expect_mount, expect_node, expect_read_only, host_mounts, isolated, mount_at,
    spec_device, spec_mount, unshared, user_namespace_with_locked_mount, with_options, Fixture,
};
use super::{attach, finalize, pivot, prepare, Handle, RootfsError};

/// `Spec::default()` (runc spec's mounts, masked and read-only paths, read-only root) plus
/// binds, a read-only tmpfs, extra devices and a working directory to create.
/// `attach` then `prepare`, as the container's init does.
fn set_up(spec: &Spec, rootfs: &Path, cgroup_ns: bool) -> Result<Handle, RootfsError> {
    let root = attach(spec, rootfs)?;
    prepare(spec, &root, cgroup_ns)?;
    Ok(root)
}

fn busybox_spec(fixture: &Fixture) -> Spec {
    let data = fixture.host("hostdata");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("hello"), "hello from the host\n").unwrap();
    let file = fixture.host("hostfile");
    fs::write(&file, "a file bind\n").unwrap();
    // Resolved inside the rootfs: `/link/linked` is `/etc/linked` of the container.
    symlink("/etc", fixture.rootfs.join("link")).unwrap();

    let mut spec = Spec::default();
    let mut mounts = spec.mounts().clone().unwrap();
    mounts.extend([
        spec_mount(
            "/data",
            "bind",
            &data,
            &["rbind", "ro", "nosuid", "rshared"],
        ),
        spec_mount("/etc/hostfile", "none", &file, &["bind"]),
        spec_mount("/mnt/ro", "tmpfs", Path::new("tmpfs"), &["ro", "size=1m"]),
        spec_mount("/link/linked", "none", &data, &["bind", "ro"]),
    ]);
    spec.set_mounts(Some(mounts));
    let mut block = spec_device("/dev/peapod-loop", LinuxDeviceType::B, 7, 0);
    block.set_file_mode(Some(0o640));
    block.set_uid(Some(1000));
    block.set_gid(Some(6));
    let linux = spec.linux_mut().as_mut().unwrap();
    linux.set_devices(Some(vec![
        spec_device("/dev/fuse", LinuxDeviceType::C, 10, 229),
        spec_device("/dev/peapod-fifo", LinuxDeviceType::P, 0, 0),
        block,
    ]));
    linux.set_rootfs_propagation(Some("shared".into()));
    let process = spec.process_mut().as_mut().unwrap();
    process.set_cwd("/home/app".into());
    spec
}

/// What the container should see of its cgroups: `(directory, fstype, mount root)`.
fn expected_cgroups(fixture: &Fixture, cgroup_ns: bool) -> Vec<(String, String, PathBuf)> {
    let layout = Layout::discover(
        &host_mounts(),
        &fs::read_to_string("/proc/self/cgroup").unwrap(),
        fixture.dir.path(),
    );
    let root = |own: &Path| match cgroup_ns {
        true => PathBuf::from("/"),
        false => own.to_path_buf(),
    };
    let mut expected: Vec<_> = layout
        .v1
        .iter()
        .map(|h| (h.name.clone(), "cgroup".to_string(), root(&h.own)))
        .collect();
    if let Some(u) = layout.unified {
        let name = if expected.is_empty() {
            String::new()
        } else {
            u.name
        };
        expected.push((name, "cgroup2".to_string(), root(&u.own)));
    }
    expected
}

fn check_cgroups(
    mounts: &[MountInfo],
    expected: &[(String, String, PathBuf)],
) -> Result<(), String> {
    ensure!(!expected.is_empty(), "the host shows no cgroup hierarchy");
    for (name, fstype, root) in expected {
        let point = format!("/sys/fs/cgroup/{name}");
        let point = point.trim_end_matches('/');
        expect_mount(mounts, point, fstype, &["ro", "nosuid", "nodev", "noexec"])?;
        let m = mount_at(mounts, point)?;
        ensure!(
            &m.root == root,
            "{point} shows {} not {}",
            m.root.display(),
            root.display()
        );
        if name.contains(',') {
            for controller in name.split(',') {
                let link = fs::read_link(format!("/sys/fs/cgroup/{controller}"));
                ensure!(
                    link.is_ok_and(|l| l == Path::new(name)),
                    "no {controller} link"
                );
            }
        }
    }
    Ok(())
}

/// The checks made from inside the default-spec container.
fn check_default_container(
    expected_cgroups: &[(String, String, PathBuf)],
    kcore: bool,
) -> Result<(), String> {
    ensure!(
        std::process::id() == 1,
        "not pid 1 but {}",
        std::process::id()
    );
    let mounts = mountinfo::parse(&fs::read_to_string("/proc/self/mountinfo").unwrap());
    let root = mount_at(&mounts, "/")?;
    with_options(root, &["ro"])?;
    ensure!(
        root.optional.iter().any(|o| o.starts_with("shared:")),
        "rootfsPropagation shared not applied: {root:?}"
    );
    expect_mount(&mounts, "/proc", "proc", &["rw"])?;
    expect_mount(
        &mounts,
        "/dev",
        "tmpfs",
        &["nosuid", "mode=755", "size=65536k"],
    )?;
    let pts = ["nosuid", "noexec", "gid=5", "mode=620", "ptmxmode=666"];
    expect_mount(&mounts, "/dev/pts", "devpts", &pts)?;
    let shm = ["nosuid", "nodev", "noexec", "size=65536k"];
    expect_mount(&mounts, "/dev/shm", "tmpfs", &shm)?;
    // mode=1777 is tmpfs's default, which mountinfo does not show.
    let shm_mode = fs::metadata("/dev/shm").unwrap().mode() & 0o7777;
    ensure!(shm_mode == 0o1777, "/dev/shm mode {shm_mode:o}");
    expect_mount(
        &mounts,
        "/dev/mqueue",
        "mqueue",
        &["nosuid", "nodev", "noexec"],
    )?;
    expect_mount(
        &mounts,
        "/sys",
        "sysfs",
        &["ro", "nosuid", "nodev", "noexec"],
    )?;
    let cgroup_root = ["rw", "nosuid", "nodev", "noexec", "mode=755"];
    expect_mount(&mounts, "/sys/fs/cgroup", "tmpfs", &cgroup_root)?;
    check_cgroups(&mounts, expected_cgroups)?;

    // readonlyPaths and maskedPaths.
    with_options(mount_at(&mounts, "/proc/sys")?, &["ro"])?;
    // Kernels without some of the default paths (no sysrq here, say) just skip them.
    for path in ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sysrq-trigger"] {
        if Path::new(path).exists() {
            with_options(mount_at(&mounts, path)?, &["ro"])?;
        }
    }
    expect_read_only("/proc/sys/kernel/hostname")?;
    for masked in ["/proc/keys", "/proc/timer_list"] {
        let text = fs::read_to_string(masked).map_err(|e| format!("{masked}: {e}"))?;
        ensure!(text.is_empty(), "{masked} is not masked");
    }
    for masked in ["/proc/acpi", "/sys/firmware"] {
        expect_mount(&mounts, masked, "tmpfs", &["ro"])?;
        let entries = fs::read_dir(masked)
            .map_err(|e| format!("{masked}: {e}"))?
            .count();
        ensure!(entries == 0, "{masked} shows {entries} entries");
    }
    ensure!(
        !mounts
            .iter()
            .any(|m| m.mount_point == Path::new("/proc/kcore")),
        "kcore mounted"
    );

    // Devices and /dev links.
    for (path, minor) in [
        ("null", 3),
        ("zero", 5),
        ("full", 7),
        ("random", 8),
        ("urandom", 9),
    ] {
        expect_node(&format!("/dev/{path}"), true, 1, minor, 0o666)?;
    }
    expect_node("/dev/tty", true, 5, 0, 0o666)?;
    expect_node("/dev/fuse", true, 10, 229, 0o666)?;
    expect_node("/dev/peapod-loop", false, 7, 0, 0o640)?;
    let loop_meta = fs::metadata("/dev/peapod-loop").unwrap();
    ensure!(
        (loop_meta.uid(), loop_meta.gid()) == (1000, 6),
        "block device owner"
    );
    let fifo = fs::metadata("/dev/peapod-fifo").map_err(|e| format!("fifo: {e}"))?;
    ensure!(fifo.file_type().is_fifo(), "/dev/peapod-fifo is not a fifo");
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
        ("/dev/ptmx", "pts/ptmx"),
    ] {
        let found = fs::read_link(link).map_err(|e| format!("{link}: {e}"))?;
        ensure!(found == Path::new(target), "{link} -> {}", found.display());
    }
    ensure!(
        Path::new("/dev/core").exists() == kcore,
        "/dev/core vs host /proc/kcore"
    );

    // Spec binds and the tmpfs.
    with_options(mount_at(&mounts, "/data")?, &["ro", "nosuid"])?;
    ensure!(
        mount_at(&mounts, "/data")?
            .optional
            .iter()
            .any(|o| o.starts_with("shared:")),
        "/data is not rshared"
    );
    let hello = fs::read_to_string("/data/hello").map_err(|e| format!("/data/hello: {e}"))?;
    ensure!(hello == "hello from the host\n", "/data/hello: {hello:?}");
    expect_read_only("/data/new")?;
    let file = fs::read_to_string("/etc/hostfile").map_err(|e| format!("/etc/hostfile: {e}"))?;
    ensure!(file == "a file bind\n", "/etc/hostfile: {file:?}");
    with_options(mount_at(&mounts, "/etc/linked")?, &["ro"])?;
    ensure!(
        Path::new("/etc/linked/hello").is_file(),
        "/etc/linked/hello"
    );
    expect_mount(&mounts, "/mnt/ro", "tmpfs", &["ro", "size=1024k"])?;
    expect_read_only("/mnt/ro/x")?;
    expect_read_only("/new-file-in-root")?;
    ensure!(
        Path::new("/home/app").is_dir(),
        "cwd /home/app was not created"
    );

    // The image's own programs run.
    let out = Command::new("/bin/sh")
        .args([
            "-c",
            "echo ok && cat /dev/null && ls /dev/pts/ptmx >/dev/null",
        ])
        .output()
        .map_err(|e| format!("/bin/sh: {e}"))?;
    ensure!(
        out.status.success() && out.stdout == b"ok\n",
        "busybox sh: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn rootfs_default_spec_with_pivot_root() {
    let fixture = Fixture::new();
    let spec = busybox_spec(&fixture);
    let cgroups = expected_cgroups(&fixture, false);
    let kcore = Path::new("/proc/kcore").exists();
    let rootfs = fixture.rootfs.clone();
    let namespaces = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNET;
    isolated(unshared(namespaces), || {
        let root = set_up(&spec, &rootfs, false).map_err(|e| format!("prepare: {e}"))?;
        pivot(&root, false).map_err(|e| format!("pivot: {e}"))?;
        finalize(&spec).map_err(|e| format!("finalize: {e}"))?;
        check_default_container(&cgroups, kcore)
    });
    assert!(
        !Path::new("/etc/linked").exists(),
        "a bind escaped to the host's /etc"
    );
    fixture.finish();
}

/// No network namespace (so `/sys` is the host's, rbind), a cgroup namespace, no
/// `CAP_MKNOD` (so devices are bind-mounted), and `MS_MOVE` + chroot instead of pivot_root.
#[test]
fn rootfs_no_pivot_cgroupns_host_sys_and_bound_devices() {
    let fixture = Fixture::new();
    let mut spec = Spec::default();
    let linux = spec.linux_mut().as_mut().unwrap();
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    let namespaces = namespaces
        .into_iter()
        .filter(|n| n.typ() != LinuxNamespaceType::Network);
    linux.set_namespaces(Some(namespaces.collect()));
    linux.set_devices(Some(vec![spec_device(
        "/dev/peapod-fifo",
        LinuxDeviceType::P,
        0,
        0,
    )]));
    let cgroups = expected_cgroups(&fixture, true);
    let rootfs = fixture.rootfs.clone();
    let namespaces =
        CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWCGROUP;
    isolated(unshared(namespaces), || {
        caps::drop(None, caps::CapSet::Effective, caps::Capability::CAP_MKNOD)
            .map_err(|e| format!("dropping CAP_MKNOD: {e}"))?;
        let root = set_up(&spec, &rootfs, true).map_err(|e| format!("prepare: {e}"))?;
        pivot(&root, true).map_err(|e| format!("pivot: {e}"))?;
        finalize(&spec).map_err(|e| format!("finalize: {e}"))?;

        let mounts = mountinfo::parse(&fs::read_to_string("/proc/self/mountinfo").unwrap());
        with_options(mount_at(&mounts, "/")?, &["ro"])?;
        // The rbind of the host /sys brings its submounts, all read-only; the container's own
        // cgroup tmpfs sits on top of the host's.
        let under_sys: Vec<&MountInfo> = mounts
            .iter()
            .filter(|m| {
                m.mount_point.starts_with("/sys") && !m.mount_point.starts_with("/sys/fs/cgroup")
            })
            .collect();
        ensure!(!under_sys.is_empty(), "no /sys");
        for m in &under_sys {
            with_options(m, &["ro"])?;
        }
        let cgroup_tmpfs = mounts
            .iter()
            .filter(|m| m.mount_point == Path::new("/sys/fs/cgroup"))
            .count();
        ensure!(
            cgroup_tmpfs == 2,
            "expected the host's and the container's /sys/fs/cgroup"
        );
        check_cgroups(&mounts, &cgroups)?;
        // mknod was refused, so the host's nodes are bound, except the fifo (no CAP_MKNOD
        // needed).
        for node in ["/dev/null", "/dev/zero", "/dev/tty"] {
            mount_at(&mounts, node)?;
        }
        expect_node("/dev/null", true, 1, 3, 0o666)?;
        ensure!(
            mount_at(&mounts, "/dev/peapod-fifo").is_err(),
            "fifo was bound"
        );
        let out = Command::new("/bin/sh")
            .args(["-c", "echo ok > /dev/null && echo ok"])
            .output()
            .map_err(|e| format!("/bin/sh: {e}"))?;
        ensure!(out.stdout == b"ok\n", "busybox sh: {out:?}");
        Ok(())
    });
    fixture.finish();
}

#[test]
fn rootfs_refuses_unsafe_destinations_and_names_the_failure() {
    let fixture = Fixture::new();
    let rootfs = fixture.rootfs.clone();
    let outside = fixture.host("outside");
    fs::create_dir(&outside).unwrap();
    symlink(&outside, rootfs.join("proc")).unwrap();
    let with_mounts = |mounts: Vec<Mount>| {
        let mut spec = Spec::default();
        spec.set_mounts(Some(mounts));
        spec.set_process(None);
        spec
    };
    let proc_mount = spec_mount("/proc", "proc", Path::new("proc"), &[]);
    isolated(unshared(CloneFlags::CLONE_NEWNS), || {
        // proc onto a symlink (pointing out of the rootfs, too).
        let err = set_up(&with_mounts(vec![proc_mount.clone()]), &rootfs, false).unwrap_err();
        ensure!(
            matches!(err, RootfsError::NotDirectory { .. }),
            "symlinked /proc: {err}"
        );
        fs::remove_file(rootfs.join("proc")).unwrap();

        // Nothing inside /proc but the lxcfs files.
        let tmpfs = spec_mount("/proc/sys/kernel", "tmpfs", Path::new("tmpfs"), &[]);
        let err = set_up(
            &with_mounts(vec![proc_mount.clone(), tmpfs]),
            &rootfs,
            false,
        );
        let err = err.unwrap_err();
        ensure!(
            matches!(err, RootfsError::ProcMount { .. }),
            "tmpfs in /proc: {err}"
        );

        // A missing bind source names the source and the errno.
        let missing = fixture.host("missing");
        let bind = spec_mount("/x", "bind", &missing, &["bind"]);
        let err = set_up(&with_mounts(vec![bind]), &rootfs, false)
            .unwrap_err()
            .to_string();
        ensure!(
            err.contains("stat") && err.contains("missing") && err.contains("ENOENT"),
            "{err}"
        );

        // A refused mount names destination, type, data and errno.
        let bad = spec_mount("/bad", "tmpfs", Path::new("tmpfs"), &["size=lots"]);
        let err = set_up(&with_mounts(vec![bad]), &rootfs, false)
            .unwrap_err()
            .to_string();
        ensure!(
            err.contains("/bad")
                && err.contains("tmpfs")
                && err.contains("size=lots")
                && err.contains("EINVAL"),
            "{err}"
        );
        ensure!(
            fs::read_dir(&outside).unwrap().count() == 0,
            "wrote outside the rootfs"
        );
        Ok(())
    });
    fixture.finish();
}

/// In a user namespace mknod is refused (devices are bound from the host) and inherited
/// mounts have locked flags: a read-only bind of a nosuid,nodev,noexec source keeps them, and
/// asking to clear one is an error naming it.
#[test]
fn rootfs_in_a_user_namespace_binds_devices_and_keeps_locked_flags() {
    let fixture = Fixture::new();
    let locked = fixture.host("locked");
    fs::create_dir(&locked).unwrap();
    let mut spec = Spec::default();
    let mut mounts = spec.mounts().clone().unwrap();
    // Only root is mapped: drop `gid=5` as `runc spec --rootless` does.
    for m in &mut mounts {
        if let Some(options) = m.options_mut() {
            options.retain(|o| !o.starts_with("gid=") && !o.starts_with("uid="));
        }
    }
    mounts.push(spec_mount("/locked", "bind", &locked, &["bind", "ro"]));
    spec.set_mounts(Some(mounts));
    let mut clearing = Spec::default();
    clearing.set_mounts(Some(vec![spec_mount(
        "/locked",
        "bind",
        &locked,
        &["bind", "exec"],
    )]));
    clearing.set_process(None);
    let second_rootfs = fixture.host("rootfs2");
    fs::create_dir(&second_rootfs).unwrap();
    let cgroups = expected_cgroups(&fixture, false);
    let rootfs = fixture.rootfs.clone();
    isolated(user_namespace_with_locked_mount(locked.clone()), || {
        let err = set_up(&clearing, &second_rootfs, false).unwrap_err();
        let locked_noexec = matches!(
            err,
            RootfsError::LockedFlags { flags, .. } if flags == MsFlags::MS_NOEXEC
        );
        ensure!(locked_noexec, "clearing noexec on a locked mount: {err}");

        let root = set_up(&spec, &rootfs, false).map_err(|e| format!("prepare: {e}"))?;
        pivot(&root, false).map_err(|e| format!("pivot: {e}"))?;
        finalize(&spec).map_err(|e| format!("finalize: {e}"))?;

        let mounts = mountinfo::parse(&fs::read_to_string("/proc/self/mountinfo").unwrap());
        with_options(mount_at(&mounts, "/")?, &["ro"])?;
        let locked = ["ro", "nosuid", "nodev", "noexec"];
        expect_mount(&mounts, "/locked", "tmpfs", &locked)?;
        let text = fs::read_to_string("/locked/file").map_err(|e| format!("/locked/file: {e}"))?;
        ensure!(text == "locked\n", "/locked/file: {text:?}");
        expect_mount(
            &mounts,
            "/sys",
            "sysfs",
            &["ro", "nosuid", "nodev", "noexec"],
        )?;
        check_cgroups(&mounts, &cgroups)?;
        for node in ["/dev/null", "/dev/zero", "/dev/full", "/dev/tty"] {
            mount_at(&mounts, node).map_err(|e| format!("{e}: mknod fallback not used"))?;
        }
        expect_node("/dev/null", true, 1, 3, 0o666)?;
        let mut zeros = [1u8; 16];
        let read = fs::File::open("/dev/zero").and_then(|mut f| f.read_exact(&mut zeros));
        ensure!(
            read.is_ok() && zeros == [0; 16],
            "reading the bound /dev/zero: {read:?}"
        );
        with_options(mount_at(&mounts, "/proc/sys")?, &["ro"])?;
        let keys = fs::read_to_string("/proc/keys").map_err(|e| format!("/proc/keys: {e}"))?;
        ensure!(keys.is_empty(), "/proc/keys is not masked");
        let out = Command::new("/bin/sh")
            .args(["-c", "echo ok"])
            .output()
            .map_err(|e| format!("/bin/sh: {e}"))?;
        ensure!(out.stdout == b"ok\n", "busybox sh: {out:?}");
        Ok(())
    });
    fixture.finish();
}
