//! JSON output, schema `mayfly.scan/v1`.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;

use super::{RunInfo, counts};
use crate::finding::SecretGroup;
use crate::scan::{ScanReport, ScanStats};

#[derive(Serialize)]
struct Document<'a> {
    schema: &'static str,
    tool: Tool<'a>,
    key_id: &'a str,
    summary: Summary,
    secrets: &'a [SecretGroup<'a>],
    coverage: &'a ScanStats,
}

#[derive(Serialize)]
struct Tool<'a> {
    name: &'static str,
    version: &'a str,
}

#[derive(Serialize)]
struct Summary {
    secrets: usize,
    copies: u64,
    by_surface: BTreeMap<&'static str, u64>,
    by_rule: BTreeMap<String, u64>,
    by_severity: BTreeMap<&'static str, u64>,
}

pub(super) fn write(
    groups: &[SecretGroup<'_>],
    report: &ScanReport,
    run: &RunInfo,
    out: &mut dyn Write,
) -> io::Result<()> {
    let counts = counts(groups);
    let document = Document {
        schema: "mayfly.scan/v1",
        tool: Tool {
            name: "mayfly",
            version: &run.version,
        },
        key_id: &run.key_id,
        summary: Summary {
            secrets: groups.len(),
            copies: counts.copies,
            by_surface: counts.by_surface,
            by_rule: counts.by_rule,
            by_severity: counts.by_severity,
        },
        secrets: groups,
        coverage: &report.stats,
    };
    serde_json::to_writer_pretty(&mut *out, &document).map_err(io::Error::other)?;
    writeln!(out)
}
