//! Arguments, and the dispatch of each command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::scan_cmd;

/// Mayfly ends the life of copied credentials: it finds every copy of an
/// API key or token (code, .env, CI, MCP configs, agent transcripts,
/// notebooks, chat exports, SQLite databases) and groups copies of the same
/// secret by a keyed fingerprint.
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
    }
}
