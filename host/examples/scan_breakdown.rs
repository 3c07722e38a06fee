//! Where a guardrail scan's time goes, pattern by pattern: each pattern's regex alone
//! over the near-miss corpus (with and without its literal prefilter), its candidates, its
//! plugin's `check` over them, and the engine's whole scan. Best of 30 runs each.
//!
//! ```text
//! scripts/build-plugins.sh
//! cargo run --release -p bitrouter --example scan_breakdown [-- FILE]
//! ```
//!
//! `candidates.rs` was designed from its output (bench/REPORT.md quotes it).

use std::hint::black_box;
use std::time::Instant;

use bitrouter::Config;
use bitrouter::guardrails;
use bitrouter::plugins::Direction;
use regex_automata::meta;

fn best_us(mut f: impl FnMut()) -> f64 {
    (0..30)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/guardrails/corpus/clean.txt"
        )
        .into()
    });
    let text = std::fs::read_to_string(&path).expect("the corpus");
    let firewall = guardrails::load(&Config::builtin()).expect("the default plugins");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let mb_s = |us: f64| text.len() as f64 / us;
    println!("{path}: {} bytes", text.len());
    println!(
        "{:20} {:>16} {:>16} {:>7} {:>10}",
        "pattern", "regex µs (MB/s)", "no prefilter µs", "matches", "check µs"
    );
    for plugin in firewall.plugins.guardrails() {
        for p in plugin.patterns() {
            let Some(source) = &p.regex else { continue };
            let build = |prefilter: bool| {
                meta::Regex::builder()
                    .configure(meta::Config::new().auto_prefilter(prefilter))
                    .build(source)
                    .expect("the pattern's regex")
            };
            let (with, without) = (build(true), build(false));
            let spans: Vec<_> = with.find_iter(&text).map(|m| m.range()).collect();
            let t_with = best_us(|| {
                black_box(with.find_iter(&text).count());
            });
            let t_without = best_us(|| {
                black_box(without.find_iter(&text).count());
            });
            let t_check = best_us(|| {
                black_box(rt.block_on(plugin.check(&p.id, &text, &spans)).ok());
            });
            let id = format!("{}{}", p.id, if p.request { "" } else { " (down)" });
            println!(
                "{:20} {:>7.0} ({:>6.0}) {:>16.0} {:>7} {:>10.0}",
                id,
                t_with,
                mb_s(t_with),
                t_without,
                spans.len(),
                t_check
            );
        }
    }
    let engine = firewall.engine.clone();
    for (name, direction) in [
        ("upgoing", Direction::Request),
        ("downgoing", Direction::Response),
    ] {
        let t = best_us(|| {
            black_box(rt.block_on(engine.scan(direction, &text)));
        });
        println!("engine scan, {name}: {t:.0} µs ({:.0} MB/s)", mb_s(t));
    }
}
