//! The upstream side: canonical requests out, the upstream's answers and streams back in.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::*;
use crate::api::{DecodeError, parse_body};
use crate::canonical::{
    Extra, FinishReason, ImageSource, Part, Request, Response, Role, StreamEvent, ToolChoice, Usage,
};

/// Where an Anthropic upstream is called: `{api_base}/v1/messages`, or `{api_base}/messages`
/// when the base already ends in `/v1`.
pub fn upstream_url(base: &str) -> String {
    if base.ends_with("/v1") {
        format!("{base}/messages")
    } else {
        format!("{base}/v1/messages")
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
    crate::api::insert_sampling(
        &mut body,
        r,
        ["temperature", "top_p"],
        Some("stop_sequences"),
    );
    if !r.tools.is_empty() && r.tool_choice != Some(ToolChoice::None) {
        let tools = r
            .tools
            .iter()
            .map(|t| {
                Value::Object(crate::api::tool_declaration(
                    t,
                    DIALECT,
                    "input_schema",
                    false,
                ))
            })
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

pub(super) fn with_extra(v: Value, extra: &Extra) -> Value {
    crate::api::with_extra(v, extra, DIALECT)
}

pub(super) fn encode_block(p: &Part) -> Option<Value> {
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
pub(super) struct WireUsage {
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
pub(super) struct WireResponse {
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

pub(super) fn decode_stop(s: &str) -> FinishReason {
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
pub(super) enum WireEvent {
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
pub(super) struct WireStartMessage {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Deserialize, Default)]
pub(super) struct WireMessageDelta {
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
    /// A decoder for one Anthropic Messages stream.
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
                        out.push(StreamEvent::ReasoningSignature(s("signature")));
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
                out.push(StreamEvent::Error(crate::api::error_message(&error)));
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

pub(super) fn error_type(status: http::StatusCode) -> &'static str {
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
