//! A guardrail that misbehaves on demand, for the host's sandbox tests.
//!
//! Its config picks the misbehaviour: `{"mode": "<mode>"}`. With no config it behaves: one
//! pattern `x-run` (regex `X+`), `check` keeps every candidate, `scan` finds nothing.
//!
//! | mode | what `check` does |
//! | --- | --- |
//! | `trap` | panics (a trap: the guest is built with `panic = "abort"`) |
//! | `trap-on-trap` | panics when the text contains `TRAP`, else behaves |
//! | `loop` | loops forever (the epoch deadline stops it) |
//! | `memory` | allocates until the memory cap refuses to grow |
//! | `huge` | returns 5,000 findings (the host allows 4,096) |
//! | `span-out` | returns a span past the end of the text |
//! | `span-utf8` | returns a span that splits a multi-byte character |
//! | `unknown-id` | returns a finding for a pattern it never declared |
//! | `log-flood` | logs 100 lines, then behaves |
//!
//! and at load: `configure-fails` (configure returns an error), `configure-loops`
//! (configure never returns), `bad-describe` (declares the same pattern id twice).

use std::sync::Mutex;

use bitrouter_plugin::guardrail::*;

static MODE: Mutex<String> = Mutex::new(String::new());

fn mode() -> String {
    MODE.lock().map(|m| m.clone()).unwrap_or_default()
}

struct Hostile;

impl Guardrail for Hostile {
    fn configure(config: &str) -> Result<(), String> {
        let mode = config
            .split("\"mode\"")
            .nth(1)
            .and_then(|rest| rest.split('"').nth(1))
            .unwrap_or("")
            .to_owned();
        match mode.as_str() {
            "configure-fails" => return Err("refusing to start: configure-fails mode".into()),
            "configure-loops" => spin(),
            _ => {}
        }
        *MODE.lock().map_err(|e| e.to_string())? = mode;
        Ok(())
    }

    fn describe() -> Vec<Pattern> {
        let p = Pattern::new("x-run", "Runs of X").regex("X+").max_match_len(64);
        if mode() == "bad-describe" {
            return vec![p.clone(), p];
        }
        vec![p]
    }

    fn check(pattern: &str, text: &str, candidates: Vec<Span>) -> Vec<Finding> {
        match mode().as_str() {
            "trap" => panic!("hostile plugin: trap mode"),
            "trap-on-trap" if text.contains("TRAP") => panic!("hostile plugin: asked to trap"),
            "loop" => spin(),
            "memory" => {
                // Reserve (and so grow linear memory) without touching the pages, so the
                // memory cap is hit long before the deadline.
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(Vec::with_capacity(4 << 20));
                    std::hint::black_box(&hoard);
                }
            }
            "huge" => (0..5_000)
                .map(|_| Finding::new(pattern, Span::new(0, 0)))
                .collect(),
            "span-out" => vec![Finding::new(pattern, Span::new(0, text.len() + 10))],
            "span-utf8" => {
                let (i, _) = text
                    .char_indices()
                    .find(|(_, c)| c.len_utf8() > 1)
                    .unwrap_or((0, 'x'));
                vec![Finding::new(pattern, Span::new(i + 1, text.len()))]
            }
            "unknown-id" => vec![Finding::new("not-declared", Span::new(0, 0))],
            mode => {
                if mode == "log-flood" {
                    for i in 0..100 {
                        log::warn(&format!("flood line {i}"));
                    }
                }
                candidates
                    .into_iter()
                    .map(|s| Finding::new(pattern, s))
                    .collect()
            }
        }
    }
}

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

bitrouter_plugin::export_guardrail!(Hostile);
