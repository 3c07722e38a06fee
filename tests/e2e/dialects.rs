//! Translation semantics the golden battery (`golden.rs`) does not spell out on its own:
//! system prompts and images, fields without a canonical meaning, OpenAI's usage chunk,
//! model lists, `provider:model_id`, reasoning, Gemini's generation config and errors.

use serde_json::{Value, json};

use crate::harness::*;

/// A gateway with routes `to-openai` and `to-anthropic`, each with one mock upstream.
async fn setup() -> (
    TestGateway,
    bitrouter_mock::MockServer,
    bitrouter_mock::MockServer,
) {
    let (o, a) = (mock().await, mock().await);
    let yaml = format!(
        "{}models:\n  to-openai:\n    endpoints: [{{ provider: up-openai, model_id: gpt-up }}]\n  to-anthropic:\n    endpoints: [{{ provider: up-anthropic, model_id: claude-up }}]\n",
        providers(&[
            ("up-openai", "openai", &o),
            ("up-anthropic", "anthropic", &a)
        ])
    );
    (TestGateway::start(&yaml).await, o, a)
}

fn with_stream(mut body: Value, include_usage: bool) -> Value {
    body["stream"] = true.into();
    if include_usage && body.get("max_tokens").is_none() {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

#[tokio::test]
async fn system_prompts_and_images_translate() {
    let (gw, o, a) = setup().await;
    let openai_body = json!({"model": "to-anthropic", "messages": [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]});
    let r = post(&gw, "/v1/chat/completions", &openai_body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = a.last_request().unwrap().body;
    assert_eq!(sent["system"], "Be terse.");
    assert_eq!(sent["messages"][0]["content"][1]["type"], "image");
    assert_eq!(
        sent["messages"][0]["content"][1]["source"]["media_type"],
        "image/png"
    );
    assert_eq!(
        sent["messages"][0]["content"][1]["source"]["data"],
        "iVBORw0KGgo="
    );

    let anthropic_body = json!({"model": "to-openai", "max_tokens": 50, "system": [{"type": "text", "text": "Be terse."}],
        "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}, {"type": "text", "text": "What?"}]}]});
    let r = post(&gw, "/v1/messages", &anthropic_body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = o.last_request().unwrap().body;
    assert_eq!(sent["messages"][0]["role"], "system");
    assert_eq!(sent["messages"][0]["content"], "Be terse.");
    assert_eq!(
        sent["messages"][1]["content"][0]["image_url"]["url"],
        "https://example.com/cat.png"
    );
    assert_eq!(sent["max_tokens"], 50);
}

#[tokio::test]
async fn unknown_fields_pass_through_only_to_the_same_dialect() {
    let (gw, o, a) = setup().await;
    let mut body = openai_chat("to-openai", "hi");
    body["seed"] = json!(42);
    body["logit_bias"] = json!({"50256": -100});
    post(&gw, "/v1/chat/completions", &body).await;
    let sent = o.last_request().unwrap().body;
    assert_eq!(sent["seed"], 42);
    assert_eq!(sent["logit_bias"]["50256"], -100);

    body["model"] = json!("to-anthropic");
    post(&gw, "/v1/chat/completions", &body).await;
    assert!(a.last_request().unwrap().body.get("seed").is_none());

    let mut body = anthropic_msg("to-anthropic", "hi");
    body["top_k"] = json!(3);
    body["metadata"] = json!({"user_id": "u1"});
    body["messages"][0]["content"] =
        json!([{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]);
    let r = post_raw(
        &gw,
        "/v1/messages",
        body.to_string().into_bytes(),
        &[
            ("anthropic-beta", "prompt-caching-2024-07-31"),
            ("anthropic-version", "2026-10-21"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = a.last_request().unwrap();
    assert_eq!(sent.body["top_k"], 3);
    assert_eq!(sent.body["metadata"]["user_id"], "u1");
    assert_eq!(
        sent.body["messages"][0]["content"][0]["cache_control"]["type"],
        "ephemeral"
    );
    assert_eq!(
        sent.header("anthropic-beta"),
        Some("prompt-caching-2024-07-31")
    );
    // The caller's unknown anthropic-version is accepted; the upstream gets the one it expects.
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));

    body["model"] = json!("to-openai");
    post(&gw, "/v1/messages", &body).await;
    let sent = o.last_request().unwrap();
    assert!(sent.body.get("top_k").is_none());
    assert!(sent.header("anthropic-beta").is_none());
}

#[tokio::test]
async fn openai_callers_see_usage_chunk_only_when_they_ask() {
    let (gw, _o, _a) = setup().await;
    for route in ["to-openai", "to-anthropic"] {
        let r = post(
            &gw,
            "/v1/chat/completions",
            &with_stream(openai_chat(route, "hi"), false),
        )
        .await;
        assert!(!r.text.contains("\"usage\""), "{route}: {}", r.text);
        assert_eq!(r.sse_data().last().unwrap(), "[DONE]");
    }
}

#[tokio::test]
async fn models_list_shows_routes_and_provider_models() {
    let (gw, _o, _a) = setup().await;
    let r = get(&gw, "/v1/models", &[]).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"to-openai") && ids.contains(&"to-anthropic"),
        "{ids:?}"
    );
    let r = get(&gw, "/v1/models", &[("anthropic-version", "2023-06-01")]).await;
    let v = r.json();
    assert_eq!(v["has_more"], false);
    assert_eq!(v["data"][0]["type"], "model");

    // One model: what `client.models.retrieve` asks, in each dialect.
    let r = get(&gw, "/v1/models/to-openai", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(
        (v["id"].as_str(), v["object"].as_str()),
        (Some("to-openai"), Some("model"))
    );
    let r = get(
        &gw,
        "/v1/models/to-anthropic",
        &[("anthropic-version", "2023-06-01")],
    )
    .await;
    assert_eq!(r.json()["type"], "model", "{}", r.text);
    let r = get(&gw, "/v1/models/nope", &[]).await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "model_not_found", "{}", r.text);
    let r = get(
        &gw,
        "/v1/models/nope",
        &[("anthropic-version", "2023-06-01")],
    )
    .await;
    assert_eq!(
        (r.status, r.json()["type"].as_str()),
        (404, Some("error")),
        "{}",
        r.text
    );

    let r = get(&gw, "/health", &[]).await;
    assert_eq!(r.json()["status"], "ok");
}

#[tokio::test]
async fn direct_provider_model_routing() {
    let (gw, o, _a) = setup().await;
    let r = post(
        &gw,
        "/v1/messages",
        &anthropic_msg("up-openai:some-model", "hi"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(o.last_request().unwrap().body["model"], "some-model");
    assert_eq!(r.header("x-bitrouter-upstream"), "up-openai:some-model");
}

#[tokio::test]
async fn reasoning_translates_between_dialects() {
    let (o, a) = (
        mock_with(bitrouter_mock::MockBehavior {
            reasoning: true,
            ..Default::default()
        })
        .await,
        mock_with(bitrouter_mock::MockBehavior {
            reasoning: true,
            ..Default::default()
        })
        .await,
    );
    let yaml = format!(
        "{}models:\n  to-openai:\n    endpoints: [{{ provider: up-openai, model_id: gpt-up }}]\n  to-anthropic:\n    endpoints: [{{ provider: up-anthropic, model_id: claude-up }}]\n",
        providers(&[
            ("up-openai", "openai", &o),
            ("up-anthropic", "anthropic", &a)
        ])
    );
    let gw = TestGateway::start(&yaml).await;
    let r = post(
        &gw,
        "/v1/chat/completions",
        &with_stream(openai_chat("to-anthropic", "think"), false),
    )
    .await;
    assert!(r.text.contains("reasoning_content"), "{}", r.text);
    let r = post(
        &gw,
        "/v1/messages",
        &with_stream(anthropic_msg("to-openai", "think"), false),
    )
    .await;
    assert!(r.text.contains("thinking_delta"), "{}", r.text);
    let r = post(&gw, "/v1/messages", &anthropic_msg("to-anthropic", "think")).await;
    assert!(
        r.json()["content"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["type"] == "thinking")
    );
}

// ------------------------------------------------------------------ Gemini, both sides

/// Callers × upstreams with Gemini on both sides: routes `to-openai`, `to-anthropic`,
/// `to-gemini`, one mock each.
async fn setup3() -> (TestGateway, [(&'static str, bitrouter_mock::MockServer); 3]) {
    let (o, a, g) = (mock().await, mock().await, mock().await);
    let yaml = format!(
        "{}models:\n  to-openai:\n    endpoints: [{{ provider: up-openai, model_id: gpt-up }}]\n  to-anthropic:\n    endpoints: [{{ provider: up-anthropic, model_id: claude-up }}]\n  to-gemini:\n    endpoints: [{{ provider: up-gemini, model_id: gemini-up }}]\n",
        providers(&[
            ("up-openai", "openai", &o),
            ("up-anthropic", "anthropic", &a),
            ("up-gemini", "google", &g)
        ])
    );
    (
        TestGateway::start(&yaml).await,
        [("to-openai", o), ("to-anthropic", a), ("to-gemini", g)],
    )
}

fn gemini_path(model: &str, stream: bool) -> String {
    if stream {
        format!("/v1beta/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("/v1beta/models/{model}:generateContent")
    }
}

#[tokio::test]
async fn gemini_generation_config_translates() {
    let (gw, ups) = setup3().await;
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"},
            {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}]}],
        "systemInstruction": {"parts": [{"text": "Be terse."}]},
        "generationConfig": {"temperature": 0.5, "topP": 0.9, "maxOutputTokens": 40, "stopSequences": ["END"], "topK": 7},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]});
    for (route, upstream) in &ups {
        let r = post(&gw, &gemini_path(route, false), &body).await;
        assert_eq!(r.status, 200, "{route}: {}", r.text);
        let sent = upstream.last_request().unwrap().body;
        match *route {
            "to-gemini" => {
                // Same dialect: Gemini-only fields survive.
                assert_eq!(sent["generationConfig"]["topK"], 7);
                assert_eq!(sent["generationConfig"]["maxOutputTokens"], 40);
                assert_eq!(sent["safetySettings"][0]["threshold"], "BLOCK_NONE");
                assert_eq!(sent["systemInstruction"]["parts"][0]["text"], "Be terse.");
                assert_eq!(
                    sent["contents"][0]["parts"][1]["inlineData"]["mimeType"],
                    "image/png"
                );
            }
            "to-anthropic" => {
                assert_eq!(sent["system"], "Be terse.");
                assert_eq!(sent["max_tokens"], 40);
                assert_eq!(sent["top_p"], 0.9);
                assert_eq!(sent["stop_sequences"][0], "END");
                assert_eq!(
                    sent["messages"][0]["content"][1]["source"]["data"],
                    "iVBORw0KGgo="
                );
                assert!(sent.get("safetySettings").is_none() && sent.get("topK").is_none());
            }
            _ => {
                assert_eq!(sent["messages"][0]["role"], "system");
                assert_eq!(sent["temperature"], 0.5);
                assert_eq!(sent["stop"][0], "END");
                assert_eq!(
                    sent["messages"][1]["content"][1]["image_url"]["url"],
                    "data:image/png;base64,iVBORw0KGgo="
                );
                assert!(sent.get("safetySettings").is_none());
            }
        }
    }
    // And the other way: an OpenAI caller's image URL and system prompt reach Gemini.
    let openai_body = json!({"model": "to-gemini", "max_tokens": 30, "messages": [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": [{"type": "text", "text": "What?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]});
    let r = post(&gw, "/v1/chat/completions", &openai_body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = ups[2].1.last_request().unwrap().body;
    assert_eq!(sent["systemInstruction"]["parts"][0]["text"], "Be terse.");
    assert_eq!(sent["generationConfig"]["maxOutputTokens"], 30);
    assert_eq!(
        sent["contents"][0]["parts"][1]["fileData"],
        json!({"mimeType": "image/png", "fileUri": "https://example.com/cat.png"})
    );
}

#[tokio::test]
async fn gemini_errors_are_google_shaped() {
    let (gw, ups) = setup3().await;
    let r = post(
        &gw,
        &gemini_path("no-such-route", false),
        &json!({"contents": [{"parts": [{"text": "hi"}]}]}),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let v = r.json();
    assert_eq!(v["error"]["code"], 404);
    assert_eq!(v["error"]["status"], "NOT_FOUND");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-route")
    );

    let r = post(
        &gw,
        &gemini_path("to-gemini", false),
        &json!({"contents": []}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["status"], "INVALID_ARGUMENT");
    assert!(r.text.contains("contents"), "{}", r.text);
    let r = post_raw(
        &gw,
        &gemini_path("to-gemini", false),
        b"{not json".to_vec(),
        &[],
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], 400);
    let r = post(&gw, "/v1beta/models/to-gemini:countTokens", &json!({})).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["status"], "NOT_FOUND");
    let r = get(&gw, &gemini_path("to-gemini", false), &[]).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.json()["error"]["status"], "UNIMPLEMENTED");

    // A Gemini upstream's own 400 goes back byte for byte to a Gemini caller, and in the
    // caller's shape to others.
    let body = json!({"contents": [{"parts": [{"text": "hi [[mock {\"status\":400}]]"}]}]});
    let r = post(&gw, &gemini_path("to-gemini", false), &body).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["status"], "INVALID_ARGUMENT");
    assert!(
        r.text.contains("rejected the request on purpose"),
        "{}",
        r.text
    );
    let r = post(
        &gw,
        "/v1/messages",
        &anthropic_msg("to-gemini", "hi [[mock {\"status\":400}]]"),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["type"], "error");
    assert!(
        r.text.contains("rejected the request on purpose"),
        "{}",
        r.text
    );
    drop(ups);
}

#[tokio::test]
async fn gemini_direct_provider_model_in_the_path() {
    let (gw, ups) = setup3().await;
    // `provider:model_id` in the path: the last colon separates the method.
    let r = post(
        &gw,
        "/v1beta/models/up-anthropic:claude-x:generateContent",
        &json!({"contents": [{"parts": [{"text": "hi"}]}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(ups[1].1.last_request().unwrap().body["model"], "claude-x");
    assert_eq!(r.header("x-bitrouter-upstream"), "up-anthropic:claude-x");
    let r = post(
        &gw,
        "/v1/chat/completions",
        &openai_chat("up-gemini:gemini-2.5-flash", "hi"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        ups[2].1.last_request().unwrap().path,
        "/v1beta/models/gemini-2.5-flash:generateContent"
    );
}
