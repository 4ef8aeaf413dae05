//! `mayfly inventory` and `mayfly scan --save`.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use mayfly_scan::fingerprint;
use mayfly_scan::scan::ScanReport;
use mayfly_store::{SecretFilter, SecretStatus, Store};

use crate::EXIT_CLEAN;
use crate::cli::{DbArgs, InventoryArgs, InventoryCommand, OwnerCommand};

/// Seconds since the epoch, read once per command.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Opens the store named by `--db`/`MAYFLY_DB`, or the default file.
pub fn open_store(db: &DbArgs) -> anyhow::Result<Store> {
    let target = match &db.db {
        Some(target) => target.clone(),
        None => fingerprint::data_dir()?
            .join("mayfly.db")
            .to_string_lossy()
            .into_owned(),
    };
    Ok(Store::open(&target)?)
}

fn hostname() -> String {
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
pub fn scan_source(kind: &str, paths: &[PathBuf]) -> String {
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
    format!("{kind}:{}:{}", hostname(), roots.join(","))
}

/// Merges a finished scan into the store and says what changed on stderr.
pub fn save(
    report: &ScanReport,
    source: &str,
    roots: &[PathBuf],
    db: &DbArgs,
) -> anyhow::Result<()> {
    let mut store = open_store(db)?;
    let roots = roots
        .iter()
        .map(|path| -> anyhow::Result<mayfly_inventory::Root> {
            let shown = path.to_string_lossy();
            let shown = shown.trim_end_matches('/');
            let prefix = if shown == "." || shown.is_empty() {
                String::new()
            } else {
                format!("{shown}/")
            };
            let owners = if path.is_dir() {
                mayfly_inventory::OwnerMap::load(path)?
            } else {
                mayfly_inventory::OwnerMap::default()
            };
            Ok(mayfly_inventory::Root { prefix, owners })
        });
    let roots = roots.collect::<anyhow::Result<Vec<_>>>()?;
    let record = mayfly_inventory::scan_record(report, source, now(), &roots);
    let summary = store.save_scan(&record)?;
    eprintln!(
        "mayfly: saved to {}: {} new and {} known secrets, {} new locations, {} gone",
        store.target(),
        summary.new_secrets,
        summary.known_secrets,
        summary.new_locations,
        summary.gone_locations
    );
    for fingerprint in &summary.reopened {
        eprintln!("mayfly: REOPENED {fingerprint}: resolved earlier, found again");
    }
    Ok(())
}

fn date(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// `mayfly inventory ...`.
pub fn run(args: InventoryArgs) -> anyhow::Result<u8> {
    let mut store = open_store(&args.db)?;
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
            let filter = SecretFilter {
                provider,
                surface,
                owner,
                unowned: unclear,
                min_copies,
                first_seen_before: older_than.map(|days| now() - days * 86_400),
                include_resolved: all,
            };
            let rows = store.list_secrets(&filter)?;
            for row in &rows {
                let owner = match (&row.owner, &row.owner_conflict) {
                    (Some(owner), _) => owner.clone(),
                    (None, Some(conflict)) => format!("(unclear: {conflict})"),
                    (None, None) => "(unclear)".to_owned(),
                };
                let reopened = if row.reopened { "  REOPENED" } else { "" };
                println!(
                    "{}  {:<8}  {:<28}  {:>3} copies  {:<28}  owner {owner}  first seen {}  {}{reopened}",
                    row.fingerprint.get(..16).unwrap_or(&row.fingerprint),
                    row.severity,
                    row.rule_id,
                    row.copies,
                    row.surfaces,
                    date(row.first_seen),
                    row.status.as_str(),
                );
            }
            println!("{} secrets", rows.len());
        }
        InventoryCommand::Show { fingerprint } => {
            let detail = store.secret(&fingerprint)?;
            let s = &detail.secret;
            println!("secret     {}", s.fingerprint);
            println!("rule       {} ({}, {})", s.rule_id, s.provider, s.severity);
            println!(
                "status     {}{}",
                s.status.as_str(),
                if s.reopened {
                    " (reopened: found again after it was resolved)"
                } else {
                    ""
                }
            );
            println!(
                "owner      {}",
                match (&s.owner, &s.owner_source, &s.owner_conflict) {
                    (Some(owner), Some(source), _) => format!("{owner} ({source})"),
                    (Some(owner), None, _) => owner.clone(),
                    (None, _, Some(conflict)) => format!(
                        "unclear: claimed by {conflict}; rotate or revoke it, or assign an owner"
                    ),
                    _ => "unclear: rotate or revoke it, or assign an owner".to_owned(),
                }
            );
            println!(
                "seen       {} to {}, {} live copies",
                date(s.first_seen),
                date(s.last_seen),
                s.copies
            );
            println!("copies:");
            for l in &detail.locations {
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
                println!(
                    "  {}:{}:{}  {}  [{}]{commit}{gone}",
                    l.path, l.line, l.column, l.surface, l.source
                );
            }
            if !detail.history.is_empty() {
                println!("history:");
                for change in &detail.history {
                    println!(
                        "  {}  {}  {}",
                        date(change.at),
                        change.status.as_str(),
                        change.note
                    );
                }
            }
        }
        InventoryCommand::Owner(OwnerCommand::Set { fingerprint, owner }) => {
            if owner.trim().is_empty() {
                bail!("the owner is empty: name a team or person");
            }
            let full = store.set_owner(&fingerprint, Some(owner.trim()))?;
            println!("{full}: owner {owner}");
        }
        InventoryCommand::Owner(OwnerCommand::Clear { fingerprint }) => {
            let full = store.set_owner(&fingerprint, None)?;
            println!("{full}: owner cleared (ownership unclear)");
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
            println!("{full}: {}", status.as_str());
        }
    }
    Ok(EXIT_CLEAN)
}
