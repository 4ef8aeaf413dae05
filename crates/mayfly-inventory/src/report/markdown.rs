//! The report as Markdown, for tickets and wikis.

use std::fmt::Write as _;

use super::{
    AGE_BUCKETS, ReportInput, action_text, counts, csf_rows, figures, nhi_rows, severity_rows,
    short,
};

fn table_md(out: &mut String, headers: &[&str], rows: &[Vec<String>]) {
    let cell = |s: &str| s.replace('|', "\\|");
    let _ = writeln!(out, "| {} |", headers.join(" | "));
    let _ = writeln!(out, "|{}", " --- |".repeat(headers.len()));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
}

/// The Markdown report.
pub fn markdown(input: &ReportInput<'_>) -> String {
    let f = figures(input);
    let mut out = format!(
        "# Mayfly secrets report\n\nGenerated {} (UTC). Fingerprints are keyed hashes: no secret is in this report.\n\n\
         - **{}** open secrets in **{}** copies\n- **{}** with ownership unclear (rotate or revoke)\n- **{}** with actions due\n- **{}** resolved\n\n",
        mayfly_scan::time::date(input.now),
        input.secrets.len(),
        f.copies,
        f.unclear.len(),
        input.plan.len(),
        input.resolved
    );
    out.push_str("## By severity\n\n");
    table_md(&mut out, &["severity", "secrets"], &severity_rows(&f));
    out.push_str("## Actions due\n\n");
    if input.plan.is_empty() {
        out.push_str("Nothing is due.\n\n");
    }
    for plan in input.plan {
        let _ = writeln!(
            out,
            "### {} `{}` ({}, {}, {} copies, notify {})\n",
            plan.severity,
            short(&plan.fingerprint),
            plan.rule_id,
            plan.provider,
            plan.copies,
            plan.notify
        );
        for action in &plan.actions {
            let copy = action
                .copy
                .as_deref()
                .map(|c| format!(" `{}`", c.replace('`', "'")))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "- **{}**{copy}: {} [{}; {}]",
                action_text(action.action),
                action.reason,
                action.rule,
                action.nhi.join(", ")
            );
        }
        out.push('\n');
    }
    out.push_str("## By provider\n\n");
    table_md(&mut out, &["provider", "secrets"], &counts(&f.by_provider));
    out.push_str("## By surface\n\n");
    table_md(&mut out, &["surface", "copies"], &counts(&f.by_surface));
    out.push_str("## By owner\n\n");
    table_md(&mut out, &["owner", "secrets"], &counts(&f.by_owner));
    out.push_str("## Age\n\n");
    let ages: Vec<Vec<String>> = AGE_BUCKETS
        .iter()
        .zip(f.ages)
        .map(|(l, c)| vec![(*l).to_owned(), c.to_string()])
        .collect();
    table_md(&mut out, &["first seen", "secrets"], &ages);
    out.push_str("## Secrets with the most copies\n\n");
    for &i in &f.top {
        let Some((secret, copies)) = input.secrets.get(i) else {
            continue;
        };
        let _ = writeln!(
            out,
            "### {} `{}` ({}, {} copies)\n",
            secret.severity,
            short(&secret.fingerprint),
            secret.rule_id,
            copies.len()
        );
        for copy in copies.iter().take(20) {
            let _ = writeln!(
                out,
                "- `{}:{}` ({})",
                copy.shown_path().replace('`', "'"),
                copy.line,
                copy.surface
            );
        }
        out.push('\n');
    }
    out.push_str("## OWASP Non-Human Identities Top 10\n\n");
    let nhi_rows = nhi_rows(&f);
    table_md(&mut out, &["item", "risk", "open secrets"], &nhi_rows);
    out.push_str("## NIST CSF 2.0\n\n");
    table_md(
        &mut out,
        &["category", "name", "evidence"],
        &csf_rows(input, &f),
    );
    out
}
