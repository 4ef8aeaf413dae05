//! The admin API's custody bodies: what `mayfly custody add` and `rotate`
//! send (the only place a secret travels, in a request body) and what the
//! API shows of an entry (never its value).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use super::Injection;

/// A secret's value in transit: wiped when dropped, never printed.
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    /// Wraps a value.
    pub fn new(value: String) -> SecretValue {
        SecretValue(Zeroizing::new(value))
    }

    /// The value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(***)")
    }
}

impl Serialize for SecretValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(SecretValue::new)
    }
}

/// `POST /v1/admin/custody`: take a secret into custody.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddCustody {
    /// The entry's name (`openai`, `stripe-billing`).
    pub name: String,
    /// A preset (`openai`, `anthropic`, ...) or any provider name; a
    /// provider without a preset needs `upstreams`.
    pub provider: String,
    /// Who answers for the secret.
    pub owner: String,
    /// Upstream base URLs it may be sent to [default: the preset's].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<String>,
    /// How it is injected [default: the preset's, else
    /// `Authorization: Bearer {secret}`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injection: Option<Injection>,
    /// Rotation is due after this many days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_days: Option<i64>,
    /// Seconds a previous version stays usable after a rotation [default:
    /// `proxy.rotation_grace_seconds`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_seconds: Option<i64>,
    /// The inventory fingerprint of the copy it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The secret.
    pub secret: SecretValue,
}

/// `POST /v1/admin/custody/{name}/rotate`: a new version.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateCustody {
    /// The new value.
    pub secret: SecretValue,
}

/// A previous version still usable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiringVersion {
    /// Its number.
    pub version: i64,
    /// When it is destroyed.
    pub retires_at: i64,
}

/// What the API shows of an entry: everything but the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustodyView {
    /// Its name.
    pub name: String,
    /// The provider.
    pub provider: String,
    /// Who answers for it.
    pub owner: String,
    /// Where it may be sent.
    pub upstreams: Vec<String>,
    /// How it is injected.
    pub injection: Injection,
    /// The audience of credentials that use it.
    pub audience: String,
    /// Rotation is due after this many days.
    pub max_age_days: Option<i64>,
    /// Seconds a previous version stays usable after a rotation.
    pub grace_seconds: i64,
    /// The inventory fingerprint of the copy it came from.
    pub fingerprint: Option<String>,
    /// When it entered custody.
    pub created_at: i64,
    /// When its current version was made.
    pub rotated_at: i64,
    /// The current version.
    pub version: i64,
    /// Previous versions still usable.
    pub previous_versions: Vec<RetiringVersion>,
    /// Whether its current version is older than `max_age_days`.
    pub rotation_due: bool,
}

/// `GET /v1/custody/{name}`: what a workload needs to use an entry
/// through the proxy (no owner, no value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustodyUse {
    /// The entry.
    pub name: String,
    /// Its provider (the preset whose SDK variables `mayfly run --inject`
    /// sets).
    pub provider: String,
    /// Where a key goes in a request (where the proxy looks for a token).
    pub injection: Injection,
    /// The audience to start a task for.
    pub audience: String,
    /// The upstream base URLs (the hosts `mayfly run --intercept`
    /// intercepts).
    pub upstreams: Vec<String>,
}
