//! `mayfly policy`: check Cedar policies, print Mayfly's schema.

use std::path::PathBuf;

use crate::common::outln;
use clap::Subcommand;
use mayfly_broker::policy::PolicyEngine;

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

/// `mayfly policy ...`.
pub fn policy(command: PolicyCommand) -> anyhow::Result<u8> {
    match command {
        PolicyCommand::Check { dir } => {
            let engine = PolicyEngine::new()?;
            match engine.load_dir(&dir) {
                Ok(policies) => {
                    outln!("{}: {} policies valid", dir.display(), policies.ids.len())?;
                    for id in &policies.ids {
                        outln!("  {id}")?;
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
