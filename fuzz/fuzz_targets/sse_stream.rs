//! Every dialect's stream decoder on arbitrary SSE `data:` payloads (the first byte picks the
//! dialect; each line is one event), and the caller-side encoder on whatever it produced.
//! The same bytes as a whole SSE body go through the event splitter twice, whole and in
//! chunks of a size the first byte picks: both must give the same events.
#![no_main]

use bitrouter::api::{StreamDecoder, StreamEncoder};
use bitrouter::canonical::Dialect;
use bitrouter::stream::sse::SseSplitter;
use libfuzzer_sys::fuzz_target;

/// Appends every whole event's data `s` holds to `out`; `false` after data that is not
/// UTF-8 (recorded as `None`).
fn take(s: &mut SseSplitter, end: bool, out: &mut Vec<Option<String>>) -> bool {
    loop {
        match s.next_event(end) {
            Ok(Some(d)) => out.push(Some(d.to_owned())),
            Ok(None) => return true,
            Err(_) => {
                out.push(None);
                return false;
            }
        }
    }
}

/// Every event's data of `body` pushed in chunks of `size`.
fn split(body: &[u8], size: usize) -> Vec<Option<String>> {
    let mut s = SseSplitter::default();
    let mut out = Vec::new();
    for chunk in body.chunks(size) {
        s.push(chunk);
        if !take(&mut s, false, &mut out) {
            return out;
        }
    }
    take(&mut s, true, &mut out);
    out
}

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
    let whole = split(rest, rest.len().max(1));
    assert_eq!(whole, split(rest, 1 + pick as usize / 16), "chunked split differs");
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
