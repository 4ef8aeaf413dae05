//! What decides where a proxied request goes never panics on any path,
//! query or header value, and a token is found only where one was put.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mayfly_broker::custody::{Injection, default_injection};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for injection in [
        default_injection("openai"),
        default_injection("anthropic"),
        Injection::Query { name: "key".into() },
    ] {
        if let Some(token) = injection.unwrap_header(text) {
            assert!(!token.is_empty() && text.contains(token));
        }
        if let Some(value) = injection.header_value(text) {
            assert!(value.contains(text));
        }
    }
    let _ = mayfly_broker::custody::check_upstream(text);
    let _ = mayfly_broker::custody::check_name(text);
});
