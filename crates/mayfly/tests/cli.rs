//! End-to-end tests through the real `mayfly` binary, compiled as one test binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

#[path = "cli/broker.rs"]
mod broker;
#[path = "cli/common.rs"]
mod common;
#[path = "cli/crash.rs"]
mod crash;
#[path = "cli/federation.rs"]
mod federation;
#[path = "cli/first_use.rs"]
mod first_use;
#[path = "cli/formats.rs"]
mod formats;
#[path = "cli/git.rs"]
mod git;
#[path = "cli/inject.rs"]
mod inject;
#[path = "cli/inventory.rs"]
mod inventory;
#[path = "cli/local.rs"]
mod local;
#[path = "cli/mcp.rs"]
mod mcp;
#[path = "cli/openapi.rs"]
mod openapi;
#[path = "cli/replicas.rs"]
mod replicas;
#[path = "cli/revocation.rs"]
mod revocation;
#[path = "cli/scan.rs"]
mod scan;
#[path = "cli/server.rs"]
mod server;
#[path = "cli/store_failures.rs"]
mod store_failures;
#[path = "cli/suppression.rs"]
mod suppression;
#[path = "cli/upstreams.rs"]
mod upstreams;
#[path = "cli/validation.rs"]
mod validation;
