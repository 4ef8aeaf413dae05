//! Workload identity: verifies a JWT from a configured issuer (OIDC, GitHub
//! Actions, Kubernetes, SPIFFE JWT-SVID) and maps its claims to a workload
//! id and the attributes policy can use.
//!
//! Fail closed: an unknown issuer, a disallowed algorithm, an unknown key,
//! a bad signature, a missing `exp`, a wrong audience or a time outside the
//! token's window is refused with a reason that says what to fix. Keys come
//! only from the configured JWKS (file, URI or OIDC discovery); `jku`,
//! `x5u` and embedded `jwk` headers are never followed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::b64;
use crate::clock::{Clock, Timestamp};
use crate::config::{Issuer, JwksSource, Preset};

/// Largest identity token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Largest JWKS or discovery document fetched, in bytes.
const MAX_DOCUMENT_BYTES: u64 = 1024 * 1024;

/// Verified identity cached at most this long (or until the token's `exp`).
const CACHE_SECONDS: i64 = 300;

/// At most this many verified tokens are cached.
const CACHE_ENTRIES: usize = 10_000;

/// Why an identity token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Not a JWT, or not one Mayfly can read.
    #[error("the identity token is malformed: {0}")]
    Malformed(String),
    /// Its `iss` is not configured.
    #[error("the identity token's issuer {0:?} is not trusted; configure it as an [[issuer]]")]
    UnknownIssuer(String),
    /// Its `alg` is not allowed for its issuer.
    #[error("algorithm {alg} is not accepted for issuer {issuer} (accepted: {allowed})")]
    Algorithm {
        /// The token's `alg`.
        alg: String,
        /// The issuer's name.
        issuer: String,
        /// What is accepted.
        allowed: String,
    },
    /// No key of the issuer's JWKS matches.
    #[error("issuer {issuer} has no key {kid:?} in its JWKS")]
    UnknownKey {
        /// The issuer's name.
        issuer: String,
        /// The token's `kid`.
        kid: String,
    },
    /// The issuer's keys could not be fetched.
    #[error("the keys of issuer {issuer} are unavailable: {reason}")]
    KeysUnavailable {
        /// The issuer's name.
        issuer: String,
        /// What failed.
        reason: String,
    },
    /// The signature does not verify.
    #[error("the identity token's signature does not verify against issuer {0}'s key")]
    Signature(String),
    /// No `exp` claim.
    #[error("the identity token has no exp claim; Mayfly accepts only tokens that expire")]
    NoExpiry,
    /// Past `exp`.
    #[error("the identity token expired at {exp} (now {now}); get a fresh one")]
    Expired {
        /// Its `exp`.
        exp: Timestamp,
        /// The broker's time.
        now: Timestamp,
    },
    /// Before `nbf` or issued in the future.
    #[error("the identity token is not valid yet ({claim} {at}, now {now}); check the clocks")]
    NotYetValid {
        /// `nbf` or `iat`.
        claim: &'static str,
        /// Its value.
        at: Timestamp,
        /// The broker's time.
        now: Timestamp,
    },
    /// No accepted audience.
    #[error(
        "the identity token's audience {found} is not one of {expected}; request it with one of those audiences"
    )]
    Audience {
        /// What the token carries.
        found: String,
        /// What is accepted.
        expected: String,
    },
    /// A claim the workload mapping needs is missing.
    #[error(
        "the identity token lacks claim {claim:?}, which issuer {issuer} maps to the workload id"
    )]
    MissingClaim {
        /// The issuer's name.
        issuer: String,
        /// The claim.
        claim: String,
    },
    /// Not a SPIFFE ID of the trust domain.
    #[error("the identity token's sub {sub:?} is not a SPIFFE ID in trust domain {domain}")]
    Spiffe {
        /// The token's `sub`.
        sub: String,
        /// The configured trust domain.
        domain: String,
    },
}

/// A verified workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Its id (`repo:org/app:ref:refs/heads/main`, `spiffe://prod/ns/billing/sa/api`).
    pub id: String,
    /// The configured issuer's name.
    pub issuer: String,
    /// The issuer's preset (`github-actions`, ...).
    pub kind: &'static str,
    /// The tenant it acts for.
    pub tenant: String,
    /// Mapped claims, for policy (`repository`, `ref`, ...).
    pub tags: BTreeMap<String, String>,
    /// The identity token's `exp`.
    pub expires_at: Timestamp,
}

impl Workload {
    /// The attributes kept with a task (JSON), to rebuild the workload when
    /// policy is evaluated again.
    pub fn attributes_json(&self) -> String {
        serde_json::json!({
            "issuer": self.issuer,
            "kind": self.kind,
            "tenant": self.tenant,
            "tags": self.tags,
        })
        .to_string()
    }

    /// Rebuilds a workload from a task's id and stored attributes.
    pub fn from_attributes(id: &str, attributes: &str) -> Option<Workload> {
        let value: Value = serde_json::from_str(attributes).ok()?;
        let kind = Preset::parse(value.get("kind")?.as_str())
            .unwrap_or(Preset::Generic)
            .as_str();
        let tags = value
            .get("tags")?
            .as_object()?
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect();
        Some(Workload {
            id: id.to_owned(),
            issuer: value.get("issuer")?.as_str()?.to_owned(),
            kind,
            tenant: value.get("tenant")?.as_str()?.to_owned(),
            tags,
            expires_at: 0,
        })
    }
}

struct KeyCache {
    keys: Option<JwkSet>,
    last_fetch: Option<Timestamp>,
}

struct TrustedIssuer {
    config: Issuer,
    keys: RwLock<KeyCache>,
}

/// Verifies workload identity tokens against the configured issuers.
pub struct IdentityVerifier {
    issuers: Vec<TrustedIssuer>,
    clock: Arc<dyn Clock>,
    agent: ureq::Agent,
    verified: Mutex<HashMap<[u8; 32], Workload>>,
}

impl std::fmt::Debug for IdentityVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self
            .issuers
            .iter()
            .map(|i| i.config.name.as_str())
            .collect();
        write!(f, "IdentityVerifier({names:?})")
    }
}

/// Reads a claim, with dots walking into nested objects
/// (`kubernetes.io.namespace` reads `{"kubernetes.io": {"namespace": ..}}`).
fn claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    // Try every split point: keys may contain dots themselves.
    let bytes = path.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'.' {
            let (head, tail) = (path.get(..i)?, path.get(i + 1..)?);
            if let Some(Value::Object(inner)) = claims.get(head)
                && let Some(v) = claim(inner, tail)
            {
                return Some(v);
            }
        }
    }
    None
}

fn claim_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn time_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<Timestamp>, IdentityError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| IdentityError::Malformed(format!("claim {name} is not a time"))),
        Some(_) => Err(IdentityError::Malformed(format!(
            "claim {name} is not a number"
        ))),
    }
}

/// Fills `{claim}` placeholders of a template.
fn render(
    template: &str,
    claims: &Map<String, Value>,
    issuer: &str,
) -> Result<String, IdentityError> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(rest.get(..open).unwrap_or_default());
        let after = rest.get(open + 1..).unwrap_or_default();
        let Some(close) = after.find('}') else {
            out.push_str(rest.get(open..).unwrap_or_default());
            return Ok(out);
        };
        let name = after.get(..close).unwrap_or_default();
        let value = claim(claims, name)
            .and_then(claim_text)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| IdentityError::MissingClaim {
                issuer: issuer.to_owned(),
                claim: name.to_owned(),
            })?;
        out.push_str(&value);
        rest = after.get(close + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    Ok(out)
}

fn algorithm_name(alg: Algorithm) -> String {
    format!("{alg:?}")
}

impl IdentityVerifier {
    /// A verifier for these issuers.
    pub fn new(issuers: Vec<Issuer>, clock: Arc<dyn Clock>) -> IdentityVerifier {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        IdentityVerifier {
            issuers: issuers
                .into_iter()
                .map(|config| TrustedIssuer {
                    config,
                    keys: RwLock::new(KeyCache {
                        keys: None,
                        last_fetch: None,
                    }),
                })
                .collect(),
            clock,
            agent,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// The configured issuers' names.
    pub fn issuer_names(&self) -> Vec<String> {
        self.issuers.iter().map(|i| i.config.name.clone()).collect()
    }

    /// Verifies a token and maps it to a workload. Tokens already verified
    /// are answered from a cache until they expire (at most five minutes),
    /// so a workload that presents the same token again costs no signature
    /// check.
    pub fn verify(&self, token: &str) -> Result<Workload, IdentityError> {
        let now = self.clock.now();
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Ok(cache) = self.verified.lock()
            && let Some(workload) = cache.get(&digest)
            && now < workload.expires_at
        {
            return Ok(workload.clone());
        }
        let workload = self.verify_uncached(token, now)?;
        if let Ok(mut cache) = self.verified.lock() {
            if cache.len() >= CACHE_ENTRIES {
                cache.retain(|_, w| now < w.expires_at);
                if cache.len() >= CACHE_ENTRIES {
                    cache.clear();
                }
            }
            let mut cached = workload.clone();
            cached.expires_at = cached.expires_at.min(now + CACHE_SECONDS);
            cache.insert(digest, cached);
        }
        Ok(workload)
    }

    fn verify_uncached(&self, token: &str, now: Timestamp) -> Result<Workload, IdentityError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(IdentityError::Malformed(format!(
                "it is {} bytes; the limit is {MAX_TOKEN_BYTES}",
                token.len()
            )));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| IdentityError::Malformed(format!("bad header ({e})")))?;
        let unverified = unverified_claims(token)?;
        let iss = unverified
            .get("iss")
            .and_then(Value::as_str)
            .ok_or_else(|| IdentityError::Malformed("no iss claim".into()))?;
        let trusted = self
            .issuers
            .iter()
            .find(|i| i.config.issuer == iss)
            .ok_or_else(|| IdentityError::UnknownIssuer(iss.to_owned()))?;
        let issuer = &trusted.config;
        if !issuer.algorithms.contains(&header.alg) {
            return Err(IdentityError::Algorithm {
                alg: algorithm_name(header.alg),
                issuer: issuer.name.clone(),
                allowed: issuer
                    .algorithms
                    .iter()
                    .map(|a| algorithm_name(*a))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let jwk = self.key_for(trusted, header.kid.as_deref(), header.alg, now)?;
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|_| IdentityError::Signature(issuer.name.clone()))?;
        // Times and audience are checked below against Mayfly's clock, with
        // messages that say what is wrong; the library checks the signature.
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|_| IdentityError::Signature(issuer.name.clone()))?;
        let claims = data.claims;
        self.check_times(&claims, issuer, now)?;
        check_audience(&claims, issuer)?;
        map_workload(&claims, issuer)
    }

    fn check_times(
        &self,
        claims: &Map<String, Value>,
        issuer: &Issuer,
        now: Timestamp,
    ) -> Result<(), IdentityError> {
        let leeway = issuer.leeway;
        let exp = time_claim(claims, "exp")?.ok_or(IdentityError::NoExpiry)?;
        if now >= exp + leeway {
            return Err(IdentityError::Expired { exp, now });
        }
        for name in ["nbf", "iat"] {
            if let Some(at) = time_claim(claims, name)?
                && at > now + leeway
            {
                return Err(IdentityError::NotYetValid {
                    claim: if name == "nbf" { "nbf" } else { "iat" },
                    at,
                    now,
                });
            }
        }
        Ok(())
    }

    /// The issuer's key for `kid`, fetching the JWKS when it is not known
    /// yet or the `kid` is new (at most once per `min_refresh_seconds`).
    fn key_for(
        &self,
        trusted: &TrustedIssuer,
        kid: Option<&str>,
        alg: Algorithm,
        now: Timestamp,
    ) -> Result<Jwk, IdentityError> {
        let pick = |set: &JwkSet| -> Option<Jwk> {
            let usable = |k: &&Jwk| {
                k.common
                    .key_algorithm
                    .is_none_or(|a| format!("{a:?}") == algorithm_name(alg))
            };
            match kid {
                Some(kid) => set
                    .keys
                    .iter()
                    .filter(usable)
                    .find(|k| k.common.key_id.as_deref() == Some(kid))
                    .cloned(),
                // Without a kid only an unambiguous key will do.
                None => {
                    let mut candidates = set.keys.iter().filter(usable);
                    match (candidates.next(), candidates.next()) {
                        (Some(only), None) => Some(only.clone()),
                        _ => None,
                    }
                }
            }
        };
        let (known, last_fetch) = match trusted.keys.read() {
            Ok(cache) => (cache.keys.as_ref().and_then(pick), cache.last_fetch),
            Err(_) => (None, None),
        };
        if let Some(jwk) = known {
            return Ok(jwk);
        }
        let issuer = &trusted.config;
        let unknown = || IdentityError::UnknownKey {
            issuer: issuer.name.clone(),
            kid: kid.unwrap_or("(none)").to_owned(),
        };
        if let Some(last) = last_fetch
            && now - last < issuer.min_refresh
        {
            return Err(unknown());
        }
        let fetched = self.fetch_jwks(issuer);
        let mut cache = trusted.keys.write().map_err(|_| unknown())?;
        cache.last_fetch = Some(now);
        match fetched {
            Ok(set) => {
                let found = pick(&set);
                cache.keys = Some(set);
                found.ok_or_else(unknown)
            }
            Err(reason) => Err(IdentityError::KeysUnavailable {
                issuer: issuer.name.clone(),
                reason,
            }),
        }
    }

    fn fetch_jwks(&self, issuer: &Issuer) -> Result<JwkSet, String> {
        let text = match &issuer.jwks {
            JwksSource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            JwksSource::Uri(uri) => self.get(uri)?,
            JwksSource::Discovery => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.issuer.trim_end_matches('/')
                );
                let doc: Value = serde_json::from_str(&self.get(&url)?)
                    .map_err(|e| format!("{url} is not JSON: {e}"))?;
                if doc.get("issuer").and_then(Value::as_str) != Some(issuer.issuer.as_str()) {
                    return Err(format!("{url} names another issuer"));
                }
                let jwks_uri = doc
                    .get("jwks_uri")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{url} has no jwks_uri"))?;
                self.get(jwks_uri)?
            }
        };
        let set: JwkSet =
            serde_json::from_str(&text).map_err(|e| format!("the JWKS is not valid: {e}"))?;
        Ok(set)
    }

    fn get(&self, url: &str) -> Result<String, String> {
        let mut response = self
            .agent
            .get(url)
            .call()
            .map_err(|e| format!("GET {url}: {e}"))?;
        response
            .body_mut()
            .with_config()
            .limit(MAX_DOCUMENT_BYTES)
            .read_to_string()
            .map_err(|e| format!("GET {url}: {e}"))
    }
}

/// The payload before verification: only to find the issuer.
fn unverified_claims(token: &str) -> Result<Map<String, Value>, IdentityError> {
    let mut parts = token.split('.');
    let payload = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(payload), Some(_), None) => payload,
        _ => {
            return Err(IdentityError::Malformed(
                "a JWT has three dot-separated parts".into(),
            ));
        }
    };
    let bytes = b64::decode(payload)
        .ok_or_else(|| IdentityError::Malformed("the payload is not base64url".into()))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| IdentityError::Malformed("the payload is not a JSON object".into()))
}

fn check_audience(claims: &Map<String, Value>, issuer: &Issuer) -> Result<(), IdentityError> {
    let found: Vec<&str> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if found
        .iter()
        .any(|a| issuer.audiences.iter().any(|e| e == a))
    {
        Ok(())
    } else {
        Err(IdentityError::Audience {
            found: if found.is_empty() {
                "(none)".into()
            } else {
                found.join(", ")
            },
            expected: issuer.audiences.join(", "),
        })
    }
}

fn map_workload(claims: &Map<String, Value>, issuer: &Issuer) -> Result<Workload, IdentityError> {
    if issuer.preset == Preset::Spiffe {
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let domain = issuer.trust_domain.clone().unwrap_or_default();
        let prefix = format!("spiffe://{domain}/");
        if !sub.starts_with(&prefix) || sub.len() == prefix.len() {
            return Err(IdentityError::Spiffe {
                sub: sub.to_owned(),
                domain,
            });
        }
    }
    let id = render(&issuer.workload, claims, &issuer.name)?;
    let tenant =
        match &issuer.tenant_claim {
            Some(name) => claim(claims, name).and_then(claim_text).ok_or_else(|| {
                IdentityError::MissingClaim {
                    issuer: issuer.name.clone(),
                    claim: name.clone(),
                }
            })?,
            None => issuer.tenant.clone(),
        };
    let tags = issuer
        .tag_claims
        .iter()
        .filter_map(|name| Some((name.clone(), claim(claims, name).and_then(claim_text)?)))
        .collect();
    let expires_at = time_claim(claims, "exp")?.ok_or(IdentityError::NoExpiry)?;
    Ok(Workload {
        id,
        issuer: issuer.name.clone(),
        kind: issuer.preset.as_str(),
        tenant,
        tags,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn templates_read_nested_claims() {
        let c = claims(
            r#"{"kubernetes.io": {"namespace": "billing", "serviceaccount": {"name": "api"}}}"#,
        );
        assert_eq!(
            render(
                "system:serviceaccount:{kubernetes.io.namespace}:{kubernetes.io.serviceaccount.name}",
                &c,
                "k8s"
            )
            .unwrap(),
            "system:serviceaccount:billing:api"
        );
    }

    #[test]
    fn missing_claims_are_named() {
        let err = render("repo:{repository}", &claims("{}"), "gha").unwrap_err();
        assert!(err.to_string().contains("repository"), "{err}");
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for token in ["", "a.b", "a.b.c.d", "x.!!!.y"] {
            assert!(unverified_claims(token).is_err(), "{token}");
        }
    }
}
