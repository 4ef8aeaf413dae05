//! The HTTP API: OAuth endpoints (RFC 8414 metadata, RFC 8693 exchange,
//! RFC 7662 introspection, RFC 7009 revocation), tasks, and admin. Every
//! error body is OAuth's `{"error", "error_description"}`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use mayfly_store::{RevokeSelector, TaskFilter};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::service::{Broker, BrokerError, Caller, ExchangeRequest, SWEEP_BATCH, StartTask};

/// An error as an HTTP response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error,
            description: description.into(),
        }
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        let (status, error) = match &e {
            BrokerError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            BrokerError::InvalidGrant(_) => (StatusCode::BAD_REQUEST, "invalid_grant"),
            BrokerError::InvalidTarget(_) => (StatusCode::BAD_REQUEST, "invalid_target"),
            BrokerError::UnsupportedGrantType(_) => {
                (StatusCode::BAD_REQUEST, "unsupported_grant_type")
            }
            BrokerError::AccessDenied { .. } => (StatusCode::FORBIDDEN, "access_denied"),
            BrokerError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "invalid_client"),
            BrokerError::Forbidden(_) => (StatusCode::FORBIDDEN, "access_denied"),
            BrokerError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            BrokerError::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
            }
            BrokerError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        };
        if status.is_server_error() {
            eprintln!("mayfly serve: {error}: {e}");
        }
        ApiError::new(status, error, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({"error": self.error, "error_description": self.description})),
        )
            .into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"mayfly\""),
            );
        }
        response
    }
}

fn body_rejection(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(status, "invalid_request", "the request body is too large")
    } else if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        ApiError::new(status, "invalid_request", text)
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", text)
    }
}

/// A form body whose rejection is an OAuth error.
pub struct OAuthForm<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OAuthForm<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Form::<T>::from_request(req, state)
            .await
            .map(|form| OAuthForm(form.0))
            .map_err(|e: FormRejection| body_rejection(e.status(), e.body_text()))
    }
}

/// A JSON body whose rejection is an OAuth error.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state)
            .await
            .map(|json| ApiJson(json.0))
            .map_err(|e: JsonRejection| body_rejection(e.status(), e.body_text()))
    }
}

type Shared = Arc<Broker>;

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

fn no_store<T: IntoResponse>(body: T) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Builds the router over a broker.
pub fn app(broker: Shared) -> Router {
    let limit = broker.config().server.max_body_bytes;
    Router::new()
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/oauth2/token", post(token))
        .route("/oauth2/introspect", post(introspect))
        .route("/oauth2/revoke", post(revoke))
        .route("/v1/tasks", post(start_task))
        .route("/v1/tasks/{id}", get(show_task))
        .route("/v1/tasks/{id}/end", post(end_task))
        .route("/v1/admin/tasks", get(admin_tasks))
        .route("/v1/admin/credentials", get(admin_credentials))
        .route("/v1/admin/revoke", post(admin_revoke))
        .route("/v1/admin/policies", put(admin_policies))
        .route("/v1/admin/policies/reload", post(admin_reload))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; see /.well-known/oauth-authorization-server",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(broker)
}

async fn metadata(State(broker): State<Shared>) -> Response {
    Json(broker.metadata()).into_response()
}

async fn jwks(State(broker): State<Shared>) -> Response {
    let mut response = Json(broker.jwks()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=60"),
    );
    response
}

async fn token(
    State(broker): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    OAuthForm(request): OAuthForm<ExchangeRequest>,
) -> Result<Response, ApiError> {
    let dpop = match headers.get_all("dpop").iter().count() {
        0 => None,
        1 => headers.get("dpop").and_then(|v| v.to_str().ok()),
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_dpop_proof",
                "send one DPoP header",
            ));
        }
    };
    let response = broker
        .exchange(request, dpop, &peer.ip().to_string())
        .await
        .map_err(|e| match e {
            BrokerError::InvalidRequest(m) if dpop.is_some() && m.contains("DPoP") => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_dpop_proof", m)
            }
            other => other.into(),
        })?;
    Ok(no_store(Json(response)))
}

#[derive(Deserialize)]
struct TokenForm {
    token: Option<String>,
    #[serde(rename = "token_type_hint")]
    _hint: Option<String>,
}

fn required_token(form: &TokenForm) -> Result<&str, ApiError> {
    form.token
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "token is required",
            )
        })
}

async fn introspect(
    State(broker): State<Shared>,
    headers: HeaderMap,
    form: Result<OAuthForm<TokenForm>, ApiError>,
) -> Result<Response, ApiError> {
    broker.authenticate_client(authorization(&headers))?;
    let OAuthForm(form) = form?;
    let answer = broker.introspect(required_token(&form)?).await?;
    Ok(no_store(Json(answer)))
}

async fn revoke(
    State(broker): State<Shared>,
    headers: HeaderMap,
    form: Result<OAuthForm<TokenForm>, ApiError>,
) -> Result<Response, ApiError> {
    let caller = broker.authenticate_client(authorization(&headers))?;
    let OAuthForm(form) = form?;
    broker.revoke_token(&caller, required_token(&form)?).await?;
    Ok(no_store(StatusCode::OK))
}

async fn start_task(
    State(broker): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request: Result<ApiJson<StartTask>, ApiError>,
) -> Result<Response, ApiError> {
    let workload = match broker.authenticate(authorization(&headers))? {
        Caller::Workload(w) => w,
        _ => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "access_denied",
                "a task is started by a workload with its identity token, not by an admin",
            ));
        }
    };
    let ApiJson(request) = request?;
    let task = broker
        .start_task(&workload, request, &peer.ip().to_string())
        .await?;
    Ok((StatusCode::CREATED, no_store(Json(task))).into_response())
}

async fn show_task(
    State(broker): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = broker.authenticate(authorization(&headers))?;
    Ok(no_store(Json(broker.show_task(&caller, &id).await?)))
}

async fn end_task(
    State(broker): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = broker.authenticate(authorization(&headers))?;
    Ok(no_store(Json(broker.end_task(&caller, &id).await?)))
}

#[derive(Deserialize)]
struct ListQuery {
    live: Option<bool>,
    owner: Option<String>,
    workload: Option<String>,
    limit: Option<i64>,
}

async fn admin_tasks(
    State(broker): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    broker.authenticate_admin(authorization(&headers))?;
    let tasks = broker
        .list_tasks(TaskFilter {
            live_only: query.live.unwrap_or(false),
            workload: query.workload,
            owner: query.owner,
            limit: query.limit,
        })
        .await?;
    Ok(no_store(Json(json!({"tasks": tasks}))))
}

async fn admin_credentials(
    State(broker): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    broker.authenticate_admin(authorization(&headers))?;
    let credentials = broker
        .list_credentials(query.live.unwrap_or(false), query.limit.unwrap_or(1000))
        .await?;
    Ok(no_store(Json(json!({"credentials": credentials}))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    jti: Option<String>,
    task: Option<String>,
    workload: Option<String>,
    owner: Option<String>,
    reason: Option<String>,
}

async fn admin_revoke(
    State(broker): State<Shared>,
    headers: HeaderMap,
    body: Result<ApiJson<RevokeBody>, ApiError>,
) -> Result<Response, ApiError> {
    broker.authenticate_admin(authorization(&headers))?;
    let ApiJson(body) = body?;
    let selector = match (body.jti, body.task, body.workload, body.owner) {
        (Some(v), None, None, None) => RevokeSelector::Lease(v),
        (None, Some(v), None, None) => RevokeSelector::Task(v),
        (None, None, Some(v), None) => RevokeSelector::Workload(v),
        (None, None, None, Some(v)) => RevokeSelector::Owner(v),
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "name exactly one of jti, task, workload or owner",
            ));
        }
    };
    let reason = body.reason.unwrap_or_else(|| "revoked by admin".into());
    let revoked = broker.admin_revoke(selector, &reason).await?;
    Ok(no_store(Json(json!({"revoked": revoked}))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoliciesBody {
    policies: BTreeMap<String, String>,
}

async fn admin_policies(
    State(broker): State<Shared>,
    headers: HeaderMap,
    body: Result<ApiJson<PoliciesBody>, ApiError>,
) -> Result<Response, ApiError> {
    broker.authenticate_admin(authorization(&headers))?;
    let ApiJson(body) = body?;
    let (ids, revoked) = broker
        .replace_policies(body.policies.into_iter().collect())
        .await?;
    Ok(no_store(Json(json!({"policies": ids, "revoked": revoked}))))
}

async fn admin_reload(
    State(broker): State<Shared>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    broker.authenticate_admin(authorization(&headers))?;
    let (ids, revoked) = broker.reload_policies().await?;
    Ok(no_store(Json(json!({"policies": ids, "revoked": revoked}))))
}

/// Runs the background work of a broker: the sweeper (every 250 ms), key
/// refresh and rotation (every minute) and, on Unix, policy reload on
/// SIGHUP. (The writer checkpoints the store itself.)
pub fn spawn_background(broker: Shared) {
    let sweeper = broker.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            // A full batch means more is waiting: go on at once (issuance
            // still gets the writer between batches).
            loop {
                match sweeper.sweep().await {
                    Ok((tasks, leases)) if tasks.max(leases) >= SWEEP_BATCH => continue,
                    Ok(_) => break,
                    Err(e) => {
                        eprintln!("mayfly serve: sweep failed: {e}");
                        break;
                    }
                }
            }
        }
    });
    let keys = broker.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = keys.refresh_keys().await {
                eprintln!("mayfly serve: key refresh failed: {e}");
            }
        }
    });
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            return;
        };
        while hangups.recv().await.is_some() {
            match broker.reload_policies().await {
                Ok((ids, revoked)) => eprintln!(
                    "mayfly serve: policies reloaded ({} policies, {revoked} credentials revoked)",
                    ids.len()
                ),
                Err(e) => eprintln!(
                    "mayfly serve: policies not reloaded, the old set stays in force: {e}"
                ),
            }
        }
    });
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    broker: Shared,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    spawn_background(broker.clone());
    // Answers are small and go out whole: no reason to let Nagle's
    // algorithm hold one back waiting for the client's ACK.
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    axum::serve(
        listener,
        app(broker).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
