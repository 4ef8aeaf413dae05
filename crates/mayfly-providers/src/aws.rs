//! AWS: the account an access key id belongs to (decoded from the id, no
//! call), the canary-token accounts that must never be called, and the
//! Signature Version 4 that `sts:GetCallerIdentity` needs.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Accounts that canary-token services issue their AWS keys from. A key of
/// these accounts was planted to catch whoever uses it: calling AWS with it
/// would raise the alarm, so validation never does.
const CANARY_ACCOUNTS: &[u64] = &[
    52_310_077_262,
    171_436_882_533,
    266_735_846_894,
    534_261_010_715,
    595_918_472_158,
    717_712_589_309,
    730_335_385_048,
    819_147_034_852,
    992_382_622_183,
];

/// The AWS account of an access key id (`AKIA...`, `ASIA...`), decoded
/// from its base32 body.
pub fn account_id(key_id: &str) -> Option<u64> {
    let body = key_id.get(4..)?;
    if body.len() < 12 {
        return None;
    }
    // The first 48 bits of the body's base32 decoding hold the account
    // number, shifted left by 7.
    let mut bits: u64 = 0;
    for c in body.bytes().take(10) {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        bits = (bits << 5) | u64::from(value);
    }
    // 10 characters are 50 bits: keep the first 48.
    let first48 = bits >> 2;
    Some((first48 & 0x7fff_ffff_ff80) >> 7)
}

/// True when `key_id` belongs to a known canary-token account.
pub fn is_canary(key_id: &str) -> bool {
    account_id(key_id).is_some_and(|account| CANARY_ACCOUNTS.contains(&account))
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // INVARIANT: HMAC accepts keys of any length.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a SigV4 signature covers.
pub struct SigningInput<'a> {
    /// `POST`.
    pub method: &'a str,
    /// The host the request is for (`sts.amazonaws.com`).
    pub host: &'a str,
    /// The path (`/`).
    pub path: &'a str,
    /// The `Content-Type` header.
    pub content_type: &'a str,
    /// The body.
    pub body: &'a str,
    /// `us-east-1`.
    pub region: &'a str,
    /// `sts`.
    pub service: &'a str,
    /// `20261207T022000Z`.
    pub amz_date: &'a str,
}

/// The `Authorization` header of an AWS Signature Version 4 request
/// signed with `key_id` and `secret_key`, over `content-type`, `host` and
/// `x-amz-date`.
pub fn authorization(input: &SigningInput<'_>, key_id: &str, secret_key: &str) -> String {
    let date = input.amz_date.get(..8).unwrap_or_default();
    let signed_headers = "content-type;host;x-amz-date";
    let canonical_request = format!(
        "{}\n{}\n\ncontent-type:{}\nhost:{}\nx-amz-date:{}\n\n{signed_headers}\n{}",
        input.method,
        input.path,
        input.content_type,
        input.host,
        input.amz_date,
        hex(&Sha256::digest(input.body.as_bytes()))
    );
    let scope = format!("{date}/{}/{}/aws4_request", input.region, input.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        input.amz_date,
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{secret_key}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, input.region.as_bytes());
    let k_service = hmac(&k_region, input.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let signature = hex(&hmac(&k_signing, string_to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
    )
}

/// `20261207T022000Z` from an RFC 3339 UTC time.
pub fn amz_date(rfc3339: &str) -> String {
    rfc3339.chars().filter(|c| *c != '-' && *c != ':').collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_decode_from_key_ids() {
        // The documentation example key id of AWS's own docs decodes to a
        // fixed account; a canary account's id is recognised.
        let account = account_id("AKIAIOSFODNN7EXAMPLE").unwrap(); // mayfly:allow (documentation example)
        assert_eq!(account, 581_039_954_779);
        assert!(!is_canary("AKIAIOSFODNN7EXAMPLE")); // mayfly:allow (documentation example)
        assert_eq!(account_id("AKIA"), None);
        assert_eq!(account_id("AKIA0000000000000000"), None);
    }

    #[test]
    fn signatures_match_the_aws_documentation_example() {
        // The GET example of the SigV4 documentation ("Create a canonical
        // request") signs differently; this checks the derivation chain on
        // its published signing-key inputs instead.
        let k_date = hmac(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", b"20120215"); // mayfly:allow (documentation example)
        let k_region = hmac(&k_date, b"us-east-1");
        let k_service = hmac(&k_region, b"iam");
        let k_signing = hmac(&k_service, b"aws4_request");
        assert_eq!(
            hex(&k_signing),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }
}
