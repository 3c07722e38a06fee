//! Every caller dialect against every upstream protocol: plain, streamed and tool-calling
//! requests, checked both at the caller and at what the upstream received.

use serde_json::{Value, json};

use crate::harness::*;

const DIALECTS: [&str; 2] = ["openai", "anthropic"];

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

fn weather_tools(dialect: &str) -> Value {
    let schema =
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
    match dialect {
        "openai" => {
            json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": schema}}])
        }
        _ => json!([{"name": "get_weather", "description": "Weather", "input_schema": schema}]),
    }
}

#[tokio::test]
async fn plain_requests_every_dialect_pair() {
    let (gw, o, a) = setup().await;
    for caller in DIALECTS {
        for (route, upstream) in [("to-openai", &o), ("to-anthropic", &a)] {
            let (path, mut body) = request_for(caller, route, "Say hello");
            body["temperature"] = json!(0.5);
            let r = post(&gw, path, &body).await;
            assert_eq!(r.status, 200, "{caller} → {route}: {}", r.text);
            let v = r.json();
            assert_eq!(
                answer_text(caller, &v),
                "Hello from the mock upstream.",
                "{caller} → {route}: {v}"
            );
            match caller {
                "openai" => {
                    assert_eq!(v["object"], "chat.completion");
                    assert_eq!(v["choices"][0]["finish_reason"], "stop");
                    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
                }
                _ => {
                    assert_eq!(v["type"], "message");
                    assert_eq!(v["stop_reason"], "end_turn");
                    assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0);
                }
            }
            let sent = upstream.last_request().unwrap();
            assert_eq!(sent.body["temperature"], 0.5);
            if route == "to-anthropic" {
                assert_eq!(sent.path, "/v1/messages");
                assert_eq!(sent.body["model"], "claude-up");
                assert_eq!(sent.header("x-api-key"), Some("test-key-up-anthropic"));
                assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
                assert!(sent.body["max_tokens"].as_u64().is_some());
            } else {
                assert_eq!(sent.path, "/v1/chat/completions");
                assert_eq!(sent.body["model"], "gpt-up");
                assert_eq!(
                    sent.header("authorization"),
                    Some("Bearer test-key-up-openai")
                );
            }
            assert_eq!(
                r.header("x-bitrouter-upstream"),
                if route == "to-openai" {
                    "up-openai:gpt-up"
                } else {
                    "up-anthropic:claude-up"
                }
            );
            assert!(!r.header("x-request-id").is_empty());
        }
    }
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
async fn streams_every_dialect_pair() {
    let (gw, o, a) = setup().await;
    for caller in DIALECTS {
        for (route, upstream) in [("to-openai", &o), ("to-anthropic", &a)] {
            let (path, body) = request_for(caller, route, "Say hello");
            let r = post(&gw, path, &with_stream(body, true)).await;
            assert_eq!(r.status, 200, "{caller} → {route}: {}", r.text);
            assert_eq!(r.header("content-type"), "text/event-stream");
            assert_eq!(
                streamed_text(caller, &r),
                "Hello from the mock upstream.",
                "{caller} → {route}: {}",
                r.text
            );
            match caller {
                "openai" => {
                    let data = r.sse_data();
                    assert_eq!(data.last().unwrap(), "[DONE]");
                    let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
                    assert!(
                        usage["usage"]["completion_tokens"].as_u64().unwrap() > 0,
                        "{usage}"
                    );
                    assert!(data.iter().any(|d| d.contains(r#""finish_reason":"stop""#)));
                }
                _ => {
                    let events = r.sse_events();
                    assert_eq!(events.first().unwrap(), "message_start");
                    assert_eq!(events.last().unwrap(), "message_stop");
                    assert_eq!(events[events.len() - 2], "message_delta");
                    assert!(r.text.contains(r#""stop_reason":"end_turn""#));
                    let delta = r
                        .sse_data()
                        .iter()
                        .rev()
                        .nth(1)
                        .map(|d| serde_json::from_str::<Value>(d).unwrap())
                        .unwrap();
                    assert!(
                        delta["usage"]["output_tokens"].as_u64().unwrap() > 0,
                        "{delta}"
                    );
                }
            }
            // OpenAI upstreams are always asked for usage, so every stream can be accounted.
            if route == "to-openai" {
                assert_eq!(
                    upstream.last_request().unwrap().body["stream_options"]["include_usage"],
                    true
                );
            }
        }
    }
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

/// The tool call in a JSON answer: (id, name, arguments as JSON).
fn tool_call(caller: &str, v: &Value) -> (String, String, Value) {
    match caller {
        "openai" => {
            assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
            let c = &v["choices"][0]["message"]["tool_calls"][0];
            let args = serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap();
            (
                c["id"].as_str().unwrap().into(),
                c["function"]["name"].as_str().unwrap().into(),
                args,
            )
        }
        _ => {
            assert_eq!(v["stop_reason"], "tool_use", "{v}");
            let c = v["content"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["type"] == "tool_use")
                .unwrap();
            (
                c["id"].as_str().unwrap().into(),
                c["name"].as_str().unwrap().into(),
                c["input"].clone(),
            )
        }
    }
}

#[tokio::test]
async fn tool_calls_round_trip_every_dialect_pair() {
    let (gw, _o, _a) = setup().await;
    for caller in DIALECTS {
        for route in ["to-openai", "to-anthropic"] {
            let (path, mut body) = request_for(caller, route, "Weather in Paris?");
            body["tools"] = weather_tools(caller);
            let r = post(&gw, path, &body).await;
            assert_eq!(r.status, 200, "{caller} → {route}: {}", r.text);
            let (id, name, args) = tool_call(caller, &r.json());
            assert_eq!(name, "get_weather");
            assert!(args["city"].is_string(), "{args}");

            // Send the result back in the caller's own shape; the model answers in text.
            let messages = body["messages"].as_array_mut().unwrap();
            match caller {
                "openai" => {
                    messages.push(json!({"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}}]}));
                    messages
                        .push(json!({"role": "tool", "tool_call_id": id, "content": "sunny, 21C"}));
                }
                _ => {
                    messages.push(json!({"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": name, "input": args}]}));
                    messages.push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "sunny, 21C"}]}));
                }
            }
            let r = post(&gw, path, &body).await;
            assert_eq!(
                r.status, 200,
                "{caller} → {route} (tool result): {}",
                r.text
            );
            assert!(!answer_text(caller, &r.json()).is_empty());
        }
    }
}

#[tokio::test]
async fn streamed_tool_calls_every_dialect_pair() {
    let (gw, _o, _a) = setup().await;
    for caller in DIALECTS {
        for route in ["to-openai", "to-anthropic"] {
            let (path, mut body) = request_for(caller, route, "Weather in Paris?");
            body["tools"] = weather_tools(caller);
            let r = post(&gw, path, &with_stream(body, true)).await;
            assert_eq!(r.status, 200, "{caller} → {route}: {}", r.text);
            let events: Vec<Value> = r
                .sse_data()
                .iter()
                .filter(|d| *d != "[DONE]")
                .map(|d| serde_json::from_str(d).unwrap())
                .collect();
            let (name, args) = match caller {
                "openai" => {
                    let mut name = String::new();
                    let mut args = String::new();
                    for e in &events {
                        if let Some(calls) = e["choices"][0]["delta"]["tool_calls"].as_array() {
                            assert_eq!(calls[0]["index"], 0);
                            if let Some(n) = calls[0]["function"]["name"].as_str() {
                                name.push_str(n);
                                assert!(calls[0]["id"].as_str().is_some_and(|s| !s.is_empty()));
                            }
                            args.push_str(calls[0]["function"]["arguments"].as_str().unwrap_or(""));
                        }
                    }
                    assert!(
                        events
                            .iter()
                            .any(|e| e["choices"][0]["finish_reason"] == "tool_calls")
                    );
                    (name, args)
                }
                _ => {
                    let start = events
                        .iter()
                        .find(|e| {
                            e["type"] == "content_block_start"
                                && e["content_block"]["type"] == "tool_use"
                        })
                        .expect("tool_use block");
                    let args: String = events
                        .iter()
                        .filter_map(|e| e["delta"]["partial_json"].as_str())
                        .collect();
                    assert!(r.text.contains(r#""stop_reason":"tool_use""#));
                    (
                        start["content_block"]["name"].as_str().unwrap().to_owned(),
                        args,
                    )
                }
            };
            assert_eq!(name, "get_weather", "{caller} → {route}");
            let args: Value = serde_json::from_str(&args)
                .unwrap_or_else(|e| panic!("{caller} → {route}: arguments {args:?}: {e}"));
            assert!(args["city"].is_string());
        }
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

const CALLERS3: [&str; 3] = ["openai", "anthropic", "gemini"];

fn gemini_path(model: &str, stream: bool) -> String {
    if stream {
        format!("/v1beta/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("/v1beta/models/{model}:generateContent")
    }
}

/// Path and body for any of the three dialects; `stream` asks for SSE.
fn request3(caller: &str, route: &str, text: &str, stream: bool) -> (String, Value) {
    match caller {
        "gemini" => (
            gemini_path(route, stream),
            json!({"contents": [{"role": "user", "parts": [{"text": text}]}]}),
        ),
        _ => {
            let (path, body) = request_for(caller, route, text);
            let body = if stream {
                with_stream(body, true)
            } else {
                body
            };
            (path.to_owned(), body)
        }
    }
}

fn tools3(caller: &str) -> Value {
    match caller {
        "gemini" => {
            json!([{"functionDeclarations": [{"name": "get_weather", "description": "Weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]}])
        }
        _ => weather_tools(caller),
    }
}

fn gemini_text(v: &Value) -> String {
    v["candidates"][0]["content"]["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["thought"] != true)
        .filter_map(|p| p["text"].as_str())
        .collect()
}

fn answer3(caller: &str, v: &Value) -> String {
    match caller {
        "gemini" => gemini_text(v),
        _ => answer_text(caller, v),
    }
}

fn streamed3(caller: &str, r: &Reply) -> String {
    match caller {
        "gemini" => r
            .sse_data()
            .iter()
            .map(|d| gemini_text(&serde_json::from_str(d).unwrap()))
            .collect(),
        _ => streamed_text(caller, r),
    }
}

/// What the upstream must have received, per protocol.
fn check_upstream(route: &str, sent: &bitrouter_mock::RecordedRequest, stream: bool) {
    match route {
        "to-gemini" => {
            let method = if stream {
                "streamGenerateContent"
            } else {
                "generateContent"
            };
            assert_eq!(sent.path, format!("/v1beta/models/gemini-up:{method}"));
            assert_eq!(sent.header("x-goog-api-key"), Some("test-key-up-gemini"));
            assert!(sent.header("authorization").is_none());
            assert!(sent.body.get("model").is_none(), "{}", sent.body);
            assert!(sent.body["contents"][0]["parts"][0]["text"].is_string());
        }
        "to-anthropic" => {
            assert_eq!(sent.path, "/v1/messages");
            assert_eq!(sent.body["model"], "claude-up");
        }
        _ => {
            assert_eq!(sent.path, "/v1/chat/completions");
            assert_eq!(sent.body["model"], "gpt-up");
        }
    }
}

#[tokio::test]
async fn gemini_plain_requests_every_pair() {
    let (gw, ups) = setup3().await;
    for caller in CALLERS3 {
        for (route, upstream) in &ups {
            let (path, body) = request3(caller, route, "Say hello", false);
            let r = post(&gw, &path, &body).await;
            assert_eq!(r.status, 200, "{caller} → {route}: {}", r.text);
            let v = r.json();
            assert_eq!(
                answer3(caller, &v),
                "Hello from the mock upstream.",
                "{caller} → {route}: {v}"
            );
            if caller == "gemini" {
                assert_eq!(v["candidates"][0]["finishReason"], "STOP", "{v}");
                assert!(v["usageMetadata"]["promptTokenCount"].as_u64().unwrap() > 0);
                assert!(v["usageMetadata"]["candidatesTokenCount"].as_u64().unwrap() > 0);
            }
            check_upstream(route, &upstream.last_request().unwrap(), false);
        }
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
async fn gemini_streams_every_pair() {
    let (gw, ups) = setup3().await;
    for caller in CALLERS3 {
        for (route, upstream) in &ups {
            let (path, body) = request3(caller, route, "Say hello", true);
            let r = post(&gw, &path, &body).await;
            assert_eq!(r.status, 200, "{caller} → {route}: {}", r.text);
            assert_eq!(r.header("content-type"), "text/event-stream");
            assert_eq!(
                streamed3(caller, &r),
                "Hello from the mock upstream.",
                "{caller} → {route}: {}",
                r.text
            );
            if caller == "gemini" {
                let last: Value = serde_json::from_str(r.sse_data().last().unwrap()).unwrap();
                assert_eq!(last["candidates"][0]["finishReason"], "STOP", "{last}");
                assert!(
                    last["usageMetadata"]["candidatesTokenCount"]
                        .as_u64()
                        .unwrap()
                        > 0
                );
                assert!(!r.text.contains("[DONE]"));
            }
            if caller == "openai" {
                assert_eq!(r.sse_data().last().unwrap(), "[DONE]");
            }
            if caller == "anthropic" {
                assert_eq!(r.sse_events().last().unwrap(), "message_stop");
            }
            check_upstream(route, &upstream.last_request().unwrap(), true);
        }
    }
    // Without `alt=sse` the gateway answers SSE all the same (see README).
    let r = post(
        &gw,
        "/v1beta/models/to-gemini:streamGenerateContent",
        &json!({"contents": [{"parts": [{"text": "hi"}]}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("content-type"), "text/event-stream");
    assert_eq!(streamed3("gemini", &r), "Hello from the mock upstream.");
}

/// The tool call of a JSON answer in any of the three dialects: (id, name, arguments).
fn tool_call3(caller: &str, v: &Value) -> (String, String, Value) {
    match caller {
        "gemini" => {
            let part = v["candidates"][0]["content"]["parts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p.get("functionCall").is_some())
                .unwrap_or_else(|| panic!("no functionCall: {v}"));
            let c = &part["functionCall"];
            (
                c["id"].as_str().unwrap_or("").into(),
                c["name"].as_str().unwrap().into(),
                c["args"].clone(),
            )
        }
        _ => tool_call(caller, v),
    }
}

#[tokio::test]
async fn gemini_tool_calls_round_trip_every_pair() {
    let (gw, ups) = setup3().await;
    for caller in CALLERS3 {
        for (route, upstream) in &ups {
            let (path, mut body) = request3(caller, route, "Weather in Paris?", false);
            body["tools"] = tools3(caller);
            let r = post(&gw, &path, &body).await;
            assert_eq!(r.status, 200, "{caller} → {route}: {}", r.text);
            let (id, name, args) = tool_call3(caller, &r.json());
            assert_eq!(name, "get_weather", "{caller} → {route}");
            assert!(args["city"].is_string(), "{args}");
            if *route == "to-gemini" {
                let sent = upstream.last_request().unwrap().body;
                assert_eq!(
                    sent["tools"][0]["functionDeclarations"][0]["name"],
                    "get_weather"
                );
            }
            match caller {
                "gemini" => {
                    // Gemini callers pair the response with its call by name; no id needed.
                    let contents = body["contents"].as_array_mut().unwrap();
                    contents.push(json!({"role": "model", "parts": [{"functionCall": {"name": name, "args": args}}]}));
                    contents.push(json!({"role": "user", "parts": [{"functionResponse": {"name": name, "response": {"output": "sunny, 21C"}}}]}));
                }
                "openai" => {
                    let messages = body["messages"].as_array_mut().unwrap();
                    messages.push(json!({"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}}]}));
                    messages
                        .push(json!({"role": "tool", "tool_call_id": id, "content": "sunny, 21C"}));
                }
                _ => {
                    let messages = body["messages"].as_array_mut().unwrap();
                    messages.push(json!({"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": name, "input": args}]}));
                    messages.push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "sunny, 21C"}]}));
                }
            }
            let r = post(&gw, &path, &body).await;
            assert_eq!(
                r.status, 200,
                "{caller} → {route} (tool result): {}",
                r.text
            );
            assert!(!answer3(caller, &r.json()).is_empty(), "{}", r.text);
            let sent = upstream.last_request().unwrap().body;
            match *route {
                // The functionResponse names the function, found from the earlier call.
                "to-gemini" => {
                    let contents = sent["contents"].as_array().unwrap();
                    let resp = &contents.last().unwrap()["parts"][0]["functionResponse"];
                    assert_eq!(resp["name"], "get_weather", "{caller}: {sent}");
                    assert_eq!(resp["response"]["output"], "sunny, 21C", "{caller}: {sent}");
                    assert_eq!(contents[contents.len() - 2]["role"], "model");
                }
                "to-openai" => {
                    let msgs = sent["messages"].as_array().unwrap();
                    let call_id = &msgs[msgs.len() - 2]["tool_calls"][0]["id"];
                    assert_eq!(
                        &msgs[msgs.len() - 1]["tool_call_id"],
                        call_id,
                        "{caller}: {sent}"
                    );
                    assert!(call_id.as_str().is_some_and(|s| !s.is_empty()));
                }
                _ => {
                    let msgs = sent["messages"].as_array().unwrap();
                    let call_id = &msgs[msgs.len() - 2]["content"][0]["id"];
                    assert_eq!(
                        &msgs[msgs.len() - 1]["content"][0]["tool_use_id"],
                        call_id,
                        "{caller}: {sent}"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn gemini_streamed_tool_calls_every_pair() {
    let (gw, ups) = setup3().await;
    for caller in CALLERS3 {
        for (route, _) in &ups {
            let (path, mut body) = request3(caller, route, "Weather in Paris?", true);
            body["tools"] = tools3(caller);
            let r = post(&gw, &path, &body).await;
            assert_eq!(r.status, 200, "{caller} → {route}: {}", r.text);
            let events: Vec<Value> = r
                .sse_data()
                .iter()
                .filter(|d| *d != "[DONE]")
                .map(|d| serde_json::from_str(d).unwrap())
                .collect();
            let (name, args) = match caller {
                "gemini" => {
                    let calls: Vec<&Value> = events
                        .iter()
                        .flat_map(|e| {
                            e["candidates"][0]["content"]["parts"]
                                .as_array()
                                .into_iter()
                                .flatten()
                        })
                        .filter_map(|p| p.get("functionCall"))
                        .collect();
                    // One whole call, arguments complete, with an id the caller can echo.
                    assert_eq!(calls.len(), 1, "{}", r.text);
                    assert!(calls[0]["id"].as_str().is_some_and(|s| !s.is_empty()));
                    assert_eq!(
                        events.last().unwrap()["candidates"][0]["finishReason"],
                        "STOP"
                    );
                    (
                        calls[0]["name"].as_str().unwrap().to_owned(),
                        calls[0]["args"].to_string(),
                    )
                }
                "openai" => {
                    let mut name = String::new();
                    let mut args = String::new();
                    for e in &events {
                        if let Some(calls) = e["choices"][0]["delta"]["tool_calls"].as_array() {
                            name.push_str(calls[0]["function"]["name"].as_str().unwrap_or(""));
                            args.push_str(calls[0]["function"]["arguments"].as_str().unwrap_or(""));
                        }
                    }
                    assert!(
                        r.text.contains(r#""finish_reason":"tool_calls""#),
                        "{}",
                        r.text
                    );
                    (name, args)
                }
                _ => {
                    let start = events
                        .iter()
                        .find(|e| e["content_block"]["type"] == "tool_use")
                        .expect("tool_use block");
                    assert!(r.text.contains(r#""stop_reason":"tool_use""#), "{}", r.text);
                    (
                        start["content_block"]["name"].as_str().unwrap().to_owned(),
                        events
                            .iter()
                            .filter_map(|e| e["delta"]["partial_json"].as_str())
                            .collect(),
                    )
                }
            };
            assert_eq!(name, "get_weather", "{caller} → {route}");
            let args: Value = serde_json::from_str(&args)
                .unwrap_or_else(|e| panic!("{caller} → {route}: arguments {args:?}: {e}"));
            assert!(args["city"].is_string());
        }
    }
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
