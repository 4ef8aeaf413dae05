//! `mayfly mcp list | wrap | unwrap | gate | connect`: the MCP servers
//! configured on this machine and the credentials they hold, taking those
//! credentials out of the configurations, and the two ends wrapped servers
//! run through.
//!
//! `wrap` moves each credential of a stdio server's `env` into custody and
//! rewrites the server to run under `mayfly run --inject ... --intercept
//! --key-var VAR`, so the server finds a key in the variable it reads (good
//! only at the local relay) and its calls reach the provider through the
//! broker. A remote server's header credential goes into custody for the
//! server's origin, and the entry becomes a stdio server: `mayfly mcp
//! connect URL --through ENTRY` under `mayfly run --inject ENTRY
//! --mcp-gate NAME`, so each call is decided by policy and the broker adds
//! the header. A dry run by default; with `--apply` each file is replaced
//! atomically after its original is kept in `FILE.mayfly-wrap` (mode 0600:
//! it holds the keys), which `unwrap` restores.

mod configs;
mod wrap;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::cmd::client::ClientAuthArgs;

/// Which configurations and servers a command works on.
#[derive(Debug, Args)]
pub struct Selection {
    /// The home directory whose configurations are read [default: $HOME].
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Only this client (claude-desktop, claude-code, cursor, vscode, windsurf, zed, codex, cline, continue).
    #[arg(long, value_name = "CLIENT")]
    pub client: Option<String>,
    /// Only the server of this name.
    #[arg(long, value_name = "NAME")]
    pub server: Option<String>,
}

/// `mayfly mcp`.
#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// Every MCP server configured on this machine: client, file,
    /// transport, and the credentials it holds (by fingerprint, never the value).
    List {
        #[command(flatten)]
        select: Selection,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Move servers' credentials into custody: stdio servers run under
    /// `mayfly run --inject`, remote servers are reached through `mayfly mcp
    /// connect` under the policy gate (a dry run unless --apply).
    Wrap {
        #[command(flatten)]
        select: Selection,
        /// Write: take the keys into custody and rewrite the files.
        #[arg(long)]
        apply: bool,
        /// Who answers for the servers' tasks and the custody entries [default: $USER].
        #[arg(long)]
        owner: Option<String>,
        /// Send a provider's calls to this base URL instead of its public API
        /// (PROVIDER=URL, repeatable: an enterprise host, a test server).
        #[arg(long = "upstream", value_name = "PROVIDER=URL")]
        upstreams: Vec<String>,
        /// The broker's URL.
        #[arg(
            long,
            value_name = "URL",
            env = "MAYFLY_SERVER",
            default_value = "http://127.0.0.1:8710"
        )]
        broker: String,
        #[command(flatten)]
        auth: ClientAuthArgs,
    },
    /// Put a remote (streamable HTTP) MCP server behind a policy gate: each
    /// JSON-RPC request needs a Mayfly token for the gate's resource and is
    /// decided by policy (action "mcp") before it is forwarded; serves the
    /// protected resource metadata (RFC 9728) naming the broker.
    Gate {
        /// The MCP server's endpoint URL (`http://127.0.0.1:9000/mcp`).
        #[arg(long, value_name = "URL")]
        upstream: String,
        /// Address to listen on.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8720")]
        listen: String,
        /// The resource its tokens must be for (their audience) [default:
        /// http://ADDR followed by the upstream's path].
        #[arg(long, value_name = "URI")]
        resource: Option<String>,
        /// The broker that decides.
        #[arg(
            long,
            value_name = "URL",
            env = "MAYFLY_SERVER",
            default_value = "http://127.0.0.1:8710"
        )]
        broker: String,
        /// PEM certificates to trust for the upstream's TLS, beside the platform's roots.
        #[arg(long, value_name = "FILE", env = "MAYFLY_PROXY_CA_FILE")]
        upstream_ca_file: Option<PathBuf>,
    },
    /// Speak to a remote MCP server (streamable HTTP, or the 2024-11-05
    /// HTTP+SSE transport) as a stdio server: JSON-RPC lines on stdin and
    /// stdout, for a client that starts servers as commands.
    Connect {
        /// The server's URL (`https://mcp.example.com/mcp`).
        #[arg(value_name = "URL")]
        url: String,
        /// Send the requests through the relay of the `mayfly run --inject
        /// ENTRY` this runs under: the broker adds the custody entry's
        /// secret, so this process never holds it.
        #[arg(long, value_name = "ENTRY")]
        through: Option<String>,
        /// A header for every request ("Name: value", repeatable).
        #[arg(long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
        /// PEM certificates to trust for the server's TLS, beside the platform's roots.
        #[arg(long, value_name = "FILE", env = "MAYFLY_PROXY_CA_FILE")]
        ca_file: Option<PathBuf>,
    },
    /// Restore configurations `wrap --apply` rewrote, from the originals it
    /// kept (a dry run unless --apply).
    Unwrap {
        #[command(flatten)]
        select: Selection,
        /// Write the originals back.
        #[arg(long)]
        apply: bool,
    },
}

/// `mayfly mcp ...`.
pub fn mcp(command: McpCommand) -> anyhow::Result<u8> {
    match command {
        McpCommand::List { select, json } => configs::list(&select, json),
        McpCommand::Wrap {
            select,
            apply,
            owner,
            upstreams,
            auth,
            broker,
        } => wrap::wrap(&select, apply, owner, &upstreams, &auth, &broker),
        McpCommand::Unwrap { select, apply } => wrap::unwrap(&select, apply),
        McpCommand::Gate {
            upstream,
            listen,
            resource,
            broker,
            upstream_ca_file,
        } => gate(&upstream, &listen, resource, &broker, upstream_ca_file),
        McpCommand::Connect {
            url,
            through,
            headers,
            ca_file,
        } => connect(&url, through, &headers, ca_file),
    }
}

/// `mayfly mcp gate`.
fn gate(
    upstream: &str,
    listen: &str,
    resource: Option<String>,
    broker: &str,
    upstream_ca_file: Option<PathBuf>,
) -> anyhow::Result<u8> {
    let config = mayfly_broker::mcp_gate::GateConfig::new(upstream, listen, resource, broker)?;
    let resource = config.resource.clone();
    let proxy = mayfly_broker::config::ProxyConfig {
        extra_ca_file: upstream_ca_file,
        ..mayfly_broker::config::ProxyConfig::default()
    };
    crate::common::runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        eprintln!(
            "mayfly mcp gate: listening on http://{listen}; resource {resource}; upstream {}; broker {broker}",
            config.upstream
        );
        mayfly_broker::mcp_gate::serve(
            config,
            &proxy,
            listener,
            crate::cmd::serve::shutdown_signal(),
        )
        .await?;
        anyhow::Ok(0)
    })
}

/// `mayfly mcp connect`.
fn connect(
    url: &str,
    through: Option<String>,
    headers: &[String],
    ca_file: Option<PathBuf>,
) -> anyhow::Result<u8> {
    let headers = headers
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
                // Not repeated: the value may be a key.
                .context("--header takes NAME: VALUE (one was given without a colon)")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let via = match through {
        Some(entry) => {
            let var = |name: &str| {
                std::env::var(name).with_context(|| {
                    format!("--through {entry}: {name} is not set; run this under mayfly run --inject {entry}")
                })
            };
            Some(mayfly_broker::mcp_bridge::Via {
                relay: var("MAYFLY_PROXY_URL")?,
                key: var("MAYFLY_PROXY_KEY")?,
                entry,
            })
        }
        None => None,
    };
    let target = mayfly_broker::mcp_bridge::BridgeTarget::new(url, via.as_ref(), &headers)?;
    let client = mayfly_broker::upstream::Upstream::new(&mayfly_broker::config::ProxyConfig {
        extra_ca_file: ca_file,
        ..mayfly_broker::config::ProxyConfig::default()
    })?;
    crate::common::runtime()?.block_on(async move {
        mayfly_broker::mcp_bridge::run(
            target,
            client,
            crate::stdio::stdin(),
            crate::stdio::stdout(),
        )
        .await?;
        anyhow::Ok(0)
    })
}
