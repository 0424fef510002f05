//! Parsing, validation, defaulting and UID stability of one manifest file.

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;

use super::identity::{CONFIG_HASH, CONFIG_SOURCE};
use super::manifest::{parse, ManifestError};

const NODE: &str = "node1";

const WEB: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: httpd
    image: busybox:1.36
    ports:
    - containerPort: 8080
";

fn parse_str(text: &str) -> Result<Vec<Pod>, ManifestError> {
    parse(Path::new("pods/web.yaml"), text.as_bytes(), NODE)
}

fn error(text: &str) -> String {
    match parse_str(text) {
        Ok(pods) => panic!("expected an error, got {} pods", pods.len()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_pod_gets_the_api_server_defaults() {
    let pods = parse_str(WEB).expect("valid manifest");
    let pod = &pods[0];
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    let c = &spec.containers[0];
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(
        c.termination_message_path.as_deref(),
        Some("/dev/termination-log")
    );
    assert_eq!(c.termination_message_policy.as_deref(), Some("File"));
    assert_eq!(
        c.ports.as_ref().unwrap()[0].protocol.as_deref(),
        Some("TCP")
    );
}

#[test]
fn what_the_user_wrote_wins_over_defaults() {
    let text = WEB
        .replace("spec:\n", "spec:\n  restartPolicy: Never\n")
        .replace(
            "image: busybox:1.36",
            "image: busybox\n    imagePullPolicy: Never",
        );
    let pods = parse_str(&text).expect("valid manifest");
    let spec = pods[0].spec.as_ref().unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(
        spec.containers[0].image_pull_policy.as_deref(),
        Some("Never")
    );
}

#[test]
fn a_static_pod_gets_its_identity() {
    let pod = &parse_str(WEB).unwrap()[0];
    assert_eq!(pod.metadata.name.as_deref(), Some("web-node1"));
    let uid = pod.metadata.uid.as_deref().unwrap();
    assert_eq!(uid.len(), 32);
    let annotations = pod.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations[CONFIG_SOURCE], "file");
    assert_eq!(annotations[CONFIG_HASH], uid);
    assert_eq!(pod.spec.as_ref().unwrap().node_name.as_deref(), Some(NODE));
}

#[test]
fn the_uid_is_stable_and_follows_content_file_and_node() {
    let uid = |text: &str, file: &str, node: &str| {
        parse(Path::new(file), text.as_bytes(), node).unwrap()[0]
            .metadata
            .uid
            .clone()
            .unwrap()
    };
    let base = uid(WEB, "pods/web.yaml", NODE);
    assert_eq!(
        base,
        uid(WEB, "pods/web.yaml", NODE),
        "same input, same UID"
    );
    let reformatted = format!(
        "# a comment\n{}",
        WEB.replace("name: web\n", "name:   web  \n")
    );
    assert_eq!(
        base,
        uid(&reformatted, "pods/web.yaml", NODE),
        "comments and spacing do not count"
    );
    assert_ne!(
        base,
        uid(&WEB.replace("8080", "8081"), "pods/web.yaml", NODE),
        "content counts"
    );
    assert_ne!(base, uid(WEB, "pods/other.yaml", NODE), "the file counts");
    assert_ne!(base, uid(WEB, "pods/web.yaml", "node2"), "the node counts");
}

#[test]
fn json_and_several_yaml_documents_are_read() {
    let json = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#;
    let pods = parse(Path::new("pods/j.json"), json.as_bytes(), NODE).expect("valid JSON");
    assert_eq!(pods[0].metadata.name.as_deref(), Some("j-node1"));
    let two = format!(
        "---\n{WEB}---\n{}\n---\n",
        WEB.replace("name: web", "name: api")
    );
    let names: Vec<_> = parse_str(&two)
        .unwrap()
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    assert_eq!(names, ["web-node1", "api-node1"]);
}

#[test]
fn a_type_error_names_file_document_and_field() {
    let text = format!(
        "{WEB}---\n{}",
        WEB.replace("containerPort: 8080", "containerPort: http")
    );
    assert_eq!(
        error(&text),
        "pods/web.yaml: document 2: spec.containers[0].ports[0].containerPort: invalid type: string \"http\", expected i32"
    );
}

#[test]
fn other_kinds_and_versions_are_refused_clearly() {
    let e = error(&WEB.replace("kind: Pod", "kind: Deployment"));
    assert!(
        e.starts_with("pods/web.yaml: document 1: kind: expected \"Pod\", found \"Deployment\""),
        "{e}"
    );
    let e = error(&WEB.replace("apiVersion: v1", "apiVersion: apps/v1"));
    assert!(
        e.contains("apiVersion: expected \"v1\" for kind Pod, found \"apps/v1\""),
        "{e}"
    );
    let e = error(&WEB.replace("kind: Pod\n", ""));
    assert!(e.contains("kind: Required value"), "{e}");
    assert_eq!(
        error("- a\n- b\n"),
        "pods/web.yaml: document 1: expected a Pod object, found a list"
    );
}

#[test]
fn syntax_errors_and_empty_files_are_errors() {
    let e = error("apiVersion: v1\nkind: Pod\nmetadata: [\n");
    assert!(e.starts_with("pods/web.yaml: document 1: "), "{e}");
    assert_eq!(error(""), "pods/web.yaml: no Pod in the file (it is empty)");
    assert_eq!(
        error("---\n---\n"),
        "pods/web.yaml: no Pod in the file (it is empty)"
    );
}

#[test]
fn names_must_be_dns_names() {
    let e = error(&WEB.replace("name: web", "name: Web_1"));
    assert!(
        e.contains("metadata.name: Invalid value: \"Web_1\": a lowercase RFC 1123 subdomain"),
        "{e}"
    );
    let e = error(&WEB.replace("name: httpd", "name: httpd.v2"));
    assert!(
        e.contains(
            "spec.containers[0].name: Invalid value: \"httpd.v2\": a lowercase RFC 1123 label"
        ),
        "{e}"
    );
    let e = error(&WEB.replace("metadata:\n", "metadata:\n  namespace: Kube_System\n"));
    assert!(e.contains("metadata.namespace: Invalid value"), "{e}");
    let e = error(&WEB.replace("  name: web\n", ""));
    assert!(e.contains("metadata.name: Required value"), "{e}");
}

#[test]
fn container_rules_are_checked_together() {
    let text = "\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  restartPolicy: Sometimes
  initContainers:
  - name: web
    image: busybox
  containers:
  - name: web
    image: ''
    ports:
    - containerPort: 70000
      protocol: ICMP
";
    let e = error(text);
    for expected in [
        "spec.restartPolicy: Unsupported value: \"Sometimes\"",
        "spec.containers[0].name: Duplicate value: \"web\"",
        "spec.containers[0].image: Required value",
        "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535",
        "spec.containers[0].ports[0].protocol: Unsupported value: \"ICMP\"",
    ] {
        assert!(e.contains(expected), "missing {expected:?} in {e}");
    }
    let e = error(&WEB.replace("  containers:\n  - name: httpd\n    image: busybox:1.36\n    ports:\n    - containerPort: 8080\n", "  containers: []\n"));
    assert!(
        e.contains("spec.containers: Required value: a Pod needs at least one container"),
        "{e}"
    );
}

#[test]
fn a_pod_twice_in_one_file_is_refused() {
    let e = error(&format!("{WEB}---\n{WEB}"));
    assert_eq!(
        e,
        "pods/web.yaml: pod default/web-node1 is already defined in pods/web.yaml"
    );
}

#[test]
fn yaml_anchors_and_merge_keys_are_applied() {
    let text = "\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - &base {name: a, image: busybox:1.36}
  - <<: *base
    name: b
";
    let pods = parse_str(text).expect("valid manifest");
    let containers = &pods[0].spec.as_ref().unwrap().containers;
    assert_eq!(containers[1].name, "b");
    assert_eq!(containers[1].image.as_deref(), Some("busybox:1.36"));
}

#[test]
fn unknown_fields_are_refused_with_their_path() {
    let text = WEB.replace(
        "image: busybox:1.36",
        "image: busybox:1.36\n    imagePulPolicy: Never",
    );
    assert_eq!(
        error(&text),
        "pods/web.yaml: document 1: spec.containers[0].imagePulPolicy: unknown field: the v1 Pod has no such field (a typo?)"
    );
    // Explicit nulls are "unset", not unknown; user keys in maps are data.
    let text = WEB.replace(
        "  name: web\n",
        "  name: web\n  creationTimestamp: null\n  labels: {app: web}\n",
    );
    parse_str(&text).expect("null fields and labels are fine");
}

#[test]
fn a_full_control_plane_style_manifest_is_accepted() {
    let text = "\
apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
  creationTimestamp: null
  labels: {component: etcd, tier: control-plane}
  annotations: {kubeadm.kubernetes.io/etcd.advertise-client-urls: 'https://10.0.0.1:2379'}
spec:
  hostNetwork: true
  priorityClassName: system-node-critical
  securityContext: {seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: etcd
    image: registry.k8s.io/etcd:3.5.15-0
    command: [etcd, --data-dir=/var/lib/etcd]
    env: [{name: A, value: '1'}]
    ports: [{containerPort: 2381, name: metrics}]
    resources:
      requests: {cpu: 100m, memory: 100Mi}
      limits: {cpu: 1, memory: 1Gi}
    livenessProbe:
      httpGet: {host: 127.0.0.1, path: /health, port: 2381, scheme: HTTP}
      failureThreshold: 8
    readinessProbe:
      tcpSocket: {port: metrics}
    volumeMounts: [{mountPath: /var/lib/etcd, name: etcd-data, readOnly: false}]
  volumes:
  - {name: etcd-data, hostPath: {path: /var/lib/etcd, type: DirectoryOrCreate}}
  - {name: scratch, emptyDir: {}}
status: {}
";
    let pods = parse_str(text).expect("a kubeadm-style manifest is valid");
    let c = &pods[0].spec.as_ref().unwrap().containers[0];
    let requests = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
    assert_eq!(requests["cpu"].0, "100m", "requests written win");
    assert_eq!(
        c.ports.as_ref().unwrap()[0].host_port,
        Some(2381),
        "hostNetwork: hostPort = containerPort"
    );
}

#[test]
fn limits_without_requests_become_requests() {
    let text = WEB.replace(
        "    ports:\n",
        "    resources: {limits: {cpu: 500m}, requests: {memory: 64Mi}}\n    ports:\n",
    );
    let pods = parse_str(&text).unwrap();
    let resources = pods[0].spec.as_ref().unwrap().containers[0]
        .resources
        .clone()
        .unwrap();
    let requests = resources.requests.unwrap();
    assert_eq!(requests["cpu"].0, "500m");
    assert_eq!(requests["memory"].0, "64Mi");
}

#[test]
fn unreadable_quantities_and_requests_above_limits_are_refused() {
    let text = WEB.replace(
        "    ports:\n",
        "    resources: {limits: {cpu: 500m, memory: 64MB}, requests: {cpu: 1}}\n    ports:\n",
    );
    let e = error(&text);
    assert!(
        e.contains("spec.containers[0].resources.limits.memory: Invalid value: \"64MB\": is not a quantity"),
        "{e}"
    );
    let text = WEB.replace(
        "    ports:\n",
        "    resources: {limits: {cpu: 500m}, requests: {cpu: 1}}\n    ports:\n",
    );
    let e = error(&text);
    assert!(
        e.contains("spec.containers[0].resources.requests.cpu: Invalid value: must be less than or equal to cpu limit"),
        "{e}"
    );
}

#[test]
fn file_modes_written_with_a_leading_zero_are_octal_as_upstream() {
    let text = format!(
        "{WEB}    volumeMounts: [{{name: cfg, mountPath: /cfg}}]\n  volumes:\n  - name: cfg\n    downwardAPI:\n      defaultMode: 0644\n      items: [{{path: name, mode: 0o600, fieldRef: {{fieldPath: metadata.name}}}}, {{path: ns, mode: 420, fieldRef: {{fieldPath: metadata.namespace}}}}]\n"
    );
    let pods = parse_str(&text).expect("valid manifest");
    let volume = &pods[0].spec.as_ref().unwrap().volumes.as_ref().unwrap()[0];
    let api = volume.downward_api.as_ref().unwrap();
    assert_eq!(api.default_mode, Some(0o644));
    let items = api.items.as_ref().unwrap();
    assert_eq!(items[0].mode, Some(0o600));
    assert_eq!(items[1].mode, Some(420), "a decimal mode stays decimal");
}
