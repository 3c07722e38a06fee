//! The caller side: a caller's request into canonical, answers and streams back out.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::*;
use crate::api::{DecodeError, parse_body};
use crate::canonical::{
    Extra, FinishReason, ImageSource, Message, Part, Request, Response, Role, StreamEvent, Tool,
    ToolCall, ToolChoice, Usage,
};
use crate::error::{Error, ErrorKind};

// ---------------------------------------------------------------- caller → canonical

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireRequest {
    contents: Vec<WireContent>,
    #[serde(default)]
    system_instruction: Option<WireContent>,
    #[serde(default)]
    tools: Option<Vec<Map<String, Value>>>,
    #[serde(default)]
    tool_config: Option<Value>,
    #[serde(default)]
    generation_config: Option<Map<String, Value>>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Deserialize)]
pub(super) struct WireContent {
    #[serde(default)]
    pub(super) role: Option<String>,
    #[serde(default)]
    pub(super) parts: Vec<Value>,
}

/// Ids for function calls that arrive without one, so the matching `functionResponse` (which
/// Gemini pairs by name and order) can name the call it answers in other dialects.
#[derive(Default)]
pub(super) struct CallIds {
    /// (id, name, answered) in the order the calls appeared.
    calls: Vec<(String, String, bool)>,
}

impl CallIds {
    fn call(&mut self, id: Option<String>, name: &str) -> String {
        let id = id
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| crate::api::new_id("call_"));
        self.calls.push((id.clone(), name.to_owned(), false));
        id
    }

    fn response(&mut self, id: Option<String>, name: &str) -> String {
        if let Some(id) = id.filter(|i| !i.is_empty()) {
            if let Some(c) = self.calls.iter_mut().find(|c| c.0 == id) {
                c.2 = true;
            }
            return id;
        }
        match self.calls.iter_mut().find(|c| !c.2 && c.1 == name) {
            Some(c) => {
                c.2 = true;
                c.0.clone()
            }
            None => crate::api::new_id("call_"),
        }
    }
}

/// Whether `path` is a Gemini method path (`/v1beta/models/{model}:{method}`), without
/// decoding the model: the route table asks this of every request that reaches it.
pub fn is_method_path(path: &str) -> bool {
    model_and_method(path).is_some()
}

/// The still-encoded model and the method of a Gemini method path.
fn model_and_method(path: &str) -> Option<(&str, &str)> {
    path.strip_prefix("/v1beta/models/")?.rsplit_once(':')
}

/// Parses a Gemini method path, `/v1beta/models/{model}:generateContent` (or
/// `:streamGenerateContent`). `None`: not a Gemini method path. The model may hold `:`
/// (`provider:model_id`) and `/`, so only the last `:` separates the method.
pub fn url_model(path: &str) -> Option<Result<crate::api::UrlModel, Error>> {
    let (model, method) = model_and_method(path)?;
    let stream = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => {
            return Some(Err(Error::new(
                ErrorKind::UnknownPath,
                format!(
                    "unknown method {method:?}; this gateway serves generateContent and streamGenerateContent"
                ),
            )));
        }
    };
    let model = crate::api::percent_decode(model);
    if model.is_empty() {
        return Some(Err(Error::new(
            ErrorKind::NotFound,
            "the URL names no model before the method (/v1beta/models/{model}:generateContent)",
        )));
    }
    Some(Ok(crate::api::UrlModel { model, stream }))
}

/// Decodes a caller's `generateContent` body; `model` and `stream` come from the URL
/// (`/v1beta/models/{model}:generateContent` or `:streamGenerateContent`).
pub fn decode_request(body: &[u8], model: &str, stream: bool) -> Result<Request, DecodeError> {
    let mut value: Value = parse_body(body)?;
    camel_keys(&mut value);
    let wire: WireRequest = crate::api::parse_value(value)?;
    if wire.contents.is_empty() {
        return Err(DecodeError::new(
            "contents",
            "must contain at least one content",
        ));
    }
    let mut ids = CallIds::default();
    let mut messages = Vec::with_capacity(wire.contents.len() + 1);
    if let Some(system) = wire.system_instruction {
        let parts = decode_parts(system.parts, &mut ids).map_err(|e| e.at("systemInstruction"))?;
        if !parts.is_empty() {
            messages.push(Message {
                role: Role::System,
                content: parts,
                extra: Extra::default(),
            });
        }
    }
    for (i, c) in wire.contents.into_iter().enumerate() {
        let at = format!("contents[{i}]");
        let role = match c.role.as_deref() {
            None | Some("user" | "") => Role::User,
            Some("model") => Role::Assistant,
            // Older clients send function results as role "function".
            Some("function" | "tool") => Role::User,
            Some(other) => {
                return Err(DecodeError::new(
                    format!("{at}.role"),
                    format!("unknown role {other:?}; expected user or model"),
                ));
            }
        };
        let content = decode_parts(c.parts, &mut ids).map_err(|e| e.at(format!("{at}.parts")))?;
        messages.push(Message {
            role,
            content,
            extra: Extra::default(),
        });
    }
    let mut rest = wire.rest;
    let mut tools = Vec::new();
    let mut other_tools = Vec::new();
    for (i, mut t) in wire.tools.unwrap_or_default().into_iter().enumerate() {
        match t.remove("functionDeclarations") {
            Some(Value::Array(decls)) => {
                for (j, d) in decls.into_iter().enumerate() {
                    let Value::Object(mut d) = d else {
                        return Err(DecodeError::new(
                            format!("tools[{i}].functionDeclarations[{j}]"),
                            "expected an object",
                        ));
                    };
                    let Some(Value::String(name)) = d.remove("name") else {
                        return Err(DecodeError::new(
                            format!("tools[{i}].functionDeclarations[{j}].name"),
                            "expected a string",
                        ));
                    };
                    let description = match d.remove("description") {
                        Some(Value::String(s)) => Some(s),
                        _ => None,
                    };
                    let parameters = d
                        .remove("parametersJsonSchema")
                        .or_else(|| d.remove("parameters"))
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
                    tools.push(Tool {
                        name,
                        description,
                        parameters,
                        extra: Extra::new(DIALECT, d),
                    });
                }
            }
            Some(_) => {
                return Err(DecodeError::new(
                    format!("tools[{i}].functionDeclarations"),
                    "expected an array",
                ));
            }
            None => {}
        }
        // Built-in tools (googleSearch, codeExecution) only mean something to Gemini.
        if !t.is_empty() {
            other_tools.push(Value::Object(t));
        }
    }
    if !other_tools.is_empty() {
        rest.insert("tools".into(), Value::Array(other_tools));
    }
    let tool_choice = match wire.tool_config {
        None => None,
        Some(cfg) => decode_tool_config(&cfg)?,
    };
    let mut generation = wire.generation_config.unwrap_or_default();
    let max_tokens = match generation.remove("maxOutputTokens") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            DecodeError::new(
                "generationConfig.maxOutputTokens",
                "expected a non-negative integer",
            )
        })?),
    };
    let number = |generation: &mut Map<String, Value>, key: &str| match generation.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| {
            DecodeError::new(format!("generationConfig.{key}"), "expected a number")
        }),
    };
    let temperature = number(&mut generation, "temperature")?;
    let top_p = number(&mut generation, "topP")?;
    let stop = match generation.remove("stopSequences") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .into_iter()
            .map(|s| match s {
                Value::String(s) => Ok(s),
                _ => Err(DecodeError::new(
                    "generationConfig.stopSequences",
                    "expected an array of strings",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(DecodeError::new(
                "generationConfig.stopSequences",
                "expected an array of strings",
            ));
        }
    };
    if !generation.is_empty() {
        rest.insert("generationConfig".into(), Value::Object(generation));
    }
    Ok(Request {
        model: model.to_owned(),
        messages,
        max_tokens,
        temperature,
        top_p,
        stop,
        stream,
        // Gemini streams always carry usageMetadata.
        include_usage: true,
        tools,
        tool_choice,
        parallel_tool_calls: None,
        extra: Extra::new(DIALECT, rest),
    })
}

/// Values whose keys are the caller's own (schema property names, call arguments, labels),
/// never field names to rename.
pub(super) const OPAQUE: &[&str] = &[
    "args",
    "response",
    "parameters",
    "parametersJsonSchema",
    "responseSchema",
    "responseJsonSchema",
    "labels",
];

/// Proto3 JSON, which Google's API speaks, accepts every field under its lowerCamelCase name
/// and under its original snake_case one, and the official Python SDK sends some of the latter
/// (`parameters_json_schema`). Renames snake_case keys to camelCase, outside `OPAQUE` values.
pub(super) fn camel_keys(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.keys().any(|k| k.contains('_')) {
                for (k, mut val) in std::mem::take(m) {
                    let k = if k.contains('_') { camel(&k) } else { k };
                    if !OPAQUE.contains(&k.as_str()) {
                        camel_keys(&mut val);
                    }
                    m.insert(k, val);
                }
            } else {
                for (k, val) in m.iter_mut() {
                    if !OPAQUE.contains(&k.as_str()) {
                        camel_keys(val);
                    }
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(camel_keys),
        _ => {}
    }
}

pub(super) fn camel(k: &str) -> String {
    let mut out = String::with_capacity(k.len());
    let mut upper = false;
    for (i, c) in k.chars().enumerate() {
        if c == '_' && i > 0 {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

pub(super) fn decode_tool_config(cfg: &Value) -> Result<Option<ToolChoice>, DecodeError> {
    let Some(fc) = cfg.get("functionCallingConfig") else {
        return Ok(None);
    };
    let allowed: Vec<&str> = fc
        .get("allowedFunctionNames")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    Ok(Some(
        match fc.get("mode").and_then(Value::as_str).unwrap_or("AUTO") {
            "AUTO" | "MODE_UNSPECIFIED" => ToolChoice::Auto,
            "NONE" => ToolChoice::None,
            "ANY" | "VALIDATED" if allowed.len() == 1 => ToolChoice::Tool(allowed[0].to_owned()),
            "ANY" | "VALIDATED" => ToolChoice::Required,
            other => {
                return Err(DecodeError::new(
                    "toolConfig.functionCallingConfig.mode",
                    format!("unknown mode {other:?}; expected AUTO, ANY, NONE or VALIDATED"),
                ));
            }
        },
    ))
}

pub(super) fn decode_parts(parts: Vec<Value>, ids: &mut CallIds) -> Result<Vec<Part>, DecodeError> {
    crate::api::decode_each(parts, |p| decode_part(p, ids))
}

pub(super) fn str_field(obj: &Map<String, Value>, key: &str) -> Option<String> {
    obj.get(key).and_then(Value::as_str).map(str::to_owned)
}

pub(super) fn decode_part(part: Value, ids: &mut CallIds) -> Result<Part, DecodeError> {
    let Value::Object(mut obj) = part else {
        return Err(DecodeError::new("", "expected a part object"));
    };
    if let Some(text) = obj.remove("text") {
        let Value::String(text) = text else {
            return Err(DecodeError::new("text", "expected a string"));
        };
        if obj.remove("thought").and_then(|v| v.as_bool()) == Some(true) {
            // Gemini's thoughtSignature is not Anthropic's signature; it cannot go there.
            return Ok(Part::Reasoning {
                text,
                signature: None,
            });
        }
        return Ok(Part::Text {
            text,
            extra: Extra::new(DIALECT, obj),
        });
    }
    if let Some(data) = obj.remove("inlineData") {
        let Value::Object(d) = data else {
            return Err(DecodeError::new("inlineData", "expected an object"));
        };
        let (Some(media_type), Some(data)) = (str_field(&d, "mimeType"), str_field(&d, "data"))
        else {
            return Err(DecodeError::new(
                "inlineData",
                "needs string fields mimeType and data",
            ));
        };
        return Ok(Part::Image {
            source: ImageSource::Base64 { media_type, data },
            extra: Extra::new(DIALECT, obj),
        });
    }
    if let Some(data) = obj.remove("fileData") {
        let Some(uri) = data.get("fileUri").and_then(Value::as_str) else {
            return Err(DecodeError::new("fileData.fileUri", "expected a string"));
        };
        return Ok(Part::Image {
            source: ImageSource::Url(uri.to_owned()),
            extra: Extra::new(DIALECT, obj),
        });
    }
    if let Some(call) = obj.remove("functionCall") {
        let Some(name) = call.get("name").and_then(Value::as_str) else {
            return Err(DecodeError::new("functionCall.name", "expected a string"));
        };
        let id = ids.call(
            call.get("id").and_then(Value::as_str).map(str::to_owned),
            name,
        );
        let arguments = call.get("args").cloned().unwrap_or_else(|| json!({}));
        return Ok(Part::ToolCall(ToolCall {
            id,
            name: name.to_owned(),
            arguments: arguments.to_string(),
        }));
    }
    if let Some(resp) = obj.remove("functionResponse") {
        let Some(name) = resp.get("name").and_then(Value::as_str) else {
            return Err(DecodeError::new(
                "functionResponse.name",
                "expected a string",
            ));
        };
        let call_id = ids.response(
            resp.get("id").and_then(Value::as_str).map(str::to_owned),
            name,
        );
        let response = resp.get("response").cloned().unwrap_or(Value::Null);
        // A response of `{"error": ...}` is how Gemini callers report a failed call.
        let is_error = response.get("error").is_some() && response.get("output").is_none();
        let text = match &response {
            Value::Object(o) if o.len() == 1 => match o.values().next() {
                Some(Value::String(s)) if o.contains_key("output") || o.contains_key("result") => {
                    s.clone()
                }
                _ => response.to_string(),
            },
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        return Ok(Part::ToolResult {
            call_id,
            content: vec![Part::text(text)],
            is_error,
            extra: Extra::default(),
        });
    }
    Ok(Part::Opaque {
        dialect: DIALECT,
        value: Value::Object(obj),
    })
}

// ---------------------------------------------------------------- canonical → caller

pub(super) fn finish_reason(f: &FinishReason) -> &'static str {
    match f {
        FinishReason::Stop | FinishReason::StopSequence | FinishReason::ToolCalls => "STOP",
        FinishReason::Length => "MAX_TOKENS",
        FinishReason::ContentFilter => "SAFETY",
        FinishReason::Other(_) => "OTHER",
    }
}

pub(super) fn usage_json(u: &Usage) -> Value {
    let candidates = u.output_tokens.saturating_sub(u.reasoning_tokens);
    let mut v = json!({
        "promptTokenCount": u.input_tokens,
        "candidatesTokenCount": candidates,
        "totalTokenCount": u.input_tokens + u.output_tokens,
    });
    // Gemini leaves these out when zero; so do we.
    if u.cache_read_tokens > 0 {
        v["cachedContentTokenCount"] = u.cache_read_tokens.into();
    }
    if u.reasoning_tokens > 0 {
        v["thoughtsTokenCount"] = u.reasoning_tokens.into();
    }
    v
}

pub(super) fn args_object(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        Ok(other) => json!({ "value": other }),
        // Keep what the model said visible rather than lose it.
        Err(_) => json!({ "_raw_arguments": arguments }),
    }
}

pub(super) fn function_call_part(id: &str, name: &str, arguments: &str) -> Value {
    json!({"functionCall": {"id": id, "name": name, "args": args_object(arguments)}})
}

/// Encodes a complete answer as a `GenerateContentResponse`.
pub fn encode_response(r: &Response) -> Bytes {
    let parts: Vec<Value> = r
        .content
        .iter()
        .filter_map(|p| match p {
            Part::Text { text, .. } => Some(json!({"text": text})),
            Part::Reasoning { text, .. } => Some(json!({"text": text, "thought": true})),
            Part::ToolCall(c) => Some(function_call_part(&c.id, &c.name, &c.arguments)),
            Part::Opaque {
                dialect: DIALECT,
                value,
            } => Some(value.clone()),
            _ => None,
        })
        .collect();
    let body = json!({
        "candidates": [{
            "content": {"role": "model", "parts": parts},
            "finishReason": finish_reason(&r.finish),
            "index": 0,
        }],
        "usageMetadata": usage_json(&r.usage),
        "modelVersion": r.model,
        "responseId": crate::api::id_or_new(&r.id, "resp_"),
    });
    Bytes::from(body.to_string())
}

/// Re-encodes canonical events as Gemini SSE: one `GenerateContentResponse` chunk per text
/// delta, a function call once its arguments are complete, and a last chunk carrying
/// `finishReason` and `usageMetadata`.
#[derive(Default)]
pub struct StreamEncoder {
    id: String,
    model: String,
    /// Tool calls whose arguments are still arriving: index → (id, name, arguments).
    calls: Vec<(u32, String, String, String)>,
    finish: Option<FinishReason>,
    usage: Usage,
}

impl StreamEncoder {
    /// An encoder for one stream to a Gemini caller.
    pub fn new() -> Self {
        Self::default()
    }

    fn chunk(&self, parts: Vec<Value>, out: &mut Vec<u8>) {
        let body = json!({
            "candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}],
            "modelVersion": self.model,
            "responseId": self.id,
        });
        crate::api::sse_data(out, &body);
    }

    fn flush_call(&mut self, index: u32, out: &mut Vec<u8>) {
        if let Some(pos) = self.calls.iter().position(|c| c.0 == index) {
            let (_, id, name, args) = self.calls.remove(pos);
            self.chunk(vec![function_call_part(&id, &name, &args)], out);
        }
    }

    /// Appends the SSE chunks for `event` to `out`.
    pub fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        if self.id.is_empty() {
            self.id = crate::api::new_id("resp_");
        }
        match event {
            StreamEvent::Start { id, model } => {
                if !id.is_empty() {
                    self.id = id.clone();
                }
                self.model = model.clone();
            }
            StreamEvent::TextDelta(t) => self.chunk(vec![json!({"text": t})], out),
            StreamEvent::ReasoningDelta(t) => {
                self.chunk(vec![json!({"text": t, "thought": true})], out);
            }
            StreamEvent::ReasoningSignature(_) => {}
            StreamEvent::ToolCallStart { index, id, name } => {
                self.calls
                    .push((*index, id.clone(), name.clone(), String::new()));
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                if let Some(c) = self.calls.iter_mut().find(|c| c.0 == *index) {
                    c.3.push_str(arguments);
                }
            }
            StreamEvent::ToolCallEnd { index } => self.flush_call(*index, out),
            StreamEvent::Usage(u) => self.usage = *u,
            StreamEvent::Finish(f) => self.finish = Some(f.clone()),
            StreamEvent::Error(message) => {
                crate::api::sse_data(
                    out,
                    &json!({"error": {"code": 502, "message": message, "status": "UNAVAILABLE"}}),
                );
            }
        }
    }

    /// Ends a stream that finished normally: pending calls, then finishReason and usage.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let pending: Vec<u32> = self.calls.iter().map(|c| c.0).collect();
        for index in pending {
            self.flush_call(index, out);
        }
        if self.id.is_empty() {
            self.id = crate::api::new_id("resp_");
        }
        let finish = self.finish.take().unwrap_or_default();
        let body = json!({
            "candidates": [{
                "content": {"role": "model", "parts": []},
                "finishReason": finish_reason(&finish),
                "index": 0,
            }],
            "usageMetadata": usage_json(&self.usage),
            "modelVersion": self.model,
            "responseId": self.id,
        });
        crate::api::sse_data(out, &body);
    }
}
