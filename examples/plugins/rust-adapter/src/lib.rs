//! A provider adapter for a Cohere-chat-style API, an upstream shape the gateway does not
//! speak natively. Pure translation: the host sends the request, adds the API key
//! (`Authorization: Bearer …`) and hands back what came back.
//!
//! * request: the last user message is `message`, earlier turns are `chat_history`
//!   (`USER` / `CHATBOT`), system text is `preamble`; `model`, `max_tokens`, `temperature`,
//!   `p`, `stop_sequences`, `stream`. Tools are refused (the host then fails over).
//! * response: `text`, `finish_reason`, `meta.billed_units.{input,output}_tokens`.
//! * stream: newline-delimited JSON events `stream-start`, `text-generation`, `stream-end`.
//!   A chunk may end mid-line; the unfinished line is the state handed back to the host.
//!
//! Config (optional): `{"path": "/v1/chat"}`, the path appended to the endpoint's base URL.

use std::sync::Mutex;

use bitrouter_plugin::adapter::*;
use serde_json::{Map, Value, json};

static PATH: Mutex<Option<String>> = Mutex::new(None);
const DEFAULT_PATH: &str = "/v1/chat";

struct CohereChat;

impl Adapter for CohereChat {
    fn configure(config: &str) -> Result<(), String> {
        let v: Value = serde_json::from_str(config).map_err(|e| format!("config: {e}"))?;
        let path = match &v {
            Value::Null => None,
            Value::Object(o) => match o.get("path") {
                None => None,
                Some(Value::String(p)) if p.starts_with('/') => Some(p.clone()),
                Some(_) => return Err("config.path: expected a path starting with `/`".into()),
            },
            _ => return Err("config: expected an object such as {\"path\": \"/v1/chat\"}".into()),
        };
        *PATH.lock().unwrap_or_else(|p| p.into_inner()) = path;
        Ok(())
    }

    fn encode_request(request: Request, model_id: &str) -> Result<HttpRequest, String> {
        if !request.tools.is_empty() {
            return Err("the cohere-chat adapter does not support tools".into());
        }
        let mut preamble = Vec::new();
        let mut turns: Vec<(Role, String)> = Vec::new();
        for m in &request.messages {
            let text = text_of(&m.content)?;
            match m.role {
                Role::System => preamble.push(text),
                Role::User | Role::Assistant => turns.push((m.role, text)),
                Role::Tool => return Err("the cohere-chat adapter does not support tools".into()),
            }
        }
        let Some((Role::User, message)) = turns.pop() else {
            return Err("the last message must be the user's".into());
        };
        let history: Vec<Value> = turns
            .into_iter()
            .map(|(role, text)| {
                let role = if role == Role::User {
                    "USER"
                } else {
                    "CHATBOT"
                };
                json!({"role": role, "message": text})
            })
            .collect();
        let mut body = Map::new();
        body.insert("model".into(), model_id.into());
        body.insert("message".into(), message.into());
        if !history.is_empty() {
            body.insert("chat_history".into(), history.into());
        }
        if !preamble.is_empty() {
            body.insert("preamble".into(), preamble.join("\n\n").into());
        }
        if let Some(n) = request.max_tokens {
            body.insert("max_tokens".into(), n.into());
        }
        if let Some(t) = request.temperature {
            body.insert("temperature".into(), t.into());
        }
        if let Some(p) = request.top_p {
            body.insert("p".into(), p.into());
        }
        if !request.stop.is_empty() {
            body.insert("stop_sequences".into(), request.stop.clone().into());
        }
        body.insert("stream".into(), request.stream.into());
        let accept = if request.stream {
            "application/stream+json"
        } else {
            "application/json"
        };
        Ok(HttpRequest {
            method: "POST".into(),
            path: PATH
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_else(|| DEFAULT_PATH.into()),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("accept".into(), accept.into()),
            ],
            body: Value::Object(body).to_string().into_bytes(),
        })
    }

    fn decode_response(response: HttpResponse) -> Result<Response, UpstreamError> {
        if !(200..300).contains(&response.status) {
            return Err(upstream_error(response.status, &response.body));
        }
        let v: Value = serde_json::from_slice(&response.body)
            .map_err(|e| bad_answer(format!("not JSON: {e}")))?;
        let text = v["text"]
            .as_str()
            .ok_or_else(|| bad_answer("no `text`".into()))?;
        let id = v["response_id"]
            .as_str()
            .or_else(|| v["generation_id"].as_str())
            .unwrap_or_default();
        Ok(Response {
            id: id.into(),
            // The API does not echo the model; the host fills in the endpoint's.
            model: String::new(),
            content: vec![Part::Text(TextPart {
                text: text.into(),
                extra: None,
            })],
            finish: finish_reason(v["finish_reason"].as_str()),
            usage: usage(&v["meta"]),
        })
    }

    fn decode_stream(
        state: Vec<u8>,
        chunk: Vec<u8>,
        end: bool,
    ) -> Result<StreamStep, UpstreamError> {
        let mut buf = state;
        buf.extend_from_slice(&chunk);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
            decode_line(&buf[start..start + nl], &mut events)?;
            start += nl + 1;
        }
        let rest = buf.split_off(start);
        if end {
            decode_line(&rest, &mut events)?;
            return Ok(StreamStep {
                state: Vec::new(),
                events,
            });
        }
        Ok(StreamStep {
            state: rest,
            events,
        })
    }
}

bitrouter_plugin::export_adapter!(CohereChat);

/// The text of a message; images and other blocks have no place in this API.
fn text_of(parts: &[Part]) -> Result<String, String> {
    let mut out = String::new();
    for p in parts {
        match p {
            Part::Text(t) => out.push_str(&t.text),
            // Earlier reasoning is the model's own business; the API cannot take it back.
            Part::Reasoning(_) => {}
            Part::ToolCall(_) | Part::ToolResult(_) => {
                return Err("the cohere-chat adapter does not support tools".into());
            }
            Part::Image(_) | Part::Opaque(_) => {
                return Err("the cohere-chat adapter takes text only".into());
            }
        }
    }
    Ok(out)
}

fn decode_line(line: &[u8], events: &mut Vec<StreamEvent>) -> Result<(), UpstreamError> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return Ok(());
    }
    let v: Value = serde_json::from_slice(line)
        .map_err(|e| bad_answer(format!("stream line is not JSON: {e}")))?;
    match v["event_type"].as_str() {
        Some("stream-start") => events.push(StreamEvent::Start(StreamStart {
            id: v["generation_id"].as_str().unwrap_or_default().into(),
            model: String::new(),
        })),
        Some("text-generation") => {
            let text = v["text"].as_str().unwrap_or_default();
            if !text.is_empty() {
                events.push(StreamEvent::TextDelta(text.into()));
            }
        }
        Some("stream-end") => {
            let reason = v["finish_reason"].as_str();
            if reason == Some("ERROR") {
                let message = v["response"]["text"]
                    .as_str()
                    .unwrap_or("the upstream failed");
                events.push(StreamEvent::Error(message.into()));
                return Ok(());
            }
            events.push(StreamEvent::Usage(usage(&v["response"]["meta"])));
            events.push(StreamEvent::Finish(finish_reason(reason)));
        }
        // Search results, citations and future events: nothing the canonical stream carries.
        _ => {}
    }
    Ok(())
}

fn finish_reason(r: Option<&str>) -> FinishReason {
    match r {
        Some("COMPLETE") | None => FinishReason::Stop,
        Some("MAX_TOKENS") => FinishReason::Length,
        Some("STOP_SEQUENCE") => FinishReason::StopSequence,
        Some("ERROR_TOXIC") => FinishReason::ContentFilter,
        Some(other) => FinishReason::Other(other.to_ascii_lowercase()),
    }
}

fn usage(meta: &Value) -> Usage {
    let n = |k: &str| meta["billed_units"][k].as_u64().unwrap_or(0);
    Usage {
        input_tokens: n("input_tokens"),
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        output_tokens: n("output_tokens"),
        reasoning_tokens: 0,
    }
}

/// An error answer: Cohere puts the reason in `message`. 429 and 5xx may be retried elsewhere.
fn upstream_error(status: u16, body: &[u8]) -> UpstreamError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned());
    UpstreamError {
        status,
        message,
        retryable: status == 429 || status >= 500,
    }
}

/// A 2xx answer that does not parse: the endpoint is misbehaving, so another may be tried.
fn bad_answer(message: String) -> UpstreamError {
    UpstreamError {
        status: 502,
        message: format!("undecodable cohere-chat answer: {message}"),
        retryable: true,
    }
}
