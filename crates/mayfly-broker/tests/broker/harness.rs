//! A broker served on a loopback port over a real store, a test issuer
//! with a real ES256 key, and helpers to call the API.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mayfly_broker::client::{Client, TaskRequest};
use mayfly_broker::config::{BrokerConfig, IssuerConfig, ResourceServerConfig};
use mayfly_broker::protocol::{TaskView, TokenResponse};
use mayfly_broker::service::BrokerPaths;
use mayfly_broker::{Broker, Clock, ManualClock};
use p256::pkcs8::EncodePrivateKey;
use serde_json::{Value, json};

pub const ISS: &str = "https://ci.test";
pub const AUD: &str = "https://api.test";
pub const ADMIN: &str = "admin-token-for-tests-0123456789";
pub const RS_SECRET: &str = "resource-server-secret-0123456789";

/// Which store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

/// A PostgreSQL database that exists for one test.
pub struct PgDatabase {
    name: String,
}

impl PgDatabase {
    pub fn new() -> PgDatabase {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let name = format!(
            "mayfly_broker_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let mut admin = postgres::Client::connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=postgres",
            postgres::NoTls,
        )
        .expect("PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth); .ci/run starts it");
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        PgDatabase { name }
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=postgres",
            postgres::NoTls,
        ) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// An identity issuer with a real ES256 key.
pub struct TestIssuer {
    pub iss: String,
    pub kid: String,
    key: EncodingKey,
    pub jwk: Value,
}

impl TestIssuer {
    pub fn new(iss: &str, kid: &str) -> TestIssuer {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).unwrap();
        let secret = p256::SecretKey::from_slice(&seed).unwrap();
        let der = secret.to_pkcs8_der().unwrap();
        let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
            &secret.public_key(),
            false,
        );
        let b64 = |b: &[u8]| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
        };
        TestIssuer {
            iss: iss.into(),
            kid: kid.into(),
            key: EncodingKey::from_ec_der(der.as_bytes()),
            jwk: json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
                        "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())}),
        }
    }

    pub fn encoding_key(&self) -> EncodingKey {
        self.key.clone()
    }

    pub fn jwks(&self) -> Value {
        json!({"keys": [self.jwk]})
    }

    /// Signs `claims` as they are.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }

    /// A workload token for `sub`, valid for an hour from `now`.
    pub fn mint(&self, sub: &str, now: i64) -> String {
        self.sign(&json!({"iss": self.iss, "sub": sub, "aud": "mayfly", "iat": now, "nbf": now, "exp": now + 3600}))
    }
}

/// A broker serving on 127.0.0.1.
pub struct Harness {
    pub url: String,
    /// The configuration the broker started with.
    pub config: BrokerConfig,
    /// Its data directory and store.
    pub paths: BrokerPaths,
    pub clock: Arc<ManualClock>,
    pub broker: Arc<Broker>,
    pub issuer: TestIssuer,
    pub db: String,
    _dir: tempfile::TempDir,
    pub rt: tokio::runtime::Runtime,
    _pg: Option<PgDatabase>,
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl Harness {
    pub fn start(backend: Backend) -> Harness {
        Harness::start_with(backend, |_| {})
    }

    /// Starts a broker; `tweak` adjusts the config (the test issuer `ci`
    /// and resource server `api` are already in it).
    pub fn start_with(backend: Backend, tweak: impl FnOnce(&mut BrokerConfig)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let issuer = TestIssuer::new(ISS, "ci-1");
        let jwks_file = dir.path().join("ci-jwks.json");
        std::fs::write(&jwks_file, issuer.jwks().to_string()).unwrap();
        let (db, pg) = match backend {
            Backend::Sqlite => (
                dir.path().join("broker.db").to_string_lossy().into_owned(),
                None,
            ),
            Backend::Postgres => {
                let pg = PgDatabase::new();
                (pg.url(), Some(pg))
            }
        };
        let mut config = BrokerConfig::default();
        config.server.listen = "127.0.0.1:0".into();
        config.issuers.push(IssuerConfig {
            name: "ci".into(),
            issuer: Some(ISS.into()),
            preset: None,
            audiences: vec!["mayfly".into()],
            algorithms: vec!["ES256".into()],
            jwks_file: Some(jwks_file),
            jwks_uri: None,
            workload: None,
            tenant_claim: None,
            tenant: Some("acme".into()),
            claims: vec![],
            trust_domain: None,
            leeway_seconds: 30,
            min_refresh_seconds: 30,
        });
        let secret_file = dir.path().join("rs-secret");
        std::fs::write(&secret_file, RS_SECRET).unwrap();
        config.resource_servers.push(ResourceServerConfig {
            client_id: "api".into(),
            secret_file: Some(secret_file),
            audiences: vec![AUD.into()],
            ..ResourceServerConfig::default()
        });
        tweak(&mut config);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let clock = Arc::new(ManualClock::new(now()));
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = std_listener.local_addr().unwrap().port();
        config.server.public_url = Some(format!("http://127.0.0.1:{port}"));
        let paths = BrokerPaths {
            data_dir: dir.path().join("data"),
            db: db.clone(),
        };
        let started_with = config.clone();
        let broker = rt
            .block_on(Broker::open(
                config,
                &paths,
                ADMIN,
                clock.clone() as Arc<dyn Clock>,
            ))
            .unwrap();
        let broker = Arc::new(broker);
        let serving = broker.clone();
        rt.spawn(async move {
            std_listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            mayfly_broker::http::serve(serving, listener, std::future::pending())
                .await
                .unwrap();
        });
        Harness {
            url: format!("http://127.0.0.1:{port}"),
            config: started_with,
            paths,
            clock,
            broker,
            issuer,
            db,
            _dir: dir,
            rt,
            _pg: pg,
        }
    }

    /// Runs SQL on the store behind the broker's back (to tamper with it).
    pub fn sql(&self, statement: &str) {
        if self._pg.is_some() {
            let mut client = postgres::Client::connect(&self.db, postgres::NoTls).unwrap();
            client.batch_execute(statement).unwrap();
        } else {
            rusqlite::Connection::open(&self.db)
                .unwrap()
                .execute_batch(statement)
                .unwrap();
        }
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url)
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// An identity token for `sub` from the test issuer.
    pub fn identity(&self, sub: &str) -> String {
        self.issuer.mint(sub, self.now())
    }

    pub fn start_task(&self, identity: &str, owner: &str, audiences: &[&str]) -> TaskView {
        self.client()
            .start_task(
                identity,
                &TaskRequest {
                    purpose: "deploy".into(),
                    owner: owner.into(),
                    ttl_seconds: Some(600),
                    audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
                },
            )
            .unwrap()
    }

    pub fn exchange(&self, identity: &str, task: &str, audience: &str) -> TokenResponse {
        self.client()
            .exchange(identity, task, audience, None, None)
            .unwrap()
    }

    pub fn introspect(&self, token: &str) -> Value {
        self.client()
            .introspect(&format!("Bearer {ADMIN}"), token)
            .unwrap()
    }

    pub fn active(&self, token: &str) -> bool {
        self.introspect(token)["active"] == json!(true)
    }

    /// A raw request: method, path, headers, body; returns status and JSON.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let url = format!("{}{path}", self.url);
        let mut response = match method {
            "GET" | "DELETE" => {
                let mut req = if method == "GET" {
                    agent.get(&url)
                } else {
                    agent.delete(&url)
                };
                for (k, v) in headers {
                    req = req.header(*k, *v);
                }
                req.call().unwrap()
            }
            _ => {
                let mut req = match method {
                    "PUT" => agent.put(&url),
                    _ => agent.post(&url),
                };
                for (k, v) in headers {
                    req = req.header(*k, *v);
                }
                req.send(body).unwrap()
            }
        };
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Another broker on this one's store and data directory: a replica,
    /// or this broker after a restart.
    pub fn replica(&self) -> Broker {
        self.rt
            .block_on(Broker::open(
                self.config.clone(),
                &self.paths,
                ADMIN,
                self.clock.clone() as Arc<dyn Clock>,
            ))
            .unwrap()
    }

    /// Stores a signing key as another replica would, taking over from the
    /// key that signs for its algorithm now.
    pub fn add_signing_key(&self, record: mayfly_store::SigningKeyRecord) {
        let mut store = mayfly_store::Store::open(&self.db).unwrap();
        let replaces = store
            .broker_signing_keys()
            .unwrap()
            .into_iter()
            .find(|k| k.alg == record.alg && k.retired_at.is_none())
            .map(|k| k.kid);
        let outcome = store
            .broker_apply(&[mayfly_store::BrokerWrite::AddSigningKey {
                key: record,
                replaces,
            }])
            .unwrap();
        assert_eq!(outcome, vec![mayfly_store::WriteOutcome::Done(1)]);
    }

    /// A form POST to the token endpoint; returns status and JSON.
    pub fn token_request(&self, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> (u16, Value) {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(headers);
        self.raw("POST", "/oauth2/token", &all, body.as_bytes())
    }
}

/// `fields` as the exchange request a broker takes in-process.
pub fn exchange_request(fields: &[(&str, &str)]) -> mayfly_broker::protocol::ExchangeRequest {
    let form: serde_json::Map<String, Value> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    serde_json::from_value(Value::Object(form)).unwrap()
}

/// Exchange fields for `identity` on `task` for `audience`.
pub fn exchange_fields<'a>(
    identity: &'a str,
    task: &'a str,
    audience: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("subject_token", identity),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ("audience", audience),
        ("task_id", task),
    ]
}
