//! `mayfly migrate FINGERPRINT --name NAME [--apply]`: from a found copy
//! to custody. The secret's value is read again from one live copy on this
//! machine (its fingerprint checked), taken into custody with the
//! inventory's owner and provider, and removed from every copy Mayfly can
//! edit safely (see `mayfly_migrate`); the others are listed to delete by
//! hand, and the secret is then exposed: `govern plan` asks for its
//! rotation. A dry run by default: the patch is shown, nothing written.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use mayfly_broker::client::{Client, ClientError};
use mayfly_broker::custody::{self, AddCustody, SecretValue};
use mayfly_migrate::{NotEditable, Rewrite, Wrapper};
use mayfly_scan::fingerprint::FingerprintKey;
use mayfly_scan::rule::RuleSet;
use mayfly_scan::scan::{ScanOptions, Scanner};
use mayfly_store::{LocationRow, SecretDetail, SecretStatus};

use crate::cmd::client::{ClientAuthArgs, ServerArgs};
use crate::cmd::inventory::hostname;
use crate::common::{DbArgs, now, outln};

/// Files larger than this are not read back for the value.
const MAX_READ: u64 = 64 * 1024 * 1024;

/// `mayfly migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The secret's fingerprint (or a unique prefix of 8+ hex digits), from `mayfly inventory list`.
    pub fingerprint: String,
    /// The custody entry to create (used in `mayfly run --inject NAME`).
    #[arg(long)]
    pub name: String,
    /// Write: take the secret into custody and edit the copies (a backup beside each file).
    #[arg(long)]
    pub apply: bool,
    /// With --apply: keep no backups (they hold the old value).
    #[arg(long, requires = "apply")]
    pub no_backup: bool,
    /// The owner [default: the inventory's].
    #[arg(long)]
    pub owner: Option<String>,
    /// The provider preset [default: the inventory's provider].
    #[arg(long)]
    pub provider: Option<String>,
    /// The upstream base URL [default: the provider's API].
    #[arg(long = "upstream", value_name = "URL")]
    pub upstreams: Vec<String>,
    /// The fingerprint key the inventory was made with [default: the one in Mayfly's data directory].
    #[arg(long, value_name = "FILE", env = "MAYFLY_FINGERPRINT_KEY_FILE")]
    pub fingerprint_key: Option<PathBuf>,
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub auth: ClientAuthArgs,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// A copy and what becomes of it.
struct Copy {
    location: LocationRow,
    outcome: Result<(String, Rewrite), NotEditable>,
}

/// The secret's value, read back from a live copy on this machine whose
/// fingerprint matches: a file in a working tree first, else a copy only
/// history holds, read from the commit that introduced it; `None` when no
/// such copy still holds it.
pub(crate) fn read_live_value(scanner: &Scanner, detail: &SecretDetail) -> Option<SecretValue> {
    let host = hostname();
    let here: Vec<&LocationRow> = detail
        .locations
        .iter()
        .filter(|l| l.gone_at.is_none() && (l.host.is_empty() || l.host == host))
        .collect();
    let files: Vec<&LocationRow> = here
        .iter()
        .copied()
        .filter(|l| l.commit_id.is_none())
        .collect();
    if let Some(value) = read_value(scanner, &detail.secret.fingerprint, &files) {
        return Some(value);
    }
    here.iter()
        .find_map(|l| read_from_history(scanner, &detail.secret.fingerprint, l))
}

/// The scanner that reads a secret's value back from its copies: the
/// built-in rules, the inventory's fingerprint key, plaintext kept. Built
/// once per command (compiling the rules is the costly part).
pub(crate) fn value_reader(fingerprint_key: Option<&Path>) -> anyhow::Result<Scanner> {
    let key = match fingerprint_key {
        Some(path) => FingerprintKey::from_file(path)?,
        None => FingerprintKey::load_or_create(&FingerprintKey::default_path()?)?,
    };
    let options = ScanOptions {
        reveal_secrets: true,
        ..ScanOptions::default()
    };
    Ok(Scanner::new(RuleSet::builtin()?, key, options)?)
}

/// The value of a copy only history holds, from the file at its commit.
fn read_from_history(
    scanner: &Scanner,
    fingerprint: &str,
    copy: &LocationRow,
) -> Option<SecretValue> {
    let (commit, root) = (copy.commit_id.as_deref()?, copy.root.as_deref()?);
    let relative = Path::new(&copy.path).strip_prefix(root).ok()?;
    let bytes = mayfly_scan::git::file_at_commit(Path::new(root), commit, relative).ok()?;
    scanner
        .scan_bytes(&copy.path, &bytes)
        .into_iter()
        .find(|f| f.fingerprint.to_hex() == fingerprint)
        .and_then(|f| f.secret)
        .map(SecretValue::new)
}

/// Reads the secret's value back from a live copy on this machine.
fn read_value(
    scanner: &Scanner,
    fingerprint: &str,
    copies: &[&LocationRow],
) -> Option<SecretValue> {
    for copy in copies {
        let path = Path::new(&copy.path);
        let small = std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() <= MAX_READ);
        let Some(bytes) = small.then(|| std::fs::read(path).ok()).flatten() else {
            continue;
        };
        let found = scanner
            .scan_bytes(&copy.path, &bytes)
            .into_iter()
            .find(|f| f.fingerprint.to_hex() == fingerprint)
            .and_then(|f| f.secret);
        if let Some(secret) = found {
            return Some(SecretValue::new(secret));
        }
    }
    None
}

/// The wrapper MCP servers are run under: `mayfly` from PATH (else this
/// binary), with the broker's URL and, if set, where the identity token is.
fn wrapper(entry: &str, owner: &str, server: &str) -> Wrapper {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("mayfly").is_file()));
    let program = if on_path {
        "mayfly".to_owned()
    } else {
        std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "mayfly".to_owned())
    };
    let mut env = vec![("MAYFLY_SERVER".to_owned(), server.to_owned())];
    if let Ok(file) = std::env::var("MAYFLY_IDENTITY_TOKEN_FILE") {
        env.push(("MAYFLY_IDENTITY_TOKEN_FILE".to_owned(), file));
    }
    Wrapper {
        entry: entry.to_owned(),
        program,
        owner: owner.to_owned(),
        env,
    }
}

/// What becomes of one live copy.
fn plan_copy(location: &LocationRow, host: &str, secret: &str, wrapper: &Wrapper) -> Copy {
    let not_editable = |why: &str| {
        Err(NotEditable {
            path: location.path.clone(),
            why: why.to_owned(),
        })
    };
    let outcome = if location.commit_id.is_some() {
        not_editable("in git history: rewrite history or accept it, and rotate the secret")
    } else if !location.host.is_empty() && location.host != host {
        not_editable(&format!("on machine {}: migrate it there", location.host))
    } else if location.surface == "database" || location.path.contains("::") {
        not_editable("inside a database or archive: delete it there by hand")
    } else {
        match std::fs::read_to_string(&location.path) {
            Err(e) => not_editable(&format!("cannot be read ({e})")),
            Ok(text) => mayfly_migrate::rewrite(Path::new(&location.path), &text, secret, wrapper)
                .map(|rewrite| (text, rewrite)),
        }
    };
    Copy {
        location: location.clone(),
        outcome,
    }
}

/// Writes `text` over `path` atomically (a temporary file beside it,
/// renamed), keeping its permissions; the old content goes to a backup
/// beside it (mode 0600: it holds the secret) unless `backup` is false.
pub(crate) fn write_atomically(
    path: &Path,
    expected: &str,
    text: &str,
    backup: bool,
) -> anyhow::Result<Option<PathBuf>> {
    let current = std::fs::read_to_string(path)?;
    if current != expected {
        bail!(
            "{} changed since it was read; run migrate again",
            path.display()
        );
    }
    let permissions = std::fs::metadata(path)?.permissions();
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let backup_path = if backup {
        let mut name = path.as_os_str().to_owned();
        name.push(".mayfly-backup");
        let backup_path = PathBuf::from(name);
        mayfly_broker::keys::write_private(&backup_path, current.as_bytes())
            .with_context(|| format!("cannot write the backup {}", backup_path.display()))?;
        Some(backup_path)
    } else {
        None
    };
    let mut temporary = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut temporary, text.as_bytes())?;
    temporary.as_file().set_permissions(permissions)?;
    temporary
        .persist(path)
        .map_err(|e| anyhow::anyhow!("cannot replace {}: {}", path.display(), e.error))?;
    Ok(backup_path)
}

/// Takes the secret into custody, unless this migration already did.
fn add_to_custody(
    args: &MigrateArgs,
    client: &Client,
    admin: &str,
    fingerprint: &str,
    provider: &str,
    owner: &str,
    secret: SecretValue,
) -> anyhow::Result<()> {
    match client.custody_show(admin, &args.name) {
        Ok(entry) if entry.fingerprint.as_deref() == Some(fingerprint) => {
            eprintln!(
                "{} is already in custody from this secret; editing the copies",
                args.name
            );
            return Ok(());
        }
        Ok(_) => bail!(
            "a custody entry named {} exists for another secret; choose another --name",
            args.name
        ),
        Err(ClientError::Refused { status: 404, .. }) => {}
        Err(e) => return Err(e.into()),
    }
    client.custody_add(
        admin,
        &AddCustody {
            name: args.name.clone(),
            provider: provider.to_owned(),
            owner: owner.to_owned(),
            upstreams: args.upstreams.clone(),
            injection: None,
            max_age_days: None,
            grace_seconds: None,
            fingerprint: Some(fingerprint.to_owned()),
            secret,
        },
    )?;
    Ok(())
}

/// `mayfly migrate`.
pub fn migrate(args: MigrateArgs) -> anyhow::Result<u8> {
    custody::check_name(&args.name)?;
    let mut store = args.db.open()?;
    let detail = store.secret(&args.fingerprint)?;
    let secret_row = &detail.secret;
    let fingerprint = secret_row.fingerprint.clone();
    if secret_row.status == SecretStatus::InCustody && !args.apply {
        eprintln!(
            "{} is already in custody as {}",
            &fingerprint[..12],
            secret_row.custody_entry.as_deref().unwrap_or("?")
        );
    }
    let provider = args
        .provider
        .clone()
        .unwrap_or_else(|| secret_row.provider.clone());
    if custody::preset(&provider).is_none() && args.upstreams.is_empty() {
        bail!(
            "Mayfly has no preset for provider {provider}: pass --provider (openai, anthropic, github, ...) or --upstream URL"
        );
    }
    let Some(owner) = args.owner.clone().or_else(|| secret_row.owner.clone()) else {
        bail!(
            "{} has no owner: pass --owner TEAM (or set one: mayfly inventory owner set {} TEAM)",
            &fingerprint[..12],
            &fingerprint[..12]
        );
    };
    let host = hostname();
    let live: Vec<&LocationRow> = detail
        .locations
        .iter()
        .filter(|l| l.gone_at.is_none())
        .collect();
    let scanner = value_reader(args.fingerprint_key.as_deref())?;
    let Some(secret) = read_live_value(&scanner, &detail) else {
        bail!(
            "no live copy of {} on this machine still holds it (moved or edited, in the working tree and in history); \
             rescan with `mayfly scan PATH --save`, or add it by hand: mayfly custody add {} --provider ... --stdin",
            &fingerprint[..12],
            args.name
        );
    };
    let wrapper = wrapper(&args.name, &owner, &args.server.server);
    let copies: Vec<Copy> = live
        .iter()
        .map(|l| plan_copy(l, &host, secret.expose(), &wrapper))
        .collect();
    let (editable, by_hand): (Vec<&Copy>, Vec<&Copy>) =
        copies.iter().partition(|c| c.outcome.is_ok());
    outln!(
        "secret {} ({provider}, owner {owner}, {} live cop{}) into custody as {}",
        &fingerprint[..12],
        live.len(),
        if live.len() == 1 { "y" } else { "ies" },
        args.name
    )?;
    for copy in &editable {
        if let Ok((old, rewrite)) = &copy.outcome {
            outln!("\n{}: {}", copy.location.path, rewrite.changes.join("; "))?;
            let patch =
                mayfly_migrate::patch(&copy.location.path, old, &rewrite.text, secret.expose());
            outln!("{}", patch.trim_end())?;
        }
    }
    if !by_hand.is_empty() {
        outln!("\ndelete by hand (Mayfly does not edit these):")?;
        for copy in &by_hand {
            if let Err(e) = &copy.outcome {
                outln!(
                    "  {}:{}  {}",
                    copy.location.shown_path(),
                    copy.location.line,
                    e.why
                )?;
            }
        }
        outln!(
            "exposed: rotate. These copies were readable outside custody: rotate the key at {provider}, then `mayfly custody rotate {} --stdin`",
            args.name
        )?;
    }
    if !args.apply {
        eprintln!("\ndry run: nothing written; run again with --apply");
        return Ok(0);
    }
    let client = Client::new(&args.server.server);
    add_to_custody(
        &args,
        &client,
        &args.auth.admin_token()?,
        &fingerprint,
        &provider,
        &owner,
        secret,
    )?;
    let mut backups = Vec::new();
    for copy in &editable {
        if let Ok((old, rewrite)) = &copy.outcome {
            let path = Path::new(&copy.location.path);
            if let Some(backup) = write_atomically(path, old, &rewrite.text, !args.no_backup)? {
                backups.push(backup);
            }
        }
    }
    let note = format!(
        "moved into custody as {} by mayfly migrate: {} cop{} edited, {} left to delete by hand{}",
        args.name,
        editable.len(),
        if editable.len() == 1 { "y" } else { "ies" },
        by_hand.len(),
        if by_hand.is_empty() {
            ""
        } else {
            " (exposed: rotate)"
        }
    );
    store.record_custody(&fingerprint, &args.name, &note, now())?;
    eprintln!("\n{note}");
    if !backups.is_empty() {
        eprintln!(
            "backups (they hold the old value; delete them once you have checked): {}",
            backups
                .iter()
                .map(|b| b.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    eprintln!(
        "run with it: mayfly run --inject {} --purpose \"...\" -- CMD; rescan to confirm: mayfly scan PATH --save",
        args.name
    );
    Ok(0)
}
