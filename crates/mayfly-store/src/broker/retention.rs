//! The sweep: closing tasks and credentials past their expiry, and
//! deleting what the retention settings no longer keep (closed
//! credentials, ended tasks with what hangs off them, old audit events).

use serde_json::json;

use super::NewAuditEvent;
use super::audit::Chain;
use super::writes::revoke_task_leases;
use crate::backend::{Store, Tx};
use crate::{StoreError, Timestamp};

/// What one sweep does: close what expired by `now`, and delete what is
/// older than the retention spans, at most `limit` rows of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    /// The time the sweep runs at.
    pub now: Timestamp,
    /// Most rows of each kind closed or deleted by one sweep, so a sweep
    /// never holds the writer long.
    pub limit: i64,
    /// Seconds a closed credential (expired or revoked) or an ended task is
    /// kept after it closed; `None` keeps them for ever.
    pub keep_closed: Option<i64>,
    /// Seconds an audit event is kept; `None` keeps the whole chain.
    pub keep_audit: Option<i64>,
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Tasks ended because they expired.
    pub tasks_ended: u64,
    /// Credentials closed because they expired.
    pub leases_closed: u64,
    /// Closed credentials deleted.
    pub leases_deleted: u64,
    /// Ended tasks deleted.
    pub tasks_deleted: u64,
    /// Audit events deleted from the start of the chain.
    pub events_deleted: u64,
}

impl Swept {
    /// Whether some kind reached the sweep's limit: more is waiting.
    pub fn is_full(&self, limit: i64) -> bool {
        let most = [
            self.tasks_ended,
            self.leases_closed,
            self.leases_deleted,
            self.tasks_deleted,
            self.events_deleted,
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        // A limit of 0 does nothing and so can never be full.
        limit > 0 && most >= u64::try_from(limit).unwrap_or(u64::MAX)
    }
}

impl Store {
    /// Runs one [`Sweep`] in one transaction. On PostgreSQL, a sweep that
    /// another replica is running at the same moment is skipped (an
    /// advisory lock): none is run twice.
    pub fn broker_sweep(&mut self, sweep: &Sweep) -> Result<Swept, StoreError> {
        self.transaction(|tx| {
            // One replica sweeps at a time; the others skip this round (and
            // take over by themselves when that one is gone).
            if !crate::dialect::try_lock(tx, crate::dialect::Lock::Sweeper)? {
                return Ok(Swept::default());
            }
            let mut chain = Chain::load(tx)?;
            let mut swept = Swept {
                tasks_ended: end_expired_tasks(tx, &mut chain, sweep)?,
                leases_closed: close_expired_leases(tx, &mut chain, sweep)?,
                ..Swept::default()
            };
            // Previous custody versions whose grace period is over.
            crate::custody::destroy_retired(tx, sweep.now)?;
            // Proofs too old to be accepted anyway.
            tx.execute(
                "forget old proofs",
                "DELETE FROM broker_proofs WHERE forget_at <= $1",
                &[sweep.now.into()],
            )?;
            if let Some(keep) = sweep.keep_closed {
                let before = sweep.now.saturating_sub(keep);
                swept.leases_deleted = delete_closed_leases(tx, before, sweep.limit)?;
                swept.tasks_deleted = delete_ended_tasks(tx, before, sweep.limit)?;
            }
            if let Some(keep) = sweep.keep_audit {
                let before = sweep.now.saturating_sub(keep);
                swept.events_deleted = chain.prune(tx, sweep.now, before, sweep.limit)?;
            }
            chain.save(tx)?;
            Ok(swept)
        })
    }
}

fn end_expired_tasks(tx: &mut dyn Tx, chain: &mut Chain, sweep: &Sweep) -> Result<u64, StoreError> {
    let tasks = tx.query(
        "find expired tasks",
        "SELECT id FROM broker_tasks WHERE ended_at IS NULL AND expires_at <= $1 LIMIT $2",
        &[sweep.now.into(), sweep.limit.into()],
    )?;
    for row in &tasks {
        let id = row.clone().text("id")?;
        tx.execute(
            "end expired task",
            "UPDATE broker_tasks SET ended_at = expires_at, end_reason = 'expired' WHERE id = $1 AND ended_at IS NULL",
            &[id.as_str().into()],
        )?;
        let revoked = revoke_task_leases(tx, &id, sweep.now, "task expired")?;
        chain.append(
            tx,
            &NewAuditEvent::new(
                sweep.now,
                "task.expire",
                json!({"task": id, "revoked": revoked}),
            ),
        )?;
    }
    Ok(tasks.len() as u64)
}

fn close_expired_leases(
    tx: &mut dyn Tx,
    chain: &mut Chain,
    sweep: &Sweep,
) -> Result<u64, StoreError> {
    let leases = tx.query(
        "find expired credentials",
        "SELECT jti, task_id, expires_at FROM broker_leases WHERE revoked_at IS NULL AND expires_at <= $1 LIMIT $2",
        &[sweep.now.into(), sweep.limit.into()],
    )?;
    for row in &leases {
        let mut row = row.clone();
        let jti = row.text("jti")?;
        let task = row.text("task_id")?;
        tx.execute(
            "close expired credential",
            "UPDATE broker_leases SET revoked_at = expires_at, revoke_reason = 'expired' WHERE jti = $1 AND revoked_at IS NULL",
            &[jti.as_str().into()],
        )?;
        chain.append(
            tx,
            &NewAuditEvent::new(
                row.int("expires_at")?,
                "token.expire",
                json!({"jti": jti, "task": task}),
            ),
        )?;
    }
    Ok(leases.len() as u64)
}

/// Deletes credentials closed at or before `before`. A presented token
/// whose credential is gone is inactive, as a revoked one is.
fn delete_closed_leases(tx: &mut dyn Tx, before: Timestamp, limit: i64) -> Result<u64, StoreError> {
    tx.execute(
        "delete closed credentials",
        "DELETE FROM broker_leases WHERE jti IN (SELECT jti FROM broker_leases \
         WHERE revoked_at IS NOT NULL AND revoked_at <= $1 LIMIT $2)",
        &[before.into(), limit.into()],
    )
}

/// Deletes tasks that ended at or before `before` once none of their
/// credentials is left and every upstream credential made for them is
/// released, with their proxy usage and released upstream records.
fn delete_ended_tasks(tx: &mut dyn Tx, before: Timestamp, limit: i64) -> Result<u64, StoreError> {
    let tasks = tx.query(
        "find ended tasks to delete",
        "SELECT id FROM broker_tasks t WHERE ended_at IS NOT NULL AND ended_at <= $1 \
         AND NOT EXISTS (SELECT 1 FROM broker_leases l WHERE l.task_id = t.id) \
         AND NOT EXISTS (SELECT 1 FROM upstream_grants g WHERE g.task_id = t.id AND g.released_at IS NULL) \
         LIMIT $2",
        &[before.into(), limit.into()],
    )?;
    for row in &tasks {
        let id = row.clone().text("id")?;
        let id = [id.as_str().into()];
        tx.execute(
            "delete an ended task's proxy usage",
            "DELETE FROM proxy_usage WHERE task_id = $1",
            &id,
        )?;
        tx.execute(
            "delete an ended task's released upstream credentials",
            "DELETE FROM upstream_grants WHERE task_id = $1 AND released_at IS NOT NULL",
            &id,
        )?;
        tx.execute(
            "delete an ended task",
            "DELETE FROM broker_tasks WHERE id = $1",
            &id,
        )?;
    }
    Ok(tasks.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::Swept;

    #[test]
    fn a_sweep_is_full_when_one_kind_reached_the_limit() {
        let swept = Swept {
            events_deleted: 1000,
            ..Swept::default()
        };
        assert!(swept.is_full(1000));
        assert!(!swept.is_full(1001));
        assert!(!Swept::default().is_full(0), "a limit of 0 never loops");
    }
}
