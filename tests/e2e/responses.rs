//! The OpenAI Responses dialect (`POST /v1/responses`) against OpenAI-chat and Anthropic
//! upstreams: plain, streamed and tool-calling requests checked at the caller and at what the
//! upstream received, the stateless refusals, and errors in OpenAI's shape.

use bitrouter_mock::{MockBehavior, MockServer};
use serde_json::{Value, json};

use crate::harness::*;

const ROUTES: [&str; 2] = ["to-openai", "to-anthropic"];
const TEXT: &str = "Hello from the mock upstream.";

/// A gateway with routes `to-openai` and `to-anthropic`, each with one mock upstream.
async fn setup_with(b: MockBehavior) -> (TestGateway, MockServer, MockServer) {
    let (o, a) = (mock_with(b.clone()).await, mock_with(b).await);
    let yaml = format!(
        "{}models:\n  to-openai:\n    endpoints: [{{ provider: up-openai, model_id: gpt-up }}]\n  to-anthropic:\n    endpoints: [{{ provider: up-anthropic, model_id: claude-up }}]\n",
        providers(&[
            ("up-openai", "openai", &o),
            ("up-anthropic", "anthropic", &a)
        ])
    );
    (TestGateway::start(&yaml).await, o, a)
}

async fn setup() -> (TestGateway, MockServer, MockServer) {
    setup_with(MockBehavior::default()).await
}

fn upstream_of<'a>(route: &str, o: &'a MockServer, a: &'a MockServer) -> &'a MockServer {
    if route == "to-openai" { o } else { a }
}

fn weather_tool() -> Value {
    json!([{"type": "function", "name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
}

/// The text of every `output_text` part of a response object.
fn output_text(v: &Value) -> String {
    v["output"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["text"].as_str().map(str::to_owned))
        .collect()
}

/// The SSE events of a Responses stream as (name, data), checking that every data object
/// names its event and that sequence numbers count up from 0.
fn stream_events(r: &Reply) -> Vec<(String, Value)> {
    let names = r.sse_events();
    let data = r.sse_data();
    assert_eq!(names.len(), data.len(), "{}", r.text);
    assert!(!data.iter().any(|d| d == "[DONE]"), "{}", r.text);
    let events: Vec<(String, Value)> = names
        .into_iter()
        .zip(
            data.iter()
                .map(|d| serde_json::from_str::<Value>(d).unwrap()),
        )
        .collect();
    for (i, (name, v)) in events.iter().enumerate() {
        assert_eq!(v["type"], name.as_str(), "{v}");
        assert_eq!(v["sequence_number"], i as u64, "{v}");
    }
    events
}

#[tokio::test]
async fn responses_json_through_every_upstream() {
    let (gw, o, a) = setup().await;
    for route in ROUTES {
        let body = json!({"model": route, "input": "Say hello", "instructions": "Be terse.",
            "max_output_tokens": 50, "temperature": 0.5, "store": false, "metadata": {"k": "v"}});
        let r = post(&gw, "/v1/responses", &body).await;
        assert_eq!(r.status, 200, "{route}: {}", r.text);
        assert_eq!(r.header("content-type"), "application/json");
        let v = r.json();
        assert_eq!(v["object"], "response", "{v}");
        assert_eq!(v["status"], "completed");
        assert!(v["id"].as_str().unwrap().starts_with("resp_"));
        assert_eq!(v["output"][0]["type"], "message");
        assert_eq!(v["output"][0]["role"], "assistant");
        assert_eq!(output_text(&v), TEXT);
        let u = &v["usage"];
        assert!(u["input_tokens"].as_u64().unwrap() > 0, "{u}");
        assert!(u["output_tokens"].as_u64().unwrap() > 0, "{u}");
        assert_eq!(
            u["total_tokens"].as_u64(),
            Some(u["input_tokens"].as_u64().unwrap() + u["output_tokens"].as_u64().unwrap())
        );

        let sent = upstream_of(route, &o, &a).last_request().unwrap().body;
        assert_eq!(sent["temperature"], 0.5);
        assert_eq!(sent["max_tokens"], 50);
        // Responses-only fields stay with Responses upstreams.
        assert!(
            sent.get("metadata").is_none() && sent.get("store").is_none(),
            "{sent}"
        );
        if route == "to-openai" {
            assert_eq!(
                sent["messages"][0],
                json!({"role": "system", "content": "Be terse."})
            );
            assert_eq!(sent["messages"][1]["content"], "Say hello");
        } else {
            assert_eq!(sent["system"], "Be terse.");
            assert_eq!(sent["messages"][0]["role"], "user");
        }
    }
    // The short path works too.
    let r = post(
        &gw,
        "/responses",
        &json!({"model": "to-openai", "input": "hi"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn responses_streams_through_every_upstream() {
    let (gw, _o, _a) = setup().await;
    for route in ROUTES {
        let body = json!({"model": route, "input": "Say hello", "stream": true});
        let r = post(&gw, "/v1/responses", &body).await;
        assert_eq!(r.status, 200, "{route}: {}", r.text);
        assert_eq!(r.header("content-type"), "text/event-stream");
        let events = stream_events(&r);
        let names: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            &names[..4],
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added"
            ],
            "{route}"
        );
        assert_eq!(
            &names[names.len() - 4..],
            [
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ],
            "{route}"
        );
        let deltas: String = events
            .iter()
            .filter(|e| e.0 == "response.output_text.delta")
            .map(|e| e.1["delta"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(deltas, TEXT, "{route}");
        let item_id = &events[2].1["item"]["id"];
        assert!(
            events
                .iter()
                .filter(|e| e.0 == "response.output_text.delta")
                .all(|e| &e.1["item_id"] == item_id && e.1["output_index"] == 0)
        );
        let done = &events.last().unwrap().1["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["id"], events[0].1["response"]["id"]);
        assert_eq!(output_text(done), TEXT);
        assert!(
            done["usage"]["output_tokens"].as_u64().unwrap() > 0,
            "{done}"
        );
    }
}

#[tokio::test]
async fn responses_reasoning_becomes_a_reasoning_item() {
    let (gw, _o, _a) = setup_with(MockBehavior {
        reasoning: true,
        ..Default::default()
    })
    .await;
    for route in ROUTES {
        let r = post(
            &gw,
            "/v1/responses",
            &json!({"model": route, "input": "hi"}),
        )
        .await;
        assert_eq!(r.status, 200, "{route}: {}", r.text);
        let v = r.json();
        assert_eq!(v["output"][0]["type"], "reasoning", "{route}: {v}");
        assert!(
            !v["output"][0]["summary"][0]["text"]
                .as_str()
                .unwrap()
                .is_empty()
        );
        assert_eq!(output_text(&v), TEXT);

        let r = post(
            &gw,
            "/v1/responses",
            &json!({"model": route, "input": "hi", "stream": true}),
        )
        .await;
        let events = stream_events(&r);
        assert!(
            events
                .iter()
                .any(|e| e.0 == "response.reasoning_summary_text.delta"),
            "{route}: {}",
            r.text
        );
        let done = &events.last().unwrap().1["response"];
        assert_eq!(done["output"][0]["type"], "reasoning");
        assert_eq!(done["output"][1]["type"], "message");
    }
}

#[tokio::test]
async fn responses_tool_calls_round_trip_through_every_upstream() {
    let (gw, o, a) = setup().await;
    for route in ROUTES {
        let body = json!({"model": route, "input": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": weather_tool(), "tool_choice": "auto"});
        let r = post(&gw, "/v1/responses", &body).await;
        assert_eq!(r.status, 200, "{route}: {}", r.text);
        let v = r.json();
        let call = v["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"] == "function_call")
            .unwrap_or_else(|| panic!("{route}: no function_call: {v}"))
            .clone();
        assert_eq!(call["name"], "get_weather");
        assert_eq!(call["status"], "completed");
        assert!(call["id"].as_str().unwrap().starts_with("fc_"));
        let call_id = call["call_id"].as_str().unwrap().to_owned();
        assert!(!call_id.is_empty());
        let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
        assert!(args["city"].is_string(), "{args}");

        let sent = upstream_of(route, &o, &a).last_request().unwrap().body;
        if route == "to-openai" {
            assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
            assert_eq!(sent["tool_choice"], "auto");
        } else {
            assert_eq!(sent["tools"][0]["name"], "get_weather");
            assert!(sent["tools"][0]["input_schema"].is_object());
        }

        // The call goes back as it came out, followed by its output.
        let body = json!({"model": route, "tools": weather_tool(), "input": [
            {"role": "user", "content": "Weather in Paris?"},
            call,
            {"type": "function_call_output", "call_id": call_id, "output": "sunny, 21C"}]});
        let r = post(&gw, "/v1/responses", &body).await;
        assert_eq!(r.status, 200, "{route} (tool output): {}", r.text);
        assert!(!output_text(&r.json()).is_empty(), "{}", r.text);
        let sent = upstream_of(route, &o, &a).last_request().unwrap().body;
        let msgs = sent["messages"].as_array().unwrap();
        let last = &msgs[msgs.len() - 1];
        let before = &msgs[msgs.len() - 2];
        if route == "to-openai" {
            assert_eq!(before["tool_calls"][0]["id"], call_id.as_str());
            assert_eq!(last["role"], "tool");
            assert_eq!(last["tool_call_id"], call_id.as_str());
            assert_eq!(last["content"], "sunny, 21C");
        } else {
            assert_eq!(before["content"][0]["type"], "tool_use");
            assert_eq!(before["content"][0]["id"], call_id.as_str());
            assert_eq!(last["content"][0]["type"], "tool_result");
            assert_eq!(last["content"][0]["tool_use_id"], call_id.as_str());
        }
    }
}

#[tokio::test]
async fn responses_streamed_tool_calls_through_every_upstream() {
    let (gw, _o, _a) = setup().await;
    for route in ROUTES {
        let body = json!({"model": route, "input": "Weather in Paris?", "tools": weather_tool(), "stream": true});
        let r = post(&gw, "/v1/responses", &body).await;
        assert_eq!(r.status, 200, "{route}: {}", r.text);
        let events = stream_events(&r);
        let added = events
            .iter()
            .find(|e| e.0 == "response.output_item.added" && e.1["item"]["type"] == "function_call")
            .unwrap_or_else(|| panic!("{route}: no function_call item: {}", r.text));
        let item_id = &added.1["item"]["id"];
        let index = &added.1["output_index"];
        assert_eq!(added.1["item"]["name"], "get_weather");
        let args: String = events
            .iter()
            .filter(|e| e.0 == "response.function_call_arguments.delta")
            .inspect(|e| assert!(&e.1["item_id"] == item_id && &e.1["output_index"] == index))
            .map(|e| e.1["delta"].as_str().unwrap().to_owned())
            .collect();
        let done = events
            .iter()
            .find(|e| e.0 == "response.function_call_arguments.done")
            .expect("arguments done");
        assert_eq!(done.1["arguments"], args.as_str());
        let parsed: Value = serde_json::from_str(&args).unwrap();
        assert!(parsed["city"].is_string(), "{args}");
        let last = &events.last().unwrap();
        assert_eq!(last.0, "response.completed");
        let item = last.1["response"]["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"] == "function_call")
            .unwrap()
            .clone();
        assert_eq!(item["arguments"], args.as_str());
        assert_eq!(&item["id"], item_id);
    }
}

#[tokio::test]
async fn responses_cut_stream_ends_with_response_failed() {
    let (gw, _o, _a) = setup_with(MockBehavior {
        chunks: Some(4),
        cut_after: Some(2),
        ..Default::default()
    })
    .await;
    for route in ROUTES {
        let body = json!({"model": route, "input": "Say hello", "stream": true});
        let r = post(&gw, "/v1/responses", &body).await;
        assert_eq!(r.status, 200, "{route}: {}", r.text);
        let events = stream_events(&r);
        let last = events.last().unwrap();
        assert_eq!(last.0, "response.failed", "{route}: {}", r.text);
        assert_eq!(last.1["response"]["status"], "failed");
        assert!(
            last.1["response"]["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        assert!(!events.iter().any(|e| e.0 == "response.completed"));
    }
}

#[tokio::test]
async fn responses_state_and_builtin_tools_are_refused_by_other_upstreams() {
    let (gw, o, a) = setup().await;
    for route in ROUTES {
        let cases = [
            (
                json!({"model": route, "input": "and then?", "previous_response_id": "resp_123"}),
                "stateless",
            ),
            (
                json!({"model": route, "previous_response_id": "resp_123"}),
                "stateless",
            ),
            (
                json!({"model": route, "input": "news?", "tools": [{"type": "web_search"}]}),
                "web_search",
            ),
            (
                json!({"model": route, "input": [{"type": "item_reference", "id": "msg_1"}]}),
                "item_reference",
            ),
            (
                json!({"model": route, "input": "hi", "background": true}),
                "stateless",
            ),
        ];
        for (body, needle) in cases {
            let r = post(&gw, "/v1/responses", &body).await;
            assert_eq!(r.status, 400, "{route} {body}: {}", r.text);
            let v = r.json();
            assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
            let msg = v["error"]["message"].as_str().unwrap();
            assert!(msg.contains(needle), "{route}: {msg}");
        }
    }
    assert_eq!(o.request_count() + a.request_count(), 0);
    // `store: true` asks for nothing the caller relies on in this request: it is served.
    let r = post(
        &gw,
        "/v1/responses",
        &json!({"model": "to-anthropic", "input": "hi", "store": true}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn responses_errors_are_openai_shaped() {
    let (gw, _o, _a) = setup().await;
    let r = post(
        &gw,
        "/v1/responses",
        &json!({"model": "no-such-model", "input": "hi"}),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let v = r.json();
    assert_eq!(v["error"]["type"], "not_found_error", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-model")
    );
    assert!(v["error"].get("param").is_some() && v["error"].get("code").is_some());

    // An upstream's error reaches the caller in OpenAI's shape too, whichever upstream.
    let (gw, _o, _a) = setup_with(MockBehavior {
        status: Some(400),
        ..Default::default()
    })
    .await;
    for route in ROUTES {
        let r = post(
            &gw,
            "/v1/responses",
            &json!({"model": route, "input": "hi"}),
        )
        .await;
        assert_eq!(r.status, 400, "{route}: {}", r.text);
        let v = r.json();
        assert!(v["error"]["message"].is_string(), "{route}: {v}");
        assert!(v.get("type").is_none(), "{route}: Anthropic-shaped: {v}");
    }
}

/// A stand-in for OpenAI's Responses endpoint (the mock upstream does not speak it): records
/// each request and answers with a canned `response` object, or SSE events when asked to
/// stream, on a loopback port.
struct FakeResponses {
    base: String,
    requests: std::sync::Arc<std::sync::Mutex<Vec<(String, String, Value)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeResponses {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const UPSTREAM_JSON: &str = r#"{"id":"resp_up1","object":"response","created_at":1,"status":"completed","model":"gpt-up","output":[{"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"thinking"}]},{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hello from Responses.","annotations":[]}]}],"usage":{"input_tokens":7,"input_tokens_details":{"cached_tokens":2},"output_tokens":5,"output_tokens_details":{"reasoning_tokens":1},"total_tokens":12},"upstream_only_field":1}"#;

fn upstream_sse() -> String {
    let events = [
        json!({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_up2", "model": "gpt-up", "status": "in_progress", "output": []}}),
        json!({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0, "item": {"type": "message", "id": "msg_1", "role": "assistant", "content": [], "status": "in_progress"}}),
        json!({"type": "response.output_text.delta", "sequence_number": 2, "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Hello from "}),
        json!({"type": "response.output_text.delta", "sequence_number": 3, "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Responses."}),
        json!({"type": "response.output_item.done", "sequence_number": 4, "output_index": 0, "item": {"type": "message", "id": "msg_1"}}),
        json!({"type": "response.output_item.added", "sequence_number": 5, "output_index": 1, "item": {"type": "function_call", "id": "fc_1", "call_id": "call_9", "name": "get_weather", "arguments": ""}}),
        json!({"type": "response.function_call_arguments.delta", "sequence_number": 6, "item_id": "fc_1", "output_index": 1, "delta": "{\"city\":"}),
        json!({"type": "response.function_call_arguments.delta", "sequence_number": 7, "item_id": "fc_1", "output_index": 1, "delta": "\"Paris\"}"}),
        json!({"type": "response.output_item.done", "sequence_number": 8, "output_index": 1, "item": {"type": "function_call", "id": "fc_1"}}),
        json!({"type": "response.completed", "sequence_number": 9, "response": {"id": "resp_up2", "model": "gpt-up", "status": "completed", "output": [],
            "usage": {"input_tokens": 7, "output_tokens": 5, "total_tokens": 12}}}),
    ];
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect()
}

impl FakeResponses {
    async fn start() -> FakeResponses {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let (head, body) = loop {
                        let n = conn.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break (head, buf[end + 4..end + 4 + len].to_vec());
                        }
                    };
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                    let stream = body["stream"] == true;
                    log.lock().unwrap().push((path, head, body));
                    let (kind, payload) = if stream {
                        ("text/event-stream", upstream_sse())
                    } else {
                        ("application/json", UPSTREAM_JSON.to_owned())
                    };
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{payload}",
                        payload.len()
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        FakeResponses {
            base,
            requests,
            task,
        }
    }

    /// The last request: (path, lower-cased head, body).
    fn last(&self) -> (String, String, Value) {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no upstream request")
    }
}

async fn responses_upstream() -> (TestGateway, FakeResponses) {
    let up = FakeResponses::start().await;
    let yaml = format!(
        "providers:\n  up-resp:\n    api_protocol: openai_responses\n    api_base: {}\n    api_key: test-key-resp\nmodels:\n  to-responses:\n    endpoints: [{{ provider: up-resp, model_id: gpt-up }}]\n",
        up.base
    );
    (TestGateway::start(&yaml).await, up)
}

#[tokio::test]
async fn responses_callers_reach_a_responses_upstream_untouched() {
    let (gw, up) = responses_upstream().await;
    let body = json!({"model": "to-responses", "input": "and then?", "previous_response_id": "resp_0",
        "store": true, "metadata": {"k": "v"}, "tools": [{"type": "web_search"}], "reasoning": {"effort": "low"}});
    let r = post(&gw, "/v1/responses", &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Same dialect: the upstream's bytes, fields the gateway does not model included.
    assert_eq!(r.text, UPSTREAM_JSON);
    assert_eq!(r.header("x-bitrouter-upstream"), "up-resp:gpt-up");
    let (path, head, sent) = up.last();
    assert_eq!(path, "/v1/responses");
    assert!(
        head.contains("authorization: bearer test-key-resp"),
        "{head}"
    );
    assert_eq!(sent["model"], "gpt-up");
    assert_eq!(sent["previous_response_id"], "resp_0");
    assert_eq!(sent["store"], true);
    assert_eq!(sent["metadata"]["k"], "v");
    assert_eq!(sent["reasoning"]["effort"], "low");
    assert_eq!(sent["tools"], json!([{"type": "web_search"}]));
    assert_eq!(sent["input"][0]["content"][0]["text"], "and then?");

    let r = post(
        &gw,
        "/v1/responses",
        &json!({"model": "to-responses", "input": "hi", "stream": true}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let events = stream_events(&r);
    let done = &events.last().unwrap().1;
    assert_eq!(done["type"], "response.completed");
    assert_eq!(output_text(&done["response"]), "Hello from Responses.");
    assert_eq!(
        done["response"]["output"][1]["arguments"],
        "{\"city\":\"Paris\"}"
    );
    assert_eq!(done["response"]["usage"]["total_tokens"], 12);
}

#[tokio::test]
async fn other_callers_reach_a_responses_upstream() {
    let (gw, up) = responses_upstream().await;
    let body = json!({"model": "to-responses", "max_tokens": 20, "messages": [
        {"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}]});
    let r = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from Responses."
    );
    assert_eq!(v["choices"][0]["message"]["reasoning_content"], "thinking");
    assert_eq!(v["usage"]["prompt_tokens"], 7);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
    let (_, _, sent) = up.last();
    assert_eq!(sent["instructions"], "Be terse.");
    assert_eq!(
        sent["input"],
        json!([{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}])
    );
    assert_eq!(sent["max_output_tokens"], 20);
    assert_eq!(sent["store"], false);

    let body = json!({"model": "to-responses", "max_tokens": 20, "stream": true,
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}]});
    let r = post(&gw, "/v1/messages", &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(streamed_text("anthropic", &r), "Hello from Responses.");
    assert!(r.text.contains(r#""stop_reason":"tool_use""#), "{}", r.text);
    let args: String = r
        .sse_data()
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|e| e["delta"]["partial_json"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(args, "{\"city\":\"Paris\"}");
    let (_, _, sent) = up.last();
    assert_eq!(
        sent["tools"][0],
        json!({"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": false})
    );
    assert_eq!(sent["stream"], true);
}
