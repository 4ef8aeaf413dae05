//! The two backends behind one small interface: parameterised statements
//! and queries inside a transaction, with `$1`-style placeholders numbered
//! as PostgreSQL reads them (rewritten to SQLite's `?1` form).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::TransactionBehavior;

use crate::StoreError;
use crate::dialect::Dialect;
use crate::row::{Row, Value};
use crate::schema;

/// How much of a SQLite file is read through a memory map.
const SQLITE_MMAP_BYTES: i64 = 1 << 30;
/// SQLite's page cache per connection, in KiB.
const SQLITE_CACHE_KIB: i64 = 64 * 1024;
/// The broker writer's page cache, in KiB (see [`Store::configure_as_writer`]).
const WRITER_CACHE_KIB: i64 = 2000;
/// The page cache of each of the broker's pooled readers, in KiB.
const READER_CACHE_KIB: i64 = 4096;
/// What the broker writer's log file is cut back to after a burst.
const WRITER_LOG_LIMIT_BYTES: i64 = 64 << 20;

/// Statements run inside one transaction.
pub(crate) trait Tx {
    /// Runs a statement; returns the rows it changed.
    fn execute(
        &mut self,
        what: &'static str,
        sql: &str,
        params: &[Value],
    ) -> Result<u64, StoreError>;
    /// Runs a query and hands each row to `each`, in one row that is
    /// refilled for the next: what `each` takes out of it (text columns)
    /// is its own, the rest is reused.
    fn for_each_row(
        &mut self,
        what: &'static str,
        sql: &str,
        params: &[Value],
        each: &mut dyn FnMut(&mut Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// Runs a query; returns its rows.
    fn query(
        &mut self,
        what: &'static str,
        sql: &str,
        params: &[Value],
    ) -> Result<Vec<Row>, StoreError> {
        let mut rows = Vec::new();
        self.for_each_row(what, sql, params, &mut |row| {
            rows.push(row.clone());
            Ok(())
        })?;
        Ok(rows)
    }
    /// Which SQL dialect to use where the two differ (see [`crate::dialect`]).
    fn dialect(&self) -> Dialect;
}

fn query_error(what: &'static str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Query {
        what,
        reason: err.to_string(),
    }
}

struct SqliteTx<'a>(rusqlite::Transaction<'a>);

/// SQLite's form of a statement: `$N` parameters become `?N` (SQLite
/// numbers `$N` parameters by first appearance, not by N; `?N` is numbered
/// by N, as PostgreSQL reads `$N`).
fn sqlite_form(sql: &str) -> String {
    let mut parts = sql.split('$');
    let mut out = String::with_capacity(sql.len());
    out.push_str(parts.next().unwrap_or_default());
    for part in parts {
        out.push(if part.starts_with(|c: char| c.is_ascii_digit()) {
            '?'
        } else {
            '$'
        });
        out.push_str(part);
    }
    out
}

/// Most statements whose SQLite form a thread remembers.
const SQLITE_FORMS: usize = 64;

thread_local! {
    /// The SQLite forms of the statements this thread ran, by the address
    /// and length of the text they were made from, with that text (an
    /// address reused by other text is a miss, not a wrong statement).
    static FORMS: std::cell::RefCell<Vec<(usize, usize, String, String)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Calls `prepare` with SQLite's form of `sql`. The writer runs the same few
/// statements for every credential: their forms are made once per thread,
/// not once per execution.
fn with_sqlite_form<T>(sql: &str, prepare: impl FnOnce(&str) -> T) -> T {
    if !sql.contains('$') {
        return prepare(sql);
    }
    let key = (sql.as_ptr() as usize, sql.len());
    FORMS.with(|forms| {
        let mut forms = forms.borrow_mut();
        let found = forms
            .iter()
            .position(|(ptr, len, text, _)| (*ptr, *len) == key && text == sql);
        let at = match found {
            Some(at) => at,
            None => {
                if forms.len() >= SQLITE_FORMS {
                    forms.clear();
                }
                forms.push((key.0, key.1, sql.to_owned(), sqlite_form(sql)));
                forms.len() - 1
            }
        };
        match forms.get(at) {
            Some((_, _, _, form)) => prepare(form),
            None => prepare(&sqlite_form(sql)),
        }
    })
}

/// The parameters as SQLite values, borrowing the text (no copy per row).
fn sqlite_params<'a>(
    params: &'a [Value<'_>],
) -> impl Iterator<Item = rusqlite::types::ToSqlOutput<'a>> {
    use rusqlite::types::{ToSqlOutput, ValueRef};
    params.iter().map(|p| match p {
        Value::Int(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
        Value::Text(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
        Value::Int(None) | Value::Text(None) => ToSqlOutput::Borrowed(ValueRef::Null),
    })
}

impl Tx for SqliteTx<'_> {
    fn execute(
        &mut self,
        what: &'static str,
        sql: &str,
        params: &[Value],
    ) -> Result<u64, StoreError> {
        let mut stmt = with_sqlite_form(sql, |form| self.0.prepare_cached(form))
            .map_err(|e| query_error(what, e))?;
        stmt.execute(rusqlite::params_from_iter(sqlite_params(params)))
            .map(|n| n as u64)
            .map_err(|e| query_error(what, e))
    }

    fn for_each_row(
        &mut self,
        what: &'static str,
        sql: &str,
        params: &[Value],
        each: &mut dyn FnMut(&mut Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut stmt = with_sqlite_form(sql, |form| self.0.prepare_cached(form))
            .map_err(|e| query_error(what, e))?;
        let names: std::sync::Arc<[String]> =
            stmt.column_names().into_iter().map(str::to_owned).collect();
        let columns = names.len();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(sqlite_params(params)))
            .map_err(|e| query_error(what, e))?;
        let mut cells = Row::new(names);
        while let Some(row) = rows.next().map_err(|e| query_error(what, e))? {
            for i in 0..columns {
                match row.get_ref(i).map_err(|e| query_error(what, e))? {
                    rusqlite::types::ValueRef::Integer(v) => cells.set_int(i, Some(v)),
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        cells.set_text(i, t);
                    }
                    rusqlite::types::ValueRef::Null => cells.set_null(i),
                    rusqlite::types::ValueRef::Real(v) => cells.set_int(i, Some(v as i64)),
                }
            }
            each(&mut cells)?;
        }
        Ok(())
    }

    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
}

struct PostgresTx<'a> {
    tx: postgres::Transaction<'a>,
    statements: &'a mut HashMap<String, postgres::Statement>,
}

impl PostgresTx<'_> {
    fn statement(
        &mut self,
        what: &'static str,
        sql: &str,
    ) -> Result<postgres::Statement, StoreError> {
        if let Some(stmt) = self.statements.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.tx.prepare(sql).map_err(|e| pg_error(what, &e))?;
        self.statements.insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }
}

/// PostgreSQL's parameters, or [`StoreError::Nul`] for a text that holds a
/// NUL (the server would refuse it as an encoding error).
fn postgres_params(
    what: &'static str,
    params: &[Value],
) -> Result<Vec<Box<dyn postgres::types::ToSql + Sync>>, StoreError> {
    params
        .iter()
        .map(
            |p| -> Result<Box<dyn postgres::types::ToSql + Sync>, StoreError> {
                match p {
                    Value::Int(v) => Ok(Box::new(*v)),
                    Value::Text(Some(text)) if text.contains('\0') => Err(StoreError::Nul { what }),
                    Value::Text(v) => Ok(Box::new(v.as_deref().map(str::to_owned))),
                }
            },
        )
        .collect()
}

/// What PostgreSQL said (its code and message), not the driver's summary
/// ("db error").
fn pg_reason(err: &postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => match std::error::Error::source(err) {
            Some(cause) => format!("{err}: {cause}"),
            None => err.to_string(),
        },
    }
}

fn pg_error(what: &'static str, err: &postgres::Error) -> StoreError {
    StoreError::Query {
        what,
        reason: pg_reason(err),
    }
}

/// Creates a SQLite file readable by its owner only (0600) if it does not
/// exist; SQLite gives its `-wal` and `-shm` files the same mode. The
/// store holds workload ids, lease ids, addresses and the audit log.
fn create_private(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "the directory {} does not exist; create it first, or point --db at an existing directory",
                dir.display()
            ),
        ));
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(drop)
}

impl Tx for PostgresTx<'_> {
    fn execute(
        &mut self,
        what: &'static str,
        sql: &str,
        params: &[Value],
    ) -> Result<u64, StoreError> {
        let stmt = self.statement(what, sql)?;
        let boxed = postgres_params(what, params)?;
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
            boxed.iter().map(|b| b.as_ref()).collect();
        self.tx
            .execute(&stmt, &refs)
            .map_err(|e| pg_error(what, &e))
    }

    fn for_each_row(
        &mut self,
        what: &'static str,
        sql: &str,
        params: &[Value],
        each: &mut dyn FnMut(&mut Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let stmt = self.statement(what, sql)?;
        let boxed = postgres_params(what, params)?;
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
            boxed.iter().map(|b| b.as_ref()).collect();
        let rows = self
            .tx
            .query(&stmt, &refs)
            .map_err(|e| pg_error(what, &e))?;
        let names: std::sync::Arc<[String]> =
            stmt.columns().iter().map(|c| c.name().to_owned()).collect();
        let mut cells = Row::new(names);
        for row in rows {
            for (i, column) in row.columns().iter().enumerate() {
                match *column.type_() {
                    postgres::types::Type::INT8 => {
                        cells.set_int(i, row.try_get(i).map_err(|e| pg_error(what, &e))?);
                    }
                    postgres::types::Type::INT4 => cells.set_int(
                        i,
                        row.try_get::<_, Option<i32>>(i)
                            .map_err(|e| pg_error(what, &e))?
                            .map(i64::from),
                    ),
                    _ => match row
                        .try_get::<_, Option<&str>>(i)
                        .map_err(|e| pg_error(what, &e))?
                    {
                        Some(text) => cells.set_text(i, text.as_bytes()),
                        None => cells.set_null(i),
                    },
                }
            }
            each(&mut cells)?;
        }
        Ok(())
    }

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
}

enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres {
        client: Box<postgres::Client>,
        statements: HashMap<String, postgres::Statement>,
        /// How to connect again when the connection is lost (the server
        /// restarted, a network cut): the next transaction reconnects.
        config: Box<postgres::Config>,
    },
}

/// Why a PostgreSQL transaction did not run to its end.
enum Begin<W> {
    /// The connection was found lost at `begin`: nothing ran, and `work`
    /// is handed back to run on a new connection.
    Lost(W),
    /// It failed.
    Failed(StoreError),
}

impl<W> Begin<W> {
    fn into_error(self) -> StoreError {
        match self {
            Begin::Lost(_) => StoreError::Query {
                what: "begin",
                reason: "the connection to PostgreSQL was lost".into(),
            },
            Begin::Failed(e) => e,
        }
    }
}

/// Runs `work` in one PostgreSQL transaction, committed if it returns `Ok`.
fn postgres_transaction<T, W>(
    client: &mut postgres::Client,
    statements: &mut HashMap<String, postgres::Statement>,
    work: W,
) -> Result<T, Begin<W>>
where
    W: FnOnce(&mut dyn Tx) -> Result<T, StoreError>,
{
    let tx = match client.transaction() {
        Ok(tx) => tx,
        Err(e) if e.is_closed() => return Err(Begin::Lost(work)),
        Err(e) => return Err(Begin::Failed(query_error("begin", e))),
    };
    let mut wrapped = PostgresTx { tx, statements };
    let value = work(&mut wrapped).map_err(Begin::Failed)?;
    wrapped
        .tx
        .commit()
        .map_err(|e| Begin::Failed(query_error("commit", e)))?;
    Ok(value)
}

/// How long a PostgreSQL connection attempt may take unless the URL says
/// (`connect_timeout`): a server that is away fails a request promptly
/// instead of holding it.
const POSTGRES_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection settings of a PostgreSQL URL, with Mayfly's default
/// connect timeout.
fn postgres_config(target: &str) -> Result<postgres::Config, postgres::Error> {
    let mut config: postgres::Config = target.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(POSTGRES_CONNECT_TIMEOUT);
    }
    Ok(config)
}

/// Replaces a lost PostgreSQL connection with a new one. Prepared
/// statements belonged to the old session, so they are forgotten.
fn reconnect(
    client: &mut postgres::Client,
    statements: &mut HashMap<String, postgres::Statement>,
    config: &postgres::Config,
) -> Result<(), StoreError> {
    statements.clear();
    let fresh = config
        .connect(postgres::NoTls)
        .map_err(|e| query_error("reconnect to PostgreSQL", pg_reason(&e)))?;
    *client = fresh;
    Ok(())
}

/// An open, migrated store.
pub struct Store {
    conn: Conn,
    target: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.target)
    }
}

/// A URL with its password replaced, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = url.get(scheme + 3..at).unwrap_or_default();
            match userinfo.split_once(':') {
                Some((user, _password)) => format!(
                    "{}{user}:***{}",
                    url.get(..scheme + 3).unwrap_or_default(),
                    url.get(at..).unwrap_or_default()
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Store {
    /// Opens (creating if needed) the store at `target`: a `postgres://` or
    /// `postgresql://` URL, or a SQLite file path. Runs pending migrations.
    pub fn open(target: &str) -> Result<Store, StoreError> {
        let shown = redact_url(target);
        let open_error = |reason: String| StoreError::Open {
            target: shown.clone(),
            reason,
        };
        let conn = if target.starts_with("postgres://") || target.starts_with("postgresql://") {
            let config = postgres_config(target).map_err(|e| open_error(pg_reason(&e)))?;
            let client = config
                .connect(postgres::NoTls)
                .map_err(|e| open_error(pg_reason(&e)))?;
            Conn::Postgres {
                client: Box::new(client),
                statements: HashMap::new(),
                config: Box::new(config),
            }
        } else {
            let path = Path::new(target);
            create_private(path).map_err(|e| open_error(e.to_string()))?;
            let conn = rusqlite::Connection::open(path).map_err(|e| open_error(e.to_string()))?;
            conn.busy_timeout(Duration::from_secs(30))
                .map_err(|e| open_error(e.to_string()))?;
            // WAL: readers never block the writer; NORMAL sync is durable
            // across process crashes, which is what a scan needs.
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(|e| StoreError::Foreign {
                    target: shown.clone(),
                    reason: e.to_string(),
                })?;
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(|e| open_error(e.to_string()))?;
            conn.pragma_update(None, "foreign_keys", "ON")
                .map_err(|e| open_error(e.to_string()))?;
            // Large reads (a plan over a million locations) go through a
            // memory map instead of one read call and copy per page, and
            // keep their pages cached between queries.
            conn.pragma_update(None, "mmap_size", SQLITE_MMAP_BYTES)
                .map_err(|e| open_error(e.to_string()))?;
            conn.pragma_update(None, "cache_size", -SQLITE_CACHE_KIB)
                .map_err(|e| open_error(e.to_string()))?;
            Conn::Sqlite(conn)
        };
        let mut store = Store {
            conn,
            target: shown,
        };
        schema::migrate(&mut store)?;
        Ok(store)
    }

    /// The path or URL (password removed), for messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Readies the one connection that does a broker's writes:
    /// - every commit durable across power loss, not only process crashes
    ///   (SQLite `synchronous = FULL`; PostgreSQL always is): a token handed
    ///   out must have its lease on disk;
    /// - no checkpoint inside a commit (it writes and syncs the database
    ///   file, holding every write waiting behind that commit): the owner
    ///   calls [`Store::checkpoint`] between commits instead, and the log
    ///   file is cut back to 64 MiB after a burst;
    /// - a small page cache: a writer appends at the ends of its indexes,
    ///   and SQLite walks the whole cache at every commit.
    ///
    /// PostgreSQL: nothing to do.
    pub fn configure_as_writer(&mut self) -> Result<(), StoreError> {
        if let Conn::Sqlite(conn) = &self.conn {
            let set = |name: &str, value: &dyn rusqlite::ToSql| {
                conn.pragma_update(None, name, value)
                    .map_err(|e| query_error("configure the writer", e))
            };
            set("synchronous", &"FULL")?;
            set("wal_autocheckpoint", &0)?;
            set("journal_size_limit", &WRITER_LOG_LIMIT_BYTES)?;
            set("cache_size", &-WRITER_CACHE_KIB)?;
        }
        Ok(())
    }

    /// Readies a connection of a pool that serves many short reads (the
    /// broker's): a small page cache and no memory map, so a pool of them
    /// holds little memory. PostgreSQL: nothing to do.
    pub fn configure_for_point_reads(&mut self) -> Result<(), StoreError> {
        if let Conn::Sqlite(conn) = &self.conn {
            let set = |name: &str, value: &dyn rusqlite::ToSql| {
                conn.pragma_update(None, name, value)
                    .map_err(|e| query_error("configure a reader", e))
            };
            set("cache_size", &-READER_CACHE_KIB)?;
            set("mmap_size", &0)?;
        }
        Ok(())
    }

    /// Copies the SQLite WAL into the database without blocking writers
    /// (a passive checkpoint). PostgreSQL: nothing to do.
    pub fn checkpoint(&mut self) -> Result<(), StoreError> {
        if let Conn::Sqlite(conn) = &self.conn {
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                .map_err(|e| query_error("checkpoint", e))?;
        }
        Ok(())
    }

    /// Checks that the store answers a trivial read (readiness probes).
    pub fn ping(&mut self) -> Result<(), StoreError> {
        self.read(|tx| tx.query("ping", "SELECT 1 AS n", &[]).map(|_| ()))
    }

    /// Whether this store is PostgreSQL (shared by replicas) or SQLite.
    pub fn is_postgres(&self) -> bool {
        matches!(self.conn, Conn::Postgres { .. })
    }

    /// Runs `work` in one transaction: committed if it returns `Ok`,
    /// rolled back otherwise (nothing half-written).
    pub(crate) fn transaction<T>(
        &mut self,
        work: impl FnOnce(&mut dyn Tx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.run(TransactionBehavior::Immediate, work)
    }

    /// Runs read-only `work` in one transaction that takes no write lock,
    /// so readers never wait for the writer.
    pub(crate) fn read<T>(
        &mut self,
        work: impl FnOnce(&mut dyn Tx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.run(TransactionBehavior::Deferred, work)
    }

    fn run<T>(
        &mut self,
        behavior: TransactionBehavior,
        work: impl FnOnce(&mut dyn Tx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &mut self.conn {
            Conn::Sqlite(conn) => {
                let tx = conn
                    .transaction_with_behavior(behavior)
                    .map_err(|e| query_error("begin", e))?;
                let mut wrapped = SqliteTx(tx);
                let value = work(&mut wrapped)?;
                wrapped.0.commit().map_err(|e| query_error("commit", e))?;
                Ok(value)
            }
            Conn::Postgres {
                client,
                statements,
                config,
            } => {
                // A connection found lost at `begin` has run nothing of
                // this transaction: connect again and go on. One lost
                // later fails this transaction (its outcome unknown to
                // the caller), and the next one reconnects.
                if client.is_closed() {
                    reconnect(client, statements, config)?;
                }
                match postgres_transaction(client, statements, work) {
                    Ok(value) => Ok(value),
                    Err(Begin::Lost(work)) => {
                        reconnect(client, statements, config)?;
                        postgres_transaction(client, statements, work).map_err(Begin::into_error)
                    }
                    Err(Begin::Failed(e)) => Err(e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn sqlite_parameters_keep_their_numbers() {
        assert_eq!(
            super::sqlite_form("UPDATE t SET a = $2 WHERE id = $1 AND b = '$x'"),
            "UPDATE t SET a = ?2 WHERE id = ?1 AND b = '$x'"
        );
        // The remembered form is the one of the text given, even when
        // another text had the same address before.
        let first = String::from("SELECT $1");
        let form = super::with_sqlite_form(&first, str::to_owned);
        assert_eq!(form, "SELECT ?1");
        assert_eq!(super::with_sqlite_form(&first, str::to_owned), "SELECT ?1");
        let mut reused = first;
        reused.clear();
        reused.push_str("SELECT $2");
        assert_eq!(super::with_sqlite_form(&reused, str::to_owned), "SELECT ?2");
        assert_eq!(
            super::with_sqlite_form("SELECT 1", str::to_owned),
            "SELECT 1"
        );
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x"), // mayfly:allow (test fixture)
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact_url("/var/lib/mayfly.db"), "/var/lib/mayfly.db");
    }
}
