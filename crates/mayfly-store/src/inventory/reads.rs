//! Inventory reads: listings, the stream of open secrets a plan walks, and
//! one secret's detail.

use super::{
    LocationRow, SECRET_COLUMNS, SecretDetail, SecretFilter, SecretRow, SecretStatus, StatusChange,
    resolve_prefix, secret_row,
};
use std::collections::HashMap;

use crate::StoreError;
use crate::backend::Store;
use crate::row::Value;

/// Most harmful first: an `ORDER BY` term over a secret's severity.
const SEVERITY_RANK: &str = "CASE s.severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 WHEN 'low' THEN 3 ELSE 4 END";

impl Store {
    /// The providers of the secrets in the inventory, and how many secrets
    /// it holds in all (resolved ones included).
    pub fn inventory_overview(&mut self) -> Result<(Vec<String>, i64), StoreError> {
        self.read(|tx| {
            let mut providers = Vec::new();
            tx.for_each_row(
                "list providers",
                "SELECT DISTINCT provider FROM secrets ORDER BY provider",
                &[],
                &mut |row| {
                    providers.push(row.text("provider")?);
                    Ok(())
                },
            )?;
            let total = tx
                .query("count secrets", "SELECT count(*) AS n FROM secrets", &[])?
                .first()
                .map_or(Ok(0), |r| r.int("n"))?;
            Ok((providers, total))
        })
    }

    /// Secrets matching `filter`, most live copies first.
    pub fn list_secrets(&mut self, filter: &SecretFilter) -> Result<Vec<SecretRow>, StoreError> {
        let filter = filter.clone();
        self.read(move |tx| {
            let mut sql = format!("SELECT {SECRET_COLUMNS} FROM secrets s WHERE 1 = 1");
            let mut params: Vec<Value> = Vec::new();
            fn param<'a>(value: Value<'a>, params: &mut Vec<Value<'a>>) -> String {
                params.push(value);
                format!("${}", params.len())
            }
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
            sql.push_str(&format!(" ORDER BY {SEVERITY_RANK}, s.live_copies DESC, s.first_seen, s.fingerprint"));
            let mut secrets = Vec::new();
            tx.for_each_row("list secrets", &sql, &params, &mut |row| {
                secrets.push(secret_row(row)?);
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

    /// Hands `each` every open secret that still has a live copy (and
    /// every secret in custody that still has one: it was exposed), most
    /// urgent first (live at its provider, then by severity, then most
    /// copies, then oldest), with its
    /// live copies on `surfaces` (the ones governance forbids) by path and
    /// line; returns how many there were. Only those copies are held in
    /// memory, never the whole inventory: a plan over a million locations
    /// streams. Each copy's path and line come from an index that holds
    /// them (no lookup into the table).
    pub fn for_each_open_secret(
        &mut self,
        surfaces: &[String],
        each: &mut dyn FnMut(SecretRow, &[LocationRow]),
    ) -> Result<usize, StoreError> {
        self.read(move |tx| {
            // The copies on the forbidden surfaces, by secret.
            let mut pending: HashMap<String, Vec<LocationRow>> = HashMap::new();
            for surface in surfaces {
                tx.for_each_row(
                    "read live copies",
                    "SELECT fingerprint, path, line FROM locations WHERE surface = $1 AND gone_at IS NULL",
                    &[surface.as_str().into()],
                    &mut |row| {
                        let copy = LocationRow {
                            source: String::new(),
                            path: row.text("path")?,
                            host: String::new(),
                            root: None,
                            remote: None,
                            line: row.int("line")?,
                            column: 0,
                            surface: surface.clone(),
                            commit_id: None,
                            author: None,
                            first_seen: 0,
                            last_seen: 0,
                            gone_at: None,
                        };
                        let fingerprint = row.text("fingerprint")?;
                        pending.entry(fingerprint).or_default().push(copy);
                        Ok(())
                    },
                )?;
            }
            let mut count = 0;
            tx.for_each_row(
                "read open secrets",
                &format!(
                    "SELECT {SECRET_COLUMNS} FROM secrets s WHERE s.status IN ('open', 'in-custody') AND s.live_copies > 0 \
                     ORDER BY CASE WHEN s.validation = 'live' THEN 0 ELSE 1 END, {SEVERITY_RANK}, s.live_copies DESC, s.first_seen, s.fingerprint"
                ),
                &[],
                &mut |row| {
                    let secret = secret_row(row)?;
                    // Copies of secrets that are not open are never asked for.
                    let mut batch = pending.remove(&secret.fingerprint).unwrap_or_default();
                    batch.sort_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
                    each(secret, &batch);
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
            let mut row = rows.into_iter().next().ok_or_else(|| StoreError::NotFound(format!("secret {fingerprint} vanished")))?;
            let locations = tx.query(
                "read locations",
                "SELECT source, path, line, col, surface, commit_id, author, first_seen, last_seen, gone_at, host, root, remote \
                 FROM locations WHERE fingerprint = $1 ORDER BY gone_at IS NOT NULL, host, path, line",
                &[fingerprint.as_str().into()],
            )?;
            let locations = locations
                .into_iter()
                .map(|mut r| {
                    Ok(LocationRow {
                        source: r.text("source")?,
                        path: r.text("path")?,
                        host: r.opt_text("host")?.unwrap_or_default(),
                        root: r.opt_text("root")?,
                        remote: r.opt_text("remote")?,
                        line: r.int("line")?,
                        column: r.int("col")?,
                        surface: r.text("surface")?,
                        commit_id: r.opt_text("commit_id")?,
                        author: r.opt_text("author")?,
                        first_seen: r.int("first_seen")?,
                        last_seen: r.int("last_seen")?,
                        gone_at: r.opt_int("gone_at")?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let history = tx.query(
                "read history",
                "SELECT status, note, at FROM status_history WHERE fingerprint = $1 ORDER BY at",
                &[fingerprint.as_str().into()],
            )?;
            let history = history
                .into_iter()
                .map(|mut r| {
                    Ok(StatusChange {
                        status: SecretStatus::parse(&r.text("status")?)?,
                        note: r.text("note")?,
                        at: r.int("at")?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(SecretDetail {
                secret: secret_row(&mut row)?,
                locations,
                history,
            })
        })
    }
}
