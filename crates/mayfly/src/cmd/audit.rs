//! `mayfly audit`: verify or show the broker's hash-chained audit log.

use clap::{Args, Subcommand};

use crate::common::outln;
use crate::common::{DbArgs, TextOrJson, print_json};

/// `mayfly audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
    #[command(flatten)]
    pub db: DbArgs,
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
        /// Output format.
        #[arg(long, short = 'f', value_enum, default_value_t = TextOrJson::Text)]
        format: TextOrJson,
    },
}

/// `mayfly audit ...`.
pub fn audit(args: AuditArgs) -> anyhow::Result<u8> {
    let mut store = args.db.open()?;
    match args.command {
        AuditCommand::Verify => {
            let result = store.audit_verify()?;
            match result.problem {
                None if result.pruned_through > 0 => {
                    outln!(
                        "audit chain intact: {} events, from event {} (events 1 to {} were deleted by [retention] audit_seconds)",
                        result.events,
                        result.pruned_through + 1,
                        result.pruned_through
                    )?;
                    Ok(0)
                }
                None => {
                    outln!("audit chain intact: {} events", result.events)?;
                    Ok(0)
                }
                Some(problem) => {
                    outln!(
                        "audit chain BROKEN after {} good events: {problem}",
                        result.events
                    )?;
                    Ok(1)
                }
            }
        }
        AuditCommand::Tail { count, format } => {
            let events = store.audit_tail(count.max(1))?;
            match format {
                TextOrJson::Json => {
                    let items: Vec<serde_json::Value> = events
                        .iter()
                        .map(|e| {
                            serde_json::json!({
                                "seq": e.seq,
                                "at": e.at,
                                "kind": e.kind,
                                "data": serde_json::from_str::<serde_json::Value>(&e.data).unwrap_or(serde_json::Value::String(e.data.clone())),
                                "hash": e.hash,
                            })
                        })
                        .collect();
                    print_json(&items)?;
                }
                TextOrJson::Text => {
                    for e in &events {
                        outln!(
                            "{:>6}  {}  {:<14} {}",
                            e.seq,
                            mayfly_scan::time::rfc3339(e.at),
                            e.kind,
                            e.data
                        )?;
                    }
                }
            }
            Ok(0)
        }
    }
}
