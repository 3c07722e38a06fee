//! The admin dashboard (`GET /admin`) in a real headless Chromium: the gateway serves mixed
//! traffic (several routes, both dialects, failures, a failover, streams), then
//! `tests/browser/dashboard.mjs` loads the page and checks that the numbers it shows match
//! `/admin/metrics` and `/admin/spend`, that its Plugins, Policies and Updates panels match
//! `/admin/plugins` (built-ins, no policy: "none", no update check yet), and, from a made-up
//! `/admin/plugins` document, a pulled plugin, a policy from the cache and a failed update,
//! with any markup shown as text; that it logs no console error and makes no failed request,
//! that its charts drew, and that the token prompt works; it leaves a screenshot in
//! `target/browser/dashboard.png`. A second gateway loads a signed policy file, and the page
//! shows the policy and its plugins.
//!
//! Needs Debian's `chromium` and `npm ci --prefix tests/browser` (both done by `.ci/run`); the
//! test fails with the setup command when either is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bitrouter_mock::MockBehavior;
use serde_json::json;

use crate::guardrails::{config, stage_plugin};
use crate::harness::*;
use crate::plugin_trust::KEY;

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

/// Runs `tests/browser/dashboard.mjs` on the gateway at `base`, leaving a screenshot at
/// `shot`; panics with its output unless it succeeds. Returns its stdout.
async fn run_browser(root: &Path, base: String, shot: &Path, extra: &[&str]) -> String {
    let _ = std::fs::remove_file(shot);
    let mut cmd = Command::new("node");
    cmd.current_dir(root)
        .arg("tests/browser/dashboard.mjs")
        .arg(base)
        .arg(shot)
        .args(extra)
        .stdin(Stdio::null());
    // Blocking on the child runs off the runtime so the gateway keeps serving.
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::task::spawn_blocking(move || cmd.output()),
    )
    .await
    .expect("the browser test did not finish within 180 s")
    .unwrap()
    .expect("could not run node");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tests/browser/dashboard.mjs failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert!(stdout.contains("OK: the dashboard shows"), "{stdout}");
    let png = std::fs::read(shot).expect("no screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "bad screenshot"
    );
    stdout
}

/// The rest of the browser test's output line that starts with `prefix`.
fn line<'a>(stdout: &'a str, prefix: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{stdout}"))
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
    let cut = mock_with(MockBehavior {
        cut_after: Some(2),
        ..Default::default()
    })
    .await;
    let yaml = format!(
        "{}  up-openai:\n    api_protocol: openai\n    api_base: {}/v1\n    api_key: k\n    models:\n      gpt-up: {{ {PRICING} }}\n  up-anthropic:\n    api_protocol: anthropic\n    api_base: {}\n    api_key: k\n    models:\n      claude-up: {{ {PRICING} }}\nmodels:\n  chat:\n    endpoints: [{{ provider: up-openai, model_id: gpt-up }}]\n  claude:\n    endpoints: [{{ provider: up-anthropic, model_id: claude-up }}]\n  failover:\n    endpoints: [{{ provider: down, model_id: d }}, {{ provider: up-anthropic, model_id: claude-up }}]\n  broken:\n    endpoints: [{{ provider: down, model_id: d }}]\n  continued:\n    mid_stream_failover: continue\n    endpoints: [{{ provider: cut, model_id: c }}, {{ provider: up-openai, model_id: gpt-up }}]\n  limited:\n    endpoints: [{{ provider: up-openai, model_id: gpt-up }}]\nrate_limits:\n  routes:\n    limited: {{ requests_per_minute: 1 }}\n",
        providers(&[("down", "openai", &down), ("cut", "openai", &cut)]),
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
    // A stream cut half-way and carried on by the next endpoint (mid-stream failover).
    let mut stream = openai_chat("continued", "stream please");
    stream["stream"] = json!(true);
    let r = post(&gw, "/v1/chat/completions", &stream).await;
    assert_eq!(
        r.sse_data().last().map(String::as_str),
        Some("[DONE]"),
        "{}",
        r.text
    );
    sent += 3;
    // A route's rate limit: the second request is refused.
    let r = post(&gw, "/v1/chat/completions", &openai_chat("limited", "hi")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = post(&gw, "/v1/chat/completions", &openai_chat("limited", "hi")).await;
    assert_eq!(r.status, 429, "{}", r.text);
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
    assert_eq!(m["errors"], 5, "{m}");
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
        for part in [
            r#"data-testid="plugins-table""#,
            r#"data-testid="policies""#,
            r#"data-testid="updates""#,
            r#"getJson("/admin/plugins")"#,
            "no followed OCI tags / not checked yet",
            "from cache (registry unreachable)",
        ] {
            assert!(page.text.contains(part), "{path}: the page lacks {part:?}");
        }
        assert!(
            !page.text.contains("http://") && !page.text.contains("https://"),
            "the dashboard must not load anything from elsewhere"
        );
    }
    let r = post_raw(&gw, "/admin", Vec::new(), &[]).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), "GET");

    // The plugin panels have something to show: the built-ins, no policy, no update check.
    let listed = get(&gw, "/admin/plugins", &[]).await.json();
    assert_eq!(listed["policies"], json!([]), "{listed}");
    assert_eq!(listed["updates"]["last_check_ms"], json!(null), "{listed}");
    let sha = listed["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "api_keys")
        .unwrap_or_else(|| panic!("no built-in api_keys: {listed}"))["sha256"]
        .as_str()
        .unwrap()
        .to_owned();

    // The browser.
    let shot = root.join("target/browser/dashboard.png");
    let stdout = run_browser(&root, gw.url(""), &shot, &[]).await;
    assert!(
        stdout.contains(&format!("compared: {sent} requests, 5 errors, 6 routes")),
        "{stdout}"
    );
    let plugins = line(&stdout, "plugins shown: ");
    assert!(
        plugins.contains(&format!("api_keys [built-in {}]", &sha[..12])),
        "{plugins}"
    );
    assert_eq!(line(&stdout, "policies shown: "), "none");
    assert_eq!(
        line(&stdout, "updates shown: "),
        "no followed OCI tags / not checked yet"
    );
    assert!(
        stdout.contains("made-up plugins: pulled plugin, cached policy and failed update shown"),
        "{stdout}"
    );
    println!("{stdout}");
}

/// A gateway whose guardrails come from a signed policy file: the Policies panel lists it
/// (version, verified, its plugins), each of its plugins names it, and the Updates panel
/// says no tag is followed.
#[tokio::test]
async fn dashboard_shows_a_signed_policy_and_its_plugins() {
    let root = workspace();
    require_browser(&root);
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("baseline");
    std::fs::create_dir_all(&src).unwrap();
    stage_plugin("confidential-ids", &src, "confidential-ids");
    stage_plugin("pii_emails", &src, "emails");
    std::fs::write(
        src.join("policy.yaml"),
        "id: baseline\nversion: 2026.12.0\ndescription: the platform team's baseline\nplugins:\n  - path: confidential-ids.wasm\n  - path: emails.wasm\nguardrails:\n  upgoing: { confidential-id: block, pii_emails: block }\n",
    )
    .unwrap();
    let key = dir.path().join("team.key");
    std::fs::write(&key, hex::encode(KEY)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bitrouter"))
        .args(["policy", "build"])
        .arg(&src)
        .args(["-o", "baseline.policy", "--key"])
        .arg(&key)
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bitrouter policy build: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let guardrails = format!(
        "guardrails:\n  builtin: false\n  policies:\n    - path: baseline.policy\nplugins:\n  trust:\n    - keys: [\"{}\"]\n      scope: \"{}/*.policy\"\n  artifact_dir: {}\n",
        bitrouter::plugins::public_key_hex(&KEY),
        dir.path().display(),
        dir.path().join("artifacts").display()
    );
    let gw = TestGateway::start_file(dir.path(), &config(&mock, &guardrails)).await;
    let listed = get(&gw, "/admin/plugins", &[]).await.json();
    assert_eq!(listed["policies"][0]["id"], "baseline", "{listed}");
    assert_eq!(listed["policies"][0]["verified"], true, "{listed}");

    let shot = root.join("target/browser/dashboard-policy.png");
    let stdout = run_browser(&root, gw.url(""), &shot, &["--plugins-only"]).await;
    assert_eq!(
        line(&stdout, "policies shown: "),
        "baseline 2026.12.0 ✓ verified (confidential-ids, pii_emails)"
    );
    let plugins = line(&stdout, "plugins shown: ");
    for id in ["confidential-ids", "pii_emails"] {
        let shown = plugins
            .split(", ")
            .find(|p| p.starts_with(&format!("{id} [")))
            .unwrap_or_else(|| panic!("{id} not shown: {plugins}"));
        assert!(shown.ends_with(" policy baseline]"), "{plugins}");
    }
    assert_eq!(
        line(&stdout, "updates shown: "),
        "no followed OCI tags / not checked yet"
    );
    println!("{stdout}");
}
