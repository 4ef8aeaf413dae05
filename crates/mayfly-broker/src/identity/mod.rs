//! Workload identity: verifies a JWT from a configured issuer (OIDC, GitHub
//! Actions, Kubernetes, SPIFFE JWT-SVID) and maps its claims to a workload
//! id and the attributes policy can use.
//!
//! Fail closed: an unknown issuer, a disallowed algorithm, an unknown key,
//! a bad signature, a missing `exp`, a wrong audience or a time outside the
//! token's window is refused with a reason that says what to fix. Keys come
//! only from the configured JWKS (file, URI or OIDC discovery); `jku`,
//! `x5u` and embedded `jwk` headers are never followed.

mod claims;
mod jwks;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use jsonwebtoken::{DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use self::jwks::{Fetcher, IssuerKeys, Lookup};
use crate::clock::{Clock, Timestamp};
use crate::config::{Issuer, Preset};

/// Largest identity token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

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
    /// The workload id looks like another kind of issuer's (a generic
    /// issuer's `sub` of `spiffe://...`): refused, so no issuer can pose as
    /// another's workloads.
    #[error(
        "issuer {issuer} maps this token to workload id {id:?}, which only a {preset} issuer may vouch for"
    )]
    ForeignShape {
        /// The issuer's name.
        issuer: String,
        /// The mapped id.
        id: String,
        /// The preset that owns ids of this shape.
        preset: &'static str,
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

/// What a task keeps of its workload, to decide policy again later.
#[derive(Debug, Serialize, Deserialize)]
struct StoredAttributes {
    issuer: String,
    kind: String,
    tenant: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

impl Workload {
    /// The attributes kept with a task (JSON), to rebuild the workload when
    /// policy is evaluated again.
    pub fn attributes_json(&self) -> String {
        let stored = StoredAttributes {
            issuer: self.issuer.clone(),
            kind: self.kind.to_owned(),
            tenant: self.tenant.clone(),
            tags: self.tags.clone(),
        };
        // Strings and a map of strings always serialize.
        serde_json::to_string(&stored).unwrap_or_default()
    }

    /// Rebuilds a workload from a task's id and stored attributes; `None`
    /// when they do not parse (such a task is denied on re-evaluation).
    pub fn from_attributes(id: &str, attributes: &str) -> Option<Workload> {
        let stored: StoredAttributes = serde_json::from_str(attributes).ok()?;
        let kind = Preset::parse(Some(&stored.kind)).ok()?.as_str();
        Some(Workload {
            id: id.to_owned(),
            issuer: stored.issuer,
            kind,
            tenant: stored.tenant,
            tags: stored.tags,
            expires_at: 0,
        })
    }
}

struct TrustedIssuer {
    config: Issuer,
    keys: IssuerKeys,
}

/// Verifies workload identity tokens against the configured issuers.
pub struct IdentityVerifier {
    issuers: Vec<TrustedIssuer>,
    clock: Arc<dyn Clock>,
    fetcher: Fetcher,
    verified: Mutex<HashMap<[u8; 32], Workload>>,
}

impl std::fmt::Debug for IdentityVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdentityVerifier({:?})", self.issuer_names())
    }
}

/// Where verification stopped.
enum Step {
    /// Refused for good.
    Refused(IdentityError),
    /// The issuer's keys must be fetched first.
    Fetch {
        issuer: usize,
        kid: Option<String>,
        alg: jsonwebtoken::Algorithm,
    },
}

impl From<IdentityError> for Step {
    fn from(e: IdentityError) -> Self {
        Step::Refused(e)
    }
}

fn algorithm_name(alg: jsonwebtoken::Algorithm) -> String {
    format!("{alg:?}")
}

impl IdentityVerifier {
    /// A verifier for these issuers.
    pub fn new(issuers: Vec<Issuer>, clock: Arc<dyn Clock>) -> IdentityVerifier {
        IdentityVerifier {
            issuers: issuers
                .into_iter()
                .map(|config| TrustedIssuer {
                    config,
                    keys: IssuerKeys::new(),
                })
                .collect(),
            clock,
            fetcher: Fetcher::new(),
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
    /// check. Keys are fetched off the async workers, by one request per
    /// issuer at a time.
    pub async fn verify(&self, token: &str) -> Result<Workload, IdentityError> {
        let now = self.clock.now();
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(workload) = self.cached(&digest, now) {
            return Ok(workload);
        }
        match self.check(token, now) {
            Ok(workload) => Ok(self.remember(digest, workload, now)),
            Err(Step::Refused(e)) => Err(e),
            Err(Step::Fetch { issuer, kid, alg }) => {
                self.refresh(issuer, kid, alg, now).await?;
                let workload = self.recheck(token, now)?;
                Ok(self.remember(digest, workload, now))
            }
        }
    }

    /// The same as [`IdentityVerifier::verify`] for callers outside an
    /// async runtime (tools, fuzzing): fetches on the calling thread.
    pub fn verify_blocking(&self, token: &str) -> Result<Workload, IdentityError> {
        let now = self.clock.now();
        match self.check(token, now) {
            Ok(workload) => Ok(workload),
            Err(Step::Refused(e)) => Err(e),
            Err(Step::Fetch { issuer, kid, .. }) => {
                let trusted = self.trusted(issuer)?;
                trusted.keys.mark_attempt(now);
                let fetched = self.fetcher.fetch(&trusted.config);
                Self::keep(trusted, fetched, kid.as_deref(), now)?;
                self.recheck(token, now)
            }
        }
    }

    /// Verifies after a fetch: a key still missing is unknown.
    fn recheck(&self, token: &str, now: Timestamp) -> Result<Workload, IdentityError> {
        self.check(token, now).map_err(|step| match step {
            Step::Refused(e) => e,
            Step::Fetch { issuer, kid, .. } => IdentityError::UnknownKey {
                issuer: self
                    .issuers
                    .get(issuer)
                    .map(|i| i.config.name.clone())
                    .unwrap_or_default(),
                kid: kid.unwrap_or_else(|| "(none)".into()),
            },
        })
    }

    fn cached(&self, digest: &[u8; 32], now: Timestamp) -> Option<Workload> {
        let cache = self.verified.lock().ok()?;
        cache.get(digest).filter(|w| now < w.expires_at).cloned()
    }

    fn remember(&self, digest: [u8; 32], workload: Workload, now: Timestamp) -> Workload {
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
        workload
    }

    fn trusted(&self, index: usize) -> Result<&TrustedIssuer, IdentityError> {
        self.issuers
            .get(index)
            .ok_or_else(|| IdentityError::Malformed("unknown issuer".into()))
    }

    /// Fetches an issuer's keys: one request at a time; a request that
    /// waited finds the keys (or the refusal) the fetch left.
    async fn refresh(
        &self,
        index: usize,
        kid: Option<String>,
        alg: jsonwebtoken::Algorithm,
        now: Timestamp,
    ) -> Result<(), IdentityError> {
        let trusted = self.trusted(index)?;
        let _fetching = trusted.keys.refreshing.lock().await;
        if !matches!(
            trusted
                .keys
                .lookup(kid.as_deref(), alg, trusted.config.min_refresh, now),
            Lookup::Fetch
        ) {
            // Another request fetched while this one waited.
            return Ok(());
        }
        trusted.keys.mark_attempt(now);
        let fetcher = self.fetcher.clone();
        let config = trusted.config.clone();
        let fetched = tokio::task::spawn_blocking(move || fetcher.fetch(&config))
            .await
            .unwrap_or_else(|e| Err(format!("the fetch failed: {e}")));
        Self::keep(trusted, fetched, kid.as_deref(), now)
    }

    fn keep(
        trusted: &TrustedIssuer,
        fetched: Result<jsonwebtoken::jwk::JwkSet, String>,
        kid: Option<&str>,
        now: Timestamp,
    ) -> Result<(), IdentityError> {
        trusted.keys.store(&fetched, kid, now);
        fetched
            .map(|_| ())
            .map_err(|reason| IdentityError::KeysUnavailable {
                issuer: trusted.config.name.clone(),
                reason,
            })
    }

    /// Verifies with the keys in hand, or says which keys to fetch.
    fn check(&self, token: &str, now: Timestamp) -> Result<Workload, Step> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(IdentityError::Malformed(format!(
                "it is {} bytes; the limit is {MAX_TOKEN_BYTES}",
                token.len()
            ))
            .into());
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| IdentityError::Malformed(format!("bad header ({e})")))?;
        let unverified = claims::unverified_claims(token)?;
        let iss = unverified
            .get("iss")
            .and_then(Value::as_str)
            .ok_or_else(|| IdentityError::Malformed("no iss claim".into()))?;
        let (index, trusted) = self
            .issuers
            .iter()
            .enumerate()
            .find(|(_, i)| i.config.issuer == iss)
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
            }
            .into());
        }
        let kid = header.kid.as_deref();
        let jwk = match trusted
            .keys
            .lookup(kid, header.alg, issuer.min_refresh, now)
        {
            Lookup::Found(jwk) => jwk,
            Lookup::Fetch => {
                return Err(Step::Fetch {
                    issuer: index,
                    kid: header.kid.clone(),
                    alg: header.alg,
                });
            }
            Lookup::Unknown => {
                return Err(IdentityError::UnknownKey {
                    issuer: issuer.name.clone(),
                    kid: kid.unwrap_or("(none)").to_owned(),
                }
                .into());
            }
        };
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
        claims::check_times(&claims, issuer, now)?;
        claims::check_audience(&claims, issuer)?;
        Ok(claims::map_workload(&claims, issuer)?)
    }
}
