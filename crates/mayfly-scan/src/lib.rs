//! Discovery of copied credentials.
//!
//! `mayfly-scan` turns bytes into findings: [`source`] walks directories,
//! reads files, streams and SQLite databases; [`surface`] labels where each
//! blob lives; [`matcher`] runs a literal prefilter over all [`rule`]s at
//! once and then each candidate rule's pattern, on the raw bytes and on the
//! views the [`decode`] module derives; [`validate`] drops placeholders and
//! malformed matches; [`fingerprint`] identifies each secret without storing
//! it, so copies group into one secret; [`copies`] finds every other
//! occurrence of a found (or custody) value, re-reading only the files a
//! [`sketch`] of the first read cannot rule out; [`suppress`] applies baselines,
//! ignore files and inline allows; [`output`] writes text, JSON, SARIF and
//! CSV. The crate has no database and no network.
//!
//! ```
//! use mayfly_scan::{fingerprint::FingerprintKey, rule::RuleSet, scan::{Scanner, ScanOptions}};
//!
//! let rules = RuleSet::builtin().unwrap();
//! let scanner = Scanner::new(rules, FingerprintKey::from_bytes(b"a key shared by the organisation").unwrap(), ScanOptions::default()).unwrap();
//! let token = "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"; // mayfly:allow (a made-up token)
//! let findings = scanner.scan_bytes("config.py", format!("TOKEN = '{token}'\n").as_bytes());
//! assert_eq!(findings.len(), 1);
//! assert_eq!(findings[0].rule.id, "github-pat-classic");
//! assert!(!findings[0].preview.contains(token));
//! ```

#[cfg(feature = "archive")]
mod archive;
pub mod copies;
pub mod decode;
pub mod diff;
pub mod finding;
pub mod fingerprint;
#[cfg(feature = "git")]
pub mod git;
pub mod host;
pub mod matcher;
pub mod output;
pub mod prefilter;
pub mod rule;
pub mod scan;
pub mod sketch;
pub mod source;
pub mod suppress;
pub mod surface;
pub mod time;
pub mod tree;
pub mod validate;

#[cfg(feature = "sqlite")]
mod sqlite;
