//! A Responses upstream: canonical requests out (`encode_request`) and its answers back in
//! (`decode_response`, `StreamDecoder`).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{DIALECT, is_content_type};
use crate::api::{DecodeError, parse_body};
use crate::canonical::{
    FinishReason, Message, Part, Request, Response, Role, StreamEvent, ToolCall, ToolChoice, Usage,
};

/// Where a Responses upstream is called: `{api_base}/responses`.
pub fn upstream_url(base: &str) -> String {
    format!("{base}/responses")
}

// ---------------------------------------------------------------- canonical → upstream
/// Encodes a canonical request as an OpenAI Responses body for `model`.
pub fn encode_request(r: &Request, model: &str) -> Value {
    let mut body = Map::new();
    let mut builtin = Vec::new();
    if let Some(extra) = r.extra.for_dialect(DIALECT) {
        for (k, v) in extra {
            match (k.as_str(), v) {
                ("tools", Value::Array(t)) => builtin.clone_from(t),
                _ => {
                    body.insert(k.clone(), v.clone());
                }
            }
        }
    }
    if r.extra.dialect != Some(DIALECT) {
        // A caller of another dialect expects nothing to be kept at OpenAI.
        body.insert("store".into(), false.into());
    }
    body.insert("model".into(), Value::String(model.to_owned()));
    let mut messages = r.messages.as_slice();
    if let [first, rest @ ..] = messages
        && let Some(text) = instructions(first)
    {
        body.insert("instructions".into(), Value::String(text));
        messages = rest;
    }
    let mut input = Vec::new();
    for m in messages {
        encode_message(m, &mut input);
    }
    body.insert("input".into(), Value::Array(input));
    if let Some(n) = r.max_tokens {
        body.insert("max_output_tokens".into(), n.into());
    }
    // Responses has no stop sequences.
    crate::api::insert_sampling(&mut body, r, ["temperature", "top_p"], None);
    let mut tools: Vec<Value> = r
        .tools
        .iter()
        .map(|t| {
            let mut o = crate::api::tool_declaration(t, DIALECT, "parameters", true);
            o.insert("type".into(), "function".into());
            if t.extra.dialect != Some(DIALECT) {
                // Responses makes function tools strict by default, which rejects the loose
                // schemas other dialects allow.
                o.insert("strict".into(), false.into());
            }
            Value::Object(o)
        })
        .collect();
    tools.extend(builtin);
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(c) = &r.tool_choice {
        let v = match c {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Tool(n) => json!({"type": "function", "name": n}),
        };
        body.insert("tool_choice".into(), v);
    }
    if let Some(p) = r.parallel_tool_calls {
        body.insert("parallel_tool_calls".into(), p.into());
    }
    if r.stream {
        body.insert("stream".into(), true.into());
    }
    Value::Object(body)
}

/// The text of a leading system message that `instructions` can carry as it is.
fn instructions(m: &Message) -> Option<String> {
    if m.role != Role::System || m.extra.for_dialect(DIALECT).is_some() {
        return None;
    }
    let mut text = String::new();
    for p in &m.content {
        match p {
            Part::Text { text: t, extra } if extra.for_dialect(DIALECT).is_none() => {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(t);
            }
            _ => return None,
        }
    }
    Some(text)
}

/// Appends the input items of one message: its content as a `message` item, interrupted by
/// the calls, call outputs and opaque items it holds, in order.
fn encode_message(m: &Message, out: &mut Vec<Value>) {
    let extra = m.extra.for_dialect(DIALECT);
    let role = extra
        .and_then(|e| e.get("role"))
        .and_then(Value::as_str)
        .unwrap_or(match m.role {
            Role::System => "system",
            Role::User | Role::Tool => "user",
            Role::Assistant => "assistant",
        })
        .to_owned();
    let assistant = m.role == Role::Assistant;
    let mut content = Vec::new();
    // The message's own fields (its id) go on its first message item only.
    let mut extra = extra;
    let mut flush = |content: &mut Vec<Value>, out: &mut Vec<Value>| {
        if content.is_empty() {
            return;
        }
        let mut o = Map::new();
        if let Some(e) = extra.take() {
            o.extend(e.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        o.insert("type".into(), "message".into());
        o.insert("role".into(), role.clone().into());
        o.insert("content".into(), Value::Array(std::mem::take(content)));
        out.push(Value::Object(o));
    };
    for p in &m.content {
        match p {
            Part::ToolCall(c) => {
                flush(&mut content, out);
                out.push(json!({"type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments}));
            }
            Part::ToolResult {
                call_id,
                content: parts,
                is_error,
                ..
            } => {
                flush(&mut content, out);
                let output = if parts.iter().all(|p| matches!(p, Part::Text { .. })) {
                    let mut text = parts
                        .iter()
                        .filter_map(|p| match p {
                            Part::Text { text, .. } => Some(text.as_str()),
                            _ => None,
                        })
                        .collect::<Vec<_>>()
                        .join("\n");
                    if *is_error && !text.starts_with("Error") {
                        text.insert_str(0, "Error: ");
                    }
                    Value::String(text)
                } else {
                    Value::Array(
                        parts
                            .iter()
                            .filter_map(|p| content_json(p, false))
                            .collect(),
                    )
                };
                out.push(
                    json!({"type": "function_call_output", "call_id": call_id, "output": output}),
                );
            }
            Part::Opaque {
                dialect: DIALECT,
                value,
            } if !is_content_type(value) => {
                flush(&mut content, out);
                out.push(value.clone());
            }
            other => content.extend(content_json(other, assistant)),
        }
    }
    flush(&mut content, out);
}

/// One content part; `None` for what a Responses upstream cannot take (reasoning without
/// OpenAI's ids, other dialects' opaque blocks).
fn content_json(p: &Part, assistant: bool) -> Option<Value> {
    match p {
        Part::Text { text, extra } => {
            let mut o = Map::new();
            if let Some(e) = extra.for_dialect(DIALECT) {
                o.extend(e.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            o.insert(
                "type".into(),
                if assistant {
                    "output_text"
                } else {
                    "input_text"
                }
                .into(),
            );
            o.insert("text".into(), text.clone().into());
            if assistant {
                o.entry("annotations").or_insert(json!([]));
            }
            Some(Value::Object(o))
        }
        Part::Image { source, extra } => {
            let mut o = Map::new();
            if let Some(e) = extra.for_dialect(DIALECT) {
                o.extend(e.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            o.insert("type".into(), "input_image".into());
            o.insert("image_url".into(), source.to_url().into());
            o.entry("detail").or_insert("auto".into());
            Some(Value::Object(o))
        }
        Part::Opaque {
            dialect: DIALECT,
            value,
        } => Some(value.clone()),
        _ => None,
    }
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    output: Vec<Value>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    incomplete_details: Option<WireIncomplete>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct WireIncomplete {
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<WireInputDetails>,
    #[serde(default)]
    output_tokens_details: Option<WireOutputDetails>,
}

#[derive(Deserialize, Default)]
struct WireInputDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    cache_write_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct WireOutputDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Usage {
        let input = u.input_tokens_details.unwrap_or_default();
        Usage {
            input_tokens: u.input_tokens,
            cache_read_tokens: input.cached_tokens.unwrap_or(0),
            cache_write_tokens: input.cache_write_tokens.unwrap_or(0),
            output_tokens: u.output_tokens,
            reasoning_tokens: u
                .output_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
        }
    }
}

fn decode_finish(
    status: Option<&str>,
    incomplete: Option<WireIncomplete>,
    calls: bool,
) -> FinishReason {
    match status {
        Some("incomplete") => match incomplete.and_then(|i| i.reason).as_deref() {
            Some("max_output_tokens") => FinishReason::Length,
            Some("content_filter") => FinishReason::ContentFilter,
            Some(other) => FinishReason::Other(other.to_owned()),
            None => FinishReason::Other("incomplete".into()),
        },
        _ if calls => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

/// The text of a reasoning item: its summary, or its raw reasoning when there is no summary.
fn reasoning_text(item: &Value) -> String {
    let texts = |key: &str| -> Vec<&str> {
        item.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| s.get("text").and_then(Value::as_str))
            .collect()
    };
    let summary = texts("summary");
    if summary.is_empty() {
        texts("content").join("\n")
    } else {
        summary.join("\n")
    }
}

fn str_field(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Decodes a Responses upstream's `response` body.
pub fn decode_response(body: &[u8]) -> Result<Response, DecodeError> {
    let wire: WireResponse = parse_body(body)?;
    if wire.status.as_deref() == Some("failed") {
        let message = wire
            .error
            .as_ref()
            .map(crate::api::error_message)
            .unwrap_or_else(|| "the response failed".into());
        return Err(DecodeError::new("error", message));
    }
    let mut content = Vec::new();
    let mut calls = false;
    for item in wire.output {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                for c in item
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let text = match c.get("type").and_then(Value::as_str) {
                        Some("output_text") => str_field(c, "text"),
                        Some("refusal") => str_field(c, "refusal"),
                        _ => continue,
                    };
                    content.push(Part::text(text));
                }
            }
            Some("function_call") => {
                calls = true;
                content.push(Part::ToolCall(ToolCall {
                    id: str_field(&item, "call_id"),
                    name: str_field(&item, "name"),
                    arguments: str_field(&item, "arguments"),
                }));
            }
            Some("reasoning") => {
                let text = reasoning_text(&item);
                if !text.is_empty() {
                    content.push(Part::Reasoning {
                        text,
                        signature: None,
                    });
                }
            }
            _ => content.push(Part::Opaque {
                dialect: DIALECT,
                value: item,
            }),
        }
    }
    Ok(Response {
        id: wire.id,
        model: wire.model,
        content,
        finish: decode_finish(wire.status.as_deref(), wire.incomplete_details, calls),
        usage: wire.usage.map(Usage::from).unwrap_or_default(),
    })
}

/// One Responses SSE event, with the fields the decoder reads.
#[derive(Deserialize)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    delta: Option<String>,
    #[serde(default)]
    output_index: Option<u64>,
    #[serde(default)]
    item: Option<Value>,
    #[serde(default)]
    response: Option<WireResponse>,
    #[serde(default)]
    message: Option<String>,
}

/// Turns a Responses upstream's SSE `data:` payloads into canonical events.
#[derive(Default)]
pub struct StreamDecoder {
    started: bool,
    /// Open function calls: output index → canonical tool index.
    open_calls: Vec<(u64, u32)>,
    next_call: u32,
    finished: bool,
}

impl StreamDecoder {
    /// A decoder for one Responses stream.
    pub fn new() -> Self {
        Self::default()
    }

    fn start(&mut self, id: &str, model: &str, out: &mut Vec<StreamEvent>) {
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: id.to_owned(),
                model: model.to_owned(),
            });
        }
    }

    /// Decodes one SSE data payload (the `type` inside it names the event).
    pub fn decode(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), DecodeError> {
        let e: WireEvent =
            serde_json::from_str(data).map_err(|e| DecodeError::new("", e.to_string()))?;
        let call_index = |open: &[(u64, u32)], at: Option<u64>| {
            open.iter().find(|c| Some(c.0) == at).map(|c| c.1)
        };
        match e.kind.as_str() {
            "response.created" | "response.in_progress" => {
                let (id, model) = e
                    .response
                    .as_ref()
                    .map(|r| (r.id.as_str(), r.model.as_str()))
                    .unwrap_or_default();
                self.start(id, model, out);
            }
            "response.output_text.delta" | "response.refusal.delta" => {
                self.start("", "", out);
                if let Some(d) = e.delta.filter(|d| !d.is_empty()) {
                    out.push(StreamEvent::TextDelta(d));
                }
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                self.start("", "", out);
                if let Some(d) = e.delta.filter(|d| !d.is_empty()) {
                    out.push(StreamEvent::ReasoningDelta(d));
                }
            }
            "response.output_item.added" => {
                let Some(item) = e.item.filter(|i| i["type"] == "function_call") else {
                    return Ok(());
                };
                self.start("", "", out);
                let index = self.next_call;
                self.next_call += 1;
                self.open_calls.push((e.output_index.unwrap_or(0), index));
                out.push(StreamEvent::ToolCallStart {
                    index,
                    id: str_field(&item, "call_id"),
                    name: str_field(&item, "name"),
                });
                let args = str_field(&item, "arguments");
                if !args.is_empty() {
                    out.push(StreamEvent::ToolCallDelta {
                        index,
                        arguments: args,
                    });
                }
            }
            "response.function_call_arguments.delta" => {
                if let (Some(index), Some(d)) = (
                    call_index(&self.open_calls, e.output_index),
                    e.delta.filter(|d| !d.is_empty()),
                ) {
                    out.push(StreamEvent::ToolCallDelta {
                        index,
                        arguments: d,
                    });
                }
            }
            "response.output_item.done" => {
                if let Some(pos) = self
                    .open_calls
                    .iter()
                    .position(|c| Some(c.0) == e.output_index)
                {
                    let (_, index) = self.open_calls.remove(pos);
                    out.push(StreamEvent::ToolCallEnd { index });
                }
            }
            "response.completed" | "response.incomplete" => {
                for (_, index) in std::mem::take(&mut self.open_calls) {
                    out.push(StreamEvent::ToolCallEnd { index });
                }
                let Some(r) = e.response else {
                    return Err(DecodeError::new(
                        "response",
                        "is missing from the final event",
                    ));
                };
                self.start(&r.id, &r.model, out);
                self.finished = true;
                out.push(StreamEvent::Finish(decode_finish(
                    r.status.as_deref(),
                    r.incomplete_details,
                    self.next_call > 0,
                )));
                if let Some(u) = r.usage {
                    out.push(StreamEvent::Usage(u.into()));
                }
            }
            "response.failed" => {
                let message = e
                    .response
                    .and_then(|r| r.error)
                    .map(|err| crate::api::error_message(&err))
                    .unwrap_or_else(|| "the upstream response failed".into());
                out.push(StreamEvent::Error(message));
            }
            "error" => out.push(StreamEvent::Error(
                e.message
                    .unwrap_or_else(|| "the upstream reported an error".into()),
            )),
            _ => {}
        }
        Ok(())
    }

    /// Whether the upstream sent its final `response.completed`/`response.incomplete`.
    pub fn finished(&self) -> bool {
        self.finished
    }
}
