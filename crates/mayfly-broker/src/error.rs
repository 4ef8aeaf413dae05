//! Why a broker operation was refused. Each variant maps to one OAuth
//! error and HTTP status (in [`crate::http`]), chosen by the variant, never
//! by the message text.

use crate::config::ConfigError;
use crate::dpop::DpopError;
use crate::identity::IdentityError;
use crate::keys::KeyError;
use crate::policy::PolicyError;
use crate::token::TokenError;
use crate::writer::WriteError;

/// Why an operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The request is malformed (400 `invalid_request`).
    #[error("{0}")]
    InvalidRequest(String),
    /// The subject token or task is not acceptable (400 `invalid_grant`).
    #[error("{0}")]
    InvalidGrant(String),
    /// The subject token of an exchange did not verify (400 `invalid_grant`).
    #[error(transparent)]
    SubjectToken(IdentityError),
    /// The audience or resource is not acceptable (400 `invalid_target`).
    #[error("{0}")]
    InvalidTarget(String),
    /// Not the token-exchange grant (400 `unsupported_grant_type`).
    #[error("{0}")]
    UnsupportedGrantType(String),
    /// The DPoP proof was refused (400 `invalid_dpop_proof`).
    #[error(transparent)]
    Dpop(#[from] DpopError),
    /// Policy denied it (403 `access_denied`).
    #[error("{0}")]
    AccessDenied(String),
    /// The caller's identity token did not verify (401).
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// No or wrong credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated but not allowed to touch this (403).
    #[error("{0}")]
    Forbidden(String),
    /// A quota was reached (429): slow down or end tasks.
    #[error("{0}")]
    TooManyRequests(String),
    /// The access token presented to the proxy is not usable: unknown,
    /// expired, revoked, for another audience or copied (401
    /// `invalid_token`).
    #[error("{0}")]
    InvalidToken(String),
    /// The request conflicts with the current state: a name taken, a
    /// concurrent change (409).
    #[error("{0}")]
    Conflict(String),
    /// The proxy's upstream failed (502, or 504 on a timeout).
    #[error(transparent)]
    Upstream(#[from] crate::upstream::UpstreamError),
    /// No such task (404).
    #[error("{0}")]
    NotFound(String),
    /// A policy set was refused; the old set stays in force (400).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The store failed to read (503); nothing was written.
    #[error(transparent)]
    Store(#[from] mayfly_store::StoreError),
    /// The store failed to commit (503); nothing was written.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The configuration is not usable (start-up).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A signing or master key failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A token could not be signed.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// An upstream credential was not made or released.
    #[error(transparent)]
    Mint(#[from] crate::minted::MintError),
    /// Start-up or internal failure, with what failed.
    #[error("{0}")]
    Internal(String),
}

/// An internal failure with its cause's message.
pub(crate) fn internal(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Internal(e.to_string())
}
