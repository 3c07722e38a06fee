//! The fault suite: a fault-injecting upstream (error statuses, HTML error pages, a cut
//! connection before or inside a stream or inside a JSON body, a stall before the headers,
//! after a JSON answer's headers or mid-stream, a connection reset (TCP RST), an answer past
//! `max_response_size`, an event whose data is not JSON, a 1 MB SSE event) × every caller dialect × JSON and stream ×
//! with and without a healthy fallback. What must hold in every cell:
//! - a fault before the first content, with a fallback: the caller sees no error at all;
//! - without one: an error in the caller's dialect (a JSON error object with the right
//!   status, or, once a stream has started, the dialect's error event and no end marker);
//! - the faulty endpoint's failures count: with `cooldown.failures: 1`, the next request
//!   skips it;
//! - every request leaves exactly one ledger row.

use bitrouter_mock::{MockBehavior, MockServer};
use serde_json::{Value, json};

use crate::harness::*;

/// The caller dialects, with the provider protocol their upstreams speak here.
const DIALECTS: [(&str, &str); 4] = [
    ("openai", "openai"),
    ("responses", "openai"),
    ("anthropic", "anthropic"),
    ("gemini", "google"),
];

/// When a fault strikes: before anything reached the caller, or after content did.
#[derive(Clone, Copy, PartialEq, Debug)]
enum When {
    BeforeContent,
    AfterContent,
}

struct Fault {
    name: &'static str,
    behavior: MockBehavior,
    /// JSON requests are hit too (stream-only faults are skipped for JSON).
    json: bool,
    /// When it strikes a stream; `None`: streams are not affected by it.
    stream: Option<When>,
}

fn faults() -> Vec<Fault> {
    let b = MockBehavior::default;
    vec![
        Fault {
            name: "500",
            behavior: MockBehavior {
                status: Some(500),
                ..b()
            },
            json: true,
            stream: Some(When::BeforeContent),
        },
        Fault {
            name: "429",
            behavior: MockBehavior {
                status: Some(429),
                ..b()
            },
            json: true,
            stream: Some(When::BeforeContent),
        },
        Fault {
            name: "html 502",
            behavior: MockBehavior {
                status: Some(502),
                html_error: true,
                ..b()
            },
            json: true,
            stream: Some(When::BeforeContent),
        },
        Fault {
            name: "stall before headers",
            behavior: MockBehavior {
                stall_before_headers: true,
                ..b()
            },
            json: true,
            stream: Some(When::BeforeContent),
        },
        Fault {
            name: "cut JSON body",
            behavior: MockBehavior {
                cut_body: true,
                ..b()
            },
            json: true,
            stream: None,
        },
        Fault {
            name: "stall after the JSON headers",
            behavior: MockBehavior {
                stall_body: true,
                ..b()
            },
            json: true,
            stream: None,
        },
        Fault {
            name: "connection reset",
            behavior: MockBehavior { reset: true, ..b() },
            json: true,
            stream: Some(When::BeforeContent),
        },
        Fault {
            name: "huge answer",
            behavior: MockBehavior {
                pad_bytes: Some(4 << 20),
                ..b()
            },
            json: true,
            // Streams are read event by event; the mock pads JSON answers only.
            stream: None,
        },
        Fault {
            name: "cut before the first event",
            behavior: MockBehavior {
                cut_after: Some(0),
                ..b()
            },
            json: false,
            stream: Some(When::BeforeContent),
        },
        Fault {
            name: "stall before the first event",
            behavior: MockBehavior {
                stall_after_chunks: Some(0),
                ..b()
            },
            json: false,
            stream: Some(When::BeforeContent),
        },
        Fault {
            name: "cut after two events",
            behavior: MockBehavior {
                cut_after: Some(2),
                ..b()
            },
            json: false,
            stream: Some(When::AfterContent),
        },
        Fault {
            name: "malformed event first",
            behavior: MockBehavior {
                malformed_after: Some(0),
                ..b()
            },
            json: false,
            stream: Some(When::BeforeContent),
        },
        Fault {
            name: "malformed event after two",
            behavior: MockBehavior {
                malformed_after: Some(2),
                ..b()
            },
            json: false,
            stream: Some(When::AfterContent),
        },
        Fault {
            name: "stall after two events",
            behavior: MockBehavior {
                stall_after_chunks: Some(2),
                ..b()
            },
            json: false,
            stream: Some(When::AfterContent),
        },
    ]
}

fn request(dialect: &str, model: &str, stream: bool) -> (String, Value) {
    if dialect == "gemini" {
        let verb = if stream {
            "streamGenerateContent?alt=sse"
        } else {
            "generateContent"
        };
        return (
            format!("/v1beta/models/{model}:{verb}"),
            json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
        );
    }
    let (path, mut body) = request_for(dialect, model, "hi");
    if stream {
        body["stream"] = json!(true);
    }
    (path.to_owned(), body)
}

/// The error object of a JSON error in `dialect`, or a panic saying what came instead.
fn error_message(dialect: &str, r: &Reply) -> String {
    let v: Value = serde_json::from_str(&r.text)
        .unwrap_or_else(|_| panic!("{dialect}: error body is not JSON: {}", r.text));
    if dialect == "anthropic" {
        assert_eq!(v["type"], "error", "{dialect}: {v}");
    }
    v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{dialect}: no error.message in {v}"))
        .to_owned()
}

/// Whether a streamed body ended with the dialect's end marker.
fn ended_cleanly(dialect: &str, text: &str) -> bool {
    match dialect {
        "openai" => text.contains("[DONE]"),
        "responses" => text.contains("response.completed"),
        "anthropic" => text.contains("message_stop"),
        // Gemini has no end marker: the last chunk carries the finish reason.
        _ => text.contains("\"finishReason\":\"STOP\""),
    }
}

/// Whether a streamed body carries the dialect's error event.
fn has_error_event(dialect: &str, text: &str) -> bool {
    match dialect {
        "responses" => text.contains("response.failed"),
        _ => text.contains("\"error\""),
    }
}

struct Setup {
    gw: TestGateway,
    primary: MockServer,
    _backup: MockServer,
}

async fn setup(protocol: &str) -> Setup {
    let primary = mock().await;
    let backup = mock().await;
    let yaml = format!(
        "{}routing:\n  timeouts: {{ first_byte: 700ms, idle: 400ms }}\nupstream:\n  max_response_size: 1MiB\nmodels:\n  pair:\n    cooldown: {{ failures: 1, duration: 1h }}\n    endpoints:\n      - {{ provider: primary, model_id: p }}\n      - {{ provider: backup, model_id: b }}\n  solo:\n    cooldown: {{ failures: 1, duration: 1h }}\n    endpoints:\n      - {{ provider: primary, model_id: p }}\n",
        providers(&[
            ("primary", protocol, &primary),
            ("backup", protocol, &backup)
        ])
    );
    Setup {
        gw: TestGateway::start(&yaml).await,
        primary,
        _backup: backup,
    }
}

/// Runs every fault for one caller dialect, JSON and stream, with and without a fallback.
async fn every_fault(dialect: &str, protocol: &str) {
    for fault in faults() {
        for stream in [false, true] {
            if (!stream && !fault.json) || (stream && fault.stream.is_none()) {
                continue;
            }
            // A fresh gateway per cell, so the cool-down of one cell does not steer the next.
            let s = setup(protocol).await;
            s.primary.set_behavior(fault.behavior.clone());
            let cell = format!(
                "{dialect} {} {}",
                fault.name,
                if stream { "stream" } else { "json" }
            );
            let before_content = !stream || fault.stream == Some(When::BeforeContent);

            // With a healthy fallback.
            let (path, body) = request(dialect, "pair", stream);
            let r = post(&s.gw, &path, &body).await;
            assert_eq!(r.status, 200, "{cell}: {}", r.text);
            if before_content {
                assert_eq!(r.header("x-bitrouter-upstream"), "backup:b", "{cell}");
                if stream {
                    assert!(ended_cleanly(dialect, &r.text), "{cell}: {}", r.text);
                    assert!(!has_error_event(dialect, &r.text), "{cell}: {}", r.text);
                }
            } else {
                // Content went out: the cut cannot be hidden; the stream says so.
                assert_eq!(r.header("x-bitrouter-upstream"), "primary:p", "{cell}");
                assert!(!ended_cleanly(dialect, &r.text), "{cell}: {}", r.text);
                assert!(has_error_event(dialect, &r.text), "{cell}: {}", r.text);
            }
            // The endpoint cooled down: the next request goes straight to the fallback.
            let r = post(&s.gw, &path, &body).await;
            assert_eq!(r.status, 200, "{cell} (after): {}", r.text);
            assert_eq!(
                r.header("x-bitrouter-upstream"),
                "backup:b",
                "{cell} (after)"
            );
            assert_eq!(r.header("x-bitrouter-attempts"), "1", "{cell} (after)");

            // Without one (a fresh gateway: the cool-down would hide the fault).
            let s2 = setup(protocol).await;
            s2.primary.set_behavior(fault.behavior.clone());
            let (path, body) = request(dialect, "solo", stream);
            let r = post(&s2.gw, &path, &body).await;
            if before_content {
                assert!(r.status >= 400, "{cell} (solo): {} {}", r.status, r.text);
                let msg = error_message(dialect, &r);
                assert!(!msg.is_empty(), "{cell} (solo)");
                assert_eq!(
                    r.header("content-type"),
                    "application/json",
                    "{cell} (solo)"
                );
            } else {
                assert_eq!(r.status, 200, "{cell} (solo)");
                assert!(
                    has_error_event(dialect, &r.text),
                    "{cell} (solo): {}",
                    r.text
                );
            }

            // One ledger row per request, failures included.
            for (gw, n) in [(&s.gw, 2), (&s2.gw, 1)] {
                let mut rows = 0;
                for _ in 0..300 {
                    rows = gw.gateway.ledger().rows(0, i64::MAX).await.unwrap().len();
                    if rows >= n {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                assert_eq!(rows, n, "{cell}: ledger rows");
            }
        }
    }
}

#[tokio::test]
async fn faults_openai_chat() {
    every_fault(DIALECTS[0].0, DIALECTS[0].1).await;
}

#[tokio::test]
async fn faults_openai_responses() {
    every_fault(DIALECTS[1].0, DIALECTS[1].1).await;
}

#[tokio::test]
async fn faults_anthropic() {
    every_fault(DIALECTS[2].0, DIALECTS[2].1).await;
}

#[tokio::test]
async fn faults_gemini() {
    every_fault(DIALECTS[3].0, DIALECTS[3].1).await;
}

/// A 1 MB SSE event (one text delta of 1 MB) passes through whole: large events are not a
/// fault, and the guard window does not hold the stream back for ever.
#[tokio::test]
async fn a_one_megabyte_sse_event_passes_through() {
    let big = "x".repeat(1 << 20);
    let m = mock_with(MockBehavior {
        text: Some(big.clone()),
        chunks: Some(1),
        ..Default::default()
    })
    .await;
    let gw = TestGateway::start(&format!(
        "{}models:\n  r:\n    endpoints: [{{ provider: p, model_id: x }}]\n",
        providers(&[("p", "openai", &m)])
    ))
    .await;
    let mut body = openai_chat("r", "hi");
    body["stream"] = json!(true);
    let r = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("[DONE]"));
    assert_eq!(streamed_text("openai", &r).len(), big.len());
}
