//! `mayfly inventory` and `mayfly scan --save`.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use mayfly_scan::scan::ScanReport;
use mayfly_scan::surface::Surface;
use mayfly_scan::time::date;
use mayfly_store::{SecretFilter, SecretStatus};

use crate::EXIT_CLEAN;
use crate::common::outln;
use crate::common::{DbArgs, now};

/// `mayfly inventory`.
#[derive(Debug, Args)]
pub struct InventoryArgs {
    #[command(subcommand)]
    pub command: InventoryCommand,
    #[command(flatten)]
    pub db: DbArgs,
}

/// Subcommands of `mayfly inventory`.
#[derive(Debug, Subcommand)]
pub enum InventoryCommand {
    /// List secrets, most harmful first (severity, then copies, then age).
    List {
        /// Only this provider (as `mayfly rules list` names them).
        #[arg(long)]
        provider: Option<String>,
        /// Only secrets with a live copy on this surface.
        #[arg(long)]
        surface: Option<Surface>,
        /// Only secrets of this owner.
        #[arg(long)]
        owner: Option<String>,
        /// Only secrets nobody owns.
        #[arg(long)]
        unclear: bool,
        /// Only secrets with at least N live copies.
        #[arg(long, value_name = "N")]
        min_copies: Option<i64>,
        /// Only secrets first seen more than N days ago.
        #[arg(long, value_name = "DAYS")]
        older_than: Option<i64>,
        /// Include rotated, revoked and accepted secrets.
        #[arg(long)]
        all: bool,
    },
    /// Show one secret: every copy (gone ones too), owner and status history.
    Show {
        /// Fingerprint, or a unique prefix of at least 8 hex digits.
        fingerprint: String,
    },
    /// Set or clear a secret's owner.
    #[command(subcommand)]
    Owner(OwnerCommand),
    /// Record what was done about a secret; found again later, it reopens.
    Resolve {
        /// Fingerprint, or a unique prefix of at least 8 hex digits.
        fingerprint: String,
        /// The credential was rotated at its provider.
        #[arg(long, group = "decision")]
        rotated: bool,
        /// The credential was revoked at its provider.
        #[arg(long, group = "decision")]
        revoked: bool,
        /// The risk is knowingly accepted.
        #[arg(long, group = "decision")]
        accepted_risk: bool,
        /// Why, for the history.
        #[arg(long, required = true)]
        note: String,
    },
}

/// `mayfly inventory owner`.
#[derive(Debug, Subcommand)]
pub enum OwnerCommand {
    /// Assign an owner (a team or person).
    Set {
        /// Fingerprint or unique prefix.
        fingerprint: String,
        /// The owner.
        owner: String,
    },
    /// Remove the explicit owner.
    Clear {
        /// Fingerprint or unique prefix.
        fingerprint: String,
    },
}

/// This machine's name, as the inventory records it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A stable name for what a scan covered: the machine and the absolute
/// paths, so rescanning the same tree marks vanished copies gone.
pub fn scan_source(kind: &str, host: &str, paths: &[PathBuf]) -> String {
    let mut roots: Vec<String> = paths
        .iter()
        .map(|p| {
            std::fs::canonicalize(p)
                .unwrap_or_else(|_| p.clone())
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    roots.sort();
    format!("{kind}:{host}:{}", roots.join(","))
}

/// A scanned path as the inventory sees it: how findings show it, where it
/// is, the repository it is in, its owners.
fn root(path: &std::path::Path) -> anyhow::Result<mayfly_inventory::Root> {
    let shown = path.to_string_lossy();
    let shown = shown.trim_end_matches('/');
    let is_file = path.is_file();
    let prefix = if is_file {
        shown.to_owned()
    } else if shown == "." || shown.is_empty() {
        String::new()
    } else {
        format!("{shown}/")
    };
    let owners = if path.is_dir() {
        mayfly_inventory::OwnerMap::load(path)?
    } else {
        mayfly_inventory::OwnerMap::default()
    };
    Ok(mayfly_inventory::Root {
        prefix,
        is_file,
        absolute: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()),
        repository: mayfly_scan::git::repository_of(path),
        owners,
    })
}

/// Merges a finished scan into the store and says what changed on stderr.
pub fn save(
    report: &ScanReport,
    kind: &str,
    host: &str,
    roots: &[PathBuf],
    db: &DbArgs,
) -> anyhow::Result<()> {
    let mut store = db.open()?;
    let source = scan_source(kind, host, roots);
    let roots = roots
        .iter()
        .filter(|p| p.as_os_str() != "-")
        .map(|p| root(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let record = mayfly_inventory::scan_record(report, &source, now(), host, &roots);
    let summary = store.save_scan(&record, mayfly_inventory::decide_ownership)?;
    let secrets = summary.new_secrets + summary.known_secrets;
    eprintln!(
        "mayfly: saved to {}: {} new and {} known {}, {}, {} gone",
        store.target(),
        summary.new_secrets,
        summary.known_secrets,
        if secrets == 1 { "secret" } else { "secrets" },
        plural(
            summary.new_locations as usize,
            "new location",
            "new locations"
        ),
        summary.gone_locations
    );
    for fingerprint in &summary.reopened {
        eprintln!("mayfly: REOPENED {fingerprint}: resolved earlier, found again");
    }
    Ok(())
}

/// `count one` or `count many`.
pub fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// Refuses a provider no rule and no stored secret has, naming those that
/// exist (a typo would otherwise match nothing, silently).
fn check_provider(provider: &str, stored: &[String]) -> anyhow::Result<()> {
    let mut known: Vec<String> = mayfly_scan::rule::RuleSet::builtin()?
        .rules()
        .iter()
        .map(|r| r.spec.provider.clone())
        .chain(stored.iter().cloned())
        .collect();
    known.sort_by_key(|p| p.to_lowercase());
    known.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    if known.iter().any(|p| p.eq_ignore_ascii_case(provider)) {
        return Ok(());
    }
    bail!(
        "unknown provider {provider:?}: use one of {}",
        known.join(", ")
    )
}

/// The listing: a header, then one aligned row per secret.
fn print_secrets(rows: &[mayfly_store::SecretRow]) -> std::io::Result<()> {
    let table: Vec<[String; 8]> = rows
        .iter()
        .map(|row| {
            let owner = match (&row.owner, &row.owner_conflict) {
                (Some(owner), _) => owner.clone(),
                (None, Some(conflict)) => format!("(unclear: {conflict})"),
                (None, None) => "(unclear)".to_owned(),
            };
            let mut status = if row.reopened {
                format!("{} REOPENED", row.status.as_str())
            } else {
                row.status.as_str().to_owned()
            };
            // What its provider last said (`scan --validate --save`).
            if let Some(verdict) = &row.validation {
                status.push_str(&format!(", {verdict}"));
                if let Some(at) = row.validated_at {
                    status.push_str(&format!(" {}", date(at)));
                }
            }
            [
                row.fingerprint
                    .get(..16)
                    .unwrap_or(&row.fingerprint)
                    .to_owned(),
                row.severity.clone(),
                row.rule_id.clone(),
                row.copies.to_string(),
                row.surfaces.replace(',', ", "),
                owner,
                date(row.first_seen),
                status,
            ]
        })
        .collect();
    if table.is_empty() {
        return Ok(());
    }
    let header = [
        "FINGERPRINT",
        "SEVERITY",
        "RULE",
        "COPIES",
        "SURFACES",
        "OWNER",
        "FIRST SEEN",
        "STATUS",
    ];
    let mut widths = header.map(str::len);
    for row in &table {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 8]| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i == 3 {
                out.push_str(&format!("{cell:>width$}  "));
            } else if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        outln!("{}", out.trim_end())
    };
    line(header)?;
    for row in &table {
        line(row.each_ref().map(String::as_str))?;
    }
    Ok(())
}

/// `mayfly inventory ...`.
pub fn run(args: InventoryArgs) -> anyhow::Result<u8> {
    let mut store = args.db.open()?;
    match args.command {
        InventoryCommand::List {
            provider,
            surface,
            owner,
            unclear,
            min_copies,
            older_than,
            all,
        } => {
            let (stored, total) = store.inventory_overview()?;
            if let Some(provider) = &provider {
                check_provider(provider, &stored)?;
            }
            let filter = SecretFilter {
                provider,
                surface: surface.map(|s| s.as_str().to_owned()),
                owner,
                unowned: unclear,
                min_copies,
                first_seen_before: older_than.map(|days| now() - days * 86_400),
                include_resolved: all,
            };
            let rows = store.list_secrets(&filter)?;
            if total == 0 {
                outln!(
                    "the inventory is empty: `mayfly scan PATH --save` (or --git, --host) fills it"
                )?;
                return Ok(EXIT_CLEAN);
            }
            print_secrets(&rows)?;
            outln!(
                "{}",
                plural(rows.len(), "secret", "secrets")
                    + &if rows.len() as i64 == total || (!all && rows.is_empty()) {
                        String::new()
                    } else {
                        format!(" of {total} in the inventory")
                    }
            )?;
        }
        InventoryCommand::Show { fingerprint } => {
            let detail = store.secret(&fingerprint)?;
            let s = &detail.secret;
            outln!("secret     {}", s.fingerprint)?;
            outln!("rule       {} ({}, {})", s.rule_id, s.provider, s.severity)?;
            outln!(
                "status     {}{}",
                s.status.as_str(),
                if s.reopened {
                    " (reopened: found again after it was resolved)"
                } else {
                    ""
                }
            )?;
            outln!(
                "owner      {}",
                match (&s.owner, &s.owner_source, &s.owner_conflict) {
                    (Some(owner), Some(source), _) => format!("{owner} ({})", source.as_str()),
                    (Some(owner), None, _) => owner.clone(),
                    (None, _, Some(conflict)) if s.status == SecretStatus::Open => format!(
                        "unclear: claimed by {conflict}; rotate or revoke it, or assign an owner"
                    ),
                    (None, _, Some(conflict)) => format!("unclear: claimed by {conflict}"),
                    _ if s.status == SecretStatus::Open => {
                        "unclear: rotate or revoke it, or assign an owner".to_owned()
                    }
                    _ => "unclear".to_owned(),
                }
            )?;
            if let Some(verdict) = &s.validation {
                outln!(
                    "validated  {verdict}{} (its provider's answer to scan --validate)",
                    s.validated_at
                        .map(|at| format!(" on {}", date(at)))
                        .unwrap_or_default()
                )?;
            }
            outln!(
                "seen       {} to {}, {}",
                date(s.first_seen),
                date(s.last_seen),
                plural(s.copies as usize, "live copy", "live copies")
            )?;
            // Copies grouped by machine and root, each path shown from its root.
            let mut group: Option<(&str, Option<&str>)> = None;
            for l in &detail.locations {
                let here = (l.host.as_str(), l.root.as_deref());
                if group != Some(here) {
                    group = Some(here);
                    let host = if l.host.is_empty() { "?" } else { &l.host };
                    let root = match (&l.root, &l.remote) {
                        (Some(root), Some(remote)) => format!(" under {root} ({remote})"),
                        (Some(root), None) => format!(" under {root}"),
                        _ => String::new(),
                    };
                    outln!("copies on {host}{root}:")?;
                }
                let gone = l
                    .gone_at
                    .map(|g| format!("  gone since {}", date(g)))
                    .unwrap_or_default();
                let commit = match (&l.commit_id, &l.author) {
                    (Some(id), Some(author)) => {
                        format!("  commit {} by {author}", id.get(..10).unwrap_or(id))
                    }
                    _ => String::new(),
                };
                outln!(
                    "  {}:{}:{}  {}{commit}{gone}",
                    l.shown_path(),
                    l.line,
                    l.column,
                    l.surface
                )?;
            }
            if !detail.history.is_empty() {
                outln!("history:")?;
                for change in &detail.history {
                    outln!(
                        "  {}  {}  {}",
                        date(change.at),
                        change.status.as_str(),
                        change.note
                    )?;
                }
            }
        }
        InventoryCommand::Owner(OwnerCommand::Set { fingerprint, owner }) => {
            if owner.trim().is_empty() {
                bail!("the owner is empty: name a team or person");
            }
            let full = store.set_owner(
                &fingerprint,
                Some(owner.trim()),
                mayfly_inventory::decide_ownership,
            )?;
            outln!("{full}: owner {owner}")?;
        }
        InventoryCommand::Owner(OwnerCommand::Clear { fingerprint }) => {
            let full = store.set_owner(&fingerprint, None, mayfly_inventory::decide_ownership)?;
            outln!("{full}: owner cleared (ownership unclear)")?;
        }
        InventoryCommand::Resolve {
            fingerprint,
            rotated,
            revoked,
            accepted_risk,
            note,
        } => {
            let status = match (rotated, revoked, accepted_risk) {
                (true, _, _) => SecretStatus::Rotated,
                (_, true, _) => SecretStatus::Revoked,
                (_, _, true) => SecretStatus::AcceptedRisk,
                _ => bail!("say what was done: --rotated, --revoked or --accepted-risk"),
            };
            let full = store
                .resolve(&fingerprint, status, &note, now())
                .context("cannot resolve")?;
            outln!("{full}: {}", status.as_str())?;
        }
    }
    Ok(EXIT_CLEAN)
}
