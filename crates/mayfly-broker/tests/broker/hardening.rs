//! What an attacker tried on loopback, each as a test: slow and idle
//! connections, resource servers reaching other audiences, keys and leases
//! edited in the store behind the broker's back.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mayfly_store::SigningKeyRecord;
use serde_json::{Value, json};

use super::harness::{AUD, Backend, Harness, RS_SECRET};

const OTHER: &str = "https://billing.test";

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

fn connect(h: &Harness) -> TcpStream {
    let stream = TcpStream::connect(h.url.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Whether the server has closed `stream` (a read returns end of file or
/// an error instead of waiting).
fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return true,
            Ok(_) => continue,
        }
    }
}

#[test]
fn slow_and_idle_connections_do_not_starve_other_clients() {
    let h = Harness::start_with(Backend::Sqlite, |c| {
        c.server.header_read_timeout_seconds = 1;
        c.server.request_timeout_seconds = 2;
    });
    // Idle connections, headers sent one byte at a time, a half-sent body.
    let mut idle: Vec<TcpStream> = (0..40).map(|_| connect(&h)).collect();
    let mut dribbling = connect(&h);
    dribbling
        .write_all(b"GET /.well-known/jwks.json HTTP/1.1\r\nHo")
        .unwrap();
    let mut half_body = connect(&h);
    half_body
        .write_all(b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ngrant_type=")
        .unwrap();

    // A normal client is served meanwhile.
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(h.raw("GET", "/.well-known/jwks.json", &[], b"").0, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // The slow ones are cut off once their time is up.
    let started = Instant::now();
    for stream in idle.iter_mut() {
        assert!(closed(stream));
    }
    assert!(closed(&mut dribbling));
    let mut answer = String::new();
    let _ = half_body.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"error\""), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn connections_are_capped_per_address_with_a_clear_answer() {
    let h = Harness::start_with(Backend::Sqlite, |c| {
        c.server.max_connections_per_address = 3;
    });
    let held: Vec<TcpStream> = (0..3).map(|_| connect(&h)).collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut refused = connect(&h);
    let mut answer = String::new();
    let _ = refused.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    drop(held);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(h.raw("GET", "/.well-known/jwks.json", &[], b"").0, 200);
}

#[test]
fn a_resource_server_sees_and_revokes_only_its_own_audiences() {
    let dir = tempfile::tempdir().unwrap();
    let billing_secret = dir.path().join("billing-secret");
    std::fs::write(&billing_secret, "billing-secret-0123456789").unwrap();
    let h = Harness::start_with(Backend::Sqlite, move |c| {
        c.resource_servers
            .push(mayfly_broker::config::ResourceServerConfig {
                client_id: "billing-api".into(),
                secret_file: Some(billing_secret),
                audiences: vec![OTHER.into()],
                ..Default::default()
            });
    });
    let identity = h.identity("svc:a");
    let task = h.start_task(&identity, "team-a", &[AUD, OTHER]);
    let api_token = h.exchange(&identity, &task.id, AUD).access_token;
    let billing = basic("billing-api", "billing-secret-0123456789");
    let api = basic("api", RS_SECRET);

    assert_eq!(
        h.client().introspect(&billing, &api_token).unwrap(),
        json!({"active": false}),
        "another audience's token looks inactive, with no claims"
    );
    h.client().revoke(&billing, &api_token).unwrap();
    assert_eq!(
        h.client().introspect(&api, &api_token).unwrap()["active"],
        json!(true)
    );

    let billing_token = h.exchange(&identity, &task.id, OTHER).access_token;
    assert_eq!(
        h.client().introspect(&billing, &billing_token).unwrap()["active"],
        json!(true)
    );
    h.client().revoke(&billing, &billing_token).unwrap();
    assert!(!h.active(&billing_token));
}

/// An ES256 key the attacker holds, as a store record (with a sealed half
/// the attacker cannot make) and as a signer.
fn attacker_key(now: i64) -> (SigningKeyRecord, EncodingKey, String) {
    let issuer = super::harness::TestIssuer::new("unused", "unused");
    let mut jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(issuer.jwk.clone()).unwrap();
    let kid = jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256);
    jwk.common.key_id = Some(kid.clone());
    let record = SigningKeyRecord {
        kid: kid.clone(),
        alg: "ES256".into(),
        public_jwk: serde_json::to_string(&jwk).unwrap(),
        sealed_private: base64::engine::general_purpose::STANDARD.encode([0u8; 64]),
        created_at: now,
        retired_at: Some(now),
    };
    (record, issuer.encoding_key(), kid)
}

#[test]
fn keys_and_leases_edited_in_the_store_are_never_trusted() {
    let h = Harness::start(Backend::Sqlite);
    let identity = h.identity("svc:a");
    let task = h.start_task(&identity, "team-a", &[AUD, OTHER]);
    let real = h.exchange(&identity, &task.id, AUD).access_token;
    let real_claims: Value = {
        let payload = real.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };

    // A retired-key row inserted without the master key.
    let (record, key, kid) = attacker_key(h.now());
    h.add_signing_key(record);
    h.rt.block_on(h.broker.refresh_keys()).unwrap();
    let jwks = h.raw("GET", "/.well-known/jwks.json", &[], b"").1;
    assert!(!jwks.to_string().contains(&kid), "{jwks}");

    // A token signed with it, reusing the live lease's jti with another
    // subject, audience and scope.
    let mut forged_claims = real_claims.clone();
    forged_claims["sub"] = json!("svc:root");
    forged_claims["aud"] = json!(OTHER);
    forged_claims["scope"] = json!("admin");
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid);
    let forged = jsonwebtoken::encode(&header, &forged_claims, &key).unwrap();
    assert_eq!(h.introspect(&forged), json!({"active": false}));
    assert!(h.active(&real));

    // A lease edited in the store no longer vouches for its token.
    let jti = real_claims["jti"].as_str().unwrap().to_owned();
    rusqlite::Connection::open(&h.db)
        .unwrap()
        .execute(
            "UPDATE broker_leases SET audience = ?1 WHERE jti = ?2",
            rusqlite::params![OTHER, jti],
        )
        .unwrap();
    assert_eq!(h.introspect(&real), json!({"active": false}));
}

#[test]
fn one_workload_cannot_hold_unbounded_tasks_or_exchange_without_limit() {
    let h = Harness::start_with(Backend::Sqlite, |c| {
        c.limits.max_live_tasks_per_workload = 3;
        c.limits.exchanges_per_second_per_workload = 5;
    });
    let identity = h.identity("svc:a");
    let tasks: Vec<_> = (0..3)
        .map(|_| h.start_task(&identity, "team-a", &[AUD]))
        .collect();
    let refused = |status: u16, body: &Value, mentions: &str| {
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["error"], "temporarily_unavailable");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains(mentions),
            "{body}"
        );
    };
    let start =
        serde_json::to_vec(&json!({"purpose": "p", "owner": "o", "audiences": [AUD]})).unwrap();
    let (status, body) = h.raw(
        "POST",
        "/v1/tasks",
        &[
            ("Authorization", &format!("Bearer {identity}")),
            ("Content-Type", "application/json"),
        ],
        &start,
    );
    refused(status, &body, "max_live_tasks_per_workload");
    // Another workload is not affected; ending a task frees a place.
    h.start_task(&h.identity("svc:b"), "team-b", &[AUD]);
    h.client().end_task(&identity, &tasks[0].id).unwrap();
    h.start_task(&identity, "team-a", &[AUD]);

    // Exchanges: a burst of twice the rate, then 429.
    let mut statuses = Vec::new();
    for _ in 0..15 {
        let (status, body) = h.token_request(
            &super::harness::exchange_fields(&identity, &tasks[1].id, AUD),
            &[],
        );
        if status == 429 {
            refused(status, &body, "exchanges_per_second_per_workload");
        }
        statuses.push(status);
    }
    let granted = statuses.iter().filter(|s| **s == 200).count();
    assert!((10..=11).contains(&granted), "{statuses:?}");
    assert!(statuses.contains(&429));
}

#[test]
fn re_evaluation_pages_through_many_grants_and_runs_at_start() {
    let policies = tempfile::tempdir().unwrap();
    std::fs::write(
        policies.path().join("p.cedar"),
        "permit (principal, action, resource);",
    )
    .unwrap();
    let dir = policies.path().to_owned();
    let h = Harness::start_with(Backend::Sqlite, move |c| {
        c.policy.dir = Some(dir);
        c.limits.exchanges_per_second_per_workload = 0;
    });
    let identity = h.identity("svc:a");
    let task = h.start_task(&identity, "team-a", &[AUD]);
    // More grants (task, audience, scope) than one page of re-evaluation.
    let tokens: Vec<String> = (0..1100)
        .map(|i| {
            h.client()
                .exchange(&identity, &task.id, AUD, Some(&format!("s{i}")), None)
                .unwrap()
                .access_token
        })
        .collect();
    // The policy is changed on disk while "the broker is down": a broker
    // that starts on this store applies it to the live credentials.
    std::fs::write(
        policies.path().join("p.cedar"),
        r#"permit (principal, action == Action::"start_task", resource);"#,
    )
    .unwrap();
    drop(h.replica());
    let active = tokens.iter().filter(|t| h.active(t)).count();
    assert_eq!(active, 0);
}

/// Replicas on one PostgreSQL database sweep one at a time: while another
/// holds the sweeper's lock, a sweep is skipped; once it is gone, the next
/// sweep does the work.
#[test]
fn one_replica_sweeps_at_a_time_and_another_takes_over() {
    let h = Harness::start(Backend::Postgres);
    let identity = h.identity("svc:sweeper");
    let task = h.start_task(&identity, "team-a", &[AUD]);
    let token = h
        .client()
        .exchange(&identity, &task.id, AUD, None, Some(60))
        .unwrap()
        .access_token;
    assert!(h.active(&token));
    // "Another replica" holds the sweeper's lock for two seconds.
    let database = h.paths.db.rsplit('/').next().unwrap().to_owned();
    let holder = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-q", "-d", &database])
        .args(["-c", "BEGIN", "-c", "SELECT pg_advisory_xact_lock(7355611)"])
        .args(["-c", "SELECT pg_sleep(3)", "-c", "COMMIT"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the lock is held (psql may take a while to connect).
    let held = || {
        let out = std::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-tA", "-d", &database, "-c"])
            .arg("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 7355611 AND granted")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !held() {
        assert!(Instant::now() < deadline, "the lock was never taken");
        std::thread::sleep(Duration::from_millis(50));
    }
    h.clock.advance(3600);
    let skipped = h.rt.block_on(h.broker.sweep()).unwrap();
    assert_eq!(
        skipped,
        mayfly_store::Swept::default(),
        "swept while another replica holds the lock"
    );
    let mut holder = holder;
    assert!(holder.wait().unwrap().success());
    let swept = h.rt.block_on(h.broker.sweep()).unwrap();
    assert_eq!(
        swept.tasks_ended, 1,
        "the expired task is ended now: {swept:?}"
    );
}
