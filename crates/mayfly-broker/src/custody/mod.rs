//! Custody: the long-lived upstream secrets that must remain (an OpenAI
//! key, a Stripe key), held by the broker and never handed out. Each entry
//! says where its secret may be sent and how it is injected; provider
//! presets fill in both. Values are sealed with the master key (AES-256-GCM,
//! a fresh nonce per version, the entry's name and version bound as
//! associated data) and opened only in memory, for one request.

mod presets;
mod wire;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use self::presets::{PRESETS, ProviderPreset, preset};
pub use self::wire::{
    AddCustody, CustodyUse, CustodyView, RetiringVersion, RotateCustody, SecretValue,
};
use crate::error::BrokerError;
use crate::keys::MasterKey;

/// The audience prefix of credentials that use a custody entry through
/// the proxy: `urn:mayfly:custody:openai`.
pub const AUDIENCE_PREFIX: &str = "urn:mayfly:custody:";

/// The audience of the credentials that use entry `name`.
pub fn audience(name: &str) -> String {
    format!("{AUDIENCE_PREFIX}{name}")
}

/// The entry an audience names, if it is a custody audience.
pub fn entry_of(audience: &str) -> Option<&str> {
    audience.strip_prefix(AUDIENCE_PREFIX)
}

/// How the secret is put into an upstream request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Injection {
    /// A header whose value is `template` with `{secret}` replaced.
    Header {
        /// The header's name.
        name: String,
        /// Its value, around `{secret}`.
        template: String,
    },
    /// A query parameter holding the secret.
    Query {
        /// The parameter's name.
        name: String,
    },
}

impl Injection {
    /// The header that carries the secret, for a header injection.
    pub fn header_name(&self) -> Option<&str> {
        match self {
            Injection::Header { name, .. } => Some(name),
            Injection::Query { .. } => None,
        }
    }

    /// The query parameter that carries the secret, for a query injection.
    pub fn query_name(&self) -> Option<&str> {
        match self {
            Injection::Query { name } => Some(name),
            Injection::Header { .. } => None,
        }
    }

    /// The header value carrying `secret` (its template filled in).
    pub fn header_value(&self, secret: &str) -> Option<String> {
        match self {
            Injection::Header { template, .. } => Some(template.replacen("{secret}", secret, 1)),
            Injection::Query { .. } => None,
        }
    }

    /// What a header value built from this template carries: the token an
    /// SDK put where it would put the key (`Bearer TOKEN` -> `TOKEN`).
    pub fn unwrap_header<'v>(&self, value: &'v str) -> Option<&'v str> {
        let Injection::Header { template, .. } = self else {
            return None;
        };
        let (before, after) = template.split_once("{secret}")?;
        let inner = strip_prefix_ignore_case(value, before)?.strip_suffix(after)?;
        (!inner.is_empty()).then_some(inner)
    }
}

fn strip_prefix_ignore_case<'v>(value: &'v str, prefix: &str) -> Option<&'v str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

/// The injection a provider uses when none is given: its preset's, else
/// `Authorization: Bearer {secret}`.
pub fn default_injection(provider: &str) -> Injection {
    let (name, template) =
        preset(provider).map_or(("authorization", "Bearer {secret}"), |p| p.header);
    Injection::Header {
        name: name.to_owned(),
        template: template.to_owned(),
    }
}

/// Whether a secret is a PEM private key (a GitHub App's `.pem`): kept to
/// sign with, never sent anywhere, so its line breaks are allowed.
pub fn is_private_key(secret: &str) -> bool {
    let text = secret.trim_end();
    text.starts_with("-----BEGIN ")
        && text
            .lines()
            .next()
            .is_some_and(|l| l.ends_with("PRIVATE KEY-----"))
        && text.ends_with("PRIVATE KEY-----")
        && !text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\r')
}

/// Checks a secret's value: 1 to 16 KiB of printable text (a line break
/// in a header value would let it write headers of its own), or a PEM
/// private key.
pub fn check_secret(secret: &str) -> Result<(), BrokerError> {
    if secret.is_empty() || secret.len() > 16 * 1024 {
        return Err(BrokerError::InvalidRequest(
            "the secret must be 1 byte to 16 KiB".into(),
        ));
    }
    if is_private_key(secret) {
        return Ok(());
    }
    if secret.chars().any(char::is_control) {
        return Err(BrokerError::InvalidRequest(
            "the secret holds a control character (a line break?); give the value alone".into(),
        ));
    }
    Ok(())
}

/// What an entry is and how it is used (kept as JSON beside the sealed
/// versions; no secret in it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustodySettings {
    /// Upstream base URLs the secret may be sent to (the first is used).
    pub upstreams: Vec<String>,
    /// How it is injected.
    pub injection: Injection,
    /// Rotation is due after this many days.
    #[serde(default)]
    pub max_age_days: Option<i64>,
    /// Seconds a previous version stays usable after a rotation.
    pub grace_seconds: i64,
}

/// A secret in custody older than its entry's maximum age.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotationDue {
    /// The entry.
    pub name: String,
    /// Its provider.
    pub provider: String,
    /// Who answers for it.
    pub owner: String,
    /// The current version.
    pub version: i64,
    /// Days since that version was made.
    pub age_days: i64,
    /// The entry's maximum age.
    pub max_age_days: i64,
}

/// Whether `entry`'s current version is past its maximum age at `now`
/// (entries without one, or whose settings do not read, are never due).
pub fn rotation_due(entry: &mayfly_store::CustodyEntry, now: i64) -> Option<RotationDue> {
    let settings: CustodySettings = serde_json::from_str(&entry.settings).ok()?;
    let max_age_days = settings.max_age_days?;
    let age_days = (now - entry.rotated_at) / 86_400;
    (age_days >= max_age_days).then(|| RotationDue {
        name: entry.name.clone(),
        provider: entry.provider.clone(),
        owner: entry.owner.clone(),
        version: entry.version,
        age_days,
        max_age_days,
    })
}

/// The associated data that binds a sealed version to its entry.
fn associated_data(name: &str, version: i64) -> Vec<u8> {
    format!("mayfly custody\0{name}\0{version}").into_bytes()
}

/// Seals version `version` of entry `name`.
pub fn seal(
    master: &MasterKey,
    name: &str,
    version: i64,
    secret: &[u8],
) -> Result<String, BrokerError> {
    Ok(master.seal_bytes(&associated_data(name, version), secret)?)
}

/// Opens version `version` of entry `name`; the plaintext is wiped when
/// dropped.
pub fn open(
    master: &MasterKey,
    name: &str,
    version: i64,
    sealed: &str,
) -> Result<Zeroizing<Vec<u8>>, BrokerError> {
    Ok(Zeroizing::new(master.unseal_bytes(
        &associated_data(name, version),
        sealed,
        name,
    )?))
}

/// A value held in custody, opened for a scan to search for its copies.
#[derive(Debug)]
pub struct HeldValue {
    /// The entry's name.
    pub name: String,
    /// The issuing service.
    pub provider: String,
    /// The plaintext (wiped when dropped).
    pub value: Zeroizing<Vec<u8>>,
}

/// Every usable version (current, and previous ones in their grace period)
/// of every entry in custody at `now`, opened with `master`.
pub fn held_values(
    store: &mut mayfly_store::Store,
    master: &MasterKey,
    now: i64,
) -> Result<Vec<HeldValue>, BrokerError> {
    let mut held = Vec::new();
    for entry in store.custody_entries()? {
        let Some((entry, versions)) = store.custody_entry(&entry.name, now)? else {
            continue;
        };
        for version in versions {
            held.push(HeldValue {
                name: entry.name.clone(),
                provider: entry.provider.clone(),
                value: open(master, &entry.name, version.version, &version.sealed)?,
            });
        }
    }
    Ok(held)
}

/// Checks an entry name: letters, digits, `-`, `_` and `.`, 1 to 64.
pub fn check_name(name: &str) -> Result<(), BrokerError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(BrokerError::InvalidRequest(format!(
            "custody entry name {name:?} must be 1 to 64 letters, digits, -, _ or ."
        )))
    }
}

/// Checks an upstream base URL: `https://host[:port][/path]` (or `http://`
/// to a loopback host, for local services and tests).
pub fn check_upstream(url: &str) -> Result<axum::http::Uri, BrokerError> {
    let bad = |why: &str| BrokerError::InvalidRequest(format!("upstream {url:?} {why}"));
    let uri: axum::http::Uri = url.parse().map_err(|_| bad("is not a URL"))?;
    let host = uri.host().ok_or_else(|| bad("has no host"))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if is_loopback(host) => {}
        Some("http") => return Err(bad("must be https (http only to a loopback host)")),
        _ => return Err(bad("must be an https:// URL")),
    }
    if uri.query().is_some() || url.contains('@') {
        return Err(bad("must not carry a query or credentials"));
    }
    Ok(uri)
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Checks an injection: a valid header name (not one the proxy manages)
/// and a template holding `{secret}` once, or a query parameter name.
pub fn check_injection(injection: &Injection) -> Result<(), BrokerError> {
    match injection {
        Injection::Header { name, template } => {
            let lower = name.to_ascii_lowercase();
            if axum::http::HeaderName::from_bytes(lower.as_bytes()).is_err()
                || [
                    "host",
                    "content-length",
                    "transfer-encoding",
                    "connection",
                    "dpop",
                ]
                .contains(&lower.as_str())
            {
                return Err(BrokerError::InvalidRequest(format!(
                    "{name:?} cannot carry the secret; name an authentication header such as authorization or x-api-key"
                )));
            }
            if template.matches("{secret}").count() != 1 || template.chars().any(|c| c.is_control())
            {
                return Err(BrokerError::InvalidRequest(
                    "the header template must hold {secret} once, in printable text".into(),
                ));
            }
        }
        Injection::Query { name } => {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
            {
                return Err(BrokerError::InvalidRequest(format!(
                    "query parameter {name:?} must be letters, digits, - or _"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_versions_open_only_as_themselves() {
        let master =
            MasterKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        let sealed = seal(&master, "openai", 2, b"sk-real").unwrap();
        assert!(!sealed.contains("sk-real"));
        assert_eq!(&*open(&master, "openai", 2, &sealed).unwrap(), b"sk-real");
        assert!(
            open(&master, "openai", 1, &sealed).is_err(),
            "another version"
        );
        assert!(
            open(&master, "stripe", 2, &sealed).is_err(),
            "another entry"
        );
        let other = MasterKey::from_base64("AQECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        assert!(
            open(&other, "openai", 2, &sealed).is_err(),
            "another master key"
        );
    }

    #[test]
    fn rotation_is_due_past_the_maximum_age() {
        let settings = CustodySettings {
            upstreams: vec!["https://api.openai.com".into()],
            injection: default_injection("openai"),
            max_age_days: Some(90),
            grace_seconds: 60,
        };
        let entry =
            |rotated_days_ago: i64, settings: &CustodySettings| mayfly_store::CustodyEntry {
                name: "openai".into(),
                provider: "OpenAI".into(),
                owner: "team-ml".into(),
                settings: serde_json::to_string(settings).unwrap(),
                fingerprint: None,
                created_at: 0,
                rotated_at: 1_000_000_000 - rotated_days_ago * 86_400,
                version: 3,
            };
        let now = 1_000_000_000;
        assert_eq!(rotation_due(&entry(89, &settings), now), None);
        let due = rotation_due(&entry(120, &settings), now).unwrap();
        assert_eq!((due.age_days, due.max_age_days, due.version), (120, 90, 3));
        let unlimited = CustodySettings {
            max_age_days: None,
            ..settings
        };
        assert_eq!(rotation_due(&entry(1000, &unlimited), now), None);
    }

    #[test]
    fn tokens_are_unwrapped_from_where_the_sdk_puts_the_key() {
        let openai = default_injection("openai");
        assert_eq!(openai.unwrap_header("Bearer tok"), Some("tok"));
        assert_eq!(openai.unwrap_header("bearer tok"), Some("tok"));
        assert_eq!(openai.unwrap_header("Basic tok"), None);
        assert_eq!(openai.header_value("sk-1").as_deref(), Some("Bearer sk-1"));
        let anthropic = default_injection("anthropic");
        assert_eq!(anthropic.unwrap_header("tok"), Some("tok"));
        assert_eq!(anthropic.header_name(), Some("x-api-key"));
    }

    #[test]
    fn only_pem_private_keys_may_hold_line_breaks() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\n";
        assert!(is_private_key(pem));
        check_secret(pem).unwrap();
        for not_a_key in [
            "sk-abc\nX-Injected: 1",
            "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----",
            "-----BEGIN PRIVATE KEY-----\nMII\u{7}\n-----END PRIVATE KEY-----",
        ] {
            assert!(!is_private_key(not_a_key), "{not_a_key:?}");
            assert!(check_secret(not_a_key).is_err(), "{not_a_key:?}");
        }
    }

    #[test]
    fn upstreams_names_and_injections_are_checked() {
        assert!(check_upstream("https://api.openai.com").is_ok());
        assert!(check_upstream("http://127.0.0.1:9000/v1").is_ok());
        assert!(check_upstream("http://api.openai.com").is_err());
        assert!(check_upstream("https://user:pw@api.test").is_err());
        assert!(check_upstream("ftp://x").is_err());
        assert!(check_name("openai-prod").is_ok());
        assert!(check_name("../etc").is_err());
        assert!(
            check_injection(&Injection::Header {
                name: "x-api-key".into(),
                template: "{secret}".into()
            })
            .is_ok()
        );
        assert!(
            check_injection(&Injection::Header {
                name: "host".into(),
                template: "{secret}".into()
            })
            .is_err()
        );
        assert!(
            check_injection(&Injection::Header {
                name: "authorization".into(),
                template: "Bearer".into()
            })
            .is_err()
        );
        assert_eq!(preset("OpenAI").unwrap().id, "openai");
        assert_eq!(preset("hugging face").unwrap().id, "huggingface");
    }
}
