//! `[[upstream.postgres]]` and `[[upstream.github]]`: upstreams that make
//! a credential per task (a PostgreSQL login role, a GitHub App
//! installation token) instead of holding a long-lived one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// `[upstream]`: the upstreams that mint credentials per task.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// PostgreSQL servers: a login role per task.
    pub postgres: Vec<PostgresUpstreamConfig>,
    /// GitHub Apps: an installation token per task.
    pub github: Vec<GithubUpstreamConfig>,
}

/// One `[[upstream.postgres]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresUpstreamConfig {
    /// Its name: the audience `urn:mayfly:postgres:{name}`, and
    /// `mayfly run --inject pg:{name}`.
    pub name: String,
    /// The management connection, without a password
    /// (`postgres://mayfly_admin@db.internal:5432/app`): a role with
    /// CREATEROLE that may grant what the levels grant.
    pub url: String,
    /// File holding the management password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the management password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Custody entry holding the management password.
    #[serde(default)]
    pub password_custody: Option<String>,
    /// The host clients connect to [default: the management URL's].
    #[serde(default)]
    pub client_host: Option<String>,
    /// The port clients connect to [default: the management URL's].
    #[serde(default)]
    pub client_port: Option<u16>,
    /// Access levels: the statements that grant each, with `{{role}}`
    /// standing for the task's role (`read = ["GRANT app_read TO {{role}}"]`).
    pub levels: BTreeMap<String, Vec<String>>,
    /// The level of an exchange that names none [default: the only level,
    /// when there is one].
    #[serde(default)]
    pub default_level: Option<String>,
    /// The role objects made by a task's role are given to when it is
    /// dropped [default: the management user].
    #[serde(default)]
    pub reassign_to: Option<String>,
    /// Longest life of a task's role, in seconds.
    #[serde(default = "default_postgres_lifetime")]
    pub max_lifetime_seconds: i64,
    /// Management connections kept open.
    #[serde(default = "default_pool")]
    pub pool_size: usize,
}

fn default_postgres_lifetime() -> i64 {
    8 * 3600
}

fn default_pool() -> usize {
    8
}

/// One `[[upstream.github]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubUpstreamConfig {
    /// Its name: the audience `urn:mayfly:github:{name}`, and
    /// `mayfly run --inject github:{name}` (`--inject github` for `github`).
    #[serde(default = "default_github_name")]
    pub name: String,
    /// The App's id (the `iss` of the App's JWTs).
    pub app_id: u64,
    /// The installation tokens are made for.
    pub installation_id: u64,
    /// Custody entry holding the App's private key (the `.pem` GitHub
    /// gave).
    pub private_key_custody: String,
    /// The REST API's base URL (GitHub Enterprise Server:
    /// `https://HOST/api/v3`).
    #[serde(default = "default_github_api")]
    pub api_url: String,
}

fn default_github_name() -> String {
    "github".into()
}

fn default_github_api() -> String {
    "https://api.github.com".into()
}

/// The placeholder for the task's role in level statements.
pub const ROLE_PLACEHOLDER: &str = "{{role}}";

fn check_name(kind: &str, name: &str) -> Result<(), ConfigError> {
    crate::custody::check_name(name)
        .map_err(|e| ConfigError::Invalid(format!("upstream.{kind}: {e}")))
}

impl PostgresUpstreamConfig {
    /// The level an exchange that asked for `requested` gets, or why none.
    pub fn level<'a>(&'a self, requested: Option<&'a str>) -> Result<&'a str, String> {
        let levels = || self.levels.keys().cloned().collect::<Vec<_>>().join(", ");
        match requested.or(self.default_level.as_deref()) {
            Some(level) if self.levels.contains_key(level) => Ok(level),
            Some(level) => Err(format!(
                "upstream {} has no level {level:?}; its levels are {}",
                self.name,
                levels()
            )),
            None if self.levels.len() == 1 => Ok(self.levels.keys().next().map_or("", |k| k)),
            None => Err(format!(
                "upstream {} has several levels; ask for one of {} as the scope",
                self.name,
                levels()
            )),
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        let what = format!("upstream.postgres {:?}", self.name);
        check_name("postgres", &self.name)?;
        let sources = [
            self.password_file.is_some(),
            self.password_env.is_some(),
            self.password_custody.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() > 1 {
            return Err(ConfigError::Invalid(format!(
                "{what}: set at most one of password_file, password_env, password_custody"
            )));
        }
        let url: tokio_postgres::Config = self.url.parse().map_err(|e| {
            ConfigError::Invalid(format!(
                "{what}: url is not a PostgreSQL connection URL: {e}"
            ))
        })?;
        if url.get_password().is_some() {
            return Err(ConfigError::Invalid(format!(
                "{what}: url holds a password; remove it and use password_file, password_env or password_custody"
            )));
        }
        if url.get_user().is_none() {
            return Err(ConfigError::Invalid(format!(
                "{what}: url names no user (postgres://USER@HOST:PORT/DB)"
            )));
        }
        if self.levels.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "{what}: define at least one level (read = [\"GRANT app_read TO {ROLE_PLACEHOLDER}\"])"
            )));
        }
        for (level, statements) in &self.levels {
            if level.is_empty() || level.contains(char::is_whitespace) {
                return Err(ConfigError::Invalid(format!(
                    "{what}: level name {level:?} must be one word"
                )));
            }
            if statements.is_empty() || statements.iter().any(|s| !s.contains(ROLE_PLACEHOLDER)) {
                return Err(ConfigError::Invalid(format!(
                    "{what}: every statement of level {level} must name the task's role as {ROLE_PLACEHOLDER}"
                )));
            }
        }
        if let Some(default) = &self.default_level
            && !self.levels.contains_key(default)
        {
            return Err(ConfigError::Invalid(format!(
                "{what}: default_level {default:?} is not one of its levels"
            )));
        }
        if self.max_lifetime_seconds <= 0 || self.pool_size == 0 {
            return Err(ConfigError::Invalid(format!(
                "{what}: max_lifetime_seconds and pool_size must be positive"
            )));
        }
        Ok(())
    }
}

impl GithubUpstreamConfig {
    fn check(&self) -> Result<(), ConfigError> {
        check_name("github", &self.name)?;
        let what = format!("upstream.github {:?}", self.name);
        if !(self.api_url.starts_with("https://") || self.api_url.starts_with("http://")) {
            return Err(ConfigError::Invalid(format!(
                "{what}: api_url must be an http(s) URL"
            )));
        }
        if self.app_id == 0 || self.installation_id == 0 {
            return Err(ConfigError::Invalid(format!(
                "{what}: set app_id and installation_id (the App's settings page shows them)"
            )));
        }
        crate::custody::check_name(&self.private_key_custody)
            .map_err(|e| ConfigError::Invalid(format!("{what}: private_key_custody: {e}")))?;
        Ok(())
    }
}

impl UpstreamConfig {
    /// Checks each upstream and that names are not used twice.
    pub fn check(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        for pg in &self.postgres {
            pg.check()?;
            if !names.insert(("postgres", pg.name.as_str())) {
                return Err(ConfigError::Invalid(format!(
                    "upstream.postgres name {} is used twice",
                    pg.name
                )));
            }
        }
        for gh in &self.github {
            gh.check()?;
            if !names.insert(("github", gh.name.as_str())) {
                return Err(ConfigError::Invalid(format!(
                    "upstream.github name {} is used twice",
                    gh.name
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::BrokerConfig;

    fn parse(text: &str) -> Result<BrokerConfig, String> {
        BrokerConfig::parse(text, "t.toml").map_err(|e| e.to_string())
    }

    const PG: &str =
        "[[upstream.postgres]]\nname = \"app\"\nurl = \"postgres://mgr@db:5432/app\"\n";

    #[test]
    fn levels_must_name_the_role_and_the_default_must_exist() {
        let ok = parse(&format!(
            "{PG}[upstream.postgres.levels]\nread = [\"GRANT r TO {{{{role}}}}\"]\n"
        ))
        .unwrap();
        let pg = &ok.upstream.postgres[0];
        assert_eq!(pg.level(None), Ok("read"), "the only level is the default");
        assert!(
            pg.level(Some("write"))
                .unwrap_err()
                .contains("its levels are read")
        );
        let err = parse(&format!(
            "{PG}[upstream.postgres.levels]\nread = [\"GRANT r TO someone\"]\n"
        ))
        .unwrap_err();
        assert!(err.contains("{{role}}"), "{err}");
        let err = parse(&format!(
            "{PG}default_level = \"admin\"\n[upstream.postgres.levels]\nread = [\"GRANT r TO {{{{role}}}}\"]\n"
        ))
        .unwrap_err();
        assert!(err.contains("default_level"), "{err}");
        let err = parse(PG).unwrap_err();
        assert!(err.contains("levels"), "{err}");
    }

    #[test]
    fn one_password_source_and_unique_names() {
        let levels = "[upstream.postgres.levels]\nread = [\"GRANT r TO {{role}}\"]\n";
        let err = parse(&format!(
            "{PG}password_file = \"/p\"\npassword_env = \"P\"\n{levels}"
        ))
        .unwrap_err();
        assert!(err.contains("at most one"), "{err}");
        let err = parse(&format!("{PG}{levels}{PG}{levels}")).unwrap_err();
        assert!(err.contains("used twice"), "{err}");
        let err = parse(
            "[[upstream.github]]\napp_id = 1\ninstallation_id = 0\nprivate_key_custody = \"k\"\n",
        )
        .unwrap_err();
        assert!(err.contains("installation_id"), "{err}");
        let gh = parse(
            "[[upstream.github]]\napp_id = 1\ninstallation_id = 2\nprivate_key_custody = \"k\"\n",
        )
        .unwrap();
        assert_eq!(gh.upstream.github[0].name, "github");
        assert_eq!(gh.upstream.github[0].api_url, "https://api.github.com");
    }
}
