//! One registry repository as a pull sees it: the `oci-client` connection, credentials, retries, and errors told in plain words.

use super::PullOptions;
use crate::image::auth::Credentials;
use crate::image::manifest::ACCEPTED;
use crate::image::{reference, Error, Reference};
use oci_client::client::{ClientConfig, ClientProtocol, SizedStream};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use std::future::Future;
use std::time::Duration;

/// How long to wait for a TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a response may stall between two reads before it counts as cut.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// First pause before a retry; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// Why one request failed, sorted by what the pull can do about it.
#[derive(Debug)]
pub(super) enum Failure {
    /// Worth another try: a reset or cut connection, 5xx, 429.
    Transient(String),
    /// No connection could be made (refused, timed out, TLS failed); retried too.
    Unreachable(String),
    /// 401/403.
    Unauthorized(String),
    /// 404: no such manifest, blob or repository.
    NotFound(String),
    /// The content did not hash to its digest.
    Digest {
        /// The announced digest.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// Anything else, already an [`Error`] with context; not retried.
    Fatal(Error),
}

impl Failure {
    fn is_retryable(&self) -> bool {
        matches!(self, Failure::Transient(_) | Failure::Unreachable(_))
    }

    /// Sorts an `oci-client` error.
    pub(super) fn from_oci(err: OciDistributionError) -> Failure {
        match err {
            OciDistributionError::RequestError(e) => {
                let detail = crate::error_chain(&e);
                if e.is_connect() || (e.is_timeout() && !e.is_body()) {
                    Failure::Unreachable(detail)
                } else {
                    // Body, decode and protocol errors: the connection broke mid-way.
                    Failure::Transient(detail)
                }
            }
            OciDistributionError::UnauthorizedError { url } => {
                Failure::Unauthorized(format!("401 Unauthorized from {url}"))
            }
            OciDistributionError::AuthenticationFailure(reason) => {
                Failure::Unauthorized(format!("the token server refused: {}", reason.trim()))
            }
            OciDistributionError::ImageManifestNotFoundError(what) => Failure::NotFound(what),
            OciDistributionError::RegistryError { envelope, url } => {
                let codes = |wanted: &[OciErrorCode]| {
                    envelope.errors.iter().any(|e| wanted.contains(&e.code))
                };
                let messages: Vec<&str> =
                    envelope.errors.iter().map(|e| e.message.as_str()).collect();
                let detail = format!("registry said {:?} at {url}", messages.join("; "));
                if codes(&[OciErrorCode::Unauthorized, OciErrorCode::Denied]) {
                    Failure::Unauthorized(detail)
                } else if codes(&[
                    OciErrorCode::ManifestUnknown,
                    OciErrorCode::BlobUnknown,
                    OciErrorCode::NameUnknown,
                    OciErrorCode::NotFound,
                ]) {
                    Failure::NotFound(detail)
                } else if codes(&[OciErrorCode::Toomanyrequests]) {
                    Failure::Transient(format!("rate limited: {detail}"))
                } else {
                    Failure::Fatal(Error::Invalid {
                        what: url,
                        reason: format!("registry error: {}", messages.join("; ")),
                    })
                }
            }
            OciDistributionError::ServerError { code, url, message } => {
                let detail = format!("HTTP {code} from {url}: {}", first_line(&message));
                match code {
                    401 | 403 => Failure::Unauthorized(detail),
                    404 => Failure::NotFound(detail),
                    429 | 500..=599 => Failure::Transient(detail),
                    _ => Failure::Fatal(Error::Invalid {
                        what: url,
                        reason: format!("unexpected HTTP {code}: {}", first_line(&message)),
                    }),
                }
            }
            OciDistributionError::DigestError(DigestError::VerificationError {
                expected,
                actual,
            }) => Failure::Digest { expected, actual },
            OciDistributionError::IoError(e) => Failure::from_io(e),
            other => Failure::Fatal(Error::Invalid {
                what: "registry response".into(),
                reason: other.to_string(),
            }),
        }
    }

    /// Sorts an error from a blob stream: a digest check at its end, or a cut connection.
    pub(super) fn from_io(err: std::io::Error) -> Failure {
        if let Some(DigestError::VerificationError { expected, actual }) =
            err.get_ref().and_then(|e| e.downcast_ref::<DigestError>())
        {
            return Failure::Digest {
                expected: expected.clone(),
                actual: actual.clone(),
            };
        }
        Failure::Transient(format!("download cut: {}", crate::error_chain(&err)))
    }

    /// The [`Error`] to report for `subject` on `registry` once retries are
    /// spent; `size` is how many bytes a digest mismatch hashed.
    pub(super) fn into_error(self, registry: &Registry, subject: Subject<'_>, size: u64) -> Error {
        let host = registry.host.clone();
        let reason = match self {
            Failure::Fatal(err) => return err,
            Failure::Digest { expected, actual } => {
                return Error::DigestMismatch {
                    expected,
                    actual,
                    size,
                }
            }
            Failure::Unauthorized(detail) => {
                let credentials = if registry.has_credentials {
                    format!("the credentials given for {host} were refused")
                } else {
                    format!("no credentials for {host} were given")
                };
                format!("unauthorized to pull {subject}: {credentials} ({detail})")
            }
            Failure::NotFound(detail) => {
                let kind = match subject {
                    Subject::Manifest(_) => "manifest",
                    Subject::Blob(_) => "blob",
                };
                format!("{kind} unknown: the registry has no {subject} ({detail})")
            }
            Failure::Unreachable(detail) => {
                let hint = if registry.plain_http {
                    String::new()
                } else {
                    format!("; if {host} serves plain HTTP, list it as an insecure registry")
                };
                format!("registry unreachable: {detail}{hint}")
            }
            Failure::Transient(detail) => format!(
                "fetching {subject} failed after {} attempt(s): {detail}",
                registry.attempts
            ),
        };
        Error::Registry {
            registry: host,
            reason,
        }
    }
}

/// What a request was for, to name it in errors.
#[derive(Debug, Clone, Copy)]
pub(super) enum Subject<'a> {
    /// The manifest (or index) of an image, by its full name.
    Manifest(&'a str),
    /// A blob, by digest.
    Blob(&'a str),
}

impl std::fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Manifest(name) => write!(f, "{name}"),
            Subject::Blob(digest) => write!(f, "blob {digest}"),
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim()
}

/// A repository on a registry, with the client and credentials to reach it.
pub(super) struct Registry {
    client: oci_client::Client,
    auth: RegistryAuth,
    /// The registry as the user named it, e.g. `127.0.0.1:5000`.
    pub(super) host: String,
    /// The repository, as `oci-client` addresses it (tag or digest unused for blobs).
    target: oci_client::Reference,
    has_credentials: bool,
    plain_http: bool,
    attempts: u32,
}

impl Registry {
    /// Prepares to pull `reference`: plain HTTP for loopback and listed
    /// insecure registries, credentials from the keyring.
    pub(super) fn new(reference: &Reference, options: &PullOptions) -> Registry {
        let host = reference.registry.clone();
        let plain_http = reference.is_loopback()
            || options
                .insecure_registries
                .iter()
                .any(|r| registry_host(r) == host);
        let target = match (&reference.tag, &reference.digest) {
            (_, Some(digest)) => oci_client::Reference::with_digest(
                host.clone(),
                reference.repository.clone(),
                digest.clone(),
            ),
            (tag, None) => oci_client::Reference::with_tag(
                host.clone(),
                reference.repository.clone(),
                tag.clone().unwrap_or_else(|| "latest".into()),
            ),
        };
        let protocol = if plain_http {
            // oci-client compares against the host it connects to (Docker Hub's differs).
            ClientProtocol::HttpsExcept(vec![target.resolve_registry().to_string()])
        } else {
            ClientProtocol::Https
        };
        let client = oci_client::Client::new(ClientConfig {
            protocol,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            platform_resolver: None,
            ..Default::default()
        });
        let credentials = options.keyring.lookup(&host);
        Registry {
            client,
            auth: registry_auth(credentials),
            host,
            target,
            has_credentials: credentials.is_some(),
            plain_http,
            attempts: options.retries.max(1),
        }
    }

    /// Fetches the manifest or index `reference` (a tag or `sha256:` digest)
    /// names, raw as served; the caller checks its digest.
    pub(super) async fn manifest_once(&self, reference: &str) -> Result<Vec<u8>, Failure> {
        let target = if reference.contains(':') {
            oci_client::Reference::with_digest(
                self.target.registry().to_string(),
                self.target.repository().to_string(),
                reference.to_string(),
            )
        } else {
            oci_client::Reference::with_tag(
                self.target.registry().to_string(),
                self.target.repository().to_string(),
                reference.to_string(),
            )
        };
        let (bytes, _digest) = self
            .client
            .pull_manifest_raw(&target, &self.auth, ACCEPTED)
            .await
            .map_err(Failure::from_oci)?;
        Ok(bytes.to_vec())
    }

    /// Starts streaming blob `digest`; `oci-client` checks the digest at its end.
    pub(super) async fn blob_stream(&self, digest: &str) -> Result<SizedStream, Failure> {
        // Credentials are registered with the client by the manifest request;
        // doing it again keeps blob requests correct whatever came first.
        self.client
            .store_auth_if_needed(self.target.resolve_registry(), &self.auth)
            .await;
        // A bare digest: the descriptor's foreign `urls` are never followed.
        self.client
            .pull_blob_stream(&self.target, digest)
            .await
            .map_err(Failure::from_oci)
    }

    /// Runs `attempt` until it succeeds, fails for good, or the attempts are
    /// used up, pausing with exponential backoff between tries.
    pub(super) async fn retry<T, F, Fut>(&self, mut attempt: F) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut pause = FIRST_BACKOFF;
        let mut tries = 0;
        loop {
            tries += 1;
            match attempt().await {
                Err(failure) if failure.is_retryable() && tries < self.attempts => {
                    tracing::debug!(registry = %self.host, ?failure, tries, "retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_BACKOFF);
                }
                outcome => return outcome,
            }
        }
    }
}

/// The `oci-client` form of keyring credentials. Basic credentials also
/// serve the bearer-token exchange, which `oci-client` performs.
fn registry_auth(credentials: Option<&Credentials>) -> RegistryAuth {
    match credentials {
        Some(Credentials::Basic { username, password }) => {
            RegistryAuth::Basic(username.clone(), password.clone())
        }
        Some(Credentials::Token(token)) => RegistryAuth::Bearer(token.clone()),
        None => RegistryAuth::Anonymous,
    }
}

/// `host[:port]` of an insecure-registry entry, which may be written as a URL.
fn registry_host(entry: &str) -> String {
    let entry = entry.trim();
    let entry = entry
        .strip_prefix("http://")
        .or_else(|| entry.strip_prefix("https://"))
        .unwrap_or(entry);
    let host = entry.trim_end_matches('/');
    match host {
        "index.docker.io" | "registry-1.docker.io" => reference::DEFAULT_REGISTRY.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::auth::Keyring;
    use oci_client::errors::{OciEnvelope, OciError};

    fn options() -> PullOptions {
        PullOptions::default()
    }

    fn registry(name: &str, options: &PullOptions) -> Registry {
        Registry::new(&Reference::parse(name).unwrap(), options)
    }

    fn envelope(code: OciErrorCode, message: &str) -> OciDistributionError {
        OciDistributionError::RegistryError {
            envelope: OciEnvelope {
                errors: vec![OciError {
                    code,
                    message: message.into(),
                    detail: serde_json::Value::Null,
                }],
            },
            url: "http://127.0.0.1:5000/v2/app/manifests/1".into(),
        }
    }

    fn server(code: u16) -> OciDistributionError {
        OciDistributionError::ServerError {
            code,
            url: "http://127.0.0.1:5000/v2/app/blobs/sha256:x".into(),
            message: "oops\nmore".into(),
        }
    }

    #[test]
    fn plain_http_only_for_loopback_and_listed_registries() {
        assert!(registry("127.0.0.1:5000/app", &options()).plain_http);
        assert!(registry("localhost:5000/app", &options()).plain_http);
        assert!(registry("[::1]:5000/app", &options()).plain_http);
        assert!(!registry("registry.example.com/app", &options()).plain_http);
        assert!(!registry("nginx", &options()).plain_http);
        let mut insecure = options();
        insecure.insecure_registries = vec!["http://registry.example.com:5000/".into()];
        assert!(registry("registry.example.com:5000/app", &insecure).plain_http);
        assert!(!registry("registry.example.com/app", &insecure).plain_http);
    }

    #[test]
    fn credentials_come_from_the_keyring() {
        let mut with = options();
        with.keyring = Keyring::default();
        with.keyring.add(
            "127.0.0.1:5000",
            Credentials::Basic {
                username: "u".into(),
                password: "p".into(),
            },
        );
        let r = registry("127.0.0.1:5000/app", &with);
        assert!(r.has_credentials);
        assert_eq!(r.auth, RegistryAuth::Basic("u".into(), "p".into()));
        let r = registry("127.0.0.1:5001/app", &with);
        assert!(!r.has_credentials);
        assert_eq!(r.auth, RegistryAuth::Anonymous);
        assert_eq!(
            registry_auth(Some(&Credentials::Token("t".into()))),
            RegistryAuth::Bearer("t".into())
        );
    }

    #[test]
    fn sorts_registry_errors() {
        let sorted = |e| Failure::from_oci(e);
        assert!(matches!(
            sorted(envelope(OciErrorCode::ManifestUnknown, "manifest unknown")),
            Failure::NotFound(_)
        ));
        assert!(matches!(
            sorted(envelope(OciErrorCode::NameUnknown, "")),
            Failure::NotFound(_)
        ));
        assert!(matches!(
            sorted(envelope(OciErrorCode::BlobUnknown, "")),
            Failure::NotFound(_)
        ));
        assert!(matches!(
            sorted(envelope(OciErrorCode::Unauthorized, "")),
            Failure::Unauthorized(_)
        ));
        assert!(matches!(
            sorted(envelope(OciErrorCode::Denied, "")),
            Failure::Unauthorized(_)
        ));
        assert!(matches!(
            sorted(envelope(OciErrorCode::Toomanyrequests, "")),
            Failure::Transient(_)
        ));
        assert!(matches!(
            sorted(envelope(OciErrorCode::NameInvalid, "")),
            Failure::Fatal(_)
        ));
        assert!(matches!(
            sorted(OciDistributionError::UnauthorizedError { url: "u".into() }),
            Failure::Unauthorized(_)
        ));
        for (code, transient) in [
            (500, true),
            (502, true),
            (503, true),
            (429, true),
            (400, false),
        ] {
            assert_eq!(
                sorted(server(code)).is_retryable(),
                transient,
                "HTTP {code}"
            );
        }
        assert!(matches!(sorted(server(401)), Failure::Unauthorized(_)));
        assert!(matches!(sorted(server(403)), Failure::Unauthorized(_)));
        assert!(matches!(sorted(server(404)), Failure::NotFound(_)));
        let digest = DigestError::VerificationError {
            expected: "sha256:a".into(),
            actual: "sha256:b".into(),
        };
        assert!(matches!(
            sorted(OciDistributionError::DigestError(digest)),
            Failure::Digest { .. }
        ));
    }

    #[test]
    fn stream_errors_are_cuts_unless_the_digest_is_wrong() {
        let cut = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        assert!(Failure::from_io(cut).is_retryable());
        let wrong = std::io::Error::other(DigestError::VerificationError {
            expected: "sha256:a".into(),
            actual: "sha256:b".into(),
        });
        match Failure::from_io(wrong) {
            Failure::Digest { expected, actual } => assert_eq!(
                (expected.as_str(), actual.as_str()),
                ("sha256:a", "sha256:b")
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_name_the_registry_and_say_why() {
        let anonymous = registry("127.0.0.1:5000/app", &options());
        let err = Failure::Unauthorized("401".into()).into_error(
            &anonymous,
            Subject::Manifest("127.0.0.1:5000/app:latest"),
            0,
        );
        let text = err.to_string();
        assert!(
            text.starts_with("127.0.0.1:5000: unauthorized to pull 127.0.0.1:5000/app:latest"),
            "{text}"
        );
        assert!(
            text.contains("no credentials for 127.0.0.1:5000 were given"),
            "{text}"
        );

        let mut with = options();
        with.keyring
            .add("127.0.0.1:5000", Credentials::Token("t".into()));
        let err = Failure::Unauthorized("401".into()).into_error(
            &registry("127.0.0.1:5000/app", &with),
            Subject::Blob("sha256:x"),
            0,
        );
        assert!(
            err.to_string()
                .contains("credentials given for 127.0.0.1:5000 were refused"),
            "{err}"
        );

        let err = Failure::NotFound("404".into()).into_error(
            &anonymous,
            Subject::Manifest("127.0.0.1:5000/app:nope"),
            0,
        );
        assert_eq!(
            err.to_string(),
            "127.0.0.1:5000: manifest unknown: the registry has no 127.0.0.1:5000/app:nope (404)"
        );
        let err =
            Failure::NotFound("404".into()).into_error(&anonymous, Subject::Blob("sha256:b"), 0);
        assert!(
            err.to_string()
                .contains("blob unknown: the registry has no blob sha256:b"),
            "{err}"
        );
        let err =
            Failure::Transient("reset".into()).into_error(&anonymous, Subject::Blob("sha256:b"), 0);
        assert!(
            err.to_string().contains("failed after 3 attempt(s): reset"),
            "{err}"
        );

        let err = Failure::Unreachable("connection refused".into()).into_error(
            &anonymous,
            Subject::Manifest("x"),
            0,
        );
        assert_eq!(
            err.to_string(),
            "127.0.0.1:5000: registry unreachable: connection refused"
        );
        let remote = registry("registry.example.com/app", &options());
        let err = Failure::Unreachable("tls".into()).into_error(&remote, Subject::Manifest("x"), 0);
        assert!(err.to_string().contains("insecure registry"), "{err}");

        let err = Failure::Digest {
            expected: "sha256:a".into(),
            actual: "sha256:b".into(),
        }
        .into_error(&anonymous, Subject::Blob("sha256:a"), 42);
        assert!(
            matches!(err, Error::DigestMismatch { size: 42, .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn retries_transient_failures_only() {
        let mut opts = options();
        opts.retries = 3;
        let r = registry("127.0.0.1:5000/app", &opts);
        let mut calls = 0;
        let outcome: Result<(), Failure> = r
            .retry(|| {
                calls += 1;
                async { Err(Failure::Transient("reset".into())) }
            })
            .await;
        assert!(outcome.is_err());
        assert_eq!(calls, 3, "three attempts");

        let mut calls = 0;
        let outcome = r
            .retry(|| {
                calls += 1;
                let n = calls;
                async move {
                    if n < 2 {
                        Err(Failure::Unreachable("refused".into()))
                    } else {
                        Ok(n)
                    }
                }
            })
            .await;
        assert_eq!(outcome.unwrap(), 2);

        let mut calls = 0;
        let outcome: Result<(), Failure> = r
            .retry(|| {
                calls += 1;
                async { Err(Failure::NotFound("404".into())) }
            })
            .await;
        assert!(matches!(outcome, Err(Failure::NotFound(_))));
        assert_eq!(calls, 1, "a 404 is not retried");
    }
}
