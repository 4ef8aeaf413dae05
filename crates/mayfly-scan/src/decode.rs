//! Views of encoded text: JSON/YAML string escapes, URL percent-encoding
//! and base64. Each decoder records, for every output byte, the offset of
//! the input byte it came from, so a finding in a decoded view reports the
//! location of the encoded text.

use base64::Engine as _;
use serde::Serialize;

/// The decoding that produced the view a secret was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decoder {
    /// JSON, YAML or shell string escapes (`\"`, `\n`, `\u0041`).
    Escape,
    /// URL percent-encoding (`%2F`).
    Percent,
    /// Base64 or base64url.
    Base64,
}

impl Decoder {
    /// The name used in every output format.
    pub fn as_str(self) -> &'static str {
        match self {
            Decoder::Escape => "escape",
            Decoder::Percent => "percent",
            Decoder::Base64 => "base64",
        }
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex_byte(hi: Option<&u8>, lo: Option<&u8>) -> Option<u8> {
    Some(hex_value(*hi?)? << 4 | hex_value(*lo?)?)
}

/// Resolves string escapes (`\"`, `\\`, `\/`, `\n`, `\r`, `\t`, `\xHH`,
/// `\uHHHH` for ASCII) into `out`, with `map[i]` the input offset of
/// `out[i]`. Returns false when the input holds no escape.
pub fn unescape(input: &[u8], out: &mut Vec<u8>, map: &mut Vec<u32>) -> bool {
    out.clear();
    map.clear();
    let mut changed = false;
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        let at = i as u32;
        if b != b'\\' {
            out.push(b);
            map.push(at);
            i += 1;
            continue;
        }
        let next = input.get(i + 1).copied();
        let (byte, width) = match next {
            Some(b'"') => (Some(b'"'), 2),
            Some(b'\'') => (Some(b'\''), 2),
            Some(b'\\') => (Some(b'\\'), 2),
            Some(b'/') => (Some(b'/'), 2),
            Some(b'n') => (Some(b'\n'), 2),
            Some(b'r') => (Some(b'\r'), 2),
            Some(b't') => (Some(b'\t'), 2),
            Some(b'x') => (hex_byte(input.get(i + 2), input.get(i + 3)), 4),
            Some(b'u') => {
                let hi = hex_byte(input.get(i + 2), input.get(i + 3));
                let lo = hex_byte(input.get(i + 4), input.get(i + 5));
                match (hi, lo) {
                    (Some(0), Some(lo)) if lo.is_ascii() => (Some(lo), 6),
                    _ => (None, 0),
                }
            }
            _ => (None, 0),
        };
        match byte {
            Some(byte) => {
                out.push(byte);
                map.push(at);
                i += width;
                changed = true;
            }
            None => {
                out.push(b);
                map.push(at);
                i += 1;
            }
        }
    }
    changed
}

/// Resolves `%HH` escapes into `out`, with `map[i]` the input offset of
/// `out[i]`. `+` stays `+`: secrets are full of them. Returns false when
/// the input holds no escape. (Written here rather than with the
/// `percent-encoding` crate because a finding must point at the encoded
/// text: the crate decodes, but keeps no map from output to input offsets.)
pub fn percent_decode(input: &[u8], out: &mut Vec<u8>, map: &mut Vec<u32>) -> bool {
    out.clear();
    map.clear();
    let mut changed = false;
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        let at = i as u32;
        if let Some(byte) = (b == b'%')
            .then(|| hex_byte(input.get(i + 1), input.get(i + 2)))
            .flatten()
        {
            out.push(byte);
            map.push(at);
            i += 3;
            changed = true;
            continue;
        }
        out.push(b);
        map.push(at);
        i += 1;
    }
    changed
}

/// Shortest base64 run worth decoding: 20 characters decode to 15 bytes,
/// shorter than any credential with a prefix.
pub const MIN_BASE64_RUN: usize = 20;

/// Longest base64 run decoded; longer runs are embedded files, not values.
pub const MAX_BASE64_RUN: usize = 16 * 1024;

const fn base64_table() -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        #[expect(
            clippy::indexing_slicing,
            reason = "const fn: i < 256 by the loop bound"
        )]
        let slot = &mut table[i];
        *slot = b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'-' || b == b'_';
        i += 1;
    }
    table
}

static BASE64_CHAR: [bool; 256] = base64_table();

fn is_b64(b: u8) -> bool {
    BASE64_CHAR.get(usize::from(b)).copied().unwrap_or(false)
}

/// Calls `visit(start, end)` for every run of base64 characters (standard
/// or URL-safe alphabet, optional `=` padding) at least [`MIN_BASE64_RUN`]
/// long and with both letters and digits or symbols, the mark of encoded
/// data rather than a long identifier.
pub fn base64_runs(input: &[u8], visit: impl FnMut(usize, usize)) {
    token_runs(input, MIN_BASE64_RUN, |_, _| {}, visit);
}

#[expect(
    clippy::indexing_slicing,
    reason = "const fn: every index is a byte value, below 256"
)]
const fn token_table() -> [bool; 256] {
    let mut table = base64_table();
    table[b'=' as usize] = true;
    table[b'%' as usize] = true;
    table[b'\\' as usize] = true;
    table
}

static TOKEN_CHAR: [bool; 256] = token_table();

/// Whether `b` is a token character: base64's (both alphabets), `=`, and
/// the `%` and `\\` of percent-encoded and escaped text.
pub(crate) fn is_token(b: u8) -> bool {
    TOKEN_CHAR.get(usize::from(b)).copied().unwrap_or(false)
}

/// One walk over `input` for two readers: `token_run(start, end)` gets
/// every run of token characters (see [`is_token`]) at least `min` long,
/// and `visit` every base64 run as [`base64_runs`] gives them (each lies
/// inside a token run; `min` is at most [`MIN_BASE64_RUN`]).
pub(crate) fn token_runs(
    input: &[u8],
    min: usize,
    mut token_run: impl FnMut(usize, usize),
    mut visit: impl FnMut(usize, usize),
) {
    let min = min.clamp(1, MIN_BASE64_RUN);
    // No run starts before `i` except those already passed: the byte
    // before `i` is never a token character.
    let mut i = 0;
    while let Some(start) = next_long_run(input, i, min) {
        // The first `min` token characters from `i` on start a run: the
        // byte before them is not one (or it would start an earlier one).
        let end = run_end(input, start + min);
        i = end;
        token_run(start, end);
        if end - start >= MIN_BASE64_RUN {
            base64_within(input, start, end, &mut visit);
        }
    }
}

/// Bytes classified at once by [`token_mask`].
const BLOCK: usize = 64;

/// Where the first `min` consecutive token characters at or after `from`
/// start (`min` at most [`MIN_BASE64_RUN`]). Text is mostly short words:
/// a block of 64 bytes is classified into a bit mask at once, and the
/// positions that start `min` ones are found with a few shifts of it.
fn next_long_run(input: &[u8], from: usize, min: usize) -> Option<usize> {
    // The shifts of a constant length are a few instructions; the scan
    // and the sketch both use this one.
    if min == MIN_BASE64_RUN {
        first_start(input, from, |window| runs_of(window, MIN_BASE64_RUN))
    } else {
        first_start(input, from, |window| runs_of(window, min))
    }
}

/// The first position at or after `from` where `starts` (given the masks
/// of two blocks, the first in the low bits) sets a bit in the first block.
#[inline(always)]
fn first_start(input: &[u8], from: usize, starts: impl Fn(u128) -> u128) -> Option<usize> {
    let mut base = from;
    let mut here = token_mask(input, base);
    while base < input.len() {
        let next = token_mask(input, base + BLOCK);
        let window = u128::from(here) | (u128::from(next) << BLOCK);
        let found = starts(window) as u64;
        if found != 0 {
            return Some(base + found.trailing_zeros() as usize);
        }
        base += BLOCK;
        here = next;
    }
    None
}

/// Where the run of token characters that goes on at `from` ends: the
/// first position at or after `from` that is not a token character.
fn run_end(input: &[u8], from: usize) -> usize {
    let mut at = from;
    loop {
        let ones = token_mask(input, at).trailing_ones() as usize;
        at += ones;
        if ones < BLOCK {
            return at.min(input.len());
        }
    }
}

/// Bit `k` set when `input[at + k]` is a token character, for the 64
/// bytes from `at` (bytes past the end count as not).
fn token_mask(input: &[u8], at: usize) -> u64 {
    let whole: Option<&[u8; BLOCK]> = input.get(at..at + BLOCK).and_then(|b| b.try_into().ok());
    match whole {
        Some(block) => block_mask(block),
        None => {
            // The last, partial block: padded with bytes that are not token
            // characters.
            let mut block = [0u8; BLOCK];
            let bytes = input.get(at..).unwrap_or_default();
            let n = bytes.len().min(BLOCK);
            if let (Some(to), Some(from)) = (block.get_mut(..n), bytes.get(..n)) {
                to.copy_from_slice(from);
            }
            block_mask(&block)
        }
    }
}

/// Bit `k` set when `block[k]` is a token character.
fn block_mask(block: &[u8; BLOCK]) -> u64 {
    // One flag byte per input byte, in arithmetic the compiler turns into
    // vector compares; then eight flags at a time are packed into bits.
    let mut flags = [0u8; BLOCK];
    for (flag, &b) in flags.iter_mut().zip(block) {
        let letter = (b | 0x20).wrapping_sub(b'a') < 26;
        let digit = b.wrapping_sub(b'0') < 10;
        let symbol = matches!(b, b'+' | b'/' | b'-' | b'_' | b'=' | b'%' | b'\\');
        *flag = u8::from(letter | digit | symbol);
    }
    let mut mask = 0u64;
    for (k, eight) in flags.chunks_exact(8).enumerate() {
        let word = u64::from_le_bytes(eight.try_into().unwrap_or_default());
        // Each flag byte is 0 or 1: the multiply gathers byte j's bit at
        // bit 56 + j, with no carries between them.
        let packed = word.wrapping_mul(0x0102_0408_1020_4080) >> 56;
        mask |= packed << (8 * k);
    }
    mask
}

/// Bit `k` set when bits `k..k + len` of `bits` are all set.
#[inline(always)]
fn runs_of(bits: u128, len: usize) -> u128 {
    let (mut result, mut shift) = (bits, 0usize);
    // `power` holds the starts of runs of `width` ones; `len` is made of
    // the widths of its set bits, each applied at the offset reached.
    let (mut power, mut width, mut remaining) = (bits, 1usize, len);
    while remaining > 0 {
        if remaining & 1 == 1 {
            result &= power >> shift;
            shift += width;
        }
        remaining >>= 1;
        power &= power >> width;
        width *= 2;
    }
    result
}

/// The base64 runs inside the token run `start..end`: its longest stretches
/// of base64 characters (`=`, `%` and `\\` end them).
fn base64_within(input: &[u8], start: usize, end: usize, visit: &mut impl FnMut(usize, usize)) {
    // Inside a token run, only `=`, `%` and `\\` are not base64 characters.
    let mut k = start;
    while k < end {
        while k < end && input.get(k).is_some_and(|&b| !is_b64(b)) {
            k += 1;
        }
        let rest = input.get(k..end).unwrap_or_default();
        let run = memchr::memchr3(b'=', b'%', b'\\', rest).unwrap_or(rest.len());
        k = if run >= MIN_BASE64_RUN {
            padded_run(input, k, run, visit)
        } else {
            k + run
        };
    }
}

/// Extends the run of `run` base64 characters at `start` over its `=`
/// padding, visits it if it looks encoded (see [`base64_runs`]), and
/// returns where it ends.
fn padded_run(
    input: &[u8],
    start: usize,
    run: usize,
    visit: &mut impl FnMut(usize, usize),
) -> usize {
    let mut end = start + run;
    while input.get(end) == Some(&b'=') && end - start < MAX_BASE64_RUN {
        end += 1;
    }
    let body = input.get(start..start + run).unwrap_or_default();
    // One pass, without an early exit, so that it runs on vectors: bit 0
    // for an upper-case letter, bit 1 a lower-case one, bit 2 a digit, `+`
    // or `/`.
    let classes = body.iter().fold(0u8, |seen, &b| {
        seen | u8::from(b.is_ascii_uppercase())
            | (u8::from(b.is_ascii_lowercase()) << 1)
            | (u8::from(b.is_ascii_digit() || b == b'+' || b == b'/') << 2)
    });
    if end - start <= MAX_BASE64_RUN && classes == 0b111 {
        visit(start, end);
    }
    end
}

fn printable(bytes: &[u8]) -> bool {
    let good = bytes
        .iter()
        .filter(|&&b| b.is_ascii_graphic() || b == b' ' || b == b'\n' || b == b'\r' || b == b'\t')
        .count();
    good * 100 >= bytes.len() * 95
}

/// Decodes a base64 run (standard or URL-safe, padded or not) into `out`
/// when the result is text; returns false for binary data or bad input.
pub fn decode_base64_text(run: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let trimmed = run
        .strip_suffix(b"==")
        .or_else(|| run.strip_suffix(b"="))
        .unwrap_or(run);
    // Peek at the first 16 characters before decoding it all: most runs
    // are not text, and this rejects them at a twentieth of the cost.
    let head = trimmed.get(..16).unwrap_or(trimmed);
    let url_safe = trimmed.iter().any(|&b| b == b'-' || b == b'_');
    let engine = if url_safe {
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
    } else {
        &base64::engine::general_purpose::STANDARD_NO_PAD
    };
    let mut probe = Vec::with_capacity(12);
    if engine.decode_vec(head, &mut probe).is_err() || !printable(&probe) {
        return false;
    }
    // Base64 decodes whole 4-character groups; drop a ragged tail.
    let whole = trimmed.len() - trimmed.len() % 4;
    let body = if trimmed.len() % 4 == 1 {
        trimmed.get(..whole).unwrap_or(trimmed)
    } else {
        trimmed
    };
    engine.decode_vec(body, out).is_ok() && out.len() >= 12 && printable(out)
}

/// Decodes a short padded base64 value (4 to 64 characters, a multiple of
/// four) when it decodes to printable text.
pub fn short_base64_text(value: &[u8]) -> Option<Vec<u8>> {
    if value.len() < 4 || value.len() > 64 || !value.len().is_multiple_of(4) {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()?;
    (!decoded.is_empty() && decoded.iter().all(|b| b.is_ascii_graphic() || *b == b' '))
        .then_some(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_maps_offsets() {
        let (mut out, mut map) = (Vec::new(), Vec::new());
        assert!(unescape(br#"a\"b\nc\u0041"#, &mut out, &mut map));
        assert_eq!(out, b"a\"b\ncA");
        assert_eq!(map, vec![0, 1, 3, 4, 6, 7]);
        assert!(!unescape(b"plain", &mut out, &mut map));
    }

    #[test]
    fn percent_keeps_plus() {
        let (mut out, mut map) = (Vec::new(), Vec::new());
        assert!(percent_decode(b"a%2Fb+c%3d", &mut out, &mut map));
        assert_eq!(out, b"a/b+c=");
        assert!(!percent_decode(b"100%", &mut out, &mut map));
    }

    #[test]
    fn finds_and_decodes_runs() {
        let text = b"data:\n  token: Z2hwX2FVVXlZenFNWjJuU0hXYUJpRGpkeFN5OUM3REdhNDN5WGQ4TQ==\n"; // mayfly:allow (test fixture)
        let mut runs = Vec::new();
        base64_runs(text, |s, e| runs.push((s, e)));
        assert_eq!(runs.len(), 1);
        let (s, e) = runs[0];
        let mut out = Vec::new();
        assert!(decode_base64_text(&text[s..e], &mut out));
        assert_eq!(out, b"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"); // mayfly:allow (test fixture)
    }

    /// The straightforward scan `base64_runs` must agree with: every byte
    /// examined in turn.
    fn base64_runs_one_by_one(input: &[u8], mut visit: impl FnMut(usize, usize)) {
        let len = input.len();
        let mut i = 0;
        while i < len {
            // Find the next run with one table lookup per byte; the character
            // classes are only examined for the few runs long enough to matter.
            let rest = input.get(i..).unwrap_or_default();
            let Some(skip) = rest.iter().position(|&b| is_b64(b)) else {
                return;
            };
            let start = i + skip;
            let run = input
                .get(start..)
                .unwrap_or_default()
                .iter()
                .position(|&b| !is_b64(b))
                .unwrap_or(len - start);
            i = start + run;
            if run < MIN_BASE64_RUN {
                continue;
            }
            i = padded_run(input, start, run, &mut visit);
        }
    }

    #[test]
    fn block_masks_classify_every_byte_as_the_table_does() {
        // Every byte value at every position of a block, and a partial
        // block whose padding is no token character.
        let bytes: Vec<u8> = (0..=255u8).chain(0..=255u8).collect();
        for at in 0..bytes.len() {
            let mask = token_mask(&bytes, at);
            for k in 0..BLOCK {
                let expected = bytes.get(at + k).is_some_and(|&b| is_token(b));
                assert_eq!(mask >> k & 1 == 1, expected, "byte at {}", at + k);
            }
        }
        for len in 1..=MIN_BASE64_RUN {
            let bits = 0b1111_0111_1111_1111_1111_1111_1111_0011u128;
            let naive = (0..128).fold(0u128, |acc, k| {
                let all = (k..k + len).all(|j| j < 128 && bits >> j & 1 == 1);
                acc | (u128::from(all) << k)
            });
            assert_eq!(runs_of(bits, len), naive, "len {len}");
        }
    }

    proptest::proptest! {
        #[test]
        fn skipping_scan_finds_the_same_runs(bytes in proptest::collection::vec(
            // Mostly base64 characters: long runs, padding inside and
            // after them, and short words between.
            proptest::sample::select(b"aZ09+/-_=AbCdEf12 \n%\\".to_vec()), 0..600)
        ) {
            let (mut fast, mut slow) = (Vec::new(), Vec::new());
            base64_runs(&bytes, |s, e| fast.push((s, e)));
            base64_runs_one_by_one(&bytes, |s, e| slow.push((s, e)));
            proptest::prop_assert_eq!(&fast, &slow);
            // Every maximal run of token characters, one byte at a time.
            for min in [16, 20] {
                let mut naive = Vec::new();
                let mut start = None;
                for (k, &b) in bytes.iter().chain(std::iter::once(&b' ')).enumerate() {
                    match (is_token(b), start) {
                        (true, None) => start = Some(k),
                        (false, Some(s)) => {
                            if k - s >= min {
                                naive.push((s, k));
                            }
                            start = None;
                        }
                        _ => {}
                    }
                }
                let mut walked = Vec::new();
                token_runs(&bytes, min, |s, e| walked.push((s, e)), |_, _| {});
                proptest::prop_assert_eq!(walked, naive);
            }
            // The walk that also feeds a sketch (shorter token runs) finds
            // the same base64 runs, and token runs that cover each.
            let (mut sketched, mut tokens) = (Vec::new(), Vec::new());
            token_runs(&bytes, 16, |s, e| tokens.push((s, e)), |s, e| sketched.push((s, e)));
            proptest::prop_assert_eq!(&sketched, &slow);
            for (s, e) in sketched {
                proptest::prop_assert!(tokens.iter().any(|&(ts, te)| ts <= s && e <= te));
            }
        }

        #[test]
        fn decoders_never_panic_and_maps_align(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let (mut out, mut map) = (Vec::new(), Vec::new());
            unescape(&bytes, &mut out, &mut map);
            proptest::prop_assert_eq!(out.len(), map.len());
            proptest::prop_assert!(map.windows(2).all(|w| w[0] < w[1]));
            percent_decode(&bytes, &mut out, &mut map);
            proptest::prop_assert_eq!(out.len(), map.len());
            base64_runs(&bytes, |s, e| {
                let mut out = Vec::new();
                let _ = decode_base64_text(&bytes[s..e], &mut out);
            });
        }

        #[test]
        fn base64_roundtrip(text in "[ -~]{12,200}") {
            let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
            let mut out = Vec::new();
            if encoded.bytes().any(|b| b.is_ascii_digit() || b == b'+' || b == b'/') {
                proptest::prop_assert!(decode_base64_text(encoded.as_bytes(), &mut out));
                proptest::prop_assert_eq!(out, text.as_bytes());
            }
        }
    }
}
