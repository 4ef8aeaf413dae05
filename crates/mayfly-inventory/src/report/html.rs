//! The report as one self-contained HTML page: no network, no script. Boxes
//! grow with their text and long paths wrap, so nothing is cut off at any
//! width.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use mayfly_store::{LocationRow, SecretRow};

use super::{
    AGE_BUCKETS, Figures, ReportInput, action_text, counts, csf_rows, esc, figures, nhi_rows,
    severity_rows, short,
};

const STYLE: &str = "\
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1000px;padding:0 1em;color:#1b1f24}\
h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;margin:.5em 0;max-width:100%}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;overflow-wrap:anywhere}\
th{background:#f3f4f6}.cards{display:flex;gap:12px;flex-wrap:wrap}\
.card{border:1px solid #ccc;border-radius:6px;padding:8px 14px;min-width:120px}.card b{font-size:1.8em;display:block}\
.sev{display:inline-block;border-radius:4px;padding:0 6px;font-size:.85em;font-weight:600;color:#fff;background:#6b7280}\
.sev-critical{background:#b42318}.sev-high{background:#c4320a}.sev-medium{background:#b54708}.sev-low{background:#475467}\
.graph{display:flex;align-items:center;gap:0;margin:.5em 0 1.2em}\
.node{display:inline-block;border:1px solid;border-radius:4px;padding:2px 8px;font:12px monospace;overflow-wrap:anywhere}\
.node-secret{background:#fde2e1;border-color:#b42318;max-width:30%}\
.node-surface{background:#e0ecff;border-color:#1d4ed8;white-space:nowrap}\
.graph ul{list-style:none;margin:0;padding:0 0 0 18px;border-left:1px solid #888;flex:1;min-width:0}\
.graph li{position:relative;padding:2px 0}.graph li::before{content:'';position:absolute;left:-18px;top:.9em;width:14px;border-top:1px solid #888}\
.surface{display:flex;align-items:center}.leaf{font:12px monospace;overflow-wrap:anywhere}\
.actions{margin:.2em 0 1em 1.2em;padding:0}.actions li{overflow-wrap:anywhere}\
.bar{background:#b42318;height:12px;display:inline-block}";

fn badge(severity: &str) -> String {
    let class = match severity {
        "critical" | "high" | "medium" | "low" => severity,
        _ => "unknown",
    };
    format!("<span class=\"sev sev-{class}\">{}</span>", esc(severity))
}

fn table(out: &mut String, id: &str, headers: &[&str], rows: &[Vec<String>]) {
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

/// A small graph of one secret: the secret, its surfaces, and the copies
/// under each (at most six per surface, then a count), drawn as nested
/// boxes and lines that grow with their labels.
fn copy_graph(secret: &SecretRow, copies: &[LocationRow]) -> String {
    let mut by_surface: BTreeMap<&str, Vec<&LocationRow>> = BTreeMap::new();
    for copy in copies {
        by_surface
            .entry(copy.surface.as_str())
            .or_default()
            .push(copy);
    }
    let mut out = format!(
        "<div class=\"graph\" role=\"img\" aria-label=\"copies of {}\"><span class=\"node node-secret\">{}</span><ul>",
        esc(short(&secret.fingerprint)),
        esc(&secret.rule_id)
    );
    for (surface, list) in by_surface {
        let _ = write!(
            out,
            "<li class=\"surface\"><span class=\"node node-surface\">{}</span><ul>",
            esc(surface)
        );
        for copy in list.iter().take(6) {
            let _ = write!(
                out,
                "<li class=\"leaf\">{}:{}</li>",
                esc(copy.shown_path()),
                copy.line
            );
        }
        if list.len() > 6 {
            let _ = write!(out, "<li class=\"leaf\">... {} more</li>", list.len() - 6);
        }
        out.push_str("</ul></li>");
    }
    out.push_str("</ul></div>");
    out
}

fn cards(out: &mut String, input: &ReportInput<'_>, f: &Figures) {
    let critical = f.by_severity.get(&0).copied().unwrap_or(0);
    let _ = write!(
        out,
        "<div class=\"cards\"><div class=\"card\" id=\"total-secrets\"><b>{}</b>open secrets</div>\
         <div class=\"card\" id=\"total-critical\"><b>{critical}</b>critical</div>\
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
}

/// Each secret with actions due, most urgent first, and its actions.
fn plan(out: &mut String, input: &ReportInput<'_>) {
    out.push_str("<h2>Actions due</h2><div id=\"plan\">");
    if input.plan.is_empty() {
        out.push_str("<p>Nothing is due.</p>");
    }
    for plan in input.plan {
        let _ = write!(
            out,
            "<h3>{} {} <small>{} · {} · {} copies · notify {}</small></h3><ul class=\"actions\">",
            badge(&plan.severity),
            esc(short(&plan.fingerprint)),
            esc(&plan.rule_id),
            esc(&plan.provider),
            plan.copies,
            esc(&plan.notify)
        );
        for action in &plan.actions {
            let copy = action
                .copy
                .as_deref()
                .map(|c| format!(" {}", esc(c)))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<li><b>{}</b>{copy}: {} <small>[{}; {}]</small></li>",
                action_text(action.action),
                esc(&action.reason),
                esc(&action.rule),
                esc(&action.nhi.join(", "))
            );
        }
        out.push_str("</ul>");
    }
    out.push_str("</div>");
}

/// The self-contained HTML page.
pub fn html(input: &ReportInput<'_>) -> String {
    let f = figures(input);
    let mut out = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Mayfly secrets report</title><style>{STYLE}</style></head><body>"
    );
    let _ = write!(
        out,
        "<h1>Mayfly secrets report</h1><p>Generated {} (UTC). Fingerprints are keyed hashes: no secret is in this page.</p>",
        mayfly_scan::time::date(input.now)
    );
    cards(&mut out, input, &f);
    out.push_str("<h2>By severity</h2>");
    table(
        &mut out,
        "by-severity",
        &["severity", "secrets"],
        &severity_rows(&f),
    );
    plan(&mut out, input);
    out.push_str("<h2>By provider</h2>");
    table(
        &mut out,
        "by-provider",
        &["provider", "secrets"],
        &counts(&f.by_provider),
    );
    out.push_str("<h2>By surface</h2>");
    table(
        &mut out,
        "by-surface",
        &["surface", "copies"],
        &counts(&f.by_surface),
    );
    out.push_str("<h2>By owner</h2>");
    table(
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
    out.push_str("<h2>Ownership unclear: rotate or revoke</h2><table id=\"unclear\"><thead><tr><th>severity</th><th>fingerprint</th><th>rule</th><th>copies</th><th>claims</th></tr></thead><tbody>");
    for (secret, copies) in f.unclear.iter().filter_map(|&i| input.secrets.get(i)) {
        let claims = secret
            .owner_conflict
            .clone()
            .map_or_else(|| "nobody".to_owned(), |c| format!("claimed by {c}"));
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            badge(&secret.severity),
            esc(short(&secret.fingerprint)),
            esc(&secret.rule_id),
            copies.len(),
            esc(&claims)
        );
    }
    out.push_str("</tbody></table>");
    out.push_str("<h2>Secrets with the most copies</h2>");
    for (secret, copies) in f.top.iter().filter_map(|&i| input.secrets.get(i)) {
        let _ = write!(
            out,
            "<h3>{} {} <small>{} · {} · {} copies · owner {}</small></h3>",
            badge(&secret.severity),
            esc(short(&secret.fingerprint)),
            esc(&secret.rule_id),
            esc(&secret.provider),
            copies.len(),
            esc(secret.owner.as_deref().unwrap_or("unclear"))
        );
        out.push_str(&copy_graph(secret, copies));
    }
    out.push_str("<h2>OWASP Non-Human Identities Top 10</h2>");
    table(
        &mut out,
        "nhi",
        &["item", "risk", "open secrets"],
        &nhi_rows(&f),
    );
    out.push_str("<h2>NIST CSF 2.0</h2>");
    table(
        &mut out,
        "nist-csf",
        &["category", "name", "evidence"],
        &csf_rows(input, &f),
    );
    out.push_str("</body></html>\n");
    out
}
