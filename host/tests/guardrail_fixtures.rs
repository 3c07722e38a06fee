//! The seven default guardrail plugins (`plugins/<id>`, built into `target/plugins/` by
//! `scripts/build-plugins.sh`) against their fixtures in `tests/guardrails/fixtures/<id>.yaml`:
//! the declared regex runs natively (as the host's engine does), `check` validates the
//! candidates, and the findings must be exactly the fixture's expected substrings for each
//! positive and nothing for each negative. The clean corpus (`tests/guardrails/corpus/`)
//! must produce no finding from any plugin.

use std::path::{Path, PathBuf};

use bitrouter::plugins::{Action, GuardrailPlugin, HostConfig, Plugin, PluginHost, PluginSpec};

/// id, direction (request: true, response: false), default action.
const PLUGINS: &[(&str, bool, Action)] = &[
    ("api_keys", true, Action::Redact),
    ("private_keys", true, Action::Block),
    ("credentials", true, Action::Block),
    ("pii_emails", true, Action::Warn),
    ("pii_phone_numbers", true, Action::Warn),
    ("ip_addresses", true, Action::Warn),
    ("suspicious_commands", false, Action::Block),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn built(id: &str) -> PathBuf {
    let wasm = root().join(format!("target/plugins/{id}.wasm"));
    assert!(
        wasm.is_file(),
        "{} is missing: run scripts/build-plugins.sh first (it needs Debian's rustc-web, \
         rust-web-src, lld-19 and wasm-tools; see the script's header)",
        wasm.display()
    );
    wasm
}

fn load() -> PluginHost {
    let specs: Vec<PluginSpec> = PLUGINS
        .iter()
        .map(|(id, ..)| PluginSpec::new(built(id)))
        .collect();
    PluginHost::load(
        HostConfig {
            cache_dir: None,
            max_instances: 8,
            // Generous: the test runs unoptimised next to other builds on a small machine.
            call_deadline: std::time::Duration::from_millis(200),
            ..HostConfig::default()
        },
        &specs,
    )
    .unwrap()
}

fn guardrail(host: &PluginHost, id: &str) -> GuardrailPlugin {
    match host.get(id) {
        Some(Plugin::Guardrail(g)) => g.clone(),
        other => panic!("{id}: not a guardrail: {other:?}"),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixtures {
    positives: Vec<Positive>,
    negatives: Vec<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Positive {
    text: String,
    matches: Vec<String>,
}

/// The plugin's one pattern, its compiled regex and the findings' substrings for `text`.
struct Under {
    g: GuardrailPlugin,
    regex: regex::Regex,
    max_match_len: usize,
}

impl Under {
    fn new(host: &PluginHost, id: &str) -> Under {
        let g = guardrail(host, id);
        let [p] = g.patterns() else {
            panic!("{id}: expected one pattern, got {:?}", g.patterns())
        };
        assert_eq!(p.id, id, "the pattern id is the plugin id");
        let regex = regex::Regex::new(p.regex.as_deref().expect("a regex")).unwrap();
        Under {
            max_match_len: p.max_match_len as usize,
            g,
            regex,
        }
    }

    async fn findings<'t>(&self, text: &'t str) -> Vec<&'t str> {
        self.spans(text)
            .await
            .into_iter()
            .map(|r| &text[r])
            .collect()
    }

    async fn spans(&self, text: &str) -> Vec<std::ops::Range<usize>> {
        let candidates: Vec<_> = self.regex.find_iter(text).map(|m| m.range()).collect();
        for c in &candidates {
            assert!(
                c.len() <= self.max_match_len,
                "{}: a regex match of {} bytes exceeds max-match-len {}: {:?}",
                self.g.id(),
                c.len(),
                self.max_match_len,
                &text[c.clone()]
            );
        }
        if candidates.is_empty() {
            return Vec::new();
        }
        // The window the engine gives `check`: the candidates and CHECK_CONTEXT bytes on
        // either side (on character boundaries).
        let context = bitrouter::guardrails::CHECK_CONTEXT;
        let mut lo = candidates[0].start.saturating_sub(context);
        while !text.is_char_boundary(lo) {
            lo -= 1;
        }
        let mut hi = (candidates[candidates.len() - 1].end + context).min(text.len());
        while !text.is_char_boundary(hi) {
            hi += 1;
        }
        let window = &text[lo..hi];
        let local: Vec<_> = candidates
            .iter()
            .map(|c| c.start - lo..c.end - lo)
            .collect();
        let found = self.g.check(self.g.id(), window, &local).await.unwrap();
        found
            .iter()
            .map(|f| {
                assert_eq!(f.pattern, 0);
                // Findings fit the streaming window too, except a private key's, which
                // `check` widens from the armour line over the key body (documented there).
                assert!(
                    f.span.len() <= self.max_match_len || self.g.id() == "private_keys",
                    "{}: a finding of {} bytes exceeds max-match-len {}",
                    self.g.id(),
                    f.span.len(),
                    self.max_match_len
                );
                f.span.start + lo..f.span.end + lo
            })
            .collect()
    }
}

#[tokio::test]
async fn patterns_are_declared_as_documented() {
    let host = load();
    for &(id, request, action) in PLUGINS {
        let g = guardrail(&host, id);
        let p = &g.patterns()[0];
        assert_eq!(
            (p.request, p.response),
            (request, !request),
            "{id}: directions"
        );
        assert_eq!(p.default_action, action, "{id}: default action");
        assert!(p.max_match_len > 0 && p.max_match_len <= 1024, "{id}");
        if !request {
            // Downgoing patterns size the streaming window: 4 × 256 = the default 1 KiB.
            assert!(p.max_match_len <= 256, "{id}");
        }
        assert!(
            !g.scans(bitrouter::plugins::Direction::Request),
            "{id}: regex only"
        );
        assert!(
            !g.scans(bitrouter::plugins::Direction::Response),
            "{id}: regex only"
        );
    }
}

#[tokio::test]
async fn fixtures() {
    let host = load();
    let mut failures = Vec::new();
    let mut counts = Vec::new();
    for &(id, ..) in PLUGINS {
        let u = Under::new(&host, id);
        let path = root().join(format!("tests/guardrails/fixtures/{id}.yaml"));
        let fx: Fixtures = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| {
                panic!("{}: {e}", path.display());
            });
        for p in &fx.positives {
            let got = u.findings(&p.text).await;
            if got != p.matches {
                failures.push(format!(
                    "{id} positive {:?}\n    expected {:?}\n    got      {:?}",
                    p.text, p.matches, got
                ));
            }
        }
        for n in &fx.negatives {
            let got = u.findings(n).await;
            if !got.is_empty() {
                failures.push(format!("{id} negative {n:?}\n    got {got:?}"));
            }
        }
        counts.push(format!(
            "{id}: {} positives, {} negatives",
            fx.positives.len(),
            fx.negatives.len()
        ));
    }
    println!("{}", counts.join("\n"));
    assert!(
        failures.is_empty(),
        "{} fixture failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The clean corpus, cut into request-sized pieces at line ends (as texts arrive), yields
/// nothing from any plugin.
#[tokio::test]
async fn clean_corpus_has_no_findings() {
    let host = load();
    let corpus = std::fs::read_to_string(root().join("tests/guardrails/corpus/clean.txt")).unwrap();
    assert!(
        corpus.len() > 200_000,
        "the corpus is {} bytes",
        corpus.len()
    );
    let mut pieces = Vec::new();
    let mut start = 0;
    while start < corpus.len() {
        let mut end = (start + 4096).min(corpus.len());
        if end < corpus.len() {
            end = corpus[..end]
                .rfind('\n')
                .filter(|&e| e > start)
                .map_or(end, |e| e + 1);
        }
        pieces.push(&corpus[start..end]);
        start = end;
    }
    let mut failures = Vec::new();
    for &(id, ..) in PLUGINS {
        let u = Under::new(&host, id);
        for piece in &pieces {
            for f in u.findings(piece).await {
                failures.push(format!("{id}: {f:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} findings in the clean corpus:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The patterns the realistic corpus scores, and its goal (issue 23): precision ≥ 0.995 and
/// recall ≥ 0.97 for each, on every file. A pattern is scored on the items whose `expect`
/// names it (the phone and command items came later and carry only their own two keys).
const SCORED: &[&str] = &[
    "credentials",
    "private_keys",
    "api_keys",
    "pii_emails",
    "pii_phone_numbers",
    "suspicious_commands",
];
const MIN_PRECISION: f64 = 0.995;
const MIN_RECALL: f64 = 0.97;

#[derive(serde::Deserialize)]
struct Item {
    id: String,
    text: String,
    expect: std::collections::BTreeMap<String, Vec<String>>,
}

/// Per pattern: expected spans, covered ones, findings, findings on an expected span, and
/// findings equal to one.
#[derive(Default)]
struct Score {
    expected: usize,
    covered: usize,
    found: usize,
    true_found: usize,
    exact: usize,
    misses: Vec<String>,
}

impl Score {
    fn precision(&self) -> f64 {
        if self.found == 0 {
            1.0
        } else {
            self.true_found as f64 / self.found as f64
        }
    }
    fn recall(&self) -> f64 {
        if self.expected == 0 {
            1.0
        } else {
            self.covered as f64 / self.expected as f64
        }
    }
}

/// The realistic corpus (`tests/guardrails/corpus/realistic/`, written by its own generator
/// from the labelling rules in its LABELS.md): secrets and addresses in the forms agents and
/// developers paste (shell history, command lines, config files, logs, JSON-escaped
/// payloads, e-mails, CSV), and hard negatives. An expected span counts as found when the
/// findings cover all of it; a finding is true when it overlaps an expected span. Prints
/// per-pattern precision and recall and fails below the goal.
#[tokio::test]
async fn realistic_corpus_precision_recall() {
    let host = load();
    let dir = root().join("tests/guardrails/corpus/realistic");
    let under: Vec<Under> = SCORED.iter().map(|id| Under::new(&host, id)).collect();
    let mut failures = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{}: {files:?}", dir.display());
    for path in &files {
        let file = path.file_name().unwrap().to_string_lossy();
        let path = path.clone();
        let items: Vec<Item> = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{file}: {e}: {l}")))
            .collect();
        assert!(items.len() >= 500, "{file}: {} items", items.len());
        let mut scores: Vec<Score> = SCORED.iter().map(|_| Score::default()).collect();
        for item in &items {
            for ((id, u), score) in SCORED.iter().zip(&under).zip(&mut scores) {
                if !item.expect.contains_key(*id) {
                    continue;
                }
                let mut expected = Vec::new();
                let mut from = 0;
                for e in item.expect.get(*id).into_iter().flatten() {
                    let at = item.text[from..]
                        .find(e.as_str())
                        .unwrap_or_else(|| panic!("{file} {}: {e:?} is not in the text", item.id))
                        + from;
                    expected.push(at..at + e.len());
                    from = at + e.len();
                }
                let found = u.spans(&item.text).await;
                score.expected += expected.len();
                score.found += found.len();
                for e in &expected {
                    let mut covered = e.start;
                    let mut spans: Vec<_> = found
                        .iter()
                        .filter(|f| f.end > e.start && f.start < e.end)
                        .collect();
                    spans.sort_by_key(|f| f.start);
                    for f in spans {
                        if f.start <= covered {
                            covered = covered.max(f.end);
                        }
                    }
                    if covered >= e.end {
                        score.covered += 1;
                    } else {
                        score.misses.push(format!(
                            "{} missed {:?}",
                            item.id,
                            &item.text[e.clone()]
                        ));
                    }
                }
                for f in &found {
                    if expected.iter().any(|e| f.end > e.start && f.start < e.end) {
                        score.true_found += 1;
                        score.exact += usize::from(expected.contains(f));
                    } else {
                        score
                            .misses
                            .push(format!("{} false {:?}", item.id, &item.text[f.clone()]));
                    }
                }
            }
        }
        println!("{file}: {} items", items.len());
        println!(
            "  {:<14} {:>8} {:>8} {:>6} {:>6} {:>10} {:>7}",
            "pattern", "expected", "findings", "P", "R", "exact", "misses"
        );
        for (id, s) in SCORED.iter().zip(&scores) {
            println!(
                "  {id:<14} {:>8} {:>8} {:>6.3} {:>6.3} {:>5}/{:<4} {:>7}",
                s.expected,
                s.found,
                s.precision(),
                s.recall(),
                s.exact,
                s.true_found,
                s.misses.len()
            );
            for m in s.misses.iter().take(40) {
                println!("      {m}");
            }
            if s.precision() < MIN_PRECISION || s.recall() < MIN_RECALL {
                failures.push(format!(
                    "{file} {id}: precision {:.3} (goal {MIN_PRECISION}), recall {:.3} (goal {MIN_RECALL})",
                    s.precision(),
                    s.recall()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "below the goal:\n{}",
        failures.join("\n")
    );
}

/// `check` is total: every realistic item cut at 8 places (each head and tail, so shapes end
/// mid-quote, mid-key, mid-row) goes through the scored plugins without a trap. A trap
/// is a plugin failure, and for a blocking pattern that blocks the request.
#[tokio::test]
async fn checks_never_trap_on_cut_texts() {
    let host = load();
    let under: Vec<Under> = SCORED.iter().map(|id| Under::new(&host, id)).collect();
    let dir = root().join("tests/guardrails/corpus/realistic");
    let text = std::fs::read_to_string(dir.join("dev.jsonl")).unwrap();
    let mut calls = 0;
    for line in text.lines().step_by(3) {
        let item: Item = serde_json::from_str(line).unwrap();
        let t = item.text.as_str();
        for k in 1..8 {
            let mut cut = t.len() * k / 8;
            while !t.is_char_boundary(cut) {
                cut += 1;
            }
            for piece in [&t[..cut], &t[cut..]] {
                for u in &under {
                    // `spans` unwraps the call: a trap fails the test with its message.
                    u.spans(piece).await;
                    calls += 1;
                }
            }
        }
    }
    assert!(calls > 10_000, "{calls}");
}

/// Not a benchmark (that is the engine's, in host/benches): a rough figure for the seven
/// regexes as one `regex` alternation over the clean corpus, to keep an eye on them.
/// `cargo test --release -p bitrouter --test guardrail_fixtures -- --ignored --nocapture`
#[tokio::test]
#[ignore]
async fn combined_regex_throughput() {
    let host = load();
    let corpus = std::fs::read_to_string(root().join("tests/guardrails/corpus/clean.txt")).unwrap();
    let parts: Vec<String> = PLUGINS
        .iter()
        .map(|(id, ..)| {
            let g = guardrail(&host, id);
            format!("(?:{})", g.patterns()[0].regex.as_deref().unwrap())
        })
        .collect();
    let one = |regex: &regex::Regex| {
        let t = std::time::Instant::now();
        let mut n = 0;
        for _ in 0..5 {
            n += regex.find_iter(&corpus).count();
        }
        let mbps = (corpus.len() * 5) as f64 / t.elapsed().as_secs_f64() / 1e6;
        (mbps, n / 5)
    };
    for (part, (id, ..)) in parts.iter().zip(PLUGINS) {
        let (mbps, n) = one(&regex::Regex::new(part).unwrap());
        println!("{id:>20}: {mbps:8.0} MB/s, {n} candidates");
    }
    let (mbps, n) = one(&regex::Regex::new(&parts.join("|")).unwrap());
    println!("{:>20}: {mbps:8.0} MB/s, {n} candidates", "all seven");
}
