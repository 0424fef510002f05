//! Pod volumes end to end: emptyDir (shared with an init container, memory-backed with
//! a size), hostPath with every type check, downwardAPI files and env values, subPath,
//! readOnly, and configMaps on a node without an API server.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use serde_json::Value;

use peapod_tests::host::wait_until;
use peapod_tests::kubelet::{running, Kubelet, BUSYBOX};

const SLEEPER: &str = r#"["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]"#;

/// `sh -c SCRIPT` in the pod's container: its stdout, asserting success.
#[track_caller]
fn exec(node: &Kubelet, pod: &str, script: &str) -> String {
    node.peapod(&["exec", pod, "-c", "main", "--", "sh", "-c", script])
        .ok()
        .stdout
}

/// The pod's events as (reason, message).
fn events(node: &Kubelet, pod: &str) -> Vec<(String, String)> {
    let body = node.events(pod);
    let list: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_string(),
                e["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn waiting(pod: &Value) -> (String, String) {
    let w = &pod["status"]["containerStatuses"][0]["state"]["waiting"];
    (
        w["reason"].as_str().unwrap_or_default().to_string(),
        w["message"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn an_init_container_prepares_a_shared_empty_dir_and_memory_volumes_are_sized_tmpfs() {
    let node = Kubelet::start();
    let name = format!("shared-{}", node.node_name());
    node.write_manifest(
        "shared.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: shared}}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {{fsGroup: 2000}}
  initContainers:
  - name: prepare
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: ["sh", "-c", "mkdir /work/data && echo hi > /work/data/file && chown -R 1234:1234 /work/data && mkdir /work/sub && echo subfile > /work/sub/f"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  containers:
  - name: main
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: {SLEEPER}
    env: [{{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}]
    volumeMounts:
    - {{name: work, mountPath: /work}}
    - {{name: work, mountPath: /ro, readOnly: true}}
    - {{name: work, mountPath: /sub, subPath: sub}}
    - {{name: work, mountPath: /expr, subPathExpr: "$(POD_NAME)"}}
    - {{name: mem, mountPath: /mem}}
  volumes:
  - {{name: work, emptyDir: {{}}}}
  - {{name: mem, emptyDir: {{medium: Memory, sizeLimit: 8Mi}}}}
"#
        ),
    );
    node.wait_pod(&name, Duration::from_secs(20), running);
    assert_eq!(
        exec(
            &node,
            &name,
            "stat -c %u:%g /work/data; cat /work/data/file"
        )
        .trim(),
        "1234:1234\nhi",
        "the main container sees what the init container made, with its owner"
    );
    assert_eq!(
        exec(&node, &name, "stat -c '%g %a' /work").trim(),
        "2000 2777",
        "fsGroup owns the emptyDir: group 2000, setgid, 0777"
    );
    let mounts = exec(&node, &name, "grep ' /mem ' /proc/mounts");
    assert!(
        mounts.starts_with("tmpfs /mem tmpfs") && mounts.contains("size=8192k"),
        "medium Memory is a tmpfs of sizeLimit: {mounts}"
    );
    let ro = node.peapod(&["exec", &name, "-c", "main", "--", "touch", "/ro/x"]);
    assert_ne!(ro.code, 0, "a readOnly mount refuses writes: {ro}");
    assert!(ro.stderr.contains("Read-only file system"), "{ro}");
    assert_eq!(exec(&node, &name, "cat /sub/f").trim(), "subfile");
    exec(&node, &name, "touch /expr/made");
    assert_eq!(
        exec(&node, &name, &format!("ls /work/{name}")).trim(),
        "made",
        "subPathExpr expands the container's env"
    );
    // The tmpfs goes with the pod.
    let pod_dirs = node.path("images/pods");
    fs::remove_file(node.manifests().join("shared.yaml")).unwrap();
    assert!(wait_until(Duration::from_secs(15), || node.empty()));
    let mounted = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounted.contains(pod_dirs.to_str().unwrap()),
        "no mount is left under the pods dir: {mounted}"
    );
    assert!(fs::read_dir(&pod_dirs).map_or(true, |mut d| d.next().is_none()));
}

#[test]
fn downward_api_files_and_env_values() {
    let node = Kubelet::start();
    let name = format!("downward-{}", node.node_name());
    node.write_manifest(
        "downward.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: downward
  labels: {{app: demo, tier: back}}
  annotations: {{note: hello}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: {SLEEPER}
    resources: {{limits: {{cpu: 250m, memory: 64Mi}}}}
    env:
    - {{name: MY_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
    - {{name: MY_NS, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}
    - {{name: MY_UID, valueFrom: {{fieldRef: {{fieldPath: metadata.uid}}}}}}
    - {{name: MY_APP, valueFrom: {{fieldRef: {{fieldPath: "metadata.labels['app']"}}}}}}
    - {{name: MY_NOTE, valueFrom: {{fieldRef: {{fieldPath: "metadata.annotations['note']"}}}}}}
    - {{name: MY_NODE, valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}}}
    - {{name: MY_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
    - {{name: MY_CPU, valueFrom: {{resourceFieldRef: {{resource: limits.cpu, divisor: 1m}}}}}}
    - {{name: MY_CPU_CORES, valueFrom: {{resourceFieldRef: {{resource: limits.cpu}}}}}}
    - {{name: MY_MEM, valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}}}
    - {{name: MAYBE, valueFrom: {{configMapKeyRef: {{name: absent, key: k, optional: true}}}}}}
    - {{name: COMBINED, value: "$(MY_APP)-x"}}
    volumeMounts:
    - {{name: info, mountPath: /info}}
    - {{name: maybe, mountPath: /maybe}}
    - {{name: sec, mountPath: /sec}}
  volumes:
  - name: info
    downwardAPI:
      items:
      - {{path: name, fieldRef: {{fieldPath: metadata.name}}}}
      - {{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}
      - {{path: sub/app, fieldRef: {{fieldPath: "metadata.labels['app']"}}, mode: 384}}
      - {{path: cpu, resourceFieldRef: {{containerName: main, resource: limits.cpu, divisor: 1m}}}}
  - name: maybe
    configMap: {{name: absent, optional: true}}
  - name: sec
    secret: {{secretName: absent, optional: true}}
"#
        ),
    );
    let pod = node.wait_pod(&name, Duration::from_secs(20), running);
    let env = exec(&node, &name, "env");
    let var = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_string)
    };
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let ip = pod["status"]["podIP"].as_str().unwrap();
    assert_eq!(var("MY_NAME").as_deref(), Some(name.as_str()), "{env}");
    assert_eq!(var("MY_NS").as_deref(), Some("default"));
    assert_eq!(var("MY_UID").as_deref(), Some(uid));
    assert_eq!(var("MY_APP").as_deref(), Some("demo"));
    assert_eq!(var("MY_NOTE").as_deref(), Some("hello"));
    assert_eq!(var("MY_NODE").as_deref(), Some(node.node_name()));
    assert_eq!(var("MY_IP").as_deref(), Some(ip));
    assert_eq!(var("MY_CPU").as_deref(), Some("250"));
    assert_eq!(var("MY_CPU_CORES").as_deref(), Some("1"), "250m rounds up");
    assert_eq!(var("MY_MEM").as_deref(), Some("64"));
    assert_eq!(
        var("MAYBE"),
        None,
        "an optional missing configMap sets nothing"
    );
    assert_eq!(var("COMBINED").as_deref(), Some("demo-x"));

    let files = exec(
        &node,
        &name,
        "cat /info/name; echo; cat /info/labels; echo; cat /info/sub/app; echo; cat /info/cpu; echo; stat -c %a /info/..data/sub/app; readlink /info/name",
    );
    assert_eq!(
        files.trim(),
        format!("{name}\napp=\"demo\"\ntier=\"back\"\ndemo\n250\n600\n..data/name")
    );
    assert_eq!(
        exec(&node, &name, "ls /maybe | wc -l").trim(),
        "0",
        "an optional missing configMap is an empty volume"
    );
    let sec = exec(&node, &name, "grep ' /sec ' /proc/mounts");
    assert!(
        sec.starts_with("tmpfs /sec tmpfs"),
        "secrets live on tmpfs: {sec}"
    );
    let ro = node.peapod(&["exec", &name, "-c", "main", "--", "touch", "/info/x"]);
    assert_ne!(ro.code, 0, "API data volumes are read-only: {ro}");
}

#[test]
fn host_path_types_are_checked_and_missing_config_maps_fail_as_upstream() {
    let node = Kubelet::start();
    let host = node.path("host");
    fs::create_dir(&host).unwrap();
    let file = host.join("file");
    fs::write(&file, "from the host").unwrap();
    let socket = host.join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let h = host.display();
    let f = file.display();
    let s = socket.display();
    let pod = |name: &str, volumes: &str, mounts: &str, env: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: {SLEEPER}
    volumeMounts: {mounts}
    env: {env}
  volumes: {volumes}
"#
        )
    };
    node.write_manifest(
        "good.yaml",
        &pod(
            "good",
            &format!(
                "[{{name: d, hostPath: {{path: {h}, type: Directory}}}},
                  {{name: dc, hostPath: {{path: {h}/new/deeper, type: DirectoryOrCreate}}}},
                  {{name: f, hostPath: {{path: {f}, type: File}}}},
                  {{name: fc, hostPath: {{path: {h}/created, type: FileOrCreate}}}},
                  {{name: s, hostPath: {{path: {s}, type: Socket}}}},
                  {{name: c, hostPath: {{path: /dev/null, type: CharDevice}}}},
                  {{name: any, hostPath: {{path: {h}}}}}]"
            ),
            "[{name: d, mountPath: /d}, {name: dc, mountPath: /dc}, {name: f, mountPath: /f},
              {name: fc, mountPath: /fc}, {name: s, mountPath: /s}, {name: c, mountPath: /c},
              {name: any, mountPath: /any}]",
            "[]",
        ),
    );
    node.write_manifest(
        "bad.yaml",
        &pod(
            "bad",
            &format!("[{{name: bad, hostPath: {{path: {f}, type: Directory}}}}]"),
            "[{name: bad, mountPath: /bad}]",
            "[]",
        ),
    );
    node.write_manifest(
        "cm.yaml",
        &pod(
            "cm",
            "[{name: cfg, configMap: {name: absent}}]",
            "[{name: cfg, mountPath: /cfg}]",
            "[]",
        ),
    );
    node.write_manifest(
        "cmenv.yaml",
        &pod(
            "cmenv",
            "[]",
            "[]",
            "[{name: X, valueFrom: {configMapKeyRef: {name: absent, key: k}}}]",
        ),
    );
    let suffix = node.node_name().to_string();
    let good = format!("good-{suffix}");
    node.wait_pod(&good, Duration::from_secs(20), running);
    assert_eq!(
        exec(
            &node,
            &good,
            "cat /f; echo; test -d /d && test -d /dc && test -f /fc && test -S /s && test -c /c && ls /any | sort | tr '\\n' ' '"
        )
        .trim(),
        "from the host\ncreated file new sock"
    );
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&host.join("new/deeper")),
        0o755,
        "DirectoryOrCreate makes 0755"
    );
    assert_eq!(
        mode(&host.join("created")),
        0o644,
        "FileOrCreate makes 0644"
    );

    for (pod, volume, message) in [
        (
            format!("bad-{suffix}"),
            "bad",
            format!("hostPath type check failed: {f} is not a directory"),
        ),
        (
            format!("cm-{suffix}"),
            "cfg",
            "configmap \"absent\" not found".to_string(),
        ),
    ] {
        let status = node.wait_pod(&pod, Duration::from_secs(15), |p| {
            waiting(p).0 == "ContainerCreating" && !waiting(p).1.is_empty()
        });
        assert_eq!(status["status"]["phase"], "Pending");
        let wanted = format!("MountVolume.SetUp failed for volume \"{volume}\" : {message}");
        assert_eq!(waiting(&status).1, wanted);
        let evs = events(&node, &pod);
        assert!(
            evs.iter().any(|(r, m)| r == "FailedMount" && *m == wanted),
            "a FailedMount event: {evs:?}"
        );
    }
    let cmenv = format!("cmenv-{suffix}");
    let status = node.wait_pod(&cmenv, Duration::from_secs(15), |p| {
        waiting(p).0 == "CreateContainerConfigError"
    });
    assert_eq!(waiting(&status).1, "configmap \"absent\" not found");
}
