//! The scanner: options, statistics, and the path from a blob's matches
//! to findings (fingerprints, redaction, inline and per-path suppression).

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::copies::{CopyHit, CopySearch, SecretBytes};
use crate::decode::Decoder;
use crate::finding::{Cell, Finding, FoundBy, Location, redact};
use crate::fingerprint::{Fingerprint, FingerprintKey};
use crate::matcher::{Matcher, MatcherError, Scratch};
use crate::rule::{RuleInfo, RuleSet};
use crate::suppress::{INLINE_ALLOW, PathRules, Suppressed};
use crate::surface::{Surface, classify};

/// Default size above which a file is skipped (and reported): 100 MiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 100 * 1024 * 1024;

/// What to scan and how.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Files larger than this are skipped and reported.
    pub max_file_size: u64,
    /// Follow symbolic links while walking (loops are detected and reported).
    pub follow_symlinks: bool,
    /// Worker threads; 0 uses every core.
    pub threads: usize,
    /// Keep the plaintext of each secret in its finding.
    pub reveal_secrets: bool,
    /// Rules enabled or disabled per path glob.
    pub path_rules: PathRules,
    /// Keep the near misses: candidates a rule's shape matched but its
    /// checksum refused (`--verbose`).
    pub explain: bool,
    /// Keep, in a history scan, a sketch of each path's blobs so that the
    /// copies pass reads again only those that may hold a copy (set when a
    /// copies pass will follow).
    pub sketch: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            follow_symlinks: false,
            threads: 0,
            reveal_secrets: false,
            path_rules: PathRules::default(),
            explain: false,
            sketch: false,
        }
    }
}

/// A file that was skipped for its size.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct SkippedFile {
    /// The file.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
}

/// An input that could not be scanned, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ScanIssue {
    /// The input.
    pub path: String,
    /// What went wrong (never any content of the file).
    pub error: String,
}

/// What a scan covered and what it could not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScanStats {
    /// Text files (and streams) scanned.
    pub files_scanned: u64,
    /// Bytes scanned.
    pub bytes_scanned: u64,
    /// SQLite databases scanned.
    pub databases_scanned: u64,
    /// Database cells scanned.
    pub cells_scanned: u64,
    /// Archives opened (nested ones included).
    pub archives_scanned: u64,
    /// Files skipped because their content is binary.
    pub skipped_binary: u64,
    /// Symbolic links not followed.
    pub skipped_symlinks: u64,
    /// Devices, pipes and sockets skipped.
    pub skipped_special: u64,
    /// Files skipped for their size.
    pub skipped_too_large: Vec<SkippedFile>,
    /// Paths given that do not exist.
    pub missing: Vec<String>,
    /// Inputs that could not be read (permissions, loops, I/O errors, corrupt databases).
    pub errors: Vec<ScanIssue>,
    /// Findings removed by each suppression.
    pub suppressed: Suppressed,
    /// Near misses (with `explain`), at most [`MAX_NEAR_MISSES`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub near_misses: Vec<NearMiss>,
}

/// Most near misses a report keeps.
pub const MAX_NEAR_MISSES: usize = 100;

/// A candidate shaped like a rule's secret that its checksum refused: a
/// mistyped, truncated or made-up token, shown with `--verbose`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct NearMiss {
    /// Where it is.
    pub path: String,
    /// 1-based line.
    pub line: u64,
    /// The rule whose shape it has.
    pub rule_id: String,
    /// The rule's name (`GitHub personal access token (classic)`).
    pub rule_name: String,
    /// Redacted.
    pub preview: String,
    /// Why it was refused.
    pub reason: &'static str,
}

impl ScanStats {
    pub(crate) fn merge(&mut self, other: ScanStats) {
        self.files_scanned += other.files_scanned;
        self.bytes_scanned += other.bytes_scanned;
        self.databases_scanned += other.databases_scanned;
        self.cells_scanned += other.cells_scanned;
        self.archives_scanned += other.archives_scanned;
        self.skipped_binary += other.skipped_binary;
        self.skipped_symlinks += other.skipped_symlinks;
        self.skipped_special += other.skipped_special;
        self.skipped_too_large.extend(other.skipped_too_large);
        self.missing.extend(other.missing);
        self.errors.extend(other.errors);
        self.suppressed.baseline += other.suppressed.baseline;
        self.suppressed.ignore_file += other.suppressed.ignore_file;
        self.suppressed.inline += other.suppressed.inline;
        self.suppressed.path_rule += other.suppressed.path_rule;
        let room = MAX_NEAR_MISSES.saturating_sub(self.near_misses.len());
        self.near_misses
            .extend(other.near_misses.into_iter().take(room));
    }

    /// Sorts the lists, so reports do not depend on thread timing.
    pub(crate) fn sort(&mut self) {
        self.skipped_too_large.sort();
        self.missing.sort();
        self.errors.sort();
        self.near_misses.sort();
    }
}

/// The result of a scan.
#[derive(Debug, Clone, Default)]
pub struct ScanReport {
    /// Every copy found, sorted by location.
    pub findings: Vec<Finding>,
    /// Coverage and problems.
    pub stats: ScanStats,
}

impl ScanReport {
    /// Adds another scan's findings and coverage to this one.
    pub fn merge(&mut self, other: ScanReport) {
        self.findings.extend(other.findings);
        self.stats.merge(other.stats);
        self.sort();
    }

    /// Sorts findings by location and the stats' lists, so reports do not
    /// depend on thread timing.
    pub(crate) fn sort(&mut self) {
        self.findings
            .sort_by(|a, b| (&a.location, &a.rule.id).cmp(&(&b.location, &b.rule.id)));
        self.stats.sort();
    }
}

/// Receives progress while a scan runs (a terminal progress bar).
pub trait Progress: Sync {
    /// One more input done, of `bytes` bytes.
    fn advance(&self, bytes: u64);
}

/// Progress that goes nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn advance(&self, _bytes: u64) {}
}

/// Why a scanner could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The matcher could not be built from the rules.
    #[error(transparent)]
    Matcher(#[from] MatcherError),
}

/// Where a blob comes from.
#[derive(Debug, Clone)]
pub(crate) struct Origin<'a> {
    pub path: &'a str,
    pub surface: Surface,
    pub cell: Option<Cell>,
}

/// Scans blobs, files, trees, databases and streams with one rule set.
#[derive(Debug)]
pub struct Scanner {
    pub(crate) matcher: Matcher,
    key: FingerprintKey,
    pub(crate) options: ScanOptions,
    /// Set for the copies pass: blobs are searched for these values only.
    pub(crate) copies: Option<CopySearch>,
    /// The first pass's history walks, which the copies pass reuses.
    #[cfg(feature = "git")]
    pub(crate) walks: std::sync::Mutex<Vec<crate::git::Walked>>,
}

impl Scanner {
    /// A scanner over `rules`, fingerprinting under `key`.
    pub fn new(
        rules: RuleSet,
        key: FingerprintKey,
        options: ScanOptions,
    ) -> Result<Self, ScanError> {
        Ok(Scanner {
            matcher: Matcher::new(rules, options.explain)?,
            key,
            options,
            copies: None,
            #[cfg(feature = "git")]
            walks: std::sync::Mutex::default(),
        })
    }

    /// Turns this scanner into the copies pass (or back, with `None`):
    /// reading the same inputs again then yields every occurrence of the
    /// searched values, found by [`FoundBy::Copy`]; merge them into the
    /// first read's findings with [`CopySearch::merge`].
    /// Returns the search that was set.
    pub fn set_copy_search(&mut self, search: Option<CopySearch>) -> Option<CopySearch> {
        #[cfg(feature = "git")]
        if search.is_none() {
            // The pass is over: the walks it could reuse are not needed.
            self.walks
                .get_mut()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        }
        std::mem::replace(&mut self.copies, search)
    }

    /// Scanning threads: the options' count, or one per core.
    pub(crate) fn threads(&self) -> usize {
        match self.options.threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }

    /// The search of the copies pass, while one is set.
    pub fn copy_search(&self) -> Option<&CopySearch> {
        self.copies.as_ref()
    }

    /// The rules in use.
    pub fn rules(&self) -> &RuleSet {
        self.matcher.rules()
    }

    /// The fingerprint key in use.
    pub fn key(&self) -> &FingerprintKey {
        &self.key
    }

    /// Scans one in-memory blob named `path` (the name decides its surface).
    pub fn scan_bytes(&self, path: &str, bytes: &[u8]) -> Vec<Finding> {
        let head = bytes.get(..8192).unwrap_or(bytes);
        let origin = Origin {
            path,
            surface: classify(Path::new(path), head),
            cell: None,
        };
        let mut findings = Vec::new();
        let mut stats = ScanStats::default();
        self.scan_blob(
            bytes,
            &origin,
            0,
            bytes.len(),
            &mut Scratch::default(),
            &mut findings,
            &mut stats,
        );
        findings
    }

    /// Turns the matches in `blob` whose anchor lies before `limit` into
    /// findings. `line_base` is the number of lines before `blob` in its
    /// file (for chunked reads).
    #[expect(
        clippy::too_many_arguments,
        reason = "the hot path: kept flat on purpose"
    )]
    pub(crate) fn scan_blob(
        &self,
        blob: &[u8],
        origin: &Origin<'_>,
        line_base: u64,
        limit: usize,
        scratch: &mut Scratch,
        out: &mut Vec<Finding>,
        stats: &mut ScanStats,
    ) {
        if let Some(search) = &self.copies {
            return self.scan_copies(search, blob, origin, line_base, limit, scratch, out, stats);
        }
        let matches = self.matcher.find(blob, scratch);
        crate::sketch::cap(&mut scratch.sketch);
        if matches.is_empty() {
            return;
        }
        let rules = self.matcher.rules().rules();
        let mut lines = Lines::new(blob, line_base);
        for m in matches.into_iter().filter(|m| m.span.start < limit) {
            let Some(rule) = rules.get(m.rule) else {
                continue;
            };
            if !self.enabled_at(&rule.spec.id, origin, stats) {
                continue;
            }
            let Some((line, column)) = lines.place(m.span.start, stats) else {
                continue;
            };
            if let Some(reason) = m.refused {
                if stats.near_misses.len() < MAX_NEAR_MISSES {
                    stats.near_misses.push(NearMiss {
                        path: origin.path.to_owned(),
                        line,
                        rule_id: rule.spec.id.clone(),
                        rule_name: rule.spec.name.clone(),
                        preview: redact(&m.secret),
                        reason,
                    });
                }
                continue;
            }
            let mut finding = self.finding(
                &rule.info,
                self.key.fingerprint(&m.secret),
                &m.secret,
                origin,
                (line, column),
                m.decoder,
            );
            // Kept in memory for the copies pass and for validation only.
            if rule.info.confident || rule.info.verify.is_some() {
                finding.value = Some(SecretBytes::new(m.secret));
            }
            out.push(finding);
        }
    }

    /// False (and counted) when a path rule disables `rule_id` at `origin`.
    fn enabled_at(&self, rule_id: &str, origin: &Origin<'_>, stats: &mut ScanStats) -> bool {
        if self.options.path_rules.is_empty()
            || self.options.path_rules.enabled(rule_id, origin.path, true)
        {
            return true;
        }
        stats.suppressed.path_rule += 1;
        false
    }

    fn finding(
        &self,
        rule: &Arc<RuleInfo>,
        fingerprint: Fingerprint,
        secret: &[u8],
        origin: &Origin<'_>,
        (line, column): (u64, u64),
        decoder: Option<Decoder>,
    ) -> Finding {
        Finding {
            rule: rule.clone(),
            fingerprint,
            preview: redact(secret),
            secret: self
                .options
                .reveal_secrets
                .then(|| String::from_utf8_lossy(secret).into_owned()),
            location: Location {
                path: origin.path.to_owned(),
                line,
                column,
                surface: origin.surface,
                decoder,
                cell: origin.cell.clone(),
                commit: None,
                blob: None,
                present_at_head: None,
                uncommitted: false,
                tool: None,
                found_by: FoundBy::Rule,
            },
            custody: None,
            validation: None,
            value: None,
        }
    }

    /// The copies pass over one blob: every occurrence of a searched value
    /// whose start lies before `limit`.
    #[expect(
        clippy::too_many_arguments,
        reason = "the same flat signature as scan_blob"
    )]
    fn scan_copies(
        &self,
        search: &CopySearch,
        blob: &[u8],
        origin: &Origin<'_>,
        line_base: u64,
        limit: usize,
        scratch: &mut Scratch,
        out: &mut Vec<Finding>,
        stats: &mut ScanStats,
    ) {
        let mut hits: Vec<CopyHit> = std::mem::take(&mut scratch.copies);
        hits.clear();
        search.find(blob, &mut hits);
        let mut lines = Lines::new(blob, line_base);
        for hit in hits.iter().filter(|h| h.start < limit) {
            let Some((rule, fingerprint, value)) = search.known(hit) else {
                continue;
            };
            if !self.enabled_at(&rule.id, origin, stats) {
                continue;
            }
            let Some(place) = lines.place(hit.start, stats) else {
                continue;
            };
            let mut finding = self.finding(rule, fingerprint, value, origin, place, hit.decoder);
            finding.location.found_by = FoundBy::Copy;
            out.push(finding);
        }
        scratch.copies = hits;
    }
}

/// Lines and columns of a blob's matches, counted incrementally (matches
/// come sorted by anchor).
struct Lines<'b> {
    blob: &'b [u8],
    counted_to: usize,
    line: u64,
}

impl<'b> Lines<'b> {
    fn new(blob: &'b [u8], line_base: u64) -> Self {
        Lines {
            blob,
            counted_to: 0,
            line: line_base + 1,
        }
    }

    /// The 1-based line and column of `start`, or `None` (counted) when
    /// its line carries an inline allow.
    fn place(&mut self, start: usize, stats: &mut ScanStats) -> Option<(u64, u64)> {
        let blob = self.blob;
        let before = blob.get(self.counted_to..start).unwrap_or_default();
        self.line += memchr::memchr_iter(b'\n', before).count() as u64;
        self.counted_to = self.counted_to.max(start);
        let line_start =
            memchr::memrchr(b'\n', blob.get(..start).unwrap_or_default()).map_or(0, |i| i + 1);
        let line_end = memchr::memchr(b'\n', blob.get(start..).unwrap_or_default())
            .map_or(blob.len(), |i| start + i);
        let text = blob.get(line_start..line_end).unwrap_or_default();
        if memchr::memmem::find(text, INLINE_ALLOW.as_bytes()).is_some() {
            stats.suppressed.inline += 1;
            return None;
        }
        Some((self.line, (start - line_start + 1) as u64))
    }
}

/// A rule example that does not behave as its rule says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExampleFailure {
    /// The rule.
    pub rule: String,
    /// Where the rule was loaded from.
    pub origin: String,
    /// 1-based index of the example in its list.
    pub index: usize,
    /// True for a negative example that yielded a finding.
    pub negative: bool,
    /// The rules that did fire on it.
    pub found: Vec<String>,
}

impl std::fmt::Display for ExampleFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.negative {
            write!(
                f,
                "{}: rule {}: negative example {} yields a finding",
                self.origin, self.rule, self.index
            )
        } else {
            write!(
                f,
                "{}: rule {}: example {} yields no finding of this rule (found: {})",
                self.origin,
                self.rule,
                self.index,
                if self.found.is_empty() {
                    "nothing".to_owned()
                } else {
                    self.found.join(", ")
                }
            )
        }
    }
}

impl Scanner {
    /// Runs every rule against its own examples and negative examples,
    /// through the whole engine (prefilter, pattern, validators, overlaps).
    pub fn check_rule_examples(&self) -> Vec<ExampleFailure> {
        let mut failures = Vec::new();
        for rule in self.rules().rules() {
            let cases = rule
                .spec
                .examples
                .iter()
                .map(|e| (e, false))
                .enumerate()
                .chain(
                    rule.spec
                        .negative_examples
                        .iter()
                        .map(|e| (e, true))
                        .enumerate(),
                );
            for (index, (example, negative)) in cases {
                let found: Vec<String> = self
                    .scan_bytes("rule-example.txt", example.as_bytes())
                    .into_iter()
                    .map(|f| f.rule.id.clone())
                    .collect();
                let fired = found.contains(&rule.spec.id);
                if fired == negative {
                    failures.push(ExampleFailure {
                        rule: rule.spec.id.clone(),
                        origin: rule.origin.clone(),
                        index: index + 1,
                        negative,
                        found,
                    });
                }
            }
        }
        failures
    }
}
