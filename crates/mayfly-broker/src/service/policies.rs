//! Policy changes: a new set is validated before it replaces the old one,
//! and every live credential is then decided again; those the new set
//! denies are revoked.

use std::path::Path;
use std::sync::Arc;

use mayfly_store::{BrokerWrite, GrantKey, LiveGrant, WriteOutcome};
use serde_json::json;

use super::{Broker, Question, event};
use crate::error::BrokerError;
use crate::identity::Workload;
use crate::policy::{Action, Policies, TaskFacts};
use crate::protocol::parse_scope;

/// Grants decided again per store read: re-evaluation holds this many at a
/// time, whatever the number of live credentials.
const GRANT_PAGE: i64 = 1000;

impl Broker {
    /// Records which policies are in force.
    pub(super) async fn audit_policy_load(&self) -> Result<(), BrokerError> {
        let policies = self.current_policies();
        self.audit(
            "policy.load",
            json!({"origin": policies.origin, "policies": policies.ids}),
        )
        .await
    }

    /// Installs a validated policy set; live credentials it denies are
    /// revoked. Returns the policy ids and how many were revoked.
    ///
    /// INVARIANT: no credential the new set denies survives. Exchanges
    /// decided under the old set either commit before the writer takes the
    /// new generation (and the re-evaluation below, which starts after that,
    /// reads them) or are refused at the commit and decided again.
    pub async fn install_policies(
        &self,
        mut policies: Policies,
    ) -> Result<(Vec<String>, u64), BrokerError> {
        let ids = policies.ids.clone();
        let generation = {
            let mut slot = match self.policies.write() {
                Ok(slot) => slot,
                Err(poisoned) => poisoned.into_inner(),
            };
            policies.generation = slot.generation + 1;
            let generation = policies.generation;
            *slot = Arc::new(policies);
            generation
        };
        self.writer.set_generation(generation).await?;
        self.audit_policy_load().await?;
        let revoked = self.reevaluate().await?;
        Ok((ids, revoked))
    }

    /// Replaces the policy files of the configured directory (admin API).
    pub async fn replace_policies(
        &self,
        files: Vec<(String, String)>,
    ) -> Result<(Vec<String>, u64), BrokerError> {
        let dir = self.config.policy.dir.clone().ok_or_else(|| {
            BrokerError::InvalidRequest("no policy directory is configured ([policy] dir); the embedded defaults cannot be replaced".into())
        })?;
        for (name, _) in &files {
            let stem = name.strip_suffix(".cedar").unwrap_or_default();
            if stem.is_empty()
                || !stem
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(BrokerError::InvalidRequest(format!(
                    "policy file name {name:?} must be letters, digits, - or _ followed by .cedar"
                )));
            }
        }
        let policies = self.engine.load_texts(&files, &dir.display().to_string())?;
        write_policy_dir(&dir, &files).map_err(|e| {
            BrokerError::Internal(format!(
                "cannot write the policies to {}: {e}",
                dir.display()
            ))
        })?;
        self.install_policies(policies).await
    }

    /// Reads the policy directory again (SIGHUP, admin API).
    pub async fn reload_policies(&self) -> Result<(Vec<String>, u64), BrokerError> {
        let policies = match &self.config.policy.dir {
            Some(dir) => self.engine.load_dir(dir)?,
            None => self.engine.defaults()?,
        };
        self.install_policies(policies).await
    }

    /// Decides every live credential again under the policies in force and
    /// revokes those now denied, a page of grants at a time. A task whose
    /// stored workload cannot be rebuilt is denied (fail closed).
    pub async fn reevaluate(&self) -> Result<u64, BrokerError> {
        let now = self.now();
        let policies = self.current_policies();
        let mut after: Option<GrantKey> = None;
        let mut revoked = 0;
        loop {
            let from = after.clone();
            let page = self
                .readers
                .read(move |s| s.broker_live_grants(now, from.as_ref(), GRANT_PAGE))
                .await?;
            let Some(last) = page.last() else {
                break;
            };
            after = Some(last.key.clone());
            let full = page.len() as i64 == GRANT_PAGE;
            for grant in page {
                let Some((reason, policy_ids)) = self.denial(&policies, &grant) else {
                    continue;
                };
                if let WriteOutcome::Done(n) = self
                    .writer
                    .apply_one(BrokerWrite::RevokeGrant {
                        grant: grant.key.clone(),
                        at: now,
                        reason: format!("policy change: {reason}"),
                        audit: event(
                            now,
                            "token.revoke",
                            json!({"task": grant.key.task_id, "audience": grant.key.audience,
                                   "by": "policy", "policies": policy_ids}),
                        ),
                    })
                    .await?
                {
                    revoked += n;
                }
            }
            if !full {
                break;
            }
        }
        Ok(revoked)
    }

    /// Why the policies in force deny a grant (and which policies), or
    /// `None` when they allow it.
    fn denial(&self, policies: &Policies, grant: &LiveGrant) -> Option<(String, Vec<String>)> {
        let Some(workload) = Workload::from_attributes(&grant.workload, &grant.attributes) else {
            return Some((
                "the task's stored workload cannot be read".to_owned(),
                Vec::new(),
            ));
        };
        // Scopes were checked at issuance; one that no longer parses is
        // denied too.
        let Ok(scopes) = parse_scope(&grant.key.scope) else {
            return Some((
                "the credential's scope cannot be read".to_owned(),
                Vec::new(),
            ));
        };
        let decision = self.decide(
            policies,
            &Question {
                action: Action::Exchange,
                workload: &workload,
                task: TaskFacts {
                    purpose: &grant.purpose,
                    owner: &grant.owner,
                    tenant: &grant.tenant,
                    audiences: &grant.audiences,
                    started_at: grant.started_at,
                },
                audience: &grant.key.audience,
                scope: &scopes,
                requested_ttl: grant.lifetime,
                dpop: grant.key.bound,
                source_ip: &grant.source_addr,
            },
        );
        (!decision.allowed).then(|| (decision.reason(), decision.policies))
    }
}

/// Writes policy files next to each other and removes the old ones: new
/// files land under temporary names and are renamed, so a crash leaves
/// either file whole.
fn write_policy_dir(dir: &Path, files: &[(String, String)]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in files {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, dir.join(name))?;
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".cedar") && !files.iter().any(|(n, _)| *n == name) {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}
