//! The whole engine on untrusted bytes: prefilter, patterns, decoders,
//! validators, overlap resolution, line counting.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mayfly_scan::fingerprint::FingerprintKey;
use mayfly_scan::rule::RuleSet;
use mayfly_scan::scan::{ScanOptions, Scanner};

static SCANNER: OnceLock<Option<Scanner>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let scanner = SCANNER.get_or_init(|| {
        let rules = RuleSet::builtin().ok()?;
        let key = FingerprintKey::from_bytes(b"fuzzing fingerprint key").ok()?;
        Scanner::new(rules, key, ScanOptions::default()).ok()
    });
    if let Some(scanner) = scanner {
        for finding in scanner.scan_bytes("fuzz.jsonl", data) {
            assert!(finding.location.line >= 1 && finding.location.column >= 1);
        }
    }
});
