//! The readable report: one block per secret, its copies below it, then
//! the summaries and what could not be scanned.

use std::io::{self, Write};

use super::{RunInfo, counts};
use crate::finding::{FoundBy, Liveness, SecretGroup};
use crate::scan::ScanReport;

fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let name = UNITS.get(unit).copied().unwrap_or("B");
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {name}")
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Most entries a summary line names; the rest are counted.
const SUMMARY_ENTRIES: usize = 10;

/// `name count` pairs for a summary line: all of them in name order, or,
/// when there are many, the most frequent with a count of the rest.
fn joined<'a>(pairs: impl Iterator<Item = (&'a str, u64)>) -> String {
    let mut pairs: Vec<(&str, u64)> = pairs.collect();
    let more = pairs.len().saturating_sub(SUMMARY_ENTRIES);
    if more > 0 {
        pairs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        pairs.truncate(SUMMARY_ENTRIES);
    }
    let mut line = pairs
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    if more > 0 {
        line.push_str(&format!(" and {more} more"));
    }
    line
}

pub(super) fn write(
    groups: &[SecretGroup<'_>],
    report: &ScanReport,
    run: &RunInfo,
    out: &mut dyn Write,
) -> io::Result<()> {
    let counts = counts(groups);
    let stats = &report.stats;
    if groups.is_empty() && !stats.missing.is_empty() {
        let missing = plural(stats.missing.len() as u64, "path", "paths");
        if stats.files_scanned == 0 {
            writeln!(out, "mayfly: nothing scanned: {missing} not found")?;
        } else {
            writeln!(
                out,
                "mayfly: no secrets in what was read, but {missing} not found"
            )?;
        }
    } else if groups.is_empty() {
        writeln!(out, "mayfly: no secrets found")?;
    } else {
        writeln!(
            out,
            "mayfly: {} in {}",
            plural(groups.len() as u64, "secret", "secrets"),
            plural(counts.copies, "copy", "copies")
        )?;
    }
    for group in groups {
        writeln!(out)?;
        writeln!(
            out,
            "{:<8}  {} ({})",
            group.rule.severity.as_str(),
            group.rule.name,
            group.rule.id
        )?;
        writeln!(
            out,
            "  {}  fingerprint {}  {}",
            group.preview,
            group.fingerprint.short(),
            plural(group.locations.len() as u64, "copy", "copies")
        )?;
        if let Some(v) = group.validation {
            let reason = v
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            let verdict = match v.status {
                Liveness::Live => format!("LIVE: {} accepted it", v.host),
                Liveness::Dead => format!("dead: {} refused it", v.host),
                Liveness::Unknown => format!("validation unknown{reason}"),
            };
            writeln!(out, "  {verdict} ({}, {})", v.verifier, v.checked_at)?;
        }
        if let Some(entry) = group.custody {
            writeln!(
                out,
                "  CUSTODY KEY EXPOSED: this value is held in custody as {entry}; rotate it (mayfly custody rotate {entry}) and delete these copies"
            )?;
        }
        if let Some(secret) = group.secret {
            writeln!(out, "  secret: {secret}")?;
        }
        let width = group
            .locations
            .iter()
            .map(|l| l.display().len())
            .max()
            .unwrap_or(0);
        for location in &group.locations {
            let mut notes = location
                .decoder
                .map(|d| format!(" ({} encoded)", d.as_str()))
                .unwrap_or_default();
            if location.found_by == FoundBy::Copy {
                notes.push_str(" (copy: the value, where no rule matches)");
            }
            if let Some(tool) = &location.tool {
                notes.push_str(&format!(" [{tool}]"));
            }
            if let Some(commit) = &location.commit {
                notes.push_str(&format!(
                    "  commit {} {} {} <{}>",
                    commit.id.get(..10).unwrap_or(&commit.id),
                    commit.date.get(..10).unwrap_or(&commit.date),
                    commit.author,
                    commit.email
                ));
            }
            if location.uncommitted {
                notes.push_str("  (uncommitted)");
            }
            if location.present_at_head == Some(false) {
                notes.push_str("  (removed from HEAD, live until rotated)");
            }
            writeln!(
                out,
                "    {:<width$}  {}{notes}",
                location.display(),
                location.surface
            )?;
        }
    }
    writeln!(out)?;
    if !groups.is_empty() {
        writeln!(
            out,
            "by surface: {}",
            joined(counts.by_surface.iter().map(|(k, v)| (*k, *v)))
        )?;
        writeln!(
            out,
            "by rule:    {}",
            joined(counts.by_rule.iter().map(|(k, v)| (k.as_str(), *v)))
        )?;
    }
    let mut scanned = format!(
        "scanned {} ({})",
        plural(stats.files_scanned, "file", "files"),
        size(stats.bytes_scanned)
    );
    if stats.databases_scanned > 0 {
        scanned.push_str(&format!(
            ", {} ({})",
            plural(stats.databases_scanned, "database", "databases"),
            plural(stats.cells_scanned, "cell", "cells")
        ));
    }
    if stats.archives_scanned > 0 {
        scanned.push_str(&format!(
            ", {}",
            plural(stats.archives_scanned, "archive", "archives")
        ));
    }
    if let Some(elapsed) = run.elapsed {
        let secs = elapsed.as_secs_f64();
        scanned.push_str(&format!(" in {secs:.2} s"));
        if secs > 0.0 {
            scanned.push_str(&format!(
                " ({}/s)",
                size((stats.bytes_scanned as f64 / secs) as u64)
            ));
        }
    }
    writeln!(out, "{scanned}")?;
    let mut skipped = Vec::new();
    if stats.skipped_binary > 0 {
        skipped.push(plural(stats.skipped_binary, "binary file", "binary files"));
    }
    if stats.skipped_symlinks > 0 {
        skipped.push(format!(
            "{} (--follow-symlinks to follow)",
            plural(stats.skipped_symlinks, "symlink", "symlinks")
        ));
    }
    if stats.skipped_special > 0 {
        skipped.push(plural(
            stats.skipped_special,
            "device, pipe or socket",
            "devices, pipes or sockets",
        ));
    }
    if !stats.skipped_too_large.is_empty() {
        skipped.push(format!(
            "{} over the size limit (--max-file-size)",
            plural(stats.skipped_too_large.len() as u64, "file", "files")
        ));
    }
    if !skipped.is_empty() {
        writeln!(out, "skipped: {}", skipped.join(", "))?;
    }
    for file in stats.skipped_too_large.iter().take(20) {
        writeln!(out, "  too large: {} ({})", file.path, size(file.size))?;
    }
    let s = &stats.suppressed;
    let suppressed: Vec<String> = [
        (s.baseline, "by baseline"),
        (s.ignore_file, "by ignore file"),
        (s.inline, "inline (mayfly:allow)"),
        (s.path_rule, "by path rules"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, why)| format!("{n} {why}"))
    .collect();
    if !suppressed.is_empty() {
        writeln!(out, "suppressed: {}", suppressed.join(", "))?;
    }
    for miss in &stats.near_misses {
        writeln!(
            out,
            "near miss: {}:{}: {} looks like a {} ({}) but {}",
            miss.path, miss.line, miss.preview, miss.rule_name, miss.rule_id, miss.reason
        )?;
    }
    if !run.configs.is_empty() {
        writeln!(out, "configuration: {}", run.configs.join(", "))?;
    }
    for missing in &stats.missing {
        writeln!(out, "not found: {missing}")?;
    }
    for issue in stats.errors.iter().take(50) {
        writeln!(out, "could not scan {}: {}", issue.path, issue.error)?;
    }
    if stats.errors.len() > 50 {
        writeln!(
            out,
            "... and {} more errors (see --format json)",
            stats.errors.len() - 50
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::joined;

    #[test]
    fn long_summaries_name_the_most_frequent_and_count_the_rest() {
        let names: Vec<String> = (0..25).map(|i| format!("rule-{i:02}")).collect();
        let line = joined(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_str(), i as u64)),
        );
        assert!(line.starts_with("rule-24 24, rule-23 23"), "{line}");
        assert!(line.ends_with(" and 15 more"), "{line}");
        assert_eq!(joined([("b", 1), ("a", 2)].into_iter()), "b 1, a 2");
    }
}
