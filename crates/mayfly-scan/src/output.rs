//! Output formats: a readable report, JSON (stable schema `mayfly.scan/v1`),
//! SARIF 2.1.0 and CSV. Every format groups copies by secret and shows the
//! plaintext only when the scan was asked to keep it.

mod csv;
mod json;
mod sarif;
mod text;

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::str::FromStr;
use std::time::Duration;

use crate::finding::SecretGroup;
use crate::scan::ScanReport;

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A readable report grouped by secret.
    Text,
    /// JSON, schema `mayfly.scan/v1` (docs/json-schema.md).
    Json,
    /// SARIF 2.1.0 for code-scanning tools.
    Sarif,
    /// One row per copy.
    Csv,
}

impl Format {
    /// The format's name, as `--format` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Json => "json",
            Format::Sarif => "sarif",
            Format::Csv => "csv",
        }
    }
}

/// How many distinct secrets (fingerprints) `findings` hold.
pub fn group_count(findings: &[crate::finding::Finding]) -> usize {
    let mut fingerprints: Vec<_> = findings.iter().map(|f| f.fingerprint).collect();
    fingerprints.sort_unstable();
    fingerprints.dedup();
    fingerprints.len()
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            "sarif" => Ok(Format::Sarif),
            "csv" => Ok(Format::Csv),
            other => Err(format!(
                "unknown format {other:?}: use text, json, sarif or csv"
            )),
        }
    }
}

/// Facts about the run that outputs print beside the findings.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The tool's version.
    pub version: String,
    /// The fingerprint key's public id.
    pub key_id: String,
    /// Wall time, when it should be shown (left out of reproducible output).
    pub elapsed: Option<Duration>,
    /// The configuration files the scan read (named in the text summary).
    pub configs: Vec<String>,
}

/// Writes `report` in `format`.
pub fn write(
    format: Format,
    report: &ScanReport,
    run: &RunInfo,
    out: &mut dyn Write,
) -> io::Result<()> {
    let groups = crate::finding::group(&report.findings);
    match format {
        Format::Text => text::write(&groups, report, run, out),
        Format::Json => json::write(&groups, report, run, out),
        Format::Sarif => sarif::write(&groups, run, out),
        Format::Csv => csv::write(&groups, out),
    }
}

/// Copies per surface and per rule, for the summaries.
pub(crate) struct Counts {
    pub by_surface: BTreeMap<&'static str, u64>,
    pub by_rule: BTreeMap<String, u64>,
    pub by_severity: BTreeMap<&'static str, u64>,
    pub copies: u64,
}

pub(crate) fn counts(groups: &[SecretGroup<'_>]) -> Counts {
    let mut counts = Counts {
        by_surface: BTreeMap::new(),
        by_rule: BTreeMap::new(),
        by_severity: BTreeMap::new(),
        copies: 0,
    };
    for group in groups {
        for location in &group.locations {
            *counts
                .by_surface
                .entry(location.surface.as_str())
                .or_default() += 1;
            *counts.by_rule.entry(group.rule.id.clone()).or_default() += 1;
            *counts
                .by_severity
                .entry(group.rule.severity.as_str())
                .or_default() += 1;
            counts.copies += 1;
        }
    }
    counts
}
