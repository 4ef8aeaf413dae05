//! The report for a security lead: a self-contained HTML page (no network,
//! no script) or Markdown, built from the inventory and the governance plan.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use mayfly_store::{LocationRow, SecretRow, Timestamp};

use crate::govern::{ActionKind, SecretPlan};

/// Everything a report shows.
pub struct ReportInput<'a> {
    /// Open secrets with their live copies.
    pub secrets: &'a [(SecretRow, Vec<LocationRow>)],
    /// Secrets already rotated, revoked or accepted.
    pub resolved: usize,
    /// The governance plan for `secrets`.
    pub plan: &'a [SecretPlan],
    /// OWASP NHI items of a rule id (empty for unknown rules).
    pub nhi_of_rule: &'a dyn Fn(&str) -> Vec<String>,
    /// When the report is made.
    pub now: Timestamp,
}

const NHI_TITLES: [(&str, &str); 10] = [
    ("NHI1", "Improper Offboarding"),
    ("NHI2", "Secret Leakage"),
    ("NHI3", "Vulnerable Third-Party NHI"),
    ("NHI4", "Insecure Authentication"),
    ("NHI5", "Overprivileged NHI"),
    ("NHI6", "Insecure Cloud Deployment Configurations"),
    ("NHI7", "Long-Lived Secrets"),
    ("NHI8", "Environment Isolation"),
    ("NHI9", "NHI Reuse"),
    ("NHI10", "Human Use of NHI"),
];

/// The computed figures, shared by both formats.
struct Figures {
    copies: usize,
    by_provider: BTreeMap<String, usize>,
    by_surface: BTreeMap<String, usize>,
    by_owner: BTreeMap<String, usize>,
    unclear: Vec<usize>,
    top: Vec<usize>,
    ages: [usize; 5],
    nhi: BTreeMap<String, usize>,
    rotate_or_revoke: usize,
    rotate: usize,
    custody: usize,
    delete_copies: usize,
}

const AGE_BUCKETS: [&str; 5] = [
    "under 7 days",
    "7 to 30 days",
    "30 to 90 days",
    "90 to 365 days",
    "over a year",
];

fn figures(input: &ReportInput<'_>) -> Figures {
    let mut f = Figures {
        copies: 0,
        by_provider: BTreeMap::new(),
        by_surface: BTreeMap::new(),
        by_owner: BTreeMap::new(),
        unclear: Vec::new(),
        top: Vec::new(),
        ages: [0; 5],
        nhi: BTreeMap::new(),
        rotate_or_revoke: 0,
        rotate: 0,
        custody: 0,
        delete_copies: 0,
    };
    for (index, (secret, copies)) in input.secrets.iter().enumerate() {
        f.copies += copies.len();
        *f.by_provider.entry(secret.provider.clone()).or_default() += 1;
        for copy in copies {
            *f.by_surface.entry(copy.surface.clone()).or_default() += 1;
        }
        let owner = secret
            .owner
            .clone()
            .unwrap_or_else(|| "(unclear)".to_owned());
        *f.by_owner.entry(owner).or_default() += 1;
        if secret.owner.is_none() {
            f.unclear.push(index);
        }
        let days = (input.now - secret.first_seen) / 86_400;
        let bucket = match days {
            d if d < 7 => 0,
            d if d < 30 => 1,
            d if d < 90 => 2,
            d if d < 365 => 3,
            _ => 4,
        };
        if let Some(slot) = f.ages.get_mut(bucket) {
            *slot += 1;
        }
        for item in (input.nhi_of_rule)(&secret.rule_id) {
            *f.nhi.entry(item).or_default() += 1;
        }
    }
    let mut order: Vec<usize> = (0..input.secrets.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(input.secrets.get(i).map_or(0, |s| s.1.len())));
    f.top = order.into_iter().take(10).collect();
    for plan in input.plan {
        for action in &plan.actions {
            match action.action {
                ActionKind::RotateOrRevoke => f.rotate_or_revoke += 1,
                ActionKind::Rotate => f.rotate += 1,
                ActionKind::MoveIntoCustody => f.custody += 1,
                ActionKind::DeleteCopy => f.delete_copies += 1,
            }
        }
    }
    f
}

/// Escapes text for HTML element content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

fn short(fingerprint: &str) -> &str {
    fingerprint.get(..12).unwrap_or(fingerprint)
}

fn table_html(out: &mut String, id: &str, headers: &[&str], rows: &[Vec<String>]) {
    let _ = write!(out, "<table id=\"{id}\"><thead><tr>");
    for h in headers {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", esc(cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

/// A small graph: the secret, its surfaces, and the paths under each.
fn copy_graph(secret: &SecretRow, copies: &[LocationRow]) -> String {
    let mut by_surface: BTreeMap<&str, Vec<&LocationRow>> = BTreeMap::new();
    for copy in copies {
        by_surface
            .entry(copy.surface.as_str())
            .or_default()
            .push(copy);
    }
    let mut leaves: Vec<(usize, String)> = Vec::new();
    let mut surface_rows: Vec<(String, f64)> = Vec::new();
    for (surface_index, (surface, list)) in by_surface.iter().enumerate() {
        let first = leaves.len();
        for copy in list.iter().take(6) {
            leaves.push((surface_index, format!("{}:{}", copy.path, copy.line)));
        }
        if list.len() > 6 {
            leaves.push((surface_index, format!("... {} more", list.len() - 6)));
        }
        let middle = (first + leaves.len().saturating_sub(1)) as f64 / 2.0;
        surface_rows.push(((*surface).to_owned(), middle));
    }
    let row_height = 22.0;
    let height = (leaves.len().max(1) as f64) * row_height + 10.0;
    let center = height / 2.0;
    let mut svg = format!(
        "<svg class=\"graph\" role=\"img\" aria-label=\"copies of {}\" width=\"760\" height=\"{height:.0}\" viewBox=\"0 0 760 {height:.0}\">",
        esc(short(&secret.fingerprint))
    );
    let _ = write!(
        svg,
        "<rect x=\"4\" y=\"{:.0}\" width=\"150\" height=\"22\" rx=\"4\" class=\"node-secret\"/><text x=\"10\" y=\"{:.0}\">{}</text>",
        center - 11.0,
        center + 4.0,
        esc(&secret.rule_id.chars().take(22).collect::<String>())
    );
    for (surface, middle) in &surface_rows {
        let y = 5.0 + middle * row_height + 11.0;
        let _ = write!(
            svg,
            "<line x1=\"154\" y1=\"{center:.0}\" x2=\"220\" y2=\"{y:.0}\" class=\"edge\"/><rect x=\"220\" y=\"{:.0}\" width=\"120\" height=\"20\" rx=\"4\" class=\"node-surface\"/><text x=\"226\" y=\"{:.0}\">{}</text>",
            y - 10.0,
            y + 4.0,
            esc(surface)
        );
    }
    for (row, (surface_index, label)) in leaves.iter().enumerate() {
        let y = 5.0 + row as f64 * row_height + 11.0;
        let from = surface_rows
            .get(*surface_index)
            .map_or(center, |(_, m)| 5.0 + m * row_height + 11.0);
        let label: String = label.chars().take(60).collect();
        let _ = write!(
            svg,
            "<line x1=\"340\" y1=\"{from:.0}\" x2=\"380\" y2=\"{y:.0}\" class=\"edge\"/><text x=\"384\" y=\"{:.0}\" class=\"leaf\">{}</text>",
            y + 4.0,
            esc(&label)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn csf_rows(input: &ReportInput<'_>, f: &Figures) -> Vec<Vec<String>> {
    let owned = input.secrets.len() - f.unclear.len();
    vec![
        vec![
            "ID.AM".into(),
            "Asset Management".into(),
            format!(
                "{} open secrets and {} copies inventoried by fingerprint; {} resolved",
                input.secrets.len(),
                f.copies,
                input.resolved
            ),
        ],
        vec![
            "PR.AA".into(),
            "Identity Management, Authentication and Access Control".into(),
            format!(
                "{} secrets to rotate, {} to rotate or revoke, {} to move into custody",
                f.rotate, f.rotate_or_revoke, f.custody
            ),
        ],
        vec![
            "GV.RR".into(),
            "Roles, Responsibilities and Authorities".into(),
            format!(
                "{owned} secrets with an owner, {} with ownership unclear",
                f.unclear.len()
            ),
        ],
        vec![
            "RS.MI".into(),
            "Incident Mitigation".into(),
            format!(
                "{} copies to delete from forbidden surfaces; {} secrets with actions due",
                f.delete_copies,
                input.plan.len()
            ),
        ],
    ]
}

fn nhi_rows(f: &Figures) -> Vec<Vec<String>> {
    NHI_TITLES
        .iter()
        .map(|(id, title)| {
            vec![
                (*id).to_owned(),
                (*title).to_owned(),
                f.nhi.get(*id).copied().unwrap_or(0).to_string(),
            ]
        })
        .collect()
}

fn counts(map: &BTreeMap<String, usize>) -> Vec<Vec<String>> {
    let mut rows: Vec<(&String, &usize)> = map.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    rows.into_iter()
        .map(|(k, v)| vec![k.clone(), v.to_string()])
        .collect()
}

/// The self-contained HTML page.
pub fn html(input: &ReportInput<'_>) -> String {
    let f = figures(input);
    let mut out = String::from(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Mayfly secrets report</title><style>\
         body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#1b1f24}\
         h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}\
         table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}\
         th{background:#f3f4f6}.cards{display:flex;gap:12px;flex-wrap:wrap}\
         .card{border:1px solid #ccc;border-radius:6px;padding:8px 14px;min-width:120px}.card b{font-size:1.8em;display:block}\
         .node-secret{fill:#fde2e1;stroke:#b42318}.node-surface{fill:#e0ecff;stroke:#1d4ed8}.edge{stroke:#888}\
         svg text{font:12px monospace}.leaf{fill:#333}.bar{background:#b42318;height:12px;display:inline-block}\
         </style></head><body>",
    );
    let _ = write!(
        out,
        "<h1>Mayfly secrets report</h1><p>Generated {} (UTC). Fingerprints are keyed hashes: no secret is in this page.</p>",
        mayfly_scan::time::date(input.now)
    );
    let _ = write!(
        out,
        "<div class=\"cards\"><div class=\"card\" id=\"total-secrets\"><b>{}</b>open secrets</div>\
         <div class=\"card\" id=\"total-copies\"><b>{}</b>copies</div>\
         <div class=\"card\" id=\"total-unclear\"><b>{}</b>ownership unclear</div>\
         <div class=\"card\" id=\"total-actions\"><b>{}</b>secrets with actions due</div>\
         <div class=\"card\" id=\"total-resolved\"><b>{}</b>resolved</div></div>",
        input.secrets.len(),
        f.copies,
        f.unclear.len(),
        input.plan.len(),
        input.resolved
    );
    out.push_str("<h2>By provider</h2>");
    table_html(
        &mut out,
        "by-provider",
        &["provider", "secrets"],
        &counts(&f.by_provider),
    );
    out.push_str("<h2>By surface</h2>");
    table_html(
        &mut out,
        "by-surface",
        &["surface", "copies"],
        &counts(&f.by_surface),
    );
    out.push_str("<h2>By owner</h2>");
    table_html(
        &mut out,
        "by-owner",
        &["owner", "secrets"],
        &counts(&f.by_owner),
    );
    out.push_str("<h2>Age</h2><table id=\"ages\"><thead><tr><th>first seen</th><th>secrets</th><th></th></tr></thead><tbody>");
    let most = f.ages.iter().copied().max().unwrap_or(1).max(1);
    for (label, count) in AGE_BUCKETS.iter().zip(f.ages) {
        let _ = write!(
            out,
            "<tr><td>{label}</td><td>{count}</td><td><span class=\"bar\" style=\"width:{}px\"></span></td></tr>",
            count * 300 / most
        );
    }
    out.push_str("</tbody></table>");
    out.push_str("<h2>Ownership unclear: rotate or revoke</h2>");
    let unclear: Vec<Vec<String>> = f
        .unclear
        .iter()
        .filter_map(|&i| input.secrets.get(i))
        .map(|(s, c)| {
            vec![
                short(&s.fingerprint).to_owned(),
                s.rule_id.clone(),
                c.len().to_string(),
                s.owner_conflict
                    .clone()
                    .map_or_else(|| "nobody".to_owned(), |c| format!("claimed by {c}")),
            ]
        })
        .collect();
    table_html(
        &mut out,
        "unclear",
        &["fingerprint", "rule", "copies", "claims"],
        &unclear,
    );
    out.push_str("<h2>Secrets with the most copies</h2>");
    for &i in &f.top {
        let Some((secret, copies)) = input.secrets.get(i) else {
            continue;
        };
        let _ = write!(
            out,
            "<h3>{} <small>{} · {} · {} copies · owner {}</small></h3>",
            esc(short(&secret.fingerprint)),
            esc(&secret.rule_id),
            esc(&secret.provider),
            copies.len(),
            esc(secret.owner.as_deref().unwrap_or("unclear"))
        );
        out.push_str(&copy_graph(secret, copies));
    }
    out.push_str("<h2>OWASP Non-Human Identities Top 10</h2>");
    let nhi_rows = nhi_rows(&f);
    table_html(
        &mut out,
        "nhi",
        &["item", "risk", "open secrets"],
        &nhi_rows,
    );
    out.push_str("<h2>NIST CSF 2.0</h2>");
    table_html(
        &mut out,
        "nist-csf",
        &["category", "name", "evidence"],
        &csf_rows(input, &f),
    );
    out.push_str("</body></html>\n");
    out
}

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
            "### {} ({}, {} copies)\n",
            short(&secret.fingerprint),
            secret.rule_id,
            copies.len()
        );
        for copy in copies.iter().take(20) {
            let _ = writeln!(
                out,
                "- `{}:{}` ({})",
                copy.path.replace('`', "'"),
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

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }
}
