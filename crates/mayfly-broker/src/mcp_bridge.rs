//! A remote MCP server as a stdio one (`mayfly mcp connect`): JSON-RPC
//! lines read from the client go to the server over streamable HTTP (MCP
//! 2025-03-26 and later), and every message the server sends comes back
//! as one line. A server that refuses the first POST with 404 or 405 is
//! spoken to over the older HTTP+SSE transport (2024-11-05), as the MCP
//! specification's compatibility rules say.
//!
//! With `mayfly run --inject`, the requests go through the run's relay
//! ([`Via`]), whose broker adds the custody secret, so an MCP client
//! whose configuration held a remote server's key holds nothing.
//!
//! Requests are sent concurrently once the session is open (a long tool
//! call does not hold back a cancellation); `initialize` is sent alone, so
//! the session id it returns goes with everything after it. A request the
//! server cannot be asked gets a JSON-RPC error with the reason, so the
//! client never waits for an answer that will not come.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWrite};
use tokio::io::{AsyncWriteExt as _, BufReader};
use tokio::task::JoinSet;

use crate::sse::{Event, EventReader};
use crate::upstream::Upstream;

/// The largest message passed on either way (a line from the client, an
/// answer, an event).
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// The largest error body read to explain a refusal.
const MAX_ERROR_BYTES: usize = 64 * 1024;

const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");
const VERSION_HEADER: HeaderName = HeaderName::from_static("mcp-protocol-version");
const LAST_EVENT_HEADER: HeaderName = HeaderName::from_static("last-event-id");

/// How long the 2024-11-05 transport may take to name its message endpoint.
const ENDPOINT_WAIT: Duration = Duration::from_secs(30);

/// Why the bridge cannot start or go on.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The server's URL is not one the bridge can use (the URL itself is
    /// not repeated: it may carry a key).
    #[error("the MCP server's URL {0}")]
    Url(&'static str),
    /// A configured header is malformed.
    #[error("header {name:?}: {why}")]
    Header {
        /// The header's name as given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The client's side could not be read.
    #[error("cannot read the MCP client's messages: {0}")]
    Input(std::io::Error),
}

/// A remote MCP server's URL, checked for use: http or https, with a host
/// and no user or password. Returns it and its origin
/// (`https://mcp.example.com`). The error is a phrase about "the URL" that
/// never repeats it: a server's URL can carry a key.
pub fn server_url(url: &str) -> Result<(Uri, String), &'static str> {
    let uri: Uri = url.parse().map_err(|_| "is not a URL")?;
    let scheme = match uri.scheme_str() {
        Some(scheme @ ("http" | "https")) => scheme,
        _ => return Err("must start with https:// or http://"),
    };
    let authority = uri.authority().ok_or("has no host")?.as_str();
    if authority.contains('@') {
        return Err("holds a user or password: put credentials in custody, not in the URL");
    }
    let origin = format!("{scheme}://{authority}");
    Ok((uri, origin))
}

/// The local relay of `mayfly run --inject` that requests go through.
#[derive(Debug, Clone)]
pub struct Via {
    /// The relay's URL (`MAYFLY_PROXY_URL`).
    pub relay: String,
    /// The custody entry whose secret the broker adds.
    pub entry: String,
    /// The key the relay accepts (`MAYFLY_PROXY_KEY`).
    pub key: String,
}

/// Where the server is, and what goes with every request.
#[derive(Debug, Clone)]
pub struct BridgeTarget {
    /// What a path on the server's origin is appended to: the origin
    /// itself, or the relay's URL for the entry.
    base: String,
    /// The server's own origin, to recognise absolute URLs it sends.
    origin: String,
    /// The endpoint's path and query on the server.
    path: String,
    /// Headers sent with every request.
    headers: HeaderMap,
}

impl BridgeTarget {
    /// The server at `url` (http or https, no user or password), reached
    /// directly or through `via`, with `headers` on every request.
    pub fn new(
        url: &str,
        via: Option<&Via>,
        headers: &[(String, String)],
    ) -> Result<BridgeTarget, BridgeError> {
        let (uri, origin) = server_url(url).map_err(BridgeError::Url)?;
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let bad = |why| BridgeError::Header {
                name: name.clone(),
                why,
            };
            let name_parsed = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| bad("not a header name"))?;
            let value =
                HeaderValue::from_str(value.trim()).map_err(|_| bad("not a header value"))?;
            map.append(name_parsed, value);
        }
        let base = match via {
            Some(via) => {
                let key = HeaderValue::from_str(&format!("Bearer {}", via.key)).map_err(|_| {
                    BridgeError::Header {
                        name: "Authorization".into(),
                        why: "the relay's key does not fit a header",
                    }
                })?;
                map.insert(header::AUTHORIZATION, key);
                format!("{}/{}", via.relay.trim_end_matches('/'), via.entry)
            }
            None => origin.clone(),
        };
        Ok(BridgeTarget {
            base,
            origin,
            path,
            headers: map,
        })
    }

    fn endpoint(&self) -> Result<Uri, String> {
        self.at(&self.path)
    }

    /// The URL of `path` (and query) on the server, as this bridge reaches it.
    fn at(&self, path: &str) -> Result<Uri, String> {
        format!("{}{path}", self.base)
            .parse()
            .map_err(|_| "the server's path does not make a URL".to_owned())
    }

    /// Where the 2024-11-05 transport's `endpoint` event points: a path on
    /// the server's origin (absolute, or relative to the event stream's).
    fn resolve(&self, reference: &str) -> Result<Uri, String> {
        let reference = reference.trim();
        let path = if let Some(rest) = reference.strip_prefix(&self.origin) {
            rest.to_owned()
        } else if reference.contains("://") || reference.starts_with("//") {
            return Err("the server named a message endpoint on another origin; refused".into());
        } else if reference.starts_with('/') {
            reference.to_owned()
        } else {
            let path = self.path.split('?').next().unwrap_or_default();
            let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
            format!("{dir}/{reference}")
        };
        if !path.starts_with('/') {
            return Err("the server named a message endpoint that is not a path".into());
        }
        self.at(&path)
    }
}

/// The session the server opened.
#[derive(Default)]
struct Session {
    /// `Mcp-Session-Id`, sent back with every request.
    id: Option<HeaderValue>,
    /// The protocol version `initialize` agreed on.
    version: Option<HeaderValue>,
    /// The 2024-11-05 transport: where messages are posted (their answers
    /// come on the event stream).
    legacy_endpoint: Option<Uri>,
}

/// What every request task shares.
struct Bridge<W> {
    target: BridgeTarget,
    client: Upstream,
    out: tokio::sync::Mutex<W>,
    session: Mutex<Session>,
    /// The client's `initialize`, to open a new session with when the
    /// server ends one (an idle timeout, a restart).
    opened_with: Mutex<Option<Value>>,
    /// One reopening at a time.
    reopening: tokio::sync::Mutex<()>,
    /// Whether the server's own stream is being read.
    listening: std::sync::atomic::AtomicBool,
}

fn method_of(message: &Value) -> Option<&str> {
    message.get("method").and_then(Value::as_str)
}

/// The ids of the requests (not notifications, not answers) in a message
/// or a batch.
fn request_ids(message: &Value) -> Vec<Value> {
    let one = |m: &Value| {
        m.get("method")?;
        m.get("id").filter(|id| !id.is_null()).cloned()
    };
    match message {
        Value::Array(batch) => batch.iter().filter_map(one).collect(),
        message => one(message).into_iter().collect(),
    }
}

fn error_answer(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

/// A refusal in words: Mayfly's own reason where the relay or the broker
/// refused (`error_description`), else the status.
fn refusal_text(status: StatusCode, body: &[u8]) -> String {
    let detail = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        v.get("error_description")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    match detail {
        Some(detail) => format!("the MCP server answered HTTP {status}: {detail}"),
        None => format!("the MCP server answered HTTP {status}"),
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> Bridge<W> {
    /// Writes one message to the client, on one line.
    async fn deliver(&self, message: &Value) {
        if let Some(version) = message
            .pointer("/result/protocolVersion")
            .and_then(Value::as_str)
            .filter(|_| message.pointer("/result/capabilities").is_some())
            .and_then(|v| HeaderValue::from_str(v).ok())
            && let Ok(mut session) = self.session.lock()
        {
            session.version = Some(version);
        }
        let mut line = message.to_string();
        line.push('\n');
        let mut out = self.out.lock().await;
        // A client that closed its end is gone: its stdin ends next.
        let _ = out.write_all(line.as_bytes()).await;
        let _ = out.flush().await;
    }

    /// Answers each request of `message` with an error saying `why`.
    async fn fail(&self, message: &Value, why: &str) {
        let ids = request_ids(message);
        if ids.is_empty() {
            eprintln!("mayfly mcp connect: {why}");
        }
        for id in ids {
            self.deliver(&error_answer(
                id,
                -32603,
                &format!("mayfly mcp connect: {why}"),
            ))
            .await;
        }
    }

    fn request(&self, method: Method, uri: Uri, body: Option<&Value>) -> Request<Body> {
        let mut headers = self.target.headers.clone();
        let accept = if method == Method::GET {
            "text/event-stream"
        } else {
            "application/json, text/event-stream"
        };
        headers.insert(header::ACCEPT, HeaderValue::from_static(accept));
        if body.is_some() {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        if let Ok(session) = self.session.lock() {
            if let Some(id) = &session.id {
                headers.insert(SESSION_HEADER, id.clone());
            }
            if let Some(version) = &session.version {
                headers.insert(VERSION_HEADER, version.clone());
            }
        }
        let mut request =
            Request::new(body.map_or_else(Body::empty, |b| Body::from(b.to_string())));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        request
    }

    async fn send(
        &self,
        method: Method,
        uri: Uri,
        body: Option<&Value>,
    ) -> Result<axum::http::Response<Incoming>, String> {
        self.client
            .send(self.request(method, uri, body))
            .await
            .map_err(|e| e.to_string())
    }

    /// A refused request: a JSON-RPC answer in the body goes to the client
    /// as it is; otherwise the reason comes back.
    async fn refused(&self, response: axum::http::Response<Incoming>) -> Result<(), String> {
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_ERROR_BYTES)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        match serde_json::from_slice::<Value>(&body) {
            Ok(answer) if answer.get("jsonrpc").is_some() => {
                self.deliver(&answer).await;
                Ok(())
            }
            _ => Err(refusal_text(status, &body)),
        }
    }

    /// Passes an answer on: a JSON body (one message or a batch), or an
    /// event stream.
    async fn pass_on(&self, response: axum::http::Response<Incoming>) -> Result<(), String> {
        if is_event_stream(response.headers()) {
            self.pass_events(response.into_body(), None).await;
            return Ok(());
        }
        let body = http_body_util::Limited::new(response.into_body(), MAX_MESSAGE_BYTES)
            .collect()
            .await
            .map_err(|e| format!("the answer could not be read ({e})"))?
            .to_bytes();
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        match serde_json::from_slice::<Value>(&body)
            .map_err(|_| "the server's answer is not JSON".to_owned())?
        {
            Value::Array(batch) => {
                for message in &batch {
                    self.deliver(message).await;
                }
            }
            message => self.deliver(&message).await,
        }
        Ok(())
    }

    /// Passes on every message of an event stream until it ends; the 2024
    /// transport's first `endpoint` event goes to `endpoint`. Returns the
    /// stream's last event id.
    async fn pass_events(
        &self,
        mut body: Incoming,
        mut endpoint: Option<tokio::sync::oneshot::Sender<String>>,
    ) -> Option<String> {
        let mut reader = EventReader::new(MAX_MESSAGE_BYTES);
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map(|f| f.into_data()) else {
                break;
            };
            let Ok(data) = data else { continue };
            let events = match reader.feed(&data) {
                Ok(events) => events,
                Err(e) => {
                    eprintln!("mayfly mcp connect: {e}; the stream is dropped");
                    break;
                }
            };
            for Event { event, data, .. } in events {
                match event.as_deref() {
                    None | Some("message") => match serde_json::from_str::<Value>(&data) {
                        Ok(message) => self.deliver(&message).await,
                        Err(_) => {
                            eprintln!("mayfly mcp connect: an event that is not JSON was skipped")
                        }
                    },
                    Some("endpoint") => {
                        if let Some(sender) = endpoint.take() {
                            let _ = sender.send(data);
                        }
                    }
                    Some(_) => {}
                }
            }
        }
        reader.last_event_id().map(str::to_owned)
    }

    /// Sends one message (not `initialize`) and passes on its answer. A
    /// session the server has ended (404 to its id) is replaced by a new
    /// one, opened with the client's `initialize`, and the message is sent
    /// again, as the MCP specification asks of clients.
    async fn post(self: Arc<Self>, message: Value) {
        let (legacy, session) = self
            .session
            .lock()
            .map(|s| (s.legacy_endpoint.clone(), s.id.clone()))
            .unwrap_or_default();
        let outcome = async {
            let Some(uri) = legacy else {
                let response = self
                    .send(Method::POST, self.target.endpoint()?, Some(&message))
                    .await?;
                if let (StatusCode::NOT_FOUND, Some(ended)) = (response.status(), session) {
                    self.reopen(&ended).await?;
                    let again = self
                        .send(Method::POST, self.target.endpoint()?, Some(&message))
                        .await?;
                    return self.answered(again, false).await;
                }
                return self.answered(response, false).await;
            };
            let response = self.send(Method::POST, uri, Some(&message)).await?;
            self.answered(response, true).await
        }
        .await;
        if let Err(why) = outcome {
            self.fail(&message, &why).await;
        }
    }

    /// What the server answered a POST: nothing more (accepted, or the
    /// 2024 transport, whose answers come on its stream), a refusal, or
    /// answers to pass on.
    async fn answered(
        &self,
        response: axum::http::Response<Incoming>,
        legacy: bool,
    ) -> Result<(), String> {
        let status = response.status();
        if !status.is_success() {
            return self.refused(response).await;
        }
        if legacy || status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT {
            return Ok(());
        }
        self.pass_on(response).await
    }

    /// Opens a new session in place of `ended` (unless another request has
    /// already): the client's `initialize` again, its answer dropped (the
    /// client has it), then `notifications/initialized`.
    async fn reopen(self: &Arc<Self>, ended: &HeaderValue) -> Result<(), String> {
        let _one = self.reopening.lock().await;
        let current = self.session.lock().ok().and_then(|s| s.id.clone());
        if current.as_ref() != Some(ended) {
            return Ok(());
        }
        let initialize = self
            .opened_with
            .lock()
            .ok()
            .and_then(|o| o.clone())
            .ok_or("the server ended a session that was never opened")?;
        if let Ok(mut session) = self.session.lock() {
            session.id = None;
        }
        let endpoint = self.target.endpoint()?;
        let response = self
            .send(Method::POST, endpoint.clone(), Some(&initialize))
            .await?;
        if !response.status().is_success() {
            return Err(format!(
                "the server ended the session and refused a new one ({})",
                refusal_text(response.status(), b"")
            ));
        }
        let id = response.headers().get(SESSION_HEADER).cloned();
        let drained =
            http_body_util::Limited::new(response.into_body(), MAX_MESSAGE_BYTES).collect();
        let _ = tokio::time::timeout(ENDPOINT_WAIT, drained).await;
        if let Ok(mut session) = self.session.lock() {
            session.id = id;
        }
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let response = self
            .send(Method::POST, endpoint, Some(&initialized))
            .await?;
        if !response.status().is_success() {
            return Err(refusal_text(response.status(), b""));
        }
        eprintln!("mayfly mcp connect: the server ended the session; a new one is open");
        if !self.listening.load(std::sync::atomic::Ordering::Acquire) {
            tokio::spawn(self.clone().listen());
        }
        Ok(())
    }

    /// Sends `initialize` and waits for the answer's start, so the session
    /// id is known before the next message; falls back to the 2024-11-05
    /// transport on 404 or 405.
    async fn initialize(self: &Arc<Self>, message: Value, tasks: &mut JoinSet<()>) {
        let outcome = async {
            let response = self
                .send(Method::POST, self.target.endpoint()?, Some(&message))
                .await?;
            let status = response.status();
            if status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED {
                self.open_legacy(tasks).await?;
                tasks.spawn(self.clone().post(message.clone()));
                return Ok(());
            }
            if !status.is_success() {
                return self.refused(response).await;
            }
            if let (Ok(mut session), Some(id)) =
                (self.session.lock(), response.headers().get(SESSION_HEADER))
            {
                session.id = Some(id.clone());
            }
            if let Ok(mut opened) = self.opened_with.lock() {
                *opened = Some(message.clone());
            }
            let (bridge, sent) = (self.clone(), message.clone());
            tasks.spawn(async move {
                if let Err(why) = bridge.pass_on(response).await {
                    bridge.fail(&sent, &why).await;
                }
            });
            Ok(())
        }
        .await;
        if let Err(why) = outcome {
            self.fail(&message, &why).await;
        }
    }

    /// Opens the 2024-11-05 transport's event stream and learns where to
    /// post messages.
    async fn open_legacy(self: &Arc<Self>, tasks: &mut JoinSet<()>) -> Result<(), String> {
        let response = self
            .send(Method::GET, self.target.endpoint()?, None)
            .await?;
        if !response.status().is_success() || !is_event_stream(response.headers()) {
            return Err(refusal_text(response.status(), b""));
        }
        let (sender, endpoint) = tokio::sync::oneshot::channel();
        let bridge = self.clone();
        tasks.spawn(async move {
            bridge.pass_events(response.into_body(), Some(sender)).await;
            eprintln!("mayfly mcp connect: the server closed its event stream");
        });
        let reference = tokio::time::timeout(ENDPOINT_WAIT, endpoint)
            .await
            .map_err(|_| "the server's event stream named no message endpoint".to_owned())?
            .map_err(|_| {
                "the server's event stream ended before naming its message endpoint".to_owned()
            })?;
        let uri = self.target.resolve(&reference)?;
        if let Ok(mut session) = self.session.lock() {
            session.legacy_endpoint = Some(uri);
        }
        Ok(())
    }

    /// The stream on which a streamable-HTTP server sends requests and
    /// notifications of its own; reopened when it ends, with the last event
    /// id. A server that offers none (405) is not asked again.
    async fn listen(self: Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.listening.swap(true, Ordering::AcqRel) {
            return;
        }
        self.listen_until_refused().await;
        self.listening.store(false, Ordering::Release);
    }

    async fn listen_until_refused(&self) {
        let mut last_id: Option<String> = None;
        let mut failures = 0;
        loop {
            let Ok(uri) = self.target.endpoint() else {
                return;
            };
            let mut request = self.request(Method::GET, uri, None);
            if let Some(id) = last_id
                .as_deref()
                .and_then(|id| HeaderValue::from_str(id).ok())
            {
                request.headers_mut().insert(LAST_EVENT_HEADER, id);
            }
            match self.client.send(request).await {
                Ok(response)
                    if response.status().is_success() && is_event_stream(response.headers()) =>
                {
                    failures = 0;
                    last_id = self
                        .pass_events(response.into_body(), None)
                        .await
                        .or(last_id);
                }
                // None offered, or the session is over (a new one listens anew).
                Ok(response)
                    if matches!(
                        response.status(),
                        StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_FOUND
                    ) =>
                {
                    return;
                }
                Ok(response) => {
                    eprintln!(
                        "mayfly mcp connect: the server's own stream: {}",
                        refusal_text(response.status(), b"")
                    );
                    return;
                }
                Err(e) => {
                    failures += 1;
                    if failures > 5 {
                        eprintln!("mayfly mcp connect: the server's own stream: {e}");
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Ends a streamable-HTTP session (a courtesy: the server would expire
    /// it anyway).
    async fn end_session(&self) {
        let open = self
            .session
            .lock()
            .is_ok_and(|s| s.id.is_some() && s.legacy_endpoint.is_none());
        if let (true, Ok(uri)) = (open, self.target.endpoint()) {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), self.send(Method::DELETE, uri, None))
                    .await;
        }
    }
}

/// Reads the next line of at most [`MAX_MESSAGE_BYTES`]; `None` at the
/// end. A longer line is skipped whole and comes back as `Some(Err)`.
async fn next_line(
    input: &mut BufReader<impl AsyncRead + Unpin>,
    line: &mut Vec<u8>,
) -> Result<Option<Result<(), ()>>, BridgeError> {
    line.clear();
    let limit = MAX_MESSAGE_BYTES as u64 + 1;
    let read = (&mut *input)
        .take(limit)
        .read_until(b'\n', line)
        .await
        .map_err(BridgeError::Input)?;
    if read == 0 {
        return Ok(None);
    }
    if line.len() <= MAX_MESSAGE_BYTES || line.ends_with(b"\n") {
        return Ok(Some(Ok(())));
    }
    loop {
        line.clear();
        let read = (&mut *input)
            .take(limit)
            .read_until(b'\n', line)
            .await
            .map_err(BridgeError::Input)?;
        if read == 0 || line.ends_with(b"\n") {
            return Ok(Some(Err(())));
        }
    }
}

/// Bridges the client on `input` and `output` to the server until the
/// client closes `input`.
pub async fn run<R, W>(
    target: BridgeTarget,
    client: Upstream,
    input: R,
    output: W,
) -> Result<(), BridgeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let bridge = Arc::new(Bridge {
        target,
        client,
        out: tokio::sync::Mutex::new(output),
        session: Mutex::new(Session::default()),
        opened_with: Mutex::new(None),
        reopening: tokio::sync::Mutex::new(()),
        listening: std::sync::atomic::AtomicBool::new(false),
    });
    let mut input = BufReader::new(input);
    let mut tasks = JoinSet::new();
    let mut line = Vec::new();
    let mut listening = false;
    while let Some(read) = next_line(&mut input, &mut line).await? {
        let parsed = match read {
            Ok(()) => {
                let text = String::from_utf8_lossy(&line);
                if text.trim().is_empty() {
                    continue;
                }
                serde_json::from_str::<Value>(text.trim()).map_err(|e| e.to_string())
            }
            Err(()) => Err(format!("a message larger than {MAX_MESSAGE_BYTES} bytes")),
        };
        let message = match parsed {
            Ok(message) => message,
            Err(why) => {
                let error = error_answer(Value::Null, -32700, &format!("Parse error: {why}"));
                bridge.deliver(&error).await;
                continue;
            }
        };
        match method_of(&message) {
            Some("initialize") => bridge.initialize(message, &mut tasks).await,
            Some("notifications/initialized") if !listening => {
                listening = true;
                tasks.spawn(bridge.clone().post(message));
                let streamable = bridge
                    .session
                    .lock()
                    .is_ok_and(|s| s.legacy_endpoint.is_none());
                if streamable {
                    tasks.spawn(bridge.clone().listen());
                }
            }
            _ => {
                tasks.spawn(bridge.clone().post(message));
            }
        }
        while tasks.try_join_next().is_some() {}
    }
    tasks.abort_all();
    bridge.end_session().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_reaches_the_server_directly_or_through_the_relay() {
        let direct = BridgeTarget::new(
            "https://mcp.example.com/mcp/?team=1",
            None,
            &[("X-Toolsets".into(), "repos".into())],
        )
        .unwrap();
        assert_eq!(
            direct.endpoint().unwrap().to_string(),
            "https://mcp.example.com/mcp/?team=1"
        );
        assert_eq!(direct.headers["x-toolsets"], "repos");
        let via = Via {
            relay: "http://127.0.0.1:4000/".into(),
            entry: "github-mcp-0011aabb".into(),
            key: "mayfly-relay-k".into(),
        };
        let relayed = BridgeTarget::new("https://mcp.example.com/sse", Some(&via), &[]).unwrap();
        assert_eq!(
            relayed.endpoint().unwrap().to_string(),
            "http://127.0.0.1:4000/github-mcp-0011aabb/sse"
        );
        assert_eq!(
            relayed.headers[header::AUTHORIZATION],
            "Bearer mayfly-relay-k"
        );
        // The 2024 transport's endpoint event, in each form servers send.
        for (reference, expected) in [
            ("/messages/?session_id=ab", "/messages/?session_id=ab"),
            ("https://mcp.example.com/messages?s=1", "/messages?s=1"),
            ("messages?s=1", "/messages?s=1"),
        ] {
            assert_eq!(
                relayed.resolve(reference).unwrap().to_string(),
                format!("http://127.0.0.1:4000/github-mcp-0011aabb{expected}")
            );
        }
        for elsewhere in ["https://evil.example/messages", "//evil.example/m"] {
            assert!(relayed.resolve(elsewhere).is_err(), "{elsewhere}");
        }
    }

    #[test]
    fn bad_urls_and_headers_are_refused_without_echoing_them() {
        let key = "k3yZk3yZk3yZk3yZ"; // mayfly:allow (test fixture)
        for url in [
            format!("https://user:{key}@mcp.example/mcp"),
            format!("ftp://mcp.example/{key}"),
            format!("not a url {key}"),
        ] {
            let err = BridgeTarget::new(&url, None, &[]).unwrap_err();
            assert!(!err.to_string().contains(key), "{err}");
        }
        let err = BridgeTarget::new(
            "https://mcp.example/mcp",
            None,
            &[("X-Key".into(), "a\nb".into())],
        )
        .unwrap_err();
        assert!(err.to_string().contains("X-Key"), "{err}");
    }

    #[test]
    fn only_requests_are_answered_with_errors() {
        let batch = json!([
            {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 2, "result": {}},
            {"jsonrpc": "2.0", "id": "x", "method": "ping"},
        ]);
        assert_eq!(request_ids(&batch), vec![json!(1), json!("x")]);
        assert!(request_ids(&json!({"jsonrpc": "2.0", "method": "n"})).is_empty());
    }

    #[test]
    fn mayflys_own_refusals_keep_their_reason() {
        let body = br#"{"error":"access_denied","error_description":"policy forbids this use"}"#;
        assert_eq!(
            refusal_text(StatusCode::FORBIDDEN, body),
            "the MCP server answered HTTP 403 Forbidden: policy forbids this use"
        );
        assert_eq!(
            refusal_text(StatusCode::BAD_GATEWAY, b"<html>"),
            "the MCP server answered HTTP 502 Bad Gateway"
        );
    }
}
