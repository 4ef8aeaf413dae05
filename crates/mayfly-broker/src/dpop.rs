//! DPoP (RFC 9449): a proof that the caller holds a private key, so the
//! token issued to it is bound to that key (`cnf.jkt`) and useless to
//! anyone who copies it without the key.

use std::collections::HashMap;
use std::sync::Mutex;

use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::b64;
use crate::clock::Timestamp;

/// How far a proof's `iat` may be from now, in seconds.
const WINDOW: i64 = 60;

/// Most proof `jti`s remembered: past it, expired ones are forgotten, and
/// if the window alone holds this many, new proofs are refused.
const MAX_REMEMBERED: usize = 500_000;

/// Why a DPoP proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    /// Not a well-formed proof.
    #[error("invalid DPoP proof: {0}")]
    Invalid(String),
    /// Its `jti` was seen before.
    #[error("the DPoP proof was already used; make a new proof for each request")]
    Replayed,
    /// So many proofs arrived within the replay window that no more can be
    /// remembered: refused rather than accepted unchecked.
    #[error("too many DPoP proofs in the last minute; retry shortly")]
    Busy,
}

#[derive(Deserialize)]
struct ProofClaims {
    htm: String,
    htu: String,
    iat: Timestamp,
    jti: String,
    #[serde(default)]
    ath: Option<String>,
}

/// The `ath` of a proof that presents `access_token` (RFC 9449 section
/// 4.2): base64url of its SHA-256.
pub fn access_token_hash(access_token: &str) -> String {
    use sha2::Digest as _;
    b64::encode(&sha2::Sha256::digest(access_token.as_bytes()))
}

/// What the store keeps of an accepted proof so that no replica, now or
/// after a restart, accepts it again: its SHA-256, and when it can be
/// forgotten (its `iat` is within the window of `now`, so once twice the
/// window has passed it is refused for its age anyway).
pub fn spent(proof: &str, now: Timestamp) -> (String, Timestamp) {
    use sha2::Digest as _;
    let hash = b64::hex(&sha2::Sha256::digest(proof.as_bytes()));
    (hash, now + 2 * WINDOW)
}

/// Checks proofs and remembers their `jti`s for the replay window.
#[derive(Debug, Default)]
pub struct DpopVerifier {
    seen: Mutex<HashMap<String, Timestamp>>,
}

impl DpopVerifier {
    /// Verifies a proof for `method` on `url` and returns the key's
    /// thumbprint. A proof that presents an access token (to a resource,
    /// not to the token endpoint) must carry its hash (`ath`).
    pub fn verify(
        &self,
        proof: &str,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        now: Timestamp,
    ) -> Result<String, DpopError> {
        let invalid = |why: &str| DpopError::Invalid(why.to_owned());
        if proof.len() > 8 * 1024 {
            return Err(invalid("too large"));
        }
        let header = jsonwebtoken::decode_header(proof).map_err(|_| invalid("malformed header"))?;
        if header.typ.as_deref() != Some("dpop+jwt") {
            return Err(invalid("typ must be dpop+jwt"));
        }
        if !matches!(
            header.alg,
            Algorithm::ES256 | Algorithm::EdDSA | Algorithm::RS256
        ) {
            return Err(invalid("alg must be ES256, EdDSA or RS256"));
        }
        let jwk: Jwk = header.jwk.ok_or_else(|| invalid("the header has no jwk"))?;
        if carries_private_key(proof) {
            return Err(invalid("the jwk header holds a private key"));
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| invalid("unusable jwk"))?;
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<ProofClaims>(proof, &key, &validation)
            .map_err(|_| {
                invalid("the signature does not verify or claims are missing (htm, htu, iat, jti)")
            })?
            .claims;
        if !claims.htm.eq_ignore_ascii_case(method) {
            return Err(invalid("htm does not match the request method"));
        }
        if strip_query(&claims.htu) != strip_query(url) {
            return Err(DpopError::Invalid(format!("htu must be {url}")));
        }
        if let Some(token) = access_token
            && claims.ath.as_deref() != Some(access_token_hash(token).as_str())
        {
            return Err(invalid(
                "ath must be the hash of the access token presented",
            ));
        }
        if (claims.iat - now).abs() > WINDOW {
            return Err(invalid("iat is not within a minute of now"));
        }
        if claims.jti.is_empty() || claims.jti.len() > 256 {
            return Err(invalid("jti must be 1 to 256 characters"));
        }
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| invalid("replay cache unavailable"))?;
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, at| (now - *at).abs() <= WINDOW);
            if seen.len() >= MAX_REMEMBERED {
                return Err(DpopError::Busy);
            }
        }
        if seen.insert(claims.jti, claims.iat).is_some() {
            return Err(DpopError::Replayed);
        }
        Ok(jwk.thumbprint(ThumbprintHash::SHA256))
    }
}

/// A caller's DPoP key (P-256, in memory only): what binds its tokens, and
/// what signs a proof for each request.
pub struct ProofKey {
    key: p256::ecdsa::SigningKey,
    jwk: serde_json::Value,
    thumbprint: String,
}

impl std::fmt::Debug for ProofKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProofKey({})", self.thumbprint)
    }
}

impl ProofKey {
    /// A new key.
    pub fn generate() -> Result<ProofKey, DpopError> {
        let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let point = key.verifying_key().to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err(DpopError::Invalid(
                "a new P-256 key has no coordinates".into(),
            ));
        };
        let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "x": b64::encode(x), "y": b64::encode(y)});
        let thumbprint = serde_json::from_value::<Jwk>(jwk.clone())
            .map_err(|e| DpopError::Invalid(e.to_string()))?
            .thumbprint(ThumbprintHash::SHA256);
        Ok(ProofKey {
            key,
            jwk,
            thumbprint,
        })
    }

    /// The key's thumbprint (`cnf.jkt` of the tokens bound to it).
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// A proof for one request: `method` on `url`, presenting
    /// `access_token` when it is made to a resource.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        now: Timestamp,
    ) -> Result<String, DpopError> {
        use p256::ecdsa::signature::Signer as _;
        let header = serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk});
        let jti = b64::random_id().map_err(|e| DpopError::Invalid(e.to_string()))?;
        let mut claims =
            serde_json::json!({"htm": method, "htu": strip_query(url), "iat": now, "jti": jti});
        if let (Some(token), Some(object)) = (access_token, claims.as_object_mut()) {
            object.insert("ath".into(), access_token_hash(token).into());
        }
        let signing_input = format!(
            "{}.{}",
            b64::encode(header.to_string().as_bytes()),
            b64::encode(claims.to_string().as_bytes())
        );
        let signature: p256::ecdsa::Signature = self.key.sign(signing_input.as_bytes());
        Ok(format!(
            "{signing_input}.{}",
            b64::encode(&signature.to_bytes())
        ))
    }
}

fn strip_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// Whether the proof's header JWK has a private member (`d`, `p`, `q`...).
fn carries_private_key(proof: &str) -> bool {
    let Some(header) = proof.split('.').next().and_then(b64::decode) else {
        return true;
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&header) else {
        return true;
    };
    value
        .get("jwk")
        .and_then(|j| j.as_object())
        .is_some_and(|jwk| {
            ["d", "p", "q", "dp", "dq", "qi", "k"]
                .iter()
                .any(|m| jwk.contains_key(*m))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_key_makes_proofs_the_verifier_binds_to_it() {
        let key = ProofKey::generate().unwrap();
        let verifier = DpopVerifier::default();
        let url = "https://mayfly.example/proxy/openai/v1/models";
        let proof = key.proof("GET", url, Some("token-1"), 1000).unwrap();
        let jkt = verifier
            .verify(&proof, "GET", url, Some("token-1"), 1000)
            .unwrap();
        assert_eq!(jkt, key.thumbprint());
        assert_eq!(
            verifier.verify(&proof, "GET", url, Some("token-1"), 1000),
            Err(DpopError::Replayed)
        );
        let other = key.proof("GET", url, Some("token-1"), 1000).unwrap();
        assert!(matches!(
            verifier.verify(&other, "GET", url, Some("token-2"), 1000),
            Err(DpopError::Invalid(_))
        ));
        let post = key.proof("POST", url, Some("token-1"), 1000).unwrap();
        assert!(
            verifier
                .verify(&post, "GET", url, Some("token-1"), 1000)
                .is_err()
        );
    }
}
