//! The broker's API from the client side: what `mayfly task`, `mayfly
//! token` and `mayfly run` use, and where a workload's identity token comes
//! from (a file, an environment variable, or the GitHub Actions runner).

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::protocol::{ID_TOKEN_TYPE, JWT_TOKEN_TYPE, TOKEN_EXCHANGE, TaskView, TokenResponse};

/// What one token exchange asks for.
struct ExchangeForm<'a> {
    identity: &'a str,
    task_id: &'a str,
    audience: &'a str,
    scope: Option<&'a str>,
    requested_ttl: Option<i64>,
    token_type: Option<&'a str>,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The broker answered with an error.
    #[error("the broker refused ({status} {error}): {description}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// OAuth error code.
        error: String,
        /// What to fix.
        description: String,
    },
    /// The broker could not be reached.
    #[error("cannot reach the broker at {url}: {reason}")]
    Transport {
        /// The URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The answer was not what the API promises.
    #[error("unexpected answer from {url}: {reason}")]
    Decode {
        /// The URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// No identity token could be found.
    #[error("{0}")]
    Identity(String),
}

/// A client of one broker.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

/// `POST /v1/tasks` body, client side.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRequest {
    /// Why the task runs.
    pub purpose: String,
    /// Who answers for it.
    pub owner: String,
    /// Lifetime in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<i64>,
    /// Audiences it will ask credentials for.
    pub audiences: Vec<String>,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into()
}

impl Client {
    /// A client of the broker at `base` (`http://127.0.0.1:8710`).
    pub fn new(base: &str) -> Client {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            agent: agent(),
        }
    }

    /// The broker's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn finish<T: DeserializeOwned>(
        url: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ClientError> {
        let mut response = result.map_err(|e| ClientError::Transport {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(10 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| ClientError::Transport {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        let decode = |reason: String| ClientError::Decode {
            url: url.to_owned(),
            reason,
        };
        if !(200..300).contains(&status) {
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            return Err(ClientError::Refused {
                status,
                error: body
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("error")
                    .to_owned(),
                description: body
                    .get("error_description")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| text.chars().take(200).collect()),
            });
        }
        let text = if text.is_empty() { "null" } else { &text };
        serde_json::from_str(text).map_err(|e| decode(e.to_string()))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        bearer: &str,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Decode {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let result = self
            .agent
            .post(&url)
            .header("Authorization", &format!("Bearer {bearer}"))
            .header("Content-Type", "application/json")
            .send(&body[..]);
        Self::finish(&url, result)
    }

    fn post_form<T: DeserializeOwned>(
        &self,
        path: &str,
        authorization: Option<&str>,
        fields: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        self.post_form_with(path, &[("Authorization", authorization)], fields)
    }

    fn post_form_with<T: DeserializeOwned>(
        &self,
        path: &str,
        headers: &[(&str, Option<&str>)],
        fields: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let mut request = self.agent.post(&url);
        for (name, value) in headers {
            if let Some(value) = value {
                request = request.header(*name, *value);
            }
        }
        let result = request.send_form(fields.iter().copied());
        Self::finish(&url, result)
    }

    fn send_json<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        bearer: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let authorization = format!("Bearer {bearer}");
        let result = match (method, body) {
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("Authorization", &authorization)
                .call(),
            (_, Some(body)) => {
                let body = serde_json::to_vec(body).map_err(|e| ClientError::Decode {
                    url: url.clone(),
                    reason: e.to_string(),
                })?;
                self.agent
                    .post(&url)
                    .header("Authorization", &authorization)
                    .header("Content-Type", "application/json")
                    .send(&body[..])
            }
            _ => self
                .agent
                .get(&url)
                .header("Authorization", &authorization)
                .call(),
        };
        Self::finish(&url, result)
    }

    fn get<T: DeserializeOwned>(&self, path: &str, bearer: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        let result = self
            .agent
            .get(&url)
            .header("Authorization", &format!("Bearer {bearer}"))
            .call();
        Self::finish(&url, result)
    }

    /// Starts a task with a workload identity token.
    pub fn start_task(
        &self,
        identity: &str,
        request: &TaskRequest,
    ) -> Result<TaskView, ClientError> {
        self.post_json("/v1/tasks", identity, request)
    }

    /// Ends a task (its workload's identity token or the admin token).
    pub fn end_task(&self, bearer: &str, id: &str) -> Result<TaskView, ClientError> {
        self.post_json(
            &format!("/v1/tasks/{id}/end"),
            bearer,
            &serde_json::json!({}),
        )
    }

    /// Decides calls through the MCP gate, with the gate's access token.
    pub fn mcp_decide(
        &self,
        access_token: &str,
        server: &str,
        calls: &[crate::service::McpCall],
    ) -> Result<Vec<crate::service::McpDecision>, ClientError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            decisions: Vec<crate::service::McpDecision>,
        }
        let answer: Answer = self.post_json(
            "/v1/mcp/decide",
            access_token,
            &serde_json::json!({"server": server, "calls": calls}),
        )?;
        Ok(answer.decisions)
    }

    /// Reports finished calls through the MCP gate (one audit event each).
    pub fn mcp_record(
        &self,
        access_token: &str,
        server: &str,
        records: &[crate::service::McpRecord],
    ) -> Result<(), ClientError> {
        let _: Value = self.post_json(
            "/v1/mcp/record",
            access_token,
            &serde_json::json!({"server": server, "records": records}),
        )?;
        Ok(())
    }

    /// Shows a task with its credentials.
    pub fn show_task(&self, bearer: &str, id: &str) -> Result<TaskView, ClientError> {
        self.get(&format!("/v1/tasks/{id}"), bearer)
    }

    /// Exchanges an identity token for a credential of a task.
    pub fn exchange(
        &self,
        identity: &str,
        task_id: &str,
        audience: &str,
        scope: Option<&str>,
        requested_ttl: Option<i64>,
    ) -> Result<TokenResponse, ClientError> {
        self.exchange_for(identity, task_id, audience, scope, requested_ttl, false)
    }

    /// Exchanges an identity token for an OpenID Connect ID token of a task
    /// for `audience` (a cloud's workload identity federation), when the
    /// broker federates.
    pub fn exchange_id_token(
        &self,
        identity: &str,
        task_id: &str,
        audience: &str,
        requested_ttl: Option<i64>,
    ) -> Result<TokenResponse, ClientError> {
        self.exchange_for(identity, task_id, audience, None, requested_ttl, true)
    }

    fn exchange_for(
        &self,
        identity: &str,
        task_id: &str,
        audience: &str,
        scope: Option<&str>,
        requested_ttl: Option<i64>,
        id_token: bool,
    ) -> Result<TokenResponse, ClientError> {
        self.post_exchange(
            &ExchangeForm {
                identity,
                task_id,
                audience,
                scope,
                requested_ttl,
                token_type: id_token.then_some(ID_TOKEN_TYPE),
            },
            None,
        )
    }

    /// Exchanges an identity token for a credential bound to `key` (DPoP),
    /// living `requested_ttl` seconds if given (and allowed).
    pub fn exchange_bound(
        &self,
        identity: &str,
        task_id: &str,
        audience: &str,
        requested_ttl: Option<i64>,
        key: &crate::dpop::ProofKey,
        now: i64,
    ) -> Result<TokenResponse, ClientError> {
        let proof = key
            .proof("POST", &self.url("/oauth2/token"), None, now)
            .map_err(|e| ClientError::Identity(e.to_string()))?;
        self.post_exchange(
            &ExchangeForm {
                identity,
                task_id,
                audience,
                scope: None,
                requested_ttl,
                token_type: None,
            },
            Some(&proof),
        )
    }

    /// Posts an RFC 8693 form to the token endpoint, with a DPoP proof if
    /// given.
    fn post_exchange(
        &self,
        form: &ExchangeForm<'_>,
        dpop: Option<&str>,
    ) -> Result<TokenResponse, ClientError> {
        let ttl = form.requested_ttl.map(|t| t.to_string());
        let mut fields = vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", form.identity),
            ("subject_token_type", JWT_TOKEN_TYPE),
            ("audience", form.audience),
            ("task_id", form.task_id),
        ];
        if let Some(scope) = form.scope {
            fields.push(("scope", scope));
        }
        if let Some(ttl) = ttl.as_deref() {
            fields.push(("requested_ttl", ttl));
        }
        if let Some(kind) = form.token_type {
            fields.push(("requested_token_type", kind));
        }
        match dpop {
            Some(proof) => self.post_form_with("/oauth2/token", &[("DPoP", Some(proof))], &fields),
            None => self.post_form("/oauth2/token", None, &fields),
        }
    }

    /// Admin: takes a secret into custody.
    pub fn custody_add(
        &self,
        admin: &str,
        request: &crate::custody::AddCustody,
    ) -> Result<crate::custody::CustodyView, ClientError> {
        self.send_json("POST", "/v1/admin/custody", admin, Some(request))
    }

    /// Admin: a new version of a secret in custody.
    pub fn custody_rotate(
        &self,
        admin: &str,
        name: &str,
        request: &crate::custody::RotateCustody,
    ) -> Result<crate::custody::CustodyView, ClientError> {
        self.send_json(
            "POST",
            &format!("/v1/admin/custody/{name}/rotate"),
            admin,
            Some(request),
        )
    }

    /// Admin: the entries in custody.
    pub fn custody_list(
        &self,
        admin: &str,
    ) -> Result<Vec<crate::custody::CustodyView>, ClientError> {
        let path = "/v1/admin/custody";
        let answer: Value = self.send_json("GET", path, admin, None::<&()>)?;
        serde_json::from_value(answer.get("entries").cloned().unwrap_or(Value::Null)).map_err(|e| {
            ClientError::Decode {
                url: self.url(path),
                reason: e.to_string(),
            }
        })
    }

    /// Admin: one entry in custody (no value).
    pub fn custody_show(
        &self,
        admin: &str,
        name: &str,
    ) -> Result<crate::custody::CustodyView, ClientError> {
        self.send_json(
            "GET",
            &format!("/v1/admin/custody/{name}"),
            admin,
            None::<&()>,
        )
    }

    /// How to use an entry through the proxy (any workload).
    pub fn custody_use(
        &self,
        identity: &str,
        name: &str,
    ) -> Result<crate::custody::CustodyUse, ClientError> {
        self.send_json("GET", &format!("/v1/custody/{name}"), identity, None::<&()>)
    }

    /// Admin: removes an entry from custody.
    pub fn custody_remove(&self, admin: &str, name: &str) -> Result<(), ClientError> {
        let _: Value = self.send_json(
            "DELETE",
            &format!("/v1/admin/custody/{name}"),
            admin,
            None::<&()>,
        )?;
        Ok(())
    }

    /// Introspects a token; `authorization` is a full header value
    /// (`Bearer ADMIN` or `Basic ...`).
    pub fn introspect(&self, authorization: &str, token: &str) -> Result<Value, ClientError> {
        self.post_form(
            "/oauth2/introspect",
            Some(authorization),
            &[("token", token)],
        )
    }

    /// Revokes a token.
    pub fn revoke(&self, authorization: &str, token: &str) -> Result<(), ClientError> {
        let _: Value =
            self.post_form("/oauth2/revoke", Some(authorization), &[("token", token)])?;
        Ok(())
    }

    /// Admin: tasks, newest first (only live ones with `live_only`).
    pub fn list_tasks(&self, admin: &str, live_only: bool) -> Result<Vec<TaskView>, ClientError> {
        let path = if live_only {
            "/v1/admin/tasks?live=true"
        } else {
            "/v1/admin/tasks"
        };
        let answer: Value = self.get(path, admin)?;
        serde_json::from_value(answer.get("tasks").cloned().unwrap_or(Value::Null)).map_err(|e| {
            ClientError::Decode {
                url: self.url(path),
                reason: e.to_string(),
            }
        })
    }

    /// Admin: revokes by `jti`, task, workload or owner.
    pub fn admin_revoke(&self, admin: &str, what: &str, value: &str) -> Result<u64, ClientError> {
        let answer: Value = self.post_json(
            "/v1/admin/revoke",
            admin,
            &serde_json::json!({ what: value }),
        )?;
        Ok(answer
            .get("revoked")
            .and_then(Value::as_u64)
            .unwrap_or_default())
    }

    /// Fetches a URL with a bearer token and returns its text (the GitHub
    /// Actions token endpoint).
    fn fetch(&self, url: &str, bearer: &str) -> Result<Value, ClientError> {
        let result = self
            .agent
            .get(url)
            .header("Authorization", &format!("Bearer {bearer}"))
            .header("Accept", "application/json")
            .call();
        Self::finish(url, result)
    }
}

/// Where the caller's identity token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// A file, read again for every use (Kubernetes rotates projected tokens).
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// The GitHub Actions runner's OIDC endpoint, for this audience.
    GithubActions {
        /// `ACTIONS_ID_TOKEN_REQUEST_URL`.
        url: String,
        /// `ACTIONS_ID_TOKEN_REQUEST_TOKEN`.
        request_token: String,
        /// The audience to ask for.
        audience: String,
    },
    /// A local `mayfly serve`'s socket, which attests this process.
    Local(PathBuf),
}

impl IdentitySource {
    /// Picks the source: an explicit file, else `MAYFLY_IDENTITY_TOKEN_FILE`,
    /// else `MAYFLY_IDENTITY_TOKEN`, else the GitHub Actions runner when
    /// its variables are set, else the local server's socket when it
    /// exists.
    pub fn detect(
        file: Option<PathBuf>,
        github_audience: &str,
        local_socket: Option<PathBuf>,
    ) -> Result<IdentitySource, ClientError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(file) = file.or_else(|| var("MAYFLY_IDENTITY_TOKEN_FILE").map(PathBuf::from)) {
            return Ok(IdentitySource::File(file));
        }
        if var("MAYFLY_IDENTITY_TOKEN").is_some() {
            return Ok(IdentitySource::Env("MAYFLY_IDENTITY_TOKEN".into()));
        }
        if let (Some(url), Some(request_token)) = (
            var("ACTIONS_ID_TOKEN_REQUEST_URL"),
            var("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
        ) {
            return Ok(IdentitySource::GithubActions {
                url,
                request_token,
                audience: github_audience.to_owned(),
            });
        }
        if let Some(socket) = local_socket.filter(|s| s.exists()) {
            return Ok(IdentitySource::Local(socket));
        }
        Err(ClientError::Identity(
            "no identity token: pass --identity-token-file, set MAYFLY_IDENTITY_TOKEN_FILE or MAYFLY_IDENTITY_TOKEN, \
             run inside GitHub Actions with `permissions: id-token: write`, \
             or start `mayfly serve` on this machine (it attests local processes)"
                .into(),
        ))
    }

    /// The current token.
    pub fn token(&self, client: &Client) -> Result<String, ClientError> {
        match self {
            IdentitySource::File(path) => std::fs::read_to_string(path)
                .map(|t| t.trim().to_owned())
                .map_err(|e| {
                    ClientError::Identity(format!(
                        "cannot read the identity token {}: {e}",
                        path.display()
                    ))
                }),
            IdentitySource::Env(name) => std::env::var(name)
                .map(|t| t.trim().to_owned())
                .map_err(|_| ClientError::Identity(format!("{name} is not set"))),
            IdentitySource::GithubActions {
                url,
                request_token,
                audience,
            } => {
                let separator = if url.contains('?') { '&' } else { '?' };
                let query: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("audience", audience)
                    .finish();
                let url = format!("{url}{separator}{query}");
                let answer = client.fetch(&url, request_token)?;
                answer
                    .get("value")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        ClientError::Identity(
                            "the GitHub Actions token endpoint returned no value".into(),
                        )
                    })
            }
            IdentitySource::Local(socket) => mayfly_attest::client::fetch_identity(socket)
                .map(|identity| identity.identity_token)
                .map_err(|e| ClientError::Identity(e.to_string())),
        }
    }
}
