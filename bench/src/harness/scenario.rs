//! The scenarios of issue 8: what each sends direct to the mock and via the gateway, how the
//! mock behaves meanwhile, and how it is driven. Direct and via requests carry the same
//! payload (the gateway's routes are named after the mock's models), so the difference
//! between them is the gateway.

use std::net::SocketAddr;
use std::time::Duration;

use bitrouter_mock::MockBehavior;
use bytes::Bytes;
use serde_json::json;

use crate::load::{Expect, RequestSpec};

/// How a scenario is driven.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// Open loop at `rate` req/s, then (if `closed`) closed loop for max throughput.
    Overhead { rate: f64, closed: bool },
    /// `streams` long streams opened at `rate` per second and held until they end.
    HeldStreams { streams: u64, rate: f64 },
}

/// A request as a template: the address is filled in per target.
#[derive(Clone, Debug)]
pub struct Call {
    pub path: &'static str,
    pub body: Bytes,
    pub anthropic_version: bool,
}

impl Call {
    pub fn spec(&self, addr: SocketAddr) -> RequestSpec {
        let spec = RequestSpec::post_json(addr, self.path, self.body.clone());
        if self.anthropic_version {
            spec.header("anthropic-version", "2023-06-01")
        } else {
            spec
        }
    }
}

/// Which gateway serves a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deployment {
    /// Guardrails and auth off: the bare proxy.
    Bare,
    /// The default deployment: auth on, the 7 default guardrails.
    Firewall,
    /// Auth off, the built-in guardrails off, and only this guardrail plugin
    /// (`<plugins dir>/<id>.wasm`, its manifest beside it).
    Plugin(&'static str),
}

pub struct Scenario {
    pub id: u8,
    pub name: &'static str,
    pub description: String,
    /// Why it cannot run in this build, if it cannot.
    pub not_measurable: Option<&'static str>,
    /// The gateway that serves it.
    pub deployment: Deployment,
    pub mock: MockBehavior,
    pub direct: Call,
    pub via: Call,
    pub stream: bool,
    pub expect: Expect,
    pub shape: Shape,
}

impl Scenario {
    /// How long one stream lasts at the mock, roughly.
    pub fn stream_seconds(&self) -> f64 {
        let b = &self.mock;
        (b.latency_ms + b.ttft_ms + b.chunk_delay_ms * b.chunk_count() as u64) as f64 / 1000.0
    }

    /// How long to wait for the last responses of an open-loop phase.
    pub fn drain(&self) -> Duration {
        Duration::from_secs_f64(self.stream_seconds() + 10.0)
    }
}

/// Deterministic prose of exactly `bytes` bytes (ASCII), so prompts look like text to any
/// code that scans them, and every run sends the same thing.
pub fn prompt(bytes: usize) -> String {
    const WORDS: &[&str] = &[
        "the",
        "gateway",
        "forwards",
        "each",
        "request",
        "to",
        "an",
        "upstream",
        "model",
        "and",
        "streams",
        "tokens",
        "back",
        "while",
        "it",
        "counts",
        "usage",
        "for",
        "every",
        "caller",
        "please",
        "summarise",
        "this",
        "paragraph",
        "about",
        "latency",
        "budgets",
        "routing",
        "failover",
        "of",
        "large",
        "language",
        "models",
        "in",
        "production",
    ];
    let mut out = String::with_capacity(bytes + 16);
    let mut i = 0usize;
    while out.len() < bytes {
        if !out.is_empty() {
            // A full stop every 17 words, so the text has sentences.
            if i.is_multiple_of(17) {
                out.push_str(". ");
            } else {
                out.push(' ');
            }
        }
        out.push_str(WORDS[(i * 7 + i / 5) % WORDS.len()]);
        i += 1;
    }
    out.truncate(bytes);
    out
}

fn openai_body(model: &str, prompt: &str, stream: bool) -> Bytes {
    let body = json!({
        "model": model,
        "max_tokens": 256,
        "stream": stream,
        "messages": [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": prompt}
        ]
    });
    Bytes::from(body.to_string())
}

fn anthropic_body(model: &str, prompt: &str) -> Bytes {
    let body = json!({
        "model": model,
        "max_tokens": 256,
        "system": "You are a concise assistant.",
        "messages": [{"role": "user", "content": prompt}]
    });
    Bytes::from(body.to_string())
}

fn chat(body: Bytes) -> Call {
    Call {
        path: "/v1/chat/completions",
        body,
        anthropic_version: false,
    }
}

/// The request that proves a freshly started gateway serves.
pub fn cold_start_body() -> Bytes {
    openai_body("mock-gpt", "hi", false)
}

/// Every scenario in issue 8's order. `smoke` shrinks the long-stream scenario.
pub fn all(smoke: bool) -> Vec<Scenario> {
    let p2k = prompt(2 * 1024);
    let p100k = prompt(100 * 1024);
    let fast = MockBehavior::default();
    let json_2k = openai_body("mock-gpt", &p2k, false);
    let (held_streams, held_behavior) = if smoke {
        (
            100,
            MockBehavior {
                latency_ms: 60,
                chunks: Some(10),
                chunk_delay_ms: 20,
                ..Default::default()
            },
        )
    } else {
        (
            1000,
            MockBehavior {
                latency_ms: 60,
                chunks: Some(100),
                chunk_delay_ms: 100,
                ..Default::default()
            },
        )
    };
    vec![
        Scenario {
            id: 1,
            name: "bare proxy, OpenAI → OpenAI",
            description: "Chat completion, JSON, 2 KB prompt, mock answers at once.".to_owned(),
            not_measurable: None,
            deployment: Deployment::Bare,
            mock: fast.clone(),
            direct: chat(json_2k.clone()),
            via: chat(json_2k.clone()),
            stream: false,
            expect: Expect::JSON,
            shape: Shape::Overhead {
                rate: 1000.0,
                closed: true,
            },
        },
        Scenario {
            id: 2,
            name: "translation, OpenAI caller → Anthropic upstream",
            description: "2 KB prompt. Direct is the equivalent Anthropic Messages request to \
                          the mock; via, the OpenAI request the gateway translates both ways."
                .to_owned(),
            not_measurable: None,
            deployment: Deployment::Bare,
            mock: fast.clone(),
            direct: Call {
                path: "/v1/messages",
                body: anthropic_body("mock-claude", &p2k),
                anthropic_version: true,
            },
            via: chat(openai_body("mock-claude", &p2k, false)),
            stream: false,
            expect: Expect::JSON,
            shape: Shape::Overhead {
                rate: 1000.0,
                closed: true,
            },
        },
        Scenario {
            id: 3,
            name: "auth + 7 default guardrails, 2 KB prompt",
            description: "OpenAI → OpenAI JSON, 2 KB prompt, a wallet-signed token (SOL_EDDSA, \
                          verified once, then from the cache) and the 7 default guardrails \
                          (upgoing on the prompt, downgoing on the answer)."
                .to_owned(),
            not_measurable: None,
            deployment: Deployment::Firewall,
            mock: fast.clone(),
            direct: chat(json_2k.clone()),
            via: chat(json_2k.clone()),
            stream: false,
            expect: Expect::JSON,
            shape: Shape::Overhead {
                rate: 1000.0,
                closed: true,
            },
        },
        Scenario {
            id: 4,
            name: "streaming, 100-chunk responses",
            description: "OpenAI → OpenAI SSE, 100 text deltas sent back to back, 2 KB prompt, \
                          with auth and the 7 default guardrails (downgoing ones on the stream)."
                .to_owned(),
            not_measurable: None,
            deployment: Deployment::Firewall,
            mock: MockBehavior {
                chunks: Some(100),
                ..Default::default()
            },
            direct: chat(openai_body("mock-gpt", &p2k, true)),
            via: chat(openai_body("mock-gpt", &p2k, true)),
            stream: true,
            expect: Expect::OPENAI_STREAM,
            shape: Shape::Overhead {
                rate: 200.0,
                closed: true,
            },
        },
        Scenario {
            id: 5,
            name: "100 KB request bodies",
            description: "OpenAI → OpenAI JSON with a 100 KB prompt.".to_owned(),
            not_measurable: None,
            deployment: Deployment::Bare,
            mock: fast.clone(),
            direct: chat(openai_body("mock-gpt", &p100k, false)),
            via: chat(openai_body("mock-gpt", &p100k, false)),
            stream: false,
            expect: Expect::JSON,
            shape: Shape::Overhead {
                rate: 200.0,
                closed: true,
            },
        },
        Scenario {
            id: 6,
            name: "failover path",
            description: "Route whose first endpoint refuses connections (a closed loopback \
                          port) and whose second is the mock; the dead endpoint is never \
                          cooled down, so every request fails over. Direct goes straight to \
                          the mock."
                .to_owned(),
            not_measurable: None,
            deployment: Deployment::Bare,
            mock: fast.clone(),
            direct: chat(json_2k.clone()),
            via: chat(openai_body("failover", &p2k, false)),
            stream: false,
            expect: Expect::JSON,
            shape: Shape::Overhead {
                rate: 1000.0,
                closed: true,
            },
        },
        Scenario {
            id: 7,
            name: "concurrent streams held open",
            description: format!(
                "{held_streams} OpenAI streams at once; the mock waits {} ms, then sends {} \
                 deltas {} ms apart. Measures the gateway's memory with them all open.",
                held_behavior.latency_ms,
                held_behavior.chunk_count(),
                held_behavior.chunk_delay_ms
            ),
            not_measurable: None,
            deployment: Deployment::Bare,
            mock: held_behavior,
            direct: chat(openai_body("mock-gpt", "hi", true)),
            via: chat(openai_body("mock-gpt", "hi", true)),
            stream: true,
            expect: Expect::OPENAI_STREAM,
            shape: Shape::HeldStreams {
                streams: held_streams,
                // Opened over ~1 s (0.1 s in smoke), well before the first one ends.
                rate: if smoke { 1000.0 } else { held_streams as f64 },
            },
        },
        plugin_scenario(
            8,
            "JavaScript guardrail plugin",
            "js-guardrail",
            "componentize-js",
        ),
        plugin_scenario(
            9,
            "Python guardrail plugin",
            "python-guardrail",
            "componentize-py",
        ),
        Scenario {
            id: 10,
            name: "mid-stream failover",
            description: "Scenario 4's stream (100 text deltas, auth, the 7 default guardrails) \
                          through a route whose first endpoint cuts every stream after 50 \
                          deltas and whose second continues the partial answer \
                          (`mid_stream_failover: continue`; an OpenAI endpoint: the partial answer \
                          plus a user turn asking to continue). Direct is the whole stream from \
                          the mock; via minus scenario 4's via is the time to recover, from the \
                          cut to the continuation's first byte, on top of scenario 4's overhead."
                .to_owned(),
            not_measurable: None,
            deployment: Deployment::Firewall,
            mock: MockBehavior {
                chunks: Some(100),
                ..Default::default()
            },
            direct: chat(openai_body("mock-gpt", &p2k, true)),
            via: chat(openai_body("midstream", &p2k, true)),
            stream: true,
            expect: Expect::OPENAI_STREAM,
            shape: Shape::Overhead {
                rate: 200.0,
                closed: true,
            },
        },
    ]
}

/// A 2 KB prompt with one internal document id in it, so the example guardrail's regex
/// matches once and its `check` runs on every request (the id is redacted on the way up).
fn plugin_scenario(id: u8, name: &'static str, plugin: &'static str, toolchain: &str) -> Scenario {
    let mut p2k = prompt(2 * 1024 - 32);
    p2k.push_str(" see CONFIDENTIAL-123456 today.");
    let body = openai_body("mock-gpt", &p2k, false);
    Scenario {
        id,
        name,
        description: format!(
            "OpenAI → OpenAI JSON, 2 KB prompt holding one CONFIDENTIAL-NNNNNN id, auth off, \
             only the example `{plugin}` guardrail ({toolchain}): its regex matches once per \
             request and its `check` confirms the finding in the WASM sandbox."
        ),
        not_measurable: None,
        deployment: Deployment::Plugin(plugin),
        mock: MockBehavior::default(),
        direct: chat(body.clone()),
        via: chat(body),
        stream: false,
        expect: Expect::JSON,
        shape: Shape::Overhead {
            rate: 1000.0,
            closed: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_have_the_exact_size() {
        for n in [0, 1, 2048, 100 * 1024] {
            assert_eq!(prompt(n).len(), n);
        }
        assert!(prompt(2048).contains(' '));
    }

    #[test]
    fn scenarios_are_numbered_like_the_issue() {
        let ids: Vec<u8> = all(false).iter().map(|s| s.id).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        let s7 = all(false).into_iter().find(|s| s.id == 7);
        assert!(s7.is_some_and(|s| s.stream_seconds() > 9.0));
    }
}
