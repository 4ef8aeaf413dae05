//! Mayfly's store: one schema, two real backends. SQLite (WAL mode, one
//! file, zero set-up) is the default; PostgreSQL is the shared store for
//! teams and replicas. This is the only crate that speaks SQL.
//!
//! Migrations are versioned and run when a store is opened; a store
//! written by a newer Mayfly is refused rather than misread.

mod backend;
mod broker;
mod custody;
mod dialect;
mod grants;
mod inventory;
mod row;
mod schema;

pub use backend::Store;
pub use broker::{
    AuditData, AuditEvent, AuditVerification, BrokerWrite, GrantKey, LeaseRecord, LiveGrant,
    NewAuditEvent, NewPolicySet, POLICY_CHANGED, PROOF_REPLAYED, PolicySetRecord, RevokeSelector,
    SigningKeyRecord, Sweep, Swept, TaskFilter, TaskRecord, WriteOutcome, audit_hash,
};
pub use custody::{CustodyEntry, ProxyUsage, SealedVersion};
pub use grants::UpstreamGrant;
pub use inventory::{
    CopyRecord, LocationRow, MergeSummary, OwnerClaim, OwnerSource, Ownership, OwnershipRule,
    ScanRecord, SecretDetail, SecretFilter, SecretRow, SecretStatus, StatusChange,
};

/// Why the store refused or failed an operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or reached.
    #[error("cannot open the store {target}: {reason}")]
    Open {
        /// The path or URL (password removed).
        target: String,
        /// The driver's message.
        reason: String,
    },
    /// The file is not a Mayfly store (or not a database at all).
    #[error(
        "{target} is not a Mayfly store ({reason}); point --db at a Mayfly database or a new path"
    )]
    Foreign {
        /// The path or URL.
        target: String,
        /// What was found instead.
        reason: String,
    },
    /// The store was written by a newer Mayfly.
    #[error(
        "{target} has schema version {found}, newer than this Mayfly's {supported}; upgrade Mayfly"
    )]
    TooNew {
        /// The path or URL.
        target: String,
        /// Version in the store.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// A value holds a NUL character, which PostgreSQL's text cannot hold:
    /// bad input (nothing stored can equal it), not a failing store.
    #[error("a value for {what} holds a NUL character; remove it")]
    Nul {
        /// What was being done.
        what: &'static str,
    },
    /// A query failed.
    #[error("store query failed ({what}): {reason}")]
    Query {
        /// What was being done.
        what: &'static str,
        /// The driver's message.
        reason: String,
    },
    /// A row did not hold what the code reads from it (a schema defect).
    #[error("store column {column} {problem}")]
    Column {
        /// The column's name.
        column: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A stored value does not parse (written by another tool, or edited).
    #[error("store value of {what} is not valid: {reason}")]
    Corrupt {
        /// What was read.
        what: &'static str,
        /// Why it does not parse.
        reason: String,
    },
    /// A fingerprint prefix matched no secret, or several.
    #[error("{0}")]
    NotFound(String),
}

/// The current time in seconds since the epoch; passed in, never read by
/// logic, so tests control it.
pub type Timestamp = i64;
