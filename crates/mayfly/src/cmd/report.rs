//! `mayfly report`: a self-contained HTML page or Markdown for a security lead.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use mayfly_store::{SecretFilter, SecretStatus};

use crate::EXIT_CLEAN;
use crate::cmd::govern::load_governance;
use crate::common::{DbArgs, now};

/// The formats of `mayfly report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// A self-contained HTML page.
    Html,
    /// Markdown.
    Md,
}

/// `mayfly report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The report's format.
    #[arg(long, short = 'f', value_enum, default_value_t = ReportFormat::Html)]
    pub format: ReportFormat,
    /// Write to FILE instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Governance rules for the plan figures [default: .mayfly/governance.toml if present].
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    #[command(flatten)]
    pub db: DbArgs,
}

/// `mayfly report`.
pub fn report(args: ReportArgs) -> anyhow::Result<u8> {
    use std::io::IsTerminal as _;
    if args.format == ReportFormat::Html && args.output.is_none() && std::io::stdout().is_terminal()
    {
        anyhow::bail!(
            "the HTML report is a page, not terminal text: write it to a file with -o report.html, or ask for Markdown with -f md"
        );
    }
    let governance = load_governance(args.rules)?;
    let mut store = args.db.open()?;
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
    let text = if args.format == ReportFormat::Html {
        mayfly_inventory::report::html(&input)
    } else {
        mayfly_inventory::report::markdown(&input)
    };
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            use std::io::Write as _;
            std::io::stdout().lock().write_all(text.as_bytes())?;
        }
    }
    Ok(EXIT_CLEAN)
}
