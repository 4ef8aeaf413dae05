//! A GitHub App installation token per task. A local server implements
//! the documented endpoints (`POST /app/installations/{id}/access_tokens`,
//! `DELETE /installation/token`, `GET /installation/repositories`) and
//! checks what GitHub checks: the App JWT (RS256 by the App's key, `iss` =
//! the App id, at most 10 minutes) and the narrowed request body. The
//! App's key is made by `openssl` in GitHub's format (PKCS #1 PEM).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use mayfly_broker::config::GithubUpstreamConfig;
use mayfly_broker::custody::{AddCustody, SecretValue};
use mayfly_broker::protocol::UpstreamCredential;
use rsa::pkcs8::DecodePublicKey as _;
use rsa::signature::Verifier as _;
use serde_json::{Value, json};

use super::harness::{ADMIN, BACKENDS, Backend, Harness, now};

const APP_ID: u64 = 4242;
const INSTALLATION: u64 = 77;
const AUDIENCE: &str = "urn:mayfly:github:github";

/// What the stand-in knows: the App's public key, tokens it made, the
/// bodies it was sent.
struct GitHub {
    public: rsa::RsaPublicKey,
    tokens: Mutex<BTreeMap<String, bool>>,
    bodies: Mutex<Vec<Value>>,
}

fn refuse(status: StatusCode, message: &str) -> (StatusCode, Json<Value>) {
    (status, Json(json!({"message": message})))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// GitHub's checks of an App JWT.
fn app_jwt_ok(github: &GitHub, jwt: &str) -> Result<(), String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return Err("not a JWT".into());
    };
    let header: Value = serde_json::from_slice(&b64.decode(header).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    if header["alg"] != "RS256" {
        return Err(format!("alg {}", header["alg"]));
    }
    let signature = rsa::pkcs1v15::Signature::try_from(
        b64.decode(signature).map_err(|e| e.to_string())?.as_slice(),
    )
    .map_err(|e| e.to_string())?;
    rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(github.public.clone())
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .map_err(|_| "bad signature".to_string())?;
    let claims: Value = serde_json::from_slice(&b64.decode(claims).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap_or(0),
        claims["exp"].as_i64().unwrap_or(0),
    );
    let t = now();
    if claims["iss"] != json!(APP_ID.to_string()) {
        return Err(format!("iss {}", claims["iss"]));
    }
    if exp - iat > 600 || exp <= t || iat > t + 60 {
        return Err(format!("iat {iat} exp {exp} at {t}"));
    }
    Ok(())
}

async fn access_tokens(
    State(github): State<Arc<GitHub>>,
    UrlPath(installation): UrlPath<u64>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if let Err(why) = bearer(&headers)
        .ok_or_else(|| "no bearer".to_string())
        .and_then(|jwt| app_jwt_ok(&github, jwt))
    {
        return refuse(
            StatusCode::UNAUTHORIZED,
            &format!("A JSON web token could not be decoded ({why})"),
        );
    }
    if installation != INSTALLATION {
        return refuse(StatusCode::NOT_FOUND, "Not Found");
    }
    github.bodies.lock().unwrap().push(body.clone());
    let suffix: String = (0..36)
        .map(|i| {
            char::from(
                b'a' + ((now() as usize + i * 7 + github.bodies.lock().unwrap().len()) % 26) as u8,
            )
        })
        .collect();
    let token = format!("ghs_{suffix}");
    github.tokens.lock().unwrap().insert(token.clone(), true);
    let expires = jiff::Timestamp::from_second(now() + 3600)
        .unwrap()
        .to_string();
    let repositories: Vec<Value> = body["repositories"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|name| json!({"name": name, "full_name": format!("acme/{}", name.as_str().unwrap())}))
        .collect();
    let permissions = body
        .get("permissions")
        .cloned()
        .unwrap_or(json!({"contents": "write", "metadata": "read"}));
    (
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "expires_at": expires,
            "permissions": permissions,
            "repository_selection": if repositories.is_empty() { "all" } else { "selected" },
            "repositories": repositories,
        })),
    )
}

fn live(github: &GitHub, headers: &HeaderMap) -> bool {
    bearer(headers).is_some_and(|t| github.tokens.lock().unwrap().get(t) == Some(&true))
}

async fn revoke(State(github): State<Arc<GitHub>>, headers: HeaderMap) -> StatusCode {
    if !live(&github, &headers) {
        return StatusCode::UNAUTHORIZED;
    }
    let token = bearer(&headers).unwrap().to_owned();
    github.tokens.lock().unwrap().insert(token, false);
    StatusCode::NO_CONTENT
}

async fn repositories(State(github): State<Arc<GitHub>>, headers: HeaderMap) -> StatusCode {
    if live(&github, &headers) {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    }
}

fn openssl(args: &[&str]) {
    let status = Command::new("openssl").args(args).status().unwrap();
    assert!(status.success(), "openssl {args:?}");
}

/// An App key as GitHub hands it out, and its public half.
fn app_key(dir: &Path) -> (String, rsa::RsaPublicKey) {
    let key = dir.join("app.pem");
    let public = dir.join("app.pub.pem");
    openssl(&[
        "genrsa",
        "-traditional",
        "-out",
        key.to_str().unwrap(),
        "2048",
    ]);
    openssl(&[
        "rsa",
        "-in",
        key.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    let pem = std::fs::read_to_string(&key).unwrap();
    assert!(
        pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "PKCS #1, as GitHub gives"
    );
    let public =
        rsa::RsaPublicKey::from_public_key_pem(&std::fs::read_to_string(&public).unwrap()).unwrap();
    (pem, public)
}

fn start_github(rt: &tokio::runtime::Runtime, public: rsa::RsaPublicKey) -> (String, Arc<GitHub>) {
    let github = Arc::new(GitHub {
        public,
        tokens: Mutex::default(),
        bodies: Mutex::default(),
    });
    let app = axum::Router::new()
        .route("/app/installations/{id}/access_tokens", post(access_tokens))
        .route("/installation/token", delete(revoke))
        .route("/installation/repositories", get(repositories))
        .with_state(github.clone());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, github)
}

fn app_config(name: &str, api_url: &str, key_entry: &str) -> GithubUpstreamConfig {
    GithubUpstreamConfig {
        name: name.into(),
        app_id: APP_ID,
        installation_id: INSTALLATION,
        private_key_custody: key_entry.into(),
        api_url: api_url.into(),
    }
}

fn add_key(h: &Harness, name: &str, pem: &str, upstream: &str) {
    h.client()
        .custody_add(
            ADMIN,
            &AddCustody {
                name: name.into(),
                provider: "github-app".into(),
                owner: "team-platform".into(),
                upstreams: vec![upstream.into()],
                injection: None,
                max_age_days: None,
                grace_seconds: None,
                fingerprint: None,
                secret: SecretValue::new(pem.into()),
            },
        )
        .unwrap();
}

fn uses(base: &str, token: &str) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    agent
        .get(format!("{base}/installation/repositories"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn an_installation_token_is_narrowed_and_revoked_with_its_task() {
    for backend in BACKENDS {
        let keys = tempfile::tempdir().unwrap();
        let (pem, public) = app_key(keys.path());
        let side = tokio::runtime::Runtime::new().unwrap();
        let (base, github) = start_github(&side, public);
        let config = app_config("github", &base, "github-app");
        let h = Harness::start_with(backend, move |c| c.upstream.github.push(config));
        add_key(&h, "github-app", &pem, &base);
        let identity = h.identity("svc:web-deploy");
        let task = h.start_task(&identity, "team-web", &[AUDIENCE]);
        let response = h
            .client()
            .exchange(
                &identity,
                &task.id,
                AUDIENCE,
                Some("repo:acme/web contents:read"),
                None,
            )
            .unwrap();
        let Some(UpstreamCredential::Github {
            token,
            repositories,
            permissions,
            expires_at,
        }) = response.upstream_credential.clone()
        else {
            panic!("no GitHub token: {response:?}");
        };
        assert!(token.starts_with("ghs_"));
        assert_eq!(repositories, vec!["web"]);
        assert_eq!(permissions["contents"], "read");
        assert!(expires_at > h.now() + 3000);
        assert_eq!(
            github.bodies.lock().unwrap().last().unwrap(),
            &json!({"repositories": ["web"], "permissions": {"contents": "read"}}),
            "the request was narrowed"
        );
        let env: BTreeMap<_, _> = response
            .upstream_credential
            .as_ref()
            .unwrap()
            .environment()
            .into_iter()
            .collect();
        assert_eq!(env["GITHUB_TOKEN"], token);
        assert_eq!(env["GH_TOKEN"], token);
        assert_eq!(uses(&base, &token), 200);
        // The store keeps the token only sealed.
        let grants = mayfly_store::Store::open(&h.db)
            .unwrap()
            .task_grants(&task.id)
            .unwrap();
        let sealed = grants[0].sealed.clone().unwrap();
        assert!(!sealed.contains(&token) && !grants[0].handle.contains(&token));

        h.client().end_task(&identity, &task.id).unwrap();
        let mut waited = Duration::ZERO;
        while uses(&base, &token) == 200 && waited < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
            waited += Duration::from_millis(50);
        }
        assert_eq!(uses(&base, &token), 401, "{backend:?}: revoked at GitHub");
        let mut released = false;
        for _ in 0..100 {
            let grants = mayfly_store::Store::open(&h.db)
                .unwrap()
                .task_grants(&task.id)
                .unwrap();
            if grants[0].sealed.is_none() {
                released = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(released, "the sealed token is destroyed once revoked");
        // The proxy never sends the App's key anywhere.
        assert!(mayfly_broker::custody::is_private_key(&pem));
    }
}

#[test]
fn bad_keys_bad_scopes_and_an_unreachable_github_say_what_to_fix() {
    let keys = tempfile::tempdir().unwrap();
    let (pem, public) = app_key(keys.path());
    let side = tokio::runtime::Runtime::new().unwrap();
    let (base, _github) = start_github(&side, public);
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let (ok, broken, down) = (
        app_config("github", &base, "github-app"),
        app_config("broken", &base, "not-a-key"),
        app_config("down", &closed, "github-app"),
    );
    let h = Harness::start_with(Backend::Sqlite, move |c| {
        c.upstream.github.extend([ok, broken, down]);
    });
    add_key(&h, "github-app", &pem, &base);
    let garbage = "-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5\n-----END RSA PRIVATE KEY-----";
    add_key(&h, "not-a-key", garbage, &base);
    let identity = h.identity("svc:ci");
    let audiences = [
        AUDIENCE,
        "urn:mayfly:github:broken",
        "urn:mayfly:github:down",
    ];
    let task = h.start_task(&identity, "team", &audiences);
    let ask = |audience: &str, scope: &str| {
        h.client()
            .exchange(&identity, &task.id, audience, Some(scope), None)
            .unwrap_err()
            .to_string()
    };
    let err = ask(AUDIENCE, "contents:everything");
    assert!(
        err.contains("invalid_scope") && err.contains("PERMISSION:LEVEL"),
        "{err}"
    );
    let err = ask("urn:mayfly:github:broken", "contents:read");
    assert!(
        err.contains("not an RSA private key") && err.contains("mayfly custody rotate not-a-key"),
        "{err}"
    );
    assert!(!err.contains("bm90IGEga2V5"), "{err}");
    let err = ask("urn:mayfly:github:down", "contents:read");
    assert!(
        err.contains("upstream_unavailable") && err.contains("could not be reached"),
        "{err}"
    );
    // GitHub's own refusal is passed on.
    let wrong_installation = {
        let mut c = app_config("github", &base, "github-app");
        c.installation_id = 1;
        c
    };
    drop(h);
    let h = Harness::start_with(Backend::Sqlite, move |c| {
        c.upstream.github.push(wrong_installation)
    });
    add_key(&h, "github-app", &pem, &base);
    let identity = h.identity("svc:ci");
    let task = h.start_task(&identity, "team", &[AUDIENCE]);
    let err = h
        .client()
        .exchange(&identity, &task.id, AUDIENCE, None, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("404") && err.contains("Not Found"), "{err}");
}
