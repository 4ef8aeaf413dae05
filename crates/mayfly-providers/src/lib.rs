//! The providers of found credentials, asked over their own APIs.
//!
//! [`verifier`] holds the verifiers as data (built in, from
//! `verifiers.toml`): for each provider, a read-only identity endpoint and
//! what its answers mean. [`validate`] asks each distinct secret of a scan
//! once, with bounded concurrency and per-host limits, and records only
//! the verdict (live, dead or unknown) on its findings. [`aws`] signs AWS
//! requests and keeps canary-token keys from ever being called. [`revoke`]
//! ends a leaked secret through the API its provider documents for that.

pub mod aws;
pub mod http;
pub mod revoke;
pub mod validate;
pub mod verifier;
