//! Issued credentials after issuance: introspection (RFC 7662),
//! revocation (RFC 7009 and by task, workload or owner), listing, and the
//! sweep that closes what expired and deletes what is past its retention.

use mayfly_store::{BrokerWrite, LeaseRecord, RevokeSelector, Sweep, Swept, WriteOutcome};
use serde_json::json;

use super::{Broker, SWEEP_BATCH, event};
use crate::auth::Caller;
use crate::error::BrokerError;
use crate::protocol::CredentialView;
use crate::task_cache::Forget;
use crate::token::AccessClaims;

impl Broker {
    /// Whether `caller` may see or revoke tokens for `audience`: the admin
    /// may; a resource server only for the audiences it serves (RFC 7662
    /// section 4, RFC 7009 section 2.1).
    fn serves(&self, caller: &Caller, audience: &str) -> bool {
        match caller {
            Caller::Admin => true,
            Caller::ResourceServer(id) => self
                .config
                .resource_servers
                .iter()
                .any(|rs| rs.client_id == *id && rs.audiences.iter().any(|a| a == audience)),
            Caller::Workload(_) => false,
        }
    }

    /// A presented token and its lease, when Mayfly signed the token, the
    /// lease exists and agrees with every claim that matters. A token whose
    /// claims differ from its lease (signed with a key that should not be
    /// trusted, or made up around a real `jti`) is reported and ignored.
    pub(super) async fn leased(
        &self,
        token: &str,
    ) -> Result<Option<(std::sync::Arc<AccessClaims>, LeaseRecord)>, BrokerError> {
        let Some(claims) = self.verify_access_token(token).await else {
            return Ok(None);
        };
        let jti = claims.jti.clone();
        let Some(lease) = self
            .readers
            .point_read(move |s| s.broker_lease(&jti))
            .await?
        else {
            return Ok(None);
        };
        let agrees = claims.sub == lease.workload
            && claims.aud == lease.audience
            && claims.scope == lease.scope
            && claims.task == lease.task_id
            && claims.tenant == lease.tenant
            && claims.client_id == lease.client_id
            && claims.exp == lease.expires_at
            && claims.cnf.as_ref().map(|c| c.jkt.as_str()) == lease.cnf_jkt.as_deref();
        if !agrees {
            self.deny(
                "token.mismatch",
                json!({"jti": lease.jti, "task": lease.task_id,
                       "reason": "a signed token's claims differ from its lease"}),
            )
            .await;
            return Ok(None);
        }
        Ok(Some((claims, lease)))
    }

    /// RFC 7662 introspection: active only if Mayfly signed it, its lease is
    /// live in the store right now and agrees with it, and the caller
    /// serves its audience. The answer comes from the lease.
    pub async fn introspect(
        &self,
        caller: &Caller,
        token: &str,
    ) -> Result<serde_json::Value, BrokerError> {
        let now = self.now();
        let inactive = json!({"active": false});
        let Some((claims, lease)) = self.leased(token).await? else {
            return Ok(inactive);
        };
        if !lease.is_active(now) || !self.serves(caller, &lease.audience) {
            return Ok(inactive);
        }
        let mut out = json!({
            "active": true,
            "iss": claims.iss,
            "sub": lease.workload,
            "aud": lease.audience,
            "exp": lease.expires_at,
            "iat": lease.issued_at,
            "nbf": lease.issued_at,
            "jti": lease.jti,
            "client_id": lease.client_id,
            "scope": lease.scope,
            "token_type": if lease.cnf_jkt.is_some() { "DPoP" } else { "Bearer" },
            "task": lease.task_id,
            "tenant": lease.tenant,
            "owner": lease.owner,
        });
        if let (Some(jkt), Some(object)) = (lease.cnf_jkt, out.as_object_mut()) {
            object.insert("cnf".into(), json!({ "jkt": jkt }));
        }
        Ok(out)
    }

    /// RFC 7009 revocation of one token. Unknown tokens, and tokens for
    /// audiences the caller does not serve, are not an error: nothing
    /// happens.
    pub async fn revoke_token(&self, caller: &Caller, token: &str) -> Result<(), BrokerError> {
        let now = self.now();
        let Some((_, lease)) = self.leased(token).await? else {
            return Ok(());
        };
        if !self.serves(caller, &lease.audience) {
            return Ok(());
        }
        let by = caller.audit_name();
        self.writer
            .apply_one(BrokerWrite::Revoke {
                selector: RevokeSelector::Lease(lease.jti.clone()),
                at: now,
                reason: format!("revoked by {by}"),
                audit: event(
                    now,
                    "token.revoke",
                    json!({"jti": lease.jti, "task": lease.task_id, "by": by}),
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

    /// Closes expired tasks and credentials and deletes what the
    /// `[retention]` settings no longer keep (at most [`SWEEP_BATCH`] of
    /// each); returns how many of each.
    pub async fn sweep(&self) -> Result<Swept, BrokerError> {
        let now = self.now();
        let retention = &self.config.retention;
        let swept = self
            .writer
            .sweep(Sweep {
                now,
                limit: SWEEP_BATCH as i64,
                keep_closed: retention.keep_closed(),
                keep_audit: retention.keep_audit(),
            })
            .await?;
        if swept.tasks_ended > 0 {
            self.tasks.forget(Forget::ExpiredAt(now));
        }
        self.metrics.swept(&swept);
        Ok(swept)
    }
}
