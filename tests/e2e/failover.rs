//! Failover triggers (refused connection, first-byte timeout, 429, 5xx, a redirect, a stream
//! that dies before its first event), what is not a trigger (other 4xx, a stream cut after it
//! began), the cool-down, load balancing, and cancellation when the caller hangs up.

use std::time::Duration;

use bitrouter_mock::{MockBehavior, MockServer};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::harness::*;

/// Route `r` with a priority list: first the given primary base URL (protocol `proto`),
/// then a healthy mock `backup` (openai).
fn two_tier(
    primary_proto: &str,
    primary_base: &str,
    backup: &MockServer,
    route_extra: &str,
) -> String {
    format!(
        "providers:\n  primary:\n    api_protocol: {primary_proto}\n    api_base: {primary_base}\n    api_key: k1\n  backup:\n    api_protocol: openai\n    api_base: {}/v1\n    api_key: k2\nmodels:\n  r:\n{route_extra}    endpoints:\n      - {{ provider: primary, model_id: p }}\n      - {{ provider: backup, model_id: b }}\n",
        backup.base_url()
    )
}

fn openai_base(m: &MockServer) -> String {
    format!("{}/v1", m.base_url())
}

fn streaming(mut body: Value) -> Value {
    body["stream"] = true.into();
    body
}

#[tokio::test]
async fn refused_connection_fails_over() {
    let backup = mock().await;
    let gw = TestGateway::start(&two_tier(
        "openai",
        &format!("{}/v1", dead_addr()),
        &backup,
        "",
    ))
    .await;
    for (path, body) in [
        request_for("openai", "r", "hi"),
        request_for("anthropic", "r", "hi"),
    ] {
        for body in [body.clone(), streaming(body)] {
            let r = post(&gw, path, &body).await;
            assert_eq!(r.status, 200, "{}", r.text);
            assert_eq!(r.header("x-bitrouter-upstream"), "backup:b");
        }
    }
}

/// A redirect is not followed (it would re-send the prompt somewhere the configuration does not
/// name): the attempt fails as a bad upstream answer, which fails over (see
/// `server_errors_rate_limits_and_redirects_fail_over`), and with no endpoint left the caller
/// gets a 502 that says what to fix.
#[tokio::test]
async fn redirects_are_not_followed() {
    let redirecting = mock_with(MockBehavior {
        status: Some(307),
        ..Default::default()
    })
    .await;
    let gw = TestGateway::start(&format!(
        "{}models:\n  r:\n    endpoints: [{{ provider: up, model_id: m }}]\n",
        providers(&[("up", "openai", &redirecting)])
    ))
    .await;
    let r = post(&gw, "/v1/chat/completions", &openai_chat("r", "hi")).await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert!(
        r.text.contains("307") && r.text.contains("redirects are not followed"),
        "{}",
        r.text
    );
    assert_eq!(redirecting.request_count(), 1, "asked once, not followed");
}

#[tokio::test]
async fn server_errors_rate_limits_and_redirects_fail_over() {
    for status in [500u16, 502, 503, 529, 429, 307, 308] {
        let primary = mock_with(MockBehavior {
            status: Some(status),
            ..Default::default()
        })
        .await;
        let backup = mock().await;
        let gw = TestGateway::start(&two_tier("openai", &openai_base(&primary), &backup, "")).await;
        for body in [openai_chat("r", "hi"), streaming(openai_chat("r", "hi"))] {
            let r = post(&gw, "/v1/chat/completions", &body).await;
            assert_eq!(r.status, 200, "status {status}: {}", r.text);
            assert_eq!(r.header("x-bitrouter-upstream"), "backup:b");
            assert_eq!(r.header("x-bitrouter-attempts"), "2");
        }
        assert_eq!(primary.request_count(), 2, "status {status}");
    }
}

#[tokio::test]
async fn client_errors_go_back_unchanged_without_failover() {
    let primary = mock_with(MockBehavior {
        status: Some(400),
        ..Default::default()
    })
    .await;
    let backup = mock().await;
    let gw = TestGateway::start(&two_tier("anthropic", &primary.base_url(), &backup, "")).await;
    // Same dialect: the upstream's body byte for byte.
    let direct = client()
        .post(format!("{}/v1/messages", primary.base_url()))
        .header("content-type", "application/json")
        .body(anthropic_msg("p", "hi").to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = post(&gw, "/v1/messages", &anthropic_msg("r", "hi")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.text, direct);
    // Other dialect: same status, the message in the caller's shape.
    let r = post(&gw, "/v1/chat/completions", &openai_chat("r", "hi")).await;
    assert_eq!(r.status, 400);
    let v = r.json();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    assert_eq!(backup.request_count(), 0, "a 4xx must not fail over");
}

#[tokio::test]
async fn first_byte_timeout_fails_over() {
    let primary = mock_with(MockBehavior {
        stall_before_headers: true,
        ..Default::default()
    })
    .await;
    let backup = mock().await;
    let yaml = two_tier(
        "openai",
        &openai_base(&primary),
        &backup,
        "    timeouts: { first_byte: 300ms }\n",
    );
    let gw = TestGateway::start(&yaml).await;
    for body in [openai_chat("r", "hi"), streaming(openai_chat("r", "hi"))] {
        let r = post(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.header("x-bitrouter-upstream"), "backup:b");
    }
    // A stream whose headers arrive but whose first event never does is the same failure.
    primary.set_behavior(MockBehavior {
        stall_after_chunks: Some(0),
        ..Default::default()
    });
    let r = post(
        &gw,
        "/v1/chat/completions",
        &streaming(openai_chat("r", "hi")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-bitrouter-upstream"), "backup:b");
}

#[tokio::test]
async fn provider_timeout_applies_to_direct_requests() {
    let slow = mock_with(MockBehavior {
        stall_before_headers: true,
        ..Default::default()
    })
    .await;
    let yaml = format!(
        "providers:\n  slow:\n    api_protocol: openai\n    api_base: {}\n    api_key_required: false\n    timeouts: {{ first_byte: 200ms }}\n",
        openai_base(&slow)
    );
    let gw = TestGateway::start(&yaml).await;
    let r = post(&gw, "/v1/chat/completions", &openai_chat("slow:m", "hi")).await;
    assert_eq!(r.status, 504, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "upstream_timeout");
}

#[tokio::test]
async fn stream_cut_before_first_event_fails_over_after_it_does_not() {
    let primary = mock_with(MockBehavior {
        cut_after: Some(0),
        ..Default::default()
    })
    .await;
    let backup = mock().await;
    let gw = TestGateway::start(&two_tier("anthropic", &primary.base_url(), &backup, "")).await;
    let body = streaming(anthropic_msg("r", "hi"));
    let r = post(&gw, "/v1/messages", &body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-bitrouter-upstream"), "backup:b", "{}", r.text);
    assert_eq!(r.sse_events().last().unwrap(), "message_stop");

    // Once the caller has seen bytes, a cut cannot be hidden: the stream ends with an error.
    primary.set_behavior(MockBehavior {
        cut_after: Some(2),
        ..Default::default()
    });
    for (path, body) in [
        ("/v1/messages", streaming(anthropic_msg("r", "hi"))),
        ("/v1/chat/completions", streaming(openai_chat("r", "hi"))),
    ] {
        let r = post(&gw, path, &body).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-bitrouter-upstream"), "primary:p");
        assert!(
            !r.text.contains("[DONE]") && !r.text.contains("message_stop"),
            "{}",
            r.text
        );
        assert!(
            r.text.contains("before finishing") || r.text.contains("error"),
            "{}",
            r.text
        );
    }
}

#[tokio::test]
async fn exhausted_endpoints_report_every_attempt() {
    let a = mock_with(MockBehavior {
        status: Some(503),
        ..Default::default()
    })
    .await;
    let b = mock_with(MockBehavior {
        status: Some(500),
        ..Default::default()
    })
    .await;
    let yaml = format!(
        "{}models:\n  r:\n    endpoints:\n      - {{ provider: a, model_id: x }}\n      - {{ provider: b, model_id: y }}\n",
        providers(&[("a", "openai", &a), ("b", "anthropic", &b)])
    );
    let gw = TestGateway::start(&yaml).await;
    let r = post(&gw, "/v1/chat/completions", &openai_chat("r", "hi")).await;
    assert_eq!(r.status, 502, "{}", r.text);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("all 2 endpoints failed")
            && msg.contains("a:x")
            && msg.contains("b:y")
            && msg.contains("503"),
        "{msg}"
    );

    a.set_behavior(MockBehavior {
        status: Some(429),
        ..Default::default()
    });
    b.set_behavior(MockBehavior {
        status: Some(429),
        ..Default::default()
    });
    let r = post(&gw, "/v1/messages", &anthropic_msg("r", "hi")).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn failing_endpoint_sits_out_its_cooldown_then_is_probed() {
    let primary = mock_with(MockBehavior {
        status: Some(500),
        ..Default::default()
    })
    .await;
    let backup = mock().await;
    let yaml = two_tier(
        "openai",
        &openai_base(&primary),
        &backup,
        "    cooldown: { failures: 2, duration: 400ms }\n",
    );
    let gw = TestGateway::start(&yaml).await;
    for _ in 0..2 {
        assert_eq!(
            post(&gw, "/v1/chat/completions", &openai_chat("r", "hi"))
                .await
                .status,
            200
        );
    }
    assert_eq!(primary.request_count(), 2);
    for _ in 0..5 {
        let r = post(&gw, "/v1/chat/completions", &openai_chat("r", "hi")).await;
        assert_eq!(
            r.header("x-bitrouter-attempts"),
            "1",
            "the cooled-down endpoint is skipped"
        );
    }
    assert_eq!(primary.request_count(), 2);

    tokio::time::sleep(Duration::from_millis(500)).await;
    primary.set_behavior(MockBehavior::default());
    let r = post(&gw, "/v1/chat/completions", &openai_chat("r", "hi")).await;
    assert_eq!(
        r.header("x-bitrouter-upstream"),
        "primary:p",
        "probed after the cool-down and recovered"
    );
    assert_eq!(primary.request_count(), 3);
    let r = post(&gw, "/v1/chat/completions", &openai_chat("r", "hi")).await;
    assert_eq!(r.header("x-bitrouter-upstream"), "primary:p");
}

#[tokio::test]
async fn load_balance_spreads_by_weight() {
    let (a, b) = (mock().await, mock().await);
    let yaml = format!(
        "{}models:\n  lb:\n    strategy: load_balance\n    endpoints:\n      - {{ provider: a, model_id: x, weight: 3 }}\n      - {{ provider: b, model_id: y, weight: 1 }}\n",
        providers(&[("a", "openai", &a), ("b", "anthropic", &b)])
    );
    let gw = TestGateway::start(&yaml).await;
    for i in 0..40 {
        let body = if i % 2 == 0 {
            openai_chat("lb", "hi")
        } else {
            streaming(openai_chat("lb", "hi"))
        };
        assert_eq!(post(&gw, "/v1/chat/completions", &body).await.status, 200);
    }
    assert_eq!((a.request_count(), b.request_count()), (30, 10));

    // A dead member of a balanced route is failed over like any other.
    drop(b);
    for _ in 0..8 {
        let r = post(&gw, "/v1/chat/completions", &openai_chat("lb", "hi")).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
}

#[tokio::test]
async fn caller_hanging_up_cancels_the_upstream_stream() {
    let slow = mock_with(MockBehavior {
        chunks: Some(200),
        chunk_delay_ms: 50,
        ..Default::default()
    })
    .await;
    let yaml = format!(
        "{}models:\n  r:\n    endpoints: [{{ provider: s, model_id: m }}]\n",
        providers(&[("s", "anthropic", &slow)])
    );
    let gw = TestGateway::start(&yaml).await;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(json!({"model": "r", "stream": true, "messages": [{"role": "user", "content": "long"}]}).to_string())
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    assert_eq!(slow.active_connections(), 1);
    drop(body);
    let mut waited = 0;
    while slow.active_connections() > 0 && waited < 100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += 1;
    }
    assert_eq!(
        slow.active_connections(),
        0,
        "the upstream connection outlived the caller"
    );
}

#[tokio::test]
async fn google_failover_to_openai() {
    let backup = mock().await;
    let down = mock_with(MockBehavior {
        status: Some(503),
        ..Default::default()
    })
    .await;
    for primary in [
        format!("{}/v1beta", down.base_url()),
        format!("{}/v1beta", dead_addr()),
    ] {
        // A high cool-down threshold keeps the primary first, so every request fails over.
        let gw = TestGateway::start(&two_tier(
            "google",
            &primary,
            &backup,
            "    cooldown: { failures: 1000, duration: 1s }\n",
        ))
        .await;
        let gemini = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
        for (path, body) in [
            ("/v1beta/models/r:generateContent", gemini.clone()),
            (
                "/v1beta/models/r:streamGenerateContent?alt=sse",
                gemini.clone(),
            ),
            ("/v1/chat/completions", openai_chat("r", "hi")),
            ("/v1/chat/completions", streaming(openai_chat("r", "hi"))),
            ("/v1/messages", streaming(anthropic_msg("r", "hi"))),
        ] {
            let r = post(&gw, path, &body).await;
            assert_eq!(r.status, 200, "{primary} {path}: {}", r.text);
            assert_eq!(r.header("x-bitrouter-upstream"), "backup:b");
            assert_eq!(r.header("x-bitrouter-attempts"), "2", "{primary} {path}");
            // Streams split the text over chunks ("Hello", " fro", "m the", …).
            assert!(
                r.text.contains("Hello") && r.text.contains(" mock upstream."),
                "{}",
                r.text
            );
        }
    }
    assert!(down.request_count() >= 5);
    assert!(
        down.requests()
            .iter()
            .any(|r| r.path == "/v1beta/models/p:streamGenerateContent")
    );
}
