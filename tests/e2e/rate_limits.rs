//! Rate limits through the real server: the 429 and its headers in every caller dialect,
//! the remaining headers on every answer, tokens reserved and settled, per-route and
//! per-token limits, provider quotas failed over, a provider's own `Retry-After`, a store
//! that cannot be reached, and three replicas sharing limits through Redis and through
//! PostgreSQL under concurrent load.

use std::sync::Arc;
use std::time::Duration;

use bitrouter::caller::{Caller, RateClaim, Scope};
use bitrouter_mock::{MockBehavior, MockServer};
use serde_json::json;

use crate::harness::*;
use crate::scratch_db::Scratch;

/// A caller of its own: the shared stores (Redis, PostgreSQL) outlive a test run, so each
/// test limits an account nobody else uses.
fn caller(rate: Option<RateClaim>) -> Arc<Caller> {
    Arc::new(Caller {
        account: format!("eip155:1:0x{:040x}", fastrand::u128(..)),
        session: format!("rl-{:x}", fastrand::u64(..)),
        scope: Scope::Api,
        models: None,
        budget: None,
        rate,
    })
}

fn two_providers(a: &MockServer, b: &MockServer, limits: &str) -> String {
    format!(
        "{}models:\n  r:\n    endpoints:\n      - {{ provider: a, model_id: m }}\n      - {{ provider: b, model_id: m }}\n  other:\n    endpoints:\n      - {{ provider: b, model_id: m }}\nrate_limits:\n{limits}",
        providers(&[("a", "openai", a), ("b", "openai", b)])
    )
}

#[tokio::test]
async fn over_the_limit_is_a_429_in_the_callers_dialect_with_retry_after() {
    let m = mock().await;
    let gw = TestGateway::start(&two_providers(
        &m,
        &m,
        "  defaults: { requests_per_minute: 3 }\n",
    ))
    .await;
    let limited = caller(None);
    gw.gateway.set_caller_for_tests(Some(limited.clone()));
    // Every answer to a limited caller says what is left.
    for left in [2, 1, 0] {
        let r = post(&gw, "/v1/chat/completions", &openai_chat("r", "hi")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.header("x-ratelimit-limit-requests"), "3");
        assert_eq!(r.header("x-ratelimit-remaining-requests"), left.to_string());
        assert!(r.header("x-ratelimit-reset-requests").ends_with('s'));
        assert_eq!(r.header("retry-after"), "");
    }
    // A streamed answer carries them too (another caller, with a fresh limit).
    gw.gateway.set_caller_for_tests(Some(caller(None)));
    let mut streamed = openai_chat("r", "hi");
    streamed["stream"] = json!(true);
    let r = post(&gw, "/v1/chat/completions", &streamed).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("[DONE]"), "{}", r.text);
    assert_eq!(r.header("x-ratelimit-limit-requests"), "3");
    assert_eq!(r.header("x-ratelimit-remaining-requests"), "2");
    gw.gateway.set_caller_for_tests(Some(limited));
    let gemini = "/v1beta/models/r:generateContent".to_owned();
    for (dialect, path, body) in [
        (
            "openai",
            "/v1/chat/completions".to_owned(),
            openai_chat("r", "hi"),
        ),
        (
            "anthropic",
            "/v1/messages".to_owned(),
            anthropic_msg("r", "hi"),
        ),
        (
            "responses",
            "/v1/responses".to_owned(),
            json!({"model": "r", "input": "hi"}),
        ),
        (
            "gemini",
            gemini,
            json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
        ),
    ] {
        let r = post(&gw, &path, &body).await;
        assert_eq!(r.status, 429, "{dialect}: {}", r.text);
        let wait: u64 = r.header("retry-after").parse().unwrap_or(0);
        assert!((1..=120).contains(&wait), "{dialect}: retry-after {wait}");
        assert_eq!(r.header("x-ratelimit-remaining-requests"), "0");
        let v = r.json();
        let message = match dialect {
            "anthropic" => {
                assert_eq!(v["type"], "error", "{v}");
                assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
                v["error"]["message"].as_str().unwrap().to_owned()
            }
            "gemini" => {
                assert_eq!(v["error"]["code"], 429, "{v}");
                v["error"]["message"].as_str().unwrap().to_owned()
            }
            _ => {
                assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
                assert_eq!(v["error"]["code"], "rate_limit_exceeded", "{v}");
                v["error"]["message"].as_str().unwrap().to_owned()
            }
        };
        assert!(
            message.contains("3 requests per minute"),
            "{dialect}: {message}"
        );
    }
    // The upstream saw only the admitted three (and the other caller's stream); another
    // account has its own limit.
    assert_eq!(m.request_count(), 4);
    gw.gateway.set_caller_for_tests(Some(caller(None)));
    let r = post(&gw, "/v1/chat/completions", &openai_chat("r", "hi")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Metrics count the refusals per route and limit.
    let metrics = get(&gw, "/admin/metrics", &[]).await.json();
    assert_eq!(
        metrics["routes"]["r"]["rate_limited"]["account:requests"], 4,
        "{metrics}"
    );
    // ... and per caller: a caller without a verified token (this test's hook) is counted
    // as `anonymous`; a verified account is named (`auth::minted_rate_claims_…`).
    assert_eq!(
        metrics["routes"]["r"]["rate_limited_callers"],
        json!({ "anonymous": { "account:requests": 4 } }),
        "{metrics}"
    );
    let prom = get(&gw, "/metrics", &[]).await.text;
    assert!(
        prom.lines()
            .any(|l| l.starts_with("bitrouter_rate_limited_total{")
                && l.contains("limit=\"account:requests\"")
                && l.ends_with(" 4")),
        "{prom}"
    );
}

#[tokio::test]
async fn tokens_are_reserved_at_the_worst_case_and_settled_to_the_usage() {
    let m = mock_with(MockBehavior {
        input_tokens: Some(10),
        output_tokens: Some(5),
        ..Default::default()
    })
    .await;
    let gw = TestGateway::start(&two_providers(
        &m,
        &m,
        "  defaults: { tokens_per_minute: 1000 }\n",
    ))
    .await;
    gw.gateway.set_caller_for_tests(Some(caller(None)));
    let mut body = openai_chat("r", "hi");
    body["max_tokens"] = json!(600);
    // Reserved at ~600 + the prompt, it fits once; settled to 15 tokens, the room is back.
    for _ in 0..5 {
        let r = post(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(r.status, 200, "{}", r.text);
        // Settlement runs beside the answer; wait until it has landed.
        let mut settled = false;
        for _ in 0..100 {
            let probe = post(&gw, "/v1/chat/completions", &{
                let mut b = body.clone();
                b["max_tokens"] = json!(1);
                b
            })
            .await;
            let left: u64 = probe
                .header("x-ratelimit-remaining-tokens")
                .parse()
                .unwrap_or(0);
            // Unsettled, the 600 reserved would leave under 400; settled, every request
            // so far took 15 (the mock's usage) and the probe its own reservation.
            if left >= 500 {
                settled = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(settled, "the reservation was never settled to the usage");
    }
    // A request that alone needs more than the limit is refused with no retry that helps.
    body["max_tokens"] = json!(5000);
    let r = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.text.contains("alone"), "{}", r.text);
    // Without max_tokens a tokens-limited request gets the cap it was reserved for.
    let r = post(&gw, "/v1/chat/completions", &openai_chat("r", "hi")).await;
    assert_eq!(
        r.status, 429,
        "the default cap (4096) exceeds 1000: {}",
        r.text
    );
}

#[tokio::test]
async fn route_and_token_limits_narrow_the_account() {
    let m = mock().await;
    let gw = TestGateway::start(&two_providers(
        &m,
        &m,
        "  defaults: { requests_per_minute: 100 }\n  routes:\n    other: { requests_per_minute: 2 }\n",
    ))
    .await;
    gw.gateway.set_caller_for_tests(Some(caller(None)));
    for _ in 0..2 {
        let r = post(&gw, "/v1/chat/completions", &openai_chat("other", "hi")).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let r = post(&gw, "/v1/chat/completions", &openai_chat("other", "hi")).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.text.contains("route"), "{}", r.text);
    // The route's limit is the route's: the account still has room elsewhere.
    let r = post(&gw, "/v1/chat/completions", &openai_chat("r", "hi")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A token's `rpm` claim narrows it further, for that token alone.
    gw.gateway.set_caller_for_tests(Some(caller(Some(RateClaim {
        requests: Some(1),
        tokens: None,
        per_account: false,
    }))));
    let r = post(&gw, "/v1/chat/completions", &openai_chat("r", "hi")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = post(&gw, "/v1/chat/completions", &openai_chat("r", "hi")).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.text.contains("token's limit"), "{}", r.text);

    // `rate_scope: account`: the claim narrows the whole account, every token of it
    // together: two sessions of one account share a limit of 2.
    let claim = Some(RateClaim {
        requests: Some(2),
        tokens: None,
        per_account: true,
    });
    let first = caller(claim);
    let second = Arc::new(Caller {
        session: format!("rl-{:x}", fastrand::u64(..)),
        ..(*first).clone()
    });
    let other_account = caller(claim);
    for who in [&first, &second] {
        gw.gateway.set_caller_for_tests(Some(who.clone()));
        let r = post(&gw, "/v1/chat/completions", &openai_chat("r", "hi")).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let r = post(&gw, "/v1/chat/completions", &openai_chat("r", "hi")).await;
    assert_eq!(r.status, 429, "a third request of the account: {}", r.text);
    assert!(r.text.contains("account's limit"), "{}", r.text);
    // Another account with the same claim has its own.
    gw.gateway.set_caller_for_tests(Some(other_account));
    let r = post(&gw, "/v1/chat/completions", &openai_chat("r", "hi")).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn a_provider_at_its_quota_is_skipped_and_its_own_retry_after_cools_it_down() {
    let (a, b) = (mock().await, mock().await);
    let gw = TestGateway::start(&two_providers(
        &a,
        &b,
        "  providers:\n    a: { requests_per_minute: 2 }\n    b: { requests_per_minute: 3 }\n",
    ))
    .await;
    for expected in ["a:m", "a:m", "b:m", "b:m", "b:m"] {
        let r = post(&gw, "/v1/chat/completions", &openai_chat("r", "hi")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.header("x-bitrouter-upstream"), expected);
    }
    // Both quotas spent: the caller gets a 429 saying when to come back.
    let r = post(&gw, "/v1/chat/completions", &openai_chat("r", "hi")).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.header("retry-after").parse::<u64>().is_ok_and(|s| s >= 1));
    assert!(r.text.contains("quota"), "{}", r.text);

    // A provider's own 429 with Retry-After takes it out for that long, on the first one.
    let limited = mock_with(MockBehavior {
        status: Some(429),
        retry_after_s: Some(30),
        ..Default::default()
    })
    .await;
    let ok = mock().await;
    let gw = TestGateway::start(&format!(
        "{}models:\n  r:\n    endpoints:\n      - {{ provider: limited, model_id: m }}\n      - {{ provider: ok, model_id: m }}\n",
        providers(&[("limited", "openai", &limited), ("ok", "openai", &ok)])
    ))
    .await;
    for _ in 0..3 {
        let r = post(&gw, "/v1/chat/completions", &openai_chat("r", "hi")).await;
        assert_eq!(r.header("x-bitrouter-upstream"), "ok:m", "{}", r.text);
    }
    assert_eq!(
        limited.request_count(),
        1,
        "the 429's Retry-After was not honoured"
    );
}

#[tokio::test]
async fn a_store_that_cannot_be_reached_fails_closed_or_open_as_configured() {
    let m = mock().await;
    let dead = dead_addr().replace("http://", "redis://");
    for (mode, status) in [("closed", 503), ("open", 200)] {
        let gw = TestGateway::start(&two_providers(
            &m,
            &m,
            &format!(
                "  store: {dead}\n  on_store_error: {mode}\n  defaults: {{ requests_per_minute: 5 }}\n"
            ),
        ))
        .await;
        gw.gateway.set_caller_for_tests(Some(caller(None)));
        let r = post(&gw, "/v1/chat/completions", &openai_chat("r", "hi")).await;
        assert_eq!(r.status, status, "{mode}: {}", r.text);
        if status == 503 {
            assert!(r.text.contains("rate-limit store"), "{}", r.text);
        }
    }
}

/// A TCP forwarder to `to` on a port of its own; aborting the handle closes the listener and
/// every connection it carried (a database that went away).
async fn forwarder(
    to: std::net::SocketAddr,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((mut inbound, _)) = listener.accept().await {
            connections.spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_store_that_goes_away_fails_closed_within_a_second() {
    let m = mock().await;
    let scratch = Scratch::postgres("ratedown").await;
    // The server's `host:port`, from `postgres://user@host:port/db?…`.
    let authority = scratch
        .url()
        .split_once('@')
        .and_then(|(_, rest)| rest.split('/').next())
        .unwrap_or_else(|| panic!("no host:port in {}", scratch.url()))
        .to_owned();
    let server = tokio::net::lookup_host(&authority)
        .await
        .unwrap()
        .next()
        .unwrap();
    let (via, link) = forwarder(server).await;
    let url = scratch.url().replacen(&authority, &via.to_string(), 1);
    let gw = TestGateway::start(&format!(
        "{}database:\n  url: {url}\n",
        two_providers(
            &m,
            &m,
            "  store: postgres\n  defaults: { requests_per_minute: 100 }\n",
        )
    ))
    .await;
    gw.gateway.set_caller_for_tests(Some(caller(None)));
    let r = post(&gw, "/v1/chat/completions", &openai_chat("r", "hi")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The database goes away: a limited caller is refused (closed), after at most the
    // store's timeout, not the connection pool's 30 s.
    link.abort();
    let _ = link.await;
    let started = std::time::Instant::now();
    let r = post(&gw, "/v1/chat/completions", &openai_chat("r", "hi")).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("rate-limit store"), "{}", r.text);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused after {:?}",
        started.elapsed()
    );
    drop(gw);
    scratch.drop().await;
}

/// `replicas` gateways on one store, `per_replica` concurrent requests each, against an
/// account limit of `limit` requests a minute: how many got in.
async fn admitted_across(replicas: &[TestGateway], per_replica: usize) -> usize {
    let mut tasks = Vec::new();
    for gw in replicas {
        for _ in 0..per_replica {
            let url = gw.url("/v1/chat/completions");
            tasks.push(tokio::spawn(async move {
                client()
                    .post(url)
                    .json(&openai_chat("r", "hi"))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }));
        }
    }
    let mut admitted = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => admitted += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    admitted
}

async fn three_replicas(yaml: &str) -> Vec<TestGateway> {
    let who = caller(None);
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let gw = TestGateway::start(yaml).await;
        gw.gateway.set_caller_for_tests(Some(who.clone()));
        replicas.push(gw);
    }
    replicas
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_a_limit_through_redis() {
    let m = mock().await;
    let yaml = two_providers(
        &m,
        &m,
        "  store: redis://127.0.0.1:6379\n  defaults: { requests_per_minute: 20 }\n",
    );
    let replicas = three_replicas(&yaml).await;
    // 60 concurrent requests over three replicas; the limit holds exactly.
    let admitted = admitted_across(&replicas, 20).await;
    assert_eq!(
        admitted, 20,
        "admitted {admitted} of a limit of 20 across replicas"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_a_limit_through_postgres() {
    let m = mock().await;
    let scratch = Scratch::postgres("ratelimit").await;
    let yaml = format!(
        "{}database:\n  url: {}\n",
        two_providers(
            &m,
            &m,
            "  store: postgres\n  defaults: { requests_per_minute: 20 }\n",
        ),
        scratch.url()
    );
    let replicas = three_replicas(&yaml).await;
    let admitted = admitted_across(&replicas, 20).await;
    assert_eq!(
        admitted, 20,
        "admitted {admitted} of a limit of 20 across replicas"
    );
    drop(replicas);
    scratch.drop().await;
}

/// The window every store keeps, driven at chosen instants: what it admits, what a refusal
/// says, settlement, and all-or-nothing over two keys.
async fn a_minute_of_seconds(store: &bitrouter::ratelimit::Store) {
    use bitrouter::ratelimit::Take;
    let engine = store.engine();
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0),
    )
    .unwrap_or(0);
    let t0 = now - now % 60_000;
    let key = format!("bitrouter:rl:test:{:x}:requests", fastrand::u64(..));
    let one = |limit: u64, cost: u64| Take {
        key: key.clone(),
        limit,
        cost,
    };
    let admitted_at = |at: i64, n: usize| {
        let store = &store;
        let take = one(100, 1);
        async move {
            let mut admitted = 0;
            let mut last = None;
            for _ in 0..n {
                let d = store.take(std::slice::from_ref(&take), at).await.unwrap()[0];
                admitted += usize::from(d.allowed);
                last = Some(d);
            }
            (admitted, last.unwrap())
        }
    };
    // The whole limit in the last 100 ms of a minute...
    assert_eq!(admitted_at(t0 + 59_900, 150).await.0, 100, "{engine}");
    // ... weighs in full 59.8 s later (the two-counter estimate let 99 more in here).
    let (later, refusal) = admitted_at(t0 + 119_800, 20).await;
    assert_eq!(later, 0, "{engine}: admitted within 60 s of the burst");
    assert!(!refusal.allowed);
    // Second 59 of the minute stops counting at second 120: 200 ms from then.
    assert_eq!(refusal.retry_after_ms, Some(200), "{engine}");
    assert_eq!(refusal.remaining, 0);
    // Once that second has left, the whole limit again.
    assert_eq!(admitted_at(t0 + 120_000, 150).await.0, 100, "{engine}");

    // Tokens: reserved, settled below, the room given back in the same second.
    let tokens = format!("bitrouter:rl:test:{:x}:tokens", fastrand::u64(..));
    let at = t0 + 200_500;
    let take = |cost: u64| Take {
        key: tokens.clone(),
        limit: 1_000,
        cost,
    };
    assert!(store.take(&[take(500)], at).await.unwrap()[0].allowed);
    assert!(!store.take(&[take(600)], at).await.unwrap()[0].allowed);
    store
        .adjust(&tokens, bitrouter::ratelimit::window::bucket(at), -400)
        .await
        .unwrap();
    let d = store.take(&[take(900)], at + 100).await.unwrap()[0];
    assert!(d.allowed, "{engine}: settlement gave the room back");
    assert_eq!(d.remaining, 0);
    // All or nothing: a request over one of its two limits takes from neither.
    let fresh = format!("bitrouter:rl:test:{:x}:requests", fastrand::u64(..));
    let both = [
        Take {
            key: fresh.clone(),
            limit: 10,
            cost: 1,
        },
        take(1),
    ];
    let d = store.take(&both, at + 200).await.unwrap();
    assert!(d[0].allowed && !d[1].allowed, "{engine}: {d:?}");
    let d = store
        .take(
            &[Take {
                key: fresh,
                limit: 10,
                cost: 10,
            }],
            at + 300,
        )
        .await
        .unwrap();
    assert!(
        d[0].allowed,
        "{engine}: the refused request took from the other key"
    );
}

#[tokio::test]
async fn every_store_keeps_the_same_minute_of_seconds() {
    use bitrouter::ratelimit::Store;
    a_minute_of_seconds(&Store::memory()).await;
    a_minute_of_seconds(&Store::redis("redis://127.0.0.1:6379").unwrap()).await;
    let scratch = Scratch::postgres("ratewindow").await;
    let pool = sqlx::PgPool::connect(scratch.url()).await.unwrap();
    a_minute_of_seconds(&Store::postgres(pool.clone()).await.unwrap()).await;
    pool.close().await;
    scratch.drop().await;
}

/// Three replicas sharing a tokens limit through `store`: with every request held at the
/// upstream, the reservations alone decide, so exactly the number of worst cases the limit
/// holds are admitted across the replicas.
async fn tokens_across_replicas(store: &str, database: &str) {
    let m = mock_with(MockBehavior {
        latency_ms: 1_500,
        ..Default::default()
    })
    .await;
    // One request's worst case, as a limit of 1 token names it.
    let probe = TestGateway::start(&two_providers(
        &m,
        &m,
        "  defaults: { tokens_per_minute: 1 }\n",
    ))
    .await;
    probe.gateway.set_caller_for_tests(Some(caller(None)));
    let worst = tokens_needed(&post(&probe, "/v1/chat/completions", &openai_chat("r", "hi")).await);
    // Room for five worst cases in flight, not six.
    let yaml = format!(
        "{}{database}",
        two_providers(
            &m,
            &m,
            &format!(
                "  store: {store}\n  defaults: {{ tokens_per_minute: {} }}\n",
                5 * worst + worst / 2
            ),
        )
    );
    let replicas = three_replicas(&yaml).await;
    let admitted = admitted_across(&replicas, 10).await;
    assert_eq!(
        admitted,
        5,
        "{store}: admitted {admitted} requests of {worst} worst-case tokens each under a limit of {}",
        5 * worst + worst / 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_a_tokens_limit_through_redis_and_postgres() {
    tokens_across_replicas("redis://127.0.0.1:6379", "").await;
    let scratch = Scratch::postgres("ratetokens").await;
    tokens_across_replicas(
        "postgres",
        &format!("database:\n  url: {}\n", scratch.url()),
    )
    .await;
    scratch.drop().await;
}
