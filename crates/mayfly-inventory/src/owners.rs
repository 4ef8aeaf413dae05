//! Who owns a copy: `.mayfly/owners.toml` in the scanned tree, then
//! CODEOWNERS, then the author of the commit that introduced it.

use std::path::Path;

use globset::{Glob, GlobMatcher};
use mayfly_store::{OwnerClaim, OwnerSource, Ownership};
use serde::Deserialize;

/// The owners file, relative to a scanned root.
pub const OWNERS_FILE: &str = ".mayfly/owners.toml";
/// Where CODEOWNERS files live, in GitHub's order of precedence.
const CODEOWNERS: &[&str] = &[
    ".github/CODEOWNERS",
    "CODEOWNERS",
    "docs/CODEOWNERS",
    ".gitlab/CODEOWNERS",
];

/// Why an owners file was refused.
#[derive(Debug, thiserror::Error)]
pub enum OwnersError {
    /// The file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The operating system's message.
        reason: String,
    },
    /// The file is not valid.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with line and column where known.
        reason: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnersToml {
    owners: Vec<OwnerEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnerEntry {
    team: String,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    providers: Vec<String>,
}

#[derive(Debug)]
struct OwnerRule {
    team: String,
    paths: Vec<GlobMatcher>,
    providers: Vec<String>,
}

/// The ownership rules of one scanned tree.
#[derive(Debug, Default)]
pub struct OwnerMap {
    rules: Vec<OwnerRule>,
    codeowners: Vec<(GlobMatcher, String)>,
}

fn glob(pattern: &str, origin: &str) -> Result<GlobMatcher, OwnersError> {
    Glob::new(pattern)
        .map(|g| g.compile_matcher())
        .map_err(|e| OwnersError::Invalid {
            path: origin.to_owned(),
            reason: format!("bad glob {pattern:?}: {e}"),
        })
}

/// A CODEOWNERS pattern (gitignore syntax) as a glob over root-relative paths.
fn codeowners_glob(pattern: &str) -> String {
    let anchored = pattern.starts_with('/');
    let trimmed = pattern.trim_start_matches('/');
    let mut glob = if anchored || trimmed.contains('/') && !trimmed.ends_with('/') {
        trimmed.to_owned()
    } else {
        format!("**/{trimmed}")
    };
    if glob.ends_with('/') {
        glob.push_str("**");
    } else if !glob.contains('*') && !glob.contains('.') {
        // A bare name may be a directory.
        glob = format!("{{{glob},{glob}/**}}");
    }
    glob
}

impl OwnerMap {
    /// Loads the owners file and CODEOWNERS under `root`, if present.
    pub fn load(root: &Path) -> Result<OwnerMap, OwnersError> {
        let mut map = OwnerMap::default();
        let owners_path = root.join(OWNERS_FILE);
        if owners_path.is_file() {
            let shown = owners_path.display().to_string();
            let text = std::fs::read_to_string(&owners_path).map_err(|e| OwnersError::Read {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
            let parsed: OwnersToml = toml::from_str(&text).map_err(|e| OwnersError::Invalid {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
            for entry in parsed.owners {
                if entry.team.trim().is_empty()
                    || (entry.paths.is_empty() && entry.providers.is_empty())
                {
                    return Err(OwnersError::Invalid {
                        path: shown,
                        reason: "each [[owners]] entry needs a team and at least one of paths or providers".into(),
                    });
                }
                map.rules.push(OwnerRule {
                    team: entry.team,
                    paths: entry
                        .paths
                        .iter()
                        .map(|p| glob(p, &shown))
                        .collect::<Result<_, _>>()?,
                    providers: entry.providers.iter().map(|p| p.to_lowercase()).collect(),
                });
            }
        }
        if let Some(path) = CODEOWNERS
            .iter()
            .map(|c| root.join(c))
            .find(|p| p.is_file())
        {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| OwnersError::Read {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
            for line in text.lines() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let (Some(pattern), owners) = (parts.next(), parts.collect::<Vec<_>>()) else {
                    continue;
                };
                if owners.is_empty() {
                    continue;
                }
                map.codeowners
                    .push((glob(&codeowners_glob(pattern), &shown)?, owners.join(" ")));
            }
        }
        Ok(map)
    }

    /// The strongest claim on a copy at `relative_path` of a `provider`'s
    /// credential, introduced by `author` (for copies from history).
    pub fn claim(
        &self,
        relative_path: &str,
        provider: &str,
        author: Option<&str>,
    ) -> Option<OwnerClaim> {
        let provider = provider.to_lowercase();
        let from_file = self.rules.iter().rev().find(|rule| {
            let path_ok =
                rule.paths.is_empty() || rule.paths.iter().any(|g| g.is_match(relative_path));
            let provider_ok = rule.providers.is_empty() || rule.providers.contains(&provider);
            path_ok && provider_ok
        });
        if let Some(rule) = from_file {
            return Some(OwnerClaim {
                owner: rule.team.clone(),
                source: OwnerSource::OwnersFile,
            });
        }
        // CODEOWNERS: the last matching pattern wins.
        if let Some((_, owners)) = self
            .codeowners
            .iter()
            .rev()
            .find(|(g, _)| g.is_match(relative_path))
        {
            return Some(OwnerClaim {
                owner: owners.clone(),
                source: OwnerSource::Codeowners,
            });
        }
        author.map(|a| OwnerClaim {
            owner: a.to_owned(),
            source: OwnerSource::CommitAuthor,
        })
    }
}

/// Who owns a secret, from the claims on its live copies (sorted,
/// strongest source first, no duplicates): the strongest claim wins; two
/// different owners at that strength make ownership unclear, and so does
/// no claim at all. The store applies this rule when it merges scans.
pub fn decide_ownership(claims: &[OwnerClaim]) -> Ownership {
    let Some(strongest) = claims.iter().map(|c| c.source).min() else {
        return Ownership::Unclaimed;
    };
    let mut owners: Vec<&str> = claims
        .iter()
        .filter(|c| c.source == strongest)
        .map(|c| c.owner.as_str())
        .collect();
    owners.sort_unstable();
    owners.dedup();
    match owners.as_slice() {
        [one] => Ownership::Owned {
            owner: (*one).to_owned(),
            source: strongest,
        },
        _ => Ownership::Disputed {
            claimants: owners.into_iter().map(str::to_owned).collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_strongest_claim_decides_and_ties_are_unclear() {
        let claim = |owner: &str, source| OwnerClaim {
            owner: owner.into(),
            source,
        };
        assert_eq!(decide_ownership(&[]), Ownership::Unclaimed);
        assert_eq!(
            decide_ownership(&[
                claim("team-a", OwnerSource::OwnersFile),
                claim("ann", OwnerSource::CommitAuthor),
            ]),
            Ownership::Owned {
                owner: "team-a".into(),
                source: OwnerSource::OwnersFile
            }
        );
        assert_eq!(
            decide_ownership(&[
                claim("team-a", OwnerSource::Codeowners),
                claim("team-b", OwnerSource::Codeowners),
            ]),
            Ownership::Disputed {
                claimants: vec!["team-a".into(), "team-b".into()]
            }
        );
    }

    #[test]
    fn precedence_and_patterns() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".mayfly")).unwrap();
        std::fs::create_dir_all(dir.path().join(".github")).unwrap();
        std::fs::write(
            dir.path().join(OWNERS_FILE),
            "[[owners]]\nteam = \"team-billing\"\npaths = [\"services/billing/**\"]\n\n[[owners]]\nteam = \"team-payments\"\nproviders = [\"Stripe\"]\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join(".github/CODEOWNERS"),
            "* @acme/platform\n/docs/ @acme/docs\n*.ipynb @acme/data\n",
        )
        .unwrap();
        let map = OwnerMap::load(dir.path()).unwrap();
        assert_eq!(
            map.claim("services/billing/app.py", "OpenAI", None),
            Some(OwnerClaim {
                owner: "team-billing".into(),
                source: OwnerSource::OwnersFile
            })
        );
        assert_eq!(
            map.claim("anything.py", "Stripe", None),
            Some(OwnerClaim {
                owner: "team-payments".into(),
                source: OwnerSource::OwnersFile
            })
        );
        assert_eq!(
            map.claim("docs/setup.md", "OpenAI", None),
            Some(OwnerClaim {
                owner: "@acme/docs".into(),
                source: OwnerSource::Codeowners
            })
        );
        assert_eq!(
            map.claim("lab/x.ipynb", "OpenAI", None),
            Some(OwnerClaim {
                owner: "@acme/data".into(),
                source: OwnerSource::Codeowners
            })
        );
        assert_eq!(
            map.claim("src/a.rs", "OpenAI", None),
            Some(OwnerClaim {
                owner: "@acme/platform".into(),
                source: OwnerSource::Codeowners
            })
        );
        let empty = OwnerMap::default();
        assert_eq!(
            empty.claim("a", "x", Some("Ann <ann@x>")),
            Some(OwnerClaim {
                owner: "Ann <ann@x>".into(),
                source: OwnerSource::CommitAuthor
            })
        );
        assert_eq!(empty.claim("a", "x", None), None);
    }

    #[test]
    fn bad_owners_files_say_where() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".mayfly")).unwrap();
        std::fs::write(
            dir.path().join(OWNERS_FILE),
            "[[owners]]\nteam = \"x\"\npath = [\"a\"]\n",
        )
        .unwrap();
        let err = OwnerMap::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("owners.toml") && err.contains("path"), "{err}");
        std::fs::write(dir.path().join(OWNERS_FILE), "[[owners]]\nteam = \"x\"\n").unwrap();
        assert!(OwnerMap::load(dir.path()).is_err());
    }
}
