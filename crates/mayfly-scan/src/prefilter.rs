//! The keyword prefilter: every occurrence of every rule keyword in a blob,
//! overlapping ones included, matched ASCII case-insensitively.
//!
//! An Aho-Corasick DFA takes one table lookup per byte, and each lookup
//! needs the state the previous one returned: a single walk waits on memory
//! latency, not on arithmetic. So a blob is cut into [`LANES`] segments
//! walked side by side, each lane's lookups independent of the others', and
//! the processor overlaps them. Each lane starts the longest keyword's
//! length before its segment (an Aho-Corasick state depends only on that
//! many preceding bytes) and reports only the matches that end inside its
//! segment, so every occurrence is reported exactly once, as one walk over
//! the whole blob would report it.

use std::fmt;

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::dfa::DFA;
use aho_corasick::{AhoCorasick, Anchored, MatchKind};

/// Finds every occurrence of every keyword. The engine behind it is a
/// choice: the lane-walked Aho-Corasick DFA by default.
pub trait Prefilter: Send + Sync + fmt::Debug {
    /// Calls `hit(keyword_index, start, end)` for every occurrence,
    /// overlapping ones included, in no particular order.
    fn for_each_hit(&self, haystack: &[u8], hit: &mut dyn FnMut(usize, usize, usize));
}

/// Segments walked side by side. Four hide most of the lookup latency;
/// eight measured no faster.
const LANES: usize = 4;
/// Shortest segment worth a lane: below it a blob is walked in one lane.
const MIN_SEGMENT: usize = 256;

/// The Aho-Corasick keyword prefilter (ASCII case-insensitive,
/// overlapping).
#[derive(Debug)]
pub struct KeywordPrefilter {
    engine: Engine,
}

#[derive(Debug)]
enum Engine {
    /// The DFA, walked in lanes.
    Dfa(Box<DFA>),
    /// Keyword sets too large for a DFA: the library's own search.
    Automaton(AhoCorasick),
}

impl KeywordPrefilter {
    /// Builds the automaton over `keywords`.
    pub fn new(keywords: &[String]) -> Result<Self, aho_corasick::BuildError> {
        let dfa = DFA::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .prefilter(false)
            .build(keywords);
        let engine = match dfa {
            Ok(dfa) => Engine::Dfa(Box::new(dfa)),
            Err(_) => Engine::Automaton(
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .build(keywords)?,
            ),
        };
        Ok(KeywordPrefilter { engine })
    }

    /// The library's own one-walk overlapping search over `keywords`: the
    /// engine the lanes replaced, kept to check them against.
    #[cfg(test)]
    pub(crate) fn one_walk(keywords: &[String]) -> Result<Self, aho_corasick::BuildError> {
        let automaton = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(keywords)?;
        Ok(KeywordPrefilter {
            engine: Engine::Automaton(automaton),
        })
    }
}

impl Prefilter for KeywordPrefilter {
    fn for_each_hit(&self, haystack: &[u8], hit: &mut dyn FnMut(usize, usize, usize)) {
        match &self.engine {
            Engine::Dfa(dfa) => walk_lanes(dfa, haystack, hit),
            Engine::Automaton(automaton) => {
                for m in automaton.find_overlapping_iter(haystack) {
                    hit(m.pattern().as_usize(), m.start(), m.end());
                }
            }
        }
    }
}

/// Reports the keywords that end at `end` in state `sid`, when `end` lies
/// in the lane's own segment `(own_start, own_end]`.
fn report(
    dfa: &DFA,
    sid: StateID,
    end: usize,
    (own_start, own_end): (usize, usize),
    hit: &mut dyn FnMut(usize, usize, usize),
) {
    if !dfa.is_match(sid) || end <= own_start || end > own_end {
        return;
    }
    for index in 0..dfa.match_len(sid) {
        let pattern = dfa.match_pattern(sid, index);
        hit(
            pattern.as_usize(),
            end.saturating_sub(dfa.pattern_len(pattern)),
            end,
        );
    }
}

/// Walks `bytes` (which start at `offset` in the blob) from state `sid`.
fn walk_one(
    dfa: &DFA,
    mut sid: StateID,
    bytes: &[u8],
    offset: usize,
    own: (usize, usize),
    hit: &mut dyn FnMut(usize, usize, usize),
) {
    for (i, &byte) in bytes.iter().enumerate() {
        sid = dfa.next_state(Anchored::No, sid, byte);
        if dfa.is_special(sid) {
            report(dfa, sid, offset + i + 1, own, hit);
        }
    }
}

fn walk_lanes(dfa: &DFA, blob: &[u8], hit: &mut dyn FnMut(usize, usize, usize)) {
    let Ok(start) = dfa.start_state(Anchored::No) else {
        return;
    };
    let warm_up = dfa.max_pattern_len();
    let segment = blob.len() / LANES;
    if segment < MIN_SEGMENT.max(warm_up) {
        return walk_one(dfa, start, blob, 0, (0, blob.len()), hit);
    }
    // Lane j owns the matches ending in (j * segment, (j + 1) * segment]
    // and starts walking `warm_up` bytes earlier (lane 0 at 0, walking
    // `warm_up` bytes into lane 1's segment instead): all lanes walk the
    // same length.
    let walked = segment + warm_up;
    let begin = |lane: usize| (lane * segment).saturating_sub(warm_up);
    let lane = |j: usize| blob.get(begin(j)..begin(j) + walked).unwrap_or_default();
    let own = |j: usize| (j * segment, (j + 1) * segment);
    let mut states = [start; LANES];
    let bytes = lane(0).iter().zip(lane(1)).zip(lane(2)).zip(lane(3));
    for (k, (((&b0, &b1), &b2), &b3)) in bytes.enumerate() {
        let [s0, s1, s2, s3] = &mut states;
        *s0 = dfa.next_state(Anchored::No, *s0, b0);
        *s1 = dfa.next_state(Anchored::No, *s1, b1);
        *s2 = dfa.next_state(Anchored::No, *s2, b2);
        *s3 = dfa.next_state(Anchored::No, *s3, b3);
        if dfa.is_special(*s0) | dfa.is_special(*s1) | dfa.is_special(*s2) | dfa.is_special(*s3) {
            for (j, &sid) in states.iter().enumerate() {
                report(dfa, sid, begin(j) + k + 1, own(j), hit);
            }
        }
    }
    // The bytes after the last whole segment continue the last lane.
    let tail_start = LANES * segment;
    let [.., last] = states;
    walk_one(
        dfa,
        last,
        blob.get(tail_start..).unwrap_or_default(),
        tail_start,
        (tail_start, blob.len()),
        hit,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keywords() -> Vec<String> {
        [
            "token",
            "secret_access_key",
            "access_key",
            "://",
            "sk-",
            "sk-proj-",
            "ghp_",
            "aaa",
        ]
        .map(String::from)
        .to_vec()
    }

    fn lanes(prefilter: &KeywordPrefilter, blob: &[u8]) -> Vec<(usize, usize, usize)> {
        let mut hits = Vec::new();
        prefilter.for_each_hit(blob, &mut |k, s, e| hits.push((k, s, e)));
        hits.sort_unstable();
        hits
    }

    fn reference(keywords: &[String], blob: &[u8]) -> Vec<(usize, usize, usize)> {
        let automaton = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(keywords)
            .unwrap();
        let mut hits: Vec<_> = automaton
            .find_overlapping_iter(blob)
            .map(|m| (m.pattern().as_usize(), m.start(), m.end()))
            .collect();
        hits.sort_unstable();
        hits
    }

    #[test]
    fn matches_across_lane_boundaries() {
        let keywords = keywords();
        let prefilter = KeywordPrefilter::new(&keywords).unwrap();
        // Keywords at every offset around where the lanes split.
        for len in [0, 1, 255, 1024, 1027, 4099] {
            for planted in ["SECRET_ACCESS_KEY", "aaaa", "Sk-Proj-", "x://y"] {
                for at in (0..len).step_by(97).chain([len / 4, len / 2, 3 * len / 4]) {
                    let mut blob = vec![b'.'; len];
                    let end = (at + planted.len()).min(len);
                    blob[at..end].copy_from_slice(&planted.as_bytes()[..end - at]);
                    assert_eq!(lanes(&prefilter, &blob), reference(&keywords, &blob));
                }
            }
        }
    }

    proptest! {
        #[test]
        fn same_hits_as_one_walk(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("token".to_owned()),
                    Just("SECRET_ACCESS_KEY".to_owned()),
                    Just("sk-proj-".to_owned()),
                    Just("://".to_owned()),
                    Just("aa".to_owned()),
                    "[a-zA-Z_:/ -]{0,40}",
                ],
                0..200,
            )
        ) {
            let keywords = keywords();
            let prefilter = KeywordPrefilter::new(&keywords).unwrap();
            let blob = parts.concat();
            prop_assert_eq!(lanes(&prefilter, blob.as_bytes()), reference(&keywords, blob.as_bytes()));
        }
    }
}
