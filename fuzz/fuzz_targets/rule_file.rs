//! User rule files are untrusted input: parsing and compiling never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mayfly_scan::rule::RuleSet;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let mut set = RuleSet::default();
        let _ = set.add_toml(text, "fuzz.toml");
    }
});
