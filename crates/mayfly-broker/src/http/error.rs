//! Every error the API returns is OAuth's `{"error", "error_description"}`
//! with `Cache-Control: no-store`: errors the broker decides
//! ([`BrokerError`], mapped by variant), malformed bodies, and the
//! rejections of the HTTP layer itself (404, 405, 408, 413, 415, 431).

use axum::Json;
use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::BrokerError;

/// An error as an HTTP response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl ApiError {
    /// The OAuth error code (`access_denied`).
    pub fn code(&self) -> &'static str {
        self.error
    }

    /// An error with an OAuth error code and a description that says what
    /// to fix.
    pub fn new(
        status: StatusCode,
        error: &'static str,
        description: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            error,
            description: description.into(),
        }
    }
}

/// The status and OAuth error code of each kind of refusal.
fn classify(e: &BrokerError) -> (StatusCode, &'static str) {
    match e {
        BrokerError::InvalidRequest(_) | BrokerError::Policy(_) => {
            (StatusCode::BAD_REQUEST, "invalid_request")
        }
        BrokerError::InvalidGrant(_) | BrokerError::SubjectToken(_) => {
            (StatusCode::BAD_REQUEST, "invalid_grant")
        }
        BrokerError::InvalidTarget(_) => (StatusCode::BAD_REQUEST, "invalid_target"),
        BrokerError::UnsupportedGrantType(_) => (StatusCode::BAD_REQUEST, "unsupported_grant_type"),
        BrokerError::Dpop(crate::dpop::DpopError::Busy) => {
            (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
        }
        BrokerError::Dpop(_) => (StatusCode::BAD_REQUEST, "invalid_dpop_proof"),
        BrokerError::AccessDenied(_) | BrokerError::Forbidden(_) => {
            (StatusCode::FORBIDDEN, "access_denied")
        }
        BrokerError::Identity(_) | BrokerError::Unauthorized(_) => {
            (StatusCode::UNAUTHORIZED, "invalid_client")
        }
        BrokerError::InvalidToken(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
        BrokerError::Conflict(_) => (StatusCode::CONFLICT, "invalid_request"),
        BrokerError::Upstream(crate::upstream::UpstreamError::Timeout { .. }) => {
            (StatusCode::GATEWAY_TIMEOUT, "upstream_unavailable")
        }
        BrokerError::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream_unavailable"),
        BrokerError::Mint(crate::minted::MintError::Request { .. }) => {
            (StatusCode::BAD_REQUEST, "invalid_scope")
        }
        BrokerError::Mint(crate::minted::MintError::Upstream { .. }) => {
            (StatusCode::BAD_GATEWAY, "upstream_unavailable")
        }
        BrokerError::Mint(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        BrokerError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        BrokerError::TooManyRequests(_) => {
            (StatusCode::TOO_MANY_REQUESTS, "temporarily_unavailable")
        }
        BrokerError::Store(mayfly_store::StoreError::Nul { .. }) => {
            (StatusCode::BAD_REQUEST, "invalid_request")
        }
        BrokerError::Store(_) | BrokerError::Write(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
        }
        BrokerError::Config(_)
        | BrokerError::Key(_)
        | BrokerError::Token(_)
        | BrokerError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        let (status, error) = classify(&e);
        if status.is_server_error() {
            tracing::error!(error, "{e}");
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
        if self.status == StatusCode::TOO_MANY_REQUESTS
            || self.status == StatusCode::SERVICE_UNAVAILABLE
        {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
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

/// The OAuth error code for a status the HTTP layer chose.
fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::UNAUTHORIZED => "invalid_client",
        StatusCode::FORBIDDEN => "access_denied",
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT => "temporarily_unavailable",
        s if s.is_server_error() => "server_error",
        _ => "invalid_request",
    }
}

/// What to tell the client about an error the HTTP layer raised.
fn describe(status: StatusCode, text: &str) -> String {
    let text = text.trim();
    match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            "this method is not allowed on this endpoint; see the Allow header".into()
        }
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large".into(),
        StatusCode::REQUEST_TIMEOUT => {
            "the request was not received in time; send it whole and promptly".into()
        }
        _ if !text.is_empty() => text.chars().take(500).collect(),
        _ => status
            .canonical_reason()
            .unwrap_or("the request was refused")
            .to_owned(),
    }
}

/// Middleware: gives every error response that is not JSON yet (axum's own
/// rejections: 404, 405, 413, 415, ...) an OAuth error body, keeping its
/// status and headers (`Allow` on a 405).
pub async fn oauth_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let mut out = ApiError::new(status, code_for(status), describe(status, &text)).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(value) = parts.headers.get(&name) {
            out.headers_mut().insert(name, value.clone());
        }
    }
    out
}

/// Middleware: refuses requests whose request line and headers together
/// exceed `limit` bytes with 431 and an OAuth error body. (The connection's
/// read buffer is larger, so such requests reach this check instead of
/// being cut off with an empty answer.)
pub async fn header_limit(State(limit): State<usize>, request: Request, next: Next) -> Response {
    let size: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
        + request.uri().to_string().len();
    if size > limit {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "invalid_request",
            format!("the request line and headers are {size} bytes; the limit is {limit}"),
        )
        .into_response();
    }
    next.run(request).await
}

/// Middleware: a request (headers, body and handling) must finish within
/// `limit`, so a half-sent body holds neither a connection nor a task.
pub async fn request_timeout(
    State(limit): State<std::time::Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "temporarily_unavailable",
            describe(StatusCode::REQUEST_TIMEOUT, ""),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dpop::DpopError;

    #[test]
    fn refusals_map_by_kind_not_by_text() {
        let dpop = BrokerError::Dpop(DpopError::Replayed);
        assert_eq!(
            classify(&dpop),
            (StatusCode::BAD_REQUEST, "invalid_dpop_proof")
        );
        // A message that mentions DPoP does not make a request error a DPoP one.
        let request = BrokerError::InvalidRequest("DPoP header missing".into());
        assert_eq!(
            classify(&request),
            (StatusCode::BAD_REQUEST, "invalid_request")
        );
        let store = BrokerError::Write(crate::writer::WriteError::Store("disk full".into()));
        assert_eq!(classify(&store).0, StatusCode::SERVICE_UNAVAILABLE);
    }
}
