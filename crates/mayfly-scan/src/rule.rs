//! Rules as data: the TOML format, the built-in set and user rule files.

use std::fmt;
use std::sync::Arc;

use regex::bytes::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::validate::ValidatorKind;

/// The built-in rule files, embedded in the binary, in priority order: when
/// two specific rules match the same secret at the same place, the earlier
/// one names it.
const BUILTIN: &[(&str, &str)] = &[
    ("ai.toml", include_str!("../rules/ai.toml")),
    ("code-hosts.toml", include_str!("../rules/code-hosts.toml")),
    ("cloud.toml", include_str!("../rules/cloud.toml")),
    ("saas.toml", include_str!("../rules/saas.toml")),
    ("generic.toml", include_str!("../rules/generic.toml")),
];

/// How much harm a leaked copy of a credential can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Narrow scope or short life.
    Low,
    /// Scoped to one service or one feature.
    Medium,
    /// Broad access to one account or project.
    High,
    /// Organisation-wide, administrative or cloud-root access.
    Critical,
}

impl Severity {
    /// The lowercase name used in every output format.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl Severity {
    /// Every severity, least harmful first.
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of a fixed set of values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {given:?}: use one of {valid}")]
pub struct UnknownValue {
    /// What kind of value (`severity`, `surface`).
    pub what: &'static str,
    /// What was given.
    pub given: String,
    /// The valid values, comma-separated.
    pub valid: String,
}

impl std::str::FromStr for Severity {
    type Err = UnknownValue;

    fn from_str(text: &str) -> Result<Severity, UnknownValue> {
        Severity::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| UnknownValue {
                what: "severity",
                given: text.to_owned(),
                valid: Severity::ALL.map(Severity::as_str).join(", "),
            })
    }
}

/// An item of the OWASP Non-Human Identities Top 10 (2025).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[expect(
    missing_docs,
    reason = "the variants are the OWASP item numbers; `title` names them"
)]
pub enum Nhi {
    NHI1,
    NHI2,
    NHI3,
    NHI4,
    NHI5,
    NHI6,
    NHI7,
    NHI8,
    NHI9,
    NHI10,
}

impl Nhi {
    /// The item's title in the OWASP list.
    pub fn title(self) -> &'static str {
        match self {
            Nhi::NHI1 => "Improper Offboarding",
            Nhi::NHI2 => "Secret Leakage",
            Nhi::NHI3 => "Vulnerable Third-Party NHI",
            Nhi::NHI4 => "Insecure Authentication",
            Nhi::NHI5 => "Overprivileged NHI",
            Nhi::NHI6 => "Insecure Cloud Deployment Configurations",
            Nhi::NHI7 => "Long-Lived Secrets",
            Nhi::NHI8 => "Environment Isolation",
            Nhi::NHI9 => "NHI Reuse",
            Nhi::NHI10 => "Human Use of NHI",
        }
    }
}

/// One rule as written in TOML.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Stable kebab-case identifier used in output, SARIF and configuration.
    pub id: String,
    /// Human name of the credential.
    pub name: String,
    /// The service that issues the credential.
    pub provider: String,
    /// What the credential grants and why a copy matters.
    pub description: String,
    /// Prefilter literals, matched ASCII case-insensitively.
    pub keywords: Vec<String>,
    /// Rust regex (Unicode off); the `secret` group, or the whole match, is the secret.
    pub pattern: String,
    /// Structural check applied to the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator: Option<ValidatorKind>,
    /// Minimum Shannon entropy of the secret, in bits per byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_entropy: Option<f64>,
    /// Harm a leaked copy can do.
    pub severity: Severity,
    /// OWASP NHI Top 10 items the finding maps to.
    pub nhi: Vec<Nhi>,
    /// Keyword-anchored rule that yields to a specific rule at the same spot.
    #[serde(default)]
    pub generic: bool,
    /// Words (ASCII case-insensitive) that, on the line of a match, mark it
    /// as not a credential: `NextToken` pagination cursors, `example` lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_context: Vec<String>,
    /// The pattern spans lines (PEM blocks).
    #[serde(default)]
    pub multiline: bool,
    /// The verifier (`mayfly scan --validate`) that asks the provider
    /// whether a found secret is live, by id (`github-user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<String>,
    /// The revoker (`mayfly revoke`) that ends a leaked secret at its
    /// provider, by id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke: Option<String>,
    /// Texts that must yield a finding of this rule.
    #[serde(default)]
    pub examples: Vec<String>,
    /// Texts that must yield no finding of this rule.
    #[serde(default)]
    pub negative_examples: Vec<String>,
}

/// What outputs need to know about the rule behind a finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleInfo {
    /// Stable identifier.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Issuing service.
    pub provider: String,
    /// What it grants.
    pub description: String,
    /// Harm of a leak.
    pub severity: Severity,
    /// OWASP NHI Top 10 items.
    pub nhi: Vec<Nhi>,
    /// A specific, one-line rule: the copies pass searches for the values
    /// it finds.
    #[serde(skip)]
    pub confident: bool,
    /// The verifier that checks whether its secrets are live.
    #[serde(skip)]
    pub verify: Option<String>,
    /// The revoker that ends its secrets at the provider.
    #[serde(skip)]
    pub revoke: Option<String>,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule's metadata, shared by its findings.
    pub info: Arc<RuleInfo>,
    /// The rule as written.
    pub spec: RuleSpec,
    /// Where the rule was loaded from (`builtin:ai.toml` or a user path).
    pub origin: String,
    pub(crate) regex: Regex,
    pub(crate) secret_group: Option<usize>,
    pub(crate) deny_context: Vec<Vec<u8>>,
}

impl Rule {
    fn compile(spec: RuleSpec, origin: &str) -> Result<Self, RuleError> {
        let invalid = |reason: String| RuleError::Invalid {
            id: spec.id.clone(),
            origin: origin.to_owned(),
            reason,
        };
        if spec.id.is_empty()
            || !spec
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid(
                "the id must be non-empty kebab-case (a-z, 0-9, -)".into(),
            ));
        }
        if spec.keywords.is_empty() {
            return Err(invalid(
                "a rule needs at least one keyword for the prefilter".into(),
            ));
        }
        if let Some(short) = spec.keywords.iter().find(|k| k.len() < 3 || !k.is_ascii()) {
            return Err(invalid(format!(
                "keyword {short:?} must be at least 3 ASCII characters, or the prefilter fires everywhere"
            )));
        }
        if let Some(verify) = &spec.verify
            && (verify.is_empty()
                || !verify
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
        {
            return Err(invalid(format!(
                "verify {verify:?} must name a verifier by its kebab-case id (`mayfly rules providers` lists them)"
            )));
        }
        if spec.nhi.is_empty() {
            return Err(invalid(
                "map the rule to at least one OWASP NHI item (`nhi`)".into(),
            ));
        }
        let regex = RegexBuilder::new(&spec.pattern)
            .unicode(false)
            .size_limit(4 << 20)
            .dfa_size_limit(4 << 20)
            .build()
            .map_err(|err| RuleError::Pattern {
                id: spec.id.clone(),
                origin: origin.to_owned(),
                reason: err.to_string(),
            })?;
        let secret_group = regex
            .capture_names()
            .position(|name| name == Some("secret"));
        let info = Arc::new(RuleInfo {
            id: spec.id.clone(),
            name: spec.name.clone(),
            provider: spec.provider.clone(),
            description: spec.description.clone(),
            severity: spec.severity,
            nhi: spec.nhi.clone(),
            confident: !spec.generic && !spec.multiline,
            verify: spec.verify.clone(),
            revoke: spec.revoke.clone(),
        });
        let deny_context = spec
            .deny_context
            .iter()
            .map(|w| w.to_ascii_lowercase().into_bytes())
            .collect();
        Ok(Rule {
            info,
            deny_context,
            spec,
            origin: origin.to_owned(),
            regex,
            secret_group,
        })
    }
}

/// Why a rule file or rule was refused.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The file is not valid rule TOML.
    #[error("{origin}: not a valid rule file: {reason}")]
    Parse {
        /// The file.
        origin: String,
        /// The TOML parser's message, with line and column.
        reason: String,
    },
    /// The pattern does not compile.
    #[error("{origin}: rule {id}: the pattern does not compile: {reason}")]
    Pattern {
        /// The rule.
        id: String,
        /// The file.
        origin: String,
        /// The regex compiler's message.
        reason: String,
    },
    /// A field has a value the engine cannot use.
    #[error("{origin}: rule {id}: {reason}")]
    Invalid {
        /// The rule.
        id: String,
        /// The file.
        origin: String,
        /// What to change.
        reason: String,
    },
    /// Two rules share an id.
    #[error("{origin}: rule id {id} is already defined in {first}; give the rule another id")]
    DuplicateId {
        /// The id.
        id: String,
        /// The file of the second definition.
        origin: String,
        /// The file of the first definition.
        first: String,
    },
    /// The rule file could not be read.
    #[error("cannot read rule file {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The operating system's message.
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    rules: Vec<RuleSpec>,
}

/// An ordered set of compiled rules with unique ids.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    /// The rules embedded in the binary.
    pub fn builtin() -> Result<Self, RuleError> {
        let mut set = RuleSet::default();
        for (name, text) in BUILTIN {
            set.add_toml(text, &format!("builtin:{name}"))?;
        }
        Ok(set)
    }

    /// Parses a rule file's text and appends its rules.
    pub fn add_toml(&mut self, text: &str, origin: &str) -> Result<(), RuleError> {
        let file: RuleFile = toml::from_str(text).map_err(|err| RuleError::Parse {
            origin: origin.to_owned(),
            reason: err.to_string(),
        })?;
        let mut compiled = Vec::with_capacity(file.rules.len());
        for spec in file.rules {
            let rule = Rule::compile(spec, origin)?;
            let earlier = self
                .rules
                .iter()
                .chain(compiled.iter())
                .find(|r: &&Rule| r.spec.id == rule.spec.id);
            if let Some(first) = earlier {
                return Err(RuleError::DuplicateId {
                    id: rule.spec.id,
                    origin: origin.to_owned(),
                    first: first.origin.clone(),
                });
            }
            compiled.push(rule);
        }
        self.rules.extend(compiled);
        Ok(())
    }

    /// Reads a user rule file and appends its rules.
    pub fn add_file(&mut self, path: &std::path::Path) -> Result<(), RuleError> {
        let text = std::fs::read_to_string(path).map_err(|err| RuleError::Read {
            path: path.display().to_string(),
            reason: err.to_string(),
        })?;
        self.add_toml(&text, &path.display().to_string())
    }

    /// Keeps only the rules for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&Rule) -> bool) {
        self.rules.retain(|rule| keep(rule));
    }

    /// The rules, in priority order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when the set holds no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}
