//! OpenTelemetry export through the real server to an OTLP/HTTP receiver on loopback that
//! decodes what arrives with the official OpenTelemetry protobuf definitions
//! (`opentelemetry-proto`): a caller's trace continued and forwarded to the provider, one
//! span per request with a child per upstream attempt, GenAI attributes and metrics,
//! sampling, and a collector that is down costing the caller nothing.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitrouter_mock::MockBehavior;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;

use crate::child::ChildGateway;
use crate::harness::*;

/// What the receiver got, decoded.
#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    metrics: Vec<String>,
    /// The `authorization` header of every trace export.
    authorization: Vec<String>,
    /// The `x-collector-key` header of every trace export (`observe.otlp.headers`).
    collector_keys: Vec<String>,
    /// Trace exports answered with something other than 200.
    refused: usize,
    /// What trace exports are answered with (0: 200).
    status: u16,
    /// The path and `content-encoding` of every export taken.
    encodings: Vec<(String, String)>,
}

/// An OTLP/HTTP receiver: `POST /v1/traces` and `/v1/metrics`, protobuf bodies.
async fn receiver() -> (SocketAddr, Arc<Mutex<Received>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Received::default()));
    let store = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let store = store.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let authorization = req
                                .headers()
                                .get("authorization")
                                .map(|v| v.to_str().unwrap().to_owned())
                                .unwrap_or_default();
                            let collector_key = req
                                .headers()
                                .get("x-collector-key")
                                .map(|v| v.to_str().unwrap().to_owned())
                                .unwrap_or_default();
                            let encoding = req
                                .headers()
                                .get("content-encoding")
                                .map(|v| v.to_str().unwrap().to_owned())
                                .unwrap_or_default();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let body = match encoding.as_str() {
                                "gzip" => {
                                    let mut plain = Vec::new();
                                    std::io::Read::read_to_end(
                                        &mut flate2::read::GzDecoder::new(&body[..]),
                                        &mut plain,
                                    )
                                    .expect("a gzip body");
                                    Bytes::from(plain)
                                }
                                "" => body,
                                other => panic!("unexpected content-encoding {other}"),
                            };
                            let mut got = store.lock().unwrap();
                            if got.status == 0 || path != "/v1/traces" {
                                got.encodings.push((path.clone(), encoding));
                            }
                            let mut status = 200;
                            match path.as_str() {
                                "/v1/traces" if got.status != 0 => {
                                    status = got.status;
                                    got.refused += 1;
                                }
                                "/v1/traces" => {
                                    got.authorization.push(authorization);
                                    got.collector_keys.push(collector_key);
                                    let r = ExportTraceServiceRequest::decode(body)
                                        .expect("a trace export");
                                    for rs in r.resource_spans {
                                        for ss in rs.scope_spans {
                                            got.spans.extend(ss.spans);
                                        }
                                    }
                                }
                                "/v1/metrics" => {
                                    let r = ExportMetricsServiceRequest::decode(body)
                                        .expect("a metrics export");
                                    for rm in r.resource_metrics {
                                        for sm in rm.scope_metrics {
                                            got.metrics
                                                .extend(sm.metrics.into_iter().map(|m| m.name));
                                        }
                                    }
                                }
                                other => panic!("unexpected OTLP path {other}"),
                            }
                            let mut r = hyper::Response::new(Full::new(Bytes::new()));
                            *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            r.headers_mut()
                                .insert("content-type", "application/x-protobuf".parse().unwrap());
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, got)
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn text(attrs: &[KeyValue], key: &str) -> String {
    match attr(attrs, key) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        other => panic!("{key}: {other:?}"),
    }
}

fn int(attrs: &[KeyValue], key: &str) -> i64 {
    match attr(attrs, key) {
        Some(any_value::Value::IntValue(i)) => *i,
        other => panic!("{key}: {other:?}"),
    }
}

async fn wait_for(got: &Arc<Mutex<Received>>, what: impl Fn(&Received) -> bool) {
    for _ in 0..300 {
        if what(&got.lock().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let g = got.lock().unwrap();
    panic!(
        "the receiver never got it: {} spans, metrics {:?}",
        g.spans.len(),
        g.metrics
    );
}

/// A prompt that must never appear in telemetry.
const SECRET_PROMPT: &str = "the launch code is tangerine-42";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_trace_is_continued_exported_and_forwarded_to_the_provider() {
    let (otlp, got) = receiver().await;
    let down = mock_with(MockBehavior {
        status: Some(503),
        ..Default::default()
    })
    .await;
    let up = mock_with(MockBehavior {
        input_tokens: Some(11),
        output_tokens: Some(7),
        ..Default::default()
    })
    .await;
    let gw = TestGateway::start(&format!(
        "{}models:\n  r:\n    endpoints:\n      - {{ provider: down, model_id: d }}\n      - {{ provider: up, model_id: gpt-up }}\nobserve:\n  otlp:\n    endpoint: http://{otlp}\n    headers: {{ x-collector-key: secret }}\n    metrics_interval: 200ms\n    sample_ratio: 0.0\n    compression: gzip\n",
        providers(&[("down", "openai", &down), ("up", "openai", &up)])
    ))
    .await;
    let r = post_raw(
        &gw,
        "/v1/chat/completions",
        openai_chat("r", SECRET_PROMPT).to_string().into_bytes(),
        &[
            ("traceparent", &format!("00-{TRACE}-{CALLER_SPAN}-01")),
            ("tracestate", "vendor=abc"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The provider got the trace, under the attempt's own span, with the caller's state.
    let sent = up.last_request().unwrap();
    let tp = sent
        .header("traceparent")
        .expect("traceparent to the provider");
    assert!(
        tp.starts_with(&format!("00-{TRACE}-")) && tp.ends_with("-01"),
        "{tp}"
    );
    assert_eq!(sent.header("tracestate"), Some("vendor=abc"));
    let attempt_span = tp.split('-').nth(2).unwrap().to_owned();

    wait_for(&got, |g| g.spans.len() >= 3).await;
    let spans = got.lock().unwrap().spans.clone();
    let request = spans
        .iter()
        .find(|s| hex::encode(&s.parent_span_id) == CALLER_SPAN)
        .expect("a span whose parent is the caller's");
    assert_eq!(hex::encode(&request.trace_id), TRACE);
    assert_eq!(request.name, "chat r");
    assert_eq!(request.kind, 2, "SERVER");
    let a = &request.attributes;
    assert_eq!(text(a, "gen_ai.operation.name"), "chat");
    assert_eq!(text(a, "gen_ai.request.model"), "r");
    assert_eq!(text(a, "gen_ai.response.model"), "gpt-up");
    assert_eq!(text(a, "gen_ai.provider.name"), "up");
    assert_eq!(int(a, "gen_ai.usage.input_tokens"), 11);
    assert_eq!(int(a, "gen_ai.usage.output_tokens"), 7);
    assert_eq!(text(a, "bitrouter.route"), "r");
    assert_eq!(text(a, "server.address"), "127.0.0.1");
    assert!(matches!(
        attr(a, "gen_ai.response.finish_reasons"),
        Some(any_value::Value::ArrayValue(_))
    ));
    // One child per attempt: the 503 (failed over) and the answer, whose id the provider saw.
    let children: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent_span_id == request.span_id)
        .collect();
    assert_eq!(children.len(), 2, "{children:?}");
    assert!(
        children
            .iter()
            .all(|s| s.kind == 3 && s.trace_id == request.trace_id)
    );
    let failed = children
        .iter()
        .find(|s| attr(&s.attributes, "error.type").is_some())
        .expect("the failed attempt");
    assert_eq!(text(&failed.attributes, "bitrouter.endpoint"), "down:d");
    assert_eq!(int(&failed.attributes, "http.response.status_code"), 503);
    let answered = children
        .iter()
        .find(|s| attr(&s.attributes, "error.type").is_none())
        .unwrap();
    assert_eq!(hex::encode(&answered.span_id), attempt_span);
    assert!(answered.start_time_unix_nano >= failed.end_time_unix_nano);
    // No content: neither the prompt nor the answer is in any span, attribute or event.
    let dump = format!("{spans:?}");
    assert!(
        !dump.contains(SECRET_PROMPT),
        "the prompt leaked into a span"
    );
    assert!(
        !dump.contains("Hello from the mock"),
        "the answer leaked into a span"
    );

    // GenAI metrics arrive on their own schedule.
    wait_for(&got, |g| {
        g.metrics.iter().any(|m| m == "gen_ai.client.token.usage")
            && g.metrics
                .iter()
                .any(|m| m == "gen_ai.client.operation.duration")
    })
    .await;
    // `compression: gzip`: spans and metrics alike arrived gzipped.
    let encodings = got.lock().unwrap().encodings.clone();
    for path in ["/v1/traces", "/v1/metrics"] {
        assert!(encodings.iter().any(|(p, _)| p == path), "{encodings:?}");
    }
    assert!(encodings.iter().all(|(_, e)| e == "gzip"), "{encodings:?}");
    // `observe.otlp.headers` went with every export.
    let keys = got.lock().unwrap().collector_keys.clone();
    assert!(
        !keys.is_empty() && keys.iter().all(|k| k == "secret"),
        "{keys:?}"
    );

    // sample_ratio 0: a request that starts its own trace is not exported, nor forwarded
    // as sampled.
    let before = got.lock().unwrap().spans.len();
    let r = post(&gw, "/v1/chat/completions", &openai_chat("r", "hi")).await;
    assert_eq!(r.status, 200);
    let tp = up
        .last_request()
        .unwrap()
        .header("traceparent")
        .unwrap()
        .to_owned();
    assert!(tp.ends_with("-00"), "{tp}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(got.lock().unwrap().spans.len(), before);
    let m = get(&gw, "/admin/metrics", &[]).await.json();
    assert!(
        m["observe"]["otlp"]["exported_spans"].as_u64().unwrap() >= 3,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_span_has_its_first_token_and_a_down_collector_costs_nothing() {
    let (otlp, got) = receiver().await;
    let m = mock().await;
    let gw = TestGateway::start(&format!(
        "{}models:\n  r:\n    endpoints: [{{ provider: up, model_id: m }}]\nobserve:\n  otlp:\n    endpoint: http://{otlp}\n    metrics_interval: 200ms\n",
        providers(&[("up", "openai", &m)])
    ))
    .await;
    let mut body = openai_chat("r", "hi");
    body["stream"] = json!(true);
    let r = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(r.status, 200);
    wait_for(&got, |g| !g.spans.is_empty()).await;
    let spans = got.lock().unwrap().spans.clone();
    let request = spans.iter().find(|s| s.kind == 2).unwrap();
    assert!(
        request
            .events
            .iter()
            .any(|e| e.name == "gen_ai.first_token")
    );
    assert!(matches!(
        attr(&request.attributes, "gen_ai.server.time_to_first_token"),
        Some(any_value::Value::DoubleValue(_))
    ));
    // ... and as the GenAI time-to-first-token metric.
    wait_for(&got, |g| {
        g.metrics
            .iter()
            .any(|m| m == "gen_ai.server.time_to_first_token")
    })
    .await;

    // Nobody listens at the collector's address: requests are served as ever, the failures
    // are counted.
    let dead = dead_addr();
    let gw = TestGateway::start(&format!(
        "{}models:\n  r:\n    endpoints: [{{ provider: up, model_id: m }}]\nobserve:\n  otlp:\n    endpoint: {dead}\n    metrics: false\n",
        providers(&[("up", "openai", &m)])
    ))
    .await;
    for _ in 0..3 {
        let r = post(&gw, "/v1/chat/completions", &openai_chat("r", "hi")).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let mut failed = 0;
    for _ in 0..100 {
        let doc = get(&gw, "/admin/metrics", &[]).await.json();
        failed = doc["observe"]["otlp"]["failed_exports"]
            .as_u64()
            .unwrap_or(0);
        if failed >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(failed >= 1, "no failed export counted");
}

async fn otlp_counts(url: &str) -> serde_json::Value {
    let body = reqwest::get(url).await.unwrap().bytes().await.unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    doc["observe"]["otlp"].clone()
}

async fn wait_counts(url: &str, what: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    for _ in 0..200 {
        let c = otlp_counts(url).await;
        if what(&c) {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("counts never got there: {}", otlp_counts(url).await);
}

/// The gateway as a user starts it with only the standard variables set: the exporter is on,
/// finds the collector through `OTEL_EXPORTER_OTLP_ENDPOINT` and sends the headers of
/// `OTEL_EXPORTER_OTLP_HEADERS` (percent-decoded). A collector that answers 503 keeps the
/// spans for a retry that delivers them; one that refuses a batch with 400 gets it once and
/// the spans are counted as dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_variables_configure_export_and_refusals_are_retried_or_dropped() {
    let (otlp, got) = receiver().await;
    got.lock().unwrap().status = 503;
    let m = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bitrouter.yaml");
    std::fs::write(
        &config,
        format!(
            "{}models:\n  r:\n    endpoints: [{{ provider: up, model_id: m }}]\n",
            providers(&[("up", "openai", &m)])
        ),
    )
    .unwrap();
    let endpoint = format!("http://{otlp}");
    let gw = ChildGateway::spawn_with_env(
        &config,
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20t0ken"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                &format!("{endpoint}/v1/metrics"),
            ),
        ],
    );
    let client = reqwest::Client::new();
    let call = || {
        client
            .post(gw.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(openai_chat("r", "hi").to_string())
            .send()
    };
    assert_eq!(call().await.unwrap().status(), 200);
    let metrics = gw.url("/admin/metrics");
    // 503: counted as a failed export, the spans kept.
    wait_counts(&metrics, |c| c["failed_exports"].as_u64() >= Some(1)).await;
    assert!(got.lock().unwrap().spans.is_empty());
    got.lock().unwrap().status = 0;
    // The retry (after the 1 s backoff) delivers them, with the variable's header.
    wait_for(&got, |g| g.spans.len() >= 2).await;
    let c = otlp_counts(&metrics).await;
    assert_eq!(c["exported_spans"], 2, "{c}");
    assert_eq!(c["dropped_spans"], 0, "{c}");
    assert!(
        got.lock()
            .unwrap()
            .authorization
            .iter()
            .all(|a| a == "Bearer t0ken")
    );
    // `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION=gzip`: the traces gzipped (metrics not asked).
    let encodings = got.lock().unwrap().encodings.clone();
    assert!(
        encodings
            .iter()
            .filter(|(p, _)| p == "/v1/traces")
            .all(|(_, e)| e == "gzip")
            && encodings.iter().any(|(p, _)| p == "/v1/traces"),
        "{encodings:?}"
    );

    // 400: the batch is refused once and dropped, not sent again.
    got.lock().unwrap().status = 400;
    let refused_before = got.lock().unwrap().refused;
    assert_eq!(call().await.unwrap().status(), 200);
    let c = wait_counts(&metrics, |c| c["dropped_spans"].as_u64() >= Some(2)).await;
    assert_eq!(c["exported_spans"], 2, "{c}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(got.lock().unwrap().refused, refused_before + 1);
    drop(gw);
}

/// `capture_content: true`: a sampled request's span has the conventions' content event,
/// with the prompt as the provider received it (an API key redacted by the upgoing
/// firewall) and the answer as the caller received it, streamed or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_content_is_the_redacted_prompt_and_the_answer() {
    let (otlp, got) = receiver().await;
    let m = mock_with(MockBehavior {
        text: Some("The answer is 42.".into()),
        ..Default::default()
    })
    .await;
    let gw = TestGateway::start(&format!(
        "{}models:\n  r:\n    endpoints: [{{ provider: up, model_id: m }}]\nobserve:\n  otlp:\n    endpoint: http://{otlp}\n    metrics: false\n    capture_content: true\n",
        providers(&[("up", "openai", &m)])
    ))
    .await;
    let key = "sk-proj-Ab3dE5gH7jK9mN1pQ3sTuV5wX7yZ9aB1cD3eF5gH7iJ9kL1mN3oP5qR7sT9uV";
    let prompt = format!("deploy with {key} please");
    for stream in [false, true] {
        let mut body = openai_chat("r", &prompt);
        body["stream"] = json!(stream);
        let r = post(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    wait_for(&got, |g| {
        g.spans.iter().filter(|s| s.kind == 2).count() >= 2
    })
    .await;
    let spans = got.lock().unwrap().spans.clone();
    for span in spans.iter().filter(|s| s.kind == 2) {
        let details = span
            .events
            .iter()
            .find(|e| e.name == "gen_ai.client.inference.operation.details")
            .expect("a content event");
        let input: serde_json::Value =
            serde_json::from_str(&text(&details.attributes, "gen_ai.input.messages")).unwrap();
        let output: serde_json::Value =
            serde_json::from_str(&text(&details.attributes, "gen_ai.output.messages")).unwrap();
        let said = input[0]["parts"][0]["content"].as_str().unwrap();
        assert_eq!(input[0]["role"], "user");
        assert!(said.contains("[REDACTED:api_keys]"), "{said}");
        assert!(!said.contains("sk-proj-Ab3dE5gH7jK9mN1pQ3sT"), "{said}");
        assert_eq!(output[0]["role"], "assistant");
        let answer: String = output[0]["parts"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["content"].as_str())
            .collect();
        assert_eq!(answer, "The answer is 42.", "{output}");
        assert_eq!(output[0]["finish_reason"], "stop");
    }
    // No compression asked for: bodies go as they are.
    let encodings = got.lock().unwrap().encodings.clone();
    assert!(
        !encodings.is_empty() && encodings.iter().all(|(_, e)| e.is_empty()),
        "{encodings:?}"
    );
}

/// A stream carried on by another endpoint after it broke mid-answer: the continuation is a
/// CLIENT span of its own (`bitrouter.mid_stream.joined`), and its provider gets a
/// `traceparent` naming that span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mid_stream_continuation_is_a_traced_attempt() {
    let (otlp, got) = receiver().await;
    let words = || MockBehavior {
        text: Some("one two three four five six seven eight".into()),
        chunks: Some(8),
        ..Default::default()
    };
    let cut = mock_with(MockBehavior {
        cut_after: Some(3),
        ..words()
    })
    .await;
    let backup = mock_with(words()).await;
    let gw = TestGateway::start(&format!(
        "{}models:\n  r:\n    endpoints:\n      - {{ provider: cut, model_id: a }}\n      - {{ provider: backup, model_id: b }}\nrouting:\n  mid_stream_failover: continue\nobserve:\n  otlp:\n    endpoint: http://{otlp}\n    metrics: false\n",
        providers(&[("cut", "openai", &cut), ("backup", "openai", &backup)])
    ))
    .await;
    let mut body = openai_chat("r", "count");
    body["stream"] = json!(true);
    let r = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("[DONE]"), "{}", r.text);
    wait_for(&got, |g| g.spans.len() >= 3).await;
    let spans = got.lock().unwrap().spans.clone();
    let request = spans.iter().find(|s| s.kind == 2).unwrap();
    let joined = spans
        .iter()
        .find(|s| s.kind == 3 && attr(&s.attributes, "bitrouter.mid_stream.joined").is_some())
        .expect("the continuation's span");
    assert_eq!(joined.parent_span_id, request.span_id);
    assert_eq!(text(&joined.attributes, "bitrouter.endpoint"), "backup:b");
    let last = backup.last_request().unwrap();
    let seen = last
        .header("traceparent")
        .expect("traceparent to the continuing provider");
    assert_eq!(
        seen,
        format!(
            "00-{}-{}-01",
            hex::encode(&request.trace_id),
            hex::encode(&joined.span_id)
        )
    );
}
