//! Request events, metrics and their endpoints: one event per request for every outcome,
//! sinks that panic or block cannot hurt requests, `/admin/metrics` agrees with what was
//! sent, `/metrics` passes `promtool check metrics`, and the JSON-lines log rotates.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitrouter::observe::{ObserveCallback, RequestEvent};
use bitrouter_mock::MockBehavior;
use futures_util::StreamExt;
use serde_json::json;

use crate::harness::*;

#[derive(Default)]
pub(crate) struct Collect(Mutex<Vec<Arc<RequestEvent>>>);

impl ObserveCallback for Collect {
    fn name(&self) -> &str {
        "collect"
    }
    fn on_events(&self, events: &[Arc<RequestEvent>]) {
        self.0.lock().unwrap().extend(events.iter().cloned());
    }
}

impl Collect {
    pub(crate) async fn wait(&self, n: usize) -> Vec<Arc<RequestEvent>> {
        for _ in 0..300 {
            let v = self.0.lock().unwrap().clone();
            if v.len() >= n {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("expected {n} events, got {}", self.0.lock().unwrap().len());
    }
}

struct Panics;
impl ObserveCallback for Panics {
    fn name(&self) -> &str {
        "panics"
    }
    fn on_events(&self, _: &[Arc<RequestEvent>]) {
        panic!("a sink bug");
    }
}

struct Blocks;
impl ObserveCallback for Blocks {
    fn name(&self) -> &str {
        "blocks"
    }
    fn on_events(&self, _: &[Arc<RequestEvent>]) {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn usage() -> MockBehavior {
    MockBehavior {
        input_tokens: Some(100),
        output_tokens: Some(20),
        ..Default::default()
    }
}

#[tokio::test]
async fn one_event_per_request_for_every_outcome() {
    let good = mock_with(usage()).await;
    let bad = mock_with(MockBehavior {
        status: Some(503),
        ..Default::default()
    })
    .await;
    let limited = mock_with(MockBehavior {
        status: Some(429),
        ..Default::default()
    })
    .await;
    let stalled = mock_with(MockBehavior {
        stall_before_headers: true,
        ..Default::default()
    })
    .await;
    let slow = mock_with(MockBehavior {
        chunks: Some(100),
        chunk_delay_ms: 30,
        ..Default::default()
    })
    .await;
    let yaml = format!(
        "{}  dead:\n    api_protocol: openai\n    api_base: {}/v1\n    api_key: k\nmodels:\n  ok:\n    endpoints: [{{ provider: good, model_id: g }}]\n  failover:\n    endpoints: [{{ provider: bad, model_id: b }}, {{ provider: good, model_id: g }}]\n  limited:\n    endpoints: [{{ provider: limited, model_id: l }}]\n  timeout:\n    timeouts: {{ first_byte: 200ms }}\n    endpoints: [{{ provider: stalled, model_id: s }}]\n  dead:\n    endpoints: [{{ provider: dead, model_id: d }}]\n  slow:\n    endpoints: [{{ provider: slow, model_id: w }}]\n",
        providers(&[
            ("good", "anthropic", &good),
            ("bad", "openai", &bad),
            ("limited", "openai", &limited),
            ("stalled", "openai", &stalled),
            ("slow", "openai", &slow)
        ]),
        dead_addr()
    );
    let sink = Arc::new(Collect::default());
    let gw = TestGateway::start_with(&yaml, vec![sink.clone()]).await;
    let session = [("x-bitrouter-session", "sess-1")];
    let send = |model: &str| {
        post_raw(
            &gw,
            "/v1/chat/completions",
            openai_chat(model, "hi").to_string().into_bytes(),
            &session,
        )
    };
    assert_eq!(send("ok").await.status, 200);
    assert_eq!(send("failover").await.status, 200);
    assert_eq!(send("limited").await.status, 429);
    assert_eq!(send("timeout").await.status, 504);
    assert_eq!(send("dead").await.status, 502);
    assert_eq!(send("nope").await.status, 404);
    assert_eq!(
        post_raw(&gw, "/v1/chat/completions", b"{".to_vec(), &[])
            .await
            .status,
        400
    );
    let mut s = openai_chat("ok", "hi");
    s["stream"] = true.into();
    assert_eq!(post(&gw, "/v1/chat/completions", &s).await.status, 200);
    // A caller that hangs up mid-stream.
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(json!({"model": "slow", "stream": true, "messages": [{"role": "user", "content": "hi"}]}).to_string())
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    body.next().await.unwrap().unwrap();
    drop(body);

    let events = sink.wait(9).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        sink.0.lock().unwrap().len(),
        9,
        "exactly one event per request"
    );
    let by_route = |r: &str| {
        events
            .iter()
            .find(|e| e.route.as_deref() == Some(r) && !e.stream)
            .unwrap_or_else(|| panic!("no event for {r}"))
            .clone()
    };

    let ok = by_route("ok");
    assert!(ok.success && ok.status == 200);
    assert_eq!(
        (ok.provider.as_deref(), ok.model.as_deref()),
        (Some("good"), Some("g"))
    );
    assert_eq!((ok.input_tokens, ok.output_tokens), (100, 20));
    assert_eq!(ok.session_id.as_deref(), Some("sess-1"));
    assert_eq!(ok.account_id, None);
    assert!(ok.latency_ms > 0.0 && ok.ttfb_ms.is_some() && ok.upstream_ms > 0.0);
    assert_eq!(ok.attempts.len(), 1);

    let f = by_route("failover");
    assert!(f.success);
    assert_eq!(f.attempts.len(), 2);
    assert_eq!(
        (f.attempts[0].error_type.as_deref(), f.attempts[0].status),
        (Some("Provider"), Some(503))
    );
    assert_eq!(f.attempts[1].error_type, None);

    for (route, kind) in [
        ("limited", "RateLimited"),
        ("timeout", "Timeout"),
        ("dead", "Transport"),
    ] {
        let e = by_route(route);
        assert!(!e.success);
        assert_eq!(e.error_type.as_deref(), Some(kind), "{route}");
    }
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|e| e.error_type.as_deref())
        .collect();
    assert!(
        kinds.contains(&"NotFound")
            && kinds.contains(&"BadRequest")
            && kinds.contains(&"ClientClosed"),
        "{kinds:?}"
    );
    let stream = events.iter().find(|e| e.stream && e.success).unwrap();
    assert_eq!(stream.output_tokens, 20);
    assert!(stream.ttfb_ms.unwrap() <= stream.latency_ms);
    let cut = events
        .iter()
        .find(|e| e.error_type.as_deref() == Some("ClientClosed"))
        .unwrap();
    assert_eq!(cut.status, 499);
    assert!(cut.estimated && cut.stream);
}

#[tokio::test]
async fn panicking_and_blocking_sinks_do_not_touch_requests() {
    let m = mock().await;
    let yaml = format!(
        "{}models:\n  r:\n    endpoints: [{{ provider: p, model_id: x }}]\nobserve:\n  queue_capacity: 8\n",
        providers(&[("p", "openai", &m)])
    );
    let gw = TestGateway::start_with(&yaml, vec![Arc::new(Panics), Arc::new(Blocks)]).await;
    // One request first, so the blocking sink's first batch (which lingers 20 ms for
    // company) is handed over and blocks before the other 59 arrive: otherwise a fast
    // machine delivers all 60 in that one batch and nothing is ever dropped.
    let first = post(&gw, "/v1/chat/completions", &openai_chat("r", "hi")).await;
    assert_eq!(first.status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut tasks = Vec::new();
    for _ in 0..59 {
        let url = gw.url("/v1/chat/completions");
        tasks.push(tokio::spawn(async move {
            client()
                .post(url)
                .header("content-type", "application/json")
                .body(openai_chat("r", "hi").to_string())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    // Every event is accounted for: the panicking sink's are counted as panicked or dropped.
    let mut doc = serde_json::Value::Null;
    for _ in 0..500 {
        doc = get(&gw, "/admin/metrics", &[]).await.json();
        let p = doc["observe"]["sinks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "panics")
            .unwrap()
            .clone();
        if p["panicked"].as_u64().unwrap() + p["dropped"].as_u64().unwrap() == 60 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sinks = doc["observe"]["sinks"].as_array().unwrap();
    let stat = |n: &str| sinks.iter().find(|s| s["name"] == n).unwrap().clone();
    assert_eq!(
        stat("panics")["panicked"].as_u64().unwrap() + stat("panics")["dropped"].as_u64().unwrap(),
        60,
        "{sinks:?}"
    );
    assert!(
        stat("panics")["panicked"].as_u64().unwrap() > 0,
        "{sinks:?}"
    );
    assert_eq!(stat("panics")["delivered"], 0);
    // The blocked sink holds one batch forever; its queue of 8 fills and the rest is dropped.
    assert_eq!(stat("blocks")["delivered"], 0);
    assert!(stat("blocks")["dropped"].as_u64().unwrap() > 0, "{sinks:?}");
    assert_eq!(doc["requests"], 60);
}

#[tokio::test]
async fn admin_metrics_match_the_traffic() {
    let (a, b) = (
        mock_with(usage()).await,
        mock_with(MockBehavior {
            status: Some(500),
            ..Default::default()
        })
        .await,
    );
    let yaml = format!(
        "{}models:\n  main:\n    endpoints: [{{ provider: b, model_id: y }}, {{ provider: a, model_id: x }}]\n",
        providers(&[("a", "openai", &a), ("b", "anthropic", &b)])
    );
    let gw = TestGateway::start(&yaml).await;
    for _ in 0..10 {
        assert_eq!(
            post(&gw, "/v1/chat/completions", &openai_chat("main", "hi"))
                .await
                .status,
            200
        );
    }
    let mut s = openai_chat("main", "hi");
    s["stream"] = true.into();
    for _ in 0..4 {
        assert_eq!(post(&gw, "/v1/chat/completions", &s).await.status, 200);
    }
    assert_eq!(
        post(&gw, "/v1/chat/completions", &openai_chat("a:direct", "hi"))
            .await
            .status,
        200
    );
    let doc = get(&gw, "/admin/metrics", &[]).await.json();
    assert_eq!(
        doc,
        get(&gw, "/v1/metrics", &[])
            .await
            .json()
            .as_object()
            .map(|_| doc.clone())
            .unwrap()
    );
    assert_eq!(doc["requests"], 15);
    assert_eq!(doc["errors"], 0);
    assert_eq!(doc["in_flight"], 0);
    // One connection per request (the test client is new each time), this one included; it
    // is open while its document is built. One runtime: the default.
    let connections = &doc["connections"];
    assert_eq!(connections["accepted"], 16, "{connections}");
    assert!(connections["open"].as_i64().unwrap() >= 1, "{connections}");
    assert_eq!(connections["runtimes"].as_array().map(Vec::len), Some(1));
    assert_eq!(connections["runtimes"][0]["accepted"], 16);
    let main = &doc["routes"]["main"];
    assert_eq!(main["requests"], 14);
    assert_eq!(main["streams"]["requests"], 4);
    assert_eq!(main["streams"]["completed"], 4);
    assert_eq!(main["streams"]["output_tokens"], 80);
    assert_eq!(main["avg_input_tokens"], 100.0);
    assert_eq!(main["avg_output_tokens"], 20.0);
    assert_eq!(main["latency_ms"]["samples"], 10);
    assert!(
        main["latency_ms"]["p50"].as_f64().unwrap() <= main["latency_ms"]["p99"].as_f64().unwrap()
    );
    assert!(main["streams"]["stream_start_ms"]["p50"].as_f64().is_some());
    // Every request was served by a:x after b:y failed; both endpoints are listed under the
    // endpoint that answered.
    assert_eq!(main["endpoints"]["a:x"]["requests"], 14);
    assert_eq!(doc["routes"]["a:direct"]["requests"], 1);
    assert!(doc["overhead_ms"]["samples"].as_u64().unwrap() == 15);
    assert!(doc["sampling"].as_str().unwrap().contains("10000"));
}

#[tokio::test]
async fn prometheus_exposition_passes_promtool() {
    let m = mock_with(usage()).await;
    let yaml = format!(
        "{}models:\n  r:\n    endpoints: [{{ provider: p, model_id: x, }}]\n",
        providers(&[("p", "openai", &m)])
    );
    let gw = TestGateway::start(&yaml).await;
    for i in 0..5 {
        let model = if i == 4 { "missing" } else { "r" };
        post(&gw, "/v1/chat/completions", &openai_chat(model, "hi")).await;
    }
    let r = get(&gw, "/metrics", &[]).await;
    assert_eq!(r.status, 200);
    assert!(
        r.text.contains(
            "bitrouter_requests_total{route=\"r\",provider=\"p\",model=\"x\",status=\"200\"} 4"
        ),
        "{}",
        r.text
    );
    assert!(r.text.contains("bitrouter_request_duration_seconds_bucket"));
    assert!(
        r.text
            .contains("bitrouter_gateway_overhead_seconds_count 5")
    );
    assert!(
        r.text
            .contains("bitrouter_component_events{component=\"ledger\",state=\"written\"}")
    );
    // Each default plugin's instance set-ups on a call's path and renewals off it.
    for state in ["setups", "renewals"] {
        let series = format!(
            "bitrouter_component_events{{component=\"plugin_credentials\",state=\"{state}\"}}"
        );
        assert!(r.text.contains(&series), "{series} in {}", r.text);
    }
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let mut child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{promtool} not found ({e}); install Debian's `prometheus` package (.ci/run does)"
            )
        });
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(r.text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        r.text
    );
}

#[tokio::test]
async fn jsonl_log_rotates_by_size() {
    let m = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.jsonl");
    let yaml = format!(
        "{}models:\n  r:\n    endpoints: [{{ provider: p, model_id: x }}]\nobserve:\n  jsonl: {}\n  jsonl_max_size: 4KiB\n  jsonl_keep: 2\n",
        providers(&[("p", "openai", &m)]),
        log.display()
    );
    let gw = TestGateway::start(&yaml).await;
    for _ in 0..40 {
        assert_eq!(
            post(&gw, "/v1/chat/completions", &openai_chat("r", "hi"))
                .await
                .status,
            200
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut lines = 0;
    for p in [
        log.clone(),
        dir.path().join("events.jsonl.1"),
        dir.path().join("events.jsonl.2"),
    ] {
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(
            text.len() <= 4096,
            "{} is {} bytes",
            p.display(),
            text.len()
        );
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["route"], "r");
            lines += 1;
        }
    }
    assert!(
        !dir.path().join("events.jsonl.3").exists(),
        "only jsonl_keep old files are kept"
    );
    assert!(lines > 0 && lines < 40, "older files were dropped: {lines}");
}
