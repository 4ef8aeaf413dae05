//! The broker over real HTTP on loopback and a real store: a SQLite file
//! and the PostgreSQL server on 127.0.0.1:5432 (a fresh database per test).
//! Workload identity tokens are real JWTs signed with real keys.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod broker {
    mod harness;

    mod bad_input;
    mod custody;
    mod federation;
    mod hardening;
    mod http_layer;
    mod identity;
    mod lifecycle;
    mod minted_github;
    mod minted_postgres;
    mod policy;
    mod proxy;
    mod proxy_refusals;
    mod revocation;
    mod upstream;
}
