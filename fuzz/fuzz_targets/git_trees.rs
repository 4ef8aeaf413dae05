//! Git tree objects from a scanned repository: any bytes are read as
//! entries or refused with an offset inside them, never a panic, and the
//! merge of two trees reports only entries of the new one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mayfly_scan::tree;

fuzz_target!(|data: &[u8]| {
    let (old, new) = data.split_at(data.len() / 2);
    for entry in tree::entries(new) {
        match entry {
            Ok(entry) => assert!(!entry.name.is_empty() && !entry.name.contains(&0)),
            Err(e) => assert!(e.offset < new.len()),
        }
    }
    let mut changed = 0;
    let read = tree::changes(Some(old), new, |entry, previous| {
        assert!(previous.is_none_or(|p| p.name == entry.name && p.id != entry.id));
        changed += 1;
    });
    let total = tree::entries(new).take_while(Result::is_ok).count();
    assert!(changed <= total);
    if read.is_ok() {
        assert!(tree::entries(new).all(|e| e.is_ok()));
    }
});
