//! A PostgreSQL role per task, against the real server on 127.0.0.1:5432:
//! the role works during the task at the level policy allowed, its
//! password is the one PostgreSQL checks, and when the task ends its
//! sessions are cut and the role is gone. Level statements are checked at
//! start; a role whose lease was never recorded does not survive; the
//! reconciler drops only roles this broker made.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use mayfly_broker::Broker;
use mayfly_broker::config::PostgresUpstreamConfig;
use mayfly_broker::minted::PostgresMinter;
use mayfly_broker::protocol::UpstreamCredential;
use mayfly_broker::service::BrokerPaths;
use sha2::{Digest, Sha256};

use super::harness::{ADMIN, BACKENDS, Harness, PgDatabase};

pub const AUDIENCE: &str = "urn:mayfly:postgres:app";

/// Mayfly's roles in a target's two groups.
const TASK_ROLES: &str = "SELECT DISTINCT r.rolname FROM pg_roles r \
     JOIN pg_auth_members m ON m.member = r.oid JOIN pg_roles g ON g.oid = m.roleid \
     WHERE g.rolname IN ($1, $2) AND r.rolname LIKE 'mayfly\\_%'";

/// A database with a table, a group role that may read it and one that
/// may write it, and a management role with no more than CREATEROLE and
/// the right to grant those two.
pub struct Target {
    _db: PgDatabase,
    /// Brokers that made roles here: their marker roles go with the target.
    brokers: std::cell::RefCell<Vec<String>>,
    pub name: String,
    pub manager: String,
    pub reader: String,
    pub writer: String,
}

fn admin(dbname: &str) -> postgres::Client {
    postgres::Client::connect(
        &format!("host=127.0.0.1 port=5432 user=postgres dbname={dbname}"),
        postgres::NoTls,
    )
    .unwrap()
}

impl Target {
    pub fn new() -> Target {
        let db = PgDatabase::new();
        let name = db.url().rsplit('/').next().unwrap().to_owned();
        // Not named like Mayfly's own roles (mayfly_...).
        let short = name.replace("mayfly_broker_test_", "mft_");
        let (manager, reader, writer) = (
            format!("{short}_mgr"),
            format!("{short}_read"),
            format!("{short}_write"),
        );
        let mut pg = admin(&name);
        pg.batch_execute(&format!(
            "DROP ROLE IF EXISTS {manager}; DROP ROLE IF EXISTS {reader}; DROP ROLE IF EXISTS {writer};
             CREATE ROLE {manager} LOGIN CREATEROLE;
             CREATE ROLE {reader} NOLOGIN; CREATE ROLE {writer} NOLOGIN;
             GRANT {reader}, {writer} TO {manager} WITH ADMIN OPTION;
             CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);
             INSERT INTO notes (body) VALUES ('first');
             CREATE TABLE private (x int);
             GRANT CONNECT ON DATABASE {name} TO {reader}, {writer};
             GRANT SELECT ON notes TO {reader};
             GRANT SELECT, INSERT ON notes TO {writer};
             GRANT USAGE ON SEQUENCE notes_id_seq TO {writer};
             GRANT CREATE ON SCHEMA public TO {writer};"
        ))
        .unwrap();
        Target {
            _db: db,
            brokers: std::cell::RefCell::default(),
            name,
            manager,
            reader,
            writer,
        }
    }

    /// A broker at `url` will make roles here.
    pub fn used_by(&self, url: &str) {
        self.brokers.borrow_mut().push(url.to_owned());
    }

    pub fn config(&self) -> PostgresUpstreamConfig {
        let mut levels = BTreeMap::new();
        levels.insert(
            "read".to_owned(),
            vec![format!("GRANT {} TO {{{{role}}}}", self.reader)],
        );
        levels.insert(
            "write".to_owned(),
            vec![format!("GRANT {} TO {{{{role}}}}", self.writer)],
        );
        PostgresUpstreamConfig {
            name: "app".into(),
            url: format!("postgres://{}@127.0.0.1:5432/{}", self.manager, self.name),
            password_file: None,
            password_env: None,
            password_custody: None,
            client_host: None,
            client_port: None,
            levels,
            default_level: Some("read".into()),
            reassign_to: None,
            max_lifetime_seconds: 3600,
            pool_size: 4,
        }
    }

    /// Task roles that exist now: Mayfly's roles in this target's groups.
    pub fn task_roles(&self) -> Vec<String> {
        admin(&self.name)
            .query(TASK_ROLES, &[&self.reader, &self.writer])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // Roles of tasks a test left live (roles belong to the server, not
        // to the database dropped below).
        let live: Vec<String> = postgres::Client::connect(
            &format!(
                "host=127.0.0.1 port=5432 user=postgres dbname={}",
                self.name
            ),
            postgres::NoTls,
        )
        .and_then(|mut pg| pg.query(TASK_ROLES, &[&self.reader, &self.writer]))
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default();
        let mut pg = admin("postgres");
        for url in self.brokers.borrow().iter() {
            let marker = PostgresMinter::new(&self.config(), url).unwrap();
            let _ = pg.batch_execute(&format!("DROP ROLE IF EXISTS {}", marker.marker_role()));
        }
        let _ = pg.batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
        for role in live {
            let _ = pg.batch_execute(&format!("DROP ROLE IF EXISTS {role}"));
        }
        let _ = pg.batch_execute(&format!(
            "DROP ROLE IF EXISTS {}; DROP ROLE IF EXISTS {}; DROP ROLE IF EXISTS {}",
            self.manager, self.reader, self.writer
        ));
    }
}

/// Whether `password` is the one PostgreSQL's SCRAM-SHA-256 verifier for
/// `role` checks (RFC 5802: StoredKey and ServerKey from the salted password).
fn verifier_accepts(dbname: &str, role: &str, password: &str) -> bool {
    let row = admin(dbname)
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&role],
        )
        .unwrap();
    let stored: String = row.get(0);
    let (head, keys) = stored.split_once('$').unwrap().1.split_once('$').unwrap();
    let (iterations, salt) = head.split_once(':').unwrap();
    let (stored_key, server_key) = keys.split_once(':').unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let salt = b64.decode(salt).unwrap();
    let iterations: u32 = iterations.parse().unwrap();
    let hmac = |key: &[u8], data: &[u8]| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    };
    // PBKDF2-HMAC-SHA256 with one block.
    let mut block = salt.clone();
    block.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password.as_bytes(), &block);
    let mut salted = u.clone();
    for _ in 1..iterations {
        u = hmac(password.as_bytes(), &u);
        salted.iter_mut().zip(&u).for_each(|(s, x)| *s ^= x);
    }
    let client_key = hmac(&salted, b"Client Key");
    Sha256::digest(&client_key).to_vec() == b64.decode(stored_key).unwrap()
        && hmac(&salted, b"Server Key") == b64.decode(server_key).unwrap()
}

fn connect_as(target: &Target, user: &str) -> Result<postgres::Client, postgres::Error> {
    postgres::Client::connect(
        &format!(
            "host=127.0.0.1 port=5432 user={user} dbname={} connect_timeout=5",
            target.name
        ),
        postgres::NoTls,
    )
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn role_of(credential: &UpstreamCredential) -> (String, String) {
    match credential {
        UpstreamCredential::Postgres { user, password, .. } => (user.clone(), password.clone()),
        other => panic!("not a PostgreSQL credential: {other:?}"),
    }
}

#[test]
fn a_role_lives_as_long_as_its_task() {
    for backend in BACKENDS {
        let target = Target::new();
        let config = target.config();
        let h = Harness::start_with(backend, move |c| c.upstream.postgres.push(config));
        target.used_by(&h.url);
        let identity = h.identity("svc:report");
        let task = h.start_task(&identity, "team-data", &[AUDIENCE]);
        let response = h.exchange(&identity, &task.id, AUDIENCE);
        assert_eq!(response.scope, "read", "the default level");
        let credential = response.upstream_credential.clone().unwrap();
        let (role, password) = role_of(&credential);
        assert!(role.starts_with("mayfly_"), "{role}");
        // The password is what PostgreSQL checks, and it never reached a
        // statement: the server holds only its SCRAM verifier.
        assert!(
            verifier_accepts(&target.name, &role, &password),
            "{backend:?}"
        );
        let until: Option<std::time::SystemTime> = admin(&target.name)
            .query_one(
                "SELECT rolvaliduntil FROM pg_roles WHERE rolname = $1",
                &[&role],
            )
            .unwrap()
            .get(0);
        let until = until
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert_eq!(until, credential.expires_at());
        assert_eq!(until, h.now() + response.expires_in);
        assert_eq!(
            response.expires_in, 600,
            "lives with its task, not 5 minutes"
        );
        let env: BTreeMap<_, _> = credential.environment().into_iter().collect();
        assert_eq!(env["PGUSER"], role);
        assert_eq!(env["PGDATABASE"], target.name);
        assert!(env["DATABASE_URL"].starts_with(&format!("postgresql://{role}:")));
        // The store keeps no password.
        let grants = mayfly_store::Store::open(&h.db)
            .unwrap()
            .task_grants(&task.id)
            .unwrap();
        assert_eq!(grants.len(), 1);
        assert_eq!(grants[0].handle, role);
        assert_eq!(grants[0].sealed, None);

        // It works at its level, and only there.
        let mut session = connect_as(&target, &role).unwrap();
        let body: String = session
            .query_one("SELECT body FROM notes WHERE id = 1", &[])
            .unwrap()
            .get(0);
        assert_eq!(body, "first");
        let err = session
            .execute("INSERT INTO notes (body) VALUES ('x')", &[])
            .unwrap_err();
        assert!(format!("{err:?}").contains("permission denied"), "{err:?}");

        // The task ends: the open session is cut and the role is gone.
        h.client().end_task(&identity, &task.id).unwrap();
        let gone = wait_until(Duration::from_secs(5), || {
            admin(&target.name)
                .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
                .unwrap()
                .is_none()
        });
        assert!(gone.is_some(), "{backend:?}: the role outlived its task");
        assert!(
            session.query_one("SELECT 1", &[]).is_err(),
            "the session was cut"
        );
        let err = connect_as(&target, &role)
            .err()
            .expect("no login after the end");
        assert!(format!("{err:?}").contains("does not exist"), "{err:?}");
        let grants = mayfly_store::Store::open(&h.db)
            .unwrap()
            .task_grants(&task.id)
            .unwrap();
        assert_eq!(grants.len(), 1, "the grant is kept, released");
        assert!(target.task_roles().is_empty());
    }
}

#[test]
fn revocation_and_objects_the_role_made() {
    let target = Target::new();
    let config = target.config();
    let h = Harness::start_with(super::harness::Backend::Sqlite, move |c| {
        c.upstream.postgres.push(config)
    });
    target.used_by(&h.url);
    let identity = h.identity("svc:etl");
    let task = h.start_task(&identity, "team-data", &[AUDIENCE]);
    let response = h
        .client()
        .exchange(&identity, &task.id, AUDIENCE, Some("write"), None)
        .unwrap();
    let (role, _) = role_of(response.upstream_credential.as_ref().unwrap());
    let mut session = connect_as(&target, &role).unwrap();
    session
        .batch_execute(
            "INSERT INTO notes (body) VALUES ('by the task'); CREATE TABLE scratch (x int)",
        )
        .unwrap();
    drop(session);
    // Revoking the access token (RFC 7009) drops the role too; what it
    // made is kept, given to the management user.
    h.client()
        .revoke(&format!("Bearer {ADMIN}"), &response.access_token)
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || target.task_roles().is_empty()).is_some(),
        "the role outlived its revoked token"
    );
    let owner: String = admin(&target.name)
        .query_one(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 'scratch'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(owner, target.manager);
    // The task lives on, and a new exchange makes a new role.
    let again = h
        .client()
        .exchange(&identity, &task.id, AUDIENCE, Some("read"), None)
        .unwrap();
    let (second, _) = role_of(again.upstream_credential.as_ref().unwrap());
    assert_ne!(second, role);
    assert_eq!(target.task_roles(), vec![second]);
}

#[test]
fn levels_are_checked_and_decided_by_policy() {
    let target = Target::new();
    let config = target.config();
    let policies = tempfile::tempdir().unwrap();
    std::fs::write(
        policies.path().join("p.cedar"),
        r#"permit (principal, action == Action::"start_task", resource);
@id("read-only")
permit (principal, action == Action::"exchange", resource)
when { context.audiences.contains(context.audience) && context.scope.contains("read") };"#,
    )
    .unwrap();
    let dir = policies.path().to_owned();
    let h = Harness::start_with(super::harness::Backend::Sqlite, move |c| {
        c.upstream.postgres.push(config);
        c.policy.dir = Some(dir);
    });
    target.used_by(&h.url);
    let identity = h.identity("svc:report");
    let task = h.start_task(&identity, "team-data", &[AUDIENCE]);
    let err = h
        .client()
        .exchange(&identity, &task.id, AUDIENCE, Some("write"), None)
        .unwrap_err();
    assert!(err.to_string().contains("403 access_denied"), "{err}");
    let err = h
        .client()
        .exchange(&identity, &task.id, AUDIENCE, Some("admin"), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("invalid_scope") && err.contains("read, write"),
        "{err}"
    );
    assert!(target.task_roles().is_empty(), "nothing made when refused");
    h.client()
        .exchange(&identity, &task.id, AUDIENCE, Some("read"), None)
        .unwrap();
    assert_eq!(target.task_roles().len(), 1);
    // A policy change that no longer allows it drops the role.
    let body = serde_json::to_vec(&serde_json::json!({"policies": {
        "p.cedar": "permit (principal, action == Action::\"start_task\", resource);"
    }}))
    .unwrap();
    let (status, answer) = h.raw(
        "PUT",
        "/v1/admin/policies",
        &[
            ("Authorization", &format!("Bearer {ADMIN}")),
            ("Content-Type", "application/json"),
        ],
        &body,
    );
    assert_eq!(status, 200, "{answer}");
    assert!(
        wait_until(Duration::from_secs(5), || target.task_roles().is_empty()).is_some(),
        "the role outlived the policy that allowed it"
    );
    // An audience that names no configured upstream is refused at start.
    let err = h
        .client()
        .start_task(
            &identity,
            &mayfly_broker::client::TaskRequest {
                purpose: "x".into(),
                owner: "o".into(),
                ttl_seconds: None,
                audiences: vec!["urn:mayfly:postgres:nope".into()],
            },
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("invalid_target") && err.contains("[[upstream.postgres]]"),
        "{err}"
    );
}

fn open_broker(config: mayfly_broker::BrokerConfig) -> Result<Broker, mayfly_broker::BrokerError> {
    let dir = tempfile::tempdir().unwrap();
    let paths = BrokerPaths {
        data_dir: dir.path().join("data"),
        db: dir.path().join("b.db").to_string_lossy().into_owned(),
    };
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(Broker::open(
            config,
            &paths,
            ADMIN,
            std::sync::Arc::new(mayfly_broker::SystemClock),
        ))
}

#[test]
fn bad_levels_and_connections_are_refused_at_start() {
    let target = Target::new();
    target.used_by("http://127.0.0.1:8710");
    let mut bad = target.config();
    bad.levels.insert(
        "broken".into(),
        vec!["GRANTT SELECT ON notes TO {{role}}".into()],
    );
    let mut config = mayfly_broker::BrokerConfig::default();
    config.upstream.postgres.push(bad);
    let err = open_broker(config).unwrap_err().to_string();
    assert!(
        err.contains("level broken") && err.contains("syntax error"),
        "{err}"
    );
    assert!(
        target.task_roles().is_empty(),
        "the check leaves nothing behind"
    );

    // A level that grants what the management user may not grant.
    let mut unprivileged = target.config();
    unprivileged.levels.insert(
        "super".into(),
        vec!["GRANT SELECT ON private TO {{role}}".into()],
    );
    let mut config = mayfly_broker::BrokerConfig::default();
    config.upstream.postgres.push(unprivileged);
    let err = open_broker(config).unwrap_err().to_string();
    assert!(
        err.contains("level super") && err.contains("privileges"),
        "{err}"
    );

    let mut unreachable = target.config();
    unreachable.url = format!("postgres://{}@127.0.0.1:1/{}", target.manager, target.name);
    let mut config = mayfly_broker::BrokerConfig::default();
    config.upstream.postgres.push(unreachable);
    let err = open_broker(config).unwrap_err().to_string();
    assert!(
        err.contains("cannot open the management connection"),
        "{err}"
    );

    let parse = mayfly_broker::BrokerConfig::parse(
        "[[upstream.postgres]]\nname = \"app\"\nurl = \"postgres://m:hunter2@db/app\"\n[upstream.postgres.levels]\nread = [\"GRANT r TO {{role}}\"]\n", // mayfly:allow (test fixture)
        "t.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        parse.contains("password_file") && !parse.contains("hunter2"),
        "{parse}"
    );
}

#[test]
fn no_role_survives_without_its_lease() {
    let target = Target::new();
    let config = target.config();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The broker stops between making a role and recording its lease: the
    // management connection closes with the transaction open.
    let minter = PostgresMinter::new(&config, "http://127.0.0.1:1").unwrap();
    target.used_by("http://127.0.0.1:1");
    let (pending, credential) = rt
        .block_on(minter.create("read", super::harness::now() + 600, || {
            std::future::ready(Ok(None))
        }))
        .unwrap();
    let (role, _) = role_of(&credential);
    drop(pending);
    assert!(
        wait_until(Duration::from_secs(5), || {
            admin(&target.name)
                .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
                .unwrap()
                .is_none()
        })
        .is_some()
    );
    assert!(connect_as(&target, &role).is_err());

    // Roles left from tasks that ended while the broker was down are
    // dropped at start; a live task's role stays; a role Mayfly did not
    // make is never touched, even with Mayfly's prefix.
    let config = target.config();
    let h = Harness::start_with(super::harness::Backend::Postgres, move |c| {
        c.upstream.postgres.push(config)
    });
    target.used_by(&h.url);
    let identity = h.identity("svc:a");
    let task = h.start_task(&identity, "team", &[AUDIENCE]);
    let (live, _) = role_of(
        h.exchange(&identity, &task.id, AUDIENCE)
            .upstream_credential
            .as_ref()
            .unwrap(),
    );
    // A role this broker made and committed, with no grant in its store
    // (a store restored from a backup, say).
    let config = target.config();
    let minter = PostgresMinter::new(&config, &h.url).unwrap();
    let (pending, credential) =
        h.rt.block_on(minter.create("read", super::harness::now() + 600, || {
            std::future::ready(Ok(None))
        }))
        .unwrap();
    h.rt.block_on(minter.commit(pending)).unwrap();
    let (stray, _) = role_of(&credential);
    let foreign = format!("mayfly_foreign_{}", target.name);
    admin(&target.name)
        .batch_execute(&format!(
            "CREATE ROLE {foreign} LOGIN; COMMENT ON ROLE {foreign} IS 'Mayfly task roles'"
        ))
        .unwrap();
    let dropped = h.rt.block_on(h.broker.reconcile_upstreams()).unwrap();
    assert_eq!(dropped, 1);
    let exists = |role: &str| {
        admin(&target.name)
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
            .unwrap()
            .is_some()
    };
    assert!(!exists(&stray));
    assert!(exists(&live));
    assert!(exists(&foreign));
    admin(&target.name)
        .batch_execute(&format!("DROP ROLE {foreign}"))
        .unwrap();
}
