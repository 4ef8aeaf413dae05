//! Upstream credentials made per task, where the upstream can make its
//! own: a PostgreSQL login role ([`postgres`]), a GitHub App installation
//! token ([`github`]). An exchange for an upstream's audience makes one,
//! records it with the exchange's lease, and returns it beside the access
//! token; the broker releases it (drops the role, revokes the token) once
//! the lease ends, whatever ends it: the task's end, a revocation, expiry
//! or a policy change.

pub mod github;
pub mod postgres;

use std::collections::HashMap;

use crate::config::UpstreamConfig;
use crate::upstream::Upstream;

pub use self::github::{GithubMinter, TokenRequest};
pub use self::postgres::{Password, PendingRole, PostgresMinter, ROLE_PREFIX};

/// The audience prefix of PostgreSQL upstreams: `urn:mayfly:postgres:app`.
pub const POSTGRES_AUDIENCE_PREFIX: &str = "urn:mayfly:postgres:";
/// The audience prefix of GitHub Apps: `urn:mayfly:github:github`.
pub const GITHUB_AUDIENCE_PREFIX: &str = "urn:mayfly:github:";

/// The grant kind of PostgreSQL roles (in the store).
pub const POSTGRES_KIND: &str = "postgres";
/// The grant kind of GitHub installation tokens (in the store).
pub const GITHUB_KIND: &str = "github";

/// The upstream an audience names, if it names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// A `[[upstream.postgres]]` by name.
    Postgres(&'a str),
    /// A `[[upstream.github]]` by name.
    Github(&'a str),
}

impl<'a> Target<'a> {
    /// The upstream `audience` names, if it is an upstream audience.
    pub fn of(audience: &'a str) -> Option<Target<'a>> {
        if let Some(name) = audience.strip_prefix(POSTGRES_AUDIENCE_PREFIX) {
            return Some(Target::Postgres(name));
        }
        audience
            .strip_prefix(GITHUB_AUDIENCE_PREFIX)
            .map(Target::Github)
    }

    /// Its audience.
    pub fn audience(self) -> String {
        match self {
            Target::Postgres(name) => format!("{POSTGRES_AUDIENCE_PREFIX}{name}"),
            Target::Github(name) => format!("{GITHUB_AUDIENCE_PREFIX}{name}"),
        }
    }
}

/// Why an upstream credential was not made or released. Never holds a
/// password or token.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The upstream's configuration (or its key in custody) is not usable.
    #[error("upstream {upstream}: {reason}")]
    Config {
        /// The upstream's name.
        upstream: String,
        /// What to fix.
        reason: String,
    },
    /// The request asks for something the upstream does not have.
    #[error("upstream {upstream}: {reason}")]
    Request {
        /// The upstream's name.
        upstream: String,
        /// What was wrong.
        reason: String,
    },
    /// The upstream failed or refused.
    #[error("upstream {upstream}: {reason}")]
    Upstream {
        /// The upstream's name.
        upstream: String,
        /// What it said.
        reason: String,
    },
    /// The broker is shutting down.
    #[error("the broker is shutting down")]
    Closed,
}

/// A random id for role names.
pub(crate) fn random_id() -> Result<String, MintError> {
    crate::b64::random_id().map_err(|e| MintError::Upstream {
        upstream: "random".into(),
        reason: e.to_string(),
    })
}

/// The configured upstreams, by name.
#[derive(Debug, Default)]
pub struct Minters {
    postgres: HashMap<String, PostgresMinter>,
    github: HashMap<String, GithubMinter>,
}

impl Minters {
    /// The minters of `config`; `broker` (its public URL) marks the roles
    /// this broker makes.
    pub fn new(
        config: &UpstreamConfig,
        broker: &str,
        http: &Upstream,
    ) -> Result<Minters, MintError> {
        let mut minters = Minters::default();
        for pg in &config.postgres {
            minters
                .postgres
                .insert(pg.name.clone(), PostgresMinter::new(pg, broker)?);
        }
        for gh in &config.github {
            minters
                .github
                .insert(gh.name.clone(), GithubMinter::new(gh, http.clone()));
        }
        Ok(minters)
    }

    /// Whether any upstream is configured.
    pub fn is_empty(&self) -> bool {
        self.postgres.is_empty() && self.github.is_empty()
    }

    /// A PostgreSQL upstream by name.
    pub fn postgres(&self, name: &str) -> Option<&PostgresMinter> {
        self.postgres.get(name)
    }

    /// A GitHub App by name.
    pub fn github(&self, name: &str) -> Option<&GithubMinter> {
        self.github.get(name)
    }

    /// Every PostgreSQL upstream.
    pub fn all_postgres(&self) -> impl Iterator<Item = &PostgresMinter> {
        self.postgres.values()
    }

    /// Whether `target` names a configured upstream.
    pub fn knows(&self, target: Target<'_>) -> bool {
        match target {
            Target::Postgres(name) => self.postgres.contains_key(name),
            Target::Github(name) => self.github.contains_key(name),
        }
    }
}
