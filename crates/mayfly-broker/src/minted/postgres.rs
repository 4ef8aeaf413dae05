//! A PostgreSQL login role per task. The role is made in a transaction on
//! a management connection that stays open until the broker has recorded
//! the role's lease: a crash in between rolls the role back with the
//! connection, so no role exists that the store does not know. The
//! password reaches PostgreSQL only as a SCRAM-SHA-256 verifier (never in
//! a statement a server log could keep), and `VALID UNTIL` ends the role's
//! logins at the task's end even if Mayfly is down then.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, NoTls};
use zeroize::Zeroizing;

use super::MintError;
use crate::config::{PostgresUpstreamConfig, ROLE_PLACEHOLDER};
use crate::protocol::UpstreamCredential;

/// The management password, when a new connection needs one (`None`: the
/// URL's user needs none).
pub type Password = Option<Zeroizing<String>>;

/// What names Mayfly's roles: the prefix of their names.
pub const ROLE_PREFIX: &str = "mayfly_";

/// One configured PostgreSQL upstream and its management connections.
pub struct PostgresMinter {
    config: PostgresUpstreamConfig,
    connect: tokio_postgres::Config,
    host: String,
    port: u16,
    database: String,
    manager: String,
    marker: Marker,
    idle: Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for PostgresMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresMinter({})", self.config.name)
    }
}

/// What marks the roles one broker made on one upstream: membership in a
/// group role of their own (`mayfly_marker_` and a hash of the broker's
/// URL and the upstream's name), which a comment on it explains. A comment
/// on each role would serve too, but PostgreSQL serializes comments on
/// roles: it made role creation ten times slower.
#[derive(Debug)]
struct Marker {
    role: String,
    comment: String,
    made: std::sync::atomic::AtomicBool,
}

impl Marker {
    fn of(broker: &str, upstream: &str) -> Marker {
        use sha2::Digest as _;
        let comment = format!("Mayfly task roles of broker {broker}, upstream {upstream}");
        let digest = sha2::Sha256::digest(comment.as_bytes());
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Marker {
            role: format!("{ROLE_PREFIX}marker_{hex}"),
            comment,
            made: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// A role made in an open transaction: committed once its lease is
/// recorded, rolled back otherwise (or when dropped, with its connection).
pub struct PendingRole {
    client: Option<Client>,
    role: String,
    _permit: OwnedSemaphorePermit,
}

/// PBKDF2 rounds of the SCRAM-SHA-256 verifiers of task roles. The rounds
/// only slow the guessing of a weak password from a stolen verifier; a
/// task role's password is 192 random bits, which no number of guesses
/// reaches. Each round costs twice: PostgreSQL derives the verifier of the
/// empty password from every verifier it is given (to refuse empty
/// passwords), and the client derives its key at every login. At the
/// default 4,096 rounds that check made role creation CPU-bound near 200
/// a second on two cores.
pub const SCRAM_ROUNDS: u32 = 128;

/// The SCRAM-SHA-256 verifier of `password` (RFC 5802, RFC 7677, in
/// PostgreSQL's `SCRAM-SHA-256$ROUNDS:SALT$STOREDKEY:SERVERKEY` form).
fn scram_verifier(password: &[u8]) -> Result<String, String> {
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    type HmacSha256 = Hmac<Sha256>;
    let hmac = |key: &[u8], parts: &[&[u8]]| {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(key).map_err(|e| e.to_string())?;
        for part in parts {
            mac.update(part);
        }
        Ok::<_, String>(mac.finalize().into_bytes())
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let salt = crate::b64::random_bytes::<16>().map_err(|e| e.to_string())?;
    let mut u = hmac(password, &[&salt, &1u32.to_be_bytes()])?;
    let mut salted = u;
    for _ in 1..SCRAM_ROUNDS {
        u = hmac(password, &[&u])?;
        salted.iter_mut().zip(u.iter()).for_each(|(s, x)| *s ^= x);
    }
    let client_key = hmac(&salted, &[b"Client Key"])?;
    let server_key = hmac(&salted, &[b"Server Key"])?;
    Ok(format!(
        "SCRAM-SHA-256${SCRAM_ROUNDS}:{}${}:{}",
        b64.encode(salt),
        b64.encode(Sha256::digest(client_key)),
        b64.encode(server_key)
    ))
}

/// Quotes an identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The error of a management statement, with PostgreSQL's own words.
fn db_error(upstream: &str, doing: &str, e: &tokio_postgres::Error) -> MintError {
    let reason = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    };
    MintError::Upstream {
        upstream: upstream.to_owned(),
        reason: format!("{doing}: {reason}"),
    }
}

impl PostgresMinter {
    /// A minter for `config`; `broker` names this Mayfly in its marker
    /// role, so the reconciler never touches another's roles.
    pub fn new(config: &PostgresUpstreamConfig, broker: &str) -> Result<PostgresMinter, MintError> {
        let invalid = |reason: String| MintError::Config {
            upstream: config.name.clone(),
            reason,
        };
        let connect: tokio_postgres::Config = config
            .url
            .parse()
            .map_err(|e| invalid(format!("url: {e}")))?;
        let host = match (&config.client_host, connect.get_hosts().first()) {
            (Some(host), _) => host.clone(),
            (None, Some(tokio_postgres::config::Host::Tcp(host))) => host.clone(),
            _ => return Err(invalid("set client_host: the url names no TCP host".into())),
        };
        let port = config
            .client_port
            .or_else(|| connect.get_ports().first().copied())
            .unwrap_or(5432);
        let manager = connect.get_user().unwrap_or_default().to_owned();
        let database = connect.get_dbname().unwrap_or(&manager).to_owned();
        Ok(PostgresMinter {
            marker: Marker::of(broker, &config.name),
            config: config.clone(),
            connect,
            host,
            port,
            database,
            manager,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(config.pool_size)),
        })
    }

    /// Its configuration.
    pub fn config(&self) -> &PostgresUpstreamConfig {
        &self.config
    }

    /// The group role that marks the roles this broker makes here.
    pub fn marker_role(&self) -> &str {
        &self.marker.role
    }

    /// A permit and a management connection: an idle one, or a new one
    /// with the password `password` resolves (asked only then: reading a
    /// file or custody for every role would be work on the hot path).
    async fn connection<P, F>(
        &self,
        password: P,
    ) -> Result<(OwnedSemaphorePermit, Client), MintError>
    where
        P: FnOnce() -> F,
        F: Future<Output = Result<Password, MintError>>,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| MintError::Closed)?;
        loop {
            let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            match idle {
                Some(client) if !client.is_closed() => return Ok((permit, client)),
                Some(_) => continue,
                None => break,
            }
        }
        let mut connect = self.connect.clone();
        if let Some(password) = password().await? {
            connect.password(password.as_bytes());
        }
        connect.connect_timeout(std::time::Duration::from_secs(10));
        let (client, connection) = connect.connect(NoTls).await.map_err(|e| {
            db_error(
                &self.config.name,
                "cannot open the management connection",
                &e,
            )
        })?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok((permit, client))
    }

    fn give_back(&self, client: Client) {
        if !client.is_closed()
            && let Ok(mut idle) = self.idle.lock()
        {
            idle.push(client);
        }
    }

    /// The statements that make `role` at `level`, valid until `until`,
    /// with the SCRAM verifier of its password.
    fn create_statements(&self, role: &str, level: &str, verifier: &str, until: &str) -> String {
        let quoted = ident(role);
        let mut sql = format!(
            "BEGIN; CREATE ROLE {quoted} LOGIN INHERIT PASSWORD {} VALID UNTIL {}; \
             GRANT {} TO {quoted}; ",
            literal(verifier),
            literal(until),
            ident(&self.marker.role),
        );
        for statement in self.config.levels.get(level).into_iter().flatten() {
            sql.push_str(&statement.replace(ROLE_PLACEHOLDER, &quoted));
            sql.push_str("; ");
        }
        sql
    }

    /// Makes the marker role, once (another replica may have made it).
    async fn ensure_marker(&self, client: &Client) -> Result<(), MintError> {
        use std::sync::atomic::Ordering;
        if self.marker.made.load(Ordering::Acquire) {
            return Ok(());
        }
        let role = ident(&self.marker.role);
        if let Err(e) = client
            .batch_execute(&format!("CREATE ROLE {role} NOLOGIN"))
            .await
            && e.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_OBJECT)
        {
            return Err(db_error(
                &self.config.name,
                &format!("cannot make the marker role {}", self.marker.role),
                &e,
            ));
        }
        client
            .batch_execute(&format!(
                "COMMENT ON ROLE {role} IS {}",
                literal(&self.marker.comment)
            ))
            .await
            .map_err(|e| db_error(&self.config.name, "cannot comment the marker role", &e))?;
        self.marker.made.store(true, Ordering::Release);
        Ok(())
    }

    /// Checks the management connection and every level's statements:
    /// makes a role at each level in a transaction that is rolled back.
    pub async fn check<P, F>(&self, password: P) -> Result<(), MintError>
    where
        P: FnOnce() -> F,
        F: Future<Output = Result<Password, MintError>>,
    {
        let (_permit, client) = self.connection(password).await?;
        self.ensure_marker(&client).await?;
        for level in self.config.levels.keys() {
            let role = format!("{ROLE_PREFIX}check_{}", super::random_id()?);
            let sql = self.create_statements(
                &role,
                level,
                "SCRAM-SHA-256$4096:AAAA$AAAA:AAAA",
                "infinity",
            );
            let checked = client.simple_query(&sql).await;
            let _ = client.simple_query("ROLLBACK").await;
            checked.map_err(|e| MintError::Config {
                upstream: self.config.name.clone(),
                reason: format!(
                    "level {level} does not run as the management user {}: {}; fix the level's statements or the user's privileges (it needs CREATEROLE and the right to grant what the level grants)",
                    self.manager,
                    db_error(&self.config.name, "checking", &e)
                ),
            })?;
        }
        self.give_back(client);
        Ok(())
    }

    /// Makes a role at `level` valid until `expires_at`, in a transaction
    /// left open.
    pub async fn create<P, F>(
        &self,
        level: &str,
        expires_at: i64,
        password: P,
    ) -> Result<(PendingRole, UpstreamCredential), MintError>
    where
        P: FnOnce() -> F,
        F: Future<Output = Result<Password, MintError>>,
    {
        let role = format!("{ROLE_PREFIX}{}", super::random_id()?);
        let secret = Zeroizing::new(crate::b64::encode(
            &crate::b64::random_bytes::<24>().map_err(|e| MintError::Upstream {
                upstream: self.config.name.clone(),
                reason: e.to_string(),
            })?,
        ));
        let verifier = scram_verifier(secret.as_bytes()).map_err(|reason| MintError::Upstream {
            upstream: self.config.name.clone(),
            reason,
        })?;
        let until = jiff::Timestamp::from_second(expires_at)
            .map_err(|e| MintError::Upstream {
                upstream: self.config.name.clone(),
                reason: format!("task end {expires_at}: {e}"),
            })?
            .to_string();
        let (permit, client) = self.connection(password).await?;
        self.ensure_marker(&client).await?;
        let sql = self.create_statements(&role, level, &verifier, &until);
        if let Err(e) = client.simple_query(&sql).await {
            let _ = client.simple_query("ROLLBACK").await;
            self.give_back(client);
            return Err(db_error(
                &self.config.name,
                &format!("cannot make a role at level {level}"),
                &e,
            ));
        }
        let credential = UpstreamCredential::Postgres {
            host: self.host.clone(),
            port: self.port,
            database: self.database.clone(),
            user: role.clone(),
            password: secret.to_string(),
            expires_at,
        };
        Ok((
            PendingRole {
                client: Some(client),
                role,
                _permit: permit,
            },
            credential,
        ))
    }

    /// Commits a pending role: it can log in from now on.
    pub async fn commit(&self, mut pending: PendingRole) -> Result<(), MintError> {
        let Some(client) = pending.client.take() else {
            return Err(MintError::Closed);
        };
        client.simple_query("COMMIT").await.map_err(|e| {
            db_error(
                &self.config.name,
                &format!("cannot commit role {}", pending.role),
                &e,
            )
        })?;
        self.give_back(client);
        Ok(())
    }

    /// Rolls a pending role back: it never existed.
    pub async fn roll_back(&self, mut pending: PendingRole) {
        if let Some(client) = pending.client.take()
            && client.simple_query("ROLLBACK").await.is_ok()
        {
            self.give_back(client);
        }
    }

    /// Ends `roles`: their sessions are cut, what they made is given to
    /// `reassign_to`, their privileges revoked, the roles dropped. Returns
    /// the roles that are gone (those that no longer existed included);
    /// one that cannot be dropped does not hold the others back.
    pub async fn drop_roles<P, F>(
        &self,
        roles: &[String],
        password: P,
    ) -> Result<Vec<String>, MintError>
    where
        P: FnOnce() -> F,
        F: Future<Output = Result<Password, MintError>>,
    {
        let roles: Vec<&str> = roles
            .iter()
            .map(String::as_str)
            .filter(|r| r.starts_with(ROLE_PREFIX))
            .collect();
        if roles.is_empty() {
            return Ok(Vec::new());
        }
        let (_permit, client) = self.connection(password).await?;
        let existing: Vec<String> = client
            .query(
                "SELECT rolname FROM pg_roles WHERE rolname = ANY($1)",
                &[&roles],
            )
            .await
            .map_err(|e| db_error(&self.config.name, "cannot list roles", &e))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let mut gone: Vec<String> = roles
            .iter()
            .filter(|r| !existing.iter().any(|e| e == *r))
            .map(|r| (*r).to_owned())
            .collect();
        let result = match self.drop_batch(&client, &existing).await {
            Ok(()) => {
                gone.extend(existing);
                Ok(gone)
            }
            Err(batch_error) if existing.len() > 1 => {
                let mut failed = None;
                for role in existing {
                    match self.drop_batch(&client, std::slice::from_ref(&role)).await {
                        Ok(()) => gone.push(role),
                        Err(e) => failed = Some(e),
                    }
                }
                match failed {
                    Some(e) if gone.is_empty() => Err(e),
                    Some(e) => {
                        tracing::warn!("{e}");
                        Ok(gone)
                    }
                    None => {
                        tracing::warn!("{batch_error}");
                        Ok(gone)
                    }
                }
            }
            Err(e) => Err(e),
        };
        self.give_back(client);
        result
    }

    async fn drop_batch(&self, client: &Client, roles: &[String]) -> Result<(), MintError> {
        if roles.is_empty() {
            return Ok(());
        }
        let list = roles
            .iter()
            .map(|r| ident(r))
            .collect::<Vec<_>>()
            .join(", ");
        let literals = roles
            .iter()
            .map(|r| literal(r))
            .collect::<Vec<_>>()
            .join(", ");
        let owner = ident(self.config.reassign_to.as_deref().unwrap_or(&self.manager));
        // Membership in the roles lets a management user with no more than
        // CREATEROLE cut their sessions and take what they own. It is
        // granted here, not when a role is made: every membership the
        // management user holds makes PostgreSQL's check of the next grant
        // longer, and thousands of live roles would slow every new one.
        let sql = format!(
            "BEGIN; GRANT {list} TO CURRENT_USER; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename IN ({literals}); \
             REASSIGN OWNED BY {list} TO {owner}; DROP OWNED BY {list}; DROP ROLE {list}; COMMIT"
        );
        if let Err(e) = client.simple_query(&sql).await {
            let _ = client.simple_query("ROLLBACK").await;
            return Err(db_error(
                &self.config.name,
                &format!("cannot drop task roles {}", roles.join(", ")),
                &e,
            ));
        }
        Ok(())
    }

    /// The roles this broker made on this upstream (by their marker).
    pub async fn own_roles<P, F>(&self, password: P) -> Result<Vec<String>, MintError>
    where
        P: FnOnce() -> F,
        F: Future<Output = Result<Password, MintError>>,
    {
        let (_permit, client) = self.connection(password).await?;
        let pattern = format!("{}%", ROLE_PREFIX.replace('_', "\\_"));
        let roles = client
            .query(
                "SELECT r.rolname FROM pg_auth_members m \
                 JOIN pg_roles r ON r.oid = m.member JOIN pg_roles g ON g.oid = m.roleid \
                 WHERE g.rolname = $2 AND r.rolname LIKE $1",
                &[&pattern, &self.marker.role],
            )
            .await
            .map_err(|e| db_error(&self.config.name, "cannot list Mayfly's roles", &e))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        self.give_back(client);
        Ok(roles)
    }
}
