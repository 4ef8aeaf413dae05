//! Verifiers as data: how to ask a provider whether a secret is live, and
//! how to read its answer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The built-in verifiers, embedded in the binary.
const BUILTIN: &str = include_str!("../verifiers.toml");

/// One verifier as written in TOML.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VerifierSpec {
    /// Stable kebab-case id, named by rules (`verify = "github-user"`).
    pub id: String,
    /// The provider asked.
    pub provider: String,
    /// `METHOD URL`; `{secret}` in the URL is percent-encoded.
    pub request: String,
    /// `Name: value` headers; `{secret}` is the secret, `{basic:USER}` is
    /// base64 of `USER:secret`.
    #[serde(default)]
    pub headers: Vec<String>,
    /// A request body (POST).
    #[serde(default)]
    pub body: Option<String>,
    /// Statuses that mean live.
    pub live: Vec<u16>,
    /// Statuses that mean dead.
    pub dead: Vec<u16>,
    /// A JSON pointer to a boolean a live answer must hold as true.
    #[serde(default)]
    pub live_when: Option<String>,
    /// A request signed with the secret and its partner (AWS keys: the
    /// access key id found, the secret access key beside it).
    #[serde(default)]
    pub sign: Option<SigningSpec>,
    /// The provider's documentation of the endpoint.
    pub docs: String,
}

/// How a signed request is signed.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SigningSpec {
    /// `aws-sigv4`.
    pub scheme: String,
    /// The AWS region signed for.
    pub region: String,
    /// The AWS service signed for.
    pub service: String,
    /// The rule whose finding, in the same file, holds the signing key.
    pub secret_rule: String,
}

/// The HTTP methods a verifier may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
    /// DELETE (revokers only: a verifier never changes anything).
    Delete,
}

impl Method {
    /// `GET`, `POST` or `DELETE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// A checked verifier.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// The verifier as written.
    pub spec: VerifierSpec,
    /// Its method.
    pub method: Method,
    /// Its URL template.
    pub url: String,
    /// `scheme://host[:port]` of the URL: what limits and overrides key on.
    pub origin: String,
    /// The host name, as `--validate` announces it.
    pub host: String,
    headers: Vec<(String, String)>,
}

/// A request ready to send: it holds the secret, so its `Debug` does not.
pub struct PreparedRequest {
    /// The method.
    pub method: Method,
    /// The URL (may hold the secret).
    pub url: String,
    /// The headers (may hold the secret).
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<String>,
}

impl std::fmt::Debug for PreparedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedRequest")
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// Why a verifier file or verifier was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    /// Not valid verifier TOML.
    #[error("{origin}: not a valid verifier file: {reason}")]
    Parse {
        /// The file.
        origin: String,
        /// The parser's message.
        reason: String,
    },
    /// A field the engine cannot use.
    #[error("{origin}: verifier {id}: {reason}")]
    Invalid {
        /// The verifier.
        id: String,
        /// The file.
        origin: String,
        /// What to change.
        reason: String,
    },
    /// A rule names a verifier that does not exist.
    #[error(
        "rule {rule} names verifier {verifier:?}, which does not exist; `mayfly rules providers` lists them"
    )]
    UnknownVerifier {
        /// The rule.
        rule: String,
        /// The verifier it names.
        verifier: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifierFile {
    verifiers: Vec<VerifierSpec>,
}

/// `scheme://host[:port]` and the host of an `http(s)` URL.
pub(crate) fn origin_of(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let host = authority
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(authority, |(host, _)| host);
    Some((format!("{scheme}://{authority}"), host.to_owned()))
}

impl Verifier {
    fn compile(spec: VerifierSpec, origin: &str) -> Result<Verifier, VerifierError> {
        let invalid = |reason: &str| VerifierError::Invalid {
            id: spec.id.clone(),
            origin: origin.to_owned(),
            reason: reason.to_owned(),
        };
        let (method, url) = match spec.request.split_once(' ') {
            Some(("GET", url)) => (Method::Get, url.trim().to_owned()),
            Some(("POST", url)) => (Method::Post, url.trim().to_owned()),
            _ => return Err(invalid("request must be \"GET URL\" or \"POST URL\"")),
        };
        let Some((url_origin, host)) = origin_of(&url) else {
            return Err(invalid("the URL must be https://host/... (no user info)"));
        };
        if !url.starts_with("https://") {
            return Err(invalid(
                "a verifier sends a secret: its URL must be https (tests point it elsewhere with --provider-endpoint)",
            ));
        }
        if url_origin.contains("{secret}") {
            return Err(invalid("the secret may not be part of the host"));
        }
        let headers = crate::http::parse_headers(&spec.headers).map_err(invalid)?;
        if let Some(sign) = &spec.sign
            && sign.scheme != "aws-sigv4"
        {
            return Err(invalid("sign.scheme must be aws-sigv4"));
        }
        let uses_secret = spec.sign.is_some()
            || url.contains("{secret}")
            || headers
                .iter()
                .any(|(_, v)| v.contains("{secret}") || v.contains("{basic:"));
        if !uses_secret {
            return Err(invalid(
                "the request never sends the secret ({secret} or {basic:USER})",
            ));
        }
        if spec.live.is_empty() || spec.dead.is_empty() {
            return Err(invalid("list the statuses that mean live and dead"));
        }
        if spec.live.iter().any(|s| spec.dead.contains(s)) {
            return Err(invalid("a status cannot mean both live and dead"));
        }
        if let Some(pointer) = &spec.live_when
            && !pointer.starts_with('/')
        {
            return Err(invalid("live_when is a JSON pointer (/field)"));
        }
        Ok(Verifier {
            method,
            url,
            origin: url_origin,
            host,
            headers,
            spec,
        })
    }

    /// The path of the URL (`/`), as a signature covers it.
    pub fn path(&self) -> &str {
        let rest = self.url.get(self.origin.len()..).unwrap_or_default();
        let path = rest.split(['?', '#']).next().unwrap_or_default();
        if path.is_empty() { "/" } else { path }
    }

    /// The request for `secret`, sent to `base` instead of the verifier's
    /// own origin when an override is given.
    pub fn prepare(&self, secret: &str, base: Option<&str>) -> PreparedRequest {
        let none = BTreeMap::new();
        let mut url = crate::http::fill(&self.url, secret, &none, true);
        if let Some(base) = base
            && let Some(rest) = url.strip_prefix(&self.origin)
        {
            url = format!("{}{rest}", base.trim_end_matches('/'));
        }
        let headers = self
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), crate::http::fill(value, secret, &none, false)))
            .collect();
        PreparedRequest {
            method: self.method,
            url,
            headers,
            body: self.spec.body.clone(),
        }
    }
}

/// The verifiers by id.
#[derive(Debug, Clone, Default)]
pub struct Verifiers {
    by_id: BTreeMap<String, Verifier>,
}

impl Verifiers {
    /// The verifiers embedded in the binary.
    pub fn builtin() -> Result<Verifiers, VerifierError> {
        let mut set = Verifiers::default();
        set.add_toml(BUILTIN, "builtin:verifiers.toml")?;
        Ok(set)
    }

    /// Parses a verifier file and adds its verifiers (a later one with the
    /// same id replaces the earlier).
    pub fn add_toml(&mut self, text: &str, origin: &str) -> Result<(), VerifierError> {
        let file: VerifierFile = toml::from_str(text).map_err(|e| VerifierError::Parse {
            origin: origin.to_owned(),
            reason: e.to_string(),
        })?;
        for spec in file.verifiers {
            let verifier = Verifier::compile(spec, origin)?;
            self.by_id.insert(verifier.spec.id.clone(), verifier);
        }
        Ok(())
    }

    /// The verifier `id`.
    pub fn get(&self, id: &str) -> Option<&Verifier> {
        self.by_id.get(id)
    }

    /// Every verifier, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Verifier> {
        self.by_id.values()
    }

    /// Checks that every rule's `verify` names a verifier here.
    pub fn check_rules(&self, rules: &mayfly_scan::rule::RuleSet) -> Result<(), VerifierError> {
        for rule in rules.rules() {
            if let Some(id) = &rule.spec.verify
                && !self.by_id.contains_key(id)
            {
                return Err(VerifierError::UnknownVerifier {
                    rule: rule.spec.id.clone(),
                    verifier: id.clone(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_verifiers_load_and_every_rule_names_one() {
        let verifiers = Verifiers::builtin().unwrap();
        assert!(verifiers.iter().count() >= 25);
        let providers: std::collections::BTreeSet<&str> =
            verifiers.iter().map(|v| v.spec.provider.as_str()).collect();
        assert!(providers.len() >= 25, "{providers:?}");
        verifiers
            .check_rules(&mayfly_scan::rule::RuleSet::builtin().unwrap())
            .unwrap();
    }

    #[test]
    fn requests_fill_in_the_secret_and_the_override() {
        let verifiers = Verifiers::builtin().unwrap();
        let telegram = verifiers.get("telegram-get-me").unwrap();
        let request = telegram.prepare("123:AB/C", Some("http://127.0.0.1:9/telegram/"));
        assert_eq!(
            request.url,
            "http://127.0.0.1:9/telegram/bot123:AB%2FC/getMe"
        );
        let mailgun = verifiers.get("mailgun-domains").unwrap();
        let request = mailgun.prepare("key-1", None);
        assert_eq!(request.url, "https://api.mailgun.net/v3/domains?limit=1");
        assert_eq!(
            request.headers,
            vec![("Authorization".to_owned(), "Basic YXBpOmtleS0x".to_owned())]
        );
        assert!(!format!("{request:?}").contains("YXBp"));
    }

    #[test]
    fn bad_verifiers_are_refused_with_the_reason() {
        let mut set = Verifiers::default();
        let text = |request: &str, headers: &str| {
            format!(
                "[[verifiers]]\nid = \"x\"\nprovider = \"X\"\nrequest = \"{request}\"\nheaders = [{headers}]\nlive = [200]\ndead = [401]\ndocs = \"d\"\n"
            )
        };
        for (request, headers, reason) in [
            ("DELETE https://x.test/", "\"A: {secret}\"", "GET URL"),
            ("GET http://x.test/", "\"A: {secret}\"", "must be https"),
            ("GET https://x.test/", "\"A: b\"", "never sends the secret"),
            ("GET https://u:p@x.test/", "\"A: {secret}\"", "no user info"),
        ] {
            let err = set.add_toml(&text(request, headers), "v.toml").unwrap_err();
            assert!(err.to_string().contains(reason), "{err}");
        }
    }
}
