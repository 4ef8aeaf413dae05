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

/// The signals `mayfly run` forwards to CMD; installed before anything
/// else happens, so an interruption at any point still ends the task.
struct Signals {
    #[cfg(unix)]
    streams: [tokio::signal::unix::Signal; 3],
}

/// A signal number (`SIGINT` 2, `SIGTERM` 15, `SIGHUP` 1).
type SignalNumber = i32;

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                streams: [
                    signal(SignalKind::interrupt())?,
                    signal(SignalKind::terminate())?,
                    signal(SignalKind::hangup())?,
                ],
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal received.
    async fn next(&mut self) -> SignalNumber {
        #[cfg(unix)]
        {
            let [interrupt, terminate, hangup] = &mut self.streams;
            tokio::select! {
                _ = interrupt.recv() => 2,
                _ = terminate.recv() => 15,
                _ = hangup.recv() => 1,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            2
        }
    }
}

/// The exit code of a process stopped by `signal`.
fn killed_by(signal: SignalNumber) -> u8 {
    u8::try_from(128 + signal).unwrap_or(1)
}

/// Runs blocking client work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .context("a client call failed")?
}

/// `mayfly run`: start a task, run CMD with a credential, refresh it, end
/// the task when CMD exits (or is interrupted). Returns CMD's exit code.
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
    let request = TaskRequest {
        purpose: args.purpose.clone(),
        owner,
        ttl_seconds: args.ttl,
        audiences: vec![args.audience.clone()],
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
        None => run_in_task(&args, &client, &source, &task.id, &mut signals).await,
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

/// One credential for the task.
async fn exchange(
    args: &RunArgs,
    client: &Client,
    source: &IdentitySource,
    task_id: &str,
) -> anyhow::Result<mayfly_broker::protocol::TokenResponse> {
    let (client, source) = (client.clone(), source.clone());
    let (task_id, audience, scope) = (
        task_id.to_owned(),
        args.audience.clone(),
        args.scope.clone(),
    );
    blocking(move || {
        let identity = source.token(&client)?;
        Ok(client.exchange(&identity, &task_id, &audience, scope.as_deref(), None)?)
    })
    .await
}

async fn run_in_task(
    args: &RunArgs,
    client: &Client,
    source: &IdentitySource,
    task_id: &str,
    signals: &mut Signals,
) -> anyhow::Result<u8> {
    let first = tokio::select! {
        first = exchange(args, client, source, task_id) => first?,
        signal = signals.next() => return Ok(killed_by(signal)),
    };
    // A private directory, removed when the command is done.
    let dir = private_temp_dir()?;
    let token_file = dir.path().join("token");
    write_token(&token_file, &first.access_token)?;
    let (program, rest) = args
        .command
        .split_first()
        .context("give the command after --")?;
    let mut command = tokio::process::Command::new(program);
    command
        .args(rest)
        .env(&args.env_name, &first.access_token)
        .env("MAYFLY_TOKEN_FILE", &token_file)
        .env("MAYFLY_TASK_ID", task_id);
    for name in IDENTITY_VARIABLES {
        command.env_remove(name);
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    let pid = child.id();
    let refresher = {
        let (client, source) = (client.clone(), source.clone());
        let (audience, scope, task_id) = (
            args.audience.clone(),
            args.scope.clone(),
            task_id.to_owned(),
        );
        let token_file = token_file.clone();
        let mut expires_in = first.expires_in;
        tokio::spawn(async move {
            loop {
                // Refresh at two thirds of the lifetime.
                let wait = (expires_in.max(3) * 2 / 3) as u64;
                tokio::time::sleep(Duration::from_secs(wait)).await;
                let (client, source) = (client.clone(), source.clone());
                let (audience, scope, task_id) = (audience.clone(), scope.clone(), task_id.clone());
                let fresh = blocking(move || {
                    let identity = source.token(&client)?;
                    Ok(client.exchange(&identity, &task_id, &audience, scope.as_deref(), None)?)
                })
                .await;
                match fresh {
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
    };
    let status = wait_forwarding_signals(&mut child, pid, signals).await;
    refresher.abort();
    Ok(exit_code(status?))
}

/// A temporary directory only its owner can enter (0700).
fn private_temp_dir() -> anyhow::Result<tempfile::TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("mayfly-run-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(std::fs::Permissions::from_mode(0o700));
    }
    Ok(builder.tempdir()?)
}

async fn wait_forwarding_signals(
    child: &mut tokio::process::Child,
    pid: Option<u32>,
    signals: &mut Signals,
) -> anyhow::Result<std::process::ExitStatus> {
    loop {
        let signal = tokio::select! {
            status = child.wait() => return Ok(status?),
            signal = signals.next() => signal,
        };
        #[cfg(unix)]
        if let (Some(pid), Some(signal)) = (
            pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)),
            rustix::process::Signal::from_named_raw(signal),
        ) {
            let _ = rustix::process::kill_process(pid, signal);
        }
        #[cfg(not(unix))]
        let _ = (pid, signal);
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
            return killed_by(signal);
        }
    }
    1
}
