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

/// Fake credentials in the exact formats the rules accept.
pub const GITHUB: &str = "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"; // mayfly:allow (test fixture)
pub const OPENAI: &str = "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"; // mayfly:allow (test fixture)
pub const ANTHROPIC: &str = "sk-ant-api03-xKU2siIvIybHqFgq9011sOifjs-ZWG7tHPXDLxpaA42AJ4VtqKDcddwYskyw5gXDAg2Czx5jdw4JyJpwZqMLQMKw3ie3yAA"; // mayfly:allow (test fixture)
pub const AWS_ID: &str = "AKIALA27I5TV7GHJW2ZQ"; // mayfly:allow (test fixture)
pub const AWS_SECRET: &str = "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"; // mayfly:allow (test fixture)
pub const STRIPE: &str = "sk_live_eajJdMkbjg4UrICTEDdQXcM7"; // mayfly:allow (test fixture)
pub const SLACK: &str = "xoxb-101504307929-4398728033150-9ESnrPgulbClFpLAnC3NZ4Sk"; // mayfly:allow (test fixture)

/// Rule ids of `findings`, in order.
pub fn ids(findings: &[mayfly_scan::finding::Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.rule.id.as_str()).collect()
}
