//! Arguments, and the dispatch of each command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::broker_cmd::{
    AuditCommand, IdentityCommand, PolicyCommand, RunArgs, ServeArgs, TaskCommand, TokenCommand,
};
use crate::{broker_cmd, inventory_cmd, scan_cmd};

/// Mayfly ends the life of copied credentials: it finds every copy of an
/// API key or token (code, .env, CI, MCP configs, agent transcripts,
/// notebooks, chat exports, SQLite databases), keeps an inventory of owners
/// and ages, and replaces copies with credentials that live for one task.
#[derive(Debug, Parser)]
#[command(
    name = "mayfly",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Find copied secrets in files, directory trees, SQLite databases and stdin.
    ///
    /// Exit codes: 0 no secret found, 1 secrets found, 2 error.
    Scan(Box<ScanArgs>),
    /// List the rules or check rule files against their own examples.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// The lasting inventory of secrets, copies, owners and decisions (fed by `scan --save`).
    Inventory(InventoryArgs),
    /// Governance over the inventory: what must be rotated, revoked, moved into custody or deleted.
    Govern(GovernArgs),
    /// A report for a security lead: a self-contained HTML page or Markdown.
    Report(ReportArgs),
    /// Run the broker: per-task, identity-bound, policy-checked credentials.
    Serve(ServeArgs),
    /// Start, end or show tasks (a task owns every credential issued for it).
    #[command(subcommand)]
    Task(TaskCommand),
    /// Exchange an identity for a credential, introspect or revoke one.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Check Cedar policies against Mayfly's schema.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Verify or show the broker's hash-chained audit log.
    Audit(AuditArgs),
    /// A local identity issuer, for trying the broker on one machine.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Run a command with a credential that lives only as long as it does.
    ///
    /// Starts a task with the caller's identity, exchanges it for a
    /// credential in $MAYFLY_TOKEN (and the file $MAYFLY_TOKEN_FILE, kept
    /// fresh while CMD runs), forwards signals, and ends the task when CMD
    /// exits. Exits with CMD's exit code.
    Run(RunArgs),
}

/// `mayfly audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
    #[command(flatten)]
    pub db: DbArgs,
}

/// `mayfly report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// html or md.
    #[arg(long, short = 'f', default_value = "html")]
    pub format: String,
    /// Write to FILE instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Governance rules for the plan figures [default: .mayfly/governance.toml if present].
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    #[command(flatten)]
    pub db: DbArgs,
}

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
        /// Output format: text or json.
        #[arg(long, short = 'f', default_value = "text")]
        format: String,
    },
}

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
    /// List secrets, most copies first.
    List {
        /// Only this provider.
        #[arg(long)]
        provider: Option<String>,
        /// Only secrets with a live copy on this surface.
        #[arg(long)]
        surface: Option<String>,
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

/// Options of `mayfly scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Files and directories to scan; `-` reads standard input [default: . unless --host].
    pub paths: Vec<PathBuf>,

    /// Output format: text, json, sarif or csv.
    #[arg(long, short = 'f', default_value = "text")]
    pub format: mayfly_scan::output::Format,

    /// Write the report to FILE instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Configuration file (default: .mayfly.toml in the current directory, if any).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Add the rules of a TOML rule file (repeatable).
    #[arg(long = "rules", value_name = "FILE")]
    pub rule_files: Vec<PathBuf>,

    /// Disable rules whose id matches GLOB (repeatable), e.g. 'generic-*'.
    #[arg(long, value_name = "GLOB")]
    pub disable_rule: Vec<String>,

    /// Run only rules whose id matches GLOB (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub only_rule: Vec<String>,

    /// Report only secrets that are not in this baseline.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,

    /// Write every secret found to FILE as a baseline, then exit 0.
    #[arg(long, value_name = "FILE")]
    pub write_baseline: Option<PathBuf>,

    /// Ignore file of reviewed fingerprints (repeatable; .mayflyignore in the
    /// current directory and in each scanned directory is read too).
    #[arg(long, value_name = "FILE")]
    pub ignore_file: Vec<PathBuf>,

    /// Fingerprint key file shared across an organisation (default: a key
    /// created on first use in Mayfly's data directory).
    #[arg(long, value_name = "FILE", env = "MAYFLY_FINGERPRINT_KEY_FILE")]
    pub fingerprint_key: Option<PathBuf>,

    /// Print the plaintext of each secret found.
    #[arg(long)]
    pub show_secrets: bool,

    /// Skip (and report) files larger than SIZE, e.g. 500K, 100M, 2G [default: 100M].
    #[arg(long, value_name = "SIZE")]
    pub max_file_size: Option<String>,

    /// Follow symbolic links (loops are detected and reported).
    #[arg(long)]
    pub follow_symlinks: bool,

    /// Worker threads [default: all cores].
    #[arg(long, short = 'j', value_name = "N")]
    pub threads: Option<usize>,

    /// Never show a progress bar.
    #[arg(long)]
    pub no_progress: bool,

    /// Scan the git history of each PATH (every blob reachable from every
    /// branch, tag and stash, once), not its working tree.
    #[arg(long, help_heading = "Git")]
    pub git: bool,

    /// Scan only what is staged for the next commit (pre-commit hook).
    #[arg(long, help_heading = "Git", conflicts_with_all = ["git", "range"])]
    pub staged: bool,

    /// Scan only the commits of a revision range, e.g. origin/main..HEAD (implies --git).
    #[arg(long, value_name = "A..B", help_heading = "Git")]
    pub range: Option<String>,

    /// Scan only commits reachable from this branch or revision (repeatable; implies --git).
    #[arg(long, value_name = "NAME", help_heading = "Git")]
    pub branch: Vec<String>,

    /// Scan only commits made on or after DATE (YYYY-MM-DD or seconds since the epoch; implies --git).
    #[arg(long, value_name = "DATE", help_heading = "Git")]
    pub since: Option<String>,

    /// Scan at most N commits, newest first (implies --git).
    #[arg(long, value_name = "N", help_heading = "Git")]
    pub max_commits: Option<usize>,

    /// Scan this workstation: MCP configs, agent transcripts, shell
    /// histories and credential files of AI and developer tools under the
    /// home directory (PATHs are scanned too when given).
    #[arg(long, help_heading = "Workstation")]
    pub host: bool,

    /// The home directory for --host [default: $HOME].
    #[arg(
        long,
        value_name = "DIR",
        help_heading = "Workstation",
        requires = "host"
    )]
    pub home: Option<PathBuf>,

    /// Merge the results into the inventory (see `mayfly inventory`).
    #[arg(long, help_heading = "Inventory")]
    pub save: bool,

    #[command(flatten)]
    pub db: DbArgs,
}

/// Where the store is.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// The store: a SQLite file or a postgres:// URL [default: mayfly.db in Mayfly's data directory].
    #[arg(long, value_name = "PATH|URL", env = "MAYFLY_DB", global = true)]
    pub db: Option<String>,
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// List the rules in use: id, provider, severity, OWASP NHI items.
    List {
        /// Also load this rule file (repeatable).
        #[arg(long = "rules", value_name = "FILE")]
        rule_files: Vec<PathBuf>,
    },
    /// Check rules against their own examples and negative examples.
    Check {
        /// Rule files to check (default: the built-in rules).
        files: Vec<PathBuf>,
    },
}

/// Runs the command; returns the exit code.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Scan(args) => scan_cmd::scan(*args),
        Command::Rules(RulesCommand::List { rule_files }) => scan_cmd::list_rules(&rule_files),
        Command::Rules(RulesCommand::Check { files }) => scan_cmd::check_rules(&files),
        Command::Inventory(args) => inventory_cmd::run(args),
        Command::Govern(args) => inventory_cmd::govern(args),
        Command::Report(args) => inventory_cmd::report(args),
        Command::Serve(args) => broker_cmd::serve(args),
        Command::Task(command) => broker_cmd::task(command),
        Command::Token(command) => broker_cmd::token(command),
        Command::Policy(command) => broker_cmd::policy(command),
        Command::Audit(args) => broker_cmd::audit(args.command, &args.db),
        Command::Identity(command) => broker_cmd::identity(command),
        Command::Run(args) => broker_cmd::run(args),
    }
}
