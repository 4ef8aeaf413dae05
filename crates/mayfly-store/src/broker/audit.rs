//! The hash-chained audit log: appending inside a write transaction,
//! deleting its oldest events past their retention (the chain then starts
//! at an anchor: the last deleted event's number and hash), and verifying
//! the chain from its anchor to its head.

use sha2::{Digest, Sha256};

use super::{AuditEvent, AuditVerification, NewAuditEvent};
use crate::backend::{Store, Tx};
use crate::dialect::{self, Lock};
use crate::row::Row;
use crate::{StoreError, Timestamp};

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The chain hash of an event: SHA-256 over the previous hash and the
/// event's fields, each length-prefixed so no field can bleed into another.
pub fn audit_hash(prev_hash: &str, seq: i64, at: Timestamp, kind: &str, data: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [prev_hash, &seq.to_string(), &at.to_string(), kind, data] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    // Every event is hashed in the writer's transaction: hex by table, not
    // by a formatter call per byte.
    let mut hex = String::with_capacity(64);
    for byte in hasher.finalize() {
        for nibble in [byte >> 4, byte & 0x0f] {
            hex.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
        }
    }
    hex
}

/// Where the chain starts: the number and hash of the last event deleted
/// by retention, or the genesis before any was.
fn anchor(tx: &mut dyn Tx) -> Result<(i64, String), StoreError> {
    let rows = tx.query(
        "read audit anchor",
        "SELECT seq, hash FROM audit_anchor",
        &[],
    )?;
    match rows.into_iter().next() {
        Some(mut row) => Ok((row.int("seq")?, row.text("hash")?)),
        None => Ok((0, GENESIS.to_owned())),
    }
}

fn audit_row(mut row: Row) -> Result<AuditEvent, StoreError> {
    Ok(AuditEvent {
        seq: row.int("seq")?,
        at: row.int("at")?,
        kind: row.text("kind")?,
        data: row.text("data")?,
        prev_hash: row.text("prev_hash")?,
        hash: row.text("hash")?,
    })
}

/// Appends audit events to the chain inside one write transaction.
pub(super) struct Chain {
    seq: i64,
    hash: String,
    start: i64,
}

impl Chain {
    /// The chain's head, with the chain locked for this transaction.
    pub(super) fn load(tx: &mut dyn Tx) -> Result<Chain, StoreError> {
        dialect::lock(tx, Lock::AuditChain)?;
        let rows = tx.query("read audit head", "SELECT seq, hash FROM audit_head", &[])?;
        Ok(match rows.into_iter().next() {
            Some(mut row) => {
                let seq = row.int("seq")?;
                Chain {
                    seq,
                    hash: row.text("hash")?,
                    start: seq,
                }
            }
            None => Chain {
                seq: 0,
                hash: GENESIS.to_owned(),
                start: 0,
            },
        })
    }

    pub(super) fn append(
        &mut self,
        tx: &mut dyn Tx,
        event: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let seq = self.seq + 1;
        let hash = audit_hash(&self.hash, seq, event.at, &event.kind, &event.data);
        tx.execute(
            "append audit event",
            "INSERT INTO audit_events (seq, at, kind, data, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                seq.into(),
                event.at.into(),
                event.kind.as_str().into(),
                event.data.as_str().into(),
                self.hash.as_str().into(),
                hash.as_str().into(),
            ],
        )?;
        self.seq = seq;
        self.hash = hash;
        Ok(())
    }

    /// Deletes the events recorded at or before `before` from the start of
    /// the chain (at most `limit`, and only up to the first newer one, so
    /// what stays is one unbroken chain), moves the anchor to the last one
    /// deleted and appends an `audit.prune` event saying so. Returns how
    /// many were deleted.
    pub(super) fn prune(
        &mut self,
        tx: &mut dyn Tx,
        now: Timestamp,
        before: Timestamp,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let (from, _) = anchor(tx)?;
        // Most sweeps find nothing old enough: the first event tells, by
        // its key, before a batch of rows is read.
        let first = tx.query(
            "find old audit events",
            "SELECT at FROM audit_events WHERE seq = $1",
            &[(from + 1).into()],
        )?;
        match first.first() {
            Some(row) if row.int("at")? <= before => {}
            _ => return Ok(0),
        }
        let oldest = tx.query(
            "find old audit events",
            "SELECT seq, at, hash FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[from.into(), limit.into()],
        )?;
        let mut last = None;
        for mut row in oldest {
            if row.int("at")? > before {
                break;
            }
            last = Some((row.int("seq")?, row.text("hash")?));
        }
        let Some((through, hash)) = last else {
            return Ok(0);
        };
        let deleted = tx.execute(
            "delete old audit events",
            "DELETE FROM audit_events WHERE seq > $1 AND seq <= $2",
            &[from.into(), through.into()],
        )?;
        tx.execute("move audit anchor", "DELETE FROM audit_anchor", &[])?;
        tx.execute(
            "move audit anchor",
            "INSERT INTO audit_anchor (seq, hash, at) VALUES ($1, $2, $3)",
            &[through.into(), hash.as_str().into(), now.into()],
        )?;
        self.append(
            tx,
            &NewAuditEvent::new(
                now,
                "audit.prune",
                serde_json::json!({"from": from + 1, "through": through, "hash": hash}),
            ),
        )?;
        Ok(deleted)
    }

    /// Records the new head, if anything was appended.
    pub(super) fn save(&self, tx: &mut dyn Tx) -> Result<(), StoreError> {
        if self.seq == self.start {
            return Ok(());
        }
        tx.execute("update audit head", "DELETE FROM audit_head", &[])?;
        tx.execute(
            "update audit head",
            "INSERT INTO audit_head (seq, hash) VALUES ($1, $2)",
            &[self.seq.into(), self.hash.as_str().into()],
        )?;
        Ok(())
    }
}

impl Store {
    /// Audit events after `after_seq`, oldest first, at most `limit`.
    pub fn audit_events(
        &mut self,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.read(|tx| {
            let rows = tx.query(
                "read audit events",
                "SELECT seq, at, kind, data, prev_hash, hash FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[after_seq.into(), limit.into()],
            )?;
            rows.into_iter().map(audit_row).collect()
        })
    }

    /// The last `count` audit events, oldest first.
    pub fn audit_tail(&mut self, count: i64) -> Result<Vec<AuditEvent>, StoreError> {
        self.read(|tx| {
            let rows = tx.query(
                "read audit events",
                "SELECT seq, at, kind, data, prev_hash, hash FROM audit_events ORDER BY seq DESC LIMIT $1",
                &[count.into()],
            )?;
            let mut events = rows
                .into_iter()
                .map(audit_row)
                .collect::<Result<Vec<_>, _>>()?;
            events.reverse();
            Ok(events)
        })
    }

    /// Walks the audit chain from its anchor: every event must follow the
    /// previous one (no gap, no reordering), carry its hash (no edit), and
    /// the chain must end where the recorded head says (nothing removed
    /// from the end). On a running broker, events are appended and deleted
    /// while the walk goes on: a problem seen while the head or the anchor
    /// moved is checked again by a new walk (a few times) before it is
    /// reported.
    pub fn audit_verify(&mut self) -> Result<AuditVerification, StoreError> {
        let mut ends = self.read(chain_ends)?;
        for _ in 0..4 {
            let verification = self.walk_chain(&ends.1)?;
            if verification.problem.is_none() {
                return Ok(verification);
            }
            let now = self.read(chain_ends)?;
            if now == ends {
                return Ok(verification);
            }
            ends = now;
        }
        self.walk_chain(&ends.1)
    }

    /// One walk from `anchor` to the end, checked against the head read
    /// after it.
    fn walk_chain(&mut self, anchor: &(i64, String)) -> Result<AuditVerification, StoreError> {
        let (anchor_seq, anchor_hash) = anchor;
        let mut prev_hash = anchor_hash.clone();
        let mut expected_seq = anchor_seq + 1;
        let mut checked = 0;
        let found = |checked, problem| AuditVerification {
            events: checked,
            pruned_through: *anchor_seq,
            problem: Some(problem),
        };
        loop {
            let batch = self.audit_events(expected_seq - 1, 10_000)?;
            if batch.is_empty() {
                break;
            }
            for event in batch {
                if event.seq != expected_seq {
                    return Ok(found(
                        checked,
                        format!(
                            "event {} follows event {}: events are missing or reordered",
                            event.seq,
                            expected_seq - 1
                        ),
                    ));
                }
                if event.prev_hash != prev_hash {
                    return Ok(found(
                        checked,
                        format!(
                            "event {} does not link to the event before it: events were removed, inserted or reordered",
                            event.seq
                        ),
                    ));
                }
                if audit_hash(&prev_hash, event.seq, event.at, &event.kind, &event.data)
                    != event.hash
                {
                    return Ok(found(
                        checked,
                        format!(
                            "event {} was edited: its hash does not match its content",
                            event.seq
                        ),
                    ));
                }
                checked += 1;
                expected_seq += 1;
                prev_hash = event.hash;
            }
        }
        let last = anchor_seq + checked;
        let problem = match self.read(chain_ends)?.0 {
            Some((seq, hash)) if seq != last || hash != prev_hash => Some(format!(
                "the chain ends at event {last} but its recorded head is event {seq}: events were removed from the end"
            )),
            None if last > 0 => Some("the chain has events but no recorded head".to_owned()),
            _ => None,
        };
        Ok(AuditVerification {
            events: checked,
            pruned_through: *anchor_seq,
            problem,
        })
    }
}

/// The chain's recorded head (none before the first event) and its anchor.
type ChainEnds = (Option<(i64, String)>, (i64, String));

fn chain_ends(tx: &mut dyn Tx) -> Result<ChainEnds, StoreError> {
    let rows = tx.query("read audit head", "SELECT seq, hash FROM audit_head", &[])?;
    let head = rows
        .into_iter()
        .next()
        .map(|mut r| Ok((r.int("seq")?, r.text("hash")?)))
        .transpose()?;
    Ok((head, anchor(tx)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chain of every store ever written depends on this exact form
    /// (computed independently: Python's hashlib over the length-prefixed
    /// fields).
    #[test]
    fn the_hash_of_an_event_is_stable() {
        assert_eq!(
            audit_hash(GENESIS, 1, 1_700_000_000, "token.issue", r#"{"jti":"x"}"#),
            "86421eec56567f16a7a7fe1d5ce38c86e8ea3379580d13cab261534ef51de563"
        );
    }

    #[test]
    fn hashes_separate_fields() {
        assert_ne!(
            audit_hash(GENESIS, 1, 1, "ab", "c"),
            audit_hash(GENESIS, 1, 1, "a", "bc")
        );
    }
}
