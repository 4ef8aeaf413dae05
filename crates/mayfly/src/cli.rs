//! The command line: parses arguments and dispatches to `cmd`.

use clap::{Parser, Subcommand};

use crate::cmd::audit::AuditArgs;
use crate::cmd::client::{TaskCommand, TokenCommand};
use crate::cmd::custody::CustodyCommand;
use crate::cmd::govern::GovernArgs;
use crate::cmd::identity::IdentityCommand;
use crate::cmd::inventory::InventoryArgs;
use crate::cmd::mcp::McpCommand;
use crate::cmd::migrate::MigrateArgs;
use crate::cmd::policy::PolicyCommand;
use crate::cmd::report::ReportArgs;
use crate::cmd::revoke::RevokeArgs;
use crate::cmd::rules::RulesCommand;
use crate::cmd::run::RunArgs;
use crate::cmd::scan::ScanArgs;
use crate::cmd::serve::ServeArgs;
use crate::cmd::{
    audit, client, custody, govern, identity, inventory, mcp, migrate, policy, report, revoke,
    rules, run, scan, serve,
};

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
    /// fresh while CMD runs) and, with --inject, gives CMD brokered use of
    /// secrets in custody through a local relay; forwards signals, and ends
    /// the task when CMD exits. Exits with CMD's exit code.
    Run(RunArgs),
    /// Secrets the broker holds for the injecting proxy (admin): add, list, show, rotate, remove.
    #[command(subcommand)]
    Custody(CustodyCommand),
    /// Move a found secret into custody and remove it from the copies Mayfly can edit.
    ///
    /// Reads the value back from a live copy recorded in the inventory,
    /// takes it into custody (admin), and shows the patch that removes it
    /// from .env lines, MCP client configurations (their servers then run
    /// under `mayfly run --inject`) and compose/Kubernetes values. A dry run
    /// unless --apply. Other copies are listed to delete by hand, and the
    /// secret must then be rotated (`mayfly govern plan` says so).
    Migrate(Box<MigrateArgs>),
    /// Revoke a leaked secret at its provider, through the provider's API.
    ///
    /// Reads the value back from a live copy recorded in the inventory
    /// (its fingerprint checked), shows the requests and asks (or --yes),
    /// then records who revoked it and when. Providers without a
    /// revocation API get their manual steps.
    ///
    /// Exit codes: 0 revoked (or already inactive), 1 not revoked, 2 error.
    Revoke(RevokeArgs),
    /// MCP servers on this machine: list them with the credentials they
    /// hold, wrap them so the keys live in custody, unwrap them.
    #[command(subcommand)]
    Mcp(McpCommand),
    /// Print a completion script for a shell: bash, zsh, fish, elvish or powershell.
    ///
    /// bash: `mayfly completions bash > ~/.local/share/bash-completion/completions/mayfly`
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `mayfly man > mayfly.1 && man ./mayfly.1`.
    Man,
}

/// Runs the command; returns the exit code.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Scan(args) => scan::scan(*args),
        Command::Rules(command) => rules::run(command),
        Command::Inventory(args) => inventory::run(args),
        Command::Govern(args) => govern::govern(args),
        Command::Revoke(args) => revoke::revoke(args),
        Command::Report(args) => report::report(args),
        Command::Serve(args) => serve::serve(args),
        Command::Task(command) => client::task(command),
        Command::Token(command) => client::token(command),
        Command::Policy(command) => policy::policy(command),
        Command::Audit(args) => audit::audit(args),
        Command::Identity(command) => identity::identity(command),
        Command::Run(args) => run::run(args),
        Command::Custody(command) => custody::custody(command),
        Command::Migrate(args) => migrate::migrate(*args),
        Command::Mcp(command) => mcp::mcp(command),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "mayfly", &mut std::io::stdout().lock());
            Ok(0)
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(command).render(&mut std::io::stdout().lock())?;
            Ok(0)
        }
    }
}
