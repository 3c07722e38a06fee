//! The config loader on arbitrary YAML: a bad file is an error naming file, line and key,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = bitrouter::config::Config::parse(text, std::path::Path::new("fuzz.yaml"));
});
