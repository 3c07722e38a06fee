//! Integration tests: start the mock upstream and talk to it over real HTTP.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bitrouter_mock::{MockBehavior, MockServer};
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

async fn start() -> MockServer {
    MockServer::start(MockBehavior::default())
        .await
        .expect("start mock")
}

fn chat(stream: bool) -> Value {
    json!({
        "model": "gpt-test",
        "stream": stream,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello."}
        ]
    })
}

fn messages(stream: bool) -> Value {
    json!({
        "model": "claude-test",
        "max_tokens": 256,
        "stream": stream,
        "messages": [{"role": "user", "content": "Say hello."}]
    })
}

fn weather_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"]
    })
}

async fn post(server: &MockServer, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", server.base_url()))
        .json(body)
        .send()
        .await
        .expect("send")
}

/// Reads a streamed body to its end; `true` if it ended with an error (a cut connection).
async fn read_all(mut resp: reqwest::Response) -> (String, bool) {
    let mut text = String::new();
    loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => text.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(None) => return (text, false),
            Err(_) => return (text, true),
        }
    }
}

/// The `data:` payloads of an SSE body.
fn data_lines(sse: &str) -> Vec<&str> {
    sse.split("\n\n")
        .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
        .collect()
}

/// `(event name, data)` pairs of an Anthropic SSE body, checking the framing on the way.
fn anthropic_events(sse: &str) -> Vec<(String, Value)> {
    sse.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|event| {
            let mut lines = event.lines();
            let name = lines
                .next()
                .and_then(|l| l.strip_prefix("event: "))
                .expect("event line");
            let data = lines
                .next()
                .and_then(|l| l.strip_prefix("data: "))
                .expect("data line");
            let data: Value = serde_json::from_str(data).expect("json data");
            assert_eq!(data["type"], name, "event name matches data.type");
            (name.to_owned(), data)
        })
        .collect()
}

fn openai_chunks(sse: &str) -> Vec<Value> {
    data_lines(sse)
        .into_iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("chunk json"))
        .collect()
}

fn content_of(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn openai_json_reply() {
    let server = start().await;
    let resp = post(&server, "/v1/chat/completions", &chat(false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["model"], "gpt-test");
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(
        choice["message"]["content"],
        "Hello from the mock upstream."
    );
    assert_eq!(choice["finish_reason"], "stop");
    let usage = &body["usage"];
    assert_eq!(usage["completion_tokens"], 4);
    assert!(usage["prompt_tokens"].as_u64().unwrap() >= 1);
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["prompt_tokens"].as_u64().unwrap() + 4)
    );
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 0);

    // The route without the /v1 prefix answers too.
    let resp = post(&server, "/chat/completions", &chat(false)).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn openai_stream_without_usage() {
    let server = start().await;
    let resp = post(&server, "/v1/chat/completions", &chat(true)).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let (sse, cut) = read_all(resp).await;
    assert!(!cut);
    assert_eq!(data_lines(&sse).last(), Some(&"[DONE]"));
    let chunks = openai_chunks(&sse);
    assert_eq!(chunks.len(), 1 + 4 + 1, "role, 4 deltas, finish");
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(content_of(&chunks), "Hello from the mock upstream.");
    assert_eq!(chunks[5]["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn openai_stream_with_usage() {
    let server = start().await;
    let mut body = chat(true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = client()
        .post(format!("{}/v1/chat/completions", server.base_url()))
        .header(
            "x-mock",
            r#"{"chunks": 6, "input_tokens": 100, "cache_read_tokens": 40, "cache_write_tokens": 5, "reasoning_tokens": 3}"#,
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    let (sse, _) = read_all(resp).await;
    assert_eq!(data_lines(&sse).last(), Some(&"[DONE]"));
    let chunks = openai_chunks(&sse);
    assert_eq!(chunks.len(), 1 + 6 + 1 + 1);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    let usage = &last["usage"];
    assert_eq!(usage["prompt_tokens"], 145);
    assert_eq!(usage["completion_tokens"], 9);
    assert_eq!(usage["total_tokens"], 154);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 40);
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 3);
    // The other chunks carry `"usage": null`, as OpenAI sends them.
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c["usage"].is_null())
    );
    assert_eq!(chunks[7]["choices"][0]["finish_reason"], "stop");
    let deltas = chunks
        .iter()
        .filter(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        })
        .count();
    assert_eq!(deltas, 6);
}

#[tokio::test]
async fn openai_reasoning() {
    let server = start().await;
    server.set_behavior(MockBehavior {
        reasoning: true,
        ..Default::default()
    });
    let body: Value = post(&server, "/v1/chat/completions", &chat(false))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        body["choices"][0]["message"]["reasoning_content"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    let (sse, _) = read_all(post(&server, "/v1/chat/completions", &chat(true)).await).await;
    let chunks = openai_chunks(&sse);
    let reasoning: Vec<_> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert!(reasoning.len() >= 2);
    assert_eq!(content_of(&chunks), "Hello from the mock upstream.");
}

#[tokio::test]
async fn anthropic_json_reply() {
    let server = start().await;
    let resp = client()
        .post(format!("{}/v1/messages", server.base_url()))
        .header(
            "x-mock",
            r#"{"input_tokens": 10, "output_tokens": 7, "cache_read_tokens": 2, "cache_write_tokens": 3, "reasoning": true}"#,
        )
        .json(&messages(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], "claude-test");
    assert!(body["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(body["stop_reason"], "end_turn");
    let content = body["content"].as_array().unwrap();
    assert_eq!(content[0]["type"], "thinking");
    assert!(
        content[0]["signature"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert_eq!(
        content[1],
        json!({"type": "text", "text": "Hello from the mock upstream."})
    );
    assert_eq!(
        body["usage"],
        json!({"input_tokens": 10, "output_tokens": 7, "cache_read_input_tokens": 2, "cache_creation_input_tokens": 3})
    );
}

#[tokio::test]
async fn anthropic_stream_event_order() {
    let server = start().await;
    let resp = post(&server, "/v1/messages", &messages(true)).await;
    assert_eq!(resp.status(), 200);
    let (sse, cut) = read_all(resp).await;
    assert!(!cut);
    let events = anthropic_events(&sse);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    let start = &events[0].1["message"];
    assert_eq!(start["model"], "claude-test");
    assert_eq!(start["usage"]["output_tokens"], 1);
    assert!(start["usage"]["input_tokens"].as_u64().unwrap() >= 1);
    assert_eq!(events[1].1["content_block"]["type"], "text");
    let text: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "Hello from the mock upstream.");
    assert_eq!(events[8].1["delta"]["stop_reason"], "end_turn");
    assert_eq!(events[8].1["usage"]["output_tokens"], 4);

    // With reasoning: a thinking block (deltas, then a signature) comes first.
    let resp = client()
        .post(format!("{}/v1/messages", server.base_url()))
        .header("x-mock", r#"{"reasoning": true}"#)
        .json(&messages(true))
        .send()
        .await
        .unwrap();
    let events = anthropic_events(&read_all(resp).await.0);
    assert_eq!(events[1].1["content_block"]["type"], "thinking");
    assert_eq!(events[2].0, "ping");
    let thinking_stop = events
        .iter()
        .position(|(n, d)| n == "content_block_stop" && d["index"] == 0)
        .unwrap();
    assert_eq!(
        events[thinking_stop - 1].1["delta"]["type"],
        "signature_delta"
    );
    assert_eq!(events[3].1["delta"]["type"], "thinking_delta");
    assert_eq!(events[thinking_stop + 1].1["content_block"]["type"], "text");
    assert_eq!(events[thinking_stop + 1].1["index"], 1);
}

#[tokio::test]
async fn openai_tool_call_auto_mode() {
    let server = start().await;
    let mut body = chat(false);
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "parameters": weather_schema()}}]);
    let reply: Value = post(&server, "/v1/chat/completions", &body)
        .await
        .json()
        .await
        .unwrap();
    let choice = &reply["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_null());
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "mock", "days": 1}));

    // Streamed: the name in the first delta, the arguments over several.
    body["stream"] = json!(true);
    let (sse, _) = read_all(post(&server, "/v1/chat/completions", &body).await).await;
    let chunks = openai_chunks(&sse);
    let deltas: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert!(deltas.len() >= 2);
    assert_eq!(deltas[0]["function"]["name"], "get_weather");
    assert_eq!(deltas[0]["type"], "function");
    assert!(deltas[0]["id"].is_string());
    assert!(
        deltas[1..]
            .iter()
            .all(|d| d["function"].get("name").is_none())
    );
    assert!(deltas.iter().all(|d| d["index"] == 0));
    let streamed: String = deltas
        .iter()
        .map(|d| d["function"]["arguments"].as_str().unwrap())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&streamed).unwrap(),
        json!({"city": "mock", "days": 1})
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );

    // After a tool result the model answers with text.
    body["stream"] = json!(false);
    body["messages"] = json!([
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    ]);
    let reply: Value = post(&server, "/v1/chat/completions", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reply["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        "Hello from the mock upstream."
    );

    // tool_call: false forbids the call even when tools are declared.
    body["messages"] = json!([{"role": "user", "content": "hi [[mock {\"tool_call\": false}]]"}]);
    let reply: Value = post(&server, "/v1/chat/completions", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reply["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn anthropic_tool_call_auto_mode() {
    let server = start().await;
    let mut body = messages(false);
    body["tools"] =
        json!([{"name": "get_weather", "description": "w", "input_schema": weather_schema()}]);
    let reply: Value = post(&server, "/v1/messages", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reply["stop_reason"], "tool_use");
    let block = &reply["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert_eq!(block["name"], "get_weather");
    assert!(block["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(block["input"], json!({"city": "mock", "days": 1}));

    body["stream"] = json!(true);
    let (sse, _) = read_all(post(&server, "/v1/messages", &body).await).await;
    let events = anthropic_events(&sse);
    assert_eq!(events[1].1["content_block"]["type"], "tool_use");
    assert_eq!(events[1].1["content_block"]["name"], "get_weather");
    let parts: Vec<&str> = events
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == "input_json_delta")
        .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert!(parts.len() >= 2);
    assert_eq!(
        serde_json::from_str::<Value>(&parts.concat()).unwrap(),
        json!({"city": "mock", "days": 1})
    );
    let delta = events.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");

    // A user turn holding a tool_result gets text back.
    body["stream"] = json!(false);
    body["messages"] = json!([
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]}
    ]);
    let reply: Value = post(&server, "/v1/messages", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reply["stop_reason"], "end_turn");
    assert_eq!(reply["content"][0]["type"], "text");

    // tool_call: true forces a call even then.
    let reply: Value = client()
        .post(format!("{}/v1/messages", server.base_url()))
        .header("x-mock", r#"{"tool_call": true}"#)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["stop_reason"], "tool_use");
}

#[tokio::test]
async fn status_override_via_header() {
    let server = start().await;
    let resp = client()
        .post(format!("{}/v1/chat/completions", server.base_url()))
        .header("x-mock", r#"{"status": 429}"#)
        .json(&chat(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert!(body["error"]["message"].is_string());

    let resp = client()
        .post(format!("{}/v1/messages", server.base_url()))
        .header("x-mock", r#"{"status": 503}"#)
        .json(&messages(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "api_error");

    let resp = client()
        .post(format!("{}/v1/messages", server.base_url()))
        .header("x-mock", r#"{"status": 429}"#)
        .json(&messages(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");

    // A bad header is a 400 that names the problem.
    let resp = client()
        .post(format!("{}/v1/chat/completions", server.base_url()))
        .header("x-mock", r#"{"status": "soon"}"#)
        .json(&chat(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-mock")
    );
}

#[tokio::test]
async fn status_override_via_directive() {
    let server = start().await;
    // In an OpenAI content-part array.
    let body = json!({
        "model": "gpt-test",
        "messages": [
            {"role": "user", "content": "old turn [[mock {\"status\": 400}]]"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "fail please [[mock {\"status\": 500}]]"}]}
        ]
    });
    let resp = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 500, "only the last user message counts");
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["type"], "server_error");

    // Anthropic, string content; the directive wins over the header.
    let mut body = messages(false);
    body["messages"][0]["content"] = json!("hi [[mock {\"status\": 529}]]");
    let resp = client()
        .post(format!("{}/v1/messages", server.base_url()))
        .header("x-mock", r#"{"status": 429}"#)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 529);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["type"], "overloaded_error");

    // A directive can also clear an instance setting.
    server.set_behavior(MockBehavior {
        status: Some(500),
        ..Default::default()
    });
    body["messages"][0]["content"] = json!("hi [[mock {\"status\": null}]]");
    assert_eq!(post(&server, "/v1/messages", &body).await.status(), 200);

    // Invalid directive JSON: 400 saying what is wrong.
    body["messages"][0]["content"] = json!("hi [[mock {\"statuss\": 500}]]");
    let resp = post(&server, "/v1/messages", &body).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("statuss"), "{message}");
    assert_eq!(err["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn validation_like_a_provider() {
    let server = start().await;
    let url = |p: &str| format!("{}{p}", server.base_url());
    let c = client();

    let resp = c
        .post(url("/v1/chat/completions"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["type"], "invalid_request_error");

    let resp = post(&server, "/v1/chat/completions", &json!({"model": "m"})).await;
    assert_eq!(resp.status(), 400);
    let resp = post(
        &server,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(resp.status(), 400);

    let mut no_max = messages(false);
    no_max.as_object_mut().unwrap().remove("max_tokens");
    let resp = post(&server, "/v1/messages", &no_max).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["type"], "error");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens")
    );

    let resp = c.get(url("/v1/models")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let models: Value = resp.json().await.unwrap();
    assert_eq!(models["object"], "list");
    assert!(models["data"].as_array().unwrap().len() >= 2);

    let resp = c.get(url("/v1/nothing")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let err: Value = resp.json().await.unwrap();
    assert!(err["error"]["message"].is_string());
    let resp = c.get(url("/v1/chat/completions")).send().await.unwrap();
    assert_eq!(resp.status(), 404);

    // Failed model requests count too.
    assert_eq!(server.request_count(), 4);
}

#[tokio::test]
async fn max_tokens_truncates_with_length() {
    let server = start().await;
    let mut body = chat(true);
    body["max_tokens"] = json!(2);
    let (sse, _) = read_all(post(&server, "/v1/chat/completions", &body).await).await;
    let chunks = openai_chunks(&sse);
    assert_eq!(content_of(&chunks), "Hello from");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );

    let mut body = messages(false);
    body["max_tokens"] = json!(1);
    let reply: Value = post(&server, "/v1/messages", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reply["stop_reason"], "max_tokens");
    assert_eq!(reply["content"][0]["text"], "Hello");
    assert_eq!(reply["usage"]["output_tokens"], 1);
}

#[tokio::test]
async fn cut_after_drops_the_connection() {
    let server = start().await;
    server.set_behavior(MockBehavior {
        cut_after: Some(2),
        ..Default::default()
    });
    let resp = post(&server, "/v1/chat/completions", &chat(true)).await;
    assert_eq!(resp.status(), 200);
    let (sse, cut) = read_all(resp).await;
    assert!(cut, "the body ends with an error, not a clean end");
    assert!(!sse.contains("[DONE]"));
    let chunks = openai_chunks(&sse);
    assert_eq!(content_of(&chunks), "Hello from");
    assert!(
        chunks
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null())
    );

    let resp = client()
        .post(format!("{}/v1/messages", server.base_url()))
        .header("x-mock", r#"{"cut_after": 1, "chunk_delay_ms": 5}"#)
        .json(&messages(true))
        .send()
        .await
        .unwrap();
    let (sse, cut) = read_all(resp).await;
    assert!(cut);
    let names: Vec<String> = anthropic_events(&sse).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta"
        ]
    );
}

#[tokio::test]
async fn zero_means_right_after_the_headers() {
    let server = start().await;
    // cut_after 0: headers, then the connection drops before any event.
    let resp = client()
        .post(format!("{}/v1/messages", server.base_url()))
        .header("x-mock", r#"{"cut_after": 0}"#)
        .json(&messages(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (sse, cut) = read_all(resp).await;
    assert!(cut);
    assert_eq!(sse, "");

    // stall_after_chunks 0: headers, then silence.
    let mut resp = client()
        .post(format!("{}/v1/chat/completions", server.base_url()))
        .header("x-mock", r#"{"stall_after_chunks": 0}"#)
        .json(&chat(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let next = tokio::time::timeout(Duration::from_millis(200), resp.chunk()).await;
    assert!(next.is_err(), "no event arrives");
}

#[tokio::test]
async fn stall_before_headers_times_out_and_frees_the_connection() {
    let server = start().await;
    let started = Instant::now();
    let err = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap()
        .post(format!("{}/v1/chat/completions", server.base_url()))
        .header("x-mock", r#"{"stall_before_headers": true}"#)
        .json(&chat(false))
        .send()
        .await
        .expect_err("no response ever comes");
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(server.request_count(), 1);
    // The client gave up and closed its socket; the mock notices and lets go.
    eventually("upstream connection closed", || {
        server.active_connections() == 0
    })
    .await;
}

#[tokio::test]
async fn stall_after_chunks_hangs_without_closing() {
    let server = start().await;
    let mut resp = client()
        .post(format!("{}/v1/chat/completions", server.base_url()))
        .header("x-mock", r#"{"stall_after_chunks": 1}"#)
        .json(&chat(true))
        .send()
        .await
        .unwrap();
    let mut received = String::new();
    while openai_chunks(&received).len() < 2 {
        let chunk = resp.chunk().await.unwrap().expect("more data");
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(content_of(&openai_chunks(&received)), "Hello");
    let next = tokio::time::timeout(Duration::from_millis(200), resp.chunk()).await;
    assert!(next.is_err(), "nothing more arrives");
    assert_eq!(server.active_connections(), 1);
    drop(resp);
    eventually("cancelled stream closes the upstream connection", || {
        server.active_connections() == 0
    })
    .await;
}

#[tokio::test]
async fn latency_and_stream_delays() {
    let server = start().await;
    server.set_behavior(MockBehavior {
        latency_ms: 80,
        ..Default::default()
    });
    let started = Instant::now();
    assert_eq!(
        post(&server, "/v1/chat/completions", &chat(false))
            .await
            .status(),
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(80));

    server.set_behavior(MockBehavior {
        ttft_ms: 400,
        chunk_delay_ms: 20,
        ..Default::default()
    });
    let started = Instant::now();
    let resp = post(&server, "/v1/messages", &messages(true)).await;
    let headers_at = started.elapsed();
    let (sse, _) = read_all(resp).await;
    // The headers come before the time to first token (a long one, so that a loaded machine
    // cannot blur the order).
    assert!(headers_at < Duration::from_millis(400), "{headers_at:?}");
    // ttft + 3 gaps between 4 deltas.
    assert!(started.elapsed() >= Duration::from_millis(400 + 3 * 20));
    assert!(sse.contains("message_stop"));
}

#[tokio::test]
async fn records_requests() {
    let server = start().await;
    let resp = client()
        .post(format!("{}/v1/chat/completions", server.base_url()))
        .header("Authorization", "Bearer sk-test")
        .header("X-Custom", "yes")
        .json(&chat(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    client()
        .post(format!("{}/v1/messages", server.base_url()))
        .body("not json")
        .send()
        .await
        .unwrap();
    client()
        .get(format!("{}/v1/models", server.base_url()))
        .send()
        .await
        .unwrap();

    assert_eq!(
        server.request_count(),
        2,
        "models listing is not a model request"
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let first = &requests[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/v1/chat/completions");
    assert_eq!(first.body, chat(false));
    assert!(
        first
            .headers
            .contains(&("authorization".into(), "Bearer sk-test".into()))
    );
    assert_eq!(first.header("x-custom"), Some("yes"));
    assert_eq!(first.header("X-CUSTOM"), Some("yes"));
    assert_eq!(requests[1].path, "/v1/messages");
    assert_eq!(requests[1].body, Value::Null);
    assert_eq!(server.last_request().as_ref(), Some(&requests[1]));

    server.clear_requests();
    assert!(server.requests().is_empty());
    assert_eq!(server.request_count(), 0);

    // Recording off: counted, not kept.
    let quiet = MockServer::builder().record(false).start().await.unwrap();
    assert_eq!(
        post(&quiet, "/v1/chat/completions", &chat(false))
            .await
            .status(),
        200
    );
    assert_eq!(quiet.request_count(), 1);
    assert!(quiet.requests().is_empty());
}

#[tokio::test]
async fn dropping_the_server_closes_connections() {
    let server = start().await;
    let base = server.base_url();
    let mut resp = client()
        .post(format!("{base}/v1/messages"))
        .header("x-mock", r#"{"stall_after_chunks": 1}"#)
        .json(&messages(true))
        .send()
        .await
        .unwrap();
    let first = resp.chunk().await.unwrap();
    assert!(first.is_some());
    assert_eq!(server.active_connections(), 1);

    drop(server);
    let rest = tokio::time::timeout(Duration::from_secs(2), read_all(resp))
        .await
        .expect("the stalled stream ends once the server is dropped");
    assert!(!rest.0.contains("message_stop"));
    let refused = client()
        .post(format!("{base}/v1/messages"))
        .json(&messages(false))
        .send()
        .await;
    assert!(refused.is_err(), "no longer accepting");
}

#[tokio::test]
async fn dropping_the_server_ends_h2_streams() {
    let server = start().await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut resp = h2
        .post(format!("{}/v1/chat/completions", server.base_url()))
        .header("x-mock", r#"{"stall_after_chunks": 1}"#)
        .json(&chat(true))
        .send()
        .await
        .unwrap();
    assert!(resp.chunk().await.unwrap().is_some());
    drop(server);
    let (rest, _) = tokio::time::timeout(Duration::from_secs(2), read_all(resp))
        .await
        .expect("the stalled h2 stream ends once the server is dropped");
    assert!(!rest.contains("[DONE]"));
}

#[tokio::test]
async fn absurd_overrides_do_not_panic() {
    let server = start().await;
    let max = u64::MAX;
    let header = format!(
        r#"{{"chunks": {max}, "input_tokens": {max}, "output_tokens": {max}, "cache_read_tokens": {max}, "cache_write_tokens": {max}, "reasoning_tokens": {max}}}"#
    );
    let resp = client()
        .post(format!("{}/v1/chat/completions", server.base_url()))
        .header("x-mock", &header)
        .json(&chat(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["usage"]["total_tokens"], max);
    // Streamed, cut early to keep the test fast: the plan for the (capped) chunks is still built.
    let resp = client()
        .post(format!("{}/v1/messages", server.base_url()))
        .header("x-mock", header.replace('}', r#", "cut_after": 2}"#))
        .json(&messages(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (body, cut) = read_all(resp).await;
    assert!(cut && body.contains("message_start"));
    let resp = client()
        .post(format!("{}/v1/messages", server.base_url()))
        .header("x-mock", r#"{"chunks": -1, "status": 99999}"#)
        .json(&messages(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = client()
        .post(format!("{}/v1/messages", server.base_url()))
        .header("x-mock", r#"{"status": 1000}"#)
        .json(&messages(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn shutdown_waits_for_connections() {
    let server = start().await;
    let base = server.base_url();
    let pending = tokio::spawn(async move {
        client()
            .post(format!("{base}/v1/chat/completions"))
            .header("x-mock", r#"{"stall_before_headers": true}"#)
            .json(&chat(false))
            .send()
            .await
    });
    eventually("request arrived", || server.request_count() == 1).await;
    tokio::time::timeout(Duration::from_secs(2), server.shutdown())
        .await
        .expect("shutdown completes");
    let result = tokio::time::timeout(Duration::from_secs(2), pending)
        .await
        .expect("client sees the close")
        .unwrap();
    assert!(result.is_err());
}

#[tokio::test]
async fn serves_h2c() {
    let server = start().await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2
        .post(format!("{}/v1/chat/completions", server.base_url()))
        .json(&chat(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let (sse, cut) = read_all(resp).await;
    assert!(!cut);
    assert_eq!(
        content_of(&openai_chunks(&sse)),
        "Hello from the mock upstream."
    );
}

/// Kills the child process even when an assertion fails.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_serves_and_prints_its_address() {
    let child = Command::new(env!("CARGO_BIN_EXE_mock-upstream"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--chunks",
            "3",
            "--no-record",
            "--threads",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn mock-upstream");
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .unwrap()
    .unwrap();
    let base = line
        .trim()
        .strip_prefix("mock-upstream listening on ")
        .expect("banner")
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"));

    let resp = client()
        .post(format!("{base}/v1/chat/completions"))
        .json(&chat(true))
        .send()
        .await
        .unwrap();
    let (sse, _) = read_all(resp).await;
    assert_eq!(openai_chunks(&sse).len(), 1 + 3 + 1);

    let stats: Value = client()
        .get(format!("{base}/_mock/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["model_requests"], 1);
    assert_eq!(stats["recorded_requests"], 0);

    // SIGTERM ends it cleanly.
    #[cfg(unix)]
    {
        let pid = child.0.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                assert!(status.success(), "{status:?}");
                break;
            }
            assert!(Instant::now() < deadline, "mock-upstream ignored SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn cohere_style_chat_json_stream_and_errors() {
    let server = MockServer::start(MockBehavior {
        input_tokens: Some(9),
        ..Default::default()
    })
    .await
    .expect("start mock");
    let body = json!({
        "model": "command-r",
        "message": "Say hello.",
        "chat_history": [{"role": "USER", "message": "hi"}, {"role": "CHATBOT", "message": "hello"}],
        "preamble": "be terse",
    });
    let resp = post(&server, "/v1/chat", &body).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["text"], "Hello from the mock upstream.");
    assert_eq!(v["finish_reason"], "COMPLETE");
    assert_eq!(v["meta"]["billed_units"]["input_tokens"], 9);
    assert_eq!(v["meta"]["billed_units"]["output_tokens"], 4);

    let mut streamed = body.clone();
    streamed["stream"] = true.into();
    let resp = post(&server, "/v1/chat", &streamed).await;
    assert_eq!(resp.headers()["content-type"], "application/stream+json");
    let (text, cut) = read_all(resp).await;
    assert!(!cut);
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 6, "{text}");
    assert_eq!(events[0]["event_type"], "stream-start");
    let joined: String = events[1..5]
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(joined, "Hello from the mock upstream.");
    assert_eq!(events[5]["event_type"], "stream-end");
    assert_eq!(
        events[5]["response"]["meta"]["billed_units"]["output_tokens"],
        4
    );

    // Fault knobs and validation.
    let resp = client()
        .post(format!("{}/v1/chat", server.base_url()))
        .header("x-mock", r#"{"status": 503}"#)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    assert!(v["message"].as_str().unwrap().contains("503"), "{v}");
    let resp = post(&server, "/v1/chat", &json!({"model": "m"})).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["message"], "message: Field required");
}

/// Posts `body` to `path` with an `x-mock` header.
async fn post_with(server: &MockServer, path: &str, mock: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", server.base_url()))
        .header("x-mock", mock)
        .json(body)
        .send()
        .await
        .expect("send")
}

fn gemini(parts: &[(&str, &str)]) -> Value {
    let contents: Vec<Value> = parts
        .iter()
        .map(|(role, text)| json!({"role": role, "parts": [{"text": text}]}))
        .collect();
    json!({"contents": contents})
}

const GEMINI_STREAM: &str = "/v1beta/models/gemini-test:streamGenerateContent?alt=sse";
const GEMINI_JSON: &str = "/v1beta/models/gemini-test:generateContent";

#[tokio::test]
async fn error_after_sends_the_dialects_error_event_then_ends() {
    let server = start().await;
    let knob = r#"{"error_after": 2}"#;

    // OpenAI: two deltas, the error envelope as a data event, no finish, no [DONE], clean end.
    let resp = post_with(&server, "/v1/chat/completions", knob, &chat(true)).await;
    assert_eq!(resp.status(), 200);
    let (sse, cut) = read_all(resp).await;
    assert!(!cut, "the body ends cleanly");
    let data = data_lines(&sse);
    assert_eq!(
        data.last().copied(),
        Some(
            r#"{"error":{"message":"mock upstream: overloaded (error_after)","type":"server_error","param":null,"code":null}}"#
        )
    );
    assert!(!sse.contains("[DONE]"));
    let chunks = openai_chunks(&sse);
    assert_eq!(content_of(&chunks), "Hello from");
    assert!(
        chunks
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null())
    );

    // Anthropic: `event: error` after the second text delta, no message_stop.
    let resp = post_with(&server, "/v1/messages", knob, &messages(true)).await;
    let (sse, cut) = read_all(resp).await;
    assert!(!cut);
    assert!(sse.ends_with(
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"mock upstream: overloaded (error_after)\"}}\n\n"
    ), "{sse}");
    let names: Vec<String> = anthropic_events(&sse).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "error"
        ]
    );

    // Gemini: the Google error envelope as a data event.
    let body = gemini(&[("user", "Say hello.")]);
    let resp = post_with(&server, GEMINI_STREAM, knob, &body).await;
    let (sse, cut) = read_all(resp).await;
    assert!(!cut);
    let data = data_lines(&sse);
    assert_eq!(data.len(), 3, "{sse}");
    assert_eq!(
        data[2],
        r#"{"error":{"code":503,"message":"mock upstream: overloaded (error_after)","status":"UNAVAILABLE"}}"#
    );

    // Cohere: a stream-end that finishes with ERROR.
    let body = json!({"message": "Say hello.", "stream": true});
    let resp = post_with(&server, "/v1/chat", knob, &body).await;
    let (text, cut) = read_all(resp).await;
    assert!(!cut);
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1 + 2 + 1, "{text}");
    let last = &events[3];
    assert_eq!(last["event_type"], "stream-end");
    assert_eq!(last["finish_reason"], "ERROR");
    assert_eq!(last["error"], "mock upstream: overloaded (error_after)");

    // 0: right after the headers, before any event.
    let resp = post_with(
        &server,
        "/v1/messages",
        r#"{"error_after": 0}"#,
        &messages(true),
    )
    .await;
    let (sse, _) = read_all(resp).await;
    let names: Vec<String> = anthropic_events(&sse).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["error"]);

    // The other endings win: cut_after, stall_after_chunks, malformed_after, then error_after.
    let both = r#"{"error_after": 1, "cut_after": 3}"#;
    let resp = post_with(&server, "/v1/chat/completions", both, &chat(true)).await;
    let (sse, cut) = read_all(resp).await;
    assert!(cut);
    assert!(!sse.contains("error_after"));
    let both = r#"{"error_after": 1, "malformed_after": 1}"#;
    let resp = post_with(&server, "/v1/chat/completions", both, &chat(true)).await;
    let (sse, _) = read_all(resp).await;
    assert!(!sse.contains("error_after"));
}

#[tokio::test]
async fn continue_partial_answers_the_rest_of_the_text() {
    let server = start().await;
    let knob = r#"{"continue_partial": true, "chunks": 2}"#;

    // OpenAI: the partial answer as an assistant turn, then a user message asking to continue.
    let failover = json!({
        "model": "gpt-test",
        "stream": true,
        "messages": [
            {"role": "user", "content": "Say hello."},
            {"role": "assistant", "content": "Hello from the"},
            {"role": "user", "content": "Continue exactly where you left off."}
        ]
    });
    let resp = post_with(&server, "/v1/chat/completions", knob, &failover).await;
    let (sse, _) = read_all(resp).await;
    let chunks = openai_chunks(&sse);
    let deltas: Vec<&str> = chunks
        .iter()
        .skip(1)
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(deltas, [" mock", " upstream."], "split like a normal reply");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );

    // JSON, with the default 4 chunks: the usage counts the continuation's deltas.
    let mut json_body = failover.clone();
    json_body["stream"] = false.into();
    let resp = post_with(
        &server,
        "/v1/chat/completions",
        r#"{"continue_partial": true}"#,
        &json_body,
    )
    .await;
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(reply["choices"][0]["message"]["content"], " mock upstream.");
    assert_eq!(reply["usage"]["completion_tokens"], 4);

    // max_tokens still truncates.
    json_body["max_tokens"] = 1.into();
    let resp = post_with(&server, "/v1/chat/completions", knob, &json_body).await;
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(reply["choices"][0]["message"]["content"], " mock");
    assert_eq!(reply["choices"][0]["finish_reason"], "length");

    // Anthropic prefill, text blocks, trailing space; one word repeated.
    let mut prefill = messages(true);
    prefill["messages"] = json!([
        {"role": "user", "content": "Say hello."},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello from the "}]}
    ]);
    let repeat = r#"{"continue_partial": true, "chunks": 2, "repeat_words": 1}"#;
    let resp = post_with(&server, "/v1/messages", repeat, &prefill).await;
    let (sse, _) = read_all(resp).await;
    let texts: Vec<String> = anthropic_events(&sse)
        .into_iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(texts, [" the", " mock upstream."]);

    // Gemini prefill: a trailing `model` content.
    let body = gemini(&[("user", "Say hello."), ("model", "Hello from")]);
    let resp = post_with(&server, GEMINI_JSON, knob, &body).await;
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(
        reply["candidates"][0]["content"]["parts"][0]["text"],
        " the mock upstream."
    );

    // The `text` knob is the text continued.
    let custom = r#"{"continue_partial": true, "chunks": 2, "text": "one two three four"}"#;
    let body = gemini(&[("user", "Count."), ("model", "one two")]);
    let resp = post_with(&server, GEMINI_JSON, custom, &body).await;
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(
        reply["candidates"][0]["content"]["parts"][0]["text"],
        " three four"
    );

    // Not a prefix of the reply, or the knob off: the whole reply.
    let body = gemini(&[("user", "Say hello."), ("model", "Greetings")]);
    let resp = post_with(&server, GEMINI_JSON, knob, &body).await;
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(
        reply["candidates"][0]["content"]["parts"][0]["text"],
        "Hello from the mock upstream."
    );
    json_body.as_object_mut().unwrap().remove("max_tokens");
    let reply: Value = post(&server, "/v1/chat/completions", &json_body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        reply["choices"][0]["message"]["content"],
        "Hello from the mock upstream."
    );
}

#[tokio::test]
async fn refuse_prefill_rejects_a_trailing_assistant_turn() {
    const MESSAGE: &str = "mock upstream: this model does not support assistant message prefill; the conversation must end with a user message";
    let server = MockServer::start(MockBehavior {
        refuse_prefill: true,
        continue_partial: true,
        ..Default::default()
    })
    .await
    .expect("start mock");

    let mut prefill = messages(false);
    prefill["messages"] = json!([
        {"role": "user", "content": "Say hello."},
        {"role": "assistant", "content": "Hello from the"}
    ]);
    let resp = post(&server, "/v1/messages", &prefill).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert_eq!(err["error"]["message"], MESSAGE);

    let mut body = chat(true);
    body["messages"] = json!([
        {"role": "user", "content": "Say hello."},
        {"role": "assistant", "content": "Hello from the"}
    ]);
    let resp = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert_eq!(err["error"]["message"], MESSAGE);

    let body = gemini(&[("user", "Say hello."), ("model", "Hello from the")]);
    let resp = post(&server, GEMINI_STREAM, &body).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(err["error"]["message"], MESSAGE);

    // The same partial answer followed by a user message is fine, and continued.
    let mut body = prefill.clone();
    body["messages"]
        .as_array_mut()
        .unwrap()
        .push(json!({"role": "user", "content": "Continue."}));
    let resp = post(&server, "/v1/messages", &body).await;
    assert_eq!(resp.status(), 200);
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(reply["content"][0]["text"], " mock upstream.");

    // A directive in the last user message turns it off for one request.
    prefill["messages"][0]["content"] = json!("Say hello. [[mock {\"refuse_prefill\": false}]]");
    assert_eq!(post(&server, "/v1/messages", &prefill).await.status(), 200);
}
