//! The guardrail firewall through the real server: custom patterns and guardrail plugins
//! (built from source into target/plugins/) in both directions, each action, JSON and
//! streams, both dialects, and plugin failures failing closed or open.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitrouter::observe::{ObserveCallback, RequestEvent};
use bitrouter_mock::{MockBehavior, MockServer};
use serde_json::{Value, json};

use crate::harness::*;

const SECRET: &str = "myapp_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

pub(crate) fn plugin(id: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../target/plugins/{id}.wasm"));
    assert!(
        p.is_file(),
        "{} is missing: run scripts/build-plugins.sh first",
        p.display()
    );
    p.display().to_string()
}

/// The seed's guardrail example, with the mock as the provider. Built-in patterns off so
/// these tests exercise the config's own patterns only (the built-ins have their own file).
pub(crate) fn config(mock: &MockServer, guardrails: &str) -> String {
    format!(
        "{}models:\n  m:\n    endpoints:\n      - {{ provider: up, model_id: mock-gpt }}\n  a:\n    endpoints:\n      - {{ provider: upa, model_id: mock-claude }}\n{guardrails}",
        providers(&[("up", "openai", mock), ("upa", "anthropic", mock)]),
    )
}

const SEED: &str = r#"guardrails:
  enabled: true
  builtin: false
  disabled_patterns: []
  custom_patterns:
    - name: internal_token
      regex: "myapp_[A-Za-z0-9]{32}"
      direction: upgoing
    - name: launch_code
      regex: "LAUNCH-[0-9]{4}"
      direction: both
    - name: project_name
      regex: "Project Bluebird"
      direction: both
  custom_upgoing:   { internal_token: redact, launch_code: block, project_name: warn }
  custom_downgoing: { launch_code: block, project_name: redact }
  block_message: { include_details: true, include_help_link: true }
"#;

struct Collect(Mutex<Vec<Arc<RequestEvent>>>);
impl ObserveCallback for Collect {
    fn name(&self) -> &str {
        "collect"
    }
    fn on_events(&self, events: &[Arc<RequestEvent>]) {
        self.0.lock().unwrap().extend(events.iter().cloned());
    }
}
impl Collect {
    async fn wait(&self, n: usize) -> Vec<Arc<RequestEvent>> {
        for _ in 0..300 {
            let v = self.0.lock().unwrap().clone();
            if v.len() >= n {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("expected {n} events");
    }
}

fn upstream_text(mock: &MockServer) -> String {
    mock.last_request()
        .expect("the upstream was called")
        .body
        .to_string()
}

#[tokio::test]
async fn upgoing_redact_warn_and_block_in_both_dialects() {
    let mock = mock().await;
    let sink = Arc::new(Collect(Mutex::new(Vec::new())));
    let gw = TestGateway::start_with(&config(&mock, SEED), vec![sink.clone()]).await;
    for (dialect, model) in [("openai", "m"), ("anthropic", "a")] {
        // redact: the upstream sees the placeholder, the caller is told in a header.
        let (path, body) = request_for(
            dialect,
            model,
            &format!("use {SECRET} for Project Bluebird"),
        );
        let r = post(&gw, path, &body).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let seen = upstream_text(&mock);
        assert!(!seen.contains(SECRET), "{seen}");
        assert!(seen.contains("[REDACTED:internal_token]"), "{seen}");
        assert!(
            seen.contains("Project Bluebird"),
            "warn lets it through: {seen}"
        );
        assert_eq!(
            r.header("x-bitrouter-guardrail-redactions"),
            "internal_token=1"
        );
        assert_eq!(r.header("x-bitrouter-guardrail-warnings"), "project_name=1");

        // block: 403 in the caller's dialect, the pattern named, the text not echoed, and
        // the upstream never called.
        let before = mock.request_count();
        let (path, body) = request_for(dialect, model, "the code is LAUNCH-1234");
        let r = post(&gw, path, &body).await;
        assert_eq!(r.status, 403, "{}", r.text);
        let v = r.json();
        let message = if dialect == "openai" {
            assert_eq!(v["error"]["code"], "guardrail_blocked");
            assert_eq!(v["error"]["type"], "permission_error");
            v["error"]["message"].as_str().unwrap().to_owned()
        } else {
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], "permission_error");
            v["error"]["message"].as_str().unwrap().to_owned()
        };
        assert!(message.contains("launch_code"), "{message}");
        assert!(!message.contains("1234"), "{message}");
        assert!(message.contains("#guardrails"), "{message}");
        assert_eq!(mock.request_count(), before);
    }
    let events = sink.wait(4).await;
    let blocked: Vec<_> = events
        .iter()
        .filter(|e| e.error_type.as_deref() == Some("GuardrailBlocked"))
        .collect();
    assert_eq!(blocked.len(), 2);
    assert_eq!(blocked[0].guardrail_findings[0].pattern, "launch_code");
    assert_eq!(blocked[0].guardrail_findings[0].action, "block");
    let ok = events.iter().find(|e| e.success).unwrap();
    let mut found: Vec<(String, String)> = ok
        .guardrail_findings
        .iter()
        .map(|f| (f.pattern.clone(), f.action.clone()))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("internal_token".to_owned(), "redact".to_owned()),
            ("project_name".to_owned(), "warn".to_owned())
        ]
    );
}

#[tokio::test]
async fn redaction_reaches_system_tool_calls_and_tool_results() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock, SEED)).await;
    let body = json!({
        "model": "m",
        "messages": [
            {"role": "system", "content": format!("system {SECRET}")},
            {"role": "user", "content": [{"type": "text", "text": format!("part {SECRET}")}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "lookup", "arguments": json!({"token": SECRET}).to_string()}}]},
            {"role": "tool", "tool_call_id": "c1", "content": format!("result {SECRET}")},
        ]
    });
    let r = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let seen = mock.last_request().unwrap().body;
    assert!(!seen.to_string().contains(SECRET), "{seen}");
    assert_eq!(
        r.header("x-bitrouter-guardrail-redactions"),
        "internal_token=4"
    );
    let args: Value = serde_json::from_str(
        seen["messages"][2]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(args["token"], "[REDACTED:internal_token]");

    // Anthropic: system blocks, tool_use input, tool_result content.
    let body = json!({
        "model": "a", "max_tokens": 32,
        "system": [{"type": "text", "text": format!("sys {SECRET}")}],
        "messages": [
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "lookup", "input": {"q": SECRET}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": SECRET}]}]},
        ]
    });
    let r = post(&gw, "/v1/messages", &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let seen = mock.last_request().unwrap().body;
    assert!(!seen.to_string().contains(SECRET), "{seen}");
    assert_eq!(
        r.header("x-bitrouter-guardrail-redactions"),
        "internal_token=3"
    );
}

fn replying(text: &str, chunks: usize) -> MockBehavior {
    MockBehavior {
        text: Some(text.to_owned()),
        chunks: Some(chunks),
        tool_call: Some(false),
        ..Default::default()
    }
}

#[tokio::test]
async fn downgoing_json_redact_and_block_in_both_dialects() {
    let mock = mock_with(replying("The plan is Project Bluebird, as agreed.", 6)).await;
    let gw = TestGateway::start(&config(&mock, SEED)).await;
    for (dialect, model) in [
        ("openai", "m"),
        ("anthropic", "a"),
        ("openai", "a"),
        ("anthropic", "m"),
    ] {
        let (path, body) = request_for(dialect, model, "what is the plan?");
        let r = post(&gw, path, &body).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let text = answer_text(dialect, &r.json());
        assert_eq!(
            text, "The plan is [REDACTED:project_name], as agreed.",
            "{dialect} via {model}"
        );
        assert_eq!(
            r.header("x-bitrouter-guardrail-redactions"),
            "project_name=1"
        );
    }
    mock.set_behavior(replying("Fire with LAUNCH-0042 now.", 4));
    for (dialect, model) in [("openai", "m"), ("anthropic", "a")] {
        let (path, body) = request_for(dialect, model, "what is the code?");
        let r = post(&gw, path, &body).await;
        assert_eq!(r.status, 403, "{}", r.text);
        assert!(r.text.contains("The response was blocked"), "{}", r.text);
        assert!(!r.text.contains("0042"), "{}", r.text);
    }
}

fn streaming(dialect: &str, model: &str, text: &str) -> (&'static str, Value) {
    let (path, mut body) = request_for(dialect, model, text);
    body["stream"] = true.into();
    // The mock stops at max_tokens; these answers are longer than the helper's default.
    body["max_tokens"] = 4096.into();
    (path, body)
}

#[tokio::test]
async fn streams_redact_across_chunks_and_end_with_an_error_on_block() {
    // Many small chunks, so the matches are split across deltas.
    let text = "Step one. The plan is Project Bluebird and nothing else. Step two. ".repeat(3);
    let mock = mock_with(replying(&text, 60)).await;
    let gw = TestGateway::start(&config(&mock, SEED)).await;
    for (dialect, model) in [("openai", "m"), ("anthropic", "a")] {
        let (path, body) = streaming(dialect, model, "plan?");
        let r = post(&gw, path, &body).await;
        assert_eq!(r.status, 200);
        let got = streamed_text(dialect, &r);
        assert_eq!(
            got,
            text.replace("Project Bluebird", "[REDACTED:project_name]"),
            "{dialect}"
        );
    }

    let text = format!(
        "{} then LAUNCH-7777 and more after it.",
        "harmless words ".repeat(100)
    );
    mock.set_behavior(replying(&text, 80));
    for (dialect, model) in [("openai", "m"), ("anthropic", "a")] {
        let (path, body) = streaming(dialect, model, "code?");
        let r = post(&gw, path, &body).await;
        assert_eq!(r.status, 200);
        let got = streamed_text(dialect, &r);
        assert!(!got.contains("LAUNCH"), "{got}");
        assert!(
            text.starts_with(&got),
            "only clean text before the match goes out"
        );
        assert!(
            got.len() > 100,
            "text before the window is released: {}",
            got.len()
        );
        if dialect == "openai" {
            let last = r.sse_data().into_iter().rfind(|d| d != "[DONE]").unwrap();
            let v: Value = serde_json::from_str(&last).unwrap();
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("launch_code"),
                "{last}"
            );
        } else {
            assert_eq!(
                r.sse_events().last().map(String::as_str),
                Some("error"),
                "{}",
                r.text
            );
            assert!(!r.sse_events().iter().any(|e| e == "message_stop"));
        }
    }
}

#[tokio::test]
async fn a_guardrail_plugin_by_path_works_end_to_end() {
    let mock = mock().await;
    let guardrails = format!(
        "guardrails:\n  builtin: false\n  plugins:\n    - path: {}\n  upgoing: {{ confidential-id: redact }}\n",
        plugin("confidential-ids")
    );
    let gw = TestGateway::start(&config(&mock, &guardrails)).await;
    let (path, body) = request_for(
        "openai",
        "m",
        "see CONFIDENTIAL-123456 and CONFIDENTIAL-000000",
    );
    let r = post(&gw, path, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let seen = upstream_text(&mock);
    // The plugin's own replacement, and its `check` drops the documentation placeholder.
    assert!(
        seen.contains("see CONFIDENTIAL-###### and CONFIDENTIAL-000000"),
        "{seen}"
    );
    assert_eq!(
        r.header("x-bitrouter-guardrail-redactions"),
        "confidential-id=1"
    );
}

#[tokio::test]
async fn a_failing_plugin_fails_closed_for_block_and_open_otherwise() {
    let mock = mock().await;
    let with = |action: &str| {
        format!(
            "guardrails:\n  builtin: false\n  plugins:\n    - path: {}\n      config: {{ mode: trap }}\n  upgoing: {{ x-run: {action} }}\n",
            plugin("hostile")
        )
    };
    let gw = TestGateway::start(&config(&mock, &with("block"))).await;
    let (path, body) = request_for("openai", "m", "XXXX");
    let r = post(&gw, path, &body).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "plugin_failed");
    // Text the pattern's regex does not match never reaches the plugin.
    let (path, body) = request_for("openai", "m", "clean text");
    assert_eq!(post(&gw, path, &body).await.status, 200);
    let failures = gw.gateway.guardrails().patterns()[0]
        .failures
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(failures, 1);
    drop(gw);

    let gw = TestGateway::start(&config(&mock, &with("warn"))).await;
    let (path, body) = request_for("anthropic", "a", "XXXX");
    let r = post(&gw, path, &body).await;
    assert_eq!(r.status, 200, "fail open: {}", r.text);
    assert!(upstream_text(&mock).contains("XXXX"));
    // Failing open is not silent: the response says which pattern went unchecked.
    assert_eq!(r.header("x-bitrouter-guardrail-failures"), "x-run=1");
    drop(gw);

    // `plugin_failure` overrides the default: closed refuses even for a warning pattern...
    let closed = with("warn").replace(
        "      config: { mode: trap }\n",
        "      config: { mode: trap }\n      plugin_failure: closed\n",
    );
    let gw = TestGateway::start(&config(&mock, &closed)).await;
    let (path, body) = request_for("openai", "m", "XXXX");
    let r = post(&gw, path, &body).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "plugin_failed");
    drop(gw);

    // ...and open (section-wide) lets a blocking pattern's failure through, flagged.
    let open = with("block").replace(
        "  builtin: false\n",
        "  builtin: false\n  plugin_failure: open\n",
    );
    let gw = TestGateway::start(&config(&mock, &open)).await;
    let r = post(&gw, path, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-bitrouter-guardrail-failures"), "x-run=1");
    let metrics = get(&gw, "/admin/metrics", &[]).await.json();
    assert_eq!(
        metrics["guardrails"]["patterns"]["x-run"]["plugin_failures"], 1,
        "{metrics}"
    );
    // The same count in the Prometheus exposition.
    let prom = get(&gw, "/metrics", &[]).await.text;
    let line = prom
        .lines()
        .find(|l| {
            l.starts_with("bitrouter_guardrail_findings{")
                && l.contains("pattern=\"x-run\"")
                && l.contains("action=\"plugin_failure\"")
        })
        .unwrap_or_else(|| panic!("no plugin_failure series in\n{prom}"));
    assert!(line.ends_with(" 1"), "{line}");
}

#[tokio::test]
async fn bad_guardrail_config_is_refused_with_the_key() {
    let mock = mock().await;
    let text = config(
        &mock,
        "guardrails:\n  builtin: false\n  upgoing: { no_such_pattern: block }\ndatabase:\n  url: memory://\n",
    );
    let c = bitrouter::Config::parse(&text, std::path::Path::new("g.yaml")).unwrap();
    let e = bitrouter::Gateway::new(c).await.err().expect("refused");
    let e = e.to_string();
    assert!(
        e.contains("g.yaml") && e.contains("guardrails.upgoing.no_such_pattern"),
        "{e}"
    );
}

/// The `observer` world through the real binary: `plugins.observers` loads the Rust example
/// observer, which receives every request event in batches and logs per-route totals and the
/// default guardrails' findings.
#[tokio::test]
async fn an_observer_plugin_sees_every_request() {
    let mock = mock_with(MockBehavior {
        input_tokens: Some(10),
        output_tokens: Some(5),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bitrouter.yaml");
    std::fs::write(
        &config,
        format!(
            "{}models:\n  obs:\n    endpoints: [{{ provider: up, model_id: mock-gpt }}]\ndatabase:\n  url: memory://\nplugins:\n  cache_dir: {}\n  observers:\n    - path: {}\n      config: {{ summary_every: 1 }}\n",
            providers(&[("up", "openai", &mock)]),
            dir.path().join("cache").display(),
            plugin("tokens-per-route"),
        ),
    )
    .unwrap();
    let gateway = crate::child::ChildGateway::spawn(&config, dir.path());
    let client = client();
    for prompt in ["hi", "mail alice@corp.io", "hi"] {
        let r = client
            .post(gateway.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(openai_chat("obs", prompt).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let want = [
        "route obs: 3 requests (0 failed), 30 input tokens, 15 output tokens",
        "guardrail pii_emails (warn): 1 findings",
    ];
    for _ in 0..200 {
        let log = gateway.log();
        if want.iter().all(|w| log.contains(w)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "the observer never logged {want:?}; gateway log:\n{}",
        gateway.log()
    );
}

/// Copies a built plugin (component + manifest) to `dir/name.wasm`, replacing what is there.
pub(crate) fn stage_plugin(id: &str, dir: &std::path::Path, name: &str) -> PathBuf {
    let src = PathBuf::from(plugin(id));
    let wasm = dir.join(format!("{name}.wasm"));
    std::fs::copy(&src, &wasm).unwrap();
    std::fs::copy(
        src.with_file_name(format!("{id}.plugin.toml")),
        dir.join(format!("{name}.plugin.toml")),
    )
    .unwrap();
    wasm
}

/// `POST /admin/plugins/reload` under load: no request fails, the new plugin takes over,
/// and a broken plugin file keeps the old one with the reason.
#[tokio::test]
async fn plugin_reload_under_load_loses_no_request() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let wasm = stage_plugin("confidential-ids", dir.path(), "policy");
    let guardrails = format!(
        "guardrails:\n  builtin: false\n  plugins:\n    - path: {}\n",
        wasm.display()
    );
    let gw = Arc::new(TestGateway::start_file(dir.path(), &config(&mock, &guardrails)).await);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (gw, stop) = (gw.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (path, body) = request_for("openai", "m", "plain text, nothing to see");
                let r = post(&gw, path, &body).await;
                assert_eq!(r.status, 200, "{}", r.text);
                n += 1;
            }
            n
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (path, body) = request_for("openai", "m", "XXXX");
    assert_eq!(post(&gw, path, &body).await.status, 200);

    // Swap in another plugin under the same path, reload.
    stage_plugin("hostile", dir.path(), "policy");
    let r = post(&gw, "/admin/plugins/reload", &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["changed"], json!(["hostile"]));
    let (path, body) = request_for("openai", "m", "XXXX");
    let r = post(&gw, path, &body).await;
    assert_eq!(
        r.status, 403,
        "the new plugin's x-run pattern blocks: {}",
        r.text
    );

    // A broken file: the reload fails with the reason, the loaded plugin stays.
    std::fs::write(&wasm, b"not wasm").unwrap();
    let r = post(&gw, "/admin/plugins/reload", &json!({})).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(
        r.text.contains("hash") || r.text.contains("sha256"),
        "{}",
        r.text
    );
    assert_eq!(post(&gw, path, &body).await.status, 403);

    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut served = 0;
    for l in load {
        served += l.await.expect("no request failed during the reloads");
    }
    assert!(served > 10, "{served}");
    let listed = get(&gw, "/admin/plugins", &[]).await.json();
    assert_eq!(listed["plugins"][0]["id"], "hostile");
}

/// The built-in patterns (compiled into the binary) through the real server, on secrets in
/// the forms agents paste (issue 23): a password piped into `docker login` in shell history
/// blocks; a key split over a shell line continuation is redacted whole; an address after a
/// vCard property and a percent-encoded one are warned about.
#[tokio::test]
async fn builtin_patterns_catch_pasted_forms_end_to_end() {
    let mock = mock().await;
    let gw = TestGateway::start(&config(&mock, "")).await;
    for (dialect, model) in [("openai", "m"), ("anthropic", "a")] {
        let before = mock.request_count();
        let history = "$ history | tail -3\n  717  docker compose up -d\n  \
                       718  echo 'Dk9!regpw7' | docker login -u bob --password-stdin registry.example.com\n";
        let (path, body) = request_for(dialect, model, &format!("why does this fail?\n{history}"));
        let r = post(&gw, path, &body).await;
        assert_eq!(r.status, 403, "{}", r.text);
        assert!(r.text.contains("credentials"), "{}", r.text);
        assert!(!r.text.contains("Dk9!regpw7"), "{}", r.text);
        assert_eq!(
            mock.request_count(),
            before,
            "a blocked request never goes upstream"
        );

        let key = "sk-proj-Ab3dE5gH7jK9mN1pQ3sT\\\nuV5wX7yZ9aB1cD3eF5gH7iJ9kL1mN3oP5qR7sT9uV";
        let (path, body) = request_for(
            dialect,
            model,
            &format!(
                "export OPENAI_API_KEY={key}\nBEGIN:VCARD\nEMAIL;TYPE=work:jo.ann@example.com\nEND:VCARD\nGET /unsub?email=jane.doe%40example.com"
            ),
        );
        let r = post(&gw, path, &body).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let seen = upstream_text(&mock);
        assert!(seen.contains("[REDACTED:api_keys]"), "{seen}");
        for piece in [
            "sk-proj-Ab3dE5gH7jK9mN1pQ3sT",
            "uV5wX7yZ9aB1cD3eF5gH7iJ9kL1mN3oP5qR7sT9uV",
        ] {
            assert!(
                !seen.contains(piece),
                "{piece} reached the upstream: {seen}"
            );
        }
        assert_eq!(r.header("x-bitrouter-guardrail-redactions"), "api_keys=1");
        assert_eq!(r.header("x-bitrouter-guardrail-warnings"), "pii_emails=2");
    }
}

/// `server.threads: 1` (a single-threaded runtime) through the real binary, with the default
/// guardrails and the example JavaScript guardrail, which imports WASI and is called inline on
/// a fiber on that one thread: concurrent requests are all answered, each one redacted, and
/// no plugin call fails.
#[tokio::test]
async fn one_thread_serves_concurrent_requests_through_a_wasi_guardrail() {
    let mock = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bitrouter.yaml");
    std::fs::write(
        &config,
        format!(
            "{}models:\n  m:\n    endpoints: [{{ provider: up, model_id: mock-gpt }}]\nserver:\n  threads: 1\ndatabase:\n  url: memory://\nplugins:\n  cache_dir: {}\nguardrails:\n  plugins:\n    - path: {}\n      call_deadline: 5s\n  upgoing: {{ confidential-id: redact }}\n",
            providers(&[("up", "openai", &mock)]),
            dir.path().join("cache").display(),
            plugin("js-guardrail"),
        ),
    )
    .unwrap();
    let gateway = crate::child::ChildGateway::spawn(&config, dir.path());
    let client = client();
    let calls = (0..12).map(|i| {
        let req = client
            .post(gateway.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(
                openai_chat(
                    "m",
                    &format!("request {i}: see CONFIDENTIAL-12345{}", i % 10),
                )
                .to_string(),
            )
            .send();
        async move {
            let r = req.await.unwrap();
            (
                r.status().as_u16(),
                r.headers().get("x-bitrouter-guardrail-redactions").cloned(),
            )
        }
    });
    for (status, redactions) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200, "gateway log:\n{}", gateway.log());
        assert_eq!(
            redactions.as_ref().and_then(|v| v.to_str().ok()),
            Some("confidential-id=1"),
            "gateway log:\n{}",
            gateway.log()
        );
    }
    let seen: Vec<String> = mock.requests().iter().map(|r| r.body.to_string()).collect();
    assert_eq!(seen.len(), 12);
    for body in &seen {
        assert!(
            body.contains("CONFIDENTIAL-######") && !body.contains("CONFIDENTIAL-1234"),
            "{body}"
        );
    }
    // The log is written in batches by a background thread: wait for the start-up line.
    for _ in 0..200 {
        if gateway.log().contains(", 1 thread, ") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let log = gateway.log();
    assert!(log.contains(", 1 thread, "), "{log}");
    assert!(!log.contains("plugin call failed"), "{log}");
}
