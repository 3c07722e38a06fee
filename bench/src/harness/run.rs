//! The benchmark from start to finish: start the mock and the gateway, measure cold start and
//! idle memory, run every scenario in interleaved rounds, and assemble the report. Every child
//! process lives in a guard owned by this future, so dropping it (an error, a panic, Ctrl-C)
//! kills them all.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use anyhow::Context;

use super::env;
use super::floor::{FLOOR_SCENARIOS, FloorProcess};
use super::gateway::{Credentials, GatewayLauncher, config_yaml, dead_addr};
use super::measure::{self, Measured, Watched};
use super::mock::MockProcess;
use super::peer::{self, PEER_SCENARIOS, PeerProcess, Served};
use super::scenario::{self, Deployment, Scenario, Shape};
use crate::load::clock::now_ns;
use crate::load::{ClosedLoop, OpenLoop, Percentiles, Pool, RequestSpec};
use crate::process::Pinning;
use crate::procfs;
use crate::report::{
    ClosedLoopFigures, GatewayFigures, HeldStreamFigures, Machine, OpenLoopFigures, PeerReport,
    PercentileSpread, PhaseRecord, Report, ScenarioReport, Setup, Spread, goals,
};

/// Everything a run needs to know.
#[derive(Clone, Debug)]
pub struct Options {
    pub smoke: bool,
    pub rounds: usize,
    /// Seconds per open-loop phase.
    pub open_s: f64,
    /// Seconds per closed-loop phase.
    pub closed_s: f64,
    /// Seconds of unmeasured load per target before a scenario's rounds.
    pub warmup_s: f64,
    pub concurrency: usize,
    /// Fresh gateway starts to time; the last one serves the scenarios.
    pub cold_starts: usize,
    pub gateway: PathBuf,
    pub gateway_log_level: String,
    /// The gateway's `database.flush_interval` (its default when `None`).
    pub ledger_flush_interval: Option<String>,
    /// More `server:` keys for the gateway (`--gateway-server KEY=VALUE`), e.g. `runtime`.
    pub gateway_server: Vec<(String, String)>,
    /// Also run scenarios 1 and 4 through LiteLLM when it is importable (never in smoke runs).
    pub peer: bool,
    /// Run the floor-proxy scenarios ([`crate::floor`]).
    pub floor: bool,
    /// This binary, started again as the mock.
    pub mock_exe: PathBuf,
    pub pinning: Pinning,
    /// CPUs the harness could use before it pinned itself.
    pub nproc: usize,
    /// Only these scenarios (all when `None`).
    pub only: Option<Vec<u8>>,
    /// The command line, for the report.
    pub command: String,
    /// Added to the report's notes.
    pub extra_notes: Vec<String>,
    /// Wait up to this long for other processes to leave the CPUs alone before starting.
    pub wait_quiet: Duration,
    /// Where the guardrail plugins of the plugin scenarios are (`target/plugins`).
    pub plugins_dir: PathBuf,
    /// Turn on the gateway's OTLP export (traces of every request, metrics) to a collector
    /// the harness runs.
    pub otlp: bool,
}

impl Options {
    /// Defaults for a full run (about four minutes) or a smoke run (seconds). Call it before
    /// pinning this thread, so `nproc` sees every CPU.
    pub fn defaults(smoke: bool, gateway: PathBuf, mock_exe: PathBuf) -> Options {
        Options {
            smoke,
            rounds: if smoke { 1 } else { 3 },
            open_s: if smoke { 0.3 } else { 3.0 },
            closed_s: if smoke { 0.3 } else { 2.0 },
            warmup_s: if smoke { 0.1 } else { 1.0 },
            concurrency: 32,
            cold_starts: if smoke { 1 } else { 5 },
            gateway,
            gateway_log_level: "info".to_owned(),
            ledger_flush_interval: None,
            gateway_server: Vec::new(),
            peer: !smoke,
            floor: true,
            mock_exe,
            pinning: Pinning::none(),
            nproc: crate::process::allowed_cpus().len().max(1),
            only: None,
            command: String::new(),
            extra_notes: Vec::new(),
            wait_quiet: Duration::ZERO,
            plugins_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/plugins")),
            otlp: false,
        }
    }
}

/// Direct to the mock, or through the gateway.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Direct,
    Gateway,
}

impl Via {
    fn label(self) -> &'static str {
        match self {
            Via::Direct => "direct",
            Via::Gateway => "via",
        }
    }
}

/// Pools and requests of one scenario, for both targets.
struct Targets {
    direct: (Rc<Pool>, Rc<RequestSpec>),
    via: (Rc<Pool>, Rc<RequestSpec>),
    watched_direct: Watched,
    watched_via: Watched,
}

impl Targets {
    fn new(s: &Scenario, mock: &MockProcess, gateway: &dyn Served) -> anyhow::Result<Targets> {
        let mut via = s.via.spec(gateway.addr());
        if let Some(t) = gateway.token() {
            via = via.bearer(t)?;
        }
        Ok(Targets {
            direct: (
                Rc::new(Pool::new(mock.addr())),
                Rc::new(s.direct.spec(mock.addr())),
            ),
            via: (Rc::new(Pool::new(gateway.addr())), Rc::new(via)),
            watched_direct: Watched {
                gateway: None,
                mock: mock.pid(),
            },
            watched_via: Watched {
                gateway: Some(gateway.pid()),
                mock: mock.pid(),
            },
        })
    }

    fn get(&self, via: Via) -> (Rc<Pool>, Rc<RequestSpec>, Watched) {
        match via {
            Via::Direct => (
                self.direct.0.clone(),
                self.direct.1.clone(),
                self.watched_direct,
            ),
            Via::Gateway => (self.via.0.clone(), self.via.1.clone(), self.watched_via),
        }
    }

    /// Fresh pools, so the next phase opens its own connections.
    fn reset_pools(&mut self) {
        self.direct.0 = Rc::new(Pool::new(self.direct.0.addr()));
        self.via.0 = Rc::new(Pool::new(self.via.0.addr()));
    }
}

/// Runs the benchmark and returns its report.
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    let mut extra_notes = Vec::new();
    if !opts.wait_quiet.is_zero() {
        let (waited, cores) = wait_for_quiet(opts.wait_quiet).await?;
        extra_notes.push(format!(
            "Waited {waited:.0} s for the machine to quiet down; other processes used {cores:.2} \
             CPUs just before the start."
        ));
    }
    let load_average_start = procfs::load_average();
    let tmp = tempfile::Builder::new()
        .prefix("bitrouter-bench-")
        .tempdir()
        .context("creating a temporary directory")?;
    let mock = MockProcess::start(&opts.mock_exe, opts.pinning.mock)?;
    eprintln!("mock upstream on {} (pid {})", mock.addr(), mock.pid());
    let dead = dead_addr()?;
    let collector = if opts.otlp {
        Some(super::collector::start().await?)
    } else {
        None
    };
    let otlp_addr = collector.as_ref().map(|(a, _)| *a);
    let cache = tmp.path().join("plugin-cache");
    let launcher = |name: &str, deployment: Deployment| {
        let ledger = tmp.path().join(format!("{name}.redb"));
        let yaml = config_yaml(
            mock.addr(),
            dead,
            &opts.gateway_log_level,
            deployment,
            &opts.plugins_dir,
            &cache,
            &ledger,
            opts.ledger_flush_interval.as_deref(),
            otlp_addr,
            &opts.gateway_server,
        );
        GatewayLauncher::new(
            opts.gateway.clone(),
            tmp.path(),
            name,
            &yaml,
            opts.pinning.gateway,
        )
    };
    // The default deployment (firewall on) is the one whose start-up and memory the goals
    // are about; the bare proxy serves the scenarios that measure the proxy alone.
    let mut guarded = launcher("gateway", Deployment::Firewall)?;
    guarded.auth = Some(Credentials::create(
        &opts.gateway,
        &tmp.path().join("home"),
    )?);
    let bare = launcher("gateway-bare", Deployment::Bare)?;

    // The first start compiles the default plugins into the cache; the timed starts load
    // them from it, as every start after the first does.
    let (first, compile_ms) = guarded.start().await?;
    drop(first);
    eprintln!("gateway first start (compiles the plugins into the cache): {compile_ms:.1} ms");
    extra_notes.push(format!(
        "The gateway's first start, which compiled the default plugins into the cache, took \
         {compile_ms:.1} ms; cold-start figures are the starts after it (plugins from the cache)."
    ));
    let mut cold = Vec::new();
    let mut gateway = None;
    for i in 0..opts.cold_starts.max(1) {
        // The previous gateway goes first, so starts never overlap.
        drop(gateway.take());
        let (g, ms) = guarded.start().await?;
        eprintln!("gateway cold start {}: {ms:.1} ms", i + 1);
        cold.push(ms);
        gateway = Some(g);
    }
    let mut gateway = gateway.context("no gateway started")?;
    eprintln!("gateway on {} (pid {})", gateway.addr(), gateway.pid());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle_mb = mb(gateway.memory()?.rss_kib);
    let (mut bare, _) = bare.start().await?;
    eprintln!(
        "bare gateway (guardrails off) on {} (pid {})",
        bare.addr(),
        bare.pid()
    );

    let mut scenarios = Vec::new();
    for s in scenario::all(opts.smoke) {
        if opts.only.as_ref().is_some_and(|ids| !ids.contains(&s.id)) {
            continue;
        }
        if let Some(reason) = s.not_measurable {
            scenarios.push(ScenarioReport::not_measurable(
                s.id,
                s.name,
                &s.description,
                reason,
            ));
            continue;
        }
        eprintln!("scenario {}: {}", s.id, s.name);
        let mut plugin_gateway;
        let serving = match s.deployment {
            Deployment::Firewall => &mut gateway,
            Deployment::Bare => &mut bare,
            Deployment::Plugin(id) => {
                if !opts.plugins_dir.join(format!("{id}.wasm")).is_file() {
                    scenarios.push(ScenarioReport::not_measurable(
                        s.id,
                        s.name,
                        &s.description,
                        "the plugin is not built (scripts/build-polyglot-plugins.sh) or \
                         --plugins-dir does not hold it",
                    ));
                    continue;
                }
                // Its first start compiles the component into the cache (seconds for a
                // JavaScript or Python runtime); only requests are measured.
                let (g, ms) = launcher(&format!("gateway-{id}"), s.deployment)?
                    .start()
                    .await?;
                eprintln!("gateway with {id} on {} (started in {ms:.0} ms)", g.addr());
                plugin_gateway = g;
                &mut plugin_gateway
            }
        };
        let mut report = run_scenario(&s, &mock, &*serving, opts)
            .await
            .with_context(|| format!("scenario {}", s.id))?;
        serving.check_alive()?;
        if matches!(s.deployment, Deployment::Plugin(_)) {
            // The sandbox logs every failed call (deadline, trap, ...) with this message.
            report.plugin_calls_failed = Some(serving.log_lines_with("plugin call failed"));
        }
        scenarios.push(report);
    }
    let floor = if opts.floor {
        run_floor(opts, &mock).await?
    } else {
        None
    };
    let peer = if opts.peer {
        run_peer(opts, &mock, tmp.path(), &mut extra_notes).await?
    } else {
        None
    };

    // Let the last connections close before the idle figure.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = gateway.memory()?;
    if let Some((addr, got)) = &collector {
        use std::sync::atomic::Ordering;
        extra_notes.push(format!(
            "OTLP export on (`--otlp`): every request traced (sample_ratio 1.0) and the GenAI \
             metrics every second, to the harness's collector at {addr} (on the load \
             generator's CPU); it received {} export requests, {} bytes.",
            got.requests.load(Ordering::Relaxed),
            got.bytes.load(Ordering::Relaxed)
        ));
    }
    let gateway_figures = GatewayFigures {
        cold_start_ms: Spread::of(&cold).unwrap_or_default(),
        rss_idle_mb,
        rss_idle_after_load_mb: Some(mb(after.rss_kib)),
        rss_peak_mb: Some(mb(after.hwm_kib)),
    };

    let (git_commit, git_dirty) = env::git_commit();
    let machine = procfs::machine();
    let mut report = Report {
        mode: if opts.smoke { "smoke" } else { "full" }.to_owned(),
        date_utc: env::date_utc(),
        git_commit,
        git_dirty,
        rustc: env::rustc_version(),
        machine: Machine {
            nproc: opts.nproc,
            cpu_model: machine.cpu_model,
            kernel: machine.kernel,
            memory_mib: machine.memory_mib,
            load_average_start,
            load_average_end: procfs::load_average(),
        },
        setup: Setup {
            command: opts.command.clone(),
            pinning: opts.pinning.describe(),
            rounds: opts.rounds,
            open_loop_s: opts.open_s,
            closed_loop_s: opts.closed_s,
            warmup_s: opts.warmup_s,
            closed_loop_concurrency: opts.concurrency,
            gateway_binary: opts.gateway.display().to_string(),
            gateway_log_level: opts.gateway_log_level.clone(),
            load_generator: "bitrouter-bench, one thread (Tokio current-thread), raw hyper 1 \
                             HTTP/1.1 keep-alive connections with TCP_NODELAY, timerfd-scheduled \
                             sends, HDR histograms"
                .to_owned(),
            mock: "bitrouter-mock upstream as a child process (Tokio, HTTP/1.1 + h2c, \
                   recording off); 0 ms latency except scenario 7"
                .to_owned(),
            send_lag_us: send_lag(&scenarios),
            background_cores: Spread::of(
                &scenarios
                    .iter()
                    .flat_map(|s| &s.phases)
                    .filter_map(|p| p.background_cores)
                    .collect::<Vec<_>>(),
            ),
        },
        gateway: gateway_figures,
        scenarios,
        peer,
        floor,
        goals: Vec::new(),
        notes: notes(opts, extra_notes),
    };
    report.goals = goals::evaluate(&report);
    Ok(report)
}

async fn run_scenario(
    s: &Scenario,
    mock: &MockProcess,
    gateway: &dyn Served,
    opts: &Options,
) -> anyhow::Result<ScenarioReport> {
    mock.set_behavior(&s.mock).await?;
    let mut targets = Targets::new(s, mock, gateway)?;
    let mut phases = Vec::new();
    let mut report = ScenarioReport::not_measurable(s.id, s.name, &s.description, "");
    report.status = "measured".to_owned();
    report.reason = None;
    report.stream = s.stream;
    match s.shape {
        Shape::Overhead { rate, closed } => {
            let open_plan = OpenLoop::for_duration(rate, secs(opts.open_s), s.drain());
            let closed_plan = ClosedLoop {
                concurrency: opts.concurrency,
                duration: secs(opts.closed_s),
            };
            for via in [Via::Direct, Via::Gateway] {
                let (pool, spec, watched) = targets.get(via);
                let warm = OpenLoop::for_duration(rate, secs(opts.warmup_s), s.drain());
                measure::open(pool.clone(), spec.clone(), s.expect, warm, watched).await?;
                if closed {
                    let warm = ClosedLoop {
                        concurrency: opts.concurrency,
                        duration: secs(opts.warmup_s / 2.0),
                    };
                    measure::closed(pool, spec, s.expect, warm, watched).await?;
                }
            }
            for round in 1..=opts.rounds {
                for via in [Via::Direct, Via::Gateway] {
                    let (pool, spec, watched) = targets.get(via);
                    let m = measure::open(pool, spec, s.expect, open_plan, watched).await?;
                    phases.push(record(s, round, "open", via, m));
                }
                if closed {
                    for via in [Via::Direct, Via::Gateway] {
                        let (pool, spec, watched) = targets.get(via);
                        let m = measure::closed(pool, spec, s.expect, closed_plan, watched).await?;
                        phases.push(record(s, round, "closed", via, m));
                    }
                }
            }
            report.open_loop = Some(open_figures(&phases, rate, open_plan.count));
            if closed {
                report.closed_loop = Some(closed_figures(&phases, opts.concurrency));
            }
        }
        Shape::HeldStreams { streams, rate } => {
            let plan = OpenLoop {
                rate,
                count: streams,
                drain: s.drain(),
            };
            for round in 1..=opts.rounds {
                for via in [Via::Direct, Via::Gateway] {
                    // New connections for every phase: a thousand clients, not a warm pool.
                    targets.reset_pools();
                    let (pool, spec, watched) = targets.get(via);
                    let m = measure::open(pool, spec, s.expect, plan, watched).await?;
                    phases.push(record(s, round, "held", via, m));
                }
            }
            targets.reset_pools();
            report.held_streams = Some(held_figures(&phases, streams, s.stream_seconds()));
        }
    }
    report.gateway_cpu_s_per_1k = cpu_per_1k(&phases, "open", Via::Gateway);
    report.gateway_cpu_s_per_1k_saturated = cpu_per_1k(&phases, "closed", Via::Gateway);
    report.mock_cpu_s_per_1k = cpu_per_1k(&phases, "open", Via::Direct);
    report.gateway_cpu_s_per_1k_by_thread = cpu_per_1k_by_thread(&phases, "open");
    report.gateway_cpu_s_per_1k_saturated_by_thread = cpu_per_1k_by_thread(&phases, "closed");
    report.gateway_rss_peak_mb = phases
        .iter()
        .filter_map(|p| p.gateway_rss_peak_mb)
        .max_by(f64::total_cmp);
    report.phases = phases;
    Ok(report)
}

/// Scenarios 1, 3, 4 and 5 through the floor proxy, on the gateway's CPU: what one more bare
/// hyper hop adds on this machine, in this run.
async fn run_floor(opts: &Options, mock: &MockProcess) -> anyhow::Result<Option<PeerReport>> {
    let wanted: Vec<Scenario> = scenario::all(opts.smoke)
        .into_iter()
        .filter(|s| FLOOR_SCENARIOS.contains(&s.id))
        .filter(|s| opts.only.as_ref().is_none_or(|ids| ids.contains(&s.id)))
        .collect();
    if wanted.is_empty() {
        return Ok(None);
    }
    let floor = FloorProcess::start(&opts.mock_exe, mock.addr(), opts.pinning.gateway)?;
    eprintln!("floor proxy on {} (pid {})", floor.addr(), floor.pid());
    let mut scenarios = Vec::new();
    for s in wanted {
        eprintln!("floor scenario {}: {}", s.id, s.name);
        let report = run_scenario(&s, mock, &floor, opts)
            .await
            .with_context(|| format!("floor proxy, scenario {}", s.id))?;
        scenarios.push(report);
    }
    Ok(Some(PeerReport {
        name: "floor proxy".to_owned(),
        version: "hyper 1 + hyper-util pooled client (bench/src/floor.rs)".to_owned(),
        scenarios,
    }))
}

/// Scenarios 1 and 4 through LiteLLM, on the gateway's CPU, when `litellm` is importable.
async fn run_peer(
    opts: &Options,
    mock: &MockProcess,
    dir: &std::path::Path,
    notes: &mut Vec<String>,
) -> anyhow::Result<Option<PeerReport>> {
    let wanted: Vec<Scenario> = scenario::all(false)
        .into_iter()
        .filter(|s| PEER_SCENARIOS.contains(&s.id))
        .filter(|s| opts.only.as_ref().is_none_or(|ids| ids.contains(&s.id)))
        .collect();
    if wanted.is_empty() {
        return Ok(None);
    }
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let Some(python) = peer::find_python(&workspace) else {
        notes.push(
            "LiteLLM peer not run: no Python with `litellm` (pip install 'litellm[proxy]', or \
             set BITROUTER_BENCH_LITELLM_PYTHON)."
                .to_owned(),
        );
        return Ok(None);
    };
    let peer = PeerProcess::start(
        &python,
        dir,
        &peer::config_yaml(mock.addr(), "mock-gpt"),
        opts.pinning.gateway,
    )
    .await?;
    eprintln!(
        "LiteLLM {} on {} (pid {})",
        peer.version,
        peer.addr(),
        peer.pid()
    );
    let mut scenarios = Vec::new();
    for s in wanted {
        eprintln!("peer scenario {}: {}", s.id, s.name);
        let report = run_scenario(&s, mock, &peer, opts)
            .await
            .with_context(|| format!("LiteLLM, scenario {}", s.id))?;
        scenarios.push(report);
    }
    Ok(Some(PeerReport {
        name: "LiteLLM proxy".to_owned(),
        version: peer.version.clone(),
        scenarios,
    }))
}

fn record(s: &Scenario, round: usize, kind: &str, via: Via, m: Measured) -> PhaseRecord {
    let st = &m.stats;
    let ttfb = if s.stream {
        format!(", TTFB p50 {:.1} µs", st.ttfb_us.p50)
    } else {
        String::new()
    };
    eprintln!(
        "  [{}] round {round} {kind:<6} {:<6} {:>9.0} req/s  p50 {:>8.1} µs  p99 {:>8.1} µs{ttfb}  ok {} failed {}",
        s.id,
        via.label(),
        st.throughput,
        st.latency_us.p50,
        st.latency_us.p99,
        st.ok,
        st.failed
    );
    for f in &st.failures {
        eprintln!("      failure: {f}");
    }
    PhaseRecord {
        round,
        kind: kind.to_owned(),
        target: via.label().to_owned(),
        stats: m.stats,
        gateway_cpu_s: m.gateway_cpu_s,
        gateway_cpu_by_thread_s: m.gateway_cpu_by_thread_s,
        mock_cpu_s: m.mock_cpu_s,
        gateway_rss_peak_mb: m.gateway_rss_peak_kib.map(mb),
        max_open: m.max_open,
        gateway_rss_at_max_open_mb: m.gateway_rss_at_max_open_kib.map(mb),
        background_cores: m.background_cores,
    }
}

/// The phases of one kind and target, in round order.
fn select<'a>(phases: &'a [PhaseRecord], kind: &str, via: Via) -> Vec<&'a PhaseRecord> {
    phases
        .iter()
        .filter(|p| p.kind == kind && p.target == via.label())
        .collect()
}

/// (direct, via) pairs of one kind, matched by round.
fn pairs<'a>(phases: &'a [PhaseRecord], kind: &str) -> Vec<(&'a PhaseRecord, &'a PhaseRecord)> {
    let via = select(phases, kind, Via::Gateway);
    select(phases, kind, Via::Direct)
        .into_iter()
        .filter_map(|d| via.iter().find(|v| v.round == d.round).map(|v| (d, *v)))
        .collect()
}

fn failed(phases: &[PhaseRecord], kind: &str, via: Via) -> u64 {
    select(phases, kind, via)
        .iter()
        .map(|p| p.stats.failed)
        .sum()
}

fn open_figures(phases: &[PhaseRecord], rate: f64, count: u64) -> OpenLoopFigures {
    let pairs = pairs(phases, "open");
    let lat: Vec<(&Percentiles, &Percentiles)> = pairs
        .iter()
        .map(|(d, v)| (&d.stats.latency_us, &v.stats.latency_us))
        .collect();
    let ttfb: Vec<(&Percentiles, &Percentiles)> = pairs
        .iter()
        .map(|(d, v)| (&d.stats.ttfb_us, &v.stats.ttfb_us))
        .collect();
    OpenLoopFigures {
        rate,
        requests_per_round: count,
        direct_us: PercentileSpread::over(lat.iter().map(|p| p.0)),
        via_us: PercentileSpread::over(lat.iter().map(|p| p.1)),
        added_us: PercentileSpread::added(&lat),
        ttfb_direct_us: PercentileSpread::over(ttfb.iter().map(|p| p.0)),
        ttfb_via_us: PercentileSpread::over(ttfb.iter().map(|p| p.1)),
        ttfb_added_us: PercentileSpread::added(&ttfb),
        failed_direct: failed(phases, "open", Via::Direct),
        failed_via: failed(phases, "open", Via::Gateway),
    }
}

fn closed_figures(phases: &[PhaseRecord], concurrency: usize) -> ClosedLoopFigures {
    let pairs = pairs(phases, "closed");
    let rps = |f: fn(&(&PhaseRecord, &PhaseRecord)) -> f64| {
        Spread::of(&pairs.iter().map(f).collect::<Vec<_>>()).unwrap_or_default()
    };
    ClosedLoopFigures {
        concurrency,
        direct_rps: rps(|(d, _)| d.stats.throughput),
        via_rps: rps(|(_, v)| v.stats.throughput),
        ratio: rps(|(d, v)| {
            if d.stats.throughput > 0.0 {
                v.stats.throughput / d.stats.throughput
            } else {
                0.0
            }
        }),
        failed_direct: failed(phases, "closed", Via::Direct),
        failed_via: failed(phases, "closed", Via::Gateway),
    }
}

fn held_figures(phases: &[PhaseRecord], streams: u64, stream_s: f64) -> HeldStreamFigures {
    let pairs = pairs(phases, "held");
    let ttfb: Vec<(&Percentiles, &Percentiles)> = pairs
        .iter()
        .map(|(d, v)| (&d.stats.ttfb_us, &v.stats.ttfb_us))
        .collect();
    let via = select(phases, "held", Via::Gateway);
    let spread = |v: Vec<f64>| Spread::of(&v).unwrap_or_default();
    HeldStreamFigures {
        streams,
        stream_s,
        max_open_via: spread(via.iter().map(|p| p.max_open as f64).collect()),
        rss_open_mb: spread(
            via.iter()
                .filter_map(|p| p.gateway_rss_at_max_open_mb)
                .collect(),
        ),
        ttfb_direct_us: PercentileSpread::over(ttfb.iter().map(|p| p.0)),
        ttfb_via_us: PercentileSpread::over(ttfb.iter().map(|p| p.1)),
        ttfb_added_us: PercentileSpread::added(&ttfb),
        failed_direct: failed(phases, "held", Via::Direct),
        failed_via: failed(phases, "held", Via::Gateway),
    }
}

/// CPU seconds per 1,000 requests of the gateway (via phases) or the mock (direct phases).
fn cpu_per_1k(phases: &[PhaseRecord], kind: &str, via: Via) -> Option<Spread> {
    let values: Vec<f64> = select(phases, kind, via)
        .iter()
        .filter_map(|p| {
            let cpu = match via {
                Via::Gateway => p.gateway_cpu_s?,
                Via::Direct => p.mock_cpu_s,
            };
            per_1k(p, cpu)
        })
        .collect();
    Spread::of(&values)
}

/// `cpu_s` of phase `p` per 1,000 of its requests (`None` for a phase without any).
fn per_1k(p: &PhaseRecord, cpu_s: f64) -> Option<f64> {
    let requests = (p.stats.ok + p.stats.failed) as f64;
    (requests > 0.0).then(|| cpu_s / requests * 1000.0)
}

/// [`cpu_per_1k`] of the gateway per thread name; a name missing from a phase counts 0 there.
fn cpu_per_1k_by_thread(phases: &[PhaseRecord], kind: &str) -> BTreeMap<String, Spread> {
    let via = select(phases, kind, Via::Gateway);
    let names: BTreeSet<&String> = via
        .iter()
        .flat_map(|p| p.gateway_cpu_by_thread_s.keys())
        .collect();
    names
        .into_iter()
        .filter_map(|name| {
            let values: Vec<f64> = via
                .iter()
                .filter_map(|p| {
                    per_1k(
                        p,
                        p.gateway_cpu_by_thread_s.get(name).copied().unwrap_or(0.0),
                    )
                })
                .collect();
            Some((name.clone(), Spread::of(&values)?))
        })
        .collect()
}

/// The generator's lateness behind its schedule: the median over open-loop phases of each
/// percentile.
fn send_lag(scenarios: &[ScenarioReport]) -> Option<Percentiles> {
    let lags: Vec<&Percentiles> = scenarios
        .iter()
        .flat_map(|s| &s.phases)
        .filter(|p| p.kind == "open")
        .filter_map(|p| p.stats.send_lag_us.as_ref())
        .collect();
    let median = |f: fn(&Percentiles) -> f64| {
        Spread::of(&lags.iter().map(|p| f(p)).collect::<Vec<_>>()).map(|s| s.median)
    };
    Some(Percentiles {
        count: lags.iter().map(|p| p.count).sum(),
        p50: median(|p| p.p50)?,
        p90: median(|p| p.p90)?,
        p99: median(|p| p.p99)?,
        p999: median(|p| p.p999)?,
        max: median(|p| p.max)?,
        mean: median(|p| p.mean)?,
    })
}

/// Other processes' CPU use below which the machine counts as quiet, in CPUs.
const QUIET_CORES: f64 = 0.25;

/// Samples the machine's CPU use in 2 s windows until it is quiet or `max` has passed.
/// Returns the seconds waited and the last window's CPU use.
async fn wait_for_quiet(max: Duration) -> anyhow::Result<(f64, f64)> {
    let start = now_ns();
    loop {
        let busy0 = procfs::system_busy_ns()?;
        let t0 = now_ns();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let cores = procfs::system_busy_ns()?.saturating_sub(busy0) as f64 / (now_ns() - t0) as f64;
        let waited = (now_ns() - start) as f64 / 1e9;
        if cores < QUIET_CORES || waited >= max.as_secs_f64() {
            return Ok((waited, cores));
        }
        eprintln!(
            "other processes use {cores:.2} CPUs; waiting for a quiet machine ({waited:.0} s so far)"
        );
    }
}

fn notes(opts: &Options, extra: Vec<String>) -> Vec<String> {
    let mut notes = vec![
        "The gateway runs with its default log level (`info`: one line per request) and stderr \
         redirected to a file, as a deployment would log."
            .to_owned(),
        "Throughput ratios depend on the pinning: the gateway has a CPU of its own while the \
         load generator and the mock share the other, so a phase is limited by whichever side \
         saturates first. CPU seconds per 1,000 requests is the figure that does not depend on it."
            .to_owned(),
        "Scenario 6 disables cool-down on its dead endpoint so every request pays for the \
         refused connection; with the default cool-down (3 failures, 30 s) only a few would."
            .to_owned(),
        "Scenarios 3 and 4 run against the default deployment (auth on with a wallet token \
         minted by the binary under test, the 7 default guardrails); the others against a \
         gateway with guardrails off and auth off. The LiteLLM peer (when it ran) serves \
         scenarios 1 and 4 with its own master key and no guardrails: it is compared with the \
         bare proxy on 1 and the default deployment on 4."
            .to_owned(),
    ];
    notes.extend(extra);
    notes.extend(opts.extra_notes.iter().cloned());
    let path = opts.gateway.display().to_string();
    if path.contains("/debug/") {
        notes.push("The gateway is a debug build: figures are not representative.".to_owned());
    }
    if env::gateway_is_stale(&opts.gateway) {
        notes.push(
            "The gateway binary is older than host/: these figures may not reflect the current \
             sources (rebuild with `cargo build --release -p bitrouter`)."
                .to_owned(),
        );
    }
    notes
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.001))
}

fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}
