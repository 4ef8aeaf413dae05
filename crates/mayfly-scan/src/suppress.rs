//! Suppression that survives edits: by the secret's fingerprint (baselines
//! and ignore files), by line (`mayfly:allow`), and by path (rules enabled
//! or disabled per glob).

use std::collections::HashSet;
use std::path::Path;

use globset::{Glob, GlobMatcher, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::finding::{Finding, group};
use crate::fingerprint::FingerprintKey;

/// The comment that suppresses the findings on its line.
pub const INLINE_ALLOW: &str = "mayfly:allow";

/// Why a suppression file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SuppressError {
    /// The file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's message.
        reason: String,
    },
    /// The baseline is not a Mayfly baseline.
    #[error(
        "{path}: not a Mayfly baseline ({reason}); write one with `mayfly scan --write-baseline {path}`"
    )]
    BadBaseline {
        /// The file.
        path: String,
        /// The parser's message.
        reason: String,
    },
    /// The baseline was written under another fingerprint key.
    #[error(
        "{path} was written with fingerprint key {found}, but this scan uses key {current}; pass the key it was written with (--fingerprint-key FILE) or write a new baseline"
    )]
    KeyMismatch {
        /// The file.
        path: String,
        /// The key id in the file.
        found: String,
        /// The key id in use.
        current: String,
    },
    /// A line of an ignore file is malformed.
    #[error("{path}:{line}: {reason}")]
    BadIgnoreLine {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What to write instead.
        reason: String,
    },
    /// A glob in the configuration does not parse.
    #[error("bad glob {glob:?}: {reason}")]
    BadGlob {
        /// The glob.
        glob: String,
        /// The parser's message.
        reason: String,
    },
}

/// One secret recorded in a baseline.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineEntry {
    /// The secret's fingerprint.
    pub fingerprint: String,
    /// The rule that found it (for people).
    pub rule: String,
    /// Where its copies were when the baseline was written (for people).
    pub locations: Vec<String>,
}

/// Secrets known and accepted at some point: a later scan reports only
/// secrets not in it, wherever their copies have moved.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    /// Format version.
    pub mayfly_baseline: u32,
    /// The id of the fingerprint key the entries were computed under.
    pub key_id: String,
    /// The accepted secrets.
    pub secrets: Vec<BaselineEntry>,
}

impl Baseline {
    /// A baseline of every secret in `findings`.
    pub fn from_findings(findings: &[Finding], key: &FingerprintKey) -> Self {
        let secrets = group(findings)
            .into_iter()
            .map(|g| BaselineEntry {
                fingerprint: g.fingerprint.to_hex(),
                rule: g.rule.id.clone(),
                locations: g.locations.iter().map(|l| l.display()).collect(),
            })
            .collect();
        Baseline {
            mayfly_baseline: 1,
            key_id: key.key_id(),
            secrets,
        }
    }

    /// Reads a baseline and checks it was written under `key`.
    pub fn read(path: &Path, key: &FingerprintKey) -> Result<Self, SuppressError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SuppressError::Io {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let baseline: Baseline =
            serde_json::from_str(&text).map_err(|e| SuppressError::BadBaseline {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
        if baseline.key_id != key.key_id() {
            return Err(SuppressError::KeyMismatch {
                path: shown,
                found: baseline.key_id,
                current: key.key_id(),
            });
        }
        Ok(baseline)
    }

    /// Writes the baseline as pretty JSON, atomically (temporary file, then rename).
    pub fn write(&self, path: &Path) -> Result<(), SuppressError> {
        let io = |e: std::io::Error| SuppressError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let mut text =
            serde_json::to_string_pretty(self).map_err(|e| io(std::io::Error::other(e)))?;
        text.push('\n');
        let tmp = path.with_extension("mayfly-tmp");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// Fingerprints (full, or a prefix of at least 12 hex digits) that a team
/// has reviewed, each with the reason it is safe.
#[derive(Debug, Clone, Default)]
pub struct IgnoreList {
    entries: Vec<(String, String)>,
}

impl IgnoreList {
    /// Parses an ignore file: `FINGERPRINT reason...` per line, `#` comments.
    pub fn parse(text: &str, origin: &str) -> Result<Self, SuppressError> {
        let mut entries = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: &str| SuppressError::BadIgnoreLine {
                path: origin.to_owned(),
                line: number + 1,
                reason: reason.to_owned(),
            };
            let (fingerprint, reason) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let fingerprint = fingerprint.to_ascii_lowercase();
            if fingerprint.len() < 12
                || fingerprint.len() > 64
                || !fingerprint.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(bad(
                    "expected a fingerprint (12 to 64 hex digits, as `mayfly scan` prints it) then a reason",
                ));
            }
            let reason = reason.trim().trim_start_matches('#').trim();
            if reason.is_empty() {
                return Err(bad(
                    "say why this secret is safe to ignore, after the fingerprint",
                ));
            }
            entries.push((fingerprint, reason.to_owned()));
        }
        Ok(IgnoreList { entries })
    }

    /// Reads and appends an ignore file.
    pub fn add_file(&mut self, path: &Path) -> Result<(), SuppressError> {
        let text = std::fs::read_to_string(path).map_err(|e| SuppressError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let more = IgnoreList::parse(&text, &path.display().to_string())?;
        self.entries.extend(more.entries);
        Ok(())
    }

    /// The reason `fingerprint` (hex) is ignored, if it is.
    pub fn reason(&self, fingerprint: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(prefix, _)| fingerprint.starts_with(prefix.as_str()))
            .map(|(_, reason)| reason.as_str())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Rules enabled or disabled under path globs; later entries win.
#[derive(Debug, Clone, Default)]
pub struct PathRules {
    entries: Vec<PathRuleEntry>,
}

#[derive(Debug, Clone)]
struct PathRuleEntry {
    paths: GlobSet,
    enable: Vec<GlobMatcher>,
    disable: Vec<GlobMatcher>,
}

fn compile_globs(globs: &[String]) -> Result<Vec<GlobMatcher>, SuppressError> {
    globs
        .iter()
        .map(|g| {
            Glob::new(g)
                .map(|g| g.compile_matcher())
                .map_err(|e| SuppressError::BadGlob {
                    glob: g.clone(),
                    reason: e.to_string(),
                })
        })
        .collect()
}

impl PathRules {
    /// Adds an entry: under any of `paths`, rules whose id matches a glob of
    /// `disable` are off and those matching `enable` are on.
    pub fn push(
        &mut self,
        paths: &[String],
        enable: &[String],
        disable: &[String],
    ) -> Result<(), SuppressError> {
        let mut set = GlobSetBuilder::new();
        for path in paths {
            // A pattern without a slash matches at any depth, like .gitignore.
            let pattern = if path.contains('/') {
                path.clone()
            } else {
                format!("**/{path}")
            };
            set.add(Glob::new(&pattern).map_err(|e| SuppressError::BadGlob {
                glob: path.clone(),
                reason: e.to_string(),
            })?);
        }
        let paths = set.build().map_err(|e| SuppressError::BadGlob {
            glob: paths.join(", "),
            reason: e.to_string(),
        })?;
        self.entries.push(PathRuleEntry {
            paths,
            enable: compile_globs(enable)?,
            disable: compile_globs(disable)?,
        });
        Ok(())
    }

    /// Whether `rule_id` is enabled at `path`, given its state elsewhere.
    pub fn enabled(&self, rule_id: &str, path: &str, default: bool) -> bool {
        let path = path.strip_prefix("./").unwrap_or(path);
        let mut state = default;
        for entry in &self.entries {
            if entry.paths.is_match(path) {
                if entry.disable.iter().any(|g| g.is_match(rule_id)) {
                    state = false;
                }
                if entry.enable.iter().any(|g| g.is_match(rule_id)) {
                    state = true;
                }
            }
        }
        state
    }

    /// True when no entry is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Counts of what each suppression removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Suppressed {
    /// Copies of secrets listed in the baseline.
    pub baseline: u64,
    /// Copies of secrets listed in an ignore file.
    pub ignore_file: u64,
    /// Copies on a line with `mayfly:allow`.
    pub inline: u64,
    /// Copies where the rule is disabled for the path.
    pub path_rule: u64,
}

/// Removes findings whose secret is in `baseline` or `ignore`, counting them.
pub fn apply(
    findings: &mut Vec<Finding>,
    baseline: Option<&Baseline>,
    ignore: &IgnoreList,
    counts: &mut Suppressed,
) {
    let accepted: HashSet<&str> = baseline
        .map(|b| b.secrets.iter().map(|e| e.fingerprint.as_str()).collect())
        .unwrap_or_default();
    findings.retain(|finding| {
        let hex = finding.fingerprint.to_hex();
        if accepted.contains(hex.as_str()) {
            counts.baseline += 1;
            false
        } else if ignore.reason(&hex).is_some() {
            counts.ignore_file += 1;
            false
        } else {
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_file_needs_reasons() {
        let ok = IgnoreList::parse(
            "# reviewed\n0123456789abcdef revoked in 2024\n",
            ".mayflyignore",
        )
        .unwrap();
        assert_eq!(ok.reason("0123456789abcdef00"), Some("revoked in 2024"));
        assert_eq!(ok.reason("ffff"), None);
        let err = IgnoreList::parse("0123456789abcdef\n", ".mayflyignore").unwrap_err();
        assert!(err.to_string().contains(".mayflyignore:1"), "{err}");
        assert!(IgnoreList::parse("nothex reason\n", "f").is_err());
    }

    #[test]
    fn path_rules_last_wins() {
        let mut rules = PathRules::default();
        rules
            .push(&["tests/**".into()], &[], &["generic-*".into()])
            .unwrap();
        rules
            .push(&["tests/keep/**".into()], &["generic-password".into()], &[])
            .unwrap();
        assert!(!rules.enabled("generic-token", "tests/a.py", true));
        assert!(rules.enabled("generic-password", "tests/keep/a.py", true));
        assert!(!rules.enabled("generic-token", "tests/keep/a.py", true));
        assert!(rules.enabled("generic-token", "src/a.py", true));
        assert!(!rules.enabled("generic-token", "./tests/a.py", true));
    }
}
