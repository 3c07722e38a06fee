//! A caller's Responses request into canonical (`decode_request`), and what only OpenAI's
//! stored state can serve (`needs_responses_upstream`).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{DIALECT, is_content_type};
use crate::api::{DecodeError, json_type, parse_body};
use crate::canonical::{
    Extra, ImageSource, Message, Part, Request, Role, Tool, ToolCall, ToolChoice,
};

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
                id: crate::api::take_string(&mut obj, "call_id")?,
                name: crate::api::take_string(&mut obj, "name")?,
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
            let call_id = crate::api::take_string(&mut obj, "call_id")?;
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

fn decode_message(mut obj: Map<String, Value>) -> Result<Message, DecodeError> {
    let role_name = crate::api::take_string(&mut obj, "role")?;
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
    crate::api::decode_each(parts, decode_part)
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
            let text = crate::api::take_string(&mut obj, "text")?;
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
            let url = crate::api::take_string(&mut obj, "image_url")?;
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
    let name = crate::api::take_string(&mut obj, "name")?;
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
