//! The inventory tables: secrets (by fingerprint, never plaintext), every
//! location of every copy, status history; the merge of a scan into them.
//! Who owns a secret is decided by `mayfly-inventory` ([`OwnershipRule`]);
//! the store records the claims and the decision.

mod merge;
mod reads;

use crate::backend::Tx;
use crate::row::Row;
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
    /// Held in custody by the broker (`mayfly migrate`); copies that are
    /// still found outside it mean it was exposed and must be rotated.
    InCustody,
}

impl SecretStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretStatus::Open => "open",
            SecretStatus::Rotated => "rotated",
            SecretStatus::Revoked => "revoked",
            SecretStatus::AcceptedRisk => "accepted-risk",
            SecretStatus::InCustody => "in-custody",
        }
    }

    fn parse(text: &str) -> Result<SecretStatus, StoreError> {
        match text {
            "open" => Ok(SecretStatus::Open),
            "rotated" => Ok(SecretStatus::Rotated),
            "revoked" => Ok(SecretStatus::Revoked),
            "accepted-risk" => Ok(SecretStatus::AcceptedRisk),
            "in-custody" => Ok(SecretStatus::InCustody),
            other => Err(StoreError::Corrupt {
                what: "secret status",
                reason: format!("unknown status {other:?}"),
            }),
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
    /// Where it is: an absolute path (`file`, `file!entry` or
    /// `file#table.column[row]`), or `-` for standard input.
    pub path: String,
    /// The machine it is on (hostname or `--host-id`).
    pub host: String,
    /// The root it is shown from: its repository's root, else the scanned
    /// root (absolute).
    pub root: Option<String>,
    /// Its repository's remote URL (without credentials).
    pub remote: Option<String>,
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
    pub owner_claim: Option<OwnerClaim>,
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

/// One copy's claim to an owner.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OwnerClaim {
    /// Where the claim comes from (the strongest source wins).
    pub source: OwnerSource,
    /// The claimed owner.
    pub owner: String,
}

/// What the claims on a secret's live copies decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// One owner, from this source.
    Owned {
        /// The owner.
        owner: String,
        /// Where it comes from.
        source: OwnerSource,
    },
    /// Several owners claim it with equal strength: ownership is unclear.
    Disputed {
        /// The claimants.
        claimants: Vec<String>,
    },
    /// Nobody claims it: ownership is unclear.
    Unclaimed,
}

/// Decides ownership from a secret's claims (sorted, strongest first, no
/// duplicates). `mayfly-inventory` supplies it; the store applies it.
pub type OwnershipRule = fn(&[OwnerClaim]) -> Ownership;

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
    pub owner_source: Option<OwnerSource>,
    /// The owners that claim the secret when they disagree (ownership unclear).
    pub owner_conflict: Option<String>,
    /// Live copies.
    pub copies: i64,
    /// Distinct surfaces of the live copies, comma-separated.
    pub surfaces: String,
    /// The custody entry holding it, once migrated.
    pub custody_entry: Option<String>,
    /// What its provider last said (`live`, `dead`, `unknown`), if asked.
    pub validation: Option<String>,
    /// When it was asked.
    pub validated_at: Option<Timestamp>,
}

/// A location in a secret's detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationRow {
    /// The scan source.
    pub source: String,
    /// Path (absolute, as recorded).
    pub path: String,
    /// The machine (empty for copies recorded before machines were).
    pub host: String,
    /// The root the path is shown from.
    pub root: Option<String>,
    /// The repository's remote URL.
    pub remote: Option<String>,
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
    format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{}",
        copy.host, copy.path, copy.line, copy.column
    )
}

const SECRET_COLUMNS: &str = "s.fingerprint, s.rule_id, s.provider, s.severity, s.first_seen, s.last_seen, s.status, s.reopened, s.owner, s.owner_source, s.owner_conflict, s.live_copies, s.surfaces, s.custody_entry, s.validation, s.validated_at";

fn secret_row(row: &mut Row) -> Result<SecretRow, StoreError> {
    let owner_source = match row.opt_text("owner_source")? {
        Some(text) => Some(
            OwnerSource::parse(&text).ok_or_else(|| StoreError::Corrupt {
                what: "owner source",
                reason: format!("unknown source {text:?}"),
            })?,
        ),
        None => None,
    };
    Ok(SecretRow {
        fingerprint: row.text("fingerprint")?,
        rule_id: row.text("rule_id")?,
        provider: row.text("provider")?,
        severity: row.text("severity")?,
        first_seen: row.int("first_seen")?,
        last_seen: row.int("last_seen")?,
        status: SecretStatus::parse(&row.text("status")?)?,
        reopened: row.flag("reopened")?,
        owner: row.opt_text("owner")?,
        owner_source,
        owner_conflict: row.opt_text("owner_conflict")?,
        copies: row.int("live_copies")?,
        surfaces: row.text("surfaces")?,
        custody_entry: row.opt_text("custody_entry")?,
        validation: row.opt_text("validation")?,
        validated_at: row.opt_int("validated_at")?,
    })
}

/// Recomputes what a secret's live copies say: how many there are, on
/// which surfaces, and (unless someone set it explicitly) who owns it, as
/// `rule` decides from their claims.
fn refresh_secret(
    tx: &mut dyn Tx,
    fingerprint: &str,
    rule: OwnershipRule,
) -> Result<(), StoreError> {
    let copies = tx.query(
        "read live copies",
        "SELECT surface, owner_claim, owner_claim_source FROM locations WHERE fingerprint = $1 AND gone_at IS NULL",
        &[fingerprint.into()],
    )?;
    let mut surfaces = Vec::with_capacity(copies.len());
    let mut claims = Vec::new();
    for mut copy in copies.iter().cloned() {
        surfaces.push(copy.text("surface")?);
        if let (Some(owner), Some(source)) = (
            copy.opt_text("owner_claim")?,
            copy.opt_text("owner_claim_source")?,
        ) && let Some(source) = OwnerSource::parse(&source)
        {
            claims.push(OwnerClaim { source, owner });
        }
    }
    surfaces.sort_unstable();
    surfaces.dedup();
    claims.sort();
    claims.dedup();
    let (owner, source, conflict) = match rule(&claims) {
        Ownership::Owned { owner, source } => (Some(owner), Some(source.as_str()), None),
        Ownership::Disputed { claimants } => (None, None, Some(claimants.join(", "))),
        Ownership::Unclaimed => (None, None, None),
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
        [one] => one.clone().text("fingerprint"),
        [] => Err(StoreError::NotFound(format!(
            "no secret in the inventory has a fingerprint starting with {prefix}"
        ))),
        _ => Err(StoreError::NotFound(format!(
            "several secrets start with {prefix}; give more digits"
        ))),
    }
}

impl LocationRow {
    /// The path as people read it: relative to its root when it is under
    /// it, else as recorded.
    pub fn shown_path(&self) -> &str {
        self.root
            .as_deref()
            .and_then(|root| self.path.strip_prefix(root))
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|rest| !rest.is_empty())
            .unwrap_or(&self.path)
    }
}
