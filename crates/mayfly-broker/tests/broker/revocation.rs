//! Revocation that happens: one token, a whole owner or workload, at once.

use base64::Engine;
use serde_json::json;

use super::harness::{ADMIN, AUD, BACKENDS, Harness, RS_SECRET};

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

#[test]
fn a_resource_server_introspects_and_revokes_one_token() {
    for backend in BACKENDS {
        let h = Harness::start(backend);
        let identity = h.identity("svc:a");
        let task = h.start_task(&identity, "team-a", &[AUD]);
        let first = h.exchange(&identity, &task.id, AUD).access_token;
        let second = h.exchange(&identity, &task.id, AUD).access_token;
        let rs = basic("api", RS_SECRET);
        let answer = h.client().introspect(&rs, &first).unwrap();
        assert_eq!(answer["active"], json!(true));

        h.client().revoke(&rs, &first).unwrap();
        assert_eq!(
            h.client().introspect(&rs, &first).unwrap(),
            json!({"active": false})
        );
        assert!(h.active(&second), "only the revoked token is affected");
        // Revoking an unknown token is not an error (RFC 7009 section 2.2).
        h.client().revoke(&rs, "not-a-token").unwrap();

        // Wrong or missing client credentials are refused.
        let err = h
            .client()
            .introspect(&basic("api", "wrong-secret-0123456789"), &second)
            .unwrap_err();
        assert!(err.to_string().contains("401"), "{err}");
        let (status, body) = h.raw(
            "POST",
            "/oauth2/introspect",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            format!("token={second}").as_bytes(),
        );
        assert_eq!(status, 401);
        assert_eq!(body["error"], json!("invalid_client"));
        // A workload cannot introspect with its identity token.
        let err = h
            .client()
            .introspect(&format!("Bearer {identity}"), &second)
            .unwrap_err();
        assert!(err.to_string().contains("401"), "{err}");
    }
}

#[test]
fn revoking_an_owner_or_a_workload_ends_everything_of_theirs() {
    for backend in BACKENDS {
        let h = Harness::start(backend);
        let a = h.identity("svc:a");
        let b = h.identity("svc:b");
        let a1 = h.start_task(&a, "team-red", &[AUD]);
        let a2 = h.start_task(&a, "team-red", &[AUD]);
        let b1 = h.start_task(&b, "team-blue", &[AUD]);
        let tokens_a: Vec<String> = [&a1, &a2, &a1]
            .iter()
            .map(|t| h.exchange(&a, &t.id, AUD).access_token)
            .collect();
        let token_b = h.exchange(&b, &b1.id, AUD).access_token;

        assert_eq!(
            h.client().admin_revoke(ADMIN, "owner", "team-red").unwrap(),
            3
        );
        for token in &tokens_a {
            assert!(!h.active(token));
        }
        assert!(h.active(&token_b));
        // Their tasks are over: no new credentials.
        let err = h
            .client()
            .exchange(&a, &a1.id, AUD, None, None)
            .unwrap_err();
        assert!(err.to_string().contains("has ended"), "{err}");

        assert_eq!(
            h.client().admin_revoke(ADMIN, "workload", "svc:b").unwrap(),
            1
        );
        assert!(!h.active(&token_b));

        // Only the admin may do this.
        let (status, _) = h.raw(
            "POST",
            "/v1/admin/revoke",
            &[
                ("Authorization", &format!("Bearer {a}")),
                ("Content-Type", "application/json"),
            ],
            br#"{"owner":"team-blue"}"#,
        );
        assert_eq!(status, 401);
        let (status, body) = h.raw(
            "POST",
            "/v1/admin/revoke",
            &[
                ("Authorization", &format!("Bearer {ADMIN}")),
                ("Content-Type", "application/json"),
            ],
            br#"{"owner":"x","workload":"y"}"#,
        );
        assert_eq!(status, 400);
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("exactly one")
        );
    }
}

#[test]
fn another_workload_cannot_end_or_use_a_task() {
    for backend in BACKENDS {
        let h = Harness::start(backend);
        let owner = h.identity("svc:owner");
        let intruder = h.identity("svc:intruder");
        let task = h.start_task(&owner, "team-a", &[AUD]);
        let token = h.exchange(&owner, &task.id, AUD).access_token;
        let err = h.client().end_task(&intruder, &task.id).unwrap_err();
        assert!(err.to_string().contains("403"), "{err}");
        let err = h
            .client()
            .exchange(&intruder, &task.id, AUD, None, None)
            .unwrap_err();
        assert!(err.to_string().contains("another workload"), "{err}");
        assert!(h.active(&token), "nothing changed");
        let err = h.client().show_task(&intruder, &task.id).unwrap_err();
        assert!(err.to_string().contains("403"), "{err}");
    }
}
