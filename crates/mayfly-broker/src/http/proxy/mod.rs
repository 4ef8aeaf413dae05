//! The injecting proxy: `/proxy/{entry}/{path}` with any method, forwarded
//! to the entry's upstream with its secret added and the caller's token
//! removed. Bodies stream both ways (a server-sent-events answer goes out
//! chunk by chunk). What could send the secret elsewhere is refused before
//! anything is forwarded ([`target`]); what crosses is counted and audited
//! ([`metered`]).

mod metered;
mod target;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;

use self::metered::{Meter, Metered};
use self::target::{
    bad_request, drop_echoes, path_below, presented_token, redirect_location, upstream_uri,
};
use super::{ApiError, Shared};
use crate::error::BrokerError;
use crate::service::{ProxyCall, UsePermit, UseReport};
use crate::upstream::forwardable;

/// `/proxy/{entry}` and `/proxy/{entry}/{*path}`.
pub(super) async fn forward(
    State(broker): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(params): Path<Vec<(String, String)>>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let entry = params
        .into_iter()
        .find(|(key, _)| key == "entry")
        .map(|(_, v)| v)
        .unwrap_or_default();
    match prepare(&broker, &entry, peer, request).await {
        Ok(prepared) => {
            // Counted once allowed: an entry name that exists, never
            // whatever a caller puts in the path.
            broker.metrics().proxied(&entry);
            send(broker, &entry, prepared, started).await
        }
        Err(e) => e.into_response(),
    }
}

/// A request ready to go upstream, with its permit and counters.
struct Prepared {
    permit: UsePermit,
    request: axum::http::Request<Body>,
    up: Arc<AtomicU64>,
    report: UseReport,
}

async fn prepare(
    broker: &Shared,
    entry: &str,
    peer: SocketAddr,
    request: Request,
) -> Result<Prepared, ApiError> {
    let (parts, body) = request.into_parts();
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        return Err(bad_request(
            "absolute-form request targets are refused; address the path only",
        ));
    }
    if parts.method == Method::CONNECT {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "CONNECT is not proxied",
        ));
    }
    if parts.headers.contains_key(header::TRANSFER_ENCODING)
        && parts.headers.contains_key(header::CONTENT_LENGTH)
    {
        return Err(bad_request(
            "Content-Length and Transfer-Encoding together are refused",
        ));
    }
    let max_body = broker.config().proxy.max_body_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            format!("the request body is larger than proxy.max_body_bytes ({max_body})"),
        ));
    }
    let rest = path_below(&parts.uri, entry)?;
    let injection = broker.custody_injection(entry).await?;
    let token = presented_token(&parts.headers, parts.uri.query(), Some(&injection));
    let url = format!("{}{}", broker.public_url(), parts.uri.path());
    let path = if rest.is_empty() { "/" } else { rest.as_str() };
    let permit = broker
        .authorize_use(&ProxyCall {
            entry,
            token: token.as_ref().map(|(t, dpop)| (t.as_str(), *dpop)),
            dpop_proof: parts.headers.get("dpop").and_then(|v| v.to_str().ok()),
            method: parts.method.as_str(),
            url: &url,
            path,
            source_ip: &peer.ip().to_string(),
        })
        .await?;
    let uri = upstream_uri(&permit, &rest, parts.uri.query())?;
    let mut drop = vec!["host", "authorization", "dpop", "content-length"];
    if let Some(name) = permit.injection().header_name() {
        drop.push(name);
    }
    let mut headers = forwardable(&parts.headers, &drop);
    if let Some(length) = declared {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    if let (Some(name), Some(value)) = (
        permit.injection().header_name(),
        permit.injection().header_value(permit.secret()),
    ) {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| bad_request("the entry's header name is not valid"))?;
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| bad_request("the entry's secret does not fit in a header"))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    let up = Arc::new(AtomicU64::new(0));
    let counted = {
        let up = up.clone();
        let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
        http_body_util::Limited::new(body, limit).map_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                up.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            frame
        })
    };
    let report = UseReport {
        task_id: permit.task_id.clone(),
        workload: permit.workload.clone(),
        entry: permit.entry().to_owned(),
        method: parts.method.to_string(),
        host: uri.host().unwrap_or_default().to_owned(),
        path: path.to_owned(),
        status: 0,
        bytes_up: 0,
        bytes_down: 0,
        duration_ms: 0,
        aborted: false,
    };
    let mut request = axum::http::Request::new(Body::new(counted));
    *request.method_mut() = parts.method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(Prepared {
        permit,
        request,
        up,
        report,
    })
}

async fn send(broker: Shared, entry: &str, prepared: Prepared, started: Instant) -> Response {
    let Prepared {
        permit,
        request,
        up,
        report,
    } = prepared;
    let meter = Meter::new(broker.clone(), report, started, up);
    let response = match broker.upstream().send(request).await {
        Ok(response) => response,
        Err(e) => {
            let error = ApiError::from(BrokerError::Upstream(e));
            let response = error.into_response();
            meter.close(response.status().as_u16());
            return response;
        }
    };
    let (mut parts, body) = response.into_parts();
    if parts.status.is_redirection()
        && let Some(location) = parts.headers.get(header::LOCATION)
    {
        let proxy_base = format!("{}/proxy/{entry}", broker.public_url());
        match redirect_location(location, &permit, &proxy_base) {
            Some(location) => {
                parts.headers.insert(header::LOCATION, location);
            }
            None => {
                meter.close(StatusCode::BAD_GATEWAY.as_u16());
                return ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream_unavailable",
                    "the upstream redirected to another host: not followed, and not passed on",
                )
                .into_response();
            }
        }
    }
    parts.headers = forwardable(&parts.headers, &[]);
    drop_echoes(&mut parts.headers, permit.secret().as_bytes());
    drop(permit);
    let status = parts.status.as_u16();
    Response::from_parts(parts, Body::new(Metered::new(body, meter, status)))
}
