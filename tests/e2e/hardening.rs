//! The defects of the hardening pass, each through the real server on loopback: budgets
//! against a provider stand-in that bills every byte (tools, schemas, `n`), on redb and on
//! three replicas sharing PostgreSQL; the output cap a budgeted request gets; streams cut
//! after their first content cooling their endpoint down; upstream answers past
//! `max_response_size`; foreign (HTML) error bodies; admin token lifetimes and conflicting
//! credentials.

use std::sync::Arc;
use std::time::Duration;

use bitrouter::caller::{BudgetClaim, BudgetScope, BudgetWindow, Caller, Scope};
use bitrouter_mock::{MockBehavior, MockServer};
use serde_json::{Value, json};

use crate::harness::*;
use crate::scratch_db::Scratch;

/// $2 per million input tokens, $10 per million output: 2 and 10 µUSD per token.
const PRICING: &str = "pricing: { input_tokens: { no_cache: 2.0 }, output_tokens: { text: 10.0 } }";

fn budget_yaml(m: &MockServer, database: &str) -> String {
    format!(
        "providers:\n  up:\n    api_protocol: openai\n    api_base: {}/v1\n    api_key: k\n    models:\n      gpt-up: {{ {PRICING} }}\n  ant:\n    api_protocol: anthropic\n    api_base: {}\n    api_key: k\n    models:\n      claude-up: {{ {PRICING} }}\nmodels:\n  m:\n    endpoints: [{{ provider: up, model_id: gpt-up }}]\n  a:\n    endpoints: [{{ provider: ant, model_id: claude-up }}]\ndatabase:\n  url: {database}\n",
        m.base_url(),
        m.base_url()
    )
}

fn budgeted(limit_micro: u64) -> Arc<Caller> {
    Arc::new(Caller {
        account: "eip155:1:0x00000000000000000000000000000000000000bb".into(),
        session: format!("hardening-{:x}", fastrand::u64(..)),
        scope: Scope::Api,
        models: None,
        budget: Some(BudgetClaim {
            limit_micro_usd: limit_micro,
            scope: BudgetScope::Session,
            window: BudgetWindow::Lifetime,
        }),
        rate: None,
    })
}

/// A 10 KB JSON schema, as agents' tool definitions and structured outputs carry.
fn big_schema() -> Value {
    json!({"type": "object", "properties": {
        "report": {"type": "string", "description": "d".repeat(10_000)}}})
}

/// The request shapes the issue measured overspending: a 10 KB tool, a 10 KB response
/// schema, `n: 8`, and Anthropic's tools + `output_config` schema.
fn expensive_requests() -> Vec<(&'static str, Value)> {
    let msgs = json!([{"role": "user", "content": "write the report"}]);
    vec![
        (
            "/v1/chat/completions",
            json!({"model": "m", "max_tokens": 40, "messages": msgs,
                   "tools": [{"type": "function", "function": {"name": "file_report", "parameters": big_schema()}}]}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "m", "max_tokens": 40, "messages": msgs,
                   "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": big_schema()}}}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "m", "max_tokens": 200, "n": 8, "messages": msgs}),
        ),
        (
            "/v1/messages",
            json!({"model": "a", "max_tokens": 40, "messages": msgs,
                   "tools": [{"name": "file_report", "input_schema": big_schema()}],
                   "output_config": {"format": {"type": "json_schema", "schema": big_schema()}}}),
        ),
    ]
}

/// Fires `rounds` of every expensive request shape at `gateways` at once (round-robin over
/// the replicas) and returns how many were admitted.
async fn hammer(gateways: &[&TestGateway], rounds: usize) -> usize {
    let shapes = expensive_requests();
    let mut tasks = Vec::new();
    for i in 0..rounds * shapes.len() {
        let (path, body) = &shapes[i % shapes.len()];
        let url = gateways[i % gateways.len()].url(path);
        let body = body.to_string();
        tasks.push(tokio::spawn(async move {
            client()
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => admitted += 1,
            402 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    admitted
}

#[tokio::test]
async fn budgets_bound_what_a_provider_bills_for_tools_schemas_and_choices() {
    let m = mock_with(MockBehavior {
        bill_worst: true,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("redb://{}/ledger.redb", dir.path().display());
    let gw = TestGateway::start(&budget_yaml(&m, &db)).await;
    // Enough for about ten of these requests at what they really cost.
    let limit = 500_000;
    gw.gateway.set_caller_for_tests(Some(budgeted(limit)));
    let admitted = hammer(&[&gw], 25).await;
    let spent = crate::budgets::ledger_spent_micro(&gw, 100).await;
    assert!(
        admitted > 0,
        "nothing was admitted: the test proves nothing"
    );
    assert!(
        spent <= limit,
        "spent {spent} µUSD of a {limit} µUSD budget ({admitted} admitted)"
    );
    // The provider stand-in billed what it says: 8 choices × 200 tokens for `n: 8`.
    let rows = gw.gateway.ledger().rows(0, i64::MAX).await.unwrap();
    assert!(
        rows.iter().any(|r| r.tokens.output_total() == 1_600),
        "no n:8 answer billed 1,600 output tokens"
    );
}

#[tokio::test]
async fn budgets_bound_what_a_provider_bills_across_three_replicas_on_postgres() {
    let m = mock_with(MockBehavior {
        bill_worst: true,
        ..Default::default()
    })
    .await;
    let scratch = Scratch::postgres("hardening").await;
    let yaml = budget_yaml(&m, scratch.url());
    let replicas = [
        TestGateway::start(&yaml).await,
        TestGateway::start(&yaml).await,
        TestGateway::start(&yaml).await,
    ];
    let caller = budgeted(500_000);
    for r in &replicas {
        r.gateway.set_caller_for_tests(Some(caller.clone()));
    }
    let admitted = hammer(&[&replicas[0], &replicas[1], &replicas[2]], 20).await;
    assert!(admitted > 0);
    // Every replica writes its rows to the one database: any of them reads them all.
    let mut spent = 0;
    for _ in 0..300 {
        let rows = replicas[0]
            .gateway
            .ledger()
            .rows(0, i64::MAX)
            .await
            .unwrap();
        spent = rows
            .iter()
            .map(|r| r.cost_nano_usd)
            .sum::<u64>()
            .div_ceil(1000);
        if rows.len() >= 80 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(spent <= 500_000, "spent {spent} µUSD across replicas");
    drop(replicas);
    scratch.drop().await;
}

#[tokio::test]
async fn a_budgeted_request_without_an_output_cap_gets_the_one_it_was_reserved_for() {
    let m = mock_with(MockBehavior {
        bill_worst: true,
        ..Default::default()
    })
    .await;
    let gw = TestGateway::start(&format!(
        "{}budgets:\n  default_max_output_tokens: 300\n",
        budget_yaml(&m, "memory://")
    ))
    .await;
    gw.gateway.set_caller_for_tests(Some(budgeted(1_000_000)));
    let r = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(m.last_request().unwrap().body["max_tokens"], 300);
    // `max_completion_tokens` (reasoning models refuse `max_tokens`) is kept as the field.
    let r = post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "m", "max_completion_tokens": 77, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = m.last_request().unwrap().body;
    assert_eq!(sent["max_completion_tokens"], 77);
    assert!(sent.get("max_tokens").is_none(), "{sent}");
    // A caller without a budget is left alone.
    gw.gateway.set_caller_for_tests(None);
    post(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert!(m.last_request().unwrap().body.get("max_tokens").is_none());
}

fn two_tier(primary: &MockServer, backup: &MockServer, extra: &str) -> String {
    format!(
        "{}models:\n  r:\n    cooldown: {{ failures: 2, duration: 60s }}\n    endpoints:\n      - {{ provider: primary, model_id: p }}\n      - {{ provider: backup, model_id: b }}\n  solo:\n    endpoints:\n      - {{ provider: primary, model_id: p }}\n{extra}",
        providers(&[("primary", "openai", primary), ("backup", "openai", backup)])
    )
}

#[tokio::test]
async fn streams_cut_after_their_first_content_cool_their_endpoint_down() {
    let primary = mock_with(MockBehavior {
        cut_after: Some(2),
        ..Default::default()
    })
    .await;
    let backup = mock().await;
    let gw = TestGateway::start(&two_tier(&primary, &backup, "")).await;
    let mut body = openai_chat("r", "hi");
    body["stream"] = json!(true);
    for _ in 0..2 {
        let r = post(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(r.header("x-bitrouter-upstream"), "primary:p");
        assert!(!r.text.contains("[DONE]"), "{}", r.text);
    }
    // Two broken streams reach the threshold: the endpoint cools down, streams go to the
    // healthy fallback.
    for _ in 0..3 {
        let r = post(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(r.header("x-bitrouter-upstream"), "backup:b", "{}", r.text);
        assert!(r.text.contains("[DONE]"));
    }
    assert_eq!(primary.request_count(), 2);
    // The failed attempts carry their error type, and the endpoint's stream errors count them.
    let rows = gw.gateway.ledger().rows(0, i64::MAX).await.unwrap();
    let cut = rows
        .iter()
        .filter(|r| r.provider.as_deref() == Some("primary"))
        .collect::<Vec<_>>();
    assert_eq!(cut.len(), 2);
    assert!(cut.iter().all(|r| r.error_type.is_some()), "{cut:?}");
    let metrics = get(&gw, "/admin/metrics", &[]).await.json();
    let ep = &metrics["routes"]["r"]["endpoints"]["primary:p"];
    assert_eq!(ep["streams"]["errors"], 2, "{metrics}");
    assert_eq!(ep["attempt_errors"], 2, "{metrics}");
    // Prometheus: the requests of a broken stream say 200, the attempt errors say what broke.
    let prom = get(&gw, "/metrics", &[]).await.text;
    let line = prom
        .lines()
        .find(|l| {
            l.starts_with("bitrouter_upstream_attempt_errors_total{")
                && l.contains("endpoint=\"primary:p\"")
        })
        .unwrap_or_else(|| panic!("no attempt-error series for primary:p in\n{prom}"));
    assert!(line.ends_with(" 2"), "{line}");
}

#[tokio::test]
async fn upstream_answers_past_max_response_size_are_refused_and_failed_over() {
    let primary = mock_with(MockBehavior {
        pad_bytes: Some(8 << 20),
        ..Default::default()
    })
    .await;
    let backup = mock().await;
    let yaml = two_tier(&primary, &backup, "upstream:\n  max_response_size: 1MiB\n");
    let gw = TestGateway::start(&yaml).await;
    let r = post(&gw, "/v1/chat/completions", &openai_chat("r", "hi")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-bitrouter-upstream"), "backup:b");
    // Alone on its route: a 502 in the caller's dialect naming the limit.
    let r = post(&gw, "/v1/chat/completions", &openai_chat("solo", "hi")).await;
    assert_eq!(r.status, 502, "{}", r.text);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("max_response_size"), "{msg}");
    let r = post(&gw, "/v1/messages", &anthropic_msg("solo", "hi")).await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert_eq!(r.json()["type"], "error");
    // Under the limit the same padded answer is served (trailing whitespace is valid JSON).
    primary.set_behavior(MockBehavior {
        pad_bytes: Some(100_000),
        ..Default::default()
    });
    let r = post(&gw, "/v1/chat/completions", &openai_chat("solo", "hi")).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// `VmRSS` and `VmHWM` (peak) of process `pid`, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{status}"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The gateway's memory stays bounded whatever its upstreams send: 16 concurrent answers of
/// 256 MiB each (4 GiB in all, the kind that took an unbounded gateway to 892 MB RSS for one
/// 300 MB answer) each cost it at most `max_response_size`, and its peak RSS grows by far
/// less than one of them.
#[tokio::test]
async fn memory_stays_bounded_when_upstreams_send_huge_answers() {
    let huge = mock_with(MockBehavior {
        pad_bytes: Some(256 << 20),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bitrouter.yaml");
    std::fs::write(
        &cfg,
        format!(
            "{}models:\n  solo:\n    endpoints: [{{ provider: primary, model_id: p }}]\nupstream:\n  max_response_size: 1MiB\ndatabase:\n  url: memory://\n",
            providers(&[("primary", "openai", &huge)])
        ),
    )
    .unwrap();
    let gw = crate::child::ChildGateway::spawn(&cfg, dir.path());
    let client = crate::harness::client();
    let send = || {
        client
            .post(gw.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(openai_chat("solo", "hi").to_string())
            .send()
    };
    // Warm: one refused answer, so what start-up and the first request allocate is in.
    assert_eq!(send().await.unwrap().status(), 502);
    let (_, peak_before) = rss_kib(gw.pid());
    for _ in 0..2 {
        let statuses = futures_util::future::join_all((0..16).map(|_| send())).await;
        for s in statuses {
            assert_eq!(s.unwrap().status(), 502);
        }
    }
    let (rss, peak) = rss_kib(gw.pid());
    // 16 answers in flight at most 1 MiB each: 16 MiB of bodies, plus buffers; 64 MiB is
    // far below one unbounded answer (256 MiB), let alone sixteen.
    assert!(
        peak.saturating_sub(peak_before) < 64 << 10,
        "peak RSS grew from {peak_before} to {peak} KiB"
    );
    assert!(
        rss < peak_before + (64 << 10),
        "RSS {rss} KiB after, {peak_before} before"
    );
}

#[tokio::test]
async fn a_providers_own_max_response_size_overrides_the_global_one() {
    let primary = mock_with(MockBehavior {
        pad_bytes: Some(300_000),
        ..Default::default()
    })
    .await;
    let yaml = format!(
        "{}    max_response_size: 100KiB\nmodels:\n  solo:\n    endpoints: [{{ provider: primary, model_id: p }}]\n",
        providers(&[("primary", "openai", &primary)])
    );
    let gw = TestGateway::start(&yaml).await;
    let r = post(&gw, "/v1/chat/completions", &openai_chat("solo", "hi")).await;
    assert_eq!(r.status, 502, "{}", r.text);
    for (yaml, key) in [
        (
            "upstream:\n  max_response_size: 0\n",
            "upstream.max_response_size",
        ),
        (
            "upstream:\n  max_response_size: lots\n",
            "max_response_size",
        ),
        (
            "providers:\n  openai:\n    max_response_size: 0\n",
            "providers.openai.max_response_size",
        ),
    ] {
        let e = bitrouter::config::Config::parse(yaml, std::path::Path::new("b.yaml"))
            .err()
            .unwrap_or_else(|| panic!("{yaml} was accepted"))
            .to_string();
        assert!(e.contains(key) && e.contains("b.yaml"), "{e}");
    }
}

#[tokio::test]
async fn an_upstreams_html_error_reaches_the_caller_in_its_dialect() {
    let m = mock_with(MockBehavior {
        status: Some(502),
        html_error: true,
        ..Default::default()
    })
    .await;
    let gw = TestGateway::start(&format!(
        "{}models:\n  o:\n    endpoints: [{{ provider: o, model_id: x }}]\n  a:\n    endpoints: [{{ provider: a, model_id: y }}]\n",
        providers(&[("o", "openai", &m), ("a", "anthropic", &m)])
    ))
    .await;
    for (path, body, model) in [
        ("/v1/chat/completions", openai_chat("o", "hi"), "o"),
        ("/v1/messages", anthropic_msg("a", "hi"), "a"),
    ] {
        let r = post(&gw, path, &body).await;
        assert_eq!(r.status, 502, "{model}: {}", r.text);
        assert_eq!(r.header("content-type"), "application/json");
        let v: Value = serde_json::from_str(&r.text)
            .unwrap_or_else(|_| panic!("{model}: not JSON: {}", r.text));
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("502")),
            "{v}"
        );
    }
    // A same-dialect JSON error still passes byte for byte.
    m.set_behavior(MockBehavior {
        status: Some(400),
        ..Default::default()
    });
    let r = post(&gw, "/v1/chat/completions", &openai_chat("o", "hi")).await;
    assert_eq!(r.status, 400);
    assert!(
        r.text.contains("rejected the request on purpose"),
        "{}",
        r.text
    );
}
