//! Rewriting a copy's file never panics, never leaves the secret in a
//! rewrite it returns, and its patch never shows the secret.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mayfly_migrate::{Wrapper, patch, rewrite};

const SECRET: &str = "sk-proj-FUZZSECRET0123";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The secret spliced into the input, so rewrites have something to do.
    let text = text.replacen("@@", SECRET, 2);
    let wrapper = Wrapper {
        entry: "openai".into(),
        program: "mayfly".into(),
        owner: "team".into(),
        env: vec![],
    };
    for name in [".env", "mcp.json", "config.toml", "compose.yaml"] {
        if let Ok(rewritten) = rewrite(Path::new(name), &text, SECRET, &wrapper) {
            assert!(!rewritten.text.contains(SECRET));
            assert!(!patch(name, &text, &rewritten.text, SECRET).contains(SECRET));
        }
    }
});
