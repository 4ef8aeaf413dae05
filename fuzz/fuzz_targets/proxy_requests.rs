//! What decides where a proxied request goes never panics on any path,
//! query or header value, and a token is found only where one was put.
//! Nor do the audiences and scopes of upstream credentials, nor custody's
//! check of a secret's value.
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
    if mayfly_broker::custody::check_secret(text).is_ok()
        && !mayfly_broker::custody::is_private_key(text)
    {
        assert!(!text.chars().any(char::is_control));
    }
    let _ = mayfly_broker::minted::Target::of(text);
    let scopes: Vec<String> = text.split(' ').map(str::to_owned).collect();
    if let Ok(request) = mayfly_broker::minted::TokenRequest::from_scopes("fuzz", &scopes) {
        assert!(request.repositories.len() + request.permissions.len() <= scopes.len());
    }
});
