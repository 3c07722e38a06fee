//! The benchmark report: what was measured, on what, and how it compares with DESIGN.md's
//! goals. These types are the JSON file (`report.json`); [`markdown`] renders the same data as
//! the human-readable table (`report.md`, `bench/REPORT.md`), and [`goals`] holds the goals.

pub mod goals;
pub mod markdown;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::load::{Percentiles, PhaseStats};

/// The whole report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// `"full"` or `"smoke"` (smoke figures are not meaningful and goals are not judged).
    pub mode: String,
    pub date_utc: String,
    pub git_commit: String,
    /// The work tree had uncommitted changes to tracked files when the run started.
    pub git_dirty: bool,
    pub rustc: String,
    pub machine: Machine,
    pub setup: Setup,
    pub gateway: GatewayFigures,
    pub scenarios: Vec<ScenarioReport>,
    /// The same scenarios through a peer gateway (LiteLLM), when one was run.
    #[serde(default)]
    pub peer: Option<PeerReport>,
    /// The same scenarios through the floor proxy (`crate::floor`), when it was run.
    #[serde(default)]
    pub floor: Option<PeerReport>,
    pub goals: Vec<GoalCheck>,
    pub notes: Vec<String>,
}

/// Scenarios 1 and 4 through a LiteLLM proxy on the same mock and CPU as the gateway.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerReport {
    pub name: String,
    pub version: String,
    /// "via" in these is the peer.
    pub scenarios: Vec<ScenarioReport>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Machine {
    /// CPUs this run could use (its affinity mask).
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub memory_mib: u64,
    /// `/proc/loadavg` (1, 5, 15 min) when the run started and when it ended.
    pub load_average_start: String,
    pub load_average_end: String,
}

/// How the run was set up.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Setup {
    pub command: String,
    pub pinning: String,
    pub rounds: usize,
    pub open_loop_s: f64,
    pub closed_loop_s: f64,
    pub warmup_s: f64,
    pub closed_loop_concurrency: usize,
    pub gateway_binary: String,
    pub gateway_log_level: String,
    pub load_generator: String,
    pub mock: String,
    /// How late the open-loop generator sent compared with its schedule, over every direct
    /// phase: the floor under every latency figure.
    pub send_lag_us: Option<Percentiles>,
    /// Other processes' CPU use during the measured phases, in CPUs: what else shared the
    /// machine (a quiet machine shows ~0).
    pub background_cores: Option<Spread>,
}

/// Figures about the gateway process as a whole.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GatewayFigures {
    /// Process spawn to the first successful model request, one sample per fresh start.
    pub cold_start_ms: Spread,
    /// Resident memory after start-up and one request.
    pub rss_idle_mb: f64,
    /// Resident memory once every scenario has ended and its connections closed.
    pub rss_idle_after_load_mb: Option<f64>,
    /// The most the gateway was ever resident (`VmHWM`) over the run.
    pub rss_peak_mb: Option<f64>,
}

/// The median of a figure over rounds, and its range.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub samples: Vec<f64>,
}

impl Spread {
    /// `None` when there are no samples.
    pub fn of(samples: &[f64]) -> Option<Spread> {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            samples: samples.to_vec(),
        })
    }
}

/// p50 / p90 / p99 / p99.9 of one quantity, each as a spread over rounds, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PercentileSpread {
    pub p50: Spread,
    pub p90: Spread,
    pub p99: Spread,
    pub p999: Spread,
}

impl PercentileSpread {
    /// Spreads over rounds of `f(round)` for each percentile.
    pub fn over<'a>(rounds: impl Iterator<Item = &'a Percentiles> + Clone) -> PercentileSpread {
        let pick = |f: fn(&Percentiles) -> f64| {
            Spread::of(&rounds.clone().map(f).collect::<Vec<_>>()).unwrap_or_default()
        };
        PercentileSpread {
            p50: pick(|p| p.p50),
            p90: pick(|p| p.p90),
            p99: pick(|p| p.p99),
            p999: pick(|p| p.p999),
        }
    }

    /// Per round, `via − direct` for each percentile, then the spread over rounds.
    pub fn added(pairs: &[(&Percentiles, &Percentiles)]) -> PercentileSpread {
        let diff = |f: fn(&Percentiles) -> f64| {
            let v: Vec<f64> = pairs.iter().map(|(d, v)| f(v) - f(d)).collect();
            Spread::of(&v).unwrap_or_default()
        };
        PercentileSpread {
            p50: diff(|p| p.p50),
            p90: diff(|p| p.p90),
            p99: diff(|p| p.p99),
            p999: diff(|p| p.p999),
        }
    }
}

/// One scenario of issue 8.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScenarioReport {
    pub id: u8,
    pub name: String,
    pub description: String,
    /// `"measured"` or `"not_measurable"`.
    pub status: String,
    /// Why a scenario was not measured.
    pub reason: Option<String>,
    pub stream: bool,
    pub open_loop: Option<OpenLoopFigures>,
    pub closed_loop: Option<ClosedLoopFigures>,
    pub held_streams: Option<HeldStreamFigures>,
    /// Gateway CPU seconds per 1,000 requests (open loop; under saturation in closed loop).
    pub gateway_cpu_s_per_1k: Option<Spread>,
    pub gateway_cpu_s_per_1k_saturated: Option<Spread>,
    /// The same per gateway thread name (open loop), e.g. `tokio-rt-worker`,
    /// `ledger-writer`: where the CPU per request goes besides the request's own worker.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gateway_cpu_s_per_1k_by_thread: BTreeMap<String, Spread>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gateway_cpu_s_per_1k_saturated_by_thread: BTreeMap<String, Spread>,
    /// The mock's CPU seconds per 1,000 requests when called directly, for scale.
    pub mock_cpu_s_per_1k: Option<Spread>,
    /// The gateway's largest resident size sampled during this scenario's phases.
    pub gateway_rss_peak_mb: Option<f64>,
    /// Plugin calls that failed (and were skipped or failed closed) while the scenario ran:
    /// the `plugin call failed` lines in the log of the scenario's own gateway (scenarios 8
    /// and 9); `None` for scenarios on a shared gateway.
    #[serde(default)]
    pub plugin_calls_failed: Option<u64>,
    /// Every measured phase, in the order it ran.
    pub phases: Vec<PhaseRecord>,
}

impl ScenarioReport {
    pub fn not_measurable(id: u8, name: &str, description: &str, reason: &str) -> ScenarioReport {
        ScenarioReport {
            id,
            name: name.to_owned(),
            description: description.to_owned(),
            status: "not_measurable".to_owned(),
            reason: Some(reason.to_owned()),
            stream: false,
            open_loop: None,
            closed_loop: None,
            held_streams: None,
            gateway_cpu_s_per_1k: None,
            gateway_cpu_s_per_1k_saturated: None,
            gateway_cpu_s_per_1k_by_thread: BTreeMap::new(),
            gateway_cpu_s_per_1k_saturated_by_thread: BTreeMap::new(),
            mock_cpu_s_per_1k: None,
            gateway_rss_peak_mb: None,
            plugin_calls_failed: None,
            phases: Vec::new(),
        }
    }

    pub fn measured(&self) -> bool {
        self.status == "measured"
    }
}

/// Constant-rate figures: latency (and time to first byte), direct vs via the gateway.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OpenLoopFigures {
    pub rate: f64,
    pub requests_per_round: u64,
    pub direct_us: PercentileSpread,
    pub via_us: PercentileSpread,
    pub added_us: PercentileSpread,
    pub ttfb_direct_us: PercentileSpread,
    pub ttfb_via_us: PercentileSpread,
    pub ttfb_added_us: PercentileSpread,
    pub failed_direct: u64,
    pub failed_via: u64,
}

/// Maximum throughput, direct vs via the gateway.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClosedLoopFigures {
    pub concurrency: usize,
    pub direct_rps: Spread,
    pub via_rps: Spread,
    /// Per round, via / direct.
    pub ratio: Spread,
    pub failed_direct: u64,
    pub failed_via: u64,
}

/// Many long streams held open at once.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeldStreamFigures {
    pub streams: u64,
    /// How long each stream lasts at the mock.
    pub stream_s: f64,
    /// Most streams seen open at once through the gateway, per round.
    pub max_open_via: Spread,
    /// Gateway resident memory when the most streams were open.
    pub rss_open_mb: Spread,
    pub ttfb_direct_us: PercentileSpread,
    pub ttfb_via_us: PercentileSpread,
    pub ttfb_added_us: PercentileSpread,
    pub failed_direct: u64,
    pub failed_via: u64,
}

/// One measured phase as it ran.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhaseRecord {
    pub round: usize,
    /// `"open"`, `"closed"` or `"held"`.
    pub kind: String,
    /// `"direct"` or `"via"`.
    pub target: String,
    pub stats: PhaseStats,
    pub gateway_cpu_s: Option<f64>,
    /// The gateway's CPU seconds per thread name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gateway_cpu_by_thread_s: BTreeMap<String, f64>,
    pub mock_cpu_s: f64,
    pub gateway_rss_peak_mb: Option<f64>,
    pub max_open: u64,
    pub gateway_rss_at_max_open_mb: Option<f64>,
    /// CPUs' worth of work by other processes on the machine during the phase.
    pub background_cores: Option<f64>,
}

/// One goal of DESIGN.md against what was measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GoalCheck {
    pub what: String,
    pub goal: String,
    /// Where the figure comes from.
    pub source: String,
    pub measured: Option<f64>,
    pub unit: String,
    /// `"met"`, `"missed by …"`, `"not judged (smoke run)"` or `"not yet measurable: …"`.
    pub verdict: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_the_median_and_range() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap_or_default();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let even = Spread::of(&[4.0, 1.0, 2.0, 3.0]).unwrap_or_default();
        assert_eq!(even.median, 2.5);
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn added_is_per_round_difference() {
        let p = |v: f64| Percentiles {
            count: 1,
            p50: v,
            p90: v,
            p99: v,
            p999: v,
            max: v,
            mean: v,
        };
        let (d1, v1, d2, v2) = (p(100.0), p(150.0), p(200.0), p(210.0));
        let added = PercentileSpread::added(&[(&d1, &v1), (&d2, &v2)]);
        assert_eq!(added.p50.min, 10.0);
        assert_eq!(added.p50.max, 50.0);
        assert_eq!(added.p50.median, 30.0);
    }
}
