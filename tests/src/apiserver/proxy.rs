//! The upgrade-aware proxy to kubelets behind `pods/{name}/log|exec|attach|portforward`:
//! the request goes to `https://<node InternalIP>:<kubelet port>/containerLogs|exec|
//! attach|portForward/...` over TLS with the API server's kubelet-client certificate
//! (the kubelet's serving certificate is not verified, as kube-apiserver without
//! `--kubelet-certificate-authority`), headers and query unchanged. A `101 Switching
//! Protocols` answer is relayed and the two connections are spliced until either side
//! closes, so WebSocket and SPDY streams pass through untouched.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::client::conn::http1::SendRequest;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::query::{encode, Query};
use super::server::{Location, Shared};
use super::status::{ApiError, ApiResult};
use super::store::by_plural;
use super::tunnel;
use crate::pki::IssuedCert;

/// The kubelet port when a node does not publish one.
pub const DEFAULT_KUBELET_PORT: u64 = 10250;

/// Where the kubelet of `node` listens: its first InternalIP and
/// `status.daemonEndpoints.kubeletEndpoint.Port`.
pub fn kubelet_address(node: &Value) -> ApiResult<String> {
    let name = node["metadata"]["name"].as_str().unwrap_or("");
    let ip = node["status"]["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
        .and_then(|x| x["address"].as_str())
        .ok_or_else(|| ApiError::proxy(format!("node {name:?} has no InternalIP address")))?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .filter(|p| *p != 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Ok(if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    })
}

/// The container a pod subresource addresses: the `container` parameter, else the
/// pod's only container (more than one needs a name, as the real server says).
pub fn container(pod: &Value, requested: Option<&str>) -> ApiResult<String> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let names: Vec<&str> = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|l| pod["spec"][*l].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    match requested.filter(|c| !c.is_empty()) {
        Some(c) if names.contains(&c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None => {
            let main: Vec<&str> = pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str())
                .collect();
            match main.as_slice() {
                [only] => Ok(only.to_string()),
                _ => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    main.join(" ")
                ))),
            }
        }
    }
}

/// A 502 for a kubelet that cannot be reached.
pub fn unreachable(address: &str, error: &dyn std::fmt::Display) -> ApiError {
    ApiError::proxy(format!("error dialing the kubelet at {address}: {error}"))
}

/// Accepts any kubelet serving certificate (kube-apiserver's default without a kubelet CA).
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS client to kubelets presenting the kubelet-client certificate.
#[derive(Clone)]
pub struct KubeletClient {
    tls: TlsConnector,
}

impl KubeletClient {
    /// A client presenting `cert`.
    pub fn new(cert: &IssuedCert) -> Result<KubeletClient, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_der.clone()));
        let config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions for the kubelet client: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
            .with_client_auth_cert(vec![CertificateDer::from(cert.cert_der.clone())], key)
            .map_err(|e| format!("the kubelet client certificate: {e}"))?;
        Ok(KubeletClient {
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    /// An HTTP/1 connection over TLS to the kubelet at `address` (`host:port`).
    pub async fn connect(&self, address: &str) -> ApiResult<SendRequest<Body>> {
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|e| unreachable(address, &e))?;
        let host = address
            .rsplit_once(':')
            .map_or(address, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let server_name = ServerName::try_from(host).map_err(|e| unreachable(address, &e))?;
        let tls = self
            .tls
            .connect(server_name, tcp)
            .await
            .map_err(|e| unreachable(address, &e))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| unreachable(address, &e))?;
        tokio::spawn(connection.with_upgrades());
        Ok(sender)
    }

    /// Sends `request` to `address` (`host:port`) at `path_and_query`; relays the answer,
    /// splicing both connections after a `101 Switching Protocols`.
    pub async fn forward(
        &self,
        address: &str,
        path_and_query: &str,
        mut request: Request<Body>,
    ) -> ApiResult<Response<Body>> {
        let client_upgrade = hyper::upgrade::on(&mut request);
        let (parts, body) = request.into_parts();
        let mut outgoing = Request::builder()
            .method(parts.method)
            .uri(path_and_query)
            .body(body)
            .map_err(|e| ApiError::bad_request(format!("proxied request: {e}")))?;
        for (name, value) in &parts.headers {
            // The fake's own credentials stay here; the kubelet sees its client certificate.
            if name != header::HOST && name != header::AUTHORIZATION {
                outgoing.headers_mut().append(name, value.clone());
            }
        }
        if let Ok(host) = HeaderValue::from_str(address) {
            outgoing.headers_mut().insert(header::HOST, host);
        }
        let relayed = self
            .exchange(
                address,
                outgoing,
                client_upgrade,
                |client, kubelet| async move {
                    let (mut client, mut kubelet) = (TokioIo::new(client), TokioIo::new(kubelet));
                    // Either side closing ends the splice; errors are the streams ending.
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut kubelet).await;
                },
            )
            .await?;
        Ok(match relayed {
            Exchange::Relayed(response) => response,
            Exchange::Switched(parts) => Response::from_parts(parts, Body::empty()),
        })
    }

    /// Sends `outgoing` to the kubelet at `address`. An answer other than `101 Switching
    /// Protocols` comes back to be relayed as it is; after a 101, `splice` gets the
    /// client's and the kubelet's upgraded connections in a task of its own.
    pub async fn exchange<F, Fut>(
        &self,
        address: &str,
        outgoing: Request<Body>,
        client_upgrade: OnUpgrade,
        splice: F,
    ) -> ApiResult<Exchange>
    where
        F: FnOnce(Upgraded, Upgraded) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let mut sender = self.connect(address).await?;
        let mut answer = sender
            .send_request(outgoing)
            .await
            .map_err(|e| unreachable(address, &e))?;
        if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
            let (parts, body) = answer.into_parts();
            return Ok(Exchange::Relayed(Response::from_parts(
                parts,
                Body::new(body),
            )));
        }
        let kubelet_upgrade = hyper::upgrade::on(&mut answer);
        tokio::spawn(async move {
            if let (Ok(client), Ok(kubelet)) = (client_upgrade.await, kubelet_upgrade.await) {
                splice(client, kubelet).await;
            }
        });
        Ok(Exchange::Switched(answer.into_parts().0))
    }
}

/// How the kubelet answered an [`KubeletClient::exchange`].
pub enum Exchange {
    /// Not with an upgrade: the answer, to relay.
    Relayed(Response<Body>),
    /// With `101 Switching Protocols` (its head); the connections are being spliced.
    Switched(axum::http::response::Parts),
}

/// Forwards `pods/{name}/log|exec|attach|portforward` to the pod's kubelet.
pub async fn pod_stream(
    shared: &Shared,
    loc: &Location,
    query: &Query,
    request: Request<Body>,
) -> ApiResult<Response<Body>> {
    let ns = loc.namespace.as_deref().unwrap_or("default");
    let name = loc.name.as_deref().unwrap_or("");
    let sub = loc.subresource.as_deref().unwrap_or("");
    let (pod, node) = {
        let store = shared.store();
        let pod = store.get(loc.resource, Some(ns), name)?;
        let node_name = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
        if node_name.is_empty() {
            return Err(ApiError::bad_request(format!(
                "pod {name} does not have a host assigned"
            )));
        }
        let node = store.get(by_plural("nodes"), None, &node_name)?;
        (pod, node)
    };
    let phase = pod["status"]["phase"].as_str().unwrap_or("");
    if matches!(sub, "exec" | "attach") && matches!(phase, "Succeeded" | "Failed") {
        return Err(ApiError::bad_request(format!(
            "cannot {sub} into a container in a completed pod; current phase is {phase}"
        )));
    }
    let address = kubelet_address(&node)?;
    let raw_query = request.uri().query().unwrap_or("").to_string();
    let path = match sub {
        "log" => {
            let container = container(&pod, query.get("container"))?;
            let kept: Vec<String> = [
                "follow",
                "tailLines",
                "limitBytes",
                "timestamps",
                "sinceSeconds",
                "sinceTime",
                "previous",
            ]
            .iter()
            .filter_map(|k| query.get(k).map(|v| format!("{k}={}", encode(v))))
            .collect();
            format!("/containerLogs/{ns}/{name}/{container}?{}", kept.join("&"))
        }
        "portforward" if tunnel::requested(&request) => {
            let path = format!("/portForward/{ns}/{name}?{raw_query}");
            return tunnel::port_forward(&shared.kubelet, &address, &path, request).await;
        }
        "portforward" => format!("/portForward/{ns}/{name}?{raw_query}"),
        _ => {
            let container = container(&pod, query.get("container"))?;
            format!("/{sub}/{ns}/{name}/{container}?{raw_query}")
        }
    };
    shared.kubelet.forward(&address, &path, request).await
}
