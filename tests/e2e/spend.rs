//! Spend tracking through the real server: exact costs for JSON and streamed answers from
//! both upstream protocols, failures and failovers in the ledger, a stream cut by its caller
//! charged as an estimate, and `/admin/spend` grouped every way.

use std::time::Duration;

use bitrouter_mock::{MockBehavior, MockServer};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::harness::*;

/// Every answer from these mocks reports: 1,000 uncached input tokens, 300 cache reads,
/// 100 cache writes, 200 output tokens of which 50 reasoning.
fn usage_behavior() -> MockBehavior {
    MockBehavior {
        input_tokens: Some(1000),
        output_tokens: Some(200),
        cache_read_tokens: 300,
        cache_write_tokens: 100,
        reasoning_tokens: 50,
        ..Default::default()
    }
}

/// $2 in, $0.50 cache read, $2.50 cache write, $10 out, $12 reasoning (per million).
const PRICING: &str = "pricing: { input_tokens: { no_cache: 2.0, cache_read: 0.5, cache_write: 2.5 }, output_tokens: { text: 10.0, reasoning: 12.0 } }";

async fn setup() -> (TestGateway, MockServer, MockServer) {
    let (o, a) = (
        mock_with(usage_behavior()).await,
        mock_with(usage_behavior()).await,
    );
    let yaml = format!(
        "providers:\n  up-openai:\n    api_protocol: openai\n    api_base: {}/v1\n    api_key: k\n    models:\n      gpt-up: {{ {PRICING} }}\n  up-anthropic:\n    api_protocol: anthropic\n    api_base: {}\n    api_key: k\n    models:\n      claude-up: {{ {PRICING} }}\nmodels:\n  to-openai:\n    endpoints: [{{ provider: up-openai, model_id: gpt-up }}]\n  to-anthropic:\n    endpoints: [{{ provider: up-anthropic, model_id: claude-up }}]\n",
        o.base_url(),
        a.base_url()
    );
    (TestGateway::start(&yaml).await, o, a)
}

async fn spend(gw: &TestGateway, query: &str) -> Value {
    let r = get(gw, &format!("/admin/spend?{query}"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

fn group<'a>(v: &'a Value, key: &str) -> &'a Value {
    v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == key)
        .unwrap_or_else(|| panic!("no group {key}: {v}"))
}

/// Waits until the ledger has written `n` rows (writes happen just after the response).
async fn wait_rows(gw: &TestGateway, n: u64) {
    for _ in 0..200 {
        if gw.gateway.ledger().stats().written >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "ledger wrote {} rows, expected {n}",
        gw.gateway.ledger().stats().written
    );
}

#[tokio::test]
async fn every_request_shape_is_charged_exactly() {
    let (gw, _o, _a) = setup().await;
    for route in ["to-openai", "to-anthropic"] {
        let session = [("x-bitrouter-session", route)];
        let mut bodies = vec![
            ("/v1/chat/completions", openai_chat(route, "hi")),
            ("/v1/messages", anthropic_msg(route, "hi")),
        ];
        let mut s = openai_chat(route, "hi");
        s["stream"] = true.into();
        bodies.push(("/v1/chat/completions", s.clone()));
        s["stream_options"] = json!({"include_usage": true});
        bodies.push(("/v1/chat/completions", s));
        let mut s = anthropic_msg(route, "hi");
        s["stream"] = true.into();
        bodies.push(("/v1/messages", s));
        for (path, body) in bodies {
            let r = post_raw(&gw, path, body.to_string().into_bytes(), &session).await;
            assert_eq!(r.status, 200, "{route} {path}: {}", r.text);
        }
    }
    wait_rows(&gw, 10).await;
    let v = spend(&gw, "group_by=route").await;
    // Anthropic reports input excluding cache: 1000 no_cache, 300 read, 100 write, 200 out.
    // 1000×2 + 300×0.5 + 100×2.5 + 200×10 = 4,400 µUSD per request.
    let a = group(&v, "to-anthropic");
    assert_eq!(a["requests"], 5);
    assert_eq!(a["cost_nano_usd"], 5 * 4_400_000, "{a}");
    assert_eq!(
        a["tokens"],
        json!({"input_no_cache": 5000, "input_cache_read": 1500, "input_cache_write": 500, "output_text": 1000, "output_reasoning": 0})
    );
    // OpenAI reports prompt_tokens including cache (1,400, of which 300 cached) and 50 of the
    // 200 completion tokens as reasoning; it has no cache-write field, so those 100 tokens are
    // uncached input: 1100×2 + 300×0.5 + 150×10 + 50×12 = 4,450 µUSD.
    let o = group(&v, "to-openai");
    assert_eq!(o["cost_nano_usd"], 5 * 4_450_000, "{o}");
    assert_eq!(
        o["tokens"],
        json!({"input_no_cache": 5500, "input_cache_read": 1500, "input_cache_write": 0, "output_text": 750, "output_reasoning": 250})
    );
    assert_eq!(v["total"]["cost_usd"], "0.044250000");

    for (by, keys) in [
        ("model", vec!["gpt-up", "claude-up"]),
        ("provider", vec!["up-openai", "up-anthropic"]),
        ("session", vec!["to-openai", "to-anthropic"]),
    ] {
        let v = spend(&gw, &format!("group_by={by}")).await;
        for k in keys {
            assert_eq!(group(&v, k)["requests"], 5, "{by}/{k}: {v}");
        }
    }
    // No auth yet: every row has no account.
    let v = spend(&gw, "group_by=account").await;
    assert_eq!(v["groups"][0]["key"], Value::Null);
    assert_eq!(v["groups"][0]["requests"], 10);
    // Time windows.
    assert_eq!(
        spend(&gw, "group_by=route&until=1").await["groups"],
        json!([])
    );
    assert_eq!(
        spend(&gw, "group_by=route&since=1h").await["total"]["requests"],
        10
    );
    let r = get(&gw, "/admin/spend?group_by=colour", &[]).await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("group_by"), "{}", r.text);
}

#[tokio::test]
async fn failures_and_failovers_are_in_the_ledger() {
    let bad = mock_with(MockBehavior {
        status: Some(503),
        ..Default::default()
    })
    .await;
    let good = mock_with(usage_behavior()).await;
    let yaml = format!(
        "{}models:\n  r:\n    endpoints:\n      - {{ provider: bad, model_id: x }}\n      - {{ provider: good, model_id: y }}\n",
        providers(&[("bad", "openai", &bad), ("good", "anthropic", &good)])
    );
    let gw = TestGateway::start(&yaml).await;
    assert_eq!(
        post(&gw, "/v1/chat/completions", &openai_chat("r", "hi"))
            .await
            .status,
        200
    );
    assert_eq!(
        post_raw(&gw, "/v1/chat/completions", b"{oops".to_vec(), &[])
            .await
            .status,
        400
    );
    assert_eq!(
        post(&gw, "/v1/chat/completions", &openai_chat("nope", "hi"))
            .await
            .status,
        404
    );
    wait_rows(&gw, 3).await;
    let rows = gw.gateway.ledger().rows(0, i64::MAX).await.unwrap();
    assert_eq!(rows.len(), 3);
    let ok = rows.iter().find(|r| r.success).unwrap();
    assert_eq!(
        (
            ok.attempts,
            ok.provider.as_deref(),
            ok.model.as_deref(),
            ok.route.as_deref()
        ),
        (2, Some("good"), Some("y"), Some("r"))
    );
    assert_eq!(ok.tokens.input_no_cache, 1000);
    let errors: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.error_type.as_deref())
        .collect();
    assert!(
        errors.contains(&"BadRequest") && errors.contains(&"NotFound"),
        "{errors:?}"
    );
    assert!(
        rows.iter()
            .filter(|r| !r.success)
            .all(|r| r.cost_nano_usd == 0)
    );
}

#[tokio::test]
async fn a_stream_cut_by_its_caller_is_charged_as_an_estimate() {
    let slow = mock_with(MockBehavior {
        chunks: Some(200),
        chunk_delay_ms: 20,
        text: Some("abcdefgh ".repeat(10)),
        ..Default::default()
    })
    .await;
    let yaml = format!(
        "providers:\n  s:\n    api_protocol: openai\n    api_base: {}/v1\n    api_key: k\n    models:\n      m: {{ {PRICING} }}\nmodels:\n  r:\n    endpoints: [{{ provider: s, model_id: m }}]\n",
        slow.base_url()
    );
    let gw = TestGateway::start(&yaml).await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(json!({"model": "r", "stream": true, "messages": [{"role": "user", "content": "x".repeat(400)}]}).to_string())
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut seen = 0;
    while seen < 5 {
        body.next().await.unwrap().unwrap();
        seen += 1;
    }
    drop(body);
    wait_rows(&gw, 1).await;
    let rows = gw.gateway.ledger().rows(0, i64::MAX).await.unwrap();
    let r = &rows[0];
    assert!(r.estimated, "{r:?}");
    assert!(!r.success);
    assert_eq!(r.error_type.as_deref(), Some("ClientClosed"));
    assert_eq!(
        r.tokens.input_no_cache, 100,
        "400 prompt bytes ≈ 100 tokens"
    );
    assert!(r.tokens.output_text > 0);
    assert!(r.cost_nano_usd > 0);
}

#[tokio::test]
async fn sync_durability_commits_before_the_answer_ends() {
    let m = mock_with(usage_behavior()).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{}models:\n  r:\n    endpoints: [{{ provider: p, model_id: x }}]\ndatabase:\n  url: redb://{}\n  durability: sync\n",
        providers(&[("p", "anthropic", &m)]),
        dir.path().join("spend.redb").display()
    );
    let gw = TestGateway::start(&yaml).await;
    for i in 0..5 {
        let mut body = anthropic_msg("r", "hi");
        if i % 2 == 1 {
            body["stream"] = true.into();
        }
        assert_eq!(post(&gw, "/v1/messages", &body).await.status, 200);
        // No waiting: the row is there as soon as the response has ended.
        assert_eq!(
            gw.gateway.ledger().rows(0, i64::MAX).await.unwrap().len(),
            i + 1
        );
    }
}

#[tokio::test]
async fn gemini_upstream_token_breakdown_and_cost() {
    let g = mock_with(usage_behavior()).await;
    let yaml = format!(
        "providers:\n  up-gemini:\n    api_protocol: google\n    api_base: {}/v1beta\n    api_key: k\n    models:\n      gem-up: {{ {PRICING} }}\nmodels:\n  to-gemini:\n    endpoints: [{{ provider: up-gemini, model_id: gem-up }}]\n",
        g.base_url()
    );
    let gw = TestGateway::start(&yaml).await;
    let contents = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    let mut s = openai_chat("to-gemini", "hi");
    s["stream"] = true.into();
    let mut a = anthropic_msg("to-gemini", "hi");
    a["stream"] = true.into();
    for (path, body) in [
        ("/v1beta/models/to-gemini:generateContent", contents.clone()),
        (
            "/v1beta/models/to-gemini:streamGenerateContent?alt=sse",
            contents.clone(),
        ),
        ("/v1/chat/completions", openai_chat("to-gemini", "hi")),
        ("/v1/chat/completions", s),
        ("/v1/messages", a),
    ] {
        let r = post(&gw, path, &body).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
    }
    // The Gemini caller sees Gemini's own breakdown back.
    let r = post(&gw, "/v1beta/models/to-gemini:generateContent", &contents).await;
    let u = &r.json()["usageMetadata"];
    assert_eq!(u["promptTokenCount"], 1400, "{u}");
    assert_eq!(u["cachedContentTokenCount"], 300, "{u}");
    assert_eq!(u["candidatesTokenCount"], 150, "{u}");
    assert_eq!(u["thoughtsTokenCount"], 50, "{u}");
    wait_rows(&gw, 6).await;
    // Gemini reports promptTokenCount 1,400 including 300 cached, 150 candidate and 50
    // thought tokens; it has no cache-write count, so the mock's 100 cache writes are plain
    // input: 1100×2 + 300×0.5 + 150×10 + 50×12 = 4,450 µUSD per request.
    let v = spend(&gw, "group_by=provider").await;
    let p = group(&v, "up-gemini");
    assert_eq!(p["requests"], 6);
    assert_eq!(p["cost_nano_usd"], 6 * 4_450_000, "{p}");
    assert_eq!(
        p["tokens"],
        json!({"input_no_cache": 6600, "input_cache_read": 1800, "input_cache_write": 0, "output_text": 900, "output_reasoning": 300})
    );
    assert_eq!(v["total"]["cost_usd"], "0.026700000");
}
