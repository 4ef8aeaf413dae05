//! What the first read of a file tree keeps so that the copies pass
//! re-reads only the files that can hold a copy.
//!
//! A searched form of a value (see [`crate::copies`]) is, in practice, a
//! run of 20 or more token characters (letters, digits, `+/=_-%\\`), or
//! holds one. Wherever such a form stands in a blob, that run lies inside
//! a run of 20 or more token characters of the blob, and any 15
//! consecutive bytes of it cover one 8-byte chunk aligned to the blob's
//! start. So the first pass keeps, per file, the hashes of the aligned
//! chunks inside those runs (the matcher walks them anyway, to decode
//! base64), and a file none of whose chunks equals one of a form's eight
//! windows cannot hold that form. The rule-out is exact; a hash collision
//! only costs a re-read.
//!
//! Forms without a long enough run of token characters (a 16-character
//! password, one with `:` or `@` every few bytes) cannot be ruled out this
//! way: then every file is read again, as without a sketch.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Shortest run of token characters whose chunks are kept: the shortest
/// base64 run, so that one walk over the text finds both (a shorter run
/// costs the walk a third more time on text). Forms whose longest token
/// run is shorter (a 16-character password) cannot be ruled out.
pub(crate) const MIN_RUN: usize = crate::decode::MIN_BASE64_RUN;

/// Most chunk hashes one file keeps; a file with more (a large encoded
/// blob) is read again instead.
const MAX_FILE_HASHES: usize = 1 << 20;

/// Most chunk hashes one read keeps in all (64 MiB); files read after the
/// budget is spent are read again instead.
pub(crate) const DEFAULT_BUDGET: usize = 16 << 20;

fn chunk_hash(chunk: &[u8]) -> u32 {
    let mut word = [0u8; 8];
    word.copy_from_slice(chunk);
    let word = u64::from_le_bytes(word);
    (word.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32
}

/// Pushes onto `out` the hash of every 8-byte chunk of `blob`, aligned to
/// its start, inside the token run `start..end`.
pub(crate) fn keep_run(blob: &[u8], start: usize, end: usize, out: &mut Vec<u32>) {
    let first = start.next_multiple_of(8);
    if let Some(run) = blob.get(first..end) {
        out.extend(run.chunks_exact(8).map(chunk_hash));
    }
}

/// Gives up on the file being read (its sketch becomes `None`) once its
/// blobs have given more hashes than one file keeps.
pub(crate) fn cap(sketch: &mut Option<Vec<u32>>) {
    if sketch.as_ref().is_some_and(|h| h.len() > MAX_FILE_HASHES) {
        *sketch = None;
    }
}

/// The chunk hashes `blob` gives a sketch (the matcher gathers them in its
/// walk over token runs; this is the same walk alone).
#[cfg(test)]
fn token_chunks(blob: &[u8], out: &mut Vec<u32>) {
    crate::decode::token_runs(blob, MIN_RUN, |s, e| keep_run(blob, s, e, out), |_, _| {});
}

/// The hashes one of which an occurrence of `form` puts among its blob's
/// chunks: the eight windows of 15 bytes in the middle of its longest run
/// of token characters. `None` when that run is shorter than [`MIN_RUN`].
fn form_windows(form: &[u8]) -> Option<[u32; 8]> {
    let mut longest = 0..0;
    let mut start = 0;
    for (i, &b) in form.iter().enumerate() {
        if !crate::decode::is_token(b) {
            start = i + 1;
        } else if i + 1 - start > longest.len() {
            longest = start..i + 1;
        }
    }
    if longest.len() < MIN_RUN {
        return None;
    }
    let region = longest.start + (longest.len() - 15) / 2;
    let mut windows = [0u32; 8];
    for (k, window) in windows.iter_mut().enumerate() {
        *window = chunk_hash(form.get(region + k..region + k + 8)?);
    }
    Some(windows)
}

/// Bits of the query's filter: 2^20 bits (128 KiB).
const QUERY_BITS: u32 = 20;

/// The windows of every searched form, as a sketch is tested against them.
#[derive(Debug)]
pub(crate) struct SketchQuery {
    bits: Vec<u64>,
    windows: Vec<u32>,
}

impl SketchQuery {
    /// The query for `forms`; `None` when one of them cannot be ruled out
    /// by a sketch.
    pub(crate) fn new(forms: &[Vec<u8>]) -> Option<SketchQuery> {
        let mut windows = Vec::with_capacity(forms.len() * 8);
        for form in forms {
            windows.extend(form_windows(form)?);
        }
        windows.sort_unstable();
        windows.dedup();
        let mut bits = vec![0u64; 1 << (QUERY_BITS - 6)];
        for &w in &windows {
            let (index, bit) = Self::slot(w);
            if let Some(slot) = bits.get_mut(index) {
                *slot |= bit;
            }
        }
        Some(SketchQuery { bits, windows })
    }

    fn slot(hash: u32) -> (usize, u64) {
        let h = hash >> (32 - QUERY_BITS);
        ((h >> 6) as usize, 1u64 << (h & 63))
    }

    /// Whether a file whose sketch holds `hashes` may hold a form.
    pub(crate) fn may_hold(&self, hashes: &[u32]) -> bool {
        hashes.iter().any(|&h| {
            let (index, bit) = Self::slot(h);
            self.bits.get(index).is_some_and(|slot| slot & bit != 0)
                && self.windows.binary_search(&h).is_ok()
        })
    }
}

/// What one read of a file tree kept: for each file read that holds token
/// runs, the hashes of their chunks, or nothing where it kept none (budget
/// spent, too many in the file).
#[derive(Debug, Default)]
pub struct ReadSketch {
    files: Vec<(PathBuf, Option<Box<[u32]>>)>,
}

impl ReadSketch {
    /// The files the copies pass for `search` must read again: those that
    /// may hold one of its forms and those kept without chunks. `None` when
    /// one of its forms cannot be ruled out by a sketch: every file must be
    /// read again.
    pub fn files_to_read(&self, search: &crate::copies::CopySearch) -> Option<Vec<PathBuf>> {
        let query = search.sketch_query()?;
        Some(
            self.files
                .iter()
                .filter(|(_, hashes)| hashes.as_ref().is_none_or(|h| query.may_hold(h)))
                .map(|(path, _)| path.clone())
                .collect(),
        )
    }

    /// Adds what another thread recorded.
    pub(crate) fn append(&mut self, other: ReadSketch) {
        self.files.extend(other.files);
    }
}

/// One read's sketching state, shared by its threads: how many hashes may
/// still be kept.
#[derive(Debug)]
pub(crate) struct SketchBudget {
    left: AtomicUsize,
}

impl SketchBudget {
    pub(crate) fn new(hashes: usize) -> Self {
        SketchBudget {
            left: AtomicUsize::new(hashes),
        }
    }

    /// Takes room for `n` more hashes; false when the budget is spent.
    fn take(&self, n: usize) -> bool {
        self.left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(n)
            })
            .is_ok()
    }

    /// Gives back room for `n` hashes no longer kept.
    fn give_back(&self, n: usize) {
        self.left.fetch_add(n, Ordering::Relaxed);
    }
}

/// Most chunk hashes a history read keeps in all (4 MiB, repeats within a
/// path's list included until they are dropped); a path whose hashes do
/// not fit is read again by the copies pass, and gives its room back to
/// the others.
pub(crate) const HISTORY_BUDGET: usize = 1 << 20;

/// What a history read keeps for the copies pass: per path, the chunk
/// hashes of all its blobs (one file's versions share most of theirs, so
/// they are kept without repeats), or nothing where it kept none.
#[derive(Debug, Default)]
pub(crate) struct PathSketches {
    paths: std::collections::HashMap<u32, Option<PathChunks>>,
}

#[derive(Debug, Default)]
struct PathChunks {
    hashes: Vec<u32>,
    /// Length after the last removal of repeats.
    distinct: usize,
}

impl PathChunks {
    fn drop_repeats(&mut self) -> usize {
        let before = self.hashes.len();
        self.hashes.sort_unstable();
        self.hashes.dedup();
        self.hashes.shrink_to_fit();
        self.distinct = self.hashes.len();
        before - self.distinct
    }
}

impl PathSketches {
    /// Adds the chunk hashes of one blob at `path` (`None`: none could be
    /// kept, so the path is always read again).
    pub(crate) fn add(&mut self, path: u32, hashes: Option<&[u32]>, budget: &SketchBudget) {
        let Some(hashes) = hashes else {
            if let Some(Some(dropped)) = self.paths.insert(path, None) {
                budget.give_back(dropped.hashes.len());
            }
            return;
        };
        if hashes.is_empty() {
            return;
        }
        let entry = self
            .paths
            .entry(path)
            .or_insert_with(|| Some(PathChunks::default()));
        let Some(chunks) = entry else {
            return;
        };
        if !budget.take(hashes.len()) {
            budget.give_back(chunks.hashes.len());
            *entry = None;
            return;
        }
        chunks.hashes.extend_from_slice(hashes);
        if chunks.hashes.len() > (2 * chunks.distinct).max(1024) {
            budget.give_back(chunks.drop_repeats());
        }
    }

    /// Adds what another thread kept (for other paths: each path is read
    /// by one thread).
    pub(crate) fn merge(&mut self, other: PathSketches) {
        self.paths.extend(other.paths);
    }

    /// Whether a blob at `path` may hold one of the forms `query` tests.
    pub(crate) fn may_hold(&self, path: u32, query: &SketchQuery) -> bool {
        match self.paths.get(&path) {
            None => false,
            Some(None) => true,
            Some(Some(chunks)) => query.may_hold(&chunks.hashes),
        }
    }
}

/// A thread's part of a sketched read.
#[derive(Debug)]
pub(crate) struct Sketcher<'b> {
    budget: &'b SketchBudget,
    pub(crate) kept: ReadSketch,
    /// The buffer a file's hashes are gathered in, kept for the next file.
    pub(crate) spare: Vec<u32>,
}

impl<'b> Sketcher<'b> {
    pub(crate) fn new(budget: &'b SketchBudget) -> Self {
        Sketcher {
            budget,
            kept: ReadSketch::default(),
            spare: Vec::new(),
        }
    }

    /// Records `path` with the chunk hashes its blobs gave (`None`: too
    /// many to keep), kept as they came: sorting out the repeats would cost
    /// more than testing them.
    pub(crate) fn record(&mut self, path: PathBuf, hashes: Option<&[u32]>) {
        let kept = hashes.filter(|hashes| self.budget.take(hashes.len()));
        self.kept.files.push((path, kept.map(Box::from)));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn only_chunks_inside_long_token_runs_are_kept() {
        let mut out = Vec::new();
        token_chunks(b"fn main() { let x = 1; println!(\"{x}\"); }\n", &mut out);
        assert!(out.is_empty());
        // A 28-byte token run (`key=` and the value) at offset 4: the
        // aligned chunks at 8, 16 and 24.
        token_chunks(b"api key=Zq7Vd2LmZx9TfR4wKp8sYb3N done", &mut out);
        assert_eq!(out.len(), 3);
        out.clear();
        // A run of 16 leaves nothing; one of 20 at offset 8, two chunks.
        token_chunks(b"api key Zq7Vd2LmZx9TfR4w done", &mut out);
        assert!(out.is_empty());
        token_chunks(b"api key Zq7Vd2LmZx9TfR4wKp8s done", &mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn forms_without_a_long_run_cannot_be_ruled_out() {
        assert!(form_windows(b"pa:ss@wo:rd.he:re@x:yz.ab").is_none());
        assert!(form_windows(b"k9Xq2Lm7Zt4Rw8Vb").is_none()); // mayfly:allow (test fixture)
        assert!(form_windows(b"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").is_some()); // mayfly:allow (test fixture)
    }

    #[test]
    fn path_sketches_drop_repeats_and_give_up_past_the_budget() {
        let query =
            SketchQuery::new(&[b"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".to_vec()]).unwrap(); // mayfly:allow (test fixture)
        let budget = SketchBudget::new(3000);
        let mut paths = PathSketches::default();
        // Many versions of one file: the repeats are dropped as they come,
        // so the budget holds.
        let version: Vec<u32> = (0..600).collect();
        for _ in 0..20 {
            paths.add(1, Some(&version), &budget);
        }
        assert!(!paths.may_hold(1, &query));
        // A path none of whose blobs has a chunk cannot hold a copy.
        paths.add(2, Some(&[]), &budget);
        assert!(!paths.may_hold(2, &query));
        // One that had a blob that could not be kept is always read again.
        paths.add(4, Some(&[7]), &budget);
        paths.add(4, None, &budget);
        assert!(paths.may_hold(4, &query));
        // A path that holds one of the form's windows may hold a copy.
        let windows = form_windows(b"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").unwrap(); // mayfly:allow (test fixture)
        paths.add(5, Some(&windows[3..4]), &budget);
        assert!(paths.may_hold(5, &query));
        // A path whose hashes do not fit is read again, and gives its room
        // back: the others keep their sketches, and a later path fits.
        let left = budget.left.load(Ordering::Relaxed);
        paths.add(3, Some(&[1, 2]), &budget);
        let large: Vec<u32> = (10_000..14_000).collect();
        paths.add(3, Some(&large), &budget);
        assert!(paths.may_hold(3, &query));
        assert!(!paths.may_hold(1, &query) && paths.may_hold(5, &query));
        assert_eq!(budget.left.load(Ordering::Relaxed), left);
        paths.add(6, Some(&[9]), &budget);
        assert!(!paths.may_hold(6, &query));
    }

    proptest::proptest! {
        // Wherever a form stands, in any text, the blob's chunks hold one of
        // its windows.
        #[test]
        fn a_planted_form_always_leaves_a_window(
            noise in proptest::collection::vec(proptest::sample::select(b"ab0Z/+=-_x\n .:@\"".to_vec()), 0..300),
            at in 0usize..300,
            form in "[A-Za-z0-9+/=_%-]{20,60}",
            prefix in "[ -~]{0,6}",
            suffix in "[ -~]{0,6}",
        ) {
            let form = format!("{prefix}{form}{suffix}").into_bytes();
            let Some(windows) = form_windows(&form) else {
                return Ok(());
            };
            let mut blob = noise;
            let at = at.min(blob.len());
            blob.splice(at..at, form.iter().copied());
            let mut chunks = Vec::new();
            token_chunks(&blob, &mut chunks);
            proptest::prop_assert!(windows.iter().any(|w| chunks.contains(w)));
        }
    }
}
