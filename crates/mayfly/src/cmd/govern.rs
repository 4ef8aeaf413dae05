//! `mayfly govern plan`: the remediation plan, streamed as it is computed;
//! `mayfly govern apply`: its revocations, carried out.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use mayfly_broker::custody::{self, RotationDue};

use crate::cmd::revoke::{Done, Revocation, RevokeWith, confirm};
use crate::common::{DbArgs, TextOrJson, now, outln};
use crate::{EXIT_CLEAN, EXIT_FINDINGS};

/// `mayfly govern`.
#[derive(Debug, Args)]
pub struct GovernArgs {
    #[command(subcommand)]
    pub command: GovernCommand,
    #[command(flatten)]
    pub db: DbArgs,
}

/// Subcommands of `mayfly govern`.
#[derive(Debug, Subcommand)]
pub enum GovernCommand {
    /// The remediation plan: per secret, the actions due, why, who to notify.
    ///
    /// Exit codes: 0 nothing due, 1 actions due, 2 error.
    Plan {
        /// Governance rules (TOML) [default: .mayfly/governance.toml if present, else the embedded defaults].
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
        /// Output format.
        #[arg(long, short = 'f', value_enum, default_value_t = TextOrJson::Text)]
        format: TextOrJson,
    },
    /// Carry out the plan's revocations: each secret whose plan says
    /// "rotate or revoke" is revoked at its provider (shown first, then
    /// confirmed, or with --yes); providers without an API get their steps.
    ///
    /// Exit codes: 0 every one revoked (or nothing to do), 1 some left, 2 error.
    Apply {
        /// Governance rules (TOML) [default: .mayfly/governance.toml if present, else the embedded defaults].
        #[arg(long, value_name = "FILE")]
        rules: Option<PathBuf>,
        #[command(flatten)]
        with: RevokeWith,
    },
}

/// The governance file looked up when `--rules` is not given.
const DEFAULT_GOVERNANCE: &str = ".mayfly/governance.toml";

/// `mayfly govern plan`. The plan is written as the store streams the
/// inventory, one secret at a time, so its size never sits in memory.
pub fn govern(args: GovernArgs) -> anyhow::Result<u8> {
    let (rules, format) = match args.command {
        GovernCommand::Plan { rules, format } => (rules, format),
        GovernCommand::Apply { rules, with } => return apply(rules, &with, &args.db),
    };
    let json = format == TextOrJson::Json;
    let governance = load_governance(rules)?;
    let mut store = args.db.open()?;
    let now = now();
    let mut out = PlanWriter {
        out: std::io::BufWriter::new(std::io::stdout().lock()),
        json,
        with_actions: 0,
        element: Vec::new(),
        failed: None,
    };
    out.start(now);
    let considered = store.for_each_open_secret(
        &governance.forbidden_surface_names(),
        &mut |secret, copies| {
            if let Some(plan) =
                mayfly_inventory::govern::plan_secret(&governance, &secret, copies, now)
            {
                out.secret(&plan);
            }
        },
    )?;
    // Secrets in custody whose current version is past its maximum age
    // (the broker's entries, when it shares this store).
    let due: Vec<RotationDue> = store
        .custody_entries()?
        .iter()
        .filter_map(|entry| custody::rotation_due(entry, now))
        .collect();
    let with_actions = out.with_actions + due.len();
    out.finish(considered, &due)?;
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
            if plan.urgent {
                let _ = writeln!(
                    text,
                    "  URGENT: its provider accepted it ({}) and a copy is on a forbidden surface: revoke or rotate it first",
                    plan.validation.as_deref().unwrap_or("live")
                );
            } else if let Some(validation) = &plan.validation {
                let _ = writeln!(text, "  validation: {validation}");
            }
            for action in &plan.actions {
                let what = match action.action {
                    ActionKind::RotateOrRevoke => "ROTATE OR REVOKE",
                    ActionKind::Rotate => "ROTATE",
                    ActionKind::MoveIntoCustody => "MOVE INTO CUSTODY",
                    ActionKind::RotateInCustody => "ROTATE, THEN CUSTODY ROTATE",
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
    fn finish(mut self, considered: usize, due: &[RotationDue]) -> std::io::Result<()> {
        let tail = if self.json {
            let open = if self.with_actions == 0 { "" } else { "\n  " };
            let due = serde_json::to_string(due).unwrap_or_else(|_| "[]".into());
            format!(
                "{open}],\n  \"custody_rotations_due\": {due},\n  \"secrets_considered\": {considered},\n  \"secrets_with_actions\": {}\n}}\n",
                self.with_actions
            )
        } else {
            let mut text = String::new();
            for entry in due {
                let _ = writeln!(
                    text,
                    "custody {} ({}, owner {}): ROTATE: version {} is {} days old, at most {} allowed; rotate it at {} and run `mayfly custody rotate {} --stdin`",
                    entry.name,
                    entry.provider,
                    entry.owner,
                    entry.version,
                    entry.age_days,
                    entry.max_age_days,
                    entry.provider,
                    entry.name
                );
            }
            let _ = writeln!(
                text,
                "mayfly: {} of {considered} open secrets need action{}",
                self.with_actions,
                match due.len() {
                    0 => String::new(),
                    1 => "; 1 secret in custody is due for rotation".to_owned(),
                    n => format!("; {n} secrets in custody are due for rotation"),
                }
            );
            text
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

/// `mayfly govern apply`: the plan's revocations, shown, confirmed, done.
fn apply(rules: Option<PathBuf>, with: &RevokeWith, db: &DbArgs) -> anyhow::Result<u8> {
    use mayfly_inventory::govern::ActionKind;
    let governance = load_governance(rules)?;
    let revocation = Revocation::new(with)?;
    let mut store = db.open()?;
    let now = now();
    let mut due: Vec<(String, String, String, bool)> = Vec::new();
    store.for_each_open_secret(
        &governance.forbidden_surface_names(),
        &mut |secret, copies| {
            if let Some(plan) =
                mayfly_inventory::govern::plan_secret(&governance, &secret, copies, now)
                && plan
                    .actions
                    .iter()
                    .any(|a| a.action == ActionKind::RotateOrRevoke)
            {
                due.push((plan.fingerprint, plan.rule_id, plan.provider, plan.urgent));
            }
        },
    )?;
    if due.is_empty() {
        outln!("mayfly: the plan has no secret to revoke")?;
        return Ok(EXIT_CLEAN);
    }
    outln!(
        "the plan revokes {} (ownership unclear):",
        crate::cmd::inventory::plural(due.len(), "secret", "secrets")
    )?;
    for (fingerprint, rule_id, provider, urgent) in &due {
        let short = fingerprint.get(..12).unwrap_or(fingerprint);
        let how = match revocation.revoker_of(rule_id) {
            Some(revoker) => revoker.describe().join(", then "),
            None => "by hand (no revocation API)".to_owned(),
        };
        let urgent = if *urgent { "URGENT " } else { "" };
        outln!("  {urgent}{short} {rule_id} ({provider}): {how}")?;
    }
    if !confirm("Revoke them?", with.yes)? {
        outln!("nothing done")?;
        return Ok(EXIT_FINDINGS);
    }
    let mut left = 0;
    for (fingerprint, ..) in &due {
        let detail = store.secret(fingerprint)?;
        if revocation.run(&mut store, &detail)? == Done::Left {
            left += 1;
        }
    }
    outln!("mayfly: {} revoked, {left} left", due.len() - left)?;
    Ok(if left == 0 { EXIT_CLEAN } else { EXIT_FINDINGS })
}

pub fn load_governance(
    rules: Option<PathBuf>,
) -> anyhow::Result<mayfly_inventory::govern::Governance> {
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
