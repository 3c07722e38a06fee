//! The example guardrail in four languages (Rust, JavaScript, Python, C), built from source
//! by `scripts/build-plugins.sh` and `scripts/build-polyglot-plugins.sh` into
//! `target/plugins/`, loaded side by side: each describes the same patterns and gives the
//! same, expected, findings on a shared table of inputs. Also loads them twice through the
//! compile cache (the second load must come from it) and prints load and call timings
//! (printed, not asserted: this is a debug build of the host; `cargo bench -p bitrouter
//! --bench plugins -- polyglot` has the release numbers).

#[path = "support/renewal.rs"]
mod renewal;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bitrouter::plugins::{
    Action, CompileSource, Direction, Finding, GuardrailPlugin, HostConfig, Pattern, Plugin,
    PluginHost, PluginSpec,
};

/// (plugin id, language): the Rust example's id comes from its Cargo.toml metadata.
const GUARDRAILS: [(&str, &str); 4] = [
    ("confidential-ids", "rust"),
    ("js-guardrail", "js"),
    ("python-guardrail", "python"),
    ("c-guardrail", "c"),
];

fn built(id: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
    let wasm = dir.join(format!("{id}.wasm"));
    let script = if id == "confidential-ids" {
        "scripts/build-plugins.sh (it needs Debian's rustc-web, rust-web-src, lld-19 and \
         wasm-tools)"
    } else {
        "scripts/build-polyglot-plugins.sh (scripts/install-polyglot-toolchains.sh installs \
         what it needs)"
    };
    assert!(
        wasm.is_file() && dir.join(format!("{id}.plugin.toml")).is_file(),
        "{} is missing: run {script} first",
        wasm.display()
    );
    wasm
}

fn specs() -> Vec<PluginSpec> {
    GUARDRAILS
        .iter()
        .map(|(id, lang)| PluginSpec {
            // The default 10 ms deadline fits the JS and Python runtimes in a release build
            // of the host (see `cargo bench -p bitrouter --bench plugins -- polyglot`), but
            // this is a debug build, ~10x slower around each call, on a shared CI machine.
            call_deadline: matches!(*lang, "js" | "python").then(|| Duration::from_secs(1)),
            ..PluginSpec::new(built(id))
        })
        .collect()
}

fn guardrail(host: &PluginHost, id: &str) -> GuardrailPlugin {
    match host.get(id) {
        Some(Plugin::Guardrail(g)) => g.clone(),
        other => panic!("{id}: not a guardrail: {other:?}"),
    }
}

fn expected_patterns() -> Vec<Pattern> {
    vec![
        Pattern {
            id: "confidential-id".into(),
            request: true,
            response: true,
            default_action: Action::Redact,
            description: "Internal document id (CONFIDENTIAL-NNNNNN)".into(),
            regex: Some(r"CONFIDENTIAL-\d{6}".into()),
            max_match_len: 19,
        },
        Pattern {
            id: "confidential-id-obfuscated".into(),
            request: true,
            response: true,
            default_action: Action::Block,
            description: "Internal document id disguised with separators or look-alike letters"
                .into(),
            regex: None,
            max_match_len: 160,
        },
    ]
}

// ------------------------------------------------------------------ the shared table

/// One input: what `check` must keep of the regex's candidates, and what `scan` must find,
/// each as the matched substrings in order.
struct Case {
    name: &'static str,
    text: String,
    check: &'static [&'static str],
    scan: &'static [&'static str],
}

fn case(
    name: &'static str,
    text: impl Into<String>,
    check: &'static [&'static str],
    scan: &'static [&'static str],
) -> Case {
    Case {
        name,
        text: text.into(),
        check,
        scan,
    }
}

fn cases() -> Vec<Case> {
    vec![
        case(
            "plain id",
            "see CONFIDENTIAL-123456 now",
            &["CONFIDENTIAL-123456"],
            &[],
        ),
        case("the placeholder", "template: CONFIDENTIAL-000000", &[], &[]),
        case("glued to more digits", "CONFIDENTIAL-1234567", &[], &[]),
        case(
            "mixed plain ids",
            "a CONFIDENTIAL-111111, b CONFIDENTIAL-000000, c CONFIDENTIAL-2222229, \
             d CONFIDENTIAL-333333.",
            &["CONFIDENTIAL-111111", "CONFIDENTIAL-333333"],
            &[],
        ),
        case(
            "adjacent ids, a separator after the digits",
            "CONFIDENTIAL-123456CONFIDENTIAL-654321 and CONFIDENTIAL-424242-7",
            &[
                "CONFIDENTIAL-123456",
                "CONFIDENTIAL-654321",
                "CONFIDENTIAL-424242",
            ],
            &[],
        ),
        case(
            "unicode text around ids",
            "é CONFIDENTIAL-123456 日本語 CONFIDENTIAL-654321 🎉 Grüße",
            &["CONFIDENTIAL-123456", "CONFIDENTIAL-654321"],
            &[],
        ),
        case(
            // The host's regex is Unicode-aware: `\d` matches Arabic-Indic digits, and
            // `check` keeps the (25-byte) candidate; a reader's `scan` does not fold them.
            "non-ASCII digits",
            "id CONFIDENTIAL-١٢٣٤٥٦ end",
            &["CONFIDENTIAL-١٢٣٤٥٦"],
            &[],
        ),
        case(
            "spaced out",
            "a C O N F I D E N T I A L 1 2 3 4 5 6 b",
            &[],
            &["C O N F I D E N T I A L 1 2 3 4 5 6"],
        ),
        case(
            "other separators and lower case",
            "ref confidential_123456, Confidential.654321 and C-O-N-F-I-D-E-N-T-I-A-L-1-2-3-4-5-6",
            &[],
            &[
                "confidential_123456",
                "Confidential.654321",
                "C-O-N-F-I-D-E-N-T-I-A-L-1-2-3-4-5-6",
            ],
        ),
        case(
            "zero-width characters",
            "x CONF\u{200B}IDENTIAL-12\u{200D}3456 y \u{FEFF}C\u{2060}ONFIDENTIAL\u{200C}999999",
            &[],
            &[
                "CONF\u{200B}IDENTIAL-12\u{200D}3456",
                "C\u{2060}ONFIDENTIAL\u{200C}999999",
            ],
        ),
        case(
            "Cyrillic and Greek look-alikes",
            "C\u{41E}NFIDENTIAL-654321 (Cyrillic O), \u{3F9}ONFID\u{395}NTIAL 777777 (Greek), \
             \u{441}onfid\u{435}nti\u{430}l-888888, CONFIDENTIA\u{216C}-424242, \
             \u{421}\u{41E}\u{41D}FID\u{415}\u{41D}\u{422}\u{406}\u{410}L-111111, \
             c\u{3BF}nf\u{456}dent\u{399}al 222222",
            &[],
            &[
                "C\u{41E}NFIDENTIAL-654321",
                "\u{3F9}ONFID\u{395}NTIAL 777777",
                "\u{441}onfid\u{435}nti\u{430}l-888888",
                "CONFIDENTIA\u{216C}-424242",
                "\u{421}\u{41E}\u{41D}FID\u{415}\u{41D}\u{422}\u{406}\u{410}L-111111",
                "c\u{3BF}nf\u{456}dent\u{399}al 222222",
            ],
        ),
        case(
            "a false start before a real one",
            "CCONFIDENTIAL 123456",
            &[],
            &["CONFIDENTIAL 123456"],
        ),
        case(
            "plain and obfuscated together",
            "CONFIDENTIAL-123456 C O N F I D E N T I A L-654321 CONFIDENTIAL-000000",
            &["CONFIDENTIAL-123456"],
            &["C O N F I D E N T I A L-654321"],
        ),
        case(
            "separators beyond 160 bytes",
            format!("C{}ONFIDENTIAL123456", " ".repeat(200)),
            &[],
            &[],
        ),
        case(
            // Exactly 160 bytes from the start to the last digit's first byte: 47 zero-width
            // characters (3 bytes each) and 2 spaces; the UTF-8 bytes count, not characters.
            "separators up to 160 bytes",
            format!("x C{}  ONFIDENTIAL123456 y", "\u{200B}".repeat(47)),
            &[],
            &[concat!(
                "C\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}",
                "\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}",
                "\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}",
                "\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}",
                "\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}",
                "\u{200B}\u{200B}  ONFIDENTIAL123456"
            )],
        ),
        case(
            "separators one byte beyond 160",
            format!("x C{}ONFIDENTIAL123456 y", "\u{200B}".repeat(48)),
            &[],
            &[],
        ),
        case(
            "candidates among multi-byte text",
            "cé日本 🎉 Grüße c\u{1F389}ONFIDENTIAL123456 C\u{200B}ONFIDENTIAL 123456 日本語 \
             Ϲ c.o.n.f.i.d.e.n.t.i.a.l.654321 🎉 Grüße",
            &[],
            &[
                "C\u{200B}ONFIDENTIAL 123456",
                "c.o.n.f.i.d.e.n.t.i.a.l.654321",
            ],
        ),
        case(
            "false starts and adjacent obfuscated ids",
            "Cc CONFIDENTIAL 123456C O N F I D E N T I A L 654321\u{441}ONFIDENTIAL_1111111",
            &[],
            &[
                "CONFIDENTIAL 123456",
                "C O N F I D E N T I A L 654321",
                "\u{441}ONFIDENTIAL_111111",
            ],
        ),
        case(
            "an obfuscated id ending the text",
            "é \u{3F9}\u{39F}\u{39D}FID\u{395}\u{39D}\u{3A4}\u{399}\u{391}L_123456",
            &[],
            &["\u{3F9}\u{39F}\u{39D}FID\u{395}\u{39D}\u{3A4}\u{399}\u{391}L_123456"],
        ),
        case(
            "plain ids before multi-byte text and at the end",
            "日本 CONFIDENTIAL-123456é and CONFIDENTIAL-654321",
            &["CONFIDENTIAL-123456", "CONFIDENTIAL-654321"],
            &[],
        ),
        case(
            "many c letters, no id",
            "cccc concise conscience, cocoa; Cc c\u{441}\u{3F9} CONFIDENTIAL 12345 c o n f i d \
             confidentia1 123456 c\u{1F389} c o n f i d e n t i a l",
            &[],
            &[],
        ),
        case("empty text", "", &[], &[]),
        case(
            "clean text",
            "all clear: nothing confidential here, CONFIDENTIAL 12345, confidential-12345x",
            &[],
            &[],
        ),
        case(
            "look-alikes a reader would not fold",
            "ＣＯＮＦＩＤＥＮＴＩＡＬ-123456 and CONFIDENTIAL：123456",
            &[],
            &[],
        ),
    ]
}

/// The byte ranges of `wanted` in `text`, each found after the previous one.
fn ranges(text: &str, wanted: &[&str]) -> Vec<Range<usize>> {
    let mut from = 0;
    wanted
        .iter()
        .map(|w| {
            let start = from
                + text[from..]
                    .find(w)
                    .unwrap_or_else(|| panic!("{w:?} not in {text:?}"));
            from = start + w.len();
            start..from
        })
        .collect()
}

/// What the host's guard stage will do: run the declared regex, hand its matches to `check`.
fn regex_candidates(pattern: &Pattern, text: &str) -> Vec<Range<usize>> {
    let re = regex::Regex::new(pattern.regex.as_deref().unwrap()).unwrap();
    re.find_iter(text).map(|m| m.range()).collect()
}

fn expected_check(text: &str, wanted: &[&str]) -> Vec<Finding> {
    ranges(text, wanted)
        .into_iter()
        .map(|span| Finding {
            pattern: 0,
            span,
            replacement: Some("CONFIDENTIAL-######".into()),
        })
        .collect()
}

fn expected_scan(text: &str, wanted: &[&str]) -> Vec<Finding> {
    ranges(text, wanted)
        .into_iter()
        .map(|span| Finding {
            pattern: 1,
            span,
            replacement: None,
        })
        .collect()
}

// ------------------------------------------------------------------ the test

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_languages_give_identical_expected_findings() {
    let cache = tempfile::tempdir().unwrap();
    let cfg = HostConfig {
        cache_dir: Some(cache.path().join("cache")),
        max_instances: 8,
        ..HostConfig::default()
    };

    // First load: compiles each component and writes it to the cache.
    let mut compile_times = Vec::new();
    for (spec, (id, _)) in specs().iter().zip(GUARDRAILS) {
        let started = Instant::now();
        let host = PluginHost::load(cfg.clone(), std::slice::from_ref(spec)).unwrap();
        compile_times.push(started.elapsed());
        assert_eq!(
            host.plugins()[0].info().compiled,
            CompileSource::Compiled,
            "{id}"
        );
    }

    // Second load, all four in one host: every component comes from the cache.
    let mut cached_times = Vec::new();
    for (spec, (id, _)) in specs().iter().zip(GUARDRAILS) {
        let started = Instant::now();
        let host = PluginHost::load(cfg.clone(), std::slice::from_ref(spec)).unwrap();
        cached_times.push(started.elapsed());
        assert_eq!(
            host.plugins()[0].info().compiled,
            CompileSource::Cache,
            "{id}"
        );
    }
    let started = Instant::now();
    let host = PluginHost::load(cfg.clone(), &specs()).unwrap();
    let all_cached = started.elapsed();
    assert_eq!(host.cache_stats().hits, 4);
    assert_eq!(host.cache_stats().misses, 0);

    // describe(): identical, and the expected patterns.
    let expected = expected_patterns();
    for (id, lang) in GUARDRAILS {
        let g = guardrail(&host, id);
        assert_eq!(g.patterns(), expected.as_slice(), "{lang}: describe()");
        assert!(g.scans(Direction::Request) && g.scans(Direction::Response));
        let wasi = g.info().uses_wasi;
        // Rust and C import nothing; the JS and Python runtimes import WASI p2 and get the
        // deny-all context.
        assert_eq!(wasi, matches!(lang, "js" | "python"), "{lang}: uses_wasi");
    }

    // The shared table: the same findings from all four, and the expected ones.
    let plain = &expected[0];
    for case in cases() {
        let text = case.text.as_str();
        let candidates = regex_candidates(plain, text);
        let want_check = expected_check(text, case.check);
        let want_scan = expected_scan(text, case.scan);
        for (id, lang) in GUARDRAILS {
            let g = guardrail(&host, id);
            let got = g.check(&plain.id, text, &candidates).await.unwrap();
            assert_eq!(got, want_check, "{lang}: check, case {:?}", case.name);
            for direction in [Direction::Request, Direction::Response] {
                let got = g.scan(direction, text).await.unwrap();
                assert_eq!(
                    got, want_scan,
                    "{lang}: scan({direction:?}), case {:?}",
                    case.name
                );
            }
        }
    }
    for (id, lang) in GUARDRAILS {
        let stats = guardrail(&host, id).stats();
        assert_eq!(stats.failures(), 0, "{lang}: {stats:?}");
    }

    // Timings (printed; run with --nocapture to see them).
    let text = "please look at CONFIDENTIAL-123456 before friday";
    let cands: Vec<Range<usize>> = std::iter::once(15..34).collect();
    let clean = "lorem ipsum dolor sit amet ".repeat(76);
    println!(
        "polyglot guardrails (debug build of the host; compile and cache load include \
         configure + describe)"
    );
    println!(
        "{:<8} {:>10} {:>11} {:>12} {:>13} {:>12} {:>14}",
        "lang", "size", "compile", "from cache", "instantiate", "check", "scan 2 KB"
    );
    for (i, (id, lang)) in GUARDRAILS.iter().enumerate() {
        let g = guardrail(&host, id);
        let size = std::fs::metadata(built(id)).unwrap().len();
        let n = 50;
        for _ in 0..5 {
            g.check("confidential-id", text, &cands).await.unwrap();
        }
        let started = Instant::now();
        for _ in 0..n {
            g.instantiate_once().await.unwrap();
        }
        let inst = started.elapsed() / n;
        let started = Instant::now();
        for _ in 0..n {
            let f = g.check("confidential-id", text, &cands).await.unwrap();
            assert_eq!(f.len(), 1);
        }
        let check = started.elapsed() / n;
        let started = Instant::now();
        for _ in 0..n {
            assert!(g.scan(Direction::Request, &clean).await.unwrap().is_empty());
        }
        let scan = started.elapsed() / n;
        println!(
            "{lang:<8} {:>8} kB {:>11} {:>12} {:>13} {:>12} {:>14}",
            size / 1000,
            ms(compile_times[i]),
            ms(cached_times[i]),
            us(inst),
            us(check),
            us(scan)
        );
    }
    println!("all four from the cache in one host: {}", ms(all_cached));
}

/// The JavaScript and Python guardrails import WASI. Their calls run inline on the caller's
/// task (async bindings, WASI's async host functions), not on tokio's blocking pool: a hop
/// there and back cost two thread wake-ups per call (bench scenario 8). With the pool's only
/// thread taken, their calls still complete, and give the expected findings.
#[test]
fn wasi_guardrails_are_called_without_the_blocking_pool() {
    let cache = tempfile::tempdir().unwrap();
    let cfg = HostConfig {
        cache_dir: Some(cache.path().join("cache")),
        max_instances: 8,
        ..HostConfig::default()
    };
    let wasi: Vec<PluginSpec> = specs()
        .into_iter()
        .zip(GUARDRAILS)
        .filter(|(_, (_, lang))| matches!(*lang, "js" | "python"))
        .map(|(spec, _)| spec)
        .collect();
    let host = PluginHost::load(cfg, &wasi).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let occupied = tokio::task::spawn_blocking(move || held.recv());
        let plain = &expected_patterns()[0];
        let text = "see CONFIDENTIAL-123456 now";
        let candidates = regex_candidates(plain, text);
        for (id, lang) in GUARDRAILS
            .iter()
            .filter(|(_, l)| matches!(*l, "js" | "python"))
        {
            let g = guardrail(&host, id);
            for round in 0..3 {
                let got = tokio::time::timeout(
                    Duration::from_secs(20),
                    g.check(&plain.id, text, &candidates),
                )
                .await
                .unwrap_or_else(|_| panic!("{lang}: check waited for the blocking pool"))
                .unwrap();
                assert_eq!(
                    got,
                    expected_check(text, &["CONFIDENTIAL-123456"]),
                    "{lang}, call {round}"
                );
                let got =
                    tokio::time::timeout(Duration::from_secs(20), g.scan(Direction::Request, text))
                        .await
                        .unwrap_or_else(|_| panic!("{lang}: scan waited for the blocking pool"))
                        .unwrap();
                assert_eq!(got, expected_scan(text, &[]), "{lang}, call {round}");
            }
            // Stateless: the calls after the first reused the warm instance.
            assert_eq!(g.warm_instances(), 1, "{lang}");
            assert_eq!(g.stats().failures(), 0, "{lang}");
        }
        release.send(()).unwrap();
        occupied.await.unwrap().unwrap();
    });
}

/// A WASI guardrail (called through async bindings) has its warm instance renewed off the
/// call path like one without WASI (`support::renewal`): the C example, the fastest of the
/// WASI guests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_warm_instances_are_renewed_off_the_call_path() {
    let host = PluginHost::load(
        HostConfig::default(),
        &[PluginSpec::new(built("c-guardrail"))],
    )
    .unwrap();
    renewal::renewed_off_the_call_path(&guardrail(&host, "c-guardrail")).await;
}

/// More concurrent calls than a stateless plugin has warm instances wait for a turn, and the
/// wait is not charged to their deadline: a burst of concurrent `check` calls on the
/// JavaScript and Python guardrails with `max_instances: 2`, whose last call waits about three
/// deadlines for its turn (the deadline is four times one call, measured here first), all
/// answer with the same findings and none is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_and_python_guardrails_skip_no_call_under_concurrent_load() {
    let cache = tempfile::tempdir().unwrap();
    let cfg = HostConfig {
        cache_dir: Some(cache.path().join("cache")),
        max_instances: 2,
        ..HostConfig::default()
    };
    let plain = &expected_patterns()[0];
    // Many candidates, so that one call takes a while.
    let text = "please look at CONFIDENTIAL-123456 before friday; ".repeat(64);
    let candidates = regex_candidates(plain, &text);
    for id in ["js-guardrail", "python-guardrail"] {
        // One call's time on this machine, in a warm instance.
        let host = PluginHost::load(cfg.clone(), &specs_of(id, Duration::from_secs(2))).unwrap();
        let g = guardrail(&host, id);
        let want = g.check(&plain.id, &text, &candidates).await.unwrap();
        assert_eq!(want.len(), 64, "{id}");
        let started = Instant::now();
        for _ in 0..5 {
            g.check(&plain.id, &text, &candidates).await.unwrap();
        }
        let one = started.elapsed() / 5;
        let deadline = (one * 4).max(Duration::from_millis(20));
        // Two turns: the last of `n` calls waits about (n / 2) × one for its own.
        let n = ((3.0 * 2.0 * deadline.as_secs_f64() / one.as_secs_f64()).ceil() as usize)
            .clamp(16, 4_000);

        let host = PluginHost::load(cfg.clone(), &specs_of(id, deadline)).unwrap();
        let g = guardrail(&host, id);
        assert_eq!(g.check(&plain.id, &text, &candidates).await.unwrap(), want);
        let started = Instant::now();
        let calls = (0..n).map(|_| g.check(&plain.id, &text, &candidates));
        let results = futures_util::future::join_all(calls).await;
        let waited = started.elapsed();
        for r in results {
            assert_eq!(r.unwrap(), want, "{id}");
        }
        let stats = g.stats();
        assert_eq!(stats.failures(), 0, "{id}: {stats:?}");
        assert!(
            waited > deadline,
            "{id}: {n} calls took {waited:?}, within one deadline ({deadline:?}): nothing waited"
        );
        println!(
            "{id}: one call {one:?}; {n} concurrent calls on 2 instances answered in {waited:?}, deadline {deadline:?} each"
        );
    }
}

/// The one guardrail `id` with `deadline` per call.
fn specs_of(id: &str, deadline: Duration) -> Vec<PluginSpec> {
    vec![PluginSpec {
        call_deadline: Some(deadline),
        ..PluginSpec::new(built(id))
    }]
}
