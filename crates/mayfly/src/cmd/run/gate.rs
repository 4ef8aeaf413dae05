//! `mayfly run --mcp-gate NAME -- CMD`: CMD is an MCP server speaking
//! JSON-RPC on stdio, and `mayfly run` stands between it and the client
//! that started `mayfly run`. Each request from the client is decided by
//! the broker's policy (action `mcp`, resource
//! `McpServer::"urn:mayfly:mcp:NAME"`) before it reaches CMD: a denied one
//! gets a JSON-RPC error the client shows, an undecidable one too (fail
//! closed); a `tools/list` answer lists only the tools policy allows. Each
//! call is one audit event (method, tool, decision, duration; never its
//! arguments). Messages are newline-delimited JSON, as MCP's stdio
//! transport defines them; anything else from the client gets a parse error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mayfly_broker::client::{Client, IdentitySource};
use mayfly_broker::mcp_gate::{
    DecideError, Decider, call_of, decided_requests, denials, id_key, listed_tools, record_batches,
    record_of, retain_tools,
};
use mayfly_broker::service::{MCP_AUDIENCE_PREFIX, McpCall, McpDecision, McpRecord};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::process::{ChildStdin, ChildStdout};

use super::{exchange, refresh_after};

/// The audience of the gate's credential for server `name`.
pub(super) fn audience(name: &str) -> String {
    format!("{MCP_AUDIENCE_PREFIX}{name}")
}

/// Audit records kept while the broker cannot take them, at most.
const MAX_KEPT_RECORDS: usize = 100_000;

/// A call sent on to the server, waiting for its answer.
struct Pending {
    call: McpCall,
    started: Instant,
}

/// What the two directions share.
struct Shared {
    decider: Decider,
    token: Mutex<String>,
    pending: Mutex<HashMap<String, Pending>>,
    records: Mutex<Vec<McpRecord>>,
}

impl Shared {
    fn token(&self) -> String {
        self.token.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Asks the broker; any failure denies, with what failed.
    async fn decide(self: &Arc<Self>, calls: &[McpCall]) -> Vec<McpDecision> {
        match self.decider.decide(&self.token(), calls).await {
            Ok(decisions) => decisions,
            Err(e) => vec![undecided(&e.to_string()); calls.len()],
        }
    }

    fn record(&self, call: &McpCall, allowed: bool, failed: bool, duration: Duration) {
        if let Ok(mut records) = self.records.lock() {
            records.push(record_of(call, allowed, failed, duration));
        }
    }

    /// Sends the records kept so far to the broker's audit, in batches it
    /// accepts; what it cannot take now is kept for the next flush (within
    /// [`MAX_KEPT_RECORDS`]).
    async fn flush(self: &Arc<Self>) {
        let records = match self.records.lock() {
            Ok(mut records) => std::mem::take(&mut *records),
            Err(_) => return,
        };
        let token = self.token();
        let mut sent = 0;
        for batch in record_batches(&records) {
            match self.decider.record(&token, batch).await {
                Ok(()) => sent += batch.len(),
                // A token the broker will never take again (its task ended):
                // trying later cannot help.
                Err(e @ DecideError::InvalidToken(_)) => {
                    eprintln!("mayfly run: the MCP gate could not record its calls: {e}");
                    return;
                }
                Err(e) => {
                    eprintln!(
                        "mayfly run: the MCP gate could not record its calls (kept for the next try): {e}"
                    );
                    break;
                }
            }
        }
        let unsent = records.get(sent..).unwrap_or_default();
        if unsent.is_empty() {
            return;
        }
        if let Ok(mut kept) = self.records.lock() {
            let newer = std::mem::take(&mut *kept);
            kept.extend_from_slice(unsent);
            kept.extend(newer);
            let over = kept.len().saturating_sub(MAX_KEPT_RECORDS);
            if over > 0 {
                kept.drain(..over);
                eprintln!(
                    "mayfly run: the MCP gate dropped the audit records of {over} calls (the broker took none for too long)"
                );
            }
        }
    }
}

fn undecided(why: &str) -> McpDecision {
    McpDecision {
        allowed: false,
        reason: format!("Mayfly could not decide it ({why})"),
    }
}

async fn write_line(
    out: &Arc<tokio::sync::Mutex<impl AsyncWrite + Unpin>>,
    line: &str,
) -> std::io::Result<()> {
    let mut out = out.lock().await;
    out.write_all(line.as_bytes()).await?;
    out.write_all(b"\n").await?;
    out.flush().await
}

/// The client's messages (this process's stdin) to the server.
async fn client_to_server(
    shared: Arc<Shared>,
    mut server: ChildStdin,
    stdout: Arc<tokio::sync::Mutex<crate::stdio::Output>>,
) -> std::io::Result<()> {
    let mut lines = BufReader::new(crate::stdio::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            let error = json!({"jsonrpc": "2.0", "id": null,
                "error": {"code": -32700, "message": "Parse error: not a JSON-RPC message (Mayfly's MCP gate)"}});
            write_line(&stdout, &error.to_string()).await?;
            continue;
        };
        // A batch (older MCP versions) goes on whole only if policy allows
        // every request in it.
        let requests = decided_requests(&message);
        if !requests.is_empty() {
            let calls: Vec<McpCall> = requests.iter().map(|m| call_of(m)).collect();
            let decisions = shared.decide(&calls).await;
            if let Some(denied) = decisions.iter().find(|d| !d.allowed) {
                let answer = denials(&message, &requests, &calls, &denied.reason);
                for (call, decision) in calls.into_iter().zip(&decisions) {
                    shared.record(&call, decision.allowed, false, Duration::ZERO);
                }
                write_line(&stdout, &answer.to_string()).await?;
                continue;
            }
            if let Ok(mut pending) = shared.pending.lock() {
                for (request, call) in requests.iter().zip(calls) {
                    pending.insert(
                        id_key(request),
                        Pending {
                            call,
                            started: Instant::now(),
                        },
                    );
                }
            }
        }
        server.write_all(line.as_bytes()).await?;
        server.write_all(b"\n").await?;
        server.flush().await?;
    }
    // The client is gone: so is the server's input.
    drop(server);
    Ok(())
}

/// Keeps only the tools policy allows in a `tools/list` answer.
async fn filter_tools(shared: &Arc<Shared>, mut message: Value) -> Value {
    let decisions = shared.decide(&listed_tools(&message)).await;
    retain_tools(&mut message, &decisions);
    message
}

/// The server's messages (CMD's stdout) to the client.
async fn server_to_client(
    shared: Arc<Shared>,
    server: ChildStdout,
    stdout: Arc<tokio::sync::Mutex<crate::stdio::Output>>,
) -> std::io::Result<()> {
    let mut lines = BufReader::new(server).lines();
    while let Some(line) = lines.next_line().await? {
        let answered = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|message| {
                let is_answer = message.get("method").is_none()
                    && (message.get("result").is_some() || message.get("error").is_some());
                let pending = is_answer
                    .then(|| shared.pending.lock().ok()?.remove(&id_key(&message)))
                    .flatten()?;
                Some((message, pending))
            });
        let Some((message, pending)) = answered else {
            write_line(&stdout, &line).await?;
            continue;
        };
        let failed = message.get("error").is_some()
            || message
                .get("result")
                .and_then(|r| r.get("isError"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
        let out = if pending.call.method == "tools/list" && !failed {
            filter_tools(&shared, message).await.to_string()
        } else {
            line
        };
        shared.record(&pending.call, true, failed, pending.started.elapsed());
        write_line(&stdout, &out).await?;
    }
    Ok(())
}

/// The gate of one `mayfly run`.
pub(super) struct Gate {
    shared: Arc<Shared>,
    refresher: tokio::task::JoinHandle<()>,
}

impl Gate {
    /// Gets the gate's first credential and keeps it fresh.
    pub(super) async fn start(
        client: &Client,
        source: &IdentitySource,
        task_id: &str,
        name: &str,
        token_ttl: Option<i64>,
    ) -> anyhow::Result<Gate> {
        let audience = audience(name);
        let first = exchange(client, source, task_id, &audience, None, token_ttl).await?;
        let shared = Arc::new(Shared {
            decider: Decider::new(client.base(), &audience)?,
            token: Mutex::new(first.access_token),
            pending: Mutex::new(HashMap::new()),
            records: Mutex::new(Vec::new()),
        });
        let refresher = {
            let (shared, client, source, task_id) = (
                shared.clone(),
                client.clone(),
                source.clone(),
                task_id.to_owned(),
            );
            let mut expires_in = first.expires_in;
            tokio::spawn(async move {
                let mut refreshed = Instant::now();
                loop {
                    // Records go out every second; the token is replaced at
                    // two thirds of its life.
                    let wait = refresh_after(expires_in).min(Duration::from_secs(1));
                    tokio::time::sleep(wait).await;
                    shared.flush().await;
                    if refreshed.elapsed() < refresh_after(expires_in) {
                        continue;
                    }
                    match exchange(&client, &source, &task_id, &audience, None, token_ttl).await {
                        Ok(response) => {
                            expires_in = response.expires_in;
                            if let Ok(mut token) = shared.token.lock() {
                                *token = response.access_token;
                            }
                            refreshed = Instant::now();
                        }
                        Err(e) => {
                            eprintln!(
                                "mayfly run: the MCP gate's credential could not be refreshed: {e:#}"
                            );
                            expires_in = 6;
                        }
                    }
                }
            })
        };
        Ok(Gate { shared, refresher })
    }

    /// Stands between the client (this process's stdio) and CMD's pipes
    /// until CMD's output ends; returns the task that does it.
    pub(super) fn attach(
        &self,
        stdin: ChildStdin,
        stdout: ChildStdout,
    ) -> tokio::task::JoinHandle<()> {
        let out = Arc::new(tokio::sync::Mutex::new(crate::stdio::stdout()));
        let up = tokio::spawn(client_to_server(self.shared.clone(), stdin, out.clone()));
        let shared = self.shared.clone();
        tokio::spawn(async move {
            if let Err(e) = server_to_client(shared.clone(), stdout, out).await {
                eprintln!("mayfly run: the MCP gate stopped: {e}");
            }
            up.abort();
            shared.flush().await;
        })
    }

    /// Stops refreshing and sends the last records.
    pub(super) async fn finish(self, relay: tokio::task::JoinHandle<()>) {
        let _ = relay.await;
        self.refresher.abort();
        self.shared.flush().await;
    }
}
