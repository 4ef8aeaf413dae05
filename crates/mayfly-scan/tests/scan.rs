//! Integration tests of the scanning library, compiled as one binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

#[path = "cases/archives.rs"]
mod archives;
#[path = "cases/common.rs"]
mod common;
#[path = "cases/copies.rs"]
mod copies;
#[path = "cases/decoders.rs"]
mod decoders;
#[path = "cases/git.rs"]
mod git;
#[path = "cases/host.rs"]
mod host;
#[path = "cases/inputs.rs"]
mod inputs;
#[path = "cases/private_keys.rs"]
mod private_keys;
#[path = "cases/rules.rs"]
mod rules;
#[path = "cases/surfaces.rs"]
mod surfaces;
