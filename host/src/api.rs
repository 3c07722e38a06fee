//! Dialect codecs: each caller-facing API shape decodes into `canonical` and encodes back out,
//! and the same module speaks that shape to upstreams. This file holds what every dialect
//! shares — decode errors, SSE framing, ids — and the dispatch over `Dialect`.

pub mod anthropic;
pub mod gemini;
pub mod openai_chat;
pub mod openai_responses;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::canonical::{Dialect, Request, Response, StreamEvent};
use crate::error::Error;

/// A request or response body that does not have the expected shape; `path` says where.
#[derive(Debug, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct DecodeError {
    path: String,
    message: String,
}

impl DecodeError {
    /// An error at `path` (a JSON path such as `messages[0].content`; empty for the whole body).
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        DecodeError {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Prefixes the path with the location of the enclosing value.
    pub fn at(mut self, prefix: impl AsRef<str>) -> Self {
        let prefix = prefix.as_ref();
        self.path = match (self.path.is_empty(), self.path.starts_with('[')) {
            (true, _) => prefix.to_owned(),
            (false, true) => format!("{prefix}{}", self.path),
            (false, false) => format!("{prefix}.{}", self.path),
        };
        self
    }
}

/// Parses JSON into `T`, naming the field that did not fit.
pub(crate) fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, DecodeError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(field_error)?;
    // Trailing bytes after the JSON value mean the caller sent something other than it meant to.
    de.end()
        .map_err(|e| DecodeError::new("", format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

/// Converts an already parsed JSON value into `T`, naming the field that did not fit.
pub(crate) fn parse_value<T: DeserializeOwned>(value: Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(field_error)
}

fn field_error(e: serde_path_to_error::Error<serde_json::Error>) -> DecodeError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        DecodeError::new("", format!("the body is not valid JSON: {inner}"))
    } else {
        let path = if path == "." { String::new() } else { path };
        // serde's message carries "at line 1 column 9"; the path already says where.
        let msg = inner.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg);
        DecodeError::new(path, hide_wire_type(msg))
    }
}

/// serde names the Rust type it expected (`struct WireRequest`); callers know it as an object.
fn hide_wire_type(msg: &str) -> String {
    match msg.find("struct Wire") {
        Some(i) => {
            let rest = &msg[i + "struct ".len()..];
            let end = rest
                .find(|c: char| !c.is_alphanumeric())
                .unwrap_or(rest.len());
            format!("{}a JSON object{}", &msg[..i], &rest[end..])
        }
        None => msg.to_owned(),
    }
}

pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Appends one `data:` SSE event. Stream events serialize typed, borrowing structs: building a
/// `serde_json::Value` map per chunk was a large share of a stream's CPU.
pub(crate) fn sse_data<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    out.extend_from_slice(b"data: ");
    // Serializing plain data into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
    out.extend_from_slice(b"\n\n");
}

/// Appends one named SSE event.
pub(crate) fn sse_event<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, name: &str, v: &T) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    sse_data(out, v);
}

/// Unix seconds, for the `created` fields of OpenAI-shaped answers.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `id` when it already has the dialect's `prefix`, else a fresh id with it (`msg_…`,
/// `resp_…`): callers' SDKs check the prefix.
pub(crate) fn id_with_prefix(id: &str, prefix: &str) -> String {
    if id.starts_with(prefix) {
        id.to_owned()
    } else {
        new_id(prefix)
    }
}

/// `id`, or a fresh one with `prefix` when the other side sent none.
pub(crate) fn id_or_new(id: &str, prefix: &str) -> String {
    if id.is_empty() {
        new_id(prefix)
    } else {
        id.to_owned()
    }
}

/// Adds the fields a caller of `dialect` sent that have no canonical meaning (`extra`) to
/// the object `v`, without overriding what the encoder set.
pub(crate) fn with_extra(mut v: Value, extra: &crate::canonical::Extra, dialect: Dialect) -> Value {
    if let (Value::Object(o), Some(e)) = (&mut v, extra.for_dialect(dialect)) {
        for (k, val) in e {
            o.entry(k.clone()).or_insert_with(|| val.clone());
        }
    }
    v
}

/// Removes `key` from a JSON object as a string: a missing key is "is required", another
/// type says which it was.
pub(crate) fn take_string(
    obj: &mut serde_json::Map<String, Value>,
    key: &str,
) -> Result<String, DecodeError> {
    match obj.remove(key) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(DecodeError::new(key, "is required")),
        Some(other) => Err(DecodeError::new(
            key,
            format!("expected a string, found {}", json_type(&other)),
        )),
    }
}

/// A function tool's declaration as every dialect spells its core: the fields its own
/// callers sent beside it (`extra` of `dialect`), `name`, `description`, and the JSON
/// Schema under `schema_key` (left out when there is none and `schema_always` is false).
pub(crate) fn tool_declaration(
    t: &crate::canonical::Tool,
    dialect: Dialect,
    schema_key: &str,
    schema_always: bool,
) -> serde_json::Map<String, Value> {
    let mut o = t.extra.for_dialect(dialect).cloned().unwrap_or_default();
    o.insert("name".into(), t.name.clone().into());
    if let Some(d) = &t.description {
        o.insert("description".into(), d.clone().into());
    }
    if schema_always || !t.parameters.is_null() {
        o.insert(schema_key.into(), t.parameters.clone());
    }
    o
}

/// Decodes each element of a JSON array, naming the failing element's index in the error.
pub(crate) fn decode_each<T>(
    items: Vec<Value>,
    mut decode: impl FnMut(Value) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| decode(v).map_err(|e| e.at(format!("[{i}]"))))
        .collect()
}

/// The request's sampling settings under a dialect's names for temperature, top-p and
/// stop sequences (`None`: the dialect has no stop sequences); unset ones stay out.
pub(crate) fn insert_sampling(
    obj: &mut serde_json::Map<String, Value>,
    r: &Request,
    [temperature, top_p]: [&str; 2],
    stop: Option<&str>,
) {
    if let Some(t) = r.temperature {
        obj.insert(temperature.into(), t.into());
    }
    if let Some(t) = r.top_p {
        obj.insert(top_p.into(), t.into());
    }
    if let Some(key) = stop
        && !r.stop.is_empty()
    {
        obj.insert(key.into(), r.stop.clone().into());
    }
}

pub(crate) fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}{:016x}{:08x}",
        fastrand::u64(..),
        fastrand::u32(..)
    )
}

/// The human message inside a provider's error object (`{"message": ...}`) or the value itself.
pub(crate) fn error_message(err: &Value) -> String {
    match err.get("message").and_then(Value::as_str) {
        Some(m) => m.to_owned(),
        None => match err {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    }
}

/// Decodes a caller's request body in `dialect`.
pub fn decode_request(dialect: Dialect, body: &[u8]) -> Result<Request, DecodeError> {
    decode_request_at(dialect, body, None)
}

/// Decodes a caller's request body; `url_model` is the model and stream flag a dialect that
/// carries them in the URL (Gemini) was called with.
pub fn decode_request_at(
    dialect: Dialect,
    body: &[u8],
    url_model: Option<&UrlModel>,
) -> Result<Request, DecodeError> {
    match dialect {
        Dialect::OpenAiChat => openai_chat::decode_request(body),
        Dialect::OpenAiResponses => openai_responses::decode_request(body),
        Dialect::Anthropic => anthropic::decode_request(body),
        Dialect::Gemini => {
            let (model, stream) = url_model.map_or(("", false), |u| (u.model.as_str(), u.stream));
            gemini::decode_request(body, model, stream)
        }
    }
}

/// What a Gemini-style URL (`/v1beta/models/{model}:streamGenerateContent`) says about the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlModel {
    /// The model named in the path.
    pub model: String,
    /// The path asks for a stream (`:streamGenerateContent`).
    pub stream: bool,
}

/// The JSON error body of `e` in `dialect`. An upstream's JSON error object of the same
/// dialect (or the same error shape) is returned byte for byte; anything else it sent (an
/// HTML page from a proxy in front of it, plain text, an empty body) is wrapped in the
/// dialect's error shape, its text as the message.
pub fn error_body(dialect: Dialect, e: &Error) -> Bytes {
    if let Some(u) = e.upstream()
        && same_error_shape(u.dialect, dialect)
        && is_json_object(&u.body)
    {
        return u.body.clone();
    }
    let status = e.status();
    let mut value = match dialect {
        Dialect::OpenAiChat | Dialect::OpenAiResponses => {
            openai_chat::error_body(status, e.kind(), e.message())
        }
        Dialect::Anthropic => anthropic::error_body(status, e.message()),
        Dialect::Gemini => gemini::error_body(status, e.message()),
    };
    if let (Some(details), Some(error)) = (
        e.details(),
        value.get_mut("error").and_then(|e| e.as_object_mut()),
    ) {
        error.extend(details.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    Bytes::from(value.to_string())
}

/// Whether `body` is one JSON object (what every dialect's error is); checked only on the
/// error path.
fn is_json_object(body: &[u8]) -> bool {
    body.first() == Some(&b'{') && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}

/// Both OpenAI APIs wrap errors in the same `{"error": {...}}`, so a chat upstream's error
/// body is already what a Responses caller expects.
fn same_error_shape(upstream: Dialect, caller: Dialect) -> bool {
    let openai = |d| matches!(d, Dialect::OpenAiChat | Dialect::OpenAiResponses);
    upstream == caller || openai(upstream) && openai(caller)
}

/// Where an upstream speaking `dialect` is called for `model_id` under `base` (no trailing
/// `/`), and where it streams when that is another URL (Gemini); `None`: the same URL with
/// `stream: true` in the body.
pub fn upstream_urls(dialect: Dialect, base: &str, model_id: &str) -> (String, Option<String>) {
    match dialect {
        Dialect::OpenAiChat => (openai_chat::upstream_url(base), None),
        Dialect::OpenAiResponses => (openai_responses::upstream_url(base), None),
        Dialect::Anthropic => (anthropic::upstream_url(base), None),
        Dialect::Gemini => {
            let (url, stream) = gemini::upstream_urls(base, model_id);
            (url, Some(stream))
        }
    }
}

/// The headers an upstream speaking `dialect` takes its API key in and always needs:
/// `Authorization: Bearer` (OpenAI, and what most other APIs take), `x-api-key` with
/// `anthropic-version` (Anthropic), `x-goog-api-key` (Gemini).
pub fn upstream_auth_headers(
    dialect: Dialect,
    key: Option<&str>,
) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, http::header::InvalidHeaderValue> {
    use http::{HeaderName, HeaderValue};
    let mut out = Vec::with_capacity(2);
    if let Some(key) = key {
        out.push(match dialect {
            Dialect::OpenAiChat | Dialect::OpenAiResponses => (
                http::header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {key}"))?,
            ),
            Dialect::Anthropic => (
                HeaderName::from_static(anthropic::KEY_HEADER),
                HeaderValue::from_str(key)?,
            ),
            Dialect::Gemini => (
                HeaderName::from_static(gemini::KEY_HEADER),
                HeaderValue::from_str(key)?,
            ),
        });
    }
    if dialect == Dialect::Anthropic {
        out.push((
            HeaderName::from_static(anthropic::VERSION_HEADER),
            HeaderValue::from_static(anthropic::API_VERSION),
        ));
    }
    Ok(out)
}

/// Whether an upstream of `dialect` continues a conversation that ends in a partial
/// assistant turn (Anthropic's prefill; Gemini's trailing `model` turn). OpenAI's APIs
/// answer such a turn with a new message, so a continuation there also asks in words.
pub fn continues_prefill(dialect: Dialect) -> bool {
    matches!(dialect, Dialect::Anthropic | Dialect::Gemini)
}

/// The caller's headers an upstream of the same dialect understands and should see
/// (Anthropic's `anthropic-beta`, which switches features on).
pub fn passthrough_headers(dialect: Dialect, headers: &http::HeaderMap) -> http::HeaderMap {
    let mut out = http::HeaderMap::new();
    if dialect == Dialect::Anthropic
        && let Some(v) = headers.get(anthropic::BETA_HEADER)
    {
        out.insert(
            http::HeaderName::from_static(anthropic::BETA_HEADER),
            v.clone(),
        );
    }
    out
}

/// The dialect a request without a decodable body most likely speaks, from its path and
/// headers: what shape its errors (404, 405, 401) and model lists take.
pub fn guess_dialect(headers: &http::HeaderMap, path: &str) -> Dialect {
    if path.starts_with("/v1beta/") || headers.contains_key(gemini::KEY_HEADER) {
        Dialect::Gemini
    } else if path.contains("/messages") || headers.contains_key(anthropic::VERSION_HEADER) {
        Dialect::Anthropic
    } else if path.ends_with("/responses") {
        Dialect::OpenAiResponses
    } else {
        Dialect::OpenAiChat
    }
}

/// `GET /v1/models`: the visible models as `(id, owner)` in the list shape the caller
/// expects (Anthropic's when it sent `anthropic-version`, else OpenAI's).
pub fn model_list(headers: &http::HeaderMap, models: &[(String, String)]) -> Value {
    if headers.contains_key(anthropic::VERSION_HEADER) {
        anthropic::model_list(models)
    } else {
        openai_chat::model_list(models)
    }
}

/// `GET /v1/models/{id}`: one model in the caller's shape (see [`model_list`]).
pub fn model_entry(headers: &http::HeaderMap, id: &str, owner: &str) -> Value {
    if headers.contains_key(anthropic::VERSION_HEADER) {
        anthropic::model_object(id)
    } else {
        openai_chat::model_object(id, owner)
    }
}

/// `%3A` → `:` and the like: clients may escape the colon in `provider:model_id` in a URL.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes a request for an upstream that speaks `dialect`.
pub fn encode_request(dialect: Dialect, request: &Request, model: &str) -> Value {
    match dialect {
        Dialect::OpenAiChat => openai_chat::encode_request(request, model),
        Dialect::OpenAiResponses => openai_responses::encode_request(request, model),
        Dialect::Anthropic => anthropic::encode_request(request, model),
        Dialect::Gemini => gemini::encode_request(request, model),
    }
}

/// Decodes an upstream's complete answer in `dialect`.
pub fn decode_response(dialect: Dialect, body: &[u8]) -> Result<Response, DecodeError> {
    match dialect {
        Dialect::OpenAiChat => openai_chat::decode_response(body),
        Dialect::OpenAiResponses => openai_responses::decode_response(body),
        Dialect::Anthropic => anthropic::decode_response(body),
        Dialect::Gemini => gemini::decode_response(body),
    }
}

/// Encodes a complete answer in the caller's `dialect`.
pub fn encode_response(dialect: Dialect, response: &Response) -> Bytes {
    match dialect {
        Dialect::OpenAiChat => openai_chat::encode_response(response),
        Dialect::OpenAiResponses => openai_responses::encode_response(response),
        Dialect::Anthropic => anthropic::encode_response(response),
        Dialect::Gemini => gemini::encode_response(response),
    }
}

/// The message inside an upstream's error body, whatever its dialect; the raw text otherwise.
pub fn upstream_error_message(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => match v.get("error") {
            Some(e) => error_message(e),
            None => v
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string()),
        },
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                "(empty body)".to_owned()
            } else {
                text.chars().take(500).collect()
            }
        }
    }
}

/// Encodes canonical events in the caller's dialect.
pub enum StreamEncoder {
    /// To a Chat Completions caller.
    OpenAiChat(openai_chat::StreamEncoder),
    /// To a Responses caller.
    OpenAiResponses(openai_responses::StreamEncoder),
    /// To an Anthropic Messages caller.
    Anthropic(anthropic::StreamEncoder),
    /// To a Gemini caller.
    Gemini(gemini::StreamEncoder),
}

impl StreamEncoder {
    /// An encoder for one stream to a caller speaking `dialect`; `include_usage` is the
    /// caller's `stream_options.include_usage` (Chat Completions only).
    pub fn new(dialect: Dialect, include_usage: bool) -> Self {
        match dialect {
            Dialect::OpenAiChat => {
                StreamEncoder::OpenAiChat(openai_chat::StreamEncoder::new(include_usage))
            }
            Dialect::OpenAiResponses => {
                StreamEncoder::OpenAiResponses(openai_responses::StreamEncoder::new())
            }
            Dialect::Anthropic => StreamEncoder::Anthropic(anthropic::StreamEncoder::new()),
            Dialect::Gemini => StreamEncoder::Gemini(gemini::StreamEncoder::new()),
        }
    }

    /// Appends the caller's SSE bytes for `event` to `out`.
    pub fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        match self {
            StreamEncoder::OpenAiChat(e) => e.encode(event, out),
            StreamEncoder::OpenAiResponses(e) => e.encode(event, out),
            StreamEncoder::Anthropic(e) => e.encode(event, out),
            StreamEncoder::Gemini(e) => e.encode(event, out),
        }
    }

    /// Closes a stream that ended normally.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match self {
            StreamEncoder::OpenAiChat(e) => e.finish(out),
            StreamEncoder::OpenAiResponses(e) => e.finish(out),
            StreamEncoder::Anthropic(e) => e.finish(out),
            StreamEncoder::Gemini(e) => e.finish(out),
        }
    }

    /// Ends a stream with the gateway's own error `e` (a guardrail block, a failed plugin, a
    /// budget): the same body a JSON answer would carry ([`error_body`]: type, code, details),
    /// as the dialect's in-stream error event, so SDKs raise the same exception class either
    /// way instead of a generic server error.
    pub fn fail(&mut self, e: &crate::error::Error, out: &mut Vec<u8>) {
        let dialect = match self {
            StreamEncoder::OpenAiChat(_) => Dialect::OpenAiChat,
            StreamEncoder::OpenAiResponses(enc) => {
                let code = openai_chat::error_code(e.kind()).unwrap_or("server_error");
                return enc.fail(code, e.message(), out);
            }
            StreamEncoder::Anthropic(_) => Dialect::Anthropic,
            StreamEncoder::Gemini(_) => Dialect::Gemini,
        };
        let body = error_body(dialect, e);
        if dialect == Dialect::Anthropic {
            out.extend_from_slice(b"event: error\n");
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&body);
        out.extend_from_slice(b"\n\n");
    }
}

/// Decodes an upstream's SSE payloads in its dialect.
pub enum StreamDecoder {
    /// From a Chat Completions upstream.
    OpenAiChat(openai_chat::StreamDecoder),
    /// From a Responses upstream.
    OpenAiResponses(openai_responses::StreamDecoder),
    /// From an Anthropic Messages upstream.
    Anthropic(anthropic::StreamDecoder),
    /// From a Gemini upstream.
    Gemini(gemini::StreamDecoder),
}

impl StreamDecoder {
    /// A decoder for one stream from an upstream speaking `dialect`.
    pub fn new(dialect: Dialect) -> Self {
        match dialect {
            Dialect::OpenAiChat => StreamDecoder::OpenAiChat(openai_chat::StreamDecoder::new()),
            Dialect::OpenAiResponses => {
                StreamDecoder::OpenAiResponses(openai_responses::StreamDecoder::new())
            }
            Dialect::Anthropic => StreamDecoder::Anthropic(anthropic::StreamDecoder::new()),
            Dialect::Gemini => StreamDecoder::Gemini(gemini::StreamDecoder::new()),
        }
    }

    /// Decodes one SSE data payload, appending its events to `out`.
    pub fn decode(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), DecodeError> {
        match self {
            StreamDecoder::OpenAiChat(d) => d.decode(data, out),
            StreamDecoder::OpenAiResponses(d) => d.decode(data, out),
            StreamDecoder::Anthropic(d) => d.decode(data, out),
            StreamDecoder::Gemini(d) => d.decode(data, out),
        }
    }

    /// Whether the upstream ended the message properly.
    pub fn finished(&self) -> bool {
        match self {
            StreamDecoder::OpenAiChat(d) => d.finished(),
            StreamDecoder::OpenAiResponses(d) => d.finished(),
            StreamDecoder::Anthropic(d) => d.finished(),
            StreamDecoder::Gemini(d) => d.finished(),
        }
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;
    use crate::error::UpstreamError;
    use http::StatusCode;

    #[test]
    fn same_dialect_upstream_error_passes_through_verbatim() {
        let body = Bytes::from_static(
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}"#,
        );
        let e = Error::from_upstream(UpstreamError {
            status: StatusCode::BAD_REQUEST,
            dialect: Dialect::Anthropic,
            body: body.clone(),
            message: "bad".into(),
        });
        assert_eq!(error_body(Dialect::Anthropic, &e), body);
        let openai: serde_json::Value =
            serde_json::from_slice(&error_body(Dialect::OpenAiChat, &e)).unwrap();
        assert_eq!(openai["error"]["message"], "bad");
        assert_eq!(openai["error"]["type"], "invalid_request_error");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_foreign_error_body_is_wrapped_in_the_callers_shape() {
        let html = Bytes::from_static(b"<html><body><h1>502 Bad Gateway</h1></body></html>");
        for (body, dialect) in [
            (html.clone(), Dialect::OpenAiChat),
            (html.clone(), Dialect::Anthropic),
            (html, Dialect::Gemini),
            (
                Bytes::from_static(b"upstream connect error"),
                Dialect::OpenAiChat,
            ),
            (
                Bytes::from_static(b"{\"error\": trunc"),
                Dialect::OpenAiChat,
            ),
        ] {
            let e = Error::from_upstream(UpstreamError {
                status: StatusCode::BAD_GATEWAY,
                dialect,
                message: crate::api::upstream_error_message(&body),
                body: body.clone(),
            });
            let out: serde_json::Value = serde_json::from_slice(&error_body(dialect, &e))
                .unwrap_or_else(|_| panic!("{dialect:?}: not JSON"));
            let message = &out["error"]["message"];
            let text = String::from_utf8_lossy(&body);
            assert_eq!(message.as_str(), Some(text.trim()), "{dialect:?}");
            if dialect == Dialect::Anthropic {
                assert_eq!(out["type"], "error");
            }
        }
    }
}
