//! Base64url without padding (JOSE) and random ids.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Encodes bytes as base64url without padding.
pub(crate) fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url with or without padding.
pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

/// `n` random bytes from the operating system.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], getrandom::Error> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out)?;
    Ok(out)
}

/// A random id: 128 bits as 32 lowercase hex digits (never starting with
/// `-`, so it is never mistaken for an option on a command line).
pub(crate) fn random_id() -> Result<String, getrandom::Error> {
    Ok(hex(&random_bytes::<16>()?))
}

/// A unique id that sorts by the time it was made: 32 bits of `now` (Unix
/// seconds, from the broker's clock), a 16-bit counter of this process,
/// then 80 random bits, as 32 lowercase hex digits (the same form as
/// [`random_id`]). Credentials are indexed by their id; ids made one after
/// another land side by side at the end of the index, so a commit of many
/// credentials touches a few pages instead of one page each.
pub(crate) fn time_ordered_id(now: i64) -> Result<String, getrandom::Error> {
    static SEQUENCE: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let sequence = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut bytes = random_bytes::<16>()?;
    let seconds = u32::try_from(now.max(0)).unwrap_or(u32::MAX);
    let head = seconds
        .to_be_bytes()
        .into_iter()
        .chain(sequence.to_be_bytes());
    for (slot, byte) in bytes.iter_mut().zip(head) {
        *slot = byte;
    }
    Ok(hex(&bytes))
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_ordered_ids_sort_by_time_and_stay_unique() {
        let first = time_ordered_id(1_800_000_000).unwrap();
        let ids: Vec<String> = (0..1000)
            .map(|_| time_ordered_id(1_800_000_001).unwrap())
            .collect();
        assert!(
            ids.iter()
                .all(|id| id.len() == 32 && id.as_str() > first.as_str())
        );
        assert!(
            ids.iter()
                .all(|id| id.bytes().all(|b| b.is_ascii_hexdigit()))
        );
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }
}
