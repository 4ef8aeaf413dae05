//! Mayfly's own signing keys: generated here, sealed with AES-256-GCM under
//! a master key before they reach the store, rotated on a schedule. The
//! JWKS carries the current key and the previous ones whose tokens may
//! still be alive.

use std::collections::HashMap;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use mayfly_store::SigningKeyRecord;
use serde_json::json;
use zeroize::Zeroizing;

use crate::b64;
use crate::clock::Timestamp;

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The master key is missing, unreadable or malformed.
    #[error("master key: {0}")]
    Master(String),
    /// A sealed key does not open (another master key, or tampering).
    #[error(
        "signing key {kid} does not unseal with this master key; use the master key it was sealed with"
    )]
    Unseal {
        /// The key id.
        kid: String,
    },
    /// A sealed value does not open (another master key, another entry or
    /// version, or tampering).
    #[error("{what} does not open with this master key; use the master key it was sealed with")]
    Sealed {
        /// What was sealed.
        what: String,
    },
    /// Key generation or encoding failed.
    #[error("cannot make a signing key: {0}")]
    Generate(String),
}

/// The 32-byte key that seals signing keys.
pub struct MasterKey(Aes256Gcm);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// From base64 text (`MAYFLY_MASTER_KEY`).
    pub fn from_base64(text: &str) -> Result<MasterKey, KeyError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| {
            KeyError::Master("not base64; it must be 32 random bytes in base64".into())
        })?;
        MasterKey::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8]) -> Result<MasterKey, KeyError> {
        Aes256Gcm::new_from_slice(bytes)
            .map(MasterKey)
            .map_err(|_| KeyError::Master(format!("it is {} bytes; it must be 32", bytes.len())))
    }

    /// Reads the key file; `None` when it does not exist (nothing is
    /// created: for commands that only read what the broker sealed).
    pub fn load(path: &Path) -> Result<Option<MasterKey>, KeyError> {
        match std::fs::read_to_string(path) {
            Ok(text) => MasterKey::from_base64(&text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(KeyError::Master(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// Reads the key file, creating it (mode 0600, 32 random bytes in
    /// base64) when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<MasterKey, KeyError> {
        let shown = path.display();
        match std::fs::read_to_string(path) {
            Ok(text) => MasterKey::from_base64(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let bytes =
                    b64::random_bytes::<32>().map_err(|e| KeyError::Master(e.to_string()))?;
                write_private(path, STANDARD.encode(bytes).as_bytes())
                    .map_err(|e| KeyError::Master(format!("cannot write {shown}: {e}")))?;
                MasterKey::from_bytes(&bytes)
            }
            Err(e) => Err(KeyError::Master(format!("cannot read {shown}: {e}"))),
        }
    }

    fn seal(&self, kid: &str, plaintext: &[u8]) -> Result<String, KeyError> {
        self.seal_bytes(kid.as_bytes(), plaintext)
    }

    fn unseal(&self, kid: &str, sealed: &str) -> Result<Vec<u8>, KeyError> {
        self.unseal_bytes(kid.as_bytes(), sealed, kid)
            .map_err(|_| KeyError::Unseal {
                kid: kid.to_owned(),
            })
    }

    /// Seals `plaintext` with a fresh nonce, bound to `aad`: nonce and
    /// ciphertext, base64.
    pub(crate) fn seal_bytes(&self, aad: &[u8], plaintext: &[u8]) -> Result<String, KeyError> {
        let nonce = b64::random_bytes::<12>().map_err(|e| KeyError::Generate(e.to_string()))?;
        let sealed = self
            .0
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| KeyError::Generate("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(STANDARD.encode(out))
    }

    /// Opens what [`MasterKey::seal_bytes`] sealed with the same `aad`;
    /// `what` names it in the error.
    pub(crate) fn unseal_bytes(
        &self,
        aad: &[u8],
        sealed: &str,
        what: &str,
    ) -> Result<Vec<u8>, KeyError> {
        let unseal_error = || KeyError::Sealed {
            what: what.to_owned(),
        };
        let bytes = STANDARD.decode(sealed).map_err(|_| unseal_error())?;
        if bytes.len() < 12 {
            return Err(unseal_error());
        }
        let (nonce, body) = bytes.split_at(12);
        self.0
            .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad })
            .map_err(|_| unseal_error())
    }
}

/// Writes a file only its owner can read, creating its directory (only
/// its owner can enter it).
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.is_dir())
    {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            builder.mode(0o700);
        }
        builder.create(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Makes a new signing key, sealed for the store.
pub fn generate(
    alg: &str,
    master: &MasterKey,
    now: Timestamp,
) -> Result<SigningKeyRecord, KeyError> {
    let generate_error = |e: &dyn std::fmt::Display| KeyError::Generate(e.to_string());
    let algorithm =
        parse_alg(alg).ok_or_else(|| KeyError::Generate(format!("unsupported algorithm {alg}")))?;
    let seed = Zeroizing::new(b64::random_bytes::<32>().map_err(|e| generate_error(&e))?);
    let der = Zeroizing::new(match algorithm {
        Algorithm::EdDSA => ed25519_dalek::SigningKey::from_bytes(&seed)
            .to_pkcs8_der()
            .map_err(|e| generate_error(&e))?
            .as_bytes()
            .to_vec(),
        Algorithm::RS256 => {
            use rsa::pkcs8::EncodePrivateKey as _;
            rsa::RsaPrivateKey::new(&mut rand_core::OsRng, RSA_BITS)
                .map_err(|e| generate_error(&e))?
                .to_pkcs8_der()
                .map_err(|e| generate_error(&e))?
                .as_bytes()
                .to_vec()
        }
        _ => p256::SecretKey::from_slice(seed.as_slice())
            .map_err(|e| generate_error(&e))?
            .to_pkcs8_der()
            .map_err(|e| generate_error(&e))?
            .as_bytes()
            .to_vec(),
    });
    let (_, jwk) = open_private(algorithm, &der)
        .ok_or_else(|| KeyError::Generate("the new key does not read back".into()))?;
    let kid = jwk.common.key_id.clone().unwrap_or_default();
    Ok(SigningKeyRecord {
        sealed_private: master.seal(&kid, &der)?,
        public_jwk: serde_json::to_string(&jwk).map_err(|e| generate_error(&e))?,
        kid,
        alg: alg.to_owned(),
        created_at: now,
        retired_at: None,
    })
}

/// A private key (PKCS #8) ready to sign, and the public JWK derived from
/// it: `kid` its SHA-256 thumbprint (RFC 7638), with `alg` and `use`.
fn open_private(alg: Algorithm, der: &[u8]) -> Option<(Signer, Jwk)> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    let (signer, public) = match alg {
        Algorithm::EdDSA => {
            let key = ed25519_dalek::SigningKey::from_pkcs8_der(der).ok()?;
            let x = b64::encode(key.verifying_key().as_bytes());
            (
                Signer::Ed25519(Box::new(key)),
                json!({"kty": "OKP", "crv": "Ed25519", "x": x}),
            )
        }
        Algorithm::ES256 => {
            let key = p256::ecdsa::SigningKey::from_pkcs8_der(der).ok()?;
            let point = key.verifying_key().to_encoded_point(false);
            let (x, y) = (b64::encode(point.x()?), b64::encode(point.y()?));
            (
                Signer::P256(Box::new(key)),
                json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
            )
        }
        Algorithm::RS256 => {
            use rsa::traits::PublicKeyParts as _;
            let key = rsa::RsaPrivateKey::from_pkcs8_der(der).ok()?;
            let (n, e) = (
                b64::encode(&key.n().to_bytes_be()),
                b64::encode(&key.e().to_bytes_be()),
            );
            (
                Signer::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(key))),
                json!({"kty": "RSA", "n": n, "e": e}),
            )
        }
        _ => return None,
    };
    let thumbprint = serde_json::from_value::<Jwk>(public.clone())
        .ok()?
        .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256);
    let mut public = public;
    let object = public.as_object_mut()?;
    object.insert("kid".into(), json!(thumbprint));
    object.insert("alg".into(), json!(format!("{alg:?}")));
    object.insert("use".into(), json!("sig"));
    Some((signer, serde_json::from_value(public).ok()?))
}

/// Size of Mayfly's RSA keys, in bits.
const RSA_BITS: usize = 2048;

/// A private key ready to sign. Kept parsed: deriving an Ed25519 public
/// key from PKCS#8 costs as much as a signature, and `jsonwebtoken` would
/// do it for every token.
pub enum Signer {
    /// Ed25519 (`EdDSA`).
    Ed25519(Box<ed25519_dalek::SigningKey>),
    /// P-256 (`ES256`).
    P256(Box<p256::ecdsa::SigningKey>),
    /// RSA with PKCS #1 v1.5 and SHA-256 (`RS256`, which RFC 9068 requires).
    Rsa(Box<rsa::pkcs1v15::SigningKey<sha2::Sha256>>),
}

impl Signer {
    /// The JWS signature of `message` (raw bytes: 64 for EdDSA and ES256,
    /// the modulus size for RS256).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        use ed25519_dalek::Signer as _;
        match self {
            Signer::Ed25519(key) => key.sign(message).to_bytes().to_vec(),
            Signer::P256(key) => {
                let signature: p256::ecdsa::Signature =
                    p256::ecdsa::signature::Signer::sign(key.as_ref(), message);
                signature.to_bytes().to_vec()
            }
            Signer::Rsa(key) => {
                use rsa::signature::SignatureEncoding as _;
                let signature: rsa::pkcs1v15::Signature =
                    rsa::signature::Signer::sign(key.as_ref(), message);
                signature.to_vec()
            }
        }
    }
}

/// The keys in use: the newest key of each algorithm signs, all verify,
/// and the JWKS publishes them.
pub struct KeyRing {
    signers: Vec<(String, Algorithm, Signer, Timestamp)>,
    verifiers: HashMap<String, (Algorithm, DecodingKey)>,
    /// The published key set.
    pub jwks: JwkSet,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KeyRing({:?})",
            self.verifiers.keys().collect::<Vec<_>>()
        )
    }
}

/// The algorithms Mayfly signs its tokens with.
pub const SIGNING_ALGORITHMS: [&str; 3] = ["EdDSA", "ES256", "RS256"];

/// The JOSE algorithm of a name in [`SIGNING_ALGORITHMS`].
pub fn parse_alg(alg: &str) -> Option<Algorithm> {
    match alg {
        "EdDSA" => Some(Algorithm::EdDSA),
        "ES256" => Some(Algorithm::ES256),
        "RS256" => Some(Algorithm::RS256),
        _ => None,
    }
}

impl KeyRing {
    /// Builds the ring from stored keys (newest first). Keys retired more
    /// than `keep_retired` seconds ago are dropped: no token they signed
    /// can still be alive.
    ///
    /// Every record is authenticated before it is used: its private half
    /// must unseal under the master key (which binds the `kid`), and its
    /// algorithm, public key and `kid` must be what that private half
    /// derives. A record that fails (inserted into the store without the
    /// master key, or edited) is skipped: never published, never trusted.
    /// If no record passes, the master key is the wrong one: an error.
    pub fn from_records(
        records: &[SigningKeyRecord],
        master: &MasterKey,
        now: Timestamp,
        keep_retired: i64,
    ) -> Result<KeyRing, KeyError> {
        let mut signers: Vec<(String, Algorithm, Signer, Timestamp)> = Vec::new();
        let mut verifiers = HashMap::new();
        let mut jwks = JwkSet { keys: Vec::new() };
        let mut rejected: Option<String> = None;
        let mut considered = 0;
        for record in records {
            if record.retired_at.is_some_and(|at| now - at > keep_retired) {
                continue;
            }
            considered += 1;
            let Some((alg, signer, jwk)) = authenticate(record, master) else {
                rejected.get_or_insert_with(|| record.kid.clone());
                continue;
            };
            let Ok(decoding) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            if record.retired_at.is_none() && !signers.iter().any(|s| s.1 == alg) {
                signers.push((record.kid.clone(), alg, signer, record.created_at));
            }
            verifiers.insert(record.kid.clone(), (alg, decoding));
            jwks.keys.push(jwk);
        }
        if let Some(kid) = rejected
            && verifiers.is_empty()
            && considered > 0
        {
            return Err(KeyError::Unseal { kid });
        }
        Ok(KeyRing {
            signers,
            verifiers,
            jwks,
        })
    }

    /// The signing key of an algorithm: id, algorithm, key.
    pub fn signer(&self, alg: Algorithm) -> Option<(&str, Algorithm, &Signer)> {
        self.signers
            .iter()
            .find(|s| s.1 == alg)
            .map(|(kid, alg, key, _)| (kid.as_str(), *alg, key))
    }

    /// When the signing key of an algorithm was made, if there is one.
    pub fn signer_created_at(&self, alg: Algorithm) -> Option<Timestamp> {
        self.signers.iter().find(|s| s.1 == alg).map(|s| s.3)
    }

    /// The ids of the keys that sign, one per algorithm.
    pub fn signer_kids(&self) -> impl Iterator<Item = &str> {
        self.signers.iter().map(|s| s.0.as_str())
    }

    /// A verifying key by id.
    pub fn verifier(&self, kid: &str) -> Option<(Algorithm, &DecodingKey)> {
        self.verifiers.get(kid).map(|(alg, key)| (*alg, key))
    }
}

/// A stored key whose private half unseals and derives the record's
/// algorithm, public key and `kid`; `None` for anything else.
fn authenticate(record: &SigningKeyRecord, master: &MasterKey) -> Option<(Algorithm, Signer, Jwk)> {
    let alg = parse_alg(&record.alg)?;
    let der = Zeroizing::new(master.unseal(&record.kid, &record.sealed_private).ok()?);
    let (signer, derived) = open_private(alg, &der)?;
    let stored: serde_json::Value = serde_json::from_str(&record.public_jwk).ok()?;
    let derived_value = serde_json::to_value(&derived).ok()?;
    let same_public = ["kty", "crv", "x", "y", "n", "e"]
        .iter()
        .all(|member| stored.get(member) == derived_value.get(member));
    (same_public && derived.common.key_id.as_deref() == Some(record.kid.as_str()))
        .then_some((alg, signer, derived))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_with_their_master_key() {
        let master = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        for alg in SIGNING_ALGORITHMS {
            let record = generate(alg, &master, 100).unwrap();
            assert!(!record.sealed_private.is_empty());
            let ring =
                KeyRing::from_records(std::slice::from_ref(&record), &master, 100, 10).unwrap();
            assert_eq!(
                ring.signer(parse_alg(alg).unwrap()).map(|s| s.0.to_owned()),
                Some(record.kid.clone())
            );
            assert_eq!(ring.jwks.keys.len(), 1);
            let other = MasterKey::from_bytes(&[8u8; 32]).unwrap();
            let err = KeyRing::from_records(&[record], &other, 100, 10).unwrap_err();
            assert!(matches!(err, KeyError::Unseal { .. }));
        }
    }

    #[test]
    fn records_that_do_not_authenticate_are_never_trusted() {
        let master = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        let other = MasterKey::from_bytes(&[9u8; 32]).unwrap();
        let good = generate("EdDSA", &master, 100).unwrap();
        // Inserted without the master key: sealed under another one.
        let mut forged = generate("EdDSA", &other, 90).unwrap();
        forged.retired_at = Some(95);
        // A real record whose public key was swapped for an attacker's.
        let mut swapped = generate("ES256", &master, 80).unwrap();
        swapped.public_jwk = generate("ES256", &other, 80).unwrap().public_jwk;
        // A real record whose algorithm was relabelled.
        let mut relabelled = generate("ES256", &master, 70).unwrap();
        relabelled.alg = "RS256".into();
        let ring = KeyRing::from_records(
            &[
                good.clone(),
                forged.clone(),
                swapped.clone(),
                relabelled.clone(),
            ],
            &master,
            100,
            1000,
        )
        .unwrap();
        assert_eq!(ring.jwks.keys.len(), 1);
        assert!(ring.verifier(&good.kid).is_some());
        for bad in [&forged, &swapped, &relabelled] {
            assert!(ring.verifier(&bad.kid).is_none(), "{}", bad.kid);
        }
    }

    #[test]
    fn long_retired_keys_leave_the_jwks() {
        let master = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        let mut old = generate("EdDSA", &master, 0).unwrap();
        old.retired_at = Some(10);
        let new = generate("EdDSA", &master, 10).unwrap();
        let records = [new, old];
        assert_eq!(
            KeyRing::from_records(&records, &master, 20, 100)
                .unwrap()
                .jwks
                .keys
                .len(),
            2
        );
        assert_eq!(
            KeyRing::from_records(&records, &master, 200, 100)
                .unwrap()
                .jwks
                .keys
                .len(),
            1
        );
    }
}
