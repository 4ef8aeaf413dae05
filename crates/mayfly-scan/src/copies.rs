//! The copies pass: once a scan has found a secret with a confident rule,
//! every other occurrence of its value in the scanned set is a copy,
//! wherever it stands (a sentence, a log line, a CSV cell, an encoded
//! view), whether or not any rule would match it there. Values held in
//! custody are searched the same way, so a migrated key pasted again is
//! caught at once.
//!
//! The pass is one multi-literal search (Aho-Corasick, leftmost-longest,
//! with its SIMD prefilter) over every blob the first pass read: each value
//! in its raw form, JSON-escaped (`\/`), percent-encoded and base64-encoded
//! at the three byte alignments.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::decode::Decoder;
use crate::finding::Finding;
use crate::fingerprint::{Fingerprint, FingerprintKey};
use crate::rule::{Nhi, RuleInfo, Severity};
use crate::sketch::SketchQuery;

/// Shortest value searched as a literal: shorter values (a PIN, a short
/// password) would match unrelated text.
pub const MIN_COPY_LEN: usize = 16;

/// The rule id of a value found only because it is held in custody.
pub const CUSTODY_RULE_ID: &str = "custody-key-exposed";

/// A secret's plaintext, kept in memory only for the copies pass; wiped
/// when dropped, never shown by `Debug`.
#[derive(Clone, Default)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(bytes))
    }

    /// The plaintext.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes({} bytes)", self.0.len())
    }
}

/// A secret held in custody, as the scan searches for it.
#[derive(Debug, Clone)]
pub struct CustodySecret {
    /// The custody entry's name (`openai`).
    pub name: String,
    /// The issuing service (`OpenAI`).
    pub provider: String,
    /// The current value.
    pub value: SecretBytes,
}

/// A value the copies pass searches for.
#[derive(Debug)]
struct Known {
    value: SecretBytes,
    fingerprint: Fingerprint,
    rule: Arc<RuleInfo>,
    custody: Option<String>,
}

/// Bits of the sampled 8-gram filter: 2^22 bits (512 KiB, in cache).
const FILTER_BITS: u32 = 22;

/// A filter over 8-byte windows of every searched form. Every form is at
/// least 16 bytes long, so each occurrence in a blob covers a whole 8-byte
/// chunk at a position that is a multiple of 8, at one of eight window
/// offsets the filter holds: testing one window in eight finds every
/// occurrence, at a fraction of an automaton's cost; only the chunks it
/// passes are searched for real.
#[derive(Debug)]
struct Sampled {
    bits: Vec<u64>,
    /// The windows themselves: a window the bits pass is confirmed here,
    /// so a region is searched only around a real 8-byte match.
    windows: HashSet<u64>,
    longest: usize,
}

impl Sampled {
    fn slot(window: u64) -> (usize, u64) {
        let h = window.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - FILTER_BITS);
        ((h >> 6) as usize, 1u64 << (h & 63))
    }

    fn new(forms: &[Vec<u8>]) -> Sampled {
        let mut bits = vec![0u64; 1 << (FILTER_BITS - 6)];
        let mut windows = HashSet::new();
        for form in forms {
            // An occurrence covers an aligned chunk at every eighth offset
            // of the form, starting within its first eight: any eight
            // consecutive window offsets that end early enough hold one.
            // The middle ones are taken, not the prefix (`https://`,
            // `sk-proj-`) that unrelated text shares.
            let start = form.len().saturating_sub(15) / 2;
            let middle = form
                .get(start..(start + 15).min(form.len()))
                .unwrap_or(form);
            for window in middle.windows(8) {
                let mut word = [0u8; 8];
                word.copy_from_slice(window);
                let word = u64::from_le_bytes(word);
                let (index, bit) = Self::slot(word);
                if let Some(slot) = bits.get_mut(index) {
                    *slot |= bit;
                }
                windows.insert(word);
            }
        }
        Sampled {
            bits,
            windows,
            longest: forms.iter().map(Vec::len).max().unwrap_or(0),
        }
    }

    /// The regions of `blob` that may hold an occurrence, merged, in order.
    fn candidates(&self, blob: &[u8], mut region: impl FnMut(usize, usize)) {
        let reach = self.longest;
        let mut open: Option<(usize, usize)> = None;
        for (i, chunk) in blob.chunks_exact(8).enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let word = u64::from_le_bytes(word);
            let (index, bit) = Self::slot(word);
            if self.bits.get(index).is_none_or(|slot| slot & bit == 0)
                || !self.windows.contains(&word)
            {
                continue;
            }
            let at = i * 8;
            let (start, end) = (at.saturating_sub(reach), (at + reach).min(blob.len()));
            open = match open {
                Some((s, e)) if start <= e => Some((s, e.max(end))),
                Some((s, e)) => {
                    region(s, e);
                    Some((start, end))
                }
                None => Some((start, end)),
            };
        }
        if let Some((s, e)) = open {
            region(s, e);
        }
    }
}

/// The literal search of the copies pass.
#[derive(Debug)]
pub struct CopySearch {
    sampled: Sampled,
    /// What rules a file out by its first read's sketch, when every form
    /// can be ruled out that way.
    sketch: Option<SketchQuery>,
    automaton: AhoCorasick,
    /// For each literal: the known value it encodes, and how.
    literals: Vec<(usize, Option<Decoder>)>,
    known: Vec<Known>,
}

/// A copy found by the literal search, before it becomes a finding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CopyHit {
    pub start: usize,
    pub known: usize,
    pub decoder: Option<Decoder>,
}

/// Why the copies pass could not be prepared.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the copies search over {count} values: {reason}")]
pub struct CopySearchError {
    /// How many values were to be searched.
    pub count: usize,
    /// The automaton builder's message.
    pub reason: String,
}

fn custody_rule(provider: &str) -> Arc<RuleInfo> {
    Arc::new(RuleInfo {
        id: CUSTODY_RULE_ID.to_owned(),
        name: "Custody key exposed".to_owned(),
        provider: provider.to_owned(),
        description: "A value Mayfly holds in custody appears outside it: the key was pasted again after it was migrated, so the proxy no longer is the only holder. Rotate it (`mayfly custody rotate`) and delete this copy.".to_owned(),
        severity: Severity::Critical,
        nhi: vec![Nhi::NHI2, Nhi::NHI9],
        confident: false,
        verify: None,
        revoke: None,
    })
}

/// The forms a value takes in text: raw, JSON-escaped, percent-encoded,
/// and the stable middle of its base64 (standard and URL-safe) at each
/// of the three byte alignments.
fn encoded_forms(value: &[u8]) -> Vec<(Vec<u8>, Option<Decoder>)> {
    let mut forms: Vec<(Vec<u8>, Option<Decoder>)> = vec![(value.to_vec(), None)];
    if value.contains(&b'/') {
        let mut escaped = Vec::with_capacity(value.len() + 8);
        for &b in value {
            if b == b'/' {
                escaped.push(b'\\');
            }
            escaped.push(b);
        }
        forms.push((escaped, Some(Decoder::Escape)));
    }
    let percent: Vec<u8> = percent_encoding::percent_encode(value, URL_RESERVED)
        .to_string()
        .into_bytes();
    if percent != value {
        forms.push((percent, Some(Decoder::Percent)));
    }
    for shift in 0..3usize {
        let mut padded = vec![0u8; shift];
        padded.extend_from_slice(value);
        let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&padded);
        // Characters whose 6 bits all come from the value's bytes.
        let first = (8 * shift).div_ceil(6);
        let last = 8 * (shift + value.len()) / 6;
        let Some(core) = encoded.get(first..last) else {
            continue;
        };
        if core.len() < MIN_COPY_LEN {
            continue;
        }
        let url_safe = core.replace('+', "-").replace('/', "_");
        if url_safe != core {
            forms.push((url_safe.into_bytes(), Some(Decoder::Base64)));
        }
        forms.push((core.as_bytes().to_vec(), Some(Decoder::Base64)));
    }
    forms.sort();
    forms.dedup_by(|a, b| a.0 == b.0);
    forms
}

/// The characters a URL query or form encodes in a secret.
const URL_RESERVED: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b',')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'=')
    .add(b'?')
    .add(b'@');

impl CopySearch {
    /// The search for the values of `findings` found by confident rules
    /// and for the values in `custody`; `None` when there is nothing to
    /// search for.
    pub fn new(
        findings: &[Finding],
        custody: Vec<CustodySecret>,
        key: &FingerprintKey,
    ) -> Result<Option<CopySearch>, CopySearchError> {
        let mut by_fingerprint: BTreeMap<Fingerprint, Known> = BTreeMap::new();
        for finding in findings {
            let Some(value) = finding.value.as_ref() else {
                continue;
            };
            if !finding.rule.confident || value.expose().len() < MIN_COPY_LEN {
                continue;
            }
            by_fingerprint
                .entry(finding.fingerprint)
                .or_insert_with(|| Known {
                    value: value.clone(),
                    fingerprint: finding.fingerprint,
                    rule: finding.rule.clone(),
                    custody: None,
                });
        }
        for secret in custody {
            if secret.value.expose().len() < MIN_COPY_LEN {
                continue;
            }
            let fingerprint = key.fingerprint(secret.value.expose());
            let known = by_fingerprint.entry(fingerprint).or_insert_with(|| Known {
                value: secret.value.clone(),
                fingerprint,
                rule: custody_rule(&secret.provider),
                custody: None,
            });
            known.custody = Some(secret.name);
        }
        if by_fingerprint.is_empty() {
            return Ok(None);
        }
        let known: Vec<Known> = by_fingerprint.into_values().collect();
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut literals = Vec::new();
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        for (index, entry) in known.iter().enumerate() {
            for (form, decoder) in encoded_forms(entry.value.expose()) {
                if seen.insert(form.clone()) {
                    patterns.push(form);
                    literals.push((index, decoder));
                }
            }
        }
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .map_err(|e| CopySearchError {
                count: known.len(),
                reason: e.to_string(),
            })?;
        let sampled = Sampled::new(&patterns);
        let sketch = SketchQuery::new(&patterns);
        // The encoded forms are secrets too: wipe the builder's input.
        for mut pattern in patterns {
            zeroize::Zeroize::zeroize(&mut pattern);
        }
        Ok(Some(CopySearch {
            sampled,
            sketch,
            automaton,
            literals,
            known,
        }))
    }

    /// Every occurrence of a known value in `blob`, in order.
    pub(crate) fn find(&self, blob: &[u8], out: &mut Vec<CopyHit>) {
        self.sampled.candidates(blob, |start, end| {
            let Some(region) = blob.get(start..end) else {
                return;
            };
            for m in self.automaton.find_iter(region) {
                if let Some(&(known, decoder)) = self.literals.get(m.pattern().as_usize()) {
                    out.push(CopyHit {
                        start: start + m.start(),
                        known,
                        decoder,
                    });
                }
            }
        });
    }

    /// The test of a file's sketch, when every form can be ruled out by
    /// one (see [`crate::sketch`]).
    pub(crate) fn sketch_query(&self) -> Option<&SketchQuery> {
        self.sketch.as_ref()
    }

    /// What a finding made from `hit` names: the rule, the fingerprint and
    /// the value.
    pub(crate) fn known(&self, hit: &CopyHit) -> Option<(&Arc<RuleInfo>, Fingerprint, &[u8])> {
        self.known
            .get(hit.known)
            .map(|k| (&k.rule, k.fingerprint, k.value.expose()))
    }

    /// Adds the copies the pass found (`copies`, a second read of the
    /// same inputs) to `findings` (the first read's), leaving out those
    /// the first read already reported at the same place, and labels
    /// every copy of a custody value with its entry.
    pub fn merge(&self, findings: &mut Vec<Finding>, copies: Vec<Finding>) {
        let place = |f: &Finding| {
            let l = &f.location;
            (
                l.path.clone(),
                l.cell.clone(),
                l.blob.clone(),
                l.commit.as_ref().map(|c| c.id.clone()),
                l.line,
                f.fingerprint,
            )
        };
        let reported: HashSet<_> = findings.iter().map(place).collect();
        let mut added: HashSet<_> = HashSet::new();
        for copy in copies {
            let key = place(&copy);
            if !reported.contains(&key) && added.insert(key) {
                findings.push(copy);
            }
        }
        let custody: HashMap<Fingerprint, &str> = self
            .known
            .iter()
            .filter_map(|k| Some((k.fingerprint, k.custody.as_deref()?)))
            .collect();
        if !custody.is_empty() {
            for finding in findings.iter_mut() {
                if let Some(name) = custody.get(&finding.fingerprint) {
                    finding.custody = Some((*name).to_owned());
                }
            }
        }
        findings.sort_by(|a, b| (&a.location, &a.rule.id).cmp(&(&b.location, &b.rule.id)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_forms_match_every_alignment() {
        let value = b"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"; // mayfly:allow (test fixture)
        let forms = encoded_forms(value);
        for prefix in ["", "a", "ab", "abc"] {
            let mut text = prefix.as_bytes().to_vec();
            text.extend_from_slice(value);
            text.extend_from_slice(b"\n");
            let encoded = base64::engine::general_purpose::STANDARD.encode(&text);
            assert!(
                forms.iter().any(|(f, d)| *d == Some(Decoder::Base64)
                    && memchr::memmem::find(encoded.as_bytes(), f).is_some()),
                "prefix {prefix:?}"
            );
        }
    }

    #[test]
    fn escaped_and_percent_forms() {
        let value = b"AKIAZ/abc+def=ghijklmnop"; // mayfly:allow (test fixture)
        let forms: Vec<Vec<u8>> = encoded_forms(value).into_iter().map(|f| f.0).collect();
        assert!(forms.contains(&b"AKIAZ\\/abc+def=ghijklmnop".to_vec()));
        assert!(forms.contains(&b"AKIAZ%2Fabc%2Bdef%3Dghijklmnop".to_vec()));
    }

    proptest::proptest! {
        // The sampled filter finds what the automaton alone finds, wherever
        // the values stand (block edges, the blob's end, overlapping).
        #[test]
        fn sampling_misses_nothing(
            noise in proptest::collection::vec(proptest::sample::select(b"ab0Z/+=-_x\n ".to_vec()), 0..600),
            places in proptest::collection::vec((0usize..600, 0usize..4), 0..6),
        ) {
            let values: [&[u8]; 4] = [
                b"k9Xq2Lm7Zt4Rw8Vb", // mayfly:allow (test fixture: the shortest form searched)
                b"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", // mayfly:allow (test fixture)
                b"q7Vd2LmZx9TfR4wKp8sYb3Nc", // mayfly:allow (test fixture)
                b"Lhj/FlhwZVehBpR0XCuSStHY3UIO8hX9NNJrpMnn", // mayfly:allow (test fixture)
            ];
            let mut blob = noise;
            for (at, which) in places {
                let at = at.min(blob.len());
                blob.splice(at..at, values[which].iter().copied());
            }
            let custody = values
                .iter()
                .enumerate()
                .map(|(i, v)| CustodySecret {
                    name: format!("v{i}"),
                    provider: "X".into(),
                    value: SecretBytes::new(v.to_vec()),
                })
                .collect();
            let key = FingerprintKey::from_bytes(b"a key for the copies property test").unwrap();
            let search = CopySearch::new(&[], custody, &key).unwrap().unwrap();
            let mut sampled = Vec::new();
            search.find(&blob, &mut sampled);
            let whole: Vec<usize> = search.automaton.find_iter(&blob).map(|m| m.start()).collect();
            let found: Vec<usize> = sampled.iter().map(|h| h.start).collect();
            proptest::prop_assert_eq!(found, whole);
        }
    }

    #[test]
    fn debug_never_shows_the_value() {
        let secret = SecretBytes::new(b"hunter2hunter2hunter2".to_vec()); // mayfly:allow (test fixture)
        assert_eq!(format!("{secret:?}"), "SecretBytes(21 bytes)");
    }
}
