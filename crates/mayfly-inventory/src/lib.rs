//! The inventory: turns scan reports into records the store merges, so a
//! scan (a snapshot) becomes the lasting picture: which secrets exist,
//! where every copy is, since when, and what was decided about each.

use mayfly_scan::scan::ScanReport;
use mayfly_store::{CopyRecord, ScanRecord, Timestamp};

/// The record of a scan of `source` made at `at`: one entry per copy,
/// keyed by fingerprint; no plaintext ever leaves the report.
pub fn scan_record(report: &ScanReport, source: &str, at: Timestamp) -> ScanRecord {
    let copies = report
        .findings
        .iter()
        .map(|finding| {
            let location = &finding.location;
            let commit = location.commit.as_ref();
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
            }
        })
        .collect();
    ScanRecord {
        source: source.to_owned(),
        at,
        copies,
    }
}
