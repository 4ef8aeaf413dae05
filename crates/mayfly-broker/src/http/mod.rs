//! The HTTP API: OAuth endpoints (RFC 8414 metadata, RFC 8693 exchange,
//! RFC 7662 introspection, RFC 7009 revocation), tasks, admin (with
//! [`custody`]), and the injecting [`proxy`]. Every error body is OAuth's
//! `{"error", "error_description"}` ([`error`]); [`server`] runs it with
//! timeouts and connection limits.

mod custody;
pub mod error;
mod mcp;
mod proxy;
pub mod server;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use axum::{Json, Router, middleware};
use mayfly_store::{RevokeSelector, TaskFilter};
use serde::Deserialize;
use serde_json::json;
use tower_http::trace::TraceLayer;

pub use self::error::{ApiError, ApiJson, OAuthForm};
pub use self::server::{serve, spawn_background};
use crate::auth::Caller;
use crate::protocol::{ExchangeRequest, StartTask};
use crate::service::Broker;

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

/// A span per request: method and route (never the query, a header or a
/// body, which may carry tokens); the status and latency are recorded
/// when the answer goes out.
fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("(no route)", MatchedPath::as_str);
    tracing::info_span!("request", method = %request.method(), route, status = tracing::field::Empty)
}

/// Builds the router over a broker.
pub fn app(broker: Shared) -> Router {
    let server = &broker.config().server;
    let body_limit = server.max_body_bytes;
    let header_limit = server.max_header_bytes;
    let request_timeout = Duration::from_secs(server.request_timeout_seconds);
    // The proxy streams bodies of its own size limit for as long as the
    // upstream answers, and passes the upstream's errors on as they are:
    // none of the API's body limit, timeout or error rewriting applies.
    let proxy = Router::new()
        .route("/proxy/{entry}", any(proxy::forward))
        .route("/proxy/{entry}/{*path}", any(proxy::forward));
    let api = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route(
            "/.well-known/openid-configuration",
            get(openid_configuration),
        )
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
        .route("/v1/admin/keys/rotate", post(admin_rotate_keys))
        .route("/v1/admin/custody", get(custody::list).post(custody::add))
        .route(
            "/v1/admin/custody/{name}",
            get(custody::show).delete(custody::remove),
        )
        .route("/v1/admin/custody/{name}/rotate", post(custody::rotate))
        .route("/v1/custody/{name}", get(custody::usage))
        .route("/v1/mcp/decide", post(mcp::decide))
        .route("/v1/mcp/record", post(mcp::record))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; see /.well-known/oauth-authorization-server",
            )
        })
        .method_not_allowed_fallback(|| async { StatusCode::METHOD_NOT_ALLOWED })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            request_timeout,
            error::request_timeout,
        ))
        .layer(middleware::from_fn(error::oauth_errors));
    api.merge(proxy)
        .layer(middleware::from_fn_with_state(
            header_limit,
            error::header_limit,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(
                    |response: &Response, latency: Duration, span: &tracing::Span| {
                        span.record("status", response.status().as_u16());
                        tracing::debug!(latency_us = latency.as_micros() as u64, "answered");
                    },
                )
                .on_failure(()),
        )
        .with_state(broker)
}

/// Liveness: the process serves HTTP.
async fn healthz() -> Response {
    no_store(Json(json!({"status": "ok"})))
}

/// Readiness: the store answers, the signing key is loaded, policies are
/// in force; 503 with the failing checks otherwise.
async fn readyz(State(broker): State<Shared>) -> Response {
    let readiness = broker.readiness().await;
    let check = |result: &Result<String, String>| match result {
        Ok(found) => json!({"ok": true, "detail": found}),
        Err(why) => json!({"ok": false, "detail": why}),
    };
    let body = json!({
        "status": if readiness.ready() { "ready" } else { "not ready" },
        "checks": {
            "store": check(&readiness.store),
            "keys": check(&readiness.keys),
            "policies": check(&readiness.policies),
        },
    });
    let status = if readiness.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    no_store((status, Json(body)))
}

/// The Prometheus text exposition.
async fn metrics(State(broker): State<Shared>) -> Response {
    let mut response = broker.metrics_text().await.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// The OpenAPI 3.1 description of this API, kept in the repository
/// beside the crate and checked against the router by its tests.
pub const OPENAPI: &str = include_str!("../../openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn metadata(State(broker): State<Shared>) -> Response {
    Json(broker.metadata()).into_response()
}

async fn openid_configuration(State(broker): State<Shared>) -> Response {
    match broker.openid_configuration() {
        Some(document) => Json(document).into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this broker is no OpenID provider; set [federation] enabled = true",
        )
        .into_response(),
    }
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
    let started = std::time::Instant::now();
    let response = broker
        .exchange(request, dpop, &peer.ip().to_string())
        .await
        .map_err(ApiError::from);
    broker.metrics().exchange(
        response.as_ref().err().map(ApiError::code),
        started.elapsed(),
    );
    Ok(no_store(Json(response?)))
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
    let caller = broker.authenticate_client(authorization(&headers))?;
    let OAuthForm(form) = form?;
    let answer = broker.introspect(&caller, required_token(&form)?).await?;
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
    broker.metrics().revoked(1);
    Ok(no_store(StatusCode::OK))
}

async fn start_task(
    State(broker): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    request: Result<ApiJson<StartTask>, ApiError>,
) -> Result<Response, ApiError> {
    let workload = match broker.authenticate(authorization(&headers)).await? {
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
    let caller = broker.authenticate(authorization(&headers)).await?;
    Ok(no_store(Json(broker.show_task(&caller, &id).await?)))
}

async fn end_task(
    State(broker): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = broker.authenticate(authorization(&headers)).await?;
    Ok(no_store(Json(broker.end_task(&caller, &id).await?)))
}

/// Most rows one admin list answers with.
const MAX_LIST_LIMIT: i64 = 10_000;

#[derive(Deserialize)]
struct ListQuery {
    live: Option<bool>,
    owner: Option<String>,
    workload: Option<String>,
    limit: Option<i64>,
}

impl ListQuery {
    /// The `limit` asked for (1000 when none), refused outside 1 to
    /// [`MAX_LIST_LIMIT`].
    fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(1000),
            Some(n) if (1..=MAX_LIST_LIMIT).contains(&n) => Ok(n),
            Some(n) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("limit is {n}; ask for 1 to {MAX_LIST_LIMIT} rows"),
            )),
        }
    }
}

async fn admin_tasks(
    State(broker): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    broker.authenticate_admin(authorization(&headers))?;
    let limit = query.limit()?;
    let tasks = broker
        .list_tasks(TaskFilter {
            live_only: query.live.unwrap_or(false),
            workload: query.workload,
            owner: query.owner,
            limit: Some(limit),
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
        .list_credentials(query.live.unwrap_or(false), query.limit()?)
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
    // PostgreSQL's text holds no NUL: such a value is refused here, not
    // failed at the store as if the store were down.
    for (name, value) in [
        ("jti", &body.jti),
        ("task", &body.task),
        ("workload", &body.workload),
        ("owner", &body.owner),
        ("reason", &body.reason),
    ] {
        if let Some(value) = value {
            crate::protocol::field(name, value, 512)?;
        }
    }
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
    broker.metrics().revoked(revoked as u64);
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

async fn admin_rotate_keys(
    State(broker): State<Shared>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    broker.authenticate_admin(authorization(&headers))?;
    let keys: Vec<serde_json::Value> = broker
        .rotate_keys()
        .await?
        .into_iter()
        .map(|(kid, alg)| json!({"kid": kid, "alg": alg}))
        .collect();
    Ok(no_store(Json(json!({"keys": keys}))))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// (method, path) of every route `app` declares, read from this file:
    /// `.route("/x/{id}", get(a).post(b))`; `any` is the proxy's five
    /// methods; axum's `{*rest}` is OpenAPI's `{rest}`.
    fn routed() -> BTreeSet<(String, String)> {
        let source = include_str!("mod.rs");
        let source = source.split("#[cfg(test)]").next().unwrap_or_default();
        let mut routes = BTreeSet::new();
        for chunk in source.split(".route(").skip(1) {
            let Some(rest) = chunk.trim_start().strip_prefix('"') else {
                continue;
            };
            let Some((path, handlers)) = rest.split_once('"') else {
                continue;
            };
            let handlers = handlers.split(")\n").next().unwrap_or_default();
            let path = path.replace("{*", "{");
            for (call, methods) in [
                ("get(", &["get"][..]),
                ("post(", &["post"]),
                ("put(", &["put"]),
                ("delete(", &["delete"]),
                ("any(", &["get", "post", "put", "patch", "delete"]),
            ] {
                let named = handlers.match_indices(call).any(|(at, _)| {
                    !handlers[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                });
                if named {
                    for method in methods {
                        routes.insert(((*method).to_owned(), path.clone()));
                    }
                }
            }
        }
        routes
    }

    #[test]
    fn the_openapi_document_describes_every_route_and_no_other() {
        let document: serde_json::Value =
            serde_json::from_str(super::OPENAPI).expect("openapi.json is JSON");
        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
        let mut described = BTreeSet::new();
        for (path, item) in document["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("a path item").keys() {
                if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    described.insert((method.clone(), path.clone()));
                }
            }
        }
        let routed = routed();
        assert!(routed.len() > 25, "the route reader found {routed:?}");
        assert_eq!(described, routed);
    }
}
