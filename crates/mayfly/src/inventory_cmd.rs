//! `mayfly inventory` and `mayfly scan --save`.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use mayfly_scan::fingerprint;
use mayfly_scan::scan::ScanReport;
use mayfly_scan::time::date;
use mayfly_store::{SecretFilter, SecretStatus, Store};

use crate::cli::{
    DbArgs, GovernArgs, GovernCommand, InventoryArgs, InventoryCommand, OwnerCommand, ReportArgs,
};
use crate::{EXIT_CLEAN, EXIT_FINDINGS};

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

/// The governance file looked up when `--rules` is not given.
const DEFAULT_GOVERNANCE: &str = ".mayfly/governance.toml";

/// `mayfly govern plan`. The plan is written as the store streams the
/// inventory, one secret at a time, so its size never sits in memory.
pub fn govern(args: GovernArgs) -> anyhow::Result<u8> {
    let GovernCommand::Plan { rules, format } = args.command;
    let json = match format.as_str() {
        "json" => true,
        "text" => false,
        _ => bail!("unknown format {format:?}: use text or json"),
    };
    let governance = load_governance(rules)?;
    let mut store = open_store(&args.db)?;
    let now = now();
    let mut out = PlanWriter {
        out: std::io::BufWriter::new(std::io::stdout().lock()),
        json,
        with_actions: 0,
        element: Vec::new(),
        failed: None,
    };
    out.start(now);
    let considered =
        store.for_each_open_secret(&governance.forbidden_surfaces, &mut |secret, copies| {
            if let Some(plan) =
                mayfly_inventory::govern::plan_secret(&governance, &secret, copies, now)
            {
                out.secret(&plan);
            }
        })?;
    let with_actions = out.with_actions;
    out.finish(considered)?;
    Ok(if with_actions == 0 {
        EXIT_CLEAN
    } else {
        EXIT_FINDINGS
    })
}

/// Writes a plan as text or JSON while it is computed.
struct PlanWriter<W: std::io::Write> {
    out: W,
    json: bool,
    with_actions: usize,
    /// One plan entry, serialized or formatted.
    element: Vec<u8>,
    /// The first write error; nothing more is written after it.
    failed: Option<std::io::Error>,
}

impl<W: std::io::Write> PlanWriter<W> {
    fn start(&mut self, now: i64) {
        let head = if self.json {
            format!(
                "{{\n  \"schema\": \"mayfly.plan/v1\",\n  \"generated_at\": {now},\n  \"plan\": ["
            )
        } else {
            String::new()
        };
        self.write(head.as_bytes());
    }

    fn secret(&mut self, plan: &mayfly_inventory::govern::SecretPlan) {
        use mayfly_inventory::govern::ActionKind;
        if self.failed.is_some() {
            return;
        }
        self.element.clear();
        if self.json {
            // One secret per line: the document stays small and greppable.
            self.element.extend_from_slice(if self.with_actions == 0 {
                b"\n    "
            } else {
                b",\n    "
            });
            if let Err(e) = serde_json::to_writer(&mut self.element, plan) {
                self.failed = Some(e.into());
                return;
            }
        } else {
            // Into the reused buffer: writing to a Vec cannot fail.
            let text = &mut self.element;
            let _ = writeln!(
                text,
                "{}  {} ({}, {})  {} copies  notify: {}",
                plan.fingerprint.get(..16).unwrap_or(&plan.fingerprint),
                plan.rule_id,
                plan.provider,
                plan.severity,
                plan.copies,
                plan.notify
            );
            for action in &plan.actions {
                let what = match action.action {
                    ActionKind::RotateOrRevoke => "ROTATE OR REVOKE",
                    ActionKind::Rotate => "ROTATE",
                    ActionKind::MoveIntoCustody => "MOVE INTO CUSTODY",
                    ActionKind::DeleteCopy => "DELETE COPY ",
                };
                let _ = write!(
                    text,
                    "  {what}{}: {} [{}; ",
                    action.copy.as_deref().unwrap_or_default(),
                    action.reason,
                    action.rule,
                );
                for (i, item) in action.nhi.iter().enumerate() {
                    text.extend_from_slice(if i == 0 { b"" } else { b", " });
                    text.extend_from_slice(item.as_bytes());
                }
                text.extend_from_slice(b"]\n");
            }
            text.push(b'\n');
        }
        let element = std::mem::take(&mut self.element);
        self.write(&element);
        self.element = element;
        self.with_actions += 1;
    }

    /// Ends the document with the totals (known only now) and flushes.
    fn finish(mut self, considered: usize) -> std::io::Result<()> {
        let tail = if self.json {
            let open = if self.with_actions == 0 { "" } else { "\n  " };
            format!(
                "{open}],\n  \"secrets_considered\": {considered},\n  \"secrets_with_actions\": {}\n}}\n",
                self.with_actions
            )
        } else {
            format!(
                "mayfly: {} of {considered} open secrets need action\n",
                self.with_actions
            )
        };
        self.write(tail.as_bytes());
        match self.failed {
            Some(e) => Err(e),
            None => self.out.flush(),
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        if self.failed.is_none()
            && let Err(e) = self.out.write_all(bytes)
        {
            self.failed = Some(e);
        }
    }
}

fn load_governance(rules: Option<PathBuf>) -> anyhow::Result<mayfly_inventory::govern::Governance> {
    let rules = rules.or_else(|| Some(PathBuf::from(DEFAULT_GOVERNANCE)).filter(|p| p.is_file()));
    Ok(match &rules {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            mayfly_inventory::govern::Governance::from_toml(&text, &path.display().to_string())?
        }
        None => mayfly_inventory::govern::Governance::default(),
    })
}

/// `mayfly report`.
pub fn report(args: ReportArgs) -> anyhow::Result<u8> {
    if args.format != "html" && args.format != "md" {
        bail!("unknown format {:?}: use html or md", args.format);
    }
    let governance = load_governance(args.rules)?;
    let mut store = open_store(&args.db)?;
    let now = now();
    let every_surface: Vec<String> = mayfly_scan::surface::Surface::ALL
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    let secrets = store.open_secrets_with_copies_on(&every_surface)?;
    let all = store.list_secrets(&SecretFilter {
        include_resolved: true,
        ..SecretFilter::default()
    })?;
    let resolved = all
        .iter()
        .filter(|s| s.status != SecretStatus::Open)
        .count();
    let plan = mayfly_inventory::govern::plan(&governance, &secrets, now);
    let rules = mayfly_scan::rule::RuleSet::builtin()?;
    let nhi_of_rule = |id: &str| -> Vec<String> {
        rules
            .rules()
            .iter()
            .find(|r| r.spec.id == id)
            .map(|r| r.spec.nhi.iter().map(|n| format!("{n:?}")).collect())
            .unwrap_or_default()
    };
    let input = mayfly_inventory::report::ReportInput {
        secrets: &secrets,
        resolved,
        plan: &plan,
        nhi_of_rule: &nhi_of_rule,
        now,
    };
    let text = if args.format == "html" {
        mayfly_inventory::report::html(&input)
    } else {
        mayfly_inventory::report::markdown(&input)
    };
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(EXIT_CLEAN)
}
