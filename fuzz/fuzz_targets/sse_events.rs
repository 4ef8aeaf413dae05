//! Server-sent events as `mayfly mcp connect` reads a remote MCP server's
//! streams: any bytes, cut anywhere, never panic, stay within the bound,
//! and give the same events as the bytes read whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mayfly_broker::sse::EventReader;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let whole = EventReader::new(4096).feed(stream);
    let cut = usize::from(cut).min(stream.len());
    let (first, second) = stream.split_at(cut);
    let mut reader = EventReader::new(4096);
    let pieces = reader.feed(first).and_then(|mut events| {
        events.extend(reader.feed(second)?);
        Ok(events)
    });
    if let (Ok(whole), Ok(pieces)) = (&whole, &pieces) {
        assert_eq!(whole, pieces);
        assert!(whole.iter().all(|e| e.data.len() <= 4096));
    }
});
