//! The `[local]` section of the broker's configuration.

use std::path::PathBuf;

use serde::Deserialize;

use crate::template::Template;

/// How local attestation is set up.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttestConfig {
    /// Whether `mayfly serve` listens on the local socket; by default it
    /// does when no `[[issuer]]` is configured (a workstation).
    pub enabled: Option<bool>,
    /// The socket's path [default: `workload.sock` in the data directory].
    pub socket: Option<PathBuf>,
    /// A group (name or gid) whose members may connect too: the socket is
    /// then mode 0660 and owned by that group, instead of 0600.
    pub group: Option<String>,
    /// The workload id template (placeholders: `{uid}`, `{gid}`, `{exe}`,
    /// `{exe_name}`, `{exe_sha256}`, `{container_id}`, `{parent_exe}`).
    pub workload: String,
    /// The SPIFFE trust domain of the JWT-SVIDs it issues.
    pub trust_domain: String,
    /// The SPIFFE ID's path template (same placeholders).
    pub spiffe_path: String,
    /// Lifetime of identity tokens and JWT-SVIDs, in seconds.
    pub token_ttl_seconds: i64,
    /// How many parents of the caller are reported.
    pub max_ancestors: usize,
}

impl Default for AttestConfig {
    fn default() -> Self {
        AttestConfig {
            enabled: None,
            socket: None,
            group: None,
            workload: "local:uid:{uid}:exe:{exe}".into(),
            trust_domain: "mayfly.local".into(),
            spiffe_path: "/local/uid/{uid}/exe{exe}".into(),
            token_ttl_seconds: 300,
            max_ancestors: 8,
        }
    }
}

/// A `[local]` setting that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("[local] {setting}: {reason}")]
pub struct ConfigError {
    /// The setting.
    pub setting: &'static str,
    /// What is wrong and what to do.
    pub reason: String,
}

impl AttestConfig {
    /// Checks every setting; the error names the one to fix.
    pub fn check(&self) -> Result<(), ConfigError> {
        let error = |setting, reason: String| ConfigError { setting, reason };
        Template::parse(&self.workload).map_err(|e| error("workload", e))?;
        if self.workload.trim().is_empty() {
            return Err(error("workload", "is empty".into()));
        }
        Template::parse(&self.spiffe_path).map_err(|e| error("spiffe_path", e))?;
        if !self.spiffe_path.starts_with('/') {
            return Err(error(
                "spiffe_path",
                format!("{:?} must start with '/'", self.spiffe_path),
            ));
        }
        if !valid_trust_domain(&self.trust_domain) {
            return Err(error(
                "trust_domain",
                format!(
                    "{:?} is not a SPIFFE trust domain: use lowercase letters, digits, '.', '-' and '_'",
                    self.trust_domain
                ),
            ));
        }
        if !(10..=86_400).contains(&self.token_ttl_seconds) {
            return Err(error(
                "token_ttl_seconds",
                format!("{} is outside 10..=86400", self.token_ttl_seconds),
            ));
        }
        if self.max_ancestors > 64 {
            return Err(error(
                "max_ancestors",
                format!("{} is more than 64", self.max_ancestors),
            ));
        }
        Ok(())
    }
}

/// A trust domain name as the SPIFFE ID specification allows it.
fn valid_trust_domain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_check_and_bad_settings_are_named() {
        AttestConfig::default().check().unwrap();
        let bad = AttestConfig {
            workload: "local:{user}".into(),
            ..AttestConfig::default()
        };
        let e = bad.check().unwrap_err().to_string();
        assert!(
            e.contains("[local] workload") && e.contains("{user}"),
            "{e}"
        );
        let bad = AttestConfig {
            trust_domain: "Mayfly Local".into(),
            ..AttestConfig::default()
        };
        assert!(
            bad.check()
                .unwrap_err()
                .to_string()
                .contains("trust_domain")
        );
        let bad = AttestConfig {
            spiffe_path: "uid/{uid}".into(),
            ..AttestConfig::default()
        };
        assert!(bad.check().unwrap_err().to_string().contains("spiffe_path"));
    }
}
