//! What validation and revocation share: base URL overrides, the HTTP
//! agent, sending a prepared request, and what a failure may say.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use sha2::{Digest, Sha512};

use crate::verifier::{Method, PreparedRequest, origin_of};

/// Base URL overrides, by the origin they replace.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    by_origin: BTreeMap<String, String>,
}

/// An override that is not `https://origin=URL`.
#[derive(Debug, thiserror::Error)]
#[error(
    "bad endpoint override {given:?}: {reason} (expected ORIGIN=URL, e.g. https://api.github.com=http://127.0.0.1:8080/github)"
)]
pub struct EndpointError {
    /// What was given.
    pub given: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl Endpoints {
    /// Adds `ORIGIN=URL`.
    pub fn add(&mut self, text: &str) -> Result<(), EndpointError> {
        let err = |reason| EndpointError {
            given: text.to_owned(),
            reason,
        };
        let (from, to) = text.split_once('=').ok_or_else(|| err("no ="))?;
        let (origin, _) = origin_of(from.trim()).ok_or_else(|| err("the origin is not a URL"))?;
        if origin_of(to.trim()).is_none() {
            return Err(err("the replacement is not an http(s) URL"));
        }
        self.by_origin.insert(origin, to.trim().to_owned());
        Ok(())
    }

    pub(crate) fn for_origin(&self, origin: &str) -> Option<&str> {
        self.by_origin.get(origin).map(String::as_str)
    }
}

/// The agent every provider request goes through: no redirects (a
/// redirect could carry the secret elsewhere), statuses as values.
pub(crate) fn agent(timeout: Duration, purpose: &str) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(format!("mayfly/{} ({purpose})", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

pub(crate) fn send(
    agent: &ureq::Agent,
    request: &PreparedRequest,
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    match request.method {
        Method::Get => {
            let mut builder = agent.get(&request.url);
            for (name, value) in &request.headers {
                builder = builder.header(name.as_str(), value.as_str());
            }
            builder.call()
        }
        Method::Delete => {
            let mut builder = agent.delete(&request.url);
            for (name, value) in &request.headers {
                builder = builder.header(name.as_str(), value.as_str());
            }
            builder.call()
        }
        Method::Post => {
            let mut builder = agent.post(&request.url);
            for (name, value) in &request.headers {
                builder = builder.header(name.as_str(), value.as_str());
            }
            match &request.body {
                Some(body) => builder.send(body.as_str()),
                None => builder.send_empty(),
            }
        }
    }
}

/// `Name: value` headers, checked: what is wrong with them otherwise.
pub(crate) fn parse_headers(headers: &[String]) -> Result<Vec<(String, String)>, &'static str> {
    let mut parsed = Vec::with_capacity(headers.len());
    for header in headers {
        let Some((name, value)) = header.split_once(':') else {
            return Err("each header is \"Name: value\"");
        };
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err("a header name is letters, digits and -");
        }
        parsed.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(parsed)
}

/// The seconds a 429 answer asks to wait (`Retry-After`), if it says.
pub(crate) fn retry_after(response: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    response
        .headers()
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The body of an answer as text, at most 256 KiB (what JSON pointers are
/// read from; never kept).
pub(crate) fn read_body(response: &mut ureq::http::Response<ureq::Body>) -> String {
    response
        .body_mut()
        .with_config()
        .limit(256 * 1024)
        .read_to_string()
        .unwrap_or_default()
}

/// 250 ms, 500 ms, 1 s...
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << attempt.min(6)))
}

/// What went wrong, in words that cannot hold the request (its URL may
/// carry the secret).
pub(crate) fn transport_reason(error: &ureq::Error) -> &'static str {
    match error {
        ureq::Error::Timeout(_) => "timed out",
        ureq::Error::HostNotFound => "host not found",
        ureq::Error::ConnectionFailed => "connection failed",
        ureq::Error::Io(_) => "connection failed",
        ureq::Error::Tls(_) => "TLS failed",
        _ => "request failed",
    }
}

/// What a secret placed in a URL has encoded: everything but the
/// unreserved characters of RFC 3986, and `:` (Telegram's `bot123:ABC`).
const IN_URL: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':');

/// A template with its placeholders filled in: `{secret}`,
/// `{secret_sha512}`, `{secret_part:N}`, `{basic:USER}` and captured
/// `{name}`s; percent-encoded for a URL. Unknown placeholders stay.
pub(crate) fn fill(
    template: &str,
    secret: &str,
    captures: &BTreeMap<String, String>,
    in_url: bool,
) -> String {
    let encode = |value: &str| {
        if in_url {
            percent_encoding::utf8_percent_encode(value, IN_URL).to_string()
        } else {
            value.to_owned()
        }
    };
    let mut out = String::with_capacity(template.len() + secret.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let (before, after) = rest.split_at(open);
        out.push_str(before);
        let Some(close) = after.find('}') else {
            out.push_str(after);
            return out;
        };
        let name = after.get(1..close).unwrap_or_default();
        let is_placeholder = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':' || b == b'-');
        if !is_placeholder {
            // A literal brace (JSON in a body): keep it, look further on.
            out.push('{');
            rest = after.get(1..).unwrap_or_default();
            continue;
        }
        let value = match name.split_once(':') {
            None if name == "secret" => Some(encode(secret)),
            None if name == "secret_sha512" => Some(
                Sha512::digest(secret.as_bytes())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
            ),
            None => captures.get(name).map(|v| encode(v)),
            Some(("secret_part", n)) => n
                .parse::<usize>()
                .ok()
                .and_then(|n| secret.split('.').nth(n))
                .map(encode),
            Some(("basic", user)) => {
                Some(base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}")))
            }
            Some(_) => None,
        };
        match value {
            Some(value) => out.push_str(&value),
            None => out.push_str(after.get(..=close).unwrap_or_default()),
        }
        rest = after.get(close + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_fill_in() {
        let captures = BTreeMap::from([("id".to_owned(), "a b".to_owned())]);
        assert_eq!(
            fill("/x/{id}/{secret}", "s/1", &captures, true),
            "/x/a%20b/s%2F1"
        );
        assert_eq!(
            fill("{basic:api}", "key-1", &captures, false),
            "YXBpOmtleS0x"
        );
        assert_eq!(
            fill("{secret_part:1}", "SG.abc.def", &captures, false),
            "abc"
        );
        assert_eq!(fill("{secret_sha512}", "abc", &captures, false).len(), 128);
        assert_eq!(
            fill("{\"a\":1} {nope", "s", &captures, false),
            "{\"a\":1} {nope"
        );
    }
}
