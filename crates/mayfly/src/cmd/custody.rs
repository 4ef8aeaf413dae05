//! `mayfly custody`: the secrets the broker holds for the injecting proxy
//! (admin). A secret is read from an environment variable, a file or
//! standard input, never from the command line (shell history, `ps`).

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use mayfly_broker::client::Client;
use mayfly_broker::custody::{
    self, AddCustody, CustodyView, Injection, RotateCustody, SecretValue,
};

use crate::cmd::client::{ClientAuthArgs, ServerArgs};
use crate::common::{outln, print_json};

/// Where a secret's value comes from (exactly one).
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct SecretSource {
    /// Read the secret from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub from_env: Option<String>,
    /// Read the secret from this file (a trailing line break is dropped).
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,
    /// Read the secret from standard input (a trailing line break is dropped).
    #[arg(long)]
    pub stdin: bool,
    /// Refused: a secret on the command line stays in shell history and
    /// shows in `ps`.
    #[arg(long, value_name = "VALUE", hide = true)]
    pub secret: Option<String>,
}

/// Refuses secrets given on the command line, saying how to pass them.
fn refuse_on_command_line(stray: &[String], flag: bool) -> anyhow::Result<()> {
    if flag || !stray.is_empty() {
        anyhow::bail!(
            "a secret is never taken from the command line (it would stay in shell history and show in `ps`); \
             pass it with --from-env VAR, --from-file FILE or --stdin (e.g. `printenv OPENAI_API_KEY | mayfly custody add ... --stdin`)"
        );
    }
    Ok(())
}

impl SecretSource {
    /// Reads the value.
    pub fn read(&self) -> anyhow::Result<SecretValue> {
        refuse_on_command_line(&[], self.secret.is_some())?;
        let text = if let Some(var) = &self.from_env {
            std::env::var(var).with_context(|| format!("${var} is not set (or not UTF-8)"))?
        } else if let Some(file) = &self.from_file {
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the secret from {}", file.display()))?
        } else {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the secret from standard input")?;
            text
        };
        let secret = SecretValue::new(text.trim_end_matches(['\n', '\r']).to_owned());
        if secret.expose().is_empty() {
            anyhow::bail!("the secret is empty");
        }
        Ok(secret)
    }
}

/// `mayfly custody`.
#[derive(Debug, Subcommand)]
pub enum CustodyCommand {
    /// Take a secret into custody; the proxy injects it, nobody else sees it again.
    Add {
        /// The entry's name (letters, digits, -, _, .), used in `mayfly run --inject NAME`.
        name: String,
        /// The provider: openai, anthropic, github, gitlab, stripe, slack, huggingface,
        /// or any name with --upstream (generic).
        #[arg(long)]
        provider: String,
        /// The person or team answerable for the secret.
        #[arg(long)]
        owner: String,
        /// An upstream base URL it may be sent to (repeatable) [default: the provider's API].
        #[arg(long = "upstream", value_name = "URL")]
        upstreams: Vec<String>,
        /// Inject as this header [default: the provider's, else authorization].
        #[arg(long, value_name = "NAME", conflicts_with = "query")]
        header: Option<String>,
        /// The header's value around {secret} [default: the provider's, else "Bearer {secret}"].
        #[arg(long, value_name = "TEMPLATE", requires = "header")]
        template: Option<String>,
        /// Inject as this query parameter instead of a header.
        #[arg(long, value_name = "PARAM")]
        query: Option<String>,
        /// Rotation is due after this many days (`mayfly govern plan` says so).
        #[arg(long, value_name = "DAYS")]
        max_age_days: Option<i64>,
        /// Seconds a previous version stays usable after `custody rotate` [default: the server's].
        #[arg(long, value_name = "SECONDS")]
        grace: Option<i64>,
        #[command(flatten)]
        source: SecretSource,
        /// Refused: see --from-env, --from-file, --stdin.
        #[arg(hide = true, trailing_var_arg = true, allow_hyphen_values = true)]
        stray: Vec<String>,
        #[command(flatten)]
        auth: ClientAuthArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the entries in custody (never a value).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        auth: ClientAuthArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show one entry: provider, owner, upstreams, injection, versions (never the value).
    Show {
        /// The entry.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        auth: ClientAuthArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Make a new version current; the previous one stays usable for the grace period.
    Rotate {
        /// The entry.
        name: String,
        #[command(flatten)]
        source: SecretSource,
        /// Refused: see --from-env, --from-file, --stdin.
        #[arg(hide = true, trailing_var_arg = true, allow_hyphen_values = true)]
        stray: Vec<String>,
        #[command(flatten)]
        auth: ClientAuthArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print the local CA certificate (PEM) that `mayfly run --intercept` signs hosts with;
    /// made on first use in Mayfly's data directory.
    Ca,
    /// Remove an entry and destroy every version of it; the proxy refuses it from then on.
    Remove {
        /// The entry.
        name: String,
        #[command(flatten)]
        auth: ClientAuthArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
}

fn injection_of(
    header: Option<String>,
    template: Option<String>,
    query: Option<String>,
) -> Option<Injection> {
    match (header, query) {
        (Some(name), _) => Some(Injection::Header {
            name,
            template: template.unwrap_or_else(|| "Bearer {secret}".into()),
        }),
        (None, Some(name)) => Some(Injection::Query { name }),
        (None, None) => None,
    }
}

fn print_entry(entry: &CustodyView) -> anyhow::Result<()> {
    let injection = match &entry.injection {
        Injection::Header { name, template } => format!("header {name}: {template}"),
        Injection::Query { name } => format!("query parameter {name}"),
    };
    outln!("{}", entry.name)?;
    outln!("  provider   {}", entry.provider)?;
    outln!("  owner      {}", entry.owner)?;
    outln!("  upstreams  {}", entry.upstreams.join(", "))?;
    outln!("  injection  {injection}")?;
    outln!("  audience   {}", entry.audience)?;
    outln!(
        "  version    {} (made {}){}",
        entry.version,
        crate::common::date(entry.rotated_at),
        if entry.rotation_due {
            ", rotation due"
        } else {
            ""
        }
    )?;
    for previous in &entry.previous_versions {
        outln!(
            "  version    {} usable until {}",
            previous.version,
            crate::common::date(previous.retires_at)
        )?;
    }
    if let Some(days) = entry.max_age_days {
        outln!("  max age    {days} days")?;
    }
    if let Some(fingerprint) = &entry.fingerprint {
        outln!("  migrated from inventory secret {fingerprint}")?;
    }
    Ok(())
}

/// `mayfly custody ...`.
pub fn custody(command: CustodyCommand) -> anyhow::Result<u8> {
    match command {
        CustodyCommand::Add {
            name,
            provider,
            owner,
            upstreams,
            header,
            template,
            query,
            max_age_days,
            grace,
            source,
            stray,
            auth,
            server,
        } => {
            refuse_on_command_line(&stray, false)?;
            custody::check_name(&name)?;
            let secret = source.read()?;
            let client = Client::new(&server.server);
            let entry = client.custody_add(
                &auth.admin_token()?,
                &AddCustody {
                    name,
                    provider,
                    owner,
                    upstreams,
                    injection: injection_of(header, template, query),
                    max_age_days,
                    grace_seconds: grace,
                    fingerprint: None,
                    secret,
                },
            )?;
            eprintln!(
                "in custody: {} (version 1); run a tool with it: mayfly run --inject {} -- CMD",
                entry.name, entry.name
            );
            print_entry(&entry)?;
        }
        CustodyCommand::List { json, auth, server } => {
            let entries = Client::new(&server.server).custody_list(&auth.admin_token()?)?;
            if json {
                print_json(&entries)?;
            } else if entries.is_empty() {
                eprintln!(
                    "nothing in custody; add a secret with `mayfly custody add NAME --provider P --owner O --from-env VAR`"
                );
            } else {
                let width = entries
                    .iter()
                    .map(|e| e.name.len())
                    .max()
                    .unwrap_or(4)
                    .max(4);
                outln!(
                    "{:width$}  {:12}  {:20}  {:>7}  UPSTREAM",
                    "NAME",
                    "PROVIDER",
                    "OWNER",
                    "VERSION"
                )?;
                for e in &entries {
                    outln!(
                        "{:width$}  {:12}  {:20}  {:>7}  {}{}",
                        e.name,
                        e.provider,
                        e.owner,
                        e.version,
                        e.upstreams.join(", "),
                        if e.rotation_due {
                            "  (rotation due)"
                        } else {
                            ""
                        }
                    )?;
                }
            }
        }
        CustodyCommand::Show {
            name,
            json,
            auth,
            server,
        } => {
            custody::check_name(&name)?;
            let entry = Client::new(&server.server).custody_show(&auth.admin_token()?, &name)?;
            if json {
                print_json(&entry)?;
            } else {
                print_entry(&entry)?;
            }
        }
        CustodyCommand::Rotate {
            name,
            source,
            stray,
            auth,
            server,
        } => {
            refuse_on_command_line(&stray, false)?;
            custody::check_name(&name)?;
            let secret = source.read()?;
            let entry = Client::new(&server.server).custody_rotate(
                &auth.admin_token()?,
                &name,
                &RotateCustody { secret },
            )?;
            eprintln!(
                "rotated: {} is at version {}; the previous version works until its grace period ends",
                entry.name, entry.version
            );
            print_entry(&entry)?;
        }
        CustodyCommand::Ca => {
            let ca = mayfly_broker::relay::LocalCa::load_or_create(&crate::common::data_dir()?)?;
            crate::common::outln!("{}", ca.certificate_pem().trim_end())?;
        }
        CustodyCommand::Remove { name, auth, server } => {
            custody::check_name(&name)?;
            Client::new(&server.server).custody_remove(&auth.admin_token()?, &name)?;
            eprintln!("removed {name} from custody; every version of it is destroyed");
        }
    }
    Ok(0)
}
