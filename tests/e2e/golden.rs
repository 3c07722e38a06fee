//! The codec battery: every caller dialect × every upstream protocol the mock speaks, as JSON
//! and as a stream, for a plain question and a tool call, through the real gateway over HTTP.
//!
//! Each pair has one fixture, `tests/golden/dialects/<caller>-to-<upstream>.json`, holding per
//! case what the caller sent, what the upstream received (path, the protocol's headers, body)
//! and what the caller got back (status and JSON, or the SSE events), with ids and clocks
//! normalized. Any difference fails with the path where it starts. After an intended change:
//!
//! ```sh
//! UPDATE_GOLDEN=1 cargo test --test e2e golden
//! ```
//!
//! and review the fixtures' diff. Beside the fixtures, each case checks what must hold
//! whatever the bytes: the mock's text reaches the caller, the tool call keeps its name.

use std::path::PathBuf;

use serde_json::{Map, Value, json};

use crate::harness::*;

const CALLERS: [&str; 4] = ["openai", "responses", "anthropic", "gemini"];
/// Route, and the upstream protocol behind it (each its own mock).
const UPSTREAMS: [(&str, &str); 3] = [
    ("to-openai", "openai"),
    ("to-anthropic", "anthropic"),
    ("to-gemini", "google"),
];
const CASES: [(&str, bool, bool); 4] = [
    // name, stream, tools
    ("text", false, false),
    ("text_stream", true, false),
    ("tool", false, true),
    ("tool_stream", true, true),
];
/// The headers that carry the protocol (keys, versions); others are the HTTP client's.
const PROTOCOL_HEADERS: [&str; 6] = [
    "content-type",
    "authorization",
    "x-api-key",
    "x-goog-api-key",
    "anthropic-version",
    "anthropic-beta",
];
const MOCK_TEXT: &str = "Hello from the mock upstream.";

fn schema() -> Value {
    json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
}

/// Path and body of the caller's request.
fn request(caller: &str, route: &str, stream: bool, tools: bool) -> (String, Value) {
    let text = if tools {
        "What is the weather in Paris?"
    } else {
        "Say hello"
    };
    let (path, mut body) = match caller {
        "openai" => {
            let mut b = json!({"model": route, "max_tokens": 64, "temperature": 0.5,
                "messages": [{"role": "user", "content": text}]});
            if tools {
                b["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": schema()}}]);
            }
            if stream {
                b["stream_options"] = json!({"include_usage": true});
            }
            ("/v1/chat/completions".to_owned(), b)
        }
        "responses" => {
            let mut b = json!({"model": route, "max_output_tokens": 64, "input": text});
            if tools {
                b["tools"] = json!([{"type": "function", "name": "get_weather", "description": "Weather", "parameters": schema()}]);
            }
            ("/v1/responses".to_owned(), b)
        }
        "anthropic" => {
            let mut b = json!({"model": route, "max_tokens": 64,
                "messages": [{"role": "user", "content": text}]});
            if tools {
                b["tools"] = json!([{"name": "get_weather", "description": "Weather", "input_schema": schema()}]);
            }
            ("/v1/messages".to_owned(), b)
        }
        _ => {
            let method = if stream {
                "streamGenerateContent?alt=sse"
            } else {
                "generateContent"
            };
            let mut b = json!({"contents": [{"role": "user", "parts": [{"text": text}]}],
                "generationConfig": {"maxOutputTokens": 64}});
            if tools {
                b["tools"] = json!([{"functionDeclarations": [{"name": "get_weather", "description": "Weather", "parameters": schema()}]}]);
            }
            return (format!("/v1beta/models/{route}:{method}"), b);
        }
    };
    if stream {
        body["stream"] = true.into();
    }
    (path, body)
}

/// `prefix_` / `prefix-` followed by 12 or more id characters: a generated id.
fn is_generated_id(s: &str) -> Option<&str> {
    let cut = s.find(['_', '-'])? + 1;
    let (prefix, rest) = s.split_at(cut);
    let id_like = rest.len() >= 12 && rest.bytes().all(|b| b.is_ascii_alphanumeric());
    (id_like && prefix.len() <= 10 && prefix[..cut - 1].bytes().all(|b| b.is_ascii_alphabetic()))
        .then_some(prefix)
}

/// Ids and clocks replaced by placeholders, so fixtures compare across runs.
fn normalize(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for (k, val) in o.iter_mut() {
                let clock = matches!(k.as_str(), "created" | "created_at" | "completed_at");
                if clock && val.is_number() {
                    *val = json!(0);
                } else {
                    normalize(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalize),
        Value::String(s) => {
            if let Some(prefix) = is_generated_id(s) {
                *s = format!("{prefix}<id>");
            } else if s.starts_with('{')
                && let Ok(mut inner) = serde_json::from_str::<Value>(s)
            {
                // A JSON document inside a string (tool arguments): normalized too, kept as text.
                normalize(&mut inner);
                *s = inner.to_string();
            }
        }
        _ => {}
    }
}

/// An SSE body as its events: `{"event"?, "data"}` with `data` parsed when it is JSON.
fn sse_events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut ev = Map::new();
            let mut data = Vec::new();
            for line in e.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    ev.insert("event".into(), name.into());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push(d);
                }
            }
            let data = data.join("\n");
            let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
            ev.insert("data".into(), data);
            Value::Object(ev)
        })
        .collect()
}

/// The assistant text a caller received, JSON or streamed.
fn caller_text(caller: &str, answer: &Value) -> String {
    let mut out = String::new();
    let mut walk = |v: &Value| match caller {
        "openai" => {
            for p in [
                &v["choices"][0]["message"]["content"],
                &v["choices"][0]["delta"]["content"],
            ] {
                out.push_str(p.as_str().unwrap_or(""));
            }
        }
        "responses" => {
            if v["type"] == "response.output_text.delta" {
                out.push_str(v["delta"].as_str().unwrap_or(""));
            }
            for item in v["output"].as_array().into_iter().flatten() {
                for c in item["content"].as_array().into_iter().flatten() {
                    out.push_str(c["text"].as_str().unwrap_or(""));
                }
            }
        }
        "anthropic" => {
            out.push_str(v["delta"]["text"].as_str().unwrap_or(""));
            for b in v["content"].as_array().into_iter().flatten() {
                out.push_str(b["text"].as_str().unwrap_or(""));
            }
        }
        _ => {
            for p in v["candidates"][0]["content"]["parts"]
                .as_array()
                .into_iter()
                .flatten()
            {
                out.push_str(p["text"].as_str().unwrap_or(""));
            }
        }
    };
    match answer.as_array() {
        Some(events) => events.iter().for_each(|e| walk(&e["data"])),
        None => walk(answer),
    }
    out
}

/// The first place where two documents differ, as a JSON path.
fn first_difference(path: &str, want: &Value, got: &Value) -> Option<String> {
    match (want, got) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter().find_map(|k| {
                let (x, y) = (
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                );
                if a.contains_key(k) != b.contains_key(k) {
                    return Some(format!("{path}.{k}: want {x}, got {y}"));
                }
                first_difference(&format!("{path}.{k}"), x, y)
            })
        }
        (Value::Array(a), Value::Array(b)) => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(&format!("{path}[{i}]"), x, y))
            .or_else(|| {
                (a.len() != b.len())
                    .then(|| format!("{path}: want {} items, got {}", a.len(), b.len()))
            }),
        _ => (want != got).then(|| format!("{path}: want {want}, got {got}")),
    }
}

fn fixture_path(caller: &str, protocol: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/golden/dialects")
        .join(format!("{caller}-to-{protocol}.json"))
}

#[tokio::test]
async fn every_dialect_pair_matches_its_golden_fixture() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let (o, a, g) = (mock().await, mock().await, mock().await);
    let yaml = format!(
        "{}models:\n  to-openai:\n    endpoints: [{{ provider: up-openai, model_id: gpt-up }}]\n  to-anthropic:\n    endpoints: [{{ provider: up-anthropic, model_id: claude-up }}]\n  to-gemini:\n    endpoints: [{{ provider: up-gemini, model_id: gemini-up }}]\n",
        providers(&[
            ("up-openai", "openai", &o),
            ("up-anthropic", "anthropic", &a),
            ("up-gemini", "google", &g)
        ])
    );
    let gw = TestGateway::start(&yaml).await;
    let mocks = [&o, &a, &g];
    let mut failures = Vec::new();
    for caller in CALLERS {
        for ((route, protocol), upstream) in UPSTREAMS.into_iter().zip(mocks) {
            let mut doc = Map::new();
            for (case, stream, tools) in CASES {
                let at = format!("{caller} → {protocol}, {case}");
                upstream.clear_requests();
                let (path, body) = request(caller, route, stream, tools);
                let r = post(&gw, &path, &body).await;
                assert_eq!(r.status, 200, "{at}: {}", r.text);
                let mut answer = if stream {
                    Value::Array(sse_events(&r.text))
                } else {
                    r.json()
                };
                normalize(&mut answer);
                if tools {
                    assert!(answer.to_string().contains("get_weather"), "{at}: {answer}");
                } else {
                    assert_eq!(caller_text(caller, &answer), MOCK_TEXT, "{at}: {answer}");
                }
                let sent = upstream
                    .last_request()
                    .unwrap_or_else(|| panic!("{at}: the upstream got nothing"));
                let headers: Map<String, Value> = PROTOCOL_HEADERS
                    .iter()
                    .filter_map(|h| Some(((*h).to_owned(), sent.header(h)?.into())))
                    .collect();
                let mut upstream_body = sent.body.clone();
                normalize(&mut upstream_body);
                doc.insert(
                    case.into(),
                    json!({
                        "request": {"path": path, "body": body},
                        "upstream": {"path": sent.path, "headers": headers, "body": upstream_body},
                        "answer": {"status": r.status, "body": answer},
                    }),
                );
            }
            let file = fixture_path(caller, protocol);
            let got = Value::Object(doc);
            if update {
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::write(&file, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
                continue;
            }
            let want: Value = match std::fs::read_to_string(&file) {
                Ok(t) => serde_json::from_str(&t).unwrap(),
                Err(e) => {
                    failures.push(format!(
                        "{}: {e}; run UPDATE_GOLDEN=1 cargo test --test e2e golden",
                        file.display()
                    ));
                    continue;
                }
            };
            if let Some(d) = first_difference("", &want, &got) {
                failures.push(format!("{caller}-to-{protocol}.json {d}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "golden fixtures differ (UPDATE_GOLDEN=1 rewrites them; review the diff):\n{}",
        failures.join("\n")
    );
}

#[test]
fn normalizing_replaces_ids_and_clocks_only() {
    let mut v = json!({"id": "chatcmpl-0123456789abcdef01234567", "created": 1733300000,
        "model": "gpt-up", "text": "Hello from the mock upstream.", "call": "call_abcdefabcdef12",
        "args": "{\"id\":\"toolu_0123456789abcd\"}", "short": "msg_abc"});
    normalize(&mut v);
    assert_eq!(
        v,
        json!({"id": "chatcmpl-<id>", "created": 0, "model": "gpt-up",
            "text": "Hello from the mock upstream.", "call": "call_<id>",
            "args": "{\"id\":\"toolu_<id>\"}", "short": "msg_abc"})
    );
    assert_eq!(
        first_difference("", &json!({"a": [1, 2]}), &json!({"a": [1, 3]})).as_deref(),
        Some(".a[1]: want 2, got 3")
    );
}
