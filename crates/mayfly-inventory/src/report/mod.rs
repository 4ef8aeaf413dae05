//! The report for a security lead: a self-contained HTML page (no network,
//! no script; [`html`]) or Markdown ([`markdown`]), built from the
//! inventory and the governance plan. Secrets come most urgent first
//! (severity, then copies, then age), as the store streams them.

mod html;
mod markdown;

use std::collections::{BTreeMap, BTreeSet};

use mayfly_store::{LocationRow, SecretRow, Timestamp};

pub use self::html::html;
pub use self::markdown::markdown;
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

/// Severities, most harmful first.
const SEVERITIES: [&str; 4] = ["critical", "high", "medium", "low"];

/// The computed figures, shared by both formats.
struct Figures {
    copies: usize,
    by_severity: BTreeMap<usize, usize>,
    by_provider: BTreeMap<String, usize>,
    by_surface: BTreeMap<String, usize>,
    by_owner: BTreeMap<String, usize>,
    unclear: Vec<usize>,
    top: Vec<usize>,
    ages: [usize; 5],
    /// Open secrets concerned by each NHI item (its rule's mapping or its
    /// plan's actions).
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
        by_severity: BTreeMap::new(),
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
    // The NHI items each secret is concerned by: its rule's, and those of
    // the actions the plan asks for it.
    let mut nhi: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for (index, (secret, copies)) in input.secrets.iter().enumerate() {
        f.copies += copies.len();
        *f.by_severity
            .entry(severity_rank(&secret.severity))
            .or_default() += 1;
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
            nhi.entry(item).or_default().insert(&secret.fingerprint);
        }
    }
    let mut order: Vec<usize> = (0..input.secrets.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(input.secrets.get(i).map_or(0, |s| s.1.len())));
    f.top = order.into_iter().take(10).collect();
    for plan in input.plan {
        for action in &plan.actions {
            for item in action.nhi {
                nhi.entry((*item).to_owned())
                    .or_default()
                    .insert(&plan.fingerprint);
            }
            match action.action {
                ActionKind::RotateOrRevoke => f.rotate_or_revoke += 1,
                ActionKind::Rotate | ActionKind::RotateInCustody => f.rotate += 1,
                ActionKind::MoveIntoCustody => f.custody += 1,
                ActionKind::DeleteCopy => f.delete_copies += 1,
            }
        }
    }
    f.nhi = nhi.into_iter().map(|(k, v)| (k, v.len())).collect();
    f
}

/// A severity's place in [`SEVERITIES`] (unknown ones last).
fn severity_rank(severity: &str) -> usize {
    SEVERITIES
        .iter()
        .position(|s| *s == severity)
        .unwrap_or(SEVERITIES.len())
}

/// Secrets by severity, most harmful first.
fn severity_rows(f: &Figures) -> Vec<Vec<String>> {
    SEVERITIES
        .iter()
        .enumerate()
        .map(|(rank, name)| {
            vec![
                (*name).to_owned(),
                f.by_severity.get(&rank).copied().unwrap_or(0).to_string(),
            ]
        })
        .collect()
}

/// How an action reads in a report.
fn action_text(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::RotateOrRevoke => "rotate or revoke",
        ActionKind::Rotate => "rotate",
        ActionKind::MoveIntoCustody => "move into custody",
        ActionKind::RotateInCustody => "rotate, then custody rotate",
        ActionKind::DeleteCopy => "delete copy",
    }
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
