//! Bad input is refused with the right status and a reason, and never
//! crashes the server or leaves a half-written lease.

use base64::Engine;
use mayfly_store::Store;
use serde_json::{Value, json};

use super::harness::{ADMIN, AUD, BACKENDS, Backend, Harness, ISS, exchange_fields};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unsigned(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(signature)
    )
}

fn refused(h: &Harness, subject: &str, task: &str) -> (u16, String, String) {
    let (status, body) = h.token_request(&exchange_fields(subject, task, AUD), &[]);
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[test]
fn bad_identity_tokens_are_refused_with_reasons() {
    let h = Harness::start(Backend::Sqlite);
    let good = h.identity("svc:a");
    let task = h.start_task(&good, "team-a", &[AUD]).id;
    let now = h.now();
    let claims = |extra: Value| {
        let mut c =
            json!({"iss": ISS, "sub": "svc:a", "aud": "mayfly", "iat": now, "exp": now + 600});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let public_key = h.issuer.jwk.to_string();
    let hs256 = {
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        jsonwebtoken::encode(
            &header,
            &claims(json!({})),
            &jsonwebtoken::EncodingKey::from_secret(public_key.as_bytes()),
        )
        .unwrap()
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("garbage", "not-a-jwt".into(), "malformed"),
        ("two parts", "a.b".into(), "malformed"),
        (
            "alg none",
            unsigned(&json!({"alg": "none"}), &claims(json!({})), b""),
            "malformed",
        ),
        ("HMAC with the public key", hs256, "HS256 is not accepted"),
        (
            "unknown issuer",
            h.issuer.sign(&claims(json!({"iss": "https://evil.test"}))),
            "not trusted",
        ),
        (
            "expired",
            h.issuer.sign(&claims(json!({"exp": now - 120}))),
            "expired",
        ),
        (
            "not yet valid",
            h.issuer
                .sign(&claims(json!({"nbf": now + 600, "exp": now + 1200}))),
            "not valid yet",
        ),
        (
            "issued in the future",
            h.issuer
                .sign(&claims(json!({"iat": now + 600, "exp": now + 1200}))),
            "not valid yet",
        ),
        (
            "no exp",
            h.issuer.sign(&claims(json!({"exp": null}))),
            "no exp",
        ),
        (
            "wrong audience",
            h.issuer.sign(&claims(json!({"aud": "someone-else"}))),
            "audience",
        ),
        (
            "bad signature",
            {
                let t = h.identity("svc:a");
                format!("{}x", t.trim_end_matches(|c| c != '.'))
            },
            "signature",
        ),
        ("oversized", "a".repeat(20_000), "malformed"),
    ];
    for (name, token, expected) in cases {
        let (status, error, description) = refused(&h, &token, &task);
        assert_eq!(status, 400, "{name}: {description}");
        assert_eq!(error, "invalid_grant", "{name}");
        assert!(description.contains(expected), "{name}: {description}");
        assert!(
            !description.contains(&token[..token.len().min(40)]) || token.len() < 20,
            "{name}: token echoed"
        );
    }
    // Within the leeway is fine.
    h.client()
        .exchange(
            &h.issuer.sign(&claims(json!({"exp": now - 10}))),
            &task,
            AUD,
            None,
            None,
        )
        .unwrap();
}

#[test]
fn malformed_requests_get_oauth_errors() {
    for backend in BACKENDS {
        let h = Harness::start(backend);
        let identity = h.identity("svc:a");
        let task = h.start_task(&identity, "team-a", &[AUD]).id;
        let mut no_grant = exchange_fields(&identity, &task, AUD);
        no_grant.remove(0);
        let mut wrong_grant = exchange_fields(&identity, &task, AUD);
        wrong_grant[0] = ("grant_type", "client_credentials");
        let mut no_type = exchange_fields(&identity, &task, AUD);
        no_type.remove(2);
        let mut two_targets = exchange_fields(&identity, &task, AUD);
        two_targets.push(("resource", "https://other.test"));
        let mut no_task = exchange_fields(&identity, &task, AUD);
        no_task.pop();
        let cases = [
            ("no grant_type", no_grant, 400, "invalid_request"),
            ("wrong grant", wrong_grant, 400, "unsupported_grant_type"),
            ("no subject_token_type", no_type, 400, "invalid_request"),
            ("two targets", two_targets, 400, "invalid_target"),
            ("no task", no_task, 400, "invalid_request"),
            (
                "unknown task",
                exchange_fields(&identity, "nope", AUD),
                400,
                "invalid_grant",
            ),
        ];
        for (name, fields, status, error) in cases {
            let (got, body) = h.token_request(&fields, &[]);
            assert_eq!(got, status, "{name}: {body}");
            assert_eq!(body["error"], json!(error), "{name}: {body}");
            assert!(
                !body["error_description"].as_str().unwrap().is_empty(),
                "{name}"
            );
        }

        let json_headers = [
            ("Authorization", format!("Bearer {identity}")),
            ("Content-Type", "application/json".into()),
        ];
        let headers: Vec<(&str, &str)> =
            json_headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for (name, body, expected) in [
            ("not JSON", &b"{purpose"[..], "invalid_request"),
            (
                "unknown field",
                br#"{"purpose":"p","owner":"o","audiences":["a"],"admin":true}"#,
                "invalid_request",
            ),
            (
                "no owner",
                br#"{"purpose":"p","owner":" ","audiences":["a"]}"#,
                "invalid_request",
            ),
            (
                "no audiences",
                br#"{"purpose":"p","owner":"o","audiences":[]}"#,
                "invalid_request",
            ),
            (
                "too long",
                br#"{"purpose":"p","owner":"o","audiences":["a"],"ttl_seconds":999999999}"#,
                "invalid_request",
            ),
        ] {
            let (status, answer) = h.raw("POST", "/v1/tasks", &headers, body);
            assert_eq!(status, 400, "{name}: {answer}");
            assert_eq!(answer["error"], json!(expected), "{name}");
        }
        let big = vec![b'a'; 200_000];
        let (status, answer) = h.raw(
            "POST",
            "/oauth2/token",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &big,
        );
        assert_eq!(status, 413, "{answer}");
        let (status, answer) = h.raw(
            "POST",
            "/v1/tasks",
            &[("Content-Type", "application/json")],
            b"{}",
        );
        assert_eq!(status, 401, "{answer}");
        let (status, answer) = h.raw("GET", "/nowhere", &[], b"");
        assert_eq!((status, answer["error"].clone()), (404, json!("not_found")));
        let (status, _) = h.raw(
            "GET",
            "/v1/tasks/nope",
            &[("Authorization", &format!("Bearer {ADMIN}"))],
            b"",
        );
        assert_eq!(status, 404);

        // Introspecting junk or a token from elsewhere: inactive, not an error.
        assert_eq!(h.introspect("junk"), json!({"active": false}));
        let foreign = h.identity("svc:a");
        assert_eq!(h.introspect(&foreign), json!({"active": false}));

        // Nothing half-written: no lease exists without a token, and the
        // server still answers.
        let mut store = Store::open(&h.db).unwrap();
        assert!(store.broker_task_leases(&task).unwrap().is_empty());
        assert_eq!(store.audit_verify().unwrap().problem, None);
        h.exchange(&identity, &task, AUD);
    }
}

#[test]
fn a_tampered_audit_log_is_detected() {
    for backend in BACKENDS {
        let h = Harness::start(backend);
        let identity = h.identity("svc:a");
        let task = h.start_task(&identity, "team-a", &[AUD]).id;
        for _ in 0..3 {
            h.exchange(&identity, &task, AUD);
        }
        let mut store = Store::open(&h.db).unwrap();
        assert_eq!(store.audit_verify().unwrap().problem, None);
        // Edited.
        h.sql("UPDATE audit_events SET data = replace(data, 'svc:a', 'svc:b') WHERE seq = 4");
        let problem = store.audit_verify().unwrap().problem.unwrap();
        assert!(problem.contains("event 4 was edited"), "{problem}");
        h.sql("UPDATE audit_events SET data = replace(data, 'svc:b', 'svc:a') WHERE seq = 4");
        assert_eq!(store.audit_verify().unwrap().problem, None);
        // Removed from the middle.
        h.sql("DELETE FROM audit_events WHERE seq = 5");
        let problem = store.audit_verify().unwrap().problem.unwrap();
        assert!(problem.contains("missing or reordered"), "{problem}");
    }
}

/// A NUL or another control character in an id or a reason (PostgreSQL's
/// text cannot hold a NUL) is refused as bad input, never reported as the
/// store failing, and the broker keeps serving.
#[test]
fn control_characters_in_ids_are_bad_input_not_a_store_failure() {
    for backend in BACKENDS {
        let h = Harness::start(backend);
        let admin = [
            ("Authorization", format!("Bearer {ADMIN}")),
            ("Content-Type", "application/json".to_owned()),
        ];
        let admin: Vec<(&str, &str)> = admin.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for body in [
            json!({"jti": "\u{0}B\u{ae}"}),
            json!({"task": "t\u{0}"}),
            json!({"owner": "team-a", "reason": "gone\u{0}"}),
        ] {
            let (status, answer) = h.raw(
                "POST",
                "/v1/admin/revoke",
                &admin,
                body.to_string().as_bytes(),
            );
            assert_eq!(status, 400, "{backend:?} {body}: {answer}");
            assert_eq!(answer["error"], "invalid_request", "{answer}");
        }
        let (status, answer) = h.raw("GET", "/v1/tasks/a%00b", &admin, b"");
        assert_eq!(status, 404, "{backend:?}: {answer}");
        // A filter no stored value can match: an empty list on SQLite,
        // refused as bad input on PostgreSQL; never "unavailable".
        let (status, answer) = h.raw("GET", "/v1/admin/tasks?owner=a%00b&live=true", &admin, b"");
        match backend {
            Backend::Sqlite => assert_eq!((status, &answer["tasks"]), (200, &json!([]))),
            Backend::Postgres => {
                assert_eq!(status, 400, "{answer}");
                assert!(
                    answer["error_description"]
                        .as_str()
                        .unwrap()
                        .contains("NUL character"),
                    "{answer}"
                );
            }
        }
        for (method, path) in [
            ("GET", "/v1/custody/a%00b"),
            ("GET", "/v1/admin/custody/a%00b"),
            ("DELETE", "/v1/admin/custody/a%00b"),
        ] {
            let (status, answer) = h.raw(method, path, &admin, b"");
            assert_eq!(status, 400, "{backend:?} {method} {path}: {answer}");
        }
        let identity = h.identity("svc:a");
        let task = h.start_task(&identity, "team-a", &[AUD]).id;
        h.exchange(&identity, &task, AUD);
    }
}
