//! Every dialect's stream decoder on arbitrary SSE `data:` payloads (the first byte picks the
//! dialect; each line is one event), and the caller-side encoder on whatever it produced.
#![no_main]

use bitrouter::api::{StreamDecoder, StreamEncoder};
use bitrouter::canonical::Dialect;
use libfuzzer_sys::fuzz_target;

const DIALECTS: [Dialect; 4] = [
    Dialect::OpenAiChat,
    Dialect::OpenAiResponses,
    Dialect::Anthropic,
    Dialect::Gemini,
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let upstream = DIALECTS[pick as usize % DIALECTS.len()];
    let caller = DIALECTS[(pick as usize / 4) % DIALECTS.len()];
    let text = String::from_utf8_lossy(rest);
    let mut decoder = StreamDecoder::new(upstream);
    let mut encoder = StreamEncoder::new(caller, true);
    let mut events = Vec::new();
    let mut out = Vec::new();
    for line in text.split('\n') {
        events.clear();
        if decoder.decode(line, &mut events).is_err() {
            return;
        }
        for e in &events {
            encoder.encode(e, &mut out);
        }
    }
    let _ = decoder.finished();
});
