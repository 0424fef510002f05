//! Pod sandboxes: two containers run from bundles a sandbox wrote share its network, IPC
//! and UTS namespaces and its cgroup, keep their own mount and PID namespaces, and nothing of
//! the sandbox is left once it is removed.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use runtime::sandbox::{Qos, Sandbox, SandboxConfig};

use peapod_tests::host::{cgroup_dirs, host_command, ns_link, unique_suffix};
use peapod_tests::pod::{Scratch, TestPod, NAMESPACE};
use peapod_tests::require_root;

/// The port the web container listens on, inside the pod's own network namespace.
const PORT: u16 = 8080;

/// A burstable pod (its cgroup under `kubepods/burstable`) in throwaway locations.
#[track_caller]
fn burstable_pod() -> TestPod {
    TestPod::new("pp-sandbox", Qos::Burstable)
}

/// `<type>:[<inode>]`, as `/proc/<pid>/ns/<type>` reads, for a pinned namespace.
fn pin_link(kind: &str, pin: &Path) -> String {
    let inode = fs::metadata(pin)
        .unwrap_or_else(|e| panic!("stat {}: {e}", pin.display()))
        .ino();
    format!("{kind}:[{inode}]")
}

fn mounts_mentioning(name: &str) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .expect("own mountinfo")
        .lines()
        .filter(|line| line.contains(name))
        .map(str::to_owned)
        .collect()
}

#[test]
fn two_containers_share_the_pods_namespaces_and_cgroup_and_removal_leaves_nothing() {
    let mut pod = burstable_pod();
    let name = pod.sandbox.name().to_owned();
    let hostname = pod.sandbox.hostname().to_owned();
    assert_eq!(
        Sandbox::load(&name, &pod.scratch.paths).unwrap(),
        pod.sandbox
    );
    assert!(host_command("ip", &["netns", "list"]).contains(&name));

    let web = pod.run(
        "web",
        &format!(
            "mkdir -p /tmp/www && echo hello from web > /tmp/www/index.html && \
             exec httpd -f -p 127.0.0.1:{PORT} -h /tmp/www"
        ),
    );
    let client = pod.run("client", "exec sleep 1000");

    // Both see the pod's hostname, from the UTS namespace and from /etc/hostname.
    for container in ["web", "client"] {
        let out = pod.exec(container, "hostname; cat /etc/hostname").ok();
        assert_eq!(out.stdout, format!("{hostname}\n{hostname}\n"), "{out}");
    }
    let hosts = pod.exec("client", "cat /etc/hosts").ok();
    assert!(hosts.stdout.contains("127.0.0.1\tlocalhost"), "{hosts}");

    // The client reaches the web server on localhost: one network namespace.
    let fetch = pod
        .exec(
            "client",
            &format!(
                "for i in $(seq 100); do wget -q -O - http://localhost:{PORT}/ && exit 0; \
                 sleep 0.1; done; exit 1"
            ),
        )
        .ok();
    assert_eq!(fetch.stdout, "hello from web\n", "{fetch}");

    let (web_pid, client_pid) = (pod.pid("web").to_string(), pod.pid("client").to_string());
    let sandbox = &pod.sandbox;
    let pins = sandbox.pins();
    for (kind, pin) in [("net", &pins.net), ("ipc", &pins.ipc), ("uts", &pins.uts)] {
        assert_eq!(ns_link(&web_pid, kind), pin_link(kind, pin), "web {kind}");
        assert_eq!(
            ns_link(&client_pid, kind),
            pin_link(kind, pin),
            "client {kind}"
        );
    }
    for kind in ["mnt", "pid"] {
        assert_ne!(
            ns_link(&web_pid, kind),
            ns_link(&client_pid, kind),
            "{kind} namespace is shared"
        );
        assert_ne!(
            ns_link(&web_pid, kind),
            ns_link("self", kind),
            "{kind} is the host's"
        );
    }

    // Each container's cgroup lies under the pod cgroup, in every hierarchy.
    let placements = sandbox.cgroup().placements();
    let own = cgroup_dirs(std::process::id() as i32);
    assert_eq!(
        placements.len(),
        own.len(),
        "one pod cgroup per hierarchy this process is in: {own:#?}"
    );
    let pod_dirs: Vec<PathBuf> = placements.iter().map(|p| p.path.clone()).collect();
    for dir in &pod_dirs {
        assert!(
            dir.ends_with(format!("kubepods/burstable/pod{}", sandbox.config().uid)),
            "{}",
            dir.display()
        );
        for (id, pid) in [(&web, &web_pid), (&client, &client_pid)] {
            let procs = dir.join(id).join("cgroup.procs");
            let text = fs::read_to_string(&procs)
                .unwrap_or_else(|e| panic!("reading {}: {e}", procs.display()));
            assert!(
                text.lines().any(|l| l == pid),
                "{pid} not in {}",
                procs.display()
            );
        }
    }

    // Running containers keep the sandbox from being taken down under them.
    let busy = sandbox.remove().unwrap_err();
    assert!(busy.to_string().contains("still has processes"), "{busy}");
    assert!(pins.net.exists() && pod_dirs.iter().all(|d| d.exists()));

    pod.delete("web");
    pod.delete("client");
    sandbox.remove().expect("the sandbox is removed");

    assert!(!pins.net.exists(), "{} left", pins.net.display());
    assert!(!host_command("ip", &["netns", "list"]).contains(&name));
    assert_eq!(mounts_mentioning(&name), Vec::<String>::new());
    for dir in &pod_dirs {
        assert!(!dir.exists(), "{} left", dir.display());
    }
    assert!(!sandbox.dir().exists(), "{} left", sandbox.dir().display());
    assert!(Sandbox::list(&pod.scratch.paths).unwrap().is_empty());
    // Removing again finds nothing to do and says so by succeeding.
    sandbox.remove().expect("a second removal succeeds");
}

#[test]
fn the_netns_is_usable_with_ip_netns_exec_and_has_lo_up() {
    let pod = burstable_pod();
    let name = pod.sandbox.name().to_owned();
    let link = host_command(
        "ip",
        &["netns", "exec", &name, "ip", "-o", "link", "show", "lo"],
    );
    assert!(link.contains("UP"), "{link}");
    let links = host_command("ip", &["netns", "exec", &name, "ip", "-o", "link"]);
    assert_eq!(
        links.lines().count(),
        1,
        "only lo in a fresh pod netns: {links}"
    );
    pod.sandbox.remove().unwrap();
    assert!(!Path::new("/run/netns").join(&name).exists());
}

#[test]
fn creating_a_sandbox_twice_fails_and_leaves_the_first_intact() {
    let pod = burstable_pod();
    let err = Sandbox::create(pod.sandbox.config(), &pod.scratch.paths).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert!(pod.sandbox.pins().net.exists());
    assert_eq!(
        Sandbox::list(&pod.scratch.paths).unwrap(),
        std::slice::from_ref(&pod.sandbox)
    );
}

#[test]
fn a_netns_of_the_same_name_made_by_someone_else_is_left_alone() {
    require_root();
    let scratch = Scratch::new("pp-sandbox");
    let paths = &scratch.paths;
    let suffix = unique_suffix();
    let config = SandboxConfig {
        name: format!("taken-{suffix}"),
        namespace: NAMESPACE.into(),
        uid: format!("uid-{suffix}"),
        hostname: "taken".into(),
        qos: Qos::BestEffort,
        resources: Default::default(),
    };
    let theirs = Netns::named(&config.sandbox_name());
    let err = Sandbox::create(&config, paths).unwrap_err();
    assert!(err.to_string().contains(&theirs.name), "{err}");
    assert!(host_command("ip", &["netns", "list"]).contains(&theirs.name));
    host_command("ip", &["netns", "exec", &theirs.name, "true"]);
    assert!(Sandbox::list(paths).unwrap().is_empty());
    assert!(!paths.state_dir.join(config.sandbox_name()).exists());
}

/// A netns made with `ip netns add`, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    #[track_caller]
    fn named(name: &str) -> Netns {
        host_command("ip", &["netns", "add", name]);
        Netns { name: name.into() }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Best effort in drop: a failure here must not turn into a double panic.
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}
