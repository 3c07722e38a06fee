//! The upstream side: canonical requests out, the upstream's answers and streams back in.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::*;
use crate::api::{DecodeError, parse_body};
use crate::canonical::{
    Dialect, Extra, FinishReason, ImageSource, Part, Request, Response, Role, StreamEvent,
    ToolChoice, Usage,
};

/// Where a Gemini upstream is called for `model_id`, and where it streams (another method
/// with `alt=sse`). A `/` inside a model id (tuned models) stays.
pub fn upstream_urls(base: &str, model_id: &str) -> (String, String) {
    (
        format!("{base}/models/{model_id}:generateContent"),
        format!("{base}/models/{model_id}:streamGenerateContent?alt=sse"),
    )
}

// ---------------------------------------------------------------- canonical → upstream

/// A MIME type for an image URL, from its extension; Gemini's `fileData` wants one.
pub(super) fn mime_for_url(url: &str) -> &'static str {
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

pub(super) fn with_extra(v: Value, extra: &Extra) -> Value {
    crate::api::with_extra(v, extra, DIALECT)
}

/// Text of a tool result as the object Gemini requires for `functionResponse.response`.
pub(super) fn response_object(content: &[Part], is_error: bool) -> Value {
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

pub(super) fn encode_part(p: &Part, names: &HashMap<&str, &str>) -> Option<Value> {
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
    crate::api::insert_sampling(
        &mut generation,
        r,
        ["temperature", "topP"],
        Some("stopSequences"),
    );
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
                Value::Object(crate::api::tool_declaration(
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
pub(super) struct WireUsage {
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
pub(super) struct WireResponse {
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
pub(super) struct WireCandidate {
    #[serde(default)]
    content: Option<WireContent>,
    #[serde(default)]
    finish_reason: Option<String>,
}

pub(super) fn decode_finish(s: &str, called_tools: bool) -> FinishReason {
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
pub(super) fn blocked(feedback: &Option<Value>) -> bool {
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
    /// A decoder for one Gemini `streamGenerateContent` stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one SSE data payload (a `GenerateContentResponse` chunk).
    pub fn decode(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), DecodeError> {
        let chunk: WireResponse = serde_json::from_str(data)
            .map_err(|e| DecodeError::new("", format!("not a GenerateContentResponse: {e}")))?;
        if let Some(error) = chunk.error {
            out.push(StreamEvent::Error(crate::api::error_message(&error)));
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
                        out.push(StreamEvent::TextDelta(text));
                    }
                    Part::Reasoning { text, .. } if !text.is_empty() => {
                        out.push(StreamEvent::ReasoningDelta(text));
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
pub(super) fn rpc_status(status: http::StatusCode) -> &'static str {
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
