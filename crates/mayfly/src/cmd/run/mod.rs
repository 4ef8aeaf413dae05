//! `mayfly run -- CMD`: a command with credentials that live only as long
//! as it does: a token for an audience (`--audience`), brokered use of
//! secrets in custody through a local relay (`--inject NAME`, see
//! [`inject`]), credentials upstreams make for the task (`--inject
//! pg:NAME`, `--inject github`, see [`minted`]), and a cloud's own
//! credentials through workload identity federation (`--federate`, see
//! [`federate`]).

mod federate;
mod gate;
mod inject;
mod minted;
mod process;

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use mayfly_broker::client::{Client, IdentitySource, TaskRequest};

use self::process::{Signals, exit_code, killed_by, private_temp_dir, wait_forwarding_signals};
use crate::cmd::client::{IdentityArgs, ServerArgs};
use crate::common::runtime;

/// `mayfly run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Why the task runs.
    #[arg(long)]
    pub purpose: String,
    /// The person or team answerable for it [default: $USER].
    #[arg(long)]
    pub owner: Option<String>,
    /// The audience of a credential CMD gets in $MAYFLY_TOKEN.
    #[arg(long, required_unless_present_any = ["inject", "federate", "mcp_gate"])]
    pub audience: Option<String>,
    /// Secrets in custody CMD may use through a local relay, comma-separated:
    /// CMD gets its SDK's base-URL and key variables (OPENAI_BASE_URL and
    /// OPENAI_API_KEY...) pointing at the relay, never the secret. And
    /// credentials made for this task alone: pg:NAME[:LEVEL] (a PostgreSQL
    /// role in DATABASE_URL and PGHOST, PGUSER, PGPASSWORD...), github[:NAME]
    /// (a GitHub App token in GITHUB_TOKEN and GH_TOKEN).
    #[arg(long, value_name = "NAME[,NAME...]", value_delimiter = ',')]
    pub inject: Vec<String>,
    /// A cloud's own credentials through workload identity federation, with
    /// this broker as the OpenID provider ([federation] enabled):
    /// aws:ROLE_ARN (Mayfly calls STS; AWS_ACCESS_KEY_ID...), aws-sdk:ROLE_ARN
    /// (AWS_WEB_IDENTITY_TOKEN_FILE, kept fresh), gcp://iam.googleapis.com/...
    /// (GOOGLE_APPLICATION_CREDENTIALS), azure:TENANT_ID:CLIENT_ID
    /// (AZURE_FEDERATED_TOKEN_FILE), anthropic:ORG_ID:RULE_ID[:SERVICE_ACCOUNT_ID]
    /// (the Anthropic SDKs' ANTHROPIC_IDENTITY_TOKEN_FILE...), oidc:AUDIENCE
    /// (MAYFLY_ID_TOKEN_FILE).
    #[arg(long, value_name = "PROFILE")]
    pub federate: Option<String>,
    /// Repositories and permissions of the --inject github token,
    /// space-separated: "repo:web contents:read issues:write" [default: all
    /// the App's installation allows].
    #[arg(long, value_name = "SCOPES")]
    pub github_scope: Option<String>,
    /// For tools that cannot change an API's base URL: CMD gets HTTPS_PROXY,
    /// and its connections to the injected entries' hosts are intercepted
    /// under Mayfly's local CA (SSL_CERT_FILE, NODE_EXTRA_CA_CERTS,
    /// REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE point at a bundle with it); every
    /// other host is tunnelled untouched.
    #[arg(long, requires = "inject")]
    pub intercept: bool,
    /// Also put the relay's key in this variable (repeatable), for a tool
    /// that reads its key from a variable of its own (an MCP server's
    /// GITHUB_PERSONAL_ACCESS_TOKEN...).
    #[arg(long = "key-var", value_name = "NAME", requires = "inject")]
    pub key_vars: Vec<String>,
    /// CMD is an MCP server on stdio: stand between it and the client, and
    /// let each JSON-RPC request through only if policy allows it (action
    /// "mcp", resource McpServer::"urn:mayfly:mcp:NAME"); denied calls get
    /// a JSON-RPC error, tools/list answers list only the allowed tools.
    #[arg(long, value_name = "NAME")]
    pub mcp_gate: Option<String>,
    /// Scopes of the --audience credential, space-separated.
    #[arg(long)]
    pub scope: Option<String>,
    /// Task lifetime in seconds: credentials stop working then, even if CMD still runs.
    #[arg(long, value_name = "SECONDS")]
    pub ttl: Option<i64>,
    /// Lifetime of each access token in seconds (within what policy allows);
    /// each is replaced at two thirds of it while CMD runs [default: the broker's].
    #[arg(long, value_name = "SECONDS")]
    pub token_ttl: Option<i64>,
    /// Environment variable that carries the --audience credential.
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

/// Variables that carry the caller's own identity: CMD never sees them, so
/// it cannot start tasks of its own that outlive `mayfly run`.
const IDENTITY_VARIABLES: [&str; 4] = [
    "MAYFLY_IDENTITY_TOKEN",
    "MAYFLY_IDENTITY_TOKEN_FILE",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
];

/// Replaces the credential file atomically (readers see the old or the
/// new one, never half of one).
fn write_token(file: &Path, token: &str) -> anyhow::Result<()> {
    let tmp = file.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    mayfly_broker::keys::write_private(&tmp, token.as_bytes())?;
    std::fs::rename(&tmp, file)?;
    Ok(())
}

/// Runs blocking client work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .context("a client call failed")?
}

/// When to refresh a credential that lives `expires_in` seconds: at two
/// thirds of its life.
fn refresh_after(expires_in: i64) -> Duration {
    Duration::from_secs(u64::try_from(expires_in.max(3) * 2 / 3).unwrap_or(2))
}

/// `mayfly run`: start a task, run CMD with its credentials, refresh
/// them, end the task when CMD exits (or is interrupted). Returns CMD's
/// exit code.
pub fn run(args: RunArgs) -> anyhow::Result<u8> {
    runtime()?.block_on(run_async(args))
}

async fn run_async(args: RunArgs) -> anyhow::Result<u8> {
    let mut signals = Signals::install()?;
    let client = Client::new(&args.server.server);
    let source = args.identity.source()?;
    let owner = match &args.owner {
        Some(owner) => owner.clone(),
        None => std::env::var("USER").context("--owner is required (no $USER to default to)")?,
    };
    let (custody_names, mut upstreams) = minted::split(&args.inject, args.github_scope.as_deref())?;
    let (entries, github_app) = inject::describe(&client, &source, &custody_names).await?;
    if github_app {
        upstreams.push(minted::github(
            "github",
            "github",
            args.github_scope.as_deref(),
        ));
    }
    let federation = args
        .federate
        .as_deref()
        .map(federate::Profile::parse)
        .transpose()?;
    let mut audiences: Vec<String> = args.audience.iter().cloned().collect();
    audiences.extend(entries.iter().map(|e| e.audience.clone()));
    audiences.extend(upstreams.iter().map(|u| u.audience.clone()));
    audiences.extend(federation.iter().map(federate::Profile::audience));
    audiences.extend(args.mcp_gate.as_deref().map(gate::audience));
    let request = TaskRequest {
        purpose: args.purpose.clone(),
        owner,
        ttl_seconds: args.ttl,
        audiences,
    };
    let starting = {
        let (client, source) = (client.clone(), source.clone());
        blocking(move || {
            let identity = source.token(&client)?;
            Ok(client.start_task(&identity, &request)?)
        })
    };
    tokio::pin!(starting);
    let (task, interrupted) = tokio::select! {
        task = &mut starting => (task?, None),
        // The start may already be on its way: let it finish, then end the
        // task it made, so an interruption leaves no live task behind.
        signal = signals.next() => (starting.await?, Some(signal)),
    };
    let outcome = match interrupted {
        Some(signal) => Ok(killed_by(signal)),
        None => {
            run_in_task(
                &args,
                &client,
                &source,
                &task.id,
                (entries, &upstreams, federation.as_ref()),
                &mut signals,
            )
            .await
        }
    };
    // The task ends however CMD ended; with a fresh identity token if the
    // first one has expired meanwhile.
    let (id, client, source) = (task.id.clone(), client.clone(), source.clone());
    let ended = blocking(move || {
        let identity = source.token(&client)?;
        Ok(client.end_task(&identity, &id)?)
    })
    .await;
    match ended {
        Ok(view) => eprintln!(
            "mayfly run: task {} ended ({} credentials revoked)",
            task.id,
            view.revoked.unwrap_or_default()
        ),
        Err(e) => eprintln!("mayfly run: could not end task {}: {e:#}", task.id),
    }
    outcome
}

/// One --audience credential for the task.
async fn exchange(
    client: &Client,
    source: &IdentitySource,
    task_id: &str,
    audience: &str,
    scope: Option<&str>,
    token_ttl: Option<i64>,
) -> anyhow::Result<mayfly_broker::protocol::TokenResponse> {
    let (client, source) = (client.clone(), source.clone());
    let (task_id, audience, scope) = (
        task_id.to_owned(),
        audience.to_owned(),
        scope.map(str::to_owned),
    );
    blocking(move || {
        let identity = source.token(&client)?;
        Ok(client.exchange(&identity, &task_id, &audience, scope.as_deref(), token_ttl)?)
    })
    .await
}

/// Keeps the --audience credential in `token_file` fresh.
fn refresh_token_file(
    client: &Client,
    source: &IdentitySource,
    task_id: &str,
    args: &RunArgs,
    audience: &str,
    token_file: &Path,
    first_expires_in: i64,
) -> tokio::task::JoinHandle<()> {
    let (client, source, task_id) = (client.clone(), source.clone(), task_id.to_owned());
    let (audience, scope, token_ttl) = (audience.to_owned(), args.scope.clone(), args.token_ttl);
    let token_file = token_file.to_owned();
    let mut expires_in = first_expires_in;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(refresh_after(expires_in)).await;
            match exchange(
                &client,
                &source,
                &task_id,
                &audience,
                scope.as_deref(),
                token_ttl,
            )
            .await
            {
                Ok(response) => {
                    expires_in = response.expires_in;
                    if let Err(e) = write_token(&token_file, &response.access_token) {
                        eprintln!("mayfly run: cannot write the refreshed credential: {e:#}");
                    }
                }
                Err(e) => {
                    eprintln!("mayfly run: refresh failed: {e:#}");
                    expires_in = 6;
                }
            }
        }
    })
}

async fn run_in_task(
    args: &RunArgs,
    client: &Client,
    source: &IdentitySource,
    task_id: &str,
    (entries, upstreams, federation): (
        Vec<mayfly_broker::custody::CustodyUse>,
        &[minted::UpstreamInject],
        Option<&federate::Profile>,
    ),
    signals: &mut Signals,
) -> anyhow::Result<u8> {
    let (program, rest) = args
        .command
        .split_first()
        .context("give the command after --")?;
    let mut command = tokio::process::Command::new(program);
    command.args(rest).env("MAYFLY_TASK_ID", task_id);
    for name in IDENTITY_VARIABLES {
        command.env_remove(name);
    }
    // A private directory, removed when the command is done.
    let dir = private_temp_dir()?;
    let mut background = Vec::new();
    if let Some(audience) = &args.audience {
        let first = tokio::select! {
            first = exchange(client, source, task_id, audience, args.scope.as_deref(), args.token_ttl) => first?,
            signal = signals.next() => return Ok(killed_by(signal)),
        };
        let token_file = dir.path().join("token");
        write_token(&token_file, &first.access_token)?;
        command
            .env(&args.env_name, &first.access_token)
            .env("MAYFLY_TOKEN_FILE", &token_file);
        background.push(refresh_token_file(
            client,
            source,
            task_id,
            args,
            audience,
            &token_file,
            first.expires_in,
        ));
    }
    let upstream_env = tokio::select! {
        env = minted::fetch(client, source, task_id, upstreams) => env?,
        signal = signals.next() => return Ok(killed_by(signal)),
    };
    for (name, value) in &upstream_env {
        command.env(name, value);
    }
    if let Some(profile) = federation {
        let federated = tokio::select! {
            federated = federate::start(client, source, task_id, profile, dir.path()) => federated?,
            signal = signals.next() => return Ok(killed_by(signal)),
        };
        for name in federated.env_remove {
            command.env_remove(name);
        }
        for (name, value) in &federated.env {
            command.env(name, value);
        }
        background.extend(federated.refresher);
    }
    // Kept alive while CMD runs: the relay stops when dropped.
    let _relay = if entries.is_empty() {
        None
    } else {
        let intercept = args.intercept.then(|| dir.path().to_owned());
        let injected = tokio::select! {
            injected = inject::start(client, source, task_id, entries, args.token_ttl, intercept) => injected?,
            signal = signals.next() => return Ok(killed_by(signal)),
        };
        for name in &injected.env_remove {
            command.env_remove(name);
        }
        for (name, value) in &injected.env {
            command.env(name, value);
        }
        for name in &args.key_vars {
            command.env(name, &injected.local_key);
        }
        background.push(injected.refresher);
        Some(injected.relay)
    };
    let gate = match &args.mcp_gate {
        Some(name) => {
            let gate = tokio::select! {
                gate = gate::Gate::start(client, source, task_id, name, args.token_ttl) => gate?,
                signal = signals.next() => return Ok(killed_by(signal)),
            };
            command
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped());
            Some(gate)
        }
        None => None,
    };
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    let pumps = match (&gate, child.stdin.take(), child.stdout.take()) {
        (Some(gate), Some(stdin), Some(stdout)) => Some(gate.attach(stdin, stdout)),
        _ => None,
    };
    let pid = child.id();
    let status = wait_forwarding_signals(&mut child, pid, signals).await;
    if let (Some(gate), Some(pumps)) = (gate, pumps) {
        // The last answers and their audit records, within a bound.
        let _ = tokio::time::timeout(Duration::from_secs(5), gate.finish(pumps)).await;
    }
    for task in background {
        task.abort();
    }
    Ok(exit_code(status?))
}
