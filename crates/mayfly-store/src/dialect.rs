//! Every place where SQLite and PostgreSQL need different SQL. The rest of
//! the crate writes one statement for both, with `$N` parameters.

use crate::StoreError;
use crate::backend::Tx;

/// The SQL dialect of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// SQLite: one writer at a time by construction (`BEGIN IMMEDIATE`).
    Sqlite,
    /// PostgreSQL: replicas and concurrent savers share one database.
    Postgres,
}

/// What a transaction must hold alone. SQLite's write transactions are
/// already exclusive; PostgreSQL takes a transaction-scoped advisory lock.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lock {
    /// Migrations: replicas starting together migrate one at a time.
    Schema,
    /// Inventory merges: each sees the previous one whole.
    Inventory,
    /// The sweeper: one replica sweeps at a time; the others skip.
    Sweeper,
    /// The audit chain: appends take turns.
    AuditChain,
}

impl Lock {
    fn key(self) -> i64 {
        match self {
            Lock::Schema => 7_355_608,
            Lock::Inventory => 7_355_609,
            Lock::AuditChain => 7_355_610,
            Lock::Sweeper => 7_355_611,
        }
    }
}

/// Takes `lock` for the rest of the transaction.
pub(crate) fn lock(tx: &mut dyn Tx, lock: Lock) -> Result<(), StoreError> {
    if tx.dialect() == Dialect::Postgres {
        tx.query(
            "take lock",
            "SELECT pg_advisory_xact_lock($1)::text AS locked",
            &[lock.key().into()],
        )?;
    }
    Ok(())
}

/// Takes `lock` for the rest of the transaction if nobody holds it; false
/// (and nothing taken) when another transaction does. SQLite: always true
/// (its write transactions are exclusive already).
pub(crate) fn try_lock(tx: &mut dyn Tx, lock: Lock) -> Result<bool, StoreError> {
    if tx.dialect() != Dialect::Postgres {
        return Ok(true);
    }
    let rows = tx.query(
        "try lock",
        "SELECT CASE WHEN pg_try_advisory_xact_lock($1) THEN 1 ELSE 0 END AS got",
        &[lock.key().into()],
    )?;
    Ok(rows.first().map_or(Ok(0), |r| r.int("got"))? == 1)
}

impl Dialect {
    /// A query with one column `n`: 1 if the table exists, else 0.
    pub(crate) fn table_exists(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = $1"
            }
            Dialect::Postgres => {
                "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1"
            }
        }
    }

    /// A query with one column `n`: how many tables that are not Mayfly's
    /// (a new store has none). On PostgreSQL, other applications' tables
    /// in the same schema are tolerated; Mayfly's own names are checked.
    pub(crate) fn foreign_tables(self) -> &'static str {
        match self {
            Dialect::Sqlite => "SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'",
            Dialect::Postgres => {
                "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = current_schema() AND table_name IN ('secrets', 'locations', 'scans')"
            }
        }
    }

    /// The statements of a migration for this dialect.
    pub(crate) fn pick<'a>(self, sqlite: &'a [&'a str], postgres: &'a [&'a str]) -> &'a [&'a str] {
        match self {
            Dialect::Sqlite => sqlite,
            Dialect::Postgres => postgres,
        }
    }
}
