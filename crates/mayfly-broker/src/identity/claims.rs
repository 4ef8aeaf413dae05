//! Reading an identity token's claims: the unverified payload (only to
//! find the issuer), times, audience, and the mapping of claims to a
//! workload id, tenant and tags.

use serde_json::{Map, Value};

use super::{IdentityError, Workload};
use crate::b64;
use crate::clock::Timestamp;
use crate::config::{Issuer, Preset};

/// Reads a claim, with dots walking into nested objects
/// (`kubernetes.io.namespace` reads `{"kubernetes.io": {"namespace": ..}}`).
fn claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    // Try every split point: keys may contain dots themselves.
    let bytes = path.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'.' {
            let (head, tail) = (path.get(..i)?, path.get(i + 1..)?);
            if let Some(Value::Object(inner)) = claims.get(head)
                && let Some(v) = claim(inner, tail)
            {
                return Some(v);
            }
        }
    }
    None
}

fn claim_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn time_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<Timestamp>, IdentityError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| IdentityError::Malformed(format!("claim {name} is not a time"))),
        Some(_) => Err(IdentityError::Malformed(format!(
            "claim {name} is not a number"
        ))),
    }
}

/// Fills `{claim}` placeholders of a template.
fn render(
    template: &str,
    claims: &Map<String, Value>,
    issuer: &str,
) -> Result<String, IdentityError> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(rest.get(..open).unwrap_or_default());
        let after = rest.get(open + 1..).unwrap_or_default();
        let Some(close) = after.find('}') else {
            out.push_str(rest.get(open..).unwrap_or_default());
            return Ok(out);
        };
        let name = after.get(..close).unwrap_or_default();
        let value = claim(claims, name)
            .and_then(claim_text)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| IdentityError::MissingClaim {
                issuer: issuer.to_owned(),
                claim: name.to_owned(),
            })?;
        out.push_str(&value);
        rest = after.get(close + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    Ok(out)
}

/// Checks `exp` (required), `nbf` and `iat` against `now`, with the
/// issuer's leeway.
pub(super) fn check_times(
    claims: &Map<String, Value>,
    issuer: &Issuer,
    now: Timestamp,
) -> Result<(), IdentityError> {
    let leeway = issuer.leeway;
    let exp = time_claim(claims, "exp")?.ok_or(IdentityError::NoExpiry)?;
    if now >= exp + leeway {
        return Err(IdentityError::Expired { exp, now });
    }
    for name in ["nbf", "iat"] {
        if let Some(at) = time_claim(claims, name)?
            && at > now + leeway
        {
            return Err(IdentityError::NotYetValid {
                claim: if name == "nbf" { "nbf" } else { "iat" },
                at,
                now,
            });
        }
    }
    Ok(())
}

/// The payload before verification: only to find the issuer.
pub(super) fn unverified_claims(token: &str) -> Result<Map<String, Value>, IdentityError> {
    let mut parts = token.split('.');
    let payload = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(payload), Some(_), None) => payload,
        _ => {
            return Err(IdentityError::Malformed(
                "a JWT has three dot-separated parts".into(),
            ));
        }
    };
    let bytes = b64::decode(payload)
        .ok_or_else(|| IdentityError::Malformed("the payload is not base64url".into()))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| IdentityError::Malformed("the payload is not a JSON object".into()))
}

pub(super) fn check_audience(
    claims: &Map<String, Value>,
    issuer: &Issuer,
) -> Result<(), IdentityError> {
    let found: Vec<&str> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if found
        .iter()
        .any(|a| issuer.audiences.iter().any(|e| e == a))
    {
        Ok(())
    } else {
        Err(IdentityError::Audience {
            found: if found.is_empty() {
                "(none)".into()
            } else {
                found.join(", ")
            },
            expected: issuer.audiences.join(", "),
        })
    }
}

pub(super) fn map_workload(
    claims: &Map<String, Value>,
    issuer: &Issuer,
) -> Result<Workload, IdentityError> {
    if issuer.preset == Preset::Spiffe {
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let domain = issuer.trust_domain.clone().unwrap_or_default();
        let prefix = format!("spiffe://{domain}/");
        if !sub.starts_with(&prefix) || sub.len() == prefix.len() {
            return Err(IdentityError::Spiffe {
                sub: sub.to_owned(),
                domain,
            });
        }
    }
    let id = render(&issuer.workload, claims, &issuer.name)?;
    if let Some(owner) = Preset::owning_shape(&id)
        && owner != issuer.preset
    {
        return Err(IdentityError::ForeignShape {
            issuer: issuer.name.clone(),
            id,
            preset: owner.as_str(),
        });
    }
    let tenant =
        match &issuer.tenant_claim {
            Some(name) => claim(claims, name).and_then(claim_text).ok_or_else(|| {
                IdentityError::MissingClaim {
                    issuer: issuer.name.clone(),
                    claim: name.clone(),
                }
            })?,
            None => issuer.tenant.clone(),
        };
    let tags = issuer
        .tag_claims
        .iter()
        .filter_map(|name| Some((name.clone(), claim(claims, name).and_then(claim_text)?)))
        .collect();
    let expires_at = time_claim(claims, "exp")?.ok_or(IdentityError::NoExpiry)?;
    Ok(Workload {
        id,
        issuer: issuer.name.clone(),
        kind: issuer.preset.as_str(),
        tenant,
        tags,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn templates_read_nested_claims() {
        let c = claims(
            r#"{"kubernetes.io": {"namespace": "billing", "serviceaccount": {"name": "api"}}}"#,
        );
        assert_eq!(
            render(
                "system:serviceaccount:{kubernetes.io.namespace}:{kubernetes.io.serviceaccount.name}",
                &c,
                "k8s"
            )
            .unwrap(),
            "system:serviceaccount:billing:api"
        );
    }

    #[test]
    fn missing_claims_are_named() {
        let err = render("repo:{repository}", &claims("{}"), "gha").unwrap_err();
        assert!(err.to_string().contains("repository"), "{err}");
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for token in ["", "a.b", "a.b.c.d", "x.!!!.y"] {
            assert!(unverified_claims(token).is_err(), "{token}");
        }
    }
}
