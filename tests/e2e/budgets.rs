//! Budgets through the real server: the caller is set with the library's test hook (auth
//! is not on this branch), everything else is real HTTP on loopback against mock upstreams
//! — reservation before forwarding, settlement to the ledger's cost, the 402 in both
//! dialects, the remaining-budget header on JSON, stream and error responses, and many
//! parallel requests against a small budget.

use std::sync::Arc;
use std::time::Duration;

use bitrouter::caller::{BudgetClaim, BudgetScope, BudgetWindow, Caller, Scope};
use serde_json::{Value, json};

use crate::harness::*;

/// $2 per million input tokens, $10 per million output: 2 and 10 µUSD per token.
const PRICING: &str = "pricing: { input_tokens: { no_cache: 2.0 }, output_tokens: { text: 10.0 } }";

async fn setup() -> (TestGateway, bitrouter_mock::MockServer) {
    let m = mock().await;
    let yaml = format!(
        "providers:\n  up:\n    api_protocol: openai\n    api_base: {}/v1\n    api_key: k\n    models:\n      gpt-up: {{ {PRICING} }}\nmodels:\n  m:\n    endpoints: [{{ provider: up, model_id: gpt-up }}]\n",
        m.base_url()
    );
    (TestGateway::start(&yaml).await, m)
}

fn caller(
    session: &str,
    limit_micro: u64,
    scope: BudgetScope,
    window: BudgetWindow,
) -> Arc<Caller> {
    Arc::new(Caller {
        account: "eip155:1:0x00000000000000000000000000000000000000aa".into(),
        session: session.into(),
        scope: Scope::Api,
        models: None,
        budget: Some(BudgetClaim {
            limit_micro_usd: limit_micro,
            scope,
            window,
        }),
        rate: None,
    })
}

fn chat(max_tokens: u64, stream: bool) -> Value {
    json!({"model": "m", "max_tokens": max_tokens, "stream": stream,
           "messages": [{"role": "user", "content": "hello"}]})
}

fn remaining(r: &Reply) -> u64 {
    r.header("x-bitrouter-budget-remaining")
        .parse()
        .unwrap_or_else(|_| panic!("no budget header: {:?} {}", r.headers, r.text))
}

/// Sum of the ledger's costs, in micro-USD (rounded up), once `n` rows are written.
pub(crate) async fn ledger_spent_micro(gw: &TestGateway, n: u64) -> u64 {
    for _ in 0..500 {
        if gw.gateway.ledger().stats().written >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rows = gw.gateway.ledger().rows(0, i64::MAX).await.unwrap();
    assert_eq!(rows.len() as u64, n);
    rows.iter()
        .map(|r| r.cost_nano_usd)
        .sum::<u64>()
        .div_ceil(1000)
}

#[tokio::test]
async fn json_stream_and_402_carry_the_remaining_budget() {
    let (gw, _m) = setup().await;
    // 1,000 µUSD. Worst case of `chat(16)`: (5 bytes + 8) × 2 + 16 × 10 = 186 µUSD.
    gw.gateway.set_caller_for_tests(Some(caller(
        "s1",
        1_000,
        BudgetScope::Session,
        BudgetWindow::Lifetime,
    )));
    let r = post(&gw, "/v1/chat/completions", &chat(16, false)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let spent = ledger_spent_micro(&gw, 1).await;
    assert!(spent > 0);
    // After a JSON answer: settled, so the limit minus the real cost (floored to the µUSD).
    assert_eq!(remaining(&r), 1_000 - spent);
    let after_json = remaining(&r);

    // A stream's header leaves before it ends: what is left after its reservation.
    let s = post(&gw, "/v1/chat/completions", &chat(16, true)).await;
    assert_eq!(s.status, 200, "{}", s.text);
    assert_eq!(remaining(&s), after_json - 186);

    // A bad request by a budgeted caller still tells it what is left.
    let bad = post_raw(&gw, "/v1/chat/completions", b"{".to_vec(), &[]).await;
    assert_eq!(bad.status, 400);
    let after_stream = remaining(&bad);
    assert!(
        after_stream < after_json && after_stream > after_json - 186,
        "{after_stream}"
    );

    // A request whose worst case does not fit: 402, OpenAI shape.
    let big = post(&gw, "/v1/chat/completions", &chat(1_000, false)).await;
    assert_eq!(big.status, 402, "{}", big.text);
    let e = &big.json()["error"];
    assert_eq!(e["code"], "budget_exceeded");
    assert_eq!(e["remaining_micro_usd"], after_stream);
    assert_eq!(e["limit_micro_usd"], 1_000);
    assert_eq!(e["required_micro_usd"], 26 + 10_000);
    assert!(e["resets_at"].is_null());
    assert!(
        e["message"].as_str().unwrap().contains("budget exceeded"),
        "{e}"
    );
    assert_eq!(remaining(&big), after_stream);
    // Refused requests cost nothing and are in the ledger as BudgetExceeded.
    ledger_spent_micro(&gw, 4).await;
    let rows = gw.gateway.ledger().rows(0, i64::MAX).await.unwrap();
    let refused = rows
        .iter()
        .find(|r| r.error_type.as_deref() == Some("BudgetExceeded"));
    assert!(refused.is_some_and(|r| r.cost_nano_usd == 0), "{rows:?}");

    // Anthropic shape, duration window: `billing_error` and the reset time.
    gw.gateway.set_caller_for_tests(Some(caller(
        "s2",
        10,
        BudgetScope::Session,
        BudgetWindow::Duration(Duration::from_secs(3600)),
    )));
    let a = post(
        &gw,
        "/v1/messages",
        &json!({"model": "m", "max_tokens": 16,
        "messages": [{"role": "user", "content": "hello"}]}),
    )
    .await;
    assert_eq!(a.status, 402, "{}", a.text);
    let v = a.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "billing_error");
    assert_eq!(v["error"]["remaining_micro_usd"], 10);
    let resets = v["error"]["resets_at"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(resets).is_ok(), "{resets}");
    assert!(v["error"]["message"].as_str().unwrap().contains(resets));
    assert_eq!(remaining(&a), 10);
}

#[tokio::test]
async fn rounds_window_and_account_scope_over_http() {
    let (gw, _m) = setup().await;
    // Two sessions of one account share an account budget with a 3-request window.
    // Worst case 186 µUSD, real cost ~40: requests 1 and 2 fit in 250, the third does not
    // (it is still round 3), the fourth opens a new window.
    let w = BudgetWindow::Rounds(3);
    let mut statuses = Vec::new();
    for session in ["a", "b", "a", "b", "a"] {
        gw.gateway
            .set_caller_for_tests(Some(caller(session, 250, BudgetScope::Account, w)));
        let r = post(&gw, "/v1/chat/completions", &chat(16, false)).await;
        statuses.push(r.status);
        if r.status == 402 {
            // The window is used up: the next request starts a new one.
            assert_eq!(r.json()["error"]["resets_after_requests"], 0, "{}", r.text);
        }
    }
    assert_eq!(statuses, [200, 200, 402, 200, 200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_requests_never_overspend_a_small_budget() {
    let (gw, _m) = setup().await;
    gw.gateway.set_caller_for_tests(Some(caller(
        "p",
        1_000,
        BudgetScope::Session,
        BudgetWindow::Lifetime,
    )));
    let gw = Arc::new(gw);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            post(&gw, "/v1/chat/completions", &chat(16, i % 2 == 0))
                .await
                .status
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            402 => refused += 1,
            s => panic!("status {s}"),
        }
    }
    assert!(ok >= 5 && refused > 0, "{ok} ok, {refused} refused");
    // max_tokens given: the real spend never passes the limit, whatever the interleaving.
    let spent = ledger_spent_micro(&gw, 40).await;
    assert!(spent <= 1_000, "spent {spent} µUSD of 1,000");
    let claim = caller("p", 1_000, BudgetScope::Session, BudgetWindow::Lifetime)
        .budget
        .unwrap();
    let left = gw.gateway.budgets().remaining("p", &claim).await.unwrap();
    // Every reservation was settled to the ledger's cost: nothing leaked.
    assert_eq!(left.remaining_micro_usd + spent, 1_000, "{left:?}");
}
