//! `mayfly identity mint`: workload JWTs from the local issuer, for trying
//! the broker on one machine; `mayfly identity attest`: what the local
//! server's socket attests about the calling process.

use anyhow::{Context as _, bail};
use clap::Subcommand;
use mayfly_broker::local_issuer::LocalIssuer;
use mayfly_broker::{Clock as _, SystemClock};

use crate::common::outln;
use crate::common::{data_dir, print_json};

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
    /// Show the identity a local `mayfly serve` attests for this process
    /// (workload id, SPIFFE ID, the facts policy can test), as JSON.
    Attest {
        /// Also print the identity token.
        #[arg(long)]
        token: bool,
        /// The local server's socket [default: workload.sock in Mayfly's data directory].
        #[arg(long, value_name = "PATH", env = "MAYFLY_LOCAL_SOCKET")]
        local_socket: Option<std::path::PathBuf>,
    },
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
            outln!("{}", local.mint(&sub, ttl, extra, SystemClock.now())?)?;
            Ok(0)
        }
        IdentityCommand::Attest {
            token,
            local_socket,
        } => {
            let socket = match local_socket {
                Some(socket) => socket,
                None => data_dir()?.join("workload.sock"),
            };
            let identity = mayfly_attest::client::fetch_identity(&socket)?;
            let mut shown = serde_json::json!({
                "workload": identity.workload,
                "spiffe_id": identity.spiffe_id,
                "expires_in": identity.expires_in,
                "facts": identity.facts,
            });
            if token && let Some(object) = shown.as_object_mut() {
                object.insert(
                    "identity_token".into(),
                    serde_json::Value::String(identity.identity_token),
                );
            }
            print_json(&shown)?;
            Ok(0)
        }
    }
}
