//! The inventory: turns scan reports into records the store merges, so a
//! scan (a snapshot) becomes the lasting picture: which secrets exist,
//! where every copy is, who owns it, since when, and what was decided.

pub mod govern;
pub mod owners;
pub mod report;

use mayfly_scan::scan::ScanReport;
use mayfly_store::{CopyRecord, ScanRecord, Timestamp};

pub use owners::{OwnerMap, OwnersError, decide_ownership};

/// A scanned root: how its paths appear in findings, and its owners.
#[derive(Debug)]
pub struct Root {
    /// The prefix of findings' paths under this root (`""` for `.`, `repo/` for `repo`).
    pub prefix: String,
    /// Ownership rules found in the root.
    pub owners: OwnerMap,
}

/// The record of a scan of `source` made at `at`: one entry per copy,
/// keyed by fingerprint, with its owner claim; no plaintext leaves the report.
pub fn scan_record(report: &ScanReport, source: &str, at: Timestamp, roots: &[Root]) -> ScanRecord {
    let copies = report
        .findings
        .iter()
        .map(|finding| {
            let location = &finding.location;
            let commit = location.commit.as_ref();
            let root = roots
                .iter()
                .filter(|r| location.path.starts_with(&r.prefix))
                .max_by_key(|r| r.prefix.len());
            let author = commit.map(|c| {
                if c.email.is_empty() {
                    c.author.clone()
                } else {
                    format!("{} <{}>", c.author, c.email)
                }
            });
            let owner_claim = root.and_then(|r| {
                let relative = location
                    .path
                    .strip_prefix(&r.prefix)
                    .unwrap_or(&location.path);
                r.owners
                    .claim(relative, &finding.rule.provider, author.as_deref())
            });
            CopyRecord {
                fingerprint: finding.fingerprint.to_hex(),
                rule_id: finding.rule.id.clone(),
                provider: finding.rule.provider.clone(),
                severity: finding.rule.severity.as_str().to_owned(),
                path: match &location.cell {
                    Some(cell) => format!(
                        "{}#{}.{}[{}]",
                        location.path, cell.table, cell.column, cell.row
                    ),
                    None => location.path.clone(),
                },
                line: i64::try_from(location.line).unwrap_or(i64::MAX),
                column: i64::try_from(location.column).unwrap_or(i64::MAX),
                surface: location.surface.as_str().to_owned(),
                commit_id: commit.map(|c| c.id.clone()),
                author: commit.map(|c| c.author.clone()),
                author_email: commit.map(|c| c.email.clone()),
                committed_at: commit.map(|c| c.time),
                owner_claim,
            }
        })
        .collect();
    ScanRecord {
        source: source.to_owned(),
        at,
        copies,
    }
}
