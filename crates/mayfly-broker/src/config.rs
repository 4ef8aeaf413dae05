//! `mayfly serve`'s configuration: TOML that rejects unknown keys, checked
//! once into values the rest of the broker trusts. Secrets (the admin
//! token, resource-server secrets, the master key) come from files or the
//! environment, never from this file or the command line.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the config {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The system's message.
        reason: String,
    },
    /// The TOML is malformed or has unknown keys.
    #[error("config {path}: {reason}")]
    Parse {
        /// The file (or `<embedded>`).
        path: String,
        /// The parser's message, with the line.
        reason: String,
    },
    /// A value is out of range or inconsistent.
    #[error("config: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Listening and public address, admin token.
    pub server: ServerConfig,
    /// Lifetimes and signing keys.
    pub tokens: TokenConfig,
    /// Where the Cedar policies are.
    pub policy: PolicyConfig,
    /// Trusted workload identity issuers.
    #[serde(rename = "issuer")]
    pub issuers: Vec<IssuerConfig>,
    /// Resource servers allowed to introspect and revoke.
    #[serde(rename = "resource_server")]
    pub resource_servers: Vec<ResourceServerConfig>,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// The public base URL (the `iss` of issued tokens) [default: `http://{listen}`].
    pub public_url: Option<String>,
    /// File holding the admin token [default: `admin-token` in the data
    /// directory, created on first start]; `MAYFLY_ADMIN_TOKEN` wins.
    pub admin_token_file: Option<PathBuf>,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8710".into(),
            public_url: None,
            admin_token_file: None,
            max_body_bytes: 64 * 1024,
        }
    }
}

/// `[tokens]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// Lifetime of an access token when the client asks for none.
    pub default_ttl_seconds: i64,
    /// Longest lifetime of an access token.
    pub max_ttl_seconds: i64,
    /// Lifetime of a task when the client asks for none.
    pub default_task_ttl_seconds: i64,
    /// Longest lifetime of a task.
    pub max_task_ttl_seconds: i64,
    /// Signing algorithm of Mayfly's keys: `EdDSA` or `ES256`.
    pub algorithm: String,
    /// A new signing key is made when the current one is this old.
    pub key_rotation_days: i64,
    /// File holding the 32-byte master key that seals signing keys
    /// [default: `broker-master.key` in the data directory];
    /// `MAYFLY_MASTER_KEY` (base64) wins.
    pub master_key_file: Option<PathBuf>,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            default_ttl_seconds: 300,
            max_ttl_seconds: 3600,
            default_task_ttl_seconds: 3600,
            max_task_ttl_seconds: 24 * 3600,
            algorithm: "EdDSA".into(),
            key_rotation_days: 30,
            master_key_file: None,
        }
    }
}

/// `[policy]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Directory of `*.cedar` files [default: the embedded policies, which
    /// let a workload start tasks of up to an hour and exchange for the
    /// audiences its task named].
    pub dir: Option<PathBuf>,
}

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

/// One `[[resource_server]]`: a service that checks Mayfly tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceServerConfig {
    /// Its client id (HTTP Basic user name).
    pub client_id: String,
    /// File holding its secret.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Environment variable holding its secret.
    #[serde(default)]
    pub secret_env: Option<String>,
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
}

impl Preset {
    pub(crate) fn parse(name: Option<&str>) -> Result<Preset, ConfigError> {
        Ok(match name.unwrap_or("generic") {
            "generic" => Preset::Generic,
            "github-actions" => Preset::GithubActions,
            "kubernetes" => Preset::Kubernetes,
            "spiffe" => Preset::Spiffe,
            other => {
                return Err(ConfigError::Invalid(format!(
                    "unknown issuer preset {other:?}: use github-actions, kubernetes, spiffe or generic"
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
        }
    }

    /// The workload id template when the config gives none.
    pub fn default_workload(self) -> &'static str {
        match self {
            Preset::Generic | Preset::Spiffe => "{sub}",
            Preset::GithubActions => "repo:{repository}:ref:{ref}",
            Preset::Kubernetes => {
                "system:serviceaccount:{kubernetes.io.namespace}:{kubernetes.io.serviceaccount.name}"
            }
        }
    }

    /// Claims passed to policy as workload tags.
    pub fn tag_claims(self) -> &'static [&'static str] {
        match self {
            Preset::Generic | Preset::Spiffe => &["sub"],
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

impl BrokerConfig {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<BrokerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        BrokerConfig::parse(&text, &path.display().to_string())
    }

    /// Parses config text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<BrokerConfig, ConfigError> {
        let config: BrokerConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            reason: e.to_string(),
        })?;
        config.check()?;
        Ok(config)
    }

    /// Checks ranges and cross-field rules.
    pub fn check(&self) -> Result<(), ConfigError> {
        let t = &self.tokens;
        if t.default_ttl_seconds <= 0
            || t.max_ttl_seconds <= 0
            || t.default_ttl_seconds > t.max_ttl_seconds
        {
            return Err(ConfigError::Invalid(
                "tokens: need 0 < default_ttl_seconds <= max_ttl_seconds".into(),
            ));
        }
        if t.default_task_ttl_seconds <= 0
            || t.max_task_ttl_seconds <= 0
            || t.default_task_ttl_seconds > t.max_task_ttl_seconds
        {
            return Err(ConfigError::Invalid(
                "tokens: need 0 < default_task_ttl_seconds <= max_task_ttl_seconds".into(),
            ));
        }
        if t.algorithm != "EdDSA" && t.algorithm != "ES256" {
            return Err(ConfigError::Invalid(format!(
                "tokens: algorithm {:?} is not supported; use EdDSA or ES256",
                t.algorithm
            )));
        }
        if t.key_rotation_days <= 0 {
            return Err(ConfigError::Invalid(
                "tokens: key_rotation_days must be positive".into(),
            ));
        }
        if self.server.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "server: max_body_bytes must be at least 1024".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        let mut issuers = std::collections::HashSet::new();
        for issuer in &self.issuers {
            let checked = issuer.check()?;
            if !names.insert(checked.name.clone()) {
                return Err(ConfigError::Invalid(format!(
                    "issuer name {} is used twice",
                    checked.name
                )));
            }
            if !issuers.insert(checked.issuer.clone()) {
                return Err(ConfigError::Invalid(format!(
                    "issuer {} is configured twice",
                    checked.issuer
                )));
            }
        }
        for rs in &self.resource_servers {
            if rs.client_id.is_empty() || (rs.secret_file.is_none() == rs.secret_env.is_none()) {
                return Err(ConfigError::Invalid(format!(
                    "resource_server {:?}: set a client_id and exactly one of secret_file or secret_env",
                    rs.client_id
                )));
            }
        }
        Ok(())
    }

    /// The checked issuers.
    pub fn checked_issuers(&self) -> Result<Vec<Issuer>, ConfigError> {
        self.issuers.iter().map(IssuerConfig::check).collect()
    }

    /// The public base URL, without a trailing slash.
    pub fn public_url(&self) -> String {
        self.server
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.server.listen))
            .trim_end_matches('/')
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_are_refused() {
        let err = BrokerConfig::parse("[server]\nlisten_addr = \"x\"\n", "t.toml").unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
    }

    #[test]
    fn hmac_is_never_accepted() {
        let err = BrokerConfig::parse(
            "[[issuer]]\nname = \"ci\"\nissuer = \"https://ci\"\naudiences = [\"m\"]\nalgorithms = [\"HS256\"]\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("HS256"), "{err}");
    }

    #[test]
    fn presets_fill_in_defaults() {
        let config = BrokerConfig::parse(
            "[[issuer]]\nname = \"gha\"\npreset = \"github-actions\"\naudiences = [\"mayfly\"]\n",
            "t.toml",
        )
        .unwrap();
        let issuer = &config.checked_issuers().unwrap()[0];
        assert_eq!(issuer.issuer, "https://token.actions.githubusercontent.com");
        assert_eq!(issuer.jwks, JwksSource::Discovery);
        assert_eq!(issuer.workload, "repo:{repository}:ref:{ref}");
        assert_eq!(issuer.algorithms, vec![jsonwebtoken::Algorithm::RS256]);
    }

    #[test]
    fn the_example_config_parses() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mayfly.example.toml");
        let config = BrokerConfig::load(&path).unwrap();
        let issuers = config.checked_issuers().unwrap();
        assert_eq!(issuers.len(), 3);
        assert_eq!(issuers[1].workload, Preset::Kubernetes.default_workload());
    }

    #[test]
    fn spiffe_needs_a_bundle_and_domain() {
        let err = BrokerConfig::parse(
            "[[issuer]]\nname = \"s\"\npreset = \"spiffe\"\nissuer = \"https://spire\"\naudiences = [\"m\"]\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("trust bundle"), "{err}");
    }
}
