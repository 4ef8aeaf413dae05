//! The broker's records: tasks, leases (one per issued credential), signing
//! keys (sealed by the broker) and the hash-chained audit log.
//!
//! Writes come in batches ([`Store::broker_apply`]): one transaction holds
//! many requests' writes, so issuance stays durable under load without one
//! disk sync per token. Each write carries the audit event that describes
//! it, appended in the same transaction.

use sha2::{Digest, Sha256};

use crate::backend::{Store, Tx, Value, int, opt_int, take_opt_text, take_text};
use crate::{StoreError, Timestamp};

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
    /// Audiences the task may ask credentials for (JSON array).
    pub audiences: String,
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

/// An audit event to append; the store numbers and chains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEvent {
    /// When it happened.
    pub at: Timestamp,
    /// What happened (`task.start`, `token.issue`, `token.deny`, ...).
    pub kind: String,
    /// Ids and facts (JSON object): never a token or a secret.
    pub data: String,
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
    /// Ids and facts (JSON object).
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
#[derive(Debug, Clone)]
pub enum BrokerWrite {
    /// Record a new task.
    StartTask {
        /// The task.
        task: TaskRecord,
        /// Its audit event.
        audit: NewAuditEvent,
    },
    /// Record an issued credential; refused if its task is no longer live.
    IssueLease {
        /// The lease.
        lease: LeaseRecord,
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
    /// Revoke these credentials (policy re-evaluation).
    RevokeLeases {
        /// Their `jti`s.
        jtis: Vec<String>,
        /// When.
        at: Timestamp,
        /// Why.
        reason: String,
        /// Its audit event.
        audit: NewAuditEvent,
    },
    /// Record an event with no other write (a denial, a policy load).
    Audit(NewAuditEvent),
    /// Store a new signing key; older keys that still sign are retired.
    AddSigningKey(SigningKeyRecord),
}

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

/// A live credential grouped with its task, for re-evaluating policy: all
/// leases of one task, audience, scope and binding decide the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveGrant {
    /// The task.
    pub task: TaskRecord,
    /// The audience.
    pub audience: String,
    /// The scope.
    pub scope: String,
    /// Whether the credentials are DPoP-bound.
    pub bound: bool,
    /// The longest requested lifetime among them, in seconds.
    pub lifetime: i64,
    /// The credentials.
    pub jtis: Vec<String>,
}

/// What `audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditVerification {
    /// Events checked.
    pub events: i64,
    /// The first problem, if any: the chain is broken there.
    pub problem: Option<String>,
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The chain hash of an event: SHA-256 over the previous hash and the
/// event's fields, each length-prefixed so no field can bleed into another.
pub fn audit_hash(prev_hash: &str, seq: i64, at: Timestamp, kind: &str, data: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [prev_hash, &seq.to_string(), &at.to_string(), kind, data] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

const TASK_COLUMNS: &str = "id, workload, issuer, owner, purpose, tenant, audiences, attributes, source_addr, started_at, expires_at, ended_at, end_reason";

fn task_row(mut row: Vec<Value>) -> TaskRecord {
    let r = row.as_mut_slice();
    TaskRecord {
        id: take_text(r, 0),
        workload: take_text(r, 1),
        issuer: take_text(r, 2),
        owner: take_text(r, 3),
        purpose: take_text(r, 4),
        tenant: take_text(r, 5),
        audiences: take_text(r, 6),
        attributes: take_text(r, 7),
        source_addr: take_text(r, 8),
        started_at: int(r, 9),
        expires_at: int(r, 10),
        ended_at: opt_int(r, 11),
        end_reason: take_opt_text(r, 12),
    }
}

const LEASE_COLUMNS: &str = "jti, task_id, workload, owner, tenant, audience, scope, client_id, cnf_jkt, source_addr, issued_at, expires_at, revoked_at, revoke_reason";

fn lease_row(mut row: Vec<Value>) -> LeaseRecord {
    let r = row.as_mut_slice();
    LeaseRecord {
        jti: take_text(r, 0),
        task_id: take_text(r, 1),
        workload: take_text(r, 2),
        owner: take_text(r, 3),
        tenant: take_text(r, 4),
        audience: take_text(r, 5),
        scope: take_text(r, 6),
        client_id: take_text(r, 7),
        cnf_jkt: take_opt_text(r, 8),
        source_addr: take_text(r, 9),
        issued_at: int(r, 10),
        expires_at: int(r, 11),
        revoked_at: opt_int(r, 12),
        revoke_reason: take_opt_text(r, 13),
    }
}

fn audit_row(mut row: Vec<Value>) -> AuditEvent {
    let r = row.as_mut_slice();
    AuditEvent {
        seq: int(r, 0),
        at: int(r, 1),
        kind: take_text(r, 2),
        data: take_text(r, 3),
        prev_hash: take_text(r, 4),
        hash: take_text(r, 5),
    }
}

/// Appends audit events to the chain inside one transaction.
struct Chain {
    seq: i64,
    hash: String,
}

impl Chain {
    fn load(tx: &mut dyn Tx) -> Result<Chain, StoreError> {
        let rows = tx.query("read audit head", "SELECT seq, hash FROM audit_head", &[])?;
        Ok(match rows.into_iter().next() {
            Some(mut row) => Chain {
                seq: int(&row, 0),
                hash: take_text(&mut row, 1),
            },
            None => Chain {
                seq: 0,
                hash: GENESIS.to_owned(),
            },
        })
    }

    fn append(&mut self, tx: &mut dyn Tx, event: &NewAuditEvent) -> Result<(), StoreError> {
        let seq = self.seq + 1;
        let hash = audit_hash(&self.hash, seq, event.at, &event.kind, &event.data);
        tx.execute(
            "append audit event",
            "INSERT INTO audit_events (seq, at, kind, data, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                seq.into(),
                event.at.into(),
                event.kind.as_str().into(),
                event.data.as_str().into(),
                self.hash.as_str().into(),
                hash.as_str().into(),
            ],
        )?;
        self.seq = seq;
        self.hash = hash;
        Ok(())
    }

    fn save(&self, tx: &mut dyn Tx) -> Result<(), StoreError> {
        tx.execute("update audit head", "DELETE FROM audit_head", &[])?;
        tx.execute(
            "update audit head",
            "INSERT INTO audit_head (seq, hash) VALUES ($1, $2)",
            &[self.seq.into(), self.hash.as_str().into()],
        )?;
        Ok(())
    }
}

/// Adds `"revoked": n` to an event's JSON object.
fn with_count(event: &NewAuditEvent, count: u64) -> NewAuditEvent {
    let data = match event.data.strip_suffix('}') {
        Some(open) if open.trim_end().ends_with('{') => format!("{open}\"revoked\":{count}}}"),
        Some(open) => format!("{open},\"revoked\":{count}}}"),
        None => event.data.clone(),
    };
    NewAuditEvent {
        at: event.at,
        kind: event.kind.clone(),
        data,
    }
}

fn revoke_task_leases(
    tx: &mut dyn Tx,
    task_id: &str,
    at: Timestamp,
    reason: &str,
) -> Result<u64, StoreError> {
    tx.execute(
        "revoke task credentials",
        "UPDATE broker_leases SET revoked_at = $2, revoke_reason = $3 WHERE task_id = $1 AND revoked_at IS NULL",
        &[task_id.into(), at.into(), reason.into()],
    )
}

fn apply_one(
    tx: &mut dyn Tx,
    chain: &mut Chain,
    write: &BrokerWrite,
) -> Result<WriteOutcome, StoreError> {
    match write {
        BrokerWrite::StartTask { task, audit } => {
            tx.execute(
                "start task",
                &format!("INSERT INTO broker_tasks ({TASK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"),
                &[
                    task.id.as_str().into(),
                    task.workload.as_str().into(),
                    task.issuer.as_str().into(),
                    task.owner.as_str().into(),
                    task.purpose.as_str().into(),
                    task.tenant.as_str().into(),
                    task.audiences.as_str().into(),
                    task.attributes.as_str().into(),
                    task.source_addr.as_str().into(),
                    task.started_at.into(),
                    task.expires_at.into(),
                    task.ended_at.into(),
                    task.end_reason.clone().into(),
                ],
            )?;
            chain.append(tx, audit)?;
            Ok(WriteOutcome::Done(1))
        }
        BrokerWrite::IssueLease { lease, audit } => {
            // INVARIANT: a lease is only written while its task is live; the
            // check and the insert are one statement, so a task ended by
            // another replica a moment ago cannot gain a credential.
            let inserted = tx.execute(
                "issue credential",
                &format!(
                    "INSERT INTO broker_leases ({LEASE_COLUMNS}) \
                     SELECT CAST($1 AS TEXT), CAST($2 AS TEXT), CAST($3 AS TEXT), CAST($4 AS TEXT), CAST($5 AS TEXT), CAST($6 AS TEXT), \
                     CAST($7 AS TEXT), CAST($8 AS TEXT), CAST($9 AS TEXT), CAST($10 AS TEXT), CAST($11 AS BIGINT), CAST($12 AS BIGINT), NULL, NULL \
                     WHERE EXISTS (SELECT 1 FROM broker_tasks WHERE id = $2 AND ended_at IS NULL AND expires_at > $11)"
                ),
                &[
                    lease.jti.as_str().into(),
                    lease.task_id.as_str().into(),
                    lease.workload.as_str().into(),
                    lease.owner.as_str().into(),
                    lease.tenant.as_str().into(),
                    lease.audience.as_str().into(),
                    lease.scope.as_str().into(),
                    lease.client_id.as_str().into(),
                    lease.cnf_jkt.clone().into(),
                    lease.source_addr.as_str().into(),
                    lease.issued_at.into(),
                    lease.expires_at.into(),
                ],
            )?;
            if inserted == 0 {
                return Ok(WriteOutcome::Refused(format!(
                    "task {} has ended",
                    lease.task_id
                )));
            }
            chain.append(tx, audit)?;
            Ok(WriteOutcome::Done(1))
        }
        BrokerWrite::EndTask {
            task_id,
            at,
            reason,
            audit,
        } => {
            let ended = tx.execute(
                "end task",
                "UPDATE broker_tasks SET ended_at = $2, end_reason = $3 WHERE id = $1 AND ended_at IS NULL",
                &[task_id.as_str().into(), (*at).into(), reason.as_str().into()],
            )?;
            if ended == 0 {
                return Ok(WriteOutcome::Refused(format!(
                    "task {task_id} is unknown or has already ended"
                )));
            }
            let revoked = revoke_task_leases(tx, task_id, *at, &format!("task {reason}"))?;
            chain.append(tx, &with_count(audit, revoked))?;
            Ok(WriteOutcome::Done(revoked))
        }
        BrokerWrite::Revoke {
            selector,
            at,
            reason,
            audit,
        } => {
            let revoked = match selector {
                RevokeSelector::Lease(jti) => tx.execute(
                    "revoke credential",
                    "UPDATE broker_leases SET revoked_at = $2, revoke_reason = $3 WHERE jti = $1 AND revoked_at IS NULL",
                    &[jti.as_str().into(), (*at).into(), reason.as_str().into()],
                )?,
                RevokeSelector::Task(task_id) => {
                    tx.execute(
                        "end revoked task",
                        "UPDATE broker_tasks SET ended_at = $2, end_reason = $3 WHERE id = $1 AND ended_at IS NULL",
                        &[task_id.as_str().into(), (*at).into(), format!("revoked: {reason}").into()],
                    )?;
                    revoke_task_leases(tx, task_id, *at, reason)?
                }
                RevokeSelector::Workload(who) | RevokeSelector::Owner(who) => {
                    let column = if matches!(selector, RevokeSelector::Owner(_)) {
                        "owner"
                    } else {
                        "workload"
                    };
                    // A live credential's task is live (ending a task
                    // revokes its credentials in the same transaction), and
                    // a credential's owner and workload are its task's: the
                    // credentials go first, found through the tasks.
                    let revoked = tx.execute(
                        "revoke credentials",
                        &format!(
                            "UPDATE broker_leases SET revoked_at = $2, revoke_reason = $3 \
                             WHERE revoked_at IS NULL AND task_id IN \
                             (SELECT id FROM broker_tasks WHERE {column} = $1 AND ended_at IS NULL)"
                        ),
                        &[who.as_str().into(), (*at).into(), reason.as_str().into()],
                    )?;
                    tx.execute(
                        "end revoked tasks",
                        &format!("UPDATE broker_tasks SET ended_at = $2, end_reason = $3 WHERE {column} = $1 AND ended_at IS NULL"),
                        &[who.as_str().into(), (*at).into(), format!("revoked: {reason}").into()],
                    )?;
                    revoked
                }
            };
            chain.append(tx, &with_count(audit, revoked))?;
            Ok(WriteOutcome::Done(revoked))
        }
        BrokerWrite::RevokeLeases {
            jtis,
            at,
            reason,
            audit,
        } => {
            let mut revoked = 0;
            for jti in jtis {
                revoked += tx.execute(
                    "revoke credential",
                    "UPDATE broker_leases SET revoked_at = $2, revoke_reason = $3 WHERE jti = $1 AND revoked_at IS NULL",
                    &[jti.as_str().into(), (*at).into(), reason.as_str().into()],
                )?;
            }
            chain.append(tx, &with_count(audit, revoked))?;
            Ok(WriteOutcome::Done(revoked))
        }
        BrokerWrite::Audit(event) => {
            chain.append(tx, event)?;
            Ok(WriteOutcome::Done(0))
        }
        BrokerWrite::AddSigningKey(key) => {
            tx.execute(
                "retire signing keys",
                "UPDATE broker_keys SET retired_at = $1 WHERE retired_at IS NULL",
                &[key.created_at.into()],
            )?;
            tx.execute(
                "add signing key",
                "INSERT INTO broker_keys (kid, alg, public_jwk, sealed_private, created_at, retired_at) VALUES ($1, $2, $3, $4, $5, NULL)",
                &[
                    key.kid.as_str().into(),
                    key.alg.as_str().into(),
                    key.public_jwk.as_str().into(),
                    key.sealed_private.as_str().into(),
                    key.created_at.into(),
                ],
            )?;
            chain.append(
                tx,
                &NewAuditEvent {
                    at: key.created_at,
                    kind: "key.rotate".into(),
                    data: format!("{{\"kid\":\"{}\",\"alg\":\"{}\"}}", key.kid, key.alg),
                },
            )?;
            Ok(WriteOutcome::Done(1))
        }
    }
}

impl Store {
    /// Applies a batch of broker writes in one transaction and returns one
    /// outcome per write. A write the state refuses (its task ended) does
    /// not stop the others; a database error rolls the whole batch back,
    /// so no caller is told "done" for a write that is not committed.
    pub fn broker_apply(
        &mut self,
        writes: &[BrokerWrite],
    ) -> Result<Vec<WriteOutcome>, StoreError> {
        self.transaction(|tx| {
            if tx.is_postgres() {
                // One chain for all replicas: appends take turns.
                tx.query(
                    "lock audit chain",
                    "SELECT pg_advisory_xact_lock(7355610)::text",
                    &[],
                )?;
            }
            let mut chain = Chain::load(tx)?;
            let start = chain.seq;
            let mut outcomes = Vec::with_capacity(writes.len());
            for write in writes {
                outcomes.push(apply_one(tx, &mut chain, write)?);
            }
            if chain.seq != start {
                chain.save(tx)?;
            }
            Ok(outcomes)
        })
    }

    /// Ends tasks past their expiry and records leases past their `exp`,
    /// at most `limit` of each per call, so a sweep never holds the writer
    /// long. Returns how many tasks and leases it closed.
    pub fn broker_sweep(&mut self, now: Timestamp, limit: i64) -> Result<(u64, u64), StoreError> {
        self.transaction(|tx| {
            if tx.is_postgres() {
                tx.query(
                    "lock audit chain",
                    "SELECT pg_advisory_xact_lock(7355610)::text",
                    &[],
                )?;
            }
            let mut chain = Chain::load(tx)?;
            let tasks = tx.query(
                "find expired tasks",
                "SELECT id, owner, workload FROM broker_tasks WHERE ended_at IS NULL AND expires_at <= $1 LIMIT $2",
                &[now.into(), limit.into()],
            )?;
            for row in &tasks {
                let id = crate::backend::text(row, 0);
                tx.execute(
                    "end expired task",
                    "UPDATE broker_tasks SET ended_at = expires_at, end_reason = 'expired' WHERE id = $1 AND ended_at IS NULL",
                    &[id.as_str().into()],
                )?;
                let revoked = revoke_task_leases(tx, &id, now, "task expired")?;
                chain.append(
                    tx,
                    &NewAuditEvent {
                        at: now,
                        kind: "task.expire".into(),
                        data: serde_json_object(&[("task", &id)], &[("revoked", revoked as i64)]),
                    },
                )?;
            }
            let leases = tx.query(
                "find expired credentials",
                "SELECT jti, task_id, expires_at FROM broker_leases WHERE revoked_at IS NULL AND expires_at <= $1 LIMIT $2",
                &[now.into(), limit.into()],
            )?;
            for row in &leases {
                let jti = crate::backend::text(row, 0);
                let task = crate::backend::text(row, 1);
                tx.execute(
                    "close expired credential",
                    "UPDATE broker_leases SET revoked_at = expires_at, revoke_reason = 'expired' WHERE jti = $1 AND revoked_at IS NULL",
                    &[jti.as_str().into()],
                )?;
                chain.append(
                    tx,
                    &NewAuditEvent {
                        at: int(row, 2),
                        kind: "token.expire".into(),
                        data: serde_json_object(&[("jti", &jti), ("task", &task)], &[]),
                    },
                )?;
            }
            if !tasks.is_empty() || !leases.is_empty() {
                chain.save(tx)?;
            }
            Ok((tasks.len() as u64, leases.len() as u64))
        })
    }

    /// One task by id.
    pub fn broker_task(&mut self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        self.read(|tx| {
            let rows = tx.query(
                "read task",
                &format!("SELECT {TASK_COLUMNS} FROM broker_tasks WHERE id = $1"),
                &[id.into()],
            )?;
            Ok(rows.into_iter().next().map(task_row))
        })
    }

    /// Tasks, newest first.
    pub fn broker_tasks(&mut self, filter: &TaskFilter) -> Result<Vec<TaskRecord>, StoreError> {
        self.read(|tx| {
            let rows = tx.query(
                "list tasks",
                &format!(
                    "SELECT {TASK_COLUMNS} FROM broker_tasks \
                     WHERE (CAST($1 AS BIGINT) = 0 OR ended_at IS NULL) AND ($2 IS NULL OR workload = $2) AND ($3 IS NULL OR owner = $3) \
                     ORDER BY started_at DESC, id LIMIT $4"
                ),
                &[
                    i64::from(filter.live_only).into(),
                    filter.workload.clone().into(),
                    filter.owner.clone().into(),
                    filter.limit.unwrap_or(1000).into(),
                ],
            )?;
            Ok(rows.into_iter().map(task_row).collect())
        })
    }

    /// The credentials of a task, oldest first.
    pub fn broker_task_leases(&mut self, task_id: &str) -> Result<Vec<LeaseRecord>, StoreError> {
        self.read(|tx| {
            let rows = tx.query(
                "list task credentials",
                &format!("SELECT {LEASE_COLUMNS} FROM broker_leases WHERE task_id = $1 ORDER BY issued_at, jti"),
                &[task_id.into()],
            )?;
            Ok(rows.into_iter().map(lease_row).collect())
        })
    }

    /// Credentials, newest first: all, or only those not revoked.
    pub fn broker_leases(
        &mut self,
        live_only: bool,
        limit: i64,
    ) -> Result<Vec<LeaseRecord>, StoreError> {
        self.read(|tx| {
            let rows = tx.query(
                "list credentials",
                &format!("SELECT {LEASE_COLUMNS} FROM broker_leases WHERE (CAST($1 AS BIGINT) = 0 OR revoked_at IS NULL) ORDER BY issued_at DESC, jti LIMIT $2"),
                &[i64::from(live_only).into(), limit.into()],
            )?;
            Ok(rows.into_iter().map(lease_row).collect())
        })
    }

    /// One credential by `jti`.
    pub fn broker_lease(&mut self, jti: &str) -> Result<Option<LeaseRecord>, StoreError> {
        self.read(|tx| {
            let rows = tx.query(
                "read credential",
                &format!("SELECT {LEASE_COLUMNS} FROM broker_leases WHERE jti = $1"),
                &[jti.into()],
            )?;
            Ok(rows.into_iter().next().map(lease_row))
        })
    }

    /// Live credentials grouped by what decides them, for re-evaluating
    /// policy after a change.
    pub fn broker_live_grants(&mut self, now: Timestamp) -> Result<Vec<LiveGrant>, StoreError> {
        self.read(|tx| {
            let columns = TASK_COLUMNS
                .split(", ")
                .map(|c| format!("t.{c}"))
                .collect::<Vec<_>>()
                .join(", ");
            let rows = tx.query(
                "list live credentials",
                &format!(
                    "SELECT {columns}, l.audience, l.scope, CASE WHEN l.cnf_jkt IS NULL THEN 0 ELSE 1 END, l.expires_at - l.issued_at, l.jti \
                     FROM broker_leases l JOIN broker_tasks t ON t.id = l.task_id \
                     WHERE l.revoked_at IS NULL AND l.expires_at > $1 \
                     ORDER BY l.task_id, l.audience, l.scope"
                ),
                &[now.into()],
            )?;
            let mut grants: Vec<LiveGrant> = Vec::new();
            for mut row in rows {
                let n = TASK_COLUMNS.split(", ").count();
                let audience = take_text(&mut row, n);
                let scope = take_text(&mut row, n + 1);
                let bound = match row.get(n + 2) {
                    Some(Value::Int(Some(v))) => *v != 0,
                    Some(Value::Text(Some(v))) => v == "true" || v == "t",
                    _ => false,
                };
                let lifetime = int(&row, n + 3);
                let jti = take_text(&mut row, n + 4);
                row.truncate(n);
                let task = task_row(row);
                match grants.last_mut() {
                    Some(g)
                        if g.task.id == task.id
                            && g.audience == audience
                            && g.scope == scope
                            && g.bound == bound =>
                    {
                        g.lifetime = g.lifetime.max(lifetime);
                        g.jtis.push(jti);
                    }
                    _ => grants.push(LiveGrant {
                        task,
                        audience,
                        scope,
                        bound,
                        lifetime,
                        jtis: vec![jti],
                    }),
                }
            }
            Ok(grants)
        })
    }

    /// All signing keys, newest first.
    pub fn broker_signing_keys(&mut self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        self.read(|tx| {
            let rows = tx.query(
                "read signing keys",
                "SELECT kid, alg, public_jwk, sealed_private, created_at, retired_at FROM broker_keys ORDER BY created_at DESC, kid",
                &[],
            )?;
            Ok(rows
                .into_iter()
                .map(|mut row| {
                    let r = row.as_mut_slice();
                    SigningKeyRecord {
                        kid: take_text(r, 0),
                        alg: take_text(r, 1),
                        public_jwk: take_text(r, 2),
                        sealed_private: take_text(r, 3),
                        created_at: int(r, 4),
                        retired_at: opt_int(r, 5),
                    }
                })
                .collect())
        })
    }

    /// Audit events after `after_seq`, oldest first, at most `limit`.
    pub fn audit_events(
        &mut self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.read(|tx| {
            let rows = tx.query(
                "read audit events",
                "SELECT seq, at, kind, data, prev_hash, hash FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[after_seq.into(), limit.into()],
            )?;
            Ok(rows.into_iter().map(audit_row).collect())
        })
    }

    /// The last `count` audit events, oldest first.
    pub fn audit_tail(&mut self, count: i64) -> Result<Vec<AuditEvent>, StoreError> {
        self.read(|tx| {
            let rows = tx.query(
                "read audit events",
                "SELECT seq, at, kind, data, prev_hash, hash FROM audit_events ORDER BY seq DESC LIMIT $1",
                &[count.into()],
            )?;
            let mut events: Vec<AuditEvent> = rows.into_iter().map(audit_row).collect();
            events.reverse();
            Ok(events)
        })
    }

    /// Walks the whole audit chain: every event must follow the previous one
    /// (no gap, no reordering), carry its hash (no edit), and the chain must
    /// end where the recorded head says (nothing removed from the end).
    pub fn audit_verify(&mut self) -> Result<AuditVerification, StoreError> {
        let head = self.read(|tx| {
            let rows = tx.query("read audit head", "SELECT seq, hash FROM audit_head", &[])?;
            Ok(rows
                .into_iter()
                .next()
                .map(|mut r| (int(&r, 0), take_text(&mut r, 1))))
        })?;
        let mut prev_hash = GENESIS.to_owned();
        let mut expected_seq = 1;
        let mut checked = 0;
        loop {
            let batch = self.audit_events(expected_seq - 1, 10_000)?;
            if batch.is_empty() {
                break;
            }
            for event in batch {
                let problem = if event.seq != expected_seq {
                    Some(format!(
                        "event {} follows event {}: events are missing or reordered",
                        event.seq,
                        expected_seq - 1
                    ))
                } else if event.prev_hash != prev_hash {
                    Some(format!(
                        "event {} does not link to the event before it: events were removed, inserted or reordered",
                        event.seq
                    ))
                } else if audit_hash(&prev_hash, event.seq, event.at, &event.kind, &event.data)
                    != event.hash
                {
                    Some(format!(
                        "event {} was edited: its hash does not match its content",
                        event.seq
                    ))
                } else {
                    None
                };
                if problem.is_some() {
                    return Ok(AuditVerification {
                        events: checked,
                        problem,
                    });
                }
                checked += 1;
                expected_seq += 1;
                prev_hash = event.hash;
            }
        }
        let problem = match head {
            Some((seq, hash)) if seq != checked || hash != prev_hash => Some(format!(
                "the chain ends at event {checked} but its recorded head is event {seq}: events were removed from the end"
            )),
            None if checked > 0 => Some("the chain has events but no recorded head".to_owned()),
            _ => None,
        };
        Ok(AuditVerification {
            events: checked,
            problem,
        })
    }
}

/// A flat JSON object of string and integer fields (ids only, so no nesting).
fn serde_json_object(strings: &[(&str, &str)], ints: &[(&str, i64)]) -> String {
    let mut out = String::from("{");
    for (key, value) in strings {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&json_string(key));
        out.push(':');
        out.push_str(&json_string(value));
    }
    for (key, value) in ints {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&json_string(key));
        out.push(':');
        out.push_str(&value.to_string());
    }
    out.push('}');
    out
}

fn json_string(text: &str) -> String {
    // A `str` always serializes; the fallback is never taken.
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_join_the_event_data() {
        let event = NewAuditEvent {
            at: 1,
            kind: "task.end".into(),
            data: "{\"task\":\"t1\"}".into(),
        };
        assert_eq!(
            with_count(&event, 3).data,
            "{\"task\":\"t1\",\"revoked\":3}"
        );
        let empty = NewAuditEvent {
            data: "{}".into(),
            ..event
        };
        assert_eq!(with_count(&empty, 0).data, "{\"revoked\":0}");
    }

    #[test]
    fn hashes_separate_fields() {
        assert_ne!(
            audit_hash(GENESIS, 1, 1, "ab", "c"),
            audit_hash(GENESIS, 1, 1, "a", "bc")
        );
    }

    #[test]
    fn json_objects_escape() {
        assert_eq!(
            serde_json_object(&[("task", "a\"b")], &[("n", 2)]),
            "{\"task\":\"a\\\"b\",\"n\":2}"
        );
    }
}
