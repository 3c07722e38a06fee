//! Anthropic Messages: wire types and both directions of translation — a caller's request
//! into canonical and answers back out (`decode_request`, `encode_response`, `StreamEncoder`),
//! and canonical requests out to an Anthropic upstream and its answers back in
//! (`encode_request`, `decode_response`, `StreamDecoder`).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{DecodeError, parse_body};
use crate::canonical::{
    Dialect, Extra, FinishReason, ImageSource, Message, Part, Request, Response, Role, StreamEvent,
    Tool, ToolCall, ToolChoice, Usage,
};

const DIALECT: Dialect = Dialect::Anthropic;

/// Anthropic requires `max_tokens`; callers of other dialects may leave it out.
const DEFAULT_MAX_TOKENS: u64 = 4096;

// ---------------------------------------------------------------- caller → canonical

#[derive(Deserialize)]
struct WireRequest {
    model: String,
    messages: Vec<WireMessage>,
    #[serde(default)]
    system: Option<Value>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    tools: Option<Vec<Map<String, Value>>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Deserialize)]
struct WireMessage {
    role: String,
    content: Value,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// Anthropic's API version this gateway speaks upstream, whatever the caller sent.
pub const API_VERSION: &str = "2023-06-01";

/// The header Anthropic takes the API key in.
pub const KEY_HEADER: &str = "x-api-key";

/// Where an Anthropic upstream is called: `{api_base}/v1/messages`, or `{api_base}/messages`
/// when the base already ends in `/v1`.
pub fn upstream_url(base: &str) -> String {
    if base.ends_with("/v1") {
        format!("{base}/messages")
    } else {
        format!("{base}/v1/messages")
    }
}

/// The header every Anthropic client sends; it marks a caller of this dialect on routes
/// shared with OpenAI's (`GET /v1/models`).
pub const VERSION_HEADER: &str = "anthropic-version";

/// One model in Anthropic's `GET /v1/models` shape.
pub fn model_object(id: &str) -> Value {
    json!({"type": "model", "id": id, "display_name": id, "created_at": "1970-01-01T00:00:00Z"})
}

/// Anthropic's paginated model list (one page holding every model).
pub fn model_list(models: &[(String, String)]) -> Value {
    let data: Vec<Value> = models.iter().map(|(id, _)| model_object(id)).collect();
    json!({"data": data, "has_more": false, "first_id": models.first().map(|m| &m.0), "last_id": models.last().map(|m| &m.0)})
}

/// Decodes a caller's `/v1/messages` body.
pub fn decode_request(body: &[u8]) -> Result<Request, DecodeError> {
    let wire: WireRequest = parse_body(body)?;
    let mut messages = Vec::with_capacity(wire.messages.len() + 1);
    if let Some(system) = wire.system {
        let parts = decode_content(system).map_err(|e| e.at("system"))?;
        if !parts.is_empty() {
            messages.push(Message {
                role: Role::System,
                content: parts,
                extra: Extra::default(),
            });
        }
    }
    if wire.messages.is_empty() {
        return Err(DecodeError::new(
            "messages",
            "must contain at least one message",
        ));
    }
    for (i, m) in wire.messages.into_iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = match m.role.as_str() {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(DecodeError::new(
                    format!("{at}.role"),
                    format!(
                        "unknown role {other:?}; expected user or assistant (system goes in the top-level `system` field)"
                    ),
                ));
            }
        };
        let content = decode_content(m.content).map_err(|e| e.at(format!("{at}.content")))?;
        messages.push(Message {
            role,
            content,
            extra: Extra::new(DIALECT, m.rest),
        });
    }
    let mut tools = Vec::new();
    for (i, mut t) in wire.tools.unwrap_or_default().into_iter().enumerate() {
        let Some(Value::String(name)) = t.remove("name") else {
            return Err(DecodeError::new(
                format!("tools[{i}].name"),
                "expected a string",
            ));
        };
        let description = match t.remove("description") {
            Some(Value::String(d)) => Some(d),
            _ => None,
        };
        // Server tools (web search, code execution) have a `type` and no schema; they only
        // make sense to Anthropic, which gets them back through `extra`.
        let parameters = t.remove("input_schema").unwrap_or(Value::Null);
        tools.push(Tool {
            name,
            description,
            parameters,
            extra: Extra::new(DIALECT, t),
        });
    }
    let mut rest = wire.rest;
    let mut parallel_tool_calls = None;
    let tool_choice = match wire.tool_choice {
        None => None,
        Some(v) => {
            let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
            if let Some(d) = v.get("disable_parallel_tool_use").and_then(Value::as_bool) {
                parallel_tool_calls = Some(!d);
            }
            Some(match kind {
                "auto" => ToolChoice::Auto,
                "any" => ToolChoice::Required,
                "none" => ToolChoice::None,
                "tool" => ToolChoice::Tool(
                    v.get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            DecodeError::new(
                                "tool_choice.name",
                                "is required when type is \"tool\"",
                            )
                        })?
                        .to_owned(),
                ),
                _ => {
                    return Err(DecodeError::new(
                        "tool_choice.type",
                        "expected auto, any, tool or none",
                    ));
                }
            })
        }
    };
    // `max_tokens` is required by Anthropic's API; keep that promise for Anthropic callers.
    let max_tokens = wire
        .max_tokens
        .ok_or_else(|| DecodeError::new("max_tokens", "is required"))?;
    rest.remove("stream_options");
    Ok(Request {
        model: wire.model,
        messages,
        max_tokens: Some(max_tokens),
        temperature: wire.temperature,
        top_p: wire.top_p,
        stop: wire.stop_sequences.unwrap_or_default(),
        stream: wire.stream.unwrap_or(false),
        // Anthropic streams always report usage.
        include_usage: true,
        tools,
        tool_choice,
        parallel_tool_calls,
        extra: Extra::new(DIALECT, rest),
    })
}

fn decode_content(content: Value) -> Result<Vec<Part>, DecodeError> {
    match content {
        Value::String(s) => Ok(vec![Part::text(s)]),
        Value::Array(blocks) => blocks
            .into_iter()
            .enumerate()
            .map(|(i, b)| decode_block(b).map_err(|e| e.at(format!("[{i}]"))))
            .collect(),
        other => Err(DecodeError::new(
            "",
            format!(
                "expected a string or an array of content blocks, found {}",
                super::json_type(&other)
            ),
        )),
    }
}

fn decode_block(block: Value) -> Result<Part, DecodeError> {
    let Value::Object(mut obj) = block else {
        return Err(DecodeError::new("", "expected a content block object"));
    };
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    match kind.as_str() {
        "text" => {
            obj.remove("type");
            let text = super::take_string(&mut obj, "text")?;
            Ok(Part::Text {
                text,
                extra: Extra::new(DIALECT, obj),
            })
        }
        "image" => {
            obj.remove("type");
            let Some(Value::Object(mut src)) = obj.remove("source") else {
                return Err(DecodeError::new("source", "expected an object"));
            };
            let source = match src.get("type").and_then(Value::as_str) {
                Some("base64") => ImageSource::Base64 {
                    media_type: super::take_string(&mut src, "media_type")
                        .map_err(|e| e.at("source"))?,
                    data: super::take_string(&mut src, "data").map_err(|e| e.at("source"))?,
                },
                Some("url") => ImageSource::Url(
                    super::take_string(&mut src, "url").map_err(|e| e.at("source"))?,
                ),
                _ => {
                    return Err(DecodeError::new(
                        "source.type",
                        "expected \"base64\" or \"url\"",
                    ));
                }
            };
            Ok(Part::Image {
                source,
                extra: Extra::new(DIALECT, obj),
            })
        }
        "tool_use" => {
            let id = super::take_string(&mut obj, "id")?;
            let name = super::take_string(&mut obj, "name")?;
            let arguments = obj.remove("input").unwrap_or_else(|| json!({})).to_string();
            Ok(Part::ToolCall(ToolCall {
                id,
                name,
                arguments,
            }))
        }
        "tool_result" => {
            obj.remove("type");
            let call_id = super::take_string(&mut obj, "tool_use_id")?;
            let content = match obj.remove("content") {
                None | Some(Value::Null) => vec![],
                Some(c) => decode_content(c).map_err(|e| e.at("content"))?,
            };
            let is_error = obj
                .remove("is_error")
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            Ok(Part::ToolResult {
                call_id,
                content,
                is_error,
                extra: Extra::new(DIALECT, obj),
            })
        }
        "thinking" => Ok(Part::Reasoning {
            text: super::take_string(&mut obj, "thinking")?,
            signature: match obj.remove("signature") {
                Some(Value::String(s)) => Some(s),
                _ => None,
            },
        }),
        "" => Err(DecodeError::new("type", "is required on a content block")),
        _ => Ok(Part::Opaque {
            dialect: DIALECT,
            value: Value::Object(obj),
        }),
    }
}

// ---------------------------------------------------------------- canonical → caller

fn stop_reason(f: &FinishReason) -> &str {
    match f {
        FinishReason::Stop => "end_turn",
        FinishReason::StopSequence => "stop_sequence",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter => "refusal",
        FinishReason::Other(s) => s,
    }
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.uncached_input_tokens(),
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
    })
}

fn tool_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    // A model may emit arguments that are not valid JSON; keep them visible rather than lose them.
    serde_json::from_str(arguments).unwrap_or_else(|_| json!({ "_raw_arguments": arguments }))
}

/// Encodes a complete answer as an Anthropic `message` object.
pub fn encode_response(r: &Response) -> Bytes {
    let content: Vec<Value> = r
        .content
        .iter()
        .filter_map(|p| match p {
            Part::Text { text, .. } => Some(json!({"type": "text", "text": text})),
            Part::Reasoning { text, signature } => {
                Some(json!({"type": "thinking", "thinking": text, "signature": signature.clone().unwrap_or_default()}))
            }
            Part::ToolCall(c) => {
                Some(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": tool_input(&c.arguments)}))
            }
            _ => None,
        })
        .collect();
    let body = json!({
        "id": super::id_with_prefix(&r.id, "msg_"),
        "type": "message",
        "role": "assistant",
        "model": r.model,
        "content": content,
        "stop_reason": stop_reason(&r.finish),
        "stop_sequence": null,
        "usage": usage_json(&r.usage),
    });
    Bytes::from(body.to_string())
}

/// One `content_block_delta` payload; exactly one of the optional fields is set.
#[derive(Serialize, Default)]
struct TypedDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partial_json: Option<&'a str>,
}

#[derive(Clone, Copy, PartialEq)]
enum Block {
    Text,
    Thinking,
    Tool(u32),
}

/// Re-encodes canonical stream events as Anthropic SSE (`message_start` … `message_stop`),
/// opening and closing content blocks as the kind of content changes.
pub struct StreamEncoder {
    started: bool,
    open: Option<Block>,
    next_block: u32,
    finish: Option<FinishReason>,
    usage: Usage,
}

impl Default for StreamEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamEncoder {
    pub fn new() -> Self {
        StreamEncoder {
            started: false,
            open: None,
            next_block: 0,
            finish: None,
            usage: Usage::default(),
        }
    }

    fn start(&mut self, id: &str, model: &str, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let msg = json!({
            "type": "message_start",
            "message": {
                "id": super::id_with_prefix(id, "msg_"), "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": usage_json(&self.usage),
            }
        });
        super::sse_event(out, "message_start", &msg);
    }

    fn open_block(&mut self, block: Block, start: Value, out: &mut Vec<u8>) {
        if self.open == Some(block) {
            return;
        }
        self.close_block(out);
        self.start("", "", out);
        let index = self.next_block;
        super::sse_event(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        );
        self.open = Some(block);
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if self.open.take().is_some() {
            super::sse_event(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": self.next_block}),
            );
            self.next_block += 1;
        }
    }

    fn delta<D: Serialize>(&self, delta: D, out: &mut Vec<u8>) {
        #[derive(Serialize)]
        struct BlockDelta<D> {
            #[serde(rename = "type")]
            kind: &'static str,
            index: u32,
            delta: D,
        }
        super::sse_event(
            out,
            "content_block_delta",
            &BlockDelta {
                kind: "content_block_delta",
                index: self.next_block,
                delta,
            },
        );
    }

    pub fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        match event {
            StreamEvent::Start { id, model } => self.start(id, model, out),
            StreamEvent::TextDelta(t) => {
                self.open_block(Block::Text, json!({"type": "text", "text": ""}), out);
                self.delta(
                    TypedDelta {
                        kind: "text_delta",
                        text: Some(t),
                        ..Default::default()
                    },
                    out,
                );
            }
            StreamEvent::ReasoningDelta(t) => {
                self.open_block(
                    Block::Thinking,
                    json!({"type": "thinking", "thinking": ""}),
                    out,
                );
                self.delta(
                    TypedDelta {
                        kind: "thinking_delta",
                        thinking: Some(t),
                        ..Default::default()
                    },
                    out,
                );
            }
            StreamEvent::ReasoningSignature(s) => {
                self.open_block(
                    Block::Thinking,
                    json!({"type": "thinking", "thinking": ""}),
                    out,
                );
                self.delta(
                    TypedDelta {
                        kind: "signature_delta",
                        signature: Some(s),
                        ..Default::default()
                    },
                    out,
                );
            }
            StreamEvent::ToolCallStart { index, id, name } => {
                self.close_block(out);
                self.open_block(
                    Block::Tool(*index),
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    out,
                );
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                if self.open == Some(Block::Tool(*index)) {
                    self.delta(
                        TypedDelta {
                            kind: "input_json_delta",
                            partial_json: Some(arguments),
                            ..Default::default()
                        },
                        out,
                    );
                }
            }
            StreamEvent::ToolCallEnd { index } => {
                if self.open == Some(Block::Tool(*index)) {
                    self.close_block(out);
                }
            }
            StreamEvent::Usage(u) => self.usage = *u,
            StreamEvent::Finish(f) => self.finish = Some(f.clone()),
            StreamEvent::Error(message) => {
                super::sse_event(
                    out,
                    "error",
                    &json!({"type": "error", "error": {"type": "api_error", "message": message}}),
                );
            }
        }
    }

    /// Closes a stream that ended normally: the last block, `message_delta`, `message_stop`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.start("", "", out);
        self.close_block(out);
        let finish = self.finish.take().unwrap_or_default();
        super::sse_event(
            out,
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason(&finish), "stop_sequence": null},
                "usage": usage_json(&self.usage),
            }),
        );
        super::sse_event(out, "message_stop", &json!({"type": "message_stop"}));
    }
}

// ---------------------------------------------------------------- canonical → upstream

/// Encodes a canonical request as an Anthropic Messages body for `model`.
pub fn encode_request(r: &Request, model: &str) -> Value {
    let mut body = Map::new();
    if let Some(extra) = r.extra.for_dialect(DIALECT) {
        body.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    body.insert("model".into(), model.into());
    let mut system = Vec::new();
    let mut messages: Vec<(Role, Vec<Value>, Map<String, Value>)> =
        Vec::with_capacity(r.messages.len());
    for m in &r.messages {
        let role = match m.role {
            Role::System => {
                system.extend(m.content.iter().filter_map(encode_block));
                continue;
            }
            Role::Assistant => Role::Assistant,
            Role::User | Role::Tool => Role::User,
        };
        let blocks: Vec<Value> = m.content.iter().filter_map(encode_block).collect();
        if blocks.is_empty() {
            continue;
        }
        // Anthropic wants strictly alternating roles: fold consecutive same-role messages
        // (an OpenAI caller's several `tool` results become one user turn).
        match messages.last_mut() {
            Some((last, prev, _)) if *last == role => prev.extend(blocks),
            _ => {
                let extra = m.extra.for_dialect(DIALECT).cloned().unwrap_or_default();
                messages.push((role, blocks, extra));
            }
        }
    }
    if !system.is_empty() {
        let plain = system
            .iter()
            .all(|b| b.as_object().is_some_and(|o| o.len() == 2));
        let value = if plain {
            Value::String(
                system
                    .iter()
                    .filter_map(|b| b.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        } else {
            Value::Array(system)
        };
        body.insert("system".into(), value);
    }
    let messages = messages
        .into_iter()
        .map(|(role, blocks, mut extra)| {
            extra.insert(
                "role".into(),
                if role == Role::Assistant {
                    "assistant"
                } else {
                    "user"
                }
                .into(),
            );
            extra.insert("content".into(), Value::Array(blocks));
            Value::Object(extra)
        })
        .collect();
    body.insert("messages".into(), Value::Array(messages));
    body.insert(
        "max_tokens".into(),
        r.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS).into(),
    );
    if let Some(t) = r.temperature {
        body.insert("temperature".into(), t.into());
    }
    if let Some(t) = r.top_p {
        body.insert("top_p".into(), t.into());
    }
    if !r.stop.is_empty() {
        body.insert("stop_sequences".into(), r.stop.clone().into());
    }
    if !r.tools.is_empty() && r.tool_choice != Some(ToolChoice::None) {
        let tools = r
            .tools
            .iter()
            .map(|t| Value::Object(super::tool_declaration(t, DIALECT, "input_schema", false)))
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    let mut choice = match &r.tool_choice {
        Some(ToolChoice::Auto) => Some(json!({"type": "auto"})),
        Some(ToolChoice::Required) => Some(json!({"type": "any"})),
        Some(ToolChoice::Tool(n)) => Some(json!({"type": "tool", "name": n})),
        Some(ToolChoice::None) | None => None,
    };
    if r.parallel_tool_calls == Some(false) && !r.tools.is_empty() {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        c["disable_parallel_tool_use"] = true.into();
    }
    if let Some(c) = choice {
        body.insert("tool_choice".into(), c);
    }
    if r.stream {
        body.insert("stream".into(), true.into());
    }
    Value::Object(body)
}

fn with_extra(v: Value, extra: &Extra) -> Value {
    super::with_extra(v, extra, DIALECT)
}

fn encode_block(p: &Part) -> Option<Value> {
    Some(match p {
        Part::Text { text, extra } => {
            if text.is_empty() {
                return None;
            }
            with_extra(json!({"type": "text", "text": text}), extra)
        }
        Part::Image { source, extra } => {
            let src = match source {
                ImageSource::Base64 { media_type, data } => {
                    json!({"type": "base64", "media_type": media_type, "data": data})
                }
                ImageSource::Url(u) => json!({"type": "url", "url": u}),
            };
            with_extra(json!({"type": "image", "source": src}), extra)
        }
        Part::ToolCall(c) => {
            json!({"type": "tool_use", "id": c.id, "name": c.name, "input": tool_input(&c.arguments)})
        }
        Part::ToolResult {
            call_id,
            content,
            is_error,
            extra,
        } => {
            let blocks: Vec<Value> = content.iter().filter_map(encode_block).collect();
            let mut v = json!({"type": "tool_result", "tool_use_id": call_id, "content": blocks});
            if *is_error {
                v["is_error"] = true.into();
            }
            with_extra(v, extra)
        }
        // Thinking without a signature came from another dialect; Anthropic rejects it.
        Part::Reasoning {
            text,
            signature: Some(sig),
        } => json!({"type": "thinking", "thinking": text, "signature": sig}),
        Part::Reasoning {
            signature: None, ..
        } => return None,
        Part::Opaque {
            dialect: DIALECT,
            value,
        } => value.clone(),
        Part::Opaque { .. } => return None,
    })
}

// ---------------------------------------------------------------- upstream → canonical

#[derive(Deserialize, Default, Clone, Copy)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Later fields win where present (`message_delta` repeats or completes `message_start`).
    fn merge(&mut self, later: WireUsage) {
        self.input_tokens = later.input_tokens.or(self.input_tokens);
        self.output_tokens = later.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = later
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = later
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
    }

    fn canonical(self) -> Usage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        let write = self.cache_creation_input_tokens.unwrap_or(0);
        Usage {
            // Anthropic's input_tokens excludes cached tokens; canonical includes them.
            input_tokens: self.input_tokens.unwrap_or(0) + read + write,
            cache_read_tokens: read,
            cache_write_tokens: write,
            output_tokens: self.output_tokens.unwrap_or(0),
            reasoning_tokens: 0,
        }
    }
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    content: Vec<Value>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: WireUsage,
}

fn decode_stop(s: &str) -> FinishReason {
    match s {
        "end_turn" | "pause_turn" => FinishReason::Stop,
        "stop_sequence" => FinishReason::StopSequence,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

/// Decodes an Anthropic upstream's `message` body.
pub fn decode_response(body: &[u8]) -> Result<Response, DecodeError> {
    let wire: WireResponse = parse_body(body)?;
    let mut content = Vec::with_capacity(wire.content.len());
    for (i, block) in wire.content.into_iter().enumerate() {
        match decode_block(block) {
            Ok(p) => content.push(p),
            Err(e) => return Err(e.at(format!("content[{i}]"))),
        }
    }
    Ok(Response {
        id: wire.id,
        model: wire.model,
        content,
        finish: wire
            .stop_reason
            .as_deref()
            .map(decode_stop)
            .unwrap_or_default(),
        usage: wire.usage.canonical(),
    })
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        message: WireStartMessage,
    },
    ContentBlockStart {
        index: u32,
        content_block: Value,
    },
    ContentBlockDelta {
        index: u32,
        delta: Value,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        #[serde(default)]
        delta: WireMessageDelta,
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop,
    Ping,
    Error {
        error: Value,
    },
    #[serde(other)]
    Unknown,
}

#[derive(Deserialize)]
struct WireStartMessage {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Deserialize, Default)]
struct WireMessageDelta {
    #[serde(default)]
    stop_reason: Option<String>,
}

/// Turns an Anthropic upstream's SSE events into canonical events.
#[derive(Default)]
pub struct StreamDecoder {
    usage: WireUsage,
    /// Anthropic block index → the canonical tool-call index, for tool_use blocks.
    tool_blocks: Vec<(u32, u32)>,
    next_tool: u32,
    finished: bool,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    fn tool_index(&self, block: u32) -> Option<u32> {
        self.tool_blocks
            .iter()
            .find(|(b, _)| *b == block)
            .map(|(_, t)| *t)
    }

    /// Decodes one SSE data payload (the `type` inside it names the event).
    pub fn decode(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), DecodeError> {
        let event: WireEvent =
            serde_json::from_str(data).map_err(|e| DecodeError::new("", e.to_string()))?;
        match event {
            WireEvent::MessageStart { message } => {
                self.usage = message.usage;
                // Usage first: an Anthropic encoder downstream puts the input tokens into
                // its own message_start.
                out.push(StreamEvent::Usage(self.usage.canonical()));
                out.push(StreamEvent::Start {
                    id: message.id,
                    model: message.model,
                });
            }
            WireEvent::ContentBlockStart {
                index,
                content_block,
            } => match content_block.get("type").and_then(Value::as_str) {
                Some("tool_use") => {
                    let tool = self.next_tool;
                    self.next_tool += 1;
                    self.tool_blocks.push((index, tool));
                    let field = |k: &str| {
                        content_block
                            .get(k)
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned()
                    };
                    out.push(StreamEvent::ToolCallStart {
                        index: tool,
                        id: field("id"),
                        name: field("name"),
                    });
                }
                Some("text") => {
                    if let Some(t) = content_block
                        .get("text")
                        .and_then(Value::as_str)
                        .filter(|t| !t.is_empty())
                    {
                        out.push(StreamEvent::TextDelta(t.to_owned()));
                    }
                }
                _ => {}
            },
            WireEvent::ContentBlockDelta { index, delta } => {
                let s = |k: &str| {
                    delta
                        .get(k)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned()
                };
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => out.push(StreamEvent::TextDelta(s("text"))),
                    Some("thinking_delta") => out.push(StreamEvent::ReasoningDelta(s("thinking"))),
                    Some("signature_delta") => {
                        out.push(StreamEvent::ReasoningSignature(s("signature")))
                    }
                    Some("input_json_delta") => {
                        if let Some(tool) = self.tool_index(index) {
                            let arguments = s("partial_json");
                            if !arguments.is_empty() {
                                out.push(StreamEvent::ToolCallDelta {
                                    index: tool,
                                    arguments,
                                });
                            }
                        }
                    }
                    _ => {}
                }
            }
            WireEvent::ContentBlockStop { index } => {
                if let Some(tool) = self.tool_index(index) {
                    out.push(StreamEvent::ToolCallEnd { index: tool });
                }
            }
            WireEvent::MessageDelta { delta, usage } => {
                if let Some(u) = usage {
                    self.usage.merge(u);
                }
                if let Some(r) = delta.stop_reason {
                    out.push(StreamEvent::Finish(decode_stop(&r)));
                }
                out.push(StreamEvent::Usage(self.usage.canonical()));
            }
            WireEvent::MessageStop => self.finished = true,
            WireEvent::Error { error } => {
                out.push(StreamEvent::Error(super::error_message(&error)))
            }
            WireEvent::Ping | WireEvent::Unknown => {}
        }
        Ok(())
    }

    /// Whether `message_stop` arrived (a stream that ends without it was cut).
    pub fn finished(&self) -> bool {
        self.finished
    }
}

/// Anthropic's error shape: `{"type": "error", "error": {type, message}}`.
pub fn error_body(status: http::StatusCode, message: &str) -> Value {
    json!({
        "type": "error",
        "error": { "type": error_type(status), "message": message }
    })
}

fn error_type(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_system_tools_and_tool_results() {
        let body = br#"{"model":"m","max_tokens":100,"system":[{"type":"text","text":"sys","cache_control":{"type":"ephemeral"}}],
            "messages":[{"role":"user","content":"hi"},
              {"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{"a":1}}]},
              {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"ok"},{"type":"text","text":"and?"}]}],
            "tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"any"},"top_k":5}"#;
        let r = decode_request(body).unwrap();
        assert_eq!(r.messages[0].role, Role::System);
        assert_eq!(r.tool_choice, Some(ToolChoice::Required));
        let back = encode_request(&r, "up");
        assert_eq!(back["top_k"], 5);
        assert_eq!(back["system"][0]["cache_control"]["type"], "ephemeral");
        assert_eq!(back["messages"][1]["content"][0]["input"]["a"], 1);
        // To OpenAI: the tool result becomes its own `tool` message before the user's text.
        let openai = super::super::openai_chat::encode_request(&r, "gpt");
        let msgs = openai["messages"].as_array().unwrap();
        assert_eq!(msgs[0]["role"], "system");
        assert_eq!(
            msgs[2]["tool_calls"][0]["function"]["arguments"],
            r#"{"a":1}"#
        );
        assert_eq!(msgs[3]["role"], "tool");
        assert_eq!(msgs[3]["tool_call_id"], "t1");
        assert_eq!(msgs[4]["role"], "user");
        assert!(openai.get("top_k").is_none());
    }

    #[test]
    fn openai_tool_results_fold_into_one_user_turn() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"go"},
            {"role":"assistant","content":null,"tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}},{"id":"b","type":"function","function":{"name":"f","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"a","content":"1"},{"role":"tool","tool_call_id":"b","content":"2"}]}"#;
        let r = super::super::openai_chat::decode_request(body).unwrap();
        let out = encode_request(&r, "claude");
        let msgs = out["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[2]["content"].as_array().unwrap().len(), 2);
        assert_eq!(out["max_tokens"], DEFAULT_MAX_TOKENS);
    }

    #[test]
    fn missing_max_tokens_is_an_error() {
        let e = decode_request(br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#)
            .unwrap_err();
        assert!(e.to_string().contains("max_tokens"));
    }

    #[test]
    fn stream_decoder_merges_usage() {
        let mut d = StreamDecoder::new();
        let mut ev = Vec::new();
        for data in [
            r#"{"type":"message_start","message":{"id":"msg_1","model":"c","usage":{"input_tokens":10,"cache_read_input_tokens":5,"cache_creation_input_tokens":2,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"a\""}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":7}}"#,
            r#"{"type":"message_stop"}"#,
        ] {
            d.decode(data, &mut ev).unwrap();
        }
        assert!(matches!(
            ev[0],
            StreamEvent::Usage(Usage {
                input_tokens: 17,
                output_tokens: 1,
                ..
            })
        ));
        let ev = &ev[1..];
        assert_eq!(
            ev[1],
            StreamEvent::ToolCallStart {
                index: 0,
                id: "t".into(),
                name: "f".into()
            }
        );
        assert_eq!(ev[3], StreamEvent::ToolCallEnd { index: 0 });
        assert_eq!(ev[4], StreamEvent::Finish(FinishReason::ToolCalls));
        assert_eq!(
            ev[5],
            StreamEvent::Usage(Usage {
                input_tokens: 17,
                cache_read_tokens: 5,
                cache_write_tokens: 2,
                output_tokens: 7,
                reasoning_tokens: 0
            })
        );
        assert!(d.finished());
    }

    #[test]
    fn stream_encoder_opens_and_closes_blocks() {
        let mut e = StreamEncoder::new();
        let mut out = Vec::new();
        for ev in [
            StreamEvent::Start {
                id: "x".into(),
                model: "m".into(),
            },
            StreamEvent::TextDelta("a".into()),
            StreamEvent::ToolCallStart {
                index: 0,
                id: "c".into(),
                name: "f".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{}".into(),
            },
            StreamEvent::ToolCallEnd { index: 0 },
            StreamEvent::Finish(FinishReason::ToolCalls),
        ] {
            e.encode(&ev, &mut out);
        }
        e.finish(&mut out);
        let s = String::from_utf8(out).unwrap();
        let names: Vec<&str> = s
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert!(s.contains(r#""stop_reason":"tool_use""#));
    }
}
