//! Mayfly's signing keys in use: loaded from the store (another replica
//! may have rotated), one per algorithm in use, made when missing or due.

use std::sync::Arc;

use mayfly_store::BrokerWrite;

use super::Broker;
use crate::error::{BrokerError, internal};
use crate::keys::{self, KeyRing};
use crate::token::{self, AccessClaims};

impl Broker {
    pub(super) fn current_keys(&self) -> Arc<KeyRing> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The published key set.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::to_value(&self.current_keys().jwks)
            .unwrap_or_else(|_| serde_json::json!({"keys": []}))
    }

    /// Reloads keys from the store and makes a new signing key for each
    /// algorithm in use that has none or whose key is due for rotation.
    pub async fn refresh_keys(&self) -> Result<(), BrokerError> {
        self.make_keys(false).await.map(|_| ())
    }

    /// Rotates now: a new signing key for each algorithm in use (admin API,
    /// after a key may have leaked). Tokens signed with the old keys stay
    /// valid until they expire; every replica signs with the new keys
    /// within half a second. Returns the keys that sign, as (kid, algorithm).
    pub async fn rotate_keys(&self) -> Result<Vec<(String, String)>, BrokerError> {
        self.make_keys(true).await
    }

    async fn make_keys(&self, force: bool) -> Result<Vec<(String, String)>, BrokerError> {
        let now = self.now();
        let rotation = self.config.tokens.key_rotation_days * 86_400;
        let mut ring = self.load_ring().await?;
        let mut changed = false;
        let mut signing = Vec::new();
        for name in self.config.signing_algorithms() {
            let alg = keys::parse_alg(&name)
                .ok_or_else(|| internal(format!("unsupported signing algorithm {name}")))?;
            let due = force
                || ring
                    .signer_created_at(alg)
                    .is_none_or(|created| now - created >= rotation);
            if due {
                // RSA key generation takes a while: off the async workers.
                let master = self.master.clone();
                let algorithm = name.clone();
                let record =
                    crate::reader::blocking(move || Ok(keys::generate(&algorithm, &master, now)?))
                        .await?;
                // Refused when another replica rotated first: its key signs.
                self.writer
                    .apply_one(BrokerWrite::AddSigningKey {
                        key: record,
                        replaces: ring.signer(alg).map(|(kid, ..)| kid.to_owned()),
                    })
                    .await?;
                changed = true;
            }
            signing.push((alg, name));
        }
        if changed {
            ring = self.load_ring().await?;
        }
        let kids = signing
            .into_iter()
            .filter_map(|(alg, name)| ring.signer(alg).map(|(kid, ..)| (kid.to_owned(), name)))
            .collect();
        if let Ok(mut slot) = self.keys.write() {
            *slot = Arc::new(ring);
        }
        Ok(kids)
    }

    /// Reads the key ring again when another replica rotated: a key signs
    /// on the store that this ring does not know, or one this ring signs
    /// with was retired.
    pub(super) async fn follow_keys(&self) -> Result<(), BrokerError> {
        let signing = self.readers.read(|s| s.broker_signing_kids()).await?;
        let ring = self.current_keys();
        let stale = signing.iter().any(|kid| ring.verifier(kid).is_none())
            || ring
                .signer_kids()
                .any(|kid| !signing.iter().any(|s| s == kid));
        if stale {
            self.reload_ring().await?;
        }
        Ok(())
    }

    /// Reads the key ring from the store again and puts it in use.
    async fn reload_ring(&self) -> Result<(), BrokerError> {
        let ring = self.load_ring().await?;
        if let Ok(mut slot) = self.keys.write() {
            *slot = Arc::new(ring);
        }
        Ok(())
    }

    /// The key ring as the store holds it; a retired key still verifies
    /// for the longest a token it signed can live, and an hour.
    async fn load_ring(&self) -> Result<KeyRing, BrokerError> {
        let records = self.readers.read(|s| s.broker_signing_keys()).await?;
        let keep_retired = self.config.tokens.max_ttl_seconds + 3600;
        Ok(KeyRing::from_records(
            &records,
            &self.master,
            self.now(),
            keep_retired,
        )?)
    }

    /// Signs an access token with the key of the algorithm its audience uses.
    pub(super) fn sign(&self, claims: &AccessClaims) -> Result<String, BrokerError> {
        let name = self.config.algorithm_for(&claims.aud);
        let alg = keys::parse_alg(name)
            .ok_or_else(|| internal(format!("unsupported signing algorithm {name}")))?;
        Ok(token::sign(claims, &self.current_keys(), alg)?)
    }

    /// Verifies that a presented token is one Mayfly signed. A token seen
    /// before is not verified again (a proxied request's token comes back
    /// with every request): what it says still has to agree with its
    /// lease, read from the store each time.
    ///
    /// A token this broker cannot verify may be signed with a key another
    /// replica made after this one loaded its ring: the ring is read again
    /// from the store (at most once a second, so made-up tokens cannot
    /// turn into a read each) and the token checked once more.
    pub(super) async fn verify_access_token(&self, presented: &str) -> Option<Arc<AccessClaims>> {
        if let Some(claims) = self.verified.get(presented) {
            return Some(claims);
        }
        let claims = match token::verify(presented, &self.current_keys(), &self.public_url) {
            Ok(claims) => claims,
            Err(_) if self.ring_reload_due() => {
                self.reload_ring().await.ok()?;
                token::verify(presented, &self.current_keys(), &self.public_url).ok()?
            }
            Err(_) => return None,
        };
        let claims = Arc::new(claims);
        self.verified.insert(presented, claims.clone());
        Some(claims)
    }

    /// True (and the time noted) when the key ring was last read from the
    /// store more than a second ago.
    fn ring_reload_due(&self) -> bool {
        let now = std::time::Instant::now();
        let Ok(mut last) = self.ring_reloaded.lock() else {
            return false;
        };
        if last.is_some_and(|at| now.duration_since(at) < std::time::Duration::from_secs(1)) {
            return false;
        }
        *last = Some(now);
        true
    }
}

/// Most verified tokens remembered; past it, the memory starts again.
const VERIFIED_TOKENS: usize = 16_384;

/// Access tokens whose signature was verified, with their claims.
#[derive(Default)]
pub(super) struct VerifiedTokens(
    std::sync::Mutex<std::collections::HashMap<String, Arc<AccessClaims>>>,
);

impl VerifiedTokens {
    fn get(&self, token: &str) -> Option<Arc<AccessClaims>> {
        self.0.lock().ok()?.get(token).cloned()
    }

    fn insert(&self, token: &str, claims: Arc<AccessClaims>) {
        if let Ok(mut tokens) = self.0.lock() {
            if tokens.len() >= VERIFIED_TOKENS {
                tokens.clear();
            }
            tokens.insert(token.to_owned(), claims);
        }
    }
}
