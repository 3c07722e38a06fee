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
pub(super) struct WireMessage {
    role: String,
    content: Value,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

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

pub(super) fn decode_content(content: Value) -> Result<Vec<Part>, DecodeError> {
    match content {
        Value::String(s) => Ok(vec![Part::text(s)]),
        Value::Array(blocks) => crate::api::decode_each(blocks, decode_block),
        other => Err(DecodeError::new(
            "",
            format!(
                "expected a string or an array of content blocks, found {}",
                crate::api::json_type(&other)
            ),
        )),
    }
}

pub(super) fn decode_block(block: Value) -> Result<Part, DecodeError> {
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
            let text = crate::api::take_string(&mut obj, "text")?;
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
                    media_type: crate::api::take_string(&mut src, "media_type")
                        .map_err(|e| e.at("source"))?,
                    data: crate::api::take_string(&mut src, "data").map_err(|e| e.at("source"))?,
                },
                Some("url") => ImageSource::Url(
                    crate::api::take_string(&mut src, "url").map_err(|e| e.at("source"))?,
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
            let id = crate::api::take_string(&mut obj, "id")?;
            let name = crate::api::take_string(&mut obj, "name")?;
            let arguments = obj.remove("input").unwrap_or_else(|| json!({})).to_string();
            Ok(Part::ToolCall(ToolCall {
                id,
                name,
                arguments,
            }))
        }
        "tool_result" => {
            obj.remove("type");
            let call_id = crate::api::take_string(&mut obj, "tool_use_id")?;
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
            text: crate::api::take_string(&mut obj, "thinking")?,
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

pub(super) fn stop_reason(f: &FinishReason) -> &str {
    match f {
        FinishReason::Stop => "end_turn",
        FinishReason::StopSequence => "stop_sequence",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter => "refusal",
        FinishReason::Other(s) => s,
    }
}

pub(super) fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.uncached_input_tokens(),
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
    })
}

pub(super) fn tool_input(arguments: &str) -> Value {
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
        "id": crate::api::id_with_prefix(&r.id, "msg_"),
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
pub(super) struct TypedDelta<'a> {
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
pub(super) enum Block {
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
    /// An encoder for one stream to an Anthropic Messages caller.
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
                "id": crate::api::id_with_prefix(id, "msg_"), "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": usage_json(&self.usage),
            }
        });
        crate::api::sse_event(out, "message_start", &msg);
    }

    fn open_block(&mut self, block: Block, start: Value, out: &mut Vec<u8>) {
        if self.open == Some(block) {
            return;
        }
        self.close_block(out);
        self.start("", "", out);
        let index = self.next_block;
        crate::api::sse_event(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        );
        self.open = Some(block);
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if self.open.take().is_some() {
            crate::api::sse_event(
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
        crate::api::sse_event(
            out,
            "content_block_delta",
            &BlockDelta {
                kind: "content_block_delta",
                index: self.next_block,
                delta,
            },
        );
    }

    /// Appends the SSE events for `event` to `out`.
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
                crate::api::sse_event(
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
        crate::api::sse_event(
            out,
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason(&finish), "stop_sequence": null},
                "usage": usage_json(&self.usage),
            }),
        );
        crate::api::sse_event(out, "message_stop", &json!({"type": "message_stop"}));
    }
}
