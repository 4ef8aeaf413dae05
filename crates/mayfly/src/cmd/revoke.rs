//! `mayfly revoke FINGERPRINT`: ends a leaked secret at its provider,
//! through the API the provider documents for that. The value is read
//! back from a live copy (its fingerprint checked), the requests are shown
//! and confirmed, and the inventory records who revoked what, and when.
//! Providers without such an API get their manual steps.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use mayfly_providers::http::Endpoints;
use mayfly_providers::revoke::{RevokeOutcome, Revokers};
use mayfly_store::{SecretDetail, SecretStatus, Store};

use mayfly_scan::scan::Scanner;

use crate::cmd::migrate::{read_live_value, value_reader};
use crate::common::{DbArgs, ProviderEndpointArgs, now, outln};
use crate::{EXIT_CLEAN, EXIT_FINDINGS};

/// How long one revocation request may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// `mayfly revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The secret's fingerprint (or a unique prefix of 8+ hex digits), from `mayfly inventory list`.
    pub fingerprint: String,
    #[command(flatten)]
    pub with: RevokeWith,
    #[command(flatten)]
    pub db: DbArgs,
}

/// What every revocation needs, from `revoke` and `govern apply`.
#[derive(Debug, Args)]
pub struct RevokeWith {
    /// Revoke without asking.
    #[arg(long)]
    pub yes: bool,
    /// Who the inventory records as having revoked it [default: $USER].
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
    #[command(flatten)]
    pub endpoints: ProviderEndpointArgs,
    /// The fingerprint key the inventory was made with [default: the one in Mayfly's data directory].
    #[arg(long, value_name = "FILE", env = "MAYFLY_FINGERPRINT_KEY_FILE")]
    pub fingerprint_key: Option<PathBuf>,
}

/// A revocation ready to run: the checked settings.
pub struct Revocation {
    revokers: Revokers,
    endpoints: Endpoints,
    by: String,
    /// Reads values back from their copies (its rules also name the
    /// revokers).
    scanner: Scanner,
    /// One HTTP client for every revocation of the command.
    agent: ureq::Agent,
}

/// What became of one secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// Revoked now, or found already inactive; recorded.
    Revoked,
    /// Left as it was (manual steps, refusal, or a failure said why).
    Left,
}

impl Revocation {
    /// Loads the revokers and checks the settings.
    pub fn new(with: &RevokeWith) -> anyhow::Result<Revocation> {
        let scanner = value_reader(with.fingerprint_key.as_deref())?;
        let revokers = Revokers::builtin()?;
        revokers.check_rules(scanner.rules())?;
        let endpoints = with.endpoints.endpoints()?;
        let by = with
            .by
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "unknown".to_owned());
        Ok(Revocation {
            revokers,
            endpoints,
            by,
            scanner,
            agent: mayfly_providers::revoke::agent(TIMEOUT),
        })
    }

    /// The revoker of a secret's rule, if its provider has an API for it.
    pub fn revoker_of(&self, rule_id: &str) -> Option<&mayfly_providers::revoke::Revoker> {
        let rule = self
            .scanner
            .rules()
            .rules()
            .iter()
            .find(|r| r.spec.id == rule_id)?;
        self.revokers.get(rule.spec.revoke.as_deref()?)
    }

    /// What to do by hand for a secret of `provider`.
    pub fn manual_steps(&self, provider: &str) -> String {
        self.revokers.manual_steps(provider)
    }

    /// Revokes one secret (already confirmed), records it, and says what
    /// happened.
    pub fn run(&self, store: &mut Store, detail: &SecretDetail) -> anyhow::Result<Done> {
        let secret = &detail.secret;
        let short = secret.fingerprint.get(..12).unwrap_or(&secret.fingerprint);
        let Some(revoker) = self.revoker_of(&secret.rule_id) else {
            outln!(
                "{short} ({}): no revocation API; by hand: {}\n  then: mayfly inventory resolve {short} --revoked",
                secret.provider,
                self.manual_steps(&secret.provider)
            )?;
            return Ok(Done::Left);
        };
        let Some(value) = read_live_value(&self.scanner, detail) else {
            outln!(
                "{short}: not revoked: no live copy on this machine still holds it (moved or edited, in the working tree and in history); rescan with `mayfly scan PATH --save`, or revoke it at {}",
                secret.provider
            )?;
            return Ok(Done::Left);
        };
        let outcome = revoker.revoke(value.expose(), &self.endpoints, &self.agent);
        let at = now();
        let note = |what: &str| {
            format!(
                "{what} at {} by {} with mayfly revoke ({})",
                secret.provider, self.by, revoker.spec.id
            )
        };
        match outcome {
            RevokeOutcome::Revoked => {
                store.resolve(
                    &secret.fingerprint,
                    SecretStatus::Revoked,
                    &note("revoked"),
                    at,
                )?;
                outln!(
                    "{short}: REVOKED at {} (recorded: by {})",
                    secret.provider,
                    self.by
                )?;
                Ok(Done::Revoked)
            }
            RevokeOutcome::AlreadyInactive(reason) => {
                let what = format!("found already inactive ({reason})");
                store.resolve(&secret.fingerprint, SecretStatus::Revoked, &note(&what), at)?;
                outln!(
                    "{short}: already inactive at {} ({reason}); recorded as revoked",
                    secret.provider
                )?;
                Ok(Done::Revoked)
            }
            RevokeOutcome::Denied(reason) => {
                outln!(
                    "{short}: not revoked: {} refused ({reason}); someone with the rights must revoke it (the API: {}), then: mayfly inventory resolve {short} --revoked",
                    secret.provider,
                    revoker.spec.docs
                )?;
                Ok(Done::Left)
            }
            RevokeOutcome::Failed(reason) => {
                outln!("{short}: not revoked: {reason}; nothing was recorded, try again")?;
                Ok(Done::Left)
            }
        }
    }
}

/// Asks on the terminal; `--yes` answers for it, and without a terminal
/// nothing is done.
pub fn confirm(question: &str, yes: bool) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        bail!("{question} needs a yes: run it in a terminal, or pass --yes");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// `mayfly revoke`.
pub fn revoke(args: RevokeArgs) -> anyhow::Result<u8> {
    let revocation = Revocation::new(&args.with)?;
    let mut store = args.db.open()?;
    let detail = store.secret(&args.fingerprint)?;
    let secret = &detail.secret;
    let short = secret.fingerprint.get(..12).unwrap_or(&secret.fingerprint);
    if secret.status == SecretStatus::Revoked {
        outln!("{short} is already recorded as revoked")?;
        return Ok(EXIT_CLEAN);
    }
    if let Some(entry) = secret
        .custody_entry
        .as_deref()
        .filter(|_| secret.status == SecretStatus::InCustody)
    {
        bail!(
            "{short} is held in custody as {entry}: revoking it would cut every task that uses it; rotate it instead (a new key at {}, then `mayfly custody rotate {entry} --stdin`)",
            secret.provider
        );
    }
    if let Some(revoker) = revocation.revoker_of(&secret.rule_id) {
        outln!(
            "revoke {short} ({}, {}) at {}:",
            secret.rule_id,
            secret.provider,
            secret.provider
        )?;
        for request in revoker.describe() {
            outln!("  {request}")?;
        }
        if !confirm("Revoke it?", args.with.yes)? {
            outln!("nothing done")?;
            return Ok(EXIT_FINDINGS);
        }
    }
    Ok(match revocation.run(&mut store, &detail)? {
        Done::Revoked => EXIT_CLEAN,
        Done::Left => EXIT_FINDINGS,
    })
}
