//! Custody through the admin API: secrets go in by request body only, are
//! sealed before they reach the store, never come back out, rotate with a
//! grace period, and open only with the master key that sealed them.

use mayfly_broker::client::ClientError;
use mayfly_broker::custody::{AddCustody, RotateCustody, SecretValue};
use mayfly_store::Store;

use super::harness::{ADMIN, BACKENDS, Backend, Harness};
use super::upstream;

pub const OPENAI_KEY: &str = "sk-proj-T3stKeyForMayflyCustody0123456789abcdefABCDEF";

/// Adds `name` for `provider`, sent to `upstream`.
pub fn add(h: &Harness, name: &str, provider: &str, upstream: &str, secret: &str) {
    h.client()
        .custody_add(
            ADMIN,
            &AddCustody {
                name: name.into(),
                provider: provider.into(),
                owner: "team-ml".into(),
                upstreams: vec![upstream.into()],
                injection: None,
                max_age_days: Some(90),
                grace_seconds: Some(300),
                fingerprint: None,
                secret: SecretValue::new(secret.into()),
            },
        )
        .unwrap();
}

/// Every byte of the store (SQLite: the file and its log) or every custody
/// and audit value (PostgreSQL), as text.
fn store_text(h: &Harness) -> String {
    if h.db.starts_with("postgres") {
        let mut client = postgres::Client::connect(&h.db, postgres::NoTls).unwrap();
        let mut text = String::new();
        for row in client
            .query("SELECT sealed FROM custody_versions", &[])
            .unwrap()
        {
            text.push_str(row.get::<_, &str>(0));
        }
        for row in client
            .query("SELECT settings FROM custody_entries", &[])
            .unwrap()
        {
            text.push_str(row.get::<_, &str>(0));
        }
        for row in client.query("SELECT data FROM audit_events", &[]).unwrap() {
            text.push_str(row.get::<_, &str>(0));
        }
        text
    } else {
        let mut bytes = std::fs::read(&h.db).unwrap();
        if let Ok(wal) = std::fs::read(format!("{}-wal", h.db)) {
            bytes.extend(wal);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[test]
fn the_secret_goes_in_sealed_and_never_comes_out() {
    for backend in BACKENDS {
        let h = Harness::start(backend);
        add(&h, "openai", "openai", "https://api.openai.com", OPENAI_KEY);
        let client = h.client();
        let shown = client.custody_show(ADMIN, "openai").unwrap();
        assert_eq!(shown.provider, "OpenAI");
        assert_eq!(shown.audience, "urn:mayfly:custody:openai");
        assert_eq!(shown.version, 1);
        let listed = serde_json::to_string(&client.custody_list(ADMIN).unwrap()).unwrap();
        assert!(listed.contains("\"openai\"") && !listed.contains(OPENAI_KEY));
        let (_, raw) = h.raw(
            "GET",
            "/v1/admin/custody/openai",
            &[("Authorization", &format!("Bearer {ADMIN}"))],
            b"",
        );
        assert!(!raw.to_string().contains(OPENAI_KEY));
        assert!(
            !store_text(&h).contains(OPENAI_KEY),
            "{backend:?}: plaintext in the store"
        );
        let events = Store::open(&h.db).unwrap().audit_events(0, 1000).unwrap();
        let added = events
            .iter()
            .find(|e| e.kind == "custody.add")
            .expect("custody.add audited");
        assert!(added.data.contains("team-ml") && !added.data.contains(OPENAI_KEY));
    }
}

#[test]
fn bad_custody_requests_are_refused_with_what_to_do() {
    let h = Harness::start(Backend::Sqlite);
    add(&h, "openai", "openai", "https://api.openai.com", OPENAI_KEY);
    let client = h.client();
    let refusal = |result: Result<_, ClientError>| match result {
        Err(ClientError::Refused {
            status,
            description,
            ..
        }) => (status, description),
        other => panic!("not refused: {other:?}"),
    };
    let request = |name: &str, provider: &str, upstreams: Vec<String>, secret: &str| AddCustody {
        name: name.into(),
        provider: provider.into(),
        owner: "team".into(),
        upstreams,
        injection: None,
        max_age_days: None,
        grace_seconds: None,
        fingerprint: None,
        secret: SecretValue::new(secret.into()),
    };
    let (status, why) =
        refusal(client.custody_add(ADMIN, &request("openai", "openai", vec![], "sk-other")));
    assert_eq!(status, 409, "{why}");
    let (status, why) = refusal(client.custody_add(
        ADMIN,
        &request("two", "openai", vec![], "sk-a\r\nX-Injected: 1"),
    ));
    assert_eq!(status, 400);
    assert!(
        why.contains("control character") && !why.contains("sk-a"),
        "{why}"
    );
    let (status, why) =
        refusal(client.custody_add(ADMIN, &request("acme", "acme-internal", vec![], "k")));
    assert_eq!(status, 400);
    assert!(why.contains("--upstream"), "{why}");
    let (status, _) = refusal(client.custody_add(
        ADMIN,
        &request("x", "openai", vec!["http://api.example".into()], "k"),
    ));
    assert_eq!(status, 400, "plain http off loopback");
    let (status, _) =
        refusal(client.custody_add("not-the-admin", &request("y", "openai", vec![], "k")));
    assert_eq!(status, 401);
    let (status, why) = refusal(client.custody_show(ADMIN, "nope"));
    assert_eq!(status, 404);
    assert!(why.contains("mayfly custody list"), "{why}");
    client.custody_remove(ADMIN, "openai").unwrap();
    assert_eq!(refusal(client.custody_show(ADMIN, "openai")).0, 404);
    // A removed name can be used again.
    add(&h, "openai", "openai", "https://api.openai.com", OPENAI_KEY);
}

#[test]
fn rotation_keeps_the_previous_version_for_its_grace_period() {
    for backend in BACKENDS {
        let h = Harness::start(backend);
        let api = upstream::start_plain(&h.rt);
        add(&h, "openai", "openai", &api.base, OPENAI_KEY);
        // Another replica on the store, which has used the entry.
        let replica = h.replica();
        let token = super::proxy::token_for(&h, "openai");
        let url = format!("{}/proxy/openai/v1/models", h.url);
        let call = mayfly_broker::service::ProxyCall {
            entry: "openai",
            token: Some((&token, false)),
            dpop_proof: None,
            method: "GET",
            url: &url,
            path: "/v1/models",
            source_ip: "127.0.0.1",
        };
        let injected = || {
            h.rt.block_on(replica.authorize_use(&call))
                .unwrap()
                .secret()
                .to_owned()
        };
        assert_eq!(injected(), OPENAI_KEY);
        let client = h.client();
        let rotated = client
            .custody_rotate(
                ADMIN,
                "openai",
                &RotateCustody {
                    secret: SecretValue::new("sk-proj-second".into()),
                },
            )
            .unwrap();
        assert_eq!(rotated.version, 2);
        // The rotation reaches the other replica within ENTRY_CACHE.
        std::thread::sleep(mayfly_broker::service::ENTRY_CACHE);
        assert_eq!(injected(), "sk-proj-second", "{backend:?}");
        assert_eq!(rotated.previous_versions.len(), 1);
        assert_eq!(rotated.previous_versions[0].retires_at, h.now() + 300);
        h.clock.advance(301);
        h.rt.block_on(h.broker.sweep()).unwrap();
        let after = client.custody_show(ADMIN, "openai").unwrap();
        assert!(after.previous_versions.is_empty(), "{backend:?}");
        let mut store = Store::open(&h.db).unwrap();
        let (_, versions) = store.custody_entry("openai", h.now()).unwrap().unwrap();
        assert_eq!(versions.len(), 1, "the retired version is destroyed");
        // Rotation from the command line's point of view: a new version is used at once.
        let task_token = super::proxy::token_for(&h, "openai");
        let (status, _) = super::proxy::get(
            &h,
            "/proxy/openai/v1/models",
            &[("Authorization", &format!("Bearer {task_token}"))],
        );
        assert_eq!(status, 200);
        assert_eq!(api.last().headers["authorization"], "Bearer sk-proj-second");
    }
}

#[test]
fn a_store_moved_without_its_master_key_opens_nothing() {
    let h = Harness::start(Backend::Sqlite);
    let api = upstream::start_plain(&h.rt);
    add(&h, "openai", "openai", &api.base, OPENAI_KEY);
    // The same store under another data directory: another master key.
    let other = tempfile::tempdir().unwrap();
    let paths = mayfly_broker::service::BrokerPaths {
        data_dir: other.path().join("data"),
        db: h.db.clone(),
    };
    let moved = h.rt.block_on(mayfly_broker::Broker::open(
        h.config.clone(),
        &paths,
        ADMIN,
        h.clock.clone() as std::sync::Arc<dyn mayfly_broker::Clock>,
    ));
    let Err(e) = moved else {
        // Signing keys are sealed too: opening the broker itself fails.
        panic!("a broker opened a store sealed with another master key");
    };
    let text = e.to_string();
    assert!(text.contains("master key"), "{text}");
    assert!(!text.contains(OPENAI_KEY));
}
