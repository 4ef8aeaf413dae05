//! A GitHub App installation token per task, narrowed to the repositories
//! and permissions the task asked for (and policy allowed), revoked at
//! GitHub (`DELETE /installation/token`) when the task's lease ends. The
//! App's private key stays in custody; the broker signs the App's
//! short-lived JWT (RS256, `iss` = the App id, 9 minutes) with it.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::MintError;
use crate::config::GithubUpstreamConfig;
use crate::protocol::UpstreamCredential;
use crate::upstream::Upstream;

/// The permission levels GitHub knows.
const LEVELS: [&str; 3] = ["read", "write", "admin"];

/// Largest GitHub answer read.
const MAX_ANSWER: usize = 1024 * 1024;

/// What a task asks of GitHub: repositories (none: all of the
/// installation's) and permissions (none: all of the App's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TokenRequest {
    /// Repository names (without the owner).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    /// Permission name to level (`contents` = `read`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub permissions: BTreeMap<String, String>,
}

impl TokenRequest {
    /// Reads scopes `repo:NAME` (or `repo:OWNER/NAME`) and
    /// `PERMISSION:LEVEL` (`contents:read`, `issues:write`).
    pub fn from_scopes(upstream: &str, scopes: &[String]) -> Result<TokenRequest, MintError> {
        let mut request = TokenRequest::default();
        for scope in scopes {
            let bad = || MintError::Request {
                upstream: upstream.to_owned(),
                reason: format!(
                    "scope {scope:?} is neither repo:NAME nor PERMISSION:LEVEL (contents:read, issues:write; levels {})",
                    LEVELS.join(", ")
                ),
            };
            let (key, value) = scope.split_once(':').ok_or_else(bad)?;
            if key == "repo" {
                let name = value.rsplit('/').next().unwrap_or(value);
                let ok = !name.is_empty()
                    && name.len() <= 100
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
                if !ok {
                    return Err(bad());
                }
                if !request.repositories.iter().any(|r| r == name) {
                    request.repositories.push(name.to_owned());
                }
            } else {
                let ok = !key.is_empty()
                    && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    && LEVELS.contains(&value);
                if !ok {
                    return Err(bad());
                }
                request.permissions.insert(key.to_owned(), value.to_owned());
            }
        }
        Ok(request)
    }
}

#[derive(Serialize)]
struct AppClaims {
    iat: i64,
    exp: i64,
    iss: String,
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: String,
    expires_at: String,
    #[serde(default)]
    permissions: BTreeMap<String, String>,
    #[serde(default)]
    repositories: Vec<Repository>,
}

#[derive(Deserialize)]
struct Repository {
    name: String,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    message: String,
}

/// One configured GitHub App.
pub struct GithubMinter {
    config: GithubUpstreamConfig,
    http: Upstream,
}

impl std::fmt::Debug for GithubMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GithubMinter({})", self.config.name)
    }
}

impl GithubMinter {
    /// A minter for `config`, calling GitHub through `http`.
    pub fn new(config: &GithubUpstreamConfig, http: Upstream) -> GithubMinter {
        GithubMinter {
            config: config.clone(),
            http,
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &GithubUpstreamConfig {
        &self.config
    }

    fn error(&self, reason: String) -> MintError {
        MintError::Upstream {
            upstream: self.config.name.clone(),
            reason,
        }
    }

    /// The App's JWT, signed with `private_key` (PEM, PKCS #1 or #8).
    pub fn app_jwt(&self, private_key: &[u8], now: i64) -> Result<String, MintError> {
        let bad_key = |reason: String| MintError::Config {
            upstream: self.config.name.clone(),
            reason: format!(
                "the App's private key in custody entry {} is not usable ({reason}); rotate it with the .pem file GitHub gave: mayfly custody rotate {} --value-file APP.pem",
                self.config.private_key_custody, self.config.private_key_custody
            ),
        };
        let pem = std::str::from_utf8(private_key).map_err(|_| bad_key("not PEM text".into()))?;
        let key = {
            use rsa::pkcs1::DecodeRsaPrivateKey as _;
            use rsa::pkcs8::DecodePrivateKey as _;
            rsa::RsaPrivateKey::from_pkcs1_pem(pem)
                .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_pem(pem))
                .map_err(|_| bad_key("not an RSA private key in PEM, PKCS #1 or PKCS #8".into()))?
        };
        let signer = crate::keys::Signer::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(key)));
        // GitHub allows clock drift: issued a minute ago, valid 9 minutes
        // (its limit is 10).
        let claims = AppClaims {
            iat: now - 60,
            exp: now + 540,
            iss: self.config.app_id.to_string(),
        };
        crate::token::sign_jws(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &signer,
        )
        .map_err(|e| bad_key(e.to_string()))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        authorization: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Vec<u8>), MintError> {
        let url = format!("{}{path}", self.config.api_url.trim_end_matches('/'));
        let mut request = Request::builder()
            .method(method)
            .uri(&url)
            .header(header::AUTHORIZATION, authorization)
            .header(header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .header(
                header::USER_AGENT,
                concat!("mayfly/", env!("CARGO_PKG_VERSION")),
            );
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Body::from(body.unwrap_or_default()))
            .map_err(|e| self.error(format!("api_url {url}: {e}")))?;
        let answer = self
            .http
            .send(request)
            .await
            .map_err(|e| self.error(e.to_string()))?;
        let status = answer.status();
        let body = http_body_util::Limited::new(answer.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| self.error(format!("reading GitHub's answer: {e}")))?
            .to_bytes()
            .to_vec();
        Ok((status, body))
    }

    /// GitHub's own words for a refusal (its `message`), never more than a line.
    fn refusal(&self, doing: &str, status: StatusCode, body: &[u8]) -> MintError {
        let message = serde_json::from_slice::<ErrorAnswer>(body)
            .map(|e| e.message.chars().take(300).collect::<String>())
            .unwrap_or_else(|_| "no message".into());
        self.error(format!("{doing}: GitHub answered {status}: {message}"))
    }

    /// Makes an installation token for `request`.
    pub async fn mint(
        &self,
        private_key: &[u8],
        request: &TokenRequest,
        now: i64,
    ) -> Result<(Zeroizing<String>, UpstreamCredential), MintError> {
        let jwt = self.app_jwt(private_key, now)?;
        let body = serde_json::to_vec(request).map_err(|e| self.error(e.to_string()))?;
        let (status, answer) = self
            .call(
                Method::POST,
                &format!(
                    "/app/installations/{}/access_tokens",
                    self.config.installation_id
                ),
                &format!("Bearer {jwt}"),
                Some(body),
            )
            .await?;
        if status != StatusCode::CREATED && status != StatusCode::OK {
            return Err(self.refusal("making an installation token", status, &answer));
        }
        let answer: TokenAnswer = serde_json::from_slice(&answer)
            .map_err(|e| self.error(format!("GitHub's token answer does not parse: {e}")))?;
        let token = Zeroizing::new(answer.token);
        let expires_at = answer
            .expires_at
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_second())
            .map_err(|e| self.error(format!("GitHub's expires_at does not parse: {e}")))?;
        let credential = UpstreamCredential::Github {
            token: token.to_string(),
            expires_at,
            permissions: answer.permissions,
            repositories: answer.repositories.into_iter().map(|r| r.name).collect(),
        };
        Ok((token, credential))
    }

    /// Revokes an installation token. One GitHub no longer accepts
    /// (expired, revoked) counts as revoked.
    pub async fn revoke(&self, token: &str) -> Result<(), MintError> {
        let (status, answer) = self
            .call(
                Method::DELETE,
                "/installation/token",
                &format!("Bearer {token}"),
                None,
            )
            .await?;
        match status {
            StatusCode::NO_CONTENT | StatusCode::OK | StatusCode::UNAUTHORIZED => Ok(()),
            _ => Err(self.refusal("revoking an installation token", status, &answer)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn scopes_name_repositories_and_permissions() {
        let request = TokenRequest::from_scopes(
            "gh",
            &scopes(&["repo:acme/web", "repo:api", "contents:read", "issues:write"]),
        )
        .unwrap();
        assert_eq!(request.repositories, vec!["web", "api"]);
        assert_eq!(request.permissions["contents"], "read");
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            serde_json::json!({"repositories": ["web", "api"], "permissions": {"contents": "read", "issues": "write"}})
        );
        assert_eq!(
            serde_json::to_value(TokenRequest::default()).unwrap(),
            serde_json::json!({})
        );
    }

    #[test]
    fn bad_scopes_say_what_is_expected() {
        for bad in [
            "contents",
            "contents:all",
            "repo:",
            "repo:a b",
            "Contents:read",
        ] {
            let err = TokenRequest::from_scopes("gh", &scopes(&[bad])).unwrap_err();
            assert!(err.to_string().contains("PERMISSION:LEVEL"), "{bad}: {err}");
        }
    }
}
