//! The kubelet API's TLS: the serving certificate (`--tls-cert-file` and
//! `--tls-private-key-file`, or a self-signed one kept in `<root>/pki` as upstream keeps
//! it in /var/lib/kubelet/pki), client certificates verified against `--client-ca-file`,
//! and the user a verified certificate names (CN, and O as groups).
//!
//! Clients without a certificate are let through the handshake, so bearer tokens can
//! authenticate them; a certificate that does not verify fails the handshake.

use std::io;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Datelike as _;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use super::review::User;

/// The self-signed certificate's file names in the certificate folder (upstream's).
const SELF_SIGNED_CERT: &str = "kubelet.crt";
const SELF_SIGNED_KEY: &str = "kubelet.key";

/// Why the TLS setup failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A PEM file held nothing usable.
    #[error("{}: {what}", path.display())]
    Pem {
        /// What was expected and not found.
        what: String,
        /// The file.
        path: PathBuf,
    },
    /// The self-signed certificate could not be made.
    #[error("making a self-signed serving certificate: {0}")]
    SelfSigned(#[from] rcgen::Error),
    /// rustls refused the certificates or the client CA.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serving {
    /// `--tls-cert-file` and `--tls-private-key-file`, when given.
    pub files: Option<(PathBuf, PathBuf)>,
    /// The folder of the self-signed certificate otherwise (`<root>/pki`).
    pub cert_dir: PathBuf,
    /// The names the self-signed certificate is for (node name, `localhost`).
    pub names: Vec<String>,
    /// The addresses it is for (node IPs, loopback).
    pub ips: Vec<IpAddr>,
}

/// The rustls server configuration: the serving certificate and, with `client_ca`, the
/// verifier of client certificates. HTTP/1.1 only (upgrades for exec and port-forward).
pub fn server_config(
    serving: &Serving,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let (certs, key) = match &serving.files {
        Some((cert, key)) => (read_certs(cert)?, read_key(key)?),
        None => self_signed(serving)?,
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_ca {
        Some(path) => builder.with_client_cert_verifier(client_verifier(path, provider)?),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(format!("the serving certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A verifier of client certificates signed by the CAs in `path`; clients without a
/// certificate are allowed (they may bring a token).
fn client_verifier(
    path: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            what: format!("not a CA certificate: {e}"),
            path: path.to_path_buf(),
        })?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Config(format!("client CA {}: {e}", path.display())))
}

/// The certificates of a PEM file, in order.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(io_error("reading", path))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            what: format!("expected PEM certificates: {e}"),
            path: path.to_path_buf(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what: "expected a PEM certificate, found none".into(),
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = std::fs::read(path).map_err(io_error("reading", path))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        what: format!("expected a PEM private key: {e}"),
        path: path.to_path_buf(),
    })
}

/// The self-signed certificate in the certificate folder, made on first use.
fn self_signed(
    serving: &Serving,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let cert_path = serving.cert_dir.join(SELF_SIGNED_CERT);
    let key_path = serving.cert_dir.join(SELF_SIGNED_KEY);
    if !(key_path.exists() && valid_now(&cert_path)) {
        make_self_signed(serving, &cert_path, &key_path)?;
    }
    Ok((read_certs(&cert_path)?, read_key(&key_path)?))
}

/// Whether the certificate at `path` exists, parses and has not expired.
fn valid_now(path: &Path) -> bool {
    let Ok(pem) = std::fs::read(path) else {
        return false;
    };
    let Ok(der) = CertificateDer::from_pem_slice(&pem) else {
        return false;
    };
    x509_parser::parse_x509_certificate(der.as_ref())
        .is_ok_and(|(_, cert)| cert.validity().is_valid())
}

/// Write a new self-signed certificate for the node's names and addresses; the key is
/// written first and only readable by root.
fn make_self_signed(serving: &Serving, cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(&serving.cert_dir).map_err(io_error("creating", &serving.cert_dir))?;
    let mut params = rcgen::CertificateParams::new(serving.names.clone())?;
    for ip in &serving.ips {
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(*ip));
    }
    let common_name = serving.names.first().cloned().unwrap_or_default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{common_name}@peapod"));
    // A year, as upstream's self-signed kubelet certificate; an expired one is replaced.
    let until = chrono::Utc::now() + chrono::Duration::days(365);
    params.not_after = rcgen::date_time_ymd(until.year(), until.month() as u8, until.day() as u8);
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    write_new(key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(cert_path, cert.pem().as_bytes(), 0o644)
}

/// Write `data` to `path` with `mode` via a temporary file and a rename, so a crash never
/// leaves half a certificate.
fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_error("creating", &tmp))?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(io_error("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error("renaming into place", path))
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> TlsError {
    let path = path.to_path_buf();
    move |source| TlsError::Io { what, path, source }
}

/// The user a verified client certificate names: CN is the user, each O a group; None for
/// a certificate without a CN (upstream refuses those).
pub fn certificate_user(cert: &CertificateDer<'_>) -> Option<User> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_owned();
    if name.is_empty() {
        return None;
    }
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    Some(User {
        name,
        groups,
        ..User::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serving(dir: &Path) -> Serving {
        Serving {
            files: None,
            cert_dir: dir.join("pki"),
            names: vec!["node-a".into(), "localhost".into()],
            ips: vec!["127.0.0.1".parse().unwrap()],
        }
    }

    #[test]
    fn self_signed_certificate_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let serving = serving(dir.path());
        server_config(&serving, None).unwrap();
        let cert = std::fs::read(dir.path().join("pki/kubelet.crt")).unwrap();
        let key_mode = std::fs::metadata(dir.path().join("pki/kubelet.key"))
            .unwrap()
            .permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(key_mode.mode() & 0o777, 0o600);
        server_config(&serving, None).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("pki/kubelet.crt")).unwrap(),
            cert,
            "the certificate is reused"
        );
        let der = CertificateDer::from_pem_slice(&cert).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let sans = format!(
            "{:?}",
            parsed.subject_alternative_name().unwrap().unwrap().value
        );
        assert!(
            sans.contains("node-a") && sans.contains("localhost"),
            "{sans}"
        );
    }

    #[test]
    fn a_certificate_names_its_user_and_groups() {
        let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "system:node:a");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:nodes");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let user = certificate_user(cert.der()).unwrap();
        assert_eq!(user, User::named("system:node:a", &["system:nodes"]));
    }

    #[test]
    fn missing_and_empty_files_say_which() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.crt");
        std::fs::write(&empty, "").unwrap();
        let mut serving = serving(dir.path());
        let err = server_config(&serving, Some(&empty)).unwrap_err();
        assert!(err.to_string().contains("ca.crt"), "{err}");
        serving.files = Some((dir.path().join("no.crt"), dir.path().join("no.key")));
        let err = server_config(&serving, None).unwrap_err();
        assert!(err.to_string().contains("no.crt"), "{err}");
    }
}
