//! Mayfly as an OpenID Connect provider for workload identity federation:
//! the discovery document, and RS256 ID tokens for a task that clouds and
//! model providers trade at their own token endpoints for their own
//! short-lived credentials.

use mayfly_store::TaskRecord;

use super::Broker;
use crate::error::BrokerError;
use crate::token::{self, AccessClaims, IdClaims};

impl Broker {
    /// Refuses an ID token where federation is off or the audience is one
    /// of Mayfly's own.
    pub(crate) fn check_id_token_audience(&self, audience: &str) -> Result<(), BrokerError> {
        if !self.config.federation.enabled {
            return Err(BrokerError::InvalidRequest(
                "this broker issues no ID tokens; set [federation] enabled = true in its config"
                    .into(),
            ));
        }
        if audience.starts_with("urn:mayfly:") {
            return Err(BrokerError::InvalidTarget(format!(
                "an ID token is for a cloud or provider that federates with Mayfly, not for {audience}"
            )));
        }
        Ok(())
    }

    /// The ID token of an exchange whose access token would carry `claims`.
    pub(crate) fn sign_id_token(
        &self,
        claims: &AccessClaims,
        task: &TaskRecord,
    ) -> Result<String, BrokerError> {
        let id = IdClaims {
            iss: claims.iss.clone(),
            sub: claims.sub.clone(),
            aud: claims.aud.clone(),
            exp: claims.exp,
            iat: claims.iat,
            nbf: claims.nbf,
            jti: claims.jti.clone(),
            task: task.id.clone(),
            owner: task.owner.clone(),
            purpose: task.purpose.clone(),
            tenant: task.tenant.clone(),
        };
        Ok(token::sign_id_token(&id, &self.current_keys())?)
    }

    /// `/.well-known/openid-configuration` (OpenID Connect Discovery 1.0),
    /// when federation is on.
    pub fn openid_configuration(&self) -> Option<serde_json::Value> {
        if !self.config.federation.enabled {
            return None;
        }
        let base = &self.public_url;
        Some(serde_json::json!({
            "issuer": base,
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "token_endpoint": format!("{base}/oauth2/token"),
            "grant_types_supported": [crate::protocol::TOKEN_EXCHANGE],
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "task", "owner", "purpose", "tenant"],
        }))
    }
}
