//! `mayfly run --intercept`: an HTTPS proxy on loopback for tools that
//! cannot change an API's base URL. A `CONNECT` to the upstream of an
//! injected entry is answered with TLS under the local authority ([`ca`]),
//! and each request inside goes through the relay like any other; a
//! `CONNECT` to any other host is tunnelled untouched. Plain-HTTP proxy
//! requests are refused: the key never travels in clear text.
//!
//! [`ca`]: super::ca

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::ca::LocalCa;
use super::{RelayEntry, RelayState, forward, refuse};

/// An intercepted upstream: which entry, and the base path to strip.
#[derive(Debug, Clone)]
pub(super) struct Intercepted {
    pub(super) entry: String,
    pub(super) base_path: String,
}

/// The intercepted upstreams by authority (`api.openai.com:443`).
pub(super) fn intercepted(entries: &[RelayEntry]) -> HashMap<String, Intercepted> {
    let mut out = HashMap::new();
    for entry in entries {
        for upstream in &entry.upstreams {
            let Ok(uri) = upstream.parse::<axum::http::Uri>() else {
                continue;
            };
            let (Some(host), Some("https")) = (uri.host(), uri.scheme_str()) else {
                continue;
            };
            let port = uri.port_u16().unwrap_or(443);
            out.insert(
                format!("{}:{port}", host.to_ascii_lowercase()),
                Intercepted {
                    entry: entry.name.clone(),
                    base_path: uri.path().trim_end_matches('/').to_owned(),
                },
            );
        }
    }
    out
}

/// Serves one connection to the intercepting proxy.
pub(super) async fn serve_connection(
    stream: tokio::net::TcpStream,
    state: Arc<RelayState>,
    ca: Arc<LocalCa>,
    hosts: Arc<HashMap<String, Intercepted>>,
) {
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let (state, ca, hosts) = (state.clone(), ca.clone(), hosts.clone());
        async move { Ok::<_, std::convert::Infallible>(connect(request, state, ca, hosts)) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

/// Answers a `CONNECT`, then intercepts or tunnels what follows.
fn connect(
    request: Request<Incoming>,
    state: Arc<RelayState>,
    ca: Arc<LocalCa>,
    hosts: Arc<HashMap<String, Intercepted>>,
) -> Response<Body> {
    if request.method() != Method::CONNECT {
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "the intercepting proxy takes HTTPS (CONNECT) only",
        );
    }
    let Some(authority) = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_ascii_lowercase())
    else {
        return refuse(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
    };
    let target = hosts.get(&authority).cloned();
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(request).await else {
            return;
        };
        let client = TokioIo::new(upgraded);
        match target {
            Some(target) => intercept(client, &authority, target, state, ca).await,
            None => tunnel(client, &authority).await,
        }
    });
    Response::new(Body::empty())
}

/// Copies bytes both ways between the tool and `authority`, untouched.
async fn tunnel(mut client: TokioIo<hyper::upgrade::Upgraded>, authority: &str) {
    if let Ok(mut server) = tokio::net::TcpStream::connect(authority).await {
        let _ = server.set_nodelay(true);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
}

/// TLS with the tool under the local authority, then each request through
/// the relay for the entry.
async fn intercept(
    client: TokioIo<hyper::upgrade::Upgraded>,
    authority: &str,
    target: Intercepted,
    state: Arc<RelayState>,
    ca: Arc<LocalCa>,
) {
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let Ok(config) = ca.server_config(host) else {
        return;
    };
    let Ok(tls) = tokio_rustls::TlsAcceptor::from(config).accept(client).await else {
        return;
    };
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let (state, target) = (state.clone(), target.clone());
        async move {
            let Some(entry) = state.entries.get(&target.entry) else {
                return Ok::<_, std::convert::Infallible>(refuse(
                    StatusCode::NOT_FOUND,
                    "no such entry",
                ));
            };
            let path = request.uri().path();
            let Some(below) = path.strip_prefix(target.base_path.as_str()) else {
                return Ok(refuse(
                    StatusCode::NOT_FOUND,
                    "the path is outside the entry's upstream",
                ));
            };
            let below = below.to_owned();
            let (parts, body) = request.into_parts();
            let request = Request::from_parts(parts, Body::new(body));
            Ok(forward(&state, entry, &below, request).await)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .await;
}
