//! A task's life: start, exchange, introspect, end; expiry; durability.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use mayfly_store::Store;
use serde_json::{Value, json};

use super::harness::{ADMIN, AUD, BACKENDS, Harness};

#[test]
fn a_credential_lives_and_dies_with_its_task() {
    for backend in BACKENDS {
        let h = Harness::start(backend);
        let (status, metadata) = h.raw("GET", "/.well-known/oauth-authorization-server", &[], b"");
        assert_eq!(status, 200);
        assert_eq!(metadata["issuer"], json!(h.url));
        assert_eq!(
            metadata["token_endpoint"],
            json!(format!("{}/oauth2/token", h.url))
        );
        assert_eq!(
            metadata["grant_types_supported"],
            json!(["urn:ietf:params:oauth:grant-type:token-exchange"])
        );

        let identity = h.identity("svc:acme/app:main");
        let task = h.start_task(&identity, "team-platform", &[AUD]);
        assert_eq!(task.workload, "svc:acme/app:main");
        assert_eq!(task.owner, "team-platform");
        assert_eq!(task.state, "live");
        assert_eq!(task.expires_at, h.now() + 600);

        let token = h.exchange(&identity, &task.id, AUD);
        assert_eq!(token.token_type, "Bearer");
        assert_eq!(
            token.issued_token_type,
            "urn:ietf:params:oauth:token-type:access_token"
        );
        assert_eq!(token.expires_in, 300, "default lifetime is 5 minutes");

        // An RFC 9068 JWT that verifies against the published JWKS.
        let header = jsonwebtoken::decode_header(&token.access_token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        let (_, jwks) = h.raw("GET", "/.well-known/jwks.json", &[], b"");
        let jwks: JwkSet = serde_json::from_value(jwks).unwrap();
        let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[AUD]);
        validation.set_issuer(&[&h.url]);
        let claims = jsonwebtoken::decode::<Value>(
            &token.access_token,
            &DecodingKey::from_jwk(jwk).unwrap(),
            &validation,
        )
        .unwrap()
        .claims;
        for claim in [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "jti",
            "client_id",
            "scope",
            "task",
            "tenant",
        ] {
            assert!(claims.get(claim).is_some(), "{claim} missing from {claims}");
        }
        assert_eq!(claims["task"], json!(task.id));
        assert_eq!(claims["tenant"], json!("acme"));
        assert_eq!(claims["client_id"], json!("ci"));

        let answer = h.introspect(&token.access_token);
        assert_eq!(answer["active"], json!(true));
        assert_eq!(answer["sub"], json!("svc:acme/app:main"));
        assert_eq!(answer["task"], json!(task.id));

        // The task shows its credential (never the token itself).
        let shown = h.client().show_task(&identity, &task.id).unwrap();
        let credentials = shown.credentials.unwrap();
        assert_eq!(credentials.len(), 1);
        assert!(credentials[0].active);
        assert!(
            !serde_json::to_string(&credentials)
                .unwrap()
                .contains(&token.access_token)
        );

        let ended = h.client().end_task(&identity, &task.id).unwrap();
        assert_eq!(ended.state, "ended");
        assert_eq!(ended.revoked, Some(1));
        assert!(
            !h.active(&token.access_token),
            "inactive as soon as the task ends"
        );
        let err = h
            .client()
            .exchange(&identity, &task.id, AUD, None, None)
            .unwrap_err();
        assert!(err.to_string().contains("invalid_grant"), "{err}");

        let mut store = Store::open(&h.db).unwrap();
        let verification = store.audit_verify().unwrap();
        assert_eq!(verification.problem, None);
        let kinds: Vec<String> = store
            .audit_tail(10)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert!(
            kinds.ends_with(&["task.start".into(), "token.issue".into(), "task.end".into()]),
            "{kinds:?}"
        );
    }
}

#[test]
fn expired_credentials_are_inactive_at_once_and_swept() {
    for backend in BACKENDS {
        let h = Harness::start(backend);
        let identity = h.identity("svc:batch");
        let task = h.start_task(&identity, "team-data", &[AUD]);
        let token = h
            .client()
            .exchange(&identity, &task.id, AUD, None, Some(60))
            .unwrap();
        assert_eq!(token.expires_in, 60);
        h.clock.advance(59);
        assert!(h.active(&token.access_token));
        h.clock.advance(1);
        assert!(!h.active(&token.access_token), "inactive at exp");

        let swept = h.rt.block_on(h.broker.sweep()).unwrap();
        assert_eq!((swept.tasks_ended, swept.leases_closed), (0, 1));
        let credentials = h
            .client()
            .show_task(&identity, &task.id)
            .unwrap()
            .credentials
            .unwrap();
        assert_eq!(credentials[0].revoke_reason.as_deref(), Some("expired"));

        // The task itself expires after its ten minutes.
        h.clock.advance(600);
        let fresh = h.identity("svc:batch");
        let err = h
            .client()
            .exchange(&fresh, &task.id, AUD, None, None)
            .unwrap_err();
        assert!(err.to_string().contains("has ended"), "{err}");
        let swept = h.rt.block_on(h.broker.sweep()).unwrap();
        assert_eq!(swept.tasks_ended, 1);
        assert_eq!(
            h.client().show_task(&fresh, &task.id).unwrap().state,
            "expired"
        );
        assert_eq!(
            Store::open(&h.db).unwrap().audit_verify().unwrap().problem,
            None
        );
    }
}

#[test]
fn lifetimes_never_pass_the_task_or_the_caps() {
    let h = Harness::start_with(super::harness::Backend::Sqlite, |c| {
        c.tokens.max_ttl_seconds = 1200
    });
    let identity = h.identity("svc:a");
    let task = h.start_task(&identity, "team-a", &[AUD]);
    // Asks for 20 minutes: the task has 10 left, the default policy caps at 15.
    let token = h
        .client()
        .exchange(&identity, &task.id, AUD, None, Some(1200))
        .unwrap();
    assert_eq!(token.expires_in, 600);
    h.clock.advance(300);
    let token = h
        .client()
        .exchange(&identity, &task.id, AUD, None, Some(1200))
        .unwrap();
    assert_eq!(token.expires_in, 300);
}

#[test]
fn every_returned_token_has_a_committed_lease() {
    for backend in BACKENDS {
        let h = Harness::start(backend);
        let identity = h.identity("svc:load");
        let task = h.start_task(&identity, "team-load", &[AUD]);
        let tokens: Vec<String> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        (0..25)
                            .map(|_| h.exchange(&identity, &task.id, AUD).access_token)
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        assert_eq!(tokens.len(), 200);
        // A separate connection sees every lease: they were committed
        // before the tokens were returned.
        let mut store = Store::open(&h.db).unwrap();
        assert_eq!(store.broker_task_leases(&task.id).unwrap().len(), 200);
        assert_eq!(store.audit_verify().unwrap().problem, None);
        let revoked = h.client().end_task(ADMIN, &task.id).unwrap().revoked;
        assert_eq!(revoked, Some(200));
    }
}

#[test]
fn sweeps_come_in_bounded_batches() {
    // Many exchanges in a row from one workload: no rate limit here.
    let h = Harness::start_with(super::harness::Backend::Sqlite, |c| {
        c.limits.exchanges_per_second_per_workload = 0;
    });
    let identity = h.identity("svc:many");
    let task = h.start_task(&identity, "team-a", &[AUD]);
    for _ in 0..1100 {
        h.client()
            .exchange(&identity, &task.id, AUD, None, Some(60))
            .unwrap();
    }
    h.clock.advance(61);
    // One sweep closes at most a batch; the background sweeper goes on
    // until nothing expired is left.
    let first = h.rt.block_on(h.broker.sweep()).unwrap().leases_closed;
    assert!(first <= mayfly_broker::service::SWEEP_BATCH);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let credentials = h
            .client()
            .show_task(&identity, &task.id)
            .unwrap()
            .credentials
            .unwrap();
        let expired = credentials
            .iter()
            .filter(|c| c.revoke_reason.as_deref() == Some("expired"))
            .count();
        if expired == 1100 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{expired} of 1100 swept"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        Store::open(&h.db).unwrap().audit_verify().unwrap().problem,
        None
    );
}

#[test]
fn the_write_ahead_log_stays_small_under_steady_issuance() {
    // Each exchange is its own durable commit of several pages. Without
    // checkpoints between commits the SQLite log would hold all of them
    // (about 40 MB here); the writer checkpoints as it goes, so the log
    // restarts and stays a few commits long.
    let h = Harness::start_with(super::harness::Backend::Sqlite, |c| {
        c.limits.exchanges_per_second_per_workload = 0;
    });
    let identity = h.identity("svc:steady");
    let task = h.start_task(&identity, "team-a", &[AUD]);
    for _ in 0..1000 {
        h.exchange(&identity, &task.id, AUD);
    }
    let wal = std::fs::metadata(format!("{}-wal", h.db)).unwrap().len();
    assert!(wal < 8 << 20, "the log is {wal} bytes after 1000 commits");
    let mut store = Store::open(&h.db).unwrap();
    assert_eq!(store.broker_task_leases(&task.id).unwrap().len(), 1000);
    assert_eq!(store.audit_verify().unwrap().problem, None);
}

#[test]
fn what_is_over_is_deleted_past_its_retention_and_the_chain_verifies_from_its_anchor() {
    for backend in BACKENDS {
        let h = Harness::start_with(backend, |c| {
            c.retention.closed_seconds = 3600;
            c.retention.audit_seconds = 7200;
        });
        let t0 = h.now();
        let identity = h.identity("svc:retained");
        // A: ended at once, its credential revoked with it.
        let ended = h.start_task(&identity, "team-a", &[AUD]);
        let revoked = h.exchange(&identity, &ended.id, AUD).access_token;
        h.client().end_task(ADMIN, &ended.id).unwrap();
        // B: its credential expires after 300 s, the task after 600 s.
        let expiring = h.start_task(&identity, "team-a", &[AUD]);
        let expired = h.exchange(&identity, &expiring.id, AUD).access_token;
        let events_at_t0 = Store::open(&h.db).unwrap().audit_verify().unwrap().events;

        h.clock.advance(300);
        let swept = h.rt.block_on(h.broker.sweep()).unwrap();
        assert_eq!((swept.tasks_ended, swept.leases_closed), (0, 1));
        // Closed, but within the hour: kept.
        h.clock.advance(3299);
        let swept = h.rt.block_on(h.broker.sweep()).unwrap();
        assert_eq!((swept.tasks_ended, swept.leases_closed), (1, 0));
        assert_eq!((swept.leases_deleted, swept.tasks_deleted), (0, 0));
        let mut store = Store::open(&h.db).unwrap();
        assert_eq!(store.broker_task_leases(&ended.id).unwrap().len(), 1);

        // An hour after A ended: A and its credential are gone, B stays.
        h.clock.advance(1);
        let swept = h.rt.block_on(h.broker.sweep()).unwrap();
        assert_eq!((swept.leases_deleted, swept.tasks_deleted), (1, 1));
        assert!(store.broker_task(&ended.id).unwrap().is_none());
        assert!(store.broker_task_leases(&ended.id).unwrap().is_empty());
        assert_eq!(store.broker_task_leases(&expiring.id).unwrap().len(), 1);
        assert!(!h.active(&revoked), "a deleted credential stays inactive");
        let (status, _) = h.raw(
            "GET",
            &format!("/v1/tasks/{}", ended.id),
            &[("Authorization", &format!("Bearer {ADMIN}"))],
            b"",
        );
        assert_eq!(status, 404);

        // An hour after B's credential expired and B ended: both gone.
        h.clock.advance(600);
        let swept = h.rt.block_on(h.broker.sweep()).unwrap();
        assert_eq!((swept.leases_deleted, swept.tasks_deleted), (1, 1));
        assert!(store.broker_task(&expiring.id).unwrap().is_none());
        assert!(!h.active(&expired));
        assert_eq!(swept.events_deleted, 0, "no event is two hours old yet");

        // Two hours on, the events of t0 go; the chain verifies from its
        // anchor and records the deletion.
        h.clock.advance(t0 + 7200 - h.now());
        let swept = h.rt.block_on(h.broker.sweep()).unwrap();
        assert_eq!(swept.events_deleted, events_at_t0 as u64);
        let verified = store.audit_verify().unwrap();
        assert_eq!(verified.problem, None);
        assert_eq!(verified.pruned_through, events_at_t0);
        let tail = store.audit_tail(1).unwrap();
        assert_eq!(tail[0].kind, "audit.prune");
        let prune: Value = serde_json::from_str(&tail[0].data).unwrap();
        assert_eq!(prune["through"], json!(events_at_t0));
        // Later events are as tamper-evident as before.
        let first_kept = events_at_t0 + 1;
        h.sql(&format!(
            "UPDATE audit_events SET at = at + 1 WHERE seq = {first_kept}"
        ));
        let problem = store.audit_verify().unwrap().problem.unwrap();
        assert!(
            problem.contains(&format!("event {first_kept} was edited")),
            "{problem}"
        );
        h.sql(&format!(
            "UPDATE audit_events SET at = at - 1 WHERE seq = {first_kept}"
        ));
        assert_eq!(store.audit_verify().unwrap().problem, None);
        h.sql(&format!(
            "DELETE FROM audit_events WHERE seq = {first_kept}"
        ));
        let problem = store.audit_verify().unwrap().problem.unwrap();
        assert!(
            problem.contains("does not link") || problem.contains("missing"),
            "{problem}"
        );
    }
}
