//! What a measured phase collects: HDR histograms of latency and time to first byte, success
//! and failure counts, and the summary (percentiles in microseconds) that goes into a report.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::request::{Failure, Timing};

/// 1 ns to 10 minutes at 3 significant digits: 0.1 % resolution at every scale.
const MAX_NS: u64 = 600_000_000_000;

fn histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; a failure here is a programming error.
    Histogram::new_with_bounds(1, MAX_NS, 3).unwrap_or_else(|e| unreachable!("bounds: {e}"))
}

/// Percentiles of one histogram, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// Collects one phase's results as they come in.
pub struct Recorder {
    latency: Histogram<u64>,
    ttfb: Histogram<u64>,
    /// Open loop only: how late the generator sent compared with the schedule.
    send_lag: Histogram<u64>,
    ok: u64,
    failures: BTreeMap<String, u64>,
    first_start: Option<u64>,
    last_end: Option<u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            latency: histogram(),
            ttfb: histogram(),
            send_lag: histogram(),
            ok: 0,
            failures: BTreeMap::new(),
            first_start: None,
            last_end: None,
        }
    }
}

impl Recorder {
    /// Records a request that was due at `start` (the scheduled time in open loop, the send
    /// time in closed loop).
    pub fn record(&mut self, start: u64, result: Result<Timing, Failure>) {
        self.first_start = Some(self.first_start.map_or(start, |s| s.min(start)));
        match result {
            Ok(t) => {
                self.ok += 1;
                self.latency
                    .saturating_record(t.end.saturating_sub(start).max(1));
                self.ttfb
                    .saturating_record(t.first_byte.saturating_sub(start).max(1));
                self.last_end = Some(self.last_end.map_or(t.end, |e| e.max(t.end)));
            }
            Err(f) => self.fail(f),
        }
    }

    pub fn fail(&mut self, failure: Failure) {
        *self.failures.entry(failure.0).or_default() += 1;
    }

    pub fn record_send_lag(&mut self, lag_ns: u64) {
        self.send_lag.saturating_record(lag_ns.max(1));
    }

    pub fn ok(&self) -> u64 {
        self.ok
    }

    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    pub fn summary(&self) -> PhaseStats {
        let elapsed_ns = match (self.first_start, self.last_end) {
            (Some(s), Some(e)) if e > s => e - s,
            _ => 0,
        };
        let elapsed_s = elapsed_ns as f64 / 1e9;
        PhaseStats {
            ok: self.ok,
            failed: self.failed(),
            failures: self
                .failures
                .iter()
                .take(5)
                .map(|(m, n)| format!("{n}× {m}"))
                .collect(),
            elapsed_s,
            throughput: if elapsed_s > 0.0 {
                self.ok as f64 / elapsed_s
            } else {
                0.0
            },
            latency_us: Percentiles::of(&self.latency),
            ttfb_us: Percentiles::of(&self.ttfb),
            send_lag_us: (!self.send_lag.is_empty()).then(|| Percentiles::of(&self.send_lag)),
        }
    }
}

/// The summary of one measured phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseStats {
    pub ok: u64,
    pub failed: u64,
    /// The most frequent kinds of failure, with counts.
    pub failures: Vec<String>,
    /// From the first request's start to the last response's end.
    pub elapsed_s: f64,
    /// Successful responses per second over `elapsed_s`.
    pub throughput: f64,
    pub latency_us: Percentiles,
    pub ttfb_us: Percentiles,
    pub send_lag_us: Option<Percentiles>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reports_percentiles_and_failures() {
        let mut r = Recorder::default();
        for i in 1..=100u64 {
            let t = Timing {
                head: i * 1000,
                first_byte: i * 1000,
                end: i * 1000,
            };
            r.record(0, Ok(t));
        }
        r.fail(Failure("status 502".into()));
        r.fail(Failure("status 502".into()));
        let s = r.summary();
        assert_eq!(s.ok, 100);
        assert_eq!(s.failed, 2);
        assert_eq!(s.failures, vec!["2× status 502".to_owned()]);
        assert!((s.latency_us.p50 - 50.0).abs() < 0.1, "{:?}", s.latency_us);
        assert!((s.latency_us.max - 100.0).abs() < 0.1);
        assert!((s.throughput - 1_000_000.0).abs() < 1.0);
    }
}
