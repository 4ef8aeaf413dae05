//! Mayfly as an OpenID provider: discovery, and RS256 ID tokens for a
//! task's audience that verify against the published keys, carry the
//! task's facts, and live no longer than the task, on both stores.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::harness::{BACKENDS, Backend, Harness};

const STS: &str = "sts.amazonaws.com";

#[test]
fn id_tokens_verify_against_discovery_and_carry_the_task() {
    for backend in BACKENDS {
        let h = Harness::start_with(backend, |c| c.federation.enabled = true);
        let (status, discovery) = h.raw("GET", "/.well-known/openid-configuration", &[], b"");
        assert_eq!(status, 200);
        assert_eq!(discovery["issuer"], h.url.as_str());
        assert_eq!(
            discovery["id_token_signing_alg_values_supported"][0],
            "RS256"
        );
        let identity = h.identity("svc:deploy");
        let task = h.start_task(&identity, "team-infra", &[STS]);
        let response = h
            .client()
            .exchange_id_token(&identity, &task.id, STS, Some(100_000))
            .unwrap();
        assert_eq!(
            response.issued_token_type,
            "urn:ietf:params:oauth:token-type:id_token"
        );
        assert_eq!(response.token_type, "N_A");
        assert!(response.expires_in <= 600, "within the task's life");
        let (_, jwks) = h.raw("GET", "/.well-known/jwks.json", &[], b"");
        let jwks: JwkSet = serde_json::from_value(jwks).unwrap();
        let header = jsonwebtoken::decode_header(&response.access_token).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[STS]);
        validation.set_issuer(&[h.url.as_str()]);
        let claims: Value = jsonwebtoken::decode(
            &response.access_token,
            &DecodingKey::from_jwk(jwk).unwrap(),
            &validation,
        )
        .unwrap()
        .claims;
        assert_eq!(claims["sub"], "svc:deploy");
        assert_eq!(claims["task"], task.id.as_str());
        assert_eq!(claims["owner"], "team-infra");
        assert_eq!(claims["purpose"], "deploy");
        assert_eq!(claims["tenant"], "acme");
        // It is a lease like any other: the task shows it.
        let shown = h.client().show_task(&identity, &task.id).unwrap();
        assert_eq!(
            shown.credentials.unwrap_or_default().len(),
            1,
            "{backend:?}"
        );
    }
}

#[test]
fn id_tokens_are_refused_where_they_make_no_sense() {
    let plain = Harness::start(Backend::Sqlite);
    let identity = plain.identity("svc:deploy");
    let task = plain.start_task(&identity, "team", &[STS]);
    let err = plain
        .client()
        .exchange_id_token(&identity, &task.id, STS, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("[federation] enabled = true"), "{err}");
    let (status, _) = plain.raw("GET", "/.well-known/openid-configuration", &[], b"");
    assert_eq!(status, 404);

    let h = Harness::start_with(Backend::Sqlite, |c| c.federation.enabled = true);
    let identity = h.identity("svc:deploy");
    let custody = "urn:mayfly:custody:openai";
    let task = h.start_task(&identity, "team", &[STS]);
    let err = h
        .client()
        .exchange_id_token(&identity, &task.id, custody, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid_target"), "{err}");
    // An audience the task did not name is refused as for access tokens.
    let err = h
        .client()
        .exchange_id_token(&identity, &task.id, "https://iam.googleapis.com/x", None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid_target"), "{err}");
}
