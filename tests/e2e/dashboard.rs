//! The admin dashboard (`GET /admin`) in a real headless Chromium: the gateway serves mixed
//! traffic (several routes, both dialects, failures, a failover, streams), then
//! `tests/browser/dashboard.mjs` loads the page and checks that the numbers it shows match
//! `/admin/metrics` and `/admin/spend`, that it logs no console error and makes no failed
//! request, that its charts drew, and that the token prompt works; it leaves a screenshot in
//! `target/browser/dashboard.png`.
//!
//! Needs Debian's `chromium` and `npm ci --prefix tests/browser` (both done by `.ci/run`); the
//! test fails with the setup command when either is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bitrouter_mock::MockBehavior;
use serde_json::json;

use crate::harness::*;

const SETUP: &str = "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium && npm ci --prefix tests/browser";

/// $2 in, $0.50 cache read, $2.50 cache write, $10 out, $12 reasoning (per million tokens).
const PRICING: &str = "pricing: { input_tokens: { no_cache: 2.0, cache_read: 0.5, cache_write: 2.5 }, output_tokens: { text: 10.0, reasoning: 12.0 } }";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// Fails (never skips) with the exact setup command when the browser or the driver is missing.
fn require_browser(root: &Path) {
    let chromium =
        std::env::var("BITROUTER_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let node = Command::new("node")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let mut missing = Vec::new();
    if !node {
        missing.push("`node` (Debian package nodejs, with npm)".to_owned());
    }
    if !Path::new(&chromium).exists() {
        missing.push(format!("Chromium at {chromium}"));
    }
    if !root
        .join("tests/browser/node_modules/playwright-core/package.json")
        .exists()
    {
        missing.push("tests/browser/node_modules (playwright-core)".to_owned());
    }
    assert!(
        missing.is_empty(),
        "the dashboard browser test needs {}; set it up from the repository root with:\n  {SETUP}\n(`bash .ci/run` does this)",
        missing.join(", ")
    );
}

#[tokio::test]
async fn dashboard_shows_what_the_gateway_measured() {
    let root = workspace();
    require_browser(&root);

    let usage = || MockBehavior {
        input_tokens: Some(1000),
        output_tokens: Some(200),
        cache_read_tokens: 300,
        reasoning_tokens: 50,
        ..Default::default()
    };
    let (openai, anthropic) = (mock_with(usage()).await, mock_with(usage()).await);
    let down = mock_with(MockBehavior {
        status: Some(503),
        ..Default::default()
    })
    .await;
    let yaml = format!(
        "{}  up-openai:\n    api_protocol: openai\n    api_base: {}/v1\n    api_key: k\n    models:\n      gpt-up: {{ {PRICING} }}\n  up-anthropic:\n    api_protocol: anthropic\n    api_base: {}\n    api_key: k\n    models:\n      claude-up: {{ {PRICING} }}\nmodels:\n  chat:\n    endpoints: [{{ provider: up-openai, model_id: gpt-up }}]\n  claude:\n    endpoints: [{{ provider: up-anthropic, model_id: claude-up }}]\n  failover:\n    endpoints: [{{ provider: down, model_id: d }}, {{ provider: up-anthropic, model_id: claude-up }}]\n  broken:\n    endpoints: [{{ provider: down, model_id: d }}]\n",
        providers(&[("down", "openai", &down)]),
        openai.base_url(),
        anthropic.base_url()
    );
    let gw = TestGateway::start(&yaml).await;

    // Traffic: JSON in both dialects, streams, a failover, upstream failures, requests that
    // never reach a route (unknown model, bad JSON).
    let mut sent = 0u64;
    for i in 0..5 {
        let session = if i % 2 == 0 { "alice" } else { "bob" };
        let r = post_raw(
            &gw,
            "/v1/chat/completions",
            openai_chat("chat", "hi").to_string().into_bytes(),
            &[("x-bitrouter-session", session)],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        sent += 1;
    }
    for _ in 0..3 {
        let r = post(&gw, "/v1/messages", &anthropic_msg("claude", "hi")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        sent += 1;
    }
    let mut stream = anthropic_msg("claude", "stream please");
    stream["stream"] = json!(true);
    let r = post(&gw, "/v1/messages", &stream).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.sse_events().contains(&"message_stop".to_owned()));
    let mut stream = openai_chat("chat", "stream please");
    stream["stream"] = json!(true);
    let r = post(&gw, "/v1/chat/completions", &stream).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.sse_data().last().map(String::as_str), Some("[DONE]"));
    sent += 2;
    // Guardrail findings for the panel: a warned email and a redacted key.
    let r = post(
        &gw,
        "/v1/chat/completions",
        &openai_chat(
            "chat",
            "mail bob@corp.example the token ghp_zy3Lex7BWr2drgd1QsO7jprBGumXxY9B4bZW",
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-bitrouter-guardrail-warnings"), "pii_emails=1");
    assert_eq!(r.header("x-bitrouter-guardrail-redactions"), "api_keys=1");
    sent += 1;
    for _ in 0..2 {
        let r = post(&gw, "/v1/chat/completions", &openai_chat("failover", "hi")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.header("x-bitrouter-attempts"), "2");
        let r = post(&gw, "/v1/chat/completions", &openai_chat("broken", "hi")).await;
        assert!((500..600).contains(&r.status), "{}: {}", r.status, r.text);
        sent += 2;
    }
    let r = post(
        &gw,
        "/v1/chat/completions",
        &openai_chat("no-such-model", "hi"),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = post_raw(&gw, "/v1/chat/completions", b"{not json".to_vec(), &[]).await;
    assert_eq!(r.status, 400, "{}", r.text);
    sent += 2;

    // Every request is one ledger row, written just after its answer.
    let m = get(&gw, "/admin/metrics", &[]).await.json();
    assert_eq!(m["requests"], sent, "{m}");
    assert_eq!(m["errors"], 4, "{m}");
    let g = &m["guardrails"]["patterns"];
    assert_eq!(g["pii_emails"]["findings"]["warn"], 1, "{m}");
    assert_eq!(g["api_keys"]["findings"]["redact"], 1, "{m}");
    for _ in 0..500 {
        if gw.gateway.ledger().stats().written >= sent {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gw.gateway.ledger().stats().written, sent);

    // The page itself: embedded HTML with a CSP that allows only 'self' and inline code.
    for path in ["/admin", "/admin/"] {
        let page = get(&gw, path, &[]).await;
        assert_eq!(page.status, 200, "{path}: {}", page.text);
        assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
        let csp = page.header("content-security-policy");
        for part in [
            "default-src 'self'",
            "script-src 'self' 'unsafe-inline'",
            "style-src 'self' 'unsafe-inline'",
        ] {
            assert!(csp.contains(part), "{path}: CSP {csp:?} lacks {part:?}");
        }
        assert!(page.text.contains(r#"data-testid="total-requests""#));
        assert!(
            !page.text.contains("http://") && !page.text.contains("https://"),
            "the dashboard must not load anything from elsewhere"
        );
    }
    let r = post_raw(&gw, "/admin", Vec::new(), &[]).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), "GET");

    // The browser. Blocking on the child runs off the runtime so the gateway keeps serving.
    let shot = root.join("target/browser/dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let mut cmd = Command::new("node");
    cmd.current_dir(&root)
        .arg("tests/browser/dashboard.mjs")
        .arg(gw.url(""))
        .arg(&shot)
        .stdin(Stdio::null());
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::task::spawn_blocking(move || cmd.output()),
    )
    .await
    .expect("the browser test did not finish within 180 s")
    .unwrap()
    .expect("could not run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tests/browser/dashboard.mjs failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert!(stdout.contains("OK: the dashboard shows"), "{stdout}");
    assert!(
        stdout.contains(&format!("compared: {sent} requests, 4 errors, 4 routes")),
        "{stdout}"
    );
    let png = std::fs::read(&shot).expect("no screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "bad screenshot"
    );
    println!("{stdout}");
}
