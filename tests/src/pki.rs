//! [`Pki`]: a throwaway certificate authority for cluster tests, with the API server's
//! kubelet-client certificate and any other client certificates a test needs, as PEM
//! files in a temp dir.
//!
//! The kubelet under test trusts the CA (`--client-ca-file` [`Pki::ca_path`]); the fake
//! API server presents [`Pki::kubelet_client`] when it proxies logs, exec, attach and
//! port-forward to the kubelet, as kube-apiserver does with `--kubelet-client-certificate`.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;

/// Common name of the certificate kube-apiserver presents to kubelets (kubeadm's name).
pub const KUBELET_CLIENT_CN: &str = "kube-apiserver-kubelet-client";
/// The organisation (group) of the kubelet-client certificate: allowed everything.
pub const MASTERS_GROUP: &str = "system:masters";

/// A certificate the CA issued and its key, in memory (DER and PEM) and on disk (PEM).
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The PKCS#8 private key, DER.
    pub key_der: Vec<u8>,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM.
    pub key_pem: String,
    /// Where the PEM certificate is written.
    pub cert_path: PathBuf,
    /// Where the PEM key is written.
    pub key_path: PathBuf,
}

/// A CA in a temp dir (removed on drop) and the certificates it signed.
pub struct Pki {
    dir: TempDir,
    ca_key: KeyPair,
    ca_params: CertificateParams,
    ca_pem: String,
    ca_der: Vec<u8>,
    kubelet_client: IssuedCert,
}

impl Pki {
    /// A fresh CA (`ca.crt`, `ca.key`) and the kubelet-client certificate
    /// (CN [`KUBELET_CLIENT_CN`], O [`MASTERS_GROUP`]).
    pub fn new() -> Result<Pki, String> {
        let dir = tempfile::Builder::new()
            .prefix("peapod-pki-")
            .tempdir()
            .map_err(|e| format!("creating the PKI temp dir: {e}"))?;
        let ca_key = KeyPair::generate().map_err(|e| format!("generating the CA key: {e}"))?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| format!("CA parameters: {e}"))?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "peapod-test-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .map_err(|e| format!("self-signing the CA: {e}"))?;
        let ca_pem = ca_cert.pem();
        let ca_der = ca_cert.der().to_vec();
        write(&dir.path().join("ca.crt"), &ca_pem)?;
        write(&dir.path().join("ca.key"), &ca_key.serialize_pem())?;
        let placeholder = IssuedCert {
            cert_der: Vec::new(),
            key_der: Vec::new(),
            cert_pem: String::new(),
            key_pem: String::new(),
            cert_path: PathBuf::new(),
            key_path: PathBuf::new(),
        };
        let mut pki = Pki {
            dir,
            ca_key,
            ca_params,
            ca_pem,
            ca_der,
            kubelet_client: placeholder,
        };
        pki.kubelet_client = pki.client_cert(KUBELET_CLIENT_CN, &[MASTERS_GROUP])?;
        Ok(pki)
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// Path of the CA certificate (`ca.crt`): the kubelet's `--client-ca-file`.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The temp dir holding every file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The API server's kubelet-client certificate.
    pub fn kubelet_client(&self) -> &IssuedCert {
        &self.kubelet_client
    }

    /// A new client certificate with common name `cn` (the user) and organisations
    /// `orgs` (the groups), signed by the CA, written as `<cn>.crt` / `<cn>.key`.
    pub fn client_cert(&self, cn: &str, orgs: &[&str]) -> Result<IssuedCert, String> {
        self.issue(cn, orgs, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// A new serving certificate for `hosts` (DNS names or IP addresses), common name
    /// the first of them, signed by the CA.
    pub fn server_cert(&self, hosts: &[&str]) -> Result<IssuedCert, String> {
        let cn = hosts.first().copied().unwrap_or("localhost");
        self.issue(cn, &[], hosts, ExtendedKeyUsagePurpose::ServerAuth)
    }

    fn issue(
        &self,
        cn: &str,
        orgs: &[&str],
        hosts: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<IssuedCert, String> {
        let key = KeyPair::generate().map_err(|e| format!("generating a key for {cn}: {e}"))?;
        let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let mut params = CertificateParams::new(names)
            .map_err(|e| format!("certificate parameters for {cn}: {e}"))?;
        params.distinguished_name.push(DnType::CommonName, cn);
        for org in orgs {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *org);
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        let issuer = Issuer::new(self.ca_params.clone(), &self.ca_key);
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| format!("signing the certificate of {cn}: {e}"))?;
        let file = cn.replace([':', '/'], "_");
        let cert_path = self.dir.path().join(format!("{file}.crt"));
        let key_path = self.dir.path().join(format!("{file}.key"));
        write(&cert_path, &cert.pem())?;
        write(&key_path, &key.serialize_pem())?;
        Ok(IssuedCert {
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_path,
            key_path,
        })
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}
