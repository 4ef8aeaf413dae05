//! MCP client configurations as `mayfly mcp` reads and wraps them (JSON,
//! JSONC, Codex TOML): reading never panics, and wrapping every server
//! that holds the spliced-in secret in its env, a header or a URL
//! parameter never panics.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mayfly_migrate::servers::{Moved, Place, ServerWrap, WrapWith, read_servers, wrap_servers};

const SECRET: &str = "ghp_FUZZSECRET0123456789abcdefABCDEF0123";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let text = text.replacen("@@", SECRET, 2);
    let with = WrapWith {
        program: "mayfly".into(),
        owner: "team".into(),
        env: vec![],
    };
    for name in ["mcp.json", "config.toml"] {
        let Ok(servers) = read_servers(Path::new(name), &text) else {
            continue;
        };
        let wraps: Vec<ServerWrap> = servers
            .iter()
            .filter(|s| !s.wrapped)
            .filter_map(|s| {
                let holding = || s.slots.iter().filter(|slot| slot.value.contains(SECRET));
                let keys: Vec<String> = holding()
                    .filter_map(|slot| match &slot.place {
                        Place::Env(key) => Some(key.clone()),
                        _ => None,
                    })
                    .collect();
                let remote = holding().find_map(|slot| match &slot.place {
                    Place::Header(name) => Some(Moved::Header(name.clone())),
                    Place::Query(name) => Some(Moved::Query(name.clone())),
                    _ => None,
                });
                let moved = match remote {
                    Some(remote) if keys.is_empty() => remote,
                    _ if !keys.is_empty() => Moved::Env(keys),
                    _ => return None,
                };
                Some(ServerWrap {
                    server: s.name.clone(),
                    moved,
                    entries: vec!["github-fuzz".into()],
                })
            })
            .collect();
        // Rewriting may refuse (JSONC, odd shapes); it must not panic.
        let _ = wrap_servers(Path::new(name), &text, &wraps, &with);
    }
});
