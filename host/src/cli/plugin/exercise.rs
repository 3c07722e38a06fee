//! `bitrouter plugin test` for the worlds that are not guardrails. An observer gets a sample
//! batch of finished requests twice (its instance is kept between batches, as in the
//! gateway) and its log lines are printed; a provider adapter encodes a one-message chat
//! request and, when given upstream bodies, decodes an answer and a stream. Both run through
//! the library's `PluginHost`, with the gateway's settings, as `serve` would load them.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use bitrouter::Config;
use bitrouter::canonical::{Dialect, FinishReason, StreamEvent};
use bitrouter::plugins::{
    AdapterPlugin, EventUsage, GuardrailCount, HostConfig, ObserverPlugin, PluginHost, PluginLog,
    PluginSpec, RequestEvent, StreamState, World, host_config,
};
use serde_json::{Value, json};

/// What `plugin test` feeds an adapter.
pub struct AdapterInput {
    /// The user message of the request.
    pub text: String,
    /// The endpoint's model id handed to `encode-request`.
    pub model: String,
    /// The request asks for a streamed answer.
    pub stream: bool,
    /// An upstream answer body for `decode-response`, and its status.
    pub response: Option<(u16, Vec<u8>)>,
    /// A streamed upstream body for `decode-stream`.
    pub stream_response: Option<Vec<u8>>,
}

/// The plugin's log lines, kept until printed.
type Logs = Arc<Mutex<Vec<PluginLog>>>;

/// Loads the plugin at `spec.path` as `world`, with the gateway's default settings and a log
/// sink that keeps its lines.
fn load(mut spec: PluginSpec, world: World) -> anyhow::Result<(PluginHost, Logs)> {
    let logs: Logs = Arc::default();
    let sink = logs.clone();
    let config = HostConfig {
        log_sink: Some(Arc::new(move |l: &PluginLog| {
            if let Ok(mut v) = sink.lock() {
                v.push(l.clone());
            }
        })),
        ..host_config(&Config::builtin())
    };
    spec.world = Some(world);
    let host = PluginHost::load(config, &[spec])?;
    Ok((host, logs))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn take_logs(logs: &Logs) -> Vec<PluginLog> {
    logs.lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default()
}

/// Delivers [`sample_batch`] twice and prints each log line the observer wrote, as JSON lines
/// (`{"batch", "level", "message"}`).
pub fn observer(spec: PluginSpec) -> anyhow::Result<()> {
    let (host, logs) = load(spec, World::Observer)?;
    let observer: ObserverPlugin = host
        .observers()
        .next()
        .cloned()
        .context("the plugin loaded but is not an observer")?;
    let batch = sample_batch();
    eprintln!(
        "delivering a sample batch of {} finished requests ({} tokens) twice; the instance is kept between batches",
        batch.len(),
        batch
            .iter()
            .map(|e| e.usage.input_tokens + e.usage.output_tokens)
            .sum::<u64>()
    );
    let runtime = runtime()?;
    for n in 1..=2 {
        runtime
            .block_on(observer.observe(&batch))
            .with_context(|| format!("observe (batch {n}) failed"))?;
        for l in take_logs(&logs) {
            println!(
                "{}",
                json!({ "batch": n, "level": l.level.as_str().to_lowercase(), "message": l.message })
            );
        }
    }
    Ok(())
}

/// Three finished requests: a JSON call, a streamed one with a guardrail finding from a
/// registered agent, and one that failed over and then failed (55 tokens in all).
fn sample_batch() -> Vec<RequestEvent> {
    let event =
        |id: &str, route: &str, endpoint: Option<&str>, dialect: &str, tokens: (u64, u64)| {
            RequestEvent {
                request_id: id.into(),
                timestamp_ms: 1_767_225_600_000,
                account: None,
                agent: None,
                route: route.into(),
                endpoint: endpoint.map(Into::into),
                dialect: dialect.into(),
                stream: false,
                status: 200,
                latency_us: 820_000,
                ttfb_us: None,
                attempts: 1,
                usage: EventUsage {
                    input_tokens: tokens.0,
                    cache_read_tokens: 0,
                    cache_write_tokens: 0,
                    output_tokens: tokens.1,
                    reasoning_tokens: 0,
                },
                cost_micro_usd: Some(54),
                error: None,
                guardrail_findings: Vec::new(),
            }
        };
    let json_call = event(
        "req-1",
        "chat",
        Some("openai:gpt-4.1-mini"),
        "openai",
        (12, 30),
    );
    let streamed = RequestEvent {
        stream: true,
        ttfb_us: Some(310_000),
        account: Some("eip155:1:0x00000000000000000000000000000000000000a1".into()),
        agent: Some("Alice agent".into()),
        guardrail_findings: vec![GuardrailCount {
            pattern: "pii_emails".into(),
            count: 1,
            action: "redact".into(),
        }],
        ..event(
            "req-2",
            "chat",
            Some("anthropic:claude-sonnet"),
            "anthropic",
            (8, 5),
        )
    };
    let failed = RequestEvent {
        status: 502,
        attempts: 2,
        cost_micro_usd: None,
        error: Some("upstream".into()),
        ..event("req-3", "fast", None, "openai", (0, 0))
    };
    vec![json_call, streamed, failed]
}

/// Runs the adapter's calls on `input` and prints one JSON line per call.
pub fn adapter(spec: PluginSpec, input: AdapterInput) -> anyhow::Result<()> {
    let (host, logs) = load(spec, World::ProviderAdapter)?;
    let adapter: AdapterPlugin = host
        .adapters()
        .next()
        .cloned()
        .context("the plugin loaded but is not a provider adapter")?;
    let runtime = runtime()?;
    let print_logs = || {
        for l in take_logs(&logs) {
            eprintln!("plugin log ({}): {}", l.level, l.message);
        }
    };

    // What an OpenAI caller's one-message chat request becomes, as the gateway decodes it.
    let caller = json!({
        "model": "test",
        "messages": [{ "role": "user", "content": input.text }],
        "stream": input.stream,
    });
    let request =
        bitrouter::api::decode_request(Dialect::OpenAiChat, caller.to_string().as_bytes())
            .context("cannot build the test request")?;
    let encoded = runtime.block_on(adapter.encode_request(&request, &input.model));
    print_logs();
    let encoded = encoded.context("encode-request failed")?;
    println!(
        "{}",
        json!({
            "call": "encode-request",
            "method": encoded.method.as_str(),
            "path": encoded.path,
            "headers": encoded.headers.iter()
                .map(|(n, v)| json!([n.as_str(), String::from_utf8_lossy(v.as_bytes())]))
                .collect::<Vec<_>>(),
            "body": body_json(&encoded.body),
        })
    );

    if let Some((status, body)) = &input.response {
        let decoded =
            runtime.block_on(adapter.decode_response(*status, &http::HeaderMap::new(), body));
        print_logs();
        let line = match decoded.context("decode-response failed")? {
            Ok(mut response) => {
                // As the gateway does: an answer that names no model gets the endpoint's.
                if response.model.is_empty() {
                    response.model.clone_from(&input.model);
                }
                let openai = bitrouter::api::encode_response(Dialect::OpenAiChat, &response);
                json!({ "call": "decode-response", "status": status, "openai": body_json(&openai) })
            }
            Err(e) => json!({
                "call": "decode-response",
                "status": status,
                "upstream_error": { "status": e.status, "message": e.message, "retryable": e.retryable },
            }),
        };
        println!("{line}");
    }

    if let Some(body) = &input.stream_response {
        // Two chunks cut in the middle (so a line may be split across them, as on the
        // network), then the end of the body, as the gateway calls it.
        let (a, b) = body.split_at(body.len() / 2);
        let mut state = StreamState::default();
        let mut finished = false;
        for (n, (chunk, end)) in [(a, false), (b, false), (&[][..], true)]
            .into_iter()
            .enumerate()
        {
            let step = runtime.block_on(adapter.decode_stream(&mut state, chunk, end));
            print_logs();
            let line = match step
                .with_context(|| format!("decode-stream (chunk {}) failed", n + 1))?
            {
                Ok(events) => {
                    finished |= events.iter().any(|e| matches!(e, StreamEvent::Finish(_)));
                    json!({
                        "call": "decode-stream",
                        "chunk": n + 1,
                        "bytes": chunk.len(),
                        "end": end,
                        "events": events.iter().map(event_json).collect::<Vec<_>>(),
                    })
                }
                Err(e) => json!({
                    "call": "decode-stream",
                    "chunk": n + 1,
                    "upstream_error": { "status": e.status, "message": e.message, "retryable": e.retryable },
                }),
            };
            println!("{line}");
            if line.get("upstream_error").is_some() {
                break;
            }
        }
        if !finished {
            eprintln!("warning: the stream has no finish event; the gateway would treat it as cut");
        }
    }
    Ok(())
}

/// A body as JSON when it is JSON, else as text.
fn body_json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| String::from_utf8_lossy(body).into())
}

fn finish_str(f: &FinishReason) -> String {
    match f {
        FinishReason::Stop => "stop".into(),
        FinishReason::StopSequence => "stop_sequence".into(),
        FinishReason::Length => "length".into(),
        FinishReason::ToolCalls => "tool_calls".into(),
        FinishReason::ContentFilter => "content_filter".into(),
        FinishReason::Other(s) => s.clone(),
    }
}

/// One canonical stream event as a one-key JSON object.
fn event_json(e: &StreamEvent) -> Value {
    match e {
        StreamEvent::Start { id, model } => json!({ "start": { "id": id, "model": model } }),
        StreamEvent::TextDelta(t) => json!({ "text_delta": t }),
        StreamEvent::ReasoningDelta(t) => json!({ "reasoning_delta": t }),
        StreamEvent::ReasoningSignature(s) => json!({ "reasoning_signature": s }),
        StreamEvent::ToolCallStart { index, id, name } => {
            json!({ "tool_call_start": { "index": index, "id": id, "name": name } })
        }
        StreamEvent::ToolCallDelta { index, arguments } => {
            json!({ "tool_call_delta": { "index": index, "arguments": arguments } })
        }
        StreamEvent::ToolCallEnd { index } => json!({ "tool_call_end": index }),
        StreamEvent::Usage(u) => json!({ "usage": {
            "input_tokens": u.input_tokens,
            "cache_read_tokens": u.cache_read_tokens,
            "cache_write_tokens": u.cache_write_tokens,
            "output_tokens": u.output_tokens,
            "reasoning_tokens": u.reasoning_tokens,
        } }),
        StreamEvent::Finish(f) => json!({ "finish": finish_str(f) }),
        StreamEvent::Error(m) => json!({ "error": m }),
    }
}

/// A body given on the command line: the text itself, or `@PATH` for a file's bytes.
pub fn body_arg(arg: &str) -> anyhow::Result<Vec<u8>> {
    match arg.strip_prefix('@') {
        Some(path) => std::fs::read(Path::new(path)).with_context(|| format!("cannot read {path}")),
        None => Ok(arg.as_bytes().to_vec()),
    }
}

/// The world `file`'s manifest declares, when it has a readable one.
pub fn manifest_world(file: &Path) -> Option<World> {
    let manifest = bitrouter::plugins::Manifest::locate(file).ok()?;
    bitrouter::plugins::Manifest::read(&manifest)
        .ok()
        .map(|m| m.world)
}

/// Refuses options that do not apply to `world`, so a mistyped command does not quietly
/// test less than asked.
pub fn check_options(
    world: World,
    adapter_options: bool,
    guard_options: bool,
) -> anyhow::Result<()> {
    match world {
        World::Guardrail if adapter_options => bail!(
            "--model, --stream, --response, --status and --stream-response are for provider adapters; this plugin is a guardrail"
        ),
        World::Observer | World::ProviderAdapter if guard_options => bail!(
            "--direction and --show-match are for guardrails; this plugin is a{} {}",
            if world == World::Observer { "n" } else { "" },
            world.as_str()
        ),
        World::Observer if adapter_options => bail!(
            "--model, --stream, --response, --status and --stream-response are for provider adapters; this plugin is an observer"
        ),
        _ => Ok(()),
    }
}
