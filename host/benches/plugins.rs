//! Plugin call overhead: a trivial guardrail call including instantiation (goal ≤ 5 µs),
//! and instantiation alone with and without the pooling allocator.
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

fn load(pooling: bool) -> (PluginHost, GuardrailPlugin) {
    let wasm =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins/confidential-ids.wasm");
    assert!(
        wasm.is_file(),
        "{} is missing: run scripts/build-plugins.sh first",
        wasm.display()
    );
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

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let text = "please look at CONFIDENTIAL-123456 before friday";
    let cands = vec![15..34];
    let mut group = c.benchmark_group("plugins");
    group.measurement_time(Duration::from_secs(3));
    for (label, pooling) in [("pooling", true), ("on-demand", false)] {
        let (_host, g) = load(pooling);
        group.bench_function(format!("instantiate/{label}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        g.instantiate_once().await.expect("instantiate");
                    }
                    start.elapsed()
                })
            })
        });
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
            })
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
            })
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
            group.bench_function(format!("instantiate/{label}/{lang}"), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            g.instantiate_once().await.expect("instantiate");
                        }
                        start.elapsed()
                    })
                })
            });
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
            })
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
            })
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
            })
        });
    }
    group.bench_function("cold-start-from-cache/all-four", |b| {
        let specs: Vec<PluginSpec> = POLYGLOT.iter().map(|(id, _)| spec(id)).collect();
        b.iter(|| PluginHost::load(cached.clone(), &specs).expect("load"))
    });
    group.finish();
}

criterion_group!(benches, bench, polyglot);
criterion_main!(benches);
