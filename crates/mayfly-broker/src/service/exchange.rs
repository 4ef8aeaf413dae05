//! RFC 8693 token exchange: a verified workload, a live task of its own
//! that named the audience, policy's permission, then a signed access
//! token whose lease is committed before the token is returned.

use mayfly_store::{BrokerWrite, LeaseRecord, RevokeSelector, WriteOutcome};
use serde_json::json;

use super::{Broker, Question, event};
use crate::b64;
use crate::error::{BrokerError, internal};
use crate::minted::Target;
use crate::policy::{Action, TaskFacts};
use crate::protocol::{ACCESS_TOKEN_TYPE, ExchangeRequest, ID_TOKEN_TYPE, TokenResponse};
use crate::task_cache::Forget;
use crate::token::{AccessClaims, Confirmation};
use crate::writer::WriteError;

/// How many times an exchange is decided again when policies change
/// between its decision and its commit.
const STALE_RETRIES: usize = 3;

impl Broker {
    /// RFC 8693 token exchange.
    pub async fn exchange(
        &self,
        request: ExchangeRequest,
        dpop_proof: Option<&str>,
        source_ip: &str,
    ) -> Result<TokenResponse, BrokerError> {
        let now = self.now();
        let request = request.validate()?;
        let task_id = request.task_id.as_str();
        let audience = request.audience.as_str();
        let workload = self
            .identity
            .verify(&request.subject_token)
            .await
            .map_err(BrokerError::SubjectToken)?;
        if !self
            .exchange_rate
            .admit(&workload.issuer, &workload.id, std::time::Instant::now())
        {
            return Err(BrokerError::TooManyRequests(format!(
                "workload {} asked for more than {} credentials a second (limits.exchanges_per_second_per_workload); slow down",
                workload.id, self.config.limits.exchanges_per_second_per_workload
            )));
        }
        let jkt = match dpop_proof {
            Some(proof) => Some(self.dpop.verify(
                proof,
                "POST",
                &format!("{}/oauth2/token", self.public_url),
                None,
                now,
            )?),
            None => None,
        };
        let task = self.load_task(task_id).await.map_err(|e| match e {
            BrokerError::NotFound(m) => BrokerError::InvalidGrant(m),
            other => other,
        })?;
        if task.workload != workload.id || task.issuer != workload.issuer {
            self.deny(
                "token.deny",
                json!({"task": task_id, "workload": workload.id, "reason": "task of another workload"}),
            )
            .await;
            return Err(BrokerError::InvalidGrant(format!(
                "task {task_id} belongs to another workload"
            )));
        }
        if task.ended_at.is_some() || now >= task.expires_at {
            return Err(BrokerError::InvalidGrant(format!(
                "task {task_id} has ended; start a new task"
            )));
        }
        if !task.audiences.iter().any(|a| a == audience) {
            return Err(BrokerError::InvalidTarget(format!(
                "task {task_id} did not name audience {audience}; its audiences are {}",
                task.audiences.join(", ")
            )));
        }
        let tokens = &self.config.tokens;
        // An upstream's credential lives for the task (capped by the
        // upstream), not for an access token's usual few minutes: a command
        // gets it once, in its environment.
        let target = Target::of(audience);
        if request.id_token {
            self.check_id_token_audience(audience)?;
        }
        let (scopes, default_ttl, max_ttl) = match target {
            None if request.id_token => (
                request.scopes.clone(),
                tokens.default_ttl_seconds,
                self.config.federation.max_ttl_seconds,
            ),
            Some(target) => (
                self.upstream_scopes(target, &request.scopes)?,
                i64::MAX,
                self.upstream_max_lifetime(target),
            ),
            None => (
                request.scopes.clone(),
                tokens.default_ttl_seconds,
                tokens.max_ttl_seconds,
            ),
        };
        let requested = request.requested_ttl.unwrap_or(default_ttl);
        // A policy change between the decision and the commit refuses the
        // commit: decide again under the new set (a few times at most).
        for _ in 0..STALE_RETRIES {
            let policies = self.current_policies();
            let decision = self.decide(
                &policies,
                &Question {
                    action: Action::Exchange,
                    workload: &workload,
                    task: TaskFacts::of(&task),
                    audience,
                    scope: &scopes,
                    requested_ttl: requested.min(max_ttl),
                    dpop: jkt.is_some(),
                    source_ip,
                },
            );
            if !decision.allowed {
                // Another replica may have loaded a set that allows it.
                if self.adopted_newer_than(policies.generation).await {
                    continue;
                }
                self.deny(
                    "token.deny",
                    json!({"task": task_id, "workload": workload.id, "audience": audience,
                           "policies": decision.policies, "errors": decision.errors}),
                )
                .await;
                return Err(BrokerError::AccessDenied(format!(
                    "a credential for {audience} is denied: {}",
                    decision.reason()
                )));
            }
            let mut lifetime = requested
                .min(max_ttl)
                .min(task.expires_at - now)
                .min(decision.max_ttl.unwrap_or(i64::MAX));
            let scope = scopes.join(" ");
            let jti = b64::time_ordered_id(now).map_err(internal)?;
            let minted = match target {
                Some(target) => {
                    let minted = self
                        .mint(target, &scopes, &jti, &task, now + lifetime)
                        .await?;
                    lifetime = lifetime.min(minted.grant.expires_at - now);
                    Some(minted)
                }
                None => None,
            };
            let claims = AccessClaims {
                iss: self.public_url.clone(),
                sub: workload.id.clone(),
                aud: audience.to_owned(),
                exp: now + lifetime,
                iat: now,
                nbf: now,
                jti: jti.clone(),
                client_id: workload.issuer.clone(),
                scope: scope.clone(),
                task: task.id.clone(),
                tenant: task.tenant.clone(),
                cnf: jkt.clone().map(|jkt| Confirmation { jkt }),
            };
            let signed = if request.id_token {
                self.sign_id_token(&claims, &task)
            } else {
                self.sign(&claims)
            };
            let access_token = match signed {
                Ok(token) => token,
                Err(e) => {
                    if let Some(minted) = minted {
                        minted.undo().await;
                    }
                    return Err(e);
                }
            };
            let lease = LeaseRecord {
                jti: jti.clone(),
                task_id: task.id.clone(),
                workload: workload.id.clone(),
                owner: task.owner.clone(),
                tenant: task.tenant.clone(),
                audience: audience.to_owned(),
                scope: scope.clone(),
                client_id: workload.issuer.clone(),
                cnf_jkt: jkt.clone(),
                source_addr: source_ip.to_owned(),
                issued_at: now,
                expires_at: now + lifetime,
                revoked_at: None,
                revoke_reason: None,
            };
            let audit = event(
                now,
                "token.issue",
                json!({"jti": jti, "task": task.id, "workload": workload.id, "audience": audience,
                       "exp": now + lifetime, "policies": decision.policies, "bound": jkt.is_some()}),
            );
            let committed = self
                .writer
                .apply_decided(
                    BrokerWrite::IssueLease {
                        lease,
                        proof: dpop_proof.map(|p| crate::dpop::spent(p, now)),
                        grant: minted.as_ref().map(|m| Box::new(m.grant.clone())),
                        decided_under: policies.generation as i64,
                        audit,
                    },
                    policies.generation,
                )
                .await;
            let committed = self.settle(committed, minted, &jti, now).await?;
            return match committed {
                Ok((WriteOutcome::Done(_), upstream_credential)) => Ok(TokenResponse {
                    access_token,
                    issued_token_type: if request.id_token {
                        ID_TOKEN_TYPE
                    } else {
                        ACCESS_TOKEN_TYPE
                    }
                    .into(),
                    // RFC 8693 section 2.2.1: an ID token is no access token.
                    token_type: match (request.id_token, jkt.is_some()) {
                        (true, _) => "N_A",
                        (false, true) => "DPoP",
                        (false, false) => "Bearer",
                    }
                    .into(),
                    expires_in: lifetime,
                    scope,
                    upstream_credential,
                }),
                Ok((WriteOutcome::Refused(why), _)) if why == mayfly_store::PROOF_REPLAYED => {
                    Err(crate::dpop::DpopError::Replayed.into())
                }
                // Another replica loaded a policy set: put it in force here
                // and decide again.
                Ok((WriteOutcome::Refused(why), _)) if why == mayfly_store::POLICY_CHANGED => {
                    self.adopt_stored_policies().await?;
                    continue;
                }
                Ok((WriteOutcome::Refused(_), _)) => {
                    self.tasks
                        .forget(Forget::Revoked(&RevokeSelector::Task(task_id.to_owned())));
                    Err(BrokerError::InvalidGrant(format!(
                        "task {task_id} has ended; start a new task"
                    )))
                }
                Err(WriteError::StalePolicy) => continue,
                Err(e) => Err(e.into()),
            };
        }
        Err(BrokerError::Write(WriteError::StalePolicy))
    }
}
