//! Mayfly's access tokens: JWTs per RFC 9068 (`typ: at+jwt`) with the task
//! and tenant they belong to, and a `cnf` key binding when DPoP was used.

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::b64;
use crate::clock::Timestamp;
use crate::keys::KeyRing;

/// The `typ` of Mayfly's access tokens (RFC 9068 section 2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// The confirmation claim of a DPoP-bound token (RFC 9449 section 6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// SHA-256 thumbprint of the bound public key.
    pub jkt: String,
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Mayfly's public URL.
    pub iss: String,
    /// The workload.
    pub sub: String,
    /// The audience (resource server).
    pub aud: String,
    /// Expiry.
    pub exp: Timestamp,
    /// Issue time.
    pub iat: Timestamp,
    /// Not before (= `iat`).
    pub nbf: Timestamp,
    /// Unique id: the lease.
    pub jti: String,
    /// The client: the workload's issuer name.
    pub client_id: String,
    /// Granted scope, space-separated (may be empty).
    #[serde(default)]
    pub scope: String,
    /// The task.
    pub task: String,
    /// The tenant.
    pub tenant: String,
    /// Key binding, when DPoP was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// The claims of an OpenID Connect ID token for workload identity
/// federation: who the workload is (`sub`), for whom (`aud`), and the task
/// it runs, for the trust conditions of the cloud that takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdClaims {
    /// Mayfly's public URL (the issuer clouds are told to trust).
    pub iss: String,
    /// The workload.
    pub sub: String,
    /// The relying party (`sts.amazonaws.com`, a workload identity pool).
    pub aud: String,
    /// Expiry.
    pub exp: Timestamp,
    /// Issue time.
    pub iat: Timestamp,
    /// Not before (= `iat`).
    pub nbf: Timestamp,
    /// Unique id: the lease.
    pub jti: String,
    /// The task.
    pub task: String,
    /// Who answers for the task.
    pub owner: String,
    /// Why it runs.
    pub purpose: String,
    /// The tenant.
    pub tenant: String,
}

/// Signs an ID token with the ring's current RS256 key.
pub fn sign_id_token(claims: &IdClaims, ring: &KeyRing) -> Result<String, TokenError> {
    let (kid, alg, key) = ring.signer(Algorithm::RS256).ok_or(TokenError::NoKey)?;
    let mut header = Header::new(alg);
    header.typ = Some("JWT".into());
    header.kid = Some(kid.to_owned());
    sign_jws(&header, claims, key)
}

/// Why a token could not be made or is not Mayfly's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No signing key is loaded.
    #[error("no signing key is available")]
    NoKey,
    /// Signing failed.
    #[error("cannot sign the token: {0}")]
    Sign(String),
    /// Not a token Mayfly signed (malformed, unknown key, bad signature, wrong issuer or type).
    #[error("not a Mayfly access token")]
    NotOurs,
}

/// Signs an access token with the ring's current key of `alg` (JWS
/// compact serialization, RFC 7515 section 7.1).
pub fn sign(claims: &AccessClaims, ring: &KeyRing, alg: Algorithm) -> Result<String, TokenError> {
    let (kid, alg, key) = ring.signer(alg).ok_or(TokenError::NoKey)?;
    let mut header = Header::new(alg);
    header.typ = Some(ACCESS_TOKEN_TYPE.into());
    header.kid = Some(kid.to_owned());
    sign_jws(&header, claims, key)
}

/// A JWS in compact serialization of `claims` under `header`, signed by
/// `key` (whose algorithm the header must name).
pub fn sign_jws<T: Serialize>(
    header: &Header,
    claims: &T,
    key: &crate::keys::Signer,
) -> Result<String, TokenError> {
    let mut token = b64_json(header)?;
    token.push('.');
    token.push_str(&b64_json(claims)?);
    let signature = key.sign(token.as_bytes());
    token.push('.');
    token.push_str(&b64::encode(&signature));
    Ok(token)
}

/// A JWS part: JSON, base64url.
fn b64_json<T: Serialize>(value: &T) -> Result<String, TokenError> {
    serde_json::to_vec(value)
        .map(|bytes| b64::encode(&bytes))
        .map_err(|e| TokenError::Sign(e.to_string()))
}

/// Verifies that a token is one Mayfly signed (signature, type, issuer) and
/// returns its claims. Whether it is still active is the store's answer.
pub fn verify(token: &str, ring: &KeyRing, issuer: &str) -> Result<AccessClaims, TokenError> {
    if token.len() > 16 * 1024 {
        return Err(TokenError::NotOurs);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::NotOurs)?;
    if header.typ.as_deref() != Some(ACCESS_TOKEN_TYPE) {
        return Err(TokenError::NotOurs);
    }
    let kid = header.kid.as_deref().ok_or(TokenError::NotOurs)?;
    let (alg, key) = ring.verifier(kid).ok_or(TokenError::NotOurs)?;
    if alg != header.alg {
        return Err(TokenError::NotOurs);
    }
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<AccessClaims>(token, key, &validation)
        .map_err(|_| TokenError::NotOurs)?;
    if data.claims.iss != issuer {
        return Err(TokenError::NotOurs);
    }
    Ok(data.claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{self, KeyRing, MasterKey};

    #[test]
    fn tokens_verify_for_both_algorithms_and_nothing_else() {
        let master =
            MasterKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        for alg in keys::SIGNING_ALGORITHMS {
            let record = keys::generate(alg, &master, 100).unwrap();
            let ring = KeyRing::from_records(&[record], &master, 100, 10).unwrap();
            let claims = AccessClaims {
                iss: "https://mayfly.test".into(),
                sub: "svc:a".into(),
                aud: "https://api.test".into(),
                exp: 400,
                iat: 100,
                nbf: 100,
                jti: "j1".into(),
                client_id: "ci".into(),
                scope: "read".into(),
                task: "t1".into(),
                tenant: "acme".into(),
                cnf: None,
            };
            let token = sign(&claims, &ring, keys::parse_alg(alg).unwrap()).unwrap();
            assert_eq!(
                verify(&token, &ring, "https://mayfly.test").unwrap(),
                claims,
                "{alg}"
            );
            assert_eq!(
                verify(&token, &ring, "https://other.test"),
                Err(TokenError::NotOurs)
            );
            let mut tampered = token.clone();
            tampered.insert(token.find('.').unwrap() + 2, 'x');
            assert_eq!(
                verify(&tampered, &ring, "https://mayfly.test"),
                Err(TokenError::NotOurs)
            );
        }
    }
}
