//! `[[issuer]]`: trusted sources of workload identity tokens, with presets
//! for GitHub Actions, Kubernetes and SPIFFE, checked into [`Issuer`].

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// One `[[issuer]]`: a trusted source of workload identity tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Short name: the `client_id` of tokens issued to its workloads.
    pub name: String,
    /// The exact `iss` value [default from the preset].
    #[serde(default)]
    pub issuer: Option<String>,
    /// `github-actions`, `kubernetes`, `spiffe` or `generic` (the default).
    #[serde(default)]
    pub preset: Option<String>,
    /// Accepted `aud` values (at least one must match).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Accepted algorithms: RS256, ES256, EdDSA [default from the preset, else all three].
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// JWKS from a file (SPIFFE trust bundles, tests, air-gapped set-ups).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// JWKS from this URL.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Template of the workload id, `{claim}` replaced by claim values
    /// (nested claims with dots) [default from the preset, else `{sub}`].
    #[serde(default)]
    pub workload: Option<String>,
    /// Claim holding the tenant, or a fixed tenant with `tenant`.
    #[serde(default)]
    pub tenant_claim: Option<String>,
    /// Fixed tenant of every workload of this issuer [default: the issuer name].
    #[serde(default)]
    pub tenant: Option<String>,
    /// Claims passed to policy as workload tags (beyond the preset's).
    #[serde(default)]
    pub claims: Vec<String>,
    /// SPIFFE trust domain: `sub` must be a SPIFFE ID in it.
    #[serde(default)]
    pub trust_domain: Option<String>,
    /// Allowed clock difference, in seconds (at most 300).
    #[serde(default = "default_leeway")]
    pub leeway_seconds: i64,
    /// The JWKS is fetched again for an unknown `kid` at most this often.
    #[serde(default = "default_refresh")]
    pub min_refresh_seconds: i64,
}

fn default_leeway() -> i64 {
    30
}

fn default_refresh() -> i64 {
    30
}

/// A preset of known workload identity issuers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Any OIDC issuer; workload id from `workload` (default `{sub}`).
    Generic,
    /// GitHub Actions' OIDC tokens.
    GithubActions,
    /// Kubernetes service-account tokens.
    Kubernetes,
    /// SPIFFE JWT-SVIDs.
    Spiffe,
    /// Mayfly's own local attestation (`mayfly serve`'s unix socket).
    Local,
}

impl Preset {
    pub(crate) fn parse(name: Option<&str>) -> Result<Preset, ConfigError> {
        Ok(match name.unwrap_or("generic") {
            "generic" => Preset::Generic,
            "github-actions" => Preset::GithubActions,
            "kubernetes" => Preset::Kubernetes,
            "spiffe" => Preset::Spiffe,
            "local" => Preset::Local,
            other => {
                return Err(ConfigError::Invalid(format!(
                    "unknown issuer preset {other:?}: use github-actions, kubernetes, spiffe, local or generic"
                )));
            }
        })
    }

    /// The preset's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Generic => "generic",
            Preset::GithubActions => "github-actions",
            Preset::Kubernetes => "kubernetes",
            Preset::Spiffe => "spiffe",
            Preset::Local => "local",
        }
    }

    /// The preset whose workload ids look like `id`, if any: SPIFFE IDs,
    /// GitHub Actions' `repo:` ids, Kubernetes service accounts and
    /// locally attested processes (`local:uid:...`).
    pub fn owning_shape(id: &str) -> Option<Preset> {
        if id.starts_with("spiffe://") {
            Some(Preset::Spiffe)
        } else if id.starts_with("local:uid:") {
            Some(Preset::Local)
        } else if id.starts_with("repo:") {
            Some(Preset::GithubActions)
        } else if id.starts_with("system:serviceaccount:") {
            Some(Preset::Kubernetes)
        } else {
            None
        }
    }

    /// The workload id template when the config gives none.
    pub fn default_workload(self) -> &'static str {
        match self {
            Preset::Generic | Preset::Spiffe | Preset::Local => "{sub}",
            Preset::GithubActions => "repo:{repository}:ref:{ref}",
            Preset::Kubernetes => {
                "system:serviceaccount:{kubernetes.io.namespace}:{kubernetes.io.serviceaccount.name}"
            }
        }
    }

    /// Claims passed to policy as workload tags.
    pub fn tag_claims(self) -> &'static [&'static str] {
        match self {
            // Local attestation's issuers name their fact claims
            // (`mayfly_attest::FACT_CLAIMS`) in their config.
            Preset::Generic | Preset::Spiffe | Preset::Local => &["sub"],
            Preset::GithubActions => &[
                "sub",
                "repository",
                "repository_owner",
                "ref",
                "ref_type",
                "workflow",
                "job_workflow_ref",
                "run_id",
                "actor",
                "event_name",
                "environment",
                "sha",
            ],
            Preset::Kubernetes => &[
                "sub",
                "kubernetes.io.namespace",
                "kubernetes.io.serviceaccount.name",
                "kubernetes.io.pod.name",
            ],
        }
    }
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A local file.
    File(PathBuf),
    /// A URL.
    Uri(String),
    /// OIDC discovery: `{issuer}/.well-known/openid-configuration`.
    Discovery,
}

/// A checked `[[issuer]]`.
#[derive(Debug, Clone)]
pub struct Issuer {
    /// Short name.
    pub name: String,
    /// Exact `iss`.
    pub issuer: String,
    /// The preset.
    pub preset: Preset,
    /// Accepted audiences.
    pub audiences: Vec<String>,
    /// Accepted algorithms.
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// Where the keys come from.
    pub jwks: JwksSource,
    /// Workload id template.
    pub workload: String,
    /// Tenant claim.
    pub tenant_claim: Option<String>,
    /// Fixed tenant.
    pub tenant: String,
    /// Claims passed to policy as tags.
    pub tag_claims: Vec<String>,
    /// SPIFFE trust domain.
    pub trust_domain: Option<String>,
    /// Clock leeway.
    pub leeway: i64,
    /// Minimum time between JWKS fetches.
    pub min_refresh: i64,
}

/// The algorithms a workload token may use. HMAC and `none` are never
/// accepted: an issuer's public key must not double as a shared secret.
fn parse_algorithm(name: &str, issuer: &str) -> Result<jsonwebtoken::Algorithm, ConfigError> {
    match name {
        "RS256" => Ok(jsonwebtoken::Algorithm::RS256),
        "ES256" => Ok(jsonwebtoken::Algorithm::ES256),
        "EdDSA" => Ok(jsonwebtoken::Algorithm::EdDSA),
        other => Err(ConfigError::Invalid(format!(
            "issuer {issuer}: algorithm {other:?} is not accepted; use RS256, ES256 or EdDSA"
        ))),
    }
}

impl IssuerConfig {
    /// Checks the entry and fills in the preset's defaults.
    pub fn check(&self) -> Result<Issuer, ConfigError> {
        let name = &self.name;
        if name.is_empty() {
            return Err(ConfigError::Invalid(
                "an [[issuer]] has an empty name".into(),
            ));
        }
        let preset = Preset::parse(self.preset.as_deref())?;
        let issuer = match (&self.issuer, preset) {
            (Some(iss), _) => iss.clone(),
            (None, Preset::GithubActions) => "https://token.actions.githubusercontent.com".into(),
            (None, _) => {
                return Err(ConfigError::Invalid(format!(
                    "issuer {name}: set `issuer` to the exact `iss` of its tokens"
                )));
            }
        };
        if self.audiences.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "issuer {name}: set `audiences` (the `aud` values its tokens must carry for Mayfly)"
            )));
        }
        let algorithms = if self.algorithms.is_empty() {
            match preset {
                Preset::GithubActions | Preset::Kubernetes => vec![jsonwebtoken::Algorithm::RS256],
                _ => vec![
                    jsonwebtoken::Algorithm::RS256,
                    jsonwebtoken::Algorithm::ES256,
                    jsonwebtoken::Algorithm::EdDSA,
                ],
            }
        } else {
            self.algorithms
                .iter()
                .map(|a| parse_algorithm(a, name))
                .collect::<Result<_, _>>()?
        };
        let jwks = match (&self.jwks_file, &self.jwks_uri) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(format!(
                    "issuer {name}: set jwks_file or jwks_uri, not both"
                )));
            }
            (Some(file), None) => JwksSource::File(file.clone()),
            (None, Some(uri)) => JwksSource::Uri(uri.clone()),
            (None, None) if preset == Preset::Spiffe => {
                return Err(ConfigError::Invalid(format!(
                    "issuer {name}: a SPIFFE issuer needs its trust bundle: set jwks_file or jwks_uri"
                )));
            }
            (None, None) => JwksSource::Discovery,
        };
        if !(0..=300).contains(&self.leeway_seconds) {
            return Err(ConfigError::Invalid(format!(
                "issuer {name}: leeway_seconds must be between 0 and 300"
            )));
        }
        let trust_domain = match (preset, &self.trust_domain) {
            (Preset::Spiffe, None) => {
                return Err(ConfigError::Invalid(format!(
                    "issuer {name}: a SPIFFE issuer needs trust_domain"
                )));
            }
            (_, td) => td.clone(),
        };
        let mut tag_claims: Vec<String> = preset
            .tag_claims()
            .iter()
            .map(|c| (*c).to_owned())
            .collect();
        for claim in &self.claims {
            if !tag_claims.contains(claim) {
                tag_claims.push(claim.clone());
            }
        }
        Ok(Issuer {
            name: name.clone(),
            issuer,
            preset,
            audiences: self.audiences.clone(),
            algorithms,
            jwks,
            workload: self
                .workload
                .clone()
                .unwrap_or_else(|| preset.default_workload().to_owned()),
            tenant_claim: self.tenant_claim.clone(),
            tenant: self.tenant.clone().unwrap_or_else(|| name.clone()),
            tag_claims,
            trust_domain,
            leeway: self.leeway_seconds,
            min_refresh: self.min_refresh_seconds.max(1),
        })
    }
}
