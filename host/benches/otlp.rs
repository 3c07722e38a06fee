//! The OTLP sink's cost per request: encoding a request's spans, and the whole sink (GenAI
//! metrics recorded, spans encoded, the batch posted to a collector by the exporter thread)
//! for a batch of requests, reported per request. The collector is a loopback HTTP/1.1
//! server in this process that reads each export and answers 200.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

use bitrouter::observe::otlp::spans::SpanWriter;
use bitrouter::observe::otlp::{OtlpSettings, OtlpSink};
use bitrouter::observe::{
    AttemptRecord, GuardrailFinding, ObserveCallback, RequestEvent, TraceRecord,
};
use bitrouter::spend::TokenBreakdown;

/// A request as the bench harness's scenario 3 makes them: one attempt, a finding, a budget.
fn event(i: u64) -> RequestEvent {
    RequestEvent {
        request_id: format!("req_{i}"),
        time_ms: 1_780_000_000_000,
        route: Some("default".into()),
        requested_model: "default".into(),
        provider: Some("openai".into()),
        model: Some("gpt-4o-mini".into()),
        account_id: Some("acct_1".into()),
        session_id: None,
        agent: Some("bench".into()),
        dialect: "openai",
        stream: false,
        status: 200,
        success: true,
        error_type: None,
        error: None,
        latency_ms: 1.2,
        ttfb_ms: Some(1.1),
        upstream_ms: 1.0,
        input_tokens: 500,
        output_tokens: 100,
        tokens: TokenBreakdown {
            input_no_cache: 500,
            output_text: 100,
            ..Default::default()
        },
        estimated: false,
        cost_nano_usd: 2_250_000,
        attempts: vec![AttemptRecord {
            target: "openai:gpt-4o-mini".into(),
            duration_ms: 1.0,
            error_type: None,
            status: None,
            error: None,
            start_ms: 0.1,
            span_id: Some(format!("{:016x}", i + 1)),
            joined: None,
            cost_nano_usd: None,
        }],
        guardrail_findings: vec![GuardrailFinding {
            pattern: "pii_emails".into(),
            count: 1,
            action: "redact".into(),
        }],
        rate_limited: None,
        trace: Some(TraceRecord {
            trace_id: format!("{:032x}", i + 1),
            span_id: format!("{:016x}", i + 1_000_000),
            parent_span_id: None,
            sampled: true,
        }),
        server_address: Some("127.0.0.1".into()),
        finish_reason: Some("stop"),
        budget_reserved_nano_usd: Some(9_000_000),
        content: None,
    }
}

/// Serves OTLP/HTTP exports with an empty 200 on a loopback port, for the process's life.
fn collector() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err()
                        || writer
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

fn settings(endpoint: &str, traces: bool, metrics: bool) -> OtlpSettings {
    OtlpSettings {
        endpoint: Some(endpoint.to_owned()),
        headers: Vec::new(),
        traces,
        metrics,
        sample_ratio: 1.0,
        metrics_interval: Duration::from_secs(60),
        service_name: Some("bench".into()),
        capture_content: false,
        compression: None,
    }
}

fn otlp(c: &mut Criterion) {
    let one = event(1);
    let mut writer = SpanWriter::default();
    let mut out = Vec::with_capacity(1 << 20);
    c.bench_function("otlp: encode one request's spans", |b| {
        b.iter(|| {
            out.clear();
            writer.write(black_box(&one), &mut out)
        });
    });

    let endpoint = collector();
    // 512 requests: the exporter's batch, so every iteration is one export.
    let batch: Vec<Arc<RequestEvent>> = (0..512).map(|i| Arc::new(event(i))).collect();
    let mut group = c.benchmark_group("otlp sink, per request");
    group.throughput(Throughput::Elements(batch.len() as u64));
    for (name, traces, metrics) in [
        ("traces + metrics", true, true),
        ("traces", true, false),
        ("metrics", false, true),
    ] {
        let sink = OtlpSink::new(&settings(&endpoint, traces, metrics)).unwrap();
        let stats = sink.stats();
        // Every iteration waits for the exporter thread to have posted the batch, so the
        // figure holds the post (a full batch wakes the exporter at once).
        let spans_per_batch = if traces { 2 * batch.len() as u64 } else { 0 };
        group.bench_function(name, |b| {
            b.iter(|| {
                let goal = stats.snapshot().exported_spans + spans_per_batch;
                sink.on_events(black_box(&batch));
                while stats.snapshot().exported_spans < goal {
                    std::thread::yield_now();
                }
            });
        });
        drop(sink);
    }
    group.finish();
}

criterion_group!(benches, otlp);
criterion_main!(benches);
