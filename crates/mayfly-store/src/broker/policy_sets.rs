//! Policy sets in force, shared by every replica on the store: each set
//! loaded anywhere becomes the next generation, a credential is only
//! written under the newest one, and the re-evaluation a new set calls for
//! is claimed by one replica at a time and recorded when done.

use super::audit::Chain;
use super::{NewAuditEvent, WriteOutcome};
use crate::backend::{Store, Tx};
use crate::row::Row;
use crate::{StoreError, Timestamp};

/// The refusal of a write decided under a policy set that another set
/// (loaded by this replica or another) has since replaced: decide again.
pub const POLICY_CHANGED: &str = "the policies changed while the request was decided";

/// A policy set as stored: what every replica puts in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySetRecord {
    /// Its number: 1 for the first set loaded on this store, one more for
    /// each set after.
    pub generation: i64,
    /// SHA-256 (hex) of its files, names and texts, in order.
    pub digest: String,
    /// Where it was loaded from (`<embedded>`, a directory, the admin API).
    pub origin: String,
    /// Its files as (name, Cedar text), in order.
    pub files: Vec<(String, String)>,
    /// When it was put in force.
    pub loaded_at: Timestamp,
    /// When the live credentials were decided again under it, once done.
    pub reevaluated_at: Option<Timestamp>,
}

/// The newest generation on the store (0 before any set was loaded).
pub(super) fn latest_generation(tx: &mut dyn Tx) -> Result<i64, StoreError> {
    let rows = tx.query(
        "read policy generation",
        "SELECT COALESCE(MAX(generation), 0) AS n FROM broker_policy_sets",
        &[],
    )?;
    rows.first().map_or(Ok(0), |r| r.int("n"))
}

/// Stores a set as the next generation; returns its number.
pub(super) fn install(
    tx: &mut dyn Tx,
    chain: &mut Chain,
    set: &NewPolicySet,
) -> Result<WriteOutcome, StoreError> {
    let generation = latest_generation(tx)? + 1;
    let files = serde_json::to_string(&set.files).map_err(|e| StoreError::Corrupt {
        what: "policy files",
        reason: e.to_string(),
    })?;
    tx.execute(
        "store policy set",
        "INSERT INTO broker_policy_sets (generation, digest, origin, files, loaded_at, reevaluated_at, claimed_by, claimed_until) \
         VALUES ($1, $2, $3, $4, $5, NULL, NULL, NULL)",
        &[
            generation.into(),
            set.digest.as_str().into(),
            set.origin.as_str().into(),
            files.into(),
            set.at.into(),
        ],
    )?;
    chain.append(tx, &set.audit.with("generation", generation))?;
    Ok(WriteOutcome::Done(generation as u64))
}

/// Takes (or renews) the re-evaluation of `generation` for `claimer` until
/// `until`, unless it is done or another replica holds it: `Done(1)` when
/// taken.
pub(super) fn claim(
    tx: &mut dyn Tx,
    generation: i64,
    claimer: &str,
    at: Timestamp,
    until: Timestamp,
) -> Result<WriteOutcome, StoreError> {
    let claimed = tx.execute(
        "claim re-evaluation",
        "UPDATE broker_policy_sets SET claimed_by = $2, claimed_until = $4 WHERE generation = $1 \
         AND reevaluated_at IS NULL AND (claimed_by IS NULL OR claimed_by = $2 OR claimed_until <= $3)",
        &[generation.into(), claimer.into(), at.into(), until.into()],
    )?;
    Ok(if claimed == 0 {
        WriteOutcome::Refused(format!(
            "the re-evaluation of policy set {generation} is done or taken"
        ))
    } else {
        WriteOutcome::Done(1)
    })
}

/// Records that the re-evaluation of `generation` is done, with its event,
/// unless it already was.
pub(super) fn reevaluated(
    tx: &mut dyn Tx,
    chain: &mut Chain,
    generation: i64,
    at: Timestamp,
    audit: &NewAuditEvent,
) -> Result<WriteOutcome, StoreError> {
    let n = tx.execute(
        "record re-evaluation",
        "UPDATE broker_policy_sets SET reevaluated_at = $2, claimed_by = NULL, claimed_until = NULL \
         WHERE generation = $1 AND reevaluated_at IS NULL",
        &[generation.into(), at.into()],
    )?;
    if n > 0 {
        chain.append(tx, audit)?;
    }
    Ok(WriteOutcome::Done(n))
}

/// A policy set to store as the next generation.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPolicySet {
    /// SHA-256 (hex) of its files.
    pub digest: String,
    /// Where it was loaded from.
    pub origin: String,
    /// Its files as (name, Cedar text).
    pub files: Vec<(String, String)>,
    /// When.
    pub at: Timestamp,
    /// Its audit event (`generation` is added to `data`).
    pub audit: NewAuditEvent,
}

fn policy_set_row(mut row: Row) -> Result<PolicySetRecord, StoreError> {
    let files = row.text("files")?;
    Ok(PolicySetRecord {
        generation: row.int("generation")?,
        digest: row.text("digest")?,
        origin: row.text("origin")?,
        files: serde_json::from_str(&files).map_err(|e| StoreError::Corrupt {
            what: "policy files",
            reason: e.to_string(),
        })?,
        loaded_at: row.int("loaded_at")?,
        reevaluated_at: row.opt_int("reevaluated_at")?,
    })
}

impl Store {
    /// The newest policy set on the store, if one was ever loaded.
    pub fn broker_policy_set(&mut self) -> Result<Option<PolicySetRecord>, StoreError> {
        self.read(|tx| {
            let rows = tx.query(
                "read policy set",
                "SELECT generation, digest, origin, files, loaded_at, reevaluated_at FROM broker_policy_sets \
                 ORDER BY generation DESC LIMIT 1",
                &[],
            )?;
            rows.into_iter().next().map(policy_set_row).transpose()
        })
    }

    /// The newest policy generation on the store (0 before any) and whether
    /// its re-evaluation is done: a cheap look for whether another replica
    /// loaded a set or left its re-evaluation unfinished.
    pub fn broker_policy_generation(&mut self) -> Result<(i64, bool), StoreError> {
        self.read(|tx| {
            let rows = tx.query(
                "read policy generation",
                "SELECT generation, reevaluated_at FROM broker_policy_sets ORDER BY generation DESC LIMIT 1",
                &[],
            )?;
            match rows.first() {
                Some(row) => Ok((row.int("generation")?, row.opt_int("reevaluated_at")?.is_some())),
                None => Ok((0, true)),
            }
        })
    }
}
