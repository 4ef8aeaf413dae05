//! The wire types of the broker's API and their validation: what a request
//! must hold before the broker looks at it, checked without the store or
//! the clock, so every rule here is a unit test.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::error::BrokerError;
use mayfly_store::{LeaseRecord, TaskRecord};

/// RFC 8693's grant type.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693's token type of a JWT.
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// RFC 8693's token type of an ID token (accepted as a subject token too).
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
/// RFC 8693's token type of an access token (what Mayfly issues).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Most audiences a task may name.
pub const MAX_AUDIENCES: usize = 32;
/// Most scope tokens one credential may carry.
pub const MAX_SCOPES: usize = 32;

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

/// A task start whose fields are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidStartTask {
    /// Why the task runs.
    pub purpose: String,
    /// Who answers for it.
    pub owner: String,
    /// Its lifetime, in seconds.
    pub ttl: i64,
    /// Its audiences.
    pub audiences: Vec<String>,
    /// The tenant asked for, if any.
    pub tenant: Option<String>,
}

impl StartTask {
    /// Checks the fields: purpose and owner present and printable, 1 to 32
    /// audiences, a lifetime within `1..=max_ttl` (`default_ttl` when none
    /// is asked for).
    pub fn validate(self, default_ttl: i64, max_ttl: i64) -> Result<ValidStartTask, BrokerError> {
        field("purpose", &self.purpose, 200)?;
        field("owner", &self.owner, 200)?;
        if self.audiences.is_empty() || self.audiences.len() > MAX_AUDIENCES {
            return Err(BrokerError::InvalidRequest(format!(
                "audiences must name 1 to {MAX_AUDIENCES} audiences the task will ask credentials for"
            )));
        }
        for audience in &self.audiences {
            field("each audience", audience, 512)?;
        }
        let ttl = self.ttl_seconds.unwrap_or(default_ttl);
        if ttl <= 0 || ttl > max_ttl {
            return Err(BrokerError::InvalidRequest(format!(
                "ttl_seconds must be between 1 and {max_ttl}"
            )));
        }
        if let Some(tenant) = &self.tenant {
            field("tenant", tenant, 200)?;
        }
        Ok(ValidStartTask {
            purpose: self.purpose,
            owner: self.owner,
            ttl,
            audiences: self.audiences,
            tenant: self.tenant,
        })
    }
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

/// An exchange whose fields are checked: everything the broker needs, in
/// the types it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidExchange {
    /// The workload's identity token (not verified yet).
    pub subject_token: String,
    /// The target of the credential.
    pub audience: String,
    /// The task.
    pub task_id: String,
    /// Requested scope tokens.
    pub scopes: Vec<String>,
    /// Requested lifetime in seconds, if one was asked for.
    pub requested_ttl: Option<i64>,
    /// Whether an OpenID Connect ID token is asked for (for workload
    /// identity federation) instead of an access token.
    pub id_token: bool,
}

impl ExchangeRequest {
    /// Checks the request's shape (RFC 8693 section 2.1 and Mayfly's
    /// extensions), in the order a client would fix them.
    pub fn validate(self) -> Result<ValidExchange, BrokerError> {
        match self.grant_type.as_deref() {
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
        let subject_token = self
            .subject_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                BrokerError::InvalidRequest(
                    "subject_token is required: the workload's identity JWT".into(),
                )
            })?;
        match self.subject_token_type.as_deref() {
            Some(JWT_TOKEN_TYPE | ID_TOKEN_TYPE) => {}
            _ => {
                return Err(BrokerError::InvalidRequest(format!(
                    "subject_token_type must be {JWT_TOKEN_TYPE}"
                )));
            }
        }
        let id_token = match self.requested_token_type.as_deref() {
            None | Some(ACCESS_TOKEN_TYPE | JWT_TOKEN_TYPE) => false,
            Some(ID_TOKEN_TYPE) => true,
            Some(kind) => {
                return Err(BrokerError::InvalidRequest(format!(
                    "requested_token_type {kind:?} is not issued; Mayfly issues {ACCESS_TOKEN_TYPE} and (with [federation]) {ID_TOKEN_TYPE}"
                )));
            }
        };
        let audience = match (self.resource, self.audience) {
            (Some(r), Some(a)) if r != a => {
                return Err(BrokerError::InvalidTarget(
                    "resource and audience name different targets; ask for one per token".into(),
                ));
            }
            (Some(target), _) | (None, Some(target)) => target,
            (None, None) => {
                return Err(BrokerError::InvalidTarget(
                    "name the target with resource or audience".into(),
                ));
            }
        };
        if audience.is_empty() || audience.len() > 512 || audience.chars().any(char::is_control) {
            return Err(BrokerError::InvalidTarget(
                "the audience must be 1 to 512 printable characters".into(),
            ));
        }
        let task_id = self.task_id.filter(|t| !t.is_empty()).ok_or_else(|| {
            BrokerError::InvalidRequest(
                "task_id is required: start a task with POST /v1/tasks (`mayfly task start`)"
                    .into(),
            )
        })?;
        let scopes = parse_scope(self.scope.as_deref().unwrap_or_default())?;
        let requested_ttl = match self.requested_ttl.as_deref() {
            None | Some("") => None,
            Some(text) => Some(text.parse::<i64>().ok().filter(|t| *t > 0).ok_or_else(|| {
                BrokerError::InvalidRequest(
                    "requested_ttl must be a positive number of seconds".into(),
                )
            })?),
        };
        Ok(ValidExchange {
            subject_token,
            audience,
            task_id,
            scopes,
            requested_ttl,
            id_token,
        })
    }
}

/// Splits a scope string into its tokens (RFC 6749 section 3.3: printable
/// ASCII without `"` and `\`, separated by spaces), at most [`MAX_SCOPES`].
pub fn parse_scope(scope: &str) -> Result<Vec<String>, BrokerError> {
    let scopes: Vec<String> = scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let bad_token = |s: &String| {
        s.len() > 128
            || !s
                .bytes()
                .all(|b| b == b'!' || ((0x23..=0x7e).contains(&b) && b != b'\\'))
    };
    if scopes.len() > MAX_SCOPES || scopes.iter().any(bad_token) {
        return Err(BrokerError::InvalidRequest(format!(
            "scope must be up to {MAX_SCOPES} scope tokens (RFC 6749 syntax)"
        )));
    }
    Ok(scopes)
}

/// Checks a free-text field: present, bounded, printable.
pub fn field(name: &str, value: &str, max: usize) -> Result<(), BrokerError> {
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

/// The RFC 8693 response.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
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
    /// For an upstream's audience: the credential the upstream made for
    /// the task (released when the access token's lease ends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_credential: Option<UpstreamCredential>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("upstream_credential", &self.upstream_credential)
            .finish_non_exhaustive()
    }
}

/// A credential an upstream made for one task.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UpstreamCredential {
    /// A PostgreSQL login role.
    Postgres {
        /// The server's host.
        host: String,
        /// Its port.
        port: u16,
        /// The database.
        database: String,
        /// The role.
        user: String,
        /// Its password.
        password: String,
        /// When it stops working (Unix seconds).
        expires_at: i64,
    },
    /// A GitHub App installation token.
    Github {
        /// The token.
        token: String,
        /// When GitHub stops accepting it (Unix seconds).
        expires_at: i64,
        /// The permissions it carries.
        permissions: std::collections::BTreeMap<String, String>,
        /// The repositories it reaches (none listed: all of the installation's).
        repositories: Vec<String>,
    },
}

impl UpstreamCredential {
    /// When it stops working.
    pub fn expires_at(&self) -> i64 {
        match self {
            UpstreamCredential::Postgres { expires_at, .. }
            | UpstreamCredential::Github { expires_at, .. } => *expires_at,
        }
    }

    /// The variables a command gets it in: `DATABASE_URL` and libpq's
    /// `PG*`, or `GITHUB_TOKEN` and `GH_TOKEN`.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        match self {
            UpstreamCredential::Postgres {
                host,
                port,
                database,
                user,
                password,
                ..
            } => {
                // RFC 3986 unreserved characters stay as they are.
                const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
                    .remove(b'-')
                    .remove(b'.')
                    .remove(b'_')
                    .remove(b'~');
                let encode =
                    |s: &str| percent_encoding::utf8_percent_encode(s, COMPONENT).to_string();
                vec![
                    (
                        "DATABASE_URL",
                        format!(
                            "postgresql://{}:{}@{}:{port}/{}",
                            encode(user),
                            encode(password),
                            if host.contains(':') {
                                format!("[{host}]")
                            } else {
                                host.clone()
                            },
                            encode(database)
                        ),
                    ),
                    ("PGHOST", host.clone()),
                    ("PGPORT", port.to_string()),
                    ("PGUSER", user.clone()),
                    ("PGPASSWORD", password.clone()),
                    ("PGDATABASE", database.clone()),
                ]
            }
            UpstreamCredential::Github { token, .. } => {
                vec![("GITHUB_TOKEN", token.clone()), ("GH_TOKEN", token.clone())]
            }
        }
    }
}

impl std::fmt::Debug for UpstreamCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamCredential::Postgres {
                host,
                port,
                database,
                user,
                expires_at,
                ..
            } => write!(
                f,
                "Postgres {{ {user}@{host}:{port}/{database}, expires_at: {expires_at}, password: .. }}"
            ),
            UpstreamCredential::Github {
                expires_at,
                permissions,
                repositories,
                ..
            } => write!(
                f,
                "Github {{ expires_at: {expires_at}, permissions: {permissions:?}, repositories: {repositories:?}, token: .. }}"
            ),
        }
    }
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

impl CredentialView {
    /// The view of a lease at `now`.
    pub fn of(lease: &LeaseRecord, now: Timestamp) -> CredentialView {
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
    /// What it did through the injecting proxy, per custody entry (when
    /// shown one by one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_usage: Option<Vec<ProxyUsageView>>,
}

/// A task's use of one custody entry through the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyUsageView {
    /// The entry.
    pub entry: String,
    /// Requests forwarded.
    pub requests: i64,
    /// Request body bytes sent upstream.
    pub bytes_up: i64,
    /// Answer body bytes returned.
    pub bytes_down: i64,
    /// When the last one ended.
    pub last_at: Timestamp,
}

impl TaskView {
    /// The view of a task at `now`.
    pub fn of(task: &TaskRecord, now: Timestamp) -> TaskView {
        let state = match (task.ended_at, task.end_reason.as_deref()) {
            (Some(_), Some("expired")) => "expired",
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
            audiences: task.audiences.clone(),
            state: state.into(),
            started_at: task.started_at,
            expires_at: task.expires_at,
            ended_at: task.ended_at,
            end_reason: task.end_reason.clone(),
            credentials: None,
            revoked: None,
            proxy_usage: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange() -> ExchangeRequest {
        ExchangeRequest {
            grant_type: Some(TOKEN_EXCHANGE.into()),
            subject_token: Some("a.b.c".into()),
            subject_token_type: Some(JWT_TOKEN_TYPE.into()),
            audience: Some("https://api.test".into()),
            task_id: Some("t1".into()),
            ..ExchangeRequest::default()
        }
    }

    fn kind(e: &BrokerError) -> &'static str {
        match e {
            BrokerError::InvalidRequest(_) => "invalid_request",
            BrokerError::InvalidTarget(_) => "invalid_target",
            BrokerError::UnsupportedGrantType(_) => "unsupported_grant_type",
            _ => "other",
        }
    }

    #[test]
    fn a_complete_exchange_validates() {
        let mut request = exchange();
        request.scope = Some("read  write".into());
        request.requested_ttl = Some("60".into());
        let valid = request.validate().unwrap();
        assert_eq!(valid.audience, "https://api.test");
        assert_eq!(valid.scopes, vec!["read", "write"]);
        assert_eq!(valid.requested_ttl, Some(60));
    }

    #[test]
    fn each_missing_or_wrong_field_is_named() {
        type Change = Box<dyn Fn(&mut ExchangeRequest)>;
        let cases: Vec<(Change, &str, &str)> = vec![
            (
                Box::new(|r| r.grant_type = None),
                "invalid_request",
                "grant_type",
            ),
            (
                Box::new(|r| r.grant_type = Some("password".into())),
                "unsupported_grant_type",
                "password",
            ),
            (
                Box::new(|r| r.subject_token = Some(String::new())),
                "invalid_request",
                "subject_token",
            ),
            (
                Box::new(|r| r.subject_token_type = None),
                "invalid_request",
                "subject_token_type",
            ),
            (
                Box::new(|r| r.requested_token_type = Some("urn:x".into())),
                "invalid_request",
                "requested_token_type",
            ),
            (
                Box::new(|r| r.audience = None),
                "invalid_target",
                "resource or audience",
            ),
            (
                Box::new(|r| r.resource = Some("https://other.test".into())),
                "invalid_target",
                "different targets",
            ),
            (Box::new(|r| r.task_id = None), "invalid_request", "task_id"),
            (
                Box::new(|r| r.scope = Some("a\"b".into())),
                "invalid_request",
                "scope",
            ),
            (
                Box::new(|r| r.requested_ttl = Some("-5".into())),
                "invalid_request",
                "requested_ttl",
            ),
            (
                Box::new(|r| r.requested_ttl = Some("soon".into())),
                "invalid_request",
                "requested_ttl",
            ),
        ];
        for (change, expected_kind, mentions) in cases {
            let mut request = exchange();
            change(&mut request);
            let err = request.validate().unwrap_err();
            assert_eq!(kind(&err), expected_kind, "{err}");
            assert!(err.to_string().contains(mentions), "{err}");
        }
    }

    #[test]
    fn resource_and_audience_may_agree() {
        let mut request = exchange();
        request.resource = request.audience.clone();
        assert!(request.validate().is_ok());
    }

    #[test]
    fn scopes_are_bounded() {
        let many = (0..33)
            .map(|i| format!("s{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(parse_scope(&many).is_err());
        assert!(parse_scope("read:all repo").is_ok());
        assert!(parse_scope("tab\there").is_err());
    }

    #[test]
    fn task_starts_are_checked() {
        let start = |audiences: Vec<&str>, ttl: Option<i64>| StartTask {
            purpose: "deploy".into(),
            owner: "team".into(),
            ttl_seconds: ttl,
            audiences: audiences.into_iter().map(str::to_owned).collect(),
            tenant: None,
        };
        assert_eq!(start(vec!["a"], None).validate(60, 600).unwrap().ttl, 60);
        assert!(start(vec![], None).validate(60, 600).is_err());
        assert!(start(vec!["a"], Some(601)).validate(60, 600).is_err());
        assert!(start(vec!["a"], Some(0)).validate(60, 600).is_err());
        let mut bad = start(vec!["a"], None);
        bad.purpose = "two\nlines".into();
        assert!(bad.validate(60, 600).is_err());
    }
}
