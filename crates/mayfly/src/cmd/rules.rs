//! `mayfly rules`: list the rules, check rule files against their examples.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use clap::Subcommand;
use mayfly_scan::fingerprint::FingerprintKey;
use mayfly_scan::rule::RuleSet;
use mayfly_scan::scan::{ScanOptions, Scanner};

use crate::common::outln;
use crate::{EXIT_CLEAN, EXIT_FINDINGS};

/// Subcommands of `mayfly rules`.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// List the rules in use: id, provider, severity, OWASP NHI items.
    List {
        /// Also load this rule file (repeatable).
        #[arg(long = "rules", value_name = "FILE")]
        rule_files: Vec<PathBuf>,
    },
    /// List how providers are asked: the verifiers of `scan --validate` and
    /// the revokers of `mayfly revoke`, each with its request and rules.
    Providers,
    /// Check rules against their own examples and negative examples.
    Check {
        /// Rule files to check (default: the built-in rules).
        files: Vec<PathBuf>,
    },
}

/// `mayfly rules ...`.
pub fn run(command: RulesCommand) -> anyhow::Result<u8> {
    match command {
        RulesCommand::List { rule_files } => list_rules(&rule_files),
        RulesCommand::Check { files } => check_rules(&files),
        RulesCommand::Providers => list_providers(),
    }
}

/// `mayfly rules providers`.
fn list_providers() -> anyhow::Result<u8> {
    let rules = RuleSet::builtin()?;
    let verifiers = mayfly_providers::verifier::Verifiers::builtin()?;
    let revokers = mayfly_providers::revoke::Revokers::builtin()?;
    let users = |pick: &dyn Fn(&mayfly_scan::rule::Rule) -> Option<&str>, id: &str| -> String {
        rules
            .rules()
            .iter()
            .filter(|r| pick(r) == Some(id))
            .map(|r| r.spec.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    outln!("verifiers (mayfly scan --validate): read-only identity endpoints")?;
    for v in verifiers.iter() {
        outln!(
            "  {:<28} {:<14} {}\n  {:<28} rules: {}",
            v.spec.id,
            v.spec.provider,
            v.spec.request,
            "",
            users(&|r| r.spec.verify.as_deref(), &v.spec.id)
        )?;
    }
    outln!("revokers (mayfly revoke, mayfly govern apply)")?;
    for r in revokers.iter() {
        outln!(
            "  {:<28} {:<14} {}\n  {:<28} rules: {}",
            r.spec.id,
            r.spec.provider,
            r.describe().join(", then "),
            "",
            users(&|rule| rule.spec.revoke.as_deref(), &r.spec.id)
        )?;
    }
    Ok(EXIT_CLEAN)
}

/// `mayfly rules list`.
fn list_rules(files: &[PathBuf]) -> anyhow::Result<u8> {
    let mut rules = RuleSet::builtin()?;
    for file in files {
        rules.add_file(file)?;
    }
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let width = rules
        .rules()
        .iter()
        .map(|r| r.spec.id.len())
        .max()
        .unwrap_or(0);
    for rule in rules.rules() {
        let nhi: Vec<String> = rule.spec.nhi.iter().map(|n| format!("{n:?}")).collect();
        writeln!(
            out,
            "{:<width$}  {:<8}  {:<18}  {}",
            rule.spec.id,
            rule.spec.severity.as_str(),
            rule.spec.provider,
            nhi.join(",")
        )?;
    }
    writeln!(out, "{} rules", rules.len())?;
    out.flush()?;
    Ok(EXIT_CLEAN)
}

/// `mayfly rules check`.
fn check_rules(files: &[PathBuf]) -> anyhow::Result<u8> {
    let sets: Vec<(String, RuleSet)> = if files.is_empty() {
        vec![("built-in rules".to_owned(), RuleSet::builtin()?)]
    } else {
        files
            .iter()
            .map(|file| {
                let mut set = RuleSet::default();
                set.add_file(file)?;
                Ok((file.display().to_string(), set))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let mut failed = 0usize;
    for (name, set) in sets {
        let count = set.len();
        let key = FingerprintKey::from_bytes(b"mayfly rules check: examples only")?;
        let scanner = Scanner::new(set, key, ScanOptions::default())?;
        let failures = scanner.check_rule_examples();
        for failure in &failures {
            outln!("{failure}")?;
        }
        outln!("{name}: {count} rules, {} failing examples", failures.len())?;
        failed += failures.len();
    }
    Ok(if failed == 0 {
        EXIT_CLEAN
    } else {
        EXIT_FINDINGS
    })
}
