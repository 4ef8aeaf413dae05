//! One module per command group. Each defines its arguments and runs them;
//! `cli` only parses and dispatches. Modules here use `common`, `config`
//! and `progress`, and `scan` uses `inventory` (for `--save`), `report`
//! uses `govern` and `run` uses `client`: never the other way round.

pub mod audit;
pub mod client;
pub mod govern;
pub mod identity;
pub mod inventory;
pub mod policy;
pub mod report;
pub mod rules;
pub mod run;
pub mod scan;
pub mod serve;
