//! The real binary's firewall and plugin verbs: `guard scan` (findings as JSON lines, exit 2
//! when something would be blocked, the secret printed only on request), `check-config`
//! listing the patterns, `plugin inspect|test|keygen|sign|verify`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_bitrouter");

fn built(id: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../target/plugins/{id}.wasm"));
    assert!(
        p.is_file(),
        "{} missing: run scripts/build-plugins.sh",
        p.display()
    );
    p
}

fn run(cwd: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("BITROUTER_CONFIG")
        .env("BITROUTER_HOME", cwd.join("home"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn guard_scan_uses_the_builtins_and_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "hunter2hunter2";
    let text = format!("connect to postgres://admin:{secret}@db.internal:5432/prod please");
    let o = run(dir.path(), &["guard", "scan"], &text);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let found = lines(&o);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["pattern"], "credentials");
    assert_eq!(found[0]["action"], "block");
    assert_eq!(found[0]["direction"], "upgoing");
    let (s, e) = (
        found[0]["start"].as_u64().unwrap() as usize,
        found[0]["end"].as_u64().unwrap() as usize,
    );
    assert_eq!(&text[s..e], secret);
    assert!(!String::from_utf8_lossy(&o.stdout).contains(secret));

    let o = run(dir.path(), &["guard", "scan", "--show-match"], &text);
    assert_eq!(lines(&o)[0]["match"], secret);

    // Clean text: nothing, exit 0. Downgoing only: the upgoing patterns do not run.
    let o = run(
        dir.path(),
        &["guard", "scan"],
        "just some ordinary prose, version 1.2.3",
    );
    assert_eq!(o.status.code(), Some(0));
    assert!(lines(&o).is_empty());
    let o = run(
        dir.path(),
        &["guard", "scan", "--direction", "downgoing"],
        &text,
    );
    assert_eq!(o.status.code(), Some(0));

    // A config: a custom pattern, a disabled built-in, a changed action.
    let cfg = dir.path().join("bitrouter.yaml");
    std::fs::write(
        &cfg,
        "guardrails:\n  disabled_patterns: [credentials]\n  upgoing: { pii_emails: redact }\n  custom_patterns:\n    - { name: internal_token, regex: \"myapp_[A-Za-z0-9]{32}\", direction: both }\n  custom_downgoing: { internal_token: block }\n",
    )
    .unwrap();
    let token = format!("myapp_{}", "a".repeat(32));
    let input = format!("{text} mail jane@corp.example {token}");
    let o = run(
        dir.path(),
        &["guard", "scan", "--config", cfg.to_str().unwrap()],
        &input,
    );
    let found = lines(&o);
    let mut got: Vec<(String, String, String)> = found
        .iter()
        .map(|f| {
            (
                f["pattern"].as_str().unwrap().into(),
                f["direction"].as_str().unwrap().into(),
                f["action"].as_str().unwrap().into(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("internal_token".into(), "downgoing".into(), "block".into()),
            ("internal_token".into(), "upgoing".into(), "warn".into()),
            ("pii_emails".into(), "upgoing".into(), "redact".into()),
        ]
    );
    assert_eq!(o.status.code(), Some(2));

    // check-config lists the patterns with their actions.
    let o = run(dir.path(), &["check-config", cfg.to_str().unwrap()], "");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("guardrails: 7 patterns"), "{out}");
    assert!(
        out.contains("pii_emails") && out.contains("internal_token"),
        "{out}"
    );
    assert!(!out.contains("credentials "), "disabled: {out}");

    // A bad pattern id is a config error naming the key.
    std::fs::write(&cfg, "guardrails:\n  upgoing: { api_key: block }\n").unwrap();
    let o = run(dir.path(), &["check-config", cfg.to_str().unwrap()], "");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("guardrails.upgoing.api_key") && err.contains("api_keys"),
        "{err}"
    );
}

#[test]
fn plugin_inspect_test_sign_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &[
            "plugin",
            "inspect",
            built("confidential-ids").to_str().unwrap(),
        ],
        "",
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("world:      guardrail"), "{out}");
    assert!(out.contains("matches the manifest"), "{out}");
    assert!(
        out.contains("exports:    bitrouter:plugin/guard@0.1.0"),
        "{out}"
    );
    assert!(out.contains("regex: CONFIDENTIAL-\\d{6}"), "{out}");

    let o = run(
        dir.path(),
        &[
            "plugin",
            "test",
            built("confidential-ids").to_str().unwrap(),
            "--text",
            "doc CONFIDENTIAL-123456 and CONFIDENTIAL-000000",
            "--show-match",
        ],
        "",
    );
    let found = lines(&o);
    assert_eq!(found.len(), 2, "one per direction: {found:?}");
    assert!(
        found
            .iter()
            .all(|f| f["match"] == "CONFIDENTIAL-123456" && f["pattern"] == "confidential-id")
    );
    // `plugin test` and `plugin inspect` compile into the cache `serve` uses (under the home
    // folder), so a JavaScript or Python component compiles once, not on every run.
    let cached = std::fs::read_dir(dir.path().join("home/cache/plugins"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(cached >= 1, "nothing in the compile cache");

    // Sign a copy, verify with its key, refuse another key and a tampered component.
    for ext in ["wasm", "plugin.toml"] {
        std::fs::copy(
            built("hostile").with_extension("").with_extension(ext),
            dir.path().join(format!("h.{ext}")),
        )
        .unwrap();
    }
    let wasm = dir.path().join("h.wasm");
    let key = dir.path().join("k.key");
    let o = run(dir.path(), &["plugin", "keygen", key.to_str().unwrap()], "");
    assert!(o.status.success());
    let public = String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("public key: ").map(str::to_owned))
        .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let o = run(
        dir.path(),
        &[
            "plugin",
            "sign",
            wasm.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
        "",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(
        dir.path(),
        &["plugin", "verify", wasm.to_str().unwrap(), "--key", &public],
        "",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let other = "11".repeat(32);
    let o = run(
        dir.path(),
        &["plugin", "verify", wasm.to_str().unwrap(), "--key", &other],
        "",
    );
    assert!(!o.status.success());
    let mut bytes = std::fs::read(&wasm).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&wasm, bytes).unwrap();
    let o = run(
        dir.path(),
        &["plugin", "verify", wasm.to_str().unwrap(), "--key", &public],
        "",
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("sha256"), "{err}");
}

/// `--key` takes hex or a key file everywhere, a lost public key can be printed again, a
/// malformed key says so, and `check-config` takes `-c` like the other verbs.
#[test]
fn keys_as_files_or_hex_and_check_config_dash_c() {
    let dir = tempfile::tempdir().unwrap();
    let ok = |o: &Output| {
        assert!(
            o.status.success(),
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let public_of = |o: &Output| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("public key: ").map(str::to_owned))
            .unwrap()
    };
    for ext in ["wasm", "plugin.toml"] {
        std::fs::copy(
            built("confidential-ids")
                .with_extension("")
                .with_extension(ext),
            dir.path().join(format!("c.{ext}")),
        )
        .unwrap();
    }
    let o = run(dir.path(), &["plugin", "keygen", "k.key"], "");
    ok(&o);
    let public = public_of(&o);
    let o = run(dir.path(), &["plugin", "keygen", "--show", "k.key"], "");
    ok(&o);
    assert_eq!(public_of(&o), public);
    ok(&run(
        dir.path(),
        &["plugin", "sign", "c.wasm", "--key", "k.key"],
        "",
    ));
    // The secret key file, a file holding the public key, or the hex: all verify.
    std::fs::write(dir.path().join("k.pub"), format!("{public}\n")).unwrap();
    for key in ["k.key", "k.pub", public.as_str()] {
        ok(&run(
            dir.path(),
            &["plugin", "verify", "c.wasm", "--key", key],
            "",
        ));
    }
    // 64 hex digits that are not a curve point (y = 0x0202…: (y²-1)/(dy²+1) is no square).
    let o = run(
        dir.path(),
        &["plugin", "verify", "c.wasm", "--key", &"02".repeat(32)],
        "",
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("not an ed25519 public key"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("b.yaml"),
        "guardrails: { builtin: false }\n",
    )
    .unwrap();
    let o = run(dir.path(), &["check-config", "-c", "b.yaml"], "");
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("b.yaml: OK"));

    // `check-config` compiles a plugin once, into the cache `serve` uses: the second run
    // loads it from there.
    std::fs::write(
        dir.path().join("p.yaml"),
        "guardrails:\n  builtin: false\n  plugins:\n    - path: c.wasm\nplugins:\n  cache_dir: cache\n",
    )
    .unwrap();
    let first = run(dir.path(), &["check-config", "-c", "p.yaml"], "");
    ok(&first);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        stdout.contains("plugins: 1 compiled now, 0 from the compile cache"),
        "{stdout}"
    );
    let second = run(dir.path(), &["check-config", "-c", "p.yaml"], "");
    ok(&second);
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        stdout.contains("plugins: 0 compiled now, 1 from the compile cache"),
        "{stdout}"
    );
}

/// A plugin that fails (fail-open) finds nothing; `plugin test` must say so and exit 1, not
/// print "0 findings" as if the text were clean.
#[test]
fn plugin_test_reports_failed_calls() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = built("hostile");
    let test = |mode: &str, extra: &[&str]| {
        let config = format!("{{\"mode\":\"{mode}\"}}");
        let mut args = vec![
            "plugin",
            "test",
            hostile.to_str().unwrap(),
            "--config",
            &config,
            "--text",
            "XXX",
        ];
        args.extend_from_slice(extra);
        run(dir.path(), &args, "")
    };
    let o = test("loop", &["--call-deadline", "20ms"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("plugin hostile: 2 of 2 calls failed: 2 over the call deadline"),
        "{err}"
    );
    let o = test("trap", &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("trapped"), "{err}");
    // Behaving, the same plugin finds the run in both directions; its pattern blocks: exit 2.
    let o = test("none", &[]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(lines(&o).len(), 2);
    let o = run(
        dir.path(),
        &[
            "plugin",
            "test",
            hostile.to_str().unwrap(),
            "--call-deadline",
            "soon",
        ],
        "",
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--call-deadline"),
        "{err}"
    );
}

/// `plugin test` on an observer delivers a sample batch twice to one instance and prints its
/// log lines; on an adapter it prints the upstream request and what it decodes from the
/// bodies given (a stream in two chunks cut mid-line). Options of another world are refused.
#[test]
fn plugin_test_runs_observers_and_adapters() {
    let dir = tempfile::tempdir().unwrap();
    let observer = built("tokens-per-route");
    let o = run(
        dir.path(),
        &["plugin", "test", observer.to_str().unwrap()],
        "",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let logs = lines(&o);
    let message = |batch: u64, prefix: &str| {
        logs.iter()
            .find(|l| l["batch"] == batch && l["message"].as_str().unwrap().starts_with(prefix))
            .map(|l| l["message"].as_str().unwrap().to_owned())
    };
    // The sample batch: route chat 12+30 and 8+5 tokens, route fast failed; totals grow
    // across the two batches, so the instance was kept.
    assert_eq!(
        message(1, "route chat").as_deref(),
        Some("route chat: 2 requests (0 failed), 20 input tokens, 35 output tokens"),
        "{logs:?}"
    );
    assert_eq!(
        message(2, "route chat").as_deref(),
        Some("route chat: 4 requests (0 failed), 40 input tokens, 70 output tokens"),
        "{logs:?}"
    );
    assert_eq!(
        message(2, "route fast").as_deref(),
        Some("route fast: 2 requests (2 failed), 0 input tokens, 0 output tokens")
    );
    assert!(logs.iter().all(|l| l["level"] == "info"), "{logs:?}");

    let adapter = built("cohere-chat");
    let stream = "{\"event_type\":\"text-generation\",\"text\":\"Bon\"}\n\
                  {\"event_type\":\"text-generation\",\"text\":\"jour\"}\n\
                  {\"event_type\":\"stream-end\",\"finish_reason\":\"MAX_TOKENS\"}\n";
    std::fs::write(dir.path().join("stream.ndjson"), stream).unwrap();
    let o = run(
        dir.path(),
        &[
            "plugin",
            "test",
            adapter.to_str().unwrap(),
            "--model",
            "command-r",
            "--response",
            r#"{"text":"Bonjour","finish_reason":"COMPLETE","meta":{"billed_units":{"input_tokens":3,"output_tokens":1}}}"#,
            "--stream-response",
            "@stream.ndjson",
        ],
        "Salut",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = lines(&o);
    assert_eq!(out.len(), 5, "{out:?}");
    assert_eq!(out[0]["call"], "encode-request");
    assert_eq!(
        (&out[0]["method"], &out[0]["path"]),
        (&"POST".into(), &"/v1/chat".into())
    );
    assert_eq!(
        out[0]["body"]["message"], "Salut",
        "the text came from stdin"
    );
    assert_eq!(out[0]["body"]["model"], "command-r");
    let answer = &out[1]["openai"];
    assert_eq!(answer["choices"][0]["message"]["content"], "Bonjour");
    assert_eq!(
        answer["model"], "command-r",
        "the endpoint's model fills an empty one"
    );
    assert_eq!(answer["usage"]["prompt_tokens"], 3);
    let events: Vec<&serde_json::Value> = out[2..]
        .iter()
        .flat_map(|l| l["events"].as_array().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            &serde_json::json!({ "text_delta": "Bon" }),
            &serde_json::json!({ "text_delta": "jour" }),
            &serde_json::json!({ "usage": {
                "input_tokens": 0, "cache_read_tokens": 0, "cache_write_tokens": 0,
                "output_tokens": 0, "reasoning_tokens": 0,
            } }),
            &serde_json::json!({ "finish": "length" }),
        ],
        "{out:?}"
    );
    assert_eq!(out[4]["end"], true);

    // An upstream error is the adapter's classification, not a failed call.
    let o = run(
        dir.path(),
        &[
            "plugin",
            "test",
            adapter.to_str().unwrap(),
            "--text",
            "hi",
            "--status",
            "429",
            "--response",
            r#"{"message":"slow down"}"#,
        ],
        "",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = &lines(&o)[1]["upstream_error"];
    assert_eq!(
        (&err["status"], &err["retryable"]),
        (&429.into(), &true.into()),
        "{err}"
    );

    for (file, args, says) in [
        (&observer, &["--show-match"][..], "are for guardrails"),
        (
            &adapter,
            &["--text", "hi", "--direction", "upgoing"][..],
            "are for guardrails",
        ),
        (
            &built("confidential-ids"),
            &["--text", "hi", "--stream"][..],
            "are for provider adapters",
        ),
    ] {
        let mut all = vec!["plugin", "test", file.to_str().unwrap()];
        all.extend(args);
        let o = run(dir.path(), &all, "");
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(says),
            "{args:?}"
        );
    }
}
