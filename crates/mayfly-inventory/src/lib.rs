//! The inventory: turns scan reports into records the store merges, so a
//! scan (a snapshot) becomes the lasting picture: which secrets exist,
//! where every copy is, who owns it, since when, and what was decided.

pub mod govern;
pub mod owners;
pub mod report;

use std::path::PathBuf;

use mayfly_scan::git::RepositoryInfo;
use mayfly_scan::scan::ScanReport;
use mayfly_store::{CopyRecord, ScanRecord, Timestamp};

pub use owners::{OwnerMap, OwnersError, decide_ownership};

/// A scanned root: how its paths appear in findings, where it is, and its
/// owners.
#[derive(Debug)]
pub struct Root {
    /// The prefix of findings' paths under this root (`""` for `.`,
    /// `repo/` for `repo`); for a scanned file, its whole path.
    pub prefix: String,
    /// Whether the root is a single file (findings' paths equal `prefix`).
    pub is_file: bool,
    /// Its canonical absolute path.
    pub absolute: PathBuf,
    /// The repository it is in, if any.
    pub repository: Option<RepositoryInfo>,
    /// Ownership rules found in the root.
    pub owners: OwnerMap,
}

/// A path with `.` components and repeated separators removed, so that
/// `./repo//x`, `repo/./x` and `repo/x` compare equal.
fn lexical(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    if path.starts_with('/') {
        out.push('/');
    }
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if !out.is_empty() && !out.ends_with('/') {
            out.push('/');
        }
        out.push_str(part);
    }
    out
}

impl Root {
    /// The path of a finding relative to this root, if it lies under it.
    fn relative(&self, path: &str) -> Option<String> {
        let path = lexical(path);
        let prefix = lexical(&self.prefix);
        if self.is_file {
            return (path == prefix).then(String::new);
        }
        if prefix.is_empty() {
            return (!path.starts_with('/')).then_some(path);
        }
        path.strip_prefix(&prefix)
            .and_then(|rest| rest.strip_prefix('/'))
            .map(str::to_owned)
    }

    /// The absolute form of a finding's path under this root: the root's
    /// path joined with the relative part, `!entry` and `#cell` suffixes
    /// kept as they are.
    fn absolute_path(&self, relative: &str) -> String {
        // `./x` and `x` are one file: `.` components are dropped.
        let mut path = self.absolute.clone();
        for part in std::path::Path::new(relative).components() {
            if part != std::path::Component::CurDir {
                path.push(part);
            }
        }
        path.to_string_lossy().into_owned()
    }

    /// What paths under this root are shown from: the repository's root,
    /// else the root itself (its folder, for a scanned file).
    fn shown_from(&self) -> String {
        match &self.repository {
            Some(repo) => repo.root.to_string_lossy().into_owned(),
            None if self.is_file => self
                .absolute
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            None => self.absolute.to_string_lossy().into_owned(),
        }
    }
}

/// The record of a scan of `source` made at `at` on machine `host`: one
/// entry per copy, keyed by fingerprint, at its absolute path, with its
/// owner claim; no plaintext leaves the report. However a root was named
/// (`repo`, `./repo`, `/abs/repo`), the same file gets the same path.
pub fn scan_record(
    report: &ScanReport,
    source: &str,
    at: Timestamp,
    host: &str,
    roots: &[Root],
) -> ScanRecord {
    let copies = report
        .findings
        .iter()
        .map(|finding| {
            let location = &finding.location;
            let commit = location.commit.as_ref();
            let root = roots
                .iter()
                .filter_map(|r| Some((r, r.relative(&location.path)?)))
                .max_by_key(|(r, _)| r.prefix.len());
            let author = commit.map(|c| {
                if c.email.is_empty() {
                    c.author.clone()
                } else {
                    format!("{} <{}>", c.author, c.email)
                }
            });
            let owner_claim = match &root {
                Some((r, relative)) => {
                    r.owners
                        .claim(relative, &finding.rule.provider, author.as_deref())
                }
                None => OwnerMap::default().claim(
                    &location.path,
                    &finding.rule.provider,
                    author.as_deref(),
                ),
            };
            let path = match &root {
                Some((r, relative)) => r.absolute_path(relative),
                None => location.path.clone(),
            };
            CopyRecord {
                fingerprint: finding.fingerprint.to_hex(),
                rule_id: finding.rule.id.clone(),
                provider: finding.rule.provider.clone(),
                severity: finding.rule.severity.as_str().to_owned(),
                path: match &location.cell {
                    Some(cell) => {
                        format!("{path}#{}.{}[{}]", cell.table, cell.column, cell.row)
                    }
                    None => path,
                },
                host: host.to_owned(),
                root: root.as_ref().map(|(r, _)| r.shown_from()),
                remote: root
                    .as_ref()
                    .and_then(|(r, _)| r.repository.as_ref()?.remote.clone()),
                line: i64::try_from(location.line).unwrap_or(i64::MAX),
                column: i64::try_from(location.column).unwrap_or(i64::MAX),
                surface: location.surface.as_str().to_owned(),
                commit_id: commit.map(|c| c.id.clone()),
                author: commit.map(|c| c.author.clone()),
                author_email: commit.map(|c| c.email.clone()),
                committed_at: commit.map(|c| c.time),
                owner_claim,
            }
        })
        .collect();
    ScanRecord {
        source: source.to_owned(),
        at,
        copies,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(prefix: &str, is_file: bool) -> Root {
        Root {
            prefix: prefix.into(),
            is_file,
            absolute: PathBuf::from("/abs/repo"),
            repository: None,
            owners: OwnerMap::default(),
        }
    }

    #[test]
    fn findings_map_to_one_absolute_path_however_the_root_was_named() {
        for (prefix, finding) in [
            ("", ".env"),
            ("", "./.env"),
            ("repo/", "repo/.env"),
            ("./repo/", "repo/.env"),
            ("./repo/", "./repo/.env"),
            ("/abs/repo/", "/abs/repo/.env"),
        ] {
            let r = root(prefix, false);
            let relative = r
                .relative(finding)
                .unwrap_or_else(|| panic!("{prefix} {finding}"));
            assert_eq!(
                r.absolute_path(&relative),
                "/abs/repo/.env",
                "{prefix} {finding}"
            );
        }
        assert_eq!(root("", false).relative("/elsewhere/x"), None);
        assert_eq!(root("repo/", false).relative("repository/x"), None);
        assert_eq!(root("a.env", true).relative("./a.env"), Some(String::new()));
    }
}
