//! An issuer's signing keys: fetched from its JWKS (file, URI or OIDC
//! discovery), kept, and fetched again when a token names an unknown
//! `kid`, at most once per `min_refresh_seconds` and by one request at a
//! time. The attempt is recorded before the fetch starts, so a slow or
//! unreachable provider holds only the requests that need new keys; tokens
//! signed with known keys keep verifying meanwhile.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use serde_json::Value;

use crate::clock::Timestamp;
use crate::config::{Issuer, JwksSource};

/// Largest JWKS or discovery document fetched, in bytes.
const MAX_DOCUMENT_BYTES: u64 = 1024 * 1024;

/// How long one fetch (discovery and JWKS together) may take.
pub(super) const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// An unknown `kid` is not fetched for again for this many refresh windows.
const UNKNOWN_KID_WINDOWS: i64 = 5;

/// Most unknown `kid`s remembered per issuer.
const UNKNOWN_KIDS: usize = 1024;

/// What the keys in hand say about a `kid`.
#[derive(Debug)]
pub(super) enum Lookup {
    /// The key.
    Found(Box<Jwk>),
    /// Not known, and a fetch may be tried now.
    Fetch,
    /// Not known, and no fetch is allowed yet.
    Unknown,
}

#[derive(Debug, Default)]
struct KeyState {
    keys: Option<JwkSet>,
    last_attempt: Option<Timestamp>,
    unknown: HashMap<String, Timestamp>,
}

/// One issuer's keys.
#[derive(Debug)]
pub(super) struct IssuerKeys {
    state: RwLock<KeyState>,
    /// Held by the one request that fetches; others wait for its result.
    pub(super) refreshing: tokio::sync::Mutex<()>,
}

fn algorithm_matches(key: &Jwk, alg: Algorithm) -> bool {
    key.common
        .key_algorithm
        .is_none_or(|a| format!("{a:?}") == format!("{alg:?}"))
}

/// The key for `kid` in `set`; without a `kid` only an unambiguous key will do.
fn pick(set: &JwkSet, kid: Option<&str>, alg: Algorithm) -> Option<Jwk> {
    let mut usable = set.keys.iter().filter(|k| algorithm_matches(k, alg));
    match kid {
        Some(kid) => usable
            .find(|k| k.common.key_id.as_deref() == Some(kid))
            .cloned(),
        None => match (usable.next(), usable.next()) {
            (Some(only), None) => Some(only.clone()),
            _ => None,
        },
    }
}

impl IssuerKeys {
    pub(super) fn new() -> IssuerKeys {
        IssuerKeys {
            state: RwLock::new(KeyState::default()),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// What the keys in hand say about `kid` at `now`.
    pub(super) fn lookup(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        min_refresh: i64,
        now: Timestamp,
    ) -> Lookup {
        let Ok(state) = self.state.read() else {
            return Lookup::Unknown;
        };
        if let Some(jwk) = state.keys.as_ref().and_then(|set| pick(set, kid, alg)) {
            return Lookup::Found(Box::new(jwk));
        }
        let recently_missing = kid
            .and_then(|kid| state.unknown.get(kid))
            .is_some_and(|at| now - at < min_refresh * UNKNOWN_KID_WINDOWS);
        let recently_tried = state.last_attempt.is_some_and(|at| now - at < min_refresh);
        if recently_missing || recently_tried {
            Lookup::Unknown
        } else {
            Lookup::Fetch
        }
    }

    /// Records that a fetch starts now (before it runs, so no other request
    /// starts one within the refresh window, however long this one takes).
    pub(super) fn mark_attempt(&self, now: Timestamp) {
        if let Ok(mut state) = self.state.write() {
            state.last_attempt = Some(now);
        }
    }

    /// Keeps what a fetch returned. A failed fetch keeps the keys in hand.
    /// Remembers `kid` as unknown if the new set lacks it.
    pub(super) fn store(
        &self,
        fetched: &Result<JwkSet, String>,
        kid: Option<&str>,
        now: Timestamp,
    ) {
        let Ok(mut state) = self.state.write() else {
            return;
        };
        if let Ok(set) = fetched {
            let missing = kid.filter(|kid| {
                !set.keys
                    .iter()
                    .any(|k| k.common.key_id.as_deref() == Some(kid))
            });
            state.keys = Some(set.clone());
            if let Some(kid) = missing {
                if state.unknown.len() >= UNKNOWN_KIDS {
                    state.unknown.clear();
                }
                state.unknown.insert(kid.to_owned(), now);
            }
        }
    }
}

/// Fetches JWKS documents (blocking: run it off the async workers).
#[derive(Debug, Clone)]
pub(super) struct Fetcher {
    agent: ureq::Agent,
}

impl Fetcher {
    pub(super) fn new() -> Fetcher {
        Fetcher {
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(FETCH_TIMEOUT))
                .build()
                .into(),
        }
    }

    /// The issuer's key set, from its file, URI or OIDC discovery.
    pub(super) fn fetch(&self, issuer: &Issuer) -> Result<JwkSet, String> {
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
        serde_json::from_str(&text).map_err(|e| format!("the JWKS is not valid: {e}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn set(kids: &[&str]) -> JwkSet {
        let keys: Vec<Value> = kids
            .iter()
            .map(|kid| serde_json::json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": kid, "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}))
            .collect();
        serde_json::from_value(serde_json::json!({ "keys": keys })).unwrap()
    }

    #[test]
    fn one_attempt_per_window_and_unknown_kids_remembered() {
        let keys = IssuerKeys::new();
        assert!(matches!(
            keys.lookup(Some("a"), Algorithm::EdDSA, 30, 100),
            Lookup::Fetch
        ));
        keys.mark_attempt(100);
        // While the first fetch runs, nobody else starts one.
        assert!(matches!(
            keys.lookup(Some("b"), Algorithm::EdDSA, 30, 101),
            Lookup::Unknown
        ));
        keys.store(&Ok(set(&["a"])), Some("a"), 100);
        assert!(matches!(
            keys.lookup(Some("a"), Algorithm::EdDSA, 30, 101),
            Lookup::Found(_)
        ));
        // A failed fetch keeps the keys in hand.
        keys.store(&Err("down".into()), Some("z"), 140);
        assert!(matches!(
            keys.lookup(Some("a"), Algorithm::EdDSA, 30, 141),
            Lookup::Found(_)
        ));
        // A kid the provider does not have is not fetched for again soon.
        keys.mark_attempt(200);
        keys.store(&Ok(set(&["a"])), Some("ghost"), 200);
        assert!(matches!(
            keys.lookup(Some("ghost"), Algorithm::EdDSA, 30, 240),
            Lookup::Unknown
        ));
        assert!(matches!(
            keys.lookup(Some("new"), Algorithm::EdDSA, 30, 240),
            Lookup::Fetch
        ));
        assert!(matches!(
            keys.lookup(Some("ghost"), Algorithm::EdDSA, 30, 400),
            Lookup::Fetch
        ));
    }

    #[test]
    fn without_a_kid_only_one_key_will_do() {
        assert!(pick(&set(&["a"]), None, Algorithm::EdDSA).is_some());
        assert!(pick(&set(&["a", "b"]), None, Algorithm::EdDSA).is_none());
        assert!(pick(&set(&["a"]), None, Algorithm::ES256).is_none());
    }
}
