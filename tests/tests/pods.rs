//! Pods on one node, end to end: `peapod-kubelet` runs the pods of its manifests folder
//! with real sandboxes, CNI, images and shims, and takes them down without a trace.
//! Each test has a node of its own (see `peapod_tests::kubelet`), its pod network in a
//! private host netns: traffic goes only to the test's own pods.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use peapod_tests::host::wait_until;
use peapod_tests::kubelet::{container_status, http_get, phase, running, Kubelet, BUSYBOX};

/// The journey's pod: a web server and a sidecar that fetches its page over localhost.
fn web_pod(name: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: web}}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: web
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: ["sh", "-c", "echo \"<h1>hello from $(hostname)</h1>\" > /tmp/index.html && echo serving && exec httpd -f -vv -p 8080 -h /tmp"]
  - name: sidecar
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; echo sidecar on $(hostname); while true; do wget -q -O- http://localhost:8080/ || echo fetch failed; sleep 1; done"]
"#
    )
}

/// `GET /` through `peapod port-forward pod/NAME :PORT` (a free local port on loopback):
/// the body. The forwarder is stopped (by its PID) before returning.
fn port_forward_get(node: &Kubelet, pod: &str, port: u16) -> String {
    use std::io::{BufRead as _, BufReader};
    let mut forward = node
        .peapod_command(&["port-forward", &format!("pod/{pod}"), &format!(":{port}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting peapod port-forward");
    let mut lines = BufReader::new(forward.stdout.take().unwrap()).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let local = first
        .strip_prefix("Forwarding from ")
        .and_then(|rest| rest.split(" -> ").next())
        .map(str::to_string);
    let body = local.map(|addr| http_get(&addr).expect("GET through the forward"));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(forward.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = forward.wait();
    body.unwrap_or_else(|| panic!("port-forward did not say where it listens: {first:?}"))
}

/// A container's CRI log file as stored (restart 0).
fn log_of(node: &Kubelet, pod: &Value, container: &str) -> String {
    let dir = node.log_dir().join(format!(
        "{}_{}_{}",
        pod["metadata"]["namespace"].as_str().unwrap(),
        pod["metadata"]["name"].as_str().unwrap(),
        pod["metadata"]["uid"].as_str().unwrap()
    ));
    fs::read_to_string(dir.join(container).join("0.log")).unwrap_or_default()
}

#[test]
fn a_two_container_pod_runs_serves_shares_localhost_and_hostname_and_leaves_nothing() {
    let node = Kubelet::start();
    let name = format!("web-{}", node.node_name());
    let file = node.path("web.yaml");
    fs::write(&file, web_pod("web")).unwrap();
    let applied = Instant::now();
    let out = node.peapod(&["apply", "-f", file.to_str().unwrap()]).ok();
    assert_eq!(out.stdout.trim(), format!("pod/{name} created"));
    let pod = node.wait_pod(&name, Duration::from_secs(5), running);
    eprintln!("Running after {:?}", applied.elapsed());
    let ip = pod["status"]["podIP"]
        .as_str()
        .expect("a pod IP")
        .to_string();
    assert!(
        ip.starts_with("10.88."),
        "the IP is in the pod subnet: {ip}"
    );
    assert_eq!(pod["status"]["podIPs"][0]["ip"], ip.as_str());
    assert_eq!(pod["spec"]["nodeName"], node.node_name());

    // kubectl's table, with the IP and node in -o wide.
    let wide = node.peapod(&["get", "pods", "-o", "wide"]).ok().stdout;
    let mut lines = wide.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        &header[..7],
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"],
        "{wide}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        (row[0], row[1], row[2], row[3], row[5], row[6]),
        (
            name.as_str(),
            "2/2",
            "Running",
            "0",
            ip.as_str(),
            node.node_name()
        ),
        "{wide}"
    );

    // The host (the node's netns) reaches the pod on its IP.
    let page = node
        .http_get(&ip, 8080)
        .expect("HTTP from the host to the pod IP");
    assert_eq!(page.trim(), format!("<h1>hello from {name}</h1>"));

    // The sidecar fetched the page over localhost: one network namespace, one hostname.
    let fetched = wait_until(Duration::from_secs(5), || {
        node.peapod(&["logs", &name, "-c", "sidecar"])
            .stdout
            .contains("<h1>hello from")
    });
    let sidecar_log = node.peapod(&["logs", &name, "-c", "sidecar"]).ok().stdout;
    assert!(fetched, "the sidecar reached localhost:8080: {sidecar_log}");
    assert!(
        sidecar_log.starts_with(&format!("sidecar on {name}\n")),
        "both containers see the pod's hostname: {sidecar_log}"
    );
    let web_log = node.peapod(&["logs", &name, "-c", "web"]).ok().stdout;
    assert!(
        web_log.starts_with("serving\n") && web_log.contains("[::ffff:127.0.0.1]"),
        "the web server logged the sidecar's request: {web_log}"
    );
    // exec runs in the pod: its hostname is the pod name.
    let exec = node
        .peapod(&["exec", &name, "-c", "web", "--", "hostname"])
        .ok();
    assert_eq!(exec.stdout.trim(), name);
    let failing = node.peapod(&["exec", &name, "-c", "sidecar", "--", "sh", "-c", "exit 7"]);
    assert_eq!(failing.code, 7, "exec passes the exit code on: {failing}");

    // port-forward: a local port on loopback serves the pod's port 8080.
    let page = port_forward_get(&node, &name, 8080);
    assert_eq!(page.trim(), format!("<h1>hello from {name}</h1>"));

    let described = node.peapod(&["describe", "pod", &name]).ok().stdout;
    assert!(
        described.contains("Started container web") && described.contains(&ip),
        "describe shows the IP and the events: {described}"
    );

    // Delete: everything of the pod goes.
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let sandbox = format!("default_{name}_{uid}");
    let sandbox_dir = node.path("sandboxes").join(&sandbox);
    let bundles: Vec<String> = fs::read_dir(sandbox_dir.join("containers"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(bundles.len(), 2);
    let out = node.peapod(&["delete", "pod", &name]).ok();
    assert_eq!(out.stdout.trim(), format!("pod \"{name}\" deleted"));
    assert!(
        node.pod(&name).is_none(),
        "delete waits until the pod is gone"
    );
    let missing = node.peapod(&["get", "pod", &name]);
    assert!(!missing.success());
    assert_eq!(
        missing.stderr.trim(),
        format!("Error from server (NotFound): pods \"{name}\" not found")
    );
    let again = node
        .peapod(&["delete", "pod", &name, "--ignore-not-found"])
        .ok();
    assert_eq!(
        again.stdout, "",
        "--ignore-not-found: nothing to delete, no error"
    );
    assert!(
        !Path::new("/run/netns").join(&sandbox).exists(),
        "netns pin"
    );
    assert!(!sandbox_dir.exists(), "sandbox state");
    assert!(!node.log_dir().join(&sandbox).exists(), "log dir");
    let links = node.host_sh("ip -o link show").unwrap();
    assert!(!links.contains("veth"), "no veth left: {links}");
    let ipam = fs::read_dir(node.path("ipam/peapod"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("10.88."))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(ipam, 0, "the IP allocation is released");
    let nat = node.host_sh("iptables -t nat -S").unwrap();
    assert!(!nat.contains(&sandbox), "no masquerade rule left: {nat}");
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    for id in &bundles {
        assert!(!mounts.contains(id.as_str()), "overlay of {id} unmounted");
        assert!(
            !node.path("run").join(id).exists(),
            "runtime state of {id} removed"
        );
    }
    let pod_cgroup_left = fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .any(|hierarchy| {
            hierarchy
                .path()
                .join(node.cgroup_root().strip_prefix("/").unwrap())
                .join("kubepods/besteffort")
                .join(format!("pod{uid}"))
                .exists()
        });
    assert!(!pod_cgroup_left, "the pod cgroup is removed");
}

#[test]
fn a_broken_manifest_is_reported_by_file_and_field_while_good_pods_run() {
    let node = Kubelet::start();
    node.write_manifest("good.yaml", &web_pod("good"));
    node.write_manifest(
        "broken.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: broken\nspec:\n  containers:\n  - name: c\n    image: {BUSYBOX}\n    ports:\n    - containerPort: notaport\n"
        ),
    );
    node.wait_pod(
        &format!("good-{}", node.node_name()),
        Duration::from_secs(10),
        running,
    );
    let reported = wait_until(Duration::from_secs(10), || {
        let log = node.log();
        log.contains("broken.yaml") && log.contains("containerPort")
    });
    assert!(reported, "the error names file and field: {}", node.log());
    assert!(node.pod(&format!("broken-{}", node.node_name())).is_none());
    assert_eq!(node.pods().len(), 1);
}

#[test]
fn init_containers_run_in_order_before_the_app_and_crashes_restart_with_back_off() {
    let node = Kubelet::start();
    node.write_manifest(
        "jobs.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: ordered}}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{{name: shared, emptyDir: {{}}}}]
  initContainers:
  - {{name: first, image: "{BUSYBOX}", imagePullPolicy: Never, command: ["sh", "-c", "echo first >> /shared/order"], volumeMounts: [{{name: shared, mountPath: /shared}}]}}
  - {{name: second, image: "{BUSYBOX}", imagePullPolicy: Never, command: ["sh", "-c", "echo second >> /shared/order"], volumeMounts: [{{name: shared, mountPath: /shared}}]}}
  containers:
  - {{name: app, image: "{BUSYBOX}", imagePullPolicy: Never, command: ["sh", "-c", "cat /shared/order; echo app >> /shared/order; exit 3"], volumeMounts: [{{name: shared, mountPath: /shared}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: once}}
spec:
  restartPolicy: Never
  containers:
  - {{name: job, image: "{BUSYBOX}", imagePullPolicy: Never, command: ["sh", "-c", "exit 0"]}}
"#
        ),
    );
    let name = format!("ordered-{}", node.node_name());
    let pod = node.wait_pod(&name, Duration::from_secs(20), |p| {
        container_status(p, "app")["restartCount"].as_i64() >= Some(1)
    });
    let app = container_status(&pod, "app");
    assert_eq!(app["lastState"]["terminated"]["exitCode"], 3);
    assert_eq!(app["lastState"]["terminated"]["reason"], "Error");
    let inits = pod["status"]["initContainerStatuses"].as_array().unwrap();
    for init in inits {
        assert_eq!(init["state"]["terminated"]["exitCode"], 0, "{init}");
        assert_eq!(init["state"]["terminated"]["reason"], "Completed");
    }
    assert!(
        log_of(&node, &pod, "app").contains("stdout F first\n")
            && log_of(&node, &pod, "app").contains("stdout F second\n"),
        "init containers ran in order, before the app: {}",
        log_of(&node, &pod, "app")
    );
    // After the immediate first restart the next one waits: CrashLoopBackOff.
    let pod = node.wait_pod(&name, Duration::from_secs(10), |p| {
        container_status(p, "app")["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    assert_eq!(phase(&pod), "Running", "Always restarts: still Running");

    let once = node.wait_pod(
        &format!("once-{}", node.node_name()),
        Duration::from_secs(10),
        |p| phase(p) == "Succeeded",
    );
    assert_eq!(
        container_status(&once, "job")["state"]["terminated"]["reason"],
        "Completed"
    );
}

#[test]
fn a_restarted_kubelet_adopts_its_running_pods() {
    let mut node = Kubelet::start();
    node.write_manifest("web.yaml", &web_pod("web"));
    let name = format!("web-{}", node.node_name());
    let before = node.wait_pod(&name, Duration::from_secs(10), running);
    node.stop();
    node.restart();
    let after = node.wait_pod(&name, Duration::from_secs(10), running);
    for c in ["web", "sidecar"] {
        assert_eq!(
            container_status(&before, c)["containerID"],
            container_status(&after, c)["containerID"],
            "{c} kept running across the kubelet restart"
        );
        assert_eq!(container_status(&after, c)["restartCount"], 0);
    }
    assert_eq!(before["status"]["podIP"], after["status"]["podIP"]);
    assert_eq!(
        before["status"]["startTime"], after["status"]["startTime"],
        "the pod's start time is its sandbox's, not the new kubelet's"
    );
    let ip = after["status"]["podIP"].as_str().unwrap();
    node.http_get(ip, 8080).expect("the pod still serves");
}
