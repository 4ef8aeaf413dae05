//! `mayfly serve`, `task`, `token`, `policy`, `audit`, `identity` and `run`:
//! the broker's commands.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use mayfly_broker::client::{Client, IdentitySource, TaskRequest};
use mayfly_broker::config::BrokerConfig;
use mayfly_broker::local_issuer::LocalIssuer;
use mayfly_broker::policy::PolicyEngine;
use mayfly_broker::service::{BrokerPaths, admin_token};
use mayfly_broker::{Broker, Clock as _, SystemClock};
use mayfly_scan::fingerprint;

use crate::cli::DbArgs;
use crate::inventory_cmd::open_store;

/// The broker's address for client commands.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The broker's URL.
    #[arg(
        long,
        value_name = "URL",
        env = "MAYFLY_SERVER",
        default_value = "http://127.0.0.1:8710"
    )]
    pub server: String,
}

/// Where the caller's identity token comes from.
#[derive(Debug, Args)]
pub struct IdentityArgs {
    /// File holding the workload identity JWT [default: $MAYFLY_IDENTITY_TOKEN_FILE,
    /// else $MAYFLY_IDENTITY_TOKEN, else the GitHub Actions runner's OIDC token].
    #[arg(long, value_name = "FILE")]
    pub identity_token_file: Option<PathBuf>,
    /// Audience to request from the GitHub Actions token endpoint.
    #[arg(long, value_name = "AUD", default_value = "mayfly")]
    pub identity_audience: String,
}

impl IdentityArgs {
    fn source(&self) -> anyhow::Result<IdentitySource> {
        Ok(IdentitySource::detect(
            self.identity_token_file.clone(),
            &self.identity_audience,
        )?)
    }
}

/// How a client command authenticates as admin or resource server.
#[derive(Debug, Args)]
pub struct ClientAuthArgs {
    /// File holding the admin token [default: $MAYFLY_ADMIN_TOKEN, else the
    /// admin-token file in Mayfly's data directory].
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Authenticate as this resource server instead (secret from $MAYFLY_CLIENT_SECRET).
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
}

impl ClientAuthArgs {
    fn admin_token(&self) -> anyhow::Result<String> {
        if let Some(file) = &self.admin_token_file {
            return Ok(std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the admin token {}", file.display()))?
                .trim()
                .to_owned());
        }
        if let Ok(token) = std::env::var("MAYFLY_ADMIN_TOKEN")
            && !token.trim().is_empty()
        {
            return Ok(token.trim().to_owned());
        }
        let file = fingerprint::data_dir()?.join("admin-token");
        Ok(std::fs::read_to_string(&file)
            .with_context(|| {
                format!(
                    "no admin token: set MAYFLY_ADMIN_TOKEN or pass --admin-token-file (looked in {})",
                    file.display()
                )
            })?
            .trim()
            .to_owned())
    }

    fn header(&self) -> anyhow::Result<String> {
        use base64::Engine as _;
        match &self.client_id {
            Some(id) => {
                let secret = std::env::var("MAYFLY_CLIENT_SECRET").context(
                    "--client-id needs the resource server's secret in MAYFLY_CLIENT_SECRET",
                )?;
                let pair = format!("{id}:{}", secret.trim());
                Ok(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
            None => Ok(format!("Bearer {}", self.admin_token()?)),
        }
    }
}

/// `mayfly serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (see mayfly.example.toml) [default: embedded
    /// defaults: 127.0.0.1:8710, the embedded policies, the local identity issuer].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Listen on this address instead of the configured one.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
}

/// `mayfly task`.
#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Start a task with the caller's identity; prints the task as JSON.
    Start {
        /// Why the task runs.
        #[arg(long)]
        purpose: String,
        /// The person or team answerable for it.
        #[arg(long)]
        owner: String,
        /// An audience the task will ask credentials for (repeatable).
        #[arg(long = "audience", required = true)]
        audiences: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long, value_name = "SECONDS")]
        ttl: Option<i64>,
        /// Print only the task id.
        #[arg(long)]
        raw: bool,
        #[command(flatten)]
        identity: IdentityArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// End a task: all its credentials stop working at once.
    End {
        /// The task id.
        #[arg(allow_hyphen_values = true)]
        id: String,
        /// Use the admin token instead of the caller's identity.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        identity: IdentityArgs,
        #[command(flatten)]
        auth: ClientAuthArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show a task and its credentials.
    Show {
        /// The task id.
        #[arg(allow_hyphen_values = true)]
        id: String,
        /// Use the admin token instead of the caller's identity.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        identity: IdentityArgs,
        #[command(flatten)]
        auth: ClientAuthArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// `mayfly token`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Exchange the caller's identity for a credential of a task (RFC 8693);
    /// prints the token response as JSON.
    Exchange {
        /// The task id.
        #[arg(long, allow_hyphen_values = true)]
        task: String,
        /// The audience (resource server URI).
        #[arg(long)]
        audience: String,
        /// Scopes, space-separated.
        #[arg(long)]
        scope: Option<String>,
        /// Requested lifetime in seconds.
        #[arg(long, value_name = "SECONDS")]
        ttl: Option<i64>,
        /// Print only the access token.
        #[arg(long)]
        raw: bool,
        #[command(flatten)]
        identity: IdentityArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Ask whether a token is active (RFC 7662). Exit 0 active, 1 inactive.
    Introspect {
        /// The token, or - to read it from standard input (keeps it out of `ps`).
        token: String,
        #[command(flatten)]
        auth: ClientAuthArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Revoke a token (RFC 7009).
    Revoke {
        /// The token, or - to read it from standard input.
        token: String,
        #[command(flatten)]
        auth: ClientAuthArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// `mayfly policy`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a directory of Cedar policies against Mayfly's schema.
    /// Exit 0 valid, 2 invalid.
    Check {
        /// The directory of *.cedar files.
        dir: PathBuf,
    },
    /// Print Mayfly's Cedar schema.
    Schema,
}

/// `mayfly audit`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit chain: exit 0 intact, 1 broken (edited, removed or reordered events).
    Verify,
    /// Show the last events.
    Tail {
        /// How many.
        #[arg(short = 'n', long, default_value_t = 20)]
        count: i64,
        /// Output format: text or json.
        #[arg(long, short = 'f', default_value = "text")]
        format: String,
    },
}

/// `mayfly identity`.
#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Mint a workload identity JWT from the local issuer (for trying Mayfly
    /// on one machine; `mayfly serve` on its defaults trusts it).
    Mint {
        /// The workload (the token's `sub`).
        #[arg(long, default_value = "local:dev")]
        sub: String,
        /// Lifetime in seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
        ttl: i64,
        /// Extra claim NAME=VALUE (repeatable).
        #[arg(long = "claim", value_name = "NAME=VALUE")]
        claims: Vec<String>,
    },
}

/// `mayfly run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Why the task runs.
    #[arg(long)]
    pub purpose: String,
    /// The person or team answerable for it [default: $USER].
    #[arg(long)]
    pub owner: Option<String>,
    /// The audience of the credential.
    #[arg(long)]
    pub audience: String,
    /// Scopes, space-separated.
    #[arg(long)]
    pub scope: Option<String>,
    /// Task lifetime in seconds: credentials stop working then, even if CMD still runs.
    #[arg(long, value_name = "SECONDS")]
    pub ttl: Option<i64>,
    /// Environment variable that carries the credential.
    #[arg(long = "env", value_name = "NAME", default_value = "MAYFLY_TOKEN")]
    pub env_name: String,
    #[command(flatten)]
    pub identity: IdentityArgs,
    #[command(flatten)]
    pub server: ServerArgs,
    /// The command and its arguments.
    #[arg(required = true, last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

fn data_dir() -> anyhow::Result<PathBuf> {
    Ok(fingerprint::data_dir()?)
}

fn default_db() -> anyhow::Result<String> {
    Ok(data_dir()?.join("mayfly.db").to_string_lossy().into_owned())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn read_token(arg: &str) -> anyhow::Result<String> {
    if arg == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text.trim().to_owned())
    } else {
        Ok(arg.to_owned())
    }
}

/// `mayfly serve`.
pub fn serve(args: ServeArgs) -> anyhow::Result<u8> {
    let data_dir = data_dir()?;
    let mut config = match &args.config {
        Some(path) => BrokerConfig::load(path)?,
        None => {
            let local = LocalIssuer::new(&data_dir);
            local.ensure()?;
            let mut config = BrokerConfig::default();
            config.issuers.push(local.issuer_config());
            config
        }
    };
    if let Some(listen) = &args.listen {
        config.server.listen = listen.clone();
    }
    config.check()?;
    let db = match &args.db.db {
        Some(db) => db.clone(),
        None => default_db()?,
    };
    let (admin, admin_file) = admin_token(&config, &data_dir)?;
    let paths = BrokerPaths {
        data_dir: data_dir.clone(),
        db: db.clone(),
    };
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let issuers = config
            .issuers
            .iter()
            .map(|i| i.name.clone())
            .collect::<Vec<_>>()
            .join(", ");
        let broker = Arc::new(Broker::open(config, &paths, &admin, Arc::new(SystemClock)).await?);
        eprintln!("mayfly serve: listening on {}", broker.public_url());
        eprintln!("mayfly serve: store {}", shown_db(&db));
        eprintln!(
            "mayfly serve: trusted issuers: {}",
            if issuers.is_empty() { "none" } else { &issuers }
        );
        match admin_file {
            Some(file) => eprintln!("mayfly serve: admin token in {}", file.display()),
            None => eprintln!("mayfly serve: admin token from MAYFLY_ADMIN_TOKEN"),
        }
        mayfly_broker::http::serve(broker, listener, shutdown_signal()).await?;
        eprintln!("mayfly serve: stopped");
        anyhow::Ok(0)
    })
}

fn shown_db(db: &str) -> String {
    match (db.find("://"), db.rfind('@')) {
        (Some(_), Some(at)) => format!("postgres://…{}", db.get(at..).unwrap_or_default()),
        _ => db.to_owned(),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `mayfly task ...`.
pub fn task(command: TaskCommand) -> anyhow::Result<u8> {
    match command {
        TaskCommand::Start {
            purpose,
            owner,
            audiences,
            ttl,
            raw,
            identity,
            server,
        } => {
            let client = Client::new(&server.server);
            let token = identity.source()?.token(&client)?;
            let task = client.start_task(
                &token,
                &TaskRequest {
                    purpose,
                    owner,
                    ttl_seconds: ttl,
                    audiences,
                },
            )?;
            if raw {
                println!("{}", task.id);
            } else {
                print_json(&task)?;
            }
        }
        TaskCommand::End {
            id,
            admin,
            identity,
            auth,
            server,
        } => {
            let client = Client::new(&server.server);
            let bearer = bearer(admin, &identity, &auth, &client)?;
            print_json(&client.end_task(&bearer, &id)?)?;
        }
        TaskCommand::Show {
            id,
            admin,
            identity,
            auth,
            server,
        } => {
            let client = Client::new(&server.server);
            let bearer = bearer(admin, &identity, &auth, &client)?;
            print_json(&client.show_task(&bearer, &id)?)?;
        }
    }
    Ok(0)
}

fn bearer(
    admin: bool,
    identity: &IdentityArgs,
    auth: &ClientAuthArgs,
    client: &Client,
) -> anyhow::Result<String> {
    if admin {
        auth.admin_token()
    } else {
        Ok(identity.source()?.token(client)?)
    }
}

/// `mayfly token ...`.
pub fn token(command: TokenCommand) -> anyhow::Result<u8> {
    match command {
        TokenCommand::Exchange {
            task,
            audience,
            scope,
            ttl,
            raw,
            identity,
            server,
        } => {
            let client = Client::new(&server.server);
            let subject = identity.source()?.token(&client)?;
            let response = client.exchange(&subject, &task, &audience, scope.as_deref(), ttl)?;
            if raw {
                println!("{}", response.access_token);
            } else {
                print_json(&response)?;
            }
            Ok(0)
        }
        TokenCommand::Introspect {
            token,
            auth,
            server,
        } => {
            let client = Client::new(&server.server);
            let answer = client.introspect(&auth.header()?, &read_token(&token)?)?;
            print_json(&answer)?;
            Ok(
                if answer.get("active").and_then(|a| a.as_bool()) == Some(true) {
                    0
                } else {
                    1
                },
            )
        }
        TokenCommand::Revoke {
            token,
            auth,
            server,
        } => {
            let client = Client::new(&server.server);
            client.revoke(&auth.header()?, &read_token(&token)?)?;
            eprintln!("revoked");
            Ok(0)
        }
    }
}

/// `mayfly policy ...`.
pub fn policy(command: PolicyCommand) -> anyhow::Result<u8> {
    match command {
        PolicyCommand::Check { dir } => {
            let engine = PolicyEngine::new()?;
            match engine.load_dir(&dir) {
                Ok(policies) => {
                    println!("{}: {} policies valid", dir.display(), policies.ids.len());
                    for id in &policies.ids {
                        println!("  {id}");
                    }
                    Ok(0)
                }
                Err(e) => {
                    eprintln!("mayfly: {e}");
                    Ok(2)
                }
            }
        }
        PolicyCommand::Schema => {
            print!("{}", mayfly_broker::policy::SCHEMA);
            Ok(0)
        }
    }
}

/// `mayfly audit ...`.
pub fn audit(command: AuditCommand, db: &DbArgs) -> anyhow::Result<u8> {
    let mut store = open_store(db)?;
    match command {
        AuditCommand::Verify => {
            let result = store.audit_verify()?;
            match result.problem {
                None => {
                    println!("audit chain intact: {} events", result.events);
                    Ok(0)
                }
                Some(problem) => {
                    println!(
                        "audit chain BROKEN after {} good events: {problem}",
                        result.events
                    );
                    Ok(1)
                }
            }
        }
        AuditCommand::Tail { count, format } => {
            let events = store.audit_tail(count.max(1))?;
            match format.as_str() {
                "json" => {
                    let items: Vec<serde_json::Value> = events
                        .iter()
                        .map(|e| {
                            serde_json::json!({
                                "seq": e.seq,
                                "at": e.at,
                                "kind": e.kind,
                                "data": serde_json::from_str::<serde_json::Value>(&e.data).unwrap_or_default(),
                                "hash": e.hash,
                            })
                        })
                        .collect();
                    print_json(&items)?;
                }
                "text" => {
                    for e in &events {
                        println!(
                            "{:>6}  {}  {:<14} {}",
                            e.seq,
                            mayfly_scan::time::rfc3339(e.at),
                            e.kind,
                            e.data
                        );
                    }
                }
                other => bail!("unknown format {other:?}: use text or json"),
            }
            Ok(0)
        }
    }
}

/// `mayfly identity ...`.
pub fn identity(command: IdentityCommand) -> anyhow::Result<u8> {
    match command {
        IdentityCommand::Mint { sub, ttl, claims } => {
            if ttl <= 0 {
                bail!("--ttl must be positive");
            }
            let mut extra = serde_json::Map::new();
            for claim in claims {
                let (name, value) = claim
                    .split_once('=')
                    .with_context(|| format!("--claim {claim:?}: write NAME=VALUE"))?;
                extra.insert(name.to_owned(), serde_json::Value::String(value.to_owned()));
            }
            let local = LocalIssuer::new(&data_dir()?);
            println!("{}", local.mint(&sub, ttl, extra, SystemClock.now())?);
            Ok(0)
        }
    }
}

/// Replaces the credential file atomically (readers see the old or the
/// new one, never half of one).
fn write_token(file: &Path, token: &str) -> anyhow::Result<()> {
    let tmp = file.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    mayfly_broker::keys::write_private(&tmp, token.as_bytes())?;
    std::fs::rename(&tmp, file)?;
    Ok(())
}

/// `mayfly run`: start a task, run CMD with a credential, refresh it, end
/// the task when CMD exits (or is interrupted). Returns CMD's exit code.
pub fn run(args: RunArgs) -> anyhow::Result<u8> {
    let client = Client::new(&args.server.server);
    let source = args.identity.source()?;
    let identity = source.token(&client)?;
    let owner = match &args.owner {
        Some(owner) => owner.clone(),
        None => std::env::var("USER").context("--owner is required (no $USER to default to)")?,
    };
    let task = client.start_task(
        &identity,
        &TaskRequest {
            purpose: args.purpose.clone(),
            owner,
            ttl_seconds: args.ttl,
            audiences: vec![args.audience.clone()],
        },
    )?;
    let outcome = run_in_task(&args, &client, &source, &task.id);
    // The task ends however CMD ended; with a fresh identity token if the
    // first one has expired meanwhile.
    let ended = source
        .token(&client)
        .map_err(anyhow::Error::from)
        .and_then(|identity| Ok(client.end_task(&identity, &task.id)?));
    match (&outcome, ended) {
        (_, Ok(view)) => eprintln!(
            "mayfly run: task {} ended ({} credentials revoked)",
            task.id,
            view.revoked.unwrap_or_default()
        ),
        (_, Err(e)) => eprintln!("mayfly run: could not end task {}: {e:#}", task.id),
    }
    outcome
}

fn run_in_task(
    args: &RunArgs,
    client: &Client,
    source: &IdentitySource,
    task_id: &str,
) -> anyhow::Result<u8> {
    let exchange = |client: &Client| -> anyhow::Result<mayfly_broker::service::TokenResponse> {
        let identity = source.token(client)?;
        Ok(client.exchange(
            &identity,
            task_id,
            &args.audience,
            args.scope.as_deref(),
            None,
        )?)
    };
    let first = exchange(client)?;
    // A private directory (0700), removed when the command is done.
    let dir = tempfile::Builder::new().prefix("mayfly-run-").tempdir()?;
    let token_file = dir.path().join("token");
    write_token(&token_file, &first.access_token)?;
    let (program, rest) = args
        .command
        .split_first()
        .context("give the command after --")?;
    runtime()?.block_on(async {
        let mut child = tokio::process::Command::new(program)
            .args(rest)
            .env(&args.env_name, &first.access_token)
            .env("MAYFLY_TOKEN_FILE", &token_file)
            .env("MAYFLY_TASK_ID", task_id)
            .spawn()
            .with_context(|| format!("cannot start {program}"))?;
        let pid = child.id();
        let refresher = {
            let client = client.clone();
            let source = source.clone();
            let token_file = token_file.clone();
            let audience = args.audience.clone();
            let scope = args.scope.clone();
            let task_id = task_id.to_owned();
            let mut expires_in = first.expires_in;
            tokio::spawn(async move {
                loop {
                    // Refresh at two thirds of the lifetime.
                    let wait = (expires_in.max(3) * 2 / 3) as u64;
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                    let client = client.clone();
                    let source = source.clone();
                    let audience = audience.clone();
                    let scope = scope.clone();
                    let task_id = task_id.clone();
                    let fresh = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                        let identity = source.token(&client)?;
                        Ok(client.exchange(
                            &identity,
                            &task_id,
                            &audience,
                            scope.as_deref(),
                            None,
                        )?)
                    })
                    .await;
                    match fresh {
                        Ok(Ok(response)) => {
                            expires_in = response.expires_in;
                            if let Err(e) = write_token(&token_file, &response.access_token) {
                                eprintln!(
                                    "mayfly run: cannot write the refreshed credential: {e:#}"
                                );
                            }
                        }
                        Ok(Err(e)) => {
                            eprintln!("mayfly run: refresh failed: {e:#}");
                            expires_in = 6;
                        }
                        Err(_) => return,
                    }
                }
            })
        };
        let status = wait_forwarding_signals(&mut child, pid).await;
        refresher.abort();
        let status = status?;
        Ok(exit_code(status))
    })
}

async fn wait_forwarding_signals(
    child: &mut tokio::process::Child,
    pid: Option<u32>,
) -> anyhow::Result<std::process::ExitStatus> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut hangup = signal(SignalKind::hangup())?;
        loop {
            let forwarded = tokio::select! {
                status = child.wait() => return Ok(status?),
                _ = interrupt.recv() => rustix::process::Signal::INT,
                _ = terminate.recv() => rustix::process::Signal::TERM,
                _ = hangup.recv() => rustix::process::Signal::HUP,
            };
            if let Some(pid) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
                let _ = rustix::process::kill_process(pid, forwarded);
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        Ok(child.wait().await?)
    }
}

fn exit_code(status: std::process::ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return u8::try_from(code).unwrap_or(1);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return u8::try_from(128 + signal).unwrap_or(1);
        }
    }
    1
}
