//! The upstream side: canonical requests out, the upstream's answers and streams back in.

use std::borrow::Cow;
use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::*;
use crate::api::{DecodeError, parse_body};
use crate::canonical::{
    FinishReason, Message, Part, Request, Response, Role, StreamEvent, ToolCall, ToolChoice, Usage,
};
use crate::error::ErrorKind;

/// Where a chat upstream is called: `{api_base}/chat/completions`.
pub fn upstream_url(base: &str) -> String {
    format!("{base}/chat/completions")
}

// ---------------------------------------------------------------- canonical → upstream

/// Encodes a canonical request as an OpenAI Chat Completions body for `model`.
pub fn encode_request(r: &Request, model: &str) -> Value {
    let mut body = Map::new();
    if let Some(extra) = r.extra.for_dialect(DIALECT) {
        body.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    body.insert("model".into(), Value::String(model.to_owned()));
    let mut messages = Vec::with_capacity(r.messages.len());
    for m in &r.messages {
        encode_message(m, &mut messages);
    }
    body.insert("messages".into(), Value::Array(messages));
    if let Some(n) = r.max_tokens {
        // An OpenAI caller's own choice of field survives in `extra`; others get the
        // field every OpenAI-compatible server understands.
        let field = if body.contains_key("max_completion_tokens") {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        body.insert(field.into(), n.into());
    }
    crate::api::insert_sampling(&mut body, r, ["temperature", "top_p"], Some("stop"));
    if !r.tools.is_empty() {
        let tools = r
            .tools
            .iter()
            .map(|t| {
                let f = crate::api::tool_declaration(t, DIALECT, "parameters", true);
                json!({"type": "function", "function": f})
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(c) = &r.tool_choice {
        let v = match c {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Tool(n) => json!({"type": "function", "function": {"name": n}}),
        };
        body.insert("tool_choice".into(), v);
    }
    if let Some(p) = r.parallel_tool_calls {
        body.insert("parallel_tool_calls".into(), p.into());
    }
    if r.stream {
        body.insert("stream".into(), true.into());
        // Always ask for usage so every stream can be accounted; the caller only sees the
        // usage chunk if it asked for it.
        let opts = body.entry("stream_options").or_insert_with(|| json!({}));
        if let Value::Object(o) = opts {
            o.insert("include_usage".into(), true.into());
        }
    }
    Value::Object(body)
}

pub(super) fn encode_message(m: &Message, out: &mut Vec<Value>) {
    let mut obj = Map::new();
    if let Some(extra) = m.extra.for_dialect(DIALECT) {
        obj.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    match m.role {
        Role::System => {
            obj.entry("role").or_insert_with(|| "system".into());
            obj.insert("content".into(), content_json(&m.content));
            out.push(Value::Object(obj));
        }
        Role::Assistant => {
            obj.insert("role".into(), "assistant".into());
            let text: String = m
                .content
                .iter()
                .filter_map(|p| match p {
                    Part::Text { text, .. } => Some(text.as_str()),
                    _ => None,
                })
                .collect();
            let calls: Vec<Value> = m
                .content
                .iter()
                .filter_map(|p| match p {
                    Part::ToolCall(c) => Some(tool_call_json(c)),
                    _ => None,
                })
                .collect();
            let reasoning: String = m
                .content
                .iter()
                .filter_map(|p| match p {
                    Part::Reasoning { text, .. } => Some(text.as_str()),
                    _ => None,
                })
                .collect();
            obj.insert(
                "content".into(),
                if text.is_empty() && !calls.is_empty() {
                    Value::Null
                } else {
                    Value::String(text)
                },
            );
            if !calls.is_empty() {
                obj.insert("tool_calls".into(), Value::Array(calls));
            }
            if !reasoning.is_empty() {
                obj.insert("reasoning_content".into(), Value::String(reasoning));
            }
            out.push(Value::Object(obj));
        }
        Role::User | Role::Tool => {
            // Anthropic-style user messages mix tool results and text; OpenAI wants each
            // result as its own `tool` message, before the user's text.
            let mut rest = Vec::new();
            for p in &m.content {
                match p {
                    Part::ToolResult {
                        call_id,
                        content,
                        is_error,
                        ..
                    } => {
                        let mut text = content_text(content);
                        if *is_error && !text.starts_with("Error") {
                            text.insert_str(0, "Error: ");
                        }
                        out.push(json!({"role": "tool", "tool_call_id": call_id, "content": text}));
                    }
                    other => rest.push(other.clone()),
                }
            }
            if !rest.is_empty() || m.role == Role::User && out.is_empty() {
                obj.insert("role".into(), "user".into());
                obj.insert("content".into(), content_json(&rest));
                out.push(Value::Object(obj));
            }
        }
    }
}

pub(super) fn content_text(parts: &[Part]) -> String {
    parts
        .iter()
        .filter_map(|p| match p {
            Part::Text { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A plain string when the content is one text part without extras; parts otherwise.
pub(super) fn content_json(parts: &[Part]) -> Value {
    if let [Part::Text { text, extra }] = parts
        && extra.for_dialect(DIALECT).is_none()
    {
        return Value::String(text.clone());
    }
    let arr = parts
        .iter()
        .filter_map(|p| match p {
            Part::Text { text, extra } => {
                let mut o = Map::new();
                if let Some(e) = extra.for_dialect(DIALECT) {
                    o.extend(e.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                o.insert("type".into(), "text".into());
                o.insert("text".into(), text.clone().into());
                Some(Value::Object(o))
            }
            Part::Image { source, extra } => {
                let mut image = match extra.for_dialect(DIALECT).and_then(|e| e.get("image_url")) {
                    Some(Value::Object(o)) => o.clone(),
                    _ => Map::new(),
                };
                image.insert("url".into(), source.to_url().into());
                Some(json!({"type": "image_url", "image_url": image}))
            }
            Part::Opaque {
                dialect: DIALECT,
                value,
            } => Some(value.clone()),
            _ => None,
        })
        .collect();
    Value::Array(arr)
}

// ---------------------------------------------------------------- upstream → canonical

/// `id` and `model` borrow from the body where they can (no escapes): a stream repeats them
/// in every chunk and only the first one's are kept (two allocations per chunk saved,
/// counted with `examples/alloc_count.rs`).
#[derive(Deserialize)]
pub(super) struct WireResponse<'a> {
    #[serde(default, borrow)]
    id: Cow<'a, str>,
    #[serde(default, borrow)]
    model: Cow<'a, str>,
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    /// Some servers report a failure mid-stream as `{"error": {...}}`.
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
pub(super) struct WireChoice {
    #[serde(default)]
    message: Option<WireAnswer>,
    #[serde(default)]
    delta: Option<WireAnswer>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct WireAnswer {
    #[serde(default)]
    content: Option<String>,
    #[serde(default, alias = "reasoning")]
    reasoning_content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCallDelta>>,
}

#[derive(Deserialize)]
pub(super) struct WireToolCallDelta {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<WireFunctionDelta>,
}

#[derive(Deserialize)]
pub(super) struct WireFunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<WirePromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<WireCompletionDetails>,
}

#[derive(Deserialize, Default)]
pub(super) struct WirePromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
pub(super) struct WireCompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Usage {
        Usage {
            input_tokens: u.prompt_tokens,
            cache_read_tokens: u
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            cache_write_tokens: 0,
            output_tokens: u.completion_tokens,
            reasoning_tokens: u
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
        }
    }
}

pub(super) fn decode_finish(s: &str) -> FinishReason {
    match s {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

/// Decodes an OpenAI-compatible upstream's `chat.completion` body.
pub fn decode_response(body: &[u8]) -> Result<Response, DecodeError> {
    let wire: WireResponse = parse_body(body)?;
    let choice = wire
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| DecodeError::new("choices", "the upstream answer has no choices"))?;
    let msg = choice.message.unwrap_or_default();
    let mut content = Vec::new();
    if let Some(r) = msg.reasoning_content.filter(|r| !r.is_empty()) {
        content.push(Part::Reasoning {
            text: r,
            signature: None,
        });
    }
    if let Some(t) = msg.content.filter(|t| !t.is_empty()) {
        content.push(Part::text(t));
    }
    for c in msg.tool_calls.unwrap_or_default() {
        let f = c.function.unwrap_or(WireFunctionDelta {
            name: None,
            arguments: None,
        });
        content.push(Part::ToolCall(ToolCall {
            id: c.id.unwrap_or_default(),
            name: f.name.unwrap_or_default(),
            arguments: f.arguments.unwrap_or_default(),
        }));
    }
    Ok(Response {
        id: wire.id.into_owned(),
        model: wire.model.into_owned(),
        content,
        finish: choice
            .finish_reason
            .as_deref()
            .map(decode_finish)
            .unwrap_or_default(),
        usage: wire.usage.map(Usage::from).unwrap_or_default(),
    })
}

/// Turns an OpenAI-compatible upstream's SSE `data:` payloads into canonical events.
#[derive(Default)]
pub struct StreamDecoder {
    started: bool,
    /// Upstream tool-call indices that have started and not yet ended.
    open_tools: BTreeSet<u32>,
    finished: bool,
}

impl StreamDecoder {
    /// A decoder for one Chat Completions stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one SSE data payload; `[DONE]` yields nothing.
    pub fn decode(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), DecodeError> {
        if data == "[DONE]" {
            return Ok(());
        }
        let chunk: WireResponse =
            serde_json::from_str(data).map_err(|e| DecodeError::new("", e.to_string()))?;
        if let Some(err) = &chunk.error {
            out.push(StreamEvent::Error(crate::api::error_message(err)));
            return Ok(());
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: chunk.id.into_owned(),
                model: chunk.model.into_owned(),
            });
        }
        for choice in chunk.choices {
            let delta = choice.delta.unwrap_or_default();
            if let Some(r) = delta.reasoning_content.filter(|r| !r.is_empty()) {
                out.push(StreamEvent::ReasoningDelta(r));
            }
            if let Some(t) = delta.content.filter(|t| !t.is_empty()) {
                out.push(StreamEvent::TextDelta(t));
            }
            for c in delta.tool_calls.unwrap_or_default() {
                let index = c.index.unwrap_or(0);
                let f = c.function.unwrap_or(WireFunctionDelta {
                    name: None,
                    arguments: None,
                });
                if self.open_tools.insert(index) {
                    out.push(StreamEvent::ToolCallStart {
                        index,
                        id: c.id.unwrap_or_default(),
                        name: f.name.unwrap_or_default(),
                    });
                }
                if let Some(a) = f.arguments.filter(|a| !a.is_empty()) {
                    out.push(StreamEvent::ToolCallDelta {
                        index,
                        arguments: a,
                    });
                }
            }
            if let Some(f) = choice.finish_reason {
                self.close_tools(out);
                self.finished = true;
                out.push(StreamEvent::Finish(decode_finish(&f)));
            }
        }
        if let Some(u) = chunk.usage {
            out.push(StreamEvent::Usage(u.into()));
        }
        Ok(())
    }

    fn close_tools(&mut self, out: &mut Vec<StreamEvent>) {
        for index in std::mem::take(&mut self.open_tools) {
            out.push(StreamEvent::ToolCallEnd { index });
        }
    }

    /// Whether the upstream sent its finish reason (a stream that ends without one was cut).
    pub fn finished(&self) -> bool {
        self.finished
    }
}

/// OpenAI's error object (both OpenAI APIs use it): `{"error": {message, type, param, code}}`.
pub fn error_body(status: http::StatusCode, kind: ErrorKind, message: &str) -> Value {
    json!({
        "error": {
            "message": message,
            "type": error_type(status),
            "param": null,
            "code": error_code(kind),
        }
    })
}

pub(super) fn error_type(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "insufficient_quota",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

pub(crate) fn error_code(kind: ErrorKind) -> Option<&'static str> {
    match kind {
        ErrorKind::NotFound => Some("model_not_found"),
        ErrorKind::PayloadTooLarge => Some("request_too_large"),
        ErrorKind::Timeout => Some("upstream_timeout"),
        ErrorKind::Transport => Some("upstream_unreachable"),
        ErrorKind::GuardrailBlocked => Some("guardrail_blocked"),
        ErrorKind::Plugin => Some("plugin_failed"),
        ErrorKind::BudgetExceeded => Some("budget_exceeded"),
        ErrorKind::RateLimitExceeded => Some("rate_limit_exceeded"),
        ErrorKind::Unauthorized => Some("invalid_api_key"),
        ErrorKind::Forbidden => Some("permission_denied"),
        _ => None,
    }
}
