//! Google Gemini `generateContent`: wire handling and both directions of translation — a
//! caller's request (model and stream come from the URL) into canonical and answers back out
//! (`decode_request`, `encode_response`, `StreamEncoder`), and canonical requests out to a
//! Gemini upstream and its answers back in (`encode_request`, `decode_response`, `StreamDecoder`).

use std::collections::HashMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{DecodeError, parse_body};
use crate::canonical::{
    Dialect, Extra, FinishReason, ImageSource, Message, Part, Request, Response, Role, StreamEvent,
    Tool, ToolCall, ToolChoice, Usage,
};
use crate::error::{Error, ErrorKind};

const DIALECT: Dialect = Dialect::Gemini;

// ---------------------------------------------------------------- caller → canonical

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest {
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
struct WireContent {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    parts: Vec<Value>,
}

/// Ids for function calls that arrive without one, so the matching `functionResponse` (which
/// Gemini pairs by name and order) can name the call it answers in other dialects.
#[derive(Default)]
struct CallIds {
    /// (id, name, answered) in the order the calls appeared.
    calls: Vec<(String, String, bool)>,
}

impl CallIds {
    fn call(&mut self, id: Option<String>, name: &str) -> String {
        let id = id
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| super::new_id("call_"));
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
            None => super::new_id("call_"),
        }
    }
}

/// Where a Gemini upstream is called for `model_id`, and where it streams (another method
/// with `alt=sse`). A `/` inside a model id (tuned models) stays.
pub fn upstream_urls(base: &str, model_id: &str) -> (String, String) {
    (
        format!("{base}/models/{model_id}:generateContent"),
        format!("{base}/models/{model_id}:streamGenerateContent?alt=sse"),
    )
}

/// The header Google's SDKs send the API key in; it marks a caller of this dialect.
pub const KEY_HEADER: &str = "x-goog-api-key";

/// Parses a Gemini method path, `/v1beta/models/{model}:generateContent` (or
/// `:streamGenerateContent`). `None`: not a Gemini method path. The model may hold `:`
/// (`provider:model_id`) and `/`, so only the last `:` separates the method.
pub fn url_model(path: &str) -> Option<Result<super::UrlModel, Error>> {
    let rest = path.strip_prefix("/v1beta/models/")?;
    let (model, method) = rest.rsplit_once(':')?;
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
    let model = super::percent_decode(model);
    if model.is_empty() {
        return Some(Err(Error::new(
            ErrorKind::NotFound,
            "the URL names no model before the method (/v1beta/models/{model}:generateContent)",
        )));
    }
    Some(Ok(super::UrlModel { model, stream }))
}

/// Decodes a caller's `generateContent` body; `model` and `stream` come from the URL
/// (`/v1beta/models/{model}:generateContent` or `:streamGenerateContent`).
pub fn decode_request(body: &[u8], model: &str, stream: bool) -> Result<Request, DecodeError> {
    let mut value: Value = parse_body(body)?;
    camel_keys(&mut value);
    let wire: WireRequest = super::parse_value(value)?;
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
            None | Some("user") | Some("") => Role::User,
            Some("model") => Role::Assistant,
            // Older clients send function results as role "function".
            Some("function") | Some("tool") => Role::User,
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
const OPAQUE: &[&str] = &[
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
fn camel_keys(v: &mut Value) {
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

fn camel(k: &str) -> String {
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

fn decode_tool_config(cfg: &Value) -> Result<Option<ToolChoice>, DecodeError> {
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

fn decode_parts(parts: Vec<Value>, ids: &mut CallIds) -> Result<Vec<Part>, DecodeError> {
    parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| decode_part(p, ids).map_err(|e| e.at(format!("[{i}]"))))
        .collect()
}

fn str_field(obj: &Map<String, Value>, key: &str) -> Option<String> {
    obj.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn decode_part(part: Value, ids: &mut CallIds) -> Result<Part, DecodeError> {
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

fn finish_reason(f: &FinishReason) -> &'static str {
    match f {
        FinishReason::Stop | FinishReason::StopSequence | FinishReason::ToolCalls => "STOP",
        FinishReason::Length => "MAX_TOKENS",
        FinishReason::ContentFilter => "SAFETY",
        FinishReason::Other(_) => "OTHER",
    }
}

fn usage_json(u: &Usage) -> Value {
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

fn args_object(arguments: &str) -> Value {
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

fn function_call_part(id: &str, name: &str, arguments: &str) -> Value {
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
        "responseId": super::id_or_new(&r.id, "resp_"),
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
    pub fn new() -> Self {
        Self::default()
    }

    fn chunk(&self, parts: Vec<Value>, out: &mut Vec<u8>) {
        let body = json!({
            "candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}],
            "modelVersion": self.model,
            "responseId": self.id,
        });
        super::sse_data(out, &body);
    }

    fn flush_call(&mut self, index: u32, out: &mut Vec<u8>) {
        if let Some(pos) = self.calls.iter().position(|c| c.0 == index) {
            let (_, id, name, args) = self.calls.remove(pos);
            self.chunk(vec![function_call_part(&id, &name, &args)], out);
        }
    }

    pub fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        if self.id.is_empty() {
            self.id = super::new_id("resp_");
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
                self.chunk(vec![json!({"text": t, "thought": true})], out)
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
                super::sse_data(
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
            self.id = super::new_id("resp_");
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
        super::sse_data(out, &body);
    }
}

// ---------------------------------------------------------------- canonical → upstream

/// A MIME type for an image URL, from its extension; Gemini's `fileData` wants one.
fn mime_for_url(url: &str) -> &'static str {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    match path.rsplit('.').next() {
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("heic") => "image/heic",
        Some("pdf") => "application/pdf",
        _ => "image/jpeg",
    }
}

fn with_extra(v: Value, extra: &Extra) -> Value {
    super::with_extra(v, extra, DIALECT)
}

/// Text of a tool result as the object Gemini requires for `functionResponse.response`.
fn response_object(content: &[Part], is_error: bool) -> Value {
    let text: String = content
        .iter()
        .filter_map(|p| match p {
            Part::Text { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n");
    if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(&text) {
        return v;
    }
    if is_error {
        json!({ "error": text })
    } else {
        json!({ "output": text })
    }
}

fn encode_part(p: &Part, names: &HashMap<&str, &str>) -> Option<Value> {
    Some(match p {
        Part::Text { text, extra } => {
            if text.is_empty() {
                return None;
            }
            with_extra(json!({"text": text}), extra)
        }
        Part::Image { source, extra } => {
            let v = match source {
                ImageSource::Base64 { media_type, data } => {
                    json!({"inlineData": {"mimeType": media_type, "data": data}})
                }
                ImageSource::Url(u) => {
                    json!({"fileData": {"mimeType": mime_for_url(u), "fileUri": u}})
                }
            };
            with_extra(v, extra)
        }
        // Ids are left out: Gemini pairs calls and responses by name and order, and an id it
        // did not issue itself may be refused.
        Part::ToolCall(c) => {
            json!({"functionCall": {"name": c.name, "args": args_object(&c.arguments)}})
        }
        Part::ToolResult {
            call_id,
            content,
            is_error,
            ..
        } => {
            let name = names
                .get(call_id.as_str())
                .copied()
                .unwrap_or(call_id.as_str());
            json!({"functionResponse": {"name": name, "response": response_object(content, *is_error)}})
        }
        // Thoughts are the model's own; Gemini does not take them back as input.
        Part::Reasoning { .. } => return None,
        Part::Opaque {
            dialect: DIALECT,
            value,
        } => value.clone(),
        Part::Opaque { .. } => return None,
    })
}

/// Encodes a canonical request as a Gemini `generateContent` body. The model and whether to
/// stream are in the URL (see `router::Target`), not the body.
pub fn encode_request(r: &Request, _model: &str) -> Value {
    let mut body = Map::new();
    if let Some(extra) = r.extra.for_dialect(DIALECT) {
        body.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    // functionResponse needs the function's name; other dialects only carry the call id.
    let names: HashMap<&str, &str> = r
        .messages
        .iter()
        .flat_map(|m| &m.content)
        .filter_map(|p| match p {
            Part::ToolCall(c) => Some((c.id.as_str(), c.name.as_str())),
            _ => None,
        })
        .collect();
    let mut system = Vec::new();
    let mut contents: Vec<(&'static str, Vec<Value>)> = Vec::with_capacity(r.messages.len());
    for m in &r.messages {
        let role = match m.role {
            Role::System => {
                system.extend(m.content.iter().filter_map(|p| encode_part(p, &names)));
                continue;
            }
            Role::Assistant => "model",
            Role::User | Role::Tool => "user",
        };
        let parts: Vec<Value> = m
            .content
            .iter()
            .filter_map(|p| encode_part(p, &names))
            .collect();
        if parts.is_empty() {
            continue;
        }
        // Consecutive same-role turns fold into one, as Gemini expects alternating roles.
        match contents.last_mut() {
            Some((last, prev)) if *last == role => prev.extend(parts),
            _ => contents.push((role, parts)),
        }
    }
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({ "parts": system }));
    }
    body.insert(
        "contents".into(),
        contents
            .into_iter()
            .map(|(role, parts)| json!({"role": role, "parts": parts}))
            .collect(),
    );
    let mut generation = match body.remove("generationConfig") {
        Some(Value::Object(g)) => g,
        _ => Map::new(),
    };
    if let Some(n) = r.max_tokens {
        generation.insert("maxOutputTokens".into(), n.into());
    }
    if let Some(t) = r.temperature {
        generation.insert("temperature".into(), t.into());
    }
    if let Some(t) = r.top_p {
        generation.insert("topP".into(), t.into());
    }
    if !r.stop.is_empty() {
        generation.insert("stopSequences".into(), r.stop.clone().into());
    }
    if !generation.is_empty() {
        body.insert("generationConfig".into(), Value::Object(generation));
    }
    if !r.tools.is_empty() {
        let decls: Vec<Value> = r
            .tools
            .iter()
            .filter(|t| !t.parameters.is_null() || t.extra.dialect != Some(Dialect::Anthropic))
            // The JSON Schema as it came: Gemini's `parametersJsonSchema` takes it whole,
            // where `parameters` would reject keywords outside its OpenAPI subset.
            .map(|t| {
                Value::Object(super::tool_declaration(
                    t,
                    DIALECT,
                    "parametersJsonSchema",
                    false,
                ))
            })
            .collect();
        let mut tools = match body.remove("tools") {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        if !decls.is_empty() {
            tools.push(json!({ "functionDeclarations": decls }));
        }
        body.insert("tools".into(), Value::Array(tools));
    }
    let config = match &r.tool_choice {
        Some(ToolChoice::Auto) => Some(json!({"mode": "AUTO"})),
        Some(ToolChoice::None) => Some(json!({"mode": "NONE"})),
        Some(ToolChoice::Required) => Some(json!({"mode": "ANY"})),
        Some(ToolChoice::Tool(n)) => Some(json!({"mode": "ANY", "allowedFunctionNames": [n]})),
        None => None,
    };
    if let Some(c) = config
        && !r.tools.is_empty()
    {
        body.insert("toolConfig".into(), json!({ "functionCallingConfig": c }));
    }
    Value::Object(body)
}

// ---------------------------------------------------------------- upstream → canonical

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    tool_use_prompt_token_count: u64,
}

impl WireUsage {
    fn canonical(self) -> Usage {
        Usage {
            // promptTokenCount already includes the cached tokens (canonical's convention);
            // tool-use prompt tokens (e.g. search results) are billed as input too.
            input_tokens: self.prompt_token_count + self.tool_use_prompt_token_count,
            cache_read_tokens: self.cached_content_token_count,
            cache_write_tokens: 0,
            output_tokens: self.candidates_token_count + self.thoughts_token_count,
            reasoning_tokens: self.thoughts_token_count,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireResponse {
    #[serde(default)]
    candidates: Vec<WireCandidate>,
    #[serde(default)]
    usage_metadata: Option<WireUsage>,
    #[serde(default)]
    model_version: Option<String>,
    #[serde(default)]
    response_id: Option<String>,
    #[serde(default)]
    prompt_feedback: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireCandidate {
    #[serde(default)]
    content: Option<WireContent>,
    #[serde(default)]
    finish_reason: Option<String>,
}

fn decode_finish(s: &str, called_tools: bool) -> FinishReason {
    match s {
        "STOP" if called_tools => FinishReason::ToolCalls,
        "STOP" | "FINISH_REASON_UNSPECIFIED" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            FinishReason::ContentFilter
        }
        other => FinishReason::Other(other.to_owned()),
    }
}

/// A prompt blocked before generation comes back with no candidates, only `promptFeedback`.
fn blocked(feedback: &Option<Value>) -> bool {
    feedback
        .as_ref()
        .and_then(|f| f.get("blockReason"))
        .is_some()
}

/// Decodes a Gemini upstream's `GenerateContentResponse`.
pub fn decode_response(body: &[u8]) -> Result<Response, DecodeError> {
    let wire: WireResponse = parse_body(body)?;
    let mut content = Vec::new();
    let mut ids = CallIds::default();
    let mut finish = FinishReason::Stop;
    if let Some(c) = wire.candidates.into_iter().next() {
        if let Some(body) = c.content {
            content = decode_parts(body.parts, &mut ids)
                .map_err(|e| e.at("candidates[0].content.parts"))?;
        }
        let called = content.iter().any(|p| matches!(p, Part::ToolCall(_)));
        finish = decode_finish(c.finish_reason.as_deref().unwrap_or("STOP"), called);
    } else if blocked(&wire.prompt_feedback) {
        finish = FinishReason::ContentFilter;
    }
    Ok(Response {
        id: wire.response_id.unwrap_or_default(),
        model: wire.model_version.unwrap_or_default(),
        content,
        finish,
        usage: wire.usage_metadata.unwrap_or_default().canonical(),
    })
}

/// Turns a Gemini upstream's SSE chunks into canonical events; each `data:` is a whole
/// `GenerateContentResponse`, and a function call arrives whole in one of them.
#[derive(Default)]
pub struct StreamDecoder {
    started: bool,
    next_tool: u32,
    ids: CallIds,
    finished: bool,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn decode(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), DecodeError> {
        let chunk: WireResponse = serde_json::from_str(data)
            .map_err(|e| DecodeError::new("", format!("not a GenerateContentResponse: {e}")))?;
        if let Some(error) = chunk.error {
            out.push(StreamEvent::Error(super::error_message(&error)));
            return Ok(());
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: chunk.response_id.clone().unwrap_or_default(),
                model: chunk.model_version.clone().unwrap_or_default(),
            });
        }
        let mut finish = None;
        if let Some(c) = chunk.candidates.into_iter().next() {
            let parts = c.content.map(|c| c.parts).unwrap_or_default();
            for p in decode_parts(parts, &mut self.ids)
                .map_err(|e| e.at("candidates[0].content.parts"))?
            {
                match p {
                    Part::Text { text, .. } if !text.is_empty() => {
                        out.push(StreamEvent::TextDelta(text))
                    }
                    Part::Reasoning { text, .. } if !text.is_empty() => {
                        out.push(StreamEvent::ReasoningDelta(text))
                    }
                    Part::ToolCall(call) => {
                        let index = self.next_tool;
                        self.next_tool += 1;
                        out.push(StreamEvent::ToolCallStart {
                            index,
                            id: call.id,
                            name: call.name,
                        });
                        out.push(StreamEvent::ToolCallDelta {
                            index,
                            arguments: call.arguments,
                        });
                        out.push(StreamEvent::ToolCallEnd { index });
                    }
                    _ => {}
                }
            }
            finish = c
                .finish_reason
                .map(|f| decode_finish(&f, self.next_tool > 0));
        } else if blocked(&chunk.prompt_feedback) {
            finish = Some(FinishReason::ContentFilter);
        }
        if let Some(u) = chunk.usage_metadata {
            out.push(StreamEvent::Usage(u.canonical()));
        }
        if let Some(f) = finish {
            out.push(StreamEvent::Finish(f));
            self.finished = true;
        }
        Ok(())
    }

    /// Whether a chunk with a `finishReason` arrived (a stream that ends without one was cut).
    pub fn finished(&self) -> bool {
        self.finished
    }
}

/// Google's error shape: `{"error": {code, message, status}}`.
pub fn error_body(status: http::StatusCode, message: &str) -> Value {
    json!({
        "error": {
            "code": status.as_u16(),
            "message": message,
            "status": rpc_status(status),
        }
    })
}

/// Google's canonical error code name for an HTTP status (google.rpc.Code).
fn rpc_status(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 413 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        405 | 501 => "UNIMPLEMENTED",
        408 | 504 => "DEADLINE_EXCEEDED",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        503 | 502 => "UNAVAILABLE",
        400..=499 => "FAILED_PRECONDITION",
        _ => "INTERNAL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_models_keep_colons_and_slashes_in_the_model() {
        let ok = |p: &str| url_model(p).unwrap().unwrap();
        let m = ok("/v1beta/models/gemini-2.5-flash:generateContent");
        assert_eq!((m.model.as_str(), m.stream), ("gemini-2.5-flash", false));
        let m = ok("/v1beta/models/google:gemini-2.5-pro:streamGenerateContent");
        assert_eq!(
            (m.model.as_str(), m.stream),
            ("google:gemini-2.5-pro", true)
        );
        let m = ok("/v1beta/models/openrouter:openai/gpt-4o:generateContent");
        assert_eq!(m.model, "openrouter:openai/gpt-4o");
        assert_eq!(
            ok("/v1beta/models/up%3Agem:generateContent").model,
            "up:gem"
        );
        assert!(url_model("/v1beta/models/m:countTokens").unwrap().is_err());
        assert!(
            url_model("/v1beta/models/:generateContent")
                .unwrap()
                .is_err()
        );
        assert!(url_model("/v1/models").is_none());
        assert!(url_model("/v1beta/models/no-method").is_none());
    }

    fn parse(b: &Bytes) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn snake_case_fields_are_read_like_camel_case_but_user_keys_are_kept() {
        let body = br#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}],
            "system_instruction":{"parts":[{"text":"be brief"}]},
            "generation_config":{"max_output_tokens":64,"top_p":0.5},
            "tools":[{"function_declarations":[{"name":"f","parameters_json_schema":
                {"type":"object","properties":{"city_name":{"type":"string"}},"required":["city_name"]}}]}]}"#;
        let r = decode_request(body, "m", false).unwrap();
        assert_eq!(r.max_tokens, Some(64));
        assert_eq!(r.top_p, Some(0.5));
        assert_eq!(r.messages[0].role, Role::System);
        assert_eq!(r.tools[0].name, "f");
        assert_eq!(
            r.tools[0].parameters["properties"]["city_name"]["type"],
            "string"
        );
        assert_eq!(camel("max_output_tokens"), "maxOutputTokens");
        assert_eq!(camel("_private"), "_private");
    }

    #[test]
    fn decodes_contents_tools_and_config_and_round_trips() {
        let body = br#"{"contents":[{"role":"user","parts":[{"text":"hi"},{"inlineData":{"mimeType":"image/png","data":"AAA="}}]},
              {"role":"model","parts":[{"functionCall":{"name":"get_weather","args":{"city":"Paris"}}}]},
              {"role":"user","parts":[{"functionResponse":{"name":"get_weather","response":{"output":"sunny"}}}]}],
            "systemInstruction":{"parts":[{"text":"Be terse."}]},
            "tools":[{"functionDeclarations":[{"name":"get_weather","description":"W","parameters":{"type":"object"}}]},{"googleSearch":{}}],
            "toolConfig":{"functionCallingConfig":{"mode":"ANY","allowedFunctionNames":["get_weather"]}},
            "generationConfig":{"maxOutputTokens":50,"temperature":0.5,"topP":0.9,"stopSequences":["END"],"topK":3},
            "safetySettings":[{"category":"HARM_CATEGORY_HARASSMENT","threshold":"BLOCK_NONE"}]}"#;
        let r = decode_request(body, "gem", true).unwrap();
        assert_eq!(r.model, "gem");
        assert!(r.stream);
        assert_eq!(r.messages[0].role, Role::System);
        assert_eq!(r.max_tokens, Some(50));
        assert_eq!(r.stop, ["END"]);
        assert_eq!(r.tool_choice, Some(ToolChoice::Tool("get_weather".into())));
        // The generated call id links the response to its call.
        let Part::ToolCall(call) = &r.messages[2].content[0] else {
            panic!("{:?}", r.messages[2]);
        };
        let Part::ToolResult { call_id, .. } = &r.messages[3].content[0] else {
            panic!("{:?}", r.messages[3]);
        };
        assert_eq!(&call.id, call_id);

        let back = encode_request(&r, "ignored");
        assert_eq!(back["systemInstruction"]["parts"][0]["text"], "Be terse.");
        assert_eq!(back["generationConfig"]["topK"], 3);
        assert_eq!(back["generationConfig"]["maxOutputTokens"], 50);
        assert_eq!(back["safetySettings"][0]["threshold"], "BLOCK_NONE");
        assert_eq!(back["tools"][0]["googleSearch"], json!({}));
        assert_eq!(
            back["tools"][1]["functionDeclarations"][0]["name"],
            "get_weather"
        );
        assert_eq!(
            back["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"][0],
            "get_weather"
        );
        assert_eq!(
            back["contents"][0]["parts"][1]["inlineData"]["data"],
            "AAA="
        );
        assert_eq!(
            back["contents"][2]["parts"][0]["functionResponse"]["name"],
            "get_weather"
        );
        assert_eq!(
            back["contents"][2]["parts"][0]["functionResponse"]["response"]["output"],
            "sunny"
        );
        assert!(back.get("model").is_none());

        // To OpenAI: Gemini-only fields stay behind, the tool result names the call id.
        let openai = super::super::openai_chat::encode_request(&r, "gpt");
        assert!(openai.get("safetySettings").is_none());
        let msgs = openai["messages"].as_array().unwrap();
        assert_eq!(msgs[2]["tool_calls"][0]["id"], msgs[3]["tool_call_id"]);
        assert_eq!(msgs[3]["content"], "sunny");
    }

    #[test]
    fn function_response_gets_its_name_from_the_earlier_call() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"go"},
            {"role":"assistant","content":null,"tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}},{"id":"b","type":"function","function":{"name":"g","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"b","content":"not json"},{"role":"tool","tool_call_id":"a","content":"{\"ok\":true}"}]}"#;
        let r = super::super::openai_chat::decode_request(body).unwrap();
        let out = encode_request(&r, "gemini");
        let contents = out["contents"].as_array().unwrap();
        assert_eq!(contents.len(), 3, "{out}");
        assert_eq!(contents[1]["role"], "model");
        assert_eq!(contents[1]["parts"][0]["functionCall"]["args"]["x"], 1);
        let responses = contents[2]["parts"].as_array().unwrap();
        assert_eq!(responses[0]["functionResponse"]["name"], "g");
        assert_eq!(
            responses[0]["functionResponse"]["response"],
            json!({"output": "not json"})
        );
        assert_eq!(responses[1]["functionResponse"]["name"], "f");
        assert_eq!(
            responses[1]["functionResponse"]["response"],
            json!({"ok": true})
        );
    }

    #[test]
    fn usage_breakdown_both_ways() {
        let body = br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"thinking...","thought":true},{"text":"Hi"}]},"finishReason":"STOP"}],
            "usageMetadata":{"promptTokenCount":100,"cachedContentTokenCount":60,"candidatesTokenCount":7,"thoughtsTokenCount":20,"totalTokenCount":127},
            "modelVersion":"gemini-x","responseId":"r1"}"#;
        let r = decode_response(body).unwrap();
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 100,
                cache_read_tokens: 60,
                cache_write_tokens: 0,
                output_tokens: 27,
                reasoning_tokens: 20,
            }
        );
        assert_eq!(r.usage.uncached_input_tokens(), 40);
        assert!(matches!(&r.content[0], Part::Reasoning { text, .. } if text == "thinking..."));
        let back = parse(&encode_response(&r));
        assert_eq!(back["usageMetadata"]["promptTokenCount"], 100);
        assert_eq!(back["usageMetadata"]["cachedContentTokenCount"], 60);
        assert_eq!(back["usageMetadata"]["candidatesTokenCount"], 7);
        assert_eq!(back["usageMetadata"]["thoughtsTokenCount"], 20);
        assert_eq!(
            back["candidates"][0]["content"]["parts"][0]["thought"],
            true
        );
        assert_eq!(back["responseId"], "r1");
        // Anthropic callers see input without the cache (their convention).
        let a =
            serde_json::from_slice::<Value>(&super::super::anthropic::encode_response(&r)).unwrap();
        assert_eq!(a["usage"]["input_tokens"], 40);
        assert_eq!(a["usage"]["cache_read_input_tokens"], 60);
    }

    #[test]
    fn function_calls_get_ids_and_tool_call_finish() {
        let body = br#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"f","args":{"a":1}}},{"functionCall":{"id":"given","name":"g","args":{}}}]},"finishReason":"STOP"}]}"#;
        let r = decode_response(body).unwrap();
        assert_eq!(r.finish, FinishReason::ToolCalls);
        let ids: Vec<&str> = r
            .content
            .iter()
            .filter_map(|p| match p {
                Part::ToolCall(c) => Some(c.id.as_str()),
                _ => None,
            })
            .collect();
        assert!(ids[0].starts_with("call_") && ids[0].len() > 10, "{ids:?}");
        assert_eq!(ids[1], "given");
        let out = parse(&super::super::openai_chat::encode_response(&r));
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn stream_decoding_across_chunks() {
        let mut d = StreamDecoder::new();
        let mut ev = Vec::new();
        for data in [
            r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Let me","thought":true}]}}],"modelVersion":"gm","responseId":"rid"}"#,
            r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hel"}]}}]}"#,
            r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"lo"}]}}]}"#,
            r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"f","args":{"q":"x"}}}]}}]}"#,
        ] {
            d.decode(data, &mut ev).unwrap();
            assert!(!d.finished());
        }
        d.decode(r#"{"candidates":[{"content":{"role":"model","parts":[]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":10,"cachedContentTokenCount":4,"candidatesTokenCount":5,"thoughtsTokenCount":3}}"#, &mut ev).unwrap();
        assert!(d.finished());
        assert_eq!(
            ev[0],
            StreamEvent::Start {
                id: "rid".into(),
                model: "gm".into()
            }
        );
        assert_eq!(ev[1], StreamEvent::ReasoningDelta("Let me".into()));
        assert_eq!(ev[2], StreamEvent::TextDelta("Hel".into()));
        assert_eq!(ev[3], StreamEvent::TextDelta("lo".into()));
        let StreamEvent::ToolCallStart { index: 0, id, name } = &ev[4] else {
            panic!("{:?}", ev[4]);
        };
        assert!(id.starts_with("call_"));
        assert_eq!(name, "f");
        assert_eq!(
            ev[5],
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: r#"{"q":"x"}"#.into()
            }
        );
        assert_eq!(ev[6], StreamEvent::ToolCallEnd { index: 0 });
        assert_eq!(
            ev[7],
            StreamEvent::Usage(Usage {
                input_tokens: 10,
                cache_read_tokens: 4,
                cache_write_tokens: 0,
                output_tokens: 8,
                reasoning_tokens: 3
            })
        );
        assert_eq!(ev[8], StreamEvent::Finish(FinishReason::ToolCalls));
        assert!(d.decode("not json", &mut ev).is_err());
        let mut err = Vec::new();
        StreamDecoder::new()
            .decode(
                r#"{"error":{"code":503,"message":"overloaded","status":"UNAVAILABLE"}}"#,
                &mut err,
            )
            .unwrap();
        assert_eq!(err, [StreamEvent::Error("overloaded".into())]);
    }

    #[test]
    fn stream_encoder_emits_calls_whole_and_usage_last() {
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
                id: "c1".into(),
                name: "f".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"k\":".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "2}".into(),
            },
            StreamEvent::ToolCallEnd { index: 0 },
            StreamEvent::Usage(Usage {
                input_tokens: 9,
                output_tokens: 4,
                reasoning_tokens: 1,
                ..Default::default()
            }),
            StreamEvent::Finish(FinishReason::ToolCalls),
        ] {
            e.encode(&ev, &mut out);
        }
        e.finish(&mut out);
        let s = String::from_utf8(out).unwrap();
        let chunks: Vec<Value> = s
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert_eq!(chunks.len(), 3, "{s}");
        assert_eq!(
            chunks[0]["candidates"][0]["content"]["parts"][0]["text"],
            "a"
        );
        let call = &chunks[1]["candidates"][0]["content"]["parts"][0]["functionCall"];
        assert_eq!(call["args"]["k"], 2);
        assert_eq!(call["id"], "c1");
        assert_eq!(chunks[2]["candidates"][0]["finishReason"], "STOP");
        assert_eq!(chunks[2]["usageMetadata"]["candidatesTokenCount"], 3);
        assert_eq!(chunks[2]["usageMetadata"]["thoughtsTokenCount"], 1);
        assert_eq!(chunks[2]["responseId"], "x");
    }

    #[test]
    fn bad_requests_say_where() {
        let e = decode_request(br#"{"contents":[]}"#, "m", false).unwrap_err();
        assert!(e.to_string().contains("contents"), "{e}");
        let e =
            decode_request(br#"{"contents":[{"role":"bot","parts":[]}]}"#, "m", false).unwrap_err();
        assert!(e.to_string().contains("contents[0].role"), "{e}");
        let e = decode_request(
            br#"{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"maxOutputTokens":"many"}}"#,
            "m",
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("maxOutputTokens"), "{e}");
        assert!(decode_request(br#"{"messages":[]}"#, "m", false).is_err());
    }
}
