//! The copies pass on untrusted bytes: the values the first pass found in
//! them, and a custody value, searched again in every form (the sampled
//! filter, the automaton around what it passes, line counting).
#![no_main]

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use mayfly_scan::copies::{CopySearch, CustodySecret, SecretBytes};
use mayfly_scan::finding::FoundBy;
use mayfly_scan::fingerprint::FingerprintKey;
use mayfly_scan::rule::RuleSet;
use mayfly_scan::scan::{ScanOptions, Scanner};

static SCANNER: OnceLock<Option<Mutex<Scanner>>> = OnceLock::new();

fn key() -> Option<FingerprintKey> {
    FingerprintKey::from_bytes(b"fuzzing fingerprint key").ok()
}

fuzz_target!(|data: &[u8]| {
    let scanner = SCANNER.get_or_init(|| {
        let rules = RuleSet::builtin().ok()?;
        Scanner::new(rules, key()?, ScanOptions::default())
            .ok()
            .map(Mutex::new)
    });
    let (Some(scanner), Some(key)) = (scanner, key()) else {
        return;
    };
    let Ok(mut scanner) = scanner.lock() else {
        return;
    };
    let found = scanner.scan_bytes("fuzz.txt", data);
    let custody = vec![CustodySecret {
        name: "fuzz".into(),
        provider: "Fuzz".into(),
        value: SecretBytes::new(b"q7Vd2LmZx9TfR4wKp8sYb3Nc".to_vec()),
    }];
    let Ok(Some(search)) = CopySearch::new(&found, custody, &key) else {
        return;
    };
    scanner.set_copy_search(Some(search));
    let copies = scanner.scan_bytes("fuzz.txt", data);
    scanner.set_copy_search(None);
    for copy in copies {
        assert_eq!(copy.location.found_by, FoundBy::Copy);
        assert!(copy.location.line >= 1 && copy.location.column >= 1);
    }
});
