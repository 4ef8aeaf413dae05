//! Shared helpers.

use mayfly_scan::fingerprint::FingerprintKey;
use mayfly_scan::rule::RuleSet;
use mayfly_scan::scan::{ScanOptions, Scanner};

pub fn key() -> FingerprintKey {
    FingerprintKey::from_bytes(b"integration-test-fingerprint-key").unwrap()
}

pub fn scanner_with(options: ScanOptions) -> Scanner {
    Scanner::new(RuleSet::builtin().unwrap(), key(), options).unwrap()
}

pub fn scanner() -> Scanner {
    scanner_with(ScanOptions::default())
}
