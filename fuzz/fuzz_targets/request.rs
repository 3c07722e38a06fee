//! Every dialect's request decoder on arbitrary bytes (the first byte picks the dialect),
//! then what the gateway does next with a request it accepted: the budget's worst-case bound
//! and the encoding toward every upstream dialect. Nothing may panic.
#![no_main]

use bitrouter::api;
use bitrouter::canonical::Dialect;
use libfuzzer_sys::fuzz_target;

const DIALECTS: [Dialect; 4] = [
    Dialect::OpenAiChat,
    Dialect::OpenAiResponses,
    Dialect::Anthropic,
    Dialect::Gemini,
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let dialect = DIALECTS[pick as usize % DIALECTS.len()];
    let Ok(request) = api::decode_request(dialect, body) else {
        return;
    };
    let _ = bitrouter::budget::input_bound(&request);
    let _ = bitrouter::budget::output_bound(&request, 4096);
    for upstream in DIALECTS {
        let _ = api::encode_request(upstream, &request, "m");
    }
});
