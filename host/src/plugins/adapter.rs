//! The `provider-adapter` world: pure translation between the canonical model call and a
//! provider's HTTP shape. The host does all I/O and adds credentials; the adapter never sees
//! an API key. Stream decoding is a fold: the host keeps the adapter's state between chunks
//! ([`StreamState`]), since every call runs in a fresh instance.
//!
//! Also here: the conversions between `canonical` types and their WIT mirrors.

use std::sync::Arc;

use serde_json::Value;

use super::PluginInfo;
use super::engine::Prepared;
use super::error::{CallError, CallErrorKind, PluginErrorKind};
use super::sandbox::{Phase, Sandbox, StoreState};
use super::wit::types as wt;
use crate::canonical::{self as c, Dialect};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "provider-adapter",
        with: {
            "bitrouter:plugin/types": crate::plugins::wit::types,
            "bitrouter:plugin/host": crate::plugins::wit::host,
        },
    });
}

use bindings::exports::bitrouter::plugin::adapter as wa;
use bindings::{ProviderAdapter, ProviderAdapterPre};

/// Largest stream state an adapter may hand back, in bytes.
pub const MAX_STREAM_STATE: usize = 1 << 20;

/// An upstream request built by an adapter, validated (method token, path starting with
/// `/`, legal header names and values).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// The HTTP method.
    pub method: http::Method,
    /// Path and query, appended to the provider's `api_base`.
    pub path: String,
    /// Headers to send; the host adds the credentials.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// The request body.
    pub body: Vec<u8>,
}

/// An upstream error as the adapter classified it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamError {
    /// The HTTP status to report for it.
    pub status: u16,
    /// What went wrong, in the adapter's words.
    pub message: String,
    /// Another target may succeed: the host fails over.
    pub retryable: bool,
}

/// The adapter's state between chunks of one stream. Start each stream with `default()`.
#[derive(Clone, Debug, Default)]
pub struct StreamState(Vec<u8>);

/// A loaded provider adapter. Cheap to clone; each call runs in a fresh instance.
#[derive(Clone)]
pub struct AdapterPlugin(Arc<Inner>);

struct Inner {
    info: PluginInfo,
    sandbox: Arc<Sandbox>,
    pre: ProviderAdapterPre<StoreState>,
    config: Option<String>,
}

impl std::fmt::Debug for AdapterPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdapterPlugin")
            .field("info", &self.0.info)
            .finish()
    }
}

impl AdapterPlugin {
    pub(crate) fn load(
        info: PluginInfo,
        sandbox: Arc<Sandbox>,
        prepared: Prepared,
        config_json: String,
    ) -> Result<AdapterPlugin, PluginErrorKind> {
        let pre = ProviderAdapterPre::new(prepared.pre)
            .map_err(|e| PluginErrorKind::WorldMismatch(format!("{e:#}")))?;
        let mut store = sandbox.store();
        let _ticking = sandbox.arm(&mut store, sandbox.configure_deadline);
        let fail = |store: &wasmtime::Store<StoreState>, e, phase| {
            sandbox.fail("configure", store, e, phase).kind.to_string()
        };
        let instance = pre
            .instantiate(&mut store)
            .map_err(|e| PluginErrorKind::Configure(fail(&store, e, Phase::Instantiate)))?;
        instance
            .bitrouter_plugin_adapter()
            .call_configure(&mut store, &config_json)
            .map_err(|e| PluginErrorKind::Configure(fail(&store, e, Phase::Call)))?
            .map_err(PluginErrorKind::Configure)?;
        drop(store);
        Ok(AdapterPlugin(Arc::new(Inner {
            info,
            sandbox,
            pre,
            config: (config_json != "null").then_some(config_json),
        })))
    }

    /// The plugin's manifest id.
    pub fn id(&self) -> &str {
        &self.0.info.id
    }

    /// What the host knows about the plugin.
    pub fn info(&self) -> &PluginInfo {
        &self.0.info
    }

    /// A snapshot of the plugin's call counters.
    pub fn stats(&self) -> super::PluginStats {
        self.0.sandbox.stats()
    }

    /// The upstream request for `request`, addressed to the endpoint's `model_id`.
    /// An `err` from the adapter (it cannot express the request) is a `Failed` call.
    pub async fn encode_request(
        &self,
        request: &c::Request,
        model_id: &str,
    ) -> Result<HttpRequest, CallError> {
        let req = request_to_wit(request);
        let model_id = model_id.to_owned();
        self.run("encode-request", move |this| {
            let raw = this.call("encode-request", |store, a| {
                a.bitrouter_plugin_adapter()
                    .call_encode_request(store, &req, &model_id)
            })?;
            let raw = raw.map_err(|m| {
                this.0
                    .sandbox
                    .error("encode-request", CallErrorKind::Failed(m))
            })?;
            http_request_from_wit(raw).map_err(|m| this.invalid("encode-request", m))
        })
        .await
    }

    /// A complete upstream answer as a canonical response, or the upstream's error.
    pub async fn decode_response(
        &self,
        status: u16,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<Result<c::Response, UpstreamError>, CallError> {
        let resp = wa::HttpResponse {
            status,
            headers: headers_to_wit(headers),
            body: body.to_vec(),
        };
        self.run("decode-response", move |this| {
            let raw = this.call("decode-response", |store, a| {
                a.bitrouter_plugin_adapter()
                    .call_decode_response(store, &resp)
            })?;
            match raw {
                Ok(r) => response_from_wit(r)
                    .map(Ok)
                    .map_err(|m| this.invalid("decode-response", m)),
                Err(e) => Ok(Err(upstream_error(e))),
            }
        })
        .await
    }

    /// Decodes the next chunk of a streamed body (`end` once, after the last chunk).
    pub async fn decode_stream(
        &self,
        state: &mut StreamState,
        chunk: &[u8],
        end: bool,
    ) -> Result<Result<Vec<c::StreamEvent>, UpstreamError>, CallError> {
        let (st, chunk) = (std::mem::take(&mut state.0), chunk.to_vec());
        let out = self
            .run("decode-stream", move |this| {
                let raw = this.call("decode-stream", |store, a| {
                    a.bitrouter_plugin_adapter()
                        .call_decode_stream(store, &st, &chunk, end)
                })?;
                match raw {
                    Ok(step) => {
                        if step.state.len() > MAX_STREAM_STATE {
                            return Err(this.invalid(
                                "decode-stream",
                                format!(
                                    "stream state of {} bytes; at most {MAX_STREAM_STATE}",
                                    step.state.len()
                                ),
                            ));
                        }
                        let events = step.events.into_iter().map(event_from_wit).collect();
                        Ok(Ok((step.state, events)))
                    }
                    Err(e) => Ok(Err(upstream_error(e))),
                }
            })
            .await?;
        Ok(out.map(|(s, events)| {
            state.0 = s;
            events
        }))
    }

    /// Runs `f` holding an instance slot: inline, or on the blocking pool for components
    /// that import WASI, whose sync shims block on a tokio runtime. (Guardrails call such
    /// components inline through async bindings, see `guardrail.rs`; an adapter's calls are
    /// few per request and dwarfed by the upstream round trip, so they keep the sync path.)
    async fn run<R: Send + 'static>(
        &self,
        func: &'static str,
        f: impl FnOnce(&AdapterPlugin) -> Result<R, CallError> + Send + 'static,
    ) -> Result<R, CallError> {
        let _permit = self.0.sandbox.engine.permit().await;
        if !self.0.info.uses_wasi {
            return f(self);
        }
        let this = self.clone();
        match tokio::task::spawn_blocking(move || f(&this)).await {
            Ok(r) => r,
            Err(e) => Err(self
                .0
                .sandbox
                .error(func, CallErrorKind::Trap(format!("host task failed: {e}")))),
        }
    }

    fn call<R>(
        &self,
        func: &'static str,
        f: impl FnOnce(&mut wasmtime::Store<StoreState>, &ProviderAdapter) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let inner = &*self.0;
        inner.sandbox.call_fresh(
            func,
            inner.config.as_deref(),
            |store| inner.pre.instantiate(store),
            |store, a, config| a.bitrouter_plugin_adapter().call_configure(store, config),
            f,
        )
    }

    fn invalid(&self, func: &'static str, reason: String) -> CallError {
        self.0
            .sandbox
            .error(func, CallErrorKind::InvalidResult(reason))
    }
}

fn upstream_error(e: wa::UpstreamError) -> UpstreamError {
    UpstreamError {
        status: e.status,
        message: e.message,
        retryable: e.retryable,
    }
}

fn headers_to_wit(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

fn http_request_from_wit(r: wa::HttpRequest) -> Result<HttpRequest, String> {
    let method = http::Method::from_bytes(r.method.as_bytes())
        .map_err(|_| format!("invalid method `{}`", r.method))?;
    if !r.path.starts_with('/') || r.path.chars().any(|ch| ch.is_control() || ch == ' ') {
        return Err(format!("invalid path `{}`: must start with `/`", r.path));
    }
    let headers = r
        .headers
        .into_iter()
        .map(|(k, v)| {
            let name = http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("invalid header name `{k}`"))?;
            let value = http::HeaderValue::from_str(&v)
                .map_err(|_| format!("invalid value for header `{k}`"))?;
            Ok((name, value))
        })
        .collect::<Result<_, String>>()?;
    Ok(HttpRequest {
        method,
        path: r.path,
        headers,
        body: r.body,
    })
}

// ------------------------------------------------------------------ canonical → WIT

fn dialect_from_str(s: &str) -> Option<Dialect> {
    [
        Dialect::OpenAiChat,
        Dialect::OpenAiResponses,
        Dialect::Anthropic,
        Dialect::Gemini,
    ]
    .into_iter()
    .find(|d| d.as_str() == s)
}

fn extra_to_wit(e: &c::Extra) -> Option<wt::Extra> {
    let d = e.dialect?;
    (!e.fields.is_empty()).then(|| wt::Extra {
        dialect: d.as_str().to_owned(),
        fields: Value::Object(e.fields.clone()).to_string(),
    })
}

fn image_to_wit(source: &c::ImageSource, extra: &c::Extra) -> wt::Image {
    wt::Image {
        source: match source {
            c::ImageSource::Url(u) => wt::ImageSource::Url(u.clone()),
            c::ImageSource::Base64 { media_type, data } => {
                wt::ImageSource::Base64(wt::Base64Image {
                    media_type: media_type.clone(),
                    data: data.clone(),
                })
            }
        },
        extra: extra_to_wit(extra),
    }
}

fn part_to_wit(p: &c::Part) -> wt::Part {
    match p {
        c::Part::Text { text, extra } => wt::Part::Text(wt::TextPart {
            text: text.clone(),
            extra: extra_to_wit(extra),
        }),
        c::Part::Image { source, extra } => wt::Part::Image(image_to_wit(source, extra)),
        c::Part::ToolCall(tc) => wt::Part::ToolCall(wt::ToolCall {
            id: tc.id.clone(),
            name: tc.name.clone(),
            arguments: tc.arguments.clone(),
        }),
        c::Part::ToolResult {
            call_id,
            content,
            is_error,
            extra,
        } => wt::Part::ToolResult(wt::ToolResult {
            call_id: call_id.clone(),
            // No dialect nests tool calls or reasoning inside a tool result.
            content: content
                .iter()
                .filter_map(|p| match p {
                    c::Part::Text { text, extra } => Some(wt::ToolContent::Text(wt::TextPart {
                        text: text.clone(),
                        extra: extra_to_wit(extra),
                    })),
                    c::Part::Image { source, extra } => {
                        Some(wt::ToolContent::Image(image_to_wit(source, extra)))
                    }
                    c::Part::Opaque { dialect, value } => {
                        Some(wt::ToolContent::Opaque(wt::Opaque {
                            dialect: dialect.as_str().to_owned(),
                            value: value.to_string(),
                        }))
                    }
                    _ => None,
                })
                .collect(),
            is_error: *is_error,
            extra: extra_to_wit(extra),
        }),
        c::Part::Reasoning { text, signature } => wt::Part::Reasoning(wt::Reasoning {
            text: text.clone(),
            signature: signature.clone(),
        }),
        c::Part::Opaque { dialect, value } => wt::Part::Opaque(wt::Opaque {
            dialect: dialect.as_str().to_owned(),
            value: value.to_string(),
        }),
    }
}

/// The WIT mirror of a canonical request.
pub(crate) fn request_to_wit(r: &c::Request) -> wt::Request {
    wt::Request {
        model: r.model.clone(),
        messages: r
            .messages
            .iter()
            .map(|m| wt::Message {
                role: match m.role {
                    c::Role::System => wt::Role::System,
                    c::Role::User => wt::Role::User,
                    c::Role::Assistant => wt::Role::Assistant,
                    c::Role::Tool => wt::Role::Tool,
                },
                content: m.content.iter().map(part_to_wit).collect(),
                extra: extra_to_wit(&m.extra),
            })
            .collect(),
        max_tokens: r.max_tokens,
        temperature: r.temperature,
        top_p: r.top_p,
        stop: r.stop.clone(),
        stream: r.stream,
        include_usage: r.include_usage,
        tools: r
            .tools
            .iter()
            .map(|t| wt::Tool {
                name: t.name.clone(),
                description: t.description.clone(),
                parameters: t.parameters.to_string(),
                extra: extra_to_wit(&t.extra),
            })
            .collect(),
        tool_choice: r.tool_choice.as_ref().map(|tc| match tc {
            c::ToolChoice::Auto => wt::ToolChoice::Auto,
            c::ToolChoice::None => wt::ToolChoice::None,
            c::ToolChoice::Required => wt::ToolChoice::Required,
            c::ToolChoice::Tool(n) => wt::ToolChoice::Tool(n.clone()),
        }),
        parallel_tool_calls: r.parallel_tool_calls,
        extra: extra_to_wit(&r.extra),
    }
}

// ------------------------------------------------------------------ WIT → canonical

fn json(text: &str, what: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("{what}: invalid JSON: {e}"))
}

fn extra_from_wit(e: Option<wt::Extra>) -> Result<c::Extra, String> {
    let Some(e) = e else {
        return Ok(c::Extra::default());
    };
    // Extras of a dialect this host does not speak could never be replayed: drop them.
    let Some(dialect) = dialect_from_str(&e.dialect) else {
        return Ok(c::Extra::default());
    };
    match json(&e.fields, "extra.fields")? {
        Value::Object(fields) => Ok(c::Extra::new(dialect, fields)),
        _ => Err("extra.fields: not a JSON object".into()),
    }
}

fn image_from_wit(i: wt::Image) -> Result<c::Part, String> {
    Ok(c::Part::Image {
        source: match i.source {
            wt::ImageSource::Url(u) => c::ImageSource::Url(u),
            wt::ImageSource::Base64(b) => c::ImageSource::Base64 {
                media_type: b.media_type,
                data: b.data,
            },
        },
        extra: extra_from_wit(i.extra)?,
    })
}

fn opaque_from_wit(o: wt::Opaque) -> Result<Option<c::Part>, String> {
    Ok(match dialect_from_str(&o.dialect) {
        Some(dialect) => Some(c::Part::Opaque {
            dialect,
            value: json(&o.value, "opaque.value")?,
        }),
        None => None,
    })
}

fn part_from_wit(p: wt::Part) -> Result<Option<c::Part>, String> {
    Ok(Some(match p {
        wt::Part::Text(t) => c::Part::Text {
            text: t.text,
            extra: extra_from_wit(t.extra)?,
        },
        wt::Part::Image(i) => image_from_wit(i)?,
        wt::Part::ToolCall(tc) => c::Part::ToolCall(c::ToolCall {
            id: tc.id,
            name: tc.name,
            arguments: tc.arguments,
        }),
        wt::Part::ToolResult(tr) => {
            let mut content = Vec::with_capacity(tr.content.len());
            for item in tr.content {
                match item {
                    wt::ToolContent::Text(t) => content.push(c::Part::Text {
                        text: t.text,
                        extra: extra_from_wit(t.extra)?,
                    }),
                    wt::ToolContent::Image(i) => content.push(image_from_wit(i)?),
                    wt::ToolContent::Opaque(o) => content.extend(opaque_from_wit(o)?),
                }
            }
            c::Part::ToolResult {
                call_id: tr.call_id,
                content,
                is_error: tr.is_error,
                extra: extra_from_wit(tr.extra)?,
            }
        }
        wt::Part::Reasoning(r) => c::Part::Reasoning {
            text: r.text,
            signature: r.signature,
        },
        wt::Part::Opaque(o) => return opaque_from_wit(o),
    }))
}

fn finish_from_wit(f: wt::FinishReason) -> c::FinishReason {
    match f {
        wt::FinishReason::Stop => c::FinishReason::Stop,
        wt::FinishReason::StopSequence => c::FinishReason::StopSequence,
        wt::FinishReason::Length => c::FinishReason::Length,
        wt::FinishReason::ToolCalls => c::FinishReason::ToolCalls,
        wt::FinishReason::ContentFilter => c::FinishReason::ContentFilter,
        wt::FinishReason::Other(s) => c::FinishReason::Other(s),
    }
}

fn usage_from_wit(u: wt::Usage) -> c::Usage {
    c::Usage {
        input_tokens: u.input_tokens,
        cache_read_tokens: u.cache_read_tokens,
        cache_write_tokens: u.cache_write_tokens,
        output_tokens: u.output_tokens,
        reasoning_tokens: u.reasoning_tokens,
    }
}

/// A canonical response from its WIT mirror; malformed JSON inside is an error.
pub(crate) fn response_from_wit(r: wt::Response) -> Result<c::Response, String> {
    let mut content = Vec::with_capacity(r.content.len());
    for p in r.content {
        content.extend(part_from_wit(p)?);
    }
    Ok(c::Response {
        id: r.id,
        model: r.model,
        content,
        finish: finish_from_wit(r.finish),
        usage: usage_from_wit(r.usage),
    })
}

fn event_from_wit(e: wt::StreamEvent) -> c::StreamEvent {
    match e {
        wt::StreamEvent::Start(s) => c::StreamEvent::Start {
            id: s.id,
            model: s.model,
        },
        wt::StreamEvent::TextDelta(t) => c::StreamEvent::TextDelta(t),
        wt::StreamEvent::ReasoningDelta(t) => c::StreamEvent::ReasoningDelta(t),
        wt::StreamEvent::ReasoningSignature(s) => c::StreamEvent::ReasoningSignature(s),
        wt::StreamEvent::ToolCallStart(t) => c::StreamEvent::ToolCallStart {
            index: t.index,
            id: t.id,
            name: t.name,
        },
        wt::StreamEvent::ToolCallDelta(t) => c::StreamEvent::ToolCallDelta {
            index: t.index,
            arguments: t.arguments,
        },
        wt::StreamEvent::ToolCallEnd(i) => c::StreamEvent::ToolCallEnd { index: i },
        wt::StreamEvent::Usage(u) => c::StreamEvent::Usage(usage_from_wit(u)),
        wt::StreamEvent::Finish(f) => c::StreamEvent::Finish(finish_from_wit(f)),
        wt::StreamEvent::Error(m) => c::StreamEvent::Error(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    #[test]
    fn request_round_trips_through_wit_shapes() {
        let mut fields = Map::new();
        fields.insert("seed".into(), Value::from(7));
        let req = c::Request {
            model: "m".into(),
            messages: vec![
                c::Message::text(c::Role::System, "be brief"),
                c::Message {
                    role: c::Role::Tool,
                    content: vec![c::Part::ToolResult {
                        call_id: "call_1".into(),
                        content: vec![
                            c::Part::text("42"),
                            c::Part::ToolCall(c::ToolCall {
                                id: "x".into(),
                                name: "n".into(),
                                arguments: "{}".into(),
                            }),
                        ],
                        is_error: false,
                        extra: c::Extra::default(),
                    }],
                    extra: c::Extra::default(),
                },
            ],
            max_tokens: Some(10),
            tool_choice: Some(c::ToolChoice::Tool("f".into())),
            extra: c::Extra::new(Dialect::OpenAiChat, fields),
            ..c::Request::default()
        };
        let w = request_to_wit(&req);
        assert_eq!(w.messages.len(), 2);
        assert_eq!(w.messages[0].role, wt::Role::System);
        let wt::Part::ToolResult(tr) = &w.messages[1].content[0] else {
            panic!("tool result expected")
        };
        assert_eq!(tr.content.len(), 1, "nested tool call dropped");
        let extra = w.extra.as_ref().unwrap();
        assert_eq!(extra.dialect, "openai");
        assert_eq!(extra.fields, r#"{"seed":7}"#);
        assert!(matches!(&w.tool_choice, Some(wt::ToolChoice::Tool(n)) if n == "f"));
    }

    #[test]
    fn response_from_wit_checks_json() {
        let ok = response_from_wit(wt::Response {
            id: "r".into(),
            model: "m".into(),
            content: vec![
                wt::Part::Text(wt::TextPart {
                    text: "hi".into(),
                    extra: Some(wt::Extra {
                        dialect: "anthropic".into(),
                        fields: r#"{"citations":[]}"#.into(),
                    }),
                }),
                wt::Part::Opaque(wt::Opaque {
                    dialect: "cohere".into(),
                    value: "{}".into(),
                }),
            ],
            finish: wt::FinishReason::Other("eos".into()),
            usage: wt::Usage {
                input_tokens: 3,
                cache_read_tokens: 0,
                cache_write_tokens: 0,
                output_tokens: 2,
                reasoning_tokens: 0,
            },
        })
        .unwrap();
        assert_eq!(ok.content.len(), 1, "unknown-dialect opaque part dropped");
        assert_eq!(ok.finish, c::FinishReason::Other("eos".into()));
        assert_eq!(ok.usage.output_tokens, 2);

        let bad = response_from_wit(wt::Response {
            id: String::new(),
            model: String::new(),
            content: vec![wt::Part::Opaque(wt::Opaque {
                dialect: "openai".into(),
                value: "{".into(),
            })],
            finish: wt::FinishReason::Stop,
            usage: wt::Usage {
                input_tokens: 0,
                cache_read_tokens: 0,
                cache_write_tokens: 0,
                output_tokens: 0,
                reasoning_tokens: 0,
            },
        });
        assert!(bad.unwrap_err().contains("invalid JSON"));
    }

    #[test]
    fn http_requests_are_validated() {
        let ok = http_request_from_wit(wa::HttpRequest {
            method: "POST".into(),
            path: "/v2/chat".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: b"{}".to_vec(),
        })
        .unwrap();
        assert_eq!(ok.method, http::Method::POST);
        for (method, path, header) in [
            ("PO ST", "/x", "a"),
            ("POST", "x", "a"),
            ("POST", "/x y", "a"),
            ("POST", "/x", "bad header"),
        ] {
            assert!(
                http_request_from_wit(wa::HttpRequest {
                    method: method.into(),
                    path: path.into(),
                    headers: vec![(header.into(), "v".into())],
                    body: vec![],
                })
                .is_err()
            );
        }
        assert!(
            http_request_from_wit(wa::HttpRequest {
                method: "GET".into(),
                path: "/".into(),
                headers: vec![("x".into(), "a\r\nb".into())],
                body: vec![],
            })
            .is_err()
        );
    }
}
