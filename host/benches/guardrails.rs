//! The guardrail firewall's cost: all default patterns over clean prose and code (MB/s, the
//! goal is ≥ 1 GB/s per core), the whole firewall on a 2 KB request (goal ≤ 20 µs), a text
//! that does hold findings, and a streamed answer through the stream guard.
//!
//! The default patterns are the plugins compiled into the binary (scripts/build-plugins.sh
//! before `cargo bench`); the corpus is tests/guardrails/corpus/clean.txt.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use bitrouter::Config;
use bitrouter::canonical::{Message, Request, Role, StreamEvent};
use bitrouter::guardrails::{self, GuardrailEngine, StreamGuard, Tally};
use bitrouter::plugins::Direction;

fn engine() -> Arc<GuardrailEngine> {
    let firewall = guardrails::load(&Config::builtin()).expect("default plugins load");
    assert!(
        firewall.plugins.missing_builtins.is_empty(),
        "built without default plugins {:?}: run scripts/build-plugins.sh, then bench again",
        firewall.plugins.missing_builtins
    );
    firewall.engine.clone()
}

fn corpus() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/guardrails/corpus/clean.txt"
    );
    std::fs::read_to_string(path).expect("tests/guardrails/corpus/clean.txt")
}

fn scan(c: &mut Criterion) {
    let engine = engine();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let text = corpus();
    let mut g = c.benchmark_group("guardrail scan, clean corpus");
    g.throughput(Throughput::Bytes(text.len() as u64));
    for (name, d) in [
        ("upgoing", Direction::Request),
        ("downgoing", Direction::Response),
    ] {
        // The corpus has no findings. `scan` is what every text gets: the declared regexes
        // as one automaton, plus a call into each plugin whose patterns have no regex.
        assert!(rt.block_on(engine.scan(d, &text)).is_empty());
        g.bench_function(format!("{name}, full scan"), |b| {
            b.iter(|| rt.block_on(engine.scan(d, black_box(&text))));
        });
        // `may_match` alone: the automaton's yes/no (a direction with plugin-scanned
        // patterns answers yes without looking, so this is not the scan's cost there).
        g.bench_function(format!("{name}, may_match only"), |b| {
            b.iter(|| engine.may_match(d, black_box(&text)));
        });
    }
    g.finish();

    let prose =
        "The quick brown fox jumps over the lazy dog; version 1.2.3 shipped on 2024-05-01. "
            .repeat(25);
    let request = Request {
        model: "m".into(),
        messages: vec![
            Message::text(Role::System, "You are a helpful assistant."),
            Message::text(Role::User, prose[..2000].to_owned()),
        ],
        ..Default::default()
    };
    c.bench_function("firewall on a clean 2 KB request (upgoing)", |b| {
        b.iter(|| {
            let mut r = request.clone();
            let mut tally = Tally::default();
            rt.block_on(engine.inspect_request(&mut r, &mut tally));
            black_box(tally)
        });
    });
    let dirty = Request {
        messages: vec![Message::text(
            Role::User,
            format!(
                "{} contact jane.doe@corp.example, key sk-proj-{} from 10.20.30.40",
                &prose[..1900],
                "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
            ),
        )],
        ..request.clone()
    };
    c.bench_function(
        "firewall on a 2 KB request with 3 findings (plugin checks)",
        |b| {
            b.iter(|| {
                let mut r = dirty.clone();
                let mut tally = Tally::default();
                rt.block_on(engine.inspect_request(&mut r, &mut tally));
                black_box(tally)
            });
        },
    );

    let words: Vec<String> = prose
        .split_inclusive(' ')
        .take(100)
        .map(str::to_owned)
        .collect();
    c.bench_function("stream guard, 100-delta answer (downgoing)", |b| {
        b.iter(|| {
            let mut guard = StreamGuard::new(&engine).unwrap();
            let mut out = Vec::with_capacity(128);
            for w in &words {
                rt.block_on(guard.process(vec![StreamEvent::TextDelta(w.clone())], &mut out))
                    .unwrap();
            }
            black_box(out.len())
        });
    });
}

criterion_group!(benches, scan);
criterion_main!(benches);
