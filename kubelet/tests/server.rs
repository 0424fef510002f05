//! The kubelet API on :10250 through its real TLS server on loopback, against an
//! in-memory node and an in-memory reviewer: who gets in, who is refused, and what the
//! stats and metrics endpoints answer.

mod support;

use std::sync::Arc;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use kubelet::server::{MemoryReviewer, Mode, Settings, User};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::MemoryNode;

/// A CA that signs client certificates.
struct Ca {
    cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            cert,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A client certificate for `user` in `groups`: (chain PEM, key PEM).
    fn client(&self, user: &str, groups: &[&str]) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, user);
        for group in groups {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, *group);
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A started kubelet API and what the test needs to reach it.
struct Api {
    running: kubelet::server::Running,
    server_ca: Vec<u8>,
    _dir: tempfile::TempDir,
}

async fn start(ca: &Ca, reviewer: Arc<MemoryReviewer>) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("client-ca.crt");
    std::fs::write(&ca_file, ca.cert.pem()).unwrap();
    let node = MemoryNode::new(&dir.path().join("manifests"));
    node.add_pod("default", "web", &["web"]);
    node.set_container("web", "web", support::running("c1"));
    let settings = Settings {
        address: "127.0.0.1".parse().unwrap(),
        port: 0,
        client_ca_file: Some(ca_file),
        authorization_mode: Mode::Webhook,
        ..Settings::new(support::NODE, dir.path(), true)
    };
    let running = kubelet::server::start(settings, node, Some(reviewer))
        .await
        .unwrap();
    let server_ca = std::fs::read(dir.path().join("pki/kubelet.crt")).unwrap();
    Api {
        running,
        server_ca,
        _dir: dir,
    }
}

/// One HTTPS request: status and body, or why the connection failed.
async fn get(
    api: &Api,
    method: &str,
    path: &str,
    cert: Option<&(String, String)>,
    token: Option<&str>,
) -> Result<(u16, String), String> {
    request(api, method, path, cert, token, &[]).await
}

/// [`get`] with more headers.
async fn request(
    api: &Api,
    method: &str,
    path: &str,
    cert: Option<&(String, String)>,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<(u16, String), String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&api.server_ca).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match cert {
        Some((chain, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(chain.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(api.running.address)
        .await
        .map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(Empty::<Bytes>::new()).unwrap())
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test]
async fn credentials_are_checked_and_access_reviewed() {
    let ca = Ca::new("kubernetes-ca");
    let reviewer = Arc::new(MemoryReviewer::new());
    reviewer.grant("kube-apiserver-kubelet-client", "*");
    reviewer.add_token(
        "sa-token",
        User::named("system:serviceaccount:ns:viewer", &[]),
    );
    reviewer.grant("system:serviceaccount:ns:viewer", "proxy");
    let api = start(&ca, reviewer).await;

    // No credentials: 401, for exec as for everything.
    let exec = "/exec/default/web/web?command=hostname&stdout=1";
    assert_eq!(
        get(&api, "POST", exec, None, None).await.unwrap(),
        (401, "Unauthorized".into())
    );
    assert_eq!(get(&api, "GET", "/pods", None, None).await.unwrap().0, 401);
    // An unknown token: 401.
    assert_eq!(
        get(&api, "GET", "/pods", None, Some("nope"))
            .await
            .unwrap()
            .0,
        401
    );

    // The API server's client certificate, signed by the client CA.
    let apiserver = ca.client("kube-apiserver-kubelet-client", &["system:masters"]);
    let (status, body) = get(&api, "GET", "/pods", Some(&apiserver), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["items"][0]["metadata"]["name"], "web");
    let (status, body) = get(&api, "GET", "/healthz", Some(&apiserver), None)
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "ok"));

    // A certificate from another CA fails the handshake (or the first request, with TLS
    // 1.3's late client authentication): never a response.
    let stranger = Ca::new("other-ca").client("kube-apiserver-kubelet-client", &[]);
    let refused = get(&api, "GET", "/pods", Some(&stranger), None).await;
    assert!(refused.is_err(), "a foreign certificate got {refused:?}");

    // A token the reviewer knows, allowed nodes/proxy: `/pods` falls back to proxy.
    let (status, _) = get(&api, "GET", "/pods", None, Some("sa-token"))
        .await
        .unwrap();
    assert_eq!(status, 200);

    // A certified user whose reviews are denied: 403 with upstream's message.
    let nobody = ca.client("nobody", &["team"]);
    let (status, body) = get(&api, "POST", exec, Some(&nobody), None).await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (
            403,
            "Forbidden (user=nobody, verb=create, resource=nodes, subresource(s)=[proxy])"
        )
    );
    let (status, body) = get(&api, "GET", "/pods", Some(&nobody), None)
        .await
        .unwrap();
    assert_eq!(
        (status, body.as_str()),
        (
            403,
            "Forbidden (user=nobody, verb=get, resource=nodes, subresource(s)=[pods proxy])"
        )
    );
    // Local-only routes are not served here.
    let (status, _) = get(&api, "POST", "/manifests", Some(&apiserver), None)
        .await
        .unwrap();
    assert_eq!(status, 404);
}

#[tokio::test]
async fn stats_and_metrics_answer() {
    let ca = Ca::new("kubernetes-ca");
    let reviewer = Arc::new(MemoryReviewer::new());
    reviewer.grant("metrics-server", "stats");
    reviewer.grant("metrics-server", "metrics");
    let api = start(&ca, reviewer).await;
    let scraper = ca.client("metrics-server", &[]);

    let (status, body) = get(&api, "GET", "/stats/summary", Some(&scraper), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let summary: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(summary["node"]["nodeName"], support::NODE);
    assert!(
        summary["node"]["cpu"]["usageCoreNanoSeconds"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        summary["node"]["memory"]["workingSetBytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(summary["pods"].is_array());

    let (status, text) = get(&api, "GET", "/metrics", Some(&scraper), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("kubelet_node_name{node=\"testnode\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("kubelet_http_requests_total{method=\"GET\",path=\"stats\""),
        "{text}"
    );
    assert!(text.contains("process_resident_memory_bytes "), "{text}");
    let (status, text) = get(&api, "GET", "/metrics/resource", Some(&scraper), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("node_cpu_usage_seconds_total "), "{text}");

    // The scraper may not exec or read logs.
    let (status, _) = get(
        &api,
        "GET",
        "/containerLogs/default/web/web",
        Some(&scraper),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 403);
}
