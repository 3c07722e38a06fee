//! OpenAI Chat Completions: wire types and both directions of translation — a caller's
//! request into canonical and canonical answers back out (`decode_request`, `encode_response`,
//! `StreamEncoder`), and canonical requests out to an OpenAI-compatible upstream and its
//! answers back in (`encode_request`, `decode_response`, `StreamDecoder`).

use std::collections::BTreeSet;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{DecodeError, parse_body};
use crate::canonical::{
    Dialect, Extra, FinishReason, ImageSource, Message, Part, Request, Response, Role, StreamEvent,
    Tool, ToolCall, ToolChoice, Usage,
};
use crate::error::ErrorKind;

const DIALECT: Dialect = Dialect::OpenAiChat;

// ---------------------------------------------------------------- caller → canonical

#[derive(Deserialize)]
struct WireRequest {
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
struct WireStreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WireStop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct WireMessage {
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
struct WireToolCall {
    id: String,
    function: WireFunctionCall,
}

#[derive(Deserialize)]
struct WireFunctionCall {
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Deserialize)]
struct WireTool {
    function: WireFunction,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// Where a chat upstream is called: `{api_base}/chat/completions`.
pub fn upstream_url(base: &str) -> String {
    format!("{base}/chat/completions")
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

fn decode_message(m: WireMessage) -> Result<Message, DecodeError> {
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

fn decode_content(content: Option<Value>) -> Result<Vec<Part>, DecodeError> {
    match content {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::String(s)) => Ok(vec![Part::text(s)]),
        Some(Value::Array(parts)) => parts
            .into_iter()
            .enumerate()
            .map(|(i, p)| decode_part(p).map_err(|e| e.at(format!("[{i}]"))))
            .collect(),
        Some(other) => Err(DecodeError::new(
            "",
            format!(
                "expected a string or an array of content parts, found {}",
                super::json_type(&other)
            ),
        )),
    }
}

fn decode_part(part: Value) -> Result<Part, DecodeError> {
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

fn decode_tool_choice(v: &Value) -> Option<ToolChoice> {
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

fn finish_reason(f: &FinishReason) -> &str {
    match f {
        FinishReason::Stop | FinishReason::StopSequence => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::Other(s) => s,
    }
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": { "cached_tokens": u.cache_read_tokens },
        "completion_tokens_details": { "reasoning_tokens": u.reasoning_tokens },
    })
}

fn tool_call_json(c: &ToolCall) -> Value {
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
        "created": super::unix_now(),
        "model": r.model,
        "choices": [{ "index": 0, "message": message, "finish_reason": finish_reason(&r.finish), "logprobs": null }],
        "usage": usage_json(&r.usage),
    });
    Bytes::from(body.to_string())
}

/// The delta of a text or reasoning chunk, the two that make up nearly every stream.
#[derive(Serialize)]
struct TextDelta<'a> {
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
    pub fn new(include_usage: bool) -> Self {
        StreamEncoder {
            id: String::new(),
            model: String::new(),
            created: super::unix_now(),
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
        super::sse_data(out, &chunk);
    }

    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            if self.id.is_empty() {
                self.id = super::new_id("chatcmpl-");
            }
            self.chunk(out, json!({"role": "assistant", "content": ""}), None);
        }
    }

    pub fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        match event {
            StreamEvent::Start { id, model } => {
                if !self.started {
                    self.id = if id.is_empty() {
                        super::new_id("chatcmpl-")
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
                super::sse_data(
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
            super::sse_data(out, &chunk);
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }
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
    if let Some(t) = r.temperature {
        body.insert("temperature".into(), t.into());
    }
    if let Some(t) = r.top_p {
        body.insert("top_p".into(), t.into());
    }
    if !r.stop.is_empty() {
        body.insert("stop".into(), r.stop.clone().into());
    }
    if !r.tools.is_empty() {
        let tools = r
            .tools
            .iter()
            .map(|t| {
                let f = super::tool_declaration(t, DIALECT, "parameters", true);
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

fn encode_message(m: &Message, out: &mut Vec<Value>) {
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

fn content_text(parts: &[Part]) -> String {
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
fn content_json(parts: &[Part]) -> Value {
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

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    /// Some servers report a failure mid-stream as `{"error": {...}}`.
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct WireChoice {
    #[serde(default)]
    message: Option<WireAnswer>,
    #[serde(default)]
    delta: Option<WireAnswer>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireAnswer {
    #[serde(default)]
    content: Option<String>,
    #[serde(default, alias = "reasoning")]
    reasoning_content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCallDelta>>,
}

#[derive(Deserialize)]
struct WireToolCallDelta {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<WireFunctionDelta>,
}

#[derive(Deserialize)]
struct WireFunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireUsage {
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
struct WirePromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct WireCompletionDetails {
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

fn decode_finish(s: &str) -> FinishReason {
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
        id: wire.id,
        model: wire.model,
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
            out.push(StreamEvent::Error(super::error_message(err)));
            return Ok(());
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: chunk.id.clone(),
                model: chunk.model.clone(),
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

fn error_type(status: http::StatusCode) -> &'static str {
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

fn error_code(kind: ErrorKind) -> Option<&'static str> {
    match kind {
        ErrorKind::NotFound => Some("model_not_found"),
        ErrorKind::PayloadTooLarge => Some("request_too_large"),
        ErrorKind::Timeout => Some("upstream_timeout"),
        ErrorKind::Transport => Some("upstream_unreachable"),
        ErrorKind::GuardrailBlocked => Some("guardrail_blocked"),
        ErrorKind::Plugin => Some("plugin_failed"),
        ErrorKind::BudgetExceeded => Some("budget_exceeded"),
        ErrorKind::Unauthorized => Some("invalid_api_key"),
        ErrorKind::Forbidden => Some("permission_denied"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_tools_images_and_tool_results() {
        let body = br#"{"model":"m","messages":[
            {"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"what is this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA","detail":"low"}}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"look","arguments":"{\"x\":1}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"a cat"}],
            "tools":[{"type":"function","function":{"name":"look","parameters":{"type":"object"}}}],
            "tool_choice":"required","stream":true,"stream_options":{"include_usage":true},"seed":7}"#;
        let r = decode_request(body).unwrap();
        assert_eq!(r.messages.len(), 4);
        assert!(r.stream && r.include_usage);
        assert_eq!(r.tool_choice, Some(ToolChoice::Required));
        assert!(
            matches!(&r.messages[1].content[1], Part::Image { source: ImageSource::Base64 { media_type, .. }, .. } if media_type == "image/png")
        );
        assert!(
            matches!(&r.messages[2].content[0], Part::ToolCall(c) if c.arguments == "{\"x\":1}")
        );
        assert!(
            matches!(&r.messages[3].content[0], Part::ToolResult { call_id, .. } if call_id == "c1")
        );
        // Same-dialect replay keeps unknown fields and the image detail.
        let out = encode_request(&r, "up");
        assert_eq!(out["seed"], 7);
        assert_eq!(out["model"], "up");
        assert_eq!(
            out["messages"][1]["content"][1]["image_url"]["detail"],
            "low"
        );
        assert_eq!(out["messages"][3]["role"], "tool");
        assert_eq!(out["stream_options"]["include_usage"], true);
    }

    #[test]
    fn bad_requests_say_where() {
        let e = decode_request(br#"{"messages":[]}"#).unwrap_err();
        assert!(e.to_string().contains("model"), "{e}");
        let e = decode_request(br#"{"model":"m","messages":[{"role":"user","content":5}]}"#)
            .unwrap_err();
        assert!(e.to_string().contains("messages[0].content"), "{e}");
        let e = decode_request(br#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#)
            .unwrap_err();
        assert!(e.to_string().contains("messages[0].role"), "{e}");
        let e = decode_request(br#"{"model":"m","messages":"hi"}"#).unwrap_err();
        assert!(e.to_string().contains("messages"), "{e}");
        let e = decode_request(b"{not json").unwrap_err();
        assert!(e.to_string().contains("JSON"), "{e}");
    }

    #[test]
    fn stream_decoder_tool_calls_and_usage() {
        let mut d = StreamDecoder::new();
        let mut ev = Vec::new();
        for data in [
            r#"{"id":"x","model":"m","choices":[{"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"id":"x","model":"m","choices":[{"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":""}}]}}]}"#,
            r#"{"id":"x","model":"m","choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}"#,
            r#"{"id":"x","model":"m","choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"id":"x","model":"m","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":3}}}"#,
            "[DONE]",
        ] {
            d.decode(data, &mut ev).unwrap();
        }
        assert_eq!(
            ev[0],
            StreamEvent::Start {
                id: "x".into(),
                model: "m".into()
            }
        );
        assert_eq!(
            ev[1],
            StreamEvent::ToolCallStart {
                index: 0,
                id: "c".into(),
                name: "f".into()
            }
        );
        assert_eq!(
            ev[2],
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{}".into()
            }
        );
        assert_eq!(ev[3], StreamEvent::ToolCallEnd { index: 0 });
        assert_eq!(ev[4], StreamEvent::Finish(FinishReason::ToolCalls));
        assert!(matches!(
            ev[5],
            StreamEvent::Usage(Usage {
                input_tokens: 5,
                cache_read_tokens: 3,
                ..
            })
        ));
        assert!(d.finished());
    }

    #[test]
    fn stream_encoder_hides_usage_unless_asked() {
        let events = [
            StreamEvent::Start {
                id: "i".into(),
                model: "m".into(),
            },
            StreamEvent::TextDelta("hi".into()),
            StreamEvent::Finish(FinishReason::Stop),
            StreamEvent::Usage(Usage {
                input_tokens: 1,
                output_tokens: 1,
                ..Default::default()
            }),
        ];
        for include in [false, true] {
            let mut e = StreamEncoder::new(include);
            let mut out = Vec::new();
            for ev in &events {
                e.encode(ev, &mut out);
            }
            e.finish(&mut out);
            let s = String::from_utf8(out).unwrap();
            assert_eq!(s.contains("\"usage\""), include, "{s}");
            assert!(s.ends_with("data: [DONE]\n\n"));
            assert!(s.contains(r#""finish_reason":"stop""#));
        }
    }
}
