//! The broker's operations, independent of HTTP: start and end tasks,
//! exchange an identity for a credential, introspect and revoke, replace
//! policies (and revoke what they no longer allow), sweep expired leases.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use mayfly_store::{
    BrokerWrite, LeaseRecord, NewAuditEvent, RevokeSelector, Store, TaskFilter, TaskRecord,
    WriteOutcome,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::b64;
use crate::clock::{Clock, Timestamp};
use crate::config::BrokerConfig;
use crate::dpop::DpopVerifier;
use crate::identity::{IdentityVerifier, Workload};
use crate::keys::{self, KeyRing, MasterKey};
use crate::policy::{Action, Policies, PolicyEngine, PolicyRequest};
use crate::token::{self, AccessClaims, Confirmation};
use crate::writer::{WriteError, Writer};

/// RFC 8693's grant type.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693's token type of a JWT.
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// RFC 8693's token type of an ID token (accepted as a subject token too).
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
/// RFC 8693's token type of an access token (what Mayfly issues).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Most expired tasks, and most expired credentials, one sweep closes. A
/// sweep holds the writer, so issuance waits at most for one such batch.
pub const SWEEP_BATCH: u64 = 1000;

/// Why an operation was refused; each maps to an OAuth error and status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// The request is malformed (400 `invalid_request`).
    #[error("{0}")]
    InvalidRequest(String),
    /// The subject token or task is not acceptable (400 `invalid_grant`).
    #[error("{0}")]
    InvalidGrant(String),
    /// The audience or resource is not acceptable (400 `invalid_target`).
    #[error("{0}")]
    InvalidTarget(String),
    /// Not the token-exchange grant (400 `unsupported_grant_type`).
    #[error("{0}")]
    UnsupportedGrantType(String),
    /// Policy denied it (403 `access_denied`).
    #[error("{reason}")]
    AccessDenied {
        /// The denial, for the caller.
        reason: String,
    },
    /// No or wrong credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated but not allowed to touch this (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such task (404).
    #[error("{0}")]
    NotFound(String),
    /// The store failed (503); nothing was written.
    #[error("{0}")]
    Unavailable(String),
    /// Start-up or internal failure.
    #[error("{0}")]
    Internal(String),
}

impl From<WriteError> for BrokerError {
    fn from(e: WriteError) -> Self {
        BrokerError::Unavailable(e.to_string())
    }
}

fn internal(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Internal(e.to_string())
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The admin token.
    Admin,
    /// A configured resource server.
    ResourceServer(String),
    /// A verified workload.
    Workload(Workload),
}

/// `POST /v1/tasks` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartTask {
    /// Why the task runs.
    pub purpose: String,
    /// The person or team answerable for it.
    pub owner: String,
    /// Lifetime in seconds [default from config].
    #[serde(default)]
    pub ttl_seconds: Option<i64>,
    /// Audiences it will ask credentials for.
    pub audiences: Vec<String>,
    /// Tenant [default: the workload's].
    #[serde(default)]
    pub tenant: Option<String>,
}

/// The RFC 8693 request, as form fields.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExchangeRequest {
    /// Must be [`TOKEN_EXCHANGE`].
    #[serde(default)]
    pub grant_type: Option<String>,
    /// The workload's identity token.
    #[serde(default)]
    pub subject_token: Option<String>,
    /// [`JWT_TOKEN_TYPE`] or [`ID_TOKEN_TYPE`].
    #[serde(default)]
    pub subject_token_type: Option<String>,
    /// The resource server's URI.
    #[serde(default)]
    pub resource: Option<String>,
    /// The audience (same role as `resource`).
    #[serde(default)]
    pub audience: Option<String>,
    /// Requested scopes, space-separated.
    #[serde(default)]
    pub scope: Option<String>,
    /// The task (Mayfly's extension).
    #[serde(default)]
    pub task_id: Option<String>,
    /// Requested lifetime in seconds (Mayfly's extension).
    #[serde(default)]
    pub requested_ttl: Option<String>,
    /// Must be absent or [`ACCESS_TOKEN_TYPE`].
    #[serde(default)]
    pub requested_token_type: Option<String>,
}

/// The RFC 8693 response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenResponse {
    /// The credential.
    pub access_token: String,
    /// [`ACCESS_TOKEN_TYPE`].
    pub issued_token_type: String,
    /// `Bearer`, or `DPoP` when bound.
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// Granted scope.
    pub scope: String,
}

/// A credential as shown to people (never the token).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CredentialView {
    /// The token's `jti`.
    pub jti: String,
    /// Its task.
    pub task: String,
    /// Its workload.
    pub workload: String,
    /// Its audience.
    pub audience: String,
    /// Its scope.
    pub scope: String,
    /// Issued at.
    pub issued_at: Timestamp,
    /// Expires at.
    pub expires_at: Timestamp,
    /// Revoked at.
    pub revoked_at: Option<Timestamp>,
    /// Why it was revoked.
    pub revoke_reason: Option<String>,
    /// Usable now.
    pub active: bool,
    /// DPoP-bound.
    pub bound: bool,
}

/// A task as shown to clients.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskView {
    /// Its id.
    pub id: String,
    /// The workload that started it.
    pub workload: String,
    /// Its owner.
    pub owner: String,
    /// Its purpose.
    pub purpose: String,
    /// Its tenant.
    pub tenant: String,
    /// Its audiences.
    pub audiences: Vec<String>,
    /// `live`, `ended` or `expired`.
    pub state: String,
    /// Started at.
    pub started_at: Timestamp,
    /// Expires at.
    pub expires_at: Timestamp,
    /// Ended at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    /// Why it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    /// Its credentials (when shown one by one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Vec<CredentialView>>,
    /// Credentials revoked by the call that returned this view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<u64>,
}

fn task_view(task: &TaskRecord, now: Timestamp) -> TaskView {
    let state = match (task.ended_at, &task.end_reason) {
        (Some(_), Some(reason)) if reason == "expired" => "expired",
        (Some(_), _) => "ended",
        (None, _) if now >= task.expires_at => "expired",
        (None, _) => "live",
    };
    TaskView {
        id: task.id.clone(),
        workload: task.workload.clone(),
        owner: task.owner.clone(),
        purpose: task.purpose.clone(),
        tenant: task.tenant.clone(),
        audiences: serde_json::from_str(&task.audiences).unwrap_or_default(),
        state: state.into(),
        started_at: task.started_at,
        expires_at: task.expires_at,
        ended_at: task.ended_at,
        end_reason: task.end_reason.clone(),
        credentials: None,
        revoked: None,
    }
}

fn credential_view(lease: &LeaseRecord, now: Timestamp) -> CredentialView {
    CredentialView {
        jti: lease.jti.clone(),
        task: lease.task_id.clone(),
        workload: lease.workload.clone(),
        audience: lease.audience.clone(),
        scope: lease.scope.clone(),
        issued_at: lease.issued_at,
        expires_at: lease.expires_at,
        revoked_at: lease.revoked_at,
        revoke_reason: lease.revoke_reason.clone(),
        active: lease.is_active(now),
        bound: lease.cnf_jkt.is_some(),
    }
}

/// Connections for reads, opened as needed and reused.
struct ReadPool {
    target: String,
    idle: Mutex<Vec<Store>>,
}

/// Runs blocking store work off the async workers: the PostgreSQL driver
/// blocks on its own runtime, which tokio forbids inside an async task.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BrokerError> + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BrokerError::Internal(format!("store task failed: {e}")))?
}

impl ReadPool {
    /// Runs `work` on a pooled connection, off the async workers.
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&mut Store) -> Result<T, mayfly_store::StoreError> + Send + 'static,
    ) -> Result<T, BrokerError> {
        let pool = self.clone();
        blocking(move || pool.with(work)).await
    }

    fn with<T>(
        &self,
        work: impl FnOnce(&mut Store) -> Result<T, mayfly_store::StoreError>,
    ) -> Result<T, BrokerError> {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut store = match pooled {
            Some(store) => store,
            None => {
                Store::open(&self.target).map_err(|e| BrokerError::Unavailable(e.to_string()))?
            }
        };
        let result = work(&mut store).map_err(|e| BrokerError::Unavailable(e.to_string()));
        if result.is_ok()
            && let Ok(mut idle) = self.idle.lock()
            && idle.len() < 16
        {
            idle.push(store);
        }
        result
    }
}

/// Where the broker keeps its files and store.
#[derive(Debug, Clone)]
pub struct BrokerPaths {
    /// Mayfly's data directory (master key, admin token).
    pub data_dir: PathBuf,
    /// The store: a SQLite path or a `postgres://` URL.
    pub db: String,
}

/// Secrets the broker checks callers against, stored only as hashes.
struct CallerSecrets {
    admin: [u8; 32],
    resource_servers: HashMap<String, [u8; 32]>,
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Compares two digests in constant time.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The admin token: `MAYFLY_ADMIN_TOKEN`, else the configured file, else
/// `admin-token` in the data directory (created on first start). Returns
/// the token and the file it came from.
pub fn admin_token(
    config: &BrokerConfig,
    data_dir: &Path,
) -> Result<(String, Option<PathBuf>), BrokerError> {
    if let Ok(token) = std::env::var("MAYFLY_ADMIN_TOKEN")
        && !token.trim().is_empty()
    {
        return Ok((token.trim().to_owned(), None));
    }
    let path = config
        .server
        .admin_token_file
        .clone()
        .unwrap_or_else(|| data_dir.join("admin-token"));
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok((text.trim().to_owned(), Some(path))),
        Ok(_) => Err(BrokerError::Internal(format!(
            "the admin token file {} is empty; write a token into it or delete it to have one made",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = b64::encode(&b64::random_bytes::<32>().map_err(internal)?);
            keys::write_private(&path, token.as_bytes()).map_err(|e| {
                BrokerError::Internal(format!(
                    "cannot write the admin token to {}: {e}",
                    path.display()
                ))
            })?;
            Ok((token, Some(path)))
        }
        Err(e) => Err(BrokerError::Internal(format!(
            "cannot read the admin token file {}: {e}",
            path.display()
        ))),
    }
}

fn resource_server_secrets(
    config: &BrokerConfig,
) -> Result<HashMap<String, [u8; 32]>, BrokerError> {
    let mut out = HashMap::new();
    for rs in &config.resource_servers {
        let secret = match (&rs.secret_file, &rs.secret_env) {
            (Some(file), _) => std::fs::read_to_string(file).map_err(|e| {
                BrokerError::Internal(format!(
                    "resource server {}: cannot read {}: {e}",
                    rs.client_id,
                    file.display()
                ))
            })?,
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                BrokerError::Internal(format!(
                    "resource server {}: environment variable {var} is not set",
                    rs.client_id
                ))
            })?,
            (None, None) => continue,
        };
        let secret = secret.trim();
        if secret.len() < 16 {
            return Err(BrokerError::Internal(format!(
                "resource server {}: its secret must be at least 16 characters",
                rs.client_id
            )));
        }
        out.insert(rs.client_id.clone(), digest(secret));
    }
    Ok(out)
}

fn master_key(config: &BrokerConfig, data_dir: &Path) -> Result<MasterKey, BrokerError> {
    if let Ok(text) = std::env::var("MAYFLY_MASTER_KEY")
        && !text.trim().is_empty()
    {
        return MasterKey::from_base64(&text).map_err(internal);
    }
    let path = config
        .tokens
        .master_key_file
        .clone()
        .unwrap_or_else(|| data_dir.join("broker-master.key"));
    MasterKey::load_or_create(&path).map_err(internal)
}

fn event(at: Timestamp, kind: &str, data: serde_json::Value) -> NewAuditEvent {
    NewAuditEvent {
        at,
        kind: kind.to_owned(),
        data: data.to_string(),
    }
}

/// Checks a free-text field: present, bounded, printable.
fn field(name: &str, value: &str, max: usize) -> Result<(), BrokerError> {
    if value.trim().is_empty() {
        return Err(BrokerError::InvalidRequest(format!("{name} is required")));
    }
    if value.len() > max || value.chars().any(char::is_control) {
        return Err(BrokerError::InvalidRequest(format!(
            "{name} must be at most {max} printable characters"
        )));
    }
    Ok(())
}

/// The broker.
pub struct Broker {
    config: BrokerConfig,
    public_url: String,
    clock: Arc<dyn Clock>,
    identity: IdentityVerifier,
    engine: PolicyEngine,
    policies: RwLock<Arc<Policies>>,
    keys: RwLock<Arc<KeyRing>>,
    master: MasterKey,
    writer: Writer,
    readers: Arc<ReadPool>,
    dpop: DpopVerifier,
    secrets: CallerSecrets,
    tasks: Mutex<HashMap<String, Arc<TaskRecord>>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Broker({})", self.public_url)
    }
}

impl Broker {
    /// Opens the store, loads keys and policies, and is ready to serve.
    pub async fn open(
        config: BrokerConfig,
        paths: &BrokerPaths,
        admin_token: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Broker, BrokerError> {
        config.check().map_err(internal)?;
        let db = paths.db.clone();
        let writer = blocking(move || {
            let store = Store::open(&db).map_err(internal)?;
            Writer::start(store).map_err(internal)
        })
        .await?;
        let engine = PolicyEngine::new().map_err(internal)?;
        let policies = match &config.policy.dir {
            Some(dir) => engine.load_dir(dir).map_err(internal)?,
            None => engine.defaults().map_err(internal)?,
        };
        let identity =
            IdentityVerifier::new(config.checked_issuers().map_err(internal)?, clock.clone());
        let master = master_key(&config, &paths.data_dir)?;
        let secrets = CallerSecrets {
            admin: digest(admin_token),
            resource_servers: resource_server_secrets(&config)?,
        };
        let broker = Broker {
            public_url: config.public_url(),
            config,
            clock,
            identity,
            engine,
            policies: RwLock::new(Arc::new(policies)),
            keys: RwLock::new(Arc::new(
                KeyRing::from_records(&[], &master, 0, 0).map_err(internal)?,
            )),
            master,
            writer,
            readers: Arc::new(ReadPool {
                target: paths.db.clone(),
                idle: Mutex::new(Vec::new()),
            }),
            dpop: DpopVerifier::default(),
            secrets,
            tasks: Mutex::new(HashMap::new()),
        };
        broker.refresh_keys().await?;
        let ids = broker.current_policies().ids.clone();
        let origin = broker.current_policies().origin.clone();
        broker
            .writer
            .apply_one(BrokerWrite::Audit(event(
                broker.now(),
                "policy.load",
                json!({"origin": origin, "policies": ids}),
            )))
            .await?;
        Ok(broker)
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Mayfly's public URL (the `iss` of its tokens).
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The configuration in force.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    fn current_policies(&self) -> Arc<Policies> {
        match self.policies.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn current_keys(&self) -> Arc<KeyRing> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The published key set.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::to_value(&self.current_keys().jwks).unwrap_or_else(|_| json!({"keys": []}))
    }

    /// Reloads keys from the store (another replica may have rotated) and
    /// makes a new signing key when there is none or it is due.
    pub async fn refresh_keys(&self) -> Result<(), BrokerError> {
        let now = self.now();
        let keep = self.config.tokens.max_ttl_seconds + 3600;
        let records = self.readers.read(|s| s.broker_signing_keys()).await?;
        let mut ring =
            KeyRing::from_records(&records, &self.master, now, keep).map_err(internal)?;
        let due = now - ring.signer_created_at >= self.config.tokens.key_rotation_days * 86_400;
        if ring.signer().is_none() || due {
            let record = keys::generate(&self.config.tokens.algorithm, &self.master, now)
                .map_err(internal)?;
            self.writer
                .apply_one(BrokerWrite::AddSigningKey(record))
                .await?;
            let records = self.readers.read(|s| s.broker_signing_keys()).await?;
            ring = KeyRing::from_records(&records, &self.master, now, keep).map_err(internal)?;
        }
        if let Ok(mut slot) = self.keys.write() {
            *slot = Arc::new(ring);
        }
        Ok(())
    }

    /// Checks an `Authorization` header value for introspection and
    /// revocation: the admin token (`Bearer`) or a resource server (`Basic`).
    pub fn authenticate_client(&self, authorization: Option<&str>) -> Result<Caller, BrokerError> {
        let unauthorized = || {
            BrokerError::Unauthorized(
                "authenticate with the admin token (Bearer) or a resource server's client id and secret (Basic)"
                    .into(),
            )
        };
        let value = authorization.ok_or_else(unauthorized)?;
        if let Some(token) = value.strip_prefix("Bearer ") {
            return if same(&digest(token.trim()), &self.secrets.admin) {
                Ok(Caller::Admin)
            } else {
                Err(unauthorized())
            };
        }
        if let Some(encoded) = value.strip_prefix("Basic ") {
            use base64::Engine;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(unauthorized)?;
            let (id, secret) = decoded.split_once(':').ok_or_else(unauthorized)?;
            return match self.secrets.resource_servers.get(id) {
                Some(expected) if same(&digest(secret), expected) => {
                    Ok(Caller::ResourceServer(id.to_owned()))
                }
                _ => Err(unauthorized()),
            };
        }
        Err(unauthorized())
    }

    /// Checks a `Bearer` value: the admin token or a workload identity token.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, BrokerError> {
        let token = authorization
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                BrokerError::Unauthorized(
                    "send the workload's identity token (or the admin token) as Authorization: Bearer".into(),
                )
            })?;
        if same(&digest(token), &self.secrets.admin) {
            return Ok(Caller::Admin);
        }
        self.identity
            .verify(token)
            .map(Caller::Workload)
            .map_err(|e| BrokerError::Unauthorized(e.to_string()))
    }

    /// Checks the admin token.
    pub fn authenticate_admin(&self, authorization: Option<&str>) -> Result<(), BrokerError> {
        match self.authenticate_client(authorization) {
            Ok(Caller::Admin) => Ok(()),
            Ok(_) => Err(BrokerError::Forbidden("this needs the admin token".into())),
            Err(e) => Err(e),
        }
    }

    async fn deny(&self, kind: &str, data: serde_json::Value) {
        // A denial that cannot be recorded is still a denial.
        let _ = self
            .writer
            .apply_one(BrokerWrite::Audit(event(self.now(), kind, data)))
            .await;
    }

    /// Starts a task for a verified workload.
    pub async fn start_task(
        &self,
        workload: &Workload,
        request: StartTask,
        source_ip: &str,
    ) -> Result<TaskView, BrokerError> {
        let now = self.now();
        let tokens = &self.config.tokens;
        field("purpose", &request.purpose, 200)?;
        field("owner", &request.owner, 200)?;
        if request.audiences.is_empty() || request.audiences.len() > 32 {
            return Err(BrokerError::InvalidRequest(
                "audiences must name 1 to 32 audiences the task will ask credentials for".into(),
            ));
        }
        for audience in &request.audiences {
            field("each audience", audience, 512)?;
        }
        let ttl = request
            .ttl_seconds
            .unwrap_or(tokens.default_task_ttl_seconds);
        if ttl <= 0 || ttl > tokens.max_task_ttl_seconds {
            return Err(BrokerError::InvalidRequest(format!(
                "ttl_seconds must be between 1 and {}",
                tokens.max_task_ttl_seconds
            )));
        }
        let tenant = request
            .tenant
            .clone()
            .unwrap_or_else(|| workload.tenant.clone());
        if tenant != workload.tenant {
            return Err(BrokerError::Forbidden(format!(
                "workload {} acts for tenant {}, not {tenant}",
                workload.id, workload.tenant
            )));
        }
        let policies = self.current_policies();
        for audience in &request.audiences {
            let decision = self.engine.decide(
                &policies,
                &PolicyRequest {
                    workload,
                    action: Action::StartTask,
                    audience,
                    purpose: &request.purpose,
                    owner: &request.owner,
                    tenant: &tenant,
                    audiences: &request.audiences,
                    scope: &[],
                    requested_ttl: ttl,
                    now,
                    task_age: 0,
                    dpop: false,
                    source_ip,
                },
            );
            if !decision.allowed {
                let reason = format!(
                    "starting a task for {audience} is denied: {}",
                    decision.reason()
                );
                self.deny(
                    "task.deny",
                    json!({"workload": workload.id, "audience": audience, "owner": request.owner,
                           "purpose": request.purpose, "policies": decision.policies, "errors": decision.errors}),
                )
                .await;
                return Err(BrokerError::AccessDenied { reason });
            }
        }
        let id = b64::random_id().map_err(internal)?;
        let task = TaskRecord {
            id: id.clone(),
            workload: workload.id.clone(),
            issuer: workload.issuer.clone(),
            owner: request.owner.clone(),
            purpose: request.purpose.clone(),
            tenant,
            audiences: serde_json::to_string(&request.audiences).map_err(internal)?,
            attributes: workload.attributes_json(),
            source_addr: source_ip.to_owned(),
            started_at: now,
            expires_at: now + ttl,
            ended_at: None,
            end_reason: None,
        };
        let audit = event(
            now,
            "task.start",
            json!({"task": id, "workload": workload.id, "owner": task.owner, "purpose": task.purpose,
                   "tenant": task.tenant, "audiences": request.audiences, "expires_at": task.expires_at}),
        );
        self.writer
            .apply_one(BrokerWrite::StartTask {
                task: task.clone(),
                audit,
            })
            .await?;
        let view = task_view(&task, now);
        if let Ok(mut cache) = self.tasks.lock() {
            if cache.len() > 100_000 {
                cache.retain(|_, t| t.expires_at > now);
            }
            cache.insert(id, Arc::new(task));
        }
        Ok(view)
    }

    /// A task as the store has it now.
    async fn stored_task(&self, id: &str) -> Result<TaskRecord, BrokerError> {
        let owned = id.to_owned();
        self.readers
            .read(move |s| s.broker_task(&owned))
            .await?
            .ok_or_else(|| {
                BrokerError::NotFound(format!(
                    "task {id} does not exist; start one with POST /v1/tasks"
                ))
            })
    }

    async fn load_task(&self, id: &str) -> Result<Arc<TaskRecord>, BrokerError> {
        if let Some(task) = self.tasks.lock().ok().and_then(|c| c.get(id).cloned()) {
            return Ok(task);
        }
        let task = Arc::new(self.stored_task(id).await?);
        if task.ended_at.is_none()
            && let Ok(mut cache) = self.tasks.lock()
        {
            cache.insert(id.to_owned(), task.clone());
        }
        Ok(task)
    }

    fn may_see(caller: &Caller, task: &TaskRecord) -> Result<(), BrokerError> {
        match caller {
            Caller::Admin => Ok(()),
            Caller::Workload(w) if w.id == task.workload && w.issuer == task.issuer => Ok(()),
            _ => Err(BrokerError::Forbidden(format!(
                "task {} belongs to another workload; only it or an admin may do this",
                task.id
            ))),
        }
    }

    /// A task with its credentials.
    pub async fn show_task(&self, caller: &Caller, id: &str) -> Result<TaskView, BrokerError> {
        let now = self.now();
        let task = self.stored_task(id).await?;
        Self::may_see(caller, &task)?;
        let owned = id.to_owned();
        let leases = self
            .readers
            .read(move |s| s.broker_task_leases(&owned))
            .await?;
        let mut view = task_view(&task, now);
        view.credentials = Some(leases.iter().map(|l| credential_view(l, now)).collect());
        Ok(view)
    }

    /// Ends a task and revokes all its credentials at once.
    pub async fn end_task(&self, caller: &Caller, id: &str) -> Result<TaskView, BrokerError> {
        let now = self.now();
        let task = self.stored_task(id).await?;
        if let Err(e) = Self::may_see(caller, &task) {
            if let Caller::Workload(w) = caller {
                self.deny("task.end.deny", json!({"task": id, "workload": w.id}))
                    .await;
            }
            return Err(e);
        }
        let by = match caller {
            Caller::Admin => "admin".to_owned(),
            Caller::Workload(w) => w.id.clone(),
            Caller::ResourceServer(rs) => rs.clone(),
        };
        let outcome = self
            .writer
            .apply_one(BrokerWrite::EndTask {
                task_id: id.to_owned(),
                at: now,
                reason: "ended".into(),
                audit: event(
                    now,
                    "task.end",
                    json!({"task": id, "by": by, "owner": task.owner}),
                ),
            })
            .await?;
        if let Ok(mut cache) = self.tasks.lock() {
            cache.remove(id);
        }
        match outcome {
            WriteOutcome::Done(revoked) => {
                let mut view = self.show_task(&Caller::Admin, id).await?;
                view.revoked = Some(revoked);
                Ok(view)
            }
            WriteOutcome::Refused(why) => Err(BrokerError::InvalidRequest(why)),
        }
    }

    /// RFC 8693 token exchange.
    pub async fn exchange(
        &self,
        request: ExchangeRequest,
        dpop_proof: Option<&str>,
        source_ip: &str,
    ) -> Result<TokenResponse, BrokerError> {
        let now = self.now();
        match request.grant_type.as_deref() {
            Some(TOKEN_EXCHANGE) => {}
            Some(other) => {
                return Err(BrokerError::UnsupportedGrantType(format!(
                    "grant_type {other:?} is not supported; use {TOKEN_EXCHANGE}"
                )));
            }
            None => {
                return Err(BrokerError::InvalidRequest(format!(
                    "grant_type is required ({TOKEN_EXCHANGE})"
                )));
            }
        }
        let subject = request
            .subject_token
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                BrokerError::InvalidRequest(
                    "subject_token is required: the workload's identity JWT".into(),
                )
            })?;
        match request.subject_token_type.as_deref() {
            Some(JWT_TOKEN_TYPE | ID_TOKEN_TYPE) => {}
            _ => {
                return Err(BrokerError::InvalidRequest(format!(
                    "subject_token_type must be {JWT_TOKEN_TYPE}"
                )));
            }
        }
        if let Some(kind) = request.requested_token_type.as_deref()
            && kind != ACCESS_TOKEN_TYPE
            && kind != JWT_TOKEN_TYPE
        {
            return Err(BrokerError::InvalidRequest(format!(
                "requested_token_type {kind:?} is not issued; Mayfly issues {ACCESS_TOKEN_TYPE}"
            )));
        }
        let audience = match (request.resource.as_deref(), request.audience.as_deref()) {
            (Some(r), Some(a)) if r != a => {
                return Err(BrokerError::InvalidTarget(
                    "resource and audience name different targets; ask for one per token".into(),
                ));
            }
            (Some(r), _) => r,
            (None, Some(a)) => a,
            (None, None) => {
                return Err(BrokerError::InvalidTarget(
                    "name the target with resource or audience".into(),
                ));
            }
        };
        let task_id = request
            .task_id
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                BrokerError::InvalidRequest(
                    "task_id is required: start a task with POST /v1/tasks".into(),
                )
            })?;
        let workload = self
            .identity
            .verify(subject)
            .map_err(|e| BrokerError::InvalidGrant(e.to_string()))?;
        let jkt = match dpop_proof {
            Some(proof) => Some(
                self.dpop
                    .verify(
                        proof,
                        "POST",
                        &format!("{}/oauth2/token", self.public_url),
                        now,
                    )
                    .map_err(|e| BrokerError::InvalidRequest(e.to_string()))?,
            ),
            None => None,
        };
        let task = self.load_task(task_id).await.map_err(|e| match e {
            BrokerError::NotFound(m) => BrokerError::InvalidGrant(m),
            other => other,
        })?;
        if task.workload != workload.id || task.issuer != workload.issuer {
            self.deny(
                "token.deny",
                json!({"task": task_id, "workload": workload.id, "reason": "task of another workload"}),
            )
            .await;
            return Err(BrokerError::InvalidGrant(format!(
                "task {task_id} belongs to another workload"
            )));
        }
        if task.ended_at.is_some() || now >= task.expires_at {
            return Err(BrokerError::InvalidGrant(format!(
                "task {task_id} has ended; start a new task"
            )));
        }
        let audiences: Vec<String> = serde_json::from_str(&task.audiences).unwrap_or_default();
        if !audiences.iter().any(|a| a == audience) {
            return Err(BrokerError::InvalidTarget(format!(
                "task {task_id} did not name audience {audience}; its audiences are {}",
                audiences.join(", ")
            )));
        }
        let scopes: Vec<String> = request
            .scope
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if scopes.len() > 32
            || scopes.iter().any(|s| {
                s.len() > 128 || s.chars().any(|c| c.is_control() || c == '"' || c == '\\')
            })
        {
            return Err(BrokerError::InvalidRequest(
                "scope must be up to 32 scope tokens (RFC 6749 syntax)".into(),
            ));
        }
        let tokens = &self.config.tokens;
        let requested = match request.requested_ttl.as_deref() {
            None | Some("") => tokens.default_ttl_seconds,
            Some(text) => text.parse::<i64>().ok().filter(|t| *t > 0).ok_or_else(|| {
                BrokerError::InvalidRequest(
                    "requested_ttl must be a positive number of seconds".into(),
                )
            })?,
        };
        let decision = self.engine.decide(
            &self.current_policies(),
            &PolicyRequest {
                workload: &workload,
                action: Action::Exchange,
                audience,
                purpose: &task.purpose,
                owner: &task.owner,
                tenant: &task.tenant,
                audiences: &audiences,
                scope: &scopes,
                requested_ttl: requested,
                now,
                task_age: now - task.started_at,
                dpop: jkt.is_some(),
                source_ip,
            },
        );
        if !decision.allowed {
            self.deny(
                "token.deny",
                json!({"task": task_id, "workload": workload.id, "audience": audience,
                       "policies": decision.policies, "errors": decision.errors}),
            )
            .await;
            return Err(BrokerError::AccessDenied {
                reason: format!(
                    "a credential for {audience} is denied: {}",
                    decision.reason()
                ),
            });
        }
        let lifetime = requested
            .min(tokens.max_ttl_seconds)
            .min(task.expires_at - now)
            .min(decision.max_ttl.unwrap_or(i64::MAX));
        let scope = scopes.join(" ");
        let jti = b64::time_ordered_id().map_err(internal)?;
        let claims = AccessClaims {
            iss: self.public_url.clone(),
            sub: workload.id.clone(),
            aud: audience.to_owned(),
            exp: now + lifetime,
            iat: now,
            nbf: now,
            jti: jti.clone(),
            client_id: workload.issuer.clone(),
            scope: scope.clone(),
            task: task.id.clone(),
            tenant: task.tenant.clone(),
            cnf: jkt.clone().map(|jkt| Confirmation { jkt }),
        };
        let access_token = token::sign(&claims, &self.current_keys()).map_err(internal)?;
        let lease = LeaseRecord {
            jti: jti.clone(),
            task_id: task.id.clone(),
            workload: workload.id.clone(),
            owner: task.owner.clone(),
            tenant: task.tenant.clone(),
            audience: audience.to_owned(),
            scope: scope.clone(),
            client_id: workload.issuer.clone(),
            cnf_jkt: jkt.clone(),
            source_addr: source_ip.to_owned(),
            issued_at: now,
            expires_at: now + lifetime,
            revoked_at: None,
            revoke_reason: None,
        };
        let audit = event(
            now,
            "token.issue",
            json!({"jti": jti, "task": task.id, "workload": workload.id, "audience": audience,
                   "exp": now + lifetime, "policies": decision.policies, "bound": jkt.is_some()}),
        );
        match self
            .writer
            .apply_one(BrokerWrite::IssueLease { lease, audit })
            .await?
        {
            WriteOutcome::Done(_) => Ok(TokenResponse {
                access_token,
                issued_token_type: ACCESS_TOKEN_TYPE.into(),
                token_type: if jkt.is_some() { "DPoP" } else { "Bearer" }.into(),
                expires_in: lifetime,
                scope,
            }),
            WriteOutcome::Refused(_) => {
                if let Ok(mut cache) = self.tasks.lock() {
                    cache.remove(task_id);
                }
                Err(BrokerError::InvalidGrant(format!(
                    "task {task_id} has ended; start a new task"
                )))
            }
        }
    }

    /// RFC 7662 introspection: active only if Mayfly signed it and its lease
    /// is live in the store right now.
    pub async fn introspect(&self, token: &str) -> Result<serde_json::Value, BrokerError> {
        let now = self.now();
        let Ok(claims) = token::verify(token, &self.current_keys(), &self.public_url) else {
            return Ok(json!({"active": false}));
        };
        let jti = claims.jti.clone();
        let lease = self.readers.read(move |s| s.broker_lease(&jti)).await?;
        match lease {
            Some(lease) if lease.is_active(now) && claims.exp > now => {
                let mut out = json!({
                    "active": true,
                    "iss": claims.iss,
                    "sub": claims.sub,
                    "aud": claims.aud,
                    "exp": claims.exp,
                    "iat": claims.iat,
                    "nbf": claims.nbf,
                    "jti": claims.jti,
                    "client_id": claims.client_id,
                    "scope": claims.scope,
                    "token_type": if claims.cnf.is_some() { "DPoP" } else { "Bearer" },
                    "task": claims.task,
                    "tenant": claims.tenant,
                    "owner": lease.owner,
                });
                if let (Some(cnf), Some(object)) = (claims.cnf, out.as_object_mut()) {
                    object.insert("cnf".into(), json!({"jkt": cnf.jkt}));
                }
                Ok(out)
            }
            _ => Ok(json!({"active": false})),
        }
    }

    /// RFC 7009 revocation of one token (unknown tokens are not an error).
    pub async fn revoke_token(&self, caller: &Caller, token: &str) -> Result<(), BrokerError> {
        let now = self.now();
        let Ok(claims) = token::verify(token, &self.current_keys(), &self.public_url) else {
            return Ok(());
        };
        let by = match caller {
            Caller::Admin => "admin".to_owned(),
            Caller::ResourceServer(id) => id.clone(),
            Caller::Workload(w) => w.id.clone(),
        };
        self.writer
            .apply_one(BrokerWrite::Revoke {
                selector: RevokeSelector::Lease(claims.jti.clone()),
                at: now,
                reason: format!("revoked by {by}"),
                audit: event(
                    now,
                    "token.revoke",
                    json!({"jti": claims.jti, "task": claims.task, "by": by}),
                ),
            })
            .await?;
        Ok(())
    }

    /// Revokes by task, workload, owner or `jti` (admin).
    pub async fn admin_revoke(
        &self,
        selector: RevokeSelector,
        reason: &str,
    ) -> Result<u64, BrokerError> {
        let now = self.now();
        let (what, value) = match &selector {
            RevokeSelector::Lease(v) => ("jti", v.clone()),
            RevokeSelector::Task(v) => ("task", v.clone()),
            RevokeSelector::Workload(v) => ("workload", v.clone()),
            RevokeSelector::Owner(v) => ("owner", v.clone()),
        };
        let outcome = self
            .writer
            .apply_one(BrokerWrite::Revoke {
                selector,
                at: now,
                reason: reason.to_owned(),
                audit: event(
                    now,
                    "token.revoke",
                    json!({what: value, "by": "admin", "reason": reason}),
                ),
            })
            .await?;
        if let Ok(mut cache) = self.tasks.lock() {
            match what {
                "task" => {
                    cache.remove(&value);
                }
                "workload" => cache.retain(|_, t| t.workload != value),
                "owner" => cache.retain(|_, t| t.owner != value),
                _ => {}
            }
        }
        Ok(match outcome {
            WriteOutcome::Done(n) => n,
            WriteOutcome::Refused(_) => 0,
        })
    }

    /// Tasks (admin).
    pub async fn list_tasks(&self, filter: TaskFilter) -> Result<Vec<TaskView>, BrokerError> {
        let now = self.now();
        Ok(self
            .readers
            .read(move |s| s.broker_tasks(&filter))
            .await?
            .iter()
            .map(|t| task_view(t, now))
            .collect())
    }

    /// Credentials (admin).
    pub async fn list_credentials(
        &self,
        live_only: bool,
        limit: i64,
    ) -> Result<Vec<CredentialView>, BrokerError> {
        let now = self.now();
        Ok(self
            .readers
            .read(move |s| s.broker_leases(live_only, limit))
            .await?
            .iter()
            .map(|l| credential_view(l, now))
            .collect())
    }

    /// Validates and installs a new policy set; the old set stays in force
    /// if it does not validate. Live credentials the new set denies are
    /// revoked. Returns the policy ids and how many were revoked.
    pub async fn install_policies(
        &self,
        policies: Policies,
    ) -> Result<(Vec<String>, u64), BrokerError> {
        let ids = policies.ids.clone();
        let origin = policies.origin.clone();
        if let Ok(mut slot) = self.policies.write() {
            *slot = Arc::new(policies);
        }
        self.writer
            .apply_one(BrokerWrite::Audit(event(
                self.now(),
                "policy.load",
                json!({"origin": origin, "policies": ids}),
            )))
            .await?;
        let revoked = self.reevaluate().await?;
        Ok((ids, revoked))
    }

    /// Replaces the policy files of the configured directory (admin API).
    pub async fn replace_policies(
        &self,
        files: Vec<(String, String)>,
    ) -> Result<(Vec<String>, u64), BrokerError> {
        let dir = self.config.policy.dir.clone().ok_or_else(|| {
            BrokerError::InvalidRequest("no policy directory is configured ([policy] dir); the embedded defaults cannot be replaced".into())
        })?;
        for (name, _) in &files {
            let stem = name.strip_suffix(".cedar").unwrap_or_default();
            if stem.is_empty()
                || !stem
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(BrokerError::InvalidRequest(format!(
                    "policy file name {name:?} must be letters, digits, - or _ followed by .cedar"
                )));
            }
        }
        let policies = self
            .engine
            .load_texts(&files, &dir.display().to_string())
            .map_err(|e| BrokerError::InvalidRequest(e.to_string()))?;
        write_policy_dir(&dir, &files).map_err(|e| {
            BrokerError::Internal(format!(
                "cannot write the policies to {}: {e}",
                dir.display()
            ))
        })?;
        self.install_policies(policies).await
    }

    /// Reads the policy directory again (SIGHUP, admin API).
    pub async fn reload_policies(&self) -> Result<(Vec<String>, u64), BrokerError> {
        let policies = match &self.config.policy.dir {
            Some(dir) => self.engine.load_dir(dir),
            None => self.engine.defaults(),
        }
        .map_err(|e| BrokerError::InvalidRequest(e.to_string()))?;
        self.install_policies(policies).await
    }

    /// Decides every live credential again under the policies in force and
    /// revokes those now denied.
    pub async fn reevaluate(&self) -> Result<u64, BrokerError> {
        let now = self.now();
        let policies = self.current_policies();
        let grants = self
            .readers
            .read(move |s| s.broker_live_grants(now))
            .await?;
        let mut revoked = 0;
        for grant in grants {
            let task = &grant.task;
            let Some(workload) = Workload::from_attributes(&task.workload, &task.attributes) else {
                continue;
            };
            let audiences: Vec<String> = serde_json::from_str(&task.audiences).unwrap_or_default();
            let scopes: Vec<String> = grant
                .scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            let decision = self.engine.decide(
                &policies,
                &PolicyRequest {
                    workload: &workload,
                    action: Action::Exchange,
                    audience: &grant.audience,
                    purpose: &task.purpose,
                    owner: &task.owner,
                    tenant: &task.tenant,
                    audiences: &audiences,
                    scope: &scopes,
                    requested_ttl: grant.lifetime,
                    now,
                    task_age: now - task.started_at,
                    dpop: grant.bound,
                    source_ip: &task.source_addr,
                },
            );
            if decision.allowed {
                continue;
            }
            let reason = format!("policy change: {}", decision.reason());
            if let WriteOutcome::Done(n) = self
                .writer
                .apply_one(BrokerWrite::RevokeLeases {
                    jtis: grant.jtis.clone(),
                    at: now,
                    reason: reason.clone(),
                    audit: event(
                        now,
                        "token.revoke",
                        json!({"task": task.id, "audience": grant.audience, "by": "policy", "policies": decision.policies}),
                    ),
                })
                .await?
            {
                revoked += n;
            }
        }
        Ok(revoked)
    }

    /// Closes expired tasks and credentials; returns how many of each.
    pub async fn sweep(&self) -> Result<(u64, u64), BrokerError> {
        let now = self.now();
        let swept = self.writer.sweep(now, SWEEP_BATCH as i64).await?;
        if swept.0 > 0
            && let Ok(mut cache) = self.tasks.lock()
        {
            cache.retain(|_, t| t.expires_at > now);
        }
        Ok(swept)
    }

    /// RFC 8414 metadata.
    pub fn metadata(&self) -> serde_json::Value {
        let base = &self.public_url;
        json!({
            "issuer": base,
            "token_endpoint": format!("{base}/oauth2/token"),
            "introspection_endpoint": format!("{base}/oauth2/introspect"),
            "revocation_endpoint": format!("{base}/oauth2/revoke"),
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "grant_types_supported": [TOKEN_EXCHANGE],
            "token_endpoint_auth_methods_supported": ["none"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "bearer"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "bearer"],
            "response_types_supported": [],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
            "id_token_signing_alg_values_supported": [self.config.tokens.algorithm],
            "dpop_signing_alg_values_supported": ["ES256", "EdDSA", "RS256"],
            "access_token_signing_alg_values_supported": [self.config.tokens.algorithm],
        })
    }
}

/// Writes policy files next to each other and removes the old ones: new
/// files land under temporary names and are renamed, so a crash leaves
/// either file whole.
fn write_policy_dir(dir: &Path, files: &[(String, String)]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in files {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, dir.join(name))?;
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".cedar") && !files.iter().any(|(n, _)| *n == name) {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}
