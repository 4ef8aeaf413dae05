//! What the CPU-bound parts of one token exchange cost on this machine, one
//! core, each timed alone: the access token's signature (Ed25519, Mayfly's
//! default, and ES256), a whole signed token, and a Cedar decision (the
//! shipped example policies and a permit-all set). The broker benchmark
//! (`bench/run_broker.sh`) uses these figures to tell how many exchanges
//! per second two cores can do at best.
//!
//! ```sh
//! cargo run --release -p mayfly-broker --example exchange_costs
//! ```
//! Prints one JSON object: microseconds per operation (the median of 7
//! rounds).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use jsonwebtoken::Algorithm;
use mayfly_broker::identity::Workload;
use mayfly_broker::keys::{self, KeyRing, MasterKey};
use mayfly_broker::policy::{Action, PolicyEngine, PolicyRequest, TaskFacts};
use mayfly_broker::token::{self, AccessClaims};

const ROUNDS: usize = 7;

/// Median microseconds per call of `work` over `ROUNDS` rounds of `n` calls.
fn micros(n: u32, mut work: impl FnMut()) -> f64 {
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                work();
            }
            start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds.get(ROUNDS / 2).copied().unwrap_or(f64::NAN)
}

fn ring(alg: &str) -> Result<KeyRing, Box<dyn std::error::Error>> {
    let master = MasterKey::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")?;
    let record = keys::generate(alg, &master, 1_700_000_000)?;
    Ok(KeyRing::from_records(&[record], &master, 1_700_000_000, 0)?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let message = [7u8; 420]; // the size of an access token's signing input
    let ed25519 = ring("EdDSA")?;
    let es256 = ring("ES256")?;
    let rs256 = ring("RS256")?;
    let (_, _, ed25519_key) = ed25519.signer(Algorithm::EdDSA).ok_or("no Ed25519 key")?;
    let (_, _, es256_key) = es256.signer(Algorithm::ES256).ok_or("no ES256 key")?;
    let (_, _, rs256_key) = rs256.signer(Algorithm::RS256).ok_or("no RS256 key")?;

    let claims = AccessClaims {
        iss: "http://127.0.0.1:8080".into(),
        sub: "repo:bench/app:ref:refs/heads/main".into(),
        aud: "https://api.bench.invalid".into(),
        exp: 1_700_000_300,
        iat: 1_700_000_000,
        nbf: 1_700_000_000,
        jti: "018c2b5e4f00a1b2c3d4e5f60718293a".into(),
        client_id: "bench".into(),
        scope: String::new(),
        task: "5f0c8a7e2b9d4c1e8f3a6b0d9e2c7f14".into(),
        tenant: "default".into(),
        cnf: None,
    };

    let engine = PolicyEngine::new()?;
    let examples = engine.load_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies"),
    )?;
    let permit_all = engine.load_texts(
        &[(
            "bench.cedar".into(),
            "permit(principal, action, resource);".into(),
        )],
        "<bench>",
    )?;
    let workload = Workload {
        id: "repo:bench/app:ref:refs/heads/main".into(),
        issuer: "bench".into(),
        kind: "generic",
        tenant: "default".into(),
        tags: BTreeMap::from([
            ("repository".into(), "bench/app".into()),
            ("ref".into(), "refs/heads/main".into()),
        ]),
        expires_at: 1_700_003_600,
    };
    let audience = "https://api.bench.invalid";
    let audiences = vec![audience.to_owned()];
    let request = PolicyRequest {
        workload: &workload,
        action: Action::Exchange,
        task: TaskFacts {
            purpose: "bench",
            owner: "team-bench",
            tenant: "default",
            audiences: &audiences,
            started_at: 1_700_000_000 - 10,
        },
        audience,
        scope: &[],
        requested_ttl: 300,
        now: 1_700_000_000,
        dpop: false,
        source_ip: "127.0.0.1",
    };

    let figures = serde_json::json!({
        "ed25519_sign_us": micros(2_000, || { black_box(ed25519_key.sign(black_box(&message))); }),
        "es256_sign_us": micros(1_000, || { black_box(es256_key.sign(black_box(&message))); }),
        "rs256_sign_us": micros(200, || { black_box(rs256_key.sign(black_box(&message))); }),
        "access_token_ed25519_us": micros(2_000, || { black_box(token::sign(black_box(&claims), &ed25519, Algorithm::EdDSA)).ok(); }),
        "cedar_decision_examples_us": micros(5_000, || { black_box(engine.decide(&examples, black_box(&request))); }),
        "cedar_decision_permit_all_us": micros(5_000, || { black_box(engine.decide(&permit_all, black_box(&request))); }),
        "rounds": ROUNDS,
    });
    println!("{figures:#}");
    Ok(())
}
