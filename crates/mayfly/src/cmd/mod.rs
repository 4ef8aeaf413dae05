//! One module per command group. Each defines its arguments and runs them;
//! `cli` only parses and dispatches. Modules here use `common`, `config`
//! and `progress`, and `scan` uses `inventory` (for `--save`), `report`
//! uses `govern`, `run`, `custody`, `migrate` and `mcp` use `client` (and
//! `migrate` uses `inventory`, `mcp` uses `migrate`, `revoke` uses `migrate`
//! and `govern` uses `revoke`): never the other way round.

pub mod audit;
pub mod client;
pub mod custody;
pub mod govern;
pub mod identity;
pub mod inventory;
pub mod mcp;
pub mod migrate;
pub mod policy;
pub mod report;
pub mod revoke;
pub mod rules;
pub mod run;
pub mod scan;
pub mod serve;
