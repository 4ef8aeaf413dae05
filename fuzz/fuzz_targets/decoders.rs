//! Decoders keep their offset maps aligned on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mayfly_scan::decode;

fuzz_target!(|data: &[u8]| {
    let (mut out, mut map) = (Vec::new(), Vec::new());
    decode::unescape(data, &mut out, &mut map);
    assert_eq!(out.len(), map.len());
    assert!(map.iter().all(|&o| (o as usize) < data.len()));
    decode::percent_decode(data, &mut out, &mut map);
    assert_eq!(out.len(), map.len());
    decode::base64_runs(data, |start, end| {
        assert!(start < end && end <= data.len());
        let mut text = Vec::new();
        let _ = decode::decode_base64_text(&data[start..end], &mut text);
    });
});
