//! Broker writes: batches of task, lease, key and audit writes in one
//! transaction.

use serde_json::json;

use super::audit::Chain;
use super::policy_sets;
use super::reads::{LEASE_COLUMNS, TASK_COLUMNS};
use super::{BrokerWrite, NewAuditEvent, RevokeSelector, WriteOutcome};
use crate::backend::{Store, Tx};
use crate::{StoreError, Timestamp};

/// The insert of a credential: built once (it is run for every credential
/// issued).
static ISSUE_LEASE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO broker_leases ({LEASE_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL, NULL)"
    )
});

/// What one batch has read that its later writes can use: the newest
/// policy generation (read once, and only if a credential is written) and
/// the tasks found live, with their expiry (many credentials of one batch
/// are often for one task).
#[derive(Default)]
struct Batch {
    policy: Option<i64>,
    live_tasks: Vec<(String, Timestamp)>,
}

/// Most live tasks a batch remembers.
const BATCH_LIVE_TASKS: usize = 64;

impl Batch {
    /// Whether `task` was found live earlier in this batch, until after `at`.
    fn live_until(&self, task: &str, at: Timestamp) -> bool {
        self.live_tasks
            .iter()
            .any(|(id, expires)| id == task && *expires > at)
    }

    fn found_live(&mut self, task: &str, expires_at: Timestamp) {
        if self.live_tasks.len() < BATCH_LIVE_TASKS {
            self.live_tasks.push((task.to_owned(), expires_at));
        }
    }
}

impl BrokerWrite {
    /// Whether this write can end a task (what a batch found live earlier
    /// may be live no longer).
    fn may_end_tasks(&self) -> bool {
        !matches!(
            self,
            BrokerWrite::IssueLease { .. }
                | BrokerWrite::Audit(_)
                | BrokerWrite::ProxyUse { .. }
                | BrokerWrite::SpendProof { .. }
                | BrokerWrite::StartTask { .. }
        )
    }
}

/// Records a DPoP proof as spent; false when it was spent before.
fn spend_proof(tx: &mut dyn Tx, proof: &str, forget_at: Timestamp) -> Result<bool, StoreError> {
    let spent = tx.execute(
        "spend proof",
        "INSERT INTO broker_proofs (proof, forget_at) VALUES ($1, $2) ON CONFLICT (proof) DO NOTHING",
        &[proof.into(), forget_at.into()],
    )?;
    Ok(spent > 0)
}

pub(super) fn revoke_task_leases(
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
    batch: &mut Batch,
    write: &BrokerWrite,
) -> Result<WriteOutcome, StoreError> {
    match write {
        BrokerWrite::StartTask {
            task,
            max_live,
            audit,
        } => {
            let audiences =
                serde_json::to_string(&task.audiences).map_err(|e| StoreError::Corrupt {
                    what: "task audiences",
                    reason: e.to_string(),
                })?;
            // INVARIANT: the count and the insert are one statement in a
            // transaction that holds the audit chain (every broker write
            // does), so concurrent starts cannot pass the quota together.
            let inserted = tx.execute(
                "start task",
                &format!(
                    "INSERT INTO broker_tasks ({TASK_COLUMNS}) \
                     SELECT CAST($1 AS TEXT), CAST($2 AS TEXT), CAST($3 AS TEXT), CAST($4 AS TEXT), CAST($5 AS TEXT), \
                     CAST($6 AS TEXT), CAST($7 AS TEXT), CAST($8 AS TEXT), CAST($9 AS TEXT), CAST($10 AS BIGINT), \
                     CAST($11 AS BIGINT), NULL, NULL \
                     WHERE CAST($12 AS BIGINT) < 0 OR (SELECT count(*) FROM broker_tasks \
                       WHERE workload = $2 AND issuer = $3 AND ended_at IS NULL AND expires_at > $10) < $12"
                ),
                &[
                    task.id.as_str().into(),
                    task.workload.as_str().into(),
                    task.issuer.as_str().into(),
                    task.owner.as_str().into(),
                    task.purpose.as_str().into(),
                    task.tenant.as_str().into(),
                    audiences.into(),
                    task.attributes.as_str().into(),
                    task.source_addr.as_str().into(),
                    task.started_at.into(),
                    task.expires_at.into(),
                    max_live.unwrap_or(-1).into(),
                ],
            )?;
            if inserted == 0 {
                return Ok(WriteOutcome::Refused(format!(
                    "workload {} already has {} live tasks",
                    task.workload,
                    max_live.unwrap_or_default()
                )));
            }
            chain.append(tx, audit)?;
            Ok(WriteOutcome::Done(1))
        }
        BrokerWrite::IssueLease {
            lease,
            proof,
            grant,
            decided_under,
            audit,
        } => {
            // INVARIANT: a credential is only written under the newest
            // policy set on the store. Every broker write holds the audit
            // chain, so a set stored by any replica is either seen here or
            // stored after this commit, and its re-evaluation reads this
            // credential.
            let latest = match batch.policy {
                Some(latest) => latest,
                None => *batch.policy.insert(policy_sets::latest_generation(tx)?),
            };
            if *decided_under < latest {
                return Ok(WriteOutcome::Refused(
                    policy_sets::POLICY_CHANGED.to_owned(),
                ));
            }
            if let Some((proof, forget_at)) = proof
                && !spend_proof(tx, proof, *forget_at)?
            {
                return Ok(WriteOutcome::Refused(super::PROOF_REPLAYED.to_owned()));
            }
            // INVARIANT: a lease is only written while its task is live. The
            // check and the insert are in one transaction that holds the
            // audit chain, as every broker write does (ending a task on any
            // replica included), so no end can come between them.
            if !batch.live_until(&lease.task_id, lease.issued_at) {
                let live = tx.query(
                    "check task",
                    "SELECT expires_at FROM broker_tasks WHERE id = $1 AND ended_at IS NULL AND expires_at > $2",
                    &[lease.task_id.as_str().into(), lease.issued_at.into()],
                )?;
                let Some(row) = live.first() else {
                    return Ok(WriteOutcome::Refused(format!(
                        "task {} is no longer live",
                        lease.task_id
                    )));
                };
                batch.found_live(&lease.task_id, row.int("expires_at")?);
            }
            // One row of values: SQLite needs no statement journal for it.
            tx.execute(
                "issue credential",
                &ISSUE_LEASE_SQL,
                &[
                    lease.jti.as_str().into(),
                    lease.task_id.as_str().into(),
                    lease.workload.as_str().into(),
                    lease.owner.as_str().into(),
                    lease.tenant.as_str().into(),
                    lease.audience.as_str().into(),
                    lease.scope.as_str().into(),
                    lease.client_id.as_str().into(),
                    lease.cnf_jkt.as_deref().into(),
                    lease.source_addr.as_str().into(),
                    lease.issued_at.into(),
                    lease.expires_at.into(),
                ],
            )?;
            if let Some(grant) = grant {
                crate::grants::add(tx, grant)?;
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
            chain.append(tx, &audit.with("revoked", revoked))?;
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
            chain.append(tx, &audit.with("revoked", revoked))?;
            Ok(WriteOutcome::Done(revoked))
        }
        BrokerWrite::RevokeGrant {
            grant,
            at,
            reason,
            audit,
        } => {
            let revoked = tx.execute(
                "revoke grant",
                "UPDATE broker_leases SET revoked_at = $5, revoke_reason = $6 \
                 WHERE task_id = $1 AND audience = $2 AND scope = $3 \
                 AND CASE WHEN cnf_jkt IS NULL THEN 0 ELSE 1 END = CAST($4 AS BIGINT) \
                 AND revoked_at IS NULL AND issued_at <= $5",
                &[
                    grant.task_id.as_str().into(),
                    grant.audience.as_str().into(),
                    grant.scope.as_str().into(),
                    i64::from(grant.bound).into(),
                    (*at).into(),
                    reason.as_str().into(),
                ],
            )?;
            chain.append(tx, &audit.with("revoked", revoked))?;
            Ok(WriteOutcome::Done(revoked))
        }
        BrokerWrite::CustodyAdd {
            entry,
            sealed,
            audit,
        } => {
            if !crate::custody::add(tx, entry, sealed)? {
                return Ok(WriteOutcome::Refused(format!(
                    "a secret named {} is already in custody",
                    entry.name
                )));
            }
            chain.append(tx, audit)?;
            Ok(WriteOutcome::Done(1))
        }
        BrokerWrite::CustodyRotate {
            name,
            version,
            sealed,
            at,
            grace,
            audit,
        } => {
            if !crate::custody::rotate(tx, name, *version, sealed, *at, *grace)? {
                return Ok(WriteOutcome::Refused(format!(
                    "{name} is not in custody, or was rotated meanwhile"
                )));
            }
            chain.append(tx, audit)?;
            Ok(WriteOutcome::Done(1))
        }
        BrokerWrite::CustodyRemove { name, at, audit } => {
            if !crate::custody::remove(tx, name, *at)? {
                return Ok(WriteOutcome::Refused(format!("{name} is not in custody")));
            }
            chain.append(tx, audit)?;
            Ok(WriteOutcome::Done(1))
        }
        BrokerWrite::ProxyUse { usage, audit } => {
            crate::custody::count_use(tx, usage)?;
            chain.append(tx, audit)?;
            Ok(WriteOutcome::Done(1))
        }
        BrokerWrite::Audit(event) => {
            chain.append(tx, event)?;
            Ok(WriteOutcome::Done(0))
        }
        BrokerWrite::ReleaseGrants { jtis, at, audit } => {
            let released = crate::grants::release(tx, jtis, *at)?;
            if released > 0 {
                chain.append(tx, &audit.with("released", released))?;
            }
            Ok(WriteOutcome::Done(released))
        }
        BrokerWrite::AddSigningKey { key, replaces } => {
            let signing = tx.query(
                "read signing key",
                "SELECT kid FROM broker_keys WHERE retired_at IS NULL AND alg = $1 ORDER BY created_at DESC, kid LIMIT 1",
                &[key.alg.as_str().into()],
            )?;
            let signing = signing
                .into_iter()
                .next()
                .map(|mut row| row.text("kid"))
                .transpose()?;
            if signing != *replaces {
                return Ok(WriteOutcome::Refused(format!(
                    "another replica rotated the {} signing key first",
                    key.alg
                )));
            }
            tx.execute(
                "retire signing keys",
                "UPDATE broker_keys SET retired_at = $1 WHERE retired_at IS NULL AND alg = $2",
                &[key.created_at.into(), key.alg.as_str().into()],
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
                &NewAuditEvent::new(
                    key.created_at,
                    "key.rotate",
                    json!({"kid": key.kid, "alg": key.alg}),
                ),
            )?;
            Ok(WriteOutcome::Done(1))
        }
        BrokerWrite::SpendProof { proof, forget_at } => {
            if spend_proof(tx, proof, *forget_at)? {
                Ok(WriteOutcome::Done(1))
            } else {
                Ok(WriteOutcome::Refused(super::PROOF_REPLAYED.to_owned()))
            }
        }
        BrokerWrite::InstallPolicySet(set) => {
            let outcome = policy_sets::install(tx, chain, set)?;
            if let WriteOutcome::Done(generation) = outcome {
                batch.policy = Some(generation as i64);
            }
            Ok(outcome)
        }
        BrokerWrite::ClaimReevaluation {
            generation,
            claimer,
            at,
            until,
        } => policy_sets::claim(tx, *generation, claimer, *at, *until),
        BrokerWrite::Reevaluated {
            generation,
            at,
            audit,
        } => policy_sets::reevaluated(tx, chain, *generation, *at, audit),
    }
}

impl Store {
    /// Applies a batch of broker writes in one transaction and returns one
    /// outcome per write. A write the state refuses (its task ended) does
    /// not stop the others; a database error rolls the whole batch back,
    /// so no caller is told "done" for a write that is not committed.
    pub fn broker_apply<'w>(
        &mut self,
        writes: impl IntoIterator<Item = &'w BrokerWrite>,
    ) -> Result<Vec<WriteOutcome>, StoreError> {
        self.transaction(|tx| {
            // One chain for all replicas: appends take turns.
            let mut chain = Chain::load(tx)?;
            let mut batch = Batch::default();
            let writes = writes.into_iter();
            let mut outcomes = Vec::with_capacity(writes.size_hint().0);
            for write in writes {
                if write.may_end_tasks() {
                    batch.live_tasks.clear();
                }
                outcomes.push(apply_one(tx, &mut chain, &mut batch, write)?);
            }
            chain.save(tx)?;
            Ok(outcomes)
        })
    }
}
