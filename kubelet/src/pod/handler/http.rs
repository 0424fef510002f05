//! httpGet: one GET from inside the pod, judged as upstream's HTTP prober does (2xx and
//! 3xx pass; redirects followed on the same host, at most 10; HTTPS without
//! certificate verification). A lifecycle hook's GET passes with any HTTP answer, as
//! upstream's hook runner only fails on a transport error.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue, ACCEPT, CONNECTION, HOST, LOCATION, USER_AGENT};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use url::Url;

use super::{Outcome, Target, MAX_OUTPUT};

/// The User-Agent upstream's prober sends: `kube-probe/<major>.<minor>` of the API
/// version this kubelet speaks.
pub(super) const USER_AGENT_VALUE: &str = "kube-probe/1.37";

/// The User-Agent of lifecycle hooks' GETs.
const LIFECYCLE_USER_AGENT: &str = "kube-lifecycle/1.37";

/// Whether a GET is a probe or a lifecycle hook (they differ in User-Agent and in
/// what passes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A probe: 2xx and 3xx pass.
    Probe,
    /// A postStart or preStop hook: any HTTP answer passes.
    Lifecycle,
}

/// How many redirects are followed before the probe fails, as Go's client allows.
const MAX_REDIRECTS: usize = 10;

/// HTTP or HTTPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// TLS, with any certificate accepted (as upstream's prober skips verification).
    Https,
}

/// An httpGet action with its port resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGet {
    /// Probe or hook.
    pub purpose: Purpose,
    /// HTTP or HTTPS.
    pub scheme: Scheme,
    /// The host to connect to (and name in the URL); the pod IP when None.
    pub host: Option<String>,
    /// The port.
    pub port: u16,
    /// The path (and query), `/` when empty.
    pub path: String,
    /// Extra headers, in order; `Host`, `User-Agent` and `Accept` here replace the
    /// defaults.
    pub headers: Vec<(String, String)>,
}

impl HttpGet {
    /// The first URL to get, with the pod IP standing in for a missing host.
    fn url(&self, target: &Target) -> Result<Url, String> {
        let host = match &self.host {
            Some(host) => host.clone(),
            None if target.pod_ip.is_ipv6() => format!("[{}]", target.pod_ip),
            None => target.pod_ip.to_string(),
        };
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        let slash = if self.path.starts_with('/') { "" } else { "/" };
        let text = format!("{scheme}://{host}:{}{slash}{}", self.port, self.path);
        Url::parse(&text).map_err(|e| format!("invalid URL {text:?}: {e}"))
    }
}

/// Run the GET, following same-host redirects; `timeout` bounds each connect (the
/// caller bounds the whole).
pub(super) async fn get(get: &HttpGet, target: &Target, timeout: Duration) -> Outcome {
    let mut url = match get.url(target) {
        Ok(url) => url,
        Err(e) => return Outcome::Error(e),
    };
    let first_host = url.host_str().unwrap_or_default().to_owned();
    let mut redirects = 0;
    loop {
        let answer = match exchange(&url, get, target, timeout).await {
            Ok(answer) => answer,
            Err(e) => return Outcome::Failure(format!("Get {:?}: {e}", url.as_str())),
        };
        let next = answer
            .location
            .filter(|_| answer.status.is_redirection())
            .and_then(|location| url.join(&location).ok());
        let Some(next) = next else {
            return judge(answer.status, get.purpose);
        };
        // A redirect off the host ends the probe on the redirect itself, which passes.
        if next.host_str().unwrap_or_default() != first_host {
            return judge(answer.status, get.purpose);
        }
        redirects += 1;
        if redirects > MAX_REDIRECTS {
            return Outcome::Failure(format!(
                "Get {:?}: stopped after {MAX_REDIRECTS} redirects",
                next.as_str()
            ));
        }
        url = next;
    }
}

fn judge(status: StatusCode, purpose: Purpose) -> Outcome {
    if purpose == Purpose::Lifecycle || status.is_success() || status.is_redirection() {
        Outcome::Success
    } else {
        Outcome::Failure(format!(
            "HTTP probe failed with statuscode: {}",
            status.as_u16()
        ))
    }
}

/// A response's status and where it redirects to.
struct Answer {
    status: StatusCode,
    location: Option<String>,
}

/// One request on a fresh connection (upstream disables keep-alive for probes).
async fn exchange(
    url: &Url,
    get: &HttpGet,
    target: &Target,
    timeout: Duration,
) -> Result<Answer, String> {
    let host = url.host_str().ok_or("the URL has no host")?;
    let port = url.port_or_known_default().ok_or("the URL has no port")?;
    let request = request(url, host, get)?;
    let stream = target.connect(Some(host), port, timeout).await?;
    if url.scheme() == "https" {
        let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|e| format!("TLS server name {host:?}: {e}"))?
            .to_owned();
        let stream = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        send(stream, request).await
    } else {
        send(stream, request).await
    }
}

fn request(url: &Url, host: &str, get: &HttpGet) -> Result<Request<Empty<Bytes>>, String> {
    let target = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let mut request = Request::get(target)
        .body(Empty::new())
        .map_err(|e| format!("building the request: {e}"))?;
    let map = request.headers_mut();
    map.insert(CONNECTION, HeaderValue::from_static("close"));
    for (name, value) in &get.headers {
        let name = HeaderName::try_from(name.as_str())
            .map_err(|e| format!("httpHeaders: invalid name {name:?}: {e}"))?;
        let value = HeaderValue::try_from(value.as_str())
            .map_err(|e| format!("httpHeaders: invalid value for {name}: {e}"))?;
        map.append(name, value);
    }
    if !map.contains_key(HOST) {
        let value = HeaderValue::try_from(authority.as_str())
            .map_err(|e| format!("Host {authority:?}: {e}"))?;
        map.insert(HOST, value);
    }
    if !map.contains_key(USER_AGENT) {
        let agent = match get.purpose {
            Purpose::Probe => USER_AGENT_VALUE,
            Purpose::Lifecycle => LIFECYCLE_USER_AGENT,
        };
        map.insert(USER_AGENT, HeaderValue::from_static(agent));
    }
    if !map.contains_key(ACCEPT) {
        map.insert(ACCEPT, HeaderValue::from_static("*/*"));
    }
    Ok(request)
}

/// Send `request` over `io` (HTTP/1.1), read at most [`MAX_OUTPUT`] of the body.
async fn send<S>(io: S, request: Request<Empty<Bytes>>) -> Result<Answer, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    // The connection is driven here until the response is in; it ends with this task.
    let driver = tokio::spawn(connection);
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        let mut body = response.into_body();
        let mut read = 0;
        while read < MAX_OUTPUT {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
                // A body cut short does not change the verdict of the status line.
                _ => break,
            }
        }
        Ok(Answer { status, location })
    }
    .await;
    driver.abort();
    result
}

/// The TLS client config: any certificate, since probes target pod IPs with
/// self-signed certificates, as upstream's `InsecureSkipVerify` prober does.
fn tls_config() -> Result<Arc<ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let verifier = Arc::new(AnyCertificate(provider.clone()));
            let config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS client config: {e}"))?
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

/// Trusts any certificate chain and name, but still checks the handshake signatures
/// with the provider, so the peer must hold the key of the certificate it shows.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_carries_upstreams_default_headers_unless_overridden() {
        let url = Url::parse("http://10.1.2.3:8080/healthz?x=1").expect("a URL");
        let mut get = HttpGet {
            purpose: Purpose::Probe,
            scheme: Scheme::Http,
            host: None,
            port: 8080,
            path: "/healthz?x=1".into(),
            headers: vec![("Accept".into(), "text/plain".into())],
        };
        let probe = request(&url, "10.1.2.3", &get).expect("a request");
        assert_eq!(probe.uri(), "/healthz?x=1");
        let h = probe.headers();
        assert_eq!(h[HOST], "10.1.2.3:8080");
        assert_eq!(h[USER_AGENT], "kube-probe/1.37");
        assert_eq!(h[ACCEPT], "text/plain");
        assert_eq!(h[CONNECTION], "close");
        get.purpose = Purpose::Lifecycle;
        let hook = request(&url, "10.1.2.3", &get).expect("a request");
        assert_eq!(hook.headers()[USER_AGENT], "kube-lifecycle/1.37");
    }

    #[test]
    fn two_and_three_hundreds_pass_a_probe_any_answer_a_hook() {
        assert_eq!(judge(StatusCode::OK, Purpose::Probe), Outcome::Success);
        assert_eq!(judge(StatusCode::FOUND, Purpose::Probe), Outcome::Success);
        assert_eq!(
            judge(StatusCode::INTERNAL_SERVER_ERROR, Purpose::Probe),
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        assert_eq!(
            judge(StatusCode::INTERNAL_SERVER_ERROR, Purpose::Lifecycle),
            Outcome::Success
        );
    }
}
