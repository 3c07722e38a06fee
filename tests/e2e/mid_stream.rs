//! Mid-stream failover through the real server: upstreams that cut, stall or send an error
//! event after their first content, in every upstream dialect, carried on by the next
//! endpoint inside the same client stream for every caller dialect; restarts (asked for,
//! after reasoning only, after a refused prefill), tool calls cut half-way, and the
//! accounting of both attempts (ledger, budget, metrics).

use std::time::Duration;

use bitrouter_mock::{MockBehavior, MockServer};
use serde_json::{Value, json};

use crate::harness::*;

/// The answer every mock gives, one word a delta: a joined stream must read exactly this.
const TEXT: &str = "Alpha bravo charlie delta echo foxtrot golf hotel india juliet.";
const WORDS: usize = 10;
/// Deltas the broken upstream sends before it fails.
const BEFORE_FAULT: usize = 4;

const UPSTREAMS: [&str; 3] = ["openai", "anthropic", "google"];
const CALLERS: [&str; 4] = ["openai", "responses", "anthropic", "gemini"];

fn words() -> MockBehavior {
    MockBehavior {
        text: Some(TEXT.into()),
        chunks: Some(WORDS),
        ..Default::default()
    }
}

/// The endpoint that carries streams on: it continues a partial answer it is given, and
/// repeats the partial's last word, as models asked to continue often do.
async fn continuing() -> MockServer {
    mock_with(MockBehavior {
        continue_partial: true,
        repeat_words: 1,
        ..words()
    })
    .await
}

/// A streamed request in `caller`'s dialect: its path and body.
fn stream_request(caller: &str, model: &str) -> (String, Value) {
    let text = "Spell the alphabet.";
    match caller {
        "openai" => (
            "/v1/chat/completions".into(),
            json!({"model": model, "stream": true, "stream_options": {"include_usage": true},
                   "messages": [{"role": "user", "content": text}]}),
        ),
        "responses" => (
            "/v1/responses".into(),
            json!({"model": model, "stream": true, "input": text}),
        ),
        "anthropic" => (
            "/v1/messages".into(),
            json!({"model": model, "stream": true, "max_tokens": 200,
                   "messages": [{"role": "user", "content": text}]}),
        ),
        _ => (
            format!("/v1beta/models/{model}:streamGenerateContent?alt=sse"),
            json!({"contents": [{"role": "user", "parts": [{"text": text}]}]}),
        ),
    }
}

/// The answer text of a stream in `caller`'s dialect.
fn text_of(caller: &str, r: &Reply) -> String {
    let mut out = String::new();
    for v in r
        .sse_data()
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
    {
        match caller {
            "openai" => out.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap_or("")),
            "responses" if v["type"] == "response.output_text.delta" => {
                out.push_str(v["delta"].as_str().unwrap_or(""));
            }
            "anthropic" if v["delta"]["type"] == "text_delta" => {
                out.push_str(v["delta"]["text"].as_str().unwrap_or(""));
            }
            "gemini" => {
                for p in v["candidates"][0]["content"]["parts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    out.push_str(p["text"].as_str().unwrap_or(""));
                }
            }
            _ => {}
        }
    }
    out
}

/// The stream is one well-formed answer: one start, one end, no error anywhere.
fn assert_one_clean_stream(caller: &str, r: &Reply, what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", r.text);
    let data = r.sse_data();
    let count = |pred: &dyn Fn(&Value) -> bool| {
        data.iter()
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter(|v| pred(v))
            .count()
    };
    assert_eq!(
        count(&|v| v.get("error").is_some()
            || v["type"] == "error"
            || v["type"] == "response.failed"),
        0,
        "{what}: an error reached the caller:\n{}",
        r.text
    );
    let (starts, ends) = match caller {
        "openai" => (
            count(&|v| v["choices"][0]["delta"]["role"] == "assistant"),
            data.iter().filter(|d| d.as_str() == "[DONE]").count(),
        ),
        "responses" => (
            count(&|v| v["type"] == "response.created"),
            count(&|v| v["type"] == "response.completed"),
        ),
        "anthropic" => (
            count(&|v| v["type"] == "message_start"),
            count(&|v| v["type"] == "message_stop"),
        ),
        _ => (
            1,
            count(&|v| v["candidates"][0]["finishReason"].is_string()),
        ),
    };
    assert_eq!((starts, ends), (1, 1), "{what}: starts/ends in\n{}", r.text);
}

fn next_dialect(d: &str) -> &'static str {
    let i = UPSTREAMS.iter().position(|u| *u == d).unwrap();
    UPSTREAMS[(i + 1) % UPSTREAMS.len()]
}

#[tokio::test]
async fn broken_streams_are_carried_on_by_the_next_endpoint_in_every_dialect() {
    let faults: [(&str, MockBehavior); 3] = [
        (
            "cut",
            MockBehavior {
                cut_after: Some(BEFORE_FAULT),
                ..words()
            },
        ),
        (
            "stall",
            MockBehavior {
                stall_after_chunks: Some(BEFORE_FAULT),
                ..words()
            },
        ),
        (
            "error",
            MockBehavior {
                error_after: Some(BEFORE_FAULT),
                ..words()
            },
        ),
    ];
    let backup = continuing().await;
    let mut primaries = Vec::new();
    for (name, b) in faults {
        primaries.push((name, mock_with(b).await));
    }
    // Every fault × upstream dialect is a route: the broken endpoint first, then the one
    // that continues, in the next dialect (so continuations cross dialects too).
    let mut list: Vec<(String, &str, &MockServer)> = Vec::new();
    let mut routes = String::from("models:\n");
    for (fault, m) in &primaries {
        for up in UPSTREAMS {
            list.push((format!("{fault}-{up}"), up, m));
            routes.push_str(&format!(
                "  {fault}-{up}:\n    endpoints:\n      - {{ provider: {fault}-{up}, model_id: broken }}\n      - {{ provider: backup-{next}, model_id: steady }}\n",
                next = next_dialect(up)
            ));
        }
    }
    for up in UPSTREAMS {
        list.push((format!("backup-{up}"), up, &backup));
    }
    let named: Vec<(&str, &str, &MockServer)> =
        list.iter().map(|(n, p, m)| (n.as_str(), *p, *m)).collect();
    let yaml = format!(
        "{}routing:\n  stream_idle_timeout: 300ms\n  mid_stream_failover: continue\n  cooldown: {{ failures: 1000, duration: 1s }}\n{routes}",
        providers(&named)
    );
    let gw = TestGateway::start(&yaml).await;
    for (fault, _) in &primaries {
        for up in UPSTREAMS {
            let route = format!("{fault}-{up}");
            for caller in CALLERS {
                let what = format!(
                    "{fault} at {up}, continued in {}, caller {caller}",
                    next_dialect(up)
                );
                let (path, body) = stream_request(caller, &route);
                let r = post(&gw, &path, &body).await;
                assert_one_clean_stream(caller, &r, &what);
                assert_eq!(text_of(caller, &r), TEXT, "{what}:\n{}", r.text);
                // The continuation request carried the partial answer as the assistant's turn.
                let sent = backup.last_request().unwrap().body.to_string();
                assert!(
                    sent.contains("Alpha bravo charlie delta"),
                    "{what}: the backup did not get the partial answer: {sent}"
                );
                // The caller's final usage is both attempts' output summed, as the ledger's.
                let id = r.header("x-request-id").to_owned();
                let row = loop {
                    let rows = gw.gateway.ledger().rows(0, i64::MAX).await.unwrap();
                    if let Some(row) = rows.into_iter().find(|row| row.id == id) {
                        break row;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                };
                assert_eq!(row.attempts, 2, "{what}: {row:?}");
                let shown = output_tokens_of(caller, &r)
                    .unwrap_or_else(|| panic!("{what}: no usage in\n{}", r.text));
                assert_eq!(shown, row.tokens.output_total(), "{what}: {row:?}");
                // The broken attempt's 4 words (25 bytes: 7 tokens, estimated) plus the
                // continuation's own.
                assert!(shown > 7, "{what}: {shown} output tokens");
            }
        }
    }
    // Each broken stream counts as a mid-stream failover of its endpoint.
    let metrics = get(&gw, "/admin/metrics", &[]).await.json();
    let ep = &metrics["routes"]["cut-openai"]["endpoints"]["cut-openai:broken"];
    assert_eq!(ep["mid_stream_failovers"], CALLERS.len(), "{metrics}");
    let prom = get(&gw, "/metrics", &[]).await.text;
    let line = prom
        .lines()
        .find(|l| {
            l.starts_with("bitrouter_mid_stream_failovers_total{")
                && l.contains("endpoint=\"error-google:broken\"")
        })
        .unwrap_or_else(|| panic!("no mid-stream series for error-google in\n{prom}"));
    assert!(line.ends_with(&format!(" {}", CALLERS.len())), "{line}");
}

/// Two endpoints: `primary` (openai) breaks, `backup` carries on, in `backup_protocol`.
fn pair(primary: &MockServer, backup: &MockServer, backup_protocol: &str, extra: &str) -> String {
    format!(
        "{}routing:\n  cooldown: {{ failures: 1000, duration: 1s }}\n{extra}models:\n  r:\n    endpoints:\n      - {{ provider: primary, model_id: broken }}\n      - {{ provider: backup, model_id: steady }}\n",
        providers(&[
            ("primary", "openai", primary),
            ("backup", backup_protocol, backup)
        ])
    )
}

/// The output tokens a stream in `caller`'s dialect reported in its final usage.
fn output_tokens_of(caller: &str, r: &Reply) -> Option<u64> {
    let events: Vec<Value> = r
        .sse_data()
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .collect();
    let last = |f: &dyn Fn(&Value) -> Option<u64>| events.iter().rev().find_map(f);
    match caller {
        "openai" => last(&|v| v["usage"]["completion_tokens"].as_u64()),
        "responses" => last(&|v| {
            (v["type"] == "response.completed")
                .then(|| v["response"]["usage"]["output_tokens"].as_u64())
                .flatten()
        }),
        "anthropic" => last(&|v| {
            (v["type"] == "message_delta")
                .then(|| v["usage"]["output_tokens"].as_u64())
                .flatten()
        }),
        _ => last(&|v| {
            let u = &v["usageMetadata"];
            u["candidatesTokenCount"]
                .as_u64()
                .map(|c| c + u["thoughtsTokenCount"].as_u64().unwrap_or(0))
        }),
    }
}

/// Whether a recorded request's conversation carries an assistant (or model) turn.
fn has_assistant_turn(body: &Value) -> bool {
    let turns = body["messages"]
        .as_array()
        .or(body["contents"].as_array())
        .cloned()
        .unwrap_or_default();
    turns
        .iter()
        .any(|m| m["role"] == "assistant" || m["role"] == "model")
}

#[tokio::test]
async fn off_by_default_a_broken_stream_ends_with_an_error() {
    let primary = mock_with(MockBehavior {
        cut_after: Some(BEFORE_FAULT),
        ..words()
    })
    .await;
    let backup = continuing().await;
    let gw = TestGateway::start(&pair(&primary, &backup, "openai", "")).await;
    let (path, body) = stream_request("openai", "r");
    let r = post(&gw, &path, &body).await;
    assert!(!r.text.contains("[DONE]"), "{}", r.text);
    assert!(r.text.contains("\"error\""), "{}", r.text);
    assert_eq!(backup.request_count(), 0);
}

#[tokio::test]
async fn restart_starts_over_when_asked_or_when_only_reasoning_was_sent() {
    // Reasoning only: the cut comes after the first reasoning delta.
    let thinking = mock_with(MockBehavior {
        reasoning: true,
        cut_after: Some(1),
        ..words()
    })
    .await;
    let backup = continuing().await;
    let gw = TestGateway::start(&pair(
        &thinking,
        &backup,
        "anthropic",
        "  mid_stream_failover: restart\n",
    ))
    .await;
    let (path, body) = stream_request("openai", "r");
    let r = post(&gw, &path, &body).await;
    assert_one_clean_stream("openai", &r, "restart after reasoning");
    assert_eq!(text_of("openai", &r), TEXT);
    assert!(!has_assistant_turn(&backup.last_request().unwrap().body));

    // Text was sent, and the caller asked for a restart: the original request goes out,
    // and the deterministic replay of what was sent is not sent twice.
    let cut = mock_with(MockBehavior {
        cut_after: Some(BEFORE_FAULT),
        ..words()
    })
    .await;
    let gw = TestGateway::start(&pair(
        &cut,
        &backup,
        "anthropic",
        "  mid_stream_failover: restart\n",
    ))
    .await;
    let r = post_raw(
        &gw,
        &path,
        body.to_string().into_bytes(),
        &[("x-bitrouter-mid-stream", "restart")],
    )
    .await;
    assert_one_clean_stream("openai", &r, "restart asked for");
    assert_eq!(text_of("openai", &r), TEXT);
    assert!(!has_assistant_turn(&backup.last_request().unwrap().body));
    // Without the header, `restart` continues a stream that had text.
    let r = post(&gw, &path, &body).await;
    assert_eq!(text_of("openai", &r), TEXT);
    assert!(has_assistant_turn(&backup.last_request().unwrap().body));
}

#[tokio::test]
async fn an_endpoint_that_refuses_the_prefill_is_asked_to_start_over() {
    let primary = mock_with(MockBehavior {
        cut_after: Some(BEFORE_FAULT),
        ..words()
    })
    .await;
    let strict = mock_with(MockBehavior {
        refuse_prefill: true,
        ..words()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let gw = TestGateway::start(&pair(
        &primary,
        &strict,
        "anthropic",
        &format!(
            "  mid_stream_failover: continue\nobserve:\n  jsonl: {}\n",
            events.display()
        ),
    ))
    .await;
    let (path, body) = stream_request("anthropic", "r");
    let r = post(&gw, &path, &body).await;
    assert_one_clean_stream("anthropic", &r, "prefill refused");
    assert_eq!(text_of("anthropic", &r), TEXT);
    assert_eq!(
        strict.request_count(),
        2,
        "a prefill, then the original request"
    );
    let event: Value = poll_last_event(&events).await;
    let attempts = event["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{event}");
    assert!(attempts[0]["cost_nano_usd"].is_u64(), "{event}");
    assert_eq!(attempts[1]["joined"], "continue");
    assert_eq!(attempts[1]["status"], 400);
    assert!(
        attempts[1]["error"].as_str().unwrap().contains("prefill"),
        "{event}"
    );
    assert_eq!(attempts[2]["joined"], "restart");
    assert!(attempts[2]["error_type"].is_null(), "{event}");
}

/// The last request event the JSONL sink wrote (it writes in batches).
async fn poll_last_event(path: &std::path::Path) -> Value {
    for _ in 0..100 {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Some(line) = text.lines().last()
        {
            return serde_json::from_str(line).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no event in {}", path.display());
}

#[tokio::test]
async fn a_tool_call_cut_half_way_is_asked_for_again_whole() {
    let primary = mock_with(MockBehavior {
        cut_after: Some(1),
        chunks: Some(4),
        ..Default::default()
    })
    .await;
    let backup = mock_with(MockBehavior {
        chunks: Some(4),
        ..Default::default()
    })
    .await;
    let gw = TestGateway::start(&pair(
        &primary,
        &backup,
        "anthropic",
        "  mid_stream_failover: continue\n",
    ))
    .await;
    let body = json!({
        "model": "r", "stream": true,
        "messages": [{"role": "user", "content": "weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
    });
    let r = post(&gw, "/v1/chat/completions", &body).await;
    assert_one_clean_stream("openai", &r, "tool call");
    let mut names = Vec::new();
    let mut args = String::new();
    for v in r
        .sse_data()
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
    {
        for c in v["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert_eq!(c["index"], 0, "{}", r.text);
            if let Some(n) = c["function"]["name"].as_str() {
                names.push(n.to_owned());
            }
            args.push_str(c["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    assert_eq!(names, ["weather"], "{}", r.text);
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "mock"})
    );
    assert!(
        r.text.contains("\"finish_reason\":\"tool_calls\""),
        "{}",
        r.text
    );
    // Nothing but a tool call was under way: the backup got the original request.
    assert!(!has_assistant_turn(&backup.last_request().unwrap().body));
}

#[tokio::test]
async fn both_attempts_are_charged_and_the_budget_settles_to_their_sum() {
    use bitrouter::caller::{BudgetClaim, BudgetScope, BudgetWindow, Caller, Scope};
    let primary = mock_with(MockBehavior {
        cut_after: Some(BEFORE_FAULT),
        ..words()
    })
    .await;
    let backup = continuing().await;
    let pricing = |input: f64, output: f64| {
        format!(
            "pricing: {{ input_tokens: {{ no_cache: {input} }}, output_tokens: {{ text: {output} }} }}"
        )
    };
    let yaml = format!(
        "providers:\n  primary:\n    api_protocol: openai\n    api_base: {}/v1\n    api_key: k\n    models:\n      broken: {{ {} }}\n  backup:\n    api_protocol: anthropic\n    api_base: {}\n    api_key: k\n    models:\n      steady: {{ {} }}\nrouting:\n  mid_stream_failover: continue\nmodels:\n  r:\n    endpoints:\n      - {{ provider: primary, model_id: broken }}\n      - {{ provider: backup, model_id: steady }}\n",
        primary.base_url(),
        pricing(2.0, 10.0),
        backup.base_url(),
        pricing(3.0, 15.0),
    );
    let gw = TestGateway::start(&yaml).await;
    let limit = 1_000_000;
    let claim = BudgetClaim {
        limit_micro_usd: limit,
        scope: BudgetScope::Session,
        window: BudgetWindow::Lifetime,
    };
    let session = format!("mid-stream-{:x}", fastrand::u64(..));
    gw.gateway
        .set_caller_for_tests(Some(std::sync::Arc::new(Caller {
            account: "eip155:1:0x00000000000000000000000000000000000000cc".into(),
            session: session.clone(),
            scope: Scope::Api,
            models: None,
            budget: Some(claim),
            rate: None,
        })));
    let (path, body) = stream_request("openai", "r");
    let r = post(&gw, &path, &body).await;
    assert_one_clean_stream("openai", &r, "budgeted");
    assert_eq!(text_of("openai", &r), TEXT);
    // The caller's final usage is both attempts' summed.
    let usage = r
        .sse_data()
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find_map(|v| v.get("usage").filter(|u| !u.is_null()).cloned())
        .expect("a usage chunk");
    let rows = loop {
        let rows = gw.gateway.ledger().rows(0, i64::MAX).await.unwrap();
        if !rows.is_empty() {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let row = &rows[0];
    assert_eq!(row.attempts, 2, "{row:?}");
    assert!(row.success && row.estimated, "{row:?}");
    assert_eq!(
        row.tokens.output_total(),
        usage["completion_tokens"].as_u64().unwrap(),
        "the ledger and the caller agree on the summed output: {row:?} {usage}"
    );
    // The broken attempt produced 4 words ("Alpha bravo charlie delta", 25 bytes: 7
    // tokens at 4 bytes a token, estimated); the continuation reported its own.
    let continued = row.tokens.output_total() - 7;
    assert!(continued >= 6, "{row:?}");
    // Each attempt at its own prices: the output alone costs 7 × 10 + continued × 15 µUSD.
    assert!(
        row.cost_nano_usd > (7 * 10 + continued * 15) * 1000,
        "{row:?}"
    );
    let remaining = gw
        .gateway
        .budgets()
        .remaining(&session, &claim)
        .await
        .unwrap()
        .remaining_micro_usd;
    let spent = limit - remaining;
    assert!(
        spent.abs_diff(row.cost_nano_usd / 1000) <= 1,
        "the budget was charged {spent} µUSD, the ledger says {} nano-USD",
        row.cost_nano_usd
    );
}

#[tokio::test]
async fn the_downgoing_guard_sees_the_joined_answer_as_one_text() {
    // A command the default guardrails block, cut in the middle by the first endpoint.
    let text = "To clean up, run rm -rf / and wait.";
    let chars = MockBehavior {
        text: Some(text.into()),
        chunks: Some(text.len()),
        ..Default::default()
    };
    let primary = mock_with(MockBehavior {
        cut_after: Some(text.find("-rf").unwrap() + 2),
        ..chars.clone()
    })
    .await;
    let backup = mock_with(MockBehavior {
        continue_partial: true,
        ..chars
    })
    .await;
    let gw = TestGateway::start(&pair(
        &primary,
        &backup,
        "openai",
        "  mid_stream_failover: continue\n",
    ))
    .await;
    let (path, body) = stream_request("openai", "r");
    let r = post(&gw, &path, &body).await;
    assert_eq!(backup.request_count(), 1, "the stream was not carried on");
    let got = text_of("openai", &r);
    assert!(!got.contains("rm -r"), "{got:?}\n{}", r.text);
    assert!(r.text.contains("suspicious_commands"), "{}", r.text);
}

/// Three endpoints: `primary` (openai) breaks, then `second`, then `third`, each its own
/// provider; route `second` reaches `second` alone.
fn three(primary: &MockServer, second: &MockServer, third: &MockServer, extra: &str) -> String {
    format!(
        "{}routing:\n  cooldown: {{ failures: 1000, duration: 1s }}\n  mid_stream_failover: continue\n{extra}models:\n  r:\n    endpoints:\n      - {{ provider: primary, model_id: broken }}\n      - {{ provider: second, model_id: m }}\n      - {{ provider: third, model_id: steady }}\n  second:\n    endpoints:\n      - {{ provider: second, model_id: m }}\n  then:\n    endpoints:\n      - {{ provider: second, model_id: m }}\n      - {{ provider: third, model_id: steady }}\n",
        providers(&[
            ("primary", "openai", primary),
            ("second", "openai", second),
            ("third", "openai", third)
        ])
    )
}

#[tokio::test]
async fn a_continuation_skips_a_provider_at_its_quota_and_honours_retry_after() {
    let cut = || {
        mock_with(MockBehavior {
            cut_after: Some(BEFORE_FAULT),
            ..words()
        })
    };
    let chat =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});

    // The second endpoint's provider has a quota of one request a minute, spent first.
    let (primary, limited, backup) = (cut().await, continuing().await, continuing().await);
    let gw = TestGateway::start(&three(
        &primary,
        &limited,
        &backup,
        "rate_limits:\n  providers:\n    second: { requests_per_minute: 1 }\n",
    ))
    .await;
    assert_eq!(
        post(&gw, "/v1/chat/completions", &chat("second"))
            .await
            .status,
        200
    );
    let (path, body) = stream_request("openai", "r");
    let r = post(&gw, &path, &body).await;
    assert_one_clean_stream("openai", &r, "quota skipped");
    assert_eq!(text_of("openai", &r), TEXT);
    assert_eq!(
        limited.request_count(),
        1,
        "the continuation was sent past the quota"
    );
    assert_eq!(backup.request_count(), 1);

    // The second endpoint answers the continuation with a 429 and Retry-After: 30; it is
    // out for that long (the cool-down's failure count alone would keep it in).
    let (primary, busy, backup) = (
        cut().await,
        mock_with(MockBehavior {
            status: Some(429),
            retry_after_s: Some(30),
            ..words()
        })
        .await,
        continuing().await,
    );
    let gw = TestGateway::start(&three(&primary, &busy, &backup, "")).await;
    let r = post(&gw, &path, &body).await;
    assert_one_clean_stream("openai", &r, "429 on the continuation");
    assert_eq!(busy.request_count(), 1);
    let r = post(&gw, "/v1/chat/completions", &chat("then")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        busy.request_count(),
        1,
        "the 429's Retry-After was not honoured"
    );
}

#[tokio::test]
async fn a_continuation_takes_its_tokens_from_the_callers_limit() {
    let primary = mock_with(MockBehavior {
        cut_after: Some(BEFORE_FAULT),
        ..words()
    })
    .await;
    let backup = continuing().await;
    let (path, body) = stream_request("openai", "r");
    // What the first request alone reserves: a limit of 1 token names it.
    let probe = TestGateway::start(&pair(
        &primary,
        &backup,
        "openai",
        "  mid_stream_failover: continue\nrate_limits:\n  defaults: { tokens_per_minute: 1 }\n",
    ))
    .await;
    let needs = tokens_needed(&post(&probe, &path, &body).await);
    // Room for the first attempt, not for a continuation as large again: the stream ends
    // with the original failure and the backup is never asked.
    let tight = TestGateway::start(&pair(
        &primary,
        &backup,
        "openai",
        &format!("  mid_stream_failover: continue\nrate_limits:\n  defaults: {{ tokens_per_minute: {} }}\n", needs + needs / 2),
    ))
    .await;
    let r = post(&tight, &path, &body).await;
    assert!(r.text.contains("\"error\""), "{}", r.text);
    assert_eq!(
        backup.request_count(),
        0,
        "the continuation went past the tokens limit"
    );
    // Room for both: carried on.
    let roomy = TestGateway::start(&pair(
        &primary,
        &backup,
        "openai",
        &format!("  mid_stream_failover: continue\nrate_limits:\n  defaults: {{ tokens_per_minute: {} }}\n", 3 * needs),
    ))
    .await;
    let r = post(&roomy, &path, &body).await;
    assert_one_clean_stream("openai", &r, "tokens for both");
    assert_eq!(backup.request_count(), 1);
}

#[tokio::test]
async fn a_budget_that_cannot_cover_the_continuation_ends_the_stream_with_its_failure() {
    use bitrouter::caller::{BudgetClaim, BudgetScope, BudgetWindow, Caller, Scope};
    let primary = mock_with(MockBehavior {
        cut_after: Some(BEFORE_FAULT),
        ..words()
    })
    .await;
    let backup = continuing().await;
    // Input is what costs (1,000 µUSD a token at the backup, nothing at the primary), so a
    // continuation, whose prompt carries the partial answer and the "continue" turn (50+
    // tokens), needs more than the first request's hold.
    let yaml = format!(
        "providers:\n  primary:\n    api_protocol: openai\n    api_base: {}/v1\n    api_key: k\n    models:\n      broken: {{ pricing: {{ input_tokens: {{ no_cache: 0.0 }}, output_tokens: {{ text: 0.0 }} }} }}\n  backup:\n    api_protocol: openai\n    api_base: {}/v1\n    api_key: k\n    models:\n      steady: {{ pricing: {{ input_tokens: {{ no_cache: 1000.0 }}, output_tokens: {{ text: 0.0 }} }} }}\nrouting:\n  mid_stream_failover: continue\nmodels:\n  r:\n    endpoints:\n      - {{ provider: primary, model_id: broken }}\n      - {{ provider: backup, model_id: steady }}\n",
        primary.base_url(),
        backup.base_url(),
    );
    let gw = TestGateway::start(&yaml).await;
    let budgeted = |limit: u64| {
        let claim = BudgetClaim {
            limit_micro_usd: limit,
            scope: BudgetScope::Session,
            window: BudgetWindow::Lifetime,
        };
        std::sync::Arc::new(Caller {
            account: "eip155:1:0x00000000000000000000000000000000000000cd".into(),
            session: format!("mid-stream-{:x}", fastrand::u64(..)),
            scope: Scope::Api,
            models: None,
            budget: Some(claim),
            rate: None,
        })
    };
    let (path, body) = stream_request("openai", "r");
    // What the first request holds: a budget of 1 µUSD names it in the 402.
    gw.gateway.set_caller_for_tests(Some(budgeted(1)));
    let r = post(&gw, &path, &body).await;
    assert_eq!(r.status, 402, "{}", r.text);
    let hold = r.json()["error"]["required_micro_usd"]
        .as_u64()
        .unwrap_or_else(|| panic!("no required_micro_usd in {}", r.text));
    // Room for that and 10 tokens more: the first attempt runs, the continuation cannot.
    gw.gateway
        .set_caller_for_tests(Some(budgeted(hold + 10 * 1_000)));
    let r = post(&gw, &path, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.text.contains("\"error\"") && !r.text.contains("[DONE]"),
        "the stream should end with its failure: {}",
        r.text
    );
    assert_eq!(
        backup.request_count(),
        0,
        "the continuation went past the budget"
    );
    // With room for both, the same stream is carried on.
    gw.gateway
        .set_caller_for_tests(Some(budgeted(hold * 3 + 1_000_000)));
    let r = post(&gw, &path, &body).await;
    assert_one_clean_stream("openai", &r, "budget for both");
    assert_eq!(backup.request_count(), 1);
}
