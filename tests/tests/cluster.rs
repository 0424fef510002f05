//! A node joining a control plane (issue 7): `peapod-kubelet --kubeconfig` against the
//! test API server (`peapod_tests::apiserver`, a test double following the real API's
//! semantics), driven by the real `kubectl`: registration and lease, a pod bound to the
//! node run and reported, `kubectl get/logs/exec/port-forward` through the API server's
//! proxy to the kubelet API (TLS, client certificates), graceful deletion, an API server
//! restart mid-watch, and the kubelet API refusing strangers.
//!
//! Everything listens on loopback: the API server, the kubelet API, port-forwards.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use peapod_tests::apiserver::ApiServer;
use peapod_tests::host::wait_until;
use peapod_tests::kubelet::{http_get, phase, Kubelet, BUSYBOX};

const LONG: Duration = Duration::from_secs(60);

/// A free TCP port on loopback (bound, then released for the kubelet to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A kubelet joined to `api` as `system:node:pp-node`: node IP and kubelet API on
/// loopback, the API server's CA trusted for client certificates, a lease renewed every
/// second and the status looked at every second.
fn join(api: &ApiServer) -> (Kubelet, u16) {
    let port = free_port();
    let config = api.pki().dir().join("kubelet.yaml");
    std::fs::write(
        &config,
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
         nodeLeaseDurationSeconds: 4\nnodeStatusUpdateFrequency: 1s\n",
    )
    .expect("writing the kubelet config");
    api.add_token("node-token", "system:node:pp-node", &["system:nodes"]);
    let kubeconfig = api.kubeconfig("node-token");
    let port_text = port.to_string();
    let kubelet = Kubelet::start_with_args(&[
        "--config",
        config.to_str().unwrap(),
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--node-ip",
        "127.0.0.1",
        "--address",
        "127.0.0.1",
        "--port",
        &port_text,
        "--client-ca-file",
        api.pki().ca_path().to_str().unwrap(),
    ]);
    (kubelet, port)
}

/// A busybox web server bound to `node`, ready once it listens; says goodbye on SIGTERM.
fn web_pod(name: &str, node: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: default
  labels: {{app: web}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 10
  containers:
  - name: web
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: ["sh", "-c", "echo hello from $(hostname); mkdir -p /www; echo page-of-{name} > /www/index.html; httpd -f -p 8080 -h /www & pid=$!; trap 'echo got-term; kill $pid; exit 0' TERM; wait"]
    readinessProbe:
      tcpSocket: {{port: 8080}}
      periodSeconds: 1
"#
    )
}

fn pod_path(name: &str) -> String {
    format!("/api/v1/namespaces/default/pods/{name}")
}

/// Waits until the API's copy of pod `name` is Running and Ready; returns it.
#[track_caller]
fn wait_ready(api: &ApiServer, kubelet: &Kubelet, name: &str) -> Value {
    let ready = |p: Option<&Value>| {
        p.is_some_and(|p| {
            phase(p) == "Running"
                && p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    };
    api.wait_for(&pod_path(name), LONG, ready)
        .unwrap_or_else(|| {
            panic!(
                "pod {name} not Running/Ready in the API: {:#}\nkubelet log:\n{}",
                api.pod("default", name).unwrap_or_default(),
                kubelet.log()
            )
        })
}

#[track_caller]
fn kubectl_ok(api: &ApiServer, args: &[&str]) -> String {
    let out = api.kubectl(args);
    assert!(out.status.success(), "kubectl {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubectl port-forward pod/NAME :8080` (websocket or SPDY as `env` says): the child
/// and the local port it chose.
fn port_forward(api: &ApiServer, name: &str, env: &[(&str, &str)]) -> (Child, u16) {
    let target = format!("pod/{name}");
    let mut command = api.kubectl_command(&["port-forward", &target, ":8080", "-v=6"]);
    let errors = std::fs::File::create(api.pki().dir().join("port-forward.err")).expect("a log");
    command
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(errors);
    let mut child = command.spawn().expect("kubectl port-forward");
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().expect("its stdout"));
    stdout.read_line(&mut line).expect("kubectl's first line");
    // kubectl goes on writing ("Forwarding from [::1]:..", "Handling connection for .."):
    // its stdout must stay open and drained, or it dies of a broken pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    // "Forwarding from 127.0.0.1:41234 -> 8080"
    let port = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no local port in {line:?}"));
    (child, port)
}

/// The journey of a node in a cluster, through the real kubectl.
#[test]
fn node_joins_runs_a_pod_and_serves_kubectl() {
    let mut api = ApiServer::start();
    let (kubelet, _) = join(&api);
    let node = kubelet.node_name().to_string();

    // Registered, Ready, with the node's facts; the lease is renewed.
    let registered = api
        .wait_for(&format!("/api/v1/nodes/{node}"), LONG, |n| {
            n.is_some_and(|n| {
                n["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .unwrap_or_else(|| panic!("node not Ready: {:?}\n{}", api.node(&node), kubelet.log()));
    assert_eq!(
        registered["metadata"]["labels"]["kubernetes.io/hostname"],
        node
    );
    assert_eq!(
        registered["metadata"]["labels"]["kubernetes.io/os"],
        "linux"
    );
    let info = &registered["status"]["nodeInfo"];
    assert!(
        info["containerRuntimeVersion"]
            .as_str()
            .unwrap_or_default()
            .starts_with("peapod://"),
        "{info}"
    );
    assert!(registered["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|a| a["type"] == "InternalIP" && a["address"] == "127.0.0.1"));
    for resource in ["cpu", "memory", "pods", "ephemeral-storage"] {
        assert!(
            registered["status"]["allocatable"][resource].is_string(),
            "{resource}"
        );
    }
    // The lease follows the registration (it names the Node as its owner).
    let lease = api
        .wait_for(
            &format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}"),
            LONG,
            |l| l.is_some(),
        )
        .unwrap_or_else(|| panic!("no node lease:\n{}", kubelet.log()));
    let first_renew = lease["spec"]["renewTime"].clone();
    assert_eq!(lease["spec"]["holderIdentity"], node);
    assert!(
        wait_until(Duration::from_secs(10), || api
            .lease(&node)
            .is_some_and(|l| l["spec"]["renewTime"] != first_renew)),
        "the lease was not renewed: {first_renew}"
    );
    let nodes = kubectl_ok(&api, &["get", "nodes"]);
    assert!(
        nodes
            .lines()
            .any(|l| l.starts_with(&node) && l.contains(" Ready")),
        "{nodes}"
    );

    // A pod bound to the node runs and is reported Running/Ready with its IP.
    let created = api
        .create(&web_pod("web", &node))
        .expect("creating the pod");
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    let pod = wait_ready(&api, &kubelet, "web");
    let ip = pod["status"]["podIP"]
        .as_str()
        .expect("a pod IP")
        .to_string();
    assert!(ip.starts_with("10.88."), "{ip}");
    assert_eq!(pod["status"]["hostIP"], "127.0.0.1");
    let web = &pod["status"]["containerStatuses"][0];
    assert!(
        web["containerID"]
            .as_str()
            .unwrap_or_default()
            .starts_with("peapod://"),
        "{web}"
    );
    assert_eq!(web["ready"], true);
    assert_eq!(kubelet.http_get(&ip, 8080).as_deref(), Ok("page-of-web\n"));
    let wide = kubectl_ok(&api, &["get", "pods", "-o", "wide"]);
    let row = wide
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_else(|| panic!("{wide}"));
    for expected in ["1/1", "Running", ip.as_str(), node.as_str()] {
        assert!(row.contains(expected), "{expected} missing in {row:?}");
    }
    // The kubelet's events reached the API server.
    assert!(
        wait_until(Duration::from_secs(10), || api
            .events("default")
            .iter()
            .any(
                |e| e["involvedObject"]["name"] == "web" && e["reason"] == "Started"
            )),
        "no Started event posted: {:?}",
        api.events("default")
    );

    // logs, exec and port-forward through the API server's proxy to the kubelet API.
    let logs = kubectl_ok(&api, &["logs", "web"]);
    assert!(logs.contains("hello from web"), "{logs}");
    assert_eq!(
        kubectl_ok(&api, &["exec", "web", "--", "hostname"]).trim(),
        "web"
    );
    let spdy = [
        ("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false"),
        ("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false"),
    ];
    let mut exec =
        api.kubectl_command(&["exec", "web", "--", "sh", "-c", "echo over-spdy; exit 3"]);
    exec.envs(spdy);
    let out = exec.output().expect("kubectl exec over SPDY");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "over-spdy",
        "{out:?}"
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    for env in [&[][..], &spdy[..]] {
        let (mut child, local) = port_forward(&api, "web", env);
        let page = http_get(&format!("127.0.0.1:{local}"));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            page.as_deref(),
            Ok("page-of-web\n"),
            "port-forward with {env:?}: {}\nkubelet log:\n{}",
            std::fs::read_to_string(api.pki().dir().join("port-forward.err")).unwrap_or_default(),
            kubelet.log()
        );
    }

    // The service account's token, namespace and CA are projected into the pod, as the
    // API server's admission asks (TokenRequest bound to the pod, kube-root-ca.crt).
    let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    let files = kubectl_ok(
        &api,
        &[
            "exec",
            "web",
            "--",
            "sh",
            "-c",
            &format!("cat {sa}/namespace; echo; wc -c < {sa}/token; head -1 {sa}/ca.crt"),
        ],
    );
    let lines: Vec<&str> = files.lines().collect();
    assert_eq!(lines.first(), Some(&"default"), "{files}");
    assert!(
        lines
            .get(1)
            .and_then(|n| n.trim().parse::<usize>().ok())
            .is_some_and(|n| n > 20),
        "{files}"
    );
    assert_eq!(
        lines.get(2),
        Some(&"-----BEGIN CERTIFICATE-----"),
        "{files}"
    );

    // A configMap volume follows the object: a new value appears in the mounted file.
    api.create("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: colour, namespace: default}\ndata: {mode: blue}\n")
        .expect("creating the configMap");
    api.create(&config_pod("reader", &node))
        .expect("creating the reader pod");
    wait_ready(&api, &kubelet, "reader");
    let mode = || kubectl_ok(&api, &["exec", "reader", "--", "cat", "/cfg/mode"]);
    assert_eq!(mode(), "blue");
    kubectl_ok(
        &api,
        &[
            "patch",
            "configmap",
            "colour",
            "-p",
            r#"{"data":{"mode":"green"}}"#,
        ],
    );
    assert!(
        wait_until(LONG, || mode() == "green"),
        "the volume kept {:?}",
        mode()
    );

    // A static pod from the manifests folder shows as a mirror pod.
    kubelet.write_manifest("static.yaml", &format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: static, namespace: default}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: {BUSYBOX}, imagePullPolicy: Never, command: [sleep, '3600']}}\n"
    ));
    let mirror = format!("static-{node}");
    let shown = api
        .wait_for(&pod_path(&mirror), LONG, |p| {
            p.is_some_and(|p| phase(p) == "Running")
        })
        .unwrap_or_else(|| {
            panic!(
                "no running mirror pod: {:?}\n{}",
                api.pod("default", &mirror),
                kubelet.log()
            )
        });
    assert!(
        shown["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string(),
        "{shown}"
    );
    // The CLI on the node lists API pods and static pods alike.
    let local = kubelet.peapod(&["get", "pods"]);
    for name in ["web", "reader", mirror.as_str()] {
        assert!(
            local.stdout.contains(name),
            "peapod get pods lacks {name}: {}",
            local.stdout
        );
    }
    std::fs::remove_file(kubelet.manifests().join("static.yaml")).expect("removing the manifest");
    assert!(
        api.wait_gone(&pod_path(&mirror), LONG),
        "the mirror pod stayed"
    );

    // A pod that does not fit is rejected as upstream's admission does.
    api.create(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: huge, namespace: default}}\nspec:\n  nodeName: {node}\n  containers:\n  - name: c\n    image: {BUSYBOX}\n    imagePullPolicy: Never\n    resources: {{requests: {{cpu: '1000'}}}}\n"
    ))
    .expect("creating the huge pod");
    let huge = api
        .wait_for(&pod_path("huge"), LONG, |p| {
            p.is_some_and(|p| phase(p) == "Failed")
        })
        .unwrap_or_else(|| panic!("huge was not rejected: {:?}", api.pod("default", "huge")));
    assert_eq!(huge["status"]["reason"], "OutOfcpu", "{huge}");
    api.delete(&pod_path("huge"), Some(0))
        .expect("deleting the huge pod");

    // The API server goes away mid-watch; while it is down a pod is bound to the node and
    // the event log is compacted, so the kubelet's watch cannot resume: it relists.
    api.stop();
    api.create(&web_pod("web2", &node))
        .expect("creating a second pod");
    api.compact();
    api.resume();
    wait_ready(&api, &kubelet, "web2");
    api.restart();
    kubectl_ok(
        &api,
        &[
            "delete",
            "pod",
            "web2",
            "reader",
            "--wait=true",
            "--timeout=60s",
        ],
    );

    // Deleting stops the pod gracefully (its SIGTERM trap runs, seen by a following
    // `kubectl logs -f`), then the kubelet removes the object by UID.
    let mut follow = api.kubectl_command(&["logs", "-f", "web"]);
    let mut follow = follow
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl logs -f");
    std::thread::sleep(Duration::from_millis(500));
    kubectl_ok(
        &api,
        &["delete", "pod", "web", "--wait=true", "--timeout=60s"],
    );
    assert!(api.pod("default", "web").is_none());
    let ended = wait_until(LONG, || matches!(follow.try_wait(), Ok(Some(_))));
    if !ended {
        let _ = follow.kill();
    }
    let followed = follow.wait_with_output().expect("kubectl logs -f");
    assert!(
        ended,
        "kubectl logs -f went on after the container ended: {followed:?}"
    );
    assert!(
        String::from_utf8_lossy(&followed.stdout).contains("got-term"),
        "{followed:?}"
    );
    assert!(
        wait_until(LONG, || kubelet
            .pods()
            .iter()
            .all(|p| p["metadata"]["uid"] != uid.as_str())),
        "the kubelet still runs the deleted pod"
    );
    assert!(
        api.events("default")
            .iter()
            .any(|e| e["involvedObject"]["name"] == "web" && e["reason"] == "Killing"),
        "no Killing event posted"
    );
    assert!(
        wait_until(LONG, || kubelet.empty()),
        "pods left: {:?}",
        kubelet.pods()
    );
}

/// A pod mounting configMap `colour` at /cfg, bound to `node`.
fn config_pod(name: &str, node: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    volumeMounts: [{{name: cfg, mountPath: /cfg}}]
  volumes:
  - name: cfg
    configMap: {{name: colour}}
"#
    )
}

/// The kubelet API answers only those the API server vouches for.
#[test]
fn kubelet_api_refuses_strangers() {
    let api = ApiServer::start();
    let (kubelet, port) = join(&api);
    let node = kubelet.node_name().to_string();
    api.create(&web_pod("guarded", &node))
        .expect("creating the pod");
    wait_ready(&api, &kubelet, "guarded");
    let url =
        format!("https://127.0.0.1:{port}/exec/default/guarded/web?command=hostname&output=1");
    let curl = |extra: &[&str]| -> String {
        let out = std::process::Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
            .args(extra)
            .arg(&url)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // No credentials: unauthenticated.
    assert_eq!(curl(&[]), "401");
    // A token the API server knows, for a user it denies: forbidden.
    api.add_token("eve-token", "eve", &["developers"]);
    api.deny("eve");
    assert_eq!(curl(&["-H", "Authorization: Bearer eve-token"]), "403");
    // A client certificate from another CA: not trusted.
    let other = peapod_tests::pki::Pki::new().expect("another CA");
    let stranger = other
        .client_cert("mallory", &["system:masters"])
        .expect("a cert");
    let code = curl(&[
        "--cert",
        stranger.cert_path.to_str().unwrap(),
        "--key",
        stranger.key_path.to_str().unwrap(),
    ]);
    assert!(
        code == "401" || code == "000",
        "a foreign certificate got {code}"
    );
    // The API server's own kubelet-client certificate passes authn and authz (400:
    // the exec request itself lacks an upgrade).
    let client = api.pki().kubelet_client();
    let code = curl(&[
        "--cert",
        client.cert_path.to_str().unwrap(),
        "--key",
        client.key_path.to_str().unwrap(),
    ]);
    assert!(
        code != "401" && code != "403",
        "the kubelet-client cert got {code}"
    );
    api.delete(&pod_path("guarded"), None)
        .expect("deleting the pod");
    assert!(
        api.wait_gone(&pod_path("guarded"), LONG),
        "{}",
        kubelet.log()
    );
}
