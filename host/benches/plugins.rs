//! Plugin call overhead: a trivial guardrail call including instantiation (goal ≤ 5 µs),
//! and instantiation alone with and without the pooling allocator; and the same call in a
//! warm instance (`warm`: the manifest says `stateless`, as the default plugins' do; goal
//! ≤ 3 µs).
//!
//! Needs the components from `scripts/build-plugins.sh` (in `target/plugins/`).
//! Run: `cargo bench -p bitrouter --bench plugins`
//!
//! The group `plugins-polyglot` measures the same guardrail written in Rust, JavaScript,
//! Python and C (`scripts/build-polyglot-plugins.sh`): instantiation with and without
//! pooling, one `check`, a 2 KB `scan`, and a cold start from a warm compile cache. It is
//! skipped, with a note, when those components have not been built.
//! Run only it: `cargo bench -p bitrouter --bench plugins -- polyglot`

#![allow(clippy::single_range_in_vec_init)]

use std::path::Path;
use std::time::{Duration, Instant};

use bitrouter::plugins::{GuardrailPlugin, HostConfig, Plugin, PluginHost, PluginSpec};
use criterion::{Criterion, criterion_group, criterion_main};

/// The example guardrail, fresh instance per call; `stateless`: a copy in `dir` whose
/// manifest says `stateless`, so its calls run in a warm instance.
fn load(pooling: bool, stateless: Option<&Path>) -> (PluginHost, GuardrailPlugin) {
    let built =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins/confidential-ids.wasm");
    assert!(
        built.is_file(),
        "{} is missing: run scripts/build-plugins.sh first",
        built.display()
    );
    let wasm = match stateless {
        None => built,
        Some(dir) => {
            let wasm = dir.join("confidential-ids.wasm");
            std::fs::copy(&built, &wasm).expect("copy the component");
            let manifest = std::fs::read_to_string(built.with_extension("plugin.toml"))
                .expect("read the manifest");
            let manifest = manifest.replacen(
                "capabilities = []",
                "capabilities = []\nstateless = true",
                1,
            );
            std::fs::write(wasm.with_extension("plugin.toml"), manifest)
                .expect("write the manifest");
            wasm
        }
    };
    let host = PluginHost::load(
        HostConfig {
            pooling,
            cache_dir: None,
            ..HostConfig::default()
        },
        &[PluginSpec::new(wasm)],
    )
    .expect("load confidential-ids");
    let g = match &host.plugins()[0] {
        Plugin::Guardrail(g) => g.clone(),
        _ => unreachable!(),
    };
    (host, g)
}

/// Instantiating (and dropping) one instance of `g`, the cost a fresh-instance call pays.
fn bench_instantiate(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    rt: &tokio::runtime::Runtime,
    g: &GuardrailPlugin,
) {
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    g.instantiate_once().await.expect("instantiate");
                }
                start.elapsed()
            })
        });
    });
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let text = "please look at CONFIDENTIAL-123456 before friday";
    let cands = vec![15..34];
    let mut group = c.benchmark_group("plugins");
    group.measurement_time(Duration::from_secs(3));
    let dir = tempfile::tempdir().expect("temp dir");
    for (label, pooling, stateless) in [
        ("pooling", true, None),
        ("on-demand", false, None),
        ("warm", true, Some(dir.path())),
    ] {
        let (_host, g) = load(pooling, stateless);
        assert_eq!(g.info().reuses_instances, stateless.is_some());
        if stateless.is_none() {
            bench_instantiate(&mut group, &format!("instantiate/{label}"), &rt, &g);
        }
        group.bench_function(format!("check-1-candidate/{label}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let f = g
                            .check("confidential-id", text, &cands)
                            .await
                            .expect("check");
                        assert_eq!(f.len(), 1);
                    }
                    start.elapsed()
                })
            });
        });
        group.bench_function(format!("scan-clean-2KB/{label}"), |b| {
            let clean = "lorem ipsum dolor sit amet ".repeat(76);
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let f = g
                            .scan(bitrouter::plugins::Direction::Request, &clean)
                            .await
                            .expect("scan");
                        assert!(f.is_empty());
                    }
                    start.elapsed()
                })
            });
        });
    }
    group.finish();
}

// ------------------------------------------------------------------ polyglot

/// The example guardrail in each language: (plugin id, label).
const POLYGLOT: [(&str, &str); 4] = [
    ("confidential-ids", "rust"),
    ("js-guardrail", "js"),
    ("python-guardrail", "python"),
    ("c-guardrail", "c"),
];

fn polyglot(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
    let missing: Vec<&str> = POLYGLOT
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !dir.join(format!("{id}.wasm")).is_file())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "plugins-polyglot: skipped, {missing:?} not built (scripts/build-plugins.sh and \
             scripts/build-polyglot-plugins.sh)"
        );
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("runtime");
    // The JS and Python runtimes need more than the default 10 ms deadline on a busy machine
    // for their first calls; the deadline does not change what is measured.
    let spec = |id: &str| PluginSpec {
        call_deadline: Some(Duration::from_secs(1)),
        ..PluginSpec::new(dir.join(format!("{id}.wasm")))
    };
    let cache = tempfile::tempdir().expect("tempdir");
    let cached = HostConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..HostConfig::default()
    };
    let text = "please look at CONFIDENTIAL-123456 before friday";
    let cands = vec![15..34];
    let clean = "lorem ipsum dolor sit amet ".repeat(76);
    let mut group = c.benchmark_group("plugins-polyglot");
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(20);
    for (id, lang) in POLYGLOT {
        // Compiles once into the cache (a JS or Python component takes seconds).
        let host = PluginHost::load(cached.clone(), &[spec(id)]).expect("load");
        let g = match &host.plugins()[0] {
            Plugin::Guardrail(g) => g.clone(),
            _ => unreachable!(),
        };
        let on_demand = PluginHost::load(
            HostConfig {
                pooling: false,
                ..cached.clone()
            },
            &[spec(id)],
        )
        .expect("load");
        let g_on_demand = match &on_demand.plugins()[0] {
            Plugin::Guardrail(g) => g.clone(),
            _ => unreachable!(),
        };
        for (label, g) in [("pooling", &g), ("on-demand", &g_on_demand)] {
            bench_instantiate(&mut group, &format!("instantiate/{label}/{lang}"), &rt, g);
        }
        group.bench_function(format!("check-1-candidate/{lang}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let f = g
                            .check("confidential-id", text, &cands)
                            .await
                            .expect("check");
                        assert_eq!(f.len(), 1);
                    }
                    start.elapsed()
                })
            });
        });
        group.bench_function(format!("scan-clean-2KB/{lang}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let f = g
                            .scan(bitrouter::plugins::Direction::Request, &clean)
                            .await
                            .expect("scan");
                        assert!(f.is_empty());
                    }
                    start.elapsed()
                })
            });
        });
        // A start-up from a warm cache: read + hash + manifest, load the compiled
        // artifact, pre-link, instantiate for configure + describe.
        group.bench_function(format!("cold-start-from-cache/{lang}"), |b| {
            b.iter(|| {
                let h = PluginHost::load(cached.clone(), &[spec(id)]).expect("load");
                assert_eq!(
                    h.plugins()[0].info().compiled,
                    bitrouter::plugins::CompileSource::Cache
                );
            });
        });
    }
    group.bench_function("cold-start-from-cache/all-four", |b| {
        let specs: Vec<PluginSpec> = POLYGLOT.iter().map(|(id, _)| spec(id)).collect();
        b.iter(|| PluginHost::load(cached.clone(), &specs).expect("load"));
    });
    group.finish();
}

/// The provider-adapter calls one request costs (the example `cohere-chat` adapter):
/// `encode-request` of a short chat, `decode-response` of a JSON answer, and one
/// `decode-stream` step of a 6-line NDJSON chunk; each in a fresh pooled instance.
/// Run only it: `cargo bench -p bitrouter --bench plugins -- adapter`
fn adapter(c: &mut Criterion) {
    use bitrouter::canonical::{Message, Request, Role};
    use bitrouter::plugins::StreamState;
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins/cohere-chat.wasm");
    assert!(
        wasm.is_file(),
        "{} is missing: run scripts/build-plugins.sh first",
        wasm.display()
    );
    let host = PluginHost::load(
        HostConfig {
            cache_dir: None,
            ..HostConfig::default()
        },
        &[PluginSpec::new(wasm)],
    )
    .expect("load cohere-chat");
    let a = host.adapters().next().expect("an adapter").clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let request = Request {
        model: "c".into(),
        messages: vec![
            Message::text(Role::System, "be brief"),
            Message::text(Role::User, "first question"),
            Message::text(Role::Assistant, "first answer"),
            Message::text(Role::User, "what is the capital of France?"),
        ],
        max_tokens: Some(256),
        ..Request::default()
    };
    let answer = br#"{"response_id":"r1","generation_id":"g1","text":"Paris is the capital of France.","finish_reason":"COMPLETE","meta":{"billed_units":{"input_tokens":24,"output_tokens":8}}}"#;
    let chunk = concat!(
        r#"{"is_finished":false,"event_type":"stream-start","generation_id":"g1"}"#,
        "\n",
        r#"{"is_finished":false,"event_type":"text-generation","text":"Paris"}"#,
        "\n",
        r#"{"is_finished":false,"event_type":"text-generation","text":" is"}"#,
        "\n",
        r#"{"is_finished":false,"event_type":"text-generation","text":" the"}"#,
        "\n",
        r#"{"is_finished":false,"event_type":"text-generation","text":" capital."}"#,
        "\n",
        r#"{"is_finished":true,"event_type":"stream-end","finish_reason":"COMPLETE","response":{"text":"Paris is the capital.","meta":{"billed_units":{"input_tokens":24,"output_tokens":4}}}}"#,
        "\n",
    );
    let headers = http::HeaderMap::new();
    let mut group = c.benchmark_group("adapter");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("encode-request", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let r = a
                        .encode_request(&request, "command-r")
                        .await
                        .expect("encode");
                    assert_eq!(r.path, "/v1/chat");
                }
                start.elapsed()
            })
        });
    });
    group.bench_function("decode-response", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let r = a
                        .decode_response(200, &headers, answer)
                        .await
                        .expect("decode")
                        .expect("a response");
                    assert_eq!(r.usage.output_tokens, 8);
                }
                start.elapsed()
            })
        });
    });
    group.bench_function("decode-stream-6-events", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut state = StreamState::default();
                    let events = a
                        .decode_stream(&mut state, chunk.as_bytes(), false)
                        .await
                        .expect("decode")
                        .expect("events");
                    assert_eq!(events.len(), 7);
                }
                start.elapsed()
            })
        });
    });
    group.finish();
}

criterion_group!(benches, bench, polyglot, adapter);
criterion_main!(benches);
