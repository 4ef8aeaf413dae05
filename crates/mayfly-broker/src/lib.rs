//! Mayfly's broker: instead of a copied long-lived key, a workload proves
//! what it is (an OIDC JWT or a SPIFFE JWT-SVID), starts a task, and gets
//! credentials that live only for that task.
//!
//! The pieces, in the order a request meets them:
//! - [`identity`]: verifies workload JWTs against configured issuers and
//!   maps their claims to a workload id and attributes;
//! - [`policy`]: Cedar policies, validated against Mayfly's schema, decide
//!   every task start and every exchange (default deny);
//! - [`keys`] and [`token`]: Mayfly's own signing keys (sealed at rest,
//!   rotated) and RFC 9068 access tokens, optionally DPoP-bound ([`dpop`]);
//! - [`writer`]: durable, batched writes of leases and audit events;
//! - [`protocol`]: the API's wire types and their validation;
//! - [`auth`] and [`secrets`]: who is calling, and the secrets it is
//!   checked against;
//! - [`service`]: the broker's operations (start, exchange, introspect,
//!   revoke, end, re-evaluate on policy change, sweep), with
//!   [`task_cache`], [`quota`] and [`reader`] under them;
//! - [`custody`] and [`upstream`]: long-lived upstream secrets the broker
//!   holds, and the client that forwards requests to their APIs with the
//!   secret added (the injecting proxy, in [`http`]);
//! - [`minted`]: upstreams that make a credential per task (a PostgreSQL
//!   role, a GitHub installation token), released when the task's lease ends;
//! - [`http`]: the HTTP API (OAuth endpoints, tasks, admin, the proxy);
//! - [`client`] and [`relay`]: the same API from the command line and
//!   `mayfly run` (the relay is the local end `mayfly run --inject` gives
//!   an unmodified tool);
//! - [`mcp_gate`] and [`mcp_bridge`]: policy in front of MCP servers, and a
//!   remote MCP server spoken to as a stdio one (over [`sse`]).
//!
//! Errors are one [`BrokerError`] whose variants map to OAuth errors.

pub mod auth;
pub mod client;
pub mod clock;
pub mod config;
pub mod custody;
pub mod dpop;
pub mod error;
pub mod http;
pub mod identity;
pub mod keys;
pub mod local_issuer;
pub mod mcp_bridge;
pub mod mcp_gate;
pub mod metrics;
pub mod minted;
pub mod policy;
pub mod protocol;
pub mod quota;
pub mod reader;
pub mod relay;
pub mod secrets;
pub mod service;
pub mod sse;
pub mod task_cache;
pub mod token;
pub mod upstream;
pub mod writer;

mod b64;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use config::{BrokerConfig, ConfigError};
pub use error::BrokerError;
pub use service::{Broker, Readiness};
