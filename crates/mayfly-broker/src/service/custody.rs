//! Custody: taking a secret in (sealed before it reaches the store),
//! rotating it with a grace period for the previous version, removing it,
//! and showing entries without their values. The proxy reads entries
//! through a short cache ([`ENTRY_CACHE`]); rotations and removals made
//! here drop it at once, those of other replicas within that time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mayfly_store::{BrokerWrite, CustodyEntry, SealedVersion, WriteOutcome};
use serde_json::json;

use super::{Broker, event};
use crate::custody::{
    self, AddCustody, CustodySettings, CustodyView, RetiringVersion, SecretValue,
};
use crate::error::{BrokerError, internal};
use crate::keys::MasterKey;
use zeroize::Zeroizing;

/// How long the proxy trusts an entry it read (a rotation on another
/// replica is seen within this time; the previous version stays usable
/// far longer, so nothing fails meanwhile).
pub const ENTRY_CACHE: Duration = Duration::from_secs(1);

/// An entry as the proxy uses it.
#[derive(Debug)]
pub(crate) struct EntryInUse {
    pub(crate) entry: CustodyEntry,
    pub(crate) settings: CustodySettings,
    pub(crate) upstream: axum::http::Uri,
    pub(crate) current: SealedVersion,
}

impl EntryInUse {
    /// The plaintext of its current version, wiped when dropped.
    pub(crate) fn open(&self, master: &MasterKey) -> Result<Zeroizing<Vec<u8>>, BrokerError> {
        custody::open(
            master,
            &self.entry.name,
            self.current.version,
            &self.current.sealed,
        )
    }
}

/// Entries read recently, by name.
#[derive(Debug, Default)]
pub(crate) struct EntryCache {
    entries: Mutex<HashMap<String, (Instant, Arc<EntryInUse>)>>,
}

impl EntryCache {
    fn get(&self, name: &str) -> Option<Arc<EntryInUse>> {
        let entries = self.entries.lock().ok()?;
        let (read_at, entry) = entries.get(name)?;
        (read_at.elapsed() < ENTRY_CACHE).then(|| entry.clone())
    }

    fn insert(&self, name: &str, entry: Arc<EntryInUse>) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= 10_000 {
                entries.clear();
            }
            entries.insert(name.to_owned(), (Instant::now(), entry));
        }
    }

    fn forget(&self, name: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(name);
        }
    }
}

fn settings_of(entry: &CustodyEntry) -> Result<CustodySettings, BrokerError> {
    serde_json::from_str(&entry.settings).map_err(|e| {
        internal(format!(
            "custody entry {}: stored settings do not read: {e}",
            entry.name
        ))
    })
}

fn view_of(
    entry: &CustodyEntry,
    versions: &[SealedVersion],
    now: i64,
) -> Result<CustodyView, BrokerError> {
    let settings = settings_of(entry)?;
    let rotation_due = settings
        .max_age_days
        .is_some_and(|days| now - entry.rotated_at >= days * 86_400);
    Ok(CustodyView {
        name: entry.name.clone(),
        provider: entry.provider.clone(),
        owner: entry.owner.clone(),
        upstreams: settings.upstreams,
        injection: settings.injection,
        audience: custody::audience(&entry.name),
        max_age_days: settings.max_age_days,
        grace_seconds: settings.grace_seconds,
        fingerprint: entry.fingerprint.clone(),
        created_at: entry.created_at,
        rotated_at: entry.rotated_at,
        version: entry.version,
        previous_versions: versions
            .iter()
            .filter_map(|v| {
                v.retires_at.map(|retires_at| RetiringVersion {
                    version: v.version,
                    retires_at,
                })
            })
            .collect(),
        rotation_due,
    })
}

fn refused(outcome: WriteOutcome) -> Result<(), BrokerError> {
    match outcome {
        WriteOutcome::Done(_) => Ok(()),
        WriteOutcome::Refused(why) => Err(BrokerError::Conflict(why)),
    }
}

impl Broker {
    /// Takes a secret into custody (admin).
    pub async fn custody_add(&self, request: AddCustody) -> Result<CustodyView, BrokerError> {
        let now = self.now();
        custody::check_name(&request.name)?;
        custody::check_secret(request.secret.expose())?;
        for (what, value) in [("provider", &request.provider), ("owner", &request.owner)] {
            if value.trim().is_empty() || value.len() > 200 || value.chars().any(char::is_control) {
                return Err(BrokerError::InvalidRequest(format!(
                    "{what} must be 1 to 200 printable characters"
                )));
            }
        }
        let preset = custody::preset(&request.provider);
        let upstreams = match (request.upstreams.is_empty(), preset) {
            (false, _) => request.upstreams.clone(),
            (true, Some(p)) if !p.upstream.is_empty() => vec![p.upstream.to_owned()],
            _ => {
                return Err(BrokerError::InvalidRequest(format!(
                    "provider {} has no preset upstream; give the API's base URL (--upstream https://...)",
                    request.provider
                )));
            }
        };
        for upstream in &upstreams {
            custody::check_upstream(upstream)?;
        }
        let injection = request
            .injection
            .clone()
            .unwrap_or_else(|| custody::default_injection(&request.provider));
        custody::check_injection(&injection)?;
        let grace_seconds = request
            .grace_seconds
            .unwrap_or(self.config.proxy.rotation_grace_seconds);
        if grace_seconds < 0 || request.max_age_days.is_some_and(|d| d <= 0) {
            return Err(BrokerError::InvalidRequest(
                "grace_seconds must not be negative, max_age_days must be positive".into(),
            ));
        }
        let settings = CustodySettings {
            upstreams,
            injection,
            max_age_days: request.max_age_days,
            grace_seconds,
        };
        let entry = CustodyEntry {
            name: request.name.clone(),
            provider: preset.map_or(request.provider.clone(), |p| p.provider.to_owned()),
            owner: request.owner.clone(),
            settings: serde_json::to_string(&settings).map_err(internal)?,
            fingerprint: request.fingerprint.clone(),
            created_at: now,
            rotated_at: now,
            version: 1,
        };
        let sealed = custody::seal(
            &self.master,
            &entry.name,
            1,
            request.secret.expose().as_bytes(),
        )?;
        let audit = event(
            now,
            "custody.add",
            json!({"entry": entry.name, "provider": entry.provider, "owner": entry.owner,
                   "upstreams": settings.upstreams, "fingerprint": entry.fingerprint}),
        );
        refused(
            self.writer
                .apply_one(BrokerWrite::CustodyAdd {
                    entry: entry.clone(),
                    sealed,
                    audit,
                })
                .await?,
        )?;
        self.custody.forget(&entry.name);
        self.custody_show(&entry.name).await
    }

    /// Makes `secret` the current version of `name`; the previous one
    /// stays usable for the entry's grace period (admin).
    pub async fn custody_rotate(
        &self,
        name: &str,
        secret: SecretValue,
    ) -> Result<CustodyView, BrokerError> {
        let now = self.now();
        custody::check_secret(secret.expose())?;
        let (entry, _) = self.stored_entry(name).await?;
        let settings = settings_of(&entry)?;
        let version = entry.version + 1;
        let sealed = custody::seal(&self.master, name, version, secret.expose().as_bytes())?;
        let audit = event(
            now,
            "custody.rotate",
            json!({"entry": name, "version": version, "previous_retires_at": now + settings.grace_seconds}),
        );
        refused(
            self.writer
                .apply_one(BrokerWrite::CustodyRotate {
                    name: name.to_owned(),
                    version,
                    sealed,
                    at: now,
                    grace: settings.grace_seconds,
                    audit,
                })
                .await?,
        )?;
        self.custody.forget(name);
        self.custody_show(name).await
    }

    /// Removes an entry and destroys its versions; the proxy refuses it
    /// from then on (admin).
    pub async fn custody_remove(&self, name: &str) -> Result<(), BrokerError> {
        custody::check_name(name)?;
        let now = self.now();
        let outcome = self
            .writer
            .apply_one(BrokerWrite::CustodyRemove {
                name: name.to_owned(),
                at: now,
                audit: event(now, "custody.remove", json!({"entry": name})),
            })
            .await?;
        self.custody.forget(name);
        match outcome {
            WriteOutcome::Done(_) => Ok(()),
            WriteOutcome::Refused(_) => Err(not_in_custody(name)),
        }
    }

    /// Every entry in custody, without values (admin).
    pub async fn custody_list(&self) -> Result<Vec<CustodyView>, BrokerError> {
        let now = self.now();
        let entries = self.readers.read(|s| s.custody_entries()).await?;
        entries.iter().map(|e| view_of(e, &[], now)).collect()
    }

    /// One entry, without its value (admin).
    pub async fn custody_show(&self, name: &str) -> Result<CustodyView, BrokerError> {
        let (entry, versions) = self.stored_entry(name).await?;
        view_of(&entry, &versions, self.now())
    }

    /// An entry and its versions from the store. A name that cannot exist
    /// is refused before the store is asked (PostgreSQL would refuse a NUL
    /// in it as if the store had failed).
    async fn stored_entry(
        &self,
        name: &str,
    ) -> Result<(CustodyEntry, Vec<SealedVersion>), BrokerError> {
        custody::check_name(name)?;
        let now = self.now();
        let key = name.to_owned();
        self.readers
            .read(move |s| s.custody_entry(&key, now))
            .await?
            .ok_or_else(|| not_in_custody(name))
    }

    /// An entry as the proxy uses it, from the cache or the store.
    pub(crate) async fn entry_in_use(&self, name: &str) -> Result<Arc<EntryInUse>, BrokerError> {
        if let Some(entry) = self.custody.get(name) {
            return Ok(entry);
        }
        let (entry, versions) = self.stored_entry(name).await?;
        let settings = settings_of(&entry)?;
        let upstream = settings
            .upstreams
            .first()
            .ok_or_else(|| internal(format!("custody entry {name} has no upstream")))
            .and_then(|u| custody::check_upstream(u))?;
        let current = versions
            .into_iter()
            .find(|v| v.version == entry.version)
            .ok_or_else(|| internal(format!("custody entry {name} has no current version")))?;
        let in_use = Arc::new(EntryInUse {
            entry,
            settings,
            upstream,
            current,
        });
        self.custody.insert(name, in_use.clone());
        Ok(in_use)
    }

    /// What a workload needs to use an entry (any authenticated caller).
    pub async fn custody_use(&self, name: &str) -> Result<custody::CustodyUse, BrokerError> {
        let entry = self.entry_in_use(name).await?;
        Ok(custody::CustodyUse {
            name: entry.entry.name.clone(),
            provider: entry.entry.provider.clone(),
            injection: entry.settings.injection.clone(),
            audience: custody::audience(&entry.entry.name),
            upstreams: entry.settings.upstreams.clone(),
        })
    }

    /// How an entry's secret is injected (where its SDK puts a key).
    pub async fn custody_injection(&self, name: &str) -> Result<custody::Injection, BrokerError> {
        Ok(self.entry_in_use(name).await?.settings.injection.clone())
    }

    /// Whether every custody audience of a task names an entry in custody.
    pub(crate) async fn check_custody_audiences(
        &self,
        audiences: &[String],
    ) -> Result<(), BrokerError> {
        for name in audiences.iter().filter_map(|a| custody::entry_of(a)) {
            self.entry_in_use(name).await.map_err(|e| match e {
                BrokerError::NotFound(m) => BrokerError::InvalidTarget(m),
                other => other,
            })?;
        }
        Ok(())
    }
}

fn not_in_custody(name: &str) -> BrokerError {
    BrokerError::NotFound(format!(
        "no secret named {name} is in custody; see `mayfly custody list`"
    ))
}
