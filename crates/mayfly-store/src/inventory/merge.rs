//! Inventory writes: merging a scan, setting owners, recording decisions.

use std::collections::BTreeMap;

use super::{
    CopyRecord, MergeSummary, OwnerSource, OwnershipRule, ScanRecord, SecretStatus, location_key,
    refresh_secret, resolve_prefix,
};
use crate::backend::Store;
use crate::dialect::{self, Lock};
use crate::{StoreError, Timestamp};

impl Store {
    /// Merges a scan into the inventory, in one transaction: secrets and
    /// locations are added or touched (`last_seen`), locations of the same
    /// source that the scan no longer finds are marked gone (never
    /// deleted), and resolved secrets that show up again are reopened.
    /// `rule` decides who owns each secret from its copies' claims.
    pub fn save_scan(
        &mut self,
        scan: &ScanRecord,
        rule: OwnershipRule,
    ) -> Result<MergeSummary, StoreError> {
        self.transaction(|tx| {
            dialect::lock(tx, Lock::Inventory)?;
            let mut summary = MergeSummary::default();
            let next = tx.query("next scan id", "SELECT COALESCE(MAX(id), 0) + 1 AS id FROM scans", &[])?;
            let scan_id = next.first().map_or(Ok(1), |r| r.int("id"))?;
            tx.execute(
                "record scan",
                "INSERT INTO scans (id, source, at, copies) VALUES ($1, $2, $3, $4)",
                &[scan_id.into(), scan.source.as_str().into(), scan.at.into(), (scan.copies.len() as i64).into()],
            )?;
            let mut by_secret: BTreeMap<&str, &CopyRecord> = BTreeMap::new();
            for copy in &scan.copies {
                by_secret.entry(copy.fingerprint.as_str()).or_insert(copy);
            }
            for (fingerprint, copy) in by_secret {
                let existing = tx.query("read secret", "SELECT status FROM secrets WHERE fingerprint = $1", &[fingerprint.into()])?;
                match existing.into_iter().next() {
                    None => {
                        summary.new_secrets += 1;
                        tx.execute(
                            "add secret",
                            "INSERT INTO secrets (fingerprint, rule_id, provider, severity, first_seen, last_seen, status, reopened) \
                             VALUES ($1, $2, $3, $4, $5, $5, 'open', 0)",
                            &[
                                fingerprint.into(),
                                copy.rule_id.as_str().into(),
                                copy.provider.as_str().into(),
                                copy.severity.as_str().into(),
                                scan.at.into(),
                            ],
                        )?;
                    }
                    Some(mut row) => {
                        summary.known_secrets += 1;
                        let status = SecretStatus::parse(&row.text("status")?)?;
                        // A copy of a secret in custody is found where
                        // migration could not remove it: the secret stays
                        // in custody, and the plan asks for its rotation.
                        if matches!(status, SecretStatus::Open | SecretStatus::InCustody) {
                            tx.execute(
                                "touch secret",
                                "UPDATE secrets SET last_seen = $1 WHERE fingerprint = $2",
                                &[scan.at.into(), fingerprint.into()],
                            )?;
                        } else {
                            summary.reopened.push(fingerprint.to_owned());
                            tx.execute(
                                "reopen secret",
                                "UPDATE secrets SET last_seen = $1, status = 'open', reopened = 1 WHERE fingerprint = $2",
                                &[scan.at.into(), fingerprint.into()],
                            )?;
                            let note = format!("found again after it was marked {}", status.as_str());
                            tx.execute(
                                "record status",
                                "INSERT INTO status_history (fingerprint, status, note, at) VALUES ($1, 'open', $2, $3)",
                                &[fingerprint.into(), note.into(), scan.at.into()],
                            )?;
                        }
                    }
                }
            }
            for copy in &scan.copies {
                let inserted = tx.execute(
                    "add location",
                    "INSERT INTO locations (fingerprint, location_key, source, path, line, col, surface, commit_id, author, author_email, \
                     committed_at, first_seen, last_seen, last_scan, gone_at, owner_claim, owner_claim_source, host, root, remote) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13, NULL, $14, $15, $16, $17, $18) \
                     ON CONFLICT (fingerprint, location_key) DO NOTHING",
                    &[
                        copy.fingerprint.as_str().into(),
                        location_key(copy).into(),
                        scan.source.as_str().into(),
                        copy.path.as_str().into(),
                        copy.line.into(),
                        copy.column.into(),
                        copy.surface.as_str().into(),
                        copy.commit_id.clone().into(),
                        copy.author.clone().into(),
                        copy.author_email.clone().into(),
                        copy.committed_at.into(),
                        scan.at.into(),
                        scan_id.into(),
                        copy.owner_claim.as_ref().map(|c| c.owner.as_str()).into(),
                        copy.owner_claim.as_ref().map(|c| c.source.as_str()).into(),
                        copy.host.as_str().into(),
                        copy.root.as_deref().into(),
                        copy.remote.as_deref().into(),
                    ],
                )?;
                if inserted == 1 {
                    summary.new_locations += 1;
                } else {
                    tx.execute(
                        "touch location",
                        "UPDATE locations SET last_seen = $1, last_scan = $2, gone_at = NULL, source = $3, \
                         owner_claim = $4, owner_claim_source = $5, root = $8, remote = $9 \
                         WHERE fingerprint = $6 AND location_key = $7",
                        &[
                            scan.at.into(),
                            scan_id.into(),
                            scan.source.as_str().into(),
                            copy.owner_claim.as_ref().map(|c| c.owner.as_str()).into(),
                            copy.owner_claim.as_ref().map(|c| c.source.as_str()).into(),
                            copy.fingerprint.as_str().into(),
                            location_key(copy).into(),
                            copy.root.as_deref().into(),
                            copy.remote.as_deref().into(),
                        ],
                    )?;
                }
            }
            let gone = tx.query(
                "find gone",
                "SELECT DISTINCT fingerprint FROM locations WHERE source = $1 AND last_scan <> $2 AND gone_at IS NULL",
                &[scan.source.as_str().into(), scan_id.into()],
            )?;
            summary.gone_locations = tx.execute(
                "mark gone",
                "UPDATE locations SET gone_at = $1 WHERE source = $2 AND last_scan <> $3 AND gone_at IS NULL",
                &[scan.at.into(), scan.source.as_str().into(), scan_id.into()],
            )?;
            let mut touched: Vec<String> = scan.copies.iter().map(|c| c.fingerprint.clone()).collect();
            for mut row in gone {
                touched.push(row.text("fingerprint")?);
            }
            touched.sort();
            touched.dedup();
            for fingerprint in touched {
                refresh_secret(tx, &fingerprint, rule)?;
            }
            Ok(summary)
        })
    }

    /// Sets (or with `None` clears) the explicit owner of a secret; once
    /// cleared, `rule` decides again from the copies' claims.
    pub fn set_owner(
        &mut self,
        prefix: &str,
        owner: Option<&str>,
        rule: OwnershipRule,
    ) -> Result<String, StoreError> {
        self.transaction(|tx| {
            let fingerprint = resolve_prefix(tx, prefix)?;
            let source: Option<String> = owner.map(|_| OwnerSource::Explicit.as_str().to_owned());
            tx.execute(
                "set owner",
                "UPDATE secrets SET owner = $1, owner_source = $2, owner_conflict = NULL WHERE fingerprint = $3",
                &[owner.map(str::to_owned).into(), source.into(), fingerprint.as_str().into()],
            )?;
            if owner.is_none() {
                refresh_secret(tx, &fingerprint, rule)?;
            }
            Ok(fingerprint)
        })
    }

    /// Records what providers said of secrets (`scan --validate`): for each
    /// fingerprint, the verdict and when; secrets not in the inventory are
    /// left out. Returns how many were recorded.
    pub fn record_validations(
        &mut self,
        verdicts: &[(String, String, Timestamp)],
    ) -> Result<usize, StoreError> {
        self.transaction(|tx| {
            let mut recorded = 0;
            for (fingerprint, status, at) in verdicts {
                recorded += tx.execute(
                    "record validation",
                    "UPDATE secrets SET validation = $1, validated_at = $2 WHERE fingerprint = $3",
                    &[
                        status.as_str().into(),
                        (*at).into(),
                        fingerprint.as_str().into(),
                    ],
                )?;
            }
            Ok(recorded as usize)
        })
    }

    /// Records that a secret moved into custody entry `entry`.
    pub fn record_custody(
        &mut self,
        prefix: &str,
        entry: &str,
        note: &str,
        at: Timestamp,
    ) -> Result<String, StoreError> {
        self.set_status(prefix, SecretStatus::InCustody, Some(entry), note, at)
    }

    /// Records a decision about a secret; the history keeps every one.
    pub fn resolve(
        &mut self,
        prefix: &str,
        status: SecretStatus,
        note: &str,
        at: Timestamp,
    ) -> Result<String, StoreError> {
        self.set_status(prefix, status, None, note, at)
    }

    /// Sets a secret's status (and, moving into custody, its entry) and
    /// records the change in its history.
    fn set_status(
        &mut self,
        prefix: &str,
        status: SecretStatus,
        custody_entry: Option<&str>,
        note: &str,
        at: Timestamp,
    ) -> Result<String, StoreError> {
        self.transaction(|tx| {
            let fingerprint = resolve_prefix(tx, prefix)?;
            tx.execute(
                "resolve",
                "UPDATE secrets SET status = $1, reopened = 0, custody_entry = COALESCE($2, custody_entry) WHERE fingerprint = $3",
                &[status.as_str().into(), custody_entry.into(), fingerprint.as_str().into()],
            )?;
            tx.execute(
                "record status",
                "INSERT INTO status_history (fingerprint, status, note, at) VALUES ($1, $2, $3, $4)",
                &[fingerprint.as_str().into(), status.as_str().into(), note.into(), at.into()],
            )?;
            Ok(fingerprint)
        })
    }
}
