//! Untrusted tokens never crash the broker: workload identity JWTs, DPoP
//! proofs and presented access tokens, as arbitrary bytes.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use mayfly_broker::config::{Issuer, IssuerConfig};
use mayfly_broker::dpop::DpopVerifier;
use mayfly_broker::identity::IdentityVerifier;
use mayfly_broker::keys::{self, KeyRing, MasterKey};
use mayfly_broker::{ManualClock, token};

struct Fixture {
    identity: IdentityVerifier,
    dpop: DpopVerifier,
    ring: KeyRing,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let jwks = dir.path().join("jwks.json");
        std::fs::write(
            &jwks,
            r#"{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","kid":"k1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#,
        )
        .expect("jwks");
        let issuer: Issuer = IssuerConfig {
            name: "fuzz".into(),
            issuer: Some("https://fuzz.test".into()),
            preset: None,
            audiences: vec!["mayfly".into()],
            algorithms: vec![],
            jwks_file: Some(jwks),
            jwks_uri: None,
            workload: Some("{sub}:{a.b}".into()),
            tenant_claim: Some("tenant".into()),
            tenant: None,
            claims: vec!["x".into()],
            trust_domain: None,
            leeway_seconds: 30,
            min_refresh_seconds: 1,
        }
        .check()
        .expect("issuer");
        let clock = Arc::new(ManualClock::new(1_800_000_000));
        let master = MasterKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("master");
        let record = keys::generate("EdDSA", &master, 1_800_000_000).expect("key");
        Fixture {
            identity: IdentityVerifier::new(vec![issuer], clock),
            dpop: DpopVerifier::default(),
            ring: KeyRing::from_records(&[record], &master, 1_800_000_000, 60).expect("ring"),
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let f = fixture();
    let _ = f.identity.verify_blocking(text);
    let _ = f.dpop.verify(
        text,
        "POST",
        "https://mayfly.test/oauth2/token",
        None,
        1_800_000_000,
    );
    // A proof presented with an access token to the proxy (its `ath` checked).
    let _ = f.dpop.verify(
        text,
        "GET",
        "https://mayfly.test/proxy/openai/v1/models",
        Some("an.access.token"),
        1_800_000_000,
    );
    let _ = token::verify(text, &f.ring, "https://mayfly.test");
});
