//! The broker's records: tasks, leases (one per issued credential), signing
//! keys (sealed by the broker) and the hash-chained audit log.
//!
//! Writes come in batches ([`Store::broker_apply`]): one transaction holds
//! many requests' writes, so issuance stays durable under load without one
//! disk sync per token. Each write carries the audit event that describes
//! it, appended in the same transaction.

mod audit;
mod policy_sets;
mod reads;
mod retention;
mod writes;

pub use audit::audit_hash;
pub use policy_sets::{NewPolicySet, POLICY_CHANGED, PolicySetRecord};
pub use retention::{Sweep, Swept};

#[cfg(doc)]
use crate::Store;
use crate::Timestamp;

/// A task: the unit of work every credential belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    /// Random id, shown to clients.
    pub id: String,
    /// The workload that started it (`repo:org/app:ref:refs/heads/main`, `spiffe://...`).
    pub workload: String,
    /// The configured issuer name that vouched for the workload.
    pub issuer: String,
    /// The person or team answerable for it.
    pub owner: String,
    /// Why it runs.
    pub purpose: String,
    /// The tenant it runs for.
    pub tenant: String,
    /// Audiences the task may ask credentials for.
    pub audiences: Vec<String>,
    /// The workload's attributes at start (JSON object), for re-evaluating policy.
    pub attributes: String,
    /// The caller's network address at start.
    pub source_addr: String,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ends unless ended earlier.
    pub expires_at: Timestamp,
    /// When it ended, if it did.
    pub ended_at: Option<Timestamp>,
    /// Why it ended (`ended`, `expired`, `revoked: ...`).
    pub end_reason: Option<String>,
}

/// A lease: the record of one issued credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The token's `jti`.
    pub jti: String,
    /// Its task.
    pub task_id: String,
    /// The workload it was issued to.
    pub workload: String,
    /// The task's owner (copied for revocation by owner).
    pub owner: String,
    /// The task's tenant.
    pub tenant: String,
    /// The audience (resource) it is for.
    pub audience: String,
    /// Granted scope, space-separated.
    pub scope: String,
    /// The client it was issued to (the workload's issuer name).
    pub client_id: String,
    /// DPoP key thumbprint it is bound to, if any.
    pub cnf_jkt: Option<String>,
    /// The caller's network address.
    pub source_addr: String,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// Its `exp`.
    pub expires_at: Timestamp,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
    /// Why (`task ended`, `revoked by owner`, `policy change: ...`, `expired`).
    pub revoke_reason: Option<String>,
}

impl LeaseRecord {
    /// Whether the credential is usable at `now`.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

/// A signing key, its private half sealed by the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// Key id (`kid`).
    pub kid: String,
    /// JOSE algorithm (`EdDSA`, `ES256`).
    pub alg: String,
    /// The public JWK (JSON).
    pub public_jwk: String,
    /// The sealed private key (nonce and ciphertext, base64).
    pub sealed_private: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it stopped signing (a newer key took over), if it did.
    pub retired_at: Option<Timestamp>,
}

/// The facts of an audit event: ids and figures, never a token or a secret.
pub type AuditData = serde_json::Map<String, serde_json::Value>;

/// An audit event to append; the store numbers and chains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEvent {
    /// When it happened.
    pub at: Timestamp,
    /// What happened (`task.start`, `token.issue`, `token.deny`, ...).
    pub kind: String,
    /// Its facts: a JSON object's text, exactly as it will be stored and
    /// hashed. Written when the event is made, by the request that makes
    /// it, so the store's one writer only hashes and inserts it.
    pub data: String,
}

impl NewAuditEvent {
    /// An event of `kind` at `at` with the fields of `data` (a JSON object;
    /// anything else records no fields).
    pub fn new(at: Timestamp, kind: &str, data: serde_json::Value) -> NewAuditEvent {
        let fields = match data {
            serde_json::Value::Object(fields) => fields,
            _ => AuditData::new(),
        };
        NewAuditEvent {
            at,
            kind: kind.to_owned(),
            data: serde_json::Value::Object(fields).to_string(),
        }
    }

    /// The same event with one more field (last).
    pub(crate) fn with(&self, key: &str, value: impl Into<serde_json::Value>) -> NewAuditEvent {
        let mut fields: AuditData = serde_json::from_str(&self.data).unwrap_or_default();
        fields.insert(key.to_owned(), value.into());
        NewAuditEvent::new(self.at, &self.kind, serde_json::Value::Object(fields))
    }
}

/// A stored audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When it happened.
    pub at: Timestamp,
    /// What happened.
    pub kind: String,
    /// Ids and facts: the JSON object text exactly as stored and hashed.
    pub data: String,
    /// The previous event's hash (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 over the previous hash and this event.
    pub hash: String,
}

/// What a revocation selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeSelector {
    /// One credential by `jti`.
    Lease(String),
    /// Every credential of a task.
    Task(String),
    /// Every credential issued to a workload.
    Workload(String),
    /// Every credential of tasks owned by an owner.
    Owner(String),
}

/// One write of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum BrokerWrite {
    /// Record a new task; refused if its workload already has
    /// `max_live` live tasks.
    StartTask {
        /// The task.
        task: TaskRecord,
        /// Most live tasks its workload may hold, if limited.
        max_live: Option<i64>,
        /// Its audit event.
        audit: NewAuditEvent,
    },
    /// Record an issued credential (and what an upstream made for it);
    /// refused if its task is no longer live.
    IssueLease {
        /// The lease.
        lease: LeaseRecord,
        /// The DPoP proof it was asked with, spent here: its hash, and when
        /// it can be forgotten. A proof spent before (by any replica, before
        /// any restart) refuses the write with [`PROOF_REPLAYED`].
        proof: Option<(String, Timestamp)>,
        /// The upstream credential made with it, if any.
        grant: Option<Box<crate::UpstreamGrant>>,
        /// The policy generation that allowed it: refused with
        /// [`POLICY_CHANGED`] if a newer set is on the store.
        decided_under: i64,
        /// Its audit event.
        audit: NewAuditEvent,
    },
    /// End a live task and revoke all its credentials.
    EndTask {
        /// The task.
        task_id: String,
        /// When.
        at: Timestamp,
        /// Why.
        reason: String,
        /// Its audit event (the revoked count is added to `data`).
        audit: NewAuditEvent,
    },
    /// Revoke the live credentials a selector picks (tasks stay as they are,
    /// except that revoking by workload or owner also ends their tasks).
    Revoke {
        /// What to revoke.
        selector: RevokeSelector,
        /// When.
        at: Timestamp,
        /// Why.
        reason: String,
        /// Its audit event (the revoked count is added to `data`).
        audit: NewAuditEvent,
    },
    /// Revoke the live credentials of one grant issued up to `at` (policy
    /// re-evaluation denied them).
    RevokeGrant {
        /// The grant.
        grant: GrantKey,
        /// When.
        at: Timestamp,
        /// Why.
        reason: String,
        /// Its audit event.
        audit: NewAuditEvent,
    },
    /// Record an event with no other write (a denial, a policy load).
    Audit(NewAuditEvent),
    /// Mark upstream grants released (their role dropped, their token
    /// revoked at the upstream).
    ReleaseGrants {
        /// The grants' lease ids.
        jtis: Vec<String>,
        /// When.
        at: Timestamp,
        /// Its audit event (the released count is added to `data`).
        audit: NewAuditEvent,
    },
    /// Take a secret into custody (its first version, sealed); refused if
    /// the name is taken.
    CustodyAdd {
        /// The entry.
        entry: crate::CustodyEntry,
        /// Version 1, sealed.
        sealed: String,
        /// Its audit event.
        audit: NewAuditEvent,
    },
    /// A new version of a secret in custody; refused unless the entry is
    /// at `version - 1`.
    CustodyRotate {
        /// The entry.
        name: String,
        /// The new version's number.
        version: i64,
        /// It, sealed.
        sealed: String,
        /// When.
        at: Timestamp,
        /// Seconds the previous version stays usable.
        grace: i64,
        /// Its audit event.
        audit: NewAuditEvent,
    },
    /// Remove a secret from custody and destroy its versions.
    CustodyRemove {
        /// The entry.
        name: String,
        /// When.
        at: Timestamp,
        /// Its audit event.
        audit: NewAuditEvent,
    },
    /// Count one request through the proxy for its task and entry.
    ProxyUse {
        /// The usage to add.
        usage: crate::ProxyUsage,
        /// Its audit event.
        audit: NewAuditEvent,
    },
    /// Store a new signing key; older keys of its algorithm that still sign
    /// are retired. Refused when the key that signs for its algorithm is
    /// no longer `replaces` (another replica rotated first).
    AddSigningKey {
        /// The new key.
        key: SigningKeyRecord,
        /// The key it takes over from, as the caller last read the store
        /// (`None`: the algorithm had no signing key).
        replaces: Option<String>,
    },
    /// Spend a DPoP proof presented to the proxy: refused with
    /// [`PROOF_REPLAYED`] if any replica accepted it before.
    SpendProof {
        /// Its hash.
        proof: String,
        /// When it can be forgotten.
        forget_at: Timestamp,
    },
    /// Put a policy set in force for every replica as the next generation
    /// (`Done` carries its number).
    InstallPolicySet(NewPolicySet),
    /// Take the re-evaluation a policy generation calls for until `until`:
    /// `Done(1)` when taken, refused when it is done or another replica
    /// holds it.
    ClaimReevaluation {
        /// The generation.
        generation: i64,
        /// Which replica (a random id of the process): its own claim is
        /// renewed.
        claimer: String,
        /// Now.
        at: Timestamp,
        /// When the claim lapses unless renewed (a replica that died
        /// holding it is taken over from then).
        until: Timestamp,
    },
    /// The re-evaluation of a policy generation is done (recorded once:
    /// `Done(0)` and no event when it already was).
    Reevaluated {
        /// The generation.
        generation: i64,
        /// When.
        at: Timestamp,
        /// Its audit event.
        audit: NewAuditEvent,
    },
}

/// The refusal of an [`BrokerWrite::IssueLease`] whose DPoP proof was
/// spent before.
pub const PROOF_REPLAYED: &str = "the DPoP proof was already used";

/// The result of one write of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Done; the number of rows it concerned (credentials revoked, ...).
    Done(u64),
    /// Not done, and why (the task ended meanwhile, ...). The rest of the
    /// batch still commits.
    Refused(String),
}

/// Filters for listing tasks.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Only tasks that have not ended.
    pub live_only: bool,
    /// Only this workload's.
    pub workload: Option<String>,
    /// Only this owner's.
    pub owner: Option<String>,
    /// At most this many, newest first.
    pub limit: Option<i64>,
}

/// Live credentials grouped by what decides them, for re-evaluating
/// policy: all leases of one task, audience, scope and binding decide the
/// same way. Only what a decision reads is here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveGrant {
    /// Which leases: the page position and the revocation target.
    pub key: GrantKey,
    /// The task's workload.
    pub workload: String,
    /// The task's workload attributes (JSON), to rebuild the workload.
    pub attributes: String,
    /// The task's owner.
    pub owner: String,
    /// The task's purpose.
    pub purpose: String,
    /// The task's tenant.
    pub tenant: String,
    /// The task's audiences.
    pub audiences: Vec<String>,
    /// The caller's address at task start.
    pub source_addr: String,
    /// When the task started.
    pub started_at: Timestamp,
    /// The longest requested lifetime among the leases, in seconds.
    pub lifetime: i64,
    /// How many leases.
    pub leases: i64,
}

/// One group of live leases: a task, an audience, a scope and a binding.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GrantKey {
    /// The task.
    pub task_id: String,
    /// The audience.
    pub audience: String,
    /// The scope.
    pub scope: String,
    /// Whether the credentials are DPoP-bound.
    pub bound: bool,
}

/// What `audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditVerification {
    /// Events checked.
    pub events: i64,
    /// The last event deleted by retention (the chain was checked from the
    /// one after it); 0 when none was.
    pub pruned_through: i64,
    /// The first problem, if any: the chain is broken there.
    pub problem: Option<String>,
}
