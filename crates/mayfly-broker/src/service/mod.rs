//! The broker's operations, independent of HTTP, one file per use case:
//! [`tasks`] (start, show, end, list), [`exchange`] (RFC 8693),
//! [`tokens`] (introspection, revocation, sweeping), [`policies`]
//! (install, reload, re-evaluate), [`signing`] (Mayfly's keys),
//! [`custody`] (secrets held for the proxy), [`proxy`] (each request
//! through it: token, lease, policy, then the secret) and [`minted`]
//! (credentials upstreams make per task, and their release).
//! Every decision goes through [`Broker::decide`].

mod custody;
mod exchange;
mod federation;
mod mcp;
mod minted;
mod policies;
mod proxy;
mod signing;
mod tasks;
mod tokens;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use mayfly_store::{BrokerWrite, NewAuditEvent, Store};

use crate::auth::{Caller, CallerSecrets, Presented};
use crate::clock::{Clock, Timestamp};
use crate::config::BrokerConfig;
use crate::dpop::DpopVerifier;
use crate::error::{BrokerError, internal};
use crate::identity::{IdentityVerifier, Workload};
use crate::keys::{self, KeyRing, MasterKey};
use crate::metrics::Metrics;
use crate::minted::Minters;
use crate::policy::{Action, Decision, Policies, PolicyEngine, PolicyRequest, TaskFacts};
use crate::quota::RateLimiter;
use crate::reader::{ReadPool, blocking};
use crate::secrets;
use crate::task_cache::TaskCache;
use crate::upstream::Upstream;
use crate::writer::Writer;

/// Most expired tasks, and most expired credentials, one sweep closes. A
/// sweep holds the writer, so issuance waits at most for one such batch.
pub const SWEEP_BATCH: u64 = 1000;

pub use self::custody::ENTRY_CACHE;
pub use self::mcp::{MAX_MCP_CALLS, MCP_AUDIENCE_PREFIX, McpCall, McpDecision, McpRecord};
pub use self::proxy::{ProxyCall, UsePermit, UseReport};

/// Where the broker keeps its files and store.
#[derive(Debug, Clone)]
pub struct BrokerPaths {
    /// Mayfly's data directory (master key, admin token).
    pub data_dir: PathBuf,
    /// The store: a SQLite path or a `postgres://` URL.
    pub db: String,
}

/// One question to policy: who asks what, for which task and audience.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Question<'a> {
    pub(crate) action: Action,
    pub(crate) workload: &'a Workload,
    pub(crate) task: TaskFacts<'a>,
    pub(crate) audience: &'a str,
    pub(crate) scope: &'a [String],
    pub(crate) requested_ttl: i64,
    pub(crate) dpop: bool,
    pub(crate) source_ip: &'a str,
}

/// What `/readyz` reports: each check, passed (what it found) or failed
/// (why).
#[derive(Debug, Clone)]
pub struct Readiness {
    /// The store answers a read.
    pub store: Result<String, String>,
    /// The signing key is loaded.
    pub keys: Result<String, String>,
    /// A validated policy set is in force.
    pub policies: Result<String, String>,
}

impl Readiness {
    /// True when every check passed.
    pub fn ready(&self) -> bool {
        self.store.is_ok() && self.keys.is_ok() && self.policies.is_ok()
    }
}

/// The broker.
pub struct Broker {
    config: BrokerConfig,
    public_url: String,
    clock: Arc<dyn Clock>,
    identity: IdentityVerifier,
    engine: PolicyEngine,
    policies: RwLock<Arc<Policies>>,
    keys: RwLock<Arc<KeyRing>>,
    master: Arc<MasterKey>,
    writer: Writer,
    readers: Arc<ReadPool>,
    dpop: DpopVerifier,
    secrets: CallerSecrets,
    tasks: TaskCache,
    exchange_rate: RateLimiter,
    custody: custody::EntryCache,
    upstream: Upstream,
    minters: Minters,
    verified: signing::VerifiedTokens,
    /// When the key ring was last read again for a token it could not
    /// verify.
    ring_reloaded: std::sync::Mutex<Option<std::time::Instant>>,
    metrics: Metrics,
    /// This process among the replicas on the store (random, new at each
    /// start): names its claims.
    replica: String,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Broker({})", self.public_url)
    }
}

/// An audit event of `kind` now, with the fields of a JSON object.
fn event(at: Timestamp, kind: &str, data: serde_json::Value) -> NewAuditEvent {
    NewAuditEvent::new(at, kind, data)
}

impl Broker {
    /// Opens the store, loads keys and policies, and is ready to serve.
    pub async fn open(
        config: BrokerConfig,
        paths: &BrokerPaths,
        admin_token: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Broker, BrokerError> {
        config.check()?;
        let db = paths.db.clone();
        let metrics = Metrics::default();
        let writer_metrics = metrics.writer.clone();
        let writer = blocking(move || {
            let store = Store::open(&db)?;
            Ok(Writer::start(store, 0, writer_metrics)?)
        })
        .await?;
        let engine = PolicyEngine::new()?;
        let policies = match &config.policy.dir {
            Some(dir) => engine.load_dir(dir)?,
            None => engine.defaults()?,
        };
        let identity = IdentityVerifier::new(config.checked_issuers()?, clock.clone());
        let master = secrets::master_key(&config, &paths.data_dir)?;
        let secrets = CallerSecrets::new(admin_token, &secrets::resource_server_secrets(&config)?);
        let exchange_rate = config.limits.exchanges_per_second_per_workload;
        let upstream = Upstream::new(&config.proxy)?;
        let minters = Minters::new(&config.upstream, &config.public_url(), &upstream)?;
        let broker = Broker {
            public_url: config.public_url(),
            config,
            clock,
            identity,
            engine,
            policies: RwLock::new(Arc::new(policies.clone())),
            keys: RwLock::new(Arc::new(KeyRing::from_records(&[], &master, 0, 0)?)),
            master: Arc::new(master),
            writer,
            readers: Arc::new(ReadPool::new(&paths.db)),
            dpop: DpopVerifier::default(),
            secrets,
            tasks: TaskCache::default(),
            exchange_rate: RateLimiter::new(exchange_rate),
            custody: custody::EntryCache::default(),
            upstream,
            minters,
            verified: signing::VerifiedTokens::default(),
            ring_reloaded: std::sync::Mutex::new(None),
            metrics,
            replica: crate::b64::random_id()
                .map_err(|e| internal(format!("no randomness for the replica id: {e}")))?,
        };
        broker.refresh_keys().await?;
        broker.start_policies(policies).await?;
        // Upstream levels are checked now, not at the first request.
        broker.check_upstreams().await?;
        Ok(broker)
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Mayfly's public URL (the `iss` of its tokens).
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The counters `/metrics` exposes.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The Prometheus text of `/metrics`, with the live leases counted in
    /// the store now (left out when the store does not answer).
    pub async fn metrics_text(&self) -> String {
        let now = self.clock.now();
        let live = self
            .readers
            .read(move |s| s.broker_live_lease_count(now))
            .await
            .ok();
        self.metrics.render(live)
    }

    /// The configuration in force.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// Whether this broker can serve: the store answers (within 2 s), the
    /// signing key of the configured algorithm is loaded, and a validated
    /// policy set is in force. Each check says what it found, in words
    /// that hold no secret (a store URL can carry a password).
    pub async fn readiness(&self) -> Readiness {
        let ping = self.readers.read(|s| s.ping());
        let store = match tokio::time::timeout(std::time::Duration::from_secs(2), ping).await {
            Ok(Ok(())) => Ok("answers".to_owned()),
            Ok(Err(_)) => Err("does not answer".to_owned()),
            Err(_) => Err("no answer within 2 s".to_owned()),
        };
        let algorithm = &self.config.tokens.algorithm;
        let keys = match keys::parse_alg(algorithm).and_then(|alg| {
            self.current_keys()
                .signer(alg)
                .map(|(kid, ..)| kid.to_owned())
        }) {
            Some(kid) => Ok(format!("{algorithm} signing key {kid} loaded")),
            None => Err(format!("no {algorithm} signing key loaded")),
        };
        let policies = self.current_policies();
        let policies = if policies.ids.is_empty() {
            Err("no policy in force".to_owned())
        } else {
            Ok(format!(
                "{} policies from {} (set {})",
                policies.ids.len(),
                policies.origin,
                policies.generation
            ))
        };
        Readiness {
            store,
            keys,
            policies,
        }
    }

    fn current_policies(&self) -> Arc<Policies> {
        match self.policies.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Asks policy, with the policies in force or a given set.
    pub(crate) fn decide(&self, policies: &Policies, question: &Question<'_>) -> Decision {
        self.engine.decide(
            policies,
            &PolicyRequest {
                workload: question.workload,
                action: question.action,
                task: question.task,
                audience: question.audience,
                scope: question.scope,
                requested_ttl: question.requested_ttl,
                now: self.now(),
                dpop: question.dpop,
                source_ip: question.source_ip,
            },
        )
    }

    /// Checks the client of introspection and revocation.
    pub fn authenticate_client(&self, authorization: Option<&str>) -> Result<Caller, BrokerError> {
        self.secrets.client(authorization)
    }

    /// Checks the admin token.
    pub fn authenticate_admin(&self, authorization: Option<&str>) -> Result<(), BrokerError> {
        self.secrets.admin(authorization)
    }

    /// Checks a `Bearer` value: the admin token or a workload identity token.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, BrokerError> {
        let Presented::Bearer(token) = Presented::parse(authorization) else {
            return Err(BrokerError::Unauthorized(
                "send the workload's identity token (or the admin token) as Authorization: Bearer"
                    .into(),
            ));
        };
        if self.secrets.is_admin(token) {
            return Ok(Caller::Admin);
        }
        Ok(Caller::Workload(self.identity.verify(token).await?))
    }

    /// Records an event that has no other write (a denial, a policy load).
    async fn audit(&self, kind: &str, data: serde_json::Value) -> Result<(), BrokerError> {
        self.writer
            .apply_one(BrokerWrite::Audit(event(self.now(), kind, data)))
            .await?;
        Ok(())
    }

    /// Records a denial; one that cannot be recorded is still a denial.
    async fn deny(&self, kind: &str, data: serde_json::Value) {
        let _ = self.audit(kind, data).await;
    }

    /// RFC 8414 metadata.
    pub fn metadata(&self) -> serde_json::Value {
        let base = &self.public_url;
        serde_json::json!({
            "issuer": base,
            "token_endpoint": format!("{base}/oauth2/token"),
            "introspection_endpoint": format!("{base}/oauth2/introspect"),
            "revocation_endpoint": format!("{base}/oauth2/revoke"),
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "grant_types_supported": [crate::protocol::TOKEN_EXCHANGE],
            "token_endpoint_auth_methods_supported": ["none"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "bearer"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "bearer"],
            "response_types_supported": [],
            "dpop_signing_alg_values_supported": ["ES256", "EdDSA", "RS256"],
            "access_token_signing_alg_values_supported": self.config.signing_algorithms(),
        })
    }
}
