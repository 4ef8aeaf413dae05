//! Policy changes: a new set is validated before it replaces the old one,
//! and every live credential is then decided again; those the new set
//! denies are revoked.
//!
//! Replicas on one store agree: a set loaded by any of them is stored as
//! the next generation, the others put it in force from the store (within
//! half a second, or at once when a write of theirs is refused for it or
//! a decision of theirs denies), and its
//! re-evaluation is claimed and run by one replica, taken over if that one
//! dies before recording it done.

use std::path::Path;
use std::sync::Arc;

use mayfly_store::{BrokerWrite, GrantKey, LiveGrant, NewPolicySet, WriteOutcome};
use serde_json::json;

use super::{Broker, Question, event};
use crate::error::{BrokerError, internal};
use crate::identity::Workload;
use crate::policy::{Action, Policies, TaskFacts};
use crate::protocol::parse_scope;

/// Grants decided again per store read: re-evaluation holds this many at a
/// time, whatever the number of live credentials.
const GRANT_PAGE: i64 = 1000;

/// Seconds a replica holds the re-evaluation of a policy set, renewed at
/// each page: another replica takes it over this long after the holder
/// stopped (died) without recording it done.
const REEVALUATION_CLAIM: i64 = 30;

impl Broker {
    /// Follows what other replicas on the store changed: the policy set in
    /// force and the signing keys. Runs every half second.
    pub async fn follow_store(&self) -> Result<(), BrokerError> {
        self.follow_policies().await?;
        self.follow_keys().await
    }

    /// Puts the policies loaded at start in force: the set on the store if
    /// it is the same one (another replica, or an earlier run, loaded it),
    /// or else these files as the next set for every replica.
    pub(super) async fn start_policies(&self, loaded: Policies) -> Result<(), BrokerError> {
        let stored = self.readers.read(|s| s.broker_policy_set()).await?;
        match stored {
            Some(stored) if stored.digest == loaded.digest => {
                let generation = stored.generation as u64;
                self.audit(
                    "policy.load",
                    json!({"origin": loaded.origin, "policies": loaded.ids, "generation": generation}),
                )
                .await?;
                self.put_in_force(loaded, generation).await?;
                if stored.reevaluated_at.is_none() {
                    self.reevaluate_generation(generation).await?;
                }
            }
            // The policies may have changed while the broker was down.
            _ => {
                self.install_policies(loaded).await?;
            }
        }
        Ok(())
    }

    /// Installs a validated policy set on every replica; live credentials
    /// it denies are revoked. Returns the policy ids and how many were
    /// revoked.
    ///
    /// INVARIANT: no credential the new set denies survives. The set is
    /// stored first; a credential decided under an older set, on any
    /// replica, either committed before that (and the re-evaluation below,
    /// which starts after it, reads it) or is refused at its commit and
    /// decided again.
    pub async fn install_policies(
        &self,
        policies: Policies,
    ) -> Result<(Vec<String>, u64), BrokerError> {
        let now = self.now();
        let ids = policies.ids.clone();
        let stored = self
            .writer
            .apply_one(BrokerWrite::InstallPolicySet(NewPolicySet {
                digest: policies.digest.clone(),
                origin: policies.origin.clone(),
                files: policies.files.clone(),
                at: now,
                audit: event(
                    now,
                    "policy.load",
                    json!({"origin": policies.origin, "policies": ids}),
                ),
            }))
            .await?;
        let WriteOutcome::Done(generation) = stored else {
            return Err(internal("the store did not take the policy set"));
        };
        self.put_in_force(policies, generation).await?;
        let revoked = self.reevaluate_generation(generation).await?;
        Ok((ids, revoked))
    }

    /// Makes `policies` the set this replica decides with, as generation
    /// `generation`, unless a newer one is already in force here.
    async fn put_in_force(
        &self,
        mut policies: Policies,
        generation: u64,
    ) -> Result<(), BrokerError> {
        {
            let mut slot = match self.policies.write() {
                Ok(slot) => slot,
                Err(poisoned) => poisoned.into_inner(),
            };
            if slot.generation >= generation {
                return Ok(());
            }
            policies.generation = generation;
            *slot = Arc::new(policies);
        }
        self.writer.set_generation(generation).await?;
        Ok(())
    }

    /// Follows the store: puts in force a policy set another replica
    /// loaded, and takes over a re-evaluation left unfinished. Runs in the
    /// background, never in a request's path.
    pub async fn follow_policies(&self) -> Result<(), BrokerError> {
        let (generation, reevaluated) = self.adopt_stored_policies().await?;
        if !reevaluated {
            self.reevaluate_generation(generation).await?;
        }
        Ok(())
    }

    /// Puts in force the newest policy set on the store if it is newer
    /// than the one here (another replica loaded it), and writes it to
    /// this replica's policy directory so a restart keeps it. Returns the
    /// store's newest generation and whether its re-evaluation is done.
    pub(super) async fn adopt_stored_policies(&self) -> Result<(u64, bool), BrokerError> {
        let (generation, reevaluated) = self.readers.read(|s| s.broker_policy_generation()).await?;
        let generation = generation as u64;
        if generation <= self.current_policies().generation {
            return Ok((generation, reevaluated));
        }
        let Some(stored) = self.readers.read(|s| s.broker_policy_set()).await? else {
            return Ok((generation, reevaluated));
        };
        let policies = self.engine.load_texts(&stored.files, &stored.origin)?;
        if let Some(dir) = &self.config.policy.dir {
            let on_disk = self.engine.load_dir(dir).map(|p| p.digest).ok();
            if on_disk.as_deref() != Some(stored.digest.as_str())
                && let Err(e) = write_policy_dir(dir, &stored.files)
            {
                tracing::warn!(
                    "policy set {} is in force, but it could not be written to {}: {e}",
                    stored.generation,
                    dir.display()
                );
            }
        }
        self.put_in_force(policies, stored.generation as u64)
            .await?;
        tracing::info!(
            generation = stored.generation,
            "a policy set loaded by another replica is in force"
        );
        Ok((generation, reevaluated))
    }

    /// After a denial decided under `generation`: true when the store held
    /// a newer set (another replica loaded it a moment ago) and it is now
    /// in force here, so the decision should be made again.
    pub(super) async fn adopted_newer_than(&self, generation: u64) -> bool {
        if let Err(e) = self.adopt_stored_policies().await {
            tracing::warn!("the policy set another replica loaded cannot be put in force: {e}");
        }
        self.current_policies().generation > generation
    }

    /// Runs the re-evaluation of generation `generation` if this replica
    /// can claim it (nobody finished or holds it), renewing the claim at
    /// each page; returns how many credentials it revoked.
    async fn reevaluate_generation(&self, generation: u64) -> Result<u64, BrokerError> {
        if generation == 0 || !self.claim_reevaluation(generation).await? {
            return Ok(0);
        }
        let revoked = self.reevaluate(generation).await?;
        let now = self.now();
        self.writer
            .apply_one(BrokerWrite::Reevaluated {
                generation: generation as i64,
                at: now,
                audit: event(
                    now,
                    "policy.reevaluate",
                    json!({"generation": generation, "revoked": revoked, "replica": self.replica}),
                ),
            })
            .await?;
        Ok(revoked)
    }

    async fn claim_reevaluation(&self, generation: u64) -> Result<bool, BrokerError> {
        let now = self.now();
        let claimed = self
            .writer
            .apply_one(BrokerWrite::ClaimReevaluation {
                generation: generation as i64,
                claimer: self.replica.clone(),
                at: now,
                until: now + REEVALUATION_CLAIM,
            })
            .await?;
        Ok(matches!(claimed, WriteOutcome::Done(_)))
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
    async fn reevaluate(&self, generation: u64) -> Result<u64, BrokerError> {
        let now = self.now();
        let policies = self.current_policies();
        // A newer set is in force here: its own re-evaluation reads every
        // grant.
        if policies.generation != generation {
            return Ok(0);
        }
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
            if self.current_policies().generation != generation {
                break;
            }
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
            self.claim_reevaluation(generation).await?;
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
