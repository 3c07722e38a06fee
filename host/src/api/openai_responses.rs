//! OpenAI Responses (`/v1/responses`): wire handling and both directions of translation — a
//! caller's request into canonical and answers back out as `response` objects and named SSE
//! events (`decode_request`, `encode_response`, `StreamEncoder`), and canonical requests out to
//! a Responses upstream and its answers back in (`encode_request`, `decode_response`,
//! `StreamDecoder`). The gateway is stateless: what needs OpenAI's stored state is refused for
//! any other upstream (`needs_responses_upstream`).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{DecodeError, json_type, parse_body};
use crate::canonical::{
    Dialect, Extra, FinishReason, ImageSource, Message, Part, Request, Response, Role, StreamEvent,
    Tool, ToolCall, ToolChoice, Usage,
};

const DIALECT: Dialect = Dialect::OpenAiResponses;

/// Content-part types: an opaque value of one of these lives inside a message's `content`;
/// any other opaque value is a whole input item (a reasoning item, an `item_reference`, ...).
const CONTENT_TYPES: [&str; 7] = [
    "input_text",
    "input_image",
    "input_file",
    "input_audio",
    "output_text",
    "refusal",
    "reasoning_text",
];

// ---------------------------------------------------------------- caller → canonical

#[derive(Deserialize)]
struct WireRequest {
    model: String,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    instructions: Option<String>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// Decodes a caller's `/v1/responses` body.
/// Where a Responses upstream is called: `{api_base}/responses`.
pub fn upstream_url(base: &str) -> String {
    format!("{base}/responses")
}

pub fn decode_request(body: &[u8]) -> Result<Request, DecodeError> {
    let mut wire: WireRequest = parse_body(body)?;
    let mut messages = Vec::new();
    if let Some(text) = wire.instructions.filter(|t| !t.is_empty()) {
        messages.push(Message::text(Role::System, text));
    }
    match wire.input {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => messages.push(Message::text(Role::User, text)),
        Some(Value::Array(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                decode_item(item, &mut messages).map_err(|e| e.at(format!("input[{i}]")))?;
            }
        }
        Some(other) => {
            return Err(DecodeError::new(
                "input",
                format!(
                    "expected a string or an array of input items, found {}",
                    json_type(&other)
                ),
            ));
        }
    }
    // A stored conversation may stand in for `input`; whether it can be used is decided per
    // upstream (`needs_responses_upstream`).
    let stateful = ["previous_response_id", "conversation", "prompt"]
        .iter()
        .any(|k| wire.rest.get(*k).is_some_and(|v| !v.is_null()));
    if messages.is_empty() && !stateful {
        return Err(DecodeError::new(
            "input",
            "is required: a string or an array of input items",
        ));
    }
    let mut tools = Vec::new();
    let mut builtin = Vec::new();
    for (i, t) in wire.tools.unwrap_or_default().into_iter().enumerate() {
        match decode_tool(t).map_err(|e| e.at(format!("tools[{i}]")))? {
            Ok(tool) => tools.push(tool),
            Err(raw) => builtin.push(raw),
        }
    }
    if !builtin.is_empty() {
        // Built-in tools have no canonical form; kept for a Responses upstream.
        wire.rest.insert("tools".into(), Value::Array(builtin));
    }
    let tool_choice = match wire.tool_choice {
        None | Some(Value::Null) => None,
        Some(v) => match decode_tool_choice(&v) {
            Some(c) => Some(c),
            None if v.is_object() => {
                // `allowed_tools`, a built-in tool: only a Responses upstream knows them.
                wire.rest.insert("tool_choice".into(), v);
                None
            }
            None => {
                return Err(DecodeError::new(
                    "tool_choice",
                    "expected \"auto\", \"none\", \"required\" or {\"type\":\"function\",\"name\":...}",
                ));
            }
        },
    };
    Ok(Request {
        model: wire.model,
        messages,
        max_tokens: wire.max_output_tokens,
        temperature: wire.temperature,
        top_p: wire.top_p,
        stop: vec![],
        stream: wire.stream.unwrap_or(false),
        // A Responses stream always ends with the usage in `response.completed`.
        include_usage: true,
        tools,
        tool_choice,
        parallel_tool_calls: wire.parallel_tool_calls,
        extra: Extra::new(DIALECT, wire.rest),
    })
}

/// Appends one input item to `messages`. Calls and reasoning join the assistant turn they
/// belong to, so upstreams that want one assistant message per turn (Anthropic) get one.
fn decode_item(item: Value, messages: &mut Vec<Message>) -> Result<(), DecodeError> {
    let Value::Object(mut obj) = item else {
        return Err(DecodeError::new(
            "",
            format!("expected an input item object, found {}", json_type(&item)),
        ));
    };
    let kind = match obj.get("type") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(DecodeError::new(
                "type",
                format!("expected a string, found {}", json_type(other)),
            ));
        }
    };
    match kind.as_deref() {
        Some("message") | None if obj.contains_key("role") => {
            let m = decode_message(obj)?;
            match messages.last_mut() {
                // A reasoning item opens the assistant turn its message belongs to.
                Some(last)
                    if m.role == Role::Assistant
                        && last.role == Role::Assistant
                        && last.content.iter().all(is_item_opaque) =>
                {
                    last.content.extend(m.content);
                    last.extra = m.extra;
                }
                _ => messages.push(m),
            }
        }
        None => {
            return Err(DecodeError::new(
                "type",
                "is required on an input item without a role",
            ));
        }
        Some("message") => return Err(DecodeError::new("role", "is required on a message item")),
        Some("function_call") => {
            let call = ToolCall {
                id: super::take_string(&mut obj, "call_id")?,
                name: super::take_string(&mut obj, "name")?,
                arguments: match obj.remove("arguments") {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s,
                    Some(other) => {
                        return Err(DecodeError::new(
                            "arguments",
                            format!("expected a string of JSON, found {}", json_type(&other)),
                        ));
                    }
                },
            };
            assistant_turn(messages).push(Part::ToolCall(call));
        }
        Some("function_call_output") => {
            let call_id = super::take_string(&mut obj, "call_id")?;
            let content = match obj.remove("output") {
                None | Some(Value::Null) => vec![],
                Some(Value::String(s)) => vec![Part::text(s)],
                Some(Value::Array(parts)) => decode_parts(parts).map_err(|e| e.at("output"))?,
                Some(other) => {
                    return Err(DecodeError::new(
                        "output",
                        format!(
                            "expected a string or an array of content parts, found {}",
                            json_type(&other)
                        ),
                    ));
                }
            };
            messages.push(Message {
                role: Role::Tool,
                content: vec![Part::ToolResult {
                    call_id,
                    content,
                    is_error: false,
                    extra: Extra::default(),
                }],
                extra: Extra::default(),
            });
        }
        Some("reasoning") => {
            // Reasoning items carry ids and encrypted content only OpenAI can use.
            assistant_turn(messages).push(Part::Opaque {
                dialect: DIALECT,
                value: Value::Object(obj),
            });
        }
        Some(kind) if !PASSED_ITEM_TYPES.contains(&kind) => {
            // Dropping an item the gateway does not know would answer a different question
            // than the caller asked.
            return Err(DecodeError::new(
                "type",
                format!(
                    "unknown input item type {kind:?}; expected message, function_call, function_call_output, reasoning or one of {}",
                    PASSED_ITEM_TYPES.join(", ")
                ),
            ));
        }
        Some(_) => {
            // Built-in tool calls and outputs, item references: Responses upstreams only.
            let part = Part::Opaque {
                dialect: DIALECT,
                value: Value::Object(obj),
            };
            match messages.last_mut() {
                Some(last) => last.content.push(part),
                None => messages.push(Message {
                    role: Role::User,
                    content: vec![part],
                    extra: Extra::default(),
                }),
            }
        }
    }
    Ok(())
}

/// Input item types of OpenAI's Responses API that only a Responses upstream understands:
/// built-in tool calls and their outputs, item references, compaction. They pass through
/// untouched; any other type is refused.
const PASSED_ITEM_TYPES: &[&str] = &[
    "item_reference",
    "file_search_call",
    "web_search_call",
    "computer_call",
    "computer_call_output",
    "image_generation_call",
    "code_interpreter_call",
    "local_shell_call",
    "local_shell_call_output",
    "shell_call",
    "shell_call_output",
    "apply_patch_call",
    "apply_patch_call_output",
    "mcp_list_tools",
    "mcp_approval_request",
    "mcp_approval_response",
    "mcp_call",
    "custom_tool_call",
    "custom_tool_call_output",
    "compaction",
];

/// The content of the assistant message at the end of `messages`, started if needed.
fn assistant_turn(messages: &mut Vec<Message>) -> &mut Vec<Part> {
    if messages.last().is_none_or(|m| m.role != Role::Assistant) {
        messages.push(Message {
            role: Role::Assistant,
            content: vec![],
            extra: Extra::default(),
        });
    }
    let last = messages.len() - 1;
    &mut messages[last].content
}

fn is_item_opaque(p: &Part) -> bool {
    matches!(p, Part::Opaque { dialect: DIALECT, value } if !is_content_type(value))
}

fn is_content_type(v: &Value) -> bool {
    v.get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| CONTENT_TYPES.contains(&t))
}

fn decode_message(mut obj: Map<String, Value>) -> Result<Message, DecodeError> {
    let role_name = super::take_string(&mut obj, "role")?;
    let role = match role_name.as_str() {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        other => {
            return Err(DecodeError::new(
                "role",
                format!("unknown role {other:?}; expected user, assistant, system or developer"),
            ));
        }
    };
    let content = match obj.remove("content") {
        Some(Value::String(s)) => vec![Part::text(s)],
        Some(Value::Array(parts)) => decode_parts(parts).map_err(|e| e.at("content"))?,
        None | Some(Value::Null) => return Err(DecodeError::new("content", "is required")),
        Some(other) => {
            return Err(DecodeError::new(
                "content",
                format!(
                    "expected a string or an array of content parts, found {}",
                    json_type(&other)
                ),
            ));
        }
    };
    obj.remove("type");
    if role_name == "developer" {
        // Kept so a Responses upstream sees the role the caller chose.
        obj.insert("role".into(), Value::String(role_name));
    }
    Ok(Message {
        role,
        content,
        extra: Extra::new(DIALECT, obj),
    })
}

fn decode_parts(parts: Vec<Value>) -> Result<Vec<Part>, DecodeError> {
    parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| decode_part(p).map_err(|e| e.at(format!("[{i}]"))))
        .collect()
}

fn decode_part(part: Value) -> Result<Part, DecodeError> {
    let Value::Object(mut obj) = part else {
        return Err(DecodeError::new(
            "",
            format!("expected a content part object, found {}", json_type(&part)),
        ));
    };
    let kind = match obj.get("type").and_then(Value::as_str) {
        Some(k) => k.to_owned(),
        None => return Err(DecodeError::new("type", "is required on a content part")),
    };
    match kind.as_str() {
        "input_text" | "output_text" => {
            let text = super::take_string(&mut obj, "text")?;
            obj.remove("type");
            // Output annotations and logprobs describe an earlier answer, not this input.
            obj.remove("annotations");
            obj.remove("logprobs");
            Ok(Part::Text {
                text,
                extra: Extra::new(DIALECT, obj),
            })
        }
        "input_image" if matches!(obj.get("image_url"), Some(Value::String(_))) => {
            let url = super::take_string(&mut obj, "image_url")?;
            obj.remove("type");
            Ok(Part::Image {
                source: ImageSource::from_url(&url),
                extra: Extra::new(DIALECT, obj),
            })
        }
        "input_image" if !obj.contains_key("file_id") => Err(DecodeError::new(
            "image_url",
            "is required on an input_image without a file_id",
        )),
        // Uploaded files live at OpenAI: a Responses upstream can read them, no other can.
        _ => Ok(Part::Opaque {
            dialect: DIALECT,
            value: Value::Object(obj),
        }),
    }
}

/// A function tool, or the raw value of a built-in one (`web_search`, `file_search`, ...).
fn decode_tool(t: Value) -> Result<Result<Tool, Value>, DecodeError> {
    let Value::Object(mut obj) = t else {
        return Err(DecodeError::new(
            "",
            format!("expected a tool object, found {}", json_type(&t)),
        ));
    };
    match obj.get("type").and_then(Value::as_str) {
        Some("function") => {}
        Some(_) => return Ok(Err(Value::Object(obj))),
        None => return Err(DecodeError::new("type", "is required on a tool")),
    }
    obj.remove("type");
    let name = super::take_string(&mut obj, "name")?;
    let description = match obj.remove("description") {
        Some(Value::String(s)) => Some(s),
        None | Some(Value::Null) => None,
        Some(other) => {
            return Err(DecodeError::new(
                "description",
                format!("expected a string, found {}", json_type(&other)),
            ));
        }
    };
    let parameters = match obj.remove("parameters") {
        None | Some(Value::Null) => json!({"type": "object"}),
        Some(p) => p,
    };
    Ok(Ok(Tool {
        name,
        description,
        parameters,
        extra: Extra::new(DIALECT, obj),
    }))
}

fn decode_tool_choice(v: &Value) -> Option<ToolChoice> {
    match v {
        Value::String(s) => match s.as_str() {
            "auto" => Some(ToolChoice::Auto),
            "none" => Some(ToolChoice::None),
            "required" => Some(ToolChoice::Required),
            _ => None,
        },
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => o
            .get("name")
            .and_then(Value::as_str)
            .map(|n| ToolChoice::Tool(n.to_owned())),
        _ => None,
    }
}

/// Why `request` can be served only by an upstream that speaks Responses (and keeps
/// OpenAI's server-side state), or `None` when any upstream can serve it.
pub fn needs_responses_upstream(r: &Request) -> Option<String> {
    // Only a Responses caller can send any of it; every other request leaves at once.
    if r.extra.dialect != Some(DIALECT) {
        return None;
    }
    if let Some(extra) = r.extra.for_dialect(DIALECT) {
        for key in ["previous_response_id", "conversation", "prompt"] {
            if extra.get(key).is_some_and(|v| !v.is_null()) {
                return Some(format!(
                    "`{key}` refers to state stored by OpenAI, and this gateway is stateless: send the whole conversation in `input` instead"
                ));
            }
        }
        if extra.get("background") == Some(&Value::Bool(true)) {
            return Some(
                "`background: true` needs a response stored for later retrieval, and this gateway is stateless".into(),
            );
        }
        if let Some(Value::Array(tools)) = extra.get("tools")
            && let Some(t) = tools.first()
        {
            let kind = t.get("type").and_then(Value::as_str).unwrap_or("?");
            return Some(format!(
                "the built-in tool {kind:?} runs inside OpenAI; only function tools can be sent to other providers"
            ));
        }
    }
    let referenced = r
        .messages
        .iter()
        .flat_map(|m| &m.content)
        .any(|p| matches!(p, Part::Opaque { dialect: DIALECT, value } if value.get("type").and_then(Value::as_str) == Some("item_reference")));
    referenced.then(|| {
        "an `item_reference` input item refers to state stored by OpenAI, and this gateway is stateless: send the item itself".into()
    })
}

// ---------------------------------------------------------------- canonical → caller

/// One item of a response's `output`, as the encoders build it.
enum Item {
    Message {
        id: String,
        text: String,
    },
    FunctionCall {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
    Reasoning {
        id: String,
        text: String,
    },
    /// An output item only a Responses upstream produces (a `web_search_call`, ...).
    Raw(Value),
}

impl Item {
    fn id(&self) -> &str {
        match self {
            Item::Message { id, .. }
            | Item::FunctionCall { id, .. }
            | Item::Reasoning { id, .. } => id,
            Item::Raw(_) => "",
        }
    }

    fn to_json(&self, status: &str) -> Value {
        match self {
            Item::Message { id, text } => json!({
                "type": "message",
                "id": id,
                "status": status,
                "role": "assistant",
                "content": if status == "in_progress" { json!([]) } else { json!([output_text(text)]) },
            }),
            Item::FunctionCall {
                id,
                call_id,
                name,
                arguments,
            } => json!({
                "type": "function_call",
                "id": id,
                "call_id": call_id,
                "name": name,
                "arguments": arguments,
                "status": status,
            }),
            Item::Reasoning { id, text } => json!({
                "type": "reasoning",
                "id": id,
                "summary": if status == "in_progress" { json!([]) } else { json!([summary_text(text)]) },
            }),
            Item::Raw(v) => v.clone(),
        }
    }
}

fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

fn summary_text(text: &str) -> Value {
    json!({"type": "summary_text", "text": text})
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "input_tokens_details": {
            "cached_tokens": u.cache_read_tokens,
            "cache_write_tokens": u.cache_write_tokens,
        },
        "output_tokens": u.output_tokens,
        "output_tokens_details": { "reasoning_tokens": u.reasoning_tokens },
        "total_tokens": u.input_tokens + u.output_tokens,
    })
}

/// `status` and `incomplete_details` for how the model stopped.
fn status_of(finish: &FinishReason) -> (&'static str, Value) {
    match finish {
        FinishReason::Length => ("incomplete", json!({"reason": "max_output_tokens"})),
        FinishReason::ContentFilter => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// The `response` object. The request's settings are not known here; the fields the SDK
/// requires get the API's defaults.
struct ResponseObject<'a> {
    id: &'a str,
    model: &'a str,
    created_at: u64,
    status: &'a str,
    output: Vec<Value>,
    usage: Option<&'a Usage>,
    incomplete: Value,
    error: Value,
}

impl ResponseObject<'_> {
    fn into_json(self) -> Value {
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": self.status,
            "completed_at": (self.status == "completed").then(super::unix_now),
            "error": self.error,
            "incomplete_details": self.incomplete,
            "instructions": null,
            "max_output_tokens": null,
            "model": self.model,
            "output": self.output,
            "parallel_tool_calls": true,
            "previous_response_id": null,
            "reasoning": null,
            "store": false,
            "temperature": null,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": null,
            "truncation": "disabled",
            "usage": self.usage.map(usage_json),
            "metadata": {},
        })
    }
}

/// Encodes a complete answer as a `response` object.
pub fn encode_response(r: &Response) -> Bytes {
    let mut items: Vec<Item> = Vec::new();
    for p in &r.content {
        match p {
            Part::Text { text, .. } => match items.last_mut() {
                Some(Item::Message { text: t, .. }) => t.push_str(text),
                _ => items.push(Item::Message {
                    id: super::new_id("msg_"),
                    text: text.clone(),
                }),
            },
            Part::Reasoning { text, .. } => match items.last_mut() {
                Some(Item::Reasoning { text: t, .. }) => t.push_str(text),
                _ => items.push(Item::Reasoning {
                    id: super::new_id("rs_"),
                    text: text.clone(),
                }),
            },
            Part::ToolCall(c) => items.push(Item::FunctionCall {
                id: super::new_id("fc_"),
                call_id: super::id_or_new(&c.id, "call_"),
                name: c.name.clone(),
                arguments: c.arguments.clone(),
            }),
            Part::Opaque {
                dialect: DIALECT,
                value,
            } => items.push(Item::Raw(value.clone())),
            _ => {}
        }
    }
    let (status, incomplete) = status_of(&r.finish);
    let id = super::id_with_prefix(&r.id, "resp_");
    let body = ResponseObject {
        id: &id,
        model: &r.model,
        created_at: super::unix_now(),
        status,
        output: items.iter().map(|i| i.to_json("completed")).collect(),
        usage: Some(&r.usage),
        incomplete,
        error: Value::Null,
    }
    .into_json();
    Bytes::from(body.to_string())
}

/// `response.output_text.delta`, nearly every event of a stream.
#[derive(Serialize)]
struct TextDeltaEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    content_index: u32,
    delta: &'a str,
    logprobs: [(); 0],
}

/// `response.function_call_arguments.delta` and `response.reasoning_summary_text.delta`.
#[derive(Serialize)]
struct ItemDeltaEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary_index: Option<u32>,
    delta: &'a str,
}

/// Re-encodes canonical stream events as Responses SSE events (`event:` name plus a `data:`
/// object with the same `type` and a `sequence_number`), ending with `response.completed`,
/// `response.incomplete` or `response.failed` carrying the whole response.
pub struct StreamEncoder {
    id: String,
    model: String,
    created_at: u64,
    seq: u64,
    started: bool,
    /// Set once the final event is written; later events are dropped.
    done: bool,
    items: Vec<Item>,
    /// The open message or reasoning item (output index); text and reasoning append to it.
    open: Option<usize>,
    /// Open function calls: canonical tool index → output index.
    open_calls: Vec<(u32, usize)>,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
}

impl Default for StreamEncoder {
    fn default() -> Self {
        StreamEncoder {
            id: String::new(),
            model: String::new(),
            created_at: super::unix_now(),
            seq: 0,
            started: false,
            done: false,
            items: Vec::new(),
            open: None,
            open_calls: Vec::new(),
            usage: None,
            finish: None,
        }
    }
}

impl StreamEncoder {
    pub fn new() -> Self {
        Self::default()
    }

    fn next_seq(&mut self) -> u64 {
        let s = self.seq;
        self.seq += 1;
        s
    }

    /// Writes a rare event whose shape varies: `fields` gets `type` and `sequence_number`.
    fn event(&mut self, out: &mut Vec<u8>, name: &'static str, fields: Value) {
        let mut obj = Map::new();
        obj.insert("type".into(), name.into());
        obj.insert("sequence_number".into(), self.next_seq().into());
        if let Value::Object(f) = fields {
            obj.extend(f);
        }
        super::sse_event(out, name, &obj);
    }

    fn response(&self, status: &str, incomplete: Value, error: Value) -> Value {
        let item_status = if status == "in_progress" {
            "in_progress"
        } else {
            "completed"
        };
        ResponseObject {
            id: &self.id,
            model: &self.model,
            created_at: self.created_at,
            status,
            output: self.items.iter().map(|i| i.to_json(item_status)).collect(),
            usage: self.usage.as_ref().filter(|_| status != "in_progress"),
            incomplete,
            error,
        }
        .into_json()
    }

    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        if self.id.is_empty() {
            self.id = super::new_id("resp_");
        }
        let r = self.response("in_progress", Value::Null, Value::Null);
        self.event(out, "response.created", json!({"response": r}));
        self.event(out, "response.in_progress", json!({"response": r}));
    }

    fn add_item(&mut self, out: &mut Vec<u8>, item: Item) -> usize {
        let index = self.items.len();
        let json = item.to_json("in_progress");
        self.items.push(item);
        self.event(
            out,
            "response.output_item.added",
            json!({"output_index": index, "item": json}),
        );
        index
    }

    /// Closes the open message or reasoning item, if any.
    fn close_open(&mut self, out: &mut Vec<u8>) {
        let Some(index) = self.open.take() else {
            return;
        };
        let (id, text, is_message) = match &self.items[index] {
            Item::Message { id, text } => (id.clone(), text.clone(), true),
            Item::Reasoning { id, text } => (id.clone(), text.clone(), false),
            _ => return,
        };
        if is_message {
            self.event(
                out,
                "response.output_text.done",
                json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
            );
            self.event(
                out,
                "response.content_part.done",
                json!({"item_id": id, "output_index": index, "content_index": 0, "part": output_text(&text)}),
            );
        } else {
            self.event(
                out,
                "response.reasoning_summary_text.done",
                json!({"item_id": id, "output_index": index, "summary_index": 0, "text": text}),
            );
            self.event(
                out,
                "response.reasoning_summary_part.done",
                json!({"item_id": id, "output_index": index, "summary_index": 0, "part": summary_text(&text)}),
            );
        }
        let item = self.items[index].to_json("completed");
        self.event(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
    }

    /// The open item of the wanted kind, opening one (and closing another) if needed.
    fn open_text_item(&mut self, out: &mut Vec<u8>, message: bool) -> usize {
        if let Some(i) = self.open {
            if matches!(self.items[i], Item::Message { .. }) == message {
                return i;
            }
            self.close_open(out);
        }
        let index = if message {
            let id = super::new_id("msg_");
            let index = self.add_item(
                out,
                Item::Message {
                    id: id.clone(),
                    text: String::new(),
                },
            );
            self.event(
                out,
                "response.content_part.added",
                json!({"item_id": id, "output_index": index, "content_index": 0, "part": output_text("")}),
            );
            index
        } else {
            let id = super::new_id("rs_");
            let index = self.add_item(
                out,
                Item::Reasoning {
                    id: id.clone(),
                    text: String::new(),
                },
            );
            self.event(
                out,
                "response.reasoning_summary_part.added",
                json!({"item_id": id, "output_index": index, "summary_index": 0, "part": summary_text("")}),
            );
            index
        };
        self.open = Some(index);
        index
    }

    fn close_call(&mut self, out: &mut Vec<u8>, tool_index: u32) {
        let Some(pos) = self.open_calls.iter().position(|c| c.0 == tool_index) else {
            return;
        };
        let (_, index) = self.open_calls.remove(pos);
        let (id, arguments) = match &self.items[index] {
            Item::FunctionCall { id, arguments, .. } => (id.clone(), arguments.clone()),
            _ => return,
        };
        self.event(
            out,
            "response.function_call_arguments.done",
            json!({"item_id": id, "output_index": index, "arguments": arguments}),
        );
        let item = self.items[index].to_json("completed");
        self.event(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        );
    }

    fn close_all(&mut self, out: &mut Vec<u8>) {
        self.close_open(out);
        while let Some(&(tool_index, _)) = self.open_calls.first() {
            self.close_call(out, tool_index);
        }
    }

    pub fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        match event {
            StreamEvent::Start { id, model } => {
                if !self.started {
                    self.id = super::id_with_prefix(id, "resp_");
                    self.model.clone_from(model);
                }
                self.ensure_started(out);
            }
            StreamEvent::TextDelta(t) => {
                self.ensure_started(out);
                let index = self.open_text_item(out, true);
                if let Item::Message { text, .. } = &mut self.items[index] {
                    text.push_str(t);
                }
                let seq = self.next_seq();
                super::sse_event(
                    out,
                    "response.output_text.delta",
                    &TextDeltaEvent {
                        kind: "response.output_text.delta",
                        sequence_number: seq,
                        item_id: self.items[index].id(),
                        output_index: index,
                        content_index: 0,
                        delta: t,
                        logprobs: [],
                    },
                );
            }
            StreamEvent::ReasoningDelta(t) => {
                self.ensure_started(out);
                let index = self.open_text_item(out, false);
                if let Item::Reasoning { text, .. } = &mut self.items[index] {
                    text.push_str(t);
                }
                self.item_delta(
                    out,
                    "response.reasoning_summary_text.delta",
                    index,
                    Some(0),
                    t,
                );
            }
            StreamEvent::ReasoningSignature(_) => {}
            StreamEvent::ToolCallStart { index, id, name } => {
                self.ensure_started(out);
                self.close_open(out);
                let output_index = self.add_item(
                    out,
                    Item::FunctionCall {
                        id: super::new_id("fc_"),
                        call_id: super::id_or_new(id, "call_"),
                        name: name.clone(),
                        arguments: String::new(),
                    },
                );
                self.open_calls.push((*index, output_index));
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                let Some(&(_, output_index)) = self.open_calls.iter().find(|c| c.0 == *index)
                else {
                    return;
                };
                if let Item::FunctionCall { arguments: a, .. } = &mut self.items[output_index] {
                    a.push_str(arguments);
                }
                self.item_delta(
                    out,
                    "response.function_call_arguments.delta",
                    output_index,
                    None,
                    arguments,
                );
            }
            StreamEvent::ToolCallEnd { index } => self.close_call(out, *index),
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Finish(f) => {
                self.ensure_started(out);
                self.close_all(out);
                self.finish = Some(f.clone());
            }
            StreamEvent::Error(message) => {
                self.ensure_started(out);
                self.close_all(out);
                self.done = true;
                let r = self.response(
                    "failed",
                    Value::Null,
                    json!({"code": "server_error", "message": message}),
                );
                self.event(out, "response.failed", json!({"response": r}));
            }
        }
    }

    fn item_delta(
        &mut self,
        out: &mut Vec<u8>,
        name: &'static str,
        index: usize,
        summary_index: Option<u32>,
        delta: &str,
    ) {
        let seq = self.next_seq();
        super::sse_event(
            out,
            name,
            &ItemDeltaEvent {
                kind: name,
                sequence_number: seq,
                item_id: self.items[index].id(),
                output_index: index,
                summary_index,
                delta,
            },
        );
    }

    /// Closes a stream that ended normally with the whole response and its usage.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.ensure_started(out);
        self.close_all(out);
        self.done = true;
        let (status, incomplete) = status_of(self.finish.as_ref().unwrap_or(&FinishReason::Stop));
        let name = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        let r = self.response(status, incomplete, Value::Null);
        self.event(out, name, json!({"response": r}));
    }
}

// ---------------------------------------------------------------- canonical → upstream

/// Encodes a canonical request as a Responses body for `model`.
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
    if let Some(t) = r.temperature {
        body.insert("temperature".into(), t.into());
    }
    if let Some(t) = r.top_p {
        body.insert("top_p".into(), t.into());
    }
    let mut tools: Vec<Value> = r
        .tools
        .iter()
        .map(|t| {
            let mut o = super::tool_declaration(t, DIALECT, "parameters", true);
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

// ---------------------------------------------------------------- upstream → canonical

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
            .map(super::error_message)
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
                    .map(|err| super::error_message(&err))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn events(out: &[u8]) -> Vec<(String, Value)> {
        let text = std::str::from_utf8(out).unwrap();
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (name, data) = e.split_once('\n').unwrap();
                let name = name.strip_prefix("event: ").unwrap().to_owned();
                let data: Value =
                    serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!(data["type"], name.as_str(), "{data}");
                (name, data)
            })
            .collect()
    }

    fn encode_all(evs: &[StreamEvent]) -> Vec<u8> {
        let mut e = StreamEncoder::new();
        let mut out = Vec::new();
        for ev in evs {
            e.encode(ev, &mut out);
        }
        e.finish(&mut out);
        out
    }

    #[test]
    fn decodes_string_input_and_instructions() {
        let r = decode_request(
            br#"{"model":"m","input":"hi","instructions":"be brief","max_output_tokens":9,"temperature":0.2,"stream":true,"store":false,"metadata":{"k":"v"}}"#,
        )
        .unwrap();
        assert_eq!(r.messages.len(), 2);
        assert_eq!(r.messages[0].role, Role::System);
        assert!(matches!(&r.messages[1].content[0], Part::Text { text, .. } if text == "hi"));
        assert_eq!(r.max_tokens, Some(9));
        assert!(r.stream);
        let extra = r.extra.for_dialect(DIALECT).unwrap();
        assert_eq!(extra["metadata"]["k"], "v");
        assert_eq!(extra["store"], false);
        // Replayed to a Responses upstream: instructions stay instructions.
        let out = encode_request(&r, "up");
        assert_eq!(out["instructions"], "be brief");
        assert_eq!(out["input"][0]["content"][0]["type"], "input_text");
        assert_eq!(out["max_output_tokens"], 9);
        assert_eq!(out["metadata"]["k"], "v");
        assert_eq!(out["model"], "up");
    }

    #[test]
    fn decodes_items_tools_images_and_outputs() {
        let body = br#"{"model":"m","input":[
            {"role":"developer","content":"rules"},
            {"type":"message","role":"user","content":[{"type":"input_text","text":"look"},{"type":"input_image","image_url":"data:image/png;base64,AAAA","detail":"low"},{"type":"input_file","file_id":"file-1"}]},
            {"type":"reasoning","id":"rs_1","summary":[]},
            {"type":"function_call","call_id":"c1","name":"look","arguments":"{\"x\":1}"},
            {"type":"function_call_output","call_id":"c1","output":"a cat"},
            {"role":"assistant","content":[{"type":"output_text","text":"A cat.","annotations":[]}]}],
            "tools":[{"type":"function","name":"look","description":"d","parameters":{"type":"object"},"strict":true},{"type":"web_search"}],
            "tool_choice":{"type":"function","name":"look"},"parallel_tool_calls":false}"#;
        let r = decode_request(body).unwrap();
        let roles: Vec<Role> = r.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::System,
                Role::User,
                Role::Assistant,
                Role::Tool,
                Role::Assistant
            ]
        );
        assert!(
            matches!(&r.messages[1].content[1], Part::Image { source: ImageSource::Base64 { media_type, .. }, .. } if media_type == "image/png")
        );
        assert!(matches!(&r.messages[1].content[2], Part::Opaque { .. }));
        // The reasoning item and the call it led to are one assistant turn.
        assert!(matches!(&r.messages[2].content[0], Part::Opaque { .. }));
        assert!(
            matches!(&r.messages[2].content[1], Part::ToolCall(c) if c.id == "c1" && c.arguments == "{\"x\":1}")
        );
        assert!(
            matches!(&r.messages[3].content[0], Part::ToolResult { call_id, content, .. } if call_id == "c1" && content.len() == 1)
        );
        assert_eq!(r.tools.len(), 1);
        assert_eq!(
            r.tools[0].extra.for_dialect(DIALECT).unwrap()["strict"],
            true
        );
        assert_eq!(r.tool_choice, Some(ToolChoice::Tool("look".into())));
        assert_eq!(r.parallel_tool_calls, Some(false));
        assert!(needs_responses_upstream(&r).unwrap().contains("web_search"));

        // Back out to a Responses upstream, item by item.
        let out = encode_request(&r, "up");
        let input = out["input"].as_array().unwrap();
        let types: Vec<&str> = input.iter().map(|i| i["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "message",
                "message",
                "reasoning",
                "function_call",
                "function_call_output",
                "message"
            ]
        );
        assert_eq!(input[0]["role"], "developer");
        assert_eq!(input[1]["content"][1]["detail"], "low");
        assert_eq!(input[1]["content"][2]["file_id"], "file-1");
        assert_eq!(input[4]["output"], "a cat");
        assert_eq!(input[5]["content"][0]["type"], "output_text");
        assert_eq!(out["tools"][0]["strict"], true);
        assert_eq!(out["tools"][1]["type"], "web_search");
        assert_eq!(out["tool_choice"]["name"], "look");
        assert!(out.get("store").is_none());
    }

    #[test]
    fn stateful_requests_need_a_responses_upstream() {
        let plain = decode_request(br#"{"model":"m","input":"hi","store":true}"#).unwrap();
        assert_eq!(needs_responses_upstream(&plain), None);
        let prev = decode_request(br#"{"model":"m","input":"hi","previous_response_id":"resp_1"}"#)
            .unwrap();
        assert!(
            needs_responses_upstream(&prev)
                .unwrap()
                .contains("stateless")
        );
        // No input at all is fine when a stored conversation stands in for it.
        let only_prev =
            decode_request(br#"{"model":"m","previous_response_id":"resp_1"}"#).unwrap();
        assert!(needs_responses_upstream(&only_prev).is_some());
        let reference =
            decode_request(br#"{"model":"m","input":[{"type":"item_reference","id":"msg_1"}]}"#)
                .unwrap();
        assert!(
            needs_responses_upstream(&reference)
                .unwrap()
                .contains("item_reference")
        );
    }

    #[test]
    fn bad_requests_say_where() {
        let cases: [(&[u8], &str); 9] = [
            (br#"{"input":"hi"}"#, "model"),
            (
                br#"{"model":"m","input":5}"#,
                "input: expected a string or an array",
            ),
            (br#"{"model":"m"}"#, "input: is required"),
            (
                br#"{"model":"m","input":[{"content":"x"}]}"#,
                "input[0].type",
            ),
            (
                br#"{"model":"m","input":[{"role":"robot","content":"x"}]}"#,
                "input[0].role",
            ),
            (
                br#"{"model":"m","input":[{"role":"user","content":[{"type":"input_text"}]}]}"#,
                "input[0].content[0].text",
            ),
            (
                br#"{"model":"m","input":[{"type":"function_call","name":"f"}]}"#,
                "input[0].call_id",
            ),
            (
                br#"{"model":"m","input":"x","tools":[{"type":"function"}]}"#,
                "tools[0].name",
            ),
            (
                br#"{"model":"m","input":"x","tool_choice":5}"#,
                "tool_choice",
            ),
        ];
        for (body, want) in cases {
            let e = decode_request(body).unwrap_err().to_string();
            assert!(e.contains(want), "{e} lacks {want}");
        }
    }

    #[test]
    fn encodes_text_calls_reasoning_and_usage() {
        let r = Response {
            id: "chatcmpl-1".into(),
            model: "m".into(),
            content: vec![
                Part::Reasoning {
                    text: "thinking".into(),
                    signature: None,
                },
                Part::text("Hello "),
                Part::text("there."),
                Part::ToolCall(ToolCall {
                    id: "c1".into(),
                    name: "f".into(),
                    arguments: "{}".into(),
                }),
            ],
            finish: FinishReason::ToolCalls,
            usage: Usage {
                input_tokens: 10,
                cache_read_tokens: 4,
                output_tokens: 5,
                reasoning_tokens: 2,
                ..Default::default()
            },
        };
        let v: Value = serde_json::from_slice(&encode_response(&r)).unwrap();
        assert!(v["id"].as_str().unwrap().starts_with("resp_"));
        assert_eq!(v["object"], "response");
        assert_eq!(v["status"], "completed");
        assert_eq!(v["incomplete_details"], Value::Null);
        let output = v["output"].as_array().unwrap();
        assert_eq!(output.len(), 3);
        assert_eq!(output[0]["type"], "reasoning");
        assert_eq!(output[0]["summary"][0]["text"], "thinking");
        assert_eq!(output[1]["content"][0]["text"], "Hello there.");
        assert_eq!(output[2]["type"], "function_call");
        assert_eq!(output[2]["call_id"], "c1");
        assert!(output[2]["id"].as_str().unwrap().starts_with("fc_"));
        assert_eq!(v["usage"]["input_tokens"], 10);
        assert_eq!(v["usage"]["input_tokens_details"]["cached_tokens"], 4);
        assert_eq!(v["usage"]["output_tokens_details"]["reasoning_tokens"], 2);
        assert_eq!(v["usage"]["total_tokens"], 15);
        for key in ["created_at", "parallel_tool_calls", "tool_choice", "tools"] {
            assert!(v.get(key).is_some(), "{key}");
        }

        // A Responses upstream's answer decodes back to the same content.
        let back = decode_response(&encode_response(&r)).unwrap();
        assert_eq!(back.finish, FinishReason::ToolCalls);
        assert_eq!(back.usage, r.usage);
        assert!(matches!(&back.content[0], Part::Reasoning { text, .. } if text == "thinking"));
        assert!(matches!(&back.content[1], Part::Text { text, .. } if text == "Hello there."));
        assert!(matches!(&back.content[2], Part::ToolCall(c) if c.id == "c1" && c.name == "f"));

        let cut = Response {
            finish: FinishReason::Length,
            ..r
        };
        let v: Value = serde_json::from_slice(&encode_response(&cut)).unwrap();
        assert_eq!(v["status"], "incomplete");
        assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(
            decode_response(&encode_response(&cut)).unwrap().finish,
            FinishReason::Length
        );
    }

    #[test]
    fn stream_encoder_text_events_in_order() {
        let out = encode_all(&[
            StreamEvent::Start {
                id: "x".into(),
                model: "m".into(),
            },
            StreamEvent::TextDelta("Hel".into()),
            StreamEvent::TextDelta("lo".into()),
            StreamEvent::Finish(FinishReason::Stop),
            StreamEvent::Usage(Usage {
                input_tokens: 3,
                output_tokens: 2,
                ..Default::default()
            }),
        ]);
        let evs = events(&out);
        let names: Vec<&str> = evs.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, (_, data)) in evs.iter().enumerate() {
            assert_eq!(data["sequence_number"], i as u64);
        }
        let item_id = evs[2].1["item"]["id"].as_str().unwrap();
        assert_eq!(evs[4].1["item_id"], item_id);
        assert_eq!(evs[4].1["output_index"], 0);
        assert_eq!(evs[4].1["content_index"], 0);
        assert_eq!(evs[4].1["delta"], "Hel");
        assert_eq!(evs[6].1["text"], "Hello");
        let done = &evs[9].1["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(done["usage"]["total_tokens"], 5);
        assert_eq!(done["id"], evs[0].1["response"]["id"]);
        assert!(!out.windows(6).any(|w| w == b"[DONE]"));
    }

    #[test]
    fn stream_encoder_tool_call_events() {
        let out = encode_all(&[
            StreamEvent::Start {
                id: "x".into(),
                model: "m".into(),
            },
            StreamEvent::TextDelta("Let me check.".into()),
            StreamEvent::ToolCallStart {
                index: 0,
                id: "c1".into(),
                name: "get_weather".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"city\":".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "\"Paris\"}".into(),
            },
            StreamEvent::ToolCallEnd { index: 0 },
            StreamEvent::Finish(FinishReason::ToolCalls),
        ]);
        let evs = events(&out);
        let names: Vec<&str> = evs.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            &names[7..],
            [
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, (_, data)) in evs.iter().enumerate() {
            assert_eq!(data["sequence_number"], i as u64);
        }
        let added = &evs[8].1;
        assert_eq!(added["output_index"], 1);
        assert_eq!(added["item"]["type"], "function_call");
        assert_eq!(added["item"]["call_id"], "c1");
        assert_eq!(added["item"]["status"], "in_progress");
        assert_eq!(evs[9].1["item_id"], added["item"]["id"]);
        assert_eq!(evs[11].1["arguments"], "{\"city\":\"Paris\"}");
        let done = &evs[13].1["response"];
        assert_eq!(done["output"][1]["name"], "get_weather");
        assert_eq!(done["output"][1]["arguments"], "{\"city\":\"Paris\"}");

        // A Responses upstream's stream decodes back into the same canonical events.
        let mut d = StreamDecoder::new();
        let mut back = Vec::new();
        for (_, data) in &evs {
            d.decode(&data.to_string(), &mut back).unwrap();
        }
        assert!(d.finished());
        assert!(matches!(&back[0], StreamEvent::Start { model, .. } if model == "m"));
        assert_eq!(back[1], StreamEvent::TextDelta("Let me check.".into()));
        assert_eq!(
            back[2],
            StreamEvent::ToolCallStart {
                index: 0,
                id: "c1".into(),
                name: "get_weather".into()
            }
        );
        assert_eq!(
            back[4],
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "\"Paris\"}".into()
            }
        );
        assert_eq!(back[5], StreamEvent::ToolCallEnd { index: 0 });
        assert_eq!(back[6], StreamEvent::Finish(FinishReason::ToolCalls));
    }

    #[test]
    fn stream_errors_fail_the_response_once() {
        let mut e = StreamEncoder::new();
        let mut out = Vec::new();
        e.encode(&StreamEvent::TextDelta("par".into()), &mut out);
        e.encode(&StreamEvent::Error("overloaded".into()), &mut out);
        e.encode(&StreamEvent::TextDelta("more".into()), &mut out);
        e.finish(&mut out);
        let evs = events(&out);
        let last = &evs.last().unwrap().1;
        assert_eq!(last["type"], "response.failed");
        assert_eq!(last["response"]["status"], "failed");
        assert_eq!(last["response"]["error"]["message"], "overloaded");
        assert_eq!(
            evs.iter()
                .filter(|e| e.0.starts_with("response.failed"))
                .count(),
            1
        );
        assert!(!evs.iter().any(|e| e.1["delta"] == "more"));

        let mut d = StreamDecoder::new();
        let mut back = Vec::new();
        d.decode(&last.to_string(), &mut back).unwrap();
        assert_eq!(back, [StreamEvent::Error("overloaded".into())]);
        assert!(!d.finished());
    }

    #[test]
    fn foreign_callers_get_store_false_and_loose_tools() {
        let r = Request {
            model: "m".into(),
            messages: vec![
                Message::text(Role::System, "sys"),
                Message::text(Role::User, "hi"),
            ],
            tools: vec![Tool {
                name: "f".into(),
                description: None,
                parameters: json!({"type": "object"}),
                extra: Extra::default(),
            }],
            stream: true,
            ..Default::default()
        };
        let out = encode_request(&r, "gpt");
        assert_eq!(out["store"], false);
        assert_eq!(out["instructions"], "sys");
        assert_eq!(out["input"][0]["role"], "user");
        assert_eq!(out["tools"][0]["strict"], false);
        assert_eq!(out["stream"], true);
    }

    #[test]
    fn unknown_input_item_types_are_refused_by_name() {
        let e = decode_request(
            br#"{"model":"m","input":[{"type":"message","role":"user","content":"hi"},{"type":"telepathy_call","id":"x"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("input[1]") && e.contains("telepathy_call"),
            "{e}"
        );
        let ok = decode_request(
            br#"{"model":"m","input":[{"type":"web_search_call","id":"ws_1","status":"completed"}]}"#,
        );
        assert!(ok.is_ok());
    }
}
