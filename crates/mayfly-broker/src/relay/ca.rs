//! The per-installation certificate authority of `mayfly run --intercept`:
//! made once in Mayfly's data directory (its key mode 0600), it signs a
//! certificate for each intercepted host, so a tool that trusts it (through
//! `SSL_CERT_FILE` and its kin) talks TLS to the relay as if to the API.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::BrokerError;

/// The authority's certificate, in the data directory.
pub const CA_FILE: &str = "intercept-ca.pem";
/// Its private key, beside it (mode 0600).
pub const CA_KEY_FILE: &str = "intercept-ca-key.pem";

const CA_NAME: &str = "Mayfly local interception CA";

/// The authority, able to sign a certificate per host.
pub struct LocalCa {
    certificate_pem: String,
    issuer: Issuer<'static, KeyPair>,
    configs: Mutex<std::collections::HashMap<String, Arc<rustls::ServerConfig>>>,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalCa(..)")
    }
}

fn error(what: &str, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Internal(format!("interception CA: {what}: {e}"))
}

fn ca_params() -> Result<CertificateParams, BrokerError> {
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| error("parameters", e))?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

impl LocalCa {
    /// The authority in `data_dir`, made on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<LocalCa, BrokerError> {
        let cert_path = data_dir.join(CA_FILE);
        let key_path = data_dir.join(CA_KEY_FILE);
        let (certificate_pem, key) = if cert_path.is_file() && key_path.is_file() {
            let key_pem = std::fs::read_to_string(&key_path)
                .map_err(|e| error(&format!("cannot read {}", key_path.display()), e))?;
            let key = KeyPair::from_pem(&key_pem)
                .map_err(|e| error(&format!("{} is not a private key", key_path.display()), e))?;
            let pem = std::fs::read_to_string(&cert_path)
                .map_err(|e| error(&format!("cannot read {}", cert_path.display()), e))?;
            (pem, key)
        } else {
            let key = KeyPair::generate().map_err(|e| error("key generation", e))?;
            let mut params = ca_params()?;
            params.not_before = rcgen::date_time_ymd(2025, 1, 1);
            params.not_after = rcgen::date_time_ymd(2035, 1, 1);
            let certificate = params
                .self_signed(&key)
                .map_err(|e| error("self-signing", e))?;
            std::fs::create_dir_all(data_dir).map_err(|e| error("data directory", e))?;
            crate::keys::write_private(&key_path, key.serialize_pem().as_bytes())
                .map_err(|e| error(&format!("cannot write {}", key_path.display()), e))?;
            std::fs::write(&cert_path, certificate.pem())
                .map_err(|e| error(&format!("cannot write {}", cert_path.display()), e))?;
            (certificate.pem(), key)
        };
        // The issuer is the same name and key as the stored certificate:
        // what it signs chains to that certificate.
        Ok(LocalCa {
            certificate_pem,
            issuer: Issuer::new(ca_params()?, key),
            configs: Mutex::default(),
        })
    }

    /// The authority's certificate (PEM).
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// Writes, to `path`, the platform's trusted roots followed by this
    /// authority: the bundle a tool is pointed at.
    pub fn write_bundle(&self, path: &Path) -> Result<PathBuf, BrokerError> {
        let mut bundle = String::new();
        for cert in rustls_native_certs::load_native_certs().certs {
            bundle.push_str(&pem_of(&cert));
        }
        bundle.push_str(&self.certificate_pem);
        std::fs::write(path, bundle).map_err(|e| error("cannot write the bundle", e))?;
        Ok(path.to_owned())
    }

    /// A TLS server configuration presenting a certificate for `host`.
    pub fn server_config(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, BrokerError> {
        if let Some(config) = self.configs.lock().ok().and_then(|c| c.get(host).cloned()) {
            return Ok(config);
        }
        let key = KeyPair::generate().map_err(|e| error("key generation", e))?;
        let mut params =
            CertificateParams::new(vec![host.to_owned()]).map_err(|e| error("host name", e))?;
        params.distinguished_name.push(DnType::CommonName, host);
        let certificate = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| error("signing", e))?;
        let chain = vec![certificate.der().clone()];
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| error("TLS", e))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| error("TLS", e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        if let Ok(mut configs) = self.configs.lock() {
            configs.insert(host.to_owned(), config.clone());
        }
        Ok(config)
    }
}

/// A certificate as PEM.
fn pem_of(cert: &CertificateDer<'_>) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}
