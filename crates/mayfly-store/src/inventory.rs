//! The inventory tables: secrets (by fingerprint, never plaintext), every
//! location of every copy, status history; the merge of a scan into them.

use std::collections::BTreeMap;

use crate::backend::{Store, Tx, Value, int, take_opt_text, take_text, text};
use crate::{StoreError, Timestamp};

/// What a security team decided about a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretStatus {
    /// Needs action.
    Open,
    /// Replaced with a new credential at its provider.
    Rotated,
    /// Revoked at its provider.
    Revoked,
    /// Knowingly kept, with a note.
    AcceptedRisk,
}

impl SecretStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretStatus::Open => "open",
            SecretStatus::Rotated => "rotated",
            SecretStatus::Revoked => "revoked",
            SecretStatus::AcceptedRisk => "accepted-risk",
        }
    }

    fn parse(text: &str) -> SecretStatus {
        match text {
            "rotated" => SecretStatus::Rotated,
            "revoked" => SecretStatus::Revoked,
            "accepted-risk" => SecretStatus::AcceptedRisk,
            _ => SecretStatus::Open,
        }
    }
}

/// One copy found by a scan, as the inventory keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyRecord {
    /// The secret's keyed fingerprint (hex).
    pub fingerprint: String,
    /// The rule that found it.
    pub rule_id: String,
    /// The issuing service.
    pub provider: String,
    /// The rule's severity.
    pub severity: String,
    /// Where it is (file, `file!entry` or `file#table.column[row]`).
    pub path: String,
    /// 1-based line.
    pub line: i64,
    /// 1-based column.
    pub column: i64,
    /// The surface it lives on.
    pub surface: String,
    /// The introducing commit, for copies found in git history.
    pub commit_id: Option<String>,
    /// That commit's author.
    pub author: Option<String>,
    /// That author's email.
    pub author_email: Option<String>,
    /// That commit's time.
    pub committed_at: Option<Timestamp>,
    /// Who claims this copy (a team from an owners file or CODEOWNERS, or
    /// the author of the introducing commit), and by which source.
    pub owner_claim: Option<(String, OwnerSource)>,
}

/// Where an owner comes from, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OwnerSource {
    /// `mayfly inventory owner set`.
    Explicit,
    /// `.mayfly/owners.toml` in the scanned tree.
    OwnersFile,
    /// A CODEOWNERS file.
    Codeowners,
    /// The author of the commit that introduced the copy: a person, so weaker.
    CommitAuthor,
}

impl OwnerSource {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OwnerSource::Explicit => "explicit",
            OwnerSource::OwnersFile => "owners-file",
            OwnerSource::Codeowners => "codeowners",
            OwnerSource::CommitAuthor => "commit-author",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<OwnerSource> {
        match text {
            "explicit" => Some(OwnerSource::Explicit),
            "owners-file" => Some(OwnerSource::OwnersFile),
            "codeowners" => Some(OwnerSource::Codeowners),
            "commit-author" => Some(OwnerSource::CommitAuthor),
            _ => None,
        }
    }
}

/// A whole scan to merge: where it looked, when, and every copy it found.
#[derive(Debug, Clone)]
pub struct ScanRecord {
    /// What was scanned (`host:/abs/path`); copies of an earlier scan of
    /// the same source that this scan does not find are marked gone.
    pub source: String,
    /// When the scan ran.
    pub at: Timestamp,
    /// The copies found.
    pub copies: Vec<CopyRecord>,
}

/// What a merge changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeSummary {
    /// Secrets seen for the first time.
    pub new_secrets: u64,
    /// Secrets already in the inventory.
    pub known_secrets: u64,
    /// Locations seen for the first time.
    pub new_locations: u64,
    /// Locations of the same source no longer found.
    pub gone_locations: u64,
    /// Resolved secrets found again (fingerprints), now open and flagged.
    pub reopened: Vec<String>,
}

/// Filters of `inventory list`.
#[derive(Debug, Clone, Default)]
pub struct SecretFilter {
    /// Only this provider (case-insensitive).
    pub provider: Option<String>,
    /// Only secrets with a live copy on this surface.
    pub surface: Option<String>,
    /// Only secrets owned by this owner.
    pub owner: Option<String>,
    /// Only secrets without an owner.
    pub unowned: bool,
    /// Only secrets with at least this many live copies.
    pub min_copies: Option<i64>,
    /// Only secrets first seen before this time.
    pub first_seen_before: Option<Timestamp>,
    /// Include resolved secrets.
    pub include_resolved: bool,
}

/// A secret in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRow {
    /// Fingerprint (hex).
    pub fingerprint: String,
    /// Rule id.
    pub rule_id: String,
    /// Provider.
    pub provider: String,
    /// Severity.
    pub severity: String,
    /// First seen.
    pub first_seen: Timestamp,
    /// Last seen.
    pub last_seen: Timestamp,
    /// Status.
    pub status: SecretStatus,
    /// Found again after it was resolved.
    pub reopened: bool,
    /// Owner, if known.
    pub owner: Option<String>,
    /// Where the owner came from.
    pub owner_source: Option<String>,
    /// The owners that claim the secret when they disagree (ownership unclear).
    pub owner_conflict: Option<String>,
    /// Live copies.
    pub copies: i64,
    /// Distinct surfaces of the live copies, comma-separated.
    pub surfaces: String,
}

/// A location in a secret's detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationRow {
    /// The scan source.
    pub source: String,
    /// Path.
    pub path: String,
    /// Line.
    pub line: i64,
    /// Column.
    pub column: i64,
    /// Surface.
    pub surface: String,
    /// Introducing commit, if from history.
    pub commit_id: Option<String>,
    /// Its author.
    pub author: Option<String>,
    /// First seen.
    pub first_seen: Timestamp,
    /// Last seen.
    pub last_seen: Timestamp,
    /// When it was no longer found.
    pub gone_at: Option<Timestamp>,
}

/// A status change in a secret's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// The new status.
    pub status: SecretStatus,
    /// Why.
    pub note: String,
    /// When.
    pub at: Timestamp,
}

/// One secret with every location and its status history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretDetail {
    /// The secret.
    pub secret: SecretRow,
    /// Every location, gone ones included.
    pub locations: Vec<LocationRow>,
    /// Status changes, oldest first.
    pub history: Vec<StatusChange>,
}

fn location_key(copy: &CopyRecord) -> String {
    format!("{}\u{1f}{}\u{1f}{}", copy.path, copy.line, copy.column)
}

const SECRET_COLUMNS: &str = "s.fingerprint, s.rule_id, s.provider, s.severity, s.first_seen, s.last_seen, s.status, s.reopened, s.owner, s.owner_source, s.owner_conflict, s.live_copies, s.surfaces";

fn secret_row(row: &mut [Value]) -> SecretRow {
    SecretRow {
        fingerprint: take_text(row, 0),
        rule_id: take_text(row, 1),
        provider: take_text(row, 2),
        severity: take_text(row, 3),
        first_seen: int(row, 4),
        last_seen: int(row, 5),
        status: SecretStatus::parse(row.get(6).and_then(Value::text).unwrap_or_default()),
        reopened: int(row, 7) != 0,
        owner: take_opt_text(row, 8),
        owner_source: take_opt_text(row, 9),
        owner_conflict: take_opt_text(row, 10),
        copies: int(row, 11),
        surfaces: take_text(row, 12),
    }
}

/// Recomputes what a secret's live copies say: how many there are, on
/// which surfaces, and (unless someone set it explicitly) who owns it:
/// the strongest claim wins; two different owners at that strength make
/// ownership unclear.
fn refresh_secret(tx: &mut dyn Tx, fingerprint: &str) -> Result<(), StoreError> {
    let copies = tx.query(
        "read live copies",
        "SELECT surface, owner_claim, owner_claim_source FROM locations WHERE fingerprint = $1 AND gone_at IS NULL",
        &[fingerprint.into()],
    )?;
    let mut surfaces: Vec<String> = copies.iter().map(|r| text(r, 0)).collect();
    surfaces.sort_unstable();
    surfaces.dedup();
    let mut claims: Vec<(OwnerSource, String)> = copies
        .iter()
        .filter_map(|r| {
            Some((
                OwnerSource::parse(r.get(2).and_then(Value::text)?)?,
                r.get(1).and_then(Value::text)?.to_owned(),
            ))
        })
        .collect();
    claims.sort();
    claims.dedup();
    let strongest = claims.first().map(|c| c.0);
    let owners: Vec<&str> = claims
        .iter()
        .filter(|c| Some(c.0) == strongest)
        .map(|c| c.1.as_str())
        .collect();
    let (owner, source, conflict): (Option<String>, Option<String>, Option<String>) =
        match owners.as_slice() {
            [] => (None, None, None),
            [one] => (
                Some((*one).to_owned()),
                strongest.map(|s| s.as_str().to_owned()),
                None,
            ),
            many => (None, None, Some(many.join(", "))),
        };
    tx.execute(
        "refresh secret",
        "UPDATE secrets SET live_copies = $1, surfaces = $2 WHERE fingerprint = $3",
        &[
            (copies.len() as i64).into(),
            surfaces.join(",").into(),
            fingerprint.into(),
        ],
    )?;
    tx.execute(
        "derive owner",
        "UPDATE secrets SET owner = $1, owner_source = $2, owner_conflict = $3 \
         WHERE fingerprint = $4 AND (owner_source IS NULL OR owner_source <> 'explicit')",
        &[
            owner.into(),
            source.into(),
            conflict.into(),
            fingerprint.into(),
        ],
    )?;
    Ok(())
}

fn resolve_prefix(tx: &mut dyn Tx, prefix: &str) -> Result<String, StoreError> {
    let prefix = prefix.to_ascii_lowercase();
    if prefix.len() < 8 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StoreError::NotFound(format!(
            "{prefix:?} is not a fingerprint: give at least 8 hex digits as `mayfly inventory list` shows them"
        )));
    }
    let pattern = format!("{prefix}%");
    let rows = tx.query(
        "find secret",
        "SELECT fingerprint FROM secrets WHERE fingerprint LIKE $1 LIMIT 2",
        &[pattern.into()],
    )?;
    match rows.as_slice() {
        [one] => Ok(text(one, 0)),
        [] => Err(StoreError::NotFound(format!(
            "no secret in the inventory has a fingerprint starting with {prefix}"
        ))),
        _ => Err(StoreError::NotFound(format!(
            "several secrets start with {prefix}; give more digits"
        ))),
    }
}

impl Store {
    /// Merges a scan into the inventory, in one transaction: secrets and
    /// locations are added or touched (`last_seen`), locations of the same
    /// source that the scan no longer finds are marked gone (never
    /// deleted), and resolved secrets that show up again are reopened.
    pub fn save_scan(&mut self, scan: &ScanRecord) -> Result<MergeSummary, StoreError> {
        self.transaction(|tx| {
            if tx.is_postgres() {
                // Saves run one at a time (SQLite's BEGIN IMMEDIATE does the
                // same): each merge sees the previous one whole.
                tx.query("lock inventory", "SELECT pg_advisory_xact_lock(7355609)::text", &[])?;
            }
            let mut summary = MergeSummary::default();
            let next = tx.query("next scan id", "SELECT COALESCE(MAX(id), 0) + 1 FROM scans", &[])?;
            let scan_id = next.first().map(|r| int(r, 0)).unwrap_or(1);
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
                match existing.first() {
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
                    Some(row) => {
                        summary.known_secrets += 1;
                        let status = SecretStatus::parse(&text(row, 0));
                        if status == SecretStatus::Open {
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
                     committed_at, first_seen, last_seen, last_scan, gone_at, owner_claim, owner_claim_source) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13, NULL, $14, $15) \
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
                        copy.owner_claim.as_ref().map(|c| c.0.clone()).into(),
                        copy.owner_claim.as_ref().map(|c| c.1.as_str().to_owned()).into(),
                    ],
                )?;
                if inserted == 1 {
                    summary.new_locations += 1;
                } else {
                    tx.execute(
                        "touch location",
                        "UPDATE locations SET last_seen = $1, last_scan = $2, gone_at = NULL, source = $3, \
                         owner_claim = $4, owner_claim_source = $5 WHERE fingerprint = $6 AND location_key = $7",
                        &[
                            scan.at.into(),
                            scan_id.into(),
                            scan.source.as_str().into(),
                            copy.owner_claim.as_ref().map(|c| c.0.clone()).into(),
                            copy.owner_claim.as_ref().map(|c| c.1.as_str().to_owned()).into(),
                            copy.fingerprint.as_str().into(),
                            location_key(copy).into(),
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
            touched.extend(gone.iter().map(|r| text(r, 0)));
            touched.sort();
            touched.dedup();
            for fingerprint in touched {
                refresh_secret(tx, &fingerprint)?;
            }
            Ok(summary)
        })
    }

    /// Secrets matching `filter`, most live copies first.
    pub fn list_secrets(&mut self, filter: &SecretFilter) -> Result<Vec<SecretRow>, StoreError> {
        let filter = filter.clone();
        self.read(move |tx| {
            let mut sql = format!("SELECT {SECRET_COLUMNS} FROM secrets s WHERE 1 = 1");
            let mut params: Vec<Value> = Vec::new();
            let param = |value: Value, params: &mut Vec<Value>| {
                params.push(value);
                format!("${}", params.len())
            };
            if let Some(provider) = &filter.provider {
                let p = param(provider.to_lowercase().into(), &mut params);
                sql.push_str(&format!(" AND lower(s.provider) = {p}"));
            }
            if let Some(owner) = &filter.owner {
                let p = param(owner.as_str().into(), &mut params);
                sql.push_str(&format!(" AND s.owner = {p}"));
            }
            if filter.unowned {
                sql.push_str(" AND s.owner IS NULL");
            }
            if let Some(before) = filter.first_seen_before {
                let p = param(before.into(), &mut params);
                sql.push_str(&format!(" AND s.first_seen < {p}"));
            }
            if !filter.include_resolved {
                sql.push_str(" AND s.status = 'open'");
            }
            if let Some(surface) = &filter.surface {
                let p = param(surface.as_str().into(), &mut params);
                sql.push_str(&format!(
                    " AND EXISTS (SELECT 1 FROM locations l WHERE l.fingerprint = s.fingerprint AND l.gone_at IS NULL AND l.surface = {p})"
                ));
            }
            if let Some(min) = filter.min_copies {
                let p = param(min.into(), &mut params);
                sql.push_str(&format!(" AND s.live_copies >= {p}"));
            }
            sql.push_str(" ORDER BY s.live_copies DESC, s.first_seen, s.fingerprint");
            let mut secrets = Vec::new();
            tx.for_each_row("list secrets", &sql, &params, &mut |row| {
                secrets.push(secret_row(row));
                Ok(())
            })?;
            Ok(secrets)
        })
    }

    /// Every open secret that still has a live copy, with its live copies
    /// on `surfaces` (the ones governance forbids), in fingerprint order.
    pub fn open_secrets_with_copies_on(
        &mut self,
        surfaces: &[String],
    ) -> Result<Vec<(SecretRow, Vec<LocationRow>)>, StoreError> {
        let mut secrets = Vec::new();
        self.for_each_open_secret(surfaces, &mut |secret, copies| {
            secrets.push((secret, copies.to_vec()));
        })?;
        Ok(secrets)
    }

    /// Hands `each` every open secret that still has a live copy, in
    /// fingerprint order, with its live copies on `surfaces` (the ones
    /// governance forbids) by path and line; returns how many there were.
    /// Only those copies are held in memory, never the whole inventory:
    /// a plan over a million locations streams. Each copy's path and line
    /// come from an index that holds them (no lookup into the table).
    pub fn for_each_open_secret(
        &mut self,
        surfaces: &[String],
        each: &mut dyn FnMut(SecretRow, &[LocationRow]),
    ) -> Result<usize, StoreError> {
        /// A copy read ahead of its secret.
        struct Pending {
            fingerprint: String,
            path: String,
            line: i64,
        }
        self.read(move |tx| {
            // The merge below compares fingerprints byte by byte: so must
            // both queries (SQLite's default; PostgreSQL's "C" collation).
            let by_fingerprint = if tx.is_postgres() {
                "fingerprint COLLATE \"C\""
            } else {
                "fingerprint"
            };
            // Per surface, the copies in fingerprint order.
            let mut pending: Vec<(&String, Vec<Pending>)> = Vec::new();
            for surface in surfaces {
                let mut copies = Vec::new();
                tx.for_each_row(
                    "read live copies",
                    &format!("SELECT fingerprint, path, line FROM locations WHERE surface = $1 AND gone_at IS NULL ORDER BY {by_fingerprint}"),
                    &[surface.as_str().into()],
                    &mut |row| {
                        copies.push(Pending {
                            fingerprint: take_text(row, 0),
                            path: take_text(row, 1),
                            line: int(row, 2),
                        });
                        Ok(())
                    },
                )?;
                pending.push((surface, copies));
            }
            let mut next = vec![0usize; pending.len()];
            let mut batch: Vec<LocationRow> = Vec::new();
            let mut count = 0;
            tx.for_each_row(
                "read open secrets",
                &format!("SELECT {SECRET_COLUMNS} FROM secrets s WHERE s.status = 'open' AND s.live_copies > 0 ORDER BY s.{by_fingerprint}"),
                &[],
                &mut |row| {
                    let secret = secret_row(row);
                    // Both sides in fingerprint order: one merge, no lookups.
                    // Copies of secrets that are not open are passed over.
                    for ((surface, copies), next) in pending.iter_mut().zip(next.iter_mut()) {
                        while let Some(copy) = copies.get_mut(*next)
                            && copy.fingerprint <= secret.fingerprint
                        {
                            *next += 1;
                            if copy.fingerprint == secret.fingerprint {
                                batch.push(LocationRow {
                                    source: String::new(),
                                    path: std::mem::take(&mut copy.path),
                                    line: copy.line,
                                    column: 0,
                                    surface: (*surface).clone(),
                                    commit_id: None,
                                    author: None,
                                    first_seen: 0,
                                    last_seen: 0,
                                    gone_at: None,
                                });
                            }
                        }
                    }
                    batch.sort_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
                    each(secret, &batch);
                    batch.clear();
                    count += 1;
                    Ok(())
                },
            )?;
            Ok(count)
        })
    }

    /// One secret by fingerprint (or a unique prefix of 8+ hex digits).
    pub fn secret(&mut self, prefix: &str) -> Result<SecretDetail, StoreError> {
        self.read(|tx| {
            let fingerprint = resolve_prefix(tx, prefix)?;
            let rows = tx.query(
                "read secret",
                &format!(
                    "SELECT {SECRET_COLUMNS} FROM secrets s WHERE s.fingerprint = $1"
                ),
                &[fingerprint.as_str().into()],
            )?;
            let row = rows.first().ok_or_else(|| StoreError::NotFound(format!("secret {fingerprint} vanished")))?;
            let locations = tx.query(
                "read locations",
                "SELECT source, path, line, col, surface, commit_id, author, first_seen, last_seen, gone_at \
                 FROM locations WHERE fingerprint = $1 ORDER BY gone_at IS NOT NULL, path, line",
                &[fingerprint.as_str().into()],
            )?;
            let locations: Vec<LocationRow> = locations
                .iter()
                .map(|r| LocationRow {
                    source: text(r, 0),
                    path: text(r, 1),
                    line: int(r, 2),
                    column: int(r, 3),
                    surface: text(r, 4),
                    commit_id: r.get(5).and_then(Value::text).map(str::to_owned),
                    author: r.get(6).and_then(Value::text).map(str::to_owned),
                    first_seen: int(r, 7),
                    last_seen: int(r, 8),
                    gone_at: r.get(9).and_then(Value::int),
                })
                .collect();
            let history = tx.query(
                "read history",
                "SELECT status, note, at FROM status_history WHERE fingerprint = $1 ORDER BY at",
                &[fingerprint.as_str().into()],
            )?;
            Ok(SecretDetail {
                secret: secret_row(&mut row.clone()),
                locations,
                history: history
                    .iter()
                    .map(|r| StatusChange {
                        status: SecretStatus::parse(&text(r, 0)),
                        note: text(r, 1),
                        at: int(r, 2),
                    })
                    .collect(),
            })
        })
    }

    /// Sets (or with `None` clears) the explicit owner of a secret.
    pub fn set_owner(&mut self, prefix: &str, owner: Option<&str>) -> Result<String, StoreError> {
        self.transaction(|tx| {
            let fingerprint = resolve_prefix(tx, prefix)?;
            let source: Option<String> = owner.map(|_| OwnerSource::Explicit.as_str().to_owned());
            tx.execute(
                "set owner",
                "UPDATE secrets SET owner = $1, owner_source = $2, owner_conflict = NULL WHERE fingerprint = $3",
                &[owner.map(str::to_owned).into(), source.into(), fingerprint.as_str().into()],
            )?;
            if owner.is_none() {
                refresh_secret(tx, &fingerprint)?;
            }
            Ok(fingerprint)
        })
    }

    /// Records a decision about a secret; the history keeps every one.
    pub fn resolve(
        &mut self,
        prefix: &str,
        status: SecretStatus,
        note: &str,
        at: Timestamp,
    ) -> Result<String, StoreError> {
        self.transaction(|tx| {
            let fingerprint = resolve_prefix(tx, prefix)?;
            tx.execute(
                "resolve",
                "UPDATE secrets SET status = $1, reopened = 0 WHERE fingerprint = $2",
                &[status.as_str().into(), fingerprint.as_str().into()],
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
