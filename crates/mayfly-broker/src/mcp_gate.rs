//! The MCP gate: JSON-RPC messages between an MCP client and server, each
//! request decided by the broker's policy (action `mcp`) before it reaches
//! the server. The helpers here are shared by the stdio gate (`mayfly run
//! --mcp-gate`) and the HTTP gate ([`serve`], `mayfly mcp gate`) for
//! remote streamable-HTTP servers, which also serves the protected resource
//! metadata (RFC 9728) naming the broker as authorization server and
//! requires a Mayfly token whose audience is the gate's resource.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt as _;
use axum::{Json, Router};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};

use crate::service::{MAX_MCP_CALLS, McpCall, McpDecision, McpRecord};
use crate::upstream::{Upstream, forwardable};

/// Methods of the protocol itself, never decided: without them no client
/// could even start.
const PROTOCOL_METHODS: [&str; 2] = ["initialize", "ping"];
/// The JSON-RPC error code of a call policy denies.
pub const DENIED: i64 = -32003;
/// Largest request body the HTTP gate reads.
const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// Largest `tools/list` answer the HTTP gate reads to filter.
const MAX_LIST_BYTES: usize = 16 * 1024 * 1024;

/// The policy facts of a request: its method, and the tool, resource or
/// prompt it names.
pub fn call_of(message: &Value) -> McpCall {
    let method = message
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let params = message.get("params");
    let field = |name: &str| {
        params
            .and_then(|p| p.get(name))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (tool, target) = match method {
        "tools/call" => (field("name"), String::new()),
        "prompts/get" => (String::new(), field("name")),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            (String::new(), field("uri"))
        }
        _ => (String::new(), String::new()),
    };
    McpCall {
        method: method.to_owned(),
        tool,
        target,
    }
}

/// Whether the gate decides `message`: a request (it has an id) whose
/// method is not the protocol's own.
pub fn is_decided(message: &Value) -> bool {
    let method = message.get("method").and_then(Value::as_str);
    message.get("id").is_some()
        && method
            .is_some_and(|m| !PROTOCOL_METHODS.contains(&m) && !m.starts_with("notifications/"))
}

/// The requests of a message or batch that the gate decides.
pub fn decided_requests(message: &Value) -> Vec<&Value> {
    match message {
        Value::Array(items) => items.iter().filter(|m| is_decided(m)).collect(),
        single if is_decided(single) => vec![single],
        _ => Vec::new(),
    }
}

/// A key for a message's id (`1` and `"1"` differ).
pub fn id_key(message: &Value) -> String {
    message.get("id").map(Value::to_string).unwrap_or_default()
}

/// The JSON-RPC error that answers a denied request.
pub fn denial(message: &Value, call: &McpCall, reason: &str) -> Value {
    let what = if call.tool.is_empty() {
        call.method.clone()
    } else {
        format!("{} {}", call.method, call.tool)
    };
    json!({
        "jsonrpc": "2.0",
        "id": message.get("id").cloned().unwrap_or(Value::Null),
        "error": {"code": DENIED, "message": format!("Mayfly policy denies {what}: {reason}")},
    })
}

/// The answers to a message (or batch) policy denied, one per request.
pub fn denials(message: &Value, requests: &[&Value], calls: &[McpCall], reason: &str) -> Value {
    let answers: Vec<Value> = requests
        .iter()
        .zip(calls)
        .map(|(m, call)| denial(m, call, reason))
        .collect();
    match message {
        Value::Array(_) => Value::Array(answers),
        _ => answers.into_iter().next().unwrap_or(Value::Null),
    }
}

/// Each tool of a `tools/list` answer as the call policy decides for it.
pub fn listed_tools(answer: &Value) -> Vec<McpCall> {
    answer
        .get("result")
        .and_then(|r| r.get("tools"))
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .map(|tool| McpCall {
                    method: "tools/call".into(),
                    tool: tool
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    target: String::new(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Keeps the tools of a `tools/list` answer whose decision allows them
/// (a tool without a decision is dropped).
pub fn retain_tools(answer: &mut Value, decisions: &[McpDecision]) {
    if let Some(tools) = answer
        .get_mut("result")
        .and_then(|r| r.get_mut("tools"))
        .and_then(Value::as_array_mut)
    {
        let mut allowed = decisions.iter().map(|d| d.allowed);
        tools.retain(|_| allowed.next().unwrap_or(false));
    }
}

/// Why the broker gave no decisions.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// The gate's token is not good for this server (401).
    #[error("{0}")]
    InvalidToken(String),
    /// Anything else: the broker unreachable, refusing, or answering
    /// something else.
    #[error("{0}")]
    Failed(String),
}

/// The gates' client to the broker: decisions and audit records over one
/// pooled async HTTP client (no blocking thread per call).
#[derive(Clone)]
pub struct Decider {
    http: Arc<Upstream>,
    broker: String,
    server: String,
}

impl Decider {
    /// A client of `broker` for the gate that guards `server`.
    pub fn new(broker: &str, server: &str) -> Result<Decider, GateError> {
        let http = Upstream::new(&crate::config::ProxyConfig::default())
            .map_err(|e| GateError(e.to_string()))?;
        Ok(Decider {
            http: Arc::new(http),
            broker: broker.trim_end_matches('/').to_owned(),
            server: server.to_owned(),
        })
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Result<Value, DecideError> {
        let failed = |e: &dyn std::fmt::Display| DecideError::Failed(e.to_string());
        let request = axum::http::Request::builder()
            .method(Method::POST)
            .uri(format!("{}{path}", self.broker))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .map_err(|e| failed(&e))?;
        let answer = self.http.send(request).await.map_err(|e| failed(&e))?;
        let status = answer.status();
        let bytes = http_body_util::Limited::new(answer.into_body(), 4 * 1024 * 1024)
            .collect()
            .await
            .map_err(|e| failed(&e))?
            .to_bytes();
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(json);
        }
        let description = json
            .get("error_description")
            .and_then(Value::as_str)
            .unwrap_or("no reason given")
            .to_owned();
        if status == StatusCode::UNAUTHORIZED {
            return Err(DecideError::InvalidToken(description));
        }
        Err(DecideError::Failed(format!(
            "the broker refused ({status}): {description}"
        )))
    }

    /// The decisions on `calls`, one each, in order.
    pub async fn decide(
        &self,
        token: &str,
        calls: &[McpCall],
    ) -> Result<Vec<McpDecision>, DecideError> {
        let answer = self
            .post(
                "/v1/mcp/decide",
                token,
                json!({"server": self.server, "calls": calls}),
            )
            .await?;
        let decisions: Vec<McpDecision> = answer
            .get("decisions")
            .cloned()
            .and_then(|d| serde_json::from_value(d).ok())
            .ok_or_else(|| DecideError::Failed("the broker's answer has no decisions".into()))?;
        if decisions.len() != calls.len() {
            return Err(DecideError::Failed(
                "the broker answered for another number of calls".into(),
            ));
        }
        Ok(decisions)
    }

    /// One audit event per record (a batch of [`record_batches`]).
    pub async fn record(&self, token: &str, records: &[McpRecord]) -> Result<(), DecideError> {
        self.post(
            "/v1/mcp/record",
            token,
            json!({"server": self.server, "records": records}),
        )
        .await
        .map(|_| ())
    }
}

/// `records` cut into batches the broker accepts in one request (by size
/// and by count), in order.
pub fn record_batches(records: &[McpRecord]) -> Vec<&[McpRecord]> {
    let mut batches = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, record) in records.iter().enumerate() {
        let size = serde_json::to_string(record).map_or(0, |r| r.len() + 1);
        if i > start && (bytes + size > RECORD_BATCH_BYTES || i - start >= MAX_MCP_CALLS) {
            batches.extend(records.get(start..i));
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < records.len() {
        batches.extend(records.get(start..));
    }
    batches
}

/// How the HTTP gate runs.
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// The upstream MCP server's origin (`http://127.0.0.1:9000`, no
    /// trailing `/`); the gate forwards each request's path and query to it.
    pub upstream: String,
    /// The gate's public base URL (`http://127.0.0.1:8720`).
    pub public_url: String,
    /// The resource its tokens must be for (their audience): the gate's
    /// MCP endpoint URL by default.
    pub resource: String,
    /// The broker that decides.
    pub broker: String,
}

impl GateConfig {
    /// The gate for the MCP endpoint `upstream` (a URL), listening on
    /// `listen`; its resource is `http://LISTEN` and the upstream's path
    /// unless given.
    pub fn new(
        upstream: &str,
        listen: &str,
        resource: Option<String>,
        broker: &str,
    ) -> Result<GateConfig, GateError> {
        // The URL is never echoed: a remote server's URL can carry a key.
        let (uri, origin) = crate::mcp_bridge::server_url(upstream)
            .map_err(|why| GateError(format!("--upstream {why}")))?;
        if uri.query().is_some() {
            return Err(GateError(
                "--upstream has a query string, which the gate would drop (it forwards each request's own path and query): give the server's URL without one".to_owned(),
            ));
        }
        Ok(GateConfig {
            upstream: origin,
            public_url: format!("http://{listen}"),
            resource: resource.unwrap_or_else(|| format!("http://{listen}{}", uri.path())),
            broker: broker.trim_end_matches('/').to_owned(),
        })
    }
}

struct Gate {
    config: GateConfig,
    decider: Decider,
    upstream: Upstream,
}

/// Why the gate could not start.
#[derive(Debug, thiserror::Error)]
#[error("the MCP gate: {0}")]
pub struct GateError(String);

/// Serves the HTTP gate on `listener` until `shutdown` completes.
pub async fn serve(
    config: GateConfig,
    proxy: &crate::config::ProxyConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), GateError> {
    let upstream = Upstream::new(proxy).map_err(|e| GateError(e.to_string()))?;
    let gate = Arc::new(Gate {
        decider: Decider::new(&config.broker, &config.resource)?,
        config,
        upstream,
    });
    let app = Router::new()
        .route("/.well-known/oauth-protected-resource", get(metadata))
        .route(
            "/.well-known/oauth-protected-resource/{*rest}",
            get(metadata),
        )
        .fallback(gated)
        .with_state(gate);
    // Answers leave at once (no wait for the client's delayed ACK).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| GateError(e.to_string()))
}

/// RFC 9728 protected resource metadata.
async fn metadata(State(gate): State<Arc<Gate>>) -> Response {
    Json(json!({
        "resource": gate.config.resource,
        "authorization_servers": [gate.config.broker],
        "bearer_methods_supported": ["header"],
        "resource_name": "MCP server behind Mayfly's gate",
    }))
    .into_response()
}

fn unauthorized(gate: &Gate, error: Option<&str>, description: &str) -> Response {
    let mut challenge = format!(
        "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource\"",
        gate.config.public_url.trim_end_matches('/')
    );
    if let Some(error) = error {
        challenge.push_str(&format!(", error=\"{error}\""));
    }
    let mut response = (
        StatusCode::UNAUTHORIZED,
        Json(
            json!({"error": error.unwrap_or("invalid_request"), "error_description": description}),
        ),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

fn jsonrpc_response(status: StatusCode, body: &Value) -> Response {
    (status, Json(body.clone())).into_response()
}

impl Gate {
    /// Sends records to the audit, off the request's path.
    fn record(&self, token: &str, records: Vec<McpRecord>) {
        let (decider, token) = (self.decider.clone(), token.to_owned());
        tokio::spawn(async move {
            if let Err(e) = decider.record(&token, &records).await {
                tracing::warn!("the MCP gate could not record calls: {e}");
            }
        });
    }
}

/// Every request to the MCP endpoint.
async fn gated(State(gate): State<Arc<Gate>>, request: Request) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .map(str::to_owned);
    let Some(token) = token else {
        return unauthorized(
            &gate,
            None,
            "send a Mayfly access token for this MCP server as Bearer",
        );
    };
    let (parts, body) = request.into_parts();
    let body = match http_body_util::Limited::new(body, MAX_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return jsonrpc_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32600, "message": "the request is larger than 4 MiB"}}),
            );
        }
    };
    let message: Option<Value> = if parts.method == Method::POST {
        match serde_json::from_slice(&body) {
            Ok(message) => Some(message),
            Err(_) => {
                return jsonrpc_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "Parse error: not a JSON-RPC message (Mayfly's MCP gate)"}}),
                );
            }
        }
    } else {
        None
    };
    let requests: Vec<&Value> = message.as_ref().map(decided_requests).unwrap_or_default();
    let calls: Vec<McpCall> = requests.iter().map(|m| call_of(m)).collect();
    // Zero calls still checks the token: GET streams and DELETE too.
    let decisions = match gate.decider.decide(&token, &calls).await {
        Ok(decisions) => decisions,
        Err(DecideError::InvalidToken(description)) => {
            return unauthorized(&gate, Some("invalid_token"), &description);
        }
        Err(DecideError::Failed(e)) => {
            let reason = format!("Mayfly could not decide it ({e})");
            return match &message {
                Some(message) if !requests.is_empty() => jsonrpc_response(
                    StatusCode::OK,
                    &denials(message, &requests, &calls, &reason),
                ),
                _ => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
            };
        }
    };
    if let (Some(message), Some(denied)) = (&message, decisions.iter().find(|d| !d.allowed)) {
        let records = calls
            .iter()
            .zip(&decisions)
            .map(|(call, d)| record_of(call, d.allowed, false, Duration::ZERO))
            .collect();
        gate.record(&token, records);
        return jsonrpc_response(
            StatusCode::OK,
            &denials(message, &requests, &calls, &denied.reason),
        );
    }
    let listing = requests
        .iter()
        .zip(&calls)
        .find(|(_, call)| call.method == "tools/list")
        .map(|(m, _)| id_key(m));
    let started = Instant::now();
    let answer = match forward(&gate, &parts, body).await {
        Ok(answer) => answer,
        Err(response) => return response,
    };
    let answer = match listing {
        Some(id) if answer.status().is_success() => {
            filter_listing(&gate, &token, answer, &id).await
        }
        _ => answer,
    };
    let elapsed = started.elapsed();
    let failed = !answer.status().is_success();
    gate.record(
        &token,
        calls
            .iter()
            .map(|call| record_of(call, true, failed, elapsed))
            .collect(),
    );
    answer
}

/// The longest method, tool or target an audit record keeps (a resource
/// URI can be of any length; the audit needs to name it, not hold it).
const MAX_RECORD_FIELD: usize = 512;

/// Bytes of records sent to the broker in one request: well under its
/// default body limit (64 KiB).
const RECORD_BATCH_BYTES: usize = 32 * 1024;

fn clipped(text: &str) -> String {
    match text.char_indices().nth(MAX_RECORD_FIELD) {
        Some((end, _)) => format!("{}...", text.get(..end).unwrap_or_default()),
        None => text.to_owned(),
    }
}

/// The audit record of one finished call (both gates send these).
pub fn record_of(call: &McpCall, allowed: bool, failed: bool, took: Duration) -> McpRecord {
    McpRecord {
        method: clipped(&call.method),
        tool: clipped(&call.tool),
        target: clipped(&call.target),
        allowed,
        failed,
        duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
    }
}

/// Sends the request on to the upstream server (without the client's
/// token) and streams its answer back.
async fn forward(
    gate: &Gate,
    parts: &axum::http::request::Parts,
    body: Bytes,
) -> Result<Response, Response> {
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let uri = format!("{}{path}", gate.config.upstream);
    let mut request = axum::http::Request::builder()
        .method(parts.method.clone())
        .uri(&uri)
        .body(Body::from(body))
        .map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()).into_response())?;
    *request.headers_mut() =
        forwardable(&parts.headers, &["authorization", "host", "content-length"]);
    let answer = gate.upstream.send(request).await.map_err(|e| {
        (
            StatusCode::BAD_GATEWAY,
            format!("the MCP server did not answer: {e}"),
        )
            .into_response()
    })?;
    let (mut answer_parts, body) = answer.into_parts();
    answer_parts.headers = forwardable(&answer_parts.headers, &[]);
    Ok(Response::from_parts(answer_parts, Body::new(body)))
}

/// Reads a `tools/list` answer whole (JSON, or an SSE stream that ends with
/// it) and keeps only the tools policy allows.
async fn filter_listing(gate: &Gate, token: &str, answer: Response, id: &str) -> Response {
    let (mut parts, body) = answer.into_parts();
    let Ok(collected) = http_body_util::Limited::new(body, MAX_LIST_BYTES)
        .collect()
        .await
    else {
        return (
            StatusCode::BAD_GATEWAY,
            "the MCP server's tools/list answer is too large",
        )
            .into_response();
    };
    let bytes = collected.to_bytes();
    let sse = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let filtered = if sse {
        // Read as events (data split over lines, any line ending), and
        // written back one message per event.
        let mut reader = crate::sse::EventReader::new(MAX_LIST_BYTES);
        let Ok(mut events) = reader.feed(&bytes) else {
            return (
                StatusCode::BAD_GATEWAY,
                "the MCP server's tools/list answer is too large",
            )
                .into_response();
        };
        if let Ok(last) = reader.feed(b"\n\n") {
            events.extend(last);
        }
        let mut out = String::with_capacity(bytes.len());
        for event in events {
            let mut data = event.data;
            if let Ok(mut message) = serde_json::from_str::<Value>(&data)
                && id_key(&message) == id
            {
                filter_answer(gate, token, &mut message).await;
                data = message.to_string();
            }
            if let Some(kind) = &event.event {
                out.push_str(&format!("event: {kind}\n"));
            }
            if let Some(event_id) = &event.id {
                out.push_str(&format!("id: {event_id}\n"));
            }
            for line in data.split('\n') {
                out.push_str("data: ");
                out.push_str(line);
                out.push('\n');
            }
            out.push('\n');
        }
        out
    } else {
        let text = String::from_utf8_lossy(&bytes);
        match serde_json::from_str::<Value>(&text) {
            Ok(mut message) => {
                filter_answer(gate, token, &mut message).await;
                message.to_string()
            }
            Err(_) => text.into_owned(),
        }
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(filtered))
}

async fn filter_answer(gate: &Gate, token: &str, answer: &mut Value) {
    let calls = listed_tools(answer);
    let decisions = gate.decider.decide(token, &calls).await.unwrap_or_default();
    retain_tools(answer, &decisions);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_go_in_batches_the_broker_accepts() {
        let call = McpCall {
            method: "tools/call".into(),
            tool: "search_issues".into(),
            target: "x".repeat(5000),
        };
        let record = record_of(&call, true, false, Duration::from_millis(3));
        assert!(record.target.len() < 600 && record.target.ends_with("..."));
        let records = vec![record; 2500];
        let batches = record_batches(&records);
        assert_eq!(batches.iter().map(|b| b.len()).sum::<usize>(), 2500);
        for batch in &batches {
            let body = json!({"server": "s", "records": batch}).to_string();
            assert!(body.len() < 48 * 1024 && batch.len() <= MAX_MCP_CALLS);
        }
        let small = vec![
            record_of(
                &McpCall {
                    target: String::new(),
                    ..call
                },
                true,
                false,
                Duration::ZERO
            );
            1500
        ];
        let batches = record_batches(&small);
        assert!(
            batches.iter().all(|b| b.len() <= MAX_MCP_CALLS),
            "{}",
            batches.len()
        );
        assert!(record_batches(&[]).is_empty());
    }

    #[test]
    fn an_upstream_is_an_origin_and_never_echoed() {
        let config = GateConfig::new(
            "http://127.0.0.1:9000/mcp/",
            "127.0.0.1:8720",
            None,
            "http://b/",
        )
        .unwrap();
        assert_eq!(config.upstream, "http://127.0.0.1:9000");
        assert_eq!(config.resource, "http://127.0.0.1:8720/mcp/");
        let key = "k3yZk3yZk3yZk3yZ"; // mayfly:allow (test fixture)
        for given in [
            format!("https://user:{key}@mcp.example/mcp"),
            format!("https://mcp.example/mcp?api_key={key}"),
            format!("not a url {key}"),
        ] {
            let err = GateConfig::new(&given, "127.0.0.1:8720", None, "http://b").unwrap_err();
            assert!(!err.to_string().contains(key), "{err}");
        }
    }
}
