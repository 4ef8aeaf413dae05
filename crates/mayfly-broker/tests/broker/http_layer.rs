//! What the HTTP layer itself answers: OAuth error bodies for its own
//! rejections, RS256 tokens where a resource server asks for them, and
//! private store files.

use std::io::{Read as _, Write as _};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::harness::{AUD, Backend, Harness};

/// Sends raw bytes and returns the status line, the headers and the body.
fn raw_http(h: &Harness, request: &[u8]) -> (String, String, String) {
    let address = h.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_owned(), headers.to_lowercase(), body.to_owned())
}

fn oauth_error(body: &str) -> Value {
    let json: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body:?}"));
    assert!(json["error"].is_string(), "{json}");
    assert!(
        json["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{json}"
    );
    json
}

#[test]
fn rejections_of_the_http_layer_carry_oauth_error_bodies() {
    let h = Harness::start(Backend::Sqlite);

    let (status, body) = h.raw("GET", "/no/such/endpoint", &[], b"");
    assert_eq!(status, 404);
    assert_eq!(oauth_error(&body.to_string())["error"], "not_found");

    let (status, headers, body) = raw_http(
        &h,
        b"GET /oauth2/token HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(status.contains("405"), "{status}");
    assert!(headers.contains("allow: post"), "{headers}");
    assert_eq!(oauth_error(&body)["error"], "invalid_request");

    let big = vec![b'a'; 200 * 1024];
    let (status, body) = h.raw(
        "POST",
        "/oauth2/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &big,
    );
    assert_eq!(status, 413);
    oauth_error(&body.to_string());

    let (status, body) = h.raw(
        "POST",
        "/v1/tasks",
        &[
            ("Content-Type", "text/plain"),
            ("Authorization", &format!("Bearer {}", h.identity("svc:a"))),
        ],
        b"{}",
    );
    assert_eq!(status, 415);
    oauth_error(&body.to_string());

    let huge = "x".repeat(40 * 1024);
    let request = format!(
        "GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\nX-Padding: {huge}\r\nConnection: close\r\n\r\n"
    );
    let (status, _, body) = raw_http(&h, request.as_bytes());
    assert!(status.contains("431"), "{status}");
    assert!(
        oauth_error(&body)["error_description"]
            .as_str()
            .unwrap()
            .contains("limit")
    );

    // A well-formed request on the same server still works.
    let (status, _) = h.raw("GET", "/.well-known/jwks.json", &[], b"");
    assert_eq!(status, 200);
}

#[test]
fn a_resource_server_can_ask_for_rs256_tokens() {
    let h = Harness::start_with(Backend::Sqlite, |c| {
        c.resource_servers[0].audiences = vec![AUD.into()];
        c.resource_servers[0].token_algorithm = Some("RS256".into());
    });
    let metadata = h
        .raw("GET", "/.well-known/oauth-authorization-server", &[], b"")
        .1;
    let algorithms = metadata["access_token_signing_alg_values_supported"].to_string();
    assert!(
        algorithms.contains("RS256") && algorithms.contains("EdDSA"),
        "{algorithms}"
    );

    let identity = h.identity("svc:a");
    let task = h.start_task(&identity, "team-a", &[AUD, "https://other.test"]);
    let token = h.exchange(&identity, &task.id, AUD).access_token;
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);

    // A third-party verifier with only the published JWKS accepts it.
    let jwks: JwkSet =
        serde_json::from_value(h.raw("GET", "/.well-known/jwks.json", &[], b"").1).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("the token's key is published");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[AUD]);
    validation.set_issuer(&[h.url.as_str()]);
    let claims =
        jsonwebtoken::decode::<Value>(&token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .unwrap()
            .claims;
    assert_eq!(claims["sub"], "svc:a");
    assert!(h.active(&token));

    // Other audiences keep the default algorithm.
    let other = h
        .exchange(&identity, &task.id, "https://other.test")
        .access_token;
    assert_eq!(
        jsonwebtoken::decode_header(&other).unwrap().alg,
        Algorithm::EdDSA
    );
}

#[cfg(unix)]
#[test]
fn store_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let h = Harness::start(Backend::Sqlite);
    let identity = h.identity("svc:a");
    let task = h.start_task(&identity, "team-a", &[AUD]);
    h.exchange(&identity, &task.id, AUD);
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", h.db);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{path} has mode {mode:o}");
    }
}
