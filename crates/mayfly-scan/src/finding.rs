//! Findings, their locations, and the grouping of copies into secrets.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::decode::Decoder;
use crate::fingerprint::Fingerprint;
use crate::rule::RuleInfo;
use crate::surface::Surface;

/// A cell of a database table that holds a copy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Cell {
    /// The table.
    pub table: String,
    /// The column.
    pub column: String,
    /// The row's `rowid`, or its position for tables without one.
    pub row: i64,
}

/// The commit that introduced a copy found in git history.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Commit {
    /// Full commit id.
    pub id: String,
    /// Author name.
    pub author: String,
    /// Author email.
    pub email: String,
    /// Author time, seconds since the epoch.
    pub time: i64,
    /// Author time, RFC 3339 UTC.
    pub date: String,
}

/// How a copy was recognised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FoundBy {
    /// A rule matched it there.
    #[default]
    Rule,
    /// It is the value of a secret found elsewhere in the scan (or held in
    /// custody), standing where no rule matches: a sentence, a log line, a
    /// cell, an encoded view.
    Copy,
}

impl FoundBy {
    /// The name used in every output format.
    pub fn as_str(self) -> &'static str {
        match self {
            FoundBy::Rule => "rule",
            FoundBy::Copy => "copy",
        }
    }

    fn is_rule(&self) -> bool {
        *self == FoundBy::Rule
    }
}

/// Where one copy of a secret is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Location {
    /// The file (as given or walked), or `-` for standard input.
    pub path: String,
    /// 1-based line of the text that holds the copy (inside the cell for databases).
    pub line: u64,
    /// 1-based byte column of that text.
    pub column: u64,
    /// The kind of place.
    pub surface: Surface,
    /// The decoding that revealed the copy, if it was encoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decoder: Option<Decoder>,
    /// The database cell, for copies in SQLite files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cell: Option<Cell>,
    /// The commit that introduced the copy (git history scans).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<Commit>,
    /// The git blob that holds the copy (git scans).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
    /// Whether the secret is still in HEAD's tree (git history scans);
    /// false means "removed, but live until rotated".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub present_at_head: Option<bool>,
    /// The tool that owns the file (workstation scans).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// A working-tree file not committed as it is (`--git` scans, which
    /// read history and these).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub uncommitted: bool,
    /// How the copy was recognised (`rule` unless the copies pass found it).
    #[serde(skip_serializing_if = "FoundBy::is_rule")]
    pub found_by: FoundBy,
}

impl Location {
    /// `path:line:column`, or `path#table.column[row]:line:column` in a database.
    pub fn display(&self) -> String {
        match &self.cell {
            Some(cell) => format!(
                "{}#{}.{}[{}]:{}:{}",
                self.path, cell.table, cell.column, cell.row, self.line, self.column
            ),
            None => format!("{}:{}:{}", self.path, self.line, self.column),
        }
    }
}

/// One copy of a secret found by one rule.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The rule that recognised it.
    pub rule: Arc<RuleInfo>,
    /// The keyed fingerprint: equal for every copy of the same secret.
    pub fingerprint: Fingerprint,
    /// A redacted preview that identifies the credential to its owner
    /// without disclosing it.
    pub preview: String,
    /// The plaintext, only when the user asked for it (`--show-secrets`).
    pub secret: Option<String>,
    /// Where it is.
    pub location: Location,
    /// The custody entry that holds this secret's value, when it does: a
    /// copy outside custody is a custody key exposed.
    pub custody: Option<String>,
    /// What the provider said of this secret (`--validate`).
    pub validation: Option<Validation>,
    /// The plaintext, kept in memory for the copies pass (confident rules)
    /// and validation (rules with a verifier); never serialised.
    pub(crate) value: Option<crate::copies::SecretBytes>,
}

impl Finding {
    /// The plaintext kept in memory for the copies pass and validation,
    /// if this finding's rule needs it.
    pub fn value(&self) -> Option<&crate::copies::SecretBytes> {
        self.value.as_ref()
    }
}

/// Whether a secret still works, as its provider answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Liveness {
    /// The provider accepted it: anyone holding a copy can use it.
    Live,
    /// The answer did not settle it (rate limited, timed out, an error,
    /// an answer the verifier does not know).
    Unknown,
    /// The provider refused it: revoked, expired or never valid.
    Dead,
}

impl Liveness {
    /// The name used in every output format.
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Live => "live",
            Liveness::Unknown => "unknown",
            Liveness::Dead => "dead",
        }
    }
}

/// The verdict of one validation. Only the verdict is kept, never the
/// provider's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Validation {
    /// Live, dead or unknown.
    pub status: Liveness,
    /// The verifier that asked (`github-user`).
    pub verifier: String,
    /// The provider's host that was asked.
    pub host: String,
    /// When, RFC 3339 UTC.
    pub checked_at: String,
    /// When, seconds since the epoch.
    #[serde(skip)]
    pub at: i64,
    /// Why the verdict is unknown (or what the status was), when it helps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Redacts a secret for display: the first line of a PEM block, or a
/// fifth of the characters (at most 8), then stars.
pub fn redact(secret: &[u8]) -> String {
    let text = String::from_utf8_lossy(secret);
    if let Some(rest) = text.strip_prefix("-----BEGIN") {
        let header_end = rest.find("-----").map_or(rest.len(), |i| i + 5);
        return format!(
            "-----BEGIN{} ****",
            rest.get(..header_end).unwrap_or_default()
        );
    }
    if let Some(kind) = text.strip_prefix("PuTTY-User-Key-File-") {
        let kind: String = kind.chars().take_while(|c| !c.is_whitespace()).collect();
        return format!("PuTTY-User-Key-File-{kind} ****");
    }
    let chars: Vec<char> = text.chars().collect();
    let shown = (chars.len() / 5).min(8);
    let mut preview: String = chars.iter().take(shown).collect();
    preview.push_str(&"*".repeat((chars.len() - shown).clamp(4, 12)));
    preview
}

/// All copies of one secret: findings that share a fingerprint.
#[derive(Debug, Clone, Serialize)]
pub struct SecretGroup<'a> {
    /// The shared fingerprint.
    pub fingerprint: Fingerprint,
    /// The rule of the first copy (copies found by several rules keep the most specific).
    pub rule: &'a RuleInfo,
    /// Redacted preview.
    pub preview: &'a str,
    /// Plaintext, only when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<&'a str>,
    /// The custody entry holding this value: every copy listed is a
    /// custody key exposed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custody: Option<&'a str>,
    /// What the provider said (`--validate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<&'a Validation>,
    /// The distinct surfaces its copies live on.
    pub surfaces: Vec<Surface>,
    /// Every copy, sorted by path and line.
    pub locations: Vec<&'a Location>,
}

/// Groups findings into secrets: most copies first, then by severity and id.
pub fn group(findings: &[Finding]) -> Vec<SecretGroup<'_>> {
    let mut by_fingerprint: BTreeMap<Fingerprint, Vec<&Finding>> = BTreeMap::new();
    for finding in findings {
        by_fingerprint
            .entry(finding.fingerprint)
            .or_default()
            .push(finding);
    }
    let mut groups: Vec<SecretGroup<'_>> = by_fingerprint
        .into_iter()
        .filter_map(|(fingerprint, mut copies)| {
            copies.sort_by(|a, b| a.location.cmp(&b.location));
            // The group is named by a rule that matched, not by the copies pass.
            let first = copies
                .iter()
                .find(|f| f.location.found_by == FoundBy::Rule)
                .or(copies.first())?;
            let mut locations: Vec<&Location> = copies.iter().map(|f| &f.location).collect();
            locations.dedup();
            let mut surfaces: Vec<Surface> = locations.iter().map(|l| l.surface).collect();
            surfaces.sort();
            surfaces.dedup();
            Some(SecretGroup {
                fingerprint,
                rule: &first.rule,
                preview: &first.preview,
                secret: first.secret.as_deref(),
                custody: copies.iter().find_map(|f| f.custody.as_deref()),
                validation: copies.iter().find_map(|f| f.validation.as_ref()),
                surfaces,
                locations,
            })
        })
        .collect();
    // Live secrets first: they are the ones to act on now.
    let live = |g: &SecretGroup<'_>| g.validation.map(|v| v.status) != Some(Liveness::Live);
    groups.sort_by(|a, b| {
        live(a).cmp(&live(b)).then(
            b.locations
                .len()
                .cmp(&a.locations.len())
                .then(b.rule.severity.cmp(&a.rule.severity))
                .then(a.rule.id.cmp(&b.rule.id))
                .then(a.locations.first().cmp(&b.locations.first())),
        )
    });
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_the_body() {
        let token = "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"; // mayfly:allow (test fixture)
        let preview = redact(token.as_bytes());
        assert!(preview.starts_with("ghp_aUUy"));
        assert!(!preview.contains("DGa43yXd8M"));
        assert_eq!(
            redact(b"-----BEGIN RSA PRIVATE KEY-----\nMIIE"),
            "-----BEGIN RSA PRIVATE KEY----- ****"
        );
        assert_eq!(redact(b"hunter22"), "h*******");
    }
}
