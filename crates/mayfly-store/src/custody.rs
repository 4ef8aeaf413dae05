//! Custody: long-lived upstream secrets held by the broker, sealed before
//! they reach the store (the store never sees a plaintext), each with its
//! versions: the current one, and previous ones usable until their grace
//! period ends, then destroyed.

use crate::backend::{Store, Tx};
use crate::row::Row;
use crate::{StoreError, Timestamp};

/// One secret in custody, without its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustodyEntry {
    /// Its name (`openai`, `stripe-billing`).
    pub name: String,
    /// The issuing service (`OpenAI`).
    pub provider: String,
    /// Who answers for it.
    pub owner: String,
    /// How it is used: upstream URLs and injection (JSON, the broker's).
    pub settings: String,
    /// The inventory fingerprint of the copy it came from, if migrated.
    pub fingerprint: Option<String>,
    /// When it entered custody.
    pub created_at: Timestamp,
    /// When its current version was made.
    pub rotated_at: Timestamp,
    /// The current version number (from 1).
    pub version: i64,
}

/// A sealed version of a secret in custody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedVersion {
    /// Its number.
    pub version: i64,
    /// Nonce and ciphertext, base64 (the broker seals and opens it).
    pub sealed: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// For a previous version: when its grace period ends.
    pub retires_at: Option<Timestamp>,
}

const ENTRY_COLUMNS: &str =
    "name, provider, owner, settings, fingerprint, created_at, rotated_at, version";

fn entry_row(mut row: Row) -> Result<CustodyEntry, StoreError> {
    Ok(CustodyEntry {
        name: row.text("name")?,
        provider: row.text("provider")?,
        owner: row.text("owner")?,
        settings: row.text("settings")?,
        fingerprint: row.opt_text("fingerprint")?,
        created_at: row.int("created_at")?,
        rotated_at: row.int("rotated_at")?,
        version: row.int("version")?,
    })
}

/// Adds a secret in custody with its first version; `false` when an entry
/// of that name exists.
pub(crate) fn add(tx: &mut dyn Tx, entry: &CustodyEntry, sealed: &str) -> Result<bool, StoreError> {
    // A removed entry's name can be used again.
    tx.execute(
        "forget removed custody entry",
        "DELETE FROM custody_entries WHERE name = $1 AND removed_at IS NOT NULL",
        &[entry.name.as_str().into()],
    )?;
    let added = tx.execute(
        "add custody entry",
        &format!(
            "INSERT INTO custody_entries ({ENTRY_COLUMNS}, removed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, 1, NULL) ON CONFLICT (name) DO NOTHING"
        ),
        &[
            entry.name.as_str().into(),
            entry.provider.as_str().into(),
            entry.owner.as_str().into(),
            entry.settings.as_str().into(),
            entry.fingerprint.as_deref().into(),
            entry.created_at.into(),
        ],
    )?;
    if added == 0 {
        return Ok(false);
    }
    tx.execute(
        "add custody version",
        "INSERT INTO custody_versions (name, version, sealed, created_at, retires_at) VALUES ($1, 1, $2, $3, NULL)",
        &[entry.name.as_str().into(), sealed.into(), entry.created_at.into()],
    )?;
    Ok(true)
}

/// Makes `sealed` version `version` of `name`, if the entry is at
/// `version - 1` (a concurrent rotation loses); the previous version stays
/// usable until `now + grace`.
pub(crate) fn rotate(
    tx: &mut dyn Tx,
    name: &str,
    version: i64,
    sealed: &str,
    now: Timestamp,
    grace: i64,
) -> Result<bool, StoreError> {
    let moved = tx.execute(
        "rotate custody entry",
        "UPDATE custody_entries SET version = $2, rotated_at = $3 \
         WHERE name = $1 AND version = $4 AND removed_at IS NULL",
        &[
            name.into(),
            version.into(),
            now.into(),
            (version - 1).into(),
        ],
    )?;
    if moved == 0 {
        return Ok(false);
    }
    tx.execute(
        "retire custody version",
        "UPDATE custody_versions SET retires_at = $2 WHERE name = $1 AND retires_at IS NULL",
        &[name.into(), (now + grace).into()],
    )?;
    tx.execute(
        "add custody version",
        "INSERT INTO custody_versions (name, version, sealed, created_at, retires_at) VALUES ($1, $2, $3, $4, NULL)",
        &[name.into(), version.into(), sealed.into(), now.into()],
    )?;
    Ok(true)
}

/// Removes an entry and destroys every version of it; `false` when there
/// was none.
pub(crate) fn remove(tx: &mut dyn Tx, name: &str, now: Timestamp) -> Result<bool, StoreError> {
    let removed = tx.execute(
        "remove custody entry",
        "UPDATE custody_entries SET removed_at = $2 WHERE name = $1 AND removed_at IS NULL",
        &[name.into(), now.into()],
    )?;
    tx.execute(
        "destroy custody versions",
        "DELETE FROM custody_versions WHERE name = $1",
        &[name.into()],
    )?;
    Ok(removed > 0)
}

/// Destroys previous versions whose grace period is over; returns how many.
pub(crate) fn destroy_retired(tx: &mut dyn Tx, now: Timestamp) -> Result<u64, StoreError> {
    tx.execute(
        "destroy retired custody versions",
        "DELETE FROM custody_versions WHERE retires_at IS NOT NULL AND retires_at <= $1",
        &[now.into()],
    )
}

/// What one task did with one entry through the proxy (for one request,
/// or summed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUsage {
    /// The task.
    pub task_id: String,
    /// The custody entry.
    pub entry: String,
    /// Requests forwarded.
    pub requests: i64,
    /// Request body bytes sent upstream.
    pub bytes_up: i64,
    /// Response body bytes sent back.
    pub bytes_down: i64,
    /// When the last one ended.
    pub last_at: Timestamp,
}

/// Adds one request's usage to its task's counters.
pub(crate) fn count_use(tx: &mut dyn Tx, usage: &ProxyUsage) -> Result<(), StoreError> {
    tx.execute(
        "count proxy use",
        "INSERT INTO proxy_usage (task_id, entry, requests, bytes_up, bytes_down, last_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (task_id, entry) DO UPDATE SET \
         requests = proxy_usage.requests + excluded.requests, \
         bytes_up = proxy_usage.bytes_up + excluded.bytes_up, \
         bytes_down = proxy_usage.bytes_down + excluded.bytes_down, \
         last_at = excluded.last_at",
        &[
            usage.task_id.as_str().into(),
            usage.entry.as_str().into(),
            usage.requests.into(),
            usage.bytes_up.into(),
            usage.bytes_down.into(),
            usage.last_at.into(),
        ],
    )?;
    Ok(())
}

impl Store {
    /// What a task did through the proxy, per entry.
    pub fn proxy_usage(&mut self, task_id: &str) -> Result<Vec<ProxyUsage>, StoreError> {
        self.read(|tx| {
            tx.query(
                "read proxy usage",
                "SELECT task_id, entry, requests, bytes_up, bytes_down, last_at FROM proxy_usage \
                 WHERE task_id = $1 ORDER BY entry",
                &[task_id.into()],
            )?
            .into_iter()
            .map(|mut row| {
                Ok(ProxyUsage {
                    task_id: row.text("task_id")?,
                    entry: row.text("entry")?,
                    requests: row.int("requests")?,
                    bytes_up: row.int("bytes_up")?,
                    bytes_down: row.int("bytes_down")?,
                    last_at: row.int("last_at")?,
                })
            })
            .collect()
        })
    }

    /// The entries in custody (not removed), by name.
    pub fn custody_entries(&mut self) -> Result<Vec<CustodyEntry>, StoreError> {
        self.read(|tx| {
            tx.query(
                "list custody entries",
                &format!(
                    "SELECT {ENTRY_COLUMNS} FROM custody_entries WHERE removed_at IS NULL ORDER BY name"
                ),
                &[],
            )?
            .into_iter()
            .map(entry_row)
            .collect()
        })
    }

    /// One entry and its usable versions (current first) at `now`.
    pub fn custody_entry(
        &mut self,
        name: &str,
        now: Timestamp,
    ) -> Result<Option<(CustodyEntry, Vec<SealedVersion>)>, StoreError> {
        self.read(|tx| {
            let Some(entry) = tx
                .query(
                    "read custody entry",
                    &format!(
                        "SELECT {ENTRY_COLUMNS} FROM custody_entries WHERE name = $1 AND removed_at IS NULL"
                    ),
                    &[name.into()],
                )?
                .into_iter()
                .next()
                .map(entry_row)
                .transpose()?
            else {
                return Ok(None);
            };
            let versions = tx
                .query(
                    "read custody versions",
                    "SELECT version, sealed, created_at, retires_at FROM custody_versions \
                     WHERE name = $1 AND (retires_at IS NULL OR retires_at > $2) ORDER BY version DESC",
                    &[name.into(), now.into()],
                )?
                .into_iter()
                .map(|mut row| {
                    Ok(SealedVersion {
                        version: row.int("version")?,
                        sealed: row.text("sealed")?,
                        created_at: row.int("created_at")?,
                        retires_at: row.opt_int("retires_at")?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(Some((entry, versions)))
        })
    }
}
