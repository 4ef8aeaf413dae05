//! `mayfly serve`'s configuration: TOML that rejects unknown keys, checked
//! once into values the rest of the broker trusts. Secrets (the admin
//! token, resource-server secrets, the master key) come from files or the
//! environment, never from this file or the command line.

mod issuer;
mod upstream;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use self::issuer::{Issuer, IssuerConfig, JwksSource, Preset};
pub use self::upstream::{
    GithubUpstreamConfig, PostgresUpstreamConfig, ROLE_PLACEHOLDER, UpstreamConfig,
};

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
    /// Per-workload quotas.
    pub limits: LimitsConfig,
    /// How long closed credentials, ended tasks and audit events are kept.
    pub retention: RetentionConfig,
    /// The injecting proxy to custody entries' upstreams.
    pub proxy: ProxyConfig,
    /// Upstreams that make a credential per task.
    pub upstream: UpstreamConfig,
    /// Mayfly as an OpenID Connect provider for workload identity federation.
    pub federation: FederationConfig,
    /// Local attestation on a unix socket (workstations).
    pub local: mayfly_attest::AttestConfig,
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
    /// Largest accepted request line and headers together, in bytes.
    pub max_header_bytes: usize,
    /// A client must send a request's headers within this many seconds of
    /// connecting or of its previous answer; an idle connection is closed
    /// after it.
    pub header_read_timeout_seconds: u64,
    /// A request's body must arrive, and its answer be made, within this
    /// many seconds.
    pub request_timeout_seconds: u64,
    /// Most connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Most connections open at once from one client address.
    pub max_connections_per_address: usize,
}

impl BrokerConfig {
    /// Whether `mayfly serve` attests local processes: as configured, else
    /// when no `[[issuer]]` is (a workstation).
    pub fn local_attestation(&self) -> bool {
        self.local.enabled.unwrap_or(self.issuers.is_empty())
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8710".into(),
            public_url: None,
            admin_token_file: None,
            max_body_bytes: 64 * 1024,
            max_header_bytes: 16 * 1024,
            header_read_timeout_seconds: 10,
            request_timeout_seconds: 30,
            max_connections: 4096,
            max_connections_per_address: 512,
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
    /// Signing algorithm of access tokens: `EdDSA`, `ES256` or `RS256`
    /// (a resource server may ask for another with `token_algorithm`).
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

/// `[limits]`: what one workload may hold or ask for, so no caller can
/// exhaust the broker's memory, store or writer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Most live tasks one workload may hold; more are refused with 429.
    pub max_live_tasks_per_workload: u32,
    /// Token exchanges one workload may make per second, with bursts of
    /// twice as many; more are refused with 429. 0: no limit.
    pub exchanges_per_second_per_workload: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_live_tasks_per_workload: 100,
            exchanges_per_second_per_workload: 200,
        }
    }
}

/// `[retention]`: how long the store keeps what is over. A broker issuing
/// many short-lived credentials would otherwise grow without end (several
/// GB an hour at a few thousand exchanges a second).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Seconds a closed credential (expired or revoked) and an ended task
    /// are kept after they closed, then deleted with the task's proxy usage
    /// and released upstream records (a task waits for its last credential
    /// and for every upstream credential made for it to be released). A
    /// token whose credential is deleted stays inactive. 0: kept for ever.
    pub closed_seconds: i64,
    /// Seconds an audit event is kept; older events are deleted from the
    /// start of the chain, which then verifies from an anchor (the last
    /// deleted event's hash), and each deletion is itself an event
    /// (`audit.prune`). 0 (the default): the whole chain is kept.
    pub audit_seconds: i64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            closed_seconds: 7 * 24 * 3600,
            audit_seconds: 0,
        }
    }
}

impl RetentionConfig {
    /// The span a sweep keeps closed credentials and ended tasks for.
    pub fn keep_closed(&self) -> Option<i64> {
        (self.closed_seconds > 0).then_some(self.closed_seconds)
    }

    /// The span a sweep keeps audit events for.
    pub fn keep_audit(&self) -> Option<i64> {
        (self.audit_seconds > 0).then_some(self.audit_seconds)
    }
}

/// `[proxy]`: how the injecting proxy reaches upstreams.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// PEM file of more certificate authorities to trust for upstream TLS
    /// (beside the platform's roots): a private API, a test CA.
    pub extra_ca_file: Option<PathBuf>,
    /// Seconds to connect to an upstream.
    pub connect_timeout_seconds: u64,
    /// Seconds until an upstream's answer starts (a streamed body may then
    /// take as long as it takes).
    pub response_timeout_seconds: u64,
    /// Largest request body forwarded, in bytes.
    pub max_body_bytes: u64,
    /// Seconds a previous version of a rotated secret stays usable
    /// [default for new entries].
    pub rotation_grace_seconds: i64,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            extra_ca_file: None,
            connect_timeout_seconds: 10,
            response_timeout_seconds: 120,
            max_body_bytes: 32 * 1024 * 1024,
            rotation_grace_seconds: 3600,
        }
    }
}

/// `[federation]`: ID tokens that clouds and model providers trade for
/// their own short-lived credentials (AWS `AssumeRoleWithWebIdentity`,
/// Google Cloud and Azure workload identity federation, ...).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationConfig {
    /// Serve `/.well-known/openid-configuration` and issue RS256 ID tokens
    /// by token exchange (`requested_token_type` = ID token).
    pub enabled: bool,
    /// Longest life of an ID token, in seconds.
    pub max_ttl_seconds: i64,
}

impl Default for FederationConfig {
    fn default() -> Self {
        FederationConfig {
            enabled: false,
            max_ttl_seconds: 3600,
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

/// One `[[resource_server]]`: a service that checks Mayfly tokens.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceServerConfig {
    /// Its client id (HTTP Basic user name).
    pub client_id: String,
    /// The audiences (resource URIs) it serves.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Signing algorithm of access tokens for its audiences [default:
    /// `tokens.algorithm`]; RS256 for servers whose JWT library knows no other.
    #[serde(default)]
    pub token_algorithm: Option<String>,
    /// File holding its secret.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Environment variable holding its secret.
    #[serde(default)]
    pub secret_env: Option<String>,
}

fn check_signing_algorithm(what: &str, alg: &str) -> Result<(), ConfigError> {
    if crate::keys::SIGNING_ALGORITHMS.contains(&alg) {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "{what} {alg:?} is not supported; use {}",
            crate::keys::SIGNING_ALGORITHMS.join(", ")
        )))
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
        self.local
            .check()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
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
        check_signing_algorithm("tokens: algorithm", &t.algorithm)?;
        if t.key_rotation_days <= 0 {
            return Err(ConfigError::Invalid(
                "tokens: key_rotation_days must be positive".into(),
            ));
        }
        let proxy = &self.proxy;
        if proxy.connect_timeout_seconds == 0
            || proxy.response_timeout_seconds == 0
            || proxy.max_body_bytes == 0
            || proxy.rotation_grace_seconds < 0
        {
            return Err(ConfigError::Invalid(
                "proxy: timeouts and max_body_bytes must be positive, rotation_grace_seconds not negative".into(),
            ));
        }
        if self.retention.closed_seconds < 0 || self.retention.audit_seconds < 0 {
            return Err(ConfigError::Invalid(
                "retention: closed_seconds and audit_seconds must not be negative (0 keeps for ever)"
                    .into(),
            ));
        }
        if self.limits.max_live_tasks_per_workload == 0 {
            return Err(ConfigError::Invalid(
                "limits: max_live_tasks_per_workload must be at least 1".into(),
            ));
        }
        let server = &self.server;
        if server.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "server: max_body_bytes must be at least 1024".into(),
            ));
        }
        if !(1024..=128 * 1024).contains(&server.max_header_bytes) {
            return Err(ConfigError::Invalid(
                "server: max_header_bytes must be between 1024 and 131072".into(),
            ));
        }
        if server.header_read_timeout_seconds == 0 || server.request_timeout_seconds == 0 {
            return Err(ConfigError::Invalid(
                "server: header_read_timeout_seconds and request_timeout_seconds must be positive"
                    .into(),
            ));
        }
        if server.max_connections == 0
            || server.max_connections_per_address == 0
            || server.max_connections_per_address > server.max_connections
        {
            return Err(ConfigError::Invalid(
                "server: need 0 < max_connections_per_address <= max_connections".into(),
            ));
        }
        self.upstream.check()?;
        if self.federation.max_ttl_seconds <= 0 {
            return Err(ConfigError::Invalid(
                "federation: max_ttl_seconds must be positive".into(),
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
        let mut served = std::collections::HashMap::new();
        for rs in &self.resource_servers {
            if rs.client_id.is_empty() || (rs.secret_file.is_none() == rs.secret_env.is_none()) {
                return Err(ConfigError::Invalid(format!(
                    "resource_server {:?}: set a client_id and exactly one of secret_file or secret_env",
                    rs.client_id
                )));
            }
            if let Some(alg) = &rs.token_algorithm {
                check_signing_algorithm(
                    &format!("resource_server {}: token_algorithm", rs.client_id),
                    alg,
                )?;
            }
            for audience in &rs.audiences {
                if let Some(other) = served.insert(audience.as_str(), rs.client_id.as_str()) {
                    return Err(ConfigError::Invalid(format!(
                        "audience {audience} is served by both resource servers {other} and {}",
                        rs.client_id
                    )));
                }
            }
        }
        Ok(())
    }

    /// The algorithm access tokens for `audience` are signed with.
    pub fn algorithm_for(&self, audience: &str) -> &str {
        self.resource_servers
            .iter()
            .find(|rs| rs.audiences.iter().any(|a| a == audience))
            .and_then(|rs| rs.token_algorithm.as_deref())
            .unwrap_or(&self.tokens.algorithm)
    }

    /// Every algorithm access tokens are signed with: one signing key each.
    pub fn signing_algorithms(&self) -> Vec<String> {
        let mut algorithms = vec![self.tokens.algorithm.clone()];
        // ID tokens are RS256, the one algorithm every federating cloud takes.
        let federation = self.federation.enabled.then(|| "RS256".to_owned());
        for alg in self
            .resource_servers
            .iter()
            .filter_map(|rs| rs.token_algorithm.as_ref())
            .chain(federation.as_ref())
        {
            if !algorithms.contains(alg) {
                algorithms.push(alg.clone());
            }
        }
        algorithms
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
