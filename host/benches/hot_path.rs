//! Micro-benchmarks of per-request work on the hot path: dialect decode + encode of a
//! typical request and response, recording one request in the metrics, and an upstream's
//! streamed answer split into events and decoded.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

use bitrouter::api;
use bitrouter::canonical::{Dialect, Part, Response, Usage};
use bitrouter::observe::{Metrics, RequestEvent};
use bitrouter::spend::TokenBreakdown;

fn two_kb_request() -> Vec<u8> {
    let prompt = "The quick brown fox jumps over the lazy dog. ".repeat(45);
    serde_json::json!({
        "model": "default",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": prompt}
        ],
        "temperature": 0.2,
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    })
    .to_string()
    .into_bytes()
}

fn codecs(c: &mut Criterion) {
    let body = two_kb_request();
    c.bench_function("openai request: decode + encode for openai upstream", |b| {
        b.iter(|| {
            let r = api::decode_request(Dialect::OpenAiChat, black_box(&body)).unwrap();
            serde_json::to_vec(&api::encode_request(Dialect::OpenAiChat, &r, "gpt")).unwrap()
        });
    });
    c.bench_function(
        "openai request: decode + encode for anthropic upstream",
        |b| {
            b.iter(|| {
                let r = api::decode_request(Dialect::OpenAiChat, black_box(&body)).unwrap();
                serde_json::to_vec(&api::encode_request(Dialect::Anthropic, &r, "claude")).unwrap()
            });
        },
    );
    let response = Response {
        id: "msg_1".into(),
        model: "claude".into(),
        content: vec![Part::text("Hello! ".repeat(60))],
        usage: Usage {
            input_tokens: 500,
            output_tokens: 120,
            ..Default::default()
        },
        ..Default::default()
    };
    let anthropic = api::encode_response(Dialect::Anthropic, &response);
    c.bench_function("anthropic response: decode + encode as openai", |b| {
        b.iter(|| {
            let r = api::decode_response(Dialect::Anthropic, black_box(&anthropic)).unwrap();
            api::encode_response(Dialect::OpenAiChat, &r)
        });
    });
}

fn metrics(c: &mut Criterion) {
    let m = Metrics::new();
    let event = RequestEvent {
        request_id: "req_1".into(),
        time_ms: 0,
        route: Some("default".into()),
        requested_model: "default".into(),
        provider: Some("openai".into()),
        model: Some("gpt-4o".into()),
        account_id: None,
        session_id: None,
        agent: None,
        dialect: "openai",
        stream: false,
        status: 200,
        success: true,
        error_type: None,
        error: None,
        latency_ms: 1.2,
        ttfb_ms: Some(1.2),
        upstream_ms: 1.1,
        input_tokens: 500,
        output_tokens: 100,
        tokens: TokenBreakdown {
            input_no_cache: 500,
            output_text: 100,
            ..Default::default()
        },
        estimated: false,
        cost_nano_usd: 2_250_000,
        attempts: Vec::new(),
        guardrail_findings: Vec::new(),
        rate_limited: None,
        trace: None,
        server_address: None,
        finish_reason: None,
        budget_reserved_nano_usd: None,
        content: None,
    };
    c.bench_function("metrics: record one request", |b| {
        b.iter(|| m.record(black_box(&event)));
    });
}

/// A 100-chunk OpenAI-compatible stream, one body chunk per event (how a provider's tokens
/// arrive), from bytes to canonical events: the SSE splitter and the stream decoder.
fn upstream_stream(c: &mut Criterion) {
    use bitrouter::stream::{Gather, UpstreamEvents};
    use bytes::Bytes;
    use std::time::Duration;
    let mut chunks: Vec<Bytes> = (0..100)
        .map(|i| {
            Bytes::from(format!(
                "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"token{i} \"}},\"finish_reason\":null}}]}}\n\n"
            ))
        })
        .collect();
    chunks.push(Bytes::from_static(
        b"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":100,\"total_tokens\":110}}\n\ndata: [DONE]\n\n",
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    c.bench_function("upstream stream: 100 SSE chunks to events (openai)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let frames =
                    futures_util::stream::iter(chunks.clone().into_iter().map(|c| {
                        Ok::<_, bitrouter::upstream::BodyError>(http_body::Frame::data(c))
                    }));
                let response = http::Response::new(http_body_util::BodyExt::boxed_unsync(
                    http_body_util::StreamBody::new(frames),
                ));
                let mut events = UpstreamEvents::new(response, Dialect::OpenAiChat, u64::MAX);
                let mut out = Vec::new();
                let mut n = 0;
                while events
                    .next_batch(&mut out, Duration::from_secs(5), Gather::Ready)
                    .await
                    .expect("a whole stream")
                {
                    n += out.len();
                    out.clear();
                }
                black_box(n)
            })
        });
    });
}

criterion_group!(benches, codecs, metrics, upstream_stream);
criterion_main!(benches);
