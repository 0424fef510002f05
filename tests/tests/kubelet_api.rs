//! The kubelet API on :10250 of a real kubelet with a real pod (root): a client
//! certificate signed by `--client-ca-file` gets in, no credentials get 401, and
//! `/stats/summary` and `/metrics` count the pod from its real cgroups. The client is the
//! host's `curl`, talking to loopback only.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use peapod_tests::host::wait_until;
use peapod_tests::kubelet::{running, Kubelet, BUSYBOX};
use peapod_tests::registry::free_port;

/// A CA and a client certificate it signed (`admin`, group `system:masters`), as PEM
/// files in `dir`: (ca, cert, key).
fn client_certificate(dir: &Path) -> (String, String, String) {
    let mut ca = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "test-client-ca");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let mut client = rcgen::CertificateParams::new(Vec::new()).unwrap();
    client
        .distinguished_name
        .push(rcgen::DnType::CommonName, "admin");
    client
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:masters");
    client.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = client.signed_by(&key, &issuer).unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path.to_string_lossy().into_owned()
    };
    (
        write("ca.crt", ca_cert.pem()),
        write("client.crt", cert.pem()),
        write("client.key", key.serialize_pem()),
    )
}

/// `curl` a path of the kubelet API: (HTTP status, body).
fn curl(node: &Kubelet, port: u16, path: &str, cert: Option<(&str, &str)>) -> (u16, String) {
    let mut command = Command::new("curl");
    command
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(node.path("images/pki/kubelet.crt"));
    if let Some((cert, key)) = cert {
        command.args(["--cert", cert, "--key", key]);
    }
    let out = command
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn the_kubelet_api_authenticates_and_reports_a_running_pods_usage() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = client_certificate(certs.path());
    let port = free_port();
    let node = Kubelet::start_with_args(&[
        "--address",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--client-ca-file",
        &ca,
    ]);
    // Some cpu time, then quiet.
    node.write_manifest(
        "busy.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: busy
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: work
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: ["sh", "-c", "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; echo done; exec sleep 3600"]
"#
        ),
    );
    let name = format!("busy-{}", node.node_name());
    node.wait_pod(&name, Duration::from_secs(60), running);
    let client = Some((cert.as_str(), key.as_str()));

    assert_eq!(curl(&node, port, "/pods", None).0, 401, "no credentials");
    let (status, body) = curl(&node, port, "/pods", client);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&name), "{body}");

    let mut last = Value::Null;
    let reported = wait_until(Duration::from_secs(20), || {
        let (_, body) = curl(&node, port, "/stats/summary", client);
        last = serde_json::from_str(&body).unwrap_or(Value::Null);
        let pod = &last["pods"][0];
        let container = &pod["containers"][0];
        pod["podRef"]["name"] == name.as_str()
            && container["name"] == "work"
            && container["cpu"]["usageCoreNanoSeconds"].as_u64() > Some(0)
            && container["memory"]["workingSetBytes"].as_u64() > Some(0)
            && pod["cpu"]["usageNanoCores"].is_u64()
            && pod["network"]["interfaces"].is_array()
    });
    assert!(
        reported,
        "the summary lacks the pod's usage: {last:#}\n{}",
        node.log()
    );

    let (status, metrics) = curl(&node, port, "/metrics", client);
    assert_eq!(status, 200, "{metrics}");
    for line in [
        "kubelet_running_pods 1",
        "kubelet_running_containers{container_state=\"running\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing:\n{metrics}"
        );
    }
    let (_, resource) = curl(&node, port, "/metrics/resource", client);
    assert!(
        resource.contains(&format!("container_memory_working_set_bytes{{container=\"work\",namespace=\"default\",pod=\"{name}\"}}")),
        "{resource}"
    );
}
