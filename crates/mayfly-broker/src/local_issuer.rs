//! A local identity issuer for trying Mayfly on one machine: an Ed25519
//! key in the data directory signs workload JWTs (`mayfly identity mint`),
//! and `mayfly serve` on its embedded defaults trusts it. Real deployments
//! trust GitHub Actions, Kubernetes or SPIFFE instead.

use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

use crate::b64;
use crate::clock::Timestamp;
use crate::config::IssuerConfig;
use crate::keys::write_private;

/// The `iss` of locally minted tokens.
pub const LOCAL_ISSUER: &str = "https://mayfly.local/identity";
/// The `aud` they carry and the embedded config expects.
pub const LOCAL_AUDIENCE: &str = "mayfly";

/// Why the local issuer failed.
#[derive(Debug, thiserror::Error)]
#[error("local identity issuer ({path}): {reason}")]
pub struct LocalIssuerError {
    /// The file concerned.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

/// The local issuer's files.
#[derive(Debug, Clone)]
pub struct LocalIssuer {
    dir: PathBuf,
}

impl LocalIssuer {
    /// The issuer kept in `data_dir/local-issuer`.
    pub fn new(data_dir: &Path) -> LocalIssuer {
        LocalIssuer {
            dir: data_dir.join("local-issuer"),
        }
    }

    /// Its JWKS file.
    pub fn jwks_path(&self) -> PathBuf {
        self.dir.join("jwks.json")
    }

    fn key_path(&self) -> PathBuf {
        self.dir.join("signing-key.der")
    }

    fn error(path: &Path, reason: impl std::fmt::Display) -> LocalIssuerError {
        LocalIssuerError {
            path: path.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// Creates the key and JWKS when they do not exist; returns the key.
    pub fn ensure(&self) -> Result<ed25519_dalek::SigningKey, LocalIssuerError> {
        let key_path = self.key_path();
        match std::fs::read(&key_path) {
            Ok(der) => ed25519_dalek::SigningKey::from_pkcs8_der(&der)
                .map_err(|e| Self::error(&key_path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let seed = b64::random_bytes::<32>().map_err(|e| Self::error(&key_path, e))?;
                let key = ed25519_dalek::SigningKey::from_bytes(&seed);
                let der = key.to_pkcs8_der().map_err(|e| Self::error(&key_path, e))?;
                write_private(&key_path, der.as_bytes()).map_err(|e| Self::error(&key_path, e))?;
                let jwks = json!({"keys": [{
                    "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": "local-1",
                    "x": b64::encode(key.verifying_key().as_bytes()),
                }]});
                let jwks_path = self.jwks_path();
                std::fs::write(&jwks_path, jwks.to_string())
                    .map_err(|e| Self::error(&jwks_path, e))?;
                Ok(key)
            }
            Err(e) => Err(Self::error(&key_path, e)),
        }
    }

    /// The `[[issuer]]` entry that trusts this issuer.
    pub fn issuer_config(&self) -> IssuerConfig {
        IssuerConfig {
            name: "local".into(),
            issuer: Some(LOCAL_ISSUER.into()),
            preset: None,
            audiences: vec![LOCAL_AUDIENCE.into()],
            algorithms: vec!["EdDSA".into()],
            jwks_file: Some(self.jwks_path()),
            jwks_uri: None,
            workload: None,
            tenant_claim: None,
            tenant: Some("local".into()),
            claims: Vec::new(),
            trust_domain: None,
            leeway_seconds: 30,
            min_refresh_seconds: 30,
        }
    }

    /// The `[[issuer]]` entries that trust local attestation: identity
    /// tokens (`local:` workloads) and JWT-SVIDs of its trust domain, with
    /// the attested facts as policy's workload tags.
    pub fn attested_issuer_configs(attestor: &mayfly_attest::Attestor) -> [IssuerConfig; 2] {
        let facts: Vec<String> = mayfly_attest::FACT_CLAIMS
            .iter()
            .map(|c| (*c).to_owned())
            .collect();
        let base = IssuerConfig {
            name: "local-attested".into(),
            issuer: Some(mayfly_attest::ATTESTED_ISSUER.into()),
            preset: Some("local".into()),
            audiences: vec![mayfly_attest::ATTESTED_AUDIENCE.into()],
            algorithms: vec!["EdDSA".into()],
            jwks_file: Some(attestor.jwks_path()),
            jwks_uri: None,
            workload: None,
            tenant_claim: None,
            tenant: Some("local".into()),
            claims: facts,
            trust_domain: None,
            leeway_seconds: 30,
            min_refresh_seconds: 30,
        };
        let spiffe = IssuerConfig {
            name: "local-spiffe".into(),
            issuer: Some(attestor.spiffe_issuer()),
            preset: Some("spiffe".into()),
            audiences: vec![
                mayfly_attest::ATTESTED_AUDIENCE.into(),
                attestor.spiffe_issuer(),
            ],
            trust_domain: Some(attestor.config().trust_domain.clone()),
            algorithms: vec!["ES256".into()],
            ..base.clone()
        };
        [base, spiffe]
    }

    /// Signs a workload JWT for `subject`, valid for `ttl` seconds, with
    /// extra claims.
    pub fn mint(
        &self,
        subject: &str,
        ttl: i64,
        extra: Map<String, Value>,
        now: Timestamp,
    ) -> Result<String, LocalIssuerError> {
        let key = self.ensure()?;
        let key_path = self.key_path();
        let der = key.to_pkcs8_der().map_err(|e| Self::error(&key_path, e))?;
        let mut claims = extra;
        claims.insert("iss".into(), json!(LOCAL_ISSUER));
        claims.insert("sub".into(), json!(subject));
        claims.insert("aud".into(), json!(LOCAL_AUDIENCE));
        claims.insert("iat".into(), json!(now));
        claims.insert("nbf".into(), json!(now));
        claims.insert("exp".into(), json!(now + ttl));
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("local-1".into());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(der.as_bytes()))
            .map_err(|e| Self::error(&key_path, e))
    }
}
