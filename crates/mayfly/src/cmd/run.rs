//! `mayfly run -- CMD`: a command with a credential that lives only as
//! long as it does.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use mayfly_broker::client::{Client, IdentitySource, TaskRequest};

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
    let exchange = |client: &Client| -> anyhow::Result<mayfly_broker::protocol::TokenResponse> {
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
