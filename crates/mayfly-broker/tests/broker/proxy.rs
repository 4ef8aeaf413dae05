//! The injecting proxy over real HTTP: the upstream gets the real key and
//! never the caller's token; every request is checked against a live lease
//! and policy, so ending a task, revoking a token or changing policy stops
//! the next request; a bound token used without its key is revoked as
//! copied; bodies stream; each request is audited and counted.

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use mayfly_broker::dpop::ProofKey;
use mayfly_broker::protocol::TaskView;
use mayfly_store::Store;
use serde_json::{Value, json};

use super::custody::{OPENAI_KEY, add};
use super::harness::{ADMIN, BACKENDS, Backend, Harness};
use super::upstream;

pub const ANTHROPIC_KEY: &str =
    "sk-ant-api03-T3stKeyForMayflyCustody0123456789abcdefABCDEF-AAAAAAAA";

/// A task for custody entry `entry` and a Bearer access token of it.
pub fn token_for(h: &Harness, entry: &str) -> String {
    let (_, token) = task_and_token(h, entry);
    token
}

pub fn task_and_token(h: &Harness, entry: &str) -> (TaskView, String) {
    let identity = h.identity("svc:agent");
    let audience = format!("urn:mayfly:custody:{entry}");
    let task = h.start_task(&identity, "team-ml", &[&audience]);
    let token = h.exchange(&identity, &task.id, &audience).access_token;
    (task, token)
}

/// A request through the broker: status, headers, body text.
pub fn request(
    h: &Harness,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let url = format!("{}{path}", h.url);
    let mut builder = ureq::http::Request::builder().method(method).uri(&url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let mut response = agent.run(builder.body(body.to_vec()).unwrap()).unwrap();
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, headers, text)
}

/// A GET: status and JSON body.
pub fn get(h: &Harness, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let (status, _, text) = request(h, "GET", path, headers, b"");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Bytes written as they are to the broker's port; the answer's text.
pub fn raw_tcp(h: &Harness, bytes: &[u8]) -> String {
    let address = h.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buffer) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buffer[..n]);
        if out.windows(4).any(|w| w == b"\r\n\r\n") && !out.starts_with(b"HTTP/1.1 200") {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn audit_kinds(h: &Harness) -> Vec<(String, Value)> {
    Store::open(&h.db)
        .unwrap()
        .audit_events(0, 10_000)
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, serde_json::from_str(&e.data).unwrap()))
        .collect()
}

#[test]
fn the_upstream_gets_the_key_and_never_the_token() {
    for backend in BACKENDS {
        let h = Harness::start(backend);
        let api = upstream::start_plain(&h.rt);
        add(
            &h,
            "openai",
            "openai",
            &format!("{}/", api.base),
            OPENAI_KEY,
        );
        add(&h, "anthropic", "anthropic", &api.base, ANTHROPIC_KEY);
        let (task, token) = task_and_token(&h, "openai");
        let bearer = format!("Bearer {token}");
        let body = vec![b'x'; 1024 * 1024];
        let (status, headers, text) = request(
            &h,
            "POST",
            "/proxy/openai/v1/chat/completions?stream=false",
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
                ("X-Trace", "t-1"),
            ],
            &body,
        );
        assert_eq!(status, 200, "{backend:?}: {text}");
        let seen = api.last();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.path_and_query, "/v1/chat/completions?stream=false");
        assert_eq!(
            seen.headers["authorization"],
            format!("Bearer {OPENAI_KEY}")
        );
        assert_eq!(seen.headers["x-trace"], "t-1");
        assert_eq!(seen.headers["host"], api.address.to_string());
        assert_eq!(seen.body_len, body.len());
        for (name, value) in &seen.headers {
            assert!(
                !value.to_str().unwrap_or_default().contains(&token),
                "the token crossed in {name}"
            );
        }
        assert!(!headers.iter().any(|(_, v)| v.contains(OPENAI_KEY)) && !text.contains(OPENAI_KEY));
        // Anthropic's SDK puts its key in x-api-key: the token goes there.
        let (_, anthropic) = task_and_token(&h, "anthropic");
        let (status, _) = get(
            &h,
            "/proxy/anthropic/v1/models",
            &[
                ("x-api-key", &anthropic),
                ("anthropic-version", "2023-06-01"),
            ],
        );
        assert_eq!(status, 200);
        let seen = api.last();
        assert_eq!(seen.headers["x-api-key"], ANTHROPIC_KEY);
        assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
        assert!(!seen.headers.contains_key("authorization"));
        // One audit event per request, and the task's counters.
        std::thread::sleep(Duration::from_millis(300));
        let events = audit_kinds(&h);
        let proxied: Vec<&Value> = events
            .iter()
            .filter(|(k, _)| k == "proxy.request")
            .map(|(_, d)| d)
            .collect();
        assert_eq!(proxied.len(), 2, "{backend:?}");
        assert_eq!(proxied[0]["task"], json!(task.id));
        assert_eq!(proxied[0]["status"], json!(200));
        assert_eq!(proxied[0]["bytes_up"], json!(1024 * 1024));
        assert_eq!(proxied[0]["path"], json!("/v1/chat/completions"));
        assert_eq!(proxied[0]["aborted"], json!(false));
        let everything = serde_json::to_string(&events).unwrap();
        assert!(!everything.contains(OPENAI_KEY) && !everything.contains(&token));
        let usage = Store::open(&h.db).unwrap().proxy_usage(&task.id).unwrap();
        assert_eq!(usage.len(), 1);
        assert_eq!((usage[0].requests, usage[0].bytes_up), (1, 1024 * 1024));
    }
}

#[test]
fn ending_the_task_revoking_or_a_policy_change_stops_the_next_request() {
    for backend in BACKENDS {
        let policies = tempfile::tempdir().unwrap();
        std::fs::write(
            policies.path().join("base.cedar"),
            "permit (principal, action, resource);",
        )
        .unwrap();
        let dir = policies.path().to_owned();
        let h = Harness::start_with(backend, move |c| c.policy.dir = Some(dir));
        let api = upstream::start_plain(&h.rt);
        add(&h, "openai", "openai", &api.base, OPENAI_KEY);
        let (task, token) = task_and_token(&h, "openai");
        let bearer = format!("Bearer {token}");
        assert_eq!(
            get(&h, "/proxy/openai/v1/models", &[("Authorization", &bearer)]).0,
            200
        );
        // A policy that forbids DELETE on this entry applies to the next request.
        let policies = json!({"policies": {
            "base.cedar": "permit (principal, action, resource);",
            "no-delete.cedar": "forbid (principal, action == Action::\"use\", resource == Custody::\"openai\") when { context.method == \"DELETE\" };"
        }});
        let (status, body) = h.raw(
            "PUT",
            "/v1/admin/policies",
            &[
                ("Authorization", &format!("Bearer {ADMIN}")),
                ("Content-Type", "application/json"),
            ],
            policies.to_string().as_bytes(),
        );
        assert_eq!(status, 200, "{body}");
        let (status, _, text) = request(
            &h,
            "DELETE",
            "/proxy/openai/v1/files/f-1",
            &[("Authorization", &bearer)],
            b"",
        );
        assert_eq!(status, 403, "{text}");
        assert!(text.contains("policy does not allow DELETE"), "{text}");
        assert_eq!(
            get(&h, "/proxy/openai/v1/models", &[("Authorization", &bearer)]).0,
            200
        );
        // Ending the task stops it.
        h.client().end_task(ADMIN, &task.id).unwrap();
        let (status, body) = get(&h, "/proxy/openai/v1/models", &[("Authorization", &bearer)]);
        assert_eq!(status, 401, "{backend:?}");
        assert_eq!(body["error"], json!("invalid_token"));
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("revoked"),
            "{body}"
        );
        // Revoking one token stops it too.
        let other = token_for(&h, "openai");
        h.client()
            .revoke(&format!("Bearer {ADMIN}"), &other)
            .unwrap();
        assert_eq!(
            get(
                &h,
                "/proxy/openai/v1/models",
                &[("Authorization", &format!("Bearer {other}"))]
            )
            .0,
            401
        );
        // And expiry.
        let late = token_for(&h, "openai");
        h.clock.advance(3600);
        assert_eq!(
            get(
                &h,
                "/proxy/openai/v1/models",
                &[("Authorization", &format!("Bearer {late}"))]
            )
            .0,
            401
        );
    }
}

#[test]
fn a_bound_token_used_without_its_key_is_revoked_as_copied() {
    for backend in BACKENDS {
        let h = Harness::start(backend);
        let api = upstream::start_plain(&h.rt);
        add(&h, "openai", "openai", &api.base, OPENAI_KEY);
        let identity = h.identity("svc:agent");
        let audience = "urn:mayfly:custody:openai";
        let task = h.start_task(&identity, "team-ml", &[audience]);
        let key = ProofKey::generate().unwrap();
        let token = h
            .client()
            .exchange_bound(&identity, &task.id, audience, None, &key, h.now())
            .unwrap();
        assert_eq!(token.token_type, "DPoP");
        let token = token.access_token;
        let url = format!("{}/proxy/openai/v1/models", h.url);
        let proof = key.proof("GET", &url, Some(&token), h.now()).unwrap();
        let dpop = format!("DPoP {token}");
        let (status, body) = get(
            &h,
            "/proxy/openai/v1/models",
            &[("Authorization", &dpop), ("DPoP", &proof)],
        );
        assert_eq!(status, 200, "{body}");
        assert!(!api.last().headers.contains_key("dpop"));
        // A proof for another request is refused, and does not revoke.
        let (status, body) = get(
            &h,
            "/proxy/openai/v1/models",
            &[("Authorization", &dpop), ("DPoP", &proof)],
        );
        assert_eq!(status, 400, "a replayed proof: {body}");
        assert!(h.active(&token));
        // Nor does another replica, or this broker after a restart, with
        // an empty memory of proofs: the store spent it.
        let replica = h.replica();
        let call = mayfly_broker::service::ProxyCall {
            entry: "openai",
            token: Some((&token, true)),
            dpop_proof: Some(&proof),
            method: "GET",
            url: &url,
            path: "/v1/models",
            source_ip: "127.0.0.1",
        };
        let refused = h.rt.block_on(replica.authorize_use(&call)).err();
        assert!(
            refused.is_some_and(|e| e.to_string().contains("already used")),
            "{backend:?}"
        );
        let fresh = key.proof("GET", &url, Some(&token), h.now()).unwrap();
        let call = mayfly_broker::service::ProxyCall {
            dpop_proof: Some(&fresh),
            ..call
        };
        assert!(h.rt.block_on(replica.authorize_use(&call)).is_ok());
        assert!(h.active(&token));
        // The same token without a proof: someone copied it.
        let (status, body) = get(
            &h,
            "/proxy/openai/v1/models",
            &[("Authorization", &format!("Bearer {token}"))],
        );
        assert_eq!(status, 401, "{body}");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("copied"),
            "{body}"
        );
        assert!(
            !h.active(&token),
            "{backend:?}: the copied token is revoked"
        );
        let proof = key.proof("GET", &url, Some(&token), h.now()).unwrap();
        assert_eq!(
            get(
                &h,
                "/proxy/openai/v1/models",
                &[("Authorization", &dpop), ("DPoP", &proof)]
            )
            .0,
            401
        );
        let copied: Vec<_> = audit_kinds(&h)
            .into_iter()
            .filter(|(k, _)| k == "token.copied")
            .collect();
        assert_eq!(copied.len(), 1);
        assert_eq!(copied[0].1["task"], json!(task.id));
    }
}

#[test]
fn a_streamed_answer_is_forwarded_chunk_by_chunk() {
    let h = Harness::start(Backend::Sqlite);
    let api = upstream::start_plain(&h.rt);
    add(&h, "openai", "openai", &api.base, OPENAI_KEY);
    let token = token_for(&h, "openai");
    let address = h.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    write!(stream, "GET /proxy/openai/v1/stream HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\r\n").unwrap();
    let mut arrivals = Vec::new();
    let mut text = String::new();
    let mut buffer = [0u8; 4096];
    while arrivals.len() < 3 {
        let n = stream.read(&mut buffer).unwrap();
        assert!(n > 0, "closed early: {text}");
        let chunk = String::from_utf8_lossy(&buffer[..n]).into_owned();
        for _ in 0..chunk.matches("data: ").count() {
            arrivals.push(started.elapsed());
        }
        text.push_str(&chunk);
    }
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("text/event-stream"));
    // The upstream sends an event every 400 ms: each arrives on its own.
    assert!(arrivals[0] < Duration::from_millis(350), "{arrivals:?}");
    assert!(arrivals[1] >= Duration::from_millis(350), "{arrivals:?}");
    assert!(arrivals[2] >= Duration::from_millis(750), "{arrivals:?}");
}

#[test]
fn tls_upstreams_are_verified_against_the_configured_ca() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = upstream::openssl_ca(certs.path());
    let h = Harness::start_with(Backend::Sqlite, |c| c.proxy.extra_ca_file = Some(ca));
    let api = upstream::start_tls(&h.rt, &cert, &key);
    add(&h, "openai", "openai", &api.base, OPENAI_KEY);
    let token = token_for(&h, "openai");
    let (status, body) = get(
        &h,
        "/proxy/openai/v1/models",
        &[("Authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        api.last().headers["authorization"],
        format!("Bearer {OPENAI_KEY}")
    );
    // Without the CA, the upstream's certificate is not trusted: nothing is sent.
    let plain = Harness::start(Backend::Sqlite);
    let other = upstream::start_tls(&plain.rt, &cert, &key);
    add(&plain, "openai", "openai", &other.base, OPENAI_KEY);
    let token = token_for(&plain, "openai");
    let (status, body) = get(
        &plain,
        "/proxy/openai/v1/models",
        &[("Authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("certificate"),
        "{body}"
    );
    assert!(other.seen().is_empty());
}
