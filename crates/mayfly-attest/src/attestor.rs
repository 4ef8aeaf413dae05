//! The attestor's signing key and the tokens it signs: identity tokens for
//! Mayfly's own endpoints and JWT-SVIDs for SPIFFE clients.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use crate::config::AttestConfig;
use crate::peer::PeerFacts;
use crate::template::{Template, spiffe_path};

/// The `iss` of attested identity tokens.
pub const ATTESTED_ISSUER: &str = "https://mayfly.local/attested";
/// The `aud` of attested identity tokens (what the broker expects).
pub const ATTESTED_AUDIENCE: &str = "mayfly";
/// The claims that carry the facts (and become policy's workload tags).
pub const FACT_CLAIMS: [&str; 9] = [
    "uid",
    "gid",
    "pid",
    "exe",
    "exe_sha256",
    "cgroup",
    "container_id",
    "parent_exe",
    "ancestor_exes",
];

/// Largest JWT-SVID `ValidateJWTSVID` reads.
const MAX_SVID_BYTES: usize = 16 * 1024;

/// Why the attestor failed.
#[derive(Debug, thiserror::Error)]
pub enum AttestorError {
    /// Its key file could not be read or written.
    #[error("the local attestor's key {path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A token could not be signed.
    #[error("cannot sign a token: {0}")]
    Sign(String),
    /// A JWT-SVID given to `ValidateJWTSVID` does not validate.
    #[error("the JWT-SVID is not valid: {0}")]
    Invalid(String),
}

/// Signs identity tokens and JWT-SVIDs for attested processes.
pub struct Attestor {
    config: AttestConfig,
    workload: Template,
    spiffe_path: Template,
    /// Kept parsed: `jsonwebtoken` would parse the PKCS #8 key again for
    /// every token.
    signing: p256::ecdsa::SigningKey,
    /// The JWS header, encoded once.
    header: String,
    /// Signs identity tokens: Ed25519 signs and verifies several times
    /// faster than P-256 (JWT-SVIDs need P-256: SPIFFE clients accept no
    /// EdDSA).
    identity: ed25519_dalek::SigningKey,
    identity_header: String,
    identity_public: Value,
    decoding: DecodingKey,
    kid: String,
    public: Value,
    dir: PathBuf,
}

impl std::fmt::Debug for Attestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attestor").field("kid", &self.kid).finish()
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Attestor {
    /// The attestor whose P-256 key is kept in `dir` (made, mode 0600, when
    /// absent); its JWKS is written beside it for the broker to trust.
    pub fn open(dir: &Path, config: AttestConfig) -> Result<Attestor, AttestorError> {
        let key_path = dir.join("signing-key.der");
        let error = |reason: String| AttestorError::Key {
            path: key_path.clone(),
            reason,
        };
        config.check().map_err(|e| error(e.to_string()))?;
        let key = load_or_make(
            dir,
            &key_path,
            |der| p256::SecretKey::from_pkcs8_der(der).map_err(|e| e.to_string()),
            || {
                let key = p256::SecretKey::random(&mut rand_core::OsRng);
                let der = key.to_pkcs8_der().map_err(|e| e.to_string())?;
                Ok((key, der.as_bytes().to_vec()))
            },
        )?;
        let identity = load_or_make(
            dir,
            &dir.join("identity-key.der"),
            |der| {
                use ed25519_dalek::pkcs8::DecodePrivateKey as _;
                ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(|e| e.to_string())
            },
            || {
                use ed25519_dalek::pkcs8::EncodePrivateKey as _;
                let mut seed = zeroize::Zeroizing::new([0u8; 32]);
                rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, seed.as_mut())
                    .map_err(|e| e.to_string())?;
                let key = ed25519_dalek::SigningKey::from_bytes(&seed);
                let der = key.to_pkcs8_der().map_err(|e| e.to_string())?;
                Ok((key, der.as_bytes().to_vec()))
            },
        )?;
        let okp_x = b64(identity.verifying_key().as_bytes());
        let identity_kid = b64(&Sha256::digest(
            format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{okp_x}"}}"#).as_bytes(),
        ));
        let identity_public = json!({"kty": "OKP", "crv": "Ed25519", "x": okp_x, "kid": identity_kid, "alg": "EdDSA"});
        let point = p256::EncodedPoint::from(key.public_key());
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err(error("the public key has no affine coordinates".into()));
        };
        let (x, y) = (b64(x), b64(y));
        // RFC 7638 thumbprint: the required members in lexical order.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = b64(&Sha256::digest(canonical.as_bytes()));
        let decoding = DecodingKey::from_ec_components(&x, &y).map_err(|e| error(e.to_string()))?;
        let public =
            json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256"});
        let attestor = Attestor {
            workload: Template::parse(&config.workload).map_err(error)?,
            spiffe_path: Template::parse(&config.spiffe_path).map_err(error)?,
            config,
            signing: p256::ecdsa::SigningKey::from(&key),
            header: b64(json!({"alg": "ES256", "kid": kid, "typ": "JWT"})
                .to_string()
                .as_bytes()),
            identity_header: b64(json!({"alg": "EdDSA", "kid": identity_kid, "typ": "JWT"})
                .to_string()
                .as_bytes()),
            identity,
            identity_public,
            decoding,
            kid,
            public,
            dir: dir.to_owned(),
        };
        let jwks_path = attestor.jwks_path();
        std::fs::write(&jwks_path, attestor.jwks(false).to_string()).map_err(|e| {
            AttestorError::Key {
                path: jwks_path.clone(),
                reason: e.to_string(),
            }
        })?;
        Ok(attestor)
    }

    /// The settings it runs with.
    pub fn config(&self) -> &AttestConfig {
        &self.config
    }

    /// The JWKS file the broker trusts for attested tokens.
    pub fn jwks_path(&self) -> PathBuf {
        self.dir.join("jwks.json")
    }

    /// The SPIFFE issuer (`spiffe://TRUST_DOMAIN`), the `iss` of JWT-SVIDs.
    pub fn spiffe_issuer(&self) -> String {
        format!("spiffe://{}", self.config.trust_domain)
    }

    /// The public keys: `use` is `jwt-svid` in a SPIFFE bundle, `sig`
    /// otherwise.
    pub fn jwks(&self, spiffe_bundle: bool) -> Value {
        let mut key = self.public.clone();
        if let Some(object) = key.as_object_mut() {
            object.insert(
                "use".into(),
                json!(if spiffe_bundle { "jwt-svid" } else { "sig" }),
            );
        }
        if spiffe_bundle {
            return json!({"keys": [key]});
        }
        let mut identity = self.identity_public.clone();
        if let Some(object) = identity.as_object_mut() {
            object.insert("use".into(), json!("sig"));
        }
        json!({"keys": [key, identity]})
    }

    /// The workload id of a process with `facts`.
    pub fn workload_id(&self, facts: &PeerFacts) -> String {
        self.workload.render(facts)
    }

    /// The SPIFFE ID of a process with `facts`.
    pub fn spiffe_id(&self, facts: &PeerFacts) -> String {
        format!(
            "{}{}",
            self.spiffe_issuer(),
            spiffe_path(&self.spiffe_path.render(facts))
        )
    }

    /// The token lifetime, in seconds.
    pub fn ttl(&self) -> i64 {
        self.config.token_ttl_seconds
    }

    fn sign(
        &self,
        facts: &PeerFacts,
        mut claims: Map<String, Value>,
        now: i64,
        svid: bool,
    ) -> Result<String, AttestorError> {
        for name in FACT_CLAIMS {
            if let Some(value) = facts.fact(name) {
                claims.insert(name.into(), json!(value));
            }
        }
        claims.insert("iat".into(), json!(now));
        claims.insert("nbf".into(), json!(now));
        claims.insert("exp".into(), json!(now + self.config.token_ttl_seconds));
        let payload =
            serde_json::to_vec(&claims).map_err(|e| AttestorError::Sign(e.to_string()))?;
        let header = if svid {
            &self.header
        } else {
            &self.identity_header
        };
        let mut jws = format!("{header}.{}", b64(&payload));
        let signature = if svid {
            let signature: p256::ecdsa::Signature =
                p256::ecdsa::signature::Signer::sign(&self.signing, jws.as_bytes());
            signature.to_bytes().to_vec()
        } else {
            ed25519_dalek::Signer::sign(&self.identity, jws.as_bytes())
                .to_bytes()
                .to_vec()
        };
        jws.push('.');
        jws.push_str(&b64(&signature));
        Ok(jws)
    }

    /// An identity token for Mayfly's task endpoints.
    pub fn identity_token(&self, facts: &PeerFacts, now: i64) -> Result<String, AttestorError> {
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(ATTESTED_ISSUER));
        claims.insert("sub".into(), json!(self.workload_id(facts)));
        claims.insert("aud".into(), json!(ATTESTED_AUDIENCE));
        self.sign(facts, claims, now, false)
    }

    /// A JWT-SVID for `audiences`.
    pub fn svid(
        &self,
        facts: &PeerFacts,
        audiences: &[String],
        now: i64,
    ) -> Result<String, AttestorError> {
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.spiffe_issuer()));
        claims.insert("sub".into(), json!(self.spiffe_id(facts)));
        claims.insert("aud".into(), json!(audiences));
        self.sign(facts, claims, now, true)
    }

    /// Validates a JWT-SVID this attestor signed, for `audience`: its SPIFFE
    /// ID and claims.
    pub fn validate_svid(
        &self,
        token: &str,
        audience: &str,
        now: i64,
    ) -> Result<(String, Map<String, Value>), AttestorError> {
        let invalid = |reason: &str| AttestorError::Invalid(reason.to_owned());
        if token.len() > MAX_SVID_BYTES {
            return Err(invalid("it is longer than 16 KiB"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("it is not a JWT"))?;
        if header.alg != Algorithm::ES256 || header.kid.as_deref() != Some(&self.kid) {
            return Err(invalid("it is not signed by this trust domain's key"));
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &self.decoding, &validation)
            .map_err(|_| invalid("its signature does not verify"))?
            .claims;
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or_else(|| invalid("it has no exp"))?;
        if exp <= now {
            return Err(invalid("it has expired"));
        }
        let audiences = match claims.get("aud") {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !audiences.contains(&audience) {
            return Err(invalid("its audience does not include the one asked"));
        }
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !sub.starts_with(&format!("{}/", self.spiffe_issuer())) {
            return Err(invalid("its sub is not a SPIFFE ID of this trust domain"));
        }
        Ok((sub.to_owned(), claims))
    }
}

/// A private key kept in `path` (PKCS #8), made and written (mode 0600)
/// when absent.
fn load_or_make<K>(
    dir: &Path,
    path: &Path,
    parse: impl Fn(&[u8]) -> Result<K, String>,
    make: impl Fn() -> Result<(K, Vec<u8>), String>,
) -> Result<K, AttestorError> {
    let error = |reason: String| AttestorError::Key {
        path: path.to_owned(),
        reason,
    };
    match std::fs::read(path) {
        Ok(der) => parse(&der).map_err(|e| {
            error(format!(
                "not a PKCS #8 key of the expected kind ({e}); move it away to make a new one"
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (key, der) = make().map_err(error)?;
            write_private(dir, path, &der).map_err(|e| error(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(error(e.to_string())),
    }
}

/// Writes a private key file, mode 0600, creating its directory (0700).
fn write_private(dir: &Path, path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> PeerFacts {
        PeerFacts {
            uid: 1000,
            gid: 1000,
            pid: 7,
            exe: "/usr/bin/node".into(),
            exe_sha256: "cd".repeat(32),
            cgroup: "/user.slice".into(),
            container_id: None,
            ancestors: vec![crate::peer::Ancestor {
                pid: 3,
                exe: "/opt/claude/claude".into(),
            }],
        }
    }

    #[test]
    fn svids_validate_for_their_audience_only_and_keep_the_facts() {
        let dir = tempfile::tempdir().unwrap();
        let attestor = Attestor::open(&dir.path().join("a"), AttestConfig::default()).unwrap();
        let svid = attestor.svid(&facts(), &["billing".into()], 1_000).unwrap();
        let (id, claims) = attestor.validate_svid(&svid, "billing", 1_001).unwrap();
        assert_eq!(id, "spiffe://mayfly.local/local/uid/1000/exe/usr/bin/node");
        assert_eq!(claims["parent_exe"], "/opt/claude/claude");
        assert_eq!(claims["ancestor_exes"], ":/opt/claude/claude:");
        assert!(attestor.validate_svid(&svid, "other", 1_001).is_err());
        assert!(
            attestor
                .validate_svid(&svid, "billing", 1_000 + 301)
                .unwrap_err()
                .to_string()
                .contains("expired")
        );
        let mut forged = svid.clone();
        forged.pop();
        forged.push(if svid.ends_with('A') { 'B' } else { 'A' });
        assert!(attestor.validate_svid(&forged, "billing", 1_001).is_err());
        // The same key is found again on the next start.
        let again = Attestor::open(&dir.path().join("a"), AttestConfig::default()).unwrap();
        assert!(again.validate_svid(&svid, "billing", 1_001).is_ok());
        let jwks: Value =
            serde_json::from_str(&std::fs::read_to_string(again.jwks_path()).unwrap()).unwrap();
        assert_eq!(jwks["keys"][0]["use"], "sig");
        assert_eq!(again.jwks(true)["keys"][0]["use"], "jwt-svid");
    }

    #[test]
    fn identity_tokens_name_the_workload_from_the_template() {
        let dir = tempfile::tempdir().unwrap();
        let attestor = Attestor::open(dir.path(), AttestConfig::default()).unwrap();
        let token = attestor.identity_token(&facts(), 50).unwrap();
        let payload = token.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["sub"], "local:uid:1000:exe:/usr/bin/node");
        assert_eq!(claims["iss"], ATTESTED_ISSUER);
        assert_eq!(claims["exe_sha256"], "cd".repeat(32));
        assert_eq!(claims["exp"], 350);
    }
}
