//! The caller side: a caller's request into canonical, answers and streams back out.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::*;
use crate::api::{DecodeError, parse_body};
use crate::canonical::{
    Extra, FinishReason, ImageSource, Message, Part, Request, Response, Role, StreamEvent, Tool,
    ToolCall, ToolChoice, Usage,
};

// ---------------------------------------------------------------- caller → canonical

#[derive(Deserialize)]
pub(super) struct WireRequest {
    model: String,
    messages: Vec<WireMessage>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<WireStreamOptions>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    stop: Option<WireStop>,
    #[serde(default)]
    tools: Option<Vec<WireTool>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Deserialize)]
pub(super) struct WireStreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum WireStop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
pub(super) struct WireMessage {
    role: String,
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
    #[serde(default)]
    tool_call_id: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Deserialize)]
pub(super) struct WireToolCall {
    id: String,
    function: WireFunctionCall,
}

#[derive(Deserialize)]
pub(super) struct WireFunctionCall {
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Deserialize)]
pub(super) struct WireTool {
    function: WireFunction,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Deserialize)]
pub(super) struct WireFunction {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// One model in OpenAI's `GET /v1/models` shape.
pub fn model_object(id: &str, owner: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": owner})
}

/// OpenAI's model list.
pub fn model_list(models: &[(String, String)]) -> Value {
    let data: Vec<Value> = models
        .iter()
        .map(|(id, owner)| model_object(id, owner))
        .collect();
    json!({"object": "list", "data": data})
}

/// Decodes a caller's `/v1/chat/completions` body.
pub fn decode_request(body: &[u8]) -> Result<Request, DecodeError> {
    let mut wire: WireRequest = parse_body(body)?;
    let mut messages = Vec::with_capacity(wire.messages.len());
    for (i, m) in wire.messages.into_iter().enumerate() {
        messages.push(decode_message(m).map_err(|e| e.at(format!("messages[{i}]")))?);
    }
    if messages.is_empty() {
        return Err(DecodeError::new(
            "messages",
            "must contain at least one message",
        ));
    }
    let tools = wire
        .tools
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let mut extra = t.function.rest;
            extra.extend(t.rest.into_iter().filter(|(k, _)| k != "type"));
            Tool {
                name: t.function.name,
                description: t.function.description,
                parameters: t
                    .function
                    .parameters
                    .unwrap_or_else(|| json!({"type": "object"})),
                extra: Extra::new(DIALECT, extra),
            }
        })
        .collect();
    let tool_choice = wire
        .tool_choice
        .map(|v| decode_tool_choice(&v).ok_or_else(|| DecodeError::new("tool_choice", "expected \"auto\", \"none\", \"required\" or {\"type\":\"function\",\"function\":{\"name\":...}}")))
        .transpose()?;
    let include_usage = match wire.stream_options {
        Some(o) => {
            if !o.rest.is_empty() {
                wire.rest
                    .insert("stream_options".into(), Value::Object(o.rest));
            }
            o.include_usage.unwrap_or(false)
        }
        None => false,
    };
    let stop = match wire.stop {
        None => vec![],
        Some(WireStop::One(s)) => vec![s],
        Some(WireStop::Many(v)) => v,
    };
    // The caller's choice of field goes back to an OpenAI upstream (reasoning models
    // refuse `max_tokens`); `encode_request` fills in the canonical value.
    if wire.max_completion_tokens.is_some() {
        wire.rest
            .insert("max_completion_tokens".into(), Value::Null);
    }
    Ok(Request {
        model: wire.model,
        messages,
        max_tokens: wire.max_completion_tokens.or(wire.max_tokens),
        temperature: wire.temperature,
        top_p: wire.top_p,
        stop,
        stream: wire.stream.unwrap_or(false),
        include_usage,
        tools,
        tool_choice,
        parallel_tool_calls: wire.parallel_tool_calls,
        extra: Extra::new(DIALECT, wire.rest),
    })
}

pub(super) fn decode_message(m: WireMessage) -> Result<Message, DecodeError> {
    let role = match m.role.as_str() {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" | "function" => Role::Tool,
        other => {
            return Err(DecodeError::new(
                "role",
                format!(
                    "unknown role {other:?}; expected system, developer, user, assistant or tool"
                ),
            ));
        }
    };
    let mut rest = m.rest;
    if m.role == "developer" {
        // Kept so an OpenAI upstream sees the role the caller chose.
        rest.insert("role".into(), Value::String(m.role));
    }
    let mut content = Vec::new();
    if let Some(r) = m.reasoning_content.filter(|r| !r.is_empty()) {
        content.push(Part::Reasoning {
            text: r,
            signature: None,
        });
    }
    let parts = decode_content(m.content).map_err(|e| e.at("content"))?;
    if role == Role::Tool {
        let call_id = m.tool_call_id.ok_or_else(|| {
            DecodeError::new(
                "tool_call_id",
                "is required on a message with role \"tool\"",
            )
        })?;
        content.push(Part::ToolResult {
            call_id,
            content: parts,
            is_error: false,
            extra: Extra::default(),
        });
    } else {
        content.extend(parts);
    }
    for (i, c) in m.tool_calls.unwrap_or_default().into_iter().enumerate() {
        if role != Role::Assistant {
            return Err(DecodeError::new(
                format!("tool_calls[{i}]"),
                "only assistant messages carry tool calls",
            ));
        }
        content.push(Part::ToolCall(ToolCall {
            id: c.id,
            name: c.function.name,
            arguments: c.function.arguments,
        }));
    }
    Ok(Message {
        role,
        content,
        extra: Extra::new(DIALECT, rest),
    })
}

pub(super) fn decode_content(content: Option<Value>) -> Result<Vec<Part>, DecodeError> {
    match content {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::String(s)) => Ok(vec![Part::text(s)]),
        Some(Value::Array(parts)) => crate::api::decode_each(parts, decode_part),
        Some(other) => Err(DecodeError::new(
            "",
            format!(
                "expected a string or an array of content parts, found {}",
                crate::api::json_type(&other)
            ),
        )),
    }
}

pub(super) fn decode_part(part: Value) -> Result<Part, DecodeError> {
    let Value::Object(mut obj) = part else {
        return Err(DecodeError::new("", "expected a content part object"));
    };
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    match kind.as_str() {
        "text" => {
            let Some(Value::String(text)) = obj.remove("text") else {
                return Err(DecodeError::new("text", "expected a string"));
            };
            obj.remove("type");
            Ok(Part::Text {
                text,
                extra: Extra::new(DIALECT, obj),
            })
        }
        "image_url" => {
            let url = match obj.remove("image_url") {
                Some(Value::String(u)) => u,
                Some(Value::Object(mut o)) => match o.remove("url") {
                    Some(Value::String(u)) => {
                        if !o.is_empty() {
                            obj.insert("image_url".into(), Value::Object(o));
                        }
                        u
                    }
                    _ => return Err(DecodeError::new("image_url.url", "expected a string")),
                },
                _ => {
                    return Err(DecodeError::new(
                        "image_url",
                        "expected an object with a url",
                    ));
                }
            };
            obj.remove("type");
            Ok(Part::Image {
                source: ImageSource::from_url(&url),
                extra: Extra::new(DIALECT, obj),
            })
        }
        "" => Err(DecodeError::new("type", "is required on a content part")),
        _ => {
            obj.insert("type".into(), Value::String(kind));
            Ok(Part::Opaque {
                dialect: DIALECT,
                value: Value::Object(obj),
            })
        }
    }
}

pub(super) fn decode_tool_choice(v: &Value) -> Option<ToolChoice> {
    match v {
        Value::String(s) => match s.as_str() {
            "auto" => Some(ToolChoice::Auto),
            "none" => Some(ToolChoice::None),
            "required" => Some(ToolChoice::Required),
            _ => None,
        },
        Value::Object(o) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map(|n| ToolChoice::Tool(n.to_owned())),
        _ => None,
    }
}

// ---------------------------------------------------------------- canonical → caller

pub(super) fn finish_reason(f: &FinishReason) -> &str {
    match f {
        FinishReason::Stop | FinishReason::StopSequence => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::Other(s) => s,
    }
}

pub(super) fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": { "cached_tokens": u.cache_read_tokens },
        "completion_tokens_details": { "reasoning_tokens": u.reasoning_tokens },
    })
}

pub(super) fn tool_call_json(c: &ToolCall) -> Value {
    json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}})
}

/// Encodes a complete answer as a `chat.completion` object.
pub fn encode_response(r: &Response) -> Bytes {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for p in &r.content {
        match p {
            Part::Text { text: t, .. } => text.push_str(t),
            Part::Reasoning { text: t, .. } => reasoning.push_str(t),
            Part::ToolCall(c) => calls.push(tool_call_json(c)),
            _ => {}
        }
    }
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) },
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = Value::String(reasoning);
    }
    let body = json!({
        "id": r.id,
        "object": "chat.completion",
        "created": crate::api::unix_now(),
        "model": r.model,
        "choices": [{ "index": 0, "message": message, "finish_reason": finish_reason(&r.finish), "logprobs": null }],
        "usage": usage_json(&r.usage),
    });
    Bytes::from(body.to_string())
}

/// The delta of a text or reasoning chunk, the two that make up nearly every stream.
#[derive(Serialize)]
pub(super) struct TextDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
}

/// Re-encodes canonical stream events as `chat.completion.chunk` SSE events.
pub struct StreamEncoder {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    usage: Option<Usage>,
    started: bool,
}

impl StreamEncoder {
    /// An encoder for one stream to a Chat Completions caller; `include_usage` adds the final
    /// usage chunk (`stream_options.include_usage`).
    pub fn new(include_usage: bool) -> Self {
        StreamEncoder {
            id: String::new(),
            model: String::new(),
            created: crate::api::unix_now(),
            include_usage,
            usage: None,
            started: false,
        }
    }

    fn chunk<D: Serialize>(&self, out: &mut Vec<u8>, delta: D, finish: Option<&str>) {
        #[derive(Serialize)]
        struct Chunk<'a, D> {
            id: &'a str,
            object: &'static str,
            created: u64,
            model: &'a str,
            choices: [Choice<'a, D>; 1],
        }
        #[derive(Serialize)]
        struct Choice<'a, D> {
            index: u32,
            delta: D,
            finish_reason: Option<&'a str>,
            logprobs: (),
        }
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: [Choice {
                index: 0,
                delta,
                finish_reason: finish,
                logprobs: (),
            }],
        };
        crate::api::sse_data(out, &chunk);
    }

    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            if self.id.is_empty() {
                self.id = crate::api::new_id("chatcmpl-");
            }
            self.chunk(out, json!({"role": "assistant", "content": ""}), None);
        }
    }

    /// Appends the SSE chunks for `event` to `out`.
    pub fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        match event {
            StreamEvent::Start { id, model } => {
                if !self.started {
                    self.id = if id.is_empty() {
                        crate::api::new_id("chatcmpl-")
                    } else {
                        id.clone()
                    };
                    self.model = model.clone();
                }
                self.ensure_started(out);
            }
            StreamEvent::TextDelta(t) => {
                self.ensure_started(out);
                self.chunk(
                    out,
                    TextDelta {
                        content: Some(t),
                        reasoning_content: None,
                    },
                    None,
                );
            }
            StreamEvent::ReasoningDelta(t) => {
                self.ensure_started(out);
                self.chunk(
                    out,
                    TextDelta {
                        content: None,
                        reasoning_content: Some(t),
                    },
                    None,
                );
            }
            StreamEvent::ReasoningSignature(_) | StreamEvent::ToolCallEnd { .. } => {}
            StreamEvent::ToolCallStart { index, id, name } => {
                self.ensure_started(out);
                self.chunk(
                    out,
                    json!({"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
                    None,
                );
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                self.ensure_started(out);
                self.chunk(
                    out,
                    json!({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}),
                    None,
                );
            }
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Finish(f) => {
                self.ensure_started(out);
                self.chunk(out, json!({}), Some(finish_reason(f)));
            }
            StreamEvent::Error(message) => {
                crate::api::sse_data(
                    out,
                    &json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}}),
                );
            }
        }
    }

    /// Closes a stream that ended normally: the usage chunk (if the caller asked) and `[DONE]`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.ensure_started(out);
        if self.include_usage {
            let chunk = json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": usage_json(&self.usage.unwrap_or_default()),
            });
            crate::api::sse_data(out, &chunk);
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }
}
