//! `mcp_bridge` against a streamable-HTTP server on loopback: the session
//! id and protocol version go back with every request after `initialize`,
//! JSON and event-stream answers both reach the client as lines, and what
//! cannot be asked (a server error, a line that is not JSON) is answered
//! with a JSON-RPC error instead of silence; a session the server ends is
//! replaced by a new one; the session is deleted at the end.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Router, extract::State};
use mayfly_broker::config::ProxyConfig;
use mayfly_broker::mcp_bridge::{BridgeTarget, run};
use mayfly_broker::upstream::Upstream;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

/// What the server saw: method, session id, protocol version, custom header.
type Seen = Arc<Mutex<Vec<(String, String, String, String)>>>;

/// The server's state: what it saw, and its open session (sessions are
/// numbered; `notifications/expire` ends the open one, as an idle timeout
/// would).
#[derive(Clone, Default)]
struct Mcp {
    seen: Seen,
    session: Arc<Mutex<(u32, bool)>>,
}

fn header_text(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn mcp(State(state): State<Mcp>, headers: HeaderMap, body: Bytes) -> Response {
    let message: Value = serde_json::from_slice(&body).unwrap_or_default();
    let method = message["method"].as_str().unwrap_or_default().to_owned();
    let sent = header_text(&headers, "mcp-session-id");
    let (number, open) = *state.session.lock().unwrap();
    if method != "initialize" && (!open || sent != format!("s-{number}")) {
        return StatusCode::NOT_FOUND.into_response();
    }
    state.seen.lock().unwrap().push((
        method.clone(),
        header_text(&headers, "mcp-session-id"),
        header_text(&headers, "mcp-protocol-version"),
        header_text(&headers, "x-team"),
    ));
    let id = message["id"].clone();
    match method.as_str() {
        "initialize" => {
            let mut session = state.session.lock().unwrap();
            *session = (session.0 + 1, true);
            let header = format!("s-{}", session.0);
            (
            [("mcp-session-id", header)],
            axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": {
                "protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": {"name": "t", "version": "1"}
            }})),
        )
            .into_response()
        }
        "notifications/expire" => {
            state.session.lock().unwrap().1 = false;
            StatusCode::ACCEPTED.into_response()
        }
        "tools/list" => (
            [(header::CONTENT_TYPE, "text/event-stream")],
            format!(
                ": keep-alive\r\nevent: message\r\ndata: {}\r\n\r\n",
                json!({"jsonrpc": "2.0", "id": id, "result": {"tools": []}})
            ),
        )
            .into_response(),
        "broken" => (StatusCode::INTERNAL_SERVER_ERROR, "<html>oops</html>").into_response(),
        _ => StatusCode::ACCEPTED.into_response(),
    }
}

async fn delete(State(state): State<Mcp>, headers: HeaderMap) -> StatusCode {
    state.seen.lock().unwrap().push((
        "DELETE".into(),
        header_text(&headers, "mcp-session-id"),
        String::new(),
        String::new(),
    ));
    StatusCode::OK
}

#[tokio::test]
async fn a_remote_server_is_spoken_to_as_a_stdio_one() {
    let state = Mcp::default();
    let app = Router::new()
        .route(
            "/mcp",
            post(mcp)
                .delete(delete)
                .get(|| async { StatusCode::METHOD_NOT_ALLOWED }),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let target = BridgeTarget::new(
        &format!("http://127.0.0.1:{port}/mcp"),
        None,
        &[("X-Team".into(), "web".into())],
    )
    .unwrap();
    let client = Upstream::new(&ProxyConfig::default()).unwrap();
    let (mut to_bridge, bridge_in) = tokio::io::duplex(1 << 16);
    let (bridge_out, from_bridge) = tokio::io::duplex(1 << 16);
    let bridge = tokio::spawn(run(target, client, bridge_in, bridge_out));
    let mut answers = BufReader::new(from_bridge).lines();
    let mut next = async || -> Value {
        let line = tokio::time::timeout(Duration::from_secs(10), answers.next_line())
            .await
            .expect("an answer in time")
            .unwrap()
            .unwrap();
        serde_json::from_str(&line).unwrap()
    };

    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}});
    to_bridge
        .write_all(format!("{initialize}\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(next().await["result"]["protocolVersion"], "2025-06-18");
    // One at a time, so they reach the server in this order (requests
    // after the session opens are sent concurrently).
    let mut send_in_turn = async |lines: &[&str]| {
        for line in lines {
            to_bridge
                .write_all(format!("{line}\n").as_bytes())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    };
    send_in_turn(&[
        r#"{"jsonrpc": "2.0", "method": "notifications/initialized"}"#,
        r#"{"jsonrpc": "2.0", "id": 2, "method": "tools/list"}"#,
    ])
    .await;
    assert_eq!(
        next().await,
        json!({"jsonrpc": "2.0", "id": 2, "result": {"tools": []}})
    );
    send_in_turn(&[
        "{not json",
        r#"{"jsonrpc": "2.0", "id": 3, "method": "broken"}"#,
    ])
    .await;
    let parse_error = next().await;
    assert_eq!(parse_error["error"]["code"], -32700, "{parse_error}");
    assert_eq!(parse_error["id"], Value::Null);
    let failed = next().await;
    assert_eq!(failed["id"], 3, "{failed}");
    assert_eq!(
        failed["error"]["message"],
        "mayfly mcp connect: the MCP server answered HTTP 500 Internal Server Error"
    );

    // The server ends the session: the next request opens a new one (the
    // client's initialize again, its answer not repeated) and is answered.
    send_in_turn(&[
        r#"{"jsonrpc": "2.0", "method": "notifications/expire"}"#,
        r#"{"jsonrpc": "2.0", "id": 4, "method": "tools/list"}"#,
    ])
    .await;
    assert_eq!(
        next().await,
        json!({"jsonrpc": "2.0", "id": 4, "result": {"tools": []}})
    );

    drop(to_bridge);
    tokio::time::timeout(Duration::from_secs(10), bridge)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let seen = state.seen.lock().unwrap().clone();
    let by_method = |m: &str| seen.iter().find(|s| s.0 == m).cloned().unwrap();
    assert_eq!(
        by_method("initialize"),
        (
            "initialize".into(),
            String::new(),
            String::new(),
            "web".into()
        )
    );
    assert_eq!(
        by_method("tools/list"),
        (
            "tools/list".into(),
            "s-1".into(),
            "2025-06-18".into(),
            "web".into()
        )
    );
    let sessions: Vec<(&str, &str)> = seen
        .iter()
        .filter(|s| s.0 != "notifications/expire")
        .map(|s| (s.0.as_str(), s.1.as_str()))
        .collect();
    assert_eq!(
        sessions,
        vec![
            ("initialize", ""),
            ("notifications/initialized", "s-1"),
            ("tools/list", "s-1"),
            ("broken", "s-1"),
            ("initialize", ""),
            ("notifications/initialized", "s-2"),
            ("tools/list", "s-2"),
            ("DELETE", "s-2"),
        ]
    );
}
