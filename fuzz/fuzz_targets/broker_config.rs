//! Configuration and policy text never crash the broker: a bad file is an
//! error, whatever its bytes.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mayfly_broker::config::BrokerConfig;
use mayfly_broker::policy::PolicyEngine;

fuzz_target!(|data: &[u8]| {
    static ENGINE: OnceLock<PolicyEngine> = OnceLock::new();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = BrokerConfig::parse(text, "fuzz.toml");
    let engine = ENGINE.get_or_init(|| PolicyEngine::new().expect("schema"));
    let _ = engine.load_texts(&[("fuzz.cedar".to_owned(), text.to_owned())], "fuzz");
});
