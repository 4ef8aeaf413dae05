//! One module per command group. Each defines its arguments and runs them;
//! `cli` only parses and dispatches. Modules here use `common`, `config`
//! and `progress`, and `scan` uses `inventory` (for `--save`), `report`
//! uses `govern`, `run`, `custody` and `migrate` use `client` (and
//! `migrate` uses `inventory`): never the other way round.

pub mod audit;
pub mod client;
pub mod custody;
pub mod govern;
pub mod identity;
pub mod inventory;
pub mod migrate;
pub mod policy;
pub mod report;
pub mod rules;
pub mod run;
pub mod scan;
pub mod serve;
