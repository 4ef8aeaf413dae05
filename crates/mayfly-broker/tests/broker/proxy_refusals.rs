//! What the proxy refuses, and how it fails: requests that could send the
//! key elsewhere, tokens that are not for the entry, an upstream that is
//! down, slow or answers garbage, a client that goes away mid-stream. Each
//! gets a clear error without the key, and the proxy keeps serving.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use serde_json::json;

use super::custody::{OPENAI_KEY, add};
use super::harness::{AUD, Backend, Harness};
use super::proxy::{get, raw_tcp, request, token_for};
use super::upstream;

#[test]
fn requests_that_could_misroute_the_key_are_refused() {
    let h = Harness::start(Backend::Sqlite);
    let api = upstream::start_plain(&h.rt);
    add(
        &h,
        "openai",
        "openai",
        &format!("{}/v1", api.base),
        OPENAI_KEY,
    );
    let token = token_for(&h, "openai");
    let auth = format!("Authorization: Bearer {token}\r\n");
    let address = h.url.trim_start_matches("http://").to_owned();
    let cases = [
        (
            format!(
                "GET http://evil.example/proxy/openai/models HTTP/1.1\r\nHost: evil.example\r\n{auth}\r\n"
            ),
            "absolute-form",
        ),
        (
            format!("GET /proxy/openai/../admin HTTP/1.1\r\nHost: {address}\r\n{auth}\r\n"),
            ". or .. segment",
        ),
        (
            format!("GET /proxy/openai/%2e%2e/admin HTTP/1.1\r\nHost: {address}\r\n{auth}\r\n"),
            ". or .. segment",
        ),
        (
            format!(
                "GET /proxy/openai/models%0d%0aX-Evil:%201 HTTP/1.1\r\nHost: {address}\r\n{auth}\r\n"
            ),
            "line break",
        ),
        (
            format!(
                "POST /proxy/openai/models HTTP/1.1\r\nHost: {address}\r\n{auth}Content-Length: 4\r\nContent-Length: 9\r\n\r\nbody"
            ),
            "",
        ),
    ];
    for (bytes, why) in &cases {
        let answer = raw_tcp(&h, bytes.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 400"), "{bytes:?}: {answer}");
        assert!(answer.contains(why), "{bytes:?}: {answer}");
        assert!(!answer.contains(OPENAI_KEY));
    }
    assert!(
        api.seen().is_empty(),
        "nothing reached the upstream: {:?}",
        api.seen()
    );
    // Content-Length beside Transfer-Encoding: the chunked framing wins
    // (RFC 9112 section 6.3), the length is not forwarded, and the
    // connection closes after the answer, so nothing can be smuggled
    // behind the body.
    let smuggle = format!(
        "POST /proxy/openai/models HTTP/1.1\r\nHost: {address}\r\n{auth}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /proxy/openai/smuggled HTTP/1.1\r\nHost: {address}\r\n\r\n"
    );
    let answer = raw_tcp(&h, smuggle.as_bytes());
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert_eq!(api.seen().len(), 1);
    assert_eq!(api.last().body_len, 0);
    assert!(!api.last().headers.contains_key("content-length"));
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        api.seen()
            .iter()
            .all(|s| !s.path_and_query.contains("smuggled"))
    );
    // The upstream's base path is kept: /v1 + /models.
    assert_eq!(
        get(
            &h,
            "/proxy/openai/models",
            &[("Authorization", &format!("Bearer {token}"))]
        )
        .0,
        200
    );
    assert_eq!(api.last().path_and_query, "/v1/models");
    // A redirect to another host is not followed and not passed on.
    let (status, headers, text) = request(
        &h,
        "GET",
        "/proxy/openai/redirect-away",
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    );
    assert_eq!(status, 502, "{text}");
    assert!(!headers.iter().any(|(_, v)| v.contains("elsewhere")));
    // An upstream that echoes the key in a header: the header is dropped.
    let (status, headers, _) = request(
        &h,
        "GET",
        "/proxy/openai/echo-key",
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    );
    assert_eq!(status, 200);
    assert!(
        !headers
            .iter()
            .any(|(k, v)| k == "x-debug-auth" || v.contains(OPENAI_KEY)),
        "{headers:?}"
    );
}

#[test]
fn tokens_that_are_not_for_the_entry_are_refused() {
    let h = Harness::start(Backend::Sqlite);
    let api = upstream::start_plain(&h.rt);
    add(&h, "openai", "openai", &api.base, OPENAI_KEY);
    add(
        &h,
        "stripe",
        "stripe",
        &api.base,
        "sk_live_T3stKeyForMayfly0123456789abcdefABCDEF",
    );
    let stripe = token_for(&h, "stripe");
    let (status, body) = get(
        &h,
        "/proxy/openai/v1/models",
        &[("Authorization", &format!("Bearer {stripe}"))],
    );
    assert_eq!(status, 401);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("urn:mayfly:custody:stripe"),
        "{body}"
    );
    // A token for an ordinary audience.
    let identity = h.identity("svc:agent");
    let task = h.start_task(&identity, "team", &[AUD]);
    let plain = h.exchange(&identity, &task.id, AUD).access_token;
    assert_eq!(
        get(
            &h,
            "/proxy/openai/v1/models",
            &[("Authorization", &format!("Bearer {plain}"))]
        )
        .0,
        401
    );
    // No token, a made-up token, an unknown entry.
    let (status, body) = get(&h, "/proxy/openai/v1/models", &[]);
    assert_eq!(status, 401);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("urn:mayfly:custody:openai")
    );
    assert_eq!(
        get(
            &h,
            "/proxy/openai/v1/models",
            &[("Authorization", "Bearer a.b.c")]
        )
        .0,
        401
    );
    let (status, body) = get(
        &h,
        "/proxy/nope/v1/models",
        &[("Authorization", &format!("Bearer {stripe}"))],
    );
    assert_eq!(status, 404);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("custody list")
    );
    // A task cannot even name an entry that is not in custody.
    let refused = h.client().start_task(
        &identity,
        &mayfly_broker::client::TaskRequest {
            purpose: "p".into(),
            owner: "o".into(),
            ttl_seconds: None,
            audiences: vec!["urn:mayfly:custody:nope".into()],
        },
    );
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains("no secret named nope")
    );
    assert!(api.seen().is_empty());
}

#[test]
fn upstream_failures_are_clear_and_the_proxy_keeps_serving() {
    let h = Harness::start_with(Backend::Sqlite, |c| c.proxy.response_timeout_seconds = 1);
    let api = upstream::start_plain(&h.rt);
    // Down: nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    add(&h, "down", "generic", &down, OPENAI_KEY);
    let (status, body) = get(
        &h,
        "/proxy/down/x",
        &[(
            "Authorization",
            &format!("Bearer {}", token_for(&h, "down")),
        )],
    );
    assert_eq!(status, 502);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("could not be reached"),
        "{body}"
    );
    // Slow: no answer within the response timeout.
    add(&h, "openai", "openai", &api.base, OPENAI_KEY);
    let token = token_for(&h, "openai");
    let bearer = format!("Bearer {token}");
    let (status, body) = get(&h, "/proxy/openai/v1/slow", &[("Authorization", &bearer)]);
    assert_eq!(status, 504, "{body}");
    // Garbage: a server that answers something other than HTTP.
    let garbage = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let garbage_url = format!("http://{}", garbage.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in garbage.incoming().flatten().take(2) {
            let mut stream = stream;
            let mut buffer = [0u8; 1024];
            let _ = stream.read(&mut buffer);
            let _ = stream.write_all(b"this is not HTTP at all\r\n\r\n");
        }
    });
    add(&h, "garbage", "generic", &garbage_url, OPENAI_KEY);
    let (status, body) = get(
        &h,
        "/proxy/garbage/x",
        &[(
            "Authorization",
            &format!("Bearer {}", token_for(&h, "garbage")),
        )],
    );
    assert_eq!(status, 502, "{body}");
    assert!(!body.to_string().contains(OPENAI_KEY));
    // A client that goes away mid-stream.
    let address = h.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET /proxy/openai/v1/stream HTTP/1.1\r\nHost: {address}\r\nAuthorization: {bearer}\r\n\r\n"
    )
    .unwrap();
    let mut first = [0u8; 256];
    let _ = stream.read(&mut first).unwrap();
    drop(stream);
    std::thread::sleep(Duration::from_millis(1200));
    // Still serving.
    assert_eq!(
        get(&h, "/proxy/openai/v1/models", &[("Authorization", &bearer)]).0,
        200
    );
    let events = mayfly_store::Store::open(&h.db)
        .unwrap()
        .audit_events(0, 10_000)
        .unwrap();
    let aborted = events
        .iter()
        .filter(|e| e.kind == "proxy.request")
        .any(|e| e.data.contains("\"aborted\":true"));
    assert!(aborted, "the abandoned stream is audited as aborted");
    assert_eq!(
        json!(
            events
                .iter()
                .filter(|e| e.data.contains(OPENAI_KEY))
                .count()
        ),
        json!(0)
    );
}
