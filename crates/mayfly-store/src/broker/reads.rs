//! Broker reads: tasks, leases, the live grants policy decides again, and
//! signing keys.

use super::{GrantKey, LeaseRecord, LiveGrant, SigningKeyRecord, TaskFilter, TaskRecord};
use crate::backend::Store;
use crate::row::Row;
use crate::{StoreError, Timestamp};

pub(super) const TASK_COLUMNS: &str = "id, workload, issuer, owner, purpose, tenant, audiences, attributes, source_addr, started_at, expires_at, ended_at, end_reason";

pub(super) const LEASE_COLUMNS: &str = "jti, task_id, workload, owner, tenant, audience, scope, client_id, cnf_jkt, source_addr, issued_at, expires_at, revoked_at, revoke_reason";

fn task_row(mut row: Row) -> Result<TaskRecord, StoreError> {
    let audiences = row.text("audiences")?;
    Ok(TaskRecord {
        id: row.text("id")?,
        workload: row.text("workload")?,
        issuer: row.text("issuer")?,
        owner: row.text("owner")?,
        purpose: row.text("purpose")?,
        tenant: row.text("tenant")?,
        audiences: serde_json::from_str(&audiences).map_err(|e| StoreError::Corrupt {
            what: "task audiences",
            reason: e.to_string(),
        })?,
        attributes: row.text("attributes")?,
        source_addr: row.text("source_addr")?,
        started_at: row.int("started_at")?,
        expires_at: row.int("expires_at")?,
        ended_at: row.opt_int("ended_at")?,
        end_reason: row.opt_text("end_reason")?,
    })
}

fn lease_row(mut row: Row) -> Result<LeaseRecord, StoreError> {
    Ok(LeaseRecord {
        jti: row.text("jti")?,
        task_id: row.text("task_id")?,
        workload: row.text("workload")?,
        owner: row.text("owner")?,
        tenant: row.text("tenant")?,
        audience: row.text("audience")?,
        scope: row.text("scope")?,
        client_id: row.text("client_id")?,
        cnf_jkt: row.opt_text("cnf_jkt")?,
        source_addr: row.text("source_addr")?,
        issued_at: row.int("issued_at")?,
        expires_at: row.int("expires_at")?,
        revoked_at: row.opt_int("revoked_at")?,
        revoke_reason: row.opt_text("revoke_reason")?,
    })
}

impl Store {
    /// One task by id.
    pub fn broker_task(&mut self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        self.read(|tx| {
            let rows = tx.query(
                "read task",
                &format!("SELECT {TASK_COLUMNS} FROM broker_tasks WHERE id = $1"),
                &[id.into()],
            )?;
            rows.into_iter().next().map(task_row).transpose()
        })
    }

    /// Tasks, newest first.
    pub fn broker_tasks(&mut self, filter: &TaskFilter) -> Result<Vec<TaskRecord>, StoreError> {
        self.read(|tx| {
            let rows = tx.query(
                "list tasks",
                &format!(
                    "SELECT {TASK_COLUMNS} FROM broker_tasks \
                     WHERE (CAST($1 AS BIGINT) = 0 OR ended_at IS NULL) AND (CAST($2 AS TEXT) IS NULL OR workload = $2) AND (CAST($3 AS TEXT) IS NULL OR owner = $3) \
                     ORDER BY started_at DESC, id LIMIT $4"
                ),
                &[
                    i64::from(filter.live_only).into(),
                    filter.workload.clone().into(),
                    filter.owner.clone().into(),
                    filter.limit.unwrap_or(1000).into(),
                ],
            )?;
            rows.into_iter().map(task_row).collect()
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
            rows.into_iter().map(lease_row).collect()
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
            rows.into_iter().map(lease_row).collect()
        })
    }

    /// How many credentials are live at `now`: neither revoked nor expired.
    pub fn broker_live_lease_count(&mut self, now: i64) -> Result<i64, StoreError> {
        self.read(|tx| {
            let rows = tx.query(
                "count live credentials",
                "SELECT COUNT(*) AS n FROM broker_leases WHERE revoked_at IS NULL AND expires_at > $1",
                &[now.into()],
            )?;
            rows.first().map_or(Ok(0), |r| r.int("n"))
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
            rows.into_iter().next().map(lease_row).transpose()
        })
    }

    /// Live credentials grouped by what decides them, a page at a time:
    /// the `limit` groups after `after` (from the start when `None`), for
    /// re-evaluating policy after a change without holding every lease.
    pub fn broker_live_grants(
        &mut self,
        now: Timestamp,
        after: Option<&GrantKey>,
        limit: i64,
    ) -> Result<Vec<LiveGrant>, StoreError> {
        let start = after.cloned().unwrap_or_default();
        self.read(|tx| {
            let rows = tx.query(
                "list live grants",
                "SELECT l.task_id AS task_id, l.audience AS audience, l.scope AS scope, \
                 CASE WHEN l.cnf_jkt IS NULL THEN 0 ELSE 1 END AS bound, \
                 MAX(l.expires_at - l.issued_at) AS lifetime, count(*) AS leases, \
                 t.workload AS workload, t.attributes AS attributes, t.owner AS owner, \
                 t.purpose AS purpose, t.tenant AS tenant, t.audiences AS audiences, \
                 t.source_addr AS source_addr, t.started_at AS started_at \
                 FROM broker_leases l JOIN broker_tasks t ON t.id = l.task_id \
                 WHERE l.revoked_at IS NULL AND l.expires_at > $1 \
                 AND (CAST($6 AS BIGINT) = 0 OR (l.task_id, l.audience, l.scope, CASE WHEN l.cnf_jkt IS NULL THEN 0 ELSE 1 END) > ($2, $3, $4, CAST($5 AS BIGINT))) \
                 GROUP BY l.task_id, l.audience, l.scope, CASE WHEN l.cnf_jkt IS NULL THEN 0 ELSE 1 END, \
                 t.workload, t.attributes, t.owner, t.purpose, t.tenant, t.audiences, t.source_addr, t.started_at \
                 ORDER BY l.task_id, l.audience, l.scope, 4 \
                 LIMIT $7",
                &[
                    now.into(),
                    start.task_id.as_str().into(),
                    start.audience.as_str().into(),
                    start.scope.as_str().into(),
                    i64::from(start.bound).into(),
                    i64::from(after.is_some()).into(),
                    limit.into(),
                ],
            )?;
            rows.into_iter()
                .map(|mut row| {
                    let audiences = row.text("audiences")?;
                    Ok(LiveGrant {
                        key: GrantKey {
                            task_id: row.text("task_id")?,
                            audience: row.text("audience")?,
                            scope: row.text("scope")?,
                            bound: row.flag("bound")?,
                        },
                        workload: row.text("workload")?,
                        attributes: row.text("attributes")?,
                        owner: row.text("owner")?,
                        purpose: row.text("purpose")?,
                        tenant: row.text("tenant")?,
                        audiences: serde_json::from_str(&audiences).map_err(|e| {
                            StoreError::Corrupt {
                                what: "task audiences",
                                reason: e.to_string(),
                            }
                        })?,
                        source_addr: row.text("source_addr")?,
                        started_at: row.int("started_at")?,
                        lifetime: row.int("lifetime")?,
                        leases: row.int("leases")?,
                    })
                })
                .collect()
        })
    }

    /// The ids of the keys that sign (not retired): a cheap look for
    /// whether another replica rotated.
    pub fn broker_signing_kids(&mut self) -> Result<Vec<String>, StoreError> {
        self.read(|tx| {
            let rows = tx.query(
                "read signing key ids",
                "SELECT kid FROM broker_keys WHERE retired_at IS NULL ORDER BY kid",
                &[],
            )?;
            rows.into_iter().map(|mut row| row.text("kid")).collect()
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
            rows.into_iter()
                .map(|mut row| {
                    Ok(SigningKeyRecord {
                        kid: row.text("kid")?,
                        alg: row.text("alg")?,
                        public_jwk: row.text("public_jwk")?,
                        sealed_private: row.text("sealed_private")?,
                        created_at: row.int("created_at")?,
                        retired_at: row.opt_int("retired_at")?,
                    })
                })
                .collect()
        })
    }
}
