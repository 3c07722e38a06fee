//! In-memory metrics, reset on restart: per route and per endpoint (provider:model) inside
//! each route — counts, errors, latency percentiles from a bounded reservoir, token averages,
//! last use — plus process-wide uptime, in-flight requests and gateway overhead.
//!
//! Sampling rule: each route (and endpoint) keeps at most 10,000 latency samples by reservoir
//! sampling (Vitter's algorithm R): the first 10,000 are kept; the n-th after that replaces a
//! random kept sample with probability 10,000 / n. The kept samples are thus a uniform sample
//! of every request since start, and memory never grows past the bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use serde_json::{Value, json};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::event::RequestEvent;
use super::prometheus::PromMetrics;

/// Samples a [`Reservoir`] keeps.
pub const MAX_SAMPLES: usize = 10_000;
/// Distinct routes (and endpoints per route) tracked; `provider:model` requests name
/// arbitrary models, so the tables are capped and the rest is counted under `_other`.
const MAX_KEYS: usize = 1_000;
const OTHER: &str = "_other";

/// A bounded uniform sample of values (algorithm R).
#[derive(Debug, Default)]
pub struct Reservoir {
    seen: u64,
    samples: Vec<f64>,
}

impl Reservoir {
    /// Offers one value to the sample.
    pub fn add(&mut self, v: f64) {
        self.seen += 1;
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(v);
        } else {
            let slot = fastrand::u64(..self.seen);
            if (slot as usize) < MAX_SAMPLES {
                self.samples[slot as usize] = v;
            }
        }
    }

    /// Samples kept.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether nothing was sampled yet.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Nearest-rank percentiles of the kept samples.
    pub fn percentiles(&self, ps: &[f64]) -> Vec<Option<f64>> {
        if self.samples.is_empty() {
            return ps.iter().map(|_| None).collect();
        }
        let mut sorted = self.samples.clone();
        sorted.sort_by(f64::total_cmp);
        ps.iter()
            .map(|p| {
                let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
                Some(sorted[rank.clamp(1, sorted.len()) - 1])
            })
            .collect()
    }
}

#[derive(Debug, Default)]
struct Stats {
    json_requests: u64,
    json_errors: u64,
    latency_ms: Reservoir,
    input_tokens: u64,
    output_tokens: u64,
    /// JSON requests that reported tokens (the averages' denominator).
    json_with_usage: u64,
    stream_requests: u64,
    stream_errors: u64,
    stream_start_ms: Reservoir,
    stream_output_tokens: u64,
    streams_completed: u64,
    /// Attempts at this endpoint that failed (failed over, or the request's last), whichever
    /// endpoint ended up answering.
    attempt_errors: u64,
    /// Of those, streams that broke after they started and were carried on by another
    /// endpoint (mid-stream failover).
    mid_stream_failovers: u64,
    last_used_ms: i64,
}

impl Stats {
    fn record(&mut self, e: &RequestEvent) {
        self.last_used_ms = e.time_ms + e.latency_ms as i64;
        if e.stream {
            self.stream_requests += 1;
            self.stream_errors += u64::from(!e.success);
            if let Some(t) = e.ttfb_ms {
                self.stream_start_ms.add(t);
            }
            if e.success {
                self.streams_completed += 1;
                self.stream_output_tokens += e.output_tokens;
            }
        } else {
            self.json_requests += 1;
            self.json_errors += u64::from(!e.success);
            self.latency_ms.add(e.latency_ms);
            if e.success {
                self.json_with_usage += 1;
                self.input_tokens += e.input_tokens;
                self.output_tokens += e.output_tokens;
            }
        }
    }

    fn to_json(&self) -> Value {
        let requests = self.json_requests + self.stream_requests;
        let errors = self.json_errors + self.stream_errors;
        let [p50, p99] = pair(self.latency_ms.percentiles(&[50.0, 99.0]));
        let [s50, s99] = pair(self.stream_start_ms.percentiles(&[50.0, 99.0]));
        let avg = |sum: u64, n: u64| {
            if n == 0 {
                Value::Null
            } else {
                json!(sum as f64 / n as f64)
            }
        };
        json!({
            "requests": requests,
            "errors": errors,
            "error_rate": if requests == 0 { 0.0 } else { errors as f64 / requests as f64 },
            "latency_ms": { "p50": p50, "p99": p99, "samples": self.latency_ms.len() },
            "avg_input_tokens": avg(self.input_tokens, self.json_with_usage),
            "avg_output_tokens": avg(self.output_tokens, self.json_with_usage),
            "last_used_ms": self.last_used_ms,
            "attempt_errors": self.attempt_errors,
            "mid_stream_failovers": self.mid_stream_failovers,
            "streams": {
                "requests": self.stream_requests,
                "errors": self.stream_errors,
                "stream_start_ms": { "p50": s50, "p99": s99, "samples": self.stream_start_ms.len() },
                "completed": self.streams_completed,
                "output_tokens": self.stream_output_tokens,
                "avg_output_tokens": avg(self.stream_output_tokens, self.streams_completed),
            },
        })
    }
}

fn pair(v: Vec<Option<f64>>) -> [Option<f64>; 2] {
    [v.first().copied().flatten(), v.get(1).copied().flatten()]
}

#[derive(Debug, Default)]
struct RouteStats {
    total: Stats,
    endpoints: HashMap<String, Stats>,
    /// Requests a rate limit refused (or whose endpoint a provider quota skipped), by the
    /// limit (`account:requests`, `route:tokens`, `provider:requests`, …): a handful of
    /// labels, never the account itself.
    rate_limited: std::collections::BTreeMap<String, u64>,
    /// The same refusals by who was refused (the account; `anonymous` without auth), then
    /// by limit: at most [`MAX_KEYS`] callers per route, the rest under `_other`. Not in
    /// Prometheus, where an account label would be a series per caller.
    rate_limited_callers:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>,
}

/// The collector. `record` is called inline once per request.
pub struct Metrics {
    started: Instant,
    routes: RwLock<HashMap<String, Arc<Mutex<RouteStats>>>>,
    requests: AtomicU64,
    errors: AtomicU64,
    in_flight: AtomicI64,
    overhead_ms: Mutex<Reservoir>,
    /// Client connections by serving runtime (see [`Metrics::with_runtimes`]).
    connections: Box<[(Counter, Gauge)]>,
    prom: PromMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A collector with nothing recorded, its uptime starting now, for one serving runtime.
    pub fn new() -> Self {
        Self::with_runtimes(1)
    }

    /// A collector for `runtimes` serving runtimes (`server.runtime: per_core` has one per
    /// thread), whose client connections are counted apart: how evenly the kernel spread
    /// new connections over their listeners.
    pub fn with_runtimes(runtimes: usize) -> Self {
        let prom = PromMetrics::new();
        Metrics {
            started: Instant::now(),
            routes: RwLock::new(HashMap::new()),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            overhead_ms: Mutex::new(Reservoir::default()),
            connections: (0..runtimes.max(1))
                .map(|i| prom.connection_series(i))
                .collect(),
            prom,
        }
    }

    /// Counts a client connection accepted by serving runtime `runtime`, open until the guard
    /// drops.
    pub fn connection_opened(self: &Arc<Self>, runtime: usize) -> OpenConnection {
        let index = runtime.min(self.connections.len() - 1);
        let (accepted, open) = &self.connections[index];
        accepted.inc();
        open.inc();
        OpenConnection(open.clone())
    }

    /// Counts a request as in flight until the guard drops.
    pub fn in_flight(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.prom.in_flight.inc();
        InFlight(self.clone())
    }

    fn route_entry(&self, key: &str) -> Arc<Mutex<RouteStats>> {
        if let Some(r) = self
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            return r.clone();
        }
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        let key = if routes.len() >= MAX_KEYS && !routes.contains_key(key) {
            OTHER
        } else {
            key
        };
        routes.entry(key.to_owned()).or_default().clone()
    }

    /// Counts one finished request: totals, per route and endpoint, and the Prometheus series.
    pub fn record(&self, e: &RequestEvent) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.errors
            .fetch_add(u64::from(!e.success), Ordering::Relaxed);
        let overhead = e.overhead_ms();
        self.overhead_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(overhead);
        // Requests rejected before routing (bad JSON, unknown model) have no route to file under.
        let route = e
            .route
            .clone()
            .or_else(|| e.provider.as_ref().map(|_| e.requested_model.clone()));
        if let Some(route) = &route {
            let entry = self.route_entry(route);
            let mut r = entry.lock().unwrap_or_else(|p| p.into_inner());
            r.total.record(e);
            if let (Some(p), Some(m)) = (&e.provider, &e.model) {
                let endpoint = format!("{p}:{m}");
                let n = r.endpoints.len();
                let key = if n >= MAX_KEYS && !r.endpoints.contains_key(&endpoint) {
                    OTHER.to_owned()
                } else {
                    endpoint
                };
                r.endpoints.entry(key).or_default().record(e);
            }
            for a in e.attempts.iter().filter(|a| a.error_type.is_some()) {
                let mid_stream = u64::from(a.cost_nano_usd.is_some());
                r.total.attempt_errors += 1;
                r.total.mid_stream_failovers += mid_stream;
                let n = r.endpoints.len();
                let key = if n >= MAX_KEYS && !r.endpoints.contains_key(&a.target) {
                    OTHER
                } else {
                    a.target.as_str()
                };
                let s = match r.endpoints.get_mut(key) {
                    Some(s) => s,
                    None => r.endpoints.entry(key.to_owned()).or_default(),
                };
                s.attempt_errors += 1;
                s.mid_stream_failovers += mid_stream;
            }
            if let Some(limit) = &e.rate_limited {
                *r.rate_limited.entry(limit.clone()).or_default() += 1;
                let who = e.account_id.as_deref().unwrap_or("anonymous");
                let who = if r.rate_limited_callers.len() >= MAX_KEYS
                    && !r.rate_limited_callers.contains_key(who)
                {
                    OTHER
                } else {
                    who
                };
                *r.rate_limited_callers
                    .entry(who.to_owned())
                    .or_default()
                    .entry(limit.clone())
                    .or_default() += 1;
            }
        }
        self.prom.record(e, route.as_deref(), overhead);
    }

    /// The `/admin/metrics` document.
    pub fn snapshot(&self) -> Value {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<&String> = routes.keys().collect();
        names.sort();
        let mut out = serde_json::Map::new();
        for name in names {
            let r = routes[name].lock().unwrap_or_else(|p| p.into_inner());
            let mut v = r.total.to_json();
            let mut eps: Vec<(&String, &Stats)> = r.endpoints.iter().collect();
            eps.sort_by(|a, b| a.0.cmp(b.0));
            v["endpoints"] = Value::Object(
                eps.into_iter()
                    .map(|(k, s)| (k.clone(), s.to_json()))
                    .collect(),
            );
            v["rate_limited"] = json!(r.rate_limited);
            v["rate_limited_callers"] = json!(r.rate_limited_callers);
            out.insert(name.clone(), v);
        }
        let overhead = self.overhead_ms.lock().unwrap_or_else(|p| p.into_inner());
        let [o50, o99] = pair(overhead.percentiles(&[50.0, 99.0]));
        let requests = self.requests.load(Ordering::Relaxed);
        let errors = self.errors.load(Ordering::Relaxed);
        json!({
            "uptime_seconds": self.started.elapsed().as_secs_f64(),
            "in_flight": self.in_flight.load(Ordering::Relaxed),
            "requests": requests,
            "errors": errors,
            "error_rate": if requests == 0 { 0.0 } else { errors as f64 / requests as f64 },
            "overhead_ms": { "p50": o50, "p99": o99, "samples": overhead.len(), "histogram": self.prom.overhead_buckets() },
            "sampling": format!("reservoir (algorithm R), at most {MAX_SAMPLES} samples per route and endpoint"),
            "routes": out,
            "connections": self.connections_json(),
        })
    }

    /// `connections`: accepted and open, in all and by serving runtime.
    fn connections_json(&self) -> Value {
        let runtimes: Vec<Value> = self
            .connections
            .iter()
            .map(|(accepted, open)| json!({ "accepted": accepted.get(), "open": open.get() }))
            .collect();
        json!({
            "accepted": self.connections.iter().map(|(a, _)| a.get()).sum::<u64>(),
            "open": self.connections.iter().map(|(_, o)| o.get()).sum::<i64>(),
            "runtimes": runtimes,
        })
    }

    /// The `/metrics` Prometheus text exposition.
    pub fn prometheus(&self) -> String {
        self.prom.encode(self.started.elapsed().as_secs_f64())
    }

    /// Publishes a counter owned elsewhere (ledger rows, observer events) on `/metrics`.
    pub fn set_guardrail(&self, pattern: &str, action: &str, value: u64) {
        self.prom.set_guardrail(pattern, action, value);
    }

    /// Sets the `component_events` gauge of `component` (`ledger`, `observe_<sink>`) in `state`
    /// (`written`, `dropped`, …).
    pub fn set_state(&self, component: &str, state: &str, value: u64) {
        self.prom
            .set_state(component, state, value.min(i64::MAX as u64) as i64);
    }
}

/// Decrements its runtime's open-connection count when the connection is over.
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Decrements the in-flight count when the request is over.
pub struct InFlight(Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.prom.in_flight.dec();
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InFlight")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut r = Reservoir::default();
        for v in 1..=1000 {
            r.add(v as f64);
        }
        assert_eq!(
            r.percentiles(&[50.0, 99.0, 100.0]),
            vec![Some(500.0), Some(990.0), Some(1000.0)]
        );
    }

    #[test]
    fn the_reservoir_stays_bounded_and_uniform() {
        let mut r = Reservoir::default();
        for v in 0..100_000 {
            r.add(v as f64);
        }
        assert_eq!(r.len(), MAX_SAMPLES);
        // A uniform sample of 0..100k has its median near 50k.
        let p50 = r.percentiles(&[50.0])[0].unwrap();
        assert!((45_000.0..55_000.0).contains(&p50), "{p50}");
    }
}
