//! Issued credentials after issuance: introspection (RFC 7662),
//! revocation (RFC 7009 and by task, workload or owner), listing, and the
//! sweep that closes what expired.

use mayfly_store::{BrokerWrite, RevokeSelector, WriteOutcome};
use serde_json::json;

use super::{Broker, SWEEP_BATCH, event};
use crate::auth::Caller;
use crate::error::BrokerError;
use crate::protocol::CredentialView;
use crate::task_cache::Forget;

impl Broker {
    /// RFC 7662 introspection: active only if Mayfly signed it and its lease
    /// is live in the store right now.
    pub async fn introspect(&self, token: &str) -> Result<serde_json::Value, BrokerError> {
        let now = self.now();
        let Some(claims) = self.verify_access_token(token) else {
            return Ok(json!({"active": false}));
        };
        let jti = claims.jti.clone();
        let lease = self.readers.read(move |s| s.broker_lease(&jti)).await?;
        match lease {
            Some(lease) if lease.is_active(now) && claims.exp > now => {
                let mut out = json!({
                    "active": true,
                    "iss": claims.iss,
                    "sub": claims.sub,
                    "aud": claims.aud,
                    "exp": claims.exp,
                    "iat": claims.iat,
                    "nbf": claims.nbf,
                    "jti": claims.jti,
                    "client_id": claims.client_id,
                    "scope": claims.scope,
                    "token_type": if claims.cnf.is_some() { "DPoP" } else { "Bearer" },
                    "task": claims.task,
                    "tenant": claims.tenant,
                    "owner": lease.owner,
                });
                if let (Some(cnf), Some(object)) = (claims.cnf, out.as_object_mut()) {
                    object.insert("cnf".into(), json!({"jkt": cnf.jkt}));
                }
                Ok(out)
            }
            _ => Ok(json!({"active": false})),
        }
    }

    /// RFC 7009 revocation of one token (unknown tokens are not an error).
    pub async fn revoke_token(&self, caller: &Caller, token: &str) -> Result<(), BrokerError> {
        let now = self.now();
        let Some(claims) = self.verify_access_token(token) else {
            return Ok(());
        };
        let by = caller.audit_name();
        self.writer
            .apply_one(BrokerWrite::Revoke {
                selector: RevokeSelector::Lease(claims.jti.clone()),
                at: now,
                reason: format!("revoked by {by}"),
                audit: event(
                    now,
                    "token.revoke",
                    json!({"jti": claims.jti, "task": claims.task, "by": by}),
                ),
            })
            .await?;
        Ok(())
    }

    /// Revokes by task, workload, owner or `jti` (admin).
    pub async fn admin_revoke(
        &self,
        selector: RevokeSelector,
        reason: &str,
    ) -> Result<u64, BrokerError> {
        let now = self.now();
        let (what, value) = match &selector {
            RevokeSelector::Lease(v) => ("jti", v),
            RevokeSelector::Task(v) => ("task", v),
            RevokeSelector::Workload(v) => ("workload", v),
            RevokeSelector::Owner(v) => ("owner", v),
        };
        let audit = event(
            now,
            "token.revoke",
            json!({what: value, "by": "admin", "reason": reason}),
        );
        let outcome = self
            .writer
            .apply_one(BrokerWrite::Revoke {
                selector: selector.clone(),
                at: now,
                reason: reason.to_owned(),
                audit,
            })
            .await?;
        self.tasks.forget(Forget::Revoked(&selector));
        Ok(match outcome {
            WriteOutcome::Done(n) => n,
            WriteOutcome::Refused(_) => 0,
        })
    }

    /// Credentials (admin).
    pub async fn list_credentials(
        &self,
        live_only: bool,
        limit: i64,
    ) -> Result<Vec<CredentialView>, BrokerError> {
        let now = self.now();
        Ok(self
            .readers
            .read(move |s| s.broker_leases(live_only, limit))
            .await?
            .iter()
            .map(|l| CredentialView::of(l, now))
            .collect())
    }

    /// Closes expired tasks and credentials (at most [`SWEEP_BATCH`] of
    /// each); returns how many of each.
    pub async fn sweep(&self) -> Result<(u64, u64), BrokerError> {
        let now = self.now();
        let swept = self.writer.sweep(now, SWEEP_BATCH as i64).await?;
        if swept.0 > 0 {
            self.tasks.forget(Forget::ExpiredAt(now));
        }
        Ok(swept)
    }
}
