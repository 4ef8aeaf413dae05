//! The local end of the injecting proxy, run by `mayfly run --inject` for
//! an unmodified tool. The tool gets a base URL on loopback and a key that
//! is good only here, only while `mayfly run` lives; each request it makes
//! is forwarded to the broker's `/proxy/{entry}` with the task's current
//! access token and a fresh DPoP proof by a key that never leaves this
//! process. So the tool holds nothing worth copying: not the upstream key
//! (in custody), not a token (here, refreshed before it expires), not the
//! key tokens are bound to.

mod ca;
mod intercept;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::serve::ListenerExt as _;
use subtle::ConstantTimeEq as _;

use crate::clock::{Clock, SystemClock};
use crate::config::ProxyConfig;
use crate::custody::Injection;
use crate::dpop::ProofKey;
use crate::error::BrokerError;
use crate::http::ApiError;
use crate::upstream::{Upstream, forwardable};

pub use self::ca::{CA_FILE, LocalCa};

/// An entry the relay serves: its name and where its SDK puts the key.
#[derive(Debug, Clone)]
pub struct RelayEntry {
    /// The custody entry.
    pub name: String,
    /// How its secret is injected (so the local key is found where the
    /// tool's SDK puts a key).
    pub injection: Injection,
    /// Its upstream base URLs (the hosts `--intercept` intercepts).
    pub upstreams: Vec<String>,
}

/// The current access token of each entry, replaced as they are refreshed.
#[derive(Debug, Clone, Default)]
pub struct TokenSlots(Arc<RwLock<HashMap<String, String>>>);

impl TokenSlots {
    /// Sets the token of `entry`.
    pub fn set(&self, entry: &str, token: String) {
        if let Ok(mut slots) = self.0.write() {
            slots.insert(entry.to_owned(), token);
        }
    }

    fn get(&self, entry: &str) -> Option<String> {
        self.0.read().ok()?.get(entry).cloned()
    }
}

/// A key for CMD to present to the relay: random, good only there, only
/// while it runs.
pub fn new_local_key() -> Result<String, BrokerError> {
    let bytes =
        crate::b64::random_bytes::<24>().map_err(|e| BrokerError::Internal(e.to_string()))?;
    Ok(format!("mayfly-relay-{}", crate::b64::encode(&bytes)))
}

struct RelayState {
    broker_url: String,
    entries: HashMap<String, RelayEntry>,
    local_key: String,
    proof_key: Arc<ProofKey>,
    tokens: TokenSlots,
    client: Upstream,
    clock: SystemClock,
}

/// A running relay.
#[derive(Debug)]
pub struct Relay {
    /// Where it listens (loopback).
    pub address: SocketAddr,
    /// Where its intercepting HTTPS proxy listens, if it has one.
    pub intercept_address: Option<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn loopback_listener() -> Result<(tokio::net::TcpListener, SocketAddr), BrokerError> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| BrokerError::Internal(format!("the relay cannot listen on loopback: {e}")))?;
    let address = listener
        .local_addr()
        .map_err(|e| BrokerError::Internal(e.to_string()))?;
    Ok((listener, address))
}

impl Relay {
    /// Starts a relay on a free loopback port, forwarding to the broker at
    /// `broker_url`, accepting `local_key` from the tool; with `intercept`,
    /// also an HTTPS proxy that intercepts the entries' upstream hosts
    /// under that authority.
    pub async fn start(
        broker_url: &str,
        entries: Vec<RelayEntry>,
        local_key: String,
        proof_key: Arc<ProofKey>,
        tokens: TokenSlots,
        intercept: Option<Arc<LocalCa>>,
    ) -> Result<Relay, BrokerError> {
        let hosts = Arc::new(intercept::intercepted(&entries));
        let state = Arc::new(RelayState {
            broker_url: broker_url.trim_end_matches('/').to_owned(),
            entries: entries.into_iter().map(|e| (e.name.clone(), e)).collect(),
            local_key,
            proof_key,
            tokens,
            client: Upstream::new(&ProxyConfig::default())?,
            clock: SystemClock,
        });
        let app = axum::Router::new()
            .route("/{entry}", any(relay))
            .route("/{entry}/{*path}", any(relay))
            .with_state(state.clone());
        let (listener, address) = loopback_listener().await?;
        // Answers leave at once: without TCP_NODELAY, a body written after
        // its headers waits for the tool's delayed ACK (40 ms a request).
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let mut tasks = vec![tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("the relay stopped: {e}");
            }
        })];
        let mut intercept_address = None;
        if let Some(ca) = intercept {
            let (listener, address) = loopback_listener().await?;
            intercept_address = Some(address);
            tasks.push(tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(intercept::serve_connection(
                        stream,
                        state.clone(),
                        ca.clone(),
                        hosts.clone(),
                    ));
                }
            }));
        }
        Ok(Relay {
            address,
            intercept_address,
            tasks,
        })
    }

    /// The base URL of an entry on this relay.
    pub fn url(&self, entry: &str) -> String {
        format!("http://{}/{entry}", self.address)
    }
}

fn refuse(status: StatusCode, why: &str) -> Response {
    ApiError::new(
        status,
        "invalid_request",
        format!("mayfly run relay: {why}"),
    )
    .into_response()
}

/// Whether the tool presented the relay's key, where its SDK puts one.
/// (The key is random and good only here, so any place that carries it
/// will do.)
fn presents_local_key(request: &Request, entry: &RelayEntry, key: &str) -> bool {
    let same = |value: &str| bool::from(value.as_bytes().ct_eq(key.as_bytes()));
    let headers = request.headers();
    // Under any scheme: SDKs say `Bearer`, GitHub's CLI says `token`.
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some((_, token)) = value.trim().split_once(' ')
        && same(token.trim())
    {
        return true;
    }
    match &entry.injection {
        Injection::Header { name, .. } => headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .and_then(|v| entry.injection.unwrap_header(v))
            .is_some_and(same),
        Injection::Query { name } => request.uri().query().is_some_and(|q| {
            form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == name.as_str() && same(&v))
        }),
    }
}

async fn relay(
    State(state): State<Arc<RelayState>>,
    Path(params): Path<Vec<(String, String)>>,
    request: Request,
) -> Response {
    let Some(entry) = params
        .iter()
        .find(|(k, _)| k == "entry")
        .and_then(|(_, name)| state.entries.get(name))
    else {
        let names: Vec<&str> = state.entries.keys().map(String::as_str).collect();
        return refuse(
            StatusCode::NOT_FOUND,
            &format!("this relay serves {}", names.join(", ")),
        );
    };
    let below = request
        .uri()
        .path()
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(entry.name.as_str()))
        .unwrap_or_default()
        .to_owned();
    forward(&state, entry, &below, request).await
}

/// Forwards one request of the tool, for `entry`, to the broker's proxy:
/// `below` is its path below the entry's upstream base.
async fn forward(
    state: &RelayState,
    entry: &RelayEntry,
    below: &str,
    request: Request,
) -> Response {
    if !presents_local_key(&request, entry, &state.local_key) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "present the key mayfly run gave this command (its SDK's key variable)",
        );
    }
    let Some(token) = state.tokens.get(&entry.name) else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "no credential yet; retry");
    };
    let (parts, body) = request.into_parts();
    let url = format!("{}/proxy/{}{below}", state.broker_url, entry.name);
    let query = parts
        .uri
        .query()
        .map(|q| match entry.injection.query_name() {
            Some(name) => form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form_urlencoded::parse(q.as_bytes()).filter(|(k, _)| k != name))
                .finish(),
            None => q.to_owned(),
        });
    let target = match query.filter(|q| !q.is_empty()) {
        Some(query) => format!("{url}?{query}"),
        None => url.clone(),
    };
    let Ok(uri) = target.parse::<Uri>() else {
        return refuse(StatusCode::BAD_REQUEST, "the path does not make a URL");
    };
    let proof =
        match state
            .proof_key
            .proof(parts.method.as_str(), &url, Some(&token), state.clock.now())
        {
            Ok(proof) => proof,
            Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
    let mut drop = vec!["host", "authorization", "dpop"];
    if let Some(name) = entry.injection.header_name() {
        drop.push(name);
    }
    let mut headers = forwardable(&parts.headers, &drop);
    let (Ok(authorization), Ok(proof)) = (
        HeaderValue::from_str(&format!("DPoP {token}")),
        HeaderValue::from_str(&proof),
    ) else {
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the credential does not fit a header",
        );
    };
    headers.insert(header::AUTHORIZATION, authorization);
    headers.insert("dpop", proof);
    let mut upstream = axum::http::Request::new(Body::new(body));
    *upstream.method_mut() = parts.method;
    *upstream.uri_mut() = uri;
    *upstream.headers_mut() = headers;
    match state.client.send(upstream).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            parts.headers = forwardable(&parts.headers, &[]);
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => refuse(StatusCode::BAD_GATEWAY, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(provider: &str) -> RelayEntry {
        RelayEntry {
            name: provider.into(),
            injection: crate::custody::default_injection(provider),
            upstreams: vec![],
        }
    }

    fn request(header: &str, value: &str) -> Request {
        axum::http::Request::builder()
            .uri("/openai/v1/models")
            .header(header, value)
            .body(Body::empty())
            .unwrap()
    }

    #[test]
    fn the_local_key_is_found_where_tools_put_a_key() {
        let key = "mayfly-relay-k1";
        let openai = entry("openai");
        assert!(presents_local_key(
            &request("authorization", "Bearer mayfly-relay-k1"),
            &openai,
            key
        ));
        assert!(presents_local_key(
            &request("authorization", "token mayfly-relay-k1"),
            &openai,
            key
        ));
        assert!(!presents_local_key(
            &request("authorization", "Bearer mayfly-relay-k2"),
            &openai,
            key
        ));
        assert!(!presents_local_key(
            &request("authorization", "mayfly-relay-k1"),
            &openai,
            key
        ));
        let anthropic = entry("anthropic");
        assert!(presents_local_key(
            &request("x-api-key", "mayfly-relay-k1"),
            &anthropic,
            key
        ));
        assert!(!presents_local_key(
            &request("x-api-key", "sk-ant-real"),
            &anthropic,
            key
        ));
    }
}
