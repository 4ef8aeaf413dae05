//! The matching engine: one literal prefilter pass over all rules, then
//! each candidate rule's pattern around each hit, on the raw bytes and on
//! the decoded views of the text around it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;

use crate::decode::{self, Decoder};
use crate::prefilter::{KeywordPrefilter, Prefilter};
use crate::rule::{Rule, RuleSet};
use crate::validate::{
    ValidatorKind, is_marked_placeholder, is_placeholder, shannon_entropy, undecorated,
};

/// How far either side of a keyword a one-line rule looks, at most.
const LINE_WINDOW: usize = 4096;
/// How far past a keyword a multi-line rule looks (a 4096-bit PEM key,
/// escaped, fits).
const MULTILINE_WINDOW: usize = 16 * 1024;
/// Longest span of blob bytes one match can cover.
const MAX_SPAN: usize = MULTILINE_WINDOW + LINE_WINDOW + decode::MAX_BASE64_RUN;
/// Context kept before a base64 run so keyword-anchored rules see the key
/// name (`password: <base64>`).
const BASE64_CONTEXT: usize = 256;

/// A keyword of the prefilter and the rules it wakes up.
#[derive(Debug)]
struct Keyword {
    rules: Vec<usize>,
    /// The keyword as it appears in encoded text (`%3A%2F%2F` for `://`):
    /// the window around it is always decoded.
    encoded: bool,
}

/// A match before it becomes a finding: the rule, the secret, and where
/// to report it. Its `Debug` form redacts the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct RawMatch {
    /// Index of the rule in the matcher's rule set.
    pub rule: usize,
    /// The secret's bytes (never logged; fingerprinted, then dropped).
    pub secret: Vec<u8>,
    /// The bytes of the blob that hold it, encoded or not.
    pub span: Range<usize>,
    /// The decoder whose view revealed it, if any.
    pub decoder: Option<Decoder>,
    /// Set for a near miss kept to explain it (not a finding): why the
    /// rule's check refused it.
    pub refused: Option<&'static str>,
}

impl fmt::Debug for RawMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawMatch")
            .field("rule", &self.rule)
            .field("secret", &crate::finding::redact(&self.secret))
            .field("span", &self.span)
            .field("decoder", &self.decoder)
            .finish()
    }
}

/// Buffers reused between blobs by one thread.
#[derive(Debug, Default)]
pub struct Scratch {
    candidates: Vec<(usize, usize, usize, bool)>,
    decoded: Vec<u8>,
    decoded_map: Vec<u32>,
    twice: Vec<u8>,
    twice_map: Vec<u32>,
    base64: Vec<u8>,
    view: Vec<u8>,
    pub(crate) copies: Vec<crate::copies::CopyHit>,
    /// The chunk hashes of the file being read, when the read keeps a
    /// sketch (see [`crate::sketch`]).
    pub(crate) sketch: Option<Vec<u32>>,
}

/// Runs a rule set over blobs.
#[derive(Debug)]
pub struct Matcher {
    rules: RuleSet,
    prefilter: Box<dyn Prefilter>,
    keywords: Vec<Keyword>,
    /// Keep near misses (checksum failures) as refused matches.
    explain: bool,
}

/// Why a matcher could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MatcherError {
    /// The prefilter automaton could not be built.
    #[error("cannot build the keyword prefilter: {0}")]
    Prefilter(String),
}

/// The characters URL-encoding turns into `%HH` in a keyword (the
/// prefilter matches escapes in any letter case).
const URL_ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b':')
    .add(b'/')
    .add(b'@')
    .add(b'=')
    .add(b'?')
    .add(b'&')
    .add(b'#')
    .add(b'+')
    .add(b' ')
    .add(b',')
    .add(b';')
    .add(b'"')
    .add(b'\'');

fn encoded_forms(keyword: &str) -> Vec<String> {
    let mut forms = Vec::new();
    let percent = percent_encoding::utf8_percent_encode(keyword, URL_ESCAPED).to_string();
    if percent != keyword {
        forms.push(percent);
    }
    if keyword.contains('"') || keyword.contains('/') {
        forms.push(keyword.replace('"', "\\\"").replace('/', "\\/"));
    }
    forms
}

impl Matcher {
    /// Builds the prefilter over the keywords of `rules`, with the encoded
    /// form of each keyword that URL or JSON encoding would change.
    pub fn new(rules: RuleSet, explain: bool) -> Result<Self, MatcherError> {
        Self::with_prefilter(rules, explain, KeywordPrefilter::new)
    }

    fn with_prefilter(
        rules: RuleSet,
        explain: bool,
        prefilter: fn(&[String]) -> Result<KeywordPrefilter, aho_corasick::BuildError>,
    ) -> Result<Self, MatcherError> {
        let mut index: HashMap<(String, bool), usize> = HashMap::new();
        let mut literals: Vec<String> = Vec::new();
        let mut keywords: Vec<Keyword> = Vec::new();
        for (rule_index, rule) in rules.rules().iter().enumerate() {
            for keyword in &rule.spec.keywords {
                let lower = keyword.to_ascii_lowercase();
                let forms = std::iter::once((lower.clone(), false))
                    .chain(encoded_forms(&lower).into_iter().map(|f| (f, true)));
                for key in forms {
                    let slot = *index.entry(key.clone()).or_insert_with(|| {
                        literals.push(key.0.clone());
                        keywords.push(Keyword {
                            rules: Vec::new(),
                            encoded: key.1,
                        });
                        keywords.len() - 1
                    });
                    if let Some(entry) = keywords.get_mut(slot)
                        && entry.rules.last() != Some(&rule_index)
                    {
                        entry.rules.push(rule_index);
                    }
                }
            }
        }
        let prefilter = prefilter(&literals).map_err(|e| MatcherError::Prefilter(e.to_string()))?;
        Ok(Matcher {
            rules,
            prefilter: Box::new(prefilter),
            keywords,
            explain,
        })
    }

    /// The rules, in the order their indices refer to.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    fn rule(&self, index: usize) -> Option<&Rule> {
        self.rules.rules().get(index)
    }

    /// Every match in `blob`, on the raw bytes and every decoded view,
    /// overlaps resolved, sorted by anchor.
    pub fn find(&self, blob: &[u8], scratch: &mut Scratch) -> Vec<RawMatch> {
        let mut out = Vec::new();
        self.find_raw(blob, scratch, &mut out);
        self.find_base64(blob, scratch, &mut out);
        // Near misses never compete with findings: they are kept only where
        // no finding covers their bytes.
        let near_misses: Vec<RawMatch> = if self.explain {
            let (refused, accepted) = out.drain(..).partition(|m| m.refused.is_some());
            out = accepted;
            refused
        } else {
            Vec::new()
        };
        self.resolve_overlaps(&mut out);
        for miss in near_misses {
            if !out
                .iter()
                .any(|m| m.span.start < miss.span.end && miss.span.start < m.span.end)
            {
                out.push(miss);
            }
        }
        if self.explain {
            out.sort_by_key(|m| m.span.start);
        }
        out
    }

    fn find_raw(&self, blob: &[u8], scratch: &mut Scratch, out: &mut Vec<RawMatch>) {
        let mut candidates = std::mem::take(&mut scratch.candidates);
        candidates.clear();
        self.prefilter
            .for_each_hit(blob, &mut |keyword, start, end| {
                let Some(entry) = self.keywords.get(keyword) else {
                    return;
                };
                let line = line_bounds(blob, start, end);
                for &rule_index in &entry.rules {
                    let multiline = self.rule(rule_index).is_some_and(|r| r.spec.multiline);
                    let window_end = if multiline {
                        blob.len().min(start + MULTILINE_WINDOW).max(line.end)
                    } else {
                        line.end
                    };
                    candidates.push((rule_index, line.start, window_end, entry.encoded));
                }
            });
        candidates.sort_unstable();
        let mut merged: Option<(usize, usize, usize, bool)> = None;
        for &(rule, start, end, encoded) in &candidates {
            match merged.as_mut() {
                Some(m) if m.0 == rule && start <= m.2 => {
                    m.2 = m.2.max(end);
                    m.3 |= encoded;
                }
                _ => {
                    if let Some(m) = merged.take() {
                        self.run_window(blob, m, scratch, out);
                    }
                    merged = Some((rule, start, end, encoded));
                }
            }
        }
        if let Some(m) = merged {
            self.run_window(blob, m, scratch, out);
        }
        scratch.candidates = candidates;
    }

    fn run_window(
        &self,
        blob: &[u8],
        (rule_index, start, end, _encoded): (usize, usize, usize, bool),
        scratch: &mut Scratch,
        out: &mut Vec<RawMatch>,
    ) {
        let (Some(rule), Some(window)) = (self.rule(rule_index), blob.get(start..end)) else {
            return;
        };
        self.run_rule(rule_index, rule, window, &|i| start + i, None, out);
        if memchr::memchr(b'\\', window).is_some()
            && decode::unescape(window, &mut scratch.decoded, &mut scratch.decoded_map)
        {
            let map = |decoded_map: &[u32], i: usize| {
                start + decoded_map.get(i).map_or(0, |&o| o as usize)
            };
            let first = &scratch.decoded_map;
            self.run_rule(
                rule_index,
                rule,
                &scratch.decoded,
                &|i| map(first, i),
                Some(Decoder::Escape),
                out,
            );
            // Text escaped twice (a JSON document inside a JSON string, as
            // agent transcripts store tool results).
            if memchr::memchr(b'\\', &scratch.decoded).is_some()
                && decode::unescape(&scratch.decoded, &mut scratch.twice, &mut scratch.twice_map)
            {
                let (outer, inner) = (&scratch.decoded_map, &scratch.twice_map);
                let compose = |i: usize| {
                    let mid = inner.get(i).map_or(0, |&o| o as usize);
                    map(outer, mid)
                };
                self.run_rule(
                    rule_index,
                    rule,
                    &scratch.twice,
                    &compose,
                    Some(Decoder::Escape),
                    out,
                );
            }
        }
        if memchr::memchr(b'%', window).is_some()
            && decode::percent_decode(window, &mut scratch.decoded, &mut scratch.decoded_map)
        {
            let first = &scratch.decoded_map;
            let map = |i: usize| start + first.get(i).map_or(0, |&o| o as usize);
            self.run_rule(
                rule_index,
                rule,
                &scratch.decoded,
                &map,
                Some(Decoder::Percent),
                out,
            );
        }
    }

    fn run_rule(
        &self,
        rule_index: usize,
        rule: &Rule,
        haystack: &[u8],
        to_blob: &dyn Fn(usize) -> usize,
        decoder: Option<Decoder>,
        out: &mut Vec<RawMatch>,
    ) {
        for caps in rule.regex.captures_iter(haystack) {
            let group = match rule.secret_group {
                Some(g) => caps.get(g),
                None => caps.get(0),
            };
            let Some(secret) = group else { continue };
            let bytes = secret.as_bytes();
            let verdict = verdict(rule, bytes);
            let refused = match verdict {
                Verdict::Accepted => None,
                Verdict::ChecksumWrong if self.explain => Some("its checksum is wrong"),
                _ => continue,
            };
            if !denied_by_context(rule, haystack, secret.start(), secret.end()) {
                // A key block copied as a file, an indented YAML value or an
                // escaped JSON string is one secret: fingerprint its content,
                // not its line breaks.
                let bytes = if rule.spec.multiline {
                    &normalize_lines(bytes)
                } else {
                    bytes
                };
                let last = secret.end().saturating_sub(1).max(secret.start());
                out.push(RawMatch {
                    rule: rule_index,
                    secret: bytes.to_vec(),
                    span: to_blob(secret.start())..to_blob(last) + 1,
                    decoder,
                    refused,
                });
            }
        }
    }

    fn find_base64(&self, blob: &[u8], scratch: &mut Scratch, out: &mut Vec<RawMatch>) {
        let mut runs = Vec::new();
        // One walk over the token runs: the base64 runs to decode, and the
        // chunks the file's sketch keeps when the read keeps one.
        match scratch.sketch.as_mut() {
            Some(sketch) => decode::token_runs(
                blob,
                crate::sketch::MIN_RUN,
                |start, end| crate::sketch::keep_run(blob, start, end, sketch),
                |start, end| runs.push(start..end),
            ),
            None => decode::base64_runs(blob, |start, end| runs.push(start..end)),
        }
        if runs.is_empty() {
            return;
        }
        let mut inner = Scratch::default();
        for run in runs {
            let Some(encoded) = blob.get(run.clone()) else {
                continue;
            };
            if !decode::decode_base64_text(encoded, &mut scratch.base64) {
                continue;
            }
            // The view is the text before the run on its line, then the
            // decoded bytes: `password: <base64>` reads `password: hunter2`.
            let line_start = memchr::memrchr(b'\n', blob.get(..run.start).unwrap_or_default())
                .map_or(0, |i| i + 1);
            let context_start = line_start.max(run.start.saturating_sub(BASE64_CONTEXT));
            scratch.view.clear();
            scratch
                .view
                .extend_from_slice(blob.get(context_start..run.start).unwrap_or_default());
            let prefix = scratch.view.len();
            scratch.view.extend_from_slice(&scratch.base64);
            let mut found = Vec::new();
            self.find_raw(&scratch.view, &mut inner, &mut found);
            out.extend(
                found
                    .into_iter()
                    .filter(|m| m.span.start >= prefix)
                    .map(|m| RawMatch {
                        span: run.clone(),
                        decoder: Some(Decoder::Base64),
                        ..m
                    }),
            );
        }
    }

    /// One finding per copy: the same secret seen in several views or by
    /// several rules at overlapping bytes collapses into the match of the
    /// most specific rule on the rawest view; a generic rule yields to any
    /// specific rule whose match overlaps it.
    fn resolve_overlaps(&self, out: &mut Vec<RawMatch>) {
        if out.len() < 2 {
            return;
        }
        let generic = |m: &RawMatch| self.rule(m.rule).is_some_and(|r| r.spec.generic);
        let mut ranked: Vec<(bool, bool, usize, RawMatch)> = out
            .drain(..)
            .map(|m| (generic(&m), m.decoder.is_some(), m.rule, m))
            .collect();
        ranked.sort_by_key(|r| (r.0, r.1, r.2, r.3.span.start));
        // Kept matches by span start; spans are shorter than MAX_SPAN, so
        // only starts within MAX_SPAN before a match can overlap it.
        let mut kept: BTreeMap<usize, Vec<(bool, RawMatch)>> = BTreeMap::new();
        for (is_generic, _, _, m) in ranked {
            let lo = m.span.start.saturating_sub(MAX_SPAN);
            let shadowed = kept
                .range(lo..m.span.end)
                .flat_map(|(_, v)| v)
                .any(|(k_generic, k)| {
                    let overlap = k.span.start < m.span.end && m.span.start < k.span.end;
                    overlap && (k.secret == m.secret || (is_generic && !k_generic))
                });
            if !shadowed {
                kept.entry(m.span.start).or_default().push((is_generic, m));
            }
        }
        out.extend(kept.into_values().flatten().map(|(_, m)| m));
        out.sort_by_key(|m| (m.span.start, m.rule));
    }
}

/// True when the line of a match holds one of the rule's `deny_context` words.
fn denied_by_context(rule: &Rule, haystack: &[u8], start: usize, end: usize) -> bool {
    if rule.deny_context.is_empty() {
        return false;
    }
    let line_start =
        memchr::memrchr(b'\n', haystack.get(..start).unwrap_or_default()).map_or(0, |i| i + 1);
    let line_end = memchr::memchr(b'\n', haystack.get(end..).unwrap_or_default())
        .map_or(haystack.len(), |i| end + i);
    let line = haystack
        .get(line_start..line_end)
        .unwrap_or_default()
        .to_ascii_lowercase();
    rule.deny_context
        .iter()
        .any(|word| memchr::memmem::find(&line, word).is_some())
}

/// The content of a key block, whatever holds its lines: line breaks (raw
/// or escaped) and stray escapes removed, and each line stripped of the
/// decoration around it (indentation, comment markers `#` `//` `>` `*`,
/// the quotes, commas and `+` of a string list or concatenation), so a
/// block pasted into a notebook's JSON, a comment or a source string
/// fingerprints as the same secret as the file it came from.
fn normalize_lines(secret: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(secret.len());
    let mut line: Vec<u8> = Vec::new();
    let mut i = 0;
    while let Some(&b) = secret.get(i) {
        let escaped_break = b == b'\\' && matches!(secret.get(i + 1), Some(b'n' | b'r'));
        if b == b'\n' || b == b'\r' || escaped_break {
            out.extend_from_slice(undecorated(&line));
            line.clear();
            i += if escaped_break { 2 } else { 1 };
            continue;
        }
        if b != b'\\' {
            line.push(b);
        }
        i += 1;
    }
    out.extend_from_slice(undecorated(&line));
    out
}

/// What the checks say of a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Accepted,
    /// A checksummed format whose checksum does not match: worth
    /// explaining (`--verbose`), never a finding.
    ChecksumWrong,
    Refused,
}

fn verdict(rule: &Rule, secret: &[u8]) -> Verdict {
    if accept(rule, secret) {
        return Verdict::Accepted;
    }
    match rule.spec.validator {
        Some(v)
            if v.is_checksum()
                && !is_placeholder(secret)
                && rule
                    .spec
                    .min_entropy
                    .is_none_or(|min| shannon_entropy(secret) >= min) =>
        {
            Verdict::ChecksumWrong
        }
        _ => Verdict::Refused,
    }
}

fn accept(rule: &Rule, secret: &[u8]) -> bool {
    // A keyword-anchored value that is short base64 (a Kubernetes Secret's
    // `password: Y2hhbmdlbWU=`) is judged by what it decodes to.
    if rule.spec.generic
        && let Some(text) = decode::short_base64_text(secret)
        && (is_placeholder(&text) || !ValidatorKind::Password.check(&text))
    {
        return false;
    }
    let placeholder = match rule.spec.validator {
        // A key block is judged by its content, not by the quote markers
        // (`> `) or comment stars around its lines.
        Some(v) if v.decodes_structure() && rule.spec.multiline => {
            is_marked_placeholder(&normalize_lines(secret))
        }
        Some(v) if v.decodes_structure() => is_marked_placeholder(secret),
        _ => is_placeholder(secret),
    };
    !placeholder
        && rule
            .spec
            .min_entropy
            .is_none_or(|min| shannon_entropy(secret) >= min)
        && rule.spec.validator.is_none_or(|v| v.check(secret))
}

/// The line around `start..end`, at most [`LINE_WINDOW`] bytes either side.
fn line_bounds(blob: &[u8], start: usize, end: usize) -> Range<usize> {
    let lo = start.saturating_sub(LINE_WINDOW);
    let hi = blob.len().min(end + LINE_WINDOW);
    let line_start =
        memchr::memrchr(b'\n', blob.get(lo..start).unwrap_or_default()).map_or(lo, |i| lo + i + 1);
    let line_end =
        memchr::memchr(b'\n', blob.get(end..hi).unwrap_or_default()).map_or(hi, |i| end + i);
    line_start..line_end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher() -> Matcher {
        Matcher::new(RuleSet::builtin().unwrap(), false).unwrap()
    }

    fn ids(m: &Matcher, text: &str) -> Vec<String> {
        m.find(text.as_bytes(), &mut Scratch::default())
            .iter()
            .map(|r| m.rule(r.rule).unwrap().spec.id.clone())
            .collect()
    }

    #[test]
    fn specific_rule_shadows_generic() {
        let m = matcher();
        let found = ids(
            &m,
            "GITHUB_TOKEN=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\n", // mayfly:allow (test fixture)
        );
        assert_eq!(found, vec!["github-pat-classic"]);
    }

    #[test]
    fn decodes_views() {
        let m = matcher();
        let token = "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"; // mayfly:allow (test fixture)
        let b64 = "Z2hwX2FVVXlZenFNWjJuU0hXYUJpRGpkeFN5OUM3REdhNDN5WGQ4TQ=="; // mayfly:allow (test fixture)
        let text = format!("line one\n  token: {b64}\n");
        let found = m.find(text.as_bytes(), &mut Scratch::default());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].decoder, Some(Decoder::Base64));
        assert_eq!(found[0].secret, token.as_bytes());
        assert_eq!(found[0].span.start, text.find(b64).unwrap());
    }

    fn examples() -> Vec<String> {
        RuleSet::builtin()
            .unwrap()
            .rules()
            .iter()
            .flat_map(|r| r.spec.examples.iter().chain(&r.spec.negative_examples))
            .cloned()
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// The lane-walked prefilter and the one-walk search it replaced
        /// give the same matches, on text with the rules' own examples
        /// (keys, near misses and placeholders) planted among noise.
        #[test]
        fn lanes_match_like_one_walk(
            parts in proptest::collection::vec(
                (0usize..10_000, "[ -~\n]{0,300}"),
                1..40,
            )
        ) {
            let examples = examples();
            let mut text = String::new();
            for (pick, noise) in &parts {
                text.push_str(noise);
                text.push_str(&examples[pick % examples.len()]);
            }
            let lanes = matcher();
            let one_walk = Matcher::with_prefilter(
                RuleSet::builtin().unwrap(),
                false,
                KeywordPrefilter::one_walk,
            )
            .unwrap();
            let found = lanes.find(text.as_bytes(), &mut Scratch::default());
            let expected = one_walk.find(text.as_bytes(), &mut Scratch::default());
            proptest::prop_assert_eq!(found, expected);
        }
    }

    #[test]
    fn empty_and_binary_input() {
        let m = matcher();
        assert!(m.find(b"", &mut Scratch::default()).is_empty());
        let noise: Vec<u8> = (0..10_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let _ = m.find(&noise, &mut Scratch::default());
    }
}
