//! Local attestation for workstations: `mayfly serve` listens on a unix
//! socket, and a process that connects gets a workload identity from what
//! the kernel reports about it (its uid and gid, its executable and that
//! file's SHA-256, its cgroup and container, the executables of its
//! parents), never from what it claims.
//!
//! The socket answers two protocols:
//! - `POST /v1/identity` (HTTP/1.1): a short-lived identity token for the
//!   caller, which the broker trusts like any OIDC issuer's
//!   ([`client::fetch_identity`] is the client `mayfly run` uses);
//! - the SPIFFE Workload API (gRPC over HTTP/2: `FetchJWTSVID`,
//!   `FetchJWTBundles`, `ValidateJWTSVID`), so existing SPIFFE clients get
//!   JWT-SVIDs for the same attested identity.
//!
//! This crate knows nothing of the broker: it signs with its own key, kept
//! in the data directory, and [`Attestor::jwks_path`] is what the broker
//! trusts.

mod attestor;
mod authority;
pub mod client;
mod config;
mod peer;
mod socket;
mod template;
mod workload_api;

pub use attestor::{ATTESTED_AUDIENCE, ATTESTED_ISSUER, Attestor, AttestorError, FACT_CLAIMS};
pub use config::{AttestConfig, ConfigError};
pub use peer::{AttestError, ExeHashes, Peer, PeerFacts};
pub use socket::{SocketError, bind, serve};

/// Feeds untrusted bytes to every parser of the local socket (the HTTP/2
/// frame shim and the Workload API's gRPC messages), for the fuzz target:
/// whatever the bytes, they must return, never panic.
#[doc(hidden)]
pub fn fuzz_local_socket(data: &[u8]) {
    authority::fuzz(data);
    workload_api::fuzz(data);
}
