//! Upstream credentials per task, as the broker runs them: made during an
//! exchange (and committed or undone with its lease), released when the
//! lease ends, and reconciled against what the upstream holds.

use std::collections::{BTreeMap, HashSet};

use mayfly_store::{BrokerWrite, RevokeSelector, TaskRecord, UpstreamGrant, WriteOutcome};
use serde_json::json;
use zeroize::Zeroizing;

use super::{Broker, event};
use crate::error::BrokerError;
use crate::minted::{
    GITHUB_KIND, GithubMinter, MintError, POSTGRES_KIND, Password, PendingRole, PostgresMinter,
    Target, TokenRequest,
};
use crate::protocol::UpstreamCredential;
use crate::writer::WriteError;

/// Most grants one release pass reads.
const RELEASE_BATCH: i64 = 1000;

/// A credential an exchange made, waiting for its lease's commit.
pub(crate) struct Minted<'b> {
    pub(crate) credential: UpstreamCredential,
    pub(crate) grant: UpstreamGrant,
    pending: Pending<'b>,
}

enum Pending<'b> {
    Role(&'b PostgresMinter, PendingRole),
    Token(&'b GithubMinter, Zeroizing<String>),
}

/// The associated data that binds a sealed grant secret to its lease.
fn grant_aad(jti: &str) -> Vec<u8> {
    format!("mayfly upstream grant\0{jti}").into_bytes()
}

impl<'b> Minted<'b> {
    /// Makes the credential usable (the lease is recorded).
    pub(crate) async fn commit(self) -> Result<(), MintError> {
        match self.pending {
            Pending::Role(minter, role) => minter.commit(role).await,
            Pending::Token(..) => Ok(()),
        }
    }

    /// Undoes it (the lease was not recorded).
    pub(crate) async fn undo(self) {
        match self.pending {
            Pending::Role(minter, role) => minter.roll_back(role).await,
            Pending::Token(minter, token) => {
                if let Err(e) = minter.revoke(&token).await {
                    tracing::warn!(
                        "an unused installation token could not be revoked (it expires within an hour): {e}"
                    );
                }
            }
        }
    }
}

impl Broker {
    /// Settles an exchange's upstream credential with its lease's commit:
    /// made usable if the lease is recorded, undone otherwise. Returns the
    /// commit's outcome and the credential to return.
    pub(crate) async fn settle(
        &self,
        committed: Result<WriteOutcome, WriteError>,
        minted: Option<Minted<'_>>,
        jti: &str,
        now: i64,
    ) -> Result<Result<(WriteOutcome, Option<UpstreamCredential>), WriteError>, BrokerError> {
        let Some(minted) = minted else {
            return Ok(committed.map(|c| (c, None)));
        };
        if !matches!(committed, Ok(WriteOutcome::Done(_))) {
            minted.undo().await;
            return Ok(committed.map(|c| (c, None)));
        }
        let credential = minted.credential.clone();
        if let Err(e) = minted.commit().await {
            // The lease is recorded but the credential is not there: end
            // the lease, so its release has nothing left to wait for.
            let _ = self
                .writer
                .apply_one(BrokerWrite::Revoke {
                    selector: RevokeSelector::Lease(jti.to_owned()),
                    at: now,
                    reason: "upstream credential not made".into(),
                    audit: event(
                        now,
                        "token.revoke",
                        json!({"jti": jti, "reason": "upstream credential not made"}),
                    ),
                })
                .await;
            return Err(e.into());
        }
        Ok(committed.map(|c| (c, Some(credential))))
    }

    /// The scopes policy decides on for `target`: an upstream's level is
    /// filled in when the request names none.
    pub(crate) fn upstream_scopes(
        &self,
        target: Target<'_>,
        scopes: &[String],
    ) -> Result<Vec<String>, BrokerError> {
        let unknown = || {
            BrokerError::InvalidTarget(format!(
                "no upstream {} is configured; see [[upstream.postgres]] and [[upstream.github]] in the broker's config",
                target.audience()
            ))
        };
        match target {
            Target::Postgres(name) => {
                let minter = self.minters.postgres(name).ok_or_else(unknown)?;
                if scopes.len() > 1 {
                    return Err(MintError::Request {
                        upstream: name.to_owned(),
                        reason: "ask for one level as the scope".into(),
                    }
                    .into());
                }
                let level = minter
                    .config()
                    .level(scopes.first().map(String::as_str))
                    .map_err(|reason| MintError::Request {
                        upstream: name.to_owned(),
                        reason,
                    })?;
                Ok(vec![level.to_owned()])
            }
            Target::Github(name) => {
                self.minters.github(name).ok_or_else(unknown)?;
                TokenRequest::from_scopes(name, scopes)?;
                Ok(scopes.to_vec())
            }
        }
    }

    /// The longest an upstream's credential may live, in seconds.
    pub(crate) fn upstream_max_lifetime(&self, target: Target<'_>) -> i64 {
        match target {
            Target::Postgres(name) => self
                .minters
                .postgres(name)
                .map_or(0, |m| m.config().max_lifetime_seconds),
            // GitHub's installation tokens live an hour, whatever is asked.
            Target::Github(_) => 3600,
        }
    }

    /// Whether every upstream audience of a task names a configured upstream.
    pub(crate) fn check_upstream_audiences(&self, audiences: &[String]) -> Result<(), BrokerError> {
        for target in audiences.iter().filter_map(|a| Target::of(a)) {
            if !self.minters.knows(target) {
                return Err(BrokerError::InvalidTarget(format!(
                    "no upstream {} is configured; see [[upstream.postgres]] and [[upstream.github]] in the broker's config",
                    target.audience()
                )));
            }
        }
        Ok(())
    }

    /// The plaintext of a custody entry's current version.
    async fn custody_plaintext(&self, name: &str) -> Result<Zeroizing<Vec<u8>>, BrokerError> {
        let entry = self.entry_in_use(name).await?;
        entry.open(&self.master)
    }

    /// The management password of a PostgreSQL upstream, if it has one;
    /// read when a connection is opened, so a rotated password is used by
    /// the next one.
    async fn management_password(&self, minter: &PostgresMinter) -> Result<Password, MintError> {
        let config = minter.config();
        let invalid = |reason: String| MintError::Config {
            upstream: config.name.clone(),
            reason,
        };
        let text = if let Some(file) = &config.password_file {
            Zeroizing::new(std::fs::read_to_string(file).map_err(|e| {
                invalid(format!("cannot read password_file {}: {e}", file.display()))
            })?)
        } else if let Some(var) = &config.password_env {
            Zeroizing::new(
                std::env::var(var)
                    .map_err(|_| invalid(format!("password_env {var} is not set")))?,
            )
        } else if let Some(entry) = &config.password_custody {
            let bytes = self
                .custody_plaintext(entry)
                .await
                .map_err(|e| invalid(format!("password_custody: {e}")))?;
            Zeroizing::new(String::from_utf8(bytes.to_vec()).map_err(|_| {
                invalid(format!(
                    "the password in custody entry {entry} is not UTF-8"
                ))
            })?)
        } else {
            return Ok(None);
        };
        Ok(Some(Zeroizing::new(
            text.trim_end_matches(['\r', '\n']).to_owned(),
        )))
    }

    /// Checks every PostgreSQL upstream's connection and levels, then
    /// drops roles left from tasks that ended while the broker was down.
    pub(crate) async fn check_upstreams(&self) -> Result<(), BrokerError> {
        for minter in self.minters.all_postgres() {
            minter.check(|| self.management_password(minter)).await?;
        }
        self.reconcile_upstreams().await?;
        Ok(())
    }

    /// Makes the credential of an exchange for `target`, valid until
    /// `expires_at` at most, for lease `jti` of `task`.
    pub(crate) async fn mint(
        &self,
        target: Target<'_>,
        scopes: &[String],
        jti: &str,
        task: &TaskRecord,
        expires_at: i64,
    ) -> Result<Minted<'_>, BrokerError> {
        let now = self.now();
        let grant =
            |kind: &str, upstream: &str, handle: String, sealed, expires_at| UpstreamGrant {
                jti: jti.to_owned(),
                task_id: task.id.clone(),
                kind: kind.to_owned(),
                upstream: upstream.to_owned(),
                handle,
                sealed,
                created_at: now,
                expires_at,
            };
        match target {
            Target::Postgres(name) => {
                let Some(minter) = self.minters.postgres(name) else {
                    return Err(BrokerError::InvalidTarget(format!("no upstream {name}")));
                };
                let level = scopes.first().map_or("", String::as_str);
                let (pending, credential) = minter
                    .create(level, expires_at, || self.management_password(minter))
                    .await?;
                let role = match &credential {
                    UpstreamCredential::Postgres { user, .. } => user.clone(),
                    UpstreamCredential::Github { .. } => String::new(),
                };
                Ok(Minted {
                    grant: grant(POSTGRES_KIND, name, role, None, expires_at),
                    credential,
                    pending: Pending::Role(minter, pending),
                })
            }
            Target::Github(name) => {
                let Some(minter) = self.minters.github(name) else {
                    return Err(BrokerError::InvalidTarget(format!("no upstream {name}")));
                };
                let request = TokenRequest::from_scopes(name, scopes)?;
                let key = self
                    .custody_plaintext(&minter.config().private_key_custody)
                    .await
                    .map_err(|e| match e {
                        BrokerError::NotFound(m) => BrokerError::Mint(MintError::Config {
                            upstream: name.to_owned(),
                            reason: format!("the App's private key: {m}"),
                        }),
                        other => other,
                    })?;
                let (token, credential) = minter.mint(&key, &request, now).await?;
                let sealed = match self.master.seal_bytes(&grant_aad(jti), token.as_bytes()) {
                    Ok(sealed) => sealed,
                    Err(e) => {
                        let _ = minter.revoke(&token).await;
                        return Err(e.into());
                    }
                };
                let handle = format!("installation {}", minter.config().installation_id);
                let until = credential.expires_at().min(expires_at);
                Ok(Minted {
                    grant: grant(GITHUB_KIND, name, handle, Some(sealed), until),
                    credential,
                    pending: Pending::Token(minter, token),
                })
            }
        }
    }

    /// Releases the grants whose lease has ended: drops the roles, revokes
    /// the tokens, and records them released. Returns how many.
    pub async fn release_grants(&self) -> Result<u64, BrokerError> {
        if self.minters.is_empty() {
            return Ok(0);
        }
        let now = self.now();
        let grants = self
            .readers
            .read(move |s| s.grants_to_release(now, RELEASE_BATCH))
            .await?;
        if grants.is_empty() {
            return Ok(0);
        }
        let mut released = Vec::new();
        let mut roles: BTreeMap<&str, Vec<&UpstreamGrant>> = BTreeMap::new();
        for grant in &grants {
            match grant.kind.as_str() {
                POSTGRES_KIND => roles.entry(&grant.upstream).or_default().push(grant),
                GITHUB_KIND => match self.release_token(grant).await {
                    Ok(()) => released.push(grant.jti.clone()),
                    Err(e) => tracing::warn!(
                        upstream = grant.upstream,
                        "release failed (will retry): {e}"
                    ),
                },
                _ => released.push(grant.jti.clone()),
            }
        }
        for (upstream, grants) in roles {
            let Some(minter) = self.minters.postgres(upstream) else {
                // The upstream left the config: nothing here can reach it.
                // Its roles stop logging in at VALID UNTIL; they are marked
                // released so that this is said once, not at every pass.
                tracing::warn!(
                    upstream,
                    roles = grants.len(),
                    "task roles of an upstream no longer configured are left to expire by VALID UNTIL; drop them by hand"
                );
                released.extend(grants.iter().map(|g| g.jti.clone()));
                continue;
            };
            let handles: Vec<String> = grants.iter().map(|g| g.handle.clone()).collect();
            match minter
                .drop_roles(&handles, || self.management_password(minter))
                .await
            {
                Ok(gone) => released.extend(
                    grants
                        .iter()
                        .filter(|g| gone.contains(&g.handle))
                        .map(|g| g.jti.clone()),
                ),
                Err(e) => tracing::warn!(upstream, "release failed (will retry): {e}"),
            }
        }
        if released.is_empty() {
            return Ok(0);
        }
        let count = released.len() as u64;
        self.writer
            .apply_one(BrokerWrite::ReleaseGrants {
                audit: event(now, "upstream.release", json!({"grants": count})),
                jtis: released,
                at: now,
            })
            .await?;
        Ok(count)
    }

    async fn release_token(&self, grant: &UpstreamGrant) -> Result<(), BrokerError> {
        let Some(minter) = self.minters.github(&grant.upstream) else {
            tracing::warn!(
                upstream = grant.upstream,
                "an installation token of a GitHub App no longer configured is left to expire (an hour at most)"
            );
            return Ok(());
        };
        let Some(sealed) = &grant.sealed else {
            return Ok(());
        };
        let token = Zeroizing::new(self.master.unseal_bytes(
            &grant_aad(&grant.jti),
            sealed,
            "an installation token",
        )?);
        let token = Zeroizing::new(String::from_utf8_lossy(&token).into_owned());
        minter.revoke(&token).await?;
        Ok(())
    }

    /// Drops the roles this broker made on each PostgreSQL upstream that
    /// no unreleased grant accounts for (their task ended, or the broker
    /// stopped between making one and recording it). Roles it did not
    /// make are never touched. Returns how many were dropped.
    pub async fn reconcile_upstreams(&self) -> Result<u64, BrokerError> {
        let mut dropped = 0;
        for minter in self.minters.all_postgres() {
            // INVARIANT: the roles are listed before the grants are read. A
            // role becomes visible only after its grant is committed, so
            // every role listed that has a live grant finds it.
            let roles = minter
                .own_roles(|| self.management_password(minter))
                .await?;
            if roles.is_empty() {
                continue;
            }
            let name = minter.config().name.clone();
            let live: HashSet<String> = self
                .readers
                .read(move |s| s.unreleased_handles(POSTGRES_KIND, &name))
                .await?
                .into_iter()
                .collect();
            let orphans: Vec<String> = roles.into_iter().filter(|r| !live.contains(r)).collect();
            if orphans.is_empty() {
                continue;
            }
            let count = minter
                .drop_roles(&orphans, || self.management_password(minter))
                .await?
                .len() as u64;
            dropped += count;
            self.audit(
                "upstream.reconcile",
                json!({"upstream": minter.config().name, "dropped": count}),
            )
            .await?;
        }
        Ok(dropped)
    }
}
