//! One request through the injecting proxy, as the broker sees it: the
//! access token presented (Bearer, DPoP, or where the provider's SDK puts
//! its key), its lease live in the store right now and for this entry, a
//! DPoP proof by the key it is bound to (a bound token without one was
//! copied: it is revoked on the spot), the task, Cedar's `use` decision,
//! and only then the secret, opened for this request alone. After the
//! answer, one audit event and the task's counters.

use std::sync::Arc;

use mayfly_store::{BrokerWrite, LeaseRecord, ProxyUsage, RevokeSelector, WriteOutcome};
use serde_json::json;
use zeroize::Zeroizing;

use super::custody::EntryInUse;
use super::{Broker, event};
use crate::custody::{self, Injection};
use crate::error::BrokerError;
use crate::identity::Workload;
use crate::policy::{TaskFacts, UseRequest};
use crate::upstream::Upstream;

/// What the proxy read from one request, before anything is checked.
#[derive(Debug)]
pub struct ProxyCall<'a> {
    /// The custody entry named in the path.
    pub entry: &'a str,
    /// The access token, and whether it came with the `DPoP` scheme.
    pub token: Option<(&'a str, bool)>,
    /// The `DPoP` proof header.
    pub dpop_proof: Option<&'a str>,
    /// The request's method.
    pub method: &'a str,
    /// The URL the caller addressed (Mayfly's public URL and the path),
    /// which a DPoP proof must name.
    pub url: &'a str,
    /// The path below the entry (`/v1/chat/completions`).
    pub path: &'a str,
    /// The caller's address.
    pub source_ip: &'a str,
}

/// A request policy allowed: where it goes and the secret it carries.
pub struct UsePermit {
    entry: Arc<EntryInUse>,
    secret: Zeroizing<String>,
    /// The task it is made for.
    pub task_id: String,
    /// Its workload.
    pub workload: String,
}

impl std::fmt::Debug for UsePermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "UsePermit({} for task {})",
            self.entry.entry.name, self.task_id
        )
    }
}

impl UsePermit {
    /// The upstream base URL.
    pub fn upstream(&self) -> &axum::http::Uri {
        &self.entry.upstream
    }

    /// Every upstream base URL the entry may be sent to.
    pub fn upstreams(&self) -> &[String] {
        &self.entry.settings.upstreams
    }

    /// How the secret goes into the request.
    pub fn injection(&self) -> &Injection {
        &self.entry.settings.injection
    }

    /// The secret (for this request only; wiped when the permit drops).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The entry's name.
    pub fn entry(&self) -> &str {
        &self.entry.entry.name
    }
}

/// What one forwarded request did, for the audit and the counters.
#[derive(Debug, Clone)]
pub struct UseReport {
    /// The task.
    pub task_id: String,
    /// Its workload.
    pub workload: String,
    /// The entry.
    pub entry: String,
    /// The method.
    pub method: String,
    /// The upstream host.
    pub host: String,
    /// The path (no query: it may carry data).
    pub path: String,
    /// The upstream's status, or the proxy's when the upstream failed.
    pub status: u16,
    /// Request body bytes forwarded.
    pub bytes_up: u64,
    /// Response body bytes returned.
    pub bytes_down: u64,
    /// Milliseconds from the request to the end of the answer.
    pub duration_ms: u64,
    /// Whether the client went away before the answer ended.
    pub aborted: bool,
}

impl Broker {
    /// The proxy's client to upstreams.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Decides one request through the proxy; the permit carries the
    /// secret to inject.
    pub async fn authorize_use(&self, call: &ProxyCall<'_>) -> Result<UsePermit, BrokerError> {
        let now = self.now();
        let entry = self.entry_in_use(call.entry).await?;
        let Some((token, dpop_scheme)) = call.token else {
            return Err(BrokerError::InvalidToken(format!(
                "send a Mayfly access token for audience {} (Authorization: Bearer or DPoP)",
                custody::audience(call.entry)
            )));
        };
        let Some((_, lease)) = self.leased(token).await? else {
            return Err(BrokerError::InvalidToken(
                "the token is not one Mayfly issued, or it was altered".into(),
            ));
        };
        if !lease.is_active(now) {
            return Err(BrokerError::InvalidToken(format!(
                "the token {}; start a new task for a new one",
                if lease.revoked_at.is_some() {
                    "was revoked (its task ended?)"
                } else {
                    "has expired"
                }
            )));
        }
        if custody::entry_of(&lease.audience) != Some(call.entry) {
            return Err(BrokerError::InvalidToken(format!(
                "the token is for audience {}, not {}",
                lease.audience,
                custody::audience(call.entry)
            )));
        }
        self.check_binding(&lease, token, dpop_scheme, call, now)
            .await?;
        let task = self.load_task(&lease.task_id).await?;
        let Some(workload) = Workload::from_attributes(&task.workload, &task.attributes) else {
            return Err(BrokerError::AccessDenied(format!(
                "task {} has workload attributes policy cannot read",
                task.id
            )));
        };
        let host = entry.upstream.host().unwrap_or_default();
        let decision = self.engine.decide_use(
            &self.current_policies(),
            &UseRequest {
                workload: &workload,
                entry: &entry.entry.name,
                provider: &entry.entry.provider,
                entry_owner: &entry.entry.owner,
                task_id: &task.id,
                task: TaskFacts::of(&task),
                method: call.method,
                path: call.path,
                upstream: host,
                now,
                dpop: lease.cnf_jkt.is_some(),
                source_ip: call.source_ip,
            },
        );
        if !decision.allowed {
            self.deny(
                "proxy.deny",
                json!({"task": task.id, "workload": workload.id, "entry": call.entry,
                       "method": call.method, "path": call.path, "reason": decision.reason()}),
            )
            .await;
            return Err(BrokerError::AccessDenied(format!(
                "policy does not allow {} {} on {} for this task: {}",
                call.method,
                call.path,
                call.entry,
                decision.reason()
            )));
        }
        let plaintext = entry.open(&self.master)?;
        let secret = Zeroizing::new(String::from_utf8(plaintext.to_vec()).map_err(|_| {
            BrokerError::Internal(format!("custody entry {} is not text", entry.entry.name))
        })?);
        if custody::is_private_key(&secret) {
            return Err(BrokerError::Forbidden(format!(
                "custody entry {} holds a private key: the broker signs with it (an [[upstream.github]] App key) and never sends it",
                entry.entry.name
            )));
        }
        Ok(UsePermit {
            entry,
            secret,
            task_id: task.id.clone(),
            workload: workload.id,
        })
    }

    /// A DPoP-bound token must come with a proof by its key, for this
    /// request and this token. Without one it was copied: its lease is
    /// revoked at once and `token.copied` audited.
    async fn check_binding(
        &self,
        lease: &LeaseRecord,
        token: &str,
        dpop_scheme: bool,
        call: &ProxyCall<'_>,
        now: i64,
    ) -> Result<(), BrokerError> {
        let Some(jkt) = &lease.cnf_jkt else {
            if dpop_scheme {
                return Err(BrokerError::InvalidToken(
                    "the token is not DPoP-bound; present it as Bearer".into(),
                ));
            }
            return Ok(());
        };
        let proven = match (dpop_scheme, call.dpop_proof) {
            (true, Some(proof)) => {
                let thumbprint =
                    self.dpop
                        .verify(proof, call.method, call.url, Some(token), now)?;
                thumbprint == *jkt
            }
            _ => false,
        };
        if proven {
            // Spent in the store too: no other replica, and no restart of
            // this one, accepts the proof again.
            let Some(proof) = call.dpop_proof else {
                return Ok(());
            };
            let (proof, forget_at) = crate::dpop::spent(proof, now);
            return match self
                .writer
                .apply_one(BrokerWrite::SpendProof { proof, forget_at })
                .await?
            {
                WriteOutcome::Done(_) => Ok(()),
                WriteOutcome::Refused(_) => Err(crate::dpop::DpopError::Replayed.into()),
            };
        }
        let reason = "a DPoP-bound token was presented without a proof by its key";
        let _ = self
            .writer
            .apply_one(BrokerWrite::Revoke {
                selector: RevokeSelector::Lease(lease.jti.clone()),
                at: now,
                reason: "copied: presented without its key".into(),
                audit: event(
                    now,
                    "token.copied",
                    json!({"jti": lease.jti, "task": lease.task_id, "workload": lease.workload,
                           "entry": call.entry, "source_ip": call.source_ip, "reason": reason}),
                ),
            })
            .await;
        Err(BrokerError::InvalidToken(format!(
            "{reason}: it is revoked as copied; a token is used only by the holder of its key"
        )))
    }

    /// Records one forwarded request: an audit event and the task's
    /// counters. Never fails the request (it has been answered).
    pub async fn record_use(&self, report: UseReport) {
        let now = self.now();
        let audit = event(
            now,
            "proxy.request",
            json!({"task": report.task_id, "workload": report.workload, "entry": report.entry,
                   "method": report.method, "host": report.host, "path": report.path,
                   "status": report.status, "bytes_up": report.bytes_up,
                   "bytes_down": report.bytes_down, "duration_ms": report.duration_ms,
                   "aborted": report.aborted}),
        );
        let usage = ProxyUsage {
            task_id: report.task_id,
            entry: report.entry,
            requests: 1,
            bytes_up: i64::try_from(report.bytes_up).unwrap_or(i64::MAX),
            bytes_down: i64::try_from(report.bytes_down).unwrap_or(i64::MAX),
            last_at: now,
        };
        if let Err(e) = self
            .writer
            .apply_one(BrokerWrite::ProxyUse { usage, audit })
            .await
        {
            tracing::warn!("a proxied request could not be recorded: {e}");
        }
    }
}
