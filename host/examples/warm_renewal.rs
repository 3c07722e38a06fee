//! Per-call latency of a stateless guardrail across the renewal of its warm instance: the
//! request path's `check` + `scan` on a 2 KB prompt (bench scenario 8's), called one after
//! another well past the calls one warm instance serves, then the slowest calls with their
//! index, and the calls around each renewal against the rest.
//!
//! ```text
//! scripts/build-plugins.sh && scripts/build-polyglot-plugins.sh
//! cargo run --release -p bitrouter --example warm_renewal [-- PLUGIN_ID [ROUNDS]]
//! ```
//!
//! One round is one `check` and one `scan`, two calls; the instance is renewed every
//! `WARM_USES` (5,000) calls, so every [`RENEWAL_ROUNDS`] rounds.

use std::path::Path;
use std::time::{Duration, Instant};

use bitrouter::plugins::{Direction, HostConfig, Plugin, PluginHost, PluginSpec};

/// Rounds between two renewals of the warm instance (`WARM_USES` calls, two per round).
const RENEWAL_ROUNDS: usize = 2_500;

fn main() {
    let mut args = std::env::args().skip(1);
    let id = args.next().unwrap_or_else(|| "js-guardrail".into());
    let rounds: usize = args.next().map_or(22_000, |n| n.parse().expect("ROUNDS"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = root.join(format!("target/plugins/{id}.wasm"));
    assert!(wasm.is_file(), "{} is missing", wasm.display());
    let host = PluginHost::load(
        HostConfig {
            cache_dir: Some(root.join("target/plugin-cache")),
            ..HostConfig::default()
        },
        &[PluginSpec {
            call_deadline: Some(Duration::from_secs(1)),
            ..PluginSpec::new(wasm)
        }],
    )
    .expect("load");
    let Plugin::Guardrail(g) = &host.plugins()[0] else {
        panic!("{id} is not a guardrail");
    };
    let pattern = g
        .patterns()
        .iter()
        .find(|p| p.regex.is_some())
        .map(|p| p.id.clone())
        .expect("a pattern with a regex");
    let filler = "The gateway forwards the request to the provider and records the usage. ";
    let mut text = filler.repeat(14);
    let at = text.len();
    text.push_str("see CONFIDENTIAL-123456 now. ");
    text.push_str(&filler.repeat(14));
    let candidate = at + 4..at + 23;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let setup = rt.block_on(async {
        let mut best = Duration::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            g.instantiate_once().await.expect("instantiate");
            best = best.min(t.elapsed());
        }
        best
    });
    println!(
        "{id}: a fresh instance (instantiate + configure, best of 5): {:.0} µs",
        setup.as_secs_f64() * 1e6
    );
    let times: Vec<Duration> = rt.block_on(async {
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let t = Instant::now();
            g.check(&pattern, &text, std::slice::from_ref(&candidate))
                .await
                .expect("check");
            g.scan(Direction::Request, &text).await.expect("scan");
            times.push(t.elapsed());
        }
        times
    });
    let us = |d: &Duration| d.as_secs_f64() * 1e6;
    let mut sorted: Vec<f64> = times.iter().map(us).collect();
    sorted.sort_by(f64::total_cmp);
    let q = |p: f64| sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)];
    println!(
        "{id}: {rounds} rounds (check + scan): p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, max {:.0} µs",
        q(0.5),
        q(0.99),
        q(0.999),
        q(1.0)
    );
    let mut slowest: Vec<(usize, f64)> = times.iter().map(us).enumerate().collect();
    slowest.sort_by(|a, b| b.1.total_cmp(&a.1));
    let listed: Vec<String> = slowest
        .iter()
        .take(12)
        .map(|(i, t)| format!("#{i} {t:.0}"))
        .collect();
    println!("slowest rounds (µs): {}", listed.join(", "));
    // The round in which an instance becomes due, and the first ones after it (the call that
    // hands its place to the successor, the successor's first calls).
    let near = |i: usize| i + 1 >= RENEWAL_ROUNDS && (i + 1) % RENEWAL_ROUNDS <= 4;
    let (mut around, mut rest) = (Vec::new(), Vec::new());
    for (i, t) in times.iter().enumerate() {
        if near(i) {
            around.push(us(t));
        } else {
            rest.push(us(t));
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!(
        "rounds at a renewal: {} rounds, mean {:.0} µs, max {:.0} µs; the others: mean {:.0} µs",
        around.len(),
        mean(&around),
        around.iter().copied().fold(0.0, f64::max),
        mean(&rest)
    );
}
