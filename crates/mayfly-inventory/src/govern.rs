//! Governance: rules over the inventory (maximum age, maximum copies,
//! forbidden surfaces, unclear ownership) that yield a remediation plan.
//! Where ownership is unclear, the answer is always rotate or revoke.

use std::borrow::Cow;
use std::collections::BTreeMap;

use mayfly_scan::rule::Severity;
use mayfly_scan::surface::Surface;
use mayfly_store::{LocationRow, SecretRow, Timestamp};
use serde::{Deserialize, Serialize};

/// The governance rules, from TOML (every field optional).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Governance {
    /// Days a secret may live before it must be rotated.
    pub max_age_days: i64,
    /// Per provider (case-insensitive), overriding `max_age_days`.
    pub max_age_days_by_provider: BTreeMap<String, i64>,
    /// Per severity (`critical`, `high`...), overriding `max_age_days`.
    pub max_age_days_by_severity: BTreeMap<Severity, i64>,
    /// Copies one secret may have before it moves into custody.
    pub max_copies: i64,
    /// Surfaces where no secret may live.
    pub forbidden_surfaces: Vec<Surface>,
}

impl Default for Governance {
    fn default() -> Self {
        Governance {
            max_age_days: 90,
            max_age_days_by_provider: BTreeMap::new(),
            max_age_days_by_severity: BTreeMap::from([(Severity::Critical, 30)]),
            max_copies: 2,
            forbidden_surfaces: vec![
                Surface::PromptLog,
                Surface::McpConfig,
                Surface::ChatExport,
                Surface::ShellHistory,
            ],
        }
    }
}

/// Why a governance file was refused.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct GovernanceError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

impl Governance {
    /// Parses a governance file.
    pub fn from_toml(text: &str, path: &str) -> Result<Governance, GovernanceError> {
        let governance: Governance = toml::from_str(text).map_err(|e| GovernanceError {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        if governance.max_age_days <= 0 || governance.max_copies <= 0 {
            return Err(GovernanceError {
                path: path.to_owned(),
                reason: "max_age_days and max_copies must be positive".into(),
            });
        }
        Ok(governance)
    }

    /// The forbidden surfaces by name, as the store keeps them.
    pub fn forbidden_surface_names(&self) -> Vec<String> {
        self.forbidden_surfaces
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect()
    }

    fn max_age(&self, secret: &SecretRow) -> (i64, Cow<'static, str>) {
        let by_provider = self
            .max_age_days_by_provider
            .iter()
            .find(|(p, _)| p.eq_ignore_ascii_case(&secret.provider))
            .map(|(p, d)| (*d, Cow::Owned(format!("max_age_days_by_provider.{p}"))));
        let by_severity = secret
            .severity
            .parse::<Severity>()
            .ok()
            .and_then(|severity| self.max_age_days_by_severity.get(&severity))
            .map(|d| {
                (
                    *d,
                    Cow::Owned(format!("max_age_days_by_severity.{}", secret.severity)),
                )
            });
        by_provider
            .into_iter()
            .chain(by_severity)
            .min_by_key(|(d, _)| *d)
            .unwrap_or((self.max_age_days, Cow::Borrowed("max_age_days")))
    }
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    /// Nobody owns it: rotate it (someone takes ownership) or revoke it.
    RotateOrRevoke,
    /// Issue a new credential and retire this one.
    Rotate,
    /// Hold the one remaining copy in Mayfly custody, broker it to its users.
    MoveIntoCustody,
    /// In custody, but copies remain outside it: rotate at the provider,
    /// then give custody the new value (`mayfly custody rotate`).
    RotateInCustody,
    /// Remove one copy.
    DeleteCopy,
}

/// One action, the rule that asks for it and the facts behind it.
#[derive(Debug, Clone, Serialize)]
pub struct Action {
    /// What to do.
    pub action: ActionKind,
    /// The copy it applies to (`path:line`), for copy-level actions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy: Option<String>,
    /// The governance rule.
    pub rule: Cow<'static, str>,
    /// The facts.
    pub reason: String,
    /// OWASP NHI Top 10 items involved.
    pub nhi: &'static [&'static str],
}

/// The plan for one secret.
#[derive(Debug, Clone, Serialize)]
pub struct SecretPlan {
    /// Fingerprint.
    pub fingerprint: String,
    /// Rule id.
    pub rule_id: String,
    /// Provider.
    pub provider: String,
    /// Severity.
    pub severity: String,
    /// Who to notify: the owner, or the security team when unclear.
    pub notify: String,
    /// Live copies.
    pub copies: usize,
    /// Its provider accepted it when last asked (`scan --validate`) and a
    /// copy is on a forbidden surface: act before anything else.
    pub urgent: bool,
    /// What its provider last said, and when (`live 2026-12-07`), if asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<String>,
    /// The actions, secret-level first.
    pub actions: Vec<Action>,
}

/// The remediation plan for `secrets` at time `now`; secrets with nothing
/// to do are left out. Each secret comes with (at least) its live copies
/// on forbidden surfaces; counts and surfaces come from the secret row.
pub fn plan(
    governance: &Governance,
    secrets: &[(SecretRow, Vec<LocationRow>)],
    now: Timestamp,
) -> Vec<SecretPlan> {
    secrets
        .iter()
        .filter_map(|(secret, copies)| plan_secret(governance, secret, copies, now))
        .collect()
}

/// The plan for one secret with its live copies on forbidden surfaces, or
/// `None` when nothing is to be done; a large inventory is planned one
/// secret at a time this way, as the store streams it.
pub fn plan_secret(
    governance: &Governance,
    secret: &SecretRow,
    copies: &[LocationRow],
    now: Timestamp,
) -> Option<SecretPlan> {
    if let Some(entry) = &secret.custody_entry
        && secret.status == mayfly_store::SecretStatus::InCustody
    {
        return plan_in_custody(secret, copies, entry);
    }
    let mut actions = Vec::new();
    if secret.owner.is_none() {
        let reason = match &secret.owner_conflict {
            Some(conflict) => format!("copies are claimed by different owners ({conflict})"),
            None => "no owner: no explicit owner, owners file, CODEOWNERS entry or commit author claims a copy".to_owned(),
        };
        actions.push(Action {
            action: ActionKind::RotateOrRevoke,
            copy: None,
            rule: Cow::Borrowed("unclear_ownership"),
            reason,
            nhi: &["NHI1", "NHI9"],
        });
    }
    let (max_age, age_rule) = governance.max_age(secret);
    let age_days = (now - secret.first_seen) / 86_400;
    if age_days > max_age {
        actions.push(Action {
            action: ActionKind::Rotate,
            copy: None,
            rule: age_rule,
            reason: format!(
                "first seen {} ({age_days} days ago); at most {max_age} days allowed",
                mayfly_scan::time::date(secret.first_seen)
            ),
            nhi: &["NHI7"],
        });
    }
    if secret.copies > governance.max_copies {
        actions.push(Action {
            action: ActionKind::MoveIntoCustody,
            copy: None,
            rule: Cow::Borrowed("max_copies"),
            reason: format!(
                "{} copies on {} (at most {} allowed): keep one in custody and broker it",
                secret.copies,
                secret.surfaces.replace(',', ", "),
                governance.max_copies
            ),
            nhi: &["NHI9", "NHI2"],
        });
    }
    let mut exposed = false;
    for copy in copies {
        if governance
            .forbidden_surfaces
            .iter()
            .any(|s| s.as_str() == copy.surface)
        {
            exposed = true;
            actions.push(Action {
                action: ActionKind::DeleteCopy,
                copy: Some(format!("{}:{}", copy.path, copy.line)),
                rule: Cow::Borrowed("forbidden_surfaces"),
                reason: format!("no secret may live in a {}", copy.surface),
                nhi: if copy.surface == "prompt-log" || copy.surface == "chat-export" {
                    &["NHI2", "NHI10"]
                } else {
                    &["NHI2", "NHI8"]
                },
            });
        }
    }
    // A copy on a forbidden surface was read by tools and people: the
    // secret itself must change, not only the copy.
    if exposed
        && !actions
            .iter()
            .any(|a| matches!(a.action, ActionKind::Rotate | ActionKind::RotateOrRevoke))
    {
        actions.push(Action {
            action: ActionKind::Rotate,
            copy: None,
            rule: Cow::Borrowed("forbidden_surfaces"),
            reason: "a copy was exposed on a forbidden surface".into(),
            nhi: &["NHI2"],
        });
    }
    if actions.is_empty() {
        return None;
    }
    actions.sort_by_key(|a| (a.copy.is_some(), a.action));
    Some(SecretPlan {
        fingerprint: secret.fingerprint.clone(),
        rule_id: secret.rule_id.clone(),
        provider: secret.provider.clone(),
        severity: secret.severity.clone(),
        notify: secret
            .owner
            .clone()
            .unwrap_or_else(|| "security team (ownership unclear)".to_owned()),
        copies: usize::try_from(secret.copies).unwrap_or(0),
        urgent: exposed && secret.validation.as_deref() == Some("live"),
        validation: validation_note(secret),
        actions,
    })
}

/// `live 2026-12-07`: the last verdict and its day.
fn validation_note(secret: &SecretRow) -> Option<String> {
    let status = secret.validation.as_deref()?;
    Some(match secret.validated_at {
        Some(at) => format!("{status} {}", mayfly_scan::time::date(at)),
        None => status.to_owned(),
    })
}

/// A secret in custody that still has copies outside it: they were read
/// by whoever could read them, so the value must change at the provider
/// and in custody; and each copy goes.
fn plan_in_custody(secret: &SecretRow, copies: &[LocationRow], entry: &str) -> Option<SecretPlan> {
    let mut actions = vec![Action {
        action: ActionKind::RotateInCustody,
        copy: None,
        rule: Cow::Borrowed("custody_exposed"),
        reason: format!(
            "in custody as {entry}, but {} cop{} remain outside it ({}): rotate it at {}, then `mayfly custody rotate {entry} --stdin`, then `mayfly inventory resolve {} --rotated`",
            secret.copies,
            if secret.copies == 1 { "y" } else { "ies" },
            secret.surfaces.replace(',', ", "),
            secret.provider,
            &secret.fingerprint[..secret.fingerprint.len().min(12)]
        ),
        nhi: &["NHI2", "NHI7"],
    }];
    actions.extend(copies.iter().map(|copy| Action {
        action: ActionKind::DeleteCopy,
        copy: Some(format!("{}:{}", copy.path, copy.line)),
        rule: Cow::Borrowed("custody_exposed"),
        reason: format!("a copy outside custody, in a {}", copy.surface),
        nhi: &["NHI2"],
    }));
    Some(SecretPlan {
        fingerprint: secret.fingerprint.clone(),
        rule_id: secret.rule_id.clone(),
        provider: secret.provider.clone(),
        severity: secret.severity.clone(),
        notify: secret
            .owner
            .clone()
            .unwrap_or_else(|| "security team".into()),
        copies: usize::try_from(secret.copies).unwrap_or(usize::MAX),
        urgent: !copies.is_empty() && secret.validation.as_deref() == Some("live"),
        validation: validation_note(secret),
        actions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mayfly_store::SecretStatus;

    fn secret(owner: Option<&str>, first_seen: i64, provider: &str, severity: &str) -> SecretRow {
        SecretRow {
            fingerprint: "ab".repeat(32),
            rule_id: "x".into(),
            provider: provider.into(),
            severity: severity.into(),
            first_seen,
            last_seen: first_seen,
            status: SecretStatus::Open,
            reopened: false,
            owner: owner.map(str::to_owned),
            owner_source: None,
            owner_conflict: None,
            copies: 1,
            surfaces: String::new(),
            custody_entry: None,
            validation: None,
            validated_at: None,
        }
    }

    fn copy(path: &str, surface: &str) -> LocationRow {
        LocationRow {
            source: "files:h:/r".into(),
            path: path.into(),
            host: "h".into(),
            root: None,
            remote: None,
            line: 1,
            column: 1,
            surface: surface.into(),
            commit_id: None,
            author: None,
            first_seen: 0,
            last_seen: 0,
            gone_at: None,
        }
    }

    const DAY: i64 = 86_400;

    #[test]
    fn each_rule_fires_with_its_facts() {
        let g = Governance::default();
        let now = 400 * DAY;
        let owned_fresh = (
            secret(Some("team-a"), now - DAY, "GitHub", "high"),
            vec![copy("a.py", "code")],
        );
        assert!(plan(&g, &[owned_fresh], now).is_empty());

        let unowned = (
            secret(None, now - DAY, "GitHub", "high"),
            vec![copy("a.py", "code")],
        );
        let p = plan(&g, &[unowned], now);
        assert_eq!(p[0].actions[0].action, ActionKind::RotateOrRevoke);
        assert!(p[0].notify.contains("unclear"));

        let old_critical = (
            secret(Some("t"), now - 40 * DAY, "Stripe", "critical"),
            vec![copy("a.py", "code")],
        );
        let p = plan(&g, &[old_critical], now);
        assert_eq!(p[0].actions[0].action, ActionKind::Rotate);
        assert_eq!(p[0].actions[0].rule, "max_age_days_by_severity.critical");

        let mut many = secret(Some("t"), now - DAY, "OpenAI", "high");
        many.copies = 3;
        many.surfaces = "code,env,prompt-log".into();
        let copied = (
            many,
            vec![
                copy("a.py", "code"),
                copy(".env", "env"),
                copy("log.jsonl", "prompt-log"),
            ],
        );
        let p = plan(&g, &[copied], now);
        let kinds: Vec<ActionKind> = p[0].actions.iter().map(|a| a.action).collect();
        assert_eq!(
            kinds,
            vec![
                ActionKind::Rotate,
                ActionKind::MoveIntoCustody,
                ActionKind::DeleteCopy
            ]
        );
        assert_eq!(p[0].actions[2].copy.as_deref(), Some("log.jsonl:1"));
    }

    #[test]
    fn governance_files_are_strict() {
        let g = Governance::from_toml(
            "max_age_days = 30\n[max_age_days_by_provider]\nOpenAI = 7\n",
            "g.toml",
        )
        .unwrap();
        assert_eq!(g.max_age(&secret(None, 0, "openai", "low")).0, 7);
        assert!(
            Governance::from_toml("max_age = 30\n", "g.toml")
                .unwrap_err()
                .to_string()
                .contains("max_age")
        );
        assert!(Governance::from_toml("max_copies = 0\n", "g.toml").is_err());
    }
}
