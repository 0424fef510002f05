//! Pod networking and namespaces end to end: `hostNetwork`, `hostPID`, `hostIPC`,
//! `shareProcessNamespace`, hostname/subdomain/hostAliases, dnsPolicy/dnsConfig and
//! `hostPort`s through the CNI portmap plugin. Each test has a node of its own whose "host"
//! network is the harness's private netns; a host-network pod must land there, never in the
//! machine's own network namespace.

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use peapod_tests::host::wait_until;
use peapod_tests::kubelet::{running, Kubelet, BUSYBOX};

/// The node's address in its private host netns (a documentation range), with a default
/// route, so the kubelet finds it as the node IP.
const NODE_IP: &str = "192.0.2.10";

/// Give the node's private netns an interface (one end of a veth pair: the kernel may lack
/// the dummy driver) with [`NODE_IP`] and a default route by it.
fn add_node_address(node: &Kubelet) {
    node.host_sh(&format!(
        "ip link add pn0 type veth peer name pn1 && ip link set pn1 up \
         && ip addr add {NODE_IP}/24 dev pn0 && ip link set pn0 up \
         && ip route add default via 192.0.2.1 dev pn0"
    ))
    .expect("adding the node address in the private host netns");
}

/// Run a pod from `yaml` (a manifest named `<name>.yaml`) and wait until it runs.
fn run_pod(node: &Kubelet, name: &str, yaml: &str) -> Value {
    node.write_manifest(&format!("{name}.yaml"), yaml);
    node.wait_pod(
        &format!("{name}-{}", node.node_name()),
        Duration::from_secs(20),
        running,
    )
}

/// Delete the pod by removing its manifest, and wait until it and its sandbox are gone.
#[track_caller]
fn delete_pod(node: &Kubelet, name: &str) {
    fs::remove_file(node.manifests().join(format!("{name}.yaml"))).expect("removing a manifest");
    let full = format!("{name}-{}", node.node_name());
    let gone = wait_until(Duration::from_secs(30), || {
        node.pod(&full).is_none()
            && fs::read_dir(node.path("sandboxes")).is_ok_and(|dir| {
                !dir.flatten().any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .contains(&format!("_{full}_"))
                })
            })
    });
    assert!(gone, "pod {name} is not gone: {}", node.log());
}

/// `peapod exec POD -c CONTAINER -- ARGS`: stdout, which must be a success.
#[track_caller]
fn exec(node: &Kubelet, pod: &str, container: &str, args: &[&str]) -> String {
    let mut all = vec!["exec", pod, "-c", container, "--"];
    all.extend_from_slice(args);
    node.peapod(&all).ok().stdout
}

/// The namespace link (`net:[4026531840]`) of `kind` for this test process.
fn own_namespace(kind: &str) -> String {
    fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// `net:[<inode>]` of a pinned network namespace file.
fn netns_link(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    format!("net:[{}]", fs::metadata(path).unwrap().ino())
}

fn sleeper(name: &str, spec_extra: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 1
{spec_extra}
  containers:
  - name: a
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: ["sleep", "3600"]
  - name: b
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: ["sleep", "3601"]
"#
    )
}

#[test]
fn a_host_network_pod_is_in_the_nodes_netns_with_its_ip_and_host_pid_and_ipc() {
    let node = Kubelet::start();
    add_node_address(&node);
    let spec = "  hostNetwork: true\n  hostPID: true\n  hostIPC: true";
    let pod = run_pod(&node, "hostnet", &sleeper("hostnet", spec));
    let name = format!("hostnet-{}", node.node_name());
    assert_eq!(pod["status"]["podIP"], NODE_IP, "the pod IP is the node's");
    assert_eq!(
        pod["status"]["hostIP"], NODE_IP,
        "status.hostIP is the node's address"
    );

    // The node's network is the private netns, never the machine's own.
    let host_netns = Path::new("/run/netns").join(node.host_netns());
    let net = exec(&node, &name, "a", &["readlink", "/proc/self/ns/net"]);
    assert_eq!(net.trim(), netns_link(&host_netns));
    assert_ne!(net.trim(), own_namespace("net"));
    let links = exec(&node, &name, "a", &["cat", "/proc/net/dev"]);
    assert!(links.contains("pn0:"), "the node's interfaces: {links}");

    // hostPID and hostIPC: the node's namespaces (the kubelet's, which are this test's).
    let pid = exec(&node, &name, "a", &["readlink", "/proc/self/ns/pid"]);
    assert_eq!(pid.trim(), own_namespace("pid"));
    let ipc = exec(&node, &name, "a", &["readlink", "/proc/self/ns/ipc"]);
    assert_eq!(ipc.trim(), own_namespace("ipc"));
    let ps = exec(&node, &name, "a", &["ps", "-o", "pid,args"]);
    assert!(ps.contains("sleep 3601"), "sees the other container: {ps}");

    // The node's hostname and hosts file.
    let hostname = nix::unistd::gethostname().unwrap();
    let inside = exec(&node, &name, "a", &["hostname"]);
    assert_eq!(inside.trim(), hostname.to_string_lossy());
    let hosts = exec(&node, &name, "a", &["cat", "/etc/hosts"]);
    assert!(
        hosts.starts_with("# Kubernetes-managed hosts file (host network).\n"),
        "{hosts}"
    );
    delete_pod(&node, "hostnet");
    assert!(
        node.host_sh("ip -o link show").unwrap().contains("pn0"),
        "the node's own network is left as it was"
    );
}

#[test]
fn share_process_namespace_lets_containers_see_each_other_and_only_then() {
    let mut node = Kubelet::start();
    let shared = run_pod(
        &node,
        "shared",
        &sleeper("shared", "  shareProcessNamespace: true"),
    );
    let lone = run_pod(&node, "lone", &sleeper("lone", ""));
    let shared_name = format!("shared-{}", node.node_name());
    let lone_name = format!("lone-{}", node.node_name());

    let ps = exec(&node, &shared_name, "a", &["ps", "-o", "pid,args"]);
    assert!(ps.contains("sleep 3601"), "a sees b's process: {ps}");
    let first = ps.lines().nth(1).unwrap_or_default();
    assert!(
        first.trim_start().starts_with("1 ") && !first.contains("sleep"),
        "PID 1 is the pod's holder, not a container: {ps}"
    );
    let a_pid = exec(&node, &shared_name, "a", &["readlink", "/proc/self/ns/pid"]);
    let b_pid = exec(&node, &shared_name, "b", &["readlink", "/proc/self/ns/pid"]);
    assert_eq!(a_pid, b_pid);
    assert_ne!(a_pid.trim(), own_namespace("pid"));

    let ps = exec(&node, &lone_name, "a", &["ps", "-o", "pid,args"]);
    assert!(
        !ps.contains("sleep 3601"),
        "without sharing, b is hidden: {ps}"
    );
    let a_pid = exec(&node, &lone_name, "a", &["readlink", "/proc/self/ns/pid"]);
    let b_pid = exec(&node, &lone_name, "b", &["readlink", "/proc/self/ns/pid"]);
    assert_ne!(a_pid, b_pid);
    // The pod's own network and IPC namespaces, not the node's.
    let net = exec(&node, &lone_name, "a", &["readlink", "/proc/self/ns/net"]);
    let host_netns = Path::new("/run/netns").join(node.host_netns());
    assert_ne!(net.trim(), netns_link(&host_netns));
    let ipc = exec(&node, &lone_name, "a", &["readlink", "/proc/self/ns/ipc"]);
    assert_ne!(ipc.trim(), own_namespace("ipc"));

    // The holder is in the sandbox record, and dies with the pod.
    let sandbox = format!(
        "{}_{shared_name}_{}",
        shared["metadata"]["namespace"].as_str().unwrap(),
        shared["metadata"]["uid"].as_str().unwrap()
    );
    let record: Value = serde_json::from_slice(
        &fs::read(node.path("sandboxes").join(&sandbox).join("sandbox.json")).unwrap(),
    )
    .unwrap();
    let holder = record["pid_holder"]["pid"].as_i64().expect("a holder pid");
    assert!(Path::new(&format!("/proc/{holder}")).exists());
    let _ = lone;

    // A restarted kubelet adopts the pod with its holder: a container that dies is started
    // again in the same PID namespace.
    node.restart();
    // (`36[0]1` so the shell does not match its own command line.)
    let kill_b = "for p in /proc/[0-9]*; do grep -q 36[0]1 $p/cmdline 2>/dev/null && kill ${p#/proc/}; done; true";
    exec(&node, &shared_name, "a", &["sh", "-c", kill_b]);
    let restarted = |pod: &Value| {
        running(pod)
            && pod["status"]["containerStatuses"]
                .as_array()
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["name"] == "b" && c["restartCount"] == 1)
                })
    };
    node.wait_pod(&shared_name, Duration::from_secs(30), restarted);
    let b_again = exec(&node, &shared_name, "b", &["readlink", "/proc/self/ns/pid"]);
    let a_now = exec(&node, &shared_name, "a", &["readlink", "/proc/self/ns/pid"]);
    assert_eq!(
        b_again, a_now,
        "the restarted container joins the pod's PID namespace"
    );
    let ps = exec(&node, &shared_name, "a", &["ps", "-o", "pid,args"]);
    assert!(ps.contains("sleep 3601"), "a sees the new b: {ps}");
    delete_pod(&node, "shared");
    delete_pod(&node, "lone");
    let gone = wait_until(Duration::from_secs(5), || {
        !Path::new(&format!("/proc/{holder}")).exists()
    });
    assert!(gone, "the holder {holder} is stopped and reaped");
}

#[test]
fn hostname_subdomain_aliases_and_dns_config_are_in_the_pods_etc_files() {
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    fs::write(
        &resolv,
        "nameserver 192.0.2.53\nsearch node.example\noptions rotate\n",
    )
    .unwrap();
    let node = Kubelet::start_with_args(&[
        "--cluster-domain",
        "cluster.local",
        "--cluster-dns",
        "10.96.0.10",
        "--resolv-conf",
        resolv.to_str().unwrap(),
    ]);
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: named
spec:
  terminationGracePeriodSeconds: 1
  hostname: db-0
  subdomain: db
  hostAliases:
  - ip: 192.0.2.7
    hostnames: [foo.local, bar.local]
  dnsConfig:
    nameservers: [192.0.2.99]
    searches: [extra.example]
    options:
    - name: ndots
      value: "2"
    - name: edns0
  containers:
  - name: a
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: ["sleep", "3600"]
"#
    );
    let pod = run_pod(&node, "named", &yaml);
    let name = format!("named-{}", node.node_name());
    let ip = pod["status"]["podIP"]
        .as_str()
        .expect("a pod IP")
        .to_string();

    assert_eq!(exec(&node, &name, "a", &["cat", "/etc/hostname"]), "db-0\n");
    assert_eq!(exec(&node, &name, "a", &["hostname"]).trim(), "db-0");
    let hosts = exec(&node, &name, "a", &["cat", "/etc/hosts"]);
    assert!(hosts.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
    let namespace = pod["metadata"]["namespace"].as_str().unwrap();
    assert!(
        hosts.ends_with(&format!(
            "{ip}\tdb-0.db.{namespace}.svc.cluster.local\tdb-0\n\n\
             # Entries added by HostAliases.\n192.0.2.7\tfoo.local\tbar.local\n"
        )),
        "{hosts}"
    );
    assert_eq!(
        exec(&node, &name, "a", &["cat", "/etc/resolv.conf"]),
        format!(
            "search {namespace}.svc.cluster.local svc.cluster.local cluster.local \
             node.example extra.example\nnameserver 10.96.0.10\nnameserver 192.0.2.99\n\
             options ndots:2 edns0\n"
        )
    );
    delete_pod(&node, "named");
}

#[test]
fn a_host_port_forwards_from_the_nodes_address_until_the_pod_is_deleted() {
    let node = Kubelet::start();
    add_node_address(&node);
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: porty
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: ["sh", "-c", "echo hostport-ok > /tmp/index.html && exec httpd -f -p 80 -h /tmp"]
    ports:
    - containerPort: 80
      hostPort: 18080
"#
    );
    run_pod(&node, "porty", &yaml);
    let mut body = Err(String::new());
    let served = wait_until(Duration::from_secs(10), || {
        body = node.http_get(NODE_IP, 18080);
        body.is_ok()
    });
    assert!(served, "GET {NODE_IP}:18080 in the node's netns: {body:?}");
    assert_eq!(body.unwrap().trim(), "hostport-ok");
    let rules = node.host_sh("iptables-save -t nat").unwrap();
    assert!(rules.contains("18080"), "the portmap rules: {rules}");

    delete_pod(&node, "porty");
    let rules = node.host_sh("iptables-save -t nat").unwrap();
    assert!(
        !rules.contains("18080"),
        "the portmap rules are removed: {rules}"
    );
    assert!(
        node.http_get(NODE_IP, 18080).is_err(),
        "nothing answers on the host port any more"
    );
}
