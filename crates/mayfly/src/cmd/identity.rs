//! `mayfly identity mint`: workload JWTs from the local issuer, for trying
//! the broker on one machine.

use anyhow::{Context as _, bail};
use clap::Subcommand;
use mayfly_broker::local_issuer::LocalIssuer;
use mayfly_broker::{Clock as _, SystemClock};

use crate::common::data_dir;
use crate::common::outln;

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
    }
}
