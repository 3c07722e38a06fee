//! Plugin call overhead: a trivial guardrail call including instantiation (goal ≤ 5 µs),
//! and instantiation alone with and without the pooling allocator.
//!
//! Needs the components from `scripts/build-plugins.sh` (in `target/plugins/`).
//! Run: `cargo bench -p bitrouter --bench plugins`

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

criterion_group!(benches, bench);
criterion_main!(benches);
