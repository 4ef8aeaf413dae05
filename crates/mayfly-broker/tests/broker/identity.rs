//! Workload identity: JWKS by discovery with rate-limited refresh, headers
//! that are never followed, presets for GitHub Actions, Kubernetes and
//! SPIFFE, and DPoP binding.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::get;
use jsonwebtoken::{Algorithm, Header};
use mayfly_broker::client::TaskRequest;
use mayfly_broker::config::IssuerConfig;
use serde_json::{Value, json};

use super::harness::{AUD, Backend, Harness, TestIssuer, exchange_fields, exchange_request};

fn issuer_config(
    name: &str,
    iss: &str,
    preset: Option<&str>,
    jwks_file: Option<std::path::PathBuf>,
) -> IssuerConfig {
    IssuerConfig {
        name: name.into(),
        issuer: Some(iss.into()),
        preset: preset.map(str::to_owned),
        audiences: vec!["mayfly".into()],
        algorithms: vec!["ES256".into()],
        jwks_file,
        jwks_uri: None,
        workload: None,
        tenant_claim: None,
        tenant: None,
        claims: vec![],
        trust_domain: None,
        leeway_seconds: 30,
        min_refresh_seconds: 30,
    }
}

/// An OIDC issuer on loopback: discovery and JWKS, counting requests.
struct OidcServer {
    url: String,
    keys: Arc<std::sync::Mutex<Value>>,
    hits: Arc<AtomicUsize>,
}

fn oidc_server(rt: &tokio::runtime::Runtime) -> OidcServer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let keys = Arc::new(std::sync::Mutex::new(json!({"keys": []})));
    let hits = Arc::new(AtomicUsize::new(0));
    let (k, h, u) = (keys.clone(), hits.clone(), url.clone());
    let h2 = hits.clone();
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || {
                h2.fetch_add(1, Ordering::SeqCst);
                let u = u.clone();
                async move { axum::Json(json!({"issuer": u, "jwks_uri": format!("{u}/jwks")})) }
            }),
        )
        .route(
            "/jwks",
            get(move || {
                h.fetch_add(1, Ordering::SeqCst);
                let body = k.lock().unwrap().clone();
                async move { axum::Json(body) }
            }),
        );
    rt.spawn(async move {
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        axum::serve(listener, app).await.unwrap();
    });
    OidcServer { url, keys, hits }
}

#[test]
fn keys_come_by_discovery_and_refresh_on_a_new_kid_at_a_bounded_rate() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let oidc = oidc_server(&rt);
    let first = TestIssuer::new(&oidc.url, "k1");
    *oidc.keys.lock().unwrap() = json!({"keys": [first.jwk]});
    let iss = oidc.url.clone();
    let h = Harness::start_with(Backend::Sqlite, move |c| {
        c.issuers.push(issuer_config("oidc", &iss, None, None))
    });

    let token = first.mint("svc:oidc", h.now());
    let task = h.start_task(&token, "team-a", &[AUD]);
    assert_eq!(task.workload, "svc:oidc");
    assert_eq!(
        oidc.hits.load(Ordering::SeqCst),
        2,
        "discovery, then the JWKS"
    );

    // The issuer rotates to k2: the unknown kid triggers one refresh, but
    // not more often than min_refresh_seconds.
    let second = TestIssuer::new(&oidc.url, "k2");
    *oidc.keys.lock().unwrap() = json!({"keys": [first.jwk, second.jwk]});
    let rotated = second.mint("svc:oidc", h.now());
    for _ in 0..5 {
        let err = h
            .client()
            .exchange(&rotated, &task.id, AUD, None, None)
            .unwrap_err();
        assert!(
            err.to_string().contains("no key \\\"k2\\\"") || err.to_string().contains("k2"),
            "{err}"
        );
    }
    assert_eq!(
        oidc.hits.load(Ordering::SeqCst),
        2,
        "refresh is rate limited"
    );
    h.clock.advance(31);
    let rotated = second.mint("svc:oidc", h.now());
    h.client()
        .exchange(&rotated, &task.id, AUD, None, None)
        .unwrap();
    assert_eq!(oidc.hits.load(Ordering::SeqCst), 4);
}

/// A JWKS endpoint that answers (with no keys) only after `delay`,
/// counting requests.
fn slow_jwks(delay: std::time::Duration) -> (String, Arc<AtomicUsize>) {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/jwks",
        listener.local_addr().unwrap().port()
    );
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let counted = counted.clone();
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    request.push(byte[0]);
                }
                counted.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(delay);
                let body = r#"{"keys":[]}"#;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    (url, hits)
}

#[test]
fn a_slow_identity_provider_holds_only_the_requests_that_need_its_keys() {
    let (jwks_uri, hits) = slow_jwks(std::time::Duration::from_secs(3));
    let h = Harness::start_with(Backend::Sqlite, move |c| {
        let mut slow = issuer_config("slow", "https://slow.test", None, None);
        slow.jwks_uri = Some(jwks_uri);
        c.issuers.push(slow);
    });
    // Tokens of the slow issuer with kids nobody knows, sent at once.
    let url = h.url.clone();
    let now = h.now();
    let callers: Vec<_> = (0..4)
        .map(|i| {
            let token =
                TestIssuer::new("https://slow.test", &format!("random-{i}")).mint("svc:x", now);
            let url = url.clone();
            std::thread::spawn(move || {
                mayfly_broker::client::Client::new(&url)
                    .start_task(
                        &token,
                        &TaskRequest {
                            purpose: "p".into(),
                            owner: "o".into(),
                            ttl_seconds: None,
                            audiences: vec![AUD.into()],
                        },
                    )
                    .unwrap_err()
                    .to_string()
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Meanwhile the rest of the API answers at once.
    let started = std::time::Instant::now();
    assert_eq!(h.raw("GET", "/.well-known/jwks.json", &[], b"").0, 200);
    let identity = h.identity("svc:a");
    let task = h.start_task(&identity, "team-a", &[AUD]);
    let token = h.exchange(&identity, &task.id, AUD).access_token;
    assert!(h.active(&token));
    assert!(
        started.elapsed() < std::time::Duration::from_millis(1500),
        "other requests waited {:?} behind the slow provider",
        started.elapsed()
    );
    for caller in callers {
        let refusal = caller.join().unwrap();
        assert!(refusal.contains("401"), "{refusal}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "four unknown kids, one fetch (the attempt counts before the answer comes)"
    );
}

#[test]
fn jku_and_embedded_keys_are_never_followed() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let attacker = oidc_server(&rt);
    let forger = TestIssuer::new(super::harness::ISS, "ci-1");
    *attacker.keys.lock().unwrap() = json!({"keys": [forger.jwk]});
    let h = Harness::start(Backend::Sqlite);
    let now = h.now();
    let claims =
        json!({"iss": super::harness::ISS, "sub": "svc:evil", "aud": "mayfly", "exp": now + 600});
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ci-1".into());
    header.jku = Some(format!("{}/jwks", attacker.url));
    header.jwk = Some(serde_json::from_value(forger.jwk.clone()).unwrap());
    let forged = jsonwebtoken::encode(&header, &claims, &forger_key(&forger)).unwrap();
    let (status, body) = h.token_request(&exchange_fields(&forged, "t", AUD), &[]);
    assert_eq!(status, 400);
    assert_eq!(body["error"], json!("invalid_grant"));
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{body}"
    );
    assert_eq!(
        attacker.hits.load(Ordering::SeqCst),
        0,
        "the jku URL was never fetched"
    );
}

/// The forger's own key (the header only claims to be the issuer's).
fn forger_key(_claimed: &TestIssuer) -> jsonwebtoken::EncodingKey {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap();
    let secret = p256::SecretKey::from_slice(&seed).unwrap();
    use p256::pkcs8::EncodePrivateKey;
    jsonwebtoken::EncodingKey::from_ec_der(secret.to_pkcs8_der().unwrap().as_bytes())
}

#[test]
fn presets_map_github_kubernetes_and_spiffe_identities() {
    let gha = TestIssuer::new("https://token.actions.githubusercontent.com", "gh-1");
    let k8s = TestIssuer::new("https://kubernetes.default.svc", "k8s-1");
    let spire = TestIssuer::new("https://spire.acme.example", "spire-1");
    let keys = tempfile::tempdir().unwrap();
    let file = |name: &str, issuer: &TestIssuer| {
        let path = keys.path().join(name);
        std::fs::write(&path, issuer.jwks().to_string()).unwrap();
        path
    };
    let (gha_file, k8s_file, spire_file) = (
        file("gha.json", &gha),
        file("k8s.json", &k8s),
        file("spire.json", &spire),
    );
    let policies = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let h = Harness::start_with(Backend::Sqlite, move |c| {
        // Named as in mayfly.example.toml, which the example policies follow.
        let mut g = issuer_config(
            "github",
            "https://token.actions.githubusercontent.com",
            Some("github-actions"),
            Some(gha_file),
        );
        g.issuer = None;
        c.issuers.push(g);
        c.issuers.push(issuer_config(
            "k8s",
            "https://kubernetes.default.svc",
            Some("kubernetes"),
            Some(k8s_file),
        ));
        let mut s = issuer_config(
            "spire",
            "https://spire.acme.example",
            Some("spiffe"),
            Some(spire_file),
        );
        s.trust_domain = Some("prod.acme.example".into());
        c.issuers.push(s);
        c.policy.dir = Some(policies);
    });
    let now = h.now();
    let deploy = "https://deploy.acme.example";
    let request = |audience: &str| TaskRequest {
        purpose: "release".into(),
        owner: "team-release".into(),
        ttl_seconds: Some(1800),
        audiences: vec![audience.into()],
    };

    // GitHub Actions: main branch of acme/app may deploy; a pull request may not.
    let gh_claims = |reference: &str, event: &str| {
        json!({"iss": gha.iss, "aud": "mayfly", "exp": now + 600, "iat": now,
               "sub": format!("repo:acme/app:ref:{reference}"), "repository": "acme/app",
               "repository_owner": "acme", "ref": reference, "workflow": "release", "run_id": "42",
               "event_name": event})
    };
    let main = gha.sign(&gh_claims("refs/heads/main", "push"));
    let task = h.client().start_task(&main, &request(deploy)).unwrap();
    assert_eq!(task.workload, "repo:acme/app:ref:refs/heads/main");
    let token = h
        .client()
        .exchange(&main, &task.id, deploy, None, Some(900))
        .unwrap();
    assert_eq!(token.expires_in, 600, "capped by @max_ttl");
    let pr = gha.sign(&gh_claims("refs/pull/7/merge", "pull_request"));
    let err = h.client().start_task(&pr, &request(deploy)).unwrap_err();
    assert!(err.to_string().contains("ci-no-pull-requests"), "{err}");

    // Kubernetes: the service account is the workload.
    let sa = k8s.sign(&json!({"iss": k8s.iss, "aud": ["mayfly"], "exp": now + 600, "sub": "system:serviceaccount:billing:api",
        "kubernetes.io": {"namespace": "billing", "serviceaccount": {"name": "api"}, "pod": {"name": "api-1"}}}));
    let err = h.client().start_task(&sa, &request(deploy)).unwrap_err();
    assert!(err.to_string().contains("default deny"), "{err}");
    assert!(err.to_string().contains("403"), "{err}");

    // SPIFFE: only IDs of the trust domain; the agent policy wants DPoP.
    let svid = |sub: &str| {
        spire.sign(&json!({"iss": spire.iss, "aud": "mayfly", "exp": now + 600, "sub": sub}))
    };
    let outsider = svid("spiffe://evil.example/ns/agents/sa/research");
    let err = h
        .client()
        .start_task(&outsider, &request("https://mcp-docs.acme.example"))
        .unwrap_err();
    assert!(err.to_string().contains("trust domain"), "{err}");
    let agent = svid("spiffe://prod.acme.example/ns/agents/sa/research");
    let mcp = "https://mcp-docs.acme.example";
    let task = h.client().start_task(&agent, &request(mcp)).unwrap();
    let mut fields = exchange_fields(&agent, &task.id, mcp);
    fields.push(("scope", "docs:read"));
    let (status, body) = h.token_request(&fields, &[]);
    assert_eq!(status, 403, "no DPoP proof: {body}");
    let proof = dpop_proof(&spire, &format!("{}/oauth2/token", h.url), now, "proof-1");
    let (status, body) = h.token_request(&fields, &[("DPoP", &proof)]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], json!("DPoP"));
    assert_eq!(body["expires_in"], json!(300));
    let answer = h.introspect(body["access_token"].as_str().unwrap());
    assert_eq!(answer["cnf"]["jkt"].as_str().map(str::len), Some(43));
    // The same proof again is a replay.
    let (status, body) = h.token_request(&fields, &[("DPoP", &proof)]);
    assert_eq!(status, 400);
    assert_eq!(body["error"], json!("invalid_dpop_proof"));
    // A proof for another URL is refused.
    let elsewhere = dpop_proof(&spire, "https://elsewhere.example/token", now, "proof-2");
    let (status, _) = h.token_request(&fields, &[("DPoP", &elsewhere)]);
    assert_eq!(status, 400);
}

fn dpop_proof(key: &TestIssuer, htu: &str, now: i64, jti: &str) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("dpop+jwt".into());
    let mut jwk = key.jwk.clone();
    jwk.as_object_mut().unwrap().remove("kid");
    header.jwk = Some(serde_json::from_value(jwk).unwrap());
    let claims = json!({"htm": "POST", "htu": htu, "iat": now, "jti": jti});
    jsonwebtoken::encode(&header, &claims, &key.encoding_key()).unwrap()
}

#[test]
fn a_workload_of_one_issuer_cannot_pose_as_another_issuers() {
    let keys = tempfile::tempdir().unwrap();
    let spire = TestIssuer::new("https://spire.test", "s1");
    let bundle = keys.path().join("spire.jwks.json");
    std::fs::write(&bundle, spire.jwks().to_string()).unwrap();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let h = Harness::start_with(Backend::Sqlite, move |c| {
        c.policy.dir = Some(examples);
        let mut config = issuer_config("spire", "https://spire.test", Some("spiffe"), Some(bundle));
        config.trust_domain = Some("prod.acme.example".into());
        c.issuers.push(config);
    });
    let agent = "spiffe://prod.acme.example/ns/agents/sa/research";
    let docs = "https://mcp-docs.acme.example";
    let start = |token: &str| {
        h.client().start_task(
            token,
            &TaskRequest {
                purpose: "answer a question".into(),
                owner: "team-ai".into(),
                ttl_seconds: Some(600),
                audiences: vec![docs.into()],
            },
        )
    };
    // The generic test issuer signs a token whose sub is the agent's SPIFFE ID.
    let posing = h.issuer.mint(agent, h.now());
    let err = start(&posing).unwrap_err().to_string();
    assert!(
        err.contains("401") && err.contains("only a spiffe issuer"),
        "{err}"
    );
    // The SPIFFE issuer vouches for the same id: the example policy allows it.
    let real = spire.sign(
        &json!({"iss": "https://spire.test", "sub": agent, "aud": "mayfly",
                                  "iat": h.now(), "exp": h.now() + 600}),
    );
    let task = start(&real).unwrap();
    assert_eq!(task.workload, agent);
}

/// A DPoP proof is spent once for every replica on the store and across
/// restarts: a second broker on the same store (a replica, or the same one
/// restarted, with an empty replay memory) refuses it.
fn a_dpop_proof_is_spent_once(backend: Backend) {
    let h = Harness::start(backend);
    let identity = h.identity("svc:dpop");
    let task = h.start_task(&identity, "team-a", &[AUD]);
    let fields = exchange_fields(&identity, &task.id, AUD);
    let proof = dpop_proof(
        &h.issuer,
        &format!("{}/oauth2/token", h.url),
        h.now(),
        "spent-once",
    );
    let (status, body) = h.token_request(&fields, &[("DPoP", &proof)]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], json!("DPoP"));

    let replica = h.replica();
    let request = |proof: &str| {
        h.rt.block_on(replica.exchange(exchange_request(&fields), Some(proof), "127.0.0.1"))
    };
    let err = request(&proof).unwrap_err();
    assert!(err.to_string().contains("already used"), "{err}");
    // A fresh proof is accepted by the replica.
    let fresh = dpop_proof(
        &h.issuer,
        &format!("{}/oauth2/token", h.url),
        h.now(),
        "fresh",
    );
    assert!(request(&fresh).is_ok());
}

#[test]
fn a_dpop_proof_is_spent_once_across_replicas_and_restarts_on_sqlite() {
    a_dpop_proof_is_spent_once(Backend::Sqlite);
}

#[test]
fn a_dpop_proof_is_spent_once_across_replicas_and_restarts_on_postgres() {
    a_dpop_proof_is_spent_once(Backend::Postgres);
}

/// A key another replica made after this broker loaded its ring: tokens
/// it signs are verified here too (the ring is read again on a miss).
#[test]
fn tokens_signed_with_a_key_made_by_another_replica_are_verified() {
    let h = Harness::start(Backend::Sqlite);
    let identity = h.identity("svc:rotated");
    let task = h.start_task(&identity, "team-a", &[AUD]);
    // Another replica rotates: a new EdDSA key, sealed with the shared
    // master key, lands in the store after this broker loaded its ring.
    let master =
        mayfly_broker::keys::MasterKey::load_or_create(&h.paths.data_dir.join("broker-master.key"))
            .unwrap();
    let record = mayfly_broker::keys::generate("EdDSA", &master, h.now() + 1).unwrap();
    let kid = record.kid.clone();
    h.add_signing_key(record);
    let replica = h.replica();
    let fields = exchange_fields(&identity, &task.id, AUD);
    let token =
        h.rt.block_on(replica.exchange(exchange_request(&fields), None, "127.0.0.1"))
            .unwrap()
            .access_token;
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(
        header.kid.as_deref(),
        Some(kid.as_str()),
        "signed with the new key"
    );
    assert!(
        h.active(&token),
        "this broker verifies the other replica's new key"
    );
}
