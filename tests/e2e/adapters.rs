//! Provider-adapter plugins in the request path: the example `cohere-chat` adapter (built from
//! examples/plugins/rust-adapter into target/plugins/) in front of the mock's Cohere-style
//! `/v1/chat`, called by OpenAI and Anthropic callers, JSON and streamed; failover between
//! adapter and native endpoints both ways; a trapping or looping adapter failing over; the
//! adapter's usage in the spend ledger; and `plugin new` scaffolds.

use std::path::PathBuf;
use std::process::Command;

use bitrouter_mock::{MockBehavior, MockServer};
use serde_json::{Value, json};

use crate::harness::*;

fn plugin(id: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../target/plugins/{id}.wasm"));
    assert!(
        p.is_file(),
        "{} is missing: run scripts/build-plugins.sh first",
        p.display()
    );
    p.display().to_string()
}

/// A provider entry served by an adapter plugin.
fn adapter_provider(name: &str, base: &str, adapter: &str, config: &str) -> String {
    format!(
        "  {name}:\n    api_protocol: plugin\n    adapter: {{ path: {}{config} }}\n    api_base: {base}\n    api_key: key-{name}\n",
        plugin(adapter)
    )
}

/// Providers (`cohere` via the adapter on `c`, `native` openai on `n`), routes `c` (cohere
/// only), `c-first` (cohere, then native) and `n-first` (native, then cohere).
fn config(c: &str, n: &MockServer, extra_providers: &str, cache: &std::path::Path) -> String {
    format!(
        "providers:\n{}  native:\n    api_protocol: openai\n    api_base: {}/v1\n    api_key: key-native\n{extra_providers}models:\n  c:\n    endpoints: [{{ provider: cohere, model_id: command-r }}]\n  c-first:\n    endpoints:\n      - {{ provider: cohere, model_id: command-r }}\n      - {{ provider: native, model_id: gpt-x }}\n  n-first:\n    endpoints:\n      - {{ provider: native, model_id: gpt-x }}\n      - {{ provider: cohere, model_id: command-r }}\nrouting:\n  cooldown: {{ failures: 100 }}\nguardrails:\n  builtin: false\nplugins:\n  cache_dir: {}\n",
        adapter_provider("cohere", c, "cohere-chat", ""),
        n.base_url(),
        cache.display()
    )
}

fn streaming(mut body: Value) -> Value {
    body["stream"] = true.into();
    body
}

#[tokio::test]
async fn openai_and_anthropic_callers_reach_a_cohere_style_upstream() {
    let up = mock_with(MockBehavior {
        text: Some("Bonjour from the cohere mock".into()),
        input_tokens: Some(11),
        output_tokens: Some(7),
        ..Default::default()
    })
    .await;
    let native = mock().await;
    let cache = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(&config(&up.base_url(), &native, "", cache.path())).await;

    for dialect in ["openai", "anthropic"] {
        let (path, mut body) = request_for(dialect, "c", "hello there");
        // A system prompt and an earlier turn become `preamble` and `chat_history`.
        match dialect {
            "openai" => {
                body["messages"] = json!([
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "first"},
                    {"role": "assistant", "content": "ok"},
                    {"role": "user", "content": "hello there"},
                ]);
            }
            _ => {
                body["system"] = json!("be brief");
                body["messages"] = json!([
                    {"role": "user", "content": "first"},
                    {"role": "assistant", "content": "ok"},
                    {"role": "user", "content": "hello there"},
                ]);
            }
        }
        let r = post(&gw, path, &body).await;
        assert_eq!(r.status, 200, "{dialect}: {}", r.text);
        assert_eq!(r.header("x-bitrouter-upstream"), "cohere:command-r");
        let v = r.json();
        assert_eq!(answer_text(dialect, &v), "Bonjour from the cohere mock");
        match dialect {
            "openai" => {
                assert_eq!(v["model"], "command-r");
                assert_eq!(v["choices"][0]["finish_reason"], "stop");
                assert_eq!(v["usage"]["prompt_tokens"], 11);
                assert_eq!(v["usage"]["completion_tokens"], 7);
            }
            _ => {
                assert_eq!(v["stop_reason"], "end_turn");
                assert_eq!(v["usage"]["input_tokens"], 11);
                assert_eq!(v["usage"]["output_tokens"], 7);
            }
        }
        let sent = up.last_request().unwrap();
        assert_eq!(sent.path, "/v1/chat");
        assert_eq!(sent.header("authorization"), Some("Bearer key-cohere"));
        assert_eq!(sent.body["message"], "hello there");
        assert_eq!(sent.body["model"], "command-r");
        assert_eq!(sent.body["preamble"], "be brief");
        assert_eq!(
            sent.body["chat_history"],
            json!([{"role": "USER", "message": "first"}, {"role": "CHATBOT", "message": "ok"}])
        );

        let r = post(&gw, path, &streaming(body.clone())).await;
        assert_eq!(r.status, 200, "{dialect} stream: {}", r.text);
        assert!(r.header("content-type").starts_with("text/event-stream"));
        assert_eq!(streamed_text(dialect, &r), "Bonjour from the cohere mock");
        match dialect {
            "openai" => assert_eq!(r.sse_data().last().unwrap(), "[DONE]"),
            _ => {
                let events = r.sse_events();
                assert_eq!(events.first().unwrap(), "message_start");
                assert_eq!(events.last().unwrap(), "message_stop");
                let delta = r
                    .sse_data()
                    .iter()
                    .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                    .find(|v| v["type"] == "message_delta")
                    .unwrap();
                assert_eq!(delta["usage"]["output_tokens"], 7);
            }
        }
        assert_eq!(up.last_request().unwrap().body["stream"], true);
    }
    assert_eq!(native.request_count(), 0);
}

#[tokio::test]
async fn a_long_stream_split_across_chunks_arrives_whole() {
    let up = mock_with(MockBehavior {
        chunks: Some(300),
        ..Default::default()
    })
    .await;
    let native = mock().await;
    let cache = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(&config(&up.base_url(), &native, "", cache.path())).await;
    let r = post(
        &gw,
        "/v1/chat/completions",
        &streaming(openai_chat("c", "hi")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let direct = post(&gw, "/v1/chat/completions", &openai_chat("c", "hi")).await;
    let whole = answer_text("openai", &direct.json());
    assert!(whole.len() > 1000, "{whole}");
    assert_eq!(streamed_text("openai", &r), whole);
}

#[tokio::test]
async fn failover_from_a_failing_adapter_endpoint_to_a_native_one_and_back() {
    for status in [429u16, 500, 503] {
        let bad = mock_with(MockBehavior {
            status: Some(status),
            ..Default::default()
        })
        .await;
        let native = mock().await;
        let cache = tempfile::tempdir().unwrap();
        let gw = TestGateway::start(&config(&bad.base_url(), &native, "", cache.path())).await;
        for dialect in ["openai", "anthropic"] {
            let (path, body) = request_for(dialect, "c-first", "hi");
            for body in [body.clone(), streaming(body)] {
                let r = post(&gw, path, &body).await;
                assert_eq!(r.status, 200, "status {status}: {}", r.text);
                assert_eq!(r.header("x-bitrouter-upstream"), "native:gpt-x");
                assert_eq!(r.header("x-bitrouter-attempts"), "2");
            }
        }
        assert_eq!(bad.request_count(), 4, "status {status}");
        // With the adapter endpoint alone, its error reaches the caller in the caller's shape.
        let r = post(&gw, "/v1/messages", &anthropic_msg("c", "hi")).await;
        assert_eq!(r.status, status);
        let v = r.json();
        assert_eq!(v["type"], "error");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("mock upstream"),
            "{v}"
        );
    }
    // A 4xx is the caller's problem: no failover.
    let bad = mock_with(MockBehavior {
        status: Some(400),
        ..Default::default()
    })
    .await;
    let native = mock().await;
    let cache = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(&config(&bad.base_url(), &native, "", cache.path())).await;
    let r = post(&gw, "/v1/chat/completions", &openai_chat("c-first", "hi")).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    assert_eq!(native.request_count(), 0);

    // Native endpoint refused / failing → the adapter endpoint serves.
    let up = mock().await;
    let failing = mock_with(MockBehavior {
        status: Some(502),
        ..Default::default()
    })
    .await;
    let gw = TestGateway::start(&config(&up.base_url(), &failing, "", cache.path())).await;
    for (path, body) in [
        request_for("openai", "n-first", "hi"),
        request_for("anthropic", "n-first", "hi"),
    ] {
        for body in [body.clone(), streaming(body)] {
            let r = post(&gw, path, &body).await;
            assert_eq!(r.status, 200, "{}", r.text);
            assert_eq!(r.header("x-bitrouter-upstream"), "cohere:command-r");
        }
    }
    assert_eq!(up.request_count(), 4);

    // A refused connection to the adapter's upstream fails over too.
    let native = mock().await;
    let gw = TestGateway::start(&config(&dead_addr(), &native, "", cache.path())).await;
    let r = post(
        &gw,
        "/v1/chat/completions",
        &streaming(openai_chat("c-first", "hi")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-bitrouter-upstream"), "native:gpt-x");
}

#[tokio::test]
async fn an_adapter_stream_that_dies_before_content_fails_over() {
    let cut = mock_with(MockBehavior {
        cut_after: Some(0),
        ..Default::default()
    })
    .await;
    let native = mock().await;
    let cache = tempfile::tempdir().unwrap();
    let gw = TestGateway::start(&config(&cut.base_url(), &native, "", cache.path())).await;
    let r = post(
        &gw,
        "/v1/messages",
        &streaming(anthropic_msg("c-first", "hi")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-bitrouter-upstream"), "native:gpt-x");
    assert_eq!(
        streamed_text("anthropic", &r),
        "Hello from the mock upstream."
    );
}

#[tokio::test]
async fn a_trapping_or_looping_adapter_fails_over_and_counts_the_failure() {
    let up = mock().await;
    let native = mock().await;
    let cache = tempfile::tempdir().unwrap();
    for mode in ["trap", "loop", "refuse", "bad-request"] {
        let hostile = adapter_provider(
            "hostile",
            &up.base_url(),
            "hostile-adapter",
            &format!(", config: {{ mode: {mode} }}"),
        );
        let yaml = config(&up.base_url(), &native, &hostile, cache.path()).replace(
            "models:\n",
            "models:\n  h-first:\n    endpoints:\n      - { provider: hostile, model_id: m }\n      - { provider: native, model_id: gpt-x }\n  h:\n    endpoints: [{ provider: hostile, model_id: m }]\n",
        );
        let gw = TestGateway::start(&yaml).await;
        for body in [
            openai_chat("h-first", "hi"),
            streaming(openai_chat("h-first", "hi")),
        ] {
            let r = post(&gw, "/v1/chat/completions", &body).await;
            assert_eq!(r.status, 200, "{mode}: {}", r.text);
            assert_eq!(r.header("x-bitrouter-upstream"), "native:gpt-x");
        }
        // Alone, the failure is a plugin error in the caller's dialect.
        let r = post(&gw, "/v1/messages", &anthropic_msg("h", "hi")).await;
        assert_eq!(r.status, 503, "{mode}: {}", r.text);
        let v = r.json();
        assert_eq!(v["type"], "error");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("hostile-adapter"),
            "{mode}: {v}"
        );
        let plugins = get(&gw, "/admin/plugins", &[]).await.json();
        let h = plugins["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == "hostile-adapter")
            .unwrap()
            .clone();
        assert_eq!(h["world"], "provider-adapter");
        assert_eq!(h["failures"], 3, "{mode}: {h}");
    }
    assert_eq!(up.request_count(), 0, "no hostile request went out");
}

#[tokio::test]
async fn the_spend_row_has_the_adapters_usage() {
    let up = mock_with(MockBehavior {
        input_tokens: Some(1000),
        output_tokens: Some(500),
        ..Default::default()
    })
    .await;
    let native = mock().await;
    let cache = tempfile::tempdir().unwrap();
    let yaml = config(&up.base_url(), &native, "", cache.path()).replace(
        "    api_key: key-cohere\n",
        "    api_key: key-cohere\n    models:\n      command-r: { pricing: { input_tokens: { no_cache: 1.0 }, output_tokens: { text: 2.0 } } }\n",
    );
    let gw = TestGateway::start(&yaml).await;
    assert_eq!(
        post(&gw, "/v1/chat/completions", &openai_chat("c", "hi"))
            .await
            .status,
        200
    );
    assert_eq!(
        post(&gw, "/v1/messages", &streaming(anthropic_msg("c", "hi")))
            .await
            .status,
        200
    );
    let mut rows = Vec::new();
    for _ in 0..200 {
        rows = gw.gateway.ledger().rows(0, i64::MAX).await.unwrap();
        if rows.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert!(r.success && !r.estimated, "{r:?}");
        assert_eq!(
            (r.provider.as_deref(), r.model.as_deref()),
            (Some("cohere"), Some("command-r"))
        );
        assert_eq!((r.tokens.input_no_cache, r.tokens.output_text), (1000, 500));
        // 1000 × $1/M + 500 × $2/M = $0.002
        assert_eq!(r.cost_nano_usd, 2_000_000, "{r:?}");
    }
}

#[tokio::test]
async fn guardrails_apply_to_adapter_traffic() {
    let up = mock_with(MockBehavior {
        text: Some("the id is CONFIDENTIAL-123456 ok".into()),
        ..Default::default()
    })
    .await;
    let native = mock().await;
    let cache = tempfile::tempdir().unwrap();
    let yaml = config(&up.base_url(), &native, "", cache.path()).replace(
        "guardrails:\n  builtin: false\n",
        &format!(
            "guardrails:\n  builtin: false\n  plugins:\n    - path: {}\n",
            plugin("confidential-ids")
        ),
    );
    let gw = TestGateway::start(&yaml).await;
    for body in [openai_chat("c", "hi"), streaming(openai_chat("c", "hi"))] {
        let stream = body["stream"] == true;
        let r = post(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let text = if stream {
            streamed_text("openai", &r)
        } else {
            answer_text("openai", &r.json())
        };
        assert_eq!(text, "the id is CONFIDENTIAL-###### ok");
    }
}

#[tokio::test]
async fn adapter_config_errors_name_the_key() {
    let bad = [
        (
            "providers:\n  x:\n    api_protocol: plugin\n    api_base: http://127.0.0.1:1\n",
            "providers.x.adapter",
        ),
        (
            "providers:\n  x:\n    api_protocol: openai\n    api_base: http://127.0.0.1:1\n    adapter: { path: a.wasm }\n",
            "providers.x.adapter",
        ),
        (
            "providers:\n  x:\n    api_protocol: plugin\n    api_base: http://127.0.0.1:1\n    adapter: { path: \"\" }\n",
            "providers.x.adapter.path",
        ),
    ];
    for (yaml, key) in bad {
        let e = bitrouter::Config::parse(yaml, std::path::Path::new("t.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("`{key}`")), "{e}");
    }
    // A world mismatch (a guardrail named as an adapter) is a startup error naming the key.
    let yaml = format!(
        "providers:\n  x:\n    api_protocol: plugin\n    api_base: http://127.0.0.1:1\n    api_key: k\n    adapter: {{ path: {} }}\nguardrails:\n  builtin: false\nplugins:\n  cache_dir: false\ndatabase:\n  url: memory://\n",
        plugin("confidential-ids")
    );
    let config = bitrouter::Config::parse(&yaml, std::path::Path::new("t.yaml")).unwrap();
    let e = bitrouter::Gateway::new(config)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("providers.x.adapter") && e.contains("world mismatch"),
        "{e}"
    );
}

#[tokio::test]
async fn the_example_config_serves_through_the_adapter() {
    let up = mock_with(MockBehavior {
        text: Some("from the example".into()),
        ..Default::default()
    })
    .await;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/cohere-adapter.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("http://127.0.0.1:9999", &up.base_url());
    let config = bitrouter::Config::parse(&text, &path).unwrap();
    let gw = TestGateway::start_config(config, Vec::new()).await;
    let r = post(&gw, "/v1/chat/completions", &openai_chat("chat", "hi")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-bitrouter-upstream"), "cohere-mock:command-r");
    assert_eq!(answer_text("openai", &r.json()), "from the example");
    assert_eq!(up.last_request().unwrap().path, "/v1/chat");
}

#[test]
fn plugin_new_scaffolds_every_language_and_world() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(crate::child::BIN)
            .args(["plugin", "new"])
            .args(args)
            .arg("--dir")
            .arg(dir.path())
            .output()
            .unwrap()
    };
    for lang in ["rust", "js", "python", "c"] {
        for world in ["guardrail", "observer", "provider-adapter"] {
            // rg, ro, rp, jg, ...
            let name = format!("{}{}", &lang[..1], &world[..1]);
            let source = match lang {
                "rust" => "src/lib.rs".to_owned(),
                "python" => "app.py".to_owned(),
                "js" => format!("{world}.js"),
                _ => format!("{world}.c"),
            };
            check_scaffold(
                &run(&["--lang", lang, "--world", world, &name]),
                &dir.path().join(&name),
                world,
                &[&source, "plugin.toml"],
            );
        }
    }
    // The Rust projects are valid Cargo projects, standalone.
    for name in ["rg", "ro", "rp"] {
        let toml = dir.path().join(name).join("Cargo.toml");
        let out = Command::new("cargo")
            .args([
                "metadata",
                "--offline",
                "--format-version",
                "1",
                "--no-deps",
                "--manifest-path",
            ])
            .arg(&toml)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["packages"][0]["name"], name);
    }
    // Refusals: an existing folder, a bad name, an unknown world.
    for args in [
        &["--lang", "rust", "rg"][..],
        &["--lang", "rust", "Bad Name"][..],
        &["--lang", "js", "--world", "router", "jr"][..],
    ] {
        let out = run(args);
        assert!(!out.status.success(), "{args:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
    }
}

/// A successful `plugin new` of `world` into `root`, which holds `files` (the source and the
/// manifest) besides the files every project has.
fn check_scaffold(out: &std::process::Output, root: &std::path::Path, world: &str, files: &[&str]) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}: {}",
        root.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let name = root.file_name().unwrap().to_str().unwrap();
    let args = root.display();
    assert!(
        stdout.contains("prerequisites") && stdout.contains("&& ./build.sh"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("bitrouter plugin test target/plugin/{name}.wasm")),
        "{stdout}"
    );
    for f in
        files
            .iter()
            .copied()
            .chain(["README.md", "build.sh", "wit/types.wit", "wit/worlds.wit"])
    {
        assert!(root.join(f).is_file(), "{args}: {f} missing");
    }
    let all: String = files
        .iter()
        .map(|f| std::fs::read_to_string(root.join(f)).unwrap())
        .collect();
    assert!(!all.contains("{{"), "{args}: unfilled placeholder");
    let manifest = std::fs::read_to_string(root.join("plugin.toml")).unwrap();
    assert!(
        manifest.contains(&format!("world = \"{world}\"")),
        "{args}: plugin.toml names no {world}"
    );
    let build = std::fs::read_to_string(root.join("build.sh")).unwrap();
    assert!(
        build.contains("plugin.toml") && build.contains("install with:"),
        "{args}: build.sh neither copies the manifest nor checks prerequisites"
    );
    if world == "guardrail" {
        assert!(all.contains(r"SAMPLE-\\d{4}") || all.contains(r"SAMPLE-\d{4}"));
    }
}

/// With tracing on, an adapter-built request carries the attempt's `traceparent` like a
/// native one (the collector need not be up for the header to go out).
#[tokio::test]
async fn adapter_requests_carry_the_attempts_traceparent() {
    let up = mock().await;
    let native = mock().await;
    let cache = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{}observe:\n  otlp:\n    endpoint: {}\n    metrics: false\n",
        config(&up.base_url(), &native, "", cache.path()),
        dead_addr()
    );
    let gw = TestGateway::start(&yaml).await;
    for body in [openai_chat("c", "hi"), streaming(openai_chat("c", "hi"))] {
        let r = post(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let seen = up.last_request().unwrap();
        let tp = seen
            .header("traceparent")
            .expect("traceparent to the adapter's upstream");
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "{tp}");
        assert_eq!((parts[0], parts[3]), ("00", "01"), "{tp}");
        assert!(parts[1].len() == 32 && parts[2].len() == 16, "{tp}");
    }
}
