//! The broker's client commands: `mayfly task` and `mayfly token`, and the
//! arguments every client command shares (server, identity, admin auth).

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use mayfly_broker::client::{Client, IdentitySource, TaskRequest};

use crate::common::outln;
use crate::common::{data_dir, print_json};

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
    /// The local server's socket, which attests this process when no token
    /// is given [default: workload.sock in Mayfly's data directory].
    #[arg(long, value_name = "PATH", env = "MAYFLY_LOCAL_SOCKET")]
    pub local_socket: Option<PathBuf>,
}

impl IdentityArgs {
    pub fn source(&self) -> anyhow::Result<IdentitySource> {
        let local_socket = match &self.local_socket {
            Some(socket) => Some(socket.clone()),
            None => data_dir().ok().map(|dir| dir.join("workload.sock")),
        };
        Ok(IdentitySource::detect(
            self.identity_token_file.clone(),
            &self.identity_audience,
            local_socket,
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
    pub fn admin_token(&self) -> anyhow::Result<String> {
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
        let file = data_dir()?.join("admin-token");
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
    /// List tasks, newest first (admin).
    List {
        /// Only tasks that have not ended.
        #[arg(long)]
        live: bool,
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

fn read_token(arg: &str) -> anyhow::Result<String> {
    if arg == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text.trim().to_owned())
    } else {
        Ok(arg.to_owned())
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
                outln!("{}", task.id)?;
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
        TaskCommand::List { live, auth, server } => {
            let client = Client::new(&server.server);
            print_json(&client.list_tasks(&auth.admin_token()?, live)?)?;
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
                outln!("{}", response.access_token)?;
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
