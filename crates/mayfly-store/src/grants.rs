//! Upstream grants: credentials an upstream made for one task (a
//! PostgreSQL role, a GitHub installation token), each tied to the lease
//! it was issued with. The broker releases a grant (drops the role,
//! revokes the token) once its lease is no longer active, then marks it
//! released here. A grant's own secret, where the broker must keep one to
//! release it, is sealed before it reaches the store.

use crate::backend::{Store, Tx};
use crate::row::Row;
use crate::{StoreError, Timestamp};

/// One credential an upstream made for a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamGrant {
    /// The `jti` of the lease it was issued with.
    pub jti: String,
    /// The lease's task.
    pub task_id: String,
    /// The kind of upstream (`postgres`, `github`).
    pub kind: String,
    /// The configured upstream's name.
    pub upstream: String,
    /// What names it at the upstream (the role's name, the token's id).
    pub handle: String,
    /// What releasing it needs, sealed by the broker (a token to revoke).
    pub sealed: Option<String>,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it stops working at the upstream by itself.
    pub expires_at: Timestamp,
}

const GRANT_COLUMNS: &str = "jti, task_id, kind, upstream, handle, sealed, created_at, expires_at";

fn grant_row(mut row: Row) -> Result<UpstreamGrant, StoreError> {
    Ok(UpstreamGrant {
        jti: row.text("jti")?,
        task_id: row.text("task_id")?,
        kind: row.text("kind")?,
        upstream: row.text("upstream")?,
        handle: row.text("handle")?,
        sealed: row.opt_text("sealed")?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
    })
}

/// Records a grant (in the transaction that records its lease).
pub(crate) fn add(tx: &mut dyn Tx, grant: &UpstreamGrant) -> Result<(), StoreError> {
    tx.execute(
        "record upstream grant",
        &format!(
            "INSERT INTO upstream_grants ({GRANT_COLUMNS}, released_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)"
        ),
        &[
            grant.jti.as_str().into(),
            grant.task_id.as_str().into(),
            grant.kind.as_str().into(),
            grant.upstream.as_str().into(),
            grant.handle.as_str().into(),
            grant.sealed.as_deref().into(),
            grant.created_at.into(),
            grant.expires_at.into(),
        ],
    )?;
    Ok(())
}

/// Marks grants released; returns how many were still unreleased.
pub(crate) fn release(tx: &mut dyn Tx, jtis: &[String], at: Timestamp) -> Result<u64, StoreError> {
    let mut released = 0;
    for jti in jtis {
        // The sealed secret is of no further use: it goes with the release.
        released += tx.execute(
            "release upstream grant",
            "UPDATE upstream_grants SET released_at = $2, sealed = NULL WHERE jti = $1 AND released_at IS NULL",
            &[jti.as_str().into(), at.into()],
        )?;
    }
    Ok(released)
}

impl Store {
    /// Unreleased grants whose lease is no longer active at `now`
    /// (revoked, expired, or its task ended), oldest first, at most `limit`.
    pub fn grants_to_release(
        &mut self,
        now: Timestamp,
        limit: i64,
    ) -> Result<Vec<UpstreamGrant>, StoreError> {
        self.read(|tx| {
            tx.query(
                "read grants to release",
                "SELECT g.jti, g.task_id, g.kind, g.upstream, g.handle, g.sealed, g.created_at, g.expires_at \
                 FROM upstream_grants g LEFT JOIN broker_leases l ON l.jti = g.jti \
                 WHERE g.released_at IS NULL \
                   AND (l.jti IS NULL OR l.revoked_at IS NOT NULL OR l.expires_at <= $1 OR g.expires_at <= $1) \
                 ORDER BY g.created_at LIMIT $2",
                &[now.into(), limit.into()],
            )?
            .into_iter()
            .map(grant_row)
            .collect()
        })
    }

    /// The handles of the unreleased grants of one upstream: what the
    /// broker made there and has not yet released.
    pub fn unreleased_handles(
        &mut self,
        kind: &str,
        upstream: &str,
    ) -> Result<Vec<String>, StoreError> {
        self.read(|tx| {
            tx.query(
                "read unreleased grants",
                "SELECT handle FROM upstream_grants WHERE kind = $1 AND upstream = $2 AND released_at IS NULL",
                &[kind.into(), upstream.into()],
            )?
            .into_iter()
            .map(|mut row| row.text("handle"))
            .collect()
        })
    }

    /// A task's grants, released or not.
    pub fn task_grants(&mut self, task_id: &str) -> Result<Vec<UpstreamGrant>, StoreError> {
        self.read(|tx| {
            tx.query(
                "read task grants",
                &format!(
                    "SELECT {GRANT_COLUMNS} FROM upstream_grants WHERE task_id = $1 ORDER BY created_at"
                ),
                &[task_id.into()],
            )?
            .into_iter()
            .map(grant_row)
            .collect()
        })
    }
}
