//! Versioned migrations, one list for both backends (with a PostgreSQL
//! variant where the dialects differ).

use crate::StoreError;
use crate::backend::{Store, Tx};
use crate::dialect::{self, Lock};
use crate::row::Value;

/// One migration: its SQLite statements and, where they differ, PostgreSQL's.
struct Migration {
    version: i64,
    sqlite: &'static [&'static str],
    postgres: &'static [&'static str],
}

const INVENTORY_V1: &[&str] = &[
    "CREATE TABLE scans (
        id BIGINT PRIMARY KEY,
        source TEXT NOT NULL,
        at BIGINT NOT NULL,
        copies BIGINT NOT NULL
    )",
    "CREATE TABLE secrets (
        fingerprint TEXT PRIMARY KEY,
        rule_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        severity TEXT NOT NULL,
        first_seen BIGINT NOT NULL,
        last_seen BIGINT NOT NULL,
        status TEXT NOT NULL,
        reopened BIGINT NOT NULL,
        owner TEXT,
        owner_source TEXT,
        owner_conflict TEXT,
        live_copies BIGINT NOT NULL DEFAULT 0,
        surfaces TEXT NOT NULL DEFAULT ''
    )",
    "CREATE TABLE locations (
        fingerprint TEXT NOT NULL REFERENCES secrets (fingerprint),
        location_key TEXT NOT NULL,
        source TEXT NOT NULL,
        path TEXT NOT NULL,
        line BIGINT NOT NULL,
        col BIGINT NOT NULL,
        surface TEXT NOT NULL,
        commit_id TEXT,
        author TEXT,
        author_email TEXT,
        committed_at BIGINT,
        first_seen BIGINT NOT NULL,
        last_seen BIGINT NOT NULL,
        last_scan BIGINT NOT NULL,
        gone_at BIGINT,
        owner_claim TEXT,
        owner_claim_source TEXT,
        PRIMARY KEY (fingerprint, location_key)
    )",
    "CREATE INDEX locations_by_source ON locations (source, last_scan)",
    "CREATE INDEX locations_live_by_surface ON locations (surface, fingerprint) WHERE gone_at IS NULL",
    "CREATE TABLE status_history (
        fingerprint TEXT NOT NULL REFERENCES secrets (fingerprint),
        status TEXT NOT NULL,
        note TEXT NOT NULL,
        at BIGINT NOT NULL
    )",
    "CREATE INDEX status_history_by_secret ON status_history (fingerprint, at)",
];

const BROKER_V2: &[&str] = &[
    "CREATE TABLE broker_tasks (
        id TEXT PRIMARY KEY,
        workload TEXT NOT NULL,
        issuer TEXT NOT NULL,
        owner TEXT NOT NULL,
        purpose TEXT NOT NULL,
        tenant TEXT NOT NULL,
        audiences TEXT NOT NULL,
        attributes TEXT NOT NULL,
        source_addr TEXT NOT NULL,
        started_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        ended_at BIGINT,
        end_reason TEXT
    )",
    "CREATE INDEX broker_tasks_live ON broker_tasks (expires_at) WHERE ended_at IS NULL",
    "CREATE INDEX broker_tasks_by_owner ON broker_tasks (owner) WHERE ended_at IS NULL",
    "CREATE INDEX broker_tasks_by_workload ON broker_tasks (workload) WHERE ended_at IS NULL",
    "CREATE TABLE broker_leases (
        jti TEXT PRIMARY KEY,
        task_id TEXT NOT NULL REFERENCES broker_tasks (id),
        workload TEXT NOT NULL,
        owner TEXT NOT NULL,
        tenant TEXT NOT NULL,
        audience TEXT NOT NULL,
        scope TEXT NOT NULL,
        client_id TEXT NOT NULL,
        cnf_jkt TEXT,
        source_addr TEXT NOT NULL,
        issued_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        revoked_at BIGINT,
        revoke_reason TEXT
    )",
    "CREATE INDEX broker_leases_by_task ON broker_leases (task_id, issued_at)",
    "CREATE INDEX broker_leases_live_by_owner ON broker_leases (owner) WHERE revoked_at IS NULL",
    "CREATE INDEX broker_leases_live_by_workload ON broker_leases (workload) WHERE revoked_at IS NULL",
    "CREATE INDEX broker_leases_live_by_expiry ON broker_leases (expires_at) WHERE revoked_at IS NULL",
    "CREATE TABLE broker_keys (
        kid TEXT PRIMARY KEY,
        alg TEXT NOT NULL,
        public_jwk TEXT NOT NULL,
        sealed_private TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        retired_at BIGINT
    )",
    "CREATE TABLE audit_events (
        seq BIGINT PRIMARY KEY,
        at BIGINT NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )",
    "CREATE TABLE audit_head (seq BIGINT NOT NULL, hash TEXT NOT NULL)",
];

/// Plans read every live copy on the forbidden surfaces: an index that
/// holds what they read (path and line) answers from the index alone,
/// without one lookup into the locations table per copy.
const PLAN_INDEX_V3: &[&str] = &[
    "DROP INDEX locations_live_by_surface",
    "CREATE INDEX locations_live_by_surface ON locations (surface, fingerprint, path, line) WHERE gone_at IS NULL",
];

/// Issuing a credential wrote six index entries; two of them (live
/// credentials by owner and by workload) only served revocation by owner
/// or workload, which reaches the same credentials through their tasks
/// (a credential's owner and workload are its task's). Each index entry
/// is a page the durable commit of a credential writes and syncs.
const LEASE_INDEXES_V4: &[&str] = &[
    "DROP INDEX broker_leases_live_by_owner",
    "DROP INDEX broker_leases_live_by_workload",
];

/// A location is a path on a machine: the same path scanned on two
/// machines is two copies, and a copy in a repository keeps the
/// repository's root and remote, so paths can be shown from the root.
const LOCATION_MACHINE_V5: &[&str] = &[
    "ALTER TABLE locations ADD COLUMN host TEXT",
    "ALTER TABLE locations ADD COLUMN root TEXT",
    "ALTER TABLE locations ADD COLUMN remote TEXT",
];

/// Custody: upstream secrets the broker holds, sealed (the store never
/// sees them), with their versions; previous versions live until their
/// grace period ends. And what each task did through the proxy.
const CUSTODY_V6: &[&str] = &[
    "CREATE TABLE custody_entries (
        name TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        owner TEXT NOT NULL,
        settings TEXT NOT NULL,
        fingerprint TEXT,
        created_at BIGINT NOT NULL,
        rotated_at BIGINT NOT NULL,
        version BIGINT NOT NULL,
        removed_at BIGINT
    )",
    "CREATE TABLE custody_versions (
        name TEXT NOT NULL,
        version BIGINT NOT NULL,
        sealed TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        retires_at BIGINT,
        PRIMARY KEY (name, version)
    )",
    "CREATE INDEX custody_versions_retiring ON custody_versions (retires_at) WHERE retires_at IS NOT NULL",
    "ALTER TABLE secrets ADD COLUMN custody_entry TEXT",
    "CREATE TABLE proxy_usage (
        task_id TEXT NOT NULL,
        entry TEXT NOT NULL,
        requests BIGINT NOT NULL,
        bytes_up BIGINT NOT NULL,
        bytes_down BIGINT NOT NULL,
        last_at BIGINT NOT NULL,
        PRIMARY KEY (task_id, entry)
    )",
];

/// Credentials an upstream made per task (PostgreSQL roles, GitHub
/// installation tokens), kept until the broker has released them.
const UPSTREAM_GRANTS_V7: &[&str] = &[
    "CREATE TABLE upstream_grants (
        jti TEXT PRIMARY KEY,
        task_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        upstream TEXT NOT NULL,
        handle TEXT NOT NULL,
        sealed TEXT,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        released_at BIGINT
    )",
    "CREATE INDEX upstream_grants_unreleased ON upstream_grants (created_at) WHERE released_at IS NULL",
    "CREATE INDEX upstream_grants_by_task ON upstream_grants (task_id)",
];

/// What providers said of each secret (`scan --validate`): the verdict and
/// when, never their answers.
const VALIDATION_V8: &[&str] = &[
    "ALTER TABLE secrets ADD COLUMN validation TEXT",
    "ALTER TABLE secrets ADD COLUMN validated_at BIGINT",
];

/// DPoP proofs already accepted, by hash, until they are too old to be
/// accepted anyway: one replay memory for every replica, across restarts.
const PROOFS_V9: &[&str] = &[
    "CREATE TABLE broker_proofs (
        proof TEXT PRIMARY KEY,
        forget_at BIGINT NOT NULL
    )",
    "CREATE INDEX broker_proofs_forget ON broker_proofs (forget_at)",
];

/// Policy sets loaded on this store, newest generation in force on every
/// replica, with the state of the re-evaluation each one calls for.
const POLICY_SETS_V10: &[&str] = &["CREATE TABLE broker_policy_sets (
        generation BIGINT PRIMARY KEY,
        digest TEXT NOT NULL,
        origin TEXT NOT NULL,
        files TEXT NOT NULL,
        loaded_at BIGINT NOT NULL,
        reevaluated_at BIGINT,
        claimed_by TEXT,
        claimed_until BIGINT
    )"];

/// SQLite only: each credential and each audit event costs the writer one
/// B-tree search or insert fewer. A credential's task is no longer looked
/// up by a foreign key: the write checks that the task is live in the
/// same transaction, which is more than the key said. An event's `seq`
/// becomes the rowid itself (`BIGINT PRIMARY KEY` is not SQLite's rowid
/// alias, `INTEGER PRIMARY KEY` is), so no separate index on it.
/// PostgreSQL keeps its tables as they are.
const WRITE_PATH_V11_SQLITE: &[&str] = &[
    "CREATE TABLE broker_leases_v11 (
        jti TEXT PRIMARY KEY,
        task_id TEXT NOT NULL,
        workload TEXT NOT NULL,
        owner TEXT NOT NULL,
        tenant TEXT NOT NULL,
        audience TEXT NOT NULL,
        scope TEXT NOT NULL,
        client_id TEXT NOT NULL,
        cnf_jkt TEXT,
        source_addr TEXT NOT NULL,
        issued_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        revoked_at BIGINT,
        revoke_reason TEXT
    )",
    "INSERT INTO broker_leases_v11 SELECT jti, task_id, workload, owner, tenant, audience, scope, client_id, \
     cnf_jkt, source_addr, issued_at, expires_at, revoked_at, revoke_reason FROM broker_leases",
    "DROP TABLE broker_leases",
    "ALTER TABLE broker_leases_v11 RENAME TO broker_leases",
    "CREATE INDEX broker_leases_by_task ON broker_leases (task_id, issued_at)",
    "CREATE INDEX broker_leases_live_by_expiry ON broker_leases (expires_at) WHERE revoked_at IS NULL",
    "CREATE TABLE audit_events_v11 (
        seq INTEGER PRIMARY KEY,
        at BIGINT NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )",
    "INSERT INTO audit_events_v11 SELECT seq, at, kind, data, prev_hash, hash FROM audit_events",
    "DROP TABLE audit_events",
    "ALTER TABLE audit_events_v11 RENAME TO audit_events",
];

/// Retention: the sweep finds closed credentials and ended tasks by when
/// they closed, and the audit chain may start at an anchor (the number and
/// hash of the last event deleted) instead of the genesis.
const RETENTION_V12: &[&str] = &[
    "CREATE INDEX broker_leases_closed ON broker_leases (revoked_at) WHERE revoked_at IS NOT NULL",
    "CREATE INDEX broker_tasks_ended ON broker_tasks (ended_at) WHERE ended_at IS NOT NULL",
    "CREATE TABLE audit_anchor (seq BIGINT NOT NULL, hash TEXT NOT NULL, at BIGINT NOT NULL)",
];

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sqlite: INVENTORY_V1,
        postgres: INVENTORY_V1,
    },
    Migration {
        version: 2,
        sqlite: BROKER_V2,
        postgres: BROKER_V2,
    },
    Migration {
        version: 3,
        sqlite: PLAN_INDEX_V3,
        postgres: PLAN_INDEX_V3,
    },
    Migration {
        version: 4,
        sqlite: LEASE_INDEXES_V4,
        postgres: LEASE_INDEXES_V4,
    },
    Migration {
        version: 5,
        sqlite: LOCATION_MACHINE_V5,
        postgres: LOCATION_MACHINE_V5,
    },
    Migration {
        version: 6,
        sqlite: CUSTODY_V6,
        postgres: CUSTODY_V6,
    },
    Migration {
        version: 7,
        sqlite: UPSTREAM_GRANTS_V7,
        postgres: UPSTREAM_GRANTS_V7,
    },
    Migration {
        version: 8,
        sqlite: VALIDATION_V8,
        postgres: VALIDATION_V8,
    },
    Migration {
        version: 9,
        sqlite: PROOFS_V9,
        postgres: PROOFS_V9,
    },
    Migration {
        version: 10,
        sqlite: POLICY_SETS_V10,
        postgres: POLICY_SETS_V10,
    },
    Migration {
        version: 11,
        sqlite: WRITE_PATH_V11_SQLITE,
        postgres: &[],
    },
    Migration {
        version: 12,
        sqlite: RETENTION_V12,
        postgres: RETENTION_V12,
    },
];

/// The newest schema version this build knows.
pub const CURRENT_VERSION: i64 = 12;

fn count(tx: &mut dyn Tx, sql: &str, params: &[Value]) -> Result<i64, StoreError> {
    let rows = tx.query("read schema", sql, params)?;
    rows.first().map_or(Ok(0), |r| r.int("n"))
}

fn current_version(tx: &mut dyn Tx, target: &str) -> Result<i64, StoreError> {
    let dialect = tx.dialect();
    let exists = count(tx, dialect.table_exists(), &["mayfly_schema".into()]).map_err(|e| {
        StoreError::Foreign {
            target: target.to_owned(),
            reason: e.to_string(),
        }
    })?;
    if exists == 1 {
        let rows = tx.query("read schema", "SELECT version FROM mayfly_schema", &[])?;
        return rows.first().map_or(Ok(0), |r| r.int("version"));
    }
    // No schema table: a new database, or someone else's.
    if count(tx, dialect.foreign_tables(), &[])? > 0 {
        return Err(StoreError::Foreign {
            target: target.to_owned(),
            reason: "it holds tables but no Mayfly schema version".into(),
        });
    }
    tx.execute(
        "create schema table",
        "CREATE TABLE mayfly_schema (version BIGINT NOT NULL)",
        &[],
    )?;
    tx.execute(
        "create schema table",
        "INSERT INTO mayfly_schema (version) VALUES (0)",
        &[],
    )?;
    Ok(0)
}

/// Brings the store to [`CURRENT_VERSION`] in one transaction.
pub(crate) fn migrate(store: &mut Store) -> Result<(), StoreError> {
    let target = store.target().to_owned();
    store.transaction(|tx| {
        dialect::lock(tx, Lock::Schema)?;
        let version = current_version(tx, &target)?;
        if version > CURRENT_VERSION {
            return Err(StoreError::TooNew {
                target: target.clone(),
                found: version,
                supported: CURRENT_VERSION,
            });
        }
        for migration in MIGRATIONS.iter().filter(|m| m.version > version) {
            for sql in tx.dialect().pick(migration.sqlite, migration.postgres) {
                tx.execute("migrate", sql, &[])?;
            }
            tx.execute(
                "migrate",
                "UPDATE mayfly_schema SET version = $1",
                &[migration.version.into()],
            )?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit_hash;

    /// A SQLite store as a build before the write-path migration left it:
    /// a task, two credentials and their chained events.
    fn store_at_version_10(path: &std::path::Path) {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch("CREATE TABLE mayfly_schema (version BIGINT NOT NULL); INSERT INTO mayfly_schema VALUES (10);")
            .unwrap();
        for migration in MIGRATIONS.iter().filter(|m| m.version <= 10) {
            for sql in migration.sqlite {
                conn.execute_batch(sql).unwrap();
            }
        }
        conn.execute(
            "INSERT INTO broker_tasks (id, workload, issuer, owner, purpose, tenant, audiences, attributes, source_addr, started_at, expires_at) \
             VALUES ('t1', 'svc:a', 'ci', 'team-a', 'deploy', 'acme', '[\"https://api.test\"]', '{}', '127.0.0.1', 100, 10000)",
            [],
        )
        .unwrap();
        let mut prev = "0".repeat(64);
        for (seq, jti) in [(1, "j1"), (2, "j2")] {
            conn.execute(
                "INSERT INTO broker_leases (jti, task_id, workload, owner, tenant, audience, scope, client_id, source_addr, issued_at, expires_at) \
                 VALUES (?1, 't1', 'svc:a', 'team-a', 'acme', 'https://api.test', '', 'ci', '127.0.0.1', 100, 1000)",
                [jti],
            )
            .unwrap();
            let data = format!(r#"{{"jti":"{jti}"}}"#);
            let hash = audit_hash(&prev, seq, 100, "token.issue", &data);
            conn.execute(
                "INSERT INTO audit_events (seq, at, kind, data, prev_hash, hash) VALUES (?1, 100, 'token.issue', ?2, ?3, ?4)",
                rusqlite::params![seq, data, prev, hash],
            )
            .unwrap();
            prev = hash;
        }
        conn.execute("INSERT INTO audit_head (seq, hash) VALUES (2, ?1)", [&prev])
            .unwrap();
    }

    #[test]
    fn the_write_path_migration_keeps_every_credential_and_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v10.db");
        store_at_version_10(&path);
        let mut store = Store::open(&path.to_string_lossy()).unwrap();
        for jti in ["j1", "j2"] {
            let lease = store.broker_lease(jti).unwrap().unwrap();
            assert_eq!((lease.task_id.as_str(), lease.expires_at), ("t1", 1000));
        }
        let verified = store.audit_verify().unwrap();
        assert_eq!((verified.events, verified.problem), (2, None));
        drop(store);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let version: i64 = conn
            .query_row("SELECT version FROM mayfly_schema", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, CURRENT_VERSION);
        // No index beside the events' rowid; the leases' two indexes back,
        // and the closed ones' for retention.
        let indexes: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('audit_events', 'broker_leases') ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            indexes,
            [
                "broker_leases_by_task",
                "broker_leases_closed",
                "broker_leases_live_by_expiry",
                "sqlite_autoindex_broker_leases_1"
            ]
        );
    }
}
