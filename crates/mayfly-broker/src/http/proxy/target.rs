//! Where a proxied request goes and what crosses: the path below the
//! entry (refused if it could climb out of the upstream's base), the
//! upstream URL, the token the caller presents, the headers that may pass,
//! and redirects (kept on the entry's upstreams or refused).

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};

use super::super::ApiError;
use crate::custody::Injection;
use crate::service::UsePermit;
#[cfg(test)]
use crate::upstream::forwardable;

pub(super) fn bad_request(why: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", why)
}

/// The path below `/proxy/{entry}`, as sent (still percent-encoded), if
/// it is safe to append to the upstream's base path.
pub(super) fn path_below(uri: &Uri, entry: &str) -> Result<String, ApiError> {
    let rest = uri
        .path()
        .strip_prefix("/proxy/")
        .and_then(|r| r.strip_prefix(entry))
        .filter(|r| r.is_empty() || r.starts_with('/'))
        .ok_or_else(|| bad_request("the path must be /proxy/ENTRY/..."))?;
    let lower = rest.to_ascii_lowercase();
    if ["%0d", "%0a", "%00"].iter().any(|c| lower.contains(c)) {
        return Err(bad_request(
            "the path holds an encoded line break or NUL; refused",
        ));
    }
    let climbs = lower.split('/').any(|segment| {
        let decoded = segment.replace("%2e", ".");
        decoded == "." || decoded == ".."
    });
    if climbs || lower.contains("%2f") || lower.contains("%5c") || rest.contains('\\') {
        return Err(bad_request(
            "the path holds a . or .. segment or an encoded slash; refused so it stays below the upstream's base",
        ));
    }
    Ok(rest.to_owned())
}

/// The token the caller presents, and whether with the `DPoP` scheme:
/// `Authorization: Bearer|DPoP`, else where the entry's SDK puts its key
/// (its header template, or its query parameter).
pub(super) fn presented_token(
    headers: &HeaderMap,
    query: Option<&str>,
    injection: Option<&Injection>,
) -> Option<(String, bool)> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some((scheme, token)) = value.trim().split_once(' ')
    {
        let token = token.trim().to_owned();
        if scheme.eq_ignore_ascii_case("dpop") {
            return Some((token, true));
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some((token, false));
        }
    }
    match injection? {
        injection @ Injection::Header { name, .. } => {
            let value = headers.get(name.as_str())?.to_str().ok()?;
            injection
                .unwrap_header(value)
                .map(|token| (token.to_owned(), false))
        }
        Injection::Query { name } => form_urlencoded::parse(query?.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, token)| (token.into_owned(), false)),
    }
}

/// The upstream URL: base, path below the entry, and the query (with the
/// secret put in, and the caller's token taken out, for a query injection).
pub(super) fn upstream_uri(
    permit: &UsePermit,
    rest: &str,
    query: Option<&str>,
) -> Result<Uri, ApiError> {
    let base = permit.upstream();
    let mut target = format!("{}{rest}", base.path().trim_end_matches('/'));
    if target.is_empty() {
        target.push('/');
    }
    let query = match permit.injection().query_name() {
        Some(name) => {
            let mut out = form_urlencoded::Serializer::new(String::new());
            for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
                if key != name {
                    out.append_pair(&key, &value);
                }
            }
            out.append_pair(name, permit.secret());
            Some(out.finish())
        }
        None => query.map(str::to_owned),
    };
    if let Some(query) = query {
        target.push('?');
        target.push_str(&query);
    }
    let authority = base
        .authority()
        .ok_or_else(|| bad_request("the entry's upstream has no host"))?;
    Uri::builder()
        .scheme(base.scheme_str().unwrap_or("https"))
        .authority(authority.as_str())
        .path_and_query(target)
        .build()
        .map_err(|_| bad_request("the path and query do not make a URL"))
}

/// Drops every header whose value holds `secret` (an upstream that echoes
/// the key does not reach the caller with it).
pub(super) fn drop_echoes(headers: &mut HeaderMap, secret: &[u8]) {
    let echoed: Vec<_> = headers
        .iter()
        .filter(|(_, value)| {
            value
                .as_bytes()
                .windows(secret.len().max(1))
                .any(|w| w == secret)
        })
        .map(|(name, _)| name.clone())
        .collect();
    for name in echoed {
        headers.remove(name);
    }
}

/// A redirect's `Location` as the caller gets it: one on an entry's
/// upstream points back through the proxy (`proxy_base` is
/// `{public_url}/proxy/{entry}`), a relative one stays; `None` when it
/// leads to another host (refused: not followed, not passed on).
pub(super) fn redirect_location(
    location: &HeaderValue,
    permit: &UsePermit,
    proxy_base: &str,
) -> Option<HeaderValue> {
    let text = location.to_str().ok()?;
    if text.starts_with('/') && !text.starts_with("//") {
        return Some(location.clone());
    }
    for upstream in permit.upstreams() {
        let base = upstream.trim_end_matches('/');
        if let Some(rest) = text.strip_prefix(base)
            && (rest.is_empty() || rest.starts_with(['/', '?']))
        {
            return HeaderValue::from_str(&format!("{proxy_base}{rest}")).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_below_the_base() {
        let ok = |p: &str| path_below(&p.parse().unwrap(), "openai").is_ok();
        assert!(ok("/proxy/openai/v1/chat/completions"));
        assert!(ok("/proxy/openai"));
        assert!(!ok("/proxy/openai/../admin"));
        assert!(!ok("/proxy/openai/%2e%2E/admin"));
        assert!(!ok("/proxy/openai/v1/%2Fetc"));
        assert!(!ok("/proxy/openai/v1%0d%0aX-Injected:%201"));
        assert!(!ok("/proxy/openaiX/v1"));
    }

    #[test]
    fn tokens_are_found_where_the_sdk_puts_the_key() {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_static("tok-1"));
        let anthropic = Injection::Header {
            name: "x-api-key".into(),
            template: "{secret}".into(),
        };
        assert_eq!(
            presented_token(&headers, None, Some(&anthropic)),
            Some(("tok-1".into(), false))
        );
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("DPoP tok-2"),
        );
        assert_eq!(
            presented_token(&headers, None, Some(&anthropic)),
            Some(("tok-2".into(), true))
        );
        let query = Injection::Query { name: "key".into() };
        assert_eq!(
            presented_token(&HeaderMap::new(), Some("a=1&key=tok-3"), Some(&query)),
            Some(("tok-3".into(), false))
        );
    }

    #[test]
    fn connection_headers_and_echoes_do_not_cross() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-private"),
        );
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("x-public", HeaderValue::from_static("sk-real-key here"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        let mut out = forwardable(&headers, &[]);
        assert_eq!(out.len(), 1);
        drop_echoes(&mut out, b"sk-real-key");
        assert!(out.is_empty());
    }
}
